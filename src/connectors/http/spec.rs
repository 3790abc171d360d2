//! The spec model: one YAML file per target type, parsed, checked and compiled once at load.
//!
//! # Shape
//!
//! ```yaml
//! name: scim                      # must equal the file stem
//! description: Generic SCIM 2.0
//! auth: [bearer, basic, header]   # schemes an instance may choose (see auth.rs)
//! defaults: { user_attribute: userName }   # default instance `vars`
//! rate_limit: { remaining_headers: [X-Rate-Limit-Remaining], reset_headers: [X-Rate-Limit-Reset],
//!               min_remaining: 2, max_wait: 30s }   # optional; see `ratelimit.rs`
//! endpoints:                      # optional: further APIs of the same target (see below)
//!   web_api: { base_url: "https://slack.com/api" }
//! operations:
//!   lookup:   { steps: [...], record: { id: "{{ steps.find.id }}" } }  # resolves the subject
//!   check:    { steps: [...] }                                         # read-only preflight
//!   groups:   { steps: [...], record: { names: "{{ steps.g.names }}" } } # optional: group names
//!   # any operation may say `available_when: vars.mode == "org"` (vars only): offered only when true
//!   disable_account:
//!     steps:
//!       - name: read                      # needed only if something refers to the step
//!         when: "vars.read_first"         # optional: skip unless truthy; `otherwise: already_done` ends here
//!         foreach: "steps.x.groups"       # optional: run once per item, the item is `item`
//!         method: PATCH
//!         endpoint: web_api               # optional: append the path to this endpoint's root
//!         path: "/Users/{{ lookup.id | segment }}"
//!         query: { filter: 'userName eq {{ subject | tojson }}' }
//!         headers: { If-Match: "{{ steps.read.etag or '' }}" }   # empty value → header omitted
//!         body: { active: false, id: "{{ lookup.id }}" }         # leaves are templates
//!         extract: { active: /active, ids: "/Resources/*/id",
//!                    groups: { from: "/Resources/*", fields: { id: /id, name: /displayName } } }
//!         outcomes:
//!           - { status: 200, body: { pointer: /active, equals: false }, outcome: already_done }
//!           - { status: [401, 403], outcome: failed, message: "..." }
//!           - { status: 403, header: { name: x-ratelimit-remaining, equals: "0" }, outcome: retry }
//!         paginate: { scim: { count: 100 } }    # or { next_link: { pointer: /links/next } }, or `link`,
//!                   # or { page_token: { pointer: /nextPageToken, param: pageToken } },
//!                   # or { offset: { start: first, limit: max, size: 100 } }
//!     record: { prior_active: "{{ steps.read.active }}" }   # becomes the action's pre_state
//! ```
//!
//! # Templates
//!
//! minijinja, in an environment with no loader, no custom functions and strict undefined: a typo is an
//! error, never an empty string sent to a target. Values: `subject`, `vars`, `steps.<name>.<extract>`,
//! `lookup.<recorded>` (the `lookup` operation runs first when an operation mentions `lookup`),
//! `pre_state`, `context`, `idempotency_key`, `operation`, and `item` inside a `foreach` step.
//! Filters: minijinja's builtins, a `tojson` that refuses undefined values, and `segment`, which
//! percent-encodes a value for use as one path segment (use it for every value put in a `path`).
//! Tests: minijinja's builtins and `contains` (`selectattr("logins", "contains", login)`).
//! A body leaf or record value that is exactly one `{{ expression }}` keeps the expression's JSON type
//! (a list stays a list, `false` stays a boolean); anything else renders to a string.
//!
//! # Extracts
//!
//! An extract is a JSON pointer (RFC 6901) into the response body, extended with one filter: a `*`
//! segment maps the rest of the pointer over every element of an array and yields a list. The object form
//! `{ from, fields }` projects each element of `from` into an object of named pointers. A missing value is
//! `null`. `header:<Name>` reads a response header. Every step also has the built-ins `status` and `etag`
//! (the `ETag` header, for `If-Match`), and a `foreach` step has `processed`: the items that succeeded.
//!
//! # Outcomes
//!
//! Rules are tried in order; the first whose `status` (code, `"4xx"`, `"400-499"` or a list), optional
//! `body` predicate, optional `header` predicate and optional `when` all match decides. Otherwise: 2xx → `continue` (`done` after the
//! last step), 404 → `not_found`, 408/429/5xx → `retry` (honouring `Retry-After`), other → `failed` with
//! the target's message; a 403 that is a rate limit (Google's `rateLimitExceeded`/`userRateLimitExceeded`,
//! a `Retry-After`, an announced remaining budget of 0) → `retry`.
//!
//! # Endpoints
//!
//! Some targets split one job across APIs on different hosts (Slack: SCIM at
//! `https://api.slack.com/scim/v2`, the Web API at `https://slack.com/api`), sometimes with different
//! credentials. A spec names each further API under `endpoints` (with an optional default root URL) and a
//! step picks one with `endpoint`; everything else about the step is unchanged. An instance may set
//! `[connectors.<name>.endpoints.<endpoint>]` `base_url` and/or `auth`; unset, the URL is the spec's
//! default (else the instance's `base_url`) and the credentials are the instance's `auth`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use minijinja::Environment;

