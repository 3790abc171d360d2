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
use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::config::Problem;
use crate::identity::{Identity, fold, local_part};
use crate::ledger::{ActionRecord, ActionState, StateReason};

mod breaker;
pub(crate) mod groups;

pub(crate) use breaker::{Breaker, BreakerError, breaker_counts, breaker_note};

/// `[guards]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Record every action as `skipped` with note `dry_run`; call nothing. Overrides every policy.
    pub dry_run: bool,
    /// Break-glass and service accounts that are never touched: exact names or globs
    /// (`svc-*@corp.example`), matched against the action's subject the way directories match
    /// names (NFKC, case folding: `ｂｒｅａｋｇｌａｓｓ` and `breakglaſs` are `breakglass`), and against
    /// the account a connector resolves it to before any destructive call. Matching goes through
    /// identity resolution (`[identity]`): protecting `admin@corp.example` also protects
    /// `CORP\admin` and `admin@corp.com` when those are configured aliases — and always the bare
    /// username `admin` and `admin@` any other domain (see [`ProtectedSubjects`]).
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
pub(crate) const GLOBAL_SCOPE: &str = "global";

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
    /// The typed reason an action stopped by this guard carries.
    pub fn state_reason(self) -> StateReason {
        match self {
            GuardHit::Protected => StateReason::Protected,
            GuardHit::DryRun => StateReason::DryRun,
            GuardHit::ProtectedGroup => StateReason::ProtectedGroup,
            GuardHit::Breaker => StateReason::Breaker,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GuardHit::Protected => "protected",
            GuardHit::DryRun => "dry_run",
            GuardHit::ProtectedGroup => "protected_group",
            GuardHit::Breaker => "breaker",
        }
    }
}

/// The compiled `[guards] protected` list: what planning checks every action's subject against, and
/// what the executor checks the account a connector resolved against (see
/// [`crate::executor::Executor::with_protected_subjects`]).
///
/// # Matching
///
/// Every protected entry and every subject is compared by its [`fold`]ed key (NFKC, full case
/// folding, invisible characters dropped — what directories do when they match), in its own
/// spelling and in its canonical one (`[identity]` aliases and `default_domain`). On top of that,
/// **a protected name's username is protected on its own**: protecting `breakglass@example.org`
/// (or `CORP\breakglass`, or a bare `breakglass`) also protects the bare subject `breakglass` and
/// `breakglass@` *any* domain. A directory's default filter finds the entry with `uid=breakglass`
/// from a bare name, and a target may resolve `breakglass@other.example` by its local part; the
/// guard cannot know which a target does, so it protects every spelling one could resolve to the
/// protected account. That can only protect more, never lock anyone out. Globs get the same rule
/// when their username part names something (`svc-*@corp.example` protects `svc-backup` and
/// `svc-backup@elsewhere`); a username part that is only wildcards (`*@corp.example`) does not,
/// or it would protect every account everywhere.
#[derive(Debug, Clone, Default)]
pub struct ProtectedSubjects {
    /// Folded protected names, in their own and their canonical spelling.
    exact: HashSet<String>,
    globs: GlobSet,
    /// Folded usernames of the protected names (see the matching rule above).
    locals: HashSet<String>,
    local_globs: GlobSet,
    /// Subjects are compared in their canonical spelling as well as their own.
    identity: Identity,
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

/// Why the guards cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A protected-subject pattern that does not compile.
    #[error("protected glob `{pattern}`: {source}")]
    Glob {
        pattern: String,
        source: globset::Error,
    },
    /// Groups are protected but no connector can list memberships: the guard could never clear
    /// anyone, or worse, never protect.
    #[error(
        "guards.protected_groups is set but no configured connector can list group memberships (okta, entra, scim and ldap/active_directory can; a spec needs a `groups` operation)"
    )]
    NoGroupSource,
}

fn glob(p: &str) -> Result<Glob, GuardError> {
    // A backslash in a glob escapes; `CORP\svc-*` means the literal down-level name.
    Glob::new(&p.replace('\\', "\\\\")).map_err(|source| GuardError::Glob {
        pattern: p.to_string(),
        source,
    })
}

