//! `crowdstrike`: CrowdStrike Falcon Streaming API events and the Alerts API alert entity.
//!
//! Two shapes, told apart by structure (see `docs/alert-model.md` for the full tables):
//! - **Streaming API** event: `{metadata: {eventType, eventCreationTime, offset}, event: {…}}` with
//!   `eventType` one of `DetectionSummaryEvent`, `IncidentSummaryEvent`, `IdentityProtectionEvent`,
//!   `IdpDetectionSummaryEvent`.
//!   Other stream event types (auth audits, user activity) are not alerts and are rejected by name.
//! - **Alerts API** entity (`GET /alerts/entities/alerts/v2`): a flat object with `composite_id`.
//!
//! Why a dead-letter for an identity event without a user: an `IdentityProtectionEvent` (or an
//! Alerts API entity of product `idp`) is *about* an account; one without any account name is a
//! truncated or mis-mapped payload, and silently treating it as notify-only would hide a compromise.
//! Endpoint detections and incidents may legitimately name only a host, so they are kept.

use serde_json::Value;

use super::fields::{
    FieldError, echo, normalize_object, severity_from_name, str_of, subject_from_name,
    time_from_epoch_ms, time_from_rfc3339,
};
use super::generic::severity_from_score;
use super::ocsf::{category_from_tactic, category_from_technique, category_from_text};
use super::{Alert, Host, NormalizeError, Normalizer, Severity, Source};

const FORMAT: &str = "crowdstrike";
/// The Streaming API event types that are alerts.
const STREAM_TYPES: &[&str] = &[
    "DetectionSummaryEvent",
    "IncidentSummaryEvent",
    "IdentityProtectionEvent",
    "IdpDetectionSummaryEvent",
];
/// The stream types that are about an account (Falcon Identity Protection).
const IDENTITY_TYPES: &[&str] = &["IdentityProtectionEvent", "IdpDetectionSummaryEvent"];

/// CrowdStrike Falcon normalizer (Streaming API events and Alerts API entities).
pub struct CrowdStrike;

impl Normalizer for CrowdStrike {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        let stream = doc
            .pointer("/metadata/eventType")
            .and_then(Value::as_str)
            .is_some_and(|t| STREAM_TYPES.contains(&t))
            && doc.get("event").is_some_and(Value::is_object);
        let entity =
            doc.get("composite_id").is_some_and(Value::is_string) && doc.get("severity").is_some();
        stream || entity
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "a Falcon event or alert", doc, |doc| {
            if doc.get("metadata").is_some() && doc.get("event").is_some() {
                stream_event(doc)
            } else if doc.get("composite_id").is_some() {
                alert_entity(doc)
            } else {
                Err(invalid(
                    "neither a Streaming API event (metadata.eventType + event) nor an Alerts API \
                     entity (composite_id)",
                ))
            }
        })
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

fn text(v: Option<&Value>) -> Option<String> {
    str_of(v).map(str::to_string)
}

/// Falcon's 1–5 `Severity` scale (Streaming API); 0 is sent for "unknown" and never escalates.
fn severity_from_level(level: u64) -> Option<Severity> {
    match level {
        0 | 1 => Some(Severity::Informational),
        2 => Some(Severity::Low),
        3 => Some(Severity::Medium),
        4 => Some(Severity::High),
        5 => Some(Severity::Critical),
        _ => None,
    }
}

/// Category from the most precise signal first: ATT&CK technique id, then technique / detection
/// names, then the tactic (Falcon also uses the pseudo-tactic `Malware`); default `other`.
fn category(technique_id: Option<&str>, names: &[Option<&str>], tactic: Option<&str>) -> String {
    technique_id
        .and_then(category_from_technique)
        .or_else(|| names.iter().flatten().find_map(|n| category_from_text(n)))
        .or_else(|| {
            tactic.and_then(|t| {
                category_from_tactic(t)
                    .or_else(|| category_from_text(t))
                    .or_else(|| {
                        t.trim()
                            .eq_ignore_ascii_case("malware")
                            .then_some("malware")
                    })
            })
        })
        .unwrap_or("other")
        .to_string()
}

/// Falcon's `IOCType` values → indicator kinds.
fn ioc_kind(t: &str) -> &str {
    match t {
        "hash_sha256" => "sha256",
        "hash_md5" => "md5",
        "hash_sha1" => "sha1",
        "ipv4" | "ipv6" => "ip",
        "domain" => "domain",
        "url" => "url",
        other => other,
    }
}

