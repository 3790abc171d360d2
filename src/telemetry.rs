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
///
/// Text logs are coloured only when stderr is a terminal (a file or a pipe gets no ANSI codes), and
/// every field value and message in them goes through [`EscapeControls`]: a newline in an alert id
/// or a query parameter cannot start a forged log line. JSON logs need no such step: JSON escapes
/// control characters inside strings.
pub fn init_tracing(cfg: &TelemetryConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init()
            .is_ok(),
        LogFormat::Text => {
            text_subscriber(filter, std::io::stderr, std::io::stderr().is_terminal())
                .try_init()
                .is_ok()
        }
    };
}

/// The text-format subscriber: [`EscapeControls`] on every field, ANSI colour only if `ansi`.
pub fn text_subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
    ansi: bool,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .fmt_fields(EscapeControls::default())
        .finish()
}

/// Field formatting for text logs that escapes control characters in every field value and
/// message: `\n`, `\r`, `\t` as such, every other C0/C1 control, DEL and the Unicode line and
/// paragraph separators as `\u{…}`. It sits at the formatter, under every call site, so none can
/// forget. (tracing-subscriber's own sanitising escapes ESC and C1 but keeps line breaks.) Field
/// names are written without ANSI styling, as the escaping writer cannot tell styling from data.
#[derive(Debug, Default)]
pub struct EscapeControls(tracing_subscriber::fmt::format::DefaultFields);

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for EscapeControls {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut escaping = Escaping(&mut writer);
        self.0.format_fields(
            tracing_subscriber::fmt::format::Writer::new(&mut escaping),
            fields,
        )
    }
}

/// A `fmt::Write` that escapes control characters on the way through.
struct Escaping<'a, W: std::fmt::Write>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s;
        while let Some(at) =
            rest.find(|c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found a char here");
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
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

    /// A clone of one buffer, as an `io::Write` the subscriber can make per event.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_field_cannot_forge_a_text_log_line() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = text_subscriber(
            tracing_subscriber::EnvFilter::new("info"),
            move || sink.clone(),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("alert", alert_id = "id\r\nFAKE span");
            let _in = span.enter();
            tracing::info!(
                alert_id = "a\nFAKE level=ERROR",
                format = %"x\u{1b}[31m\tred",
                "received\nFAKE message"
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r#"alert_id="a\nFAKE level=ERROR""#), "{text}");
        assert!(text.contains(r"received\nFAKE message"), "{text}");
        assert!(text.contains(r"x\u{1b}[31m\tred"), "{text}");
        assert!(text.contains(r"id\r\nFAKE span"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no raw ESC without a terminal: {text:?}"
        );
    }
}
