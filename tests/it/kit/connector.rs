//! Connector instance configs, and the real connectors built from them exactly as the service
//! builds them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deprovd::{
    Connector, ConnectorSet, InstanceConfig, Operation, OperationRequest, OperationResult, Outcome,
    build_connectors,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// An instance config from its fields (as the `[connectors.<name>]` table would hold them), parsed
/// by the service's own deserializer (the `type` field picks HTTP spec, LDAP or IAM).
pub(crate) fn instance(fields: Value) -> InstanceConfig {
    InstanceConfig::deserialize(fields).unwrap_or_else(|e| panic!("connector config: {e}"))
}

/// Every operation `connectors/webhook.yaml` defines (kept beside the lane load helpers, which the
/// `lane_isolation` bench compiles too).
pub(crate) use crate::lanes::load::WEBHOOK_OPERATIONS;

/// A `webhook` connector POSTing to `{url}/{name}` without auth, opted into every operation the
/// spec defines (see [`WEBHOOK_OPERATIONS`]).
pub(crate) fn webhook(name: &str, url: &str) -> InstanceConfig {
    instance(json!({
        "type": "webhook",
        "base_url": url,
        "auth": {"scheme": "none"},
        "vars": {"path": name},
        "operations": WEBHOOK_OPERATIONS,
    }))
}

/// A `webhook` connector as a notification receiver is configured: no `operations`, so `notify` only.
pub(crate) fn notify_webhook(name: &str, url: &str) -> InstanceConfig {
    instance(json!({
        "type": "webhook",
        "base_url": url,
        "auth": {"scheme": "none"},
        "vars": {"path": name},
    }))
}

/// The real connectors, built from instance configs by name.
pub(crate) fn build_set(
    configs: impl IntoIterator<Item = (String, InstanceConfig)>,
) -> ConnectorSet {
    let configs: BTreeMap<String, InstanceConfig> = configs.into_iter().collect();
    build_connectors(&configs, None).unwrap_or_else(|p| panic!("build failed: {p:#?}"))
}

/// One real connector, built from its instance config as the service builds instance `name`.
pub(crate) fn connector(name: &str, config: InstanceConfig) -> Arc<dyn Connector> {
    build_set([(name.to_string(), config)])[name].clone()
}

/// Secret files for connector configs (`file:` references), removed with the value.
pub(crate) struct Secrets(tempfile::TempDir);

impl Secrets {
    pub(crate) fn new() -> Self {
        Secrets(tempfile::tempdir().expect("tempdir"))
    }
    pub(crate) fn file(&self, name: &str, content: &str) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).expect("write secret");
        format!("file:{}", p.display())
    }
}

/// The real connectors, built from `[connectors.*]` TOML exactly as the service builds them.
pub(crate) fn build(toml_src: &str) -> ConnectorSet {
    #[derive(serde::Deserialize)]
    struct Root {
        connectors: BTreeMap<String, InstanceConfig>,
    }
    let root: Root = toml::from_str(toml_src).expect("config parses");
    build_connectors(&root.connectors, None).unwrap_or_else(|p| panic!("build failed: {p:#?}"))
}

/// A request for one operation, with a fresh idempotency key.
pub(crate) fn request(op: Operation, subject: &str, pre_state: Option<Value>) -> OperationRequest {
    OperationRequest {
        operation: op,
        subject: subject.to_string(),
        idempotency_key: format!("key-{}", uuid::Uuid::new_v4().simple()),
        pre_state,
        context: BTreeMap::new(),
    }
}

/// One operation through a connector, with a fresh idempotency key.
pub(crate) async fn run(
    c: &dyn Connector,
    op: Operation,
    subject: &str,
    pre_state: Option<Value>,
) -> OperationResult {
    c.execute(&request(op, subject, pre_state)).await
}

/// [`run`], asserting that the outcome is `expected` (the failure names the operation, the subject
/// and the whole result).
pub(crate) async fn run_expecting(
    c: &dyn Connector,
    op: Operation,
    subject: &str,
    pre_state: Option<Value>,
    expected: Outcome,
) -> OperationResult {
    let r = run(c, op, subject, pre_state).await;
    assert_eq!(r.outcome, expected, "{op:?} on {subject}: {r:?}");
    r
}

/// Operations through a real connector, as the tests drive them.
pub(crate) trait RunExt {
    /// [`run_expecting`] on this connector: one operation, its outcome asserted.
    async fn expecting(
        &self,
        op: Operation,
        subject: &str,
        pre_state: Option<Value>,
        expected: Outcome,
    ) -> OperationResult;
}

impl RunExt for Arc<dyn Connector> {
    async fn expecting(
        &self,
        op: Operation,
        subject: &str,
        pre_state: Option<Value>,
        expected: Outcome,
    ) -> OperationResult {
        run_expecting(&**self, op, subject, pre_state, expected).await
    }
}

/// The reason of a `Failed` outcome; panics with the whole result on any other outcome.
pub(crate) fn failed(r: &OperationResult) -> &str {
    match &r.outcome {
        Outcome::Failed { reason } => reason,
        _ => panic!("expected failed, got {r:?}"),
    }
}

/// The requested wait and the reason of a `Retry` outcome; panics with the whole result on any
/// other outcome.
pub(crate) fn retrying(r: &OperationResult) -> (Option<Duration>, &str) {
    match &r.outcome {
        Outcome::Retry { after, reason } => (*after, reason),
        _ => panic!("expected retry, got {r:?}"),
    }
}