fn stream_event(doc: &Value) -> Result<Alert, NormalizeError> {
    let event_type = str_of(doc.pointer("/metadata/eventType"))
        .ok_or_else(|| invalid("metadata.eventType is missing"))?;
    if !STREAM_TYPES.contains(&event_type) {
        return Err(invalid(format!(
            "metadata.eventType `{}` is not an alert (expected one of: {})",
            echo(event_type),
            STREAM_TYPES.join(", ")
        )));
    }
    let ev = doc
        .get("event")
        .filter(|e| e.is_object())
        .ok_or_else(|| invalid("event is missing or not an object"))?;
    let get = |k: &str| str_of(ev.get(k));

    let id = get("DetectId")
        .or_else(|| get("IncidentId"))
        .or_else(|| get("IdentityProtectionIncidentId"))
        .or_else(|| get("CompositeId"))
        .map(str::to_string)
        .or_else(|| {
            // Incident events of older API versions carry no id field; the stream offset is unique
            // per customer stream and stable across redelivery.
            doc.pointer("/metadata/offset")
                .and_then(Value::as_u64)
                .map(|o| format!("offset:{o}"))
        })
        .ok_or_else(|| {
            invalid(format!(
                "{event_type}: event.DetectId (or IncidentId) and metadata.offset are all missing"
            ))
        })?;

    let time = match doc.pointer("/metadata/eventCreationTime") {
        Some(t) if !t.is_null() => {
            creation_time(t).map_err(|e| invalid(format!("metadata.eventCreationTime: {e}")))?
        }
        _ => {
            return Err(invalid(
                "metadata.eventCreationTime is missing (epoch milliseconds)",
            ));
        }
    };

    let (severity, severity_score) = if event_type == "IncidentSummaryEvent" {
        let score = ev.get("FineScore").and_then(Value::as_f64);
        match score {
            Some(s) => (
                severity_from_score(s)
                    .ok_or_else(|| invalid(format!("event.FineScore {s} is outside 0–10")))?,
                Some(s),
            ),
            None => (stream_severity(ev, event_type)?, None),
        }
    } else {
        let level = ev.get("Severity").and_then(Value::as_u64);
        (stream_severity(ev, event_type)?, level.map(|l| l as f64))
    };

    let tactic = get("Tactic");
    let technique = get("Technique");
    let technique_id = get("TechniqueId");
    let detect_name = get("DetectName");
    let mut category = category(technique_id, &[technique, detect_name], tactic);
    if category == "other" && IDENTITY_TYPES.contains(&event_type) {
        category = "suspicious_login".into();
    }

    let title = detect_name
        .or_else(|| get("DetectDescription"))
        .map(str::to_string)
        .unwrap_or_else(|| match event_type {
            "IncidentSummaryEvent" => match get("IncidentType") {
                Some(t) => format!("Falcon incident ({t})"),
                None => "Falcon incident".to_string(),
            },
            other => other.to_string(),
        });

    let mut alert = falcon_alert(id, time, (severity, severity_score), category, title);
    alert
        .add_subject(get("UserName").and_then(subject_from_name))
        .map_err(invalid)?;
    // Identity Protection names the account in SourceAccount* fields as well.
    let mut src = get("SourceAccountName")
        .and_then(subject_from_name)
        .unwrap_or_default();
    if let Some(d) = get("SourceAccountDomain") {
        src.domain.get_or_insert_with(|| d.to_string());
    }
    // Falcon spells it `SourceAccountUpn`; some forwarders upper-case it.
    if let Some(upn) = get("SourceAccountUpn").or_else(|| get("SourceAccountUPN")) {
        src.email = Some(upn.to_string());
    }
    if let Some(sid) = get("SourceAccountObjectSid").or_else(|| get("UserSid")) {
        src.ids.insert("windows".into(), sid.to_string());
    }
    alert.add_subject(Some(src)).map_err(invalid)?;
    if IDENTITY_TYPES.contains(&event_type) && alert.subjects.is_empty() {
        return Err(invalid(format!(
            "{event_type} names no account (event.UserName, SourceAccountName, \
             SourceAccountUpn and SourceAccountObjectSid are all missing or blank)"
        )));
    }

    alert.set_host(Host {
        hostname: get("ComputerName")
            .or_else(|| get("SourceEndpointHostName"))
            .map(str::to_string),
        id: get("SensorId")
            .or_else(|| get("AgentId"))
            .map(str::to_string),
        ips: get("LocalIP")
            .or_else(|| get("SourceEndpointIpAddress"))
            .map(str::to_string)
            .into_iter()
            .collect(),
        os: None,
    });
    hashes_and_process(&mut alert, get("FileName"), get("CommandLine"), |k| {
        get(&format!("{}String", k.to_ascii_uppercase()))
    });
    if let (Some(t), Some(v)) = (get("IOCType"), get("IOCValue")) {
        alert.add_indicator(ioc_kind(t), Some(v));
    }

    alert.add_label("event_type", Some(event_type));
    alert.add_label("mitre_tactics", tactic);
    alert.add_label("mitre_techniques", technique_id.or(technique));
    alert.add_label("objective", get("Objective"));
    alert.add_label("falcon_link", get("FalconHostLink"));
    Ok(alert)
}

