//! Shared test support: a scriptable HTTP target that records every request, a Kafka helper, app
//! spawning, and polling with a deadline (never a bare sleep standing in for a condition).

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request as the target saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self { status, headers: vec![], body: String::new() }
    }
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
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
pub struct Target {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Target {
    pub async fn start() -> Target {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().fallback(handle).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Target { addr, script }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `method path` with `reply` once (queued in order), before falling back to the default.
    pub fn then(&self, method: &str, path: &str, reply: Reply) {
        let mut s = self.script.lock().unwrap();
        s.queued.entry(format!("{method} {path}")).or_default().push_back(reply);
    }

    /// Answer `method path` with `reply` whenever nothing is queued.
    pub fn always(&self, method: &str, path: &str, reply: Reply) {
        self.script.lock().unwrap().defaults.insert(format!("{method} {path}"), reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen().iter().filter(|s| s.method.as_str() == method && s.path == path).count()
    }
}

async fn handle(State(script): State<Arc<Mutex<Script>>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let key = format!("{} {}", method, uri.path());
    let reply = {
        let mut s = script.lock().unwrap();
        s.seen.push(Seen { method: method.clone(), path: uri.path().to_string(), headers, body, at: Instant::now() });
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

/// A random lower-case suffix for topic, group and key names, so tests never share state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
