//! Tracing setup and the Prometheus registry.
//!
//! Metrics live in one [`Metrics`] value, created once and shared by `Arc`, and are written through
//! typed events (vector's `internal_events` pattern, in [`events`]): each event is a method whose
//! enum arguments own the label values, so call sites cannot invent label sets. Every label is
//! bounded (source format, outcome, connector instance name, operation), never a user id.

use serde::Deserialize;

mod events;
mod metrics;

pub(crate) use events::{
    ActionEnd, AlertOutcome, ContainmentFrom, DeadLetterStage, Delivery, HttpMethod,
    PolicyErrorKind, ReloadOutcome, ShadowDisagreement, WaitReason,
};
pub(crate) use metrics::KnownLabels;
pub use metrics::Metrics;

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
pub(crate) fn text_subscriber<W>(
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
pub(crate) struct EscapeControls(tracing_subscriber::fmt::format::DefaultFields);

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
