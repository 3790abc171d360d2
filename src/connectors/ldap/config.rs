//! `[connectors.<name>]` for the LDAP flavors: the config struct, the flavor, the user filter
//! template, and the pure validation that reports every problem before anything connects.

use std::time::Duration;

use serde::Deserialize;

use super::LdapConfigError;
use crate::config::{Problem, SecretRef};
use crate::net::is_loopback_host;

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
    #[serde(
        default = "crate::connectors::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
    /// Concurrent connections to the server at most (also the executor's lane width).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retry budget; falls back to `[executor.retry].max_attempts`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
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
pub(super) fn render_filter(template: &str, subject: &str) -> String {
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
pub(crate) fn escape_filter_value(value: &str) -> String {
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
            problems.push(Problem::new(format!("{path}.user_filter"), why.to_string()));
        }
        crate::connectors::validate_limits(
            path,
            self.timeout,
            self.concurrency,
            self.max_attempts,
            problems,
        );
    }
}

pub(super) fn check_filter_template(template: &str) -> Result<(), LdapConfigError> {
    if !PLACEHOLDERS.iter().any(|p| template.contains(p)) {
        return Err(LdapConfigError::FilterMatchesAll(template.to_string()));
    }
    let without = render_filter(template, "");
    if let Some(start) = without.find('{')
        && without[start..].contains('}')
    {
        return Err(LdapConfigError::FilterPlaceholder(template.to_string()));
    }
    ldap3::parse_filter(render_filter(template, "probe"))
        .map_err(|()| LdapConfigError::FilterSyntax(template.to_string()))?;
    Ok(())
}
