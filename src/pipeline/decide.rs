//! The pure part of the path: normalize, evaluate, plan, guard — CPU only, no I/O.

use super::*;

/// The pure part of the path: normalize, evaluate, plan, guard. No I/O, so `simulate` and the
/// benchmark use it directly and the pipeline runs it on a blocking thread.
pub struct Decider {
    pub registry: NormalizerRegistry,
    pub policies: Arc<Policies>,
    pub planner: Planner,
    pub guards: Guards,
    pub metrics: Arc<Metrics>,
    /// A candidate bundle evaluated beside the live one, never executed (`[policy] shadow_dir`).
    pub shadow: Option<Arc<super::Shadow>>,
    /// Exports every evaluation in OPA's decision-log shape (`[policy.decision_log]`).
    pub decision_log: Option<super::DecisionLog>,
}

impl Decider {
    pub fn new(
        policies: Arc<Policies>,
        planner: Planner,
        guards: Guards,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            registry: NormalizerRegistry::new(),
            policies,
            planner,
            guards,
            metrics,
            shadow: None,
            decision_log: None,
        }
    }

    /// Normalize, evaluate, plan and guard — CPU only, no I/O.
    pub fn decide(&self, bytes: &[u8], format: Option<&str>) -> Result<Planned, NormalizeError> {
        let alert = self.registry.normalize(bytes, format)?;
        Ok(self.decide_alert(alert))
    }

    /// As [`decide`](Self::decide) for a delivery that may carry several documents (an Okta event
    /// hook): one decided part per document. `Err` when the delivery as a whole is unusable.
    pub fn decide_all(
        &self,
        bytes: &[u8],
        format: Option<&str>,
    ) -> Result<Vec<DecidedPart>, NormalizeError> {
        self.decide_all_received(bytes, format, Utc::now())
    }

    /// As [`decide_all`](Self::decide_all) for a delivery received at `received_at`, the time of an
    /// alert that carries none of its own (see [`NormalizerRegistry::normalize_all_received`]).
    pub fn decide_all_received(
        &self,
        bytes: &[u8],
        format: Option<&str>,
        received_at: chrono::DateTime<Utc>,
    ) -> Result<Vec<DecidedPart>, NormalizeError> {
        Ok(self
            .registry
            .normalize_all_received(bytes, format, received_at)?
            .into_iter()
            .map(|n| DecidedPart {
                at: n.at,
                bytes: n.bytes,
                result: n.result.map(|alert| self.decide_alert(alert)),
            })
            .collect())
    }

    /// As [`decide`](Self::decide) for the claims of a SET the Shared Signals receiver verified (see
    /// [`NormalizerRegistry::normalize_verified_set`]).
    pub fn decide_verified_set(
        &self,
        claims: serde_json::Value,
    ) -> Result<Planned, NormalizeError> {
        let alert = self.registry.normalize_verified_set(claims)?;
        Ok(self.decide_alert(alert))
    }

    /// As [`decide`](Self::decide) for an already normalized alert (manual lockouts).
    pub fn decide_alert(&self, alert: Alert) -> Planned {
        self.decide_alert_at(alert, Utc::now())
    }

    /// As [`decide_alert`](Self::decide_alert) with `now` given: the input's `now` and the actions'
    /// times. Replays (`policy diff`, `policy eval --now`) pin it so two bundles see the same clock.
    pub fn decide_alert_at(&self, alert: Alert, now: chrono::DateTime<Utc>) -> Planned {
        for p in &alert.problems {
            self.metrics
                .alert_problem(&alert.source.format, p.kind.as_str());
        }
        let started = Instant::now();
        let eval = self
            .policies
            .evaluate(&alert, now, &serde_json::Value::Null);
        let elapsed = started.elapsed();
        self.metrics
            .policy_eval_seconds
            .observe(elapsed.as_secs_f64());
        if let Some(log) = &self.decision_log {
            let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            log.record(&self.policies, &alert, now, &eval, ns);
        }
        let mut problems = eval.errors;
        // Subjects with control or invisible characters are refused, not dropped: the alert is
        // kept and audited with one problem per refused field, and planning makes no action
        // that names them (see `crate::identity::check_subject`).
        let refused = refused_subjects(&alert);
        if !problems.is_empty() {
            self.metrics
                .policy_errors(PolicyErrorKind::Evaluation, problems.len() as u64);
        }
        for d in &eval.decisions {
            self.metrics.decision(d.action.as_str(), d.mode.as_str());
        }
        let (mut actions, plan_problems) =
            self.planner
                .plan(&alert, &eval.decisions, &eval.digest, now);
        if !plan_problems.is_empty() {
            self.metrics
                .policy_errors(PolicyErrorKind::Plan, plan_problems.len() as u64);
        }
        problems.extend(plan_problems);
        problems.extend(refused);
        if let Some(shadow) = &self.shadow {
            // Compared before the guards: they apply alike to both bundles' actions.
            shadow.observe(
                &self.planner,
                &self.metrics,
                &alert,
                now,
                &eval.decisions,
                &actions,
            );
        }
        for a in &mut actions {
            if let Some(hit) = self.guards.apply(a) {
                self.metrics.guard_block(hit.as_str());
            }
        }
        Planned {
            alert,
            decisions: eval.decisions,
            actions,
            problems,
            policy_digest: eval.digest.to_string(),
        }
    }
}

