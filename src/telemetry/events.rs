//! Typed metric events: one method per signal on [`Metrics`], and one enum per label whose values
//! are a closed set. A call site says *what happened* (`metrics.action_end(.., ActionEnd::Expired)`);
//! the event owns the metric, the label order and the label strings.

use super::Metrics;

/// Generates a label enum with its Prometheus value per variant.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, for initialising series at zero.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }
    };
}

label_enum! {
    /// `alerts_total{outcome}`.
    AlertOutcome {
        Accepted => "accepted",
        DeadLettered => "dead_lettered",
        Duplicate => "duplicate",
    }
}

label_enum! {
    /// `actions_total{outcome}`: how an action ended, or why it never ran.
    ActionEnd {
        Succeeded => "succeeded",
        NotFound => "not_found",
        Failed => "failed",
        /// A guard skipped it (protected subject or group).
        Skipped => "skipped",
        DryRun => "dry_run",
        /// Absorbed by a live action for the same subject, connector and operation.
        Coalesced => "coalesced",
        Rejected => "rejected",
        Expired => "expired",
        Superseded => "superseded",
        Restored => "restored",
    }
}

label_enum! {
    /// `dead_letters_total{stage}`.
    DeadLetterStage {
        /// Input that could not become an alert.
        Ingest => "ingest",
        /// An action that failed for good.
        Action => "action",
    }
}

label_enum! {
    /// `policy_errors_total{kind}`.
    PolicyErrorKind {
        Evaluation => "evaluation",
        Plan => "plan",
    }
}

label_enum! {
    /// `shadow_disagreements_total{kind}`: how the shadow bundle's decision on a (subject, action)
    /// differed from the live one's.
    ShadowDisagreement {
        NewlyContained => "newly_contained",
        NoLongerContained => "no_longer_contained",
        ModeChanged => "mode_changed",
        ConnectorsChanged => "connectors_changed",
    }
}

label_enum! {
    /// `policy_reloads_total{outcome}` and `tls_reloads_total{outcome}`.
    ReloadOutcome {
        Ok => "ok",
        Rejected => "rejected",
    }
}

label_enum! {
    /// `time_to_containment_seconds{from}`.
    ContainmentFrom {
        /// From when the vendor saw the detection.
        AlertTime => "alert_time",
        /// From when deprovd recorded the action.
        Ingest => "ingest",
    }
}

label_enum! {
    /// `action_wait_seconds{reason}`: what an action waited for.
    WaitReason {
        /// Due, but not started yet: its lane was full, or the next claim round had not come.
        Queued => "queued",
        /// Inside the connector call, paced by the target's announced rate budget.
        RateBudget => "rate_budget",
        /// The delay scheduled before a retry.
        RetryBackoff => "retry_backoff",
    }
}

label_enum! {
    /// `notifications_total{outcome}` and `ssf_transmitted_total{outcome}`.
    Delivery {
        Delivered => "delivered",
        /// The receiver refused it for good (4xx).
        Rejected => "rejected",
        /// Retries ran out.
        Failed => "failed",
        /// The bounded queue was full; it was never sent.
        Dropped => "dropped",
    }
}

/// The `sink`/`receiver` label of a notice or SET dropped before any sink or receiver saw it.
const BEFORE_ANY_SINK: &str = "all";
const BEFORE_ANY_RECEIVER: &str = "*";

impl Metrics {
    /// An alert was accepted, dead-lettered or recognised as a duplicate.
    pub fn alert(&self, format: &str, outcome: AlertOutcome) {
        self.alerts
            .with_label_values(&[format, outcome.as_str()])
            .inc();
    }

    /// An alert of `format` was taken with a problem of `kind` (`ProblemKind::as_str`, a closed set).
    pub fn alert_problem(&self, format: &str, kind: &'static str) {
        self.alert_problems.with_label_values(&[format, kind]).inc();
    }

    /// The policy decided `action` in `mode` (both from their typed `as_str`).
    pub fn decision(&self, action: &'static str, mode: &'static str) {
        self.decisions.with_label_values(&[action, mode]).inc();
    }

    /// `count` policy problems of `kind` on one alert.
    pub fn policy_errors(&self, kind: PolicyErrorKind, count: u64) {
        self.policy_errors
            .with_label_values(&[kind.as_str()])
            .inc_by(count);
    }

