//! `ocsf`: OCSF 1.x findings and risky authentications — Detection Finding (`class_uid` 2004, the
//! first-class external schema), Security Finding (2001, OCSF 1.0's finding class), Incident Finding
//! (2005) and Authentication (3002) when it carries a failure or a risk.
//!
//! Mapping (see `docs/alert-model.md` for the full table):
//! - `id` ← `finding_info.uid` (2004), `finding.uid` then `finding_info.uid` (2001), else
//!   `metadata.uid`; Incident Finding and Authentication have only `metadata.uid`. Missing is an error.
//! - `time` ← `time` (epoch ms), else the finding's `created_time` (2001, 2004), else `start_time`
//!   (2005); all missing is an error.
//! - `severity` ← `severity_id`: 0 Unknown → informational (an unknown never escalates; policies
//!   can still read `raw.severity_id`), 1 informational, 2 low, 3 medium, 4 high, 5 critical,
//!   6 Fatal → critical, 99 Other → the `severity` string read as a name. Missing `severity_id` falls
//!   back to the `severity` string. A `risk_level_id` (0 Info … 4 Critical, 99 → `risk_level`) raises
//!   the severity, never lowers it. `severity_score` ← `risk_score`, else `severity_id` (0–6).
//! - `category` ← first match of the finding's `types[]`, then `analytic` (name, category), then
//!   ATT&CK techniques, then ATT&CK tactics (`category_from_text`, `category_from_technique`,
//!   `category_from_tactic`); default `other`. Authentication: `status_detail`/`message` by text,
//!   else `suspicious_login`.
//! - `subjects` ← `actor.user`, `evidences[].user`, `evidences[].actor.user`, `resources[]` whose
//!   `type` ends in `user`; merged when they name the same account. A user object with no
//!   identifier is skipped (vendors emit partial objects); a finding with no user at all is kept,
//!   because policies may still notify. An Incident's `assignee` is the responder, never a subject.
//!   Authentication: `user` (the account authenticating), else `actor.user`; none is an error.
//! - `host` ← `device` (`hostname` or `name`, `uid`, `ip`, `os.name`); Authentication falls back to
//!   `dst_endpoint` (the system signed in to).
//! - `indicators` ← `observables[]`, `type_id` → kind (`indicator_kind`); Authentication adds
//!   `src_endpoint.ip` (where the sign-in came from).
//! - `source` ← `metadata.product.vendor_name` / `name`, lower-cased (vendor `unknown` if absent).
//! - `labels`: `mitre_tactics`, `mitre_techniques`, `finding_types` (comma-separated), `ocsf_class`,
//!   and per class: `risk_level`, `finding_state` (2001), `incident_status`, `incident_priority`,
//!   `incident_verdict`, `suspected_breach` (2005), `auth_status`, `mfa`, `auth_protocol`,
//!   `logon_type`, `src_country` (3002), when present.
//!
//! Authentication events are the sign-in log, mostly successes: only those with a failure
//! (`status_id` 2) or a risk (`risk_level_id` 1–4, a `risk_level` other than Info, or a positive
//! `risk_score`) are alerts. Any other is dead-lettered with a reason saying so, because a source that
//! streams every sign-in here is misrouted and a silent drop would hide it.
//!
//! Detection: `class_uid` is one of the numbers above. Under an explicit `format = "ocsf"`, any other
//! class is an error naming it, so a misrouted Network Activity event is dead-lettered rather than
//! guessed at.
use std::collections::BTreeSet;

use serde_json::Value;

use super::fields::{
    TimeUnit, default_severity, echo, has_identifier, id_or_derived, normalize_object, problem,
    push_subject, receipt_time, severity_from_name, str_of, subject_from_name, vendor_time,
};
use super::{
    Alert, AlertProblem, Host, Indicator, NormalizeError, Normalizer, ProblemKind, Severity,
    Source, Subject,
};

mod authentication;
mod mapping;
#[cfg(test)]
mod tests;

use authentication::build_authentication;
use mapping::*;
pub(crate) use mapping::{category_from_tactic, category_from_technique, category_from_text};

pub(super) const FORMAT: &str = "ocsf";
pub(super) const SECURITY_FINDING: u64 = 2001;
pub(super) const DETECTION_FINDING: u64 = 2004;
pub(super) const INCIDENT_FINDING: u64 = 2005;
pub(super) const AUTHENTICATION: u64 = 3002;
/// Every class this normalizer reads, for detection and messages.
pub(crate) const CLASSES: [u64; 4] = [
    SECURITY_FINDING,
    DETECTION_FINDING,
    INCIDENT_FINDING,
    AUTHENTICATION,
];
/// The same, as written in error messages.
pub(crate) const CLASSES_TEXT: &str =
    "Security Finding 2001, Detection Finding 2004, Incident Finding 2005, Authentication 3002";

