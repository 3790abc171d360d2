//! The loaded bundle, per-alert evaluation, atomic reload and the file watcher.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use regorus::Value;
use regorus::rvm::vm::RegoVM;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bundle::{self, Bundle, Executable};
use super::value::{ToValueError, to_value};
use super::{Backend, Decision, ENTRYPOINT, PolicyConfig, PolicyError};
use crate::alert::Alert;

/// What the policies decided for one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Valid decisions, in a deterministic order (regorus' set order).
    pub decisions: Vec<Decision>,
    /// Policy errors: the evaluation failed (over budget, runtime error) or an element of the
    /// decision set did not match the [`Decision`] schema. To be counted and audited; never a panic.
    pub errors: Vec<String>,
    /// Digest of the bundle that made these decisions (recorded with each decision).
    pub digest: Arc<str>,
}

/// The loaded policy bundle: shared by `Arc`, evaluated from any number of threads, swapped atomically
/// on reload.
pub struct Policies {
    config: PolicyConfig,
    /// The serving version. Readers clone the `Arc` under a short read lock; a reload compiles outside
    /// the lock and only swaps the pointer, so evaluation never waits on compilation.
    current: RwLock<Arc<Bundle>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("dir", &self.config.dir)
            .field("digest", &self.digest())
            .field("backend", &self.backend())
            .finish()
    }
}

/// Why one alert's evaluation produced no result; recorded among the [`Evaluation`]'s errors.
#[derive(Debug, thiserror::Error)]
enum EvalError {
    /// Part of the input document could not be converted to a regorus value.
    #[error("{part} to policy input: {source}")]
    Input {
        part: &'static str,
        source: ToValueError,
    },
    /// The bundle's data could not be loaded into a new VM.
    #[error("loading data into the VM: {0}")]
    LoadData(String),
    /// The policy failed at run time (over budget, a runtime error); regorus' message.
    #[error("{0}")]
    Failed(String),
    /// No evaluator could be set up on this thread.
    #[error("policy evaluator unavailable")]
    Unavailable,
}

/// A thread's evaluator, tied to the bundle it was built from.
struct Worker {
    bundle_id: u64,
    kind: WorkerKind,
}

enum WorkerKind {
    Vm(Box<RegoVM>),
    Interpreter(Box<regorus::Engine>),
}

thread_local! {
    /// One evaluator per thread: VMs and engines are mutable and not shareable, and building one per
    /// alert would cost more than evaluating. Rebuilt when the thread sees a different bundle.
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

impl Worker {
    fn build(bundle: &Bundle) -> Result<Worker, EvalError> {
        let kind = match &bundle.executable {
            Executable::Vm { program, data } => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                vm.set_data(data.clone())
                    .map_err(|e| EvalError::LoadData(e.to_string()))?;
                vm.set_execution_timer_config(Some(bundle.timer));
                vm.set_max_instructions(bundle.max_instructions);
                WorkerKind::Vm(Box::new(vm))
            }
            Executable::Interpreter { engine } => WorkerKind::Interpreter(engine.clone()),
        };
        Ok(Worker {
            bundle_id: bundle.id,
            kind,
        })
    }

    fn run(&mut self, input: Value) -> Result<Value, EvalError> {
        match &mut self.kind {
            WorkerKind::Vm(vm) => {
                vm.set_input(input);
                vm.execute().map_err(|e| EvalError::Failed(e.to_string()))
            }
            WorkerKind::Interpreter(engine) => {
                engine.set_input(input);
                engine.eval_rule(ENTRYPOINT.to_string()).map_err(|e| {
                    EvalError::Failed(bundle::tidy_rego_error("policy", &e.to_string()))
                })
            }
        }
    }
}

