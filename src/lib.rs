//! deprovd turns security alerts into containment: it reads alerts, asks Rego policies what to do, and
//! carries the answer out across identity systems — at once, exactly once in effect, and safely.
//!
//! # Layout
//!
//! The modules form layers. A module uses only modules in the layers *below* its own — never one
//! beside it or above it — so each layer can be read, tested and changed knowing only what is under
//! it. `tests/layering.rs` reads every `crate::` path in `src/` (tests excluded) and checks it
//! against this table, bottom to top:
//!
//! ```text
//! layer 0   config json
//! layer 1   telemetry net retry
//! layer 2   template alert audit
//! layer 3   action identity deadletter
//! layer 4   connectors ledger policy notify ssf
//! layer 5   plan guard
//! layer 6   executor
//! layer 7   approval
//! layer 8   pipeline
//! layer 9   ingest lockout audit_mirror
//! layer 10  api
//! layer 11  console
//! layer 12  app
//! layer 13  cli client
//! layer 14  fuzz
//! ```
//!
//! **The public surface is curated.** Every module is `pub(crate)` except `cli` and `client`, the
//! binary's front end (argument definitions, subcommands, the responders' HTTP client), which
//! `main.rs` — a separate crate — calls into. What the binary, the integration tests and the benches
//! need from the rest is re-exported by name at the crate root (the `pub use` list at the end of this
//! file: `deprovd::Settings`, `deprovd::Connector`, `deprovd::StoreBackend`, …), so a newcomer reads
//! the whole public API in one place. `unreachable_pub` (in `Cargo.toml`'s `[lints]`) keeps every
//! other `pub` honest: an item nothing outside its module's crate can reach is `pub(crate)`.
//!
//! The data path reads straight up the table: ingest → alert → policy → plan → guard → ledger →
//! executor → connectors.
//!
//! - **Vocabulary** (layers 0–3), used by everything above:
//!   - [`config`]: `Problem` (one validation finding with its key path), `SecretRef` (`env:`/`file:`
//!     references, never inline secrets), `DEPROVD__…` environment overrides.
//!   - [`json`]: the one reader of untrusted JSON — serde_json refusing duplicate object keys at any
//!     depth, so deprovd and an upstream filter can never read one document two ways.
//!   - [`telemetry`]: tracing setup and the Prometheus registry with typed metric handles.
//!   - [`net`]: the one outbound HTTP client factory (no redirects), the loopback URL policy, capped
//!     body reads, `Retry-After`/rate-limit headers, webhook signing.
//!   - [`retry`]: the one backoff schedule (exponential, full jitter, `Retry-After` as a capped floor).
//!   - [`template`]: the one minijinja sandbox (connector specs, notifications).
//!   - [`alert`]: the canonical [`alert::Alert`] model and the normalizer registry (one file per format).
//!   - [`action`]: what an action is — [`action::Operation`], [`action::ActionRecord`], its state,
//!     origin and idempotency keys — apart from where it is stored or how it is carried out.
//!   - [`audit`]: the tamper-evident trail — SHA-256-chained records, sealing and `verify`.
//!   - [`identity`]: one spelling per account (`CORP\jdoe` → `jdoe@corp.example`), shared by planning,
//!     the guards and approvals (token names).
//!   - [`deadletter`]: where what cannot be processed goes, with its reason (file sink; Kafka's is in
//!     [`ingest::kafka`]).
//! - **Parts** (layer 4), each knowing only the vocabulary:
//!   - [`connectors`]: the [`connectors::Connector`] trait, the declarative HTTP runtime, LDAP, AWS IAM.
//!   - [`ledger`]: the durable action records and the [`ledger::StateStore`] trait (Redis and embedded).
//!   - [`policy`]: loading, compiling and evaluating the Rego bundle; hot reload; `policy test`.
//!   - [`notify`]: notices for people (Slack, Teams, signed webhook), queued, delivered with retries.
//!   - [`ssf`]: OpenID Shared Signals settings, SET verification, and deprovd's own transmitter.
//! - **The path** (layers 5–8):
//!   - [`plan`]: decisions → actions, one per (connector, operation, subject).
//!   - [`guard`]: what no policy may override — protected subjects and groups, dry-run, the
//!     blast-radius breaker.
//!   - [`executor`]: one lane per connector (its own claims, queue and concurrency; manual and
//!     critical first), runs actions through connectors, retries, dead-letters.
//!   - [`approval`]: held actions — the [`approval::Approvals`] service: stamp, supersede, decide,
//!     expire.
//!   - [`pipeline`]: the one path every source takes: normalize → policy → plan → guards → ledger.
//! - **Edges** (layers 9–13):
//!   - [`ingest`]: sources of raw alert bytes — Kafka, a JSONL file, the Shared Signals receiver.
//!   - [`lockout`]: responders' manual lockouts and restores, entering the pipeline at the guards.
//!   - [`audit_mirror`]: copies the audit trail to a Kafka topic from a cursor kept in the store.
//!   - [`api`]: the axum HTTP surface (`/v1/*`, health, metrics) and bearer-token auth.
//!   - [`console`]: the responders' web console under `/console`, which calls the `/v1` router
//!     in-process as the signed-in token's holder (same roles, same audit), so it sits above `api`.
//!   - [`app`]: [`app::Settings`] (the aggregate of every section) and `Application::build` →
//!     `run_until_stopped`, which wires every part together and owns shutdown and reload.
//!   - `fuzz` (tests only): the bounded-time fuzz suite over normalizers, templates, specs and
//!     config.
//!   - [`cli`] and [`client`]: what the `deprovd` subcommands do, and the responders' HTTP client.
#![forbid(unsafe_code)]

