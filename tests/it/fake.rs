//! What every vendor fake (idp.rs, saas.rs, keycloak_crowdstrike.rs) shares: one request as the fake saw
//! it, an answer, the answer turned into an HTTP response, and building and driving the real connectors. Each fake keeps its own state machine and
//! token rules; only the plumbing lives here, so a fix to it (percent-decoding, form bodies, repeated
//! headers) reaches every fake at once.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use deprovd::connectors::{
    Connector, ConnectorSet, InstanceConfig, Operation, OperationRequest, OperationResult,
    build_all,
};
use serde_json::Value;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    /// The JSON body, or a form body as a JSON object of its fields; `Null` when empty or neither.
    pub body: Value,
    pub raw: Bytes,
    /// Whether the body was `application/x-www-form-urlencoded` (token endpoints insist on it).
    pub is_form: bool,
    /// Which of the fake's listeners took it (0 = the first; Slack's fake serves two hosts).
    pub port: u16,
    /// When the fake received it (wall clock: rate-limit resets are announced in epoch seconds).
    pub at: SystemTime,
}

impl Req {
    pub fn new(method: Method, uri: &Uri, headers: HeaderMap, raw: Bytes, port: u16) -> Req {
        let query = form_pairs(uri.query().unwrap_or(""));
        let is_form = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        let body = if is_form {
            serde_json::to_value(form_pairs(&String::from_utf8_lossy(&raw))).unwrap_or(Value::Null)
        } else {
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        };
        Req {
            method,
            path: uri.path().to_string(),
            query,
            headers,
            body,
            raw,
            is_form,
            port,
            at: SystemTime::now(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Path segments, percent-decoded (as the vendors' routers see them).
    pub fn segs(&self) -> Vec<String> {
        self.path
            .trim_matches('/')
            .split('/')
            .map(percent_decode)
            .collect()
    }
}

/// `a=1&b=x%20y` → map, decoded as a browser form would be.
fn form_pairs(s: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{s}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer: status, JSON body (`Null` = empty), extra headers.
pub type Resp = (u16, Value, Vec<(String, String)>);

pub fn resp(status: u16, body: Value) -> Resp {
    (status, body, Vec::new())
}

/// The answer as a response. Headers are appended: a vendor may send one twice (Okta: one `Link` per
/// relation).
pub fn respond((status, body, extra): Resp) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if body.is_null() {
        code.into_response()
    } else {
        (code, axum::Json(body)).into_response()
    };
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            response.headers_mut().append(k, v);
        }
    }
    response
}

/// Secret files for connector configs (`file:` references), removed with the value.
pub struct Secrets(tempfile::TempDir);

impl Secrets {
    pub fn new() -> Self {
        Secrets(tempfile::tempdir().expect("tempdir"))
    }
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).expect("write secret");
        format!("file:{}", p.display())
    }
}

/// The real connectors, built from `[connectors.*]` TOML exactly as the service builds them.
pub fn build(toml_src: &str) -> ConnectorSet {
    #[derive(serde::Deserialize)]
    struct Root {
        connectors: BTreeMap<String, InstanceConfig>,
    }
    let root: Root = toml::from_str(toml_src).expect("config parses");
    build_all(&root.connectors, None).unwrap_or_else(|p| panic!("build failed: {p:#?}"))
}

/// One operation through a connector, with a fresh idempotency key.
pub async fn run(
    c: &dyn Connector,
    op: Operation,
    subject: &str,
    pre_state: Option<Value>,
) -> OperationResult {
    c.execute(&OperationRequest {
        operation: op,
        subject: subject.to_string(),
        idempotency_key: format!("key-{}", uuid::Uuid::new_v4().simple()),
        pre_state,
        context: BTreeMap::new(),
    })
    .await
}