/// The alert as policies see it under `input.alert`: every field but `raw` (which is `input.raw`),
/// serialized exactly as [`Alert`] serializes them, without copying anything.
#[derive(serde::Serialize)]
struct AlertView<'a> {
    id: &'a str,
    source: &'a crate::alert::Source,
    time: &'a DateTime<Utc>,
    severity: crate::alert::Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity_score: Option<f64>,
    category: &'a str,
    title: &'a str,
    subjects: &'a [crate::alert::Subject],
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a crate::alert::Host>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    indicators: &'a [crate::alert::Indicator],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    problems: &'a [crate::alert::AlertProblem],
}

/// Build the input document. `raw` is converted only for bundles that read it (`with_raw`).
fn build_input(
    alert: &Alert,
    now: DateTime<Utc>,
    context: &serde_json::Value,
    with_raw: bool,
) -> Result<Value, EvalError> {
    let view = AlertView {
        id: &alert.id,
        source: &alert.source,
        time: &alert.time,
        severity: alert.severity,
        severity_score: alert.severity_score,
        category: &alert.category,
        title: &alert.title,
        subjects: &alert.subjects,
        host: alert.host.as_ref(),
        indicators: &alert.indicators,
        labels: &alert.labels,
        problems: &alert.problems,
    };
    let input_err = |part| move |source| EvalError::Input { part, source };
    let alert_value = to_value(&view).map_err(input_err("alert"))?;
    let raw = if with_raw {
        to_value(&alert.raw).map_err(input_err("raw alert"))?
    } else {
        Value::Null
    };
    let context = to_value(context).map_err(input_err("context"))?;
    let mut input = BTreeMap::new();
    input.insert(Value::from("alert"), alert_value);
    input.insert(Value::from("raw"), raw);
    input.insert(
        Value::from("now"),
        Value::from(now.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    );
    input.insert(Value::from("context"), context);
    Ok(Value::from(input))
}

/// The element as JSON, cut to a length that fits a log line or an audit record.
fn abbreviate(element: &Value) -> String {
    const MAX: usize = 200;
    let mut text = element.to_string();
    if text.len() > MAX {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Check each element of the result against the [`Decision`] schema.
fn collect_decisions(result: Value, decisions: &mut Vec<Decision>, errors: &mut Vec<String>) {
    let elements: Vec<Value> = match result {
        Value::Undefined => return,
        Value::Set(set) => set.iter().cloned().collect(),
        Value::Array(arr) => arr.iter().cloned().collect(),
        other => {
            errors.push(format!(
                "`{ENTRYPOINT}` must be a set of decision objects, got {other}"
            ));
            return;
        }
    };
    for element in elements {
        // Decisions are few per alert; going through serde_json here keeps one schema (Decision's
        // serde attributes, deny_unknown_fields included) and gives precise messages.
        let parsed = serde_json::to_value(&element)
            .map_err(|e| e.to_string())
            .and_then(|json| Decision::deserialize(json).map_err(|e| e.to_string()));
        match parsed {
            Ok(d) => decisions.push(d),
            Err(e) => errors.push(format!("invalid decision {}: {e}", abbreviate(&element))),
        }
    }
}

impl Policies {
    /// Read, compile and (for the VM) probe the bundle in `config.dir`.
    pub fn load(config: &PolicyConfig) -> Result<Arc<Policies>, PolicyError> {
        let bundle = Bundle::compile(config.scan()?, config)?;
        if config.dir.is_none() {
            tracing::info!(
                "no [policy] dir set: serving the embedded starter policies (`deprovd policy init DIR` writes them out for editing)"
            );
        }
        tracing::info!(
            dir = %config.location(),
            digest = %bundle.digest,
            backend = ?bundle.backend(),
            "policy bundle loaded"
        );
        Ok(Arc::new(Policies {
            config: config.clone(),
            current: RwLock::new(Arc::new(bundle)),
        }))
    }

    fn bundle(&self) -> Arc<Bundle> {
        // A poisoned lock only means a panic elsewhere while holding it; the Arc inside is intact.
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Digest of the serving bundle (SHA-256 hex over its sorted files).
    pub fn digest(&self) -> Arc<str> {
        self.bundle().digest.clone()
    }

    /// When the serving bundle was loaded (at start, or by the reload that brought it in).
    pub fn loaded_at(&self) -> DateTime<Utc> {
        self.bundle().loaded_at
    }

    /// Which evaluator the serving bundle runs on (after any fallback).
    pub fn backend(&self) -> Backend {
        self.bundle().backend()
    }

    /// The configuration this instance was loaded with.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Evaluate the policies for one alert.
    ///
    /// CPU-bound (tens of microseconds, up to `eval_timeout`): call it from a blocking pool or a
    /// dedicated thread, never directly on an async runtime worker. Safe to call concurrently from many
    /// threads; each thread keeps its own evaluator.
    pub fn evaluate(
        &self,
        alert: &Alert,
        now: DateTime<Utc>,
        context: &serde_json::Value,
    ) -> Evaluation {
        let bundle = self.bundle();
        let mut decisions = Vec::new();
        let mut errors = Vec::new();
        match build_input(alert, now, context, bundle.uses_raw) {
            Err(e) => errors.push(e.to_string()),
            Ok(input) => match WORKER.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.as_ref().map(|w| w.bundle_id) != Some(bundle.id) {
                    *slot = Some(Worker::build(&bundle)?);
                }
                match slot.as_mut() {
                    Some(worker) => worker.run(input),
                    None => Err(EvalError::Unavailable),
                }
            }) {
                Ok(result) => collect_decisions(result, &mut decisions, &mut errors),
                Err(e) => errors.push(format!("evaluating `{ENTRYPOINT}`: {e}")),
            },
        }
        Evaluation {
            decisions,
            errors,
            digest: bundle.digest.clone(),
        }
    }

    /// The input document the serving bundle is given for `alert`, as JSON: exactly what
    /// [`evaluate`](Self::evaluate) hands to Rego (`raw` is `null` when no module reads it).
    pub fn input_document(
        &self,
        alert: &Alert,
        now: DateTime<Utc>,
        context: &serde_json::Value,
    ) -> Result<serde_json::Value, PolicyError> {
        let bundle = self.bundle();
        let input = build_input(alert, now, context, bundle.uses_raw)
            .map_err(|e| PolicyError::Input(e.to_string()))?;
        serde_json::to_value(&input).map_err(|e| PolicyError::Input(e.to_string()))
    }

    /// Which `decisions` rules fire for `alert`, each evaluated alone on the interpreter (the files
    /// are read again: run it where the bundle does not change underfoot, as the CLI does).
    pub fn explain(
        &self,
        alert: &Alert,
        now: DateTime<Utc>,
        context: &serde_json::Value,
    ) -> Result<super::Explanation, PolicyError> {
        let bundle = self.bundle();
        let input = build_input(alert, now, context, bundle.uses_raw)
            .map_err(|e| PolicyError::Input(e.to_string()))?;
        let scan = self.config.scan()?;
        super::explain::explain(&scan.files, input).map_err(|problems| PolicyError::Invalid {
            dir: self.config.location(),
            problems,
        })
    }

    /// Re-read and recompile the directory, then swap atomically. On error the serving version stays.
    /// Returns the digest now serving. Called on SIGHUP and by the watcher.
    pub fn reload(&self) -> Result<String, PolicyError> {
        let scan = self.config.scan()?;
        let old = self.bundle();
        if *old.digest == *scan.digest {
            return Ok(scan.digest);
        }
        let new = Arc::new(Bundle::compile(scan, &self.config)?);
        let digest = new.digest.to_string();
        match self.current.write() {
            Ok(mut g) => *g = new.clone(),
            Err(p) => *p.into_inner() = new.clone(),
        }
        tracing::info!(
            dir = %self.config.location(),
            old_digest = %old.digest,
            new_digest = %digest,
            backend = ?new.backend(),
            "policy bundle reloaded"
        );
        Ok(digest)
    }

    /// Poll the directory about once a second and reload when its content changes, until `shutdown`
    /// becomes `true` (or its sender is dropped). A broken version is logged once per distinct digest
    /// and the serving version stays. Polling, not inotify: it works the same on ConfigMap symlink
    /// swaps, network filesystems and editors that write via rename. With `watch = false` the task
    /// ends at once (SIGHUP → [`Policies::reload`] still works). Must be called inside a Tokio runtime.
    pub fn spawn_watcher(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        if !self.config.watch {
            return tokio::spawn(async {});
        }
        self.spawn_watcher_every(Duration::from_secs(1), shutdown)
    }

    /// [`Policies::spawn_watcher`] that also reports every change it took or refused on `events`,
    /// so the caller can count and audit it (this module knows neither the metrics nor the audit
    /// trail). A full channel drops the report; the change is still logged here.
    pub fn spawn_watcher_reporting(
        self: Arc<Self>,
        shutdown: watch::Receiver<bool>,
        events: tokio::sync::mpsc::Sender<WatchEvent>,
    ) -> JoinHandle<()> {
        // The embedded starter set cannot change while the process runs: nothing to watch.
        if !self.config.watch || self.config.dir.is_none() {
            return tokio::spawn(async {});
        }
        self.spawn_watcher_inner(Duration::from_secs(1), shutdown, Some(events))
    }

    pub(crate) fn spawn_watcher_every(
        self: Arc<Self>,
        period: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        self.spawn_watcher_inner(period, shutdown, None)
    }

    fn spawn_watcher_inner(
        self: Arc<Self>,
        period: Duration,
        mut shutdown: watch::Receiver<bool>,
        events: Option<tokio::sync::mpsc::Sender<WatchEvent>>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_failed: Option<String> = None;
            loop {
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                    _ = ticker.tick() => {}
                }
                let this = self.clone();
                let failed = last_failed.clone();
                // Reading files and compiling are blocking work.
                let outcome = tokio::task::spawn_blocking(move || {
                    let scan = this.config.scan().map_err(WatchFailure::Scan)?;
                    let fingerprint = scan.fingerprint();
                    if *scan.digest == *this.digest() || Some(&fingerprint) == failed.as_ref() {
                        return Ok(None);
                    }
                    let digest = scan.digest.clone();
                    this.reload()
                        .map(Some)
                        .map_err(|e| WatchFailure::Compile(digest, fingerprint, e))
                })
                .await;
                match outcome {
                    Ok(Ok(Some(digest))) => {
                        last_failed = None;
                        if let Some(tx) = &events {
                            let _ = tx.try_send(WatchEvent::Reloaded { digest });
                        }
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(WatchFailure::Compile(digest, fingerprint, e))) => {
                        tracing::error!(
                            dir = %self.config.location(),
                            digest = %digest,
                            error = %e,
                            "policy change rejected; the previous version keeps serving"
                        );
                        if let Some(tx) = &events {
                            let _ = tx.try_send(WatchEvent::Rejected(Rejected {
                                digest: digest.clone(),
                                error: e.to_string(),
                            }));
                        }
                        last_failed = Some(fingerprint);
                    }
                    Ok(Err(WatchFailure::Scan(e))) => {
                        tracing::warn!(error = %e, "cannot read the policy directory; will retry");
                    }
                    Err(e) => tracing::error!(error = %e, "policy watcher task failed"),
                }
            }
        })
    }
}

/// What the file watcher did with a change on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The new bundle compiled and now serves; its digest.
    Reloaded { digest: String },
    /// The new bundle was refused (once per distinct digest); the previous one keeps serving.
    Rejected(Rejected),
}

/// A policy change the watcher refused to serve (once per distinct digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Digest of the refused bundle on disk.
    pub digest: String,
    /// Why it was refused (compile errors, listed).
    pub error: String,
}

enum WatchFailure {
    Scan(PolicyError),
    /// Digest (reported), fingerprint (remembered: digest and signature) and why.
    Compile(String, String, PolicyError),
}

// `Policies` is shared across threads by `Arc`; keep it that way.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<Policies>();
};