impl ProtectedSubjects {
    /// Compile `protected` (validated config); an invalid glob is an error naming it.
    pub fn new(protected: &[String], identity: Identity) -> Result<Self, GuardError> {
        let mut exact = HashSet::new();
        let mut locals = HashSet::new();
        let mut builder = GlobSetBuilder::new();
        let mut local_builder = GlobSetBuilder::new();
        for p in protected {
            let mut forms = vec![fold(p)];
            forms.extend(identity.guard_forms(p));
            for form in forms {
                let local = local_part(&form).map(str::to_string);
                if is_glob(&form) {
                    builder.add(glob(&form)?);
                    if let Some(l) = local.filter(|l| l.chars().any(char::is_alphanumeric)) {
                        if is_glob(&l) {
                            local_builder.add(glob(&l)?);
                        } else {
                            locals.insert(l);
                        }
                    }
                } else {
                    exact.insert(form);
                    if let Some(l) = local {
                        locals.insert(l);
                    }
                }
            }
        }
        Ok(Self {
            exact,
            globs: builder.build().map_err(|source| GuardError::Glob {
                pattern: protected.join(", "),
                source,
            })?,
            locals,
            local_globs: local_builder.build().map_err(|source| GuardError::Glob {
                pattern: protected.join(", "),
                source,
            })?,
            identity,
        })
    }

    /// Whether nothing is protected (then the executor skips its post-resolution check).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }

    /// Whether `subject` — an action's subject, or an identifier a target resolved it to — names a
    /// protected account under the matching rule above.
    pub fn matches(&self, subject: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut forms = vec![fold(subject)];
        forms.extend(self.identity.guard_forms(subject));
        forms.iter().any(|f| {
            self.exact.contains(f)
                || self.globs.is_match(f)
                || local_part(f)
                    .is_some_and(|l| self.locals.contains(l) || self.local_globs.is_match(l))
        })
    }

    /// The first of `identifiers` that is protected, if any.
    pub fn first_match<'a>(&self, identifiers: &'a [String]) -> Option<&'a str> {
        identifiers
            .iter()
            .find(|i| self.matches(i))
            .map(String::as_str)
    }
}

pub struct Guards {
    dry_run: bool,
    protected: Arc<ProtectedSubjects>,
}

impl Guards {
    /// Build from validated config; an invalid glob is an error naming it.
    pub fn new(cfg: &GuardConfig) -> Result<Self, GuardError> {
        Self::with_identity(cfg, Identity::default())
    }

    /// As [`new`](Self::new), matching through `identity` (see [`ProtectedSubjects`]).
    pub fn with_identity(cfg: &GuardConfig, identity: Identity) -> Result<Self, GuardError> {
        Ok(Self {
            dry_run: cfg.dry_run,
            protected: Arc::new(ProtectedSubjects::new(&cfg.protected, identity)?),
        })
    }

    /// The compiled protected list, for the executor's check of resolved accounts.
    pub fn protected(&self) -> Arc<ProtectedSubjects> {
        self.protected.clone()
    }

    pub fn is_protected(&self, subject: &str) -> bool {
        self.protected.matches(subject)
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
        assert!(!g.is_protected("backup-svc@corp.example"));
        // A protected name's username is protected in any domain (see `ProtectedSubjects`).
        assert!(g.is_protected("svc-backup@evil.example"));
    }

    #[test]
    fn confusable_spellings_of_a_protected_subject_are_protected() {
        // Issue 10: each of these locked the protected LDAP entry before.
        let g = guards(&["breakglass@example.org"], false);
        for s in [
            "ｂｒｅａｋｇｌａｓｓ@example.org",
            "ｂｒｅａｋｇｌａｓｓ",
            "breakglaſs@example.org",
            "breakglaſs",
            "breakglass\0@example.org",
            "breakglass\0",
            "break\u{200B}glass@example.org",
            "BREAKGLASS@EXAMPLE.ORG",
            "ＢＲＥＡＫＧＬＡＳＳ@ＥＸＡＭＰＬＥ.ＯＲＧ",
        ] {
            assert!(g.is_protected(s), "{s:?} should be protected");
        }
    }

