//! Executes a compiled [`Spec`] against one target instance.
//!
//! Every failure becomes an [`Outcome`]: transport errors and timeouts are `retry`, template errors
//! (the target answered something the spec did not expect) are `failed` naming the template, and a
//! target's error text is truncated and scrubbed of our secrets before it reaches the ledger.
//!
//! The way down one operation: `run` resolves the subject and walks the steps; each step is
//! rendered into a request (`request`), sent with credentials under the target's rate budget
//! (`transport`), read into an outcome and extracts (`response`), and followed to its next page
//! (`paging`). This file holds the instance, the types those parts share, and the [`Connector`] impl.

mod paging;
mod request;
mod response;
mod run;
#[cfg(test)]
mod tests;
mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, LINK, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use super::auth::{Auth, TokenLease};
use super::lookup_cache::{Cached, LookupCache, LookupCacheConfig};
use super::ratelimit::{Admission, RateGate};
use super::spec::{
    BodyTest, BodyTpl, CHECK, CompiledOperation, CompiledStep, Extractor, GROUPS, HeaderTest,
    LOOKUP, Paginate, Seg, Spec, StepOutcome, Tpl, TplKind,
};
use crate::connectors::{
    CheckReport, Connector, Memberships, Operation, OperationRequest, OperationResult, Outcome,
    Resolution,
};
use crate::net::headers::retry_after;
use crate::template::describe;

/// Longest target message kept in a reason.
const MAX_MESSAGE_CHARS: usize = 300;

/// One configured instance of an HTTP target type.
pub struct HttpConnector {
    /// Instance name (`scim-prod`).
    name: String,
    spec: Arc<Spec>,
    base_url: Url,
    /// `base_url`'s path without its trailing slash (`/scim/v2`, or empty); step paths are appended.
    base_path: String,
    auth: Auth,
    /// Shared by all instances: one connection pool, one TLS config.
    client: reqwest::Client,
    /// Per request, not per operation.
    timeout: Duration,
    /// Spec defaults overlaid with the instance's `vars`.
    vars: Map<String, Value>,
    /// Bounds concurrent operations on this target.
    permits: Semaphore,
    /// The spec's further APIs (`endpoint:` of a step), resolved for this instance.
    endpoints: BTreeMap<String, Endpoint>,
    /// This instance's view of the target's rate budget, shared by all its requests.
    gate: RateGate,
    /// Recent `lookup` results, so one containment resolves its subject once.
    lookups: LookupCache,
    /// The operations this instance offers (config, else the spec's default; see `Spec::offered`).
    operations: std::collections::BTreeSet<Operation>,
}

/// One resolved further API: its root and, when it has its own, its credentials.
struct Endpoint {
    base_url: Url,
    base_path: String,
    /// `None`: the instance's `auth`.
    auth: Option<Auth>,
}

/// A spec endpoint as configured for one instance (see `EndpointConfig`).
pub struct EndpointParts {
    pub base_url: Url,
    /// `None`: use the instance's `auth`.
    pub auth: Option<Auth>,
}

impl std::fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnector")
            .field("name", &self.name)
            .field("type", &self.spec.name)
            .field("base_url", &self.base_url.as_str())
            .field("auth", &self.auth)
            .finish()
    }
}

/// Everything a new [`HttpConnector`] needs; see `ConnectorConfig` for where the values come from.
pub struct HttpConnectorParts {
    pub name: String,
    pub spec: Arc<Spec>,
    pub base_url: Url,
    pub auth: Auth,
    pub client: reqwest::Client,
    pub timeout: Duration,
    pub vars: Map<String, Value>,
    pub concurrency: usize,
    /// Every endpoint the spec declares, resolved (an undeclared endpoint makes a step fail).
    pub endpoints: BTreeMap<String, EndpointParts>,
    pub lookup_cache: LookupCacheConfig,
    /// The operations the instance offers (`Spec::offered`): others are refused, never sent.
    pub operations: std::collections::BTreeSet<Operation>,
}

/// A response as the runtime keeps it.
struct Response {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
    text: String,
}

/// How one operation run ended, with what `check` needs besides the outcome.
struct Run {
    outcome: Outcome,
    /// The full outcome of the step that ended the operation, while steps run.
    pending: Option<Outcome>,
    last_status: Option<u16>,
    trail: Vec<String>,
    /// Output of the operation's `record`.
    record: Option<Value>,
}

