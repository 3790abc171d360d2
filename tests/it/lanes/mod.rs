//! No connector slows another (issue 16): a throttled target and a target that hangs until its
//! timeout only ever consume their own lanes. The fast connector's time from alert to request,
//! and a responder's manual lockout on it, stay within a small factor of the same run without the
//! slow connectors.
//!
//! Two replicas share one Redis ledger, as in production: an ingest-only replica takes the alerts
//! and an executor replica runs them, so every action goes through the ledger's due index and the
//! executor's claims (the path a backlog can clog), not only the in-process handoff.

pub(crate) mod load;

use std::time::{Duration, Instant};

use serde_json::json;

use crate::kit::connector::instance;
use crate::kit::{DISABLE_ALL_POLICY, TestApp, alert_json, eventually, policy_dir, unique};
use load::{FastTarget, hanging_target, latencies, quantile, summary, throttled_target};

/// Alerts per run: each is one action per configured connector.
const ALERTS: usize = 150;

/// A responder's `disable_account` lockout of `subject` on the fast connector; its id and the
/// instant just before the POST.
async fn lock_out(app: &TestApp, subject: &str) -> (String, Instant) {
    let t0 = Instant::now();
    (app.disable_via_lockout(subject, "fast").await, t0)
}

/// What one run measured on the fast connector.
struct Run {
    /// Alert POST → fast target request, sorted.
    alerts: Vec<Duration>,
    /// Lockout POST → fast target request.
    lockout: Duration,
}

