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

mod client;
mod config;
mod error;
mod operations;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use ldap3::Scope;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use super::{
    CheckReport, Connector, Memberships, Operation, OperationRequest, OperationResult, Resolution,
};
use crate::config::Problem;
use client::tls_config_trusting;
use config::render_filter;

pub use config::{LdapConfig, LdapFlavor};
use error::LdapConfigError;
pub(crate) use error::LdapError;

/// `pwdAccountLockedTime` value that ppolicy treats as "locked until an administrator unlocks".
pub const PERMANENT_LOCK: &str = "000001010000Z";
/// The ACCOUNTDISABLE bit of AD's `userAccountControl`.
pub(crate) const ACCOUNTDISABLE: u32 = 0x2;

const LOCK_ATTR: &str = "pwdAccountLockedTime";
/// The attributes naming a user, reported to the executor's protected-subject check.
const NAMING_ATTRS: [&str; 4] = ["uid", "mail", "sAMAccountName", "userPrincipalName"];
const UAC_ATTR: &str = "userAccountControl";

/// What both flavors can do (LDAP has no sessions or tokens to revoke).
pub(crate) const SUPPORTED: [Operation; 4] = [
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
            problems.push(Problem::new(format!("{path}.bind_password"), e.to_string()));
            None
        }
    };
    let tls_config = match &cfg.ca_file {
        None => None,
        Some(file) => match tls_config_trusting(file) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(Problem::new(format!("{path}.ca_file"), e.to_string()));
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

/// The connector instance.
pub(crate) struct LdapConnector {
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
            return OperationResult::failed(format!(
                "{} is not supported by the {} connector `{}` (LDAP has no sessions to revoke; use the IdP's connector)",
                request.operation,
                self.flavor.type_name(),
                self.name
            ));
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return OperationResult::failed("connector is shutting down");
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
        let failed =
            |detail: String, fix: Option<&str>| CheckReport::failed(&self.name, detail, fix);
        let mut ldap = match self.session().await {
            Ok(l) => l,
            Err(e) => return failed(e.to_string(), e.fix()),
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
                    return failed(
                        format!("`{base}` is not visible to {}", self.cfg.bind_dn),
                        Some("grant the bind DN read on the entry (see docs/connectors/ldap.md)"),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ldap.unbind().await;
                    return failed(e.to_string(), e.fix());
                }
            }
        }
        // The server must accept the user filter too (read-only: a subject nobody has).
        let probe = self
            .find_user(&mut ldap, "deprovd-preflight-probe", vec!["1.1"])
            .await;
        let _ = ldap.unbind().await;
        match probe {
            Ok(_) => CheckReport::passed(
                &self.name,
                format!(
                    "bound as {}; {} and {} readable; user_filter accepted (write permission cannot be checked without writing)",
                    self.cfg.bind_dn, self.cfg.base_dn, self.group_base_dn
                ),
            ),
            Err(e) => failed(e.to_string(), e.fix()),
        }
    }
}
