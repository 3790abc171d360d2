//! The real application, started in-process on a free port from typed [`Settings`]
//! (zero-to-production's `spawn_app`): `TestApp::builder().connector(..).guards(..).spawn().await`.

use std::path::Path;
use std::time::Duration;

use deprovd::{
    GuardConfig, InstanceConfig, KafkaConfig, RedisConfig, Settings, StoreBackend, StoreConfig,
    TokenConfig,
};

use super::{eventually, metric_value, unique};

/// Typed settings for one test app. Starts from the defaults of an empty config file; every test
/// sets only what it is about.
pub(crate) struct TestAppBuilder {
    settings: Settings,
    dirs: Vec<tempfile::TempDir>,
}

impl TestAppBuilder {
    fn new() -> Self {
        let mut settings = Settings::from_toml("", Vec::new()).expect("defaults parse");
        settings.api.listen = "127.0.0.1:0".into();
        // Tests change policies only where they test reloading (`watch_policies`).
        settings.policy.watch = false;
        let data = tempfile::tempdir().expect("data dir");
        let dir = data.path().to_path_buf();
        Self {
            settings,
            dirs: vec![data],
        }
        .data_dir(&dir)
    }

    /// The embedded ledger (`<dir>/ledger`) and the dead-letter files live here (a test that
    /// restarts the app keeps it). Never the defaults' `./deprovd-data`, which every test would share.
    pub(crate) fn data_dir(mut self, dir: &Path) -> Self {
        self.settings.data_dir = dir.to_path_buf();
        self.settings.state.path = dir.join("ledger");
        self
    }

    /// Read the policy bundle from `dir`.
    pub(crate) fn policies(mut self, dir: &Path) -> Self {
        self.settings.policy.dir = Some(dir.to_path_buf());
        self
    }

    /// Reload policies when the files change (off by default in tests).
    pub(crate) fn watch_policies(mut self) -> Self {
        self.settings.policy.watch = true;
        self
    }

    /// The executor scans the ledger for due actions every 50 ms (retries keep their defaults).
    pub(crate) fn quick_scan(mut self) -> Self {
        self.settings.executor.poll_interval = Duration::from_millis(50);
        self
    }

    /// Alerts from Kafka: the `[kafka]` source.
    pub(crate) fn kafka(mut self, kafka: KafkaConfig) -> Self {
        self.settings.kafka = Some(kafka);
        self
    }

    /// Executor timings short enough for tests: scan every 50 ms, retry after 50–200 ms, three
    /// attempts.
    pub(crate) fn fast_executor(self) -> Self {
        let mut this = self.quick_scan();
        let e = &mut this.settings.executor;
        e.retry.base_delay = Duration::from_millis(50);
        e.retry.max_delay = Duration::from_millis(200);
        e.retry.max_attempts = 3;
        this
    }

    /// The ledger in the local Redis under a random key prefix, so tests never share state.
    pub(crate) fn redis(self) -> Self {
        let prefix = format!("{}:", unique("deprovd-test"));
        self.redis_prefix(&prefix)
    }

    /// The ledger in the local Redis under `prefix` (a test that inspects or cleans the keys).
    pub(crate) fn redis_prefix(mut self, prefix: &str) -> Self {
        self.settings.state = StoreConfig {
            backend: StoreBackend::Redis,
            redis: RedisConfig::single("redis://127.0.0.1:6379/0", prefix),
            path: self.settings.state.path.clone(),
        };
        self
    }

