//! Native LDAP connector: OpenLDAP (`type = "ldap"`) and Active Directory (`type = "active_directory"`).
//!
//! LDAP is not HTTP, so it cannot be a spec file; it implements the same [`Connector`] trait natively on
//! the pure-Rust, tokio-based `ldap3` client.
//!
//! # What it does
//! | operation | OpenLDAP | Active Directory |
//! |---|---|---|
//! | `disable_account` | ppolicy lock: `pwdAccountLockedTime: 000001010000Z` (permanent until an admin unlocks) | set the ACCOUNTDISABLE bit (`0x2`) of `userAccountControl` |
//! | `enable_account` | restore the prior `pwdAccountLockedTime` (normally: delete it) | restore the prior ACCOUNTDISABLE bit (normally: clear it) |
//! | `remove_group_memberships` | delete the user from every group under `group_base_dn` holding it as `member`, `uniqueMember` or `memberUid` | same, `member` only |
//! | `restore_group_memberships` | re-add from the recorded pre-state ("already a member" is fine) | same |
//!
//! Every write is preceded by a read, so a repeat finds the target in the desired state and answers
//! `already_done`, and the prior value is recorded as pre-state for the reversal. On AD the
//! `userAccountControl` change is one atomic modify (delete the old value, add the new one): if anything
//! else changed the attribute in between, the server refuses and the action is retried, instead of
//! silently overwriting the other change. `revoke_sessions` is not an LDAP concept (binds are stateless),
//! so it is not supported; revoke sessions at the IdP that issues them.
//!
//! The subject (email, username) is only ever inserted into the `user_filter` template escaped per
//! RFC 4515, so `*)(uid=*` matches nobody rather than everybody. A subject matching more than one entry
//! fails the action: acting on an ambiguous subject could lock out the wrong person.
//!
//! # Least-privilege permissions of the bind DN
//! OpenLDAP (`olcAccess`/`access to` rules, above any broader rule; `ou=people` and `ou=groups` stand for
//! `base_dn` and `group_base_dn`):
//! ```text
//! access to dn.subtree="ou=people,dc=example,dc=org" attrs=pwdAccountLockedTime
//!   by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" write
//!   by * break
//! access to dn.subtree="ou=people,dc=example,dc=org" attrs=entry,objectClass,uid,mail
//!   by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" read
//!   by * break
//! access to dn.subtree="ou=groups,dc=example,dc=org" attrs=member,uniqueMember,memberUid
//!   by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" write
//!   by * break
//! access to dn.subtree="ou=groups,dc=example,dc=org" attrs=entry,objectClass
//!   by dn.exact="cn=deprovd,ou=services,dc=example,dc=org" read
//!   by * break
//! ```
//! (plus read on any other attribute your `user_filter` names). No `manage`, no rootdn, no `userPassword`.
//!
//! Active Directory (delegate control on the OUs, not Domain Admins): on user objects *Read/Write
//! `userAccountControl`* and *Read* of `sAMAccountName`, `userPrincipalName`, `mail`; on group objects
//! *Read/Write Members* (`member`). Protected accounts (adminCount=1, AdminSDHolder) cannot be disabled
//! by a delegated account — by design; list them as protected subjects in deprovd too.
//!
//! See `docs/connectors/ldap.md` for configuration examples.

use crate::net::is_loopback_host;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::debug;

use super::{
    CheckReport, Connector, Memberships, Operation, OperationRequest, OperationResult, Outcome,
    Resolution,
};
use crate::config::{Problem, SecretRef};

/// `pwdAccountLockedTime` value that ppolicy treats as "locked until an administrator unlocks".
pub const PERMANENT_LOCK: &str = "000001010000Z";
/// The ACCOUNTDISABLE bit of AD's `userAccountControl`.
pub const ACCOUNTDISABLE: u32 = 0x2;

const LOCK_ATTR: &str = "pwdAccountLockedTime";
/// The attributes naming a user, reported to the executor's protected-subject check.
const NAMING_ATTRS: [&str; 4] = ["uid", "mail", "sAMAccountName", "userPrincipalName"];
const UAC_ATTR: &str = "userAccountControl";

/// Which directory dialect an instance speaks; chosen by the connector's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapFlavor {
    /// OpenLDAP (or another server with the ppolicy overlay): `type = "ldap"`.
    OpenLdap,
    /// Microsoft Active Directory (or Samba AD): `type = "active_directory"`.
    ActiveDirectory,
}

impl LdapFlavor {
    /// The `user_filter` used when the config gives none.
    pub fn default_user_filter(self) -> &'static str {
        match self {
            LdapFlavor::OpenLdap => "(|(uid={username})(mail={email}))",
            LdapFlavor::ActiveDirectory => {
                "(|(sAMAccountName={username})(userPrincipalName={email})(mail={email}))"
            }
        }
    }

    /// The config `type` naming this flavor.
    pub fn type_name(self) -> &'static str {
        match self {
            LdapFlavor::OpenLdap => "ldap",
            LdapFlavor::ActiveDirectory => "active_directory",
        }
    }
}

/// `[connectors.<name>]` with `type = "ldap"` or `type = "active_directory"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host:636` (TLS from the first byte) or `ldap://host:389` (plain, or upgraded with `starttls`).
    pub url: String,
    /// The service account deprovd binds as; give it only the ACLs in the module docs.
    pub bind_dn: String,
    /// Its password, by reference (`env:NAME` / `file:PATH`).
    pub bind_password: SecretRef,
    /// Where users are searched (subtree).
    pub base_dn: String,
    /// Filter finding one user; `{username}`, `{email}` and `{subject}` are replaced by the RFC 4515-escaped
    /// subject. Defaults per flavor (see [`LdapFlavor::default_user_filter`]).
    #[serde(default)]
    pub user_filter: Option<String>,
    /// Where groups are searched (subtree); defaults to `base_dn`.
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA certificate(s) to trust for this server *instead of* the system store (a private
    /// enterprise CA). Without it the system store is used (`SSL_CERT_FILE` also works).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Permit a cleartext `ldap://` connection to a non-loopback host. The bind password would cross the
    /// network in clear, so this must be asked for explicitly.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Limit for connecting and for each LDAP request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Concurrent connections to the server at most (also the executor's lane width).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retry budget; falls back to `[executor.retry].max_attempts`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_concurrency() -> usize {
    4
}

