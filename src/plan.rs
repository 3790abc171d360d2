//! Plan: expand policy decisions into concrete actions, one per (connector, operation, subject).
//!
//! A decision without `connectors` goes to every configured connector that supports its action; the
//! connector's own `lookup` later finds out whether the subject exists there (`not_found` is not an
//! error). Problems — a decision naming an unknown connector or one that cannot perform the action —
//! are returned beside the plan, counted and audited, never fatal.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::alert::Alert;
use crate::connectors::{ConnectorSet, Operation};
use crate::identity::Identity;
use crate::ledger::{ActionRecord, ActionState, NewAction, Origin, StateReason, action_key};
use crate::policy::{Decision, Mode};

/// What each configured connector can do; built once from the [`ConnectorSet`].
#[derive(Debug, Clone, Default)]
pub struct Planner {
    capabilities: BTreeMap<String, BTreeSet<Operation>>,
    /// Rewrites every decision's subject to one spelling per account (`CORP\jdoe` →
    /// `jdoe@corp.example`) *before* idempotency keys are computed, so two spellings dedupe.
    identity: Identity,
}

impl Planner {
    pub fn new(connectors: &ConnectorSet) -> Self {
        let capabilities = connectors
            .iter()
            .map(|(name, c)| {
                let ops = Operation::ALL
                    .into_iter()
                    .filter(|op| c.supports(*op))
                    .collect();
                (name.clone(), ops)
            })
            .collect();
        Self {
            capabilities,
            identity: Identity::default(),
        }
    }

    /// Resolve decision subjects through `identity` (the `[identity]` domain aliases).
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// The identity resolution this planner applies.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// From an explicit table (tests, simulate without connectors).
    pub fn from_capabilities(capabilities: BTreeMap<String, BTreeSet<Operation>>) -> Self {
        Self {
            capabilities,
            identity: Identity::default(),
        }
    }

    /// What each configured connector can do, by name: manual lockouts expand against it.
    pub fn capabilities(&self) -> &BTreeMap<String, BTreeSet<Operation>> {
        &self.capabilities
    }

