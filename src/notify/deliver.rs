//! The background side of the [`Notifier`]: drains the notice queue and delivers to every sink that
//! hears the event, with retries, without ever making a caller wait.
//!
//! Shape: one dispatcher task renders each notice once per sink and hands it to that sink's bounded
//! queue (`try_send`: a full queue drops the delivery, counted `dropped`); each sink has
//! `concurrency` workers that post with retries. So a hung or failing receiver occupies only its own
//! workers: other sinks, the executor and every other caller go on.
//!
//! Retries reuse the executor's [`Backoff`] (exponential, full jitter, `Retry-After` as a floor) and
//! the HTTP runtime's [`retry_after`] parsing; webhook signing is the webhook connector's scheme
//! ([`sign_webhook`]), so one receiver-side check ([`verify_webhook`](crate::net::signing::verify_webhook))
//! verifies both. The URL is a credential: it is never logged, and transport errors are logged with
//! the URL stripped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::config::NotifyConfig;
use super::template::Renderer;
use super::{Notice, Notifier};
use crate::config::Problem;
use crate::net::headers::retry_after;
use crate::net::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook};
use crate::retry::Backoff;
use crate::telemetry::{Delivery as DeliveryOutcome, Metrics};

/// Header naming the event, so webhook receivers can route without parsing the body.
pub(crate) const EVENT_HEADER: &str = "x-deprovd-event";

/// One sink, resolved and compiled.
struct Sink {
    name: String,
    kind: String,
    url: SecretString,
    secret: Option<SecretString>,
    events: BTreeSet<String>,
    renderer: Renderer,
    concurrency: usize,
    timeout: Duration,
}

/// One rendered notice on its way to one sink.
struct Delivery {
    event: &'static str,
    /// Stable across retries: receivers de-duplicate on it (`Idempotency-Key`).
    id: String,
    body: Vec<u8>,
}

/// The delivery task, built by [`build`] and run by the application.
pub(crate) struct NotifyService {
    rx: mpsc::Receiver<Notice>,
    sinks: Vec<Arc<Sink>>,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    max_attempts: u32,
    queue: usize,
    client: reqwest::Client,
}

/// Resolve the sinks' secrets, check their URLs and compile their templates. With no sinks the
/// notifier is [`Notifier::disabled`] and there is nothing to run. Every problem is listed (paths
/// as in the config; never a secret's value).
pub(crate) fn build(
    cfg: &NotifyConfig,
    metrics: Arc<Metrics>,
) -> Result<(Notifier, Option<NotifyService>), Vec<Problem>> {
    if cfg.sinks.is_empty() {
        return Ok((Notifier::disabled(), None));
    }
    let mut problems = Vec::new();
    let mut sinks = Vec::new();
    for (i, s) in cfg.sinks.iter().enumerate() {
        let at = format!("notify.sinks[{i}]");
        let url = match s.url.parse().and_then(|r| r.resolve()) {
            Ok(u) => match reqwest::Url::parse(u.expose_secret()) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(u),
                _ => {
                    problems.push(Problem::new(
                        format!("{at}.url"),
                        format!(
                            "the value of `{}` is not an http(s) URL",
                            s.url.0.split_once(':').map_or("", |(k, _)| k)
                        ),
                    ));
                    None
                }
            },
            Err(e) => {
                problems.push(Problem::new(format!("{at}.url"), e.to_string()));
                None
            }
        };
        let secret = match &s.secret {
            None => None,
            Some(t) => match t.parse().and_then(|r| r.resolve()) {
                Ok(v) => Some(v),
                Err(e) => {
                    problems.push(Problem::new(format!("{at}.secret"), e.to_string()));
                    None
                }
            },
        };
        let renderer = match Renderer::new(&s.kind, &s.templates) {
            Ok(r) => Some(r),
            Err(errs) => {
                for (event, m) in errs {
                    problems.push(Problem::new(format!("{at}.templates.{event}"), m));
                }
                None
            }
        };
        if let (Some(url), Some(renderer)) = (url, renderer) {
            sinks.push(Arc::new(Sink {
                name: s.name.clone(),
                kind: s.kind.clone(),
                url,
                secret,
                events: s.event_set().into_iter().map(str::to_string).collect(),
                renderer,
                concurrency: s.concurrency.max(1),
                timeout: s.timeout,
            }));
        }
    }
    let client =
        crate::net::client(None).map_err(|e| vec![Problem::new("notify", e.to_string())])?;
    if !problems.is_empty() {
        return Err(problems);
    }
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let notifier = Notifier::from_sender(tx).with_drop_counter(metrics.notifications_dropped());
    Ok((
        notifier,
        Some(NotifyService {
            rx,
            sinks,
            metrics,
            backoff: cfg.retry.in_memory_backoff(),
            max_attempts: cfg.retry.max_attempts.max(1),
            queue: cfg.queue.max(1),
            client,
        }),
    ))
}

