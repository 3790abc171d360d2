//! `okta`: Okta System Log events (`/api/v1/logs`, log streaming) and the Okta event hook envelope.
//!
//! Mapping (full tables in `docs/alert-model.md`):
//! - `id` ← `uuid` (missing: derived from the event's content, noted `id_derived`); `time` ←
//!   `published` (RFC 3339; missing: the time of receipt, noted).
//! - `severity` ← the higher of `severity` (DEBUG/INFO → informational, WARN → medium, ERROR → high)
//!   and the risk level in `debugContext.debugData.risk` (`{level=HIGH, …}` → high). Okta has no
//!   numeric score, so `severity_score` stays empty.
//! - `category` ← `eventType` through a small table, refined by `debugData.behaviors` (a positive
//!   `Velocity` behavior on a sign-in is `impossible_travel`).
//! - `subjects` ← `target[]` entries of type `User`; when there is none, the `actor` if it is a
//!   `User` (sign-ins and self-reports name the user as actor; admin actions name the admin as actor
//!   and the affected user as target, and the admin must not be contained). Each: `alternateId` read
//!   as an account name
//!   (a login that is an email becomes `email`), `displayName`, `id` → `ids.okta`. The placeholder
//!   `unknown` actor Okta uses for failed sign-ins of non-existent logins is skipped.
//! - `indicators` ← `client.ipAddress` (`ip`).
//!
//! Event types that are about a user (`user.*`, `security.session.*`, `policy.evaluate_sign_on`) with
//! no usable user are dead-lettered: containment needs a subject, and a silent notify-only alert
//! would hide a broken forwarder.
//!
//! Event hooks: Okta posts `{"eventType": "com.okta.event_hook", "data": {"events": [...]}}`, up to
//! 50 System Log events per call. [`Normalizer::split`] cuts the envelope into its events before
//! normalizing, so HTTP and Kafka ingest turn one delivery into one alert per event, each with its
//! own event as `raw`, and an event that cannot be normalized is dead-lettered alone (its reason
//! names it: `data.events[3]: eventType is missing`). An envelope without events is an error. Given an
//! envelope directly (without the split, e.g. `simulate`), a single-event envelope is normalized as
//! that event and a larger one is refused naming the count, because taking the first event would
//! silently drop the rest.
use serde_json::Value;

use super::fields::{
    TimeUnit, default_severity, echo, id_or_derived, ident, normalize_object, push_subject, str_of,
    subject_from_name, time_or_receipt,
};
use super::{Alert, NormalizeError, Normalizer, Part, ProblemKind, Severity, Source, Subject};

const FORMAT: &str = "okta";
const HOOK_EVENT_TYPE: &str = "com.okta.event_hook";

/// Okta System Log event / event hook normalizer.
pub(crate) struct Okta;

impl Normalizer for Okta {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        let is_str = |k: &str| doc.get(k).is_some_and(Value::is_string);
        // A System Log event: `eventType` and `published`, with its `uuid` or its `actor` (so an
        // event missing one of them is still refused as Okta's, naming what is missing).
        let event = is_str("eventType")
            && doc.get("published").is_some()
            && (is_str("uuid") || doc.get("actor").is_some_and(Value::is_object));
        event
            || (doc.get("eventType").and_then(Value::as_str) == Some(HOOK_EVENT_TYPE)
                && doc.pointer("/data/events").is_some_and(Value::is_array))
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        normalize_object(FORMAT, "an Okta System Log event", doc, |doc| {
            let events = match doc.get("data").and_then(|d| d.get("events")) {
                Some(events) if doc.get("uuid").is_none() => events,
                _ => return build(doc, ""),
            };
            let events = events
                .as_array()
                .ok_or_else(|| invalid("event hook `data.events` is not an array"))?;
            match events.as_slice() {
                [] => Err(invalid(
                    "event hook envelope has no events (`data.events` is empty)",
                )),
                [one] => build(one, "data.events[0]."),
                many => Err(invalid(format!(
                    "event hook envelope carries {} events; this path maps one message to one \
                     alert and will not drop the others (HTTP and Kafka ingest split envelopes \
                     into their events)",
                    many.len()
                ))),
            }
        })
    }

    fn split(&self, doc: Value) -> Result<Vec<Part>, NormalizeError> {
        let is_envelope =
            doc.get("uuid").is_none() && doc.get("data").and_then(|d| d.get("events")).is_some();
        if !is_envelope {
            return Ok(vec![Part { at: None, doc }]);
        }
        let events = match doc {
            Value::Object(mut o) => o
                .get_mut("data")
                .and_then(|d| d.get_mut("events"))
                .map(Value::take),
            _ => None,
        };
        match events {
            Some(Value::Array(events)) if events.is_empty() => Err(invalid(
                "event hook envelope has no events (`data.events` is empty)",
            )),
            Some(Value::Array(events)) => Ok(events
                .into_iter()
                .enumerate()
                .map(|(i, doc)| Part {
                    at: Some(format!("data.events[{i}]")),
                    doc,
                })
                .collect()),
            _ => Err(invalid("event hook `data.events` is not an array")),
        }
    }
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