    /// Actions for `decisions` on `alert`, deduplicated by idempotency key, in a stable order.
    pub fn plan(
        &self,
        alert: &Alert,
        decisions: &[Decision],
        policy_digest: &str,
        now: DateTime<Utc>,
    ) -> (Vec<ActionRecord>, Vec<String>) {
        let dedup_key = alert.dedup_key();
        let mut actions: BTreeMap<String, ActionRecord> = BTreeMap::new();
        let mut problems = Vec::new();
        // (subject, action) → (mode, rule) of the first decision seen: two modes for one pair are
        // both carried out (enforce and approval side by side), which is rarely what was meant.
        let mut modes: BTreeMap<(String, Operation), (Mode, &str)> = BTreeMap::new();
        for d in decisions {
            let pair = (self.identity.resolve(&d.subject, &alert.subjects), d.action);
            match modes.get(&pair) {
                Some((mode, rule)) if *mode != d.mode => problems.push(format!(
                    "rules `{rule}` and `{}` decide {} for `{}` in two modes ({} and {}): both are planned",
                    d.rule,
                    d.action,
                    pair.0,
                    mode.as_str(),
                    d.mode.as_str()
                )),
                Some(_) => {}
                None => {
                    modes.insert(pair, (d.mode, d.rule.as_str()));
                }
            }
        }
        for d in decisions {
            // The decision (and the audit trail) keep the policy's spelling; the action gets one
            // spelling per account, so idempotency keys and coalescing see one subject.
            // A subject with a control or invisible character, or an absurd length, is refused
            // here: it becomes a problem (audited with the alert) and no action.
            if let Err(e) = crate::identity::check_subject(&d.subject) {
                problems.push(format!("rule `{}`: subject refused: {e}", d.rule));
                continue;
            }
            let subject = self.identity.resolve(&d.subject, &alert.subjects);
            // Resolution may have taken the alert's email for a bare name: check that too.
            if let Err(e) = crate::identity::check_subject(&subject) {
                problems.push(format!("rule `{}`: subject refused: {e}", d.rule));
                continue;
            }
            if subject.is_empty() {
                problems.push(format!("rule `{}`: decision has an empty subject", d.rule));
                continue;
            }
            let targets: Vec<&str> = match &d.connectors {
                Some(named) => named
                    .iter()
                    .filter(|name| match self.capabilities.get(name.as_str()) {
                        None => {
                            problems.push(format!(
                                "rule `{}`: connector `{name}` is not configured",
                                d.rule
                            ));
                            false
                        }
                        Some(ops) if !ops.contains(&d.action) => {
                            problems.push(format!(
                                "rule `{}`: connector `{name}` cannot {}",
                                d.rule, d.action
                            ));
                            false
                        }
                        Some(_) => true,
                    })
                    .map(String::as_str)
                    .collect(),
                None => self
                    .capabilities
                    .iter()
                    .filter(|(_, ops)| ops.contains(&d.action))
                    .map(|(name, _)| name.as_str())
                    .collect(),
            };
            if targets.is_empty() && d.connectors.is_none() {
                problems.push(format!(
                    "rule `{}`: no configured connector can {}",
                    d.rule, d.action
                ));
            }
            for connector in targets {
                let key = action_key(&dedup_key, &d.rule, connector, d.action, &subject);
                let (state, note, state_reason) = match d.mode {
                    Mode::Enforce => (ActionState::Planned, None, None),
                    Mode::Approval => (
                        ActionState::AwaitingApproval,
                        None,
                        Some(StateReason::PolicyApproval),
                    ),
                    Mode::DryRun => (
                        ActionState::Skipped,
                        Some("dry_run (policy)".to_string()),
                        Some(StateReason::DryRun),
                    ),
                };
                actions.entry(key.clone()).or_insert_with(|| {
                    let new = NewAction {
                        key,
                        origin: Origin::Alert {
                            alert_id: alert.id.clone(),
                            dedup_key: dedup_key.clone(),
                            alert_time: alert.time,
                            severity: Some(alert.severity),
                        },
                        rule: d.rule.clone(),
                        policy_digest: policy_digest.to_string(),
                        subject: subject.clone(),
                        connector: connector.to_string(),
                        operation: d.action,
                        reason: d.reason.clone(),
                    };
                    ActionRecord {
                        state,
                        next_attempt_at: (state == ActionState::Planned).then_some(now),
                        note,
                        state_reason,
                        ..ActionRecord::planned(new, now)
                    }
                });
            }
        }
        (actions.into_values().collect(), problems)
    }
}