impl HttpConnector {
    /// Assemble an instance. Prefer `build_connectors`, which validates config and resolves secrets.
    pub fn new(parts: HttpConnectorParts) -> Self {
        let base_path = parts.base_url.path().trim_end_matches('/').to_string();
        Self {
            name: parts.name,
            base_url: parts.base_url,
            base_path,
            auth: parts.auth,
            client: parts.client,
            timeout: parts.timeout,
            vars: parts.vars,
            permits: Semaphore::new(parts.concurrency.max(1)),
            endpoints: parts
                .endpoints
                .into_iter()
                .map(|(name, ep)| {
                    let base_path = ep.base_url.path().trim_end_matches('/').to_string();
                    (
                        name,
                        Endpoint {
                            base_url: ep.base_url,
                            base_path,
                            auth: ep.auth,
                        },
                    )
                })
                .collect(),
            gate: RateGate::new(parts.spec.rate_limit.clone()),
            lookups: LookupCache::new(parts.lookup_cache),
            operations: parts.operations,
            spec: parts.spec,
        }
    }

    /// Root URL, its path, and credentials for a step's `endpoint` (`None`: the instance's own).
    fn target(&self, endpoint: Option<&str>) -> Result<(&Url, &str, &Auth), Outcome> {
        match endpoint {
            None => Ok((&self.base_url, &self.base_path, &self.auth)),
            Some(name) => match self.endpoints.get(name) {
                Some(ep) => Ok((
                    &ep.base_url,
                    &ep.base_path,
                    ep.auth.as_ref().unwrap_or(&self.auth),
                )),
                None => Err(Outcome::Failed {
                    reason: format!(
                        "connector `{}` has no endpoint `{name}` configured",
                        self.name
                    ),
                }),
            },
        }
    }

    /// Scrub every credential of this instance (its own and its endpoints') from `text`.
    fn redact(&self, text: &str) -> String {
        let mut out = self.auth.redact(text);
        for ep in self.endpoints.values() {
            if let Some(a) = &ep.auth {
                out = a.redact(&out);
            }
        }
        out
    }

    /// The spec this instance runs.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Resolve a subject with the spec's `lookup` operation; `pre_state` holds what it records
    /// (for SCIM: `{ "id": ... }`).
    pub async fn lookup(&self, subject: &str) -> OperationResult {
        let req = read_request(subject);
        let _permit = self.permits.acquire().await;
        let mut trail = Vec::new();
        let (outcome, pre_state) = match self.resolve(&req, LOOKUP, &mut trail).await {
            Ok((record, _)) => (Outcome::Done, Some(record)),
            Err(o) => (o, None),
        };
        OperationResult {
            summary: if trail.is_empty() {
                outcome.as_str().to_string()
            } else {
                trail.join("; ")
            },
            outcome,
            pre_state,
        }
    }

    /// Whether this instance offers operation `name`: the spec defines it and its `available_when` (a
    /// condition over `vars`) holds. A condition that cannot be rendered counts as offered, so the
    /// operation runs and reports the error rather than silently vanishing.
    fn offers(&self, name: &str) -> bool {
        let Some(op) = self.spec.operations.get(name) else {
            return false;
        };
        let Some(cond) = &op.available_when else {
            return true;
        };
        let mut ctx = Map::new();
        ctx.insert("vars".into(), Value::Object(self.vars.clone()));
        self.truthy(cond, &ctx).unwrap_or(true)
    }
}

impl Run {
    fn end(outcome: Outcome) -> Run {
        Run {
            outcome,
            pending: None,
            last_status: None,
            trail: Vec::new(),
            record: None,
        }
    }
}

/// The request for a read-only operation (`lookup`, `groups`) on `subject`. Their templates see
/// only the subject, so the operation named here is never used.
fn read_request(subject: &str) -> OperationRequest {
    OperationRequest {
        operation: Operation::Notify,
        subject: subject.to_string(),
        idempotency_key: String::new(),
        pre_state: None,
        context: BTreeMap::new(),
    }
}

/// The `names` a `groups` operation recorded: a list of strings (or of `{name}` objects). Anything
/// else is a spec error, reported as unavailable so that the guard does not act on a guess.
fn group_names(names: Option<&Value>) -> Memberships {
    match names {
        None | Some(Value::Null) => Memberships::Groups(Vec::new()),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item
                    .as_str()
                    .or_else(|| item.get("name").and_then(Value::as_str))
                {
                    Some(n) => out.push(n.to_string()),
                    None if item.is_null() => {}
                    None => {
                        return Memberships::Unavailable(format!(
                            "groups.record.names: expected group names, got {}",
                            short(&item.to_string())
                        ));
                    }
                }
            }
            Memberships::Groups(out)
        }
        Some(other) => Memberships::Unavailable(format!(
            "groups.record.names: expected a list, got {}",
            short(&other.to_string())
        )),
    }
}

fn into_result(run: Run) -> OperationResult {
    let summary = if run.trail.is_empty() {
        run.outcome.as_str().to_string()
    } else {
        run.trail.join("; ")
    };
    OperationResult {
        outcome: run.outcome,
        pre_state: run.record,
        summary,
    }
}