const PLACEHOLDERS: [&str; 3] = ["{username}", "{email}", "{subject}"];

/// Put the escaped subject into a filter template, in one pass over the *template*.
///
/// Placeholders are looked for in the template text only; a substituted value is copied out and
/// never scanned again. (Folding `str::replace` over the placeholders re-expanded a `{email}` that
/// the subject itself contained: `x{email}y` searched `uid=xx{email}yy`, and a 16 KB subject grew
/// the filter geometrically until the process aborted.) The output is at most
/// `template.len() + placeholders × 3 × subject.len()` bytes: linear in the subject.
fn render_filter(template: &str, subject: &str) -> String {
    let escaped = escape_filter_value(subject);
    let mut out = String::with_capacity(template.len() + 2 * escaped.len());
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        match PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) {
            Some(p) => {
                out.push_str(&escaped);
                rest = &tail[p.len()..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// RFC 4515 §3 escaping of an assertion value: `\`, `*`, `(`, `)` and NUL become `\XX`, so user input can
/// never change the structure of a filter.
pub fn escape_filter_value(value: &str) -> String {
    ldap3::ldap_escape(value).into_owned()
}

impl LdapConfig {
    /// Check every value without connecting; report each problem with its key path.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        self.validate_flavor(path, LdapFlavor::OpenLdap, problems)
    }

    /// [`LdapConfig::validate`] for a given flavor (the default filter differs).
    pub fn validate_flavor(&self, path: &str, flavor: LdapFlavor, problems: &mut Vec<Problem>) {
        let tls = self.url.starts_with("ldaps://");
        if !(tls || self.url.starts_with("ldap://")) {
            problems.push(Problem::new(
                format!("{path}.url"),
                format!("`{}` must start with ldaps:// or ldap://", self.url),
            ));
        } else {
            let rest = self.url.split_once("://").map(|(_, r)| r).unwrap_or("");
            if rest.split('/').next().unwrap_or("").is_empty() {
                problems.push(Problem::new(
                    format!("{path}.url"),
                    format!("`{}` names no host", self.url),
                ));
            }
            if tls && self.starttls {
                problems.push(Problem::new(
                    format!("{path}.starttls"),
                    "starttls applies to ldap:// URLs; an ldaps:// URL is already TLS: remove one",
                ));
            }
            if !tls && !self.starttls && !self.allow_plaintext && !is_loopback_host(&self.url) {
                problems.push(Problem::new(
                    format!("{path}.url"),
                    format!(
                        "`{}` would send the bind password in cleartext: use ldaps://, set starttls = true, \
                         or (on a trusted network only) allow_plaintext = true",
                        self.url
                    ),
                ));
            }
        }
        if self.ca_file.is_some() && !tls && !self.starttls {
            problems.push(Problem::new(
                format!("{path}.ca_file"),
                "a CA file only applies to TLS: use an ldaps:// url or starttls = true",
            ));
        }
        for (key, dn) in [
            ("bind_dn", Some(&self.bind_dn)),
            ("base_dn", Some(&self.base_dn)),
            ("group_base_dn", self.group_base_dn.as_ref()),
        ] {
            if let Some(dn) = dn
                && (dn.trim().is_empty() || !dn.contains('='))
            {
                problems.push(Problem::new(
                    format!("{path}.{key}"),
                    format!("`{dn}` is not a DN (expected e.g. `ou=people,dc=example,dc=org`)"),
                ));
            }
        }
        let template = self
            .user_filter
            .as_deref()
            .unwrap_or(flavor.default_user_filter());
        if let Err(why) = check_filter_template(template) {
            problems.push(Problem::new(format!("{path}.user_filter"), why));
        }
        super::validate_limits(
            path,
            self.timeout,
            self.concurrency,
            self.max_attempts,
            problems,
        );
    }
}

fn check_filter_template(template: &str) -> Result<(), String> {
    if !PLACEHOLDERS.iter().any(|p| template.contains(p)) {
        return Err(format!(
            "`{template}` uses none of {{username}}, {{email}}, {{subject}}: it would match the same entries for every subject"
        ));
    }
    let without = render_filter(template, "");
    if let Some(start) = without.find('{')
        && without[start..].contains('}')
    {
        return Err(format!(
            "`{template}` has an unknown placeholder; use {{username}}, {{email}} or {{subject}}"
        ));
    }
    ldap3::parse_filter(render_filter(template, "probe")).map_err(|()| {
        format!("`{template}` is not a valid LDAP filter (RFC 4515), e.g. `(uid={{username}})`")
    })?;
    Ok(())
}

/// What both flavors can do (LDAP has no sessions or tokens to revoke).
pub const SUPPORTED: [Operation; 4] = [
    Operation::DisableAccount,
    Operation::EnableAccount,
    Operation::RemoveGroupMemberships,
    Operation::RestoreGroupMemberships,
];

/// Validate, resolve the bind password, and build the connector.
pub fn build(
    name: &str,
    cfg: &LdapConfig,
    flavor: LdapFlavor,
) -> Result<Arc<dyn Connector>, Vec<Problem>> {
    let path = format!("connectors.{name}");
    let mut problems = Vec::new();
    cfg.validate_flavor(&path, flavor, &mut problems);
    let password = match cfg.bind_password.resolve() {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push(Problem::new(format!("{path}.bind_password"), e));
            None
        }
    };
    let tls_config = match &cfg.ca_file {
        None => None,
        Some(file) => match tls_config_trusting(file) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(Problem::new(format!("{path}.ca_file"), e));
                None
            }
        },
    };
    match password {
        Some(password) if problems.is_empty() => Ok(Arc::new(LdapConnector {
            tls_config,
            name: name.to_string(),
            flavor,
            user_filter: cfg
                .user_filter
                .clone()
                .unwrap_or_else(|| flavor.default_user_filter().to_string()),
            group_base_dn: cfg
                .group_base_dn
                .clone()
                .unwrap_or_else(|| cfg.base_dn.clone()),
            permits: Semaphore::new(cfg.concurrency.max(1)),
            cfg: cfg.clone(),
            password,
        })),
        _ => Err(problems),
    }
}