/// Trim, and lower-case email-like subjects so `Alice@Corp.example` and `alice@corp.example` are one
/// subject for idempotency and coalescing. Other identifiers (per-system ids) keep their case.
pub(crate) fn normalize_subject(s: &str) -> String {
    let s = s.trim();
    if s.contains('@') {
        s.to_lowercase()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Severity, Source};

    fn alert() -> Alert {
        Alert {
            id: "a-1".into(),
            source: Source {
                vendor: "test".into(),
                product: None,
                format: "generic".into(),
            },
            time: Utc::now(),
            severity: Severity::High,
            severity_score: None,
            category: "credential_theft".into(),
            title: String::new(),
            subjects: vec![],
            host: None,
            indicators: vec![],
            labels: Default::default(),
            problems: vec![],
            raw: serde_json::Value::Null,
        }
    }

    fn planner() -> Planner {
        let mut caps = BTreeMap::new();
        caps.insert(
            "scim".to_string(),
            BTreeSet::from([Operation::DisableAccount, Operation::EnableAccount]),
        );
        caps.insert("hook".to_string(), BTreeSet::from([Operation::Notify]));
        Planner::from_capabilities(caps)
    }

    fn decision(action: Operation, connectors: Option<Vec<&str>>, mode: Mode) -> Decision {
        Decision {
            action,
            subject: " Alice@Corp.Example ".into(),
            connectors: connectors.map(|c| c.into_iter().map(String::from).collect()),
            reason: "r".into(),
            mode,
            rule: "rule-1".into(),
        }
    }

    #[test]
    fn decisions_expand_to_capable_connectors_with_stable_keys() {
        let p = planner();
        let a = alert();
        let ds = [decision(Operation::DisableAccount, None, Mode::Enforce)];
        let (actions, problems) = p.plan(&a, &ds, "digest", Utc::now());
        assert!(problems.is_empty());
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].connector, "scim");
        assert_eq!(actions[0].subject, "alice@corp.example");
        assert_eq!(actions[0].state, ActionState::Planned);
        let (again, _) = p.plan(&a, &ds, "digest", Utc::now());
        assert_eq!(
            actions[0].key, again[0].key,
            "same alert and rule give the same key"
        );
    }

    #[test]
    fn unknown_or_incapable_connectors_are_problems_not_actions() {
        let p = planner();
        let ds = [decision(
            Operation::DisableAccount,
            Some(vec!["okta", "hook"]),
            Mode::Enforce,
        )];
        let (actions, problems) = p.plan(&alert(), &ds, "d", Utc::now());
        assert!(actions.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn modes_set_the_initial_state() {
        let p = planner();
        let (a, _) = p.plan(
            &alert(),
            &[decision(Operation::DisableAccount, None, Mode::Approval)],
            "d",
            Utc::now(),
        );
        assert_eq!(a[0].state, ActionState::AwaitingApproval);
        assert_eq!(a[0].next_attempt_at, None);
        let (a, _) = p.plan(
            &alert(),
            &[decision(Operation::DisableAccount, None, Mode::DryRun)],
            "d",
            Utc::now(),
        );
        assert_eq!(a[0].state, ActionState::Skipped);
    }

    #[test]
    fn two_modes_for_one_subject_and_action_are_a_problem() {
        let p = planner();
        let mut held = decision(Operation::DisableAccount, None, Mode::Approval);
        held.rule = "rule-2".into();
        held.subject = "alice@corp.example".into();
        let ds = [
            decision(Operation::DisableAccount, None, Mode::Enforce),
            held,
        ];
        let (actions, problems) = p.plan(&alert(), &ds, "d", Utc::now());
        assert_eq!(actions.len(), 2, "both are still planned");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("`rule-1` and `rule-2`")
                && problems[0].contains("enforce and approval"),
            "{problems:?}"
        );
    }

    #[test]
    fn identity_resolution_gives_actions_one_spelling_per_account() {
        let identity = crate::identity::Identity::new(&crate::identity::IdentityConfig {
            domain_aliases: BTreeMap::from([("CORP".to_string(), "corp.example".to_string())]),
            default_domain: None,
        });
        let p = planner().with_identity(identity);
        let mut a = alert();
        a.subjects = vec![crate::alert::Subject {
            username: Some("jdoe".into()),
            domain: Some("CORP".into()),
            ..Default::default()
        }];
        for named in [r"CORP\JDoe", "jdoe", "JDoe@Corp.Example"] {
            let mut d = decision(Operation::DisableAccount, None, Mode::Enforce);
            d.subject = named.into();
            let (actions, _) = p.plan(&a, &[d], "d", Utc::now());
            assert_eq!(actions[0].subject, "jdoe@corp.example", "{named}");
        }
    }

    #[test]
    fn a_subject_with_a_control_character_is_a_problem_and_no_action() {
        let p = planner();
        for bad in ["breakglass\0", "jdoe\n@corp.example", "j\u{200B}doe"] {
            let mut d = decision(Operation::DisableAccount, None, Mode::Enforce);
            d.subject = bad.into();
            let (actions, problems) = p.plan(&alert(), &[d], "d", Utc::now());
            assert!(actions.is_empty(), "{bad:?}");
            assert!(problems[0].contains("subject refused"), "{problems:?}");
        }
        let mut d = decision(Operation::DisableAccount, None, Mode::Enforce);
        d.subject = "ｊｄｏｅ@Corp.Example".into();
        let (actions, _) = p.plan(&alert(), &[d], "d", Utc::now());
        assert_eq!(actions[0].subject, "jdoe@corp.example");
    }
}