/// What both Falcon shapes start from once they know id, time, severity and score, category and
/// title.
fn falcon_alert(
    id: String,
    time: chrono::DateTime<chrono::Utc>,
    (severity, score): (Severity, Option<f64>),
    category: String,
    title: String,
) -> Alert {
    let mut alert = Alert::new(
        Source::of("crowdstrike", "falcon", FORMAT),
        id,
        time,
        severity,
    );
    alert.severity_score = score;
    alert.category = category;
    alert.title = title;
    alert
}

/// The file hashes (sha256, md5, sha1 in that order, read by `hash`), process file name and
/// command line both Falcon shapes carry.
fn hashes_and_process<'a>(
    alert: &mut Alert,
    file: Option<&str>,
    command_line: Option<&str>,
    hash: impl Fn(&str) -> Option<&'a str>,
) {
    for kind in ["sha256", "md5", "sha1"] {
        alert.add_indicator(kind, hash(kind));
    }
    alert.add_indicator("process", file);
    alert.add_indicator("command_line", command_line);
}

/// `metadata.eventCreationTime`: epoch milliseconds as Falcon documents it. Some forwarders
/// (SIEM connector variants) write epoch seconds; for this one field a 10-digit integer cannot be a
/// millisecond time (it would fall in 1970–1973, before Falcon existed), so it is read as seconds
/// instead of being dead-lettered.
fn creation_time(v: &Value) -> Result<chrono::DateTime<chrono::Utc>, FieldError> {
    match v.as_i64() {
        // Ten digits always fit chrono's range.
        Some(s) if (1_000_000_000..10_000_000_000).contains(&s) => {
            chrono::DateTime::from_timestamp(s, 0)
                .ok_or(FieldError::SecondsOutOfRange(s.to_string()))
        }
        _ => time_from_epoch_ms(v),
    }
}

/// `event.Severity` (1–5), else `event.SeverityName`.
fn stream_severity(ev: &Value, event_type: &str) -> Result<Severity, NormalizeError> {
    if let Some(v) = ev.get("Severity").filter(|v| !v.is_null()) {
        let level = v
            .as_u64()
            .ok_or_else(|| invalid(format!("event.Severity `{}` is not an integer", echo(v))))?;
        return severity_from_level(level)
            .ok_or_else(|| invalid(format!("event.Severity {level} is outside Falcon's 1–5")));
    }
    match str_of(ev.get("SeverityName")) {
        Some(n) => severity_from_name(n).ok_or_else(|| {
            invalid(format!(
                "event.SeverityName `{}` is not a known severity name",
                echo(n)
            ))
        }),
        None => Err(invalid(format!(
            "{event_type}: event.Severity and event.SeverityName are both missing"
        ))),
    }
}