/// A rustls client config trusting exactly the CA certificates in `file`. The ring provider is named
/// explicitly so this never depends on which provider happens to be the process default.
fn tls_config_trusting(file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("cannot read CA file `{}`: {e}", file.display()))?;
    for cert in certs {
        let cert =
            cert.map_err(|e| format!("CA file `{}` is not valid PEM: {e}", file.display()))?;
        roots.add(cert).map_err(|e| {
            format!(
                "CA file `{}` holds an unusable certificate: {e}",
                file.display()
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!("CA file `{}` holds no certificate", file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why an LDAP step failed. Mapped to an [`Outcome`] by [`LdapError::outcome`].
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// The server answered with a non-success result code.
    #[error("LDAP {op} on `{target}` failed: {code} ({rc}){}", if text.is_empty() { String::new() } else { format!(": {text}") })]
    Result {
        op: &'static str,
        target: String,
        rc: u32,
        code: &'static str,
        text: String,
    },
    /// Connecting, TLS, or the request itself failed before any answer.
    #[error("LDAP {op} on `{target}` failed: {source}")]
    Transport {
        op: &'static str,
        target: String,
        #[source]
        source: ldap3::LdapError,
    },
    /// The subject matched several entries.
    #[error(
        "subject `{subject}` matches {count} entries under `{base}` (filter `{filter}`); refusing to act on an ambiguous subject"
    )]
    Ambiguous {
        subject: String,
        count: usize,
        base: String,
        filter: String,
    },
    /// The subject was refused before any filter was built (control characters, too long).
    #[error("subject refused: {0}")]
    Subject(#[from] crate::identity::SubjectError),
    /// An attribute held something we cannot interpret.
    #[error("entry `{dn}` has an unreadable {attr} value `{value}`")]
    BadValue {
        dn: String,
        attr: &'static str,
        value: String,
    },
}

/// RFC 4511 Appendix A result code names (the ones worth naming).
fn rc_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        10 => "referral",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        65 => "objectClassViolation",
        68 => "entryAlreadyExists",
        80 => "other",
        _ => "error",
    }
}

impl LdapError {
    fn from_ldap(op: &'static str, target: &str, e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::LdapResult { result } => LdapError::Result {
                op,
                target: target.to_string(),
                rc: result.rc,
                code: rc_name(result.rc),
                text: result.text,
            },
            source => LdapError::Transport {
                op,
                target: target.to_string(),
                source,
            },
        }
    }

    /// The result code, when the server answered.
    pub fn rc(&self) -> Option<u32> {
        match self {
            LdapError::Result { rc, .. } => Some(*rc),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: lost connections, timeouts, a busy or unavailable
    /// server, a concurrent change. Credentials, permissions, TLS trust and bad config do not heal.
    pub fn is_retryable(&self) -> bool {
        match self {
            LdapError::Result { rc, .. } => matches!(rc, 3 | 16 | 51 | 52 | 80),
            LdapError::Transport { source, .. } => match source {
                ldap3::LdapError::Io { source } => {
                    // rustls reports certificate and handshake failures as InvalidData.
                    source.kind() != std::io::ErrorKind::InvalidData
                }
                ldap3::LdapError::Timeout { .. }
                | ldap3::LdapError::OpSend { .. }
                | ldap3::LdapError::ResultRecv { .. }
                | ldap3::LdapError::IdScrubSend { .. }
                | ldap3::LdapError::MiscSend { .. }
                | ldap3::LdapError::EndOfStream => true,
                _ => false,
            },
            LdapError::Ambiguous { .. } | LdapError::BadValue { .. } | LdapError::Subject(_) => {
                false
            }
        }
    }

    /// What an operator should do about a terminal failure.
    pub fn fix(&self) -> Option<&'static str> {
        match self {
            LdapError::Result { rc, .. } => match rc {
                49 => Some(
                    "the server refused bind_dn/bind_password (invalidCredentials): check both, and that the service account is not itself locked",
                ),
                50 => Some(
                    "the bind DN lacks permission: grant the ACLs listed in docs/connectors/ldap.md",
                ),
                8 | 13 | 48 => Some(
                    "the server requires a protected connection: use an ldaps:// url or starttls = true",
                ),
                10 => Some(
                    "the server referred elsewhere: point url at a server that holds base_dn (for AD, a DC of that domain)",
                ),
                32 => Some("base_dn or group_base_dn does not exist on this server"),
                4 => Some("the search hit a size limit: narrow base_dn or user_filter"),
                65 => Some(
                    "the group would be left without a required member (groupOfNames needs one): add a placeholder member",
                ),
                _ => None,
            },
            LdapError::Transport { source, .. } => match source {
                ldap3::LdapError::Io { source }
                    if source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    Some(
                        "TLS handshake failed: make the server certificate trusted (system store or SSL_CERT_FILE) and its name match the url host",
                    )
                }
                ldap3::LdapError::UrlParsing { .. } | ldap3::LdapError::UnknownScheme(_) => {
                    Some("fix url: ldaps://host:636 or ldap://host:389")
                }
                _ => None,
            },
            LdapError::Ambiguous { .. } => Some(
                "make user_filter match exactly one entry (e.g. search a unique attribute), or name the subject precisely",
            ),
            LdapError::BadValue { .. } | LdapError::Subject(_) => None,
        }
    }

    /// The outcome the executor should see.
    pub fn outcome(&self) -> Outcome {
        let reason = match self.fix() {
            Some(fix) => format!("{self}; fix: {fix}"),
            None => self.to_string(),
        };
        if self.is_retryable() {
            Outcome::Retry {
                after: None,
                reason,
            }
        } else {
            Outcome::Failed { reason }
        }
    }
}

