//! Picks the normalizer for a document: the one configured for the source, else the first whose
//! `detect` says yes.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Alert, NormalizeError, ProblemKind};

/// One document cut out of a delivery by [`Normalizer::split`].
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Where the document sat in the delivery (`data.events[3]`); `None` when the delivery was the
    /// document itself.
    pub at: Option<String>,
    pub doc: Value,
}

/// What became of one document of a delivery ([`NormalizerRegistry::normalize_all`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// Where the document sat in the delivery; `None` when the delivery was the document itself.
    pub at: Option<String>,
    /// The document's own bytes, for dead-lettering it alone; `None` when it is the whole delivery
    /// (whose original bytes the caller has).
    pub bytes: Option<Vec<u8>>,
    pub result: Result<Alert, NormalizeError>,
}

/// Turns one vendor document into the canonical [`Alert`].
pub trait Normalizer: Send + Sync {
    /// Stable name used in config (`format = "ocsf"`) and in `Source::format`.
    fn name(&self) -> &'static str;
    /// Cheap structural check: does this document look like ours? Must not allocate much; it runs
    /// for every auto-detected message.
    fn detect(&self, doc: &serde_json::Value) -> bool;
    /// Map the document. `doc` is moved in so the normalizer can keep it as `Alert::raw` without a copy.
    fn normalize(&self, doc: serde_json::Value) -> Result<Alert, NormalizeError>;
    /// Cut a delivery that carries several vendor documents (an Okta event hook's `data.events`)
    /// into one document per alert, before [`normalize`](Self::normalize). The default: the
    /// delivery is one document. An envelope that carries nothing is an error.
    fn split(&self, doc: serde_json::Value) -> Result<Vec<Part>, NormalizeError> {
        Ok(vec![Part { at: None, doc }])
    }
}

/// All formats a source may name or auto-detect, in detection order (most specific first, `generic`
/// last).
///
/// `ssf` is deliberately not among them: its normalizer trusts that the SET's signature, issuer,
/// audience and `jti` were checked, which only the Shared Signals receiver does. Were it detectable
/// or nameable here, any `ingest` caller or Kafka producer could post unsigned SET claims and get
/// an alert indistinguishable from a verified one. The receiver uses
/// [`normalize_verified_set`](NormalizerRegistry::normalize_verified_set); elsewhere `format = ssf`
/// is refused ([`SSF_ONLY_VERIFIED`]).
pub struct NormalizerRegistry {
    normalizers: Vec<Box<dyn Normalizer>>,
}

impl Default for NormalizerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl NormalizerRegistry {
    /// Every built-in format.
    pub fn new() -> Self {
        Self {
            normalizers: vec![
                Box::new(super::ocsf::Ocsf),
                Box::new(super::crowdstrike::CrowdStrike),
                Box::new(super::defender::Defender),
                Box::new(super::sentinel::Sentinel),
                Box::new(super::splunk::Splunk),
                Box::new(super::okta::Okta),
                Box::new(super::guardduty::GuardDuty),
                Box::new(super::asff::Asff),
                Box::new(super::elastic::Elastic),
                Box::new(super::google_workspace::GoogleWorkspace),
                // Not `ssf`: see `normalize_verified_set`.
                Box::new(super::generic::Generic),
            ],
        }
    }

