//! Guards: what no policy can override. Applied to every planned action, automatic or manual, after
//! planning and before the ledger.
//!
//! This module holds the pure guards — the protected-subject list and the global dry-run switch
//! ([`Guards::apply`], CPU only, run while planning) — and the blast-radius [`Breaker`], which needs
//! the shared state store and so runs when actions are recorded ([`crate::pipeline::Pipeline`]).
//! Held actions are decided on (or expire) in [`crate::approval`].
//!
//! # The blast-radius breaker
//!
//! A policy bug or a flood of bogus alerts must not be able to lock out the company. Every new
//! runnable action admits its subject into the breaker's windows — one `global` and one per
//! connector instance — in the [`StateStore`], so every replica counts the same subjects. When more
//! than `threshold` distinct subjects were admitted within `window`, the scope's breaker opens:
//! further *automatic* actions in it are recorded `awaiting_approval` (note naming the breaker)
//! instead of running, `deprovd_breaker_open{scope}` is 1, the trip is audited and
//! [`Notice::BreakerTripped`] is sent. Manual lockouts are counted (a responder locking out half the
//! company is a blast radius too) but never held: a person already decided. Reversals are neither.
//! Only an admin closes it again (`POST /v1/breaker/reset`), which also empties the window.
//!
//! Cost: one store round trip per new runnable action (one atomic script for both scopes), none when
//! the breaker is disabled.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::config::Problem;
use crate::identity::Identity;
use crate::ledger::{ActionRecord, ActionState, StateReason};

mod breaker;
pub mod groups;

pub use breaker::{Breaker, BreakerError, breaker_counts, breaker_note};

/// `[guards]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Record every action as `skipped` with note `dry_run`; call nothing. Overrides every policy.
    pub dry_run: bool,
    /// Break-glass and service accounts that are never touched: exact names or globs
    /// (`svc-*@corp.example`), matched case-insensitively against the action's subject. Matching goes
    /// through identity resolution (`[identity]`): protecting `admin@corp.example` also protects
    /// `CORP\admin` and `admin@corp.com` when those are configured aliases.
    pub protected: Vec<String>,
    /// Groups whose members are never touched (`break-glass`, `tier0-admins`), by group name,
    /// case-insensitive. Resolved at execution, through the connectors that can list a subject's
    /// group memberships: before any destructive operation the executor asks them and skips the
    /// action when the subject is in one of these groups (see [`crate::protected_groups`]).
    pub protected_groups: Vec<String>,
    /// How long a held action waits for an approver; then it is cancelled and never executes.
    #[serde(with = "humantime_serde")]
    pub approval_ttl: Duration,
    pub breaker: BreakerConfig,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            protected: Vec::new(),
            protected_groups: Vec::new(),
            approval_ttl: Duration::from_secs(24 * 3600),
            breaker: BreakerConfig::default(),
        }
    }
}

/// `[guards.breaker]` settings. On by default: the safe default for a tool that disables accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub enabled: bool,
    /// The breaker opens when *more than* this many distinct subjects are acted on within `window`.
    pub threshold: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Per connector instance: its own threshold and window (default: the ones above).
    pub connectors: BTreeMap<String, BreakerOverride>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 10,
            window: Duration::from_secs(600),
            connectors: BTreeMap::new(),
        }
    }
}

/// `[guards.breaker.connectors.<instance>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerOverride {
    #[serde(default)]
    pub threshold: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
}

/// Scope name of the breaker that counts every connector together.
pub const GLOBAL_SCOPE: &str = "global";

