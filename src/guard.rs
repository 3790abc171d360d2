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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use tracing::warn;

use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::config::Problem;
use crate::identity::Identity;
use crate::ledger::{
    ActionRecord, ActionState, BreakerScope, BreakerState, StateStore, StoreError,
};
use crate::notify::{Notice, Notifier};
use crate::telemetry::Metrics;

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

/// Why a breaker reset was refused.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError {
    #[error("no breaker scope `{0}` (scopes: `global` and each connector instance)")]
    UnknownScope(String),
    #[error("the blast-radius breaker is disabled (`[guards.breaker] enabled = false`)")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The blast-radius breaker at run time (see the module docs). Cheap to share (`Arc`).
pub struct Breaker {
    /// `[global, <connector>]` per connector instance, built once so an admission allocates no
    /// scope list.
    by_connector: HashMap<String, Arc<[BreakerScope]>>,
    /// Global scope alone, for an action whose connector is not configured (it fails anyway).
    global_only: Arc<[BreakerScope]>,
    /// Every scope, global first, then connectors by name.
    all: Vec<BreakerScope>,
    store: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    notifier: Notifier,
}

impl Breaker {
    /// `None` when the breaker is disabled: then the pipeline makes no breaker round trip at all.
    pub fn new<'a>(
        cfg: &BreakerConfig,
        connectors: impl IntoIterator<Item = &'a String>,
        store: Arc<dyn StateStore>,
        metrics: Arc<Metrics>,
        notifier: Notifier,
    ) -> Option<Breaker> {
        if !cfg.enabled {
            return None;
        }
        let global = BreakerScope {
            name: GLOBAL_SCOPE.to_string(),
            threshold: cfg.threshold,
            window: cfg.window,
        };
        let mut names: Vec<&String> = connectors.into_iter().collect();
        names.sort();
        names.dedup();
        let mut all = vec![global.clone()];
        let mut by_connector = HashMap::new();
        for name in names {
            let o = cfg.connectors.get(name).cloned().unwrap_or_default();
            let scope = BreakerScope {
                name: name.clone(),
                threshold: o.threshold.unwrap_or(cfg.threshold),
                window: o.window.unwrap_or(cfg.window),
            };
            all.push(scope.clone());
            by_connector.insert(name.clone(), Arc::from([global.clone(), scope]));
        }
        for s in &all {
            metrics
                .breaker_open
                .with_label_values(&[s.name.as_str()])
                .set(0);
        }
        Some(Breaker {
            by_connector,
            global_only: Arc::from([global]),
            all,
            store,
            metrics,
            notifier,
        })
    }

    /// Every scope with its limits, global first.
    pub fn scopes(&self) -> &[BreakerScope] {
        &self.all
    }

    /// Count `action`'s subject into the global scope and its connector's, in one atomic store
    /// call; returns the names of the scopes whose breaker is open (empty: go ahead). A trip is
    /// audited and notified here, by the one admission that caused it. A redelivered alert's
    /// actions are admitted again before the ledger finds them duplicates; that only refreshes the
    /// subject's place in the window (a subject is never counted twice).
    pub async fn admit(&self, action: &ActionRecord) -> Result<Vec<String>, StoreError> {
        let scopes = self
            .by_connector
            .get(&action.connector)
            .unwrap_or(&self.global_only);
        let admitted = self
            .store
            .breaker_admit(scopes, &action.subject, Utc::now())
            .await?;
        let mut open = Vec::new();
        for (a, s) in admitted.into_iter().zip(scopes.iter()) {
            if !a.open {
                continue;
            }
            self.metrics
                .breaker_open
                .with_label_values(&[a.scope.as_str()])
                .set(1);
            if a.tripped {
                warn!(scope = %a.scope, subjects = a.subjects, threshold = s.threshold,
                    window_secs = s.window.as_secs(), action_key = %action.key,
                    "blast-radius breaker tripped: automatic actions in this scope now wait for approval");
                let mut d = AuditDraft::new(
                    AuditKind::Guard,
                    Actor::system("breaker"),
                    serde_json::json!({
                        "event": "breaker_tripped",
                        "scope": a.scope,
                        "subjects": a.subjects,
                        "threshold": s.threshold,
                        "window_secs": s.window.as_secs(),
                    }),
                );
                d.subject = Some(action.subject.clone());
                d.action_key = Some(action.key.clone());
                // Best effort: the flag is already set in the store, so failing the alert here would
                // not record the trip on redelivery either (that admission no longer trips it).
                if let Err(e) = self.store.append_audit(vec![d]).await {
                    tracing::error!(scope = %a.scope, error = %e, "could not audit a breaker trip");
                }
                self.notifier.notify(Notice::BreakerTripped {
                    scope: a.scope.clone(),
                    subjects: a.subjects,
                    threshold: s.threshold,
                    window_secs: s.window.as_secs(),
                });
            }
            open.push(a.scope);
        }
        Ok(open)
    }

    /// Every scope's state; refreshes `deprovd_breaker_open` (another replica may have tripped or
    /// reset it).
    pub async fn status(&self) -> Result<Vec<BreakerState>, StoreError> {
        let states = self.store.breaker_status(&self.all, Utc::now()).await?;
        for s in &states {
            self.metrics
                .breaker_open
                .with_label_values(&[s.scope.as_str()])
                .set(i64::from(s.open));
        }
        Ok(states)
    }

    /// Close `scope` (or every scope) and empty its window; audited with `actor`. Returns the scopes
    /// that were open. Held actions stay held: each still needs an approver.
    pub async fn reset(
        &self,
        scope: Option<&str>,
        actor: Actor,
    ) -> Result<Vec<String>, BreakerError> {
        let names: Vec<String> = match scope {
            Some(s) if self.all.iter().any(|x| x.name == s) => vec![s.to_string()],
            Some(s) => return Err(BreakerError::UnknownScope(s.to_string())),
            None => self.all.iter().map(|s| s.name.clone()).collect(),
        };
        let d = AuditDraft::new(
            AuditKind::Guard,
            actor,
            serde_json::json!({ "event": "breaker_reset", "scopes": names }),
        );
        // Audited before it happens: a reset that left no trace would defeat the trail.
        self.store.append_audit(vec![d]).await?;
        let was_open = self.store.breaker_reset(&names).await?;
        for n in &names {
            self.metrics
                .breaker_open
                .with_label_values(&[n.as_str()])
                .set(0);
        }
        tracing::info!(scopes = ?names, was_open = ?was_open, "blast-radius breaker reset");
        Ok(was_open)
    }
}