fn build(ev: &Value, at: &str) -> Result<Alert, NormalizeError> {
    if !ev.is_object() {
        return Err(invalid(format!(
            "{at}: expected an Okta System Log event object"
        )));
    }
    let mut notes = Vec::new();
    let uuid = format!("{at}uuid");
    let id = id_or_derived(str_of(ev.get("uuid")), &uuid, ev, &mut notes);
    let published = format!("{at}published");
    let time = time_or_receipt(
        &[(published.as_str(), ev.get("published"))],
        TimeUnit::Rfc3339,
        &mut notes,
    );
    let event_type =
        str_of(ev.get("eventType")).ok_or_else(|| invalid(format!("{at}eventType is missing")))?;

    let base = match str_of(ev.get("severity")) {
        None => Severity::Informational,
        Some(s) => severity_from_okta(s).unwrap_or_else(|| {
            let why = format!(
                "{at}severity `{}` is not an Okta severity (DEBUG, INFO, WARN, ERROR)",
                echo(s)
            );
            default_severity(why, &mut notes)
        }),
    };
    let security = SecurityData::of(ev.pointer("/debugContext/debugData"));
    let risk = security.risk_level();
    let risk_severity = risk.and_then(super::fields::severity_from_name);
    let severity = risk_severity.map_or(base, |r| r.max(base));
    let category = category(event_type, &security).to_string();
    let debug = ev.pointer("/debugContext/debugData");

    let title = str_of(ev.get("displayMessage"))
        .unwrap_or(event_type)
        .to_string();

    let source = Source::of("okta", "system_log", FORMAT);
    let mut alert = Alert::new(source, id, time, severity, notes).described(category, title);
    alert.add_label("okta_event_type", Some(event_type));
    alert.add_label("okta_outcome", str_of(ev.pointer("/outcome/result")));
    alert.add_label(
        "okta_risk_level",
        risk.map(str::to_ascii_lowercase).as_deref(),
    );
    alert.add_label(
        "okta_threat_suspected",
        str_of(debug.and_then(|d| d.get("threatSuspected"))),
    );

    alert.subjects = subjects(ev, event_type)?;
    if alert.subjects.is_empty() && names_a_user(event_type) {
        let detail = format!(
            "{at}eventType `{}` is about a user but neither actor nor target[] names one (type \
             `User` with `id` or `alternateId`, placeholders aside); notify-only",
            echo(event_type)
        );
        alert.note(ProblemKind::NoSubject, detail);
    }
    alert.add_indicator("ip", str_of(ev.pointer("/client/ipAddress")));
    Ok(alert)
}

/// Risk and behaviors of a sign-in, wherever Okta put them: the `{key=value, …}` strings
/// `debugData.risk` / `debugData.behaviors`, or the JSON of `debugData.logOnlySecurityData`
/// (`{"risk": {"level": "HIGH"}, "behaviors": {"New Device": "POSITIVE"}}`, a JSON string in the
/// System Log, an object after some forwarders), which newer orgs use instead.
struct SecurityData<'a> {
    risk: Option<&'a str>,
    behaviors: Option<&'a str>,
    log_only: Option<Value>,
}

impl<'a> SecurityData<'a> {
    fn of(debug: Option<&'a Value>) -> Self {
        let field = |k: &str| str_of(debug.and_then(|d| d.get(k)));
        let log_only = debug
            .and_then(|d| d.get("logOnlySecurityData"))
            .and_then(|v| match v {
                Value::String(s) => crate::json::from_slice(s.as_bytes()).ok(),
                Value::Object(_) => Some(v.clone()),
                _ => None,
            })
            .filter(Value::is_object);
        SecurityData {
            risk: field("risk"),
            behaviors: field("behaviors"),
            log_only,
        }
    }

    /// The risk level (`HIGH`, `MEDIUM`, `LOW`), from either place.
    fn risk_level(&self) -> Option<&str> {
        self.risk.and_then(|r| bag_value(r, "level")).or_else(|| {
            let level = self.log_only.as_ref()?.pointer("/risk/level");
            str_of(level)
        })
    }

