//! The spec model: one YAML file per target type, parsed, checked and compiled once at load.
//!
//! # Shape
//!
//! ```yaml
//! name: scim                      # must equal the file stem
//! description: Generic SCIM 2.0
//! auth: [bearer, basic, header]   # schemes an instance may choose (see `auth/`)
//! defaults: { user_attribute: userName }   # default instance `vars`
//! rate_limit: { remaining_headers: [X-Rate-Limit-Remaining], reset_headers: [X-Rate-Limit-Reset],
//!               min_remaining: 2, max_wait: 30s }   # optional; see `ratelimit.rs`
//! endpoints:                      # optional: further APIs of the same target (see below)
//!   web_api: { base_url: "https://slack.com/api" }
//! default_operations: [notify]   # optional: what an instance offers unless its `operations` says
//!                                 # otherwise (absent: every operation below; see `webhook.yaml`)
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
//!
//! # Layout
//!
//! `format` holds the file as written, `compile` checks and compiles it (every problem at once),
//! `templates` compiles and checks each template, `pointer` parses JSON pointers and extracts. This
//! file holds the compiled form the runtime executes and [`Spec::parse`], which drives the rest.

mod compile;
mod format;
mod pointer;
mod templates;
#[cfg(test)]
mod tests;

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

use compile::Compiler;
pub(crate) use format::{
    ExtractSpec, OperationSpec, Paginate, SpecFile, StatusPattern, StepOutcome, StepSpec,
};
pub(crate) use pointer::parse_pointer;

/// A status pattern, JSON pointer or header name in a spec that is not one; reported as a problem at
/// its key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpecError {
    #[error("{0} is not an HTTP status code")]
    StatusCode(u16),
    #[error("`{0}` is not a status pattern; use 404, \"4xx\", \"400-499\" or a list")]
    StatusPattern(String),
    #[error("`{0}` is not a JSON pointer: it must be empty or start with `/`")]
    Pointer(String),
    #[error("`{0}` is not a valid header name")]
    HeaderName(String),
}

/// The operation that resolves a subject to the target's id; not a policy action.
pub(crate) const LOOKUP: &str = "lookup";
/// The read-only preflight operation used by `deprovd connectors check`.
pub(crate) const CHECK: &str = "check";
/// The read-only operation that lists the subject's group names (its `record` has `names`: a list of
/// strings), for `[guards] protected_groups`. Optional: a spec without it cannot answer.
pub(crate) const GROUPS: &str = "groups";
/// Built-in values every step has, besides its extracts.
pub(crate) const BUILTIN_EXTRACTS: [&str; 4] = ["status", "etag", "processed", "skipped"];

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
    /// What an instance offers when its config names no `operations`; `None`: every one defined.
    pub(crate) default_operations: Option<BTreeSet<Operation>>,
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

    /// The operations an instance of this spec offers: those `configured` (the instance's
    /// `operations`), else the spec's `default_operations`, else every one it defines. Only defined
    /// operations are ever offered (`check_against_spec` reports a configured one that is not).
    pub fn offered(&self, configured: Option<&[Operation]>) -> BTreeSet<Operation> {
        Operation::ALL
            .into_iter()
            .filter(|op| self.supports(*op))
            .filter(|op| match (configured, &self.default_operations) {
                (Some(ops), _) => ops.contains(op),
                (None, Some(ops)) => ops.contains(op),
                (None, None) => true,
            })
            .collect()
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
                    c.problem(&format!("endpoints.{name}.base_url"), m.to_string());
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
        let default_operations = raw.default_operations.as_ref().map(|names| {
            let mut ops = BTreeSet::new();
            for (i, name) in names.iter().enumerate() {
                match Operation::parse(name) {
                    Some(op) if raw.operations.contains_key(name) => {
                        ops.insert(op);
                    }
                    Some(_) => c.problem(
                        &format!("default_operations[{i}]"),
                        format!("`{name}` is not defined under `operations`"),
                    ),
                    None => c.problem(
                        &format!("default_operations[{i}]"),
                        format!("`{name}` is not an operation an instance can offer"),
                    ),
                }
            }
            ops
        });
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
            default_operations,
            env: c.env,
            var_refs: c.var_refs,
        })
    }
}
