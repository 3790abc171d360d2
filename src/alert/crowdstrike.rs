//! `crowdstrike`: CrowdStrike Falcon Streaming API events and the Alerts API alert entity.
//!
//! Two shapes, told apart by structure (see `docs/alert-model.md` for the full tables):
//! - **Streaming API** event: `{metadata: {eventType, eventCreationTime, offset}, event: {…}}` with
//!   `eventType` one of the detection families: the current `EppDetectionSummaryEvent` (also
//!   spelled `EPPDetectionSummaryEvent`), `XdrDetectionSummaryEvent`, `IdpDetectionSummaryEvent`,
//!   `MobileDetectionSummaryEvent`, `DataProtectionDetectionSummaryEvent`,
//!   `OverwatchGenericDetectionSummaryEvent`, and the legacy
//!   `DetectionSummaryEvent`, `IdentityProtectionEvent`, `IncidentSummaryEvent`. Other stream
//!   event types (auth audits, user activity) are not detections and are rejected by name.
//! - **Alerts API** entity (`GET /alerts/entities/alerts/v2`): a flat object with `composite_id`,
//!   of any product (`epp`, `idp`, `xdr`, `ngsiem`, `overwatch`, …).
//!
//! An identity detection without any account is still a detection: it is taken as notify-only
//! with a `no_subject` problem, so the notification is not lost and the gap is visible.

use serde_json::Value;

use super::fields::{
    Account, TimeUnit, account, default_severity, echo, id_or_derived, ident, normalize_object,
    problem, severity_from_name, str_of, time_or_receipt,
};
use super::ocsf::{category_from_tactic, category_from_technique, category_from_text};
use super::{Alert, AlertProblem, Host, NormalizeError, Normalizer, ProblemKind, Severity, Source};

const FORMAT: &str = "crowdstrike";
/// The Streaming API event types that are detections (compared case-insensitively: Falcon has
/// spelled `EppDetectionSummaryEvent` both ways).
const STREAM_TYPES: &[&str] = &[
    "EppDetectionSummaryEvent",
    "XdrDetectionSummaryEvent",
    "IdpDetectionSummaryEvent",
    "MobileDetectionSummaryEvent",
    "DataProtectionDetectionSummaryEvent",
    "OverwatchGenericDetectionSummaryEvent",
    "DetectionSummaryEvent",
    "IdentityProtectionEvent",
    "IncidentSummaryEvent",
];
/// The stream types that are about an account (Falcon Identity Protection).
const IDENTITY_TYPES: &[&str] = &["IdentityProtectionEvent", "IdpDetectionSummaryEvent"];
/// The stream types whose `Severity` is Falcon's 0–100 score (the others document 1–5).
const SCORED_TYPES: &[&str] = &[
    "EppDetectionSummaryEvent",
    "XdrDetectionSummaryEvent",
    "MobileDetectionSummaryEvent",
    "DataProtectionDetectionSummaryEvent",
    "OverwatchGenericDetectionSummaryEvent",
];

/// `eventType` as Falcon documents it, whatever its case.
fn stream_type(t: &str) -> Option<&'static str> {
    STREAM_TYPES
        .iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(t))
}

/// CrowdStrike Falcon normalizer (Streaming API events and Alerts API entities).
pub(crate) struct CrowdStrike;

