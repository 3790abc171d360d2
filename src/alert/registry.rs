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
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| NormalizeError::InvalidJson(e.to_string()))?;
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
                    .ok_or_else(|| NormalizeError::Unrecognized(self.names().join(", ")))?;
                n.normalize(doc)
            }
        }
    }
}