    /// Whether behavior `name` (`Velocity`, `New Device`) was detected, from either place.
    fn behavior_positive(&self, name: &str) -> bool {
        let positive = |v: &str| v.eq_ignore_ascii_case("POSITIVE");
        self.behaviors
            .and_then(|b| bag_value(b, name))
            .is_some_and(positive)
            || self
                .log_only
                .as_ref()
                .and_then(|l| l.get("behaviors"))
                .and_then(|b| str_of(b.get(name)))
                .is_some_and(positive)
    }
}

/// Okta `severity` → severity. WARN is Okta's level for security-relevant events (threats,
/// lockouts), ERROR for failures it flags loudly.
fn severity_from_okta(s: &str) -> Option<Severity> {
    match s.to_ascii_uppercase().as_str() {
        "DEBUG" | "INFO" => Some(Severity::Informational),
        "WARN" | "WARNING" => Some(Severity::Medium),
        "ERROR" => Some(Severity::High),
        _ => None,
    }
}

/// One value from Okta's `{key=value, key2=value2}` debugData strings (`risk`, `behaviors`).
fn bag_value<'a>(bag: &'a str, key: &str) -> Option<&'a str> {
    bag.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `eventType` (+ behaviors) → category.
fn category(event_type: &str, security: &SecurityData<'_>) -> &'static str {
    let positive = |name: &str| security.behavior_positive(name);
    match event_type {
        "security.threat.detected" => "credential_theft",
        "user.account.report_suspicious_activity_by_enduser" => "account_takeover",
        "security.session.detect_client_roaming" => "account_takeover",
        "user.mfa.okta_verify.deny_push" => "credential_theft",
        "user.account.lock" | "user.account.lock.limit" => "credential_theft",
        "user.session.start"
        | "user.authentication.sso"
        | "policy.evaluate_sign_on"
        | "user.risk.detect"
        | "user.risk.change" => {
            if positive("Velocity") {
                "impossible_travel"
            } else {
                "suspicious_login"
            }
        }
        _ => "other",
    }
}

/// Event types whose meaning requires a user; without one the alert is notify-only, noted.
fn names_a_user(event_type: &str) -> bool {
    event_type.starts_with("user.")
        || event_type.starts_with("security.session.")
        || event_type == "policy.evaluate_sign_on"
}

/// Event families in which the actor is the person the event is about: they signed in, answered
/// (or denied) an MFA challenge, reported suspicious activity on their own account, or their
/// session roamed. Their `target[]` holds the app, policy or authenticator, or at most the same
/// user again. Within those families, the events an admin (or Okta itself) performs on a user —
/// clearing their sessions, a Universal Logout — name that user as the target and the admin as the
/// actor (Okta System Log event types, developer.okta.com/docs/reference/api/event-types, and the
/// Okta Workflows ITP "Universal Logout" event reference, read 2026-12-03).
fn actor_is_subject(event_type: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "user.session.",
        "user.authentication.",
        "user.mfa.okta_verify.",
        "security.session.",
    ];
    const TYPES: &[&str] = &[
        "policy.evaluate_sign_on",
        "user.mfa.attempt_bypass",
        "user.account.report_suspicious_activity_by_enduser",
        "security.threat.detected",
    ];
    const DONE_TO_A_USER: &[&str] = &["user.session.clear", "user.authentication.universal_logout"];
    !DONE_TO_A_USER.contains(&event_type)
        && (PREFIXES.iter().any(|p| event_type.starts_with(p)) || TYPES.contains(&event_type))
}

/// The subjects of one event, per family: the actor for sign-in and MFA events (a `User` target
/// there is the same person, or none); otherwise the `User` targets, because the actor of an admin
/// action (locking, suspending, resetting an account) is the admin, who must not be contained.
/// Either falls back to the other when it names no user.
fn subjects(ev: &Value, event_type: &str) -> Result<Vec<Subject>, NormalizeError> {
    let targets = ev.get("target").and_then(Value::as_array);
    let target_users = || -> Vec<Subject> {
        targets
            .into_iter()
            .flatten()
            .filter_map(user_subject)
            .collect()
    };
    let actor = || -> Vec<Subject> { ev.get("actor").and_then(user_subject).into_iter().collect() };
    let candidates = if actor_is_subject(event_type) {
        Some(actor())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(target_users)
    } else {
        Some(target_users())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(actor)
    };
    let mut out = Vec::new();
    for s in candidates {
        push_subject(&mut out, Some(s)).map_err(invalid)?;
    }
    Ok(out)
}