/// One run: `ALERTS` alerts, then a manual lockout on the fast connector, with or without the slow
/// connectors configured beside it.
async fn run(with_slow: bool) -> Run {
    let fast = FastTarget::start().await;
    let (throttled, hanging) = (throttled_target().await, hanging_target().await);
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let prefix = format!("{}:", unique("lanes"));
    let replica = |executor: bool| {
        let mut b = TestApp::builder()
            .policies(policies.path())
            .redis_prefix(&prefix)
            .fast_executor()
            .connector(
                "fast",
                instance(load::webhook_fields(&fast.url(), Duration::from_secs(5))),
            )
            .with(move |s| {
                s.guards.breaker.enabled = false;
                s.executor.enabled = executor;
                // A scaled-down backlog: the claim batch is smaller than one run's slow actions.
                s.executor.batch = 64;
            });
        if with_slow {
            b = b
                .connector(
                    "throttled",
                    instance(load::webhook_fields(
                        &format!("http://{}", throttled),
                        Duration::from_secs(5),
                    )),
                )
                .connector(
                    "hanging",
                    instance(load::webhook_fields(
                        &format!("http://{}", hanging.0),
                        Duration::from_secs(1),
                    )),
                );
        }
        b.spawn()
    };
    let ingest = replica(false).await;
    let executor = replica(true).await;
    ingest.wait_ready(Duration::from_secs(20)).await;
    executor.wait_ready(Duration::from_secs(20)).await;

    let run_id = unique("lanes");
    let subject = |id: &str| alert_json(id, &format!("{id}@example.com"));
    let sent = load::post_alerts(&ingest.url(""), &ingest.token, &run_id, ALERTS, subject).await;
    let alerts = latencies(&fast, &sent, Duration::from_secs(120)).await;

    // A responder's lockout on the fast connector, behind whatever backlog the slow ones have.
    let (id, t0) = lock_out(&ingest, &format!("{run_id}-manual@example.com")).await;
    let lockout = latencies(&fast, &[(id, t0)], Duration::from_secs(120)).await[0];
    if with_slow {
        // Not vacuous: the slow lanes really had a backlog meanwhile, and their gauges show it.
        for lane in ["throttled", "hanging"] {
            let series = format!("deprovd_connector_queue_depth{{connector=\"{lane}\"}}");
            eventually(Duration::from_secs(10), &series, || async {
                executor.metric(&series).await.filter(|n| *n > 0.0)
            })
            .await;
        }
    }
    ingest.stop().await;
    executor.stop().await;
    Run { alerts, lockout }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttled_and_a_hanging_connector_do_not_delay_a_fast_one() {
    let alone = run(false).await;
    let beside = run(true).await;
    eprintln!(
        "fast connector, alert → request ({ALERTS} alerts)\n  alone:          {}  lockout {:.1} ms\n  beside slow:    {}  lockout {:.1} ms",
        summary(&alone.alerts),
        alone.lockout.as_secs_f64() * 1e3,
        summary(&beside.alerts),
        beside.lockout.as_secs_f64() * 1e3,
    );
    // Within a small factor, with a floor for scheduling noise on a busy test machine.
    let bound = |d: Duration| d * 3 + Duration::from_millis(250);
    for q in [0.5, 0.99] {
        let (a, b) = (quantile(&alone.alerts, q), quantile(&beside.alerts, q));
        assert!(
            b <= bound(a),
            "p{} alert → request: {b:?} beside the slow connectors, {a:?} alone",
            q * 100.0
        );
    }
    let worst_alone = quantile(&alone.alerts, 0.99).max(alone.lockout);
    assert!(
        beside.lockout <= bound(worst_alone),
        "a manual lockout on the fast connector waited {:?} behind the slow connectors' backlog \
         ({:?} alone)",
        beside.lockout,
        alone.lockout
    );
}

/// A policy that disables every subject of every alert, whatever its severity.
const DISABLE_EVERY_SEVERITY: &str = r#"package deprovd

import rego.v1

decisions contains d if {
    some s in input.alert.subjects
    d := {"action": "disable_account", "subject": s.email, "reason": "test", "rule": "test.every"}
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn within_a_lane_a_manual_lockout_then_a_critical_alert_go_before_older_low_ones() {
    let fast = FastTarget::start().await;
    let policies = policy_dir(&[("p.rego", DISABLE_EVERY_SEVERITY)]);
    let prefix = format!("{}:", unique("lanes"));
    let mut fields = load::webhook_fields(&fast.url(), Duration::from_secs(5));
    fields["concurrency"] = json!(1);
    let replica = |executor: bool| {
        TestApp::builder()
            .policies(policies.path())
            .redis_prefix(&prefix)
            .fast_executor()
            .connector("fast", instance(fields.clone()))
            .with(move |s| {
                s.guards.breaker.enabled = false;
                s.executor.enabled = executor;
            })
            .spawn()
    };
    // The backlog is recorded before any executor runs: a storm of low-severity alerts, then a
    // critical one, then a responder's lockout.
    let ingest = replica(false).await;
    ingest.wait_ready(Duration::from_secs(20)).await;
    let run_id = unique("order");
    let with_severity = |severity: &'static str| {
        move |id: &str| {
            let mut a: serde_json::Value =
                serde_json::from_str(&alert_json(id, &format!("{id}@example.com"))).unwrap();
            a["severity"] = json!(severity);
            a.to_string()
        }
    };
    let api = ingest.url("");
    let lows = load::post_alerts(&api, &ingest.token, &run_id, 20, with_severity("low")).await;
    let critical = format!("{run_id}-critical");
    let crit =
        load::post_alerts(&api, &ingest.token, &critical, 1, with_severity("critical")).await;
    let (lockout, _) = lock_out(&ingest, &format!("{run_id}-manual@example.com")).await;

    // One slot: the executor starts them one at a time, most urgent first.
    let executor = replica(true).await;
    let now = Instant::now();
    let mut all = lows.clone();
    all.extend(crit.iter().cloned());
    all.push((lockout.clone(), now));
    latencies(&fast, &all, Duration::from_secs(60)).await;
    let mut order: Vec<(Instant, String)> = all
        .iter()
        .map(|(id, _)| (fast.arrival(id).expect("arrived"), id.clone()))
        .collect();
    order.sort();
    let order: Vec<&str> = order.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(order[0], lockout, "{order:?}");
    assert_eq!(order[1], crit[0].0, "{order:?}");
    // Then the low ones (among themselves oldest first, to the millisecond: see the store
    // conformance case `lanes_claim_per_connector_most_urgent_first`).
    let mut rest = order[2..].to_vec();
    rest.sort();
    let mut low_ids: Vec<&str> = lows.iter().map(|(id, _)| id.as_str()).collect();
    low_ids.sort();
    assert_eq!(rest, low_ids);
    ingest.stop().await;
    executor.stop().await;
}
