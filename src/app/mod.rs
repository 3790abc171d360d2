//! `Application::build(settings)` → `port()` → `run_until_stopped()`: wires every part together.
//!
//! Startup is split so that a dependency outage never crashes the process: the HTTP server (health,
//! readiness, metrics) comes up first; the pipeline, executor and Kafka consumer start only once the
//! state store answers. Until then `/readyz` is 503 and nothing is consumed, so no offset can be stored
//! for an alert whose actions are not durable.
//!
//! Audit: once the store answers, a `config` record notes the start (policy digest, backend,
//! connectors); every change of the serving policy digest (file watcher or SIGHUP) is a
//! `policy_reload` record with the old and new digest, and a reload rejected on SIGHUP or by the file
//! watcher is one with the error. These are best effort: a failed append is logged at error level,
//! since nothing waits on them.
//!
//! Notifications: one [`Notifier`] is built from `[notify]` with the rest of the config (bad sinks
//! fail startup) and handed to every part that has news; its delivery task runs beside the HTTP
//! server, independent of the store. The audit mirror (`[audit] kafka_topic`) starts with the core,
//! since it reads the trail from the store.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::api::{ApiState, Readiness, Role, TokenStore};
use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::connectors::ConnectorSet;
use crate::deadletter::{DeadLetterSink, FileDeadLetter};
use crate::executor::{ConnectorLimits, Executor};
use crate::guard::Guards;
use crate::ingest::kafka::{KafkaDeadLetter, KafkaSource};
use crate::ledger::{AuditStore, StateStore};
use crate::notify::{Notifier, NotifyService};
use crate::pipeline::{Decider, Pipeline};
use crate::plan::Planner;
use crate::policy::Policies;
use crate::telemetry::Metrics;

mod reload;
mod series;
mod settings;

pub use settings::Settings;

/// A built, not yet running, deprovd.
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    port: u16,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    api: Arc<ApiState>,
    policies: Arc<Policies>,
    /// The `[policy] shadow_dir` bundle, evaluated beside `policies`, never executed.
    shadow: Option<Arc<crate::pipeline::Shadow>>,
    connectors: ConnectorSet,
    kafka: Option<Arc<KafkaSource>>,
    generated_token: Option<String>,
    notifier: Notifier,
    notify_service: Option<NotifyService>,
    /// `[api.tls]`: the certificate serving now, swapped on file change or SIGHUP.
    tls: Option<Arc<crate::api::tls::ServerTls>>,
}