use crate::template::{describe, new_env};
use reqwest::Method;
use reqwest::header::HeaderName;
use serde::Deserialize;
use serde_json::Value;

use crate::action::Operation;
use crate::config::Problem;

/// The operation that resolves a subject to the target's id; not a policy action.
pub const LOOKUP: &str = "lookup";
/// The read-only preflight operation used by `deprovd connectors check`.
pub const CHECK: &str = "check";
/// The read-only operation that lists the subject's group names (its `record` has `names`: a list of
/// strings), for `[guards] protected_groups`. Optional: a spec without it cannot answer.
pub const GROUPS: &str = "groups";
/// Built-in values every step has, besides its extracts.
pub const BUILTIN_EXTRACTS: [&str; 4] = ["status", "etag", "processed", "skipped"];

/// Top-level names a template may use.
const ROOTS: [&str; 9] = [
    "subject",
    "vars",
    "steps",
    "pre_state",
    "context",
    "idempotency_key",
    "operation",
    "lookup",
    "item",
];
/// minijinja global functions that `undeclared_variables` reports like variables.
const GLOBAL_FUNCTIONS: [&str; 4] = ["range", "dict", "namespace", "debug"];

// ---------------------------------------------------------------------------------------------
// The file format.
// ---------------------------------------------------------------------------------------------

/// A spec file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// The target type; instances refer to it as `type`. Must equal the file stem.
    pub name: String,
    /// One line for humans (`deprovd connectors list`).
    #[serde(default)]
    pub description: String,
    /// Auth schemes an instance of this type may use.
    pub auth: Vec<String>,
    /// Default values of instance `vars`.
    #[serde(default)]
    pub defaults: BTreeMap<String, Value>,
    /// Further APIs of the same target besides the instance's `base_url` (Slack's Web API next to its
    /// SCIM API), by name; steps choose one with `endpoint`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointSpec>,
    /// Operation name → steps. Names are [`Operation`] names plus `lookup` and `check`.
    pub operations: BTreeMap<String, OperationSpec>,
    /// Which response headers announce the remaining budget and its reset, and how early to slow down
    /// (see `ratelimit.rs`). Absent: the common header names, pacing from 2 requests left.
    #[serde(default)]
    pub rate_limit: Option<super::ratelimit::RateLimitSpec>,
}

/// A named further API of the target. An instance may override its URL and give it its own
/// credentials (`[connectors.<name>.endpoints.<endpoint>]`); by default it uses the instance's `auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Root URL used when the instance sets none (the vendor's fixed API host). Without it the
    /// instance's `base_url` is the default.
    #[serde(default)]
    pub base_url: Option<String>,
    /// One line for humans: what the endpoint is and when to override it.
    #[serde(default)]
    pub description: String,
}

/// One operation: HTTP steps run in order, then `record` builds the pre-state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    /// A condition over `vars` only: when it is false the instance does not offer the operation at all
    /// (e.g. GitHub's `groups` only in `mode = "org"`), rather than offering one that always fails.
    #[serde(default)]
    pub available_when: Option<String>,
    pub steps: Vec<StepSpec>,
    /// Key → template; the rendered object becomes the action's `pre_state` (for `lookup`: `lookup.*`).
    #[serde(default)]
    pub record: BTreeMap<String, String>,
}

/// One HTTP request (or one per item with `foreach`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// How later templates refer to this step (`steps.<name>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Expression; the step is skipped unless it is truthy.
    #[serde(default)]
    pub when: Option<String>,
    /// When `when` is falsy, end the operation with this outcome instead of skipping on.
    #[serde(default)]
    pub otherwise: Option<StepOutcome>,
    /// Expression yielding a list; the step runs once per element, available as `item`.
    #[serde(default)]
    pub foreach: Option<String>,
    pub method: String,
    /// Which of the spec's `endpoints` the path is appended to; default the instance's `base_url`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path template, appended to the instance's `base_url` (or the endpoint's).
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; every string leaf is a template.
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub extract: BTreeMap<String, ExtractSpec>,
    #[serde(default)]
    pub outcomes: Vec<OutcomeRule>,
    /// `{ next_link: { pointer } }` or `{ scim: { count } }` (a one-key map, not a YAML tag).
    #[serde(default, with = "yaml_serde::with::singleton_map_recursive")]
    pub paginate: Option<Paginate>,
}

/// A value taken from the response: a pointer (with `*`), `header:<Name>`, or a projection.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ExtractSpec {
    Pointer(String),
    Project(Projection),
}

/// `{ from: "/Resources/*", fields: { id: /id } }`: a list of objects with the named fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Projection {
    pub from: String,
    pub fields: BTreeMap<String, String>,
}

/// Status → outcome, optionally narrowed by a body predicate and a `when` expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRule {
    pub status: StatusPattern,
    #[serde(default)]
    pub body: Option<BodyPredicate>,
    /// A test on a response header (rate-limit signals such as `x-ratelimit-remaining: 0`).
    #[serde(default)]
    pub header: Option<HeaderPredicate>,
    /// Expression over the context, including this step's fresh extracts.
    #[serde(default)]
    pub when: Option<String>,
    pub outcome: StepOutcome,
    /// Template for the reason of `failed` / `retry`; default: the target's own message.
    #[serde(default)]
    pub message: Option<String>,
}