    #[test]
    fn a_protected_username_is_protected_bare_and_in_any_domain() {
        // No `[identity] default_domain`: the bare name used to pass.
        let g = guards(&["breakglass@example.org", r"CORP\svc-ops"], false);
        for s in [
            "breakglass",
            "BreakGlass",
            "breakglass@other.example",
            r"OTHER\breakglass",
            "svc-ops",
            "svc-ops@corp.example",
        ] {
            assert!(g.is_protected(s), "{s:?} should be protected");
        }
        for s in ["breakglass2", "xbreakglass@example.org", "jdoe", "svc-opsx"] {
            assert!(!g.is_protected(s), "{s:?} should not be protected");
        }
        // A wildcard-only username protects no username everywhere.
        let domain = guards(&["*@vip.example"], false);
        assert!(domain.is_protected("ceo@vip.example"));
        assert!(!domain.is_protected("ceo@corp.example"));
        assert!(!domain.is_protected("ceo"));
    }

    #[test]
    fn resolved_identifiers_are_checked_with_the_same_matching() {
        let g = guards(&["breakglass@example.org"], false);
        let p = g.protected();
        let ids = ["cn=x,dc=example".to_string(), "breakglass".to_string()];
        assert_eq!(p.first_match(&ids), Some("breakglass"));
        assert_eq!(p.first_match(&["jdoe".to_string()]), None);
        assert!(ProtectedSubjects::default().first_match(&ids).is_none());
    }

