//! The OpenAPI 3.1 description of every route, generated: `components.schemas` from the very types
//! the handlers serialize and parse (`#[derive(JsonSchema)]` beside their serde attributes, JSON
//! Schema 2020-12, which is OpenAPI 3.1's dialect), and the operations from [`OPERATIONS`], a table
//! kept beside the router's [`ROUTES`](super::ROUTES): summary, query type, headers, body type and
//! the answer type of each status. Who may call a route is not written here but read from
//! [`access`](super::access), so the document and the audit layer cannot disagree either.
//!
//! Served at `GET /v1/openapi.json`, printed by `deprovd schema openapi`, and checked in as
//! `docs/openapi.json` for readers; a test fails when that file is not what this module generates.
//! Rewrite it with `deprovd schema openapi > docs/openapi.json` (or
//! `DEPROVD_BLESS=1 cargo test --lib openapi`).
//!
//! Two generators: answers are described as serialized (a field skipped when empty is optional),
//! bodies and query strings as deserialized (a field with a default is optional). A type both read
//! and written must come out the same both ways, or generation panics (a unit test runs it).

use std::sync::LazyLock;

use schemars::generate::{Contract, SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::error::ErrorBody;
use super::wire::{
    ActionList, ActionsQuery, AlertAnswer, AlertQuery, ApprovalList, ApprovalsQuery, AuditPage,
    AuditQuery, AuditVerdict, BreakerReset, BreakerView, DecisionBody, LockoutsQuery,
    OktaVerification, ResetBody, SetError,
};
use super::{ReadinessReport, Role, access};
use crate::ledger::ActionRecord;
use crate::lockout::{Created, LockoutPage, LockoutRequest, Restored, Status};
use crate::pipeline::ShadowReport;

/// Makes one schema in a generator, adding the components it refers to.
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A `$ref` to `T`'s component.
fn named<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `T`'s own schema, not a reference: a query string's properties become parameters.
fn inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

/// What a request or an answer carries.
#[derive(Clone, Copy)]
enum Body {
    /// Nothing.
    Empty,
    /// `application/json` of a Rust type.
    Json(SchemaFn),
    /// `application/json` in a shape another document defines (JWKS, SSF metadata, OpenAPI).
    Object,
    /// `application/json`, any document (alerts come in many vendors' formats).
    AnyJson,
    /// A string in this media type.
    Text(&'static str),
}

/// One documented status of an operation.
struct Answer {
    status: &'static str,
    description: &'static str,
    body: Body,
}

/// A header parameter (never required: a route that needs one says so in its refusal).
struct Header {
    name: &'static str,
    description: &'static str,
}

/// One (method, route) of [`ROUTES`](super::ROUTES), described.
struct Operation {
    method: &'static str,
    route: &'static str,
    summary: &'static str,
    /// The query string's type: each property is an optional query parameter.
    query: Option<SchemaFn>,
    headers: &'static [Header],
    /// The request body and whether it is required.
    request: Option<(Body, bool)>,
    /// Documented statuses; for routes that need a token, `401`, `403` and `default` (the JSON
    /// [`ErrorBody`]) are added unless listed.
    answers: &'static [Answer],
}

const fn ok(status: &'static str, description: &'static str, body: Body) -> Answer {
    Answer {
        status,
        description,
        body,
    }
}

const IDEMPOTENCY_KEY: Header = Header {
    name: "Idempotency-Key",
    description: "A repeat with the same key and body replays the first answer; with another body \
                  it is 422 `idempotency_key_reused` (1 to 255 visible ASCII characters)",
};

/// Every route's description; a unit test keeps it one-to-one with [`ROUTES`](super::ROUTES).
const OPERATIONS: &[Operation] = &[
    Operation {
        method: "GET",
        route: "/healthz",
        summary: "Liveness",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok("200", "Alive", Body::Text("text/plain"))],
    },
    Operation {
        method: "GET",
        route: "/readyz",
        summary: "Readiness: store, policies, Kafka",
        query: None,
        headers: &[],
        request: None,
        answers: &[
            ok("200", "Ready", Body::Json(named::<ReadinessReport>)),
            ok("503", "Not ready", Body::Json(named::<ReadinessReport>)),
        ],
    },
    Operation {
        method: "GET",
        route: "/metrics",
        summary: "Prometheus metrics",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok(
            "200",
            "Text exposition format",
            Body::Text("text/plain"),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/openapi.json",
        summary: "This document",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok("200", "OpenAPI 3.1", Body::Object)],
    },
    Operation {
        method: "POST",
        route: "/v1/alerts",
        summary: "Ingest one alert (any supported format)",
        query: Some(inline::<AlertQuery>),
        headers: &[],
        request: Some((Body::AnyJson, true)),
        answers: &[
            ok("202", "Recorded", Body::Json(named::<AlertAnswer>)),
            ok(
                "400",
                "Not an alert; dead-lettered with the reason",
                Body::Json(named::<ErrorBody>),
            ),
        ],
    },
    Operation {
        method: "GET",
        route: "/v1/alerts",
        summary: "Okta event hook verification",
        query: None,
        headers: &[Header {
            name: "x-okta-verification-challenge",
            description: "The challenge Okta sends once when the hook is registered",
        }],
        request: None,
        answers: &[ok(
            "200",
            "The challenge echoed",
            Body::Json(named::<OktaVerification>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/actions",
        summary: "Actions, newest first",
        query: Some(inline::<ActionsQuery>),
        headers: &[],
        request: None,
        answers: &[ok(
            "200",
            "Matching actions",
            Body::Json(named::<ActionList>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/actions/{key}",
        summary: "One action",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok("200", "The action", Body::Json(named::<ActionRecord>))],
    },
    Operation {
        method: "POST",
        route: "/v1/actions/{key}/restore",
        summary: "Undo one action from its recorded pre-state",
        query: None,
        headers: &[IDEMPOTENCY_KEY],
        request: None,
        answers: &[ok(
            "202",
            "Reversal recorded",
            Body::Json(named::<Restored>),
        )],
    },
    Operation {
        method: "POST",
        route: "/v1/actions/{key}/retry",
        summary: "Plan a failed action again with a fresh retry budget",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok(
            "202",
            "Planned again",
            Body::Json(named::<ActionRecord>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/lockouts",
        summary: "Lockouts, newest first, a page at a time",
        query: Some(inline::<LockoutsQuery>),
        headers: &[],
        request: None,
        answers: &[ok("200", "One page", Body::Json(named::<LockoutPage>))],
    },
    Operation {
        method: "POST",
        route: "/v1/lockouts",
        summary: "Lock a subject out now",
        query: None,
        headers: &[IDEMPOTENCY_KEY],
        request: Some((Body::Json(named::<LockoutRequest>), true)),
        answers: &[ok("202", "Recorded", Body::Json(named::<Created>))],
    },
    Operation {
        method: "GET",
        route: "/v1/lockouts/{id}",
        summary: "A lockout with live per-connector state",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok("200", "Status", Body::Json(named::<Status>))],
    },
    Operation {
        method: "POST",
        route: "/v1/lockouts/{id}/restore",
        summary: "Undo a lockout",
        query: None,
        headers: &[IDEMPOTENCY_KEY],
        request: None,
        answers: &[ok(
            "202",
            "Reversals recorded",
            Body::Json(named::<Restored>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/audit",
        summary: "Audit records, newest first (bounded scan)",
        query: Some(inline::<AuditQuery>),
        headers: &[],
        request: None,
        answers: &[ok(
            "200",
            "Matching records",
            Body::Json(named::<AuditPage>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/audit/verify",
        summary: "Verify the stored audit chain from its first record (as `deprovd audit verify`)",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok(
            "200",
            "The verdict: records verified, or the first bad record and how it was tampered with",
            Body::Json(named::<AuditVerdict>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/approvals",
        summary: "Actions awaiting approval",
        query: Some(inline::<ApprovalsQuery>),
        headers: &[],
        request: None,
        answers: &[ok("200", "Held actions", Body::Json(named::<ApprovalList>))],
    },
    Operation {
        method: "POST",
        route: "/v1/approvals/{id}/approve",
        summary: "Approve a held action (not your own)",
        query: None,
        headers: &[IDEMPOTENCY_KEY],
        request: Some((Body::Json(named::<DecisionBody>), false)),
        answers: &[ok(
            "200",
            "The action, planned",
            Body::Json(named::<ActionRecord>),
        )],
    },
    Operation {
        method: "POST",
        route: "/v1/approvals/{id}/reject",
        summary: "Reject a held action",
        query: None,
        headers: &[IDEMPOTENCY_KEY],
        request: Some((Body::Json(named::<DecisionBody>), false)),
        answers: &[ok(
            "200",
            "The action, cancelled",
            Body::Json(named::<ActionRecord>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/breaker",
        summary: "The blast-radius breaker",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok("200", "Its scopes", Body::Json(named::<BreakerView>))],
    },
    Operation {
        method: "POST",
        route: "/v1/breaker/reset",
        summary: "Close the breaker and empty its window",
        query: None,
        headers: &[],
        request: Some((Body::Json(named::<ResetBody>), false)),
        answers: &[ok(
            "200",
            "Scopes after the reset",
            Body::Json(named::<BreakerReset>),
        )],
    },
    Operation {
        method: "GET",
        route: "/v1/policy/shadow",
        summary: "The shadow bundle's disagreements with the live one (`[policy] shadow_dir`)",
        query: None,
        headers: &[],
        request: None,
        answers: &[ok(
            "200",
            "Counts by kind and the recent disagreements",
            Body::Json(named::<ShadowReport>),
        )],
    },
    Operation {
        method: "POST",
        route: "/v1/ssf/{receiver}",
        summary: "Shared Signals push delivery (RFC 8935)",
        query: None,
        headers: &[],
        request: Some((Body::Text("application/secevent+jwt"), true)),
        // Every refusal in RFC 8935's shape, authentication included.
        answers: &[
            ok("202", "Accepted", Body::Empty),
            ok(
                "401",
                "No or unknown bearer token",
                Body::Json(named::<SetError>),
            ),
            ok(
                "403",
                "The token's role may not push",
                Body::Json(named::<SetError>),
            ),
            ok("default", "RFC 8935 error", Body::Json(named::<SetError>)),
        ],
    },
    Operation {
        method: "GET",
        route: "/v1/ssf/jwks",
        summary: "deprovd's transmitter keys",
        query: None,
        headers: &[],
        request: None,
        answers: &[
            ok("200", "JWKS", Body::Object),
            ok("404", "No transmitter is configured", Body::Empty),
        ],
    },
    Operation {
        method: "GET",
        route: "/.well-known/ssf-configuration",
        summary: "deprovd's transmitter metadata",
        query: None,
        headers: &[],
        request: None,
        answers: &[
            ok("200", "SSF metadata", Body::Object),
            ok("404", "No transmitter is configured", Body::Empty),
        ],
    },
];

const ROLES: [Role; 5] = [
    Role::Ingest,
    Role::Viewer,
    Role::Responder,
    Role::Approver,
    Role::Admin,
];

/// The document as served and checked in: pretty JSON and a final newline.
pub(crate) static OPENAPI: LazyLock<String> = LazyLock::new(|| {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serializes");
    text.push('\n');
    text
});

/// The OpenAPI document of the HTTP API, as `GET /v1/openapi.json` serves it (`deprovd schema
/// openapi`).
pub fn openapi_json() -> &'static str {
    OPENAPI.as_str()
}

fn generator(contract: Contract) -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            // OpenAPI 3.1 schemas are 2020-12 by default (`jsonSchemaDialect`); no `$schema` each.
            s.meta_schema = None;
            s.contract = contract;
        })
        .into_generator()
}

/// The whole OpenAPI 3.1 document.
pub(crate) fn document() -> Value {
    let mut answers = generator(Contract::Serialize);
    let mut requests = generator(Contract::Deserialize);
    let mut paths = Map::new();
    for op in OPERATIONS {
        let described = op.describe(&mut answers, &mut requests);
        paths
            .entry(op.route)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item")
            .insert(op.method.to_ascii_lowercase(), described);
    }
    let mut schemas = answers.take_definitions(true);
    for (name, schema) in requests.take_definitions(true) {
        match schemas.get(&name) {
            Some(written) => assert_eq!(
                written, &schema,
                "schema `{name}` differs as read and as written: give one a #[schemars(rename)]"
            ),
            None => {
                schemas.insert(name, schema);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "deprovd",
            "version": "v1",
            "description": "Policy-driven security auto-deprovisioning: alerts in, Rego decides, \
                            connectors contain. Errors are JSON `{code, message}`.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8780"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

impl Operation {
    fn describe(&self, answers: &mut SchemaGenerator, requests: &mut SchemaGenerator) -> Value {
        let role = access(&self.method.parse().expect("a method"), self.route).map(|a| a.role);
        let mut op = Map::new();
        op.insert("summary".into(), self.summary.into());
        if let Some(role) = role {
            let allowed: Vec<String> = ROLES
                .iter()
                .filter(|r| r.allows(role))
                .map(|r| format!("`{}`", r.as_str()))
                .collect();
            op.insert(
                "description".into(),
                format!("Roles: {}.", allowed.join(", ")).into(),
            );
        }
        let mut parameters = Vec::new();
        for name in self.route.split('/').filter_map(|s| s.strip_prefix('{')) {
            let name = name.trim_end_matches('}');
            parameters.push(json!({"name": name, "in": "path", "required": true,
                                   "schema": {"type": "string"}}));
        }
        if let Some(query) = self.query {
            parameters.extend(query_parameters(query(requests)));
        }
        for h in self.headers {
            parameters.push(json!({"name": h.name, "in": "header", "required": false,
                                   "description": h.description, "schema": {"type": "string"}}));
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), parameters.into());
        }
        if let Some((body, required)) = self.request {
            let mut request = Map::new();
            request.insert("required".into(), required.into());
            if let Some(content) = content(body, requests) {
                request.insert("content".into(), content);
            }
            op.insert("requestBody".into(), request.into());
        }
        let mut responses = Map::new();
        for a in self.answers {
            responses.insert(a.status.into(), answer(a.description, a.body, answers));
        }
        if role.is_some() {
            let refusals = [
                ("401", "No or unknown bearer token"),
                ("403", "The token's role may not call this"),
                ("default", "Refused: a JSON error with a stable `code`"),
            ];
            for (status, description) in refusals {
                if !responses.contains_key(status) {
                    let a = answer(description, Body::Json(named::<ErrorBody>), answers);
                    responses.insert(status.into(), a);
                }
            }
        } else {
            op.insert("security".into(), json!([]));
            if !responses.contains_key("default") {
                let error = Body::Json(named::<ErrorBody>);
                let a = answer("Refused: a JSON error with a stable `code`", error, answers);
                responses.insert("default".into(), a);
            }
        }
        op.insert("responses".into(), responses.into());
        op.into()
    }
}

/// `{"application/json": {"schema": ...}}` for a body, or `None` for no body.
fn content(body: Body, g: &mut SchemaGenerator) -> Option<Value> {
    let (media, schema) = match body {
        Body::Empty => return None,
        Body::Json(schema) => ("application/json", schema(g).to_value()),
        Body::Object => ("application/json", json!({"type": "object"})),
        Body::AnyJson => ("application/json", json!({})),
        Body::Text(media) => (media, json!({"type": "string"})),
    };
    Some(json!({ media: {"schema": schema} }))
}

fn answer(description: &str, body: Body, g: &mut SchemaGenerator) -> Value {
    let mut a = json!({ "description": description });
    if let Some(content) = content(body, g) {
        a["content"] = content;
    }
    a
}

/// One optional query parameter per property of a query string's schema, described by the field's
/// doc comment; `null` is dropped from its type (an absent parameter is how a query says none).
fn query_parameters(schema: Schema) -> Vec<Value> {
    let schema = schema.to_value();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(properties) = schema["properties"].as_object() else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            let description = property
                .as_object_mut()
                .and_then(|p| p.remove("description"));
            let mut p = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": not_null(property),
            });
            if let Some(d) = description {
                p["description"] = d;
            }
            p
        })
        .collect()
}

/// `schema` without its `null` alternative: `{"type": ["string", "null"]}` → `{"type": "string"}`,
/// `{"anyOf": [X, {"type": "null"}]}` → `X`.
fn not_null(mut schema: Value) -> Value {
    if let Some(types) = schema["type"].as_array() {
        let mut kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = if kept.len() == 1 {
            kept.remove(0)
        } else {
            kept.into()
        };
    }
    if let Some(any) = schema["anyOf"].as_array() {
        let mut kept: Vec<Value> = any
            .iter()
            .filter(|s| **s != json!({"type": "null"}))
            .cloned()
            .collect();
        if kept.len() == 1 {
            let mut only = kept.remove(0);
            if let (Some(only), Some(outer)) = (only.as_object_mut(), schema.as_object()) {
                for (k, v) in outer {
                    if k != "anyOf" {
                        only.insert(k.clone(), v.clone());
                    }
                }
            }
            return only;
        }
        schema["anyOf"] = kept.into();
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the checked-in copy lives, for readers of the repository.
    fn checked_in() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
    }

    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let path = checked_in();
        if std::env::var_os("DEPROVD_BLESS").is_some() {
            std::fs::write(&path, OPENAPI.as_str()).expect("write docs/openapi.json");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == *OPENAPI,
            "docs/openapi.json is not what the handlers' types generate: rewrite it with \
             `deprovd schema openapi > docs/openapi.json` or `DEPROVD_BLESS=1 cargo test --lib \
             openapi`, and review the diff"
        );
    }

    #[test]
    fn every_operation_is_one_route_of_the_router() {
        for op in OPERATIONS {
            let n = OPERATIONS
                .iter()
                .filter(|o| o.method == op.method && o.route == op.route)
                .count();
            assert_eq!(n, 1, "{} {} is described {n} times", op.method, op.route);
            assert!(
                super::super::ROUTES.contains(&(op.method, op.route)),
                "{} {} is described but not routed",
                op.method,
                op.route
            );
        }
        assert_eq!(OPERATIONS.len(), super::super::ROUTES.len());
    }

    #[test]
    fn every_reference_resolves_to_a_component() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in text.split("\"$ref\":\"").skip(1) {
            let target = r.split('"').next().unwrap();
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target} is not a component"));
            assert!(schemas.contains_key(name), "{target} is not defined");
        }
        // The types the handlers answer with are components under their documented names.
        for name in [
            "Action",
            "Actions",
            "AlertAccepted",
            "AuditRecord",
            "Breaker",
            "Error",
            "LockoutRequest",
            "LockoutStatus",
            "Readiness",
            "Restored",
        ] {
            assert!(schemas.contains_key(name), "{name}: {:?}", schemas.keys());
        }
    }

    #[test]
    fn query_parameters_drop_null_and_take_the_field_docs() {
        let doc = document();
        let params = doc["paths"]["/v1/actions"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let state = params.iter().find(|p| p["name"] == "state").unwrap();
        assert_eq!(state["in"], "query");
        assert_eq!(state["required"], false);
        assert_eq!(state["schema"]["$ref"], "#/components/schemas/ActionState");
        assert_eq!(state["description"], "Actions in this state.");
        let since = params.iter().find(|p| p["name"] == "since").unwrap();
        assert_eq!(since["schema"]["type"], "string");
        assert_eq!(since["schema"]["format"], "date-time");
    }

    #[test]
    fn an_answer_a_handler_serializes_is_valid_against_its_schema() {
        // The document's own schema of an action, applied to an action as the API writes it.
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let action = &schemas["Action"];
        let required: Vec<&str> = action["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for field in ["key", "origin", "state", "created_at", "last_error"] {
            assert!(required.contains(&field), "{field}: {required:?}");
        }
        // Skipped when empty, so not required as written.
        assert!(!required.contains(&"expires_at"), "{required:?}");
        let error = &schemas["Error"];
        assert_eq!(error["required"], json!(["code", "message"]));
    }
}
