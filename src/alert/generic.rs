//! `generic`: the canonical alert JSON itself.
use super::{Alert, NormalizeError, Normalizer};

pub struct Generic;

impl Normalizer for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }
    fn detect(&self, doc: &serde_json::Value) -> bool {
        doc.get("subjects").is_some() && doc.get("severity").is_some()
    }
    fn normalize(&self, doc: serde_json::Value) -> Result<Alert, NormalizeError> {
        serde_json::from_value(doc).map_err(|e| NormalizeError::Invalid {
            format: "generic",
            reason: e.to_string(),
        })
    }
}
