//! Picks the normalizer for a document: the one configured for the source, else the first whose
//! `detect` says yes.

use super::{Alert, NormalizeError};

/// Turns one vendor document into the canonical [`Alert`].
pub trait Normalizer: Send + Sync {
    /// Stable name used in config (`format = "ocsf"`) and in `Source::format`.
    fn name(&self) -> &'static str;
    /// Cheap structural check: does this document look like ours? Must not allocate much; it runs
    /// for every auto-detected message.
    fn detect(&self, doc: &serde_json::Value) -> bool;
    /// Map the document. `doc` is moved in so the normalizer can keep it as `Alert::raw` without a copy.
    fn normalize(&self, doc: serde_json::Value) -> Result<Alert, NormalizeError>;
}

/// All known formats, in detection order (most specific first, `generic` last).
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
                Box::new(super::elastic::Elastic),
                Box::new(super::google_workspace::GoogleWorkspace),
                Box::new(super::ssf::Ssf),
                Box::new(super::generic::Generic),
            ],
        }
    }

    /// Names of the known formats, for error messages and config validation.
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
        let doc: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
        self.normalize_value(doc, format)
    }

    /// As [`normalize`](Self::normalize), for an already parsed document.
    pub fn normalize_value(
        &self,
        doc: serde_json::Value,
        format: Option<&str>,
    ) -> Result<Alert, NormalizeError> {
        match format {
            Some(name) if name != "auto" => {
                let n = self.get(name).ok_or_else(|| {
                    NormalizeError::UnknownFormat(name.to_string(), self.names().join(", "))
                })?;
                n.normalize(doc)
            }
            _ => {
                let n = self
                    .normalizers
                    .iter()
                    .find(|n| n.detect(&doc))
                    .ok_or_else(|| {
                        NormalizeError::Unrecognized(format!(
                            "{}; {}",
                            self.names().join(", "),
                            why_unrecognized(&doc)
                        ))
                    })?;
                n.normalize(doc)
            }
        }
    }
}

/// One line for the dead-letter message saying what the document lacked, so an operator can tell
/// a misrouted OCSF class from a malformed generic alert without opening the payload.
fn why_unrecognized(doc: &serde_json::Value) -> String {
    let Some(obj) = doc.as_object() else {
        return "the document is not a JSON object".into();
    };
    match obj.get("class_uid") {
        Some(class) => format!(
            "OCSF class_uid {class} is not a Detection Finding (2004); set an explicit format if \
             this source sends another schema"
        ),
        None => {
            "no OCSF class_uid, and not generic (needs `severity` plus `id` or `subjects`)".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_kind_has_its_bounded_reason_code() {
        let r = NormalizerRegistry::new();
        let code = |bytes: &[u8], f: Option<&str>| r.normalize(bytes, f).unwrap_err().reason_code();
        assert_eq!(code(b"{not json", None), "invalid_json");
        assert_eq!(code(b"{}", Some("qradar")), "unknown_format");
        assert_eq!(code(br#"{"class_uid": 3002}"#, None), "unrecognized");
        assert_eq!(code(br#"{"class_uid": 3002}"#, Some("ocsf")), "invalid");
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
    fn auto_is_the_same_as_no_format() {
        let r = NormalizerRegistry::new();
        let doc = br#"{"id": "1", "time": 1767225600000, "severity": "low"}"#;
        assert_eq!(r.normalize(doc, Some("auto")), r.normalize(doc, None));
        assert_eq!(r.normalize(doc, None).unwrap().source.format, "generic");
    }
}
