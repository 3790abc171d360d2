//! Guards: what no policy can override. Applied to every planned action, automatic or manual, after
//! planning and before the ledger.
//!
//! This module holds the protected-subject list and the global dry-run switch. The blast-radius breaker
//! and approval expiry build on the same step (`Guards::apply`).

use std::collections::HashSet;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::config::Problem;
use crate::identity::Identity;
use crate::ledger::{ActionRecord, ActionState};

/// `[guards]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
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
}

impl GuardConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
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
}

impl GuardHit {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardHit::Protected => "protected",
            GuardHit::DryRun => "dry_run",
            GuardHit::ProtectedGroup => "protected_group",
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
            let own = p.trim().to_lowercase();
            let canonical = identity.canonical(p).to_lowercase();
            for p in [own, canonical] {
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
        let own = subject.trim().to_lowercase();
        let canonical = self.identity.canonical(subject).to_lowercase();
        [own, canonical]
            .iter()
            .any(|s| self.exact.contains(s) || self.globs.is_match(s))
    }

    /// Apply every guard to a planned action; returns the guard that changed it, if any.
    /// Protection wins over everything: a protected subject is skipped even in approval mode.
    pub fn apply(&self, action: &mut ActionRecord) -> Option<GuardHit> {
        if self.is_protected(&action.subject) {
            action.state = ActionState::Skipped;
            action.next_attempt_at = None;
            action.note = Some("protected subject: guards never act on it".into());
            return Some(GuardHit::Protected);
        }
        if self.dry_run && action.state != ActionState::Skipped {
            action.state = ActionState::Skipped;
            action.next_attempt_at = None;
            action.note = Some("dry_run (global switch)".into());
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
            ..Default::default()
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
    fn invalid_glob_is_reported_with_its_path() {
        let mut problems = Vec::new();
        GuardConfig {
            dry_run: false,
            protected: vec!["a[".into(), " ".into()],
            ..Default::default()
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
}