    /// The shadow bundle disagreed with the live one on one (subject, action) of an alert.
    pub fn shadow_disagreement(&self, kind: ShadowDisagreement) {
        self.shadow_disagreements
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// One HTTP API request answered: `route` is the router's template or `unmatched` (bounded by
    /// the route table), `method` a closed set.
    pub fn http_request(
        &self,
        route: &str,
        method: HttpMethod,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let status = status.min(999).to_string();
        self.http_requests
            .with_label_values(&[route, method.as_str(), status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    pub fn policy_reload(&self, outcome: ReloadOutcome) {
        self.policy_reloads
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// The API's TLS certificate files changed and were taken (`Ok`) or refused (`Rejected`).
    pub fn tls_reload(&self, outcome: ReloadOutcome) {
        self.tls_reloads
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// An action on `connector` ended (or never ran) with `end`.
    pub fn action_end(&self, connector: &str, operation: &'static str, end: ActionEnd) {
        self.actions
            .with_label_values(&[connector, operation, end.as_str()])
            .inc();
    }

    /// One connector call and its outcome (`Outcome::as_str`).
    pub fn attempt(&self, connector: &str, outcome: &'static str) {
        self.action_attempts
            .with_label_values(&[connector, outcome])
            .inc();
    }

    pub fn containment(&self, from: ContainmentFrom, seconds: f64) {
        self.time_to_containment
            .with_label_values(&[from.as_str()])
            .observe(seconds);
    }

    /// Every series of `connector`'s lane at zero, so dashboards and alert rules see each
    /// configured connector before its first action.
    pub(super) fn lane_series(&self, connector: &str) {
        self.lane(connector, 0, 0.0);
        for reason in WaitReason::ALL {
            self.action_wait
                .with_label_values(&[connector, reason.as_str()]);
        }
    }

    /// `connector`'s lane as a claim round saw it: due actions waiting, and how long the oldest
    /// due one has been due.
    pub fn lane(&self, connector: &str, waiting: u64, oldest_due_seconds: f64) {
        self.queue_depth
            .with_label_values(&[connector])
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.oldest_due
            .with_label_values(&[connector])
            .set(oldest_due_seconds);
    }

    /// The Kafka source's backlog: `messages` on its assigned partitions not yet taken.
    pub fn kafka_lag(&self, messages: u64) {
        self.kafka_consumer_lag
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
    }

    /// An action on `connector` waited `seconds` for `reason`.
    pub fn action_wait(&self, connector: &str, reason: WaitReason, seconds: f64) {
        self.action_wait
            .with_label_values(&[connector, reason.as_str()])
            .observe(seconds);
    }

    /// A guard stopped or held an action (`GuardHit::as_str`).
    pub fn guard_block(&self, guard: &'static str) {
        self.guard_blocks.with_label_values(&[guard]).inc();
    }

    /// The breaker of `scope` (`global` or a configured connector) is open or closed.
    pub fn breaker_open(&self, scope: &str, open: bool) {
        self.breaker_open
            .with_label_values(&[scope])
            .set(i64::from(open));
    }

    pub fn dead_letter(&self, stage: DeadLetterStage) {
        self.dead_letters.with_label_values(&[stage.as_str()]).inc();
    }

    /// A notice to `sink` ended with `outcome`.
    pub fn notification(&self, sink: &str, outcome: Delivery) {
        self.notifications
            .with_label_values(&[sink, outcome.as_str()])
            .inc();
    }

    /// The counter of notices dropped before any sink saw them (queue full).
    pub fn notifications_dropped(&self) -> prometheus::IntCounter {
        self.notifications
            .with_label_values(&[BEFORE_ANY_SINK, Delivery::Dropped.as_str()])
    }

    /// A SET from `receiver` was taken or refused (`outcome`: a stable code of the receiver).
    pub fn ssf_set(&self, receiver: &str, outcome: &'static str) {
        self.ssf_sets.with_label_values(&[receiver, outcome]).inc();
    }

    /// A SET deprovd sent to `receiver` ended with `outcome`.
    pub fn ssf_transmitted(&self, receiver: &str, outcome: Delivery) {
        self.ssf_transmitted
            .with_label_values(&[receiver, outcome.as_str()])
            .inc();
    }

    /// A SET dropped before any receiver saw it (queue full).
    pub fn ssf_dropped(&self) {
        self.ssf_transmitted(BEFORE_ANY_RECEIVER, Delivery::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_writes_its_series_with_the_enum_s_label() {
        let m = Metrics::new();
        m.action_end("okta", "disable_account", ActionEnd::Expired);
        m.action_end("okta", "disable_account", ActionEnd::Expired);
        let labels = [
            ("connector", "okta"),
            ("operation", "disable_account"),
            ("outcome", "expired"),
        ];
        assert_eq!(m.value("actions_total", &labels), Some(2.0));
        m.breaker_open("global", true);
        assert_eq!(m.value("breaker_open", &[("scope", "global")]), Some(1.0));
        m.ssf_dropped();
        assert_eq!(
            m.value(
                "ssf_transmitted_total",
                &[("receiver", "*"), ("outcome", "dropped")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn a_configured_connector_s_lane_series_start_at_zero() {
        let m = Metrics::new();
        m.lane_series("okta");
        let okta = [("connector", "okta")];
        assert_eq!(m.value("connector_queue_depth", &okta), Some(0.0));
        assert_eq!(m.value("connector_oldest_due_seconds", &okta), Some(0.0));
        for reason in ["queued", "rate_budget", "retry_backoff"] {
            let labels = [("connector", "okta"), ("reason", reason)];
            assert_eq!(
                m.value("action_wait_seconds", &labels),
                Some(0.0),
                "{reason}"
            );
        }
        m.lane("okta", 7, 12.5);
        m.action_wait("okta", WaitReason::RateBudget, 0.3);
        assert_eq!(m.value("connector_queue_depth", &okta), Some(7.0));
        assert_eq!(m.value("connector_oldest_due_seconds", &okta), Some(12.5));
        let paced = [("connector", "okta"), ("reason", "rate_budget")];
        assert_eq!(m.value("action_wait_seconds", &paced), Some(1.0));
    }

    #[test]
    fn label_values_are_unique_per_enum() {
        let mut seen = std::collections::HashSet::new();
        assert!(ActionEnd::ALL.iter().all(|e| seen.insert(e.as_str())));
        assert_eq!(seen.len(), ActionEnd::ALL.len());
    }
}

label_enum! {
    /// `http_requests_total{method}`: the methods the API serves, and `other`.
    HttpMethod {
        Get => "GET",
        Post => "POST",
        Head => "HEAD",
        Other => "other",
    }
}

impl HttpMethod {
    pub fn of(method: &str) -> Self {
        match method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "HEAD" => HttpMethod::Head,
            _ => HttpMethod::Other,
        }
    }
}