/// The connector instance.
pub struct LdapConnector {
    name: String,
    flavor: LdapFlavor,
    cfg: LdapConfig,
    password: SecretString,
    /// Set when `ca_file` is configured; otherwise ldap3 trusts the system store.
    tls_config: Option<Arc<rustls::ClientConfig>>,
    user_filter: String,
    group_base_dn: String,
    /// Bounds open connections to the directory.
    permits: Semaphore,
}

/// A user as found by the user filter.
struct User {
    dn: String,
    attrs: SearchEntry,
}

impl User {
    fn first(&self, attr: &str) -> Option<&str> {
        first_value(&self.attrs, attr)
    }
}

fn first_value<'a>(entry: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

fn set<S: Into<String>>(v: S) -> HashSet<String> {
    HashSet::from([v.into()])
}

/// One group membership: the group, the attribute holding the user, and the value there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
struct Membership {
    group: String,
    attribute: String,
    value: String,
}

fn result(
    outcome: Outcome,
    pre_state: Option<Value>,
    summary: impl Into<String>,
) -> OperationResult {
    OperationResult {
        outcome,
        pre_state,
        summary: summary.into(),
    }
}

fn failed(reason: impl Into<String>) -> OperationResult {
    OperationResult::new(
        Outcome::Failed {
            reason: reason.into(),
        },
        "",
    )
}