/// How one request ended.
enum Sent {
    Ok,
    Retry {
        after: Option<Duration>,
        why: String,
    },
    Fatal(String),
}

impl NotifyService {
    /// Deliver until `stop` turns true. Notices still queued or retrying then are abandoned (they
    /// are best effort; the audit trail holds the facts).
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut workers = JoinSet::new();
        let mut queues = Vec::new();
        for sink in &self.sinks {
            let (tx, rx) = mpsc::channel::<Delivery>(self.queue);
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..sink.concurrency {
                let worker = Worker {
                    sink: sink.clone(),
                    rx: rx.clone(),
                    client: self.client.clone(),
                    metrics: self.metrics.clone(),
                    backoff: self.backoff,
                    max_attempts: self.max_attempts,
                };
                workers.spawn(worker.run());
            }
            queues.push((sink.clone(), tx));
        }
        loop {
            let notice = tokio::select! {
                n = self.rx.recv() => n,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(notice) = notice else { break };
            self.dispatch(&notice, &queues);
        }
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }

    fn dispatch(&self, notice: &Notice, queues: &[(Arc<Sink>, mpsc::Sender<Delivery>)]) {
        let event = notice.event();
        let id = uuid::Uuid::now_v7().to_string();
        for (sink, tx) in queues {
            if !sink.events.contains(event) {
                continue;
            }
            let body = match sink.renderer.render(notice) {
                Ok(b) => b,
                Err(e) => {
                    // Templates were rendered against samples at startup; this is a value the
                    // samples did not foresee. Counted and logged, never retried.
                    self.count(&sink.name, DeliveryOutcome::Failed);
                    error!(sink = %sink.name, event, error = %e, "cannot render notification");
                    continue;
                }
            };
            let delivery = Delivery {
                event,
                id: id.clone(),
                body,
            };
            if tx.try_send(delivery).is_err() {
                self.count(&sink.name, DeliveryOutcome::Dropped);
                warn!(sink = %sink.name, event, "notification sink queue full: notice dropped");
            }
        }
    }

    fn count(&self, sink: &str, outcome: DeliveryOutcome) {
        self.metrics.notification(sink, outcome);
    }
}

struct Worker {
    sink: Arc<Sink>,
    rx: Arc<Mutex<mpsc::Receiver<Delivery>>>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    max_attempts: u32,
}

impl Worker {
    async fn run(self) {
        loop {
            let next = self.rx.lock().await.recv().await;
            let Some(d) = next else { return };
            let outcome = self.deliver(&d).await;
            self.metrics.notification(&self.sink.name, outcome);
        }
    }

