//! The protected-groups guard: `[guards] protected_groups` resolved through the connectors.
//!
//! Exact names and globs ([`crate::guard`]) are checked at planning, with no I/O. Group membership
//! cannot be: it lives in the identity systems. So the executor asks, right before any destructive
//! operation (see [`crate::action::Operation::is_destructive`]), every connector that can list a
//! subject's groups ([`crate::connectors::Connector::group_memberships`]: a spec's `groups` operation,
//! LDAP's member search). Membership is a property of the person, not of one target: a member of
//! `break-glass` in Okta is protected on AWS too, so *every* source is asked whatever the action's
//! connector.
//!
//! The guard fails closed. A source that cannot answer now makes the verdict
//! [`Verdict::Unknown`]; the executor then retries the action later (and, past the retry budget,
//! fails it) rather than act on a subject that might be protected. Only a definite answer from every
//! source — "not found here" or a list of groups — clears a subject.
//!
//! Verdicts are cached for [`CACHE_TTL`] per subject: an alert storm plans several actions per
//! subject on several connectors, and each would otherwise cost one lookup per source.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::GuardError;
use crate::connectors::{Connector, ConnectorSet, Memberships};

/// How long a definite verdict is reused for the same subject.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most subjects remembered; past it the cache is cleared (it is an optimisation, not a record).
const CACHE_MAX: usize = 10_000;

/// What the guard concluded about one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// In no protected group on any source that knows the subject.
    Clear,
    /// Member of `group` according to `connector`: never act.
    Protected { group: String, connector: String },
    /// Some source could not answer; act later, not now.
    Unknown(String),
}

/// The guard, built once from the config and the connector set; shared by `Arc`.
pub(crate) struct GroupGuard {
    /// Protected group names, lower-cased.
    groups: HashSet<String>,
    /// Connectors that can list group memberships, by name.
    sources: Vec<(String, Arc<dyn Connector>)>,
    cache: Mutex<HashMap<String, (Instant, Verdict)>>,
}