/// `200`, `"2xx"`, `"400-499"` or a list of those.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusPattern {
    Code(u16),
    Text(String),
    List(Vec<StatusPattern>),
}

/// A test on the response body: the value at `pointer` equals `equals`, or (`exists`) is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyPredicate {
    pub pointer: String,
    #[serde(default)]
    pub equals: Option<Value>,
    #[serde(default)]
    pub exists: Option<bool>,
}

/// A test on a response header: its value equals `equals` (exactly, after trimming), or (`exists`) it
/// is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPredicate {
    pub name: String,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub exists: Option<bool>,
}

/// What a step's response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    AlreadyDone,
    NotFound,
    Retry,
    Failed,
    /// Go on with the next step (or item); after the last step this means `done`.
    Continue,
}

/// How to fetch further pages; extracted lists are concatenated across pages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Paginate {
    /// Follow the URL at `pointer` (absolute or relative; must stay on the base URL's origin).
    NextLink { pointer: String },
    /// RFC 8288 `Link: <url>; rel="next"` response header (Okta, GitHub); must stay on the base URL's
    /// origin. Written `paginate: link`.
    Link,
    /// RFC 7644 §3.4.2.4: `startIndex`/`count` query, stop at `totalResults`.
    Scim {
        #[serde(default = "default_page_size")]
        count: u32,
    },
    /// An opaque continuation token in the body at `pointer`, sent back as query parameter `param`
    /// (Google's `nextPageToken` → `pageToken`); stop when the token is absent or empty.
    PageToken { pointer: String, param: String },
    /// Offset paging over a bare JSON array (Keycloak's `first`/`max`): the first request carries
    /// `<start>=0&<limit>=<size>`, the next `<start>=<start+size>`; stop at a page shorter than `size`.
    Offset {
        start: String,
        limit: String,
        #[serde(default = "default_page_size")]
        size: u32,
    },
}

fn default_page_size() -> u32 {
    100
}

// ---------------------------------------------------------------------------------------------
// The compiled form.
// ---------------------------------------------------------------------------------------------

/// How a template's output is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TplKind {
    /// Rendered to a string.
    Text,
    /// A single expression rendered through `tojson` and parsed back: keeps JSON types.
    Value,
    /// An expression wrapped in `{% if %}`: truthy or not.
    Cond,
}

/// A compiled template, stored in the spec's environment under `name` (its path in the file).
#[derive(Debug, Clone)]
pub(crate) struct Tpl {
    pub name: String,
    pub kind: TplKind,
}

/// A JSON body whose string leaves are templates.
#[derive(Debug, Clone)]
pub(crate) enum BodyTpl {
    Literal(Value),
    Template(Tpl),
    Array(Vec<BodyTpl>),
    Object(Vec<(String, BodyTpl)>),
}

/// Where an extract reads from.
#[derive(Debug, Clone)]
pub(crate) enum Extractor {
    Pointer(Vec<Seg>),
    Header(HeaderName),
    Project {
        from: Vec<Seg>,
        fields: Vec<(String, Vec<Seg>)>,
    },
}

/// A JSON-pointer segment, or `*` (every array element).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Key(String),
    Any,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub status: Vec<(u16, u16)>,
    pub body: Option<(Vec<Seg>, BodyTest)>,
    pub header: Option<(HeaderName, HeaderTest)>,
    pub when: Option<Tpl>,
    pub outcome: StepOutcome,
    pub message: Option<Tpl>,
}

#[derive(Debug, Clone)]
pub(crate) enum BodyTest {
    Equals(Value),
    Exists(bool),
}