/// OCSF findings (classes 2001, 2004, 2005) and risky authentications (3002) normalizer.
pub(crate) struct Ocsf;

impl Normalizer for Ocsf {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.get("class_uid")
            .and_then(Value::as_u64)
            .is_some_and(|c| CLASSES.contains(&c))
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "an OCSF event", doc, |doc| {
            match check_class(doc)? {
                AUTHENTICATION => build_authentication(doc),
                class => build(doc, class),
            }
        })
    }
}

pub(super) fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

pub(super) fn check_class(doc: &Value) -> Result<u64, NormalizeError> {
    match doc.get("class_uid") {
        None | Some(Value::Null) => Err(invalid(format!(
            "class_uid is missing (expected one of: {CLASSES_TEXT})"
        ))),
        Some(v) => match v.as_u64() {
            Some(n) if CLASSES.contains(&n) => Ok(n),
            Some(n) => Err(invalid(format!(
                "class_uid {n} ({}) is not a class deprovd reads ({CLASSES_TEXT}); route this \
                 source to another format",
                class_name(n)
            ))),
            None => Err(invalid(format!(
                "class_uid `{}` is not an integer",
                echo(v)
            ))),
        },
    }
}

/// Names of the OCSF classes most likely to be misrouted here, for the error message.
pub(super) fn class_name(uid: u64) -> &'static str {
    match uid {
        2001 => "Security Finding",
        2002 => "Vulnerability Finding",
        2003 => "Compliance Finding",
        2005 => "Incident Finding",
        2006 => "Data Security Finding",
        3001 => "Account Change",
        3002 => "Authentication",
        3003 => "Authorize Session",
        1001 => "File System Activity",
        1007 => "Process Activity",
        4001 => "Network Activity",
        _ => "unsupported class",
    }
}

/// The finding objects of a document: `finding_info` (2004), `finding` then `finding_info` (2001,
/// whose 1.0 shape uses `finding`), every `finding_info_list[]` entry (2005).
pub(super) fn finding_infos(doc: &Value, class: u64) -> Vec<&Value> {
    let one = |k: &str| doc.get(k).filter(|v| v.is_object());
    match class {
        SECURITY_FINDING => one("finding")
            .or_else(|| one("finding_info"))
            .into_iter()
            .collect(),
        INCIDENT_FINDING => doc
            .get("finding_info_list")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter(|v| v.is_object()).collect())
            .unwrap_or_default(),
        _ => one("finding_info").into_iter().collect(),
    }
}

/// Name of the finding object for messages.
pub(super) fn info_name(class: u64) -> &'static str {
    match class {
        SECURITY_FINDING => "finding",
        INCIDENT_FINDING => "finding_info_list[]",
        _ => "finding_info",
    }
}

/// The event's time: `time` (epoch milliseconds, read by magnitude when a producer wrote seconds),
/// else `fallback` (the class's creation or start time), else `time_dt` (RFC 3339), else the time
/// of receipt; each deviation noted.
pub(super) fn event_time(
    doc: &Value,
    fallback: (&str, Option<&Value>),
    notes: &mut Vec<AlertProblem>,
) -> chrono::DateTime<chrono::Utc> {
    vendor_time(
        &[("time", doc.get("time")), fallback],
        TimeUnit::Millis,
        notes,
    )
    .or_else(|| vendor_time(&[("time_dt", doc.get("time_dt"))], TimeUnit::Rfc3339, notes))
    .unwrap_or_else(|| receipt_time(&["time", fallback.0, "time_dt"], notes))
}

/// `severity_id` / `severity` raised by the risk level, as [`parse_severity`] and
/// [`parse_risk_level`] read them; what they cannot read is noted: an unknown severity becomes the
/// documented default, an unknown risk level is ignored. Returns the `severity_id` too.
pub(super) fn lenient_severity(
    doc: &Value,
    notes: &mut Vec<AlertProblem>,
) -> (Severity, Option<u64>) {
    let reason = |e: NormalizeError| match e {
        NormalizeError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    };
    let (severity, id) = match parse_severity(doc) {
        Ok(found) => found,
        Err(e) => (default_severity(reason(e), notes), None),
    };
    let risk = parse_risk_level(doc).unwrap_or_else(|e| {
        notes.push(problem(
            ProblemKind::SeverityOutOfRange,
            format!("{}; the risk level is not read", reason(e)),
        ));
        None
    });
    (risk.map_or(severity, |r| r.max(severity)), id)
}

