//! Guards: what no policy can override. Applied to every planned action, automatic or manual, after
//! planning and before the ledger.
//!
//! This module holds the protected-subject list and the global dry-run switch. The blast-radius breaker
//! and approval expiry build on the same step (`Guards::apply`).

use std::collections::HashSet;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::config::Problem;
use crate::ledger::{ActionRecord, ActionState};

/// `[guards]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Record every action as `skipped` with note `dry_run`; call nothing. Overrides every policy.
    pub dry_run: bool,
    /// Break-glass and service accounts that are never touched: exact names or globs
    /// (`svc-*@corp.example`), matched case-insensitively against the action's subject.
    pub protected: Vec<String>,
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
    }
}

/// Which guard acted, for `guard_blocks_total{guard}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardHit {
    Protected,
    DryRun,
}

impl GuardHit {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardHit::Protected => "protected",
            GuardHit::DryRun => "dry_run",
        }
    }
}

pub struct Guards {
    dry_run: bool,
    exact: HashSet<String>,
    globs: GlobSet,
}

impl Guards {
    /// Build from validated config; an invalid glob is an error naming it.
    pub fn new(cfg: &GuardConfig) -> Result<Self, String> {
        let mut exact = HashSet::new();
        let mut builder = GlobSetBuilder::new();
        for p in &cfg.protected {
            let p = p.trim().to_lowercase();
            if p.contains(['*', '?', '[', '{']) {
                builder.add(Glob::new(&p).map_err(|e| format!("protected glob `{p}`: {e}"))?);
            } else {
                exact.insert(p);
            }
        }
        Ok(Self {
            dry_run: cfg.dry_run,
            exact,
            globs: builder.build().map_err(|e| e.to_string())?,
        })
    }

    pub fn is_protected(&self, subject: &str) -> bool {
        let s = subject.trim().to_lowercase();
        self.exact.contains(&s) || self.globs.is_match(&s)
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
        }
        .validate("guards", &mut problems);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].path, "guards.protected[0]");
    }
}
