//! The declarative HTTP connector runtime: one YAML spec per target type in `connectors/`.
// TEMP-PLACEHOLDER
#[derive(Debug, Clone, serde::Deserialize)] pub struct ConnectorConfig { pub concurrency: usize, pub max_attempts: Option<u32> }
impl ConnectorConfig { pub fn validate(&self, _p: &str, _pr: &mut Vec<crate::config::Problem>) {} }
pub fn build_connectors(_c: &std::collections::BTreeMap<String, ConnectorConfig>, _d: Option<&std::path::Path>) -> Result<super::ConnectorSet, Vec<crate::config::Problem>> { todo!() }
