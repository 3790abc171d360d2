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
        Self {
            status,
            headers: vec![],
            body: String::new(),
        }
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
        s.queued
            .entry(format!("{method} {path}"))
            .or_default()
            .push_back(reply);
    }

    /// Answer `method path` with `reply` whenever nothing is queued.
    pub fn always(&self, method: &str, path: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .defaults
            .insert(format!("{method} {path}"), reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
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

/// A random lower-case suffix for topic, group and key names, so tests never share state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A recording reverse proxy in front of a real server (e.g. scim2-server), so a test can count the
/// requests that actually reached the target — "exactly one PATCH" is counted here.
#[derive(Clone)]
pub struct CountingProxy {
    pub addr: SocketAddr,
    seen: RequestLog,
}

/// (method, path) of every request a proxy forwarded.
type RequestLog = Arc<Mutex<Vec<(Method, String)>>>;

impl CountingProxy {
    pub async fn start(upstream: String) -> CountingProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::new();
        let state = (seen.clone(), client, upstream);
        let app = Router::new().fallback(forward).with_state(Arc::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        CountingProxy { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
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

/// Kafka helpers against the real broker the test script started (tansu on 127.0.0.1:9092, or
/// `DEPROVD_TEST_KAFKA`).
pub mod kafka {
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};

    pub fn brokers() -> String {
        std::env::var("DEPROVD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
    }

    pub async fn create_topics(names: &[&str]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .expect("admin client");
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
            .collect();
        let res = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics (is the Kafka-protocol broker running? see scripts/test.sh)");
        for r in res {
            if let Err((t, e)) = r {
                assert_eq!(
                    e,
                    rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                    "create topic {t}: {e}"
                );
            }
        }
    }

    pub async fn produce(topic: &str, payload: &[u8]) {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("message.timeout.ms", "10000")
            .create()
            .expect("producer");
        p.send(
            FutureRecord::<(), [u8]>::to(topic).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    }

    /// Committed offset of partition 0 of `topic` for `group` (None when nothing was committed).
    pub fn committed(group: &str, topic: &str) -> Option<i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let got = c
            .committed_offsets(tpl, Duration::from_secs(5))
            .expect("committed offsets");
        match got.find_partition(topic, 0).map(|p| p.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        }
    }

    /// A consumed record: payload and headers as (key, value) pairs.
    pub type Record = (Vec<u8>, Vec<(String, String)>);

    /// Every record of partition 0 of `topic`.
    pub fn read_all(topic: &str, want: usize, timeout: Duration) -> Vec<Record> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", super::unique("reader"))
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let deadline = std::time::Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < want && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    }
}

/// The real application, started in-process on a free port (zero-to-production's `spawn_app`).
pub struct TestApp {
    pub port: u16,
    pub token: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Build from TOML text (`api.listen` should be `127.0.0.1:0`) and run until [`TestApp::stop`].
    pub async fn spawn(toml: &str) -> TestApp {
        let settings =
            deprovd::app::Settings::from_toml(toml, Vec::new()).expect("test config parses");
        let problems = settings.validate();
        assert!(problems.is_empty(), "test config invalid: {problems:?}");
        let app = deprovd::app::Application::build(settings)
            .await
            .expect("application builds");
        let port = app.port();
        let token = app.generated_token().expect("dev token").to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = rx.await;
            })
            .await
            .expect("app runs");
        });
        TestApp {
            port,
            token,
            http: reqwest::Client::new(),
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("app task");
        }
    }

    pub async fn post_alert(&self, body: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url("/v1/alerts"))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("post alert");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Value of one sample line of `/metrics` (`name{labels}` exactly as exported), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics().await, series)
    }

    pub async fn ready(&self) -> bool {
        self.http
            .get(self.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// Actions of the ledger, filtered by a query string like `subject=a@b`.
    pub async fn actions(&self, query: &str) -> Vec<serde_json::Value> {
        self.get_json(&format!("/v1/actions?{query}")).await["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// A policy directory holding `files` (name → Rego or data), in a temp dir kept alive by the caller.
pub fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write policy");
    }
    dir
}

/// A policy that disables every subject of every high or critical alert, on every capable connector.
pub const DISABLE_ALL_POLICY: &str = r#"package deprovd

import rego.v1

decisions contains d if {
    input.alert.severity in {"high", "critical"}
    some s in input.alert.subjects
    d := {
        "action": "disable_account",
        "subject": s.email,
        "reason": sprintf("%s: %s", [input.alert.category, input.alert.title]),
        "rule": "test.disable_high",
    }
}
"#;

/// A canonical alert for `email` with id `id`.
pub fn alert_json(id: &str, email: &str) -> String {
    serde_json::json!({
        "id": id,
        "source": {"vendor": "test"},
        "time": chrono::Utc::now().to_rfc3339(),
        "severity": "high",
        "category": "credential_theft",
        "title": "Credential theft detected",
        "subjects": [{"email": email}],
    })
    .to_string()
}

/// Redis settings with a random key prefix so tests never share ledger state.
pub fn redis_state() -> String {
    format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{}:\"\n",
        unique("deprovd-test")
    )
}