impl Normalizer for CrowdStrike {
    fn name(&self) -> &'static str {
        FORMAT
    }

    /// Any Streaming API envelope is Falcon's, detection or not: a stream event that is not a
    /// detection is then refused by name here rather than left for another format to misread.
    fn detect(&self, doc: &Value) -> bool {
        let stream = doc
            .pointer("/metadata/eventType")
            .is_some_and(Value::is_string)
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

/// Falcon's 1–5 `Severity` scale (legacy Streaming API events); 0 is sent for "unknown" and never
/// escalates.
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

/// Falcon's 0–100 score bands (the Alerts API's filters: low from 20, medium from 50, high from 70,
/// critical from 90; Falcon itself sends 10, 30, 50, 70 and 90 with the names).
fn severity_from_falcon_score(score: f64) -> Option<Severity> {
    Some(match score {
        s if !(0.0..=100.0).contains(&s) => return None,
        s if s < 20.0 => Severity::Informational,
        s if s < 50.0 => Severity::Low,
        s if s < 70.0 => Severity::Medium,
        s if s < 90.0 => Severity::High,
        _ => Severity::Critical,
    })
}

/// Severity from Falcon's own name (`SeverityName`, `severity_name`) over the number, which is read
/// on its documented scale (`scored`: 0–100, else 1–5). A number outside its scale with no name is
/// read by magnitude (6–10 as tenths, up to 100 as the score) and noted; nothing readable is the
/// documented default, noted. Returns the severity and the number for `severity_score`.
fn falcon_severity(
    (number_field, number): (&str, Option<&Value>),
    (name_field, name): (&str, Option<&str>),
    scored: bool,
    notes: &mut Vec<AlertProblem>,
) -> (Severity, Option<f64>) {
    let number = number.filter(|v| !v.is_null());
    let score = number.and_then(|v| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let by_scale = score.and_then(|s| match scored {
        true => severity_from_falcon_score(s),
        false if s.fract() == 0.0 && s >= 0.0 => severity_from_level(s as u64),
        false => None,
    });
    let by_name = name.and_then(severity_from_name);
    if let Some(sev) = by_name {
        if score.is_some() && by_scale.is_none() {
            notes.push(problem(
                ProblemKind::SeverityOutOfRange,
                format!(
                    "{number_field} `{}` is outside Falcon's {}; used {name_field}",
                    echo(number.unwrap_or(&Value::Null)),
                    if scored { "0–100" } else { "1–5" }
                ),
            ));
        }
        return (sev, score);
    }
    if let Some(sev) = by_scale {
        return (sev, score);
    }
    let magnitude = score.and_then(|s| match s {
        s if (0.0..=10.0).contains(&s) => severity_from_falcon_score(s * 10.0),
        s => severity_from_falcon_score(s),
    });
    match (magnitude, number) {
        (Some(sev), Some(v)) => {
            notes.push(problem(
                ProblemKind::SeverityOutOfRange,
                format!(
                    "{number_field} `{}` is outside Falcon's {} and {name_field} is absent; read \
                     by magnitude as {}",
                    echo(v),
                    if scored { "0–100" } else { "1–5" },
                    sev.as_str()
                ),
            ));
            (sev, score)
        }
        _ => {
            let why = match (name, number) {
                (Some(n), _) => format!("{name_field} `{}` is not a severity name", echo(n)),
                (None, Some(v)) => format!("{number_field} `{}` is not a Falcon severity", echo(v)),
                (None, None) => format!("{number_field} and {name_field} are both missing"),
            };
            (default_severity(why, notes), score)
        }
    }
}

/// Category from the most precise signal first: ATT&CK technique id, then technique / detection
/// names, then the tactic (Falcon also uses the pseudo-tactic `Malware`); default `other`.
fn category(technique_id: Option<&str>, names: &[Option<&str>], tactic: Option<&str>) -> String {
    let ids = technique_id.into_iter().flat_map(|t| t.split(','));
    let tactics = tactic.into_iter().flat_map(|t| t.split(','));
    ids.filter_map(|t| category_from_technique(t.trim()))
        .next()
        .or_else(|| names.iter().flatten().find_map(|n| category_from_text(n)))
        .or_else(|| {
            tactics.map(str::trim).find_map(|t| {
                category_from_tactic(t)
                    .or_else(|| category_from_text(t))
                    .or_else(|| t.eq_ignore_ascii_case("malware").then_some("malware"))
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

/// The parts of a comma-separated Falcon list (`HostNames`, `Tactics`), trimmed, blanks dropped.
fn list(v: Option<&str>) -> impl Iterator<Item = &str> {
    v.into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn stream_event(doc: &Value) -> Result<Alert, NormalizeError> {
    let raw_type = str_of(doc.pointer("/metadata/eventType"))
        .ok_or_else(|| invalid("metadata.eventType is missing"))?;
    let event_type = stream_type(raw_type).ok_or_else(|| {
        invalid(format!(
            "metadata.eventType `{}` is not an alert (expected one of: {})",
            echo(raw_type),
            STREAM_TYPES.join(", ")
        ))
    })?;
    let ev = doc
        .get("event")
        .filter(|e| e.is_object())
        .ok_or_else(|| invalid("event is missing or not an object"))?;
    let get = |k: &str| str_of(ev.get(k));

    // `IncidentID` is how Falcon spells it; `IncidentId` is kept for forwarders that re-case.
    let mut notes = Vec::new();
    let vendor_id = [
        "CompositeId",
        "DetectId",
        "IncidentID",
        "IncidentId",
        "IdentityProtectionIncidentId",
    ]
    .into_iter()
    .find_map(get)
    .map(str::to_string)
    .or_else(|| {
        // Incident events of older API versions carry no id field; the stream offset is unique
        // per customer stream and stable across redelivery.
        doc.pointer("/metadata/offset")
            .and_then(Value::as_u64)
            .map(|o| format!("offset:{o}"))
    });
    let id = id_or_derived(
        vendor_id.as_deref(),
        "event.CompositeId, DetectId, IncidentID and metadata.offset",
        doc,
        &mut notes,
    );
    let time = time_or_receipt(
        &[(
            "metadata.eventCreationTime",
            doc.pointer("/metadata/eventCreationTime"),
        )],
        TimeUnit::Millis,
        &mut notes,
    );

    let (severity, severity_score) = match ev.get("FineScore").and_then(Value::as_f64) {
        // An incident's CrowdScore, 0–10.
        Some(s) if event_type == "IncidentSummaryEvent" => {
            let band = super::generic::severity_from_score(s).filter(|_| s <= 10.0);
            let why = || format!("event.FineScore {s} is outside 0–10");
            let sev = band.unwrap_or_else(|| default_severity(why(), &mut notes));
            (sev, Some(s))
        }
        _ => falcon_severity(
            ("event.Severity", ev.get("Severity")),
            ("event.SeverityName", get("SeverityName")),
            SCORED_TYPES.contains(&event_type),
            &mut notes,
        ),
    };

    let tactic = get("Tactic").or_else(|| get("Tactics"));
    let technique = get("Technique").or_else(|| get("Techniques"));
    let technique_id = get("TechniqueId").or_else(|| get("TechniqueIds"));
    let name = get("DetectName").or_else(|| get("Name"));
    let mut category = category(technique_id, &[technique, name], tactic);
    if category == "other" && IDENTITY_TYPES.contains(&event_type) {
        category = "suspicious_login".into();
    }

    let title = name
        .or_else(|| get("DetectDescription"))
        .or_else(|| get("Description"))
        .map(str::to_string)
        .unwrap_or_else(|| match event_type {
            "IncidentSummaryEvent" => match ev.get("IncidentType") {
                Some(Value::String(t)) if !t.trim().is_empty() => format!("Falcon incident ({t})"),
                Some(Value::Number(n)) => format!("Falcon incident ({n})"),
                _ => "Falcon incident".to_string(),
            },
            other => other.to_string(),
        });

    let mut alert = falcon_alert(
        id,
        time,
        (severity, severity_score),
        (category, title),
        notes,
    );
    // Endpoint detections name the logged-on user with its logon domain; identity detections the
    // source account with every identifier Falcon resolved for it.
    let user = account(&Account {
        name: ident(ev.get("UserName")),
        domain: ident(ev.get("LogonDomain")),
        sid: ident(ev.get("UserSid")),
        ..Account::default()
    });
    alert.add_subject(Some(user)).map_err(invalid)?;
    let source_account = account(&Account {
        name: ident(ev.get("SourceAccountName"))
            .or_else(|| ident(ev.get("SourceAccountSamAccountName"))),
        domain: ident(ev.get("SourceAccountDomain")),
        // Falcon spells it `SourceAccountUpn`; some forwarders upper-case it.
        upn: ident(ev.get("SourceAccountUpn")).or_else(|| ident(ev.get("SourceAccountUPN"))),
        sid: ident(ev.get("SourceAccountObjectSid")),
        ..Account::default()
    });
    alert.add_subject(Some(source_account)).map_err(invalid)?;
    for name in list(get("UserNames")) {
        alert
            .add_subject(super::fields::subject_from_name(name))
            .map_err(invalid)?;
    }
    if IDENTITY_TYPES.contains(&event_type) && alert.subjects.is_empty() {
        alert.note(
            ProblemKind::NoSubject,
            format!(
                "{event_type} names no account (event.UserName, SourceAccountName, \
                 SourceAccountUpn and SourceAccountObjectSid are all missing, blank or \
                 placeholders); notify-only"
            ),
        );
    }

    let first_host = list(get("HostNames")).next();
    alert.set_host(Host {
        hostname: get("ComputerName")
            .or_else(|| get("Hostname"))
            .or_else(|| get("SourceEndpointHostName"))
            .or(first_host)
            .map(str::to_string),
        id: get("SensorId")
            .or_else(|| get("AgentId"))
            .or_else(|| get("AgentIdString"))
            .or_else(|| get("HostID"))
            .map(str::to_string),
        ips: get("LocalIP")
            .or_else(|| get("SourceEndpointIpAddress"))
            .into_iter()
            .chain(list(get("IPv4Addresses")))
            .map(str::to_string)
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
/// title, and the problems noted so far.
fn falcon_alert(
    id: String,
    time: chrono::DateTime<chrono::Utc>,
    (severity, score): (Severity, Option<f64>),
    (category, title): (String, String),
    notes: Vec<AlertProblem>,
) -> Alert {
    let source = Source::of("crowdstrike", "falcon", FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes).described(category, title);
    alert.severity_score = score;
    alert
}

/// The file hashes (sha256, md5, sha1 in that order, read by `hash`), process file name and
/// command line both Falcon shapes carry. All-zero hashes are Falcon's "not computed".
fn hashes_and_process<'a>(
    alert: &mut Alert,
    file: Option<&str>,
    command_line: Option<&str>,
    hash: impl Fn(&str) -> Option<&'a str>,
) {
    for kind in ["sha256", "md5", "sha1"] {
        let value = hash(kind).filter(|h| h.bytes().any(|b| b != b'0'));
        alert.add_indicator(kind, value);
    }
    alert.add_indicator("process", file);
    alert.add_indicator("command_line", command_line);
}

fn alert_entity(doc: &Value) -> Result<Alert, NormalizeError> {
    let get = |k: &str| str_of(doc.get(k));
    let mut notes = Vec::new();
    let id = id_or_derived(
        get("composite_id").or_else(|| get("id")),
        "composite_id (and id)",
        doc,
        &mut notes,
    );
    let time = time_or_receipt(
        &[
            ("timestamp", doc.get("timestamp")),
            ("created_timestamp", doc.get("created_timestamp")),
        ],
        TimeUnit::Rfc3339,
        &mut notes,
    );
    let (severity, score) = falcon_severity(
        ("severity", doc.get("severity")),
        ("severity_name", get("severity_name")),
        true,
        &mut notes,
    );

    let tactic = get("tactic");
    let technique = get("technique");
    let technique_id = get("technique_id");
    let name = get("display_name").or_else(|| get("name"));
    let category = category(technique_id, &[technique, name], tactic);

    let title = name
        .or_else(|| get("description"))
        .unwrap_or_default()
        .to_string();

    let mut alert = falcon_alert(id, time, (severity, score), (category, title), notes);
    // The account of the detection: `user_name` + `user_principal` + `user_id` (endpoint), and
    // identity detections' `source_account_*`. Never `correlation_rule_user_*`: that is the rule's
    // author.
    let user = account(&Account {
        name: ident(doc.get("user_name")),
        upn: ident(doc.get("user_principal")),
        domain: ident(doc.get("logon_domain")),
        sid: ident(doc.get("user_id")).filter(|id| id.starts_with("S-1-")),
        ..Account::default()
    });
    alert.add_subject(Some(user)).map_err(invalid)?;
    let source_account = account(&Account {
        name: ident(doc.get("source_account_name"))
            .or_else(|| ident(doc.get("source_account_sam_account_name"))),
        domain: ident(doc.get("source_account_domain")),
        upn: ident(doc.get("source_account_upn")),
        sid: ident(doc.get("source_account_object_sid")),
        ..Account::default()
    });
    alert.add_subject(Some(source_account)).map_err(invalid)?;
    // NG-SIEM correlation and XDR detections: `users[]` entities, and plain name lists.
    let users = doc.get("users").and_then(Value::as_array);
    for u in users.into_iter().flatten() {
        let idp_id = ident(u.get("idp_id"));
        let s = account(&Account {
            name: ident(u.get("user_name")),
            domain: ident(u.get("domain")),
            upn: ident(u.get("upn")).or_else(|| ident(u.get("email"))),
            display_name: ident(u.get("full_name")),
            sid: ident(u.get("sid")),
            ids: idp_id.map(|i| ("crowdstrike_idp", i)).into_iter().collect(),
        });
        alert.add_subject(Some(s)).map_err(invalid)?;
    }
    for key in ["user_names", "usernames"] {
        let names = doc.get(key).and_then(Value::as_array);
        for n in names.into_iter().flatten() {
            let s = ident(Some(n)).and_then(super::fields::subject_from_name);
            alert.add_subject(s).map_err(invalid)?;
        }
    }
    let product = get("product");
    if product == Some("idp") && alert.subjects.is_empty() {
        alert.note(
            ProblemKind::NoSubject,
            "identity-protection alert (product `idp`) names no account (user_name, \
             user_principal, source_account_* and users[] are all missing, blank or \
             placeholders); notify-only",
        );
    }

    let device = doc.get("device");
    let dget = |k: &str| text(device.and_then(|d| d.get(k)));
    let host_names = doc.get("host_names").and_then(Value::as_array);
    alert.set_host(Host {
        hostname: dget("hostname").or_else(|| {
            host_names
                .and_then(|h| h.first())
                .and_then(|h| text(Some(h)))
        }),
        id: dget("device_id").or_else(|| text(doc.get("agent_id"))),
        ips: dget("local_ip").into_iter().collect(),
        os: dget("platform_name"),
    });
    hashes_and_process(&mut alert, get("filename"), get("cmdline"), get);
    alert.add_indicator("ip", str_of(device.and_then(|d| d.get("external_ip"))));
    let source_ips = doc.get("source_ips").and_then(Value::as_array);
    for ip in source_ips.into_iter().flatten() {
        alert.add_indicator("ip", str_of(Some(ip)));
    }

    alert.add_label("falcon_product", product);
    alert.add_label("falcon_type", get("type"));
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
        assert!(CrowdStrike.detect(&ev("EPPDetectionSummaryEvent")));
        assert!(CrowdStrike.detect(&ev("XdrDetectionSummaryEvent")));
        // Claimed as Falcon's, then refused by name (see below), so no other format misreads it.
        assert!(CrowdStrike.detect(&ev("AuthActivityAuditEvent")));
        assert!(!CrowdStrike.detect(&json!({"metadata": {"eventType": "x"}})));
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