pub(super) fn build(doc: &Value, class: u64) -> Result<Alert, NormalizeError> {
    let infos = finding_infos(doc, class);
    // An incident's `finding_info_list` names the findings it groups, not the incident itself.
    let info = (class != INCIDENT_FINDING)
        .then(|| infos.first().copied())
        .flatten();
    let mut notes = Vec::new();
    let id_fields = if class == INCIDENT_FINDING {
        "metadata.uid".to_string()
    } else {
        format!("{}.uid and metadata.uid", info_name(class))
    };
    let id = id_or_derived(
        str_of(info.and_then(|i| i.get("uid"))).or_else(|| str_of(doc.pointer("/metadata/uid"))),
        &id_fields,
        doc,
        &mut notes,
    );

    let fallback = if class == INCIDENT_FINDING {
        ("start_time", doc.get("start_time"))
    } else if class == SECURITY_FINDING && doc.get("finding").is_some() {
        (
            "finding.created_time",
            info.and_then(|i| i.get("created_time")),
        )
    } else {
        (
            "finding_info.created_time",
            info.and_then(|i| i.get("created_time")),
        )
    };
    let time = event_time(doc, fallback, &mut notes);
    let (severity, severity_id) = lenient_severity(doc, &mut notes);
    let severity_score = doc
        .get("risk_score")
        .and_then(Value::as_f64)
        .or(severity_id.filter(|id| *id <= 6).map(|id| id as f64));

    let mut alert = Alert::new(source(doc), id, time, severity, notes);
    alert.severity_score = severity_score;

    let attacks = attacks(
        infos
            .iter()
            .map(|i| i.get("attacks"))
            .chain(std::iter::once(doc.get("attacks"))),
    );
    alert.add_list_label("mitre_tactics", attacks.tactics.iter().copied());
    alert.add_list_label("mitre_techniques", attacks.techniques.iter().copied());
    let mut types: Vec<&str> = Vec::new();
    for info in &infos {
        let list = info.get("types").and_then(Value::as_array);
        for t in list.into_iter().flatten().filter_map(|t| str_of(Some(t))) {
            if !types.contains(&t) {
                types.push(t);
            }
        }
    }
    alert.add_list_label("finding_types", types.iter().copied());
    alert.add_label("risk_level", risk_label(doc));
    match class {
        SECURITY_FINDING => {
            alert.add_label("finding_state", str_of(doc.get("state")));
        }
        INCIDENT_FINDING => {
            alert.add_label("incident_status", str_of(doc.get("status")));
            alert.add_label("incident_verdict", str_of(doc.get("verdict")));
            let priority = doc.get("priority").and_then(|p| match p {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            alert.add_label("incident_priority", priority.as_deref());
            let breach = doc.get("is_suspected_breach").and_then(Value::as_bool);
            alert.add_label("suspected_breach", breach.map(|b| b.to_string()).as_deref());
        }
        _ => {}
    }

    let analytics = infos
        .iter()
        .map(|i| i.get("analytic"))
        .chain(std::iter::once(doc.get("analytic")))
        .flatten();
    let analytic_text: Vec<&str> = analytics
        .flat_map(|a| [str_of(a.get("name")), str_of(a.get("category"))])
        .flatten()
        .collect();
    alert.category = types
        .iter()
        .copied()
        .chain(analytic_text)
        .find_map(category_from_text)
        .or_else(|| {
            attacks
                .techniques
                .iter()
                .find_map(|t| category_from_technique(t))
        })
        .or_else(|| attacks.tactics.iter().find_map(|t| category_from_tactic(t)))
        .unwrap_or("other")
        .to_string();

    alert.title = if class == INCIDENT_FINDING {
        str_of(doc.get("desc"))
            .or_else(|| str_of(doc.get("message")))
            .or_else(|| infos.iter().find_map(|i| str_of(i.get("title"))))
    } else {
        str_of(info.and_then(|i| i.get("title"))).or_else(|| str_of(doc.get("message")))
    }
    .unwrap_or_default()
    .to_string();

    alert.subjects = subjects(doc, &alert.source.vendor)?;
    alert.host = host(doc.get("device"));
    alert.indicators = indicators(doc.get("observables"));
    Ok(alert)
}
