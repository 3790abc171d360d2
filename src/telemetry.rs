//! Tracing setup and the Prometheus registry.
//!
//! Metrics are typed handles on one [`Metrics`] value, created once and shared by `Arc`, so call sites
//! cannot invent label sets: every label is a bounded enum-like string (source format, outcome,
//! connector instance name, operation), never a user id.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::Deserialize;

/// `[telemetry]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `text` (human) or `json` (one object per line, for log pipelines).
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter; the `RUST_LOG` environment variable wins when set.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl TelemetryConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<crate::config::Problem>) {
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            problems.push(crate::config::Problem::new(
                format!("{path}.log_level"),
                format!("`{}` is not a valid log filter", self.log_level),
            ));
        }
    }
}

/// Install the global tracing subscriber. Safe to call twice (the second call is a no-op), which
/// tests rely on.
pub fn init_tracing(cfg: &TelemetryConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Every metric deprovd exports, names as in DESIGN.md (all prefixed `deprovd_`).
pub struct Metrics {
    registry: Registry,
    /// `alerts_total{source,outcome}`: source = format name, outcome = accepted | dead_lettered | duplicate.
    pub alerts: IntCounterVec,
    pub policy_eval_seconds: Histogram,
    /// Policy evaluations that returned errors (bad decisions, over budget).
    pub policy_errors: IntCounterVec,
    pub decisions: IntCounterVec,
    /// `actions_total{connector,operation,outcome}`: final outcome of an action (succeeded, failed, skipped, dry_run, coalesced, …).
    pub actions: IntCounterVec,
    /// `action_attempts_total{connector,outcome}`: each connector call.
    pub action_attempts: IntCounterVec,
    /// `time_to_containment_seconds{from}`: from = alert_time | ingest.
    pub time_to_containment: HistogramVec,
    pub ledger_pending: IntGauge,
    pub guard_blocks: IntCounterVec,
    /// `breaker_open{scope}`: scope = `global` or a connector instance name (bounded by config).
    pub breaker_open: IntGaugeVec,
    /// `policy_reloads_total{outcome}`.
    pub policy_reloads: IntCounterVec,
    /// `dead_letters_total{stage}`: stage = ingest | action.
    pub dead_letters: IntCounterVec,
    /// `notifications_total{sink,outcome}`: outcome = delivered | failed | dropped; sink = a
    /// configured sink name, or `all` for notices dropped before any sink saw them.
    pub notifications: IntCounterVec,
    /// `ssf_sets_total{receiver,outcome}`: SETs received; receiver = configured name, outcome =
    /// accepted | control | duplicate | unavailable | an RFC 8935 error code.
    pub ssf_sets: IntCounterVec,
    /// `ssf_transmitted_total{receiver,outcome}`: SETs deprovd sent; outcome = delivered | rejected |
    /// failed | dropped (queue full, receiver `*`).
    pub ssf_transmitted: IntCounterVec,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_design() {
        let m = Metrics::new();
        m.alerts.with_label_values(&["ocsf", "accepted"]).inc();
        m.actions
            .with_label_values(&["scim", "disable_account", "succeeded"])
            .inc();
        let text = m.render();
        assert!(text.contains("deprovd_alerts_total{outcome=\"accepted\",source=\"ocsf\"} 1"));
        assert!(text.contains(
            "deprovd_actions_total{connector=\"scim\",operation=\"disable_account\",outcome=\"succeeded\"} 1"
        ));
    }
}