impl std::fmt::Debug for GroupGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupGuard")
            .field("groups", &self.groups)
            .field(
                "sources",
                &self.sources.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl GroupGuard {
    /// `None` when no group is protected. An error when groups are protected but no configured
    /// connector can list memberships: the guard could never clear anyone, or worse, never protect.
    pub(crate) fn new(
        groups: &[String],
        connectors: &ConnectorSet,
    ) -> Result<Option<Self>, GuardError> {
        let groups: HashSet<String> = groups
            .iter()
            .map(|g| g.trim().to_lowercase())
            .filter(|g| !g.is_empty())
            .collect();
        if groups.is_empty() {
            return Ok(None);
        }
        let sources: Vec<(String, Arc<dyn Connector>)> = connectors
            .iter()
            .filter(|(_, c)| c.lists_groups())
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        if sources.is_empty() {
            return Err(GuardError::NoGroupSource);
        }
        Ok(Some(Self {
            groups,
            sources,
            cache: Mutex::new(HashMap::new()),
        }))
    }

    /// Names of the connectors asked, for the startup log.
    pub(crate) fn sources(&self) -> Vec<&str> {
        self.sources.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The protected group `name` refers to, if any. A DN (`cn=Break-Glass,ou=groups,dc=…`) matches by
    /// its whole text or by its first RDN's value, so LDAP groups can be listed by their short name.
    fn protected_name(&self, name: &str) -> Option<String> {
        let lower = name.trim().to_lowercase();
        if self.groups.contains(&lower) {
            return Some(name.trim().to_string());
        }
        let rdn_value = lower
            .split(',')
            .next()
            .and_then(|rdn| rdn.split_once('='))
            .map(|(_, v)| v.trim().to_string())?;
        self.groups
            .contains(&rdn_value)
            .then(|| name.trim().to_string())
    }

    /// Ask every source about `subject` (the action's canonical subject), or reuse a recent verdict.
    pub(crate) async fn check(&self, subject: &str) -> Verdict {
        let key = subject.trim().to_lowercase();
        if let Some((at, v)) = self.cache.lock().expect("not poisoned").get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return v.clone();
        }
        let answers = futures::future::join_all(
            self.sources
                .iter()
                .map(|(name, c)| async move { (name, c.group_memberships(subject).await) }),
        )
        .await;
        let mut unknown = Vec::new();
        let mut verdict = Verdict::Clear;
        for (name, answer) in answers {
            match answer {
                Memberships::Groups(groups) => {
                    if let Some(group) = groups.iter().find_map(|g| self.protected_name(g)) {
                        verdict = Verdict::Protected {
                            group,
                            connector: name.clone(),
                        };
                        break;
                    }
                }
                Memberships::NotFound | Memberships::Unsupported => {}
                Memberships::Unavailable(reason) => unknown.push(format!("{name}: {reason}")),
            }
        }
        if verdict == Verdict::Clear && !unknown.is_empty() {
            // Never cached: the next attempt asks again.
            return Verdict::Unknown(unknown.join("; "));
        }
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), verdict.clone()));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::{CheckReport, Operation, OperationRequest, OperationResult, Outcome};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source answering from a fixed table; counts lookups.
    struct Directory {
        answer: Memberships,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl Connector for Directory {
        fn name(&self) -> &str {
            "dir"
        }
        fn supports(&self, _: Operation) -> bool {
            false
        }
        async fn execute(&self, _: &OperationRequest) -> OperationResult {
            OperationResult::new(Outcome::Done, "")
        }
        async fn check(&self) -> CheckReport {
            unreachable!()
        }
        fn lists_groups(&self) -> bool {
            !matches!(self.answer, Memberships::Unsupported)
        }
        async fn group_memberships(&self, _: &str) -> Memberships {
            self.asked.fetch_add(1, Ordering::Relaxed);
            self.answer.clone()
        }
    }

    fn set(answers: Vec<(&str, Memberships)>) -> (ConnectorSet, Vec<Arc<Directory>>) {
        let mut set = ConnectorSet::new();
        let mut dirs = Vec::new();
        for (name, answer) in answers {
            let d = Arc::new(Directory {
                answer,
                asked: AtomicUsize::new(0),
            });
            dirs.push(d.clone());
            set.insert(name.to_string(), d);
        }
        (set, dirs)
    }

    fn groups(names: &[&str]) -> Memberships {
        Memberships::Groups(names.iter().map(|s| s.to_string()).collect())
    }

    #[tokio::test]
    async fn a_member_of_a_protected_group_on_any_source_is_protected() {
        let (set, _) = set(vec![
            ("okta", groups(&["Everyone", "Break-Glass"])),
            ("ldap", Memberships::NotFound),
        ]);
        let g = GroupGuard::new(&["break-glass".into()], &set)
            .unwrap()
            .unwrap();
        assert_eq!(
            g.check("jdoe@corp.example").await,
            Verdict::Protected {
                group: "Break-Glass".into(),
                connector: "okta".into()
            }
        );
    }

    #[tokio::test]
    async fn ldap_groups_match_by_dn_or_short_name() {
        let (set, _) = set(vec![(
            "ldap",
            groups(&["cn=Tier0 Admins,ou=groups,dc=corp,dc=example"]),
        )]);
        let g = GroupGuard::new(&["tier0 admins".into()], &set)
            .unwrap()
            .unwrap();
        assert!(matches!(g.check("admin").await, Verdict::Protected { .. }));
        let g = GroupGuard::new(
            &["CN=Tier0 Admins,ou=groups,dc=corp,dc=example".into()],
            &set,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(g.check("admin").await, Verdict::Protected { .. }));
        let g = GroupGuard::new(&["tier0".into()], &set).unwrap().unwrap();
        assert_eq!(g.check("admin").await, Verdict::Clear);
    }

    #[tokio::test]
    async fn an_unanswered_source_fails_closed_and_is_not_cached() {
        let (set, dirs) = set(vec![
            ("okta", groups(&["Everyone"])),
            (
                "ldap",
                Memberships::Unavailable("connection refused".into()),
            ),
        ]);
        let g = GroupGuard::new(&["break-glass".into()], &set)
            .unwrap()
            .unwrap();
        let v = g.check("jdoe").await;
        assert_eq!(v, Verdict::Unknown("ldap: connection refused".into()));
        g.check("jdoe").await;
        assert_eq!(dirs[1].asked.load(Ordering::Relaxed), 2, "asked again");
    }

    #[tokio::test]
    async fn definite_verdicts_are_cached_per_subject() {
        let (set, dirs) = set(vec![("okta", groups(&["Everyone"]))]);
        let g = GroupGuard::new(&["break-glass".into()], &set)
            .unwrap()
            .unwrap();
        assert_eq!(g.check("jdoe@corp.example").await, Verdict::Clear);
        assert_eq!(g.check("JDoe@corp.example").await, Verdict::Clear);
        assert_eq!(dirs[0].asked.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn protected_groups_without_a_source_is_a_startup_error() {
        let (set, _) = set(vec![("aws", Memberships::Unsupported)]);
        let err = GroupGuard::new(&["break-glass".into()], &set).unwrap_err();
        assert!(
            err.to_string().contains("no configured connector can list"),
            "{err}"
        );
        assert!(GroupGuard::new(&[], &set).unwrap().is_none());
    }
}
