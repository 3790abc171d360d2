//! Authentication (3002): the sign-in log, an alert only with a failure or a risk.

use super::*;
use crate::alert::DEFAULT_SEVERITY;

/// Authentication (3002): an alert only when it carries a failure or a risk.
pub(super) fn build_authentication(doc: &Value) -> Result<Alert, NormalizeError> {
    let mut notes = Vec::new();
    let id = id_or_derived(
        str_of(doc.pointer("/metadata/uid")),
        "metadata.uid",
        doc,
        &mut notes,
    );
    let (severity, severity_id) = lenient_severity(doc, &mut notes);
    // `lenient_severity` folds a readable risk in. A risk level the producer filled in but that
    // cannot be read still says "at risk": the sign-in is an alert, at the default severity.
    let risk = parse_risk_level(doc);
    let risk_unreadable = risk.is_err();
    let risk = risk.ok().flatten();
    let risk_score = doc.get("risk_score").and_then(Value::as_f64);
    let failed = doc.get("status_id").and_then(Value::as_u64) == Some(2);
    let risky = risk_unreadable
        || risk.is_some_and(|r| r > Severity::Informational)
        || risk_score.is_some_and(|s| s > 0.0);
    if !failed && !risky {
        return Err(invalid(
            "Authentication event carries neither a failure (status_id 2) nor a risk (risk_level_id \
             1–4, risk_level, risk_score > 0): it is not an alert; send only failed or risky \
             sign-ins to this source",
        ));
    }
    let severity = if risk_unreadable && severity < DEFAULT_SEVERITY {
        default_severity("an unreadable risk level on a sign-in", &mut notes)
    } else {
        severity
    };
    let time = event_time(doc, ("start_time", doc.get("start_time")), &mut notes);
    let mut alert = Alert::new(source(doc), id, time, severity, notes);
    alert.severity_score = risk_score.or(severity_id.filter(|id| *id <= 6).map(|id| id as f64));

    let user = doc
        .get("user")
        .filter(|u| u.is_object())
        .or_else(|| doc.pointer("/actor/user"));
    let s = user.and_then(|u| user_subject(u, &alert.source.vendor));
    alert.add_subject(s).map_err(invalid)?;
    if alert.subjects.is_empty() {
        alert.note(
            ProblemKind::NoSubject,
            "Authentication event names no user (`user` or `actor.user` with name, email_addr or \
             uid, placeholders aside); notify-only",
        );
    }

    alert.add_label("risk_level", risk_label(doc));
    let status = str_of(doc.get("status")).or(match doc.get("status_id").and_then(Value::as_u64) {
        Some(1) => Some("Success"),
        Some(2) => Some("Failure"),
        _ => None,
    });
    alert.add_label("auth_status", status.map(str::to_lowercase).as_deref());
    let mfa = doc.get("is_mfa").and_then(Value::as_bool);
    alert.add_label("mfa", mfa.map(|m| m.to_string()).as_deref());
    alert.add_label("auth_protocol", str_of(doc.get("auth_protocol")));
    alert.add_label("logon_type", str_of(doc.get("logon_type")));
    alert.add_label(
        "src_country",
        str_of(doc.pointer("/src_endpoint/location/country")),
    );

    let detail = str_of(doc.get("status_detail"));
    let message = str_of(doc.get("message"));
    alert.category = detail
        .into_iter()
        .chain(message)
        .find_map(category_from_text)
        .unwrap_or("suspicious_login")
        .to_string();
    let who = alert
        .subjects
        .first()
        .and_then(|s| s.primary())
        .unwrap_or("unknown user")
        .to_string();
    alert.title = message.map(str::to_string).unwrap_or_else(|| {
        let what = if failed {
            "failed sign-in"
        } else {
            "risky sign-in"
        };
        match detail {
            Some(d) => format!("{what} for {who}: {d}"),
            None => format!("{what} for {who}"),
        }
    });

    alert.indicators = indicators(doc.get("observables"));
    alert.add_indicator("ip", str_of(doc.pointer("/src_endpoint/ip")));
    alert.host = host(doc.get("device")).or_else(|| host(doc.get("dst_endpoint")));
    Ok(alert)
}
