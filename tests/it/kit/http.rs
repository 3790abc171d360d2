//! A scriptable HTTP target that records every request, and a counting proxy in front of a real
//! server.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as the target saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: String::new(),
        }
    }
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    pub(crate) fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Default)]
struct Script {
    /// Per "METHOD path": queued replies, then the default.
    queued: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
    seen: Vec<Seen>,
}

/// A local HTTP server answering from a script and recording every request.
#[derive(Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

/// Serve `app` on a free loopback port for the rest of the test; its address.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

impl Target {
    pub(crate) async fn start() -> Target {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().fallback(handle).with_state(script.clone());
        Target {
            addr: serve(app).await,
            script,
        }
    }

    /// A webhook target that accepts every `POST /hook` (204).
    pub(crate) async fn hook() -> Target {
        let target = Target::start().await;
        target.always("POST", "/hook", Reply::status(204));
        target
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `method path` with `reply` once (queued in order), before falling back to the default.
    pub(crate) fn then(&self, method: &str, path: &str, reply: Reply) {
        let mut s = self.script.lock().unwrap();
        s.queued
            .entry(format!("{method} {path}"))
            .or_default()
            .push_back(reply);
    }

    /// Answer `method path` with `reply` whenever nothing is queued.
    pub(crate) fn always(&self, method: &str, path: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .defaults
            .insert(format!("{method} {path}"), reply);
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    pub(crate) fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method.as_str() == method && s.path == path)
            .count()
    }
}

async fn handle(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = format!("{} {}", method, uri.path());
    let reply = {
        let mut s = script.lock().unwrap();
        s.seen.push(Seen {
            method: method.clone(),
            path: uri.path().to_string(),
            headers,
            body,
            at: Instant::now(),
        });
        let queued = s.queued.get_mut(&key).and_then(VecDeque::pop_front);
        queued.or_else(|| s.defaults.get(&key).cloned())
    };
    match reply {
        Some(r) => {
            let mut resp = (StatusCode::from_u16(r.status).unwrap(), r.body).into_response();
            for (k, v) in r.headers {
                resp.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            resp
        }
        None => (StatusCode::NOT_FOUND, "no script for this request").into_response(),
    }
}

/// A recording reverse proxy in front of a real server (e.g. scim2-server), so a test can count the
/// requests that actually reached the target — "exactly one PATCH" is counted here.
#[derive(Clone)]
pub(crate) struct CountingProxy {
    pub addr: SocketAddr,
    seen: RequestLog,
}

/// (method, path) of every request a proxy forwarded.
type RequestLog = Arc<Mutex<Vec<(Method, String)>>>;

impl CountingProxy {
    pub(crate) async fn start(upstream: String) -> CountingProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::new();
        let state = (seen.clone(), client, upstream);
        let app = Router::new().fallback(forward).with_state(Arc::new(state));
        CountingProxy {
            addr: serve(app).await,
            seen,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests with this method whose path starts with `prefix`.
    pub(crate) fn count(&self, method: &str, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| m.as_str() == method && p.starts_with(prefix))
            .count()
    }
}

type ProxyState = Arc<(RequestLog, reqwest::Client, String)>;

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (seen, client, upstream) = &*state;
    seen.lock()
        .unwrap()
        .push((method.clone(), uri.path().to_string()));
    let url = format!(
        "{upstream}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = client.request(method, url).body(body);
    for (k, v) in headers.iter() {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap_or_default();
            let mut out = (status, body).into_response();
            for (k, v) in headers.iter() {
                if k != axum::http::header::TRANSFER_ENCODING
                    && k != axum::http::header::CONTENT_LENGTH
                {
                    out.headers_mut().insert(k.clone(), v.clone());
                }
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
