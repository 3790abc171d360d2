//! `ssf`: the claims of a verified Security Event Token (RFC 8417) carrying one CAEP or RISC event, as
//! the Shared Signals receiver (`crate::ingest::ssf`) hands them over after checking the signature,
//! issuer, audience and `jti`.
//!
//! This normalizer never sees a signature: it trusts that its caller verified the SET. So it is not
//! in the registry's auto-detection and `format = ssf` is refused on `/v1/alerts` and Kafka; only
//! the receiver reaches it ([`super::NormalizerRegistry::normalize_verified_set`]), and an `ssf`
//! alert always means a verified SET.
//!
//! Mapping (full table in `docs/alert-model.md`):
//! - `id` ← `jti`; `time` ← the event's `event_timestamp` (seconds) when given, else `iat`.
//! - `source` ← `{vendor: "ssf", product: "caep" | "risc"}`; labels `ssf.issuer`, `ssf.event_type`
//!   and `ssf.txn` keep where it came from.
//! - `severity` and `category` ← a fixed table per event type (credential-compromise is `high`
//!   `credential_theft`; risk-level-change follows `current_level`; …).
//! - `subjects` ← the subject identifier (RFC 9493) in `sub_id` (SSF 1.0), or in the event's
//!   `subject` member (earlier CAEP/RISC drafts): `email`, `iss_sub`, `opaque`, `account`
//!   (`acct:` URI), `phone_number`, `aliases` and the SSF `complex` subject's `user` member. The
//!   complex subject's `device` becomes `host.id`.
//!
//! One event per SET (RFC 8417 allows several, SSF 1.0 requires exactly one): a SET with several is
//! dead-lettered rather than half-read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fields::{echo, merge_subject, str_of, subject_from_name};
use super::{Alert, Host, NormalizeError, Normalizer, Severity, Source, Subject};

const FORMAT: &str = "ssf";

/// Prefix of every CAEP event type URI.
pub(crate) const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
/// Prefix of every RISC event type URI.
pub(crate) const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
/// Prefix of the SSF stream-control events (verification, stream-updated): no alert.
pub(crate) const SSF_CONTROL: &str = "https://schemas.openid.net/secevent/ssf/event-type/";

/// Severity and category of each supported event, by its full type URI.
fn classify(event_type: &str, event: &Value) -> Option<(Severity, &'static str, &'static str)> {
    let field = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or_default();
    if let Some(name) = event_type.strip_prefix(RISC) {
        return Some(match name {
            "credential-compromise" => (
                Severity::High,
                "credential_theft",
                "RISC credential compromise",
            ),
            "account-credential-change-required" => (
                Severity::Medium,
                "credential_theft",
                "RISC account credential change required",
            ),
            "account-disabled" if field("reason") == "hijacking" => (
                Severity::High,
                "account_takeover",
                "RISC account disabled (hijacking)",
            ),
            "account-disabled" => (Severity::Medium, "other", "RISC account disabled"),
            "account-purged" => (Severity::Low, "other", "RISC account purged"),
            "identifier-changed" => (Severity::Informational, "other", "RISC identifier changed"),
            "identifier-recycled" => (Severity::Informational, "other", "RISC identifier recycled"),
            "risk-level-change" => risk_level(event),
            _ => return None,
        });
    }
    let name = event_type.strip_prefix(CAEP)?;
    Some(match name {
        "session-revoked" => (Severity::Medium, "suspicious_login", "CAEP session revoked"),
        "credential-change" => match field("change_type") {
            "revoke" | "delete" => (
                Severity::Medium,
                "credential_theft",
                "CAEP credential change",
            ),
            _ => (Severity::Low, "other", "CAEP credential change"),
        },
        "token-claims-change" => (Severity::Informational, "other", "CAEP token claims change"),
        "assurance-level-change" => match field("change_direction") {
            "decrease" => (
                Severity::Low,
                "suspicious_login",
                "CAEP assurance level decreased",
            ),
            _ => (
                Severity::Informational,
                "other",
                "CAEP assurance level change",
            ),
        },
        "device-compliance-change" => match field("current_status") {
            "not-compliant" => (
                Severity::Medium,
                "policy_violation",
                "CAEP device no longer compliant",
            ),
            _ => (
                Severity::Informational,
                "other",
                "CAEP device compliance change",
            ),
        },
        "risk-level-change" => risk_level(event),
        _ => return None,
    })
}