#[async_trait]
impl Connector for HttpConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports(&self, op: Operation) -> bool {
        self.operations.contains(&op) && self.offers(op.as_str())
    }

    async fn execute(&self, request: &OperationRequest) -> OperationResult {
        if !self.operations.contains(&request.operation) {
            // An action planned before the instance's `operations` changed: refused, not sent.
            return into_result(Run::end(Outcome::Failed {
                reason: format!(
                    "connector `{}` (type {}) does not offer `{}`; list it in the instance's `operations` to allow it",
                    self.name, self.spec.name, request.operation
                ),
            }));
        }
        let _permit = self.permits.acquire().await;
        let run = self
            .run_named(request.operation.as_str(), request, None)
            .await;
        tracing::debug!(
            connector = %self.name,
            operation = %request.operation,
            outcome = run.outcome.as_str(),
            "http connector operation finished"
        );
        into_result(run)
    }

    fn lists_groups(&self) -> bool {
        self.offers(GROUPS)
    }

    /// The string values of the spec's `lookup` record (through the lookup cache, so the operation
    /// that follows reuses it): whatever identifiers the spec records — ids always, and logins or
    /// emails where the spec extracts them. A spec without `lookup` reports nothing.
    async fn resolve_account(&self, subject: &str) -> Resolution {
        if !self.offers(LOOKUP) {
            return Resolution::Unsupported;
        }
        let req = read_request(subject);
        let _permit = self.permits.acquire().await;
        let mut trail = Vec::new();
        match self.resolve(&req, LOOKUP, &mut trail).await {
            Ok((record, _)) => {
                let mut ids = Vec::new();
                collect_strings(&record, 2, &mut ids);
                Resolution::Account(ids)
            }
            Err(Outcome::NotFound) => Resolution::NotFound,
            Err(Outcome::Retry { reason, .. }) | Err(Outcome::Failed { reason }) => {
                Resolution::Unavailable(reason)
            }
            Err(other) => Resolution::Unavailable(other.as_str().to_string()),
        }
    }

    async fn group_memberships(&self, subject: &str) -> Memberships {
        if !self.offers(GROUPS) {
            return Memberships::Unsupported;
        }
        let req = read_request(subject);
        let _permit = self.permits.acquire().await;
        let run = self.run_named(GROUPS, &req, None).await;
        match run.outcome {
            Outcome::Done | Outcome::AlreadyDone => {
                group_names(run.record.as_ref().and_then(|r| r.get("names")))
            }
            Outcome::NotFound => Memberships::NotFound,
            Outcome::Retry { reason, .. } | Outcome::Failed { reason } => {
                Memberships::Unavailable(reason)
            }
        }
    }

    async fn check(&self) -> CheckReport {
        if !self.spec.has_operation(CHECK) {
            return CheckReport::passed(
                &self.name,
                format!(
                    "spec {} has no check operation; credentials not verified",
                    self.spec.name
                ),
            );
        }
        let req = OperationRequest {
            operation: Operation::Notify,
            subject: String::new(),
            idempotency_key: String::new(),
            pre_state: None,
            context: BTreeMap::new(),
        };
        let run = self.run_named(CHECK, &req, None).await;
        let fix = match (&run.outcome, run.last_status) {
            (o, _) if o.is_success() => None,
            (_, Some(401)) => Some(format!(
                "the target refused the credentials: check the secret in connectors.{}.auth",
                self.name
            )),
            (_, Some(403)) => Some(format!(
                "the credentials lack permission: grant what the comment at the top of {} lists",
                self.spec.file
            )),
            (Outcome::Retry { .. }, None) => Some(format!(
                "cannot reach {}: check connectors.{}.base_url and the network path",
                self.base_url, self.name
            )),
            _ => None,
        };
        let detail = match &run.outcome {
            o if o.is_success() => format!("{} ok: {}", self.spec.name, run.trail.join("; ")),
            Outcome::Retry { reason, .. } | Outcome::Failed { reason } => reason.clone(),
            Outcome::NotFound => format!("{}: not found (check base_url)", run.trail.join("; ")),
            o => o.as_str().to_string(),
        };
        CheckReport {
            connector: self.name.clone(),
            ok: run.outcome.is_success(),
            detail,
            fix,
        }
    }
}

fn short(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
        t.push('…');
        t
    }
}

/// Every string in `v`, down to `depth` levels of objects and arrays.
fn collect_strings(v: &Value, depth: usize, out: &mut Vec<String>) {
    match v {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Array(items) if depth > 0 => {
            for i in items {
                collect_strings(i, depth - 1, out);
            }
        }
        Value::Object(map) if depth > 0 => {
            for i in map.values() {
                collect_strings(i, depth - 1, out);
            }
        }
        _ => {}
    }
}