impl Application {
    /// Validate, load policies and connectors, bind the listener. Fails (listing every problem) on
    /// bad config, policies or connector specs; does not need the store or Kafka to be up.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_dev_token(settings, None).await
    }

    /// [`Application::build`], and when no `[[api.tokens]]` are configured, `dev_token` (not a
    /// random one) is the admin token: `deprovd run --dev --dev-token …` gives a stable token across
    /// restarts for scripts and a browser. Ignored when tokens are configured.
    pub async fn build_with_dev_token(
        settings: Settings,
        dev_token: Option<String>,
    ) -> anyhow::Result<Self> {
        let problems = settings.validate();
        if !problems.is_empty() {
            return Err(crate::config::Problems(problems).into());
        }
        for w in settings.warnings() {
            warn!(path = %w.path, "{}", w.message);
        }
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::default());
        // Every problem with the certificate, key and client CA files at once, before anything
        // else is loaded (`deprovd validate` reports the same).
        let tls = match &settings.api.tls {
            Some(t) => Some(
                crate::api::tls::ServerTls::load(t, "api.tls", metrics.clone())
                    .map_err(crate::config::Problems)?,
            ),
            None => None,
        };

        let policies = Policies::load(&settings.policy).context("loading policies")?;
        let shadow = reload::load_shadow(&settings.policy).context("loading shadow policies")?;
        readiness.policies.store(true, Ordering::Relaxed);

        let connectors =
            crate::connectors::build_all(&settings.connectors, settings.connector_specs.as_deref())
                .map_err(crate::config::Problems)
                .context("building connectors")?;
        series::init(&metrics, &settings, &connectors);
        // A guard no connector can satisfy stops startup here, before anything listens, rather
        // than leaving the pipeline unbuilt behind a live API.
        crate::guard::groups::GroupGuard::new(&settings.guards.protected_groups, &connectors)
            .context("guards.protected_groups")?;

        let (notifier, notify_service) =
            crate::notify::deliver::build(&settings.notify, metrics.clone())
                .map_err(crate::config::Problems)
                .context("building notification sinks")?;

        let mut tokens =
            TokenStore::from_config(&settings.api.tokens).map_err(anyhow::Error::msg)?;
        let generated_token = if settings.api.tokens.is_empty() {
            let token = dev_token.unwrap_or_else(random_token);
            tokens.add(&token, "generated-admin", Role::Admin);
            Some(token)
        } else {
            None
        };

        let kafka = match &settings.kafka {
            Some(k) => {
                let source = Arc::new(KafkaSource::new(k.clone()).map_err(anyhow::Error::msg)?);
                let _ = readiness.kafka.set(source.healthy.clone());
                Some(source)
            }
            None => None,
        };

        let listener = TcpListener::bind(&settings.api.listen)
            .await
            .with_context(|| format!("binding {}", settings.api.listen))?;
        let port = listener.local_addr()?.port();
        let ssf_receivers = crate::ingest::ssf::Receivers::build(&settings.ssf, metrics.clone())
            .map_err(anyhow::Error::msg)?;
        let ssf_transmitter = match &settings.ssf.transmitter {
            Some(t) => Some(
                crate::ssf::transmit::Transmitter::build(t, metrics.clone())
                    .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        let api = Arc::new(ApiState {
            tokens,
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            store: Default::default(),
            dead_letters: Default::default(),
            ssf_receivers,
            ssf_transmitter,
        });
        Ok(Self {
            settings,
            listener,
            port,
            metrics,
            readiness,
            api,
            policies,
            shadow,
            connectors,
            kafka,
            generated_token,
            notifier,
            notify_service,
            tls,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The API's base URL as a client on this host reaches it (`http://127.0.0.1:8780`, `https://…`
    /// with `[api.tls]`); a wildcard listen address is shown as loopback.
    pub fn url(&self) -> String {
        let ip = match self.listener.local_addr() {
            Ok(a) if a.ip().is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
            Ok(a) => a.ip(),
            Err(_) => std::net::IpAddr::from([127, 0, 0, 1]),
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", std::net::SocketAddr::new(ip, self.port))
    }

    /// The admin token generated because no `[[api.tokens]]` were configured (dev mode).
    pub fn generated_token(&self) -> Option<&str> {
        self.generated_token.as_deref()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Run until `shutdown` resolves, then stop taking input, let in-flight work finish, and return.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        // A part that cannot start or dies after start reports here, and the process stops with
        // that cause rather than staying half alive (health 200, readiness 503, the wrong reason).
        let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(4);

        let v1 = crate::api::router(self.api.clone(), self.settings.api.max_body_bytes);
        // Over HTTPS the session cookie is `Secure` whatever `[console] secure_cookie` says; the
        // setting stays for TLS that ends at a proxy in front.
        let mut console = self.settings.console.clone();
        console.secure_cookie |= self.tls.is_some();
        // The console calls the `/v1` router in-process (same roles, same audit), beside it.
        let router = v1.clone().merge(crate::console::router(
            self.api.clone(),
            v1,
            console,
            crate::console::targets(&self.settings.connectors),
        ));
        let listener = self.listener;
        tasks.spawn({
            let serve = crate::api::serve::serve(
                listener,
                router,
                self.settings.api.limits(),
                self.tls.clone(),
                stop_rx.clone(),
            );
            let fatal = fatal_tx.clone();
            let stop = stop_rx.clone();
            async move {
                serve.await;
                if !*stop.borrow() {
                    let _ = fatal
                        .send(anyhow::anyhow!("the HTTP API stopped serving"))
                        .await;
                }
            }
        });
        match &self.tls {
            Some(tls) => {
                info!(
                    port = self.port,
                    client_certificates = tls.requires_client_certificates(),
                    "https api listening"
                );
                tasks.spawn(tls.clone().watch(stop_rx.clone()));
            }
            None => info!(port = self.port, "http api listening"),
        }

        if let Some(service) = self.notify_service {
            tasks.spawn(service.run(stop_rx.clone()));
        }

        // Policies: hot reload on change and on SIGHUP.
        if self.settings.policy.watch {
            let (events_tx, events_rx) = tokio::sync::mpsc::channel(16);
            tasks.spawn({
                let p = self.policies.clone();
                let rx = stop_rx.clone();
                async move {
                    let _ = p.spawn_watcher_reporting(rx, events_tx).await;
                }
            });
            tasks.spawn(report_watcher_events(
                events_rx,
                self.policies.clone(),
                self.metrics.clone(),
                self.api.clone(),
            ));
        }
        if let Some(shadow) = &self.shadow {
            tasks.spawn(reload::watch_shadow(shadow.clone(), stop_rx.clone()));
        }
        #[cfg(unix)]
        tasks.spawn(reload::reload_on_sighup(
            self.policies.clone(),
            self.shadow.clone(),
            self.tls.clone(),
            self.metrics.clone(),
            self.api.clone(),
            stop_rx.clone(),
        ));

        // The store: keep trying until it answers; only then start consuming.
        let settings = self.settings.clone();
        let readiness = self.readiness.clone();
        let metrics = self.metrics.clone();
        let api = self.api.clone();
        let policies = self.policies.clone();
        let shadow = self.shadow.clone();
        let connectors = self.connectors.clone();
        let kafka = self.kafka.clone();
        let notifier = self.notifier.clone();
        let core_stop = stop_rx.clone();
        let core_fatal = fatal_tx.clone();
        tasks.spawn(async move {
            let Some(store) = connect_store(&settings, &readiness, core_stop.clone()).await else {
                return;
            };
            let _ = api.store.set(store.clone());
            if let Err(e) = start_core(
                settings,
                store,
                readiness,
                metrics,
                (policies, shadow),
                connectors,
                kafka,
                api,
                notifier,
                core_stop,
            )
            .await
            {
                error!(error = %format!("{e:#}"), "the pipeline failed; stopping");
                let _ = core_fatal.send(e.context("the pipeline failed")).await;
            }
        });
        drop(fatal_tx);

        tokio::pin!(shutdown);
        let failure = loop {
            tokio::select! {
                _ = &mut shutdown => break None,
                Some(e) = fatal_rx.recv() => break Some(e),
                Some(joined) = tasks.join_next() => {
                    if let Err(e) = joined {
                        if e.is_panic() {
                            break Some(anyhow::anyhow!("a task panicked: {}", panic_message(e)));
                        }
                    }
                }
            }
        };
        if let Some(e) = &failure {
            error!(error = %format!("{e:#}"), "stopping: a part of deprovd failed");
            self.readiness.store.store(false, Ordering::Relaxed);
        }
        info!("shutting down");
        if let Some(p) = self.readiness.pipeline.get() {
            p.begin_shutdown();
        }
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        info!("stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The text of a panicked task's payload, for the exit message.
fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string()),
        Err(e) => e.to_string(),
    }
}

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("dpv_{}", hex::encode(bytes))
}

async fn connect_store(
    settings: &Settings,
    readiness: &Readiness,
    mut stop: watch::Receiver<bool>,
) -> Option<Arc<dyn StateStore>> {
    let mut attempts = crate::retry::Attempts::new(crate::retry::RECONNECT);
    loop {
        match settings.state.open().await {
            Ok(store) => {
                readiness.store.store(true, Ordering::Relaxed);
                info!(backend = ?settings.state.backend, "state store connected");
                return Some(store);
            }
            // A store that answers but cannot keep what it acknowledges: said loudly, and checked
            // again on the same schedule, so fixing the Redis settings needs no restart.
            Err(e @ crate::ledger::StoreError::Refused(_)) => {
                error!(error = %e, "state store refused; not ready, consuming nothing");
            }
            Err(e) => {
                warn!(error = %e, "state store unavailable; not ready, consuming nothing");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(attempts.next_wait()) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn start_core(
    settings: Settings,
    store: Arc<dyn StateStore>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    (policies, shadow): (Arc<Policies>, Option<Arc<crate::pipeline::Shadow>>),
    connectors: ConnectorSet,
    kafka: Option<Arc<KafkaSource>>,
    api: Arc<ApiState>,
    notifier: Notifier,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Failed actions and rejected HTTP alerts: to Kafka when it is configured, else to files.
    let (dead_letters, http_dead_letters): (Arc<dyn DeadLetterSink>, Arc<dyn DeadLetterSink>) =
        match &settings.kafka {
            Some(k) => {
                let producer = k.producer().map_err(anyhow::Error::msg)?;
                (
                    Arc::new(KafkaDeadLetter::new(
                        producer.clone(),
                        k.actions_dlq_topic.clone(),
                    )),
                    Arc::new(KafkaDeadLetter::new(producer, k.http_dlq_topic.clone())),
                )
            }
            None => (
                Arc::new(FileDeadLetter::new(
                    &settings.data_dir.join("actions.dlq.jsonl"),
                )),
                Arc::new(FileDeadLetter::new(
                    &settings.data_dir.join("alerts.dlq.jsonl"),
                )),
            ),
        };
    let _ = api.dead_letters.set(http_dead_letters);
    let limits: BTreeMap<String, ConnectorLimits> = settings
        .connectors
        .iter()
        .map(|(name, c)| {
            let (concurrency, max_attempts) = c.limits(settings.executor.retry.max_attempts);
            (
                name.clone(),
                ConnectorLimits {
                    concurrency,
                    max_attempts,
                },
            )
        })
        .collect();
    let group_guard =
        crate::guard::groups::GroupGuard::new(&settings.guards.protected_groups, &connectors)
            .map_err(anyhow::Error::msg)?
            .map(Arc::new);
    if let Some(g) = &group_guard {
        info!(sources = ?g.sources(), "protected groups are checked through these connectors");
    }
    let identity = crate::identity::Identity::new(&settings.identity);
    let guards =
        Guards::with_identity(&settings.guards, identity.clone()).map_err(anyhow::Error::msg)?;
    let executor = Arc::new(
        Executor::new(
            store.clone(),
            connectors.clone(),
            &limits,
            metrics.clone(),
            dead_letters,
            settings.executor.clone(),
            notifier.clone(),
        )
        .with_group_guard(group_guard)
        // The account each connector resolves is checked against the same protected list.
        .with_protected_subjects(guards.protected()),
    );
    if let Some(t) = &api.ssf_transmitter {
        executor.signal_containment_to(t.emitter());
    }
    let planner = Planner::new(&connectors).with_identity(identity);
    let mut decider = Decider::new(policies, planner, guards, metrics.clone());
    decider.shadow = shadow;
    let mut decision_log = None;
    if let Some(cfg) = &settings.policy.decision_log {
        let (log, task) = crate::pipeline::DecisionLog::new(cfg, stop.clone())?;
        decider.decision_log = Some(log);
        decision_log = Some(task);
    }
    let breaker = crate::guard::Breaker::new(
        &settings.guards.breaker,
        settings.connectors.keys(),
        store.clone(),
        store.clone(),
        metrics.clone(),
        notifier.clone(),
    )
    .map(Arc::new);
    let mut pipeline = Pipeline::new(
        decider,
        store.clone(),
        settings.executor.enabled.then(|| executor.handoff()),
        settings.coalesce_window,
    )
    .with_guards(breaker, settings.guards.approval_ttl, notifier.clone());
    let mut retention = None;
    if let Some(keep) = settings.policy.retain_alerts {
        let (retainer, task) = crate::pipeline::Retainer::new(store.clone(), keep, stop.clone());
        pipeline.retainer = Some(retainer);
        retention = Some(task);
    }
    let pipeline = Arc::new(pipeline);
    let _ = readiness.pipeline.set(pipeline.clone());

    let mut start = AuditDraft::new(
        AuditKind::Config,
        Actor::system("deprovd"),
        serde_json::json!({
            "event": "started",
            "version": env!("CARGO_PKG_VERSION"),
            "backend": format!("{:?}", settings.state.backend).to_lowercase(),
            "connectors": settings.connectors.keys().collect::<Vec<_>>(),
            "executor": settings.executor.enabled,
            "dry_run": settings.guards.dry_run,
            "breaker": settings.guards.breaker.enabled.then(|| serde_json::json!({
                "threshold": settings.guards.breaker.threshold,
                "window_secs": settings.guards.breaker.window.as_secs(),
            })),
        }),
    );
    let serving = pipeline.decider.policies.digest();
    start.policy_digest = Some(serving.to_string());
    append_best_effort(store.as_ref(), start).await;

    let mut tasks = JoinSet::new();
    if let Some(task) = retention {
        tasks.spawn(task);
    }
    if let Some(task) = decision_log {
        tasks.spawn(task);
    }
    tasks.spawn(audit_policy_changes(
        pipeline.decider.policies.clone(),
        serving.to_string(),
        store.clone(),
        stop.clone(),
    ));
    if let (Some(topic), Some(k)) = (&settings.audit.kafka_topic, &settings.kafka) {
        let producer = k.producer().map_err(anyhow::Error::msg)?;
        let mirror = crate::audit_mirror::AuditMirror::new(
            store.clone(),
            store.clone(),
            producer,
            topic.clone(),
        );
        tasks.spawn(mirror.run(stop.clone()));
    }
    let pipeline_store = store.clone();
    tasks.spawn(watch_store(store, readiness.clone(), stop.clone()));
    tasks.spawn(crate::approval::run_expiry(
        pipeline.approvals.clone(),
        stop.clone(),
    ));
    if settings.executor.enabled {
        tasks.spawn(executor.run(stop.clone()));
    } else {
        info!("executor disabled: this replica only records actions");
    }
    if let Some(t) = api.ssf_transmitter.clone() {
        tasks.spawn(t.run(stop.clone()));
    }
    if !api.ssf_receivers.is_empty() {
        tasks.spawn(api.ssf_receivers.clone().run_pollers(
            pipeline.clone(),
            pipeline_store.clone(),
            api.dead_letters.get().cloned(),
            stop.clone(),
        ));
    }
    if let Some(k) = kafka {
        tasks.spawn(k.run(pipeline, stop.clone()));
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                // The rest stop with the process (the caller signals stop on this error).
                return Err(anyhow::anyhow!("a task panicked: {}", panic_message(e)));
            }
        }
    }
    Ok(())
}

/// Append one record; a failure is logged, not returned (nothing waits on these records).
async fn append_best_effort(store: &dyn AuditStore, draft: AuditDraft) {
    let kind = draft.kind.as_str();
    if let Err(e) = store.append_audit(vec![draft]).await {
        error!(error = %e, kind, "could not write to the audit trail");
    }
}

/// Record every change of the serving policy digest, whatever caused it (file watcher or SIGHUP):
/// the digest is checked once a second, which is cheap (an `Arc` clone) and needs no hook in the
/// policy module.
async fn audit_policy_changes(
    policies: Arc<Policies>,
    mut last: String,
    store: Arc<dyn StateStore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = policies.digest();
        if *now != *last {
            let mut d = AuditDraft::new(
                AuditKind::PolicyReload,
                Actor::system("deprovd"),
                serde_json::json!({ "outcome": "ok", "previous": last }),
            );
            d.policy_digest = Some(now.to_string());
            append_best_effort(store.as_ref(), d).await;
            last = now.to_string();
        }
    }
}

/// Count every change the policy file watcher took, as a SIGHUP reload is counted (its audit record
/// is `audit_policy_changes`', which sees the new digest); count and audit every change it refused:
/// a broken bundle on disk is an event an auditor must see even though nothing changed. Ends when
/// the watcher does (it drops the sender).
async fn report_watcher_events(
    mut events: tokio::sync::mpsc::Receiver<crate::policy::WatchEvent>,
    policies: Arc<Policies>,
    metrics: Arc<Metrics>,
    api: Arc<ApiState>,
) {
    while let Some(event) = events.recv().await {
        let r = match event {
            crate::policy::WatchEvent::Reloaded { .. } => {
                metrics.policy_reload(crate::telemetry::ReloadOutcome::Ok);
                continue;
            }
            crate::policy::WatchEvent::Rejected(r) => r,
        };
        metrics.policy_reload(crate::telemetry::ReloadOutcome::Rejected);
        let Some(store) = api.store.get() else {
            warn!(rejected_digest = %r.digest, "policy change rejected before the store answered; not audited");
            continue;
        };
        let mut d = AuditDraft::new(
            AuditKind::PolicyReload,
            Actor::system("policy-watcher"),
            serde_json::json!({
                "outcome": "rejected",
                "error": r.error,
                "rejected_digest": r.digest,
            }),
        );
        d.policy_digest = Some(policies.digest().to_string());
        append_best_effort(store.as_ref(), d).await;
    }
}

/// Flip store readiness with its health, so `/readyz` tells the truth during an outage.
async fn watch_store(
    store: Arc<dyn StateStore>,
    readiness: Arc<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let ok = store.ping().await.is_ok();
        if readiness.store.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                info!("state store reachable again")
            } else {
                warn!("state store unreachable; not ready")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(unix)]
/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
