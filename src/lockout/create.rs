//! Creating a lockout: expanding a request into keyed actions and recording them.

use super::*;

/// Expand a request into actions: validate it against the configured connectors and key every action
/// by the request id. Pure: guards are applied when recording.
pub(crate) fn plan(
    capabilities: &BTreeMap<String, std::collections::BTreeSet<Operation>>,
    req: &LockoutRequest,
    id: &str,
    requester: &str,
    now: DateTime<Utc>,
) -> Result<Vec<ActionRecord>, LockoutError> {
    // Control and invisible characters, or an absurd length: 422 with the reason, nothing recorded.
    crate::identity::check_subject(&req.subject)
        .map_err(|e| LockoutError::invalid("invalid_subject", format!("`subject`: {e}")))?;
    let subject = normalize_subject(&req.subject);
    if subject.is_empty() {
        return Err(LockoutError::invalid(
            "invalid_request",
            "`subject` must not be empty",
        ));
    }
    if req.reason.trim().is_empty() {
        return Err(LockoutError::invalid(
            "invalid_request",
            "`reason` must not be empty: say why, for the audit trail and the account owner",
        ));
    }
    let ops: Vec<Operation> = match &req.operations {
        Some(ops) if ops.is_empty() => {
            return Err(LockoutError::invalid(
                "invalid_request",
                "`operations` must not be empty (omit it for disable_account + revoke_sessions)",
            ));
        }
        Some(ops) => ops.clone(),
        None => DEFAULT_OPERATIONS.to_vec(),
    };
    for op in &ops {
        if matches!(
            op,
            Operation::EnableAccount
                | Operation::RestoreGroupMemberships
                | Operation::LiftContainment
        ) {
            return Err(LockoutError::invalid(
                "invalid_operation",
                format!("`{op}` undoes a lockout; use POST /v1/lockouts/{{id}}/restore instead"),
            ));
        }
    }
    let connectors: Vec<&str> = match &req.connectors {
        Some(names) if names.is_empty() => {
            return Err(LockoutError::invalid(
                "invalid_request",
                "`connectors` must not be empty (omit it for every configured connector)",
            ));
        }
        Some(names) => {
            for n in names {
                if !capabilities.contains_key(n) {
                    return Err(LockoutError::invalid(
                        "unknown_connector",
                        format!(
                            "connector `{n}` is not configured (configured: {})",
                            capabilities.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            names.iter().map(String::as_str).collect()
        }
        None => capabilities.keys().map(String::as_str).collect(),
    };
    let both_explicit = req.connectors.is_some() && req.operations.is_some();
    let mut actions = BTreeMap::new();
    for connector in connectors {
        for op in &ops {
            let capable = capabilities
                .get(connector)
                .is_some_and(|caps| caps.contains(op));
            if !capable {
                if both_explicit {
                    return Err(LockoutError::invalid(
                        "unsupported_operation",
                        format!("connector `{connector}` cannot {op}"),
                    ));
                }
                continue;
            }
            let key = action_key(id, MANUAL_RULE, connector, *op, &subject);
            actions.entry(key.clone()).or_insert_with(|| {
                let new = NewAction {
                    key,
                    origin: Origin::Manual {
                        request_id: id.to_string(),
                        actor: requester.to_string(),
                    },
                    rule: MANUAL_RULE.to_string(),
                    policy_digest: String::new(),
                    subject: subject.clone(),
                    connector: connector.to_string(),
                    operation: *op,
                    reason: req.reason.trim().to_string(),
                };
                let fresh = ActionRecord::planned(new, now);
                if req.require_approval {
                    ActionRecord {
                        state: ActionState::AwaitingApproval,
                        next_attempt_at: None,
                        state_reason: Some(StateReason::FourEyes),
                        ..fresh
                    }
                } else {
                    fresh
                }
            });
        }
    }
    if actions.is_empty() {
        return Err(LockoutError::invalid(
            "nothing_to_do",
            format!(
                "no configured connector can {}",
                ops.iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    }
    Ok(actions.into_values().collect())
}

fn summary(r: &RecordedAction) -> ActionSummary {
    let (key, note) = match &r.coalesced_into {
        Some(into) => (
            into.clone(),
            Some("absorbed by a live action for the same subject, connector and operation".into()),
        ),
        None => (r.key.clone(), r.note.clone()),
    };
    ActionSummary {
        key,
        connector: r.connector.clone(),
        operation: r.operation,
        state: r.state,
        note,
    }
}

/// Record a lockout under request id `id` (a fresh [`new_id`], or the one an `Idempotency-Key`
/// claim holds). Recording again with the same id and request changes nothing and answers the same.
pub(crate) async fn create(
    pipeline: &Pipeline,
    req: &LockoutRequest,
    id: &str,
    requester: &str,
) -> Result<Created, LockoutError> {
    let now = Utc::now();
    // One spelling per account, as for alerts: a lockout of `CORP\jdoe` coalesces with an alert's
    // action for `jdoe@corp.example`. The request itself (and its fingerprint) keeps the original.
    let mut resolved = req.clone();
    resolved.subject = pipeline
        .decider
        .planner
        .identity()
        .check(&req.subject)
        .map_err(|e| LockoutError::invalid("invalid_subject", format!("`subject`: {e}")))?;
    let actions = plan(
        pipeline.decider.planner.capabilities(),
        &resolved,
        id,
        requester,
        now,
    )?;
    let subject = actions[0].subject.clone();
    let recorded = pipeline.record_manual(actions, id, true).await?;
    let summaries: Vec<ActionSummary> = recorded.iter().map(summary).collect();
    let lockout = Lockout {
        id: id.to_string(),
        subject: subject.clone(),
        reason: req.reason.trim().to_string(),
        ticket: req.ticket.clone().filter(|t| !t.trim().is_empty()),
        requester: requester.to_string(),
        created_at: now,
        actions: summaries
            .iter()
            .map(|s| LockoutAction {
                key: s.key.clone(),
                connector: s.connector.clone(),
                operation: s.operation,
            })
            .collect(),
    };
    let doc = serde_json::to_value(&lockout)
        .map_err(|e| LockoutError::Unavailable(format!("cannot encode lockout: {e}")))?;
    // NX: a replay keeps the first document (and its creation time).
    pipeline
        .store
        .put_json(LOCKOUT_NS, id, &doc, true, None)
        .await?;
    tracing::info!(lockout_id = %id, requester, subject = %subject, actions = summaries.len(), "lockout recorded");
    Ok(Created {
        id: id.to_string(),
        subject,
        actions: summaries,
    })
}
