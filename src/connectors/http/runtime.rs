//! Executes a compiled [`Spec`] against one target instance.
//!
//! Every failure becomes an [`Outcome`]: transport errors and timeouts are `retry`, template errors
//! (the target answered something the spec did not expect) are `failed` naming the template, and a
//! target's error text is truncated and scrubbed of our secrets before it reaches the ledger.

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

/// Largest response body read; anything longer is refused (a target is not trusted to be small).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Longest target message kept in a reason.
const MAX_MESSAGE_CHARS: usize = 300;
/// Pagination stops here even if the target keeps offering pages.
const MAX_PAGES: usize = 200;

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
        let req = OperationRequest {
            operation: Operation::Notify, // unused by templates of `lookup`
            subject: subject.to_string(),
            idempotency_key: String::new(),
            pre_state: None,
            context: BTreeMap::new(),
        };
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

    /// Resolve `req.subject` with the spec's `lookup`, through the cache: `Ok((record, from_cache))`, or
    /// the outcome that ends the operation (`not_found`, a retry, a failure). Lookups of one subject are
    /// single-flight: a concurrent caller waits for the running lookup and uses its answer.
    async fn resolve(
        &self,
        req: &OperationRequest,
        op_name: &str,
        trail: &mut Vec<String>,
    ) -> Result<(Value, bool), Outcome> {
        let label = (op_name != LOOKUP).then_some(op_name);
        if !self.lookups.enabled() {
            let found = Box::pin(self.run_named(LOOKUP, req, label)).await;
            trail.extend(found.trail.iter().map(|t| format!("lookup {t}")));
            return match found.outcome {
                Outcome::Done | Outcome::AlreadyDone => {
                    Ok((found.record.unwrap_or(Value::Null), false))
                }
                other => Err(other),
            };
        }
        let slot = self.lookups.slot(&req.subject);
        let mut cached = slot.lock().await;
        if let Some((at, value)) = &*cached
            && self.lookups.fresh(*at, value, tokio::time::Instant::now())
        {
            trail.push("lookup (cached)".to_string());
            return match value {
                Cached::Found(record) => Ok((record.clone(), true)),
                Cached::NotFound => Err(Outcome::NotFound),
            };
        }
        let found = Box::pin(self.run_named(LOOKUP, req, label)).await;
        trail.extend(found.trail.iter().map(|t| format!("lookup {t}")));
        let now = tokio::time::Instant::now();
        match found.outcome {
            Outcome::Done | Outcome::AlreadyDone => {
                let record = found.record.unwrap_or(Value::Null);
                *cached = Some((now, Cached::Found(record.clone())));
                Ok((record, false))
            }
            Outcome::NotFound => {
                *cached = Some((now, Cached::NotFound));
                Err(Outcome::NotFound)
            }
            other => {
                *cached = None;
                Err(other)
            }
        }
    }

    async fn run_named(
        &self,
        op_name: &str,
        req: &OperationRequest,
        operation_label: Option<&str>,
    ) -> Run {
        let Some(op) = self.spec.operations.get(op_name) else {
            return Run::end(Outcome::Failed {
                reason: format!(
                    "connector `{}` (type {}) does not support `{op_name}`",
                    self.name, self.spec.name
                ),
            });
        };
        // The one lookup form (NFKC, controls refused, bounded length): what the guards checked.
        let subject = match crate::identity::lookup_form(&req.subject) {
            Ok(s) => s.into_owned(),
            Err(e) => {
                return Run::end(Outcome::Failed {
                    reason: format!("subject refused: {e}"),
                });
            }
        };
        let mut ctx = Map::new();
        ctx.insert("subject".into(), Value::String(subject));
        ctx.insert("vars".into(), Value::Object(self.vars.clone()));
        ctx.insert(
            "pre_state".into(),
            req.pre_state.clone().unwrap_or(Value::Null),
        );
        ctx.insert(
            "context".into(),
            Value::Object(req.context.clone().into_iter().collect()),
        );
        ctx.insert(
            "idempotency_key".into(),
            Value::String(req.idempotency_key.clone()),
        );
        ctx.insert(
            "operation".into(),
            Value::String(operation_label.unwrap_or(op_name).to_string()),
        );
        let mut trail = Vec::new();
        if !op.uses_lookup {
            return self.run_steps(op, ctx).await;
        }
        let from_cache = match self.resolve(req, op_name, &mut trail).await {
            Ok((record, from_cache)) => {
                ctx.insert("lookup".into(), record);
                from_cache
            }
            Err(outcome) => {
                return Run {
                    outcome,
                    trail,
                    ..Run::end(Outcome::Done)
                };
            }
        };
        let mut run = self.run_steps(op, ctx.clone()).await;
        if run.outcome == Outcome::NotFound {
            // The id no longer names an account here (deleted, or recreated under a new id).
            self.lookups.invalidate(&req.subject);
            if from_cache {
                trail.append(&mut run.trail);
                trail.push("cached lookup was stale; resolving again".to_string());
                match self.resolve(req, op_name, &mut trail).await {
                    Ok((record, _)) => {
                        ctx.insert("lookup".into(), record);
                        run = self.run_steps(op, ctx).await;
                    }
                    Err(outcome) => {
                        return Run {
                            outcome,
                            trail,
                            ..Run::end(Outcome::Done)
                        };
                    }
                }
            }
        }
        trail.append(&mut run.trail);
        run.trail = trail;
        run
    }

    async fn run_steps(&self, op: &CompiledOperation, mut ctx: Map<String, Value>) -> Run {
        ctx.insert("steps".into(), Value::Object(Map::new()));
        let mut run = Run::end(Outcome::Done);
        let mut ended: Option<Outcome> = None;
        'steps: for step in &op.steps {
            if let Some(when) = &step.when {
                match self.truthy(when, &ctx) {
                    Ok(true) => {}
                    Ok(false) => {
                        set_step(
                            &mut ctx,
                            &step.name,
                            json!({"skipped": true, "processed": []}),
                        );
                        match step.otherwise {
                            None | Some(StepOutcome::Continue) => continue,
                            Some(o) => {
                                ended = Some(step_outcome(o, format!("{} skipped", step.name)));
                                break;
                            }
                        }
                    }
                    Err(o) => {
                        ended = Some(o);
                        break;
                    }
                }
            }
            let items: Vec<Option<Value>> = match &step.foreach {
                None => vec![None],
                Some(t) => match self.render_value(t, &ctx) {
                    Ok(Value::Array(a)) => a.into_iter().map(Some).collect(),
                    Ok(Value::Null) => Vec::new(),
                    Ok(other) => {
                        ended = Some(Outcome::Failed {
                            reason: format!(
                                "{}.foreach: expected a list, got {}",
                                step.path,
                                short(&other.to_string())
                            ),
                        });
                        break;
                    }
                    Err(o) => {
                        ended = Some(o);
                        break;
                    }
                },
            };
            let mut processed = Vec::new();
            set_step(
                &mut ctx,
                &step.name,
                json!({"skipped": false, "processed": []}),
            );
            for item in items {
                if let Some(it) = &item {
                    ctx.insert("item".into(), it.clone());
                }
                let result = self.run_step(step, &mut ctx, &mut run).await;
                ctx.remove("item");
                match result {
                    StepOutcome::Continue | StepOutcome::Done if step.foreach.is_some() => {
                        if let Some(it) = item {
                            processed.push(it);
                        }
                        set_processed(&mut ctx, &step.name, &processed);
                    }
                    StepOutcome::Continue => {}
                    StepOutcome::Done => {
                        ended = Some(Outcome::Done);
                        break 'steps;
                    }
                    _ => {
                        ended = Some(run.pending.take().unwrap_or(Outcome::Failed {
                            reason: "step ended without a reason".into(),
                        }));
                        set_processed(&mut ctx, &step.name, &processed);
                        break 'steps;
                    }
                }
            }
        }
        run.outcome = ended.unwrap_or(Outcome::Done);
        // The record is kept for partial failures too: a retried group removal must not forget the
        // memberships its first attempt already removed.
        if !matches!(run.outcome, Outcome::NotFound) && !op.record.is_empty() {
            let mut rec = Map::new();
            for (k, t) in &op.record {
                match self.render_value(t, &ctx) {
                    Ok(v) => {
                        rec.insert(k.clone(), v);
                    }
                    Err(e) => {
                        tracing::debug!(connector = %self.name, key = %k, error = ?e, "record value not available");
                    }
                }
            }
            if !rec.is_empty() {
                run.record = Some(Value::Object(rec));
            }
        }
        run
    }

    /// One request (following pages), its extracts stored under `steps.<name>`, its outcome returned.
    /// For terminal outcomes the full [`Outcome`] is left in `run.pending`.
    async fn run_step(
        &self,
        step: &CompiledStep,
        ctx: &mut Map<String, Value>,
        run: &mut Run,
    ) -> StepOutcome {
        let mut request = match self.build_request(step, ctx) {
            Ok(r) => r,
            Err(o) => {
                run.pending = Some(o);
                return StepOutcome::Failed;
            }
        };
        let mut merged: Option<Map<String, Value>> = None;
        let mut pages = 0usize;
        loop {
            pages += 1;
            let next = request.try_clone();
            let url_for_trail = request.url().path().to_string();
            let method = request.method().clone();
            let resp = match self.send(request, step.endpoint.as_deref()).await {
                Ok(r) => r,
                Err(o) => {
                    run.trail.push(format!("{method} {url_for_trail} → error"));
                    run.pending = Some(o);
                    return StepOutcome::Retry;
                }
            };
            run.trail.push(format!(
                "{method} {url_for_trail} → {}",
                resp.status.as_u16()
            ));
            run.last_status = Some(resp.status.as_u16());
            let extracts = extract_all(step, &resp);
            let values = match merged.take() {
                None => extracts,
                Some(prev) => merge_pages(prev, extracts),
            };
            set_step(ctx, &step.name, Value::Object(values.clone()));
            let (outcome, full) = self.classify(step, &resp, ctx);
            if outcome != StepOutcome::Continue {
                run.pending = full;
                return outcome;
            }
            merged = Some(values);
            let Some(paginate) = &step.paginate else {
                return outcome;
            };
            if pages >= MAX_PAGES {
                return outcome;
            }
            let Some(mut next) = next else {
                return outcome;
            };
            match self.next_page(paginate, &resp, &mut next, step.endpoint.as_deref()) {
                Ok(true) => request = next,
                Ok(false) => return outcome,
                Err(o) => {
                    run.pending = Some(o);
                    return StepOutcome::Failed;
                }
            }
        }
    }

    /// Set up `next` for the page after `resp`; `false` when there is none.
    fn next_page(
        &self,
        paginate: &Paginate,
        resp: &Response,
        next: &mut reqwest::Request,
        endpoint: Option<&str>,
    ) -> Result<bool, Outcome> {
        match paginate {
            Paginate::Scim { count } => {
                let num = |p: &str| resp.json.pointer(p).and_then(Value::as_u64);
                let total = num("/totalResults").unwrap_or(0);
                let start = num("/startIndex").unwrap_or(1);
                let got = num("/itemsPerPage")
                    .or_else(|| {
                        resp.json
                            .pointer("/Resources")
                            .and_then(Value::as_array)
                            .map(|a| a.len() as u64)
                    })
                    .unwrap_or(0);
                let next_start = start + got;
                if got == 0 || next_start > total {
                    return Ok(false);
                }
                let url = next.url_mut();
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != "startIndex" && k != "count")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                url.query_pairs_mut()
                    .clear()
                    .extend_pairs(pairs)
                    .append_pair("startIndex", &next_start.to_string())
                    .append_pair("count", &count.to_string());
                Ok(true)
            }
            Paginate::NextLink { pointer } => {
                let link = match resp.json.pointer(pointer) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Ok(false),
                };
                self.follow(&link, next, endpoint)
            }
            Paginate::PageToken { pointer, param } => {
                let token = match resp.json.pointer(pointer) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Ok(false),
                };
                set_query_param(next.url_mut(), param, &token);
                Ok(true)
            }
            Paginate::Offset { start, limit, size } => {
                let got = resp.json.as_array().map(Vec::len).unwrap_or(0) as u64;
                if got < u64::from(*size) {
                    return Ok(false);
                }
                let at = next
                    .url()
                    .query_pairs()
                    .find(|(k, _)| k == start.as_str())
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(0);
                set_query_param(next.url_mut(), start, &(at + got).to_string());
                set_query_param(next.url_mut(), limit, &size.to_string());
                Ok(true)
            }
            Paginate::Link => {
                let link = resp
                    .headers
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|v| link_with_rel(v, "next"));
                match link {
                    Some(link) => self.follow(&link, next, endpoint),
                    None => Ok(false),
                }
            }
        }
    }

    /// Point `next` at `link` (absolute, or relative to the current page) — only on the base URL's own
    /// origin: a target (or anyone who can inject a header or body into its answer) must not be able to
    /// make us send our credentials elsewhere.
    fn follow(
        &self,
        link: &str,
        next: &mut reqwest::Request,
        endpoint: Option<&str>,
    ) -> Result<bool, Outcome> {
        let url = next.url().join(link).map_err(|e| Outcome::Failed {
            reason: format!("next-page link `{}` is not a URL: {e}", short(link)),
        })?;
        let (base_url, _, _) = self.target(endpoint)?;
        if url.origin() != base_url.origin() {
            return Err(Outcome::Failed {
                reason: format!(
                    "next-page link leaves the target ({}); refusing to send credentials there",
                    url.origin().ascii_serialization()
                ),
            });
        }
        *next.url_mut() = url;
        Ok(true)
    }

    fn build_request(
        &self,
        step: &CompiledStep,
        ctx: &Map<String, Value>,
    ) -> Result<reqwest::Request, Outcome> {
        let path = self.render_text(&step.url, ctx)?;
        // `.`/`..` segments (also percent-encoded) would be resolved by the URL parser and let a value
        // reach another endpoint; a spec should use `| segment`, this is the backstop.
        let path_only = path.split('?').next().unwrap_or_default();
        if path_only.split('/').any(|seg| {
            let s = seg.to_ascii_lowercase().replace("%2e", ".");
            s == "." || s == ".."
        }) {
            return Err(Outcome::Failed {
                reason: format!(
                    "{}.path: rendered path `{}` contains a `.` or `..` segment; refused",
                    step.path,
                    short(&path)
                ),
            });
        }
        let (base_url, base_path, _) = self.target(step.endpoint.as_deref())?;
        let mut url = base_url.clone();
        let joined = format!("{base_path}{path}");
        // Split an inline query (`/Users?x=1`) from the path.
        match joined.split_once('?') {
            Some((p, q)) => {
                url.set_path(p);
                url.set_query(Some(q));
            }
            None => url.set_path(&joined),
        }
        if !step.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, t) in &step.query {
                pairs.append_pair(k, &self.render_text(t, ctx)?);
            }
        }
        if let Paginate::Scim { count } = step.paginate.as_ref().unwrap_or(&Paginate::NextLink {
            pointer: String::new(),
        }) {
            url.query_pairs_mut()
                .append_pair("startIndex", "1")
                .append_pair("count", &count.to_string());
        }
        if let Some(Paginate::Offset { start, limit, size }) = &step.paginate {
            set_query_param(&mut url, start, "0");
            set_query_param(&mut url, limit, &size.to_string());
        }
        let mut builder = self
            .client
            .request(step.method.clone(), url)
            .timeout(self.timeout);
        let mut has_content_type = false;
        for (name, t) in &step.headers {
            let v = self.render_text(t, ctx)?;
            if v.trim().is_empty() {
                continue; // e.g. If-Match when the target gave no ETag
            }
            let value = HeaderValue::from_str(&v).map_err(|_| Outcome::Failed {
                reason: format!(
                    "{}.headers.{name}: rendered value is not a valid header",
                    step.path
                ),
            })?;
            has_content_type |= name == CONTENT_TYPE;
            builder = builder.header(name.clone(), value);
        }
        if let Some(body) = &step.body {
            let v = self.render_body(body, ctx)?;
            let bytes = serde_json::to_vec(&v).map_err(|e| Outcome::Failed {
                reason: format!("{}.body: {e}", step.path),
            })?;
            if !has_content_type {
                builder = builder.header(CONTENT_TYPE, "application/json");
            }
            builder = builder.body(bytes);
        }
        // Credentials are added by `send`, per attempt: pages and retries get a current token.
        builder.build().map_err(|e| Outcome::Failed {
            reason: format!("{}: cannot build request: {e}", step.path),
        })
    }

    /// Add the instance's credentials (fetching an access token if the scheme needs one).
    async fn authorize(
        &self,
        auth: &Auth,
        request: &mut reqwest::Request,
    ) -> Result<Option<TokenLease>, Outcome> {
        auth.apply(&self.client, request).await.map_err(|e| {
            let reason = self.redact(&e.to_string());
            if e.is_retryable() {
                Outcome::Retry {
                    after: e.retry_after(),
                    reason,
                }
            } else {
                Outcome::Failed { reason }
            }
        })
    }

    /// Send with credentials. A 401 to an access token is answered once: the token is dropped, a new one
    /// fetched and the request sent again; a second 401 is left to the step's outcome rules (terminal).
    async fn send(
        &self,
        mut request: reqwest::Request,
        endpoint: Option<&str>,
    ) -> Result<Response, Outcome> {
        let (_, _, auth) = self.target(endpoint)?;
        let spare = if auth.refreshes() {
            request.try_clone()
        } else {
            None
        };
        let lease = self.authorize(auth, &mut request).await?;
        let resp = self.send_once(request).await?;
        if resp.status == StatusCode::UNAUTHORIZED {
            if let (Some(lease), Some(mut again)) = (lease, spare) {
                tracing::info!(connector = %self.name, "the target refused the access token; fetching a new one and retrying once");
                auth.invalidate(lease);
                self.authorize(auth, &mut again).await?;
                return self.send_once(again).await;
            }
        }
        Ok(resp)
    }

    async fn send_once(&self, request: reqwest::Request) -> Result<Response, Outcome> {
        match self.gate.admit(tokio::time::Instant::now()) {
            Admission::After(wait) if wait.is_zero() => {}
            Admission::After(wait) => {
                tracing::info!(connector = %self.name, wait_ms = wait.as_millis() as u64,
                    "the target's rate budget is (nearly) spent; waiting before the next request");
                tokio::time::sleep(wait).await;
            }
            Admission::TooLong(after) => {
                tracing::info!(connector = %self.name, after_s = after.as_secs(),
                    "the target's rate budget is spent until a distant reset; retrying the action then");
                return Err(Outcome::Retry {
                    after: Some(after),
                    reason: format!(
                        "rate limit: the target's announced budget is spent until its reset in {} s",
                        after.as_secs().max(1)
                    ),
                });
            }
        }
        let mut resp = self.client.execute(request).await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            Outcome::Retry {
                after: None,
                reason: format!("{kind}: {}", self.redact(&error_chain(&e))),
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.gate.observe(
            status,
            &headers,
            tokio::time::Instant::now(),
            SystemTime::now(),
        );
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(Outcome::Failed {
                            reason: format!(
                                "response body larger than {MAX_BODY_BYTES} bytes (HTTP {status})"
                            ),
                        });
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Outcome::Retry {
                        after: None,
                        reason: format!("reading response failed: {}", error_chain(&e)),
                    });
                }
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let json = serde_json::from_slice(&buf).unwrap_or(Value::Null);
        Ok(Response {
            status,
            headers,
            json,
            text,
        })
    }

    /// The step's outcome for `resp`: spec rules first, then the defaults. The full [`Outcome`] is
    /// returned for terminal ones.
    fn classify(
        &self,
        step: &CompiledStep,
        resp: &Response,
        ctx: &Map<String, Value>,
    ) -> (StepOutcome, Option<Outcome>) {
        let code = resp.status.as_u16();
        for rule in &step.outcomes {
            if !rule
                .status
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&code))
            {
                continue;
            }
            if let Some((ptr, test)) = &rule.body {
                let v = pointer_get(&resp.json, ptr);
                let ok = match test {
                    BodyTest::Equals(want) => v.as_ref() == Some(want),
                    BodyTest::Exists(e) => v.as_ref().is_some_and(|v| !v.is_null()) == *e,
                };
                if !ok {
                    continue;
                }
            }
            if let Some((name, test)) = &rule.header {
                let v = resp
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim);
                let ok = match test {
                    HeaderTest::Equals(want) => v == Some(want.as_str()),
                    HeaderTest::Exists(e) => v.is_some() == *e,
                };
                if !ok {
                    continue;
                }
            }
            if let Some(w) = &rule.when {
                match self.truthy(w, ctx) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(o) => return (StepOutcome::Failed, Some(o)),
                }
            }
            let message = match &rule.message {
                Some(t) => match self.render_text(t, ctx) {
                    Ok(m) => m,
                    Err(o) => return (StepOutcome::Failed, Some(o)),
                },
                None => self.target_message(resp),
            };
            return (
                rule.outcome,
                Some(self.full_outcome(rule.outcome, resp, message)),
            );
        }
        let mut default = default_outcome(resp.status);
        if default == StepOutcome::Failed && self.is_rate_limited(resp) {
            default = StepOutcome::Retry;
        }
        if default == StepOutcome::Continue {
            return (default, None);
        }
        let message = self.target_message(resp);
        (default, Some(self.full_outcome(default, resp, message)))
    }

    /// A 403 that means "slow down", not "forbidden": Google's `rateLimitExceeded` /
    /// `userRateLimitExceeded` (and `RESOURCE_EXHAUSTED`) error reasons, GitHub's secondary rate limit
    /// (403 with `Retry-After`, or with the remaining budget at 0).
    fn is_rate_limited(&self, resp: &Response) -> bool {
        if resp.status != StatusCode::FORBIDDEN {
            return false;
        }
        let reasons = resp
            .json
            .pointer("/error/errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("reason").and_then(Value::as_str));
        let google = reasons
            .chain(resp.json.pointer("/error/status").and_then(Value::as_str))
            .any(|r| {
                matches!(
                    r,
                    "rateLimitExceeded" | "userRateLimitExceeded" | "RESOURCE_EXHAUSTED"
                )
            });
        let spent = self.spec.rate_limit.remaining.iter().any(|h| {
            resp.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == "0")
        });
        google || spent || resp.headers.contains_key(RETRY_AFTER)
    }

    fn full_outcome(&self, o: StepOutcome, resp: &Response, message: String) -> Outcome {
        let code = resp.status.as_u16();
        match o {
            StepOutcome::Retry => Outcome::Retry {
                after: retry_after(&resp.headers, SystemTime::now()),
                reason: format!("HTTP {code}: {message}"),
            },
            StepOutcome::Failed => {
                let hint = match code {
                    401 => " (credentials refused: check the instance's auth secret)",
                    403 => " (permission denied: grant the permissions listed in the spec)",
                    _ => "",
                };
                Outcome::Failed {
                    reason: format!("HTTP {code}: {message}{hint}"),
                }
            }
            other => step_outcome(other, String::new()),
        }
    }

    /// The target's own error text, short and scrubbed of our secrets.
    fn target_message(&self, resp: &Response) -> String {
        const POINTERS: [&str; 8] = [
            "/detail",
            "/error_description",
            "/errorSummary",
            "/message",
            "/error/message",
            "/error",
            "/errors/0/message",
            "/title",
        ];
        let found = POINTERS
            .iter()
            .find_map(|p| resp.json.pointer(p).and_then(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| resp.text.clone());
        let cleaned: String = found
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let cleaned = cleaned.trim();
        let msg = if cleaned.is_empty() {
            resp.status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        } else {
            short(cleaned)
        };
        self.redact(&msg)
    }

    fn render_text(&self, t: &Tpl, ctx: &Map<String, Value>) -> Result<String, Outcome> {
        let tmpl = self
            .spec
            .env
            .get_template(&t.name)
            .map_err(|e| self.tpl_err(t, &e))?;
        tmpl.render(ctx).map_err(|e| self.tpl_err(t, &e))
    }

    fn render_value(&self, t: &Tpl, ctx: &Map<String, Value>) -> Result<Value, Outcome> {
        let s = self.render_text(t, ctx)?;
        match t.kind {
            TplKind::Value => serde_json::from_str(&s).map_err(|e| Outcome::Failed {
                reason: format!("{}: {} ({e})", self.spec.file, t.name),
            }),
            _ => Ok(Value::String(s)),
        }
    }

    fn render_body(&self, b: &BodyTpl, ctx: &Map<String, Value>) -> Result<Value, Outcome> {
        Ok(match b {
            BodyTpl::Literal(v) => v.clone(),
            BodyTpl::Template(t) => self.render_value(t, ctx)?,
            BodyTpl::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.render_body(i, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            BodyTpl::Object(fields) => {
                let mut m = Map::new();
                for (k, v) in fields {
                    m.insert(k.clone(), self.render_body(v, ctx)?);
                }
                Value::Object(m)
            }
        })
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

    fn truthy(&self, t: &Tpl, ctx: &Map<String, Value>) -> Result<bool, Outcome> {
        Ok(!self.render_text(t, ctx)?.is_empty())
    }

    fn tpl_err(&self, t: &Tpl, e: &minijinja::Error) -> Outcome {
        Outcome::Failed {
            reason: self.redact(&format!("{}: {}: {}", self.spec.file, t.name, describe(e))),
        }
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

/// Set query parameter `name` to `value`, dropping any earlier value of it (a page's own token or
/// offset replaces the previous page's).
fn set_query_param(url: &mut reqwest::Url, name: &str, value: &str) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
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
        self.offers(op.as_str())
    }

    async fn execute(&self, request: &OperationRequest) -> OperationResult {
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
        let req = OperationRequest {
            operation: Operation::Notify, // unused by templates of `lookup`
            subject: subject.to_string(),
            idempotency_key: String::new(),
            pre_state: None,
            context: BTreeMap::new(),
        };
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
        let req = OperationRequest {
            operation: Operation::Notify, // unused by templates of `groups`
            subject: subject.to_string(),
            idempotency_key: String::new(),
            pre_state: None,
            context: BTreeMap::new(),
        };
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
            return CheckReport {
                connector: self.name.clone(),
                ok: true,
                detail: format!(
                    "spec {} has no check operation; credentials not verified",
                    self.spec.name
                ),
                fix: None,
            };
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

/// 2xx → continue, 404 → not found, 408/429/5xx → retry, everything else → failed.
pub(crate) fn default_outcome(status: StatusCode) -> StepOutcome {
    match status.as_u16() {
        200..=299 => StepOutcome::Continue,
        404 | 410 => StepOutcome::NotFound,
        408 | 425 | 429 | 500..=599 => StepOutcome::Retry,
        _ => StepOutcome::Failed,
    }
}

fn step_outcome(o: StepOutcome, reason: String) -> Outcome {
    match o {
        StepOutcome::Done | StepOutcome::Continue => Outcome::Done,
        StepOutcome::AlreadyDone => Outcome::AlreadyDone,
        StepOutcome::NotFound => Outcome::NotFound,
        StepOutcome::Retry => Outcome::Retry {
            after: None,
            reason,
        },
        StepOutcome::Failed => Outcome::Failed { reason },
    }
}

/// The URL of the `Link` entry (RFC 8288) whose `rel` includes `rel`: `<https://x/p2>; rel="next"`.
/// Entries may share one header value, comma-separated.
pub fn link_with_rel(value: &str, rel: &str) -> Option<String> {
    let mut rest = value;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let url = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        for param in after[..params_end].split([';', ',']) {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
            {
                return Some(url.trim().to_string());
            }
        }
        rest = &after[params_end..];
    }
}

fn set_step(ctx: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
        // Keep `processed` accumulated by earlier items of a foreach step.
        let processed = steps
            .get(name)
            .and_then(|s| s.get("processed"))
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let mut value = value;
        if let Value::Object(m) = &mut value {
            m.entry("processed").or_insert(processed);
            m.entry("skipped").or_insert(Value::Bool(false));
        }
        steps.insert(name.to_string(), value);
    }
}

fn set_processed(ctx: &mut Map<String, Value>, name: &str, processed: &[Value]) {
    if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
        if let Some(Value::Object(s)) = steps.get_mut(name) {
            s.insert("processed".into(), Value::Array(processed.to_vec()));
        }
    }
}

fn extract_all(step: &CompiledStep, resp: &Response) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("status".into(), Value::from(resp.status.as_u16()));
    m.insert(
        "etag".into(),
        resp.headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|s| Value::String(s.to_string()))
            .unwrap_or(Value::Null),
    );
    for (k, x) in &step.extract {
        let v = match x {
            Extractor::Pointer(p) => pointer_get(&resp.json, p).unwrap_or(Value::Null),
            Extractor::Header(h) => resp
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|s| Value::String(s.to_string()))
                .unwrap_or(Value::Null),
            Extractor::Project { from, fields } => {
                let items = match pointer_get(&resp.json, from) {
                    Some(Value::Array(a)) => a,
                    Some(Value::Null) | None => Vec::new(),
                    Some(one) => vec![one],
                };
                Value::Array(
                    items
                        .iter()
                        .map(|it| {
                            let mut o = Map::new();
                            for (f, p) in fields {
                                o.insert(f.clone(), pointer_get(it, p).unwrap_or(Value::Null));
                            }
                            Value::Object(o)
                        })
                        .collect(),
                )
            }
        };
        m.insert(k.clone(), v);
    }
    m
}