    /// Names of the formats a source may name (not `ssf`), for error messages and config validation.
    pub fn names(&self) -> Vec<&'static str> {
        self.normalizers.iter().map(|n| n.name()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&dyn Normalizer> {
        self.normalizers
            .iter()
            .find(|n| n.name() == name)
            .map(|n| n.as_ref())
    }

    /// Parse `bytes` once and normalize with `format` (or auto-detect when `None` or `"auto"`).
    pub fn normalize(&self, bytes: &[u8], format: Option<&str>) -> Result<Alert, NormalizeError> {
        let doc: serde_json::Value = crate::json::from_slice(bytes)
            .map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
        self.normalize_value(doc, format)
    }

    /// Parse `bytes` once, split a multi-document delivery (see [`Normalizer::split`]) and normalize
    /// every document with the format that recognized the delivery. Each document keeps its own
    /// `raw` and its own result, so one bad event dead-letters alone. `Err` only when the delivery as
    /// a whole is unusable (not JSON, unknown or unrecognized format, an empty envelope).
    pub fn normalize_all(
        &self,
        bytes: &[u8],
        format: Option<&str>,
    ) -> Result<Vec<Normalized>, NormalizeError> {
        self.normalize_all_received(bytes, format, Utc::now())
    }

    /// As [`normalize_all`](Self::normalize_all) for a delivery received at `received_at` (a Kafka
    /// record's timestamp, an HTTP request's arrival): the time of an alert that carries no
    /// readable time of its own (`time_from_receipt`).
    pub fn normalize_all_received(
        &self,
        bytes: &[u8],
        format: Option<&str>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Normalized>, NormalizeError> {
        let doc: Value = crate::json::from_slice(bytes)
            .map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
        let n = self.pick(&doc, format)?;
        let parts = n.split(doc)?;
        if parts.len() > super::MAX_EVENTS_PER_DELIVERY {
            return Err(NormalizeError::TooLarge {
                what: "events in one delivery",
                found: parts.len(),
                limit: super::MAX_EVENTS_PER_DELIVERY,
            });
        }
        if let [Part { at: None, .. }] = parts.as_slice() {
            let doc = parts.into_iter().next().expect("one part").doc;
            return Ok(vec![Normalized {
                at: None,
                bytes: None,
                result: run(n, doc, received_at),
            }]);
        }
        Ok(parts
            .into_iter()
            .map(|Part { at, doc }| {
                let bytes = serde_json::to_vec(&doc).ok();
                let result = run(n, doc, received_at).map_err(|e| match (e, &at) {
                    (NormalizeError::Invalid { format, reason }, Some(at)) => {
                        NormalizeError::Invalid {
                            format,
                            reason: format!("{at}: {reason}"),
                        }
                    }
                    (e, _) => e,
                });
                Normalized { at, bytes, result }
            })
            .collect())
    }

    /// The claims of a SET the Shared Signals receiver verified (signature, issuer, audience, `iat`,
    /// `jti`): the only way to an `ssf` alert.
    pub fn normalize_verified_set(&self, claims: Value) -> Result<Alert, NormalizeError> {
        run(&super::ssf::Ssf, claims, Utc::now())
    }

    /// The normalizer for `doc`: the configured one, else the first that detects it.
    fn pick(&self, doc: &Value, format: Option<&str>) -> Result<&dyn Normalizer, NormalizeError> {
        match format {
            Some(SSF) => Err(NormalizeError::Invalid {
                format: SSF,
                reason: SSF_ONLY_VERIFIED.into(),
            }),
            Some(name) if name != "auto" => self.get(name).ok_or_else(|| {
                NormalizeError::UnknownFormat(name.to_string(), self.names().join(", "))
            }),
            _ => self
                .normalizers
                .iter()
                .find(|n| n.detect(doc))
                .map(|n| n.as_ref())
                .ok_or_else(|| {
                    NormalizeError::Unrecognized(format!(
                        "{}; {}",
                        self.names().join(", "),
                        why_unrecognized(doc)
                    ))
                }),
        }
    }

    /// As [`normalize`](Self::normalize), for an already parsed document.
    pub fn normalize_value(
        &self,
        doc: serde_json::Value,
        format: Option<&str>,
    ) -> Result<Alert, NormalizeError> {
        run(self.pick(&doc, format)?, doc, Utc::now())
    }
}

/// One document through `n`, with what every format shares: the placeholder identifiers the field
/// readers dropped noted (`placeholder_identifier`), an alert timed on receipt given
/// `received_at` (the normalizers only know the wall clock), and the per-alert bounds.
fn run(
    n: &dyn Normalizer,
    doc: Value,
    received_at: DateTime<Utc>,
) -> Result<Alert, NormalizeError> {
    let (result, dropped) = super::fields::collect_dropped(|| n.normalize(doc));
    let mut alert = result?;
    super::fields::note_dropped(&mut alert, dropped);
    if alert
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::TimeFromReceipt)
    {
        alert.time = received_at;
    }
    bounded(alert)
}

/// Refuse an alert with more subjects or indicators than one alert may carry (whatever the format).
fn bounded(alert: Alert) -> Result<Alert, NormalizeError> {
    for (what, found, limit) in [
        (
            "subjects",
            alert.subjects.len(),
            super::MAX_SUBJECTS_PER_ALERT,
        ),
        (
            "indicators",
            alert.indicators.len(),
            super::MAX_INDICATORS_PER_ALERT,
        ),
    ] {
        if found > limit {
            return Err(NormalizeError::TooLarge { what, found, limit });
        }
    }
    Ok(alert)
}

/// One line for the dead-letter message saying what the document lacked, so an operator can tell
/// a misrouted OCSF class from a malformed generic alert without opening the payload.
fn why_unrecognized(doc: &serde_json::Value) -> String {
    let Some(obj) = doc.as_object() else {
        return "the document is not a JSON object".into();
    };
    match obj.get("class_uid") {
        Some(class) => format!(
            "OCSF class_uid {class} is not a class deprovd reads ({}); set an explicit format if \
             this source sends another schema",
            super::ocsf::CLASSES_TEXT
        ),
        None => {
            "no OCSF class_uid, and not generic (needs `severity` plus `id` or `subjects`)".into()
        }
    }
}

/// The format name of verified Security Event Tokens.
const SSF: &str = "ssf";

/// Why `format = ssf` is refused on `/v1/alerts` and Kafka.
pub(crate) const SSF_ONLY_VERIFIED: &str = "SETs are accepted only by the Shared Signals receiver \
    (POST /v1/ssf/{receiver} or its poll client), which verifies their signature; format `ssf` \
    cannot be used on other sources";

#[cfg(test)]
mod tests {
    use super::*;