    #[test]
    fn apply_types_why_it_skipped() {
        let mut a = crate::action::sample("breakglass@corp.example", "okta");
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
        // The username of a protected name is protected everywhere (see `ProtectedSubjects`).
        for s in [r"OTHER\admin", "admin@other.example", "admin"] {
            assert!(g.is_protected(s), "{s} should be protected");
        }
        for s in [r"CORP\jdoe", "jdoe@corp.example"] {
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
        for s in ["admin@other.example", "breakglass@other.example"] {
            assert!(g.is_protected(s), "{s} should be protected");
        }
        for s in ["jdoe", "jdoe@corp.example"] {
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

    /// Property tests: for random subjects built from confusable alphabets, no spelling a target
    /// could resolve to a protected account escapes the guard.
    mod props {
        use super::*;
        use crate::identity::{check_subject, local_part};
        use icu_casemap::CaseMapper;
        use icu_normalizer::ComposingNormalizer;
        use proptest::prelude::*;

        const PROTECTED: [&str; 4] = [
            "breakglass@example.org",
            "svc-ops",
            "admin@corp.example",
            "kelvin.ffoulkes@example.org",
        ];
        /// Names the subjects are spelled from: the protected ones, the usernames and other domains
        /// a directory may resolve them by, and near misses.
        const BASES: [&str; 9] = [
            "breakglass@example.org",
            "breakglass",
            "breakglass@other.example",
            "svc-ops@corp.example",
            "admin",
            "kelvin.ffoulkes",
            "breakglas",
            "jdoe@example.org",
            "kelvin.ffoulkes@example.org",
        ];

        /// Ways of writing one ASCII character that directories fold back onto it.
        fn variant(c: char) -> BoxedStrategy<String> {
            let mut options = vec![c.to_string(), c.to_ascii_uppercase().to_string()];
            if c.is_ascii_graphic() {
                // Fullwidth forms: U+FF01..U+FF5E mirror U+0021..U+007E.
                options.push(char::from_u32(c as u32 + 0xFEE0).unwrap().to_string());
            }
            match c {
                's' => options.push("\u{17F}".into()),  // long s
                'k' => options.push("\u{212A}".into()), // Kelvin sign
                'f' => options.push("\u{FB00}".into()), // ﬀ (two letters in one)
                'i' => options.push("\u{2170}".into()), // small roman numeral one
                _ => {}
            }
            prop::sample::select(options).boxed()
        }

        /// What may follow a character: nothing mostly, else a combining mark, a control, an
        /// invisible character or a space.
        fn noise() -> BoxedStrategy<&'static str> {
            prop_oneof![
                8 => Just(""),
                1 => prop::sample::select(vec![
                    "\u{301}", "\u{0}", "\n", "\r", "\u{85}", "\u{200B}", "\u{200D}",
                    "\u{2060}", "\u{FEFF}", "\u{AD}", " ", "\u{3000}", "\u{A0}", "\u{202E}",
                ]),
            ]
            .boxed()
        }

        fn subject() -> impl Strategy<Value = String> {
            prop::sample::select(BASES.to_vec()).prop_flat_map(|base| {
                let parts: Vec<_> = base.chars().map(|c| (variant(c), noise())).collect();
                (parts, noise()).prop_map(|(parts, lead)| {
                    let mut s = lead.to_string();
                    for (v, n) in parts {
                        s.push_str(&v);
                        s.push_str(n);
                    }
                    s
                })
            })
        }

        /// A model of a directory's matching (RFC 4518 string preparation for caseIgnoreMatch),
        /// written apart from `identity::fold`: characters mapped to nothing removed, case folded
        /// *before* NFKC, insignificant spaces removed.
        fn directory_fold(s: &str) -> String {
            let mapped: String = s
                .chars()
                .filter(|c| {
                    (!c.is_control() || c.is_whitespace())
                        && !matches!(*c, '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
                            | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{1806}' | '\u{180B}'..='\u{180E}'
                            | '\u{FE00}'..='\u{FE0F}' | '\u{34F}')
                })
                .map(|c| if c.is_whitespace() { ' ' } else { c })
                .collect();
            let folded = CaseMapper::new().fold_string(&mapped).into_owned();
            let nfkc = ComposingNormalizer::new_nfkc()
                .normalize(&folded)
                .into_owned();
            let refolded = CaseMapper::new().fold_string(&nfkc).into_owned();
            refolded.split_whitespace().collect::<Vec<_>>().join(" ")
        }

        /// Whether a directory holding the protected accounts (by `mail` and by `uid`, the local
        /// part) would resolve `subject` to one of them.
        fn directory_finds_protected(subject: &str) -> bool {
            let s = directory_fold(subject);
            PROTECTED.iter().any(|p| {
                let p = directory_fold(p);
                let uid = local_part(&p).unwrap_or(&p).to_string();
                s == p || s == uid || local_part(&s).is_some_and(|l| l == uid)
            })
        }

        fn guards() -> Guards {
            Guards::new(&GuardConfig {
                protected: PROTECTED.iter().map(|p| p.to_string()).collect(),
                ..GuardConfig::default()
            })
            .unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn no_confusable_spelling_of_a_protected_account_escapes_the_guard(s in subject()) {
                let g = guards();
                let identity = Identity::default();
                // Accepted subjects: the canonical form equal to a protected name under
                // NFKC-casefold must be flagged.
                if check_subject(&s).is_ok() {
                    let canonical = identity.canonical(&s);
                    if PROTECTED.iter().any(|p| directory_fold(&canonical) == directory_fold(p)) {
                        prop_assert!(g.is_protected(&s), "accepted {s:?} ({canonical:?}) not flagged");
                    }
                }
                // Whatever the guard did not flag, no directory-style folding resolves to a
                // protected account — refused subjects included (defence in depth).
                if directory_finds_protected(&s) {
                    prop_assert!(g.is_protected(&s), "{s:?} resolves to a protected account but was not flagged");
                }
            }

            #[test]
            fn identifiers_a_target_reports_are_matched_the_same_way(s in subject()) {
                let g = guards();
                if directory_finds_protected(&s) {
                    prop_assert!(g.protected().first_match(std::slice::from_ref(&s)).is_some(), "{s:?}");
                }
            }
        }
    }
}
