//! `ocsf`: OCSF Detection Finding (class_uid 2004).
use super::{Alert, NormalizeError, Normalizer};

pub struct Ocsf;

impl Normalizer for Ocsf {
    fn name(&self) -> &'static str {
        "ocsf"
    }
    fn detect(&self, doc: &serde_json::Value) -> bool {
        doc.get("class_uid").and_then(|v| v.as_u64()) == Some(2004)
    }
    fn normalize(&self, _doc: serde_json::Value) -> Result<Alert, NormalizeError> {
        Err(NormalizeError::Invalid {
            format: "ocsf",
            reason: "not yet implemented".into(),
        })
    }
}