    /// The claims of a CAEP SET, as an attacker without the transmitter's key could write them.
    const UNSIGNED_SET_CLAIMS: &[u8] = br#"{
        "iss": "https://idp.example.com", "jti": "forged-1", "iat": 1767225600,
        "aud": "https://deprovd.example.com",
        "sub_id": {"format": "email", "email": "ceo@corp.example"},
        "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}}
    }"#;

    #[test]
    fn a_duplicate_key_anywhere_is_invalid_json_in_every_format() {
        let r = NormalizerRegistry::new();
        let doc = br#"{"id":"a","source":{"vendor":"t"},"severity":"low","title":"t",
            "subjects":[{"email":"x@y.z"}],"severity":"critical"}"#;
        for format in [None, Some("generic"), Some("ocsf"), Some("okta")] {
            let e = r.normalize(doc, format).unwrap_err();
            assert_eq!(e.reason_code(), "invalid_json", "{format:?}: {e}");
            assert!(e.to_string().contains("duplicate key `severity`"), "{e}");
            let e = r.normalize_all(doc, format).unwrap_err();
            assert_eq!(e.reason_code(), "invalid_json", "{format:?}: {e}");
        }
    }

    #[test]
    fn an_alert_over_the_subject_or_indicator_limit_is_too_large_in_any_format() {
        let r = NormalizerRegistry::new();
        let subjects: Vec<Value> = (0..=crate::alert::MAX_SUBJECTS_PER_ALERT)
            .map(|i| serde_json::json!({"email": format!("u{i}@example.org")}))
            .collect();
        let doc = serde_json::json!({"id": "big", "source": {"vendor": "t"}, "severity": "high",
            "time": "2026-01-01T00:00:00Z", "category": "malware", "title": "t", "subjects": subjects});
        let e = r
            .normalize(&serde_json::to_vec(&doc).unwrap(), None)
            .unwrap_err();
        assert_eq!(e.reason_code(), "too_large", "{e}");
        assert!(e.to_string().contains("subjects"), "{e}");
        let at_limit = serde_json::json!({"id": "ok", "source": {"vendor": "t"}, "severity": "high",
            "time": "2026-01-01T00:00:00Z", "category": "malware", "title": "t",
            "subjects": subjects[..crate::alert::MAX_SUBJECTS_PER_ALERT]});
        let ok = r.normalize(&serde_json::to_vec(&at_limit).unwrap(), None);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn unsigned_set_claims_are_never_an_ssf_alert_outside_the_receiver() {
        let r = NormalizerRegistry::new();
        assert!(!r.names().contains(&"ssf"), "{:?}", r.names());
        for format in [None, Some("auto")] {
            if let Ok(a) = r.normalize(UNSIGNED_SET_CLAIMS, format) {
                assert_ne!(a.source.format, "ssf", "auto-detected as ssf");
            }
            for part in r
                .normalize_all(UNSIGNED_SET_CLAIMS, format)
                .into_iter()
                .flatten()
            {
                if let Ok(a) = part.result {
                    assert_ne!(a.source.format, "ssf", "auto-detected as ssf");
                }
            }
        }
        let err = r.normalize(UNSIGNED_SET_CLAIMS, Some("ssf")).unwrap_err();
        assert_eq!(err.reason_code(), "invalid");
        assert!(err.to_string().contains("Shared Signals receiver"), "{err}");
        let err = r
            .normalize_all(UNSIGNED_SET_CLAIMS, Some("ssf"))
            .unwrap_err();
        assert!(
            err.to_string().contains("verifies their signature"),
            "{err}"
        );
        // The receiver's own path still maps the claims it verified.
        let doc = serde_json::from_slice(UNSIGNED_SET_CLAIMS).unwrap();
        assert_eq!(r.normalize_verified_set(doc).unwrap().source.format, "ssf");
    }

    #[test]
    fn each_error_kind_has_its_bounded_reason_code() {
        let r = NormalizerRegistry::new();
        let code = |bytes: &[u8], f: Option<&str>| r.normalize(bytes, f).unwrap_err().reason_code();
        assert_eq!(code(b"{not json", None), "invalid_json");
        assert_eq!(code(b"{}", Some("qradar")), "unknown_format");
        assert_eq!(code(br#"{"class_uid": 4001}"#, None), "unrecognized");
        assert_eq!(code(br#"{"class_uid": 4001}"#, Some("ocsf")), "invalid");
    }

    #[test]
    fn unknown_format_lists_the_known_ones() {
        let err = NormalizerRegistry::new()
            .normalize(b"{}", Some("qradar"))
            .unwrap_err();
        let known = NormalizerRegistry::new().names().join(", ");
        assert!(
            known.starts_with("ocsf, ") && known.ends_with(", generic"),
            "{known}"
        );
        assert_eq!(
            err.to_string(),
            format!("unknown format `qradar` (known: {known})")
        );
    }

    #[test]
    fn an_alert_without_a_time_is_timed_at_the_given_receipt() {
        let r = NormalizerRegistry::new();
        let received = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let untimed = br#"{"id": "u1", "severity": "high", "subjects": ["jdoe@corp.example"]}"#;
        let parts = r.normalize_all_received(untimed, None, received).unwrap();
        let alert = parts[0].result.as_ref().unwrap();
        assert_eq!(alert.time, received);
        assert_eq!(alert.problems[0].kind, ProblemKind::TimeFromReceipt);
        // A vendor time wins over the time of receipt.
        let timed = br#"{"id": "t1", "severity": "high", "time": "2026-03-01T09:15:00Z"}"#;
        let parts = r.normalize_all_received(timed, None, received).unwrap();
        let alert = parts[0].result.as_ref().unwrap();
        assert_eq!(alert.time.to_rfc3339(), "2026-03-01T09:15:00+00:00");
        // Each event of a split delivery too.
        let hook = br#"{"eventType": "com.okta.event_hook", "data": {"events": [
            {"uuid": "e1", "eventType": "user.account.lock", "target": [{"type": "User", "alternateId": "a@corp.example"}]},
            {"uuid": "e2", "eventType": "user.account.lock", "published": "2026-03-01T09:15:00Z",
             "target": [{"type": "User", "alternateId": "b@corp.example"}]}]}}"#;
        let parts = r.normalize_all_received(hook, None, received).unwrap();
        let times: Vec<_> = parts
            .iter()
            .map(|p| p.result.as_ref().unwrap().time.to_rfc3339())
            .collect();
        assert_eq!(
            times,
            ["2026-01-01T00:00:00+00:00", "2026-03-01T09:15:00+00:00"]
        );
    }

    #[test]
    fn dropped_placeholder_identifiers_are_noted_on_the_alert() {
        let r = NormalizerRegistry::new();
        let doc = br#"{"result": {"_time": "1772356500", "user": ["N/A", "jdoe"],
            "src_user": "NT AUTHORITY\\SYSTEM", "urgency": "high"},
            "sid": "s1", "search_name": "x"}"#;
        let alert = r.normalize(doc, None).unwrap();
        assert_eq!(alert.subjects.len(), 1);
        let noted: Vec<_> = alert
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::PlaceholderIdentifier)
            .map(|p| p.detail.as_str())
            .collect();
        assert_eq!(noted.len(), 2, "{noted:?}");
        assert!(noted[0].contains("`N/A`"), "{noted:?}");
        assert!(noted[1].contains(r"`NT AUTHORITY\SYSTEM`"), "{noted:?}");
        // Nothing dropped, nothing noted.
        let clean = br#"{"result": {"_time": "1772356500", "user": "jdoe"}, "sid": "s2", "search_name": "x"}"#;
        assert!(r.normalize(clean, None).unwrap().problems.is_empty());
    }

    #[test]
    fn auto_is_the_same_as_no_format() {
        let r = NormalizerRegistry::new();
        let doc = br#"{"id": "1", "time": 1767225600000, "severity": "low"}"#;
        assert_eq!(r.normalize(doc, Some("auto")), r.normalize(doc, None));
        assert_eq!(r.normalize(doc, None).unwrap().source.format, "generic");
    }
}
