//! Which metric series exist from the start: the label values the configuration and the code's
//! closed sets name, handed to [`Metrics::init_series`] so each is exported at zero before its
//! first event (a counter that appears with its first failure is invisible to `rate()`).

use crate::action::Operation;
use crate::connectors::{ConnectorSet, Outcome};
use crate::guard::GuardHit;
use crate::policy::Mode;
use crate::telemetry::{KnownLabels, Metrics};

use super::Settings;

/// Export every series the settings and built connectors name, at zero.
pub(super) fn init(metrics: &Metrics, settings: &Settings, connectors: &ConnectorSet) {
    let formats = crate::alert::NormalizerRegistry::new().names();
    let connectors = connectors
        .iter()
        .map(|(name, c)| {
            let ops = Operation::ALL
                .into_iter()
                .filter(|op| c.supports(*op))
                .map(Operation::as_str)
                .collect();
            (name.as_str(), ops)
        })
        .collect();
    let http = crate::api::known_http_series();
    metrics.init_series(&KnownLabels {
        sources: formats,
        actions: Operation::ALL.map(Operation::as_str).to_vec(),
        modes: modes().map(Mode::as_str).to_vec(),
        connectors,
        attempt_outcomes: attempt_outcomes().iter().map(Outcome::as_str).collect(),
        guards: guards().map(GuardHit::as_str).to_vec(),
        sinks: settings
            .notify
            .sinks
            .iter()
            .map(|s| s.name.as_str())
            .collect(),
        http: http
            .iter()
            .map(|(route, method, statuses)| {
                (
                    *route,
                    *method,
                    statuses.iter().map(String::as_str).collect(),
                )
            })
            .collect(),
    });
}

// Each list below starts with an exhaustive match: a new variant does not compile until it is
// listed, so no series is forgotten.

fn modes() -> [Mode; 3] {
    match Mode::Enforce {
        Mode::Enforce | Mode::DryRun | Mode::Approval => {}
    }
    [Mode::Enforce, Mode::DryRun, Mode::Approval]
}

fn guards() -> [GuardHit; 4] {
    match GuardHit::Protected {
        GuardHit::Protected | GuardHit::DryRun | GuardHit::ProtectedGroup | GuardHit::Breaker => {}
    }
    [
        GuardHit::Protected,
        GuardHit::DryRun,
        GuardHit::ProtectedGroup,
        GuardHit::Breaker,
    ]
}

fn attempt_outcomes() -> [Outcome; 5] {
    match Outcome::Done {
        Outcome::Done
        | Outcome::AlreadyDone
        | Outcome::NotFound
        | Outcome::Retry { .. }
        | Outcome::Failed { .. } => {}
    }
    [
        Outcome::Done,
        Outcome::AlreadyDone,
        Outcome::NotFound,
        Outcome::Retry {
            after: None,
            reason: String::new(),
        },
        Outcome::Failed {
            reason: String::new(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_closed_label_set_is_exported_at_zero_before_any_event() {
        let settings = Settings::from_toml("", []).expect("empty config");
        let metrics = Metrics::new();
        init(&metrics, &settings, &ConnectorSet::new());
        let zero = |name: &str, labels: &[(&str, &str)]| {
            assert_eq!(metrics.value(name, labels), Some(0.0), "{name} {labels:?}");
        };
        zero(
            "alerts_total",
            &[("source", "ocsf"), ("outcome", "dead_lettered")],
        );
        zero(
            "decisions_total",
            &[("action", "disable_account"), ("mode", "approval")],
        );
        zero("guard_blocks_total", &[("guard", "protected_group")]);
        zero("dead_letters_total", &[("stage", "action")]);
        zero("policy_reloads_total", &[("outcome", "rejected")]);
        zero("policy_reloads_total", &[("outcome", "ok")]);
        zero("time_to_containment_seconds", &[("from", "ingest")]);
        for (method, route) in crate::api::ROUTES {
            zero(
                "http_request_duration_seconds",
                &[("route", *route), ("method", *method)],
            );
            zero(
                "http_requests_total",
                &[("route", *route), ("method", *method), ("status", "500")],
            );
        }
        zero(
            "http_requests_total",
            &[
                ("route", "/v1/alerts"),
                ("method", "POST"),
                ("status", "202"),
            ],
        );
        zero(
            "http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")],
        );
        let text = metrics.render();
        assert!(
            text.contains("deprovd_build_info{arch=") && text.contains("version=\""),
            "{text}"
        );
    }
}
