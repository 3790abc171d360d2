//! The audit batch of one alert: received, decisions, and one record per guard intervention.

use super::*;

/// The audit records of one alert: received, decisions, and one per guard intervention. Batched so
/// that the alert costs one audit round trip.
pub(super) fn audit_batch(
    planned: &Planned,
    recorded: &[RecordedAction],
    actor: Actor,
) -> Vec<AuditDraft> {
    let alert = &planned.alert;
    let digest = Some(planned.policy_digest.clone());
    let subjects: Vec<String> = alert
        .subjects
        .iter()
        .filter_map(|s| s.email.as_deref().or(s.username.as_deref()))
        .map(crate::plan::normalize_subject)
        .collect();
    // A record names a subject only when it concerns exactly one, so `?subject=` finds it.
    let mut decided: Vec<String> = planned
        .decisions
        .iter()
        .map(|d| crate::plan::normalize_subject(&d.subject))
        .collect();
    decided.sort_unstable();
    decided.dedup();
    let only = |v: &[String]| match v {
        [one] => Some(one.clone()),
        _ => None,
    };
    let mut received = AuditDraft::new(
        AuditKind::AlertReceived,
        actor.clone(),
        serde_json::json!({
            "outcome": "accepted",
            "format": alert.source.format,
            "title": alert.title,
            "category": alert.category,
            "severity": alert.severity,
            "time": alert.time,
            "subjects": subjects,
            "problems": planned.problems,
        }),
    );
    received.alert_id = Some(alert.id.clone());
    received.subject = only(&subjects);
    received.policy_digest = digest.clone();
    let mut decision = AuditDraft::new(
        AuditKind::Decision,
        actor.clone(),
        serde_json::json!({ "decisions": planned.decisions, "actions": recorded }),
    );
    decision.time = received.time;
    decision.alert_id = Some(alert.id.clone());
    decision.subject = only(&decided);
    decision.policy_digest = digest.clone();
    let mut out = vec![received, decision];
    for (a, r) in planned.actions.iter().zip(recorded) {
        // The recorded state and note: the breaker may have held what the plan said to run.
        if r.disposition != Disposition::New
            || !matches!(
                r.state,
                ActionState::Skipped | ActionState::AwaitingApproval
            )
        {
            continue;
        }
        let mut g = AuditDraft::new(
            AuditKind::Guard,
            actor.clone(),
            serde_json::json!({
                "state": r.state,
                "note": r.note,
                "connector": a.connector,
                "operation": a.operation,
                "rule": a.rule,
            }),
        );
        g.time = out[0].time;
        g.alert_id = Some(alert.id.clone());
        g.subject = Some(a.subject.clone());
        g.action_key = Some(a.key.clone());
        g.policy_digest = digest.clone();
        out.push(g);
    }
    out
}