/// A held action's note when the breaker held it.
pub fn breaker_note(open: &[String]) -> String {
    format!(
        "held by the blast-radius breaker (open: {}); an approver must approve it",
        open.join(", ")
    )
}

/// Whether `state` is the one [`Breaker::admit`] looks at: runnable, not a reversal.
pub fn breaker_counts(action: &ActionRecord) -> bool {
    action.state == ActionState::Planned && action.reverses.is_none()
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

    fn action(subject: &str, connector: &str) -> ActionRecord {
        let now = Utc::now();
        ActionRecord {
            key: crate::ledger::action_key(
                "d",
                "r",
                connector,
                crate::connectors::Operation::DisableAccount,
                subject,
            ),
            origin: crate::ledger::Origin::Alert {
                alert_id: "a".into(),
                dedup_key: "d".into(),
                alert_time: now,
            },
            rule: "r".into(),
            policy_digest: String::new(),
            subject: subject.into(),
            connector: connector.into(),
            operation: crate::connectors::Operation::DisableAccount,
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
            requested_by: None,
            expires_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn breaker_trip_is_notified_audited_and_gauged_once_and_reset_only_names_known_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(crate::ledger::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let cfg = BreakerConfig {
            threshold: 2,
            connectors: BTreeMap::from([(
                "okta".to_string(),
                BreakerOverride {
                    threshold: Some(1),
                    window: None,
                },
            )]),
            ..BreakerConfig::default()
        };
        let names = ["okta".to_string(), "scim".to_string()];
        let b = Breaker::new(
            &cfg,
            &names,
            store.clone(),
            metrics.clone(),
            Notifier::from_sender(tx),
        )
        .unwrap();
        assert_eq!(
            b.scopes()
                .iter()
                .map(|s| (s.name.as_str(), s.threshold))
                .collect::<Vec<_>>(),
            [("global", 2), ("okta", 1), ("scim", 2)]
        );
        assert!(b.admit(&action("a@x", "okta")).await.unwrap().is_empty());
        assert_eq!(b.admit(&action("b@x", "okta")).await.unwrap(), ["okta"]);
        assert_eq!(
            b.admit(&action("c@x", "scim")).await.unwrap(),
            ["global"],
            "scim's own scope is still closed"
        );
        assert_eq!(
            b.admit(&action("d@x", "okta")).await.unwrap(),
            ["global", "okta"]
        );
        let mut trips = Vec::new();
        while let Ok(n) = rx.try_recv() {
            trips.push(n);
        }
        assert_eq!(trips.len(), 2, "one notice per trip: {trips:?}");
        assert!(
            matches!(&trips[0], Notice::BreakerTripped { scope, subjects: 2, threshold: 1, .. } if scope == "okta")
        );
        assert!(
            matches!(&trips[1], Notice::BreakerTripped { scope, subjects: 3, threshold: 2, .. } if scope == "global")
        );
        let text = metrics.render();
        assert!(
            text.contains("deprovd_breaker_open{scope=\"global\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("deprovd_breaker_open{scope=\"scim\"} 0"),
            "{text}"
        );
        let trail = store.audit_range(1, 0).await.unwrap();
        assert_eq!(trail.len(), 2);
        assert!(
            trail
                .iter()
                .all(|r| r.kind == AuditKind::Guard && r.detail["event"] == "breaker_tripped")
        );

        assert!(matches!(
            b.reset(Some("nope"), Actor::system("t")).await,
            Err(BreakerError::UnknownScope(_))
        ));
        let was = b.reset(Some("okta"), Actor::system("admin")).await.unwrap();
        assert_eq!(was, ["okta"]);
        let st = b.status().await.unwrap();
        assert!(st[0].open && !st[1].open);
        assert!(
            metrics
                .render()
                .contains("deprovd_breaker_open{scope=\"okta\"} 0")
        );
        let trail = store.audit_range(1, 0).await.unwrap();
        assert_eq!(trail.last().unwrap().detail["event"], "breaker_reset");
        assert_eq!(trail.last().unwrap().actor.name, "admin");
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