/// `risk-level-change` (CAEP 1.0; also seen under the RISC prefix): severity follows `current_level`.
fn risk_level(event: &Value) -> (Severity, &'static str, &'static str) {
    let level = event
        .get("current_level")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match level.to_ascii_uppercase().as_str() {
        "HIGH" => (
            Severity::High,
            "account_takeover",
            "risk level changed to HIGH",
        ),
        "MEDIUM" => (
            Severity::Medium,
            "suspicious_login",
            "risk level changed to MEDIUM",
        ),
        _ => (Severity::Low, "other", "risk level change"),
    }
}

/// Shared Signals (CAEP / RISC) SET claims normalizer.
pub(crate) struct Ssf;

impl Normalizer for Ssf {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, doc: &Value) -> bool {
        doc.get("events").is_some_and(Value::is_object)
            && doc.get("jti").is_some_and(Value::is_string)
            && doc.get("iss").is_some_and(Value::is_string)
    }

    fn normalize(&self, doc: Value) -> Result<Alert, NormalizeError> {
        let Some(obj) = doc.as_object() else {
            return Err(invalid("expected the JSON object of a SET's claims"));
        };
        let id = str_of(obj.get("jti"))
            .ok_or_else(|| invalid("`jti` is missing"))?
            .to_string();
        let issuer = str_of(obj.get("iss"))
            .ok_or_else(|| invalid("`iss` is missing"))?
            .to_string();
        let events = obj
            .get("events")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("`events` is missing or not an object"))?;
        if events.len() != 1 {
            return Err(invalid(format!(
                "`events` holds {} events; a SET must carry exactly one",
                events.len()
            )));
        }
        let (event_type, event) = events.iter().next().expect("one event");
        let (severity, category, title) = classify(event_type, event).ok_or_else(|| {
            invalid(format!(
                "event type `{}` is not a supported CAEP or RISC event",
                echo(event_type)
            ))
        })?;
        let time = event_time(obj.get("iat"), event.get("event_timestamp"))?;

        // SSF 1.0 puts the subject in the top-level `sub_id`; earlier drafts inside the event.
        let sub_id = obj
            .get("sub_id")
            .or_else(|| event.get("subject"))
            .ok_or_else(|| invalid("no subject: neither `sub_id` nor the event's `subject`"))?;
        let mut subjects = Vec::new();
        let mut host = None;
        read_subject(sub_id, &mut subjects, &mut host, 0)?;
        if subjects.is_empty() && host.is_none() {
            return Err(invalid(format!(
                "the subject identifier names no user or device (format `{}`)",
                echo(sub_id.get("format").and_then(Value::as_str).unwrap_or("?"))
            )));
        }

        let mut labels = BTreeMap::new();
        labels.insert("ssf.issuer".to_string(), issuer);
        labels.insert("ssf.event_type".to_string(), event_type.clone());
        if let Some(txn) = str_of(obj.get("txn")) {
            labels.insert("ssf.txn".to_string(), txn.to_string());
        }
        for key in [
            "credential_type",
            "change_type",
            "reason",
            "initiating_entity",
            "current_level",
            "previous_level",
            "current_status",
            "risk_reason",
        ] {
            if let Some(v) = str_of(event.get(key)) {
                labels.insert(format!("ssf.{key}"), v.to_string());
            }
        }
        let product = if event_type.starts_with(RISC) {
            "risc"
        } else {
            "caep"
        };
        let who = subjects
            .first()
            .and_then(Subject::primary)
            .or_else(|| host.as_ref().and_then(|h: &Host| h.id.as_deref()))
            .unwrap_or("?")
            .to_string();
        let reason = event
            .get("reason_admin")
            .and_then(|r| r.get("en").or_else(|| r.as_object()?.values().next()))
            .and_then(Value::as_str)
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let mut alert = Alert::new(
            Source::of("ssf", product, FORMAT),
            id,
            time,
            severity,
            Vec::new(),
        );
        alert.category = category.into();
        alert.title = format!("{title} for {who}{reason}");
        alert.subjects = subjects;
        alert.host = host;
        alert.labels = labels;
        alert.raw = doc;
        Ok(alert)
    }
}