impl GuardConfig {
    /// Breaker overrides must name configured connectors, and no connector may be called
    /// `global` (it would share the global scope's counter and gauge).
    pub fn validate_connectors<'a>(
        &self,
        path: &str,
        connectors: impl IntoIterator<Item = &'a String>,
        problems: &mut Vec<Problem>,
    ) {
        if !self.breaker.enabled {
            return;
        }
        let names: HashSet<&String> = connectors.into_iter().collect();
        for name in self.breaker.connectors.keys() {
            if !names.contains(name) {
                problems.push(Problem::new(
                    format!("{path}.breaker.connectors.{name}"),
                    "no connector instance has this name",
                ));
            }
        }
        if names.iter().any(|n| n.as_str() == GLOBAL_SCOPE) {
            problems.push(Problem::new(
                "connectors.global",
                "`global` is the name of the breaker's all-connector scope; rename the instance",
            ));
        }
    }

    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.approval_ttl < Duration::from_secs(1) {
            problems.push(Problem::new(
                format!("{path}.approval_ttl"),
                "must be at least 1s",
            ));
        }
        let b = &self.breaker;
        let check = |p: String,
                     threshold: Option<u64>,
                     window: Option<Duration>,
                     out: &mut Vec<Problem>| {
            if threshold == Some(0) {
                out.push(Problem::new(
                    format!("{p}.threshold"),
                    "must be at least 1 (disable the breaker with `enabled = false` instead)",
                ));
            }
            if window.is_some_and(|w| w < Duration::from_secs(1)) {
                out.push(Problem::new(format!("{p}.window"), "must be at least 1s"));
            }
        };
        check(
            format!("{path}.breaker"),
            Some(b.threshold),
            Some(b.window),
            problems,
        );
        for (name, o) in &b.connectors {
            check(
                format!("{path}.breaker.connectors.{name}"),
                o.threshold,
                o.window,
                problems,
            );
        }
        for (i, p) in self.protected.iter().enumerate() {
            if p.trim().is_empty() {
                problems.push(Problem::new(
                    format!("{path}.protected[{i}]"),
                    "must not be empty",
                ));
            } else if let Err(e) = Glob::new(&p.to_lowercase()) {
                problems.push(Problem::new(
                    format!("{path}.protected[{i}]"),
                    format!("invalid glob: {e}"),
                ));
            }
        }
        for (i, g) in self.protected_groups.iter().enumerate() {
            if g.trim().is_empty() {
                problems.push(Problem::new(
                    format!("{path}.protected_groups[{i}]"),
                    "must not be empty",
                ));
            }
        }
    }
}

/// Which guard acted, for `guard_blocks_total{guard}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardHit {
    Protected,
    DryRun,
    /// The subject is a member of a `protected_groups` group (checked by the executor).
    ProtectedGroup,
    Breaker,
}

impl GuardHit {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardHit::Protected => "protected",
            GuardHit::DryRun => "dry_run",
            GuardHit::ProtectedGroup => "protected_group",
            GuardHit::Breaker => "breaker",
        }
    }
}

pub struct Guards {
    dry_run: bool,
    exact: HashSet<String>,
    globs: GlobSet,
    /// Subjects and patterns are compared in their canonical spelling as well as their own.
    identity: Identity,
}

impl Guards {
    /// Build from validated config; an invalid glob is an error naming it.
    pub fn new(cfg: &GuardConfig) -> Result<Self, String> {
        Self::with_identity(cfg, Identity::default())
    }

    /// As [`new`](Self::new), matching through `identity`: each protected name or pattern is kept in
    /// its own spelling and in its canonical one, and a subject is tested in both of its own.
    pub fn with_identity(cfg: &GuardConfig, identity: Identity) -> Result<Self, String> {
        let mut exact = HashSet::new();
        let mut builder = GlobSetBuilder::new();
        for p in &cfg.protected {
            let mut forms = vec![p.trim().to_lowercase()];
            forms.extend(identity.guard_forms(p).iter().map(|f| f.to_lowercase()));
            for p in forms {
                if p.contains(['*', '?', '[', '{']) {
                    // A backslash in a glob escapes; `CORP\svc-*` means the literal down-level name.
                    let escaped = p.replace('\\', "\\\\");
                    builder.add(
                        Glob::new(&escaped).map_err(|e| format!("protected glob `{p}`: {e}"))?,
                    );
                } else {
                    exact.insert(p);
                }
            }
        }
        Ok(Self {
            dry_run: cfg.dry_run,
            exact,
            globs: builder.build().map_err(|e| e.to_string())?,
            identity,
        })
    }

    pub fn is_protected(&self, subject: &str) -> bool {
        std::iter::once(subject.trim().to_lowercase())
            .chain(
                self.identity
                    .guard_forms(subject)
                    .iter()
                    .map(|f| f.to_lowercase()),
            )
            .any(|s| self.exact.contains(&s) || self.globs.is_match(&s))
    }