impl LdapConnector {
    /// Open a connection and bind as the service account. One connection per operation: containment
    /// is rare and latency-tolerant, and a fresh bind never acts on a half-broken pooled connection.
    async fn session(&self) -> Result<Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls_config {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| LdapError::from_ldap("connect", &self.cfg.url, e))?;
        let url = self.cfg.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(url = %url, error = %e, "LDAP connection ended with an error");
            }
        });
        ldap.with_timeout(self.cfg.timeout)
            .simple_bind(&self.cfg.bind_dn, self.password.expose_secret())
            .await
            .and_then(|r| r.success())
            .map_err(|e| LdapError::from_ldap("bind", &self.cfg.bind_dn, e))?;
        Ok(ldap)
    }

    /// Search a subtree; continuation references (AD's referrals to other partitions) are skipped.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: Vec<&str>,
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let (entries, _) = ldap
            .with_timeout(self.cfg.timeout)
            .search(base, scope, filter, attrs)
            .await
            .and_then(|r| r.success())
            .map_err(|e| LdapError::from_ldap("search", base, e))?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect())
    }

    async fn modify(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        mods: Vec<Mod<String>>,
    ) -> Result<(), LdapError> {
        ldap.with_timeout(self.cfg.timeout)
            .modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| LdapError::from_ldap("modify", dn, e))
    }

    /// Resolve the subject to exactly one entry, or none.
    async fn find_user(
        &self,
        ldap: &mut Ldap,
        subject: &str,
        attrs: Vec<&str>,
    ) -> Result<Option<User>, LdapError> {
        // The one lookup form (NFKC, controls refused, bounded length): what the guards checked.
        let subject = crate::identity::lookup_form(subject)?;
        let subject = subject.as_ref();
        if subject.is_empty() {
            return Ok(None);
        }
        let filter = render_filter(&self.user_filter, subject);
        let mut found = self
            .search(ldap, &self.cfg.base_dn, Scope::Subtree, &filter, attrs)
            .await?;
        match found.len() {
            0 => Ok(None),
            1 => {
                let attrs = found.remove(0);
                Ok(Some(User {
                    dn: attrs.dn.clone(),
                    attrs,
                }))
            }
            count => Err(LdapError::Ambiguous {
                subject: subject.to_string(),
                count,
                base: self.cfg.base_dn.clone(),
                filter,
            }),
        }
    }

    async fn run(&self, ldap: &mut Ldap, req: &OperationRequest) -> OperationResult {
        let r = match (req.operation, self.flavor) {
            (Operation::DisableAccount, LdapFlavor::OpenLdap) => self.lock(ldap, req).await,
            (Operation::EnableAccount, LdapFlavor::OpenLdap) => self.unlock(ldap, req).await,
            (Operation::DisableAccount, LdapFlavor::ActiveDirectory) => {
                self.set_disabled_bit(ldap, req, true).await
            }
            (Operation::EnableAccount, LdapFlavor::ActiveDirectory) => {
                self.set_disabled_bit(ldap, req, false).await
            }
            (Operation::RemoveGroupMemberships, _) => {
                return self.remove_groups(ldap, req).await;
            }
            (Operation::RestoreGroupMemberships, _) => {
                return self.restore_groups(ldap, req).await;
            }
            (op, _) => return failed(format!("{op} is not supported by LDAP connectors")),
        };
        r.unwrap_or_else(|e| OperationResult::new(e.outcome(), ""))
    }

    /// OpenLDAP: ppolicy permanent lock.
    async fn lock(
        &self,
        ldap: &mut Ldap,
        req: &OperationRequest,
    ) -> Result<OperationResult, LdapError> {
        let Some(user) = self.find_user(ldap, &req.subject, vec![LOCK_ATTR]).await? else {
            return Ok(OperationResult::new(Outcome::NotFound, "no matching entry"));
        };
        let current = user.first(LOCK_ATTR).map(str::to_string);
        // A retry keeps the pre-state of the first attempt: by now the lock may be ours.
        let pre = req
            .pre_state
            .clone()
            .unwrap_or_else(|| json!({ "dn": user.dn, LOCK_ATTR: current }));
        if current.as_deref() == Some(PERMANENT_LOCK) {
            return Ok(result(
                Outcome::AlreadyDone,
                Some(pre),
                format!("{} already permanently locked", user.dn),
            ));
        }
        self.modify(
            ldap,
            &user.dn,
            vec![Mod::Replace(LOCK_ATTR.to_string(), set(PERMANENT_LOCK))],
        )
        .await?;
        Ok(result(
            Outcome::Done,
            Some(pre),
            format!("locked {} ({LOCK_ATTR}={PERMANENT_LOCK})", user.dn),
        ))
    }

    /// OpenLDAP: put `pwdAccountLockedTime` back as recorded (absent unless it was set before).
    async fn unlock(
        &self,
        ldap: &mut Ldap,
        req: &OperationRequest,
    ) -> Result<OperationResult, LdapError> {
        let Some(user) = self.find_user(ldap, &req.subject, vec![LOCK_ATTR]).await? else {
            return Ok(OperationResult::new(Outcome::NotFound, "no matching entry"));
        };
        let current = user.first(LOCK_ATTR).map(str::to_string);
        let desired = req
            .pre_state
            .as_ref()
            .and_then(|p| p.get(LOCK_ATTR))
            .and_then(Value::as_str)
            .map(str::to_string);
        let pre = json!({ "dn": user.dn, LOCK_ATTR: current });
        if current == desired {
            return Ok(result(
                Outcome::AlreadyDone,
                Some(pre),
                format!("{} already in the recorded lock state", user.dn),
            ));
        }
        let change = match &desired {
            None => Mod::Delete(LOCK_ATTR.to_string(), HashSet::new()),
            Some(v) => Mod::Replace(LOCK_ATTR.to_string(), set(v.as_str())),
        };
        match self.modify(ldap, &user.dn, vec![change]).await {
            // Removed by someone else between our read and write: the desired state.
            Err(e) if desired.is_none() && e.rc() == Some(16) => {}
            other => other?,
        }
        Ok(result(
            Outcome::Done,
            Some(pre),
            match desired {
                None => format!("unlocked {}", user.dn),
                Some(v) => format!("restored {} {LOCK_ATTR}={v}", user.dn),
            },
        ))
    }

    /// AD: set or restore the ACCOUNTDISABLE bit in one atomic delete-old/add-new modify.
    async fn set_disabled_bit(
        &self,
        ldap: &mut Ldap,
        req: &OperationRequest,
        disable: bool,
    ) -> Result<OperationResult, LdapError> {
        let Some(user) = self.find_user(ldap, &req.subject, vec![UAC_ATTR]).await? else {
            return Ok(OperationResult::new(Outcome::NotFound, "no matching entry"));
        };
        let raw = user.first(UAC_ATTR).unwrap_or("").to_string();
        // AD stores a 32-bit flag set; some tools show it signed.
        let current = raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(v))
            .map(|v| v as u32)
            .ok_or_else(|| LdapError::BadValue {
                dn: user.dn.clone(),
                attr: UAC_ATTR,
                value: raw.clone(),
            })?;
        let want_bit = if disable {
            true
        } else {
            // Restore the bit as recorded (set if the account was disabled before we acted).
            req.pre_state
                .as_ref()
                .and_then(|p| p.get(UAC_ATTR))
                .and_then(Value::as_u64)
                .is_some_and(|v| v as u32 & ACCOUNTDISABLE != 0)
        };
        let desired = if want_bit {
            current | ACCOUNTDISABLE
        } else {
            current & !ACCOUNTDISABLE
        };
        let pre = if disable {
            req.pre_state
                .clone()
                .unwrap_or_else(|| json!({ "dn": user.dn, UAC_ATTR: current }))
        } else {
            json!({ "dn": user.dn, UAC_ATTR: current })
        };
        if desired == current {
            return Ok(result(
                Outcome::AlreadyDone,
                Some(pre),
                format!("{} already has {UAC_ATTR}={current}", user.dn),
            ));
        }
        // Only the ACCOUNTDISABLE bit changes; other flags (set since by admins) are kept.
        self.modify(
            ldap,
            &user.dn,
            vec![
                Mod::Delete(UAC_ATTR.to_string(), set(raw)),
                Mod::Add(UAC_ATTR.to_string(), set(desired.to_string())),
            ],
        )
        .await?;
        Ok(result(
            Outcome::Done,
            Some(pre),
            format!("{} {UAC_ATTR} {current} -> {desired}", user.dn),
        ))
    }

    /// The (attribute, value) pairs by which a group can hold this user.
    fn member_probes(&self, user: &User) -> Vec<(&'static str, String)> {
        let mut probes = vec![("member", user.dn.clone())];
        if self.flavor == LdapFlavor::OpenLdap {
            probes.push(("uniqueMember", user.dn.clone()));
            if let Some(uid) = user.first("uid") {
                probes.push(("memberUid", uid.to_string()));
            }
        }
        probes
    }

    async fn find_memberships(
        &self,
        ldap: &mut Ldap,
        user: &User,
    ) -> Result<Vec<Membership>, LdapError> {
        let mut out = Vec::new();
        for (attr, value) in self.member_probes(user) {
            let filter = format!("({attr}={})", escape_filter_value(&value));
            // "1.1": no attributes; large groups' member lists are never transferred.
            for group in self
                .search(
                    ldap,
                    &self.group_base_dn,
                    Scope::Subtree,
                    &filter,
                    vec!["1.1"],
                )
                .await?
            {
                out.push(Membership {
                    group: group.dn,
                    attribute: attr.to_string(),
                    value: value.clone(),
                });
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn remove_groups(&self, ldap: &mut Ldap, req: &OperationRequest) -> OperationResult {
        let user = match self.find_user(ldap, &req.subject, vec!["uid"]).await {
            Ok(Some(u)) => u,
            Ok(None) => return OperationResult::new(Outcome::NotFound, "no matching entry"),
            Err(e) => return OperationResult::new(e.outcome(), ""),
        };
        let found = match self.find_memberships(ldap, &user).await {
            Ok(f) => f,
            Err(e) => return OperationResult::new(e.outcome(), ""),
        };
        // A retry after a partial removal finds fewer groups: keep what the earlier attempt recorded.
        let mut all: BTreeSet<Membership> =
            memberships_of(req.pre_state.as_ref()).into_iter().collect();
        all.extend(found.iter().cloned());
        let pre = pre_state_of(&user.dn, &all);
        if found.is_empty() {
            return result(
                Outcome::AlreadyDone,
                Some(pre),
                format!("{} is in no group under {}", user.dn, self.group_base_dn),
            );
        }
        let mut refused = Vec::new();
        let mut removed = 0usize;
        for m in &found {
            let change = Mod::Delete(m.attribute.clone(), set(m.value.as_str()));
            match self.modify(ldap, &m.group, vec![change]).await {
                Ok(()) => removed += 1,
                // Gone already (raced with another change, or the group was deleted).
                Err(e) if matches!(e.rc(), Some(16 | 32)) => {}
                Err(e) if e.is_retryable() => {
                    return result(e.outcome(), Some(pre), format!("removed {removed} so far"));
                }
                Err(e) => refused.push(e.outcome_reason()),
            }
        }
        if !refused.is_empty() {
            return result(
                Outcome::Failed {
                    reason: refused.join("; "),
                },
                Some(pre),
                format!("removed {removed}, refused {}", refused.len()),
            );
        }
        result(
            Outcome::Done,
            Some(pre),
            format!("removed {} from {removed} group membership(s)", user.dn),
        )
    }

    async fn restore_groups(&self, ldap: &mut Ldap, req: &OperationRequest) -> OperationResult {
        let user = match self.find_user(ldap, &req.subject, vec!["uid"]).await {
            Ok(Some(u)) => u,
            Ok(None) => return OperationResult::new(Outcome::NotFound, "no matching entry"),
            Err(e) => return OperationResult::new(e.outcome(), ""),
        };
        let Some(pre) = req.pre_state.as_ref() else {
            return failed(
                "restore_group_memberships needs the pre-state recorded by remove_group_memberships",
            );
        };
        let mut wanted = memberships_of(Some(pre));
        if wanted.is_empty() {
            // Only `groups` given (e.g. by a responder): pick the attribute from each group's class.
            let groups: Vec<String> = pre
                .get("groups")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for group in groups {
                match self.membership_for(ldap, &user, &group).await {
                    Ok(Some(m)) => wanted.push(m),
                    Ok(None) => {}
                    Err(e) if e.rc() == Some(32) => {}
                    Err(e) => return OperationResult::new(e.outcome(), ""),
                }
            }
        }
        let mut added = 0usize;
        let mut missing = Vec::new();
        let mut refused = Vec::new();
        for m in &wanted {
            // The user may have been renamed since: DN-valued memberships use the current DN.
            let value = if m.attribute.eq_ignore_ascii_case("memberUid") {
                user.first("uid").unwrap_or(&m.value).to_string()
            } else {
                user.dn.clone()
            };
            let change = Mod::Add(m.attribute.clone(), set(value));
            match self.modify(ldap, &m.group, vec![change]).await {
                Ok(()) => added += 1,
                // Already a member (OpenLDAP: 20; AD: 68).
                Err(e) if matches!(e.rc(), Some(20 | 68)) => {}
                Err(e) if e.rc() == Some(32) => missing.push(m.group.clone()),
                Err(e) if e.is_retryable() => {
                    return OperationResult::new(e.outcome(), format!("re-added {added} so far"));
                }
                Err(e) => refused.push(e.outcome_reason()),
            }
        }
        if !missing.is_empty() {
            refused.push(format!(
                "these groups no longer exist: {}",
                missing.join(", ")
            ));
        }
        if !refused.is_empty() {
            return OperationResult::new(
                Outcome::Failed {
                    reason: refused.join("; "),
                },
                format!("re-added {added}"),
            );
        }
        let outcome = if added == 0 {
            Outcome::AlreadyDone
        } else {
            Outcome::Done
        };
        OperationResult::new(
            outcome,
            format!(
                "re-added {} to {added} of {} group membership(s)",
                user.dn,
                wanted.len()
            ),
        )
    }

    async fn membership_for(
        &self,
        ldap: &mut Ldap,
        user: &User,
        group: &str,
    ) -> Result<Option<Membership>, LdapError> {
        let entries = self
            .search(
                ldap,
                group,
                Scope::Base,
                "(objectClass=*)",
                vec!["objectClass"],
            )
            .await?;
        let Some(entry) = entries.first() else {
            return Ok(None);
        };
        let classes: Vec<String> = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("objectClass"))
            .flat_map(|(_, v)| v.iter().map(|c| c.to_ascii_lowercase()))
            .collect();
        let has = |c: &str| classes.iter().any(|x| x == c);
        let (attribute, value) = if has("groupofuniquenames") {
            ("uniqueMember", user.dn.clone())
        } else if has("posixgroup") && !has("groupofnames") {
            match user.first("uid") {
                Some(uid) => ("memberUid", uid.to_string()),
                None => return Ok(None),
            }
        } else {
            ("member", user.dn.clone())
        };
        Ok(Some(Membership {
            group: group.to_string(),
            attribute: attribute.to_string(),
            value,
        }))
    }
}

impl LdapError {
    fn outcome_reason(&self) -> String {
        match self.outcome() {
            Outcome::Failed { reason } | Outcome::Retry { reason, .. } => reason,
            _ => self.to_string(),
        }
    }
}

/// The memberships recorded in a pre-state (`{"memberships": [{group, attribute, value}]}`).
fn memberships_of(pre: Option<&Value>) -> Vec<Membership> {
    pre.and_then(|p| p.get("memberships"))
        .and_then(|m| serde_json::from_value::<Vec<Membership>>(m.clone()).ok())
        .unwrap_or_default()
}

/// Pre-state of `remove_group_memberships`: `groups` (DNs, for people and other tools) and
/// `memberships` (attribute and value, for an exact restore).
fn pre_state_of(dn: &str, all: &BTreeSet<Membership>) -> Value {
    let groups: BTreeSet<&str> = all.iter().map(|m| m.group.as_str()).collect();
    json!({ "dn": dn, "groups": groups, "memberships": all })
}

#[async_trait]
impl Connector for LdapConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports(&self, op: Operation) -> bool {
        SUPPORTED.contains(&op)
    }

    async fn execute(&self, request: &OperationRequest) -> OperationResult {
        if !self.supports(request.operation) {
            return failed(format!(
                "{} is not supported by the {} connector `{}` (LDAP has no sessions to revoke; use the IdP's connector)",
                request.operation,
                self.flavor.type_name(),
                self.name
            ));
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return failed("connector is shutting down");
        };
        let mut ldap = match self.session().await {
            Ok(l) => l,
            Err(e) => return OperationResult::new(e.outcome(), ""),
        };
        let out = self.run(&mut ldap, request).await;
        let _ = ldap.unbind().await;
        out
    }

    fn lists_groups(&self) -> bool {
        true
    }

    /// Group DNs of every group under `group_base_dn` holding the subject (the same probes as
    /// `remove_group_memberships`); the protected-groups guard matches a DN by its first RDN value.
    async fn group_memberships(&self, subject: &str) -> Memberships {
        let Ok(_permit) = self.permits.acquire().await else {
            return Memberships::Unavailable("connector is shutting down".into());
        };
        let mut ldap = match self.session().await {
            Ok(l) => l,
            Err(e) => return Memberships::Unavailable(e.to_string()),
        };
        let out = match self.find_user(&mut ldap, subject, vec!["uid"]).await {
            Ok(None) => Memberships::NotFound,
            Ok(Some(user)) => match self.find_memberships(&mut ldap, &user).await {
                Ok(found) => {
                    let mut groups: Vec<String> = found.into_iter().map(|m| m.group).collect();
                    groups.dedup();
                    Memberships::Groups(groups)
                }
                Err(e) => Memberships::Unavailable(e.to_string()),
            },
            Err(e) => Memberships::Unavailable(e.to_string()),
        };
        let _ = ldap.unbind().await;
        out
    }

    /// Every entry the user filter finds for `subject`, by its naming attributes (`uid`, `mail`,
    /// `sAMAccountName`, `userPrincipalName`) and DN. All matches are reported, not only a unique
    /// one: an ambiguous subject fails at execution anyway, and a protected entry among the matches
    /// must stop it before that.
    async fn resolve_account(&self, subject: &str) -> Resolution {
        let subject = match crate::identity::lookup_form(subject) {
            Ok(s) if s.is_empty() => return Resolution::NotFound,
            Ok(s) => s.into_owned(),
            // Execution refuses it too; nothing is resolved.
            Err(_) => return Resolution::NotFound,
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return Resolution::Unavailable("connector is shutting down".into());
        };
        let mut ldap = match self.session().await {
            Ok(l) => l,
            Err(e) => return Resolution::Unavailable(e.to_string()),
        };
        let filter = render_filter(&self.user_filter, &subject);
        let found = self
            .search(
                &mut ldap,
                &self.cfg.base_dn,
                Scope::Subtree,
                &filter,
                NAMING_ATTRS.to_vec(),
            )
            .await;
        let _ = ldap.unbind().await;
        match found {
            Ok(entries) if entries.is_empty() => Resolution::NotFound,
            Ok(entries) => Resolution::Account(
                entries
                    .iter()
                    .flat_map(|e| {
                        let values = e
                            .attrs
                            .iter()
                            .filter(|(k, _)| NAMING_ATTRS.iter().any(|a| a.eq_ignore_ascii_case(k)))
                            .flat_map(|(_, v)| v.iter().cloned());
                        std::iter::once(e.dn.clone()).chain(values)
                    })
                    .collect(),
            ),
            Err(e) => Resolution::Unavailable(e.to_string()),
        }
    }

    async fn check(&self) -> CheckReport {
        let report = |ok: bool, detail: String, fix: Option<&str>| CheckReport {
            connector: self.name.clone(),
            ok,
            detail,
            fix: fix.map(str::to_string),
        };
        let mut ldap = match self.session().await {
            Ok(l) => l,
            Err(e) => return report(false, e.to_string(), e.fix()),
        };
        let mut bases = vec![self.cfg.base_dn.as_str()];
        if self.group_base_dn != self.cfg.base_dn {
            bases.push(&self.group_base_dn);
        }
        for base in bases {
            match self
                .search(&mut ldap, base, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
            {
                Ok(found) if found.is_empty() => {
                    let _ = ldap.unbind().await;
                    return report(
                        false,
                        format!("`{base}` is not visible to {}", self.cfg.bind_dn),
                        Some("grant the bind DN read on the entry (see docs/connectors/ldap.md)"),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ldap.unbind().await;
                    return report(false, e.to_string(), e.fix());
                }
            }
        }
        // The server must accept the user filter too (read-only: a subject nobody has).
        let probe = self
            .find_user(&mut ldap, "deprovd-preflight-probe", vec!["1.1"])
            .await;
        let _ = ldap.unbind().await;
        match probe {
            Ok(_) => report(
                true,
                format!(
                    "bound as {}; {} and {} readable; user_filter accepted (write permission cannot be checked without writing)",
                    self.cfg.bind_dn, self.cfg.base_dn, self.group_base_dn
                ),
                None,
            ),
            Err(e) => report(false, e.to_string(), e.fix()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_src: &str) -> LdapConfig {
        toml::from_str(toml_src).expect("valid test config")
    }

    const MINIMAL: &str = r#"
        url = "ldaps://ldap.example.org"
        bind_dn = "cn=deprovd,ou=services,dc=example,dc=org"
        bind_password = "env:LDAP_PW"
        base_dn = "ou=people,dc=example,dc=org"
    "#;

    fn problems(c: &LdapConfig) -> Vec<Problem> {
        let mut p = Vec::new();
        c.validate("connectors.dir", &mut p);
        p
    }

    #[test]
    fn escaping_neutralises_filter_metacharacters() {
        assert_eq!(escape_filter_value("*)(uid=*"), r"\2a\29\28uid=\2a");
        assert_eq!(escape_filter_value(r"a\b"), r"a\5cb");
        assert_eq!(escape_filter_value("nul\0"), r"nul\00");
        assert_eq!(
            render_filter("(|(uid={username})(mail={email}))", "*"),
            r"(|(uid=\2a)(mail=\2a))"
        );
    }

    #[test]
    fn a_placeholder_inside_the_subject_is_rendered_literally_once() {
        // Before the one-pass renderer, the `{email}` inside the subject was expanded again:
        // `(uid=xx{email}yy)`.
        assert_eq!(
            render_filter("(uid={username})", "x{email}y"),
            "(uid=x{email}y)"
        );
        assert_eq!(
            render_filter("(|(uid={username})(mail={email}))", "{subject}{username}"),
            "(|(uid={subject}{username})(mail={subject}{username}))"
        );
        // Braces in the template that are no placeholder stay as they are.
        assert_eq!(render_filter("(cn={x}{subject})", "a"), "(cn={x}a)");
    }

    #[test]
    fn a_long_subject_makes_a_filter_of_linear_size() {
        let template = LdapFlavor::ActiveDirectory.default_user_filter();
        let subject = "{email}".repeat(1024 / 7);
        let filter = render_filter(template, &subject);
        // Three placeholders (`{username}` once, `{email}` twice), each replaced by the subject once.
        let placeholders = "{username}".len() + 2 * "{email}".len();
        assert_eq!(
            filter.len(),
            template.len() - placeholders + 3 * subject.len()
        );
    }

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let c = cfg(MINIMAL);
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.concurrency, 4);
        for flavor in [LdapFlavor::OpenLdap, LdapFlavor::ActiveDirectory] {
            assert!(check_filter_template(flavor.default_user_filter()).is_ok());
        }
    }

    #[test]
    fn unknown_keys_and_inline_secrets_are_refused() {
        assert!(toml::from_str::<LdapConfig>(&format!("{MINIMAL}\nbogus = 1")).is_err());
        let inline = MINIMAL.replace("env:LDAP_PW", "hunter2");
        assert!(toml::from_str::<LdapConfig>(&inline).is_err());
    }

    #[test]
    fn config_routes_through_an_internally_tagged_enum() {
        // The lead's `[connectors.<name>]` table is tagged by `type`; deny_unknown_fields must not trip on it.
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Any {
            Ldap(LdapConfig),
            ActiveDirectory(LdapConfig),
        }
        let doc = format!("type = \"active_directory\"\n{MINIMAL}");
        let Ok(Any::ActiveDirectory(ad)) = toml::from_str::<Any>(&doc) else {
            panic!("active_directory routes to LdapConfig");
        };
        assert_eq!(ad.url, "ldaps://ldap.example.org");
        let doc = format!("type = \"ldap\"\n{MINIMAL}");
        let Ok(Any::Ldap(ldap)) = toml::from_str::<Any>(&doc) else {
            panic!("ldap routes to LdapConfig");
        };
        assert_eq!(ldap.base_dn, "ou=people,dc=example,dc=org");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let c = cfg(r#"
            url = "http://ldap.example.org"
            bind_dn = "deprovd"
            bind_password = "env:LDAP_PW"
            base_dn = ""
            user_filter = "(uid=alice)"
            timeout = "0s"
            concurrency = 0
            max_attempts = 0
        "#);
        let paths: Vec<String> = problems(&c).into_iter().map(|p| p.path).collect();
        for want in [
            "url",
            "bind_dn",
            "base_dn",
            "user_filter",
            "timeout",
            "concurrency",
            "max_attempts",
        ] {
            assert!(
                paths.contains(&format!("connectors.dir.{want}")),
                "{want} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn cleartext_to_a_remote_host_needs_consent() {
        let remote = cfg(&MINIMAL.replace("ldaps://", "ldap://"));
        assert_eq!(problems(&remote).len(), 1);
        let mut starttls = remote.clone();
        starttls.starttls = true;
        assert!(problems(&starttls).is_empty());
        let mut consent = remote.clone();
        consent.allow_plaintext = true;
        assert!(problems(&consent).is_empty());
        let local = cfg(&MINIMAL.replace("ldaps://ldap.example.org", "ldap://127.0.0.1:3890"));
        assert!(problems(&local).is_empty());
        let mut both = cfg(MINIMAL);
        both.starttls = true;
        assert_eq!(problems(&both)[0].path, "connectors.dir.starttls");
    }

    #[test]
    fn filter_templates_are_checked() {
        assert!(check_filter_template("(uid={username})").is_ok());
        assert!(check_filter_template("(uid={user})").is_err());
        assert!(check_filter_template("(uid={username}").is_err());
        assert!(check_filter_template("(objectClass=*)").is_err());
    }

    #[test]
    fn build_reports_an_unset_password() {
        let mut c = cfg(MINIMAL);
        c.bind_password = SecretRef::Env("DEPROVD_TEST_LDAP_SURELY_UNSET_7f3a".into());
        let Err(problems) = build("dir", &c, LdapFlavor::OpenLdap) else {
            panic!("build must fail without a password");
        };
        assert_eq!(problems[0].path, "connectors.dir.bind_password");
    }

    #[test]
    fn result_codes_map_to_outcomes() {
        let err = |rc| LdapError::Result {
            op: "modify",
            target: "x".into(),
            rc,
            code: rc_name(rc),
            text: String::new(),
        };
        for rc in [51, 52, 3] {
            assert!(matches!(err(rc).outcome(), Outcome::Retry { .. }), "{rc}");
        }
        for rc in [49, 50, 32, 65] {
            let Outcome::Failed { reason } = err(rc).outcome() else {
                panic!("{rc} must be terminal");
            };
            assert!(reason.contains("fix:"), "{reason}");
        }
        let lost = LdapError::Transport {
            op: "bind",
            target: "x".into(),
            source: ldap3::LdapError::Io {
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            },
        };
        assert!(lost.is_retryable());
    }
}