/// `event_timestamp` (NumericDate seconds, when the event happened) else `iat` (when the SET was made).
fn event_time(
    iat: Option<&Value>,
    event_ts: Option<&Value>,
) -> Result<DateTime<Utc>, NormalizeError> {
    let secs = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
    };
    let (field, v) = match event_ts {
        Some(v) => ("event_timestamp", v),
        None => ("iat", iat.ok_or_else(|| invalid("`iat` is missing"))?),
    };
    secs(v)
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .ok_or_else(|| {
            invalid(format!(
                "`{field}` is `{}`, not a NumericDate in seconds",
                echo(v)
            ))
        })
}

/// Deepest `aliases` / `complex` nesting read; RFC 9493 forbids nesting aliases at all.
const MAX_DEPTH: usize = 2;

/// Add what the subject identifier `id` names (RFC 9493 formats, SSF complex subjects).
fn read_subject(
    id: &Value,
    subjects: &mut Vec<Subject>,
    host: &mut Option<Host>,
    depth: usize,
) -> Result<(), NormalizeError> {
    let field = |k: &str| str_of(id.get(k));
    let format = field("format");
    // A complex subject (SSF 1.0 §3.2) has members `user`, `device`, `session`, …; older drafts
    // omitted `format` on it.
    let complex = format == Some("complex")
        || (format.is_none() && (id.get("user").is_some() || id.get("device").is_some()));
    if complex {
        if depth >= MAX_DEPTH {
            return Err(invalid("complex subject nested too deep"));
        }
        if let Some(user) = id.get("user") {
            read_subject(user, subjects, host, depth + 1)?;
        }
        if let Some(device) = id.get("device") {
            let mut d = Vec::new();
            read_subject(device, &mut d, &mut None, depth + 1)?;
            let hid = d.first().and_then(Subject::primary).map(str::to_string);
            if hid.is_some() {
                host.get_or_insert_with(Host::default).id = hid;
            }
        }
        return Ok(());
    }
    let mut s = Subject::default();
    match format {
        Some("email") => {
            s.email = Some(
                field("email")
                    .ok_or_else(|| invalid("`email` subject without `email`"))?
                    .into(),
            )
        }
        Some("iss_sub") => {
            let sub = field("sub").ok_or_else(|| invalid("`iss_sub` subject without `sub`"))?;
            s = subject_from_name(sub).unwrap_or_default();
            s.ids.insert("iss_sub".into(), sub.into());
        }
        Some("opaque") => {
            let v = field("id").ok_or_else(|| invalid("`opaque` subject without `id`"))?;
            s.username = Some(v.into());
            s.ids.insert("opaque".into(), v.into());
        }
        Some("account") => {
            let uri = field("uri").ok_or_else(|| invalid("`account` subject without `uri`"))?;
            let acct = uri
                .strip_prefix("acct:")
                .ok_or_else(|| invalid(format!("`account` uri `{}` is not acct:", echo(uri))))?;
            s = subject_from_name(acct).unwrap_or_default();
        }
        Some("phone_number") => {
            let v = field("phone_number")
                .ok_or_else(|| invalid("`phone_number` subject without `phone_number`"))?;
            s.ids.insert("phone_number".into(), v.into());
        }
        Some("aliases") => {
            if depth >= MAX_DEPTH {
                return Err(invalid("`aliases` nested too deep"));
            }
            let list = id
                .get("identifiers")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("`aliases` subject without `identifiers`"))?;
            // Every alias names the same account: merge them into one subject.
            let mut one = Vec::new();
            for alias in list {
                read_subject(alias, &mut one, host, depth + 1)?;
            }
            let mut merged = Subject::default();
            for a in one {
                merged.email = merged.email.or(a.email);
                merged.username = merged.username.or(a.username);
                merged.ids.extend(a.ids);
            }
            s = merged;
        }
        // `did`, `uri` and unknown formats name nothing a connector can resolve.
        _ => return Ok(()),
    }
    if super::fields::has_identifier(&s) {
        merge_subject(subjects, s);
    }
    Ok(())
}