pub(crate) mod action;
pub(crate) mod alert;
pub(crate) mod api;
pub(crate) mod app;
pub(crate) mod approval;
pub(crate) mod audit;
pub(crate) mod audit_mirror;
pub mod cli;
pub mod client;
pub(crate) mod config;
pub(crate) mod connectors;
pub(crate) mod console;
pub(crate) mod deadletter;
pub(crate) mod executor;
#[cfg(test)]
mod fuzz;
pub(crate) mod guard;
pub(crate) mod identity;
pub(crate) mod ingest;
pub(crate) mod json;
pub(crate) mod ledger;
pub(crate) mod lockout;
pub(crate) mod net;
pub(crate) mod notify;
pub(crate) mod pipeline;
pub(crate) mod plan;
pub(crate) mod policy;
pub(crate) mod retry;
pub(crate) mod ssf;
pub(crate) mod telemetry;
pub(crate) mod template;

// The public surface: what the binary (`main.rs`), the integration tests and the benches use, by
// name at the crate root. Everything else is reachable only inside the crate. Names that would
// collide at the root carry their part's name (`StoreBackend`, `PolicyBackend`, `build_*_connector`).

// Running the service.
pub use app::{Application, Settings, shutdown_signal};
pub use console::ConsoleConfig;
pub use telemetry::{Metrics, init_tracing};
// Alerts in.
pub use alert::{Alert, MAX_EVENTS_PER_DELIVERY, NormalizerRegistry, alert_json_schema};
pub use ingest::kafka::KafkaConfig;
pub use net::signing::verify_webhook;
// Deciding.
pub use guard::{GuardConfig, Guards};
pub use pipeline::{Decider, Replay, Shadow};
pub use plan::Planner;
pub use policy::{Backend as PolicyBackend, Policies, PolicyConfig};
// Carrying out.
pub use connectors::aws_iam::{
    AwsIamConfig, DENY_POLICY_NAME as IAM_DENY_POLICY_NAME, IamClient,
    REVOKE_POLICY_NAME as IAM_REVOKE_POLICY_NAME, build as build_aws_iam_connector,
};
pub use connectors::http::{
    ConnectorConfig as HttpConnectorConfig, build_connectors as build_http_connectors,
    build_one as build_http_connector, load_specs as load_connector_specs,
};
pub use connectors::ldap::{
    LdapConfig, LdapFlavor, PERMANENT_LOCK as LDAP_PERMANENT_LOCK, build as build_ldap_connector,
};
pub use connectors::{
    Connector, ConnectorSet, InstanceConfig, Memberships, Operation, OperationRequest,
    OperationResult, Outcome, build_all as build_connectors,
};
pub use lockout::LockoutRequest;
pub use net::{ClientTls, client as http_client};
// State and the record of what was done.
pub use audit::{AuditKind, AuditRecord, Tamper, verify as verify_audit_chain};
pub use audit_mirror::AuditMirror;
pub use config::SecretRef;
pub use ledger::store::redis::{Durability as RedisDurability, RedisConfig, RedisStore};
pub use ledger::store::{Backend as StoreBackend, StoreConfig};
pub use ledger::{ActionFilter, ActionState, ActionStore};
// The HTTP API.
pub use api::{
    ApiConfig, ROUTES as API_ROUTES, TlsConfig as ApiTlsConfig, TokenConfig,
    access as route_access, hash_token, openapi::openapi_json,
};
