//! The Prometheus registry: every metric deprovd exports, registered once. Labelled series are
//! private to [`super`]: they are written only through the typed events in [`super::events`], whose
//! enums own every label value, so no call site can pass a wrong or unbounded label.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::events::{ActionEnd, AlertOutcome, ContainmentFrom, DeadLetterStage, Delivery};
use super::events::{PolicyErrorKind, ReloadOutcome, ShadowDisagreement};

/// Every metric deprovd exports, names as in DESIGN.md (all prefixed `deprovd_`).
pub struct Metrics {
    registry: Registry,
    /// The standard `process_*` metrics (CPU, resident memory, open fds, start time), unprefixed as
    /// every Prometheus client exports them, so they sit in a registry of their own.
    process: Registry,
    /// `alerts_total{source,outcome}`: source = format name, outcome = accepted | dead_lettered | duplicate.
    pub(super) alerts: IntCounterVec,
    /// `alert_problems_total{format,kind}`: what was odd about accepted alerts (a time in seconds,
    /// a severity out of range, a time of receipt standing in); kind = a closed set.
    pub(super) alert_problems: IntCounterVec,
    pub policy_eval_seconds: Histogram,
    /// Policy evaluations that returned errors (bad decisions, over budget).
    pub(super) policy_errors: IntCounterVec,
    pub(super) decisions: IntCounterVec,
    /// `actions_total{connector,operation,outcome}`: final outcome of an action (succeeded, failed, skipped, dry_run, coalesced, …).
    pub(super) actions: IntCounterVec,
    /// `action_attempts_total{connector,outcome}`: each connector call.
    pub(super) action_attempts: IntCounterVec,
    /// `time_to_containment_seconds{from}`: from = alert_time | ingest.
    pub(super) time_to_containment: HistogramVec,
    pub ledger_pending: IntGauge,
    /// `kafka_consumer_lag`: messages on the assigned partitions not yet taken by this replica.
    pub(super) kafka_consumer_lag: IntGauge,
    /// `connector_queue_depth{connector}`: due actions waiting in a connector's lane.
    pub(super) queue_depth: IntGaugeVec,
    /// `connector_oldest_due_seconds{connector}`: how long the lane's oldest due action has been
    /// due (0 when none is).
    pub(super) oldest_due: GaugeVec,
    /// `action_wait_seconds{connector,reason}`: time an action spent waiting, by reason.
    pub(super) action_wait: HistogramVec,
    pub(super) guard_blocks: IntCounterVec,
    /// `breaker_open{scope}`: scope = `global` or a connector instance name (bounded by config).
    pub(super) breaker_open: IntGaugeVec,
    /// `policy_reloads_total{outcome}`.
    pub(super) policy_reloads: IntCounterVec,
    /// `tls_reloads_total{outcome}`: the API's certificate and key files re-read after a change
    /// (file watch or SIGHUP); `rejected` keeps the previous certificate serving.
    pub(super) tls_reloads: IntCounterVec,
    /// `shadow_disagreements_total{kind}`: the shadow bundle decided a (subject, action) otherwise.
    pub(super) shadow_disagreements: IntCounterVec,
    /// `dead_letters_total{stage}`: stage = ingest | action.
    pub(super) dead_letters: IntCounterVec,
    /// `notifications_total{sink,outcome}`: outcome = delivered | failed | dropped; sink = a
    /// configured sink name, or `all` for notices dropped before any sink saw them.
    pub(super) notifications: IntCounterVec,
    /// `ssf_sets_total{receiver,outcome}`: SETs received; receiver = configured name, outcome =
    /// accepted | control | duplicate | unavailable | an RFC 8935 error code.
    pub(super) ssf_sets: IntCounterVec,
    /// `ssf_transmitted_total{receiver,outcome}`: SETs deprovd sent; outcome = delivered | rejected |
    /// failed | dropped (queue full, receiver `*`).
    pub(super) ssf_transmitted: IntCounterVec,
    /// `http_requests_total{route,method,status}`: route = the router's template
    /// (`/v1/actions/{key}`) or `unmatched`, never the raw path, so cardinality stays bounded.
    pub(super) http_requests: IntCounterVec,
    /// `http_request_duration_seconds{route,method}`: handler time, same labels.
    pub(super) http_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("deprovd".into()), None).expect("valid prefix");
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry
                    .register(Box::new(m.clone()))
                    .expect("unique metric");
                m
            }};
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        // Containment spans milliseconds (immediate) to hours (approvals, retries).
        let ttc_buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            900.0, 3600.0,
        ];
        Self {
            alerts: reg!(counter(
                "alerts_total",
                "Alerts received, by source format and outcome.",
                &["source", "outcome"]
            )),
            alert_problems: reg!(counter(
                "alert_problems_total",
                "Problems noted on accepted alerts (guessed or replaced facts), by format and kind.",
                &["format", "kind"]
            )),
            policy_eval_seconds: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "policy_eval_seconds",
                        "Time to evaluate the policy bundle on one alert."
                    )
                    .buckets(vec![
                        0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005, 0.02, 0.1
                    ])
                )
                .expect("valid metric")
            ),
            policy_errors: reg!(counter(
                "policy_errors_total",
                "Policy evaluations that produced errors.",
                &["kind"]
            )),
            decisions: reg!(counter(
                "decisions_total",
                "Policy decisions, by action and mode.",
                &["action", "mode"]
            )),
            actions: reg!(counter(
                "actions_total",
                "Actions reaching an end state, by connector, operation and outcome.",
                &["connector", "operation", "outcome"]
            )),
            action_attempts: reg!(counter(
                "action_attempts_total",
                "Connector calls, by connector and outcome.",
                &["connector", "outcome"]
            )),
            time_to_containment: reg!(
                HistogramVec::new(
                    HistogramOpts::new(
                        "time_to_containment_seconds",
                        "From alert time or ingest time to the connector's success."
                    )
                    .buckets(ttc_buckets.clone()),
                    &["from"]
                )
                .expect("valid metric")
            ),
            ledger_pending: reg!(
                IntGauge::new("ledger_pending", "Actions not yet in an end state.")
                    .expect("valid metric")
            ),
            kafka_consumer_lag: reg!(
                IntGauge::new(
                    "kafka_consumer_lag",
                    "Messages on this replica's assigned partitions not yet taken (high watermark minus position)."
                )
                .expect("valid metric")
            ),
            queue_depth: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "connector_queue_depth",
                        "Due actions waiting for a free slot in a connector's lane."
                    ),
                    &["connector"]
                )
                .expect("valid metric")
            ),
            oldest_due: reg!(
                GaugeVec::new(
                    Opts::new(
                        "connector_oldest_due_seconds",
                        "How long the oldest due action of a connector's lane has been due."
                    ),
                    &["connector"]
                )
                .expect("valid metric")
            ),
            action_wait: reg!(
                HistogramVec::new(
                    HistogramOpts::new(
                        "action_wait_seconds",
                        "Time actions waited, by connector and reason (queued in the lane, \
                         paced by the target's rate budget, retry backoff)."
                    )
                    .buckets(ttc_buckets),
                    &["connector", "reason"]
                )
                .expect("valid metric")
            ),
            guard_blocks: reg!(counter(
                "guard_blocks_total",
                "Actions stopped or held by a guard.",
                &["guard"]
            )),
            breaker_open: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "breaker_open",
                        "1 while the blast-radius breaker of a scope (global or a connector) is open."
                    ),
                    &["scope"]
                )
                .expect("valid metric")
            ),
            policy_reloads: reg!(counter(
                "policy_reloads_total",
                "Policy bundle reloads, by outcome.",
                &["outcome"]
            )),
            tls_reloads: reg!(counter(
                "tls_reloads_total",
                "API TLS certificate reloads, by outcome (rejected: the previous certificate keeps serving).",
                &["outcome"]
            )),
            shadow_disagreements: reg!(counter(
                "shadow_disagreements_total",
                "Subject-action pairs the shadow bundle decided otherwise than the live one, by kind.",
                &["kind"]
            )),
            dead_letters: reg!(counter(
                "dead_letters_total",
                "Inputs or actions dead-lettered, by stage.",
                &["stage"]
            )),
            notifications: reg!(counter(
                "notifications_total",
                "Notifications to people, by sink and outcome.",
                &["sink", "outcome"]
            )),
            ssf_sets: reg!(counter(
                "ssf_sets_total",
                "Shared Signals SETs received, by receiver and outcome.",
                &["receiver", "outcome"]
            )),
            ssf_transmitted: reg!(counter(
                "ssf_transmitted_total",
                "Shared Signals SETs sent, by receiver and outcome.",
                &["receiver", "outcome"]
            )),
            http_requests: reg!(counter(
                "http_requests_total",
                "HTTP API requests, by route template, method and status.",
                &["route", "method", "status"]
            )),
            http_duration: reg!(
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "HTTP API request handling time, by route template and method."
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        2.5, 10.0
                    ]),
                    &["route", "method"]
                )
                .expect("valid metric")
            ),
            registry,
            process: process_registry(),
        }
        .with_build_info()
    }

    /// `deprovd_build_info{version,profile,arch} 1`: which build each replica runs, joinable onto
    /// any other series (`* on (instance) group_left(version) deprovd_build_info`).
    fn with_build_info(self) -> Self {
        let info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version", "profile", "arch"],
        )
        .expect("valid metric");
        self.registry
            .register(Box::new(info.clone()))
            .expect("unique metric");
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), profile, std::env::consts::ARCH])
            .set(1);
        self
    }

    /// Export every series whose label values are known at startup at zero, so the first event of a
    /// kind is a change a `rate()` or `increase()` can see (a counter born at 1 is invisible to
    /// both), and dashboards and alert rules find their series before anything has happened.
    pub fn init_series(&self, known: &KnownLabels<'_>) {
        for source in &known.sources {
            for outcome in AlertOutcome::ALL {
                self.alerts.with_label_values(&[*source, outcome.as_str()]);
            }
        }
        for action in &known.actions {
            for mode in &known.modes {
                self.decisions.with_label_values(&[*action, *mode]);
            }
        }
        for (connector, operations) in &known.connectors {
            for operation in operations {
                for end in ActionEnd::ALL {
                    self.actions
                        .with_label_values(&[*connector, *operation, end.as_str()]);
                }
            }
            for outcome in &known.attempt_outcomes {
                self.action_attempts
                    .with_label_values(&[*connector, *outcome]);
            }
            self.lane_series(connector);
        }
        for guard in &known.guards {
            self.guard_blocks.with_label_values(&[*guard]);
        }
        for sink in &known.sinks {
            for outcome in Delivery::ALL {
                self.notifications
                    .with_label_values(&[*sink, outcome.as_str()]);
            }
        }
        for from in ContainmentFrom::ALL {
            self.time_to_containment.with_label_values(&[from.as_str()]);
        }
        for kind in PolicyErrorKind::ALL {
            self.policy_errors.with_label_values(&[kind.as_str()]);
        }
        for outcome in ReloadOutcome::ALL {
            self.policy_reloads.with_label_values(&[outcome.as_str()]);
            self.tls_reloads.with_label_values(&[outcome.as_str()]);
        }
        for kind in ShadowDisagreement::ALL {
            self.shadow_disagreements
                .with_label_values(&[kind.as_str()]);
        }
        for stage in DeadLetterStage::ALL {
            self.dead_letters.with_label_values(&[stage.as_str()]);
        }
        for (route, method, statuses) in &known.http {
            self.http_duration.with_label_values(&[*route, *method]);
            for status in statuses {
                self.http_requests
                    .with_label_values(&[*route, *method, *status]);
            }
        }
    }

    /// The current value of one series (`name` without the `deprovd_` prefix), `None` when it
    /// does not exist: for tests and checks that assert on a metric without parsing text.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use prometheus::proto::MetricType;
        let full = format!("deprovd_{name}");
        let family = self
            .registry
            .gather()
            .into_iter()
            .find(|f| f.name() == full)?;
        let kind = family.get_field_type();
        let m = family.get_metric().iter().find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })?;
        Some(match kind {
            MetricType::COUNTER => m.get_counter().get_value(),
            MetricType::GAUGE => m.get_gauge().get_value(),
            _ => m.get_histogram().get_sample_count() as f64,
        })
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// The label values of series to export at zero from the start ([`Metrics::init_series`]): what the
/// configuration and the code's closed sets name. The caller (the application, which sees every
/// layer) fills it; this layer knows only strings.
#[derive(Debug, Default)]
pub struct KnownLabels<'a> {
    /// Alert formats (`alerts_total{source}`).
    pub sources: Vec<&'a str>,
    /// Decision actions and modes (`decisions_total{action,mode}`).
    pub actions: Vec<&'a str>,
    pub modes: Vec<&'a str>,
    /// Each connector instance with the operations it supports (`actions_total`,
    /// `action_attempts_total`; its lane's `connector_queue_depth`, `connector_oldest_due_seconds`
    /// and `action_wait_seconds`). `breaker_open{scope}` is set at zero by the breaker itself, and
    /// only when it is enabled.
    pub connectors: Vec<(&'a str, Vec<&'a str>)>,
    /// Connector call outcomes (`action_attempts_total{outcome}`).
    pub attempt_outcomes: Vec<&'a str>,
    /// Guards (`guard_blocks_total{guard}`).
    pub guards: Vec<&'a str>,
    /// Notification sinks (`notifications_total{sink}`).
    pub sinks: Vec<&'a str>,
    /// HTTP routes as (route template, method, statuses) (`http_requests_total{route,method,status}`
    /// for each status, `http_request_duration_seconds{route,method}`).
    pub http: Vec<(&'a str, &'a str, Vec<&'a str>)>,
}

/// A registry with the process collector (Linux `/proc/self`; elsewhere it exports nothing).
fn process_registry() -> Registry {
    let registry = Registry::new();
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
    registry
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