/// One problem per subject field of `alert` that [`crate::identity::check_subject`] refuses.
pub(super) fn refused_subjects(alert: &Alert) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in alert.subjects.iter().enumerate() {
        let fields = [
            ("email", &s.email),
            ("username", &s.username),
            ("domain", &s.domain),
        ];
        let named = fields
            .into_iter()
            .filter_map(|(f, v)| v.as_deref().map(|v| (f.to_string(), v)))
            .chain(s.ids.iter().map(|(k, v)| (format!("ids.{k}"), v.as_str())));
        for (field, value) in named {
            if let Err(e) = crate::identity::check_subject(value) {
                out.push(format!(
                    "subjects[{i}].{field} refused: {e}; no action will name it"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::action::Operation;
    use crate::guard::GuardConfig;

    /// High and critical alerts disable every subject; medium ones ask for approval.
    const POLICY: &str = r#"package deprovd
import rego.v1
decisions contains d if {
  input.alert.severity in {"high", "critical"}
  some s in input.alert.subjects
  d := {"action": "disable_account", "subject": s.email, "rule": "high", "reason": "test"}
}
decisions contains d if {
  input.alert.severity == "medium"
  some s in input.alert.subjects
  d := {"action": "disable_account", "subject": s.email, "rule": "medium", "mode": "approval", "reason": "test"}
}
"#;

    fn decider(guards: GuardConfig) -> (tempfile::TempDir, Decider) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.rego"), POLICY).unwrap();
        let policies = Policies::load(&crate::policy::PolicyConfig {
            dir: Some(dir.path().to_path_buf()),
            watch: false,
            ..Default::default()
        })
        .unwrap();
        let caps = BTreeMap::from([
            (
                "okta".to_string(),
                BTreeSet::from([Operation::DisableAccount]),
            ),
            (
                "scim".to_string(),
                BTreeSet::from([Operation::DisableAccount]),
            ),
        ]);
        let d = Decider::new(
            policies,
            Planner::from_capabilities(caps),
            Guards::new(&guards).unwrap(),
            Arc::new(Metrics::new()),
        );
        (dir, d)
    }

    fn alert(id: &str, severity: &str, subjects: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id,
            "source": "crowdstrike",
            "time": "2026-11-26T10:00:00Z",
            "severity": severity,
            "category": "credential_theft",
            "title": "Credential dumping",
            "subjects": subjects,
        }))
        .unwrap()
    }

    #[test]
    fn a_decision_becomes_one_planned_action_per_capable_connector_with_the_bundle_digest() {
        let (_dir, d) = decider(GuardConfig::default());
        let p = d
            .decide(
                &alert("a-1", "critical", &["jdoe@corp.example"]),
                Some("generic"),
            )
            .unwrap();
        assert_eq!(p.decisions.len(), 1);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let mut connectors: Vec<_> = p.actions.iter().map(|a| a.connector.as_str()).collect();
        connectors.sort();
        assert_eq!(connectors, ["okta", "scim"]);
        assert!(!p.policy_digest.is_empty());
        for a in &p.actions {
            assert_eq!(a.state, ActionState::Planned);
            assert_eq!(a.subject, "jdoe@corp.example");
            assert_eq!(a.policy_digest, p.policy_digest);
            assert_eq!(a.state_reason, None);
        }
    }

    #[test]
    fn the_same_alert_decided_twice_plans_the_same_idempotency_keys() {
        let (_dir, d) = decider(GuardConfig::default());
        let bytes = alert("a-2", "high", &["jdoe@corp.example", "amy@corp.example"]);
        let keys =
            |p: Planned| -> BTreeSet<String> { p.actions.into_iter().map(|a| a.key).collect() };
        let first = keys(d.decide(&bytes, Some("generic")).unwrap());
        assert_eq!(first.len(), 4);
        assert_eq!(first, keys(d.decide(&bytes, Some("generic")).unwrap()));
    }

    #[test]
    fn guards_skip_protected_subjects_and_approval_mode_holds_with_typed_reasons() {
        let (_dir, d) = decider(GuardConfig {
            protected: vec!["breakglass@corp.example".into()],
            ..GuardConfig::default()
        });
        let p = d
            .decide(
                &alert(
                    "a-3",
                    "critical",
                    &["jdoe@corp.example", "ＢＲＥＡＫＧＬＡＳＳ@corp.example"],
                ),
                Some("generic"),
            )
            .unwrap();
        let protected: Vec<_> = p
            .actions
            .iter()
            .filter(|a| a.state == ActionState::Skipped)
            .collect();
        assert_eq!(protected.len(), 2, "one per connector: {:?}", p.actions);
        assert!(
            protected
                .iter()
                .all(|a| a.state_reason == Some(StateReason::Protected))
        );
        let held = d
            .decide(
                &alert("a-4", "medium", &["jdoe@corp.example"]),
                Some("generic"),
            )
            .unwrap();
        assert!(held.actions.iter().all(|a| {
            a.state == ActionState::AwaitingApproval
                && a.state_reason == Some(StateReason::PolicyApproval)
        }));
    }

    #[test]
    fn the_global_dry_run_switch_skips_everything_and_says_so() {
        let (_dir, d) = decider(GuardConfig {
            dry_run: true,
            ..GuardConfig::default()
        });
        let p = d
            .decide(
                &alert("a-5", "critical", &["jdoe@corp.example"]),
                Some("generic"),
            )
            .unwrap();
        assert_eq!(p.actions.len(), 2);
        assert!(p.actions.iter().all(|a| a.state == ActionState::Skipped
            && a.state_reason == Some(StateReason::DryRun)
            && a.next_attempt_at.is_none()));
    }

    #[test]
    fn input_that_is_not_an_alert_is_a_normalize_error_not_a_plan() {
        let (_dir, d) = decider(GuardConfig::default());
        assert!(d.decide(b"{not json", Some("generic")).is_err());
        assert!(d.decide(b"[]", None).is_err());
    }

    #[test]
    fn a_low_severity_alert_is_decided_but_plans_nothing() {
        let (_dir, d) = decider(GuardConfig::default());
        let p = d
            .decide(
                &alert("a-6", "low", &["jdoe@corp.example"]),
                Some("generic"),
            )
            .unwrap();
        assert!(p.decisions.is_empty() && p.actions.is_empty());
        assert_eq!(p.alert.id, "a-6");
    }
}