    /// Post with retries; returns the metric outcome.
    async fn deliver(&self, d: &Delivery) -> DeliveryOutcome {
        let sink = &self.sink;
        for attempt in 1..=self.max_attempts {
            match self.send_once(d).await {
                Sent::Ok => {
                    debug!(sink = %sink.name, event = d.event, attempt, "notification delivered");
                    return DeliveryOutcome::Delivered;
                }
                Sent::Fatal(why) => {
                    warn!(sink = %sink.name, kind = %sink.kind, event = d.event, attempt, error = %why,
                        "notification refused by the receiver; not retried");
                    return DeliveryOutcome::Failed;
                }
                Sent::Retry { after, why } => {
                    if attempt == self.max_attempts {
                        warn!(sink = %sink.name, kind = %sink.kind, event = d.event, attempts = attempt,
                            error = %why, "notification failed; retry budget spent");
                        return DeliveryOutcome::Failed;
                    }
                    let wait = self.backoff.delay(attempt, after, &mut rand::rng());
                    debug!(sink = %sink.name, event = d.event, attempt, error = %why,
                        wait_ms = wait.as_millis() as u64, "notification will be retried");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        DeliveryOutcome::Failed
    }

    async fn send_once(&self, d: &Delivery) -> Sent {
        let sink = &self.sink;
        let mut req = self
            .client
            .post(sink.url.expose_secret())
            .timeout(sink.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("idempotency-key", d.id.as_str())
            .header(EVENT_HEADER, d.event);
        if let Some(secret) = &sink.secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            req = req
                .header(SIGNATURE_HEADER, sign_webhook(secret, now, &d.body))
                .header(TIMESTAMP_HEADER, now);
        }
        let resp = match req.body(d.body.clone()).send().await {
            Ok(r) => r,
            // `without_url`: the URL is the credential.
            Err(e) => {
                return Sent::Retry {
                    after: None,
                    why: e.without_url().to_string(),
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Sent::Ok;
        }
        let after = retry_after(resp.headers(), SystemTime::now());
        let text = error_excerpt(resp).await;
        let excerpt: String = text.chars().take(200).collect();
        let why = format!("HTTP {}: {}", status.as_u16(), excerpt.trim());
        if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
            Sent::Retry { after, why }
        } else {
            Sent::Fatal(why)
        }
    }
}

/// Most bytes of a refusing receiver's body read for the log line (which keeps 200 characters): the
/// receiver is remote and may answer with an endless or huge body, which must cost neither memory nor a
/// worker's time.
const ERROR_BODY_CAP: usize = 4096;

async fn error_excerpt(resp: reqwest::Response) -> String {
    String::from_utf8_lossy(&crate::net::read_prefix(resp, ERROR_BODY_CAP).await).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::{SecretText, SinkConfig};

    fn sink(name: &str, kind: &str, url: &str, secret: Option<&str>) -> SinkConfig {
        SinkConfig {
            name: name.into(),
            kind: kind.into(),
            url: SecretText(url.into()),
            secret: secret.map(|s| SecretText(s.into())),
            events: None,
            templates: Default::default(),
            concurrency: 1,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn no_sinks_means_a_disabled_notifier_and_nothing_to_run() {
        let (n, service) = build(&NotifyConfig::default(), Arc::new(Metrics::new())).unwrap();
        assert!(service.is_none());
        assert!(!n.notify(crate::notify::template::sample("restored").unwrap()));
    }

    #[test]
    fn unresolvable_secrets_and_non_http_urls_are_listed_without_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let not_url = dir.path().join("not-a-url");
        std::fs::write(&not_url, "ftp://files.example/hook-secret-value\n").unwrap();
        let cfg = NotifyConfig {
            sinks: vec![
                sink("a", "slack", "env:DEPROVD_TEST_NOTIFY_UNSET_URL", None),
                sink(
                    "b",
                    "webhook",
                    &format!("file:{}", not_url.display()),
                    Some("env:DEPROVD_TEST_NOTIFY_UNSET_SECRET"),
                ),
            ],
            ..Default::default()
        };
        let problems = match build(&cfg, Arc::new(Metrics::new())) {
            Err(p) => p,
            Ok(_) => panic!("must fail"),
        };
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:#?}");
        assert!(text[0].starts_with("notify.sinks[0].url: environment variable"));
        assert!(text[1].starts_with("notify.sinks[1].url: "), "{}", text[1]);
        assert!(
            text[2].starts_with("notify.sinks[1].secret: "),
            "{}",
            text[2]
        );
        assert!(
            text.iter().all(|t| !t.contains("hook-secret-value")),
            "never the value: {text:#?}"
        );
    }
}
