//! The Prometheus registry: every metric deprovd exports, registered once. Labelled series are
//! private to [`super`]: they are written only through the typed events in [`super::events`], whose
//! enums own every label value, so no call site can pass a wrong or unbounded label.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric deprovd exports, names as in DESIGN.md (all prefixed `deprovd_`).
pub struct Metrics {
    registry: Registry,
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
    pub(super) guard_blocks: IntCounterVec,
    /// `breaker_open{scope}`: scope = `global` or a connector instance name (bounded by config).
    pub(super) breaker_open: IntGaugeVec,
    /// `policy_reloads_total{outcome}`.
    pub(super) policy_reloads: IntCounterVec,
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
                    .buckets(ttc_buckets),
                    &["from"]
                )
                .expect("valid metric")
            ),
            ledger_pending: reg!(
                IntGauge::new("ledger_pending", "Actions not yet in an end state.")
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
            registry,
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
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