fn invalid(reason: impl std::fmt::Display) -> NormalizeError {
    NormalizeError::invalid(FORMAT, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(event_type: &str, event: Value, sub_id: Value) -> Value {
        json!({
            "iss": "https://idp.example.com",
            "jti": "4d3559ec67504aaba65d40b0363faad8",
            "iat": 1767225600,
            "aud": "deprovd",
            "sub_id": sub_id,
            "events": { event_type: event },
        })
    }

    #[test]
    fn credential_compromise_is_high_credential_theft_with_email_subject() {
        let a = Ssf
            .normalize(set(
                &format!("{RISC}credential-compromise"),
                json!({"credential_type": "password"}),
                json!({"format": "email", "email": "alice@corp.example"}),
            ))
            .unwrap();
        assert_eq!(a.id, "4d3559ec67504aaba65d40b0363faad8");
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.category, "credential_theft");
        assert_eq!(a.subjects[0].email.as_deref(), Some("alice@corp.example"));
        assert_eq!(a.labels["ssf.credential_type"], "password");
        assert_eq!(a.source.product.as_deref(), Some("risc"));
        assert_eq!(a.time.timestamp(), 1767225600);
    }

    #[test]
    fn complex_subject_gives_user_and_device() {
        let a = Ssf
            .normalize(set(
                &format!("{CAEP}device-compliance-change"),
                json!({"current_status": "not-compliant", "previous_status": "compliant",
                       "event_timestamp": 1767225000}),
                json!({"format": "complex",
                       "user": {"format": "iss_sub", "iss": "https://idp.example.com", "sub": "00u1"},
                       "device": {"format": "opaque", "id": "dev-42"}}),
            ))
            .unwrap();
        assert_eq!(a.severity, Severity::Medium);
        assert_eq!(a.category, "policy_violation");
        assert_eq!(a.subjects.len(), 1);
        assert_eq!(a.subjects[0].username.as_deref(), Some("00u1"));
        assert_eq!(a.subjects[0].ids["iss_sub"], "00u1");
        assert_eq!(a.host.unwrap().id.as_deref(), Some("dev-42"));
        assert_eq!(
            a.time.timestamp(),
            1767225000,
            "event_timestamp wins over iat"
        );
    }

    #[test]
    fn risk_level_follows_current_level_and_aliases_merge() {
        let a = Ssf
            .normalize(set(
                &format!("{CAEP}risk-level-change"),
                json!({"principal": "USER", "current_level": "HIGH", "previous_level": "LOW"}),
                json!({"format": "aliases", "identifiers": [
                    {"format": "email", "email": "bob@corp.example"},
                    {"format": "opaque", "id": "u-77"}]}),
            ))
            .unwrap();
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.subjects.len(), 1);
        assert_eq!(a.subjects[0].email.as_deref(), Some("bob@corp.example"));
        assert_eq!(a.subjects[0].ids["opaque"], "u-77");
    }

    #[test]
    fn pre_ssf_subject_inside_the_event_is_read() {
        let a = Ssf
            .normalize(json!({
                "iss": "https://idp.example.com", "jti": "j1", "iat": 1767225600,
                "events": {format!("{CAEP}session-revoked"): {
                    "subject": {"format": "account", "uri": "acct:carol@corp.example"},
                    "initiating_entity": "policy"}},
            }))
            .unwrap();
        assert_eq!(a.subjects[0].email.as_deref(), Some("carol@corp.example"));
        assert_eq!(a.category, "suspicious_login");
    }

    #[test]
    fn rejections_name_the_problem() {
        let err = |doc: Value| Ssf.normalize(doc).unwrap_err().to_string();
        let mut two = set(
            &format!("{RISC}account-purged"),
            json!({}),
            json!({"format": "email", "email": "a@b.c"}),
        );
        two["events"][format!("{RISC}account-disabled")] = json!({});
        assert!(err(two).contains("exactly one"));
        assert!(
            err(set(
                "https://example.com/custom",
                json!({}),
                json!({"format": "email", "email": "a@b.c"})
            ))
            .contains("not a supported")
        );
        assert!(
            err(set(
                &format!("{RISC}account-purged"),
                json!({}),
                json!({"format": "did", "url": "did:example:1"})
            ))
            .contains("names no user")
        );
    }
}