#[derive(Debug, Clone)]
pub(crate) enum HeaderTest {
    Equals(String),
    Exists(bool),
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledStep {
    pub name: String,
    /// `operations.<op>[<i>]`, for error messages.
    pub path: String,
    pub when: Option<Tpl>,
    pub otherwise: Option<StepOutcome>,
    pub foreach: Option<Tpl>,
    pub method: Method,
    /// Name of the spec endpoint the path is appended to (`None`: the instance's `base_url`).
    pub endpoint: Option<String>,
    pub url: Tpl,
    pub query: Vec<(String, Tpl)>,
    pub headers: Vec<(HeaderName, Tpl)>,
    pub body: Option<BodyTpl>,
    pub extract: Vec<(String, Extractor)>,
    pub outcomes: Vec<CompiledRule>,
    pub paginate: Option<Paginate>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledOperation {
    pub steps: Vec<CompiledStep>,
    pub record: Vec<(String, Tpl)>,
    /// Some template mentions `lookup`: run the `lookup` operation first.
    pub uses_lookup: bool,
    /// See [`OperationSpec::available_when`].
    pub available_when: Option<Tpl>,
}

/// A loaded, validated, compiled spec. Shared by every instance of its type.
pub struct Spec {
    pub name: String,
    pub description: String,
    /// File name it came from (`scim.yaml`), for messages.
    pub file: String,
    pub auth: Vec<String>,
    pub defaults: BTreeMap<String, Value>,
    /// Declared endpoints: name → default root URL (`None`: the instance's `base_url`).
    pub endpoints: BTreeMap<String, Option<String>>,
    pub(crate) operations: BTreeMap<String, CompiledOperation>,
    pub(crate) env: Environment<'static>,
    /// `vars.<name>` referenced anywhere, so instances can be checked for missing vars at build.
    pub var_refs: BTreeSet<String>,
    /// Proactive rate limiting: which headers to read, when to slow down.
    pub rate_limit: super::ratelimit::RatePolicy,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("operations", &self.operations.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Spec {
    /// Whether the spec defines `op`.
    pub fn supports(&self, op: Operation) -> bool {
        self.operations.contains_key(op.as_str())
    }

    /// Whether the spec defines the named operation (including `lookup` / `check`).
    pub fn has_operation(&self, name: &str) -> bool {
        self.operations.contains_key(name)
    }

    /// Parse, validate and compile one spec. `file` is the file name (`scim.yaml`); every problem is
    /// reported, each with a path `scim.yaml: operations.disable_account[1].path`.
    pub fn parse(file: &str, source: &str) -> Result<Spec, Vec<Problem>> {
        let raw: SpecFile = yaml_serde::from_str(source)
            .map_err(|e| vec![Problem::new(file, format!("invalid spec: {e}"))])?;
        let mut c = Compiler {
            file,
            env: new_env(),
            problems: Vec::new(),
            var_refs: BTreeSet::new(),
            endpoints: raw.endpoints.keys().cloned().collect(),
        };
        let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file);
        if raw.name != stem {
            c.problem(
                "name",
                format!("is `{}` but must equal the file name `{stem}`", raw.name),
            );
        }
        if raw.auth.is_empty() {
            c.problem("auth", "list at least one accepted auth scheme".to_string());
        }
        for (i, scheme) in raw.auth.iter().enumerate() {
            if !super::auth::SCHEMES.contains(&scheme.as_str()) {
                c.problem(
                    &format!("auth[{i}]"),
                    format!(
                        "unknown auth scheme `{scheme}`; known: {}",
                        super::auth::SCHEMES.join(", ")
                    ),
                );
            }
        }
        for (name, ep) in &raw.endpoints {
            if let Some(url) = &ep.base_url {
                if let Err(m) = super::auth::check_credential_url(url) {
                    c.problem(&format!("endpoints.{name}.base_url"), m);
                }
            }
        }
        // Lookup first: other operations refer to its record keys.
        let lookup_keys: Option<BTreeSet<String>> = raw
            .operations
            .get(LOOKUP)
            .map(|op| op.record.keys().cloned().collect());
        let mut operations = BTreeMap::new();
        for (name, op) in &raw.operations {
            if name != LOOKUP && name != CHECK && name != GROUPS && Operation::parse(name).is_none()
            {
                let known: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
                c.problem(
                    &format!("operations.{name}"),
                    format!(
                        "unknown operation; known: lookup, check, groups, {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            let lookup = if name == LOOKUP {
                None
            } else {
                Some(lookup_keys.as_ref())
            };
            if let Some(compiled) = c.operation(name, op, lookup) {
                operations.insert(name.clone(), compiled);
            }
        }
        let rate_limit = raw
            .rate_limit
            .clone()
            .unwrap_or_default()
            .compile(&format!("{file}: rate_limit"), &mut c.problems);
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        Ok(Spec {
            rate_limit: rate_limit.unwrap_or_default(),
            name: raw.name,
            description: raw.description,
            file: file.to_string(),
            auth: raw.auth,
            defaults: raw.defaults,
            endpoints: raw
                .endpoints
                .into_iter()
                .map(|(k, v)| (k, v.base_url))
                .collect(),
            operations,
            env: c.env,
            var_refs: c.var_refs,
        })
    }
}

/// What a template in a given place may refer to.
struct Scope<'a> {
    /// Steps declared before (and, for outcome rules, including) this one: name → extract names.
    steps: &'a BTreeMap<String, BTreeSet<String>>,
    /// `Some(keys)` when `lookup` may be used (keys it records; `None` inside: no lookup op).
    lookup: Option<Option<&'a BTreeSet<String>>>,
    item: bool,
}

struct Compiler<'f> {
    file: &'f str,
    env: Environment<'static>,
    problems: Vec<Problem>,
    var_refs: BTreeSet<String>,
    /// Names of the spec's `endpoints`, which steps may choose.
    endpoints: BTreeSet<String>,
}

impl Compiler<'_> {
    fn problem(&mut self, path: &str, message: String) {
        self.problems
            .push(Problem::new(format!("{}: {path}", self.file), message));
    }

    fn operation(
        &mut self,
        op_name: &str,
        op: &OperationSpec,
        lookup: Option<Option<&BTreeSet<String>>>,
    ) -> Option<CompiledOperation> {
        let before = self.problems.len();
        let base = format!("operations.{op_name}");
        if op.steps.is_empty() {
            self.problem(&format!("{base}.steps"), "needs at least one step".into());
        }
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut uses_lookup = false;
        let mut steps = Vec::new();
        for (i, step) in op.steps.iter().enumerate() {
            let path = format!("{base}[{i}]");
            let name = step.name.clone().unwrap_or_else(|| format!("step{i}"));
            if seen.contains_key(&name) {
                self.problem(
                    &format!("{path}.name"),
                    format!("step name `{name}` is used twice"),
                );
            }
            if let Some(s) = self.step(&path, &name, step, &seen, lookup, &mut uses_lookup) {
                steps.push(s);
            }
            let mut extracts: BTreeSet<String> = step.extract.keys().cloned().collect();
            extracts.extend(BUILTIN_EXTRACTS.iter().map(|s| s.to_string()));
            seen.insert(name, extracts);
        }
        let scope = Scope {
            steps: &seen,
            lookup,
            item: false,
        };
        let mut record = Vec::new();
        for (key, src) in &op.record {
            let p = format!("{base}.record.{key}");
            if let Some(t) = self.template(&p, src, TplKind::Value, &scope, &mut uses_lookup) {
                record.push((key.clone(), t));
            }
        }
        let available_when = op.available_when.as_ref().and_then(|src| {
            let none = BTreeMap::new();
            let vars_only = Scope {
                steps: &none,
                lookup: None,
                item: false,
            };
            let p = format!("{base}.available_when");
            self.template(&p, src, TplKind::Cond, &vars_only, &mut false)
        });
        if self.problems.len() > before {
            return None;
        }
        Some(CompiledOperation {
            steps,
            record,
            uses_lookup,
            available_when,
        })
    }

    fn step(
        &mut self,
        path: &str,
        name: &str,
        step: &StepSpec,
        seen: &BTreeMap<String, BTreeSet<String>>,
        lookup: Option<Option<&BTreeSet<String>>>,
        uses_lookup: &mut bool,
    ) -> Option<CompiledStep> {
        let before = self.problems.len();
        let outer = Scope {
            steps: seen,
            lookup,
            item: false,
        };
        let inner = Scope {
            item: step.foreach.is_some(),
            ..outer
        };
        let mut with_self = seen.clone();
        let mut own: BTreeSet<String> = step.extract.keys().cloned().collect();
        own.extend(BUILTIN_EXTRACTS.iter().map(|s| s.to_string()));
        with_self.insert(name.to_string(), own);
        let rules_scope = Scope {
            steps: &with_self,
            lookup,
            item: step.foreach.is_some(),
        };

        let method = match Method::from_bytes(step.method.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                self.problem(
                    &format!("{path}.method"),
                    format!("`{}` is not an HTTP method", step.method),
                );
                Method::GET
            }
        };
        if !step.path.starts_with('/') {
            self.problem(
                &format!("{path}.path"),
                "must start with `/` (it is appended to the instance's base_url)".into(),
            );
        }
        if let Some(ep) = &step.endpoint {
            if !self.endpoints.contains(ep) {
                self.problem(
                    &format!("{path}.endpoint"),
                    format!("`{ep}` is not declared under `endpoints`"),
                );
            }
        }
        if step.otherwise.is_some() && step.when.is_none() {
            self.problem(
                &format!("{path}.otherwise"),
                "only makes sense with `when`".into(),
            );
        }
        let when = step.when.as_ref().and_then(|s| {
            self.template(
                &format!("{path}.when"),
                s,
                TplKind::Cond,
                &outer,
                uses_lookup,
            )
        });
        let foreach = step.foreach.as_ref().and_then(|s| {
            self.template(
                &format!("{path}.foreach"),
                &format!("{{{{ {s} }}}}"),
                TplKind::Value,
                &outer,
                uses_lookup,
            )
        });
        let url = self.template(
            &format!("{path}.path"),
            &step.path,
            TplKind::Text,
            &inner,
            uses_lookup,
        );
        let mut query = Vec::new();
        for (k, v) in &step.query {
            let p = format!("{path}.query.{k}");
            if let Some(t) = self.template(&p, v, TplKind::Text, &inner, uses_lookup) {
                query.push((k.clone(), t));
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &step.headers {
            let p = format!("{path}.headers.{k}");
            let Ok(hn) = HeaderName::from_bytes(k.as_bytes()) else {
                self.problem(&p, format!("`{k}` is not a valid HTTP header name"));
                continue;
            };
            if let Some(t) = self.template(&p, v, TplKind::Text, &inner, uses_lookup) {
                headers.push((hn, t));
            }
        }
        let body = step
            .body
            .as_ref()
            .map(|b| self.body(&format!("{path}.body"), b, &inner, uses_lookup));
        let mut extract = Vec::new();
        for (k, e) in &step.extract {
            let p = format!("{path}.extract.{k}");
            if BUILTIN_EXTRACTS.contains(&k.as_str()) {
                self.problem(&p, format!("`{k}` is a built-in value of every step"));
                continue;
            }
            match compile_extract(e) {
                Ok(x) => extract.push((k.clone(), x)),
                Err(m) => self.problem(&p, m),
            }
        }
        let mut outcomes = Vec::new();
        for (i, rule) in step.outcomes.iter().enumerate() {
            let p = format!("{path}.outcomes[{i}]");
            let status = match parse_status(&rule.status) {
                Ok(s) => s,
                Err(m) => {
                    self.problem(&format!("{p}.status"), m);
                    continue;
                }
            };
            let body = match &rule.body {
                None => None,
                Some(b) => match (parse_pointer(&b.pointer), &b.equals, b.exists) {
                    (Err(m), _, _) => {
                        self.problem(&format!("{p}.body.pointer"), m);
                        None
                    }
                    (Ok(ptr), Some(v), None) => Some((ptr, BodyTest::Equals(v.clone()))),
                    (Ok(ptr), None, Some(e)) => Some((ptr, BodyTest::Exists(e))),
                    (Ok(_), _, _) => {
                        self.problem(
                            &format!("{p}.body"),
                            "give exactly one of `equals` or `exists`".into(),
                        );
                        None
                    }
                },
            };
            let header = match &rule.header {
                None => None,
                Some(h) => match (
                    HeaderName::from_bytes(h.name.trim().as_bytes()),
                    &h.equals,
                    h.exists,
                ) {
                    (Err(_), _, _) => {
                        self.problem(
                            &format!("{p}.header.name"),
                            format!("`{}` is not a valid header name", h.name),
                        );
                        None
                    }
                    (Ok(n), Some(v), None) => Some((n, HeaderTest::Equals(v.trim().to_string()))),
                    (Ok(n), None, Some(e)) => Some((n, HeaderTest::Exists(e))),
                    (Ok(_), _, _) => {
                        self.problem(
                            &format!("{p}.header"),
                            "give exactly one of `equals` or `exists`".into(),
                        );
                        None
                    }
                },
            };
            let when = rule.when.as_ref().and_then(|s| {
                self.template(
                    &format!("{p}.when"),
                    s,
                    TplKind::Cond,
                    &rules_scope,
                    uses_lookup,
                )
            });
            let message = rule.message.as_ref().and_then(|s| {
                self.template(
                    &format!("{p}.message"),
                    s,
                    TplKind::Text,
                    &rules_scope,
                    uses_lookup,
                )
            });
            outcomes.push(CompiledRule {
                status,
                body,
                header,
                when,
                outcome: rule.outcome,
                message,
            });
        }
        if let Some(Paginate::NextLink { pointer }) = &step.paginate {
            if let Err(m) = parse_pointer(pointer) {
                self.problem(&format!("{path}.paginate.next_link.pointer"), m);
            }
        }
        if let Some(Paginate::Scim { count: 0 }) = &step.paginate {
            self.problem(
                &format!("{path}.paginate.scim.count"),
                "must be at least 1".into(),
            );
        }
        if let Some(Paginate::PageToken { pointer, .. }) = &step.paginate {
            if let Err(m) = parse_pointer(pointer) {
                self.problem(&format!("{path}.paginate.page_token.pointer"), m);
            }
        }
        if let Some(Paginate::Offset { size: 0, .. }) = &step.paginate {
            self.problem(
                &format!("{path}.paginate.offset.size"),
                "must be at least 1".into(),
            );
        }
        if self.problems.len() > before {
            return None;
        }
        Some(CompiledStep {
            name: name.to_string(),
            path: path.to_string(),
            when,
            otherwise: step.otherwise,
            foreach,
            method,
            endpoint: step.endpoint.clone(),
            url: url?,
            query,
            headers,
            body: body.flatten(),
            extract,
            outcomes,
            paginate: step.paginate.clone(),
        })
    }

    fn body(
        &mut self,
        path: &str,
        v: &Value,
        scope: &Scope<'_>,
        uses_lookup: &mut bool,
    ) -> Option<BodyTpl> {
        Some(match v {
            Value::String(s) if s.contains("{{") || s.contains("{%") => {
                BodyTpl::Template(self.template(path, s, TplKind::Value, scope, uses_lookup)?)
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    out.push(self.body(&format!("{path}[{i}]"), it, scope, uses_lookup)?);
                }
                BodyTpl::Array(out)
            }
            Value::Object(map) => {
                let mut out = Vec::new();
                for (k, it) in map {
                    out.push((
                        k.clone(),
                        self.body(&format!("{path}.{k}"), it, scope, uses_lookup)?,
                    ));
                }
                BodyTpl::Object(out)
            }
            other => BodyTpl::Literal(other.clone()),
        })
    }

    /// Compile `src` into the environment under `path` and check what it refers to.
    fn template(
        &mut self,
        path: &str,
        src: &str,
        kind: TplKind,
        scope: &Scope<'_>,
        uses_lookup: &mut bool,
    ) -> Option<Tpl> {
        let (kind, wrapped) = match kind {
            TplKind::Cond => (TplKind::Cond, format!("{{% if {src} %}}1{{% endif %}}")),
            TplKind::Value => match single_expression(src) {
                Some(expr) => (TplKind::Value, format!("{{{{ ({expr}) | tojson }}}}")),
                None => (TplKind::Text, src.to_string()),
            },
            TplKind::Text => (TplKind::Text, src.to_string()),
        };
        if let Err(e) = self.env.add_template_owned(path.to_string(), wrapped) {
            self.problem(path, format!("template error: {}", describe(&e)));
            return None;
        }
        let refs = match self.env.get_template(path) {
            Ok(t) => t.undeclared_variables(true),
            Err(e) => {
                self.problem(path, format!("template error: {}", describe(&e)));
                return None;
            }
        };
        let mut refs: Vec<String> = refs.into_iter().collect();
        refs.sort();
        let before = self.problems.len();
        for r in refs {
            let mut parts = r.split('.');
            let root = parts.next().unwrap_or_default();
            let second = parts.next();
            let third = parts.next();
            if GLOBAL_FUNCTIONS.contains(&root) {
                continue;
            }
            if !ROOTS.contains(&root) {
                self.problem(
                    path,
                    format!(
                        "unknown value `{root}`; templates can use {}",
                        ROOTS.join(", ")
                    ),
                );
                continue;
            }
            match (root, second) {
                ("item", _) if !scope.item => {
                    self.problem(path, "`item` is only defined in a `foreach` step".into())
                }
                ("vars", Some(v)) => {
                    self.var_refs.insert(v.to_string());
                }
                ("lookup", k) => match scope.lookup {
                    None => self.problem(path, "the lookup operation cannot use `lookup`".into()),
                    Some(None) => self.problem(
                        path,
                        "uses `lookup` but the spec has no `lookup` operation".into(),
                    ),
                    Some(Some(keys)) => {
                        *uses_lookup = true;
                        if let Some(k) = k {
                            if !keys.contains(k) {
                                self.problem(
                                    path,
                                    format!("`lookup.{k}` is not recorded by the lookup operation"),
                                );
                            }
                        }
                    }
                },
                ("steps", Some(step)) => match scope.steps.get(step) {
                    None => self.problem(
                        path,
                        format!("unknown step `{step}` (steps can only use earlier named steps)"),
                    ),
                    Some(extracts) => {
                        if let Some(x) = third {
                            if !extracts.contains(x) {
                                self.problem(path, format!("step `{step}` has no extract `{x}`"));
                            }
                        }
                    }
                },
                _ => {}
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Tpl {
            name: path.to_string(),
            kind,
        })
    }
}

/// The expression of a template that is exactly one `{{ … }}`, if it is.
fn single_expression(src: &str) -> Option<&str> {
    let t = src.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let inner = inner.trim_start_matches('-').trim_end_matches('-');
    Some(inner.trim())
}

/// `""`, `"/a/b/0"`, `"/a/*/id"`; `~0`/`~1` unescaped per RFC 6901.
pub(crate) fn parse_pointer(p: &str) -> Result<Vec<Seg>, String> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!(
            "`{p}` is not a JSON pointer: it must be empty or start with `/`"
        ));
    };
    Ok(rest
        .split('/')
        .map(|s| {
            if s == "*" {
                Seg::Any
            } else {
                Seg::Key(s.replace("~1", "/").replace("~0", "~"))
            }
        })
        .collect())
}