fn alert_entity(doc: &Value) -> Result<Alert, NormalizeError> {
    let get = |k: &str| str_of(doc.get(k));
    let id = get("composite_id")
        .ok_or_else(|| invalid("composite_id is blank or not a string"))?
        .to_string();

    let time_field = ["timestamp", "created_timestamp"]
        .into_iter()
        .find(|k| doc.get(*k).is_some_and(|v| !v.is_null()));
    let time = match time_field {
        Some(k) => time_from_rfc3339(&doc[k]).map_err(|e| invalid(format!("{k}: {e}")))?,
        None => {
            return Err(invalid(
                "timestamp and created_timestamp are both missing (RFC 3339)",
            ));
        }
    };

    // 0–100; Falcon's own `severity_name` wins when present, else CVSS-like bands on score/10.
    let score = match doc.get("severity") {
        Some(Value::Null) | None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|s| (0.0..=100.0).contains(s))
                .ok_or_else(|| {
                    invalid(format!("severity `{}` is not a number in 0–100", echo(v)))
                })?,
        ),
    };
    let severity = match (get("severity_name"), score) {
        (Some(n), _) => severity_from_name(n).ok_or_else(|| {
            invalid(format!(
                "severity_name `{}` is not a known severity name",
                echo(n)
            ))
        })?,
        (None, Some(s)) => severity_from_score(s).unwrap_or(Severity::Informational),
        (None, None) => return Err(invalid("severity and severity_name are both missing")),
    };

    let tactic = get("tactic");
    let technique = get("technique");
    let technique_id = get("technique_id");
    let name = get("display_name").or_else(|| get("name"));
    let category = category(technique_id, &[technique, name], tactic);

    let title = name
        .or_else(|| get("description"))
        .unwrap_or_default()
        .to_string();

    let mut s = get("user_name")
        .and_then(subject_from_name)
        .unwrap_or_default();
    if let Some(upn) = get("user_principal") {
        if let Some(old) = s.email.replace(upn.to_string()) {
            if !old.eq_ignore_ascii_case(upn) {
                s.username.get_or_insert(old);
            }
        }
    }
    if let Some(sid) = get("user_id") {
        s.ids.insert("windows".into(), sid.to_string());
    }
    let mut alert = falcon_alert(id, time, (severity, score), category, title);
    alert.add_subject(Some(s)).map_err(invalid)?;
    let product = get("product");
    if product == Some("idp") && alert.subjects.is_empty() {
        return Err(invalid(
            "identity-protection alert (product `idp`) names no account (user_name, \
             user_principal and user_id are all missing or blank)",
        ));
    }

    let device = doc.get("device");
    let dget = |k: &str| text(device.and_then(|d| d.get(k)));
    alert.set_host(Host {
        hostname: dget("hostname"),
        id: dget("device_id").or_else(|| text(doc.get("agent_id"))),
        ips: dget("local_ip").into_iter().collect(),
        os: dget("platform_name"),
    });
    hashes_and_process(&mut alert, get("filename"), get("cmdline"), get);
    alert.add_indicator("ip", str_of(device.and_then(|d| d.get("external_ip"))));

    alert.add_label("falcon_product", product);
    alert.add_label("mitre_tactics", get("tactic_id").or(tactic));
    alert.add_label("mitre_techniques", technique_id.or(technique));
    alert.add_label("falcon_link", get("falcon_host_link"));
    alert.add_label("status", get("status"));
    Ok(alert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_stream_alert_types_and_alert_entities_only() {
        let ev = |t: &str| json!({"metadata": {"eventType": t}, "event": {}});
        assert!(CrowdStrike.detect(&ev("DetectionSummaryEvent")));
        assert!(CrowdStrike.detect(&ev("IdentityProtectionEvent")));
        assert!(!CrowdStrike.detect(&ev("AuthActivityAuditEvent")));
        assert!(CrowdStrike.detect(&json!({"composite_id": "c:ind:x", "severity": 50})));
        assert!(!CrowdStrike.detect(&json!({"id": "x", "severity": 50})));
    }

    #[test]
    fn falcon_levels_map_one_to_five() {
        let got: Vec<_> = (0..=6).map(severity_from_level).collect();
        assert_eq!(
            got,
            [
                Some(Severity::Informational),
                Some(Severity::Informational),
                Some(Severity::Low),
                Some(Severity::Medium),
                Some(Severity::High),
                Some(Severity::Critical),
                None
            ]
        );
    }

    #[test]
    fn non_alert_stream_type_is_rejected_by_name() {
        let doc = json!({"metadata": {"eventType": "UserActivityAuditEvent",
            "eventCreationTime": 1772356500000i64}, "event": {}});
        let err = CrowdStrike.normalize(doc).unwrap_err().to_string();
        assert!(
            err.contains("`UserActivityAuditEvent` is not an alert"),
            "{err}"
        );
    }
}
