//! What each operation does to the directory: resolving the subject to one entry, locking and
//! unlocking (OpenLDAP), the ACCOUNTDISABLE bit (AD), and removing and restoring group memberships,
//! each reading before it writes and recording the pre-state for the reversal.

use std::collections::{BTreeSet, HashSet};

use ldap3::{Ldap, Mod, Scope, SearchEntry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{escape_filter_value, render_filter};
use super::{
    ACCOUNTDISABLE, LOCK_ATTR, LdapConnector, LdapError, LdapFlavor, PERMANENT_LOCK, UAC_ATTR,
};
use crate::connectors::{Operation, OperationRequest, OperationResult, Outcome};

/// A user as found by the user filter.
pub(super) struct User {
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
pub(super) struct Membership {
    pub(super) group: String,
    attribute: String,
    value: String,
}

impl LdapConnector {
    /// Resolve the subject to exactly one entry, or none.
    pub(super) async fn find_user(
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

    pub(super) async fn run(&self, ldap: &mut Ldap, req: &OperationRequest) -> OperationResult {
        let r = match (req.operation, self.flavor) {
            (Operation::DisableAccount, LdapFlavor::OpenLdap) => {
                self.set_lock(ldap, req, true).await
            }
            (Operation::EnableAccount, LdapFlavor::OpenLdap) => {
                self.set_lock(ldap, req, false).await
            }
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
            (op, _) => {
                return OperationResult::failed(format!(
                    "{op} is not supported by LDAP connectors"
                ));
            }
        };
        r.unwrap_or_else(|e| OperationResult::new(e.outcome(), ""))
    }

    /// OpenLDAP: ppolicy permanent lock (`lock`), or `pwdAccountLockedTime` put back as recorded
    /// (absent unless it was set before).
    async fn set_lock(
        &self,
        ldap: &mut Ldap,
        req: &OperationRequest,
        lock: bool,
    ) -> Result<OperationResult, LdapError> {
        let Some(user) = self.find_user(ldap, &req.subject, vec![LOCK_ATTR]).await? else {
            return Ok(OperationResult::new(Outcome::NotFound, "no matching entry"));
        };
        let current = user.first(LOCK_ATTR).map(str::to_string);
        let fresh = || json!({ "dn": user.dn, LOCK_ATTR: current });
        let (desired, pre) = if lock {
            // A retry keeps the pre-state of the first attempt: by now the lock may be ours.
            let pre = req.pre_state.clone().unwrap_or_else(fresh);
            (Some(PERMANENT_LOCK.to_string()), pre)
        } else {
            let recorded = req
                .pre_state
                .as_ref()
                .and_then(|p| p.get(LOCK_ATTR))
                .and_then(Value::as_str)
                .map(str::to_string);
            (recorded, fresh())
        };
        if current == desired {
            let detail = if lock {
                format!("{} already permanently locked", user.dn)
            } else {
                format!("{} already in the recorded lock state", user.dn)
            };
            return Ok(OperationResult::with_pre_state(
                Outcome::AlreadyDone,
                Some(pre),
                detail,
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
        Ok(OperationResult::with_pre_state(
            Outcome::Done,
            Some(pre),
            match desired {
                None => format!("unlocked {}", user.dn),
                Some(v) if lock => format!("locked {} ({LOCK_ATTR}={v})", user.dn),
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
            return Ok(OperationResult::with_pre_state(
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
        Ok(OperationResult::with_pre_state(
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

    pub(super) async fn find_memberships(
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
            return OperationResult::with_pre_state(
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
                    return OperationResult::with_pre_state(
                        e.outcome(),
                        Some(pre),
                        format!("removed {removed} so far"),
                    );
                }
                Err(e) => refused.push(e.outcome_reason()),
            }
        }
        if !refused.is_empty() {
            return OperationResult::with_pre_state(
                Outcome::Failed {
                    reason: refused.join("; "),
                },
                Some(pre),
                format!("removed {removed}, refused {}", refused.len()),
            );
        }
        OperationResult::with_pre_state(
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
            return OperationResult::failed(
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