    /// Apply every guard to a planned action; returns the guard that changed it, if any.
    /// Protection wins over everything: a protected subject is skipped even in approval mode.
    pub fn apply(&self, action: &mut ActionRecord) -> Option<GuardHit> {
        if self.is_protected(&action.subject) {
            action.state = ActionState::Skipped;
            action.next_attempt_at = None;
            action.note = Some("protected subject: guards never act on it".into());
            action.state_reason = Some(StateReason::Protected);
            return Some(GuardHit::Protected);
        }
        if self.dry_run && action.state != ActionState::Skipped {
            action.state = ActionState::Skipped;
            action.next_attempt_at = None;
            action.note = Some("dry_run (global switch)".into());
            action.state_reason = Some(StateReason::DryRun);
            return Some(GuardHit::DryRun);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guards(protected: &[&str], dry_run: bool) -> Guards {
        Guards::new(&GuardConfig {
            dry_run,
            protected: protected.iter().map(|s| s.to_string()).collect(),
            ..GuardConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn protected_matches_exact_and_glob_case_insensitively() {
        let g = guards(&["BreakGlass@corp.example", "svc-*@corp.example"], false);
        assert!(g.is_protected("breakglass@CORP.example"));
        assert!(g.is_protected("svc-backup@corp.example"));
        assert!(!g.is_protected("alice@corp.example"));
        assert!(!g.is_protected("svc-backup@evil.example"));
    }

    #[test]
    fn apply_types_why_it_skipped() {
        let now = chrono::Utc::now();
        let mut a = ActionRecord {
            key: "k".into(),
            origin: crate::ledger::Origin::Manual {
                request_id: "r".into(),
                actor: "alice".into(),
            },
            rule: "manual".into(),
            policy_digest: String::new(),
            subject: "breakglass@corp.example".into(),
            connector: "okta".into(),
            operation: crate::action::Operation::DisableAccount,
            reason: "test".into(),
            state: ActionState::Planned,
            attempts: 0,
            next_attempt_at: Some(now),
            last_error: None,
            response: None,
            pre_state: None,
            reverses: None,
            linked_alerts: Vec::new(),
            note: None,
            state_reason: None,
            requested_by: None,
            expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut b = a.clone();
        b.subject = "alice@corp.example".into();
        let g = guards(&["breakglass@corp.example"], true);
        assert_eq!(g.apply(&mut a), Some(GuardHit::Protected));
        assert_eq!(
            a.state_reason,
            Some(StateReason::Protected),
            "protection wins over dry run"
        );
        assert_eq!(g.apply(&mut b), Some(GuardHit::DryRun));
        assert_eq!(b.state_reason, Some(StateReason::DryRun));
        assert_eq!(b.state, ActionState::Skipped);
    }

    #[test]
    fn invalid_glob_is_reported_with_its_path() {
        let mut problems = Vec::new();
        GuardConfig {
            dry_run: false,
            protected: vec!["a[".into(), " ".into()],
            ..GuardConfig::default()
        }
        .validate("guards", &mut problems);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, "guards.protected[0]");
    }

    #[test]
    fn protection_matches_through_identity_resolution() {
        let identity = Identity::new(&crate::identity::IdentityConfig {
            domain_aliases: [
                ("CORP".to_string(), "corp.example".to_string()),
                ("corp.com".to_string(), "corp.example".to_string()),
            ]
            .into(),
            default_domain: None,
        });
        let cfg = GuardConfig {
            protected: vec![
                "admin@corp.example".into(),
                r"CORP\breakglass".into(),
                "svc-*@corp.com".into(),
            ],
            ..Default::default()
        };
        let g = Guards::with_identity(&cfg, identity).unwrap();
        for s in [
            r"CORP\admin",
            r"corp\Admin",
            "Admin@Corp.com",
            "breakglass@corp.example",
            r"CORP\BreakGlass",
            "svc-backup@corp.example",
            r"CORP\svc-backup",
        ] {
            assert!(g.is_protected(s), "{s} should be protected");
        }
        for s in [r"OTHER\admin", "admin@other.example", r"CORP\jdoe", "admin"] {
            assert!(!g.is_protected(s), "{s} should not be protected");
        }
    }

    #[test]
    fn default_domain_protects_bare_usernames_both_ways() {
        let identity = Identity::new(&crate::identity::IdentityConfig {
            default_domain: Some("corp.example".into()),
            ..Default::default()
        });
        let cfg = GuardConfig {
            protected: vec!["admin@corp.example".into(), "breakglass".into()],
            ..Default::default()
        };
        let g = Guards::with_identity(&cfg, identity).unwrap();
        for s in ["admin", "Admin", "breakglass@corp.example", "BreakGlass"] {
            assert!(g.is_protected(s), "{s} should be protected");
        }
        for s in ["jdoe", "admin@other.example", "breakglass@other.example"] {
            assert!(!g.is_protected(s), "{s} should not be protected");
        }
    }

    #[test]
    fn breaker_config_defaults_and_validation() {
        let c = GuardConfig::default();
        assert!(c.breaker.enabled);
        assert_eq!(
            (c.breaker.threshold, c.breaker.window),
            (10, Duration::from_secs(600))
        );
        assert_eq!(c.approval_ttl, Duration::from_secs(24 * 3600));
        let mut c = GuardConfig::default();
        c.breaker.threshold = 0;
        c.breaker.connectors.insert(
            "typo".into(),
            BreakerOverride {
                threshold: Some(0),
                window: None,
            },
        );
        c.approval_ttl = Duration::ZERO;
        let mut problems = Vec::new();
        c.validate("guards", &mut problems);
        c.validate_connectors(
            "guards",
            &["okta".to_string(), "global".to_string()],
            &mut problems,
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "guards.approval_ttl",
                "guards.breaker.threshold",
                "guards.breaker.connectors.typo.threshold",
                "guards.breaker.connectors.typo",
                "connectors.global",
            ]
        );
    }
}