/// An Okta actor/target of type `User` → subject; `None` for other types and for placeholders
/// (the `unknown` actor Okta writes for sign-ins of logins that do not exist).
fn user_subject(v: &Value) -> Option<Subject> {
    let is_user = str_of(v.get("type")).is_some_and(|t| t.eq_ignore_ascii_case("User"));
    if !is_user {
        return None;
    }
    let mut s = ident(v.get("alternateId"))
        .and_then(subject_from_name)
        .unwrap_or_default();
    if let Some(id) = ident(v.get("id")) {
        s.ids.insert("okta".into(), id.to_string());
    }
    if s.email.is_none() && s.username.is_none() && s.ids.is_empty() {
        return None;
    }
    s.display_name = ident(v.get("displayName")).map(str::to_string);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::fields::MAX_SUBJECTS;

    #[test]
    fn risk_bag_values_are_read_case_insensitively() {
        let risk = "{reasons=Anomalous Device, Anomalous Location, level=HIGH}";
        assert_eq!(bag_value(risk, "level"), Some("HIGH"));
        assert_eq!(bag_value(risk, "missing"), None);
        assert_eq!(bag_value("", "level"), None);
    }

    #[test]
    fn mass_event_is_refused_not_truncated() {
        let targets: Vec<Value> = (0..=MAX_SUBJECTS)
            .map(|i| serde_json::json!({"type": "User", "id": format!("00u{i}")}))
            .collect();
        let doc = serde_json::json!({"uuid": "mass", "published": "2026-03-01T00:00:00Z",
            "eventType": "user.account.lock", "target": targets});
        let err = Okta.normalize(doc).unwrap_err();
        assert!(
            err.to_string().contains("more than 1000 distinct subjects"),
            "{err}"
        );
    }

    #[test]
    fn risk_raises_but_never_lowers_severity() {
        assert!(severity_from_okta("warn") == Some(Severity::Medium));
        assert_eq!(severity_from_okta("NOTICE"), None);
        let bag = |b: &str| serde_json::json!({ "behaviors": b });
        let travel = bag("{New Geo-Location=POSITIVE, Velocity=POSITIVE}");
        assert_eq!(
            category("user.session.start", &SecurityData::of(Some(&travel))),
            "impossible_travel"
        );
        let calm = bag("{Velocity=NEGATIVE}");
        assert_eq!(
            category("user.session.start", &SecurityData::of(Some(&calm))),
            "suspicious_login"
        );
    }

    #[test]
    fn log_only_security_data_carries_risk_and_behaviors() {
        let debug = serde_json::json!({"logOnlySecurityData":
            r#"{"risk":{"level":"HIGH","reasons":"Anomalous Device"},"behaviors":{"Velocity":"POSITIVE","New Device":"NEGATIVE"}}"#});
        let data = SecurityData::of(Some(&debug));
        assert_eq!(data.risk_level(), Some("HIGH"));
        assert!(data.behavior_positive("Velocity"));
        assert!(!data.behavior_positive("New Device"));
        assert_eq!(category("user.session.start", &data), "impossible_travel");
        let garbage = serde_json::json!({"logOnlySecurityData": "{not json"});
        assert_eq!(SecurityData::of(Some(&garbage)).risk_level(), None);
    }

    #[test]
    fn sign_ins_name_the_actor_and_admin_actions_the_target() {
        let ev = |t: &str| {
            serde_json::json!({"eventType": t,
                "actor": {"type": "User", "id": "00uadmin", "alternateId": "admin@corp.example"},
                "target": [{"type": "User", "id": "00uvictim", "alternateId": "jdoe@corp.example"}]})
        };
        let who = |t: &str| {
            subjects(&ev(t), t).unwrap()[0]
                .email
                .clone()
                .unwrap_or_default()
        };
        assert_eq!(who("user.session.start"), "admin@corp.example");
        assert_eq!(who("user.mfa.okta_verify.deny_push"), "admin@corp.example");
        assert_eq!(who("user.account.lock"), "jdoe@corp.example");
        assert_eq!(who("user.lifecycle.suspend"), "jdoe@corp.example");
        // An admin (or Okta's ITP) acting on a user's sessions: the user, not the admin.
        assert_eq!(who("user.session.clear"), "jdoe@corp.example");
        assert_eq!(
            who("user.authentication.universal_logout"),
            "jdoe@corp.example"
        );
    }
}