    /// How many times the executor tries an action before it fails it.
    pub(crate) fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.executor.retry.max_attempts = attempts;
        self
    }

    /// One connector instance (see [`super::connector`] for building its config).
    pub(crate) fn connector(mut self, name: &str, config: InstanceConfig) -> Self {
        self.settings.connectors.insert(name.to_string(), config);
        self
    }

    /// A configured API token for `role`, named `<role>-bot`, stored as its SHA-256 only. An app with
    /// configured tokens has no generated dev token ([`TestApp::token`] is then empty).
    pub(crate) fn token(self, role: &str, secret: &str) -> Self {
        self.named_token(&format!("{role}-bot"), role, secret)
    }

    /// A configured API token `name` for `role`, stored as its SHA-256 only.
    pub(crate) fn named_token(mut self, name: &str, role: &str, secret: &str) -> Self {
        self.settings.api.tokens.push(TokenConfig {
            name: name.to_string(),
            role: serde_json::from_value(serde_json::json!(role)).expect("a role name"),
            token: None,
            sha256: Some(hex::encode(deprovd::hash_token(secret))),
        });
        self
    }

    /// One notification sink, a `[[notify.sinks]]` entry parsed by the service's own deserializer.
    pub(crate) fn notify_sink(mut self, sink: serde_json::Value) -> Self {
        let sink = serde_json::from_value(sink).unwrap_or_else(|e| panic!("notify sink: {e}"));
        self.settings.notify.sinks.push(sink);
        self
    }

    /// The `[ssf]` section (receivers, transmitter), parsed by the service's own deserializer.
    pub(crate) fn ssf(mut self, ssf: serde_json::Value) -> Self {
        self.settings.ssf = serde_json::from_value(ssf).unwrap_or_else(|e| panic!("ssf: {e}"));
        self
    }

    /// The `[guards]` section.
    pub(crate) fn guards(mut self, guards: GuardConfig) -> Self {
        self.settings.guards = guards;
        self
    }

    /// Any other setting, in Rust.
    pub(crate) fn with(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// The settings as built so far (for tests that build the application their own way).
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Validate, build and run the app.
    pub(crate) async fn spawn(self) -> TestApp {
        let mut app = TestApp::start(self.settings).await;
        app._dirs = self.dirs;
        app
    }
}

/// The real application, started in-process on a free port (zero-to-production's `spawn_app`).
pub(crate) struct TestApp {
    pub port: u16,
    /// The generated dev token (empty when the settings configure tokens).
    pub token: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    /// Temporary directories the builder made (data dir), removed with the app.
    _dirs: Vec<tempfile::TempDir>,
}

impl TestApp {
    /// A responder's lockout of `subject`: `disable_account` on `connector`, reason "phished".
    /// Asserts the `202` and returns the lockout id.
    pub(crate) async fn disable_via_lockout(&self, subject: &str, connector: &str) -> String {
        let r = self
            .http
            .post(self.url("/v1/lockouts"))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({
                "subject": subject,
                "connectors": [connector],
                "operations": ["disable_account"],
                "reason": "phished",
            }))
            .send()
            .await
            .expect("post lockout");
        assert_eq!(r.status().as_u16(), 202, "lockout of {subject} refused");
        let body: serde_json::Value = r.json().await.expect("lockout answer is JSON");
        body["id"].as_str().expect("lockout id").to_string()
    }

    /// A builder over typed [`Settings`]: the defaults of an empty config file, listening on a free
    /// loopback port, with a fresh data directory and policies read once.
    pub(crate) fn builder() -> TestAppBuilder {
        TestAppBuilder::new()
    }

    /// Validate `settings`, build the application and run it until [`TestApp::stop`].
    pub(crate) async fn start(settings: Settings) -> TestApp {
        let problems = settings.validate();
        assert!(problems.is_empty(), "test config invalid: {problems:?}");
        let app = deprovd::Application::build(settings)
            .await
            .expect("application builds");
        let port = app.port();
        // Configured tokens replace the generated dev token; such tests bring their own.
        let token = app
            .generated_token()
            .map(str::to_string)
            .unwrap_or_default();
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
            _dirs: Vec::new(),
        }
    }

    /// Poll `/readyz` until the app is ready (policies loaded, connectors built, ledger reachable).
    pub(crate) async fn wait_ready(&self, timeout: Duration) {
        eventually(timeout, "app ready", || async {
            self.ready().await.then_some(())
        })
        .await;
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("app task");
        }
    }

    pub(crate) async fn post_alert(&self, body: &str) -> (u16, serde_json::Value) {
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

    pub(crate) async fn get_json(&self, path: &str) -> serde_json::Value {
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

    pub(crate) async fn metrics(&self) -> String {
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
    pub(crate) async fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics().await, series)
    }

    pub(crate) async fn ready(&self) -> bool {
        self.http
            .get(self.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// Actions of the ledger, filtered by a query string like `subject=a@b`.
    pub(crate) async fn actions(&self, query: &str) -> Vec<serde_json::Value> {
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
