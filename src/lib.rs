//! deprovd turns security alerts into containment: it reads alerts, asks Rego policies what to do, and
//! carries the answer out across identity systems — at once, exactly once in effect, and safely.
//!
//! # Layout
//!
//! Each module depends only on those listed after it in the flow; nothing below calls back up.
//!
//! - [`app`]: `Application::build` → `run_until_stopped`; wires every part together and owns shutdown.
//! - [`config`]: the TOML settings, environment overrides, secret references and the *pure* validation
//!   step that reports every problem at once before anything connects.
//! - [`ingest`]: sources of raw alert bytes — Kafka (primary), a JSONL file (for `simulate`). HTTP ingest
//!   lives in [`api`] because it shares the router, auth and limits.
//! - [`api`]: the axum HTTP surface (`/v1/*`, health, metrics) and bearer-token auth.
//! - [`pipeline`]: the one path every source takes: normalize → policy → plan → guards → ledger.
//! - [`alert`]: the canonical [`alert::Alert`] model and the normalizer registry (one file per format).
//! - [`policy`]: loading, compiling and evaluating the Rego bundle; hot reload; the `policy test` runner.
//! - [`plan`]: expands decisions into concrete actions, one per (connector, operation, subject).
//! - [`identity`]: one spelling per account (`CORP\jdoe` → `jdoe@corp.example`) through the
//!   configured domain aliases, applied at planning and by the guards.
//! - [`lockout`]: manual lockouts and reversals (restore) for responders; they enter the pipeline at
//!   the guard step as ordinary ledger actions.
//! - [`client`]: the HTTP client behind `deprovd lockout|restore|status`.
//! - [`guard`]: what no policy may override — protected subjects, global dry-run, and the
//!   blast-radius breaker (counted in the state store, so shared by replicas).
//! - [`protected_groups`]: the guard on group membership, resolved through the connectors by the
//!   executor right before a destructive call.
//! - [`approval`]: held actions — list, approve/reject by a different person, expiry.
//! - [`ledger`]: the durable action records and the [`ledger::StateStore`] trait (Redis and embedded).
//! - [`executor`]: claims due actions, runs them through connectors, retries with backoff, dead-letters.
//! - [`connectors`]: the [`connectors::Connector`] trait, the declarative HTTP runtime, native protocols.
//! - [`audit`]: the tamper-evident trail — SHA-256-chained records, sealing and `verify`. Depends on
//!   nothing else here; the ledger's [`ledger::StateStore`] stores it and every layer above writes it.
//! - [`audit_mirror`]: copies the audit trail to a Kafka topic from a cursor kept in the state store,
//!   so the chain is anchored outside the store.
//! - [`notify`]: notices for people (Slack, Teams, signed webhook): queued without blocking, delivered
//!   with retries by a background task. Depends on nothing else here; every layer above may write it.
//! - [`ssf`]: OpenID Shared Signals (CAEP, RISC): `[ssf]` settings, SET verification against a
//!   transmitter's JWKS, and deprovd's own transmitter that signals containment downstream. The
//!   receiving side (push endpoint, poll client) is the source [`ingest::ssf`].
//! - [`http_util`]: reading HTTP response bodies with a size cap (JWKS, SET polls, webhooks).
//! - [`cli`]: what the `deprovd` subcommands do beyond parsing (simulate, policy test, checks).
//! - [`telemetry`]: tracing setup and the Prometheus registry with typed metric handles.
#![forbid(unsafe_code)]

pub mod alert;
pub mod api;
pub mod app;
pub mod approval;
pub mod audit;
pub mod audit_mirror;
pub mod cli;
pub mod client;
pub mod config;
pub mod connectors;
pub mod executor;
pub mod guard;
pub mod http_util;
pub mod identity;
pub mod ingest;
pub mod ledger;
pub mod lockout;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod protected_groups;
pub mod ssf;
pub mod telemetry;