fn compile_extract(e: &ExtractSpec) -> Result<Extractor, String> {
    match e {
        ExtractSpec::Pointer(p) => {
            if let Some(h) = p.strip_prefix("header:") {
                HeaderName::from_bytes(h.trim().as_bytes())
                    .map(Extractor::Header)
                    .map_err(|_| format!("`{h}` is not a valid header name"))
            } else {
                parse_pointer(p).map(Extractor::Pointer)
            }
        }
        ExtractSpec::Project(p) => {
            let from = parse_pointer(&p.from)?;
            let mut fields = Vec::new();
            for (k, v) in &p.fields {
                fields.push((k.clone(), parse_pointer(v)?));
            }
            Ok(Extractor::Project { from, fields })
        }
    }
}

/// Inclusive status ranges.
pub(crate) fn parse_status(p: &StatusPattern) -> Result<Vec<(u16, u16)>, String> {
    let valid = |c: u16| {
        if (100..=599).contains(&c) {
            Ok(c)
        } else {
            Err(format!("{c} is not an HTTP status code"))
        }
    };
    match p {
        StatusPattern::Code(c) => Ok(vec![(valid(*c)?, *c)]),
        StatusPattern::List(l) => {
            let mut out = Vec::new();
            for x in l {
                out.extend(parse_status(x)?);
            }
            Ok(out)
        }
        StatusPattern::Text(t) => {
            let t = t.trim();
            if let Some(d) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                if let Ok(d @ 1..=5) = d.parse::<u16>() {
                    return Ok(vec![(d * 100, d * 100 + 99)]);
                }
            } else if let Some((a, b)) = t.split_once('-') {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                    if a <= b {
                        return Ok(vec![(valid(a)?, valid(b)?)]);
                    }
                }
            } else if let Ok(c) = t.parse::<u16>() {
                return Ok(vec![(valid(c)?, c)]);
            }
            Err(format!(
                "`{t}` is not a status pattern; use 404, \"4xx\", \"400-499\" or a list"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        Spec::parse("t.yaml", src)
            .expect_err("spec should be rejected")
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn builtin_specs_load() {
        for (file, src) in crate::connectors::http::BUILTIN_SPECS {
            Spec::parse(file, src).unwrap_or_else(|p| panic!("{file}: {p:?}"));
        }
    }

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let got = problems(
            r#"
name: wrong
auth: [bearer, kerberos]
operations:
  frobnicate: { steps: [ { method: GET, path: / } ] }
  disable_account:
    steps:
      - name: read
        method: GET
        path: "/Users/{{ subject"
      - method: PATCH
        path: "/Users/{{ steps.nope.id }}"
        headers: { If-Match: "{{ steps.read.etagg }}" }
        body: { x: "{{ bogus }}" }
        outcomes: [ { status: "6xx", outcome: done } ]
        extract: { id: "no-slash" }
    record: { a: "{{ lookup.id }}" }
"#,
        );
        let want = [
            "t.yaml: name: ",
            "t.yaml: auth[1]: unknown auth scheme `kerberos`",
            "t.yaml: operations.frobnicate: unknown operation",
            "t.yaml: operations.disable_account[0].path: template error",
            "t.yaml: operations.disable_account[1].path: unknown step `nope`",
            "t.yaml: operations.disable_account[1].headers.If-Match: step `read` has no extract `etagg`",
            "t.yaml: operations.disable_account[1].body.x: unknown value `bogus`",
            "t.yaml: operations.disable_account[1].extract.id: `no-slash` is not a JSON pointer",
            "t.yaml: operations.disable_account[1].outcomes[0].status: `6xx` is not a status pattern",
            "t.yaml: operations.disable_account.record.a: uses `lookup` but the spec has no `lookup` operation",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn page_token_and_offset_paging_are_checked() {
        let got = problems(
            r#"
name: t
auth: [bearer]
operations:
  check:
    steps:
      - { method: GET, path: /a, paginate: { page_token: { pointer: "no-slash", param: pageToken } } }
      - { method: GET, path: /b, paginate: { offset: { start: first, limit: max, size: 0 } } }
      - { method: GET, path: /c, paginate: { offset: { start: first, limit: max } } }
"#,
        );
        let want = [
            "t.yaml: operations.check[0].paginate.page_token.pointer: ",
            "t.yaml: operations.check[1].paginate.offset.size: must be at least 1",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let got = problems("name: t\nauth: [bearer]\noperations: {}\nsurprise: 1\n");
        assert!(got[0].contains("surprise"), "{got:?}");
    }

    #[test]
    fn item_is_only_defined_in_foreach_steps() {
        let got = problems(
            "name: t\nauth: [none]\noperations:\n  notify:\n    steps:\n      - { method: POST, path: \"/{{ item }}\" }\n",
        );
        assert!(
            got[0].contains("only defined in a `foreach` step"),
            "{got:?}"
        );
    }

    #[test]
    fn endpoints_and_header_predicates_are_checked() {
        let got = problems(
            r#"
name: t
auth: [bearer]
endpoints:
  web: { base_url: "http://plain.example.com/api" }
operations:
  notify:
    steps:
      - method: POST
        endpoint: nope
        path: /x
        outcomes:
          - { status: 403, header: { name: x-ratelimit-remaining }, outcome: retry }
          - { status: 403, header: { name: "bad header", exists: true }, outcome: retry }
"#,
        );
        let want = [
            "t.yaml: endpoints.web.base_url: ",
            "t.yaml: operations.notify[0].endpoint: `nope` is not declared",
            "t.yaml: operations.notify[0].outcomes[0].header: give exactly one",
            "t.yaml: operations.notify[0].outcomes[1].header.name: ",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn contains_test_keeps_objects_whose_list_holds_the_value() {
        let env = new_env();
        let out = env
            .render_str(
                r#"{{ teams | selectattr("logins", "contains", "mona") | map(attribute="slug") | list | tojson }}"#,
                minijinja::context! { teams => serde_json::json!([
                    {"slug": "a", "logins": ["mona", "hubot"]},
                    {"slug": "b", "logins": ["monalisa"]},
                    {"slug": "c", "logins": null},
                ]) },
            )
            .expect("renders");
        assert_eq!(out, r#"["a"]"#);
    }

    #[test]
    fn status_patterns() {
        assert_eq!(
            parse_status(&StatusPattern::Text("4xx".into())).unwrap(),
            vec![(400, 499)]
        );
        assert_eq!(
            parse_status(&StatusPattern::Text("500-503".into())).unwrap(),
            vec![(500, 503)]
        );
        assert_eq!(
            parse_status(&StatusPattern::List(vec![
                StatusPattern::Code(401),
                StatusPattern::Text("403".into())
            ]))
            .unwrap(),
            vec![(401, 401), (403, 403)]
        );
        assert!(parse_status(&StatusPattern::Code(99)).is_err());
        assert!(parse_status(&StatusPattern::Text("503-500".into())).is_err());
    }

    #[test]
    fn single_expression_detection() {
        assert_eq!(single_expression("{{ steps.a.b }}"), Some("steps.a.b"));
        assert_eq!(single_expression(" {{- x -}} "), Some("x"));
        assert_eq!(single_expression("a {{ x }}"), None);
        assert_eq!(single_expression("{{ x }}{{ y }}"), None);
    }
}