/// Lists from later pages are appended; scalars keep the first page's value.
fn merge_pages(mut first: Map<String, Value>, next: Map<String, Value>) -> Map<String, Value> {
    for (k, v) in next {
        match (first.get_mut(&k), v) {
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
            (Some(_), _) if k != "status" && k != "etag" => {}
            (_, v) => {
                first.insert(k, v);
            }
        }
    }
    first
}

/// Follow a pointer; `*` maps the rest over an array. `None` when absent.
pub(crate) fn pointer_get(v: &Value, segs: &[Seg]) -> Option<Value> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(v.clone());
    };
    match first {
        Seg::Any => match v {
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|i| pointer_get(i, rest)).collect(),
            )),
            _ => Some(Value::Array(Vec::new())),
        },
        Seg::Key(k) => {
            let next = match v {
                Value::Object(m) => m.get(k),
                Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }?;
            pointer_get(next, rest)
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::http::spec::parse_pointer;

    fn connector(spec_src: &str) -> HttpConnector {
        let spec = Spec::parse("t.yaml", spec_src).expect("spec");
        HttpConnector::new(HttpConnectorParts {
            name: "t".into(),
            spec: Arc::new(spec),
            base_url: Url::parse("https://target.example.com/api/").expect("url"),
            auth: Auth::None,
            client: reqwest::Client::new(),
            timeout: Duration::from_secs(1),
            vars: json!({"attr": "userName"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            concurrency: 1,
            endpoints: BTreeMap::new(),
            lookup_cache: LookupCacheConfig::default(),
        })
    }

    fn context(subject: &str, extra: Value) -> Map<String, Value> {
        let mut ctx = json!({
            "subject": subject,
            "vars": {"attr": "userName"},
            "steps": {},
            "context": extra,
            "pre_state": {"groups": [{"id": "g1"}, {"id": "g2"}]},
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        ctx.insert("idempotency_key".into(), json!("k1"));
        ctx
    }

    const TEMPLATED: &str = r#"
name: t
auth: [none]
operations:
  notify:
    steps:
      - method: POST
        path: "/Users/{{ subject | segment }}"
        query: { filter: '{{ vars.attr }} eq {{ subject | tojson }}' }
        headers: { If-Match: '{{ context.etag or "" }}', X-Key: "{{ idempotency_key }}" }
        body:
          ids: "{{ pre_state.groups | map(attribute='id') | list }}"
          flag: "{{ context.flag }}"
          text: "subject={{ subject }}"
          fixed: 3
"#;

    #[test]
    fn templates_render_typed_bodies_urlencoded_paths_and_omit_empty_headers() {
        let c = connector(TEMPLATED);
        let step = &c.spec.operations["notify"].steps[0];
        let ctx = context("a b/c@x.com", json!({"flag": false, "etag": null}));
        let req = c.build_request(step, &ctx).expect("request");
        assert_eq!(req.url().path(), "/api/Users/a%20b%2Fc%40x.com");
        let filter: Vec<(String, String)> = req.url().query_pairs().into_owned().collect();
        assert_eq!(
            filter,
            [(
                "filter".to_string(),
                "userName eq \"a b/c@x.com\"".to_string()
            )]
        );
        assert!(req.headers().get("if-match").is_none());
        assert_eq!(req.headers()["x-key"], "k1");
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
        let body: Value =
            serde_json::from_slice(req.body().and_then(|b| b.as_bytes()).unwrap_or_default())
                .expect("json body");
        assert_eq!(
            body,
            json!({"ids": ["g1", "g2"], "flag": false, "text": "subject=a b/c@x.com", "fixed": 3})
        );
    }

    #[test]
    fn a_step_with_an_endpoint_goes_to_that_root_and_header_rules_match() {
        let spec = Spec::parse(
            "t.yaml",
            "name: t\nauth: [none]\nendpoints:\n  web: {}\noperations:\n  notify:\n    steps:\n      - { method: POST, endpoint: web, path: \"/m.x\", outcomes: [ { status: 403, header: { name: x-ratelimit-remaining, equals: \"0\" }, outcome: retry } ] }\n",
        )
        .expect("spec");
        let c = HttpConnector::new(HttpConnectorParts {
            name: "t".into(),
            spec: Arc::new(spec),
            base_url: Url::parse("https://scim.example.com/scim/v2").expect("url"),
            auth: Auth::None,
            client: reqwest::Client::new(),
            timeout: Duration::from_secs(1),
            vars: Map::new(),
            concurrency: 1,
            lookup_cache: LookupCacheConfig::default(),
            endpoints: BTreeMap::from([(
                "web".to_string(),
                EndpointParts {
                    base_url: Url::parse("https://api.example.com/api/").expect("url"),
                    auth: None,
                },
            )]),
        });
        let step = &c.spec.operations["notify"].steps[0];
        let req = c
            .build_request(step, &context("u", json!({})))
            .expect("request");
        assert_eq!(req.url().as_str(), "https://api.example.com/api/m.x");

        let response = |remaining: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-ratelimit-remaining",
                HeaderValue::from_str(remaining).unwrap(),
            );
            Response {
                status: StatusCode::FORBIDDEN,
                headers,
                json: Value::Null,
                text: String::new(),
            }
        };
        let ctx = context("u", json!({}));
        assert_eq!(c.classify(step, &response("0"), &ctx).0, StepOutcome::Retry);
        assert_eq!(
            c.classify(step, &response("12"), &ctx).0,
            StepOutcome::Failed
        );
    }

    #[test]
    fn dot_segments_in_rendered_paths_are_refused() {
        let c = connector(
            "name: t\nauth: [none]\noperations:\n  notify:\n    steps:\n      - { method: GET, path: \"/Users/{{ subject }}\" }\n",
        );
        let step = &c.spec.operations["notify"].steps[0];
        for evil in ["../Groups", "%2E%2e/x", "a/./b"] {
            let r = c.build_request(step, &context(evil, json!({})));
            assert!(
                matches!(&r, Err(Outcome::Failed { reason }) if reason.contains("segment")),
                "{evil}: {r:?}"
            );
        }
    }

    #[test]
    fn undefined_values_fail_with_the_template_path_instead_of_rendering_empty() {
        let c = connector(TEMPLATED);
        let step = &c.spec.operations["notify"].steps[0];
        let ctx = context("u", json!({"etag": null})); // no `flag`
        match c.build_request(step, &ctx) {
            Err(Outcome::Failed { reason }) => {
                assert!(
                    reason.contains("operations.notify[0].body.flag"),
                    "{reason}"
                );
            }
            other => panic!("expected a template failure, got {other:?}"),
        }
    }

    #[test]
    fn default_outcomes_follow_the_design() {
        let s = |c| default_outcome(StatusCode::from_u16(c).unwrap());
        assert_eq!(s(200), StepOutcome::Continue);
        assert_eq!(s(204), StepOutcome::Continue);
        assert_eq!(s(404), StepOutcome::NotFound);
        assert_eq!(s(408), StepOutcome::Retry);
        assert_eq!(s(429), StepOutcome::Retry);
        assert_eq!(s(503), StepOutcome::Retry);
        assert_eq!(s(400), StepOutcome::Failed);
        assert_eq!(s(401), StepOutcome::Failed);
        assert_eq!(s(302), StepOutcome::Failed);
    }

    #[test]
    fn pointer_wildcard_maps_over_arrays() {
        let v = json!({"Resources": [{"id": "a", "n": 1}, {"id": "b"}], "x": {"a/b": 2}});
        let p = |s: &str| parse_pointer(s).unwrap();
        assert_eq!(
            pointer_get(&v, &p("/Resources/*/id")),
            Some(json!(["a", "b"]))
        );
        assert_eq!(pointer_get(&v, &p("/Resources/*/n")), Some(json!([1])));
        assert_eq!(pointer_get(&v, &p("/Resources/1/id")), Some(json!("b")));
        assert_eq!(pointer_get(&v, &p("/x/a~1b")), Some(json!(2)));
        assert_eq!(pointer_get(&v, &p("/missing")), None);
    }

    #[test]
    fn link_header_next_is_found_among_other_relations() {
        let okta = r#"<https://x.okta.com/api/v1/users/00u1/groups?limit=2>; rel="self""#;
        assert_eq!(link_with_rel(okta, "next"), None);
        let both =
            r#"<https://x/a?limit=2>; rel="self", <https://x/a?after=00g2&limit=2>; rel="next""#;
        assert_eq!(
            link_with_rel(both, "next").as_deref(),
            Some("https://x/a?after=00g2&limit=2")
        );
        let github = r#"<https://api.github.com/orgs/o/members?page=2>; rel="next", <https://api.github.com/orgs/o/members?page=5>; rel="last""#;
        assert_eq!(
            link_with_rel(github, "next").as_deref(),
            Some("https://api.github.com/orgs/o/members?page=2")
        );
        assert_eq!(
            link_with_rel(r#"</p3>; title="x"; rel="prev next""#, "next").as_deref(),
            Some("/p3")
        );
        assert_eq!(link_with_rel("garbage", "next"), None);
    }

    #[test]
    fn pages_concatenate_lists() {
        let a = json!({"groups": [1], "total": 3})
            .as_object()
            .unwrap()
            .clone();
        let b = json!({"groups": [2, 3], "total": 3})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            Value::Object(merge_pages(a, b)),
            json!({"groups": [1, 2, 3], "total": 3})
        );
    }
}
