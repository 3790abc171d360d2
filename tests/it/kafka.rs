//! Kafka ingest against a real Kafka-protocol broker (tansu, started by scripts/test.sh) and a real
//! SCIM server: at-least-once consumption, redelivery without a second side effect, dead letters, and
//! no offsets while the ledger is down.

use std::time::{Duration, Instant};

use deprovd::{InstanceConfig, KafkaConfig};
use serde_json::json;

use crate::kit::connector::{instance, webhook};
use crate::kit::kafka::{committed, create_topics, produce, read_all, source};
use crate::kit::{
    CountingProxy, DISABLE_ALL_POLICY, Reply, Target, TestApp, TestAppBuilder, alert_json,
    eventually, policy_dir, unique,
};
use crate::scim_server::ScimServer;

/// A Kafka source reading `topic` as `group`, fetching and committing quickly.
fn kafka_config(topic: &str, group: &str) -> KafkaConfig {
    source(
        &[topic],
        group,
        json!({"fetch.wait.max.ms": "5", "auto.commit.interval.ms": "100"}),
    )
}

/// The app as these tests run it: a 50 ms executor scan and a Kafka source.
fn builder(
    data: &std::path::Path,
    policies: &std::path::Path,
    kafka: KafkaConfig,
) -> TestAppBuilder {
    TestApp::builder()
        .data_dir(data)
        .policies(policies)
        .quick_scan()
        .kafka(kafka)
}

/// An app reading a fresh topic (with its dead-letter topic) into a webhook connector `good` whose
/// target accepts every call.
struct Fed {
    target: Target,
    topic: String,
    group: String,
    dlq: String,
    app: TestApp,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// A ready [`Fed`] app.
async fn fed() -> Fed {
    let target = Target::start().await;
    target.always("POST", "/good", Reply::status(204));
    let (topic, group) = (unique("alerts"), unique("deprovd"));
    let dlq = format!("{topic}.dlq");
    create_topics(&[&topic, &dlq]).await;
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path(), kafka_config(&topic, &group))
        .connector("good", webhook("good", &target.url()))
        .redis()
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(20)).await;
    Fed {
        target,
        topic,
        group,
        dlq,
        app,
        _dirs: (data, policies),
    }
}

/// A SCIM connector `scim` to the real SCIM server, through `proxy` (which counts the calls).
pub(crate) fn scim_connector(proxy: &CountingProxy, scim: &ScimServer) -> InstanceConfig {
    instance(json!({
        "type": "scim",
        "base_url": format!("{}/v2", proxy.url()),
        "auth": {
            "scheme": "bearer",
            "token": format!("file:{}", scim.secrets.path().join("token").display()),
        },
    }))
}

#[tokio::test]
async fn kafka_alert_disables_the_user_once_even_when_redelivered() {
    let scim = ScimServer::start().await;
    let proxy = CountingProxy::start(scim.base.trim_end_matches("/v2").to_string()).await;
    let email = format!("{}@corp.example", unique("alice"));
    let user_id = scim.create_user(&email, &email).await;
    let (topic, group) = (unique("alerts"), unique("deprovd"));
    create_topics(&[&topic, &format!("{topic}.dlq")]).await;

    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path(), kafka_config(&topic, &group))
        .connector("scim", scim_connector(&proxy, &scim))
        .redis()
        .spawn()
        .await;
    eventually(
        Duration::from_secs(20),
        "app ready (kafka and store)",
        || async { app.ready().await.then_some(()) },
    )
    .await;

    let alert = alert_json(&unique("cs-alert"), &email);
    produce(&topic, alert.as_bytes()).await;
    eventually(
        Duration::from_secs(20),
        "the SCIM user is disabled",
        || async { (scim.user(&user_id).await["active"] == false).then_some(()) },
    )
    .await;
    assert_eq!(proxy.count("PATCH", "/v2/Users"), 1);

    // Decision, action and outcome are visible in metrics. The outcome is recorded after the PATCH
    // returns, so the SCIM user can be inactive a moment before the counter moves: poll for it.
    let succeeded = "deprovd_actions_total{connector=\"scim\",operation=\"disable_account\",outcome=\"succeeded\"}";
    eventually(
        Duration::from_secs(10),
        "the action's outcome is counted",
        || async { app.metric(succeeded).await.is_some().then_some(()) },
    )
    .await;
    let m = app.metrics().await;
    let v = |s: &str| crate::kit::metric_value(&m, s);
    assert_eq!(
        v("deprovd_decisions_total{action=\"disable_account\",mode=\"enforce\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v(
            "deprovd_actions_total{connector=\"scim\",operation=\"disable_account\",outcome=\"succeeded\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        v("deprovd_time_to_containment_seconds_count{from=\"ingest\"}"),
        Some(1.0)
    );

    // The same alert delivered again: recorded as a duplicate, no second PATCH.
    produce(&topic, alert.as_bytes()).await;
    eventually(
        Duration::from_secs(20),
        "both messages committed",
        || async { (committed(&group, &topic) == Some(2)).then_some(()) },
    )
    .await;
    assert_eq!(
        proxy.count("PATCH", "/v2/Users"),
        1,
        "a redelivered alert must not act twice"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_message_is_dead_lettered_and_the_consumer_moves_on() {
    let Fed {
        target,
        topic,
        group,
        dlq,
        app,
        _dirs,
    } = fed().await;

    produce(&topic, b"{\"this is\": not json").await;
    let email = format!("{}@corp.example", unique("bob"));
    produce(&topic, alert_json(&unique("a"), &email).as_bytes()).await;

    eventually(
        Duration::from_secs(20),
        "the valid alert after the bad one is processed",
        || async { (target.count("POST", "/good") == 1).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "both offsets committed",
        || async { (committed(&group, &topic) == Some(2)).then_some(()) },
    )
    .await;
    let dead = read_all(&dlq, 1, Duration::from_secs(10));
    assert_eq!(dead.len(), 1, "one dead letter");
    let (payload, headers) = &dead[0];
    assert_eq!(payload.as_slice(), b"{\"this is\": not json");
    let header = |k: &str| {
        headers
            .iter()
            .find(|(hk, _)| hk == k)
            .map(|(_, v)| v.clone())
    };
    assert!(
        header("deprovd-reason").unwrap().contains("not valid JSON"),
        "{headers:?}"
    );
    assert_eq!(
        header("deprovd-origin-topic").as_deref(),
        Some(topic.as_str())
    );
    assert_eq!(header("deprovd-origin-offset").as_deref(), Some("0"));
    assert_eq!(
        app.metric("deprovd_dead_letters_total{stage=\"ingest\"}")
            .await,
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn ledger_down_at_start_means_not_ready_and_no_offsets_stored() {
    let (topic, group) = (unique("alerts"), unique("deprovd"));
    create_topics(&[&topic]).await;
    produce(
        &topic,
        alert_json(&unique("a"), "carol@corp.example").as_bytes(),
    )
    .await;
    let closed = crate::scim_server::free_port();
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path(), kafka_config(&topic, &group))
        .with(|s| {
            // A Redis nobody listens on: the ledger is down from the start.
            s.state.backend = deprovd::StoreBackend::Redis;
            s.state.redis.url = Some(format!("redis://127.0.0.1:{closed}/0"));
        })
        .spawn()
        .await;

    // Observe for a while: never ready, never an offset for the waiting alert.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["store"], false, "{body}");
        assert_eq!(
            committed(&group, &topic),
            None,
            "no offset may be stored while the ledger is down"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, body) = app.post_alert(&alert_json("x", "carol@corp.example")).await;
    assert_eq!(status, 503, "HTTP ingest refuses too: {body}");
    app.stop().await;
}

#[tokio::test]
async fn an_okta_hook_message_becomes_one_alert_per_event_and_a_bad_event_is_dead_lettered_alone() {
    let Fed {
        target,
        topic,
        group,
        dlq,
        app,
        _dirs,
    } = fed().await;

    let event = |uuid: Option<String>, login: String| {
        let mut e = serde_json::json!({
            "published": chrono::Utc::now().to_rfc3339(),
            "eventType": "user.account.lock", "severity": "ERROR",
            "target": [{"id": format!("00u-{login}"), "type": "User", "alternateId": login}],
        });
        if let Some(u) = uuid {
            e["uuid"] = u.into();
        }
        e
    };
    let (a, b, c) = (unique("a"), unique("b"), unique("c"));
    // No `eventType`: nothing says what happened, so it cannot be an alert.
    let mut bad = event(Some(unique("e")), format!("{b}@corp.example"));
    bad.as_object_mut().unwrap().remove("eventType");
    let hook = serde_json::json!({
        "eventType": "com.okta.event_hook", "eventTypeVersion": "1.0",
        "source": "https://corp.okta.com/api/v1/eventHooks/who8abc",
        "data": {"events": [
            event(Some(unique("e")), format!("{a}@corp.example")),
            bad,
            event(Some(unique("e")), format!("{c}@corp.example")),
        ]},
    });
    produce(&topic, hook.to_string().as_bytes()).await;

    eventually(
        Duration::from_secs(20),
        "both good events acted on",
        || async { (target.count("POST", "/good") == 2).then_some(()) },
    )
    .await;
    eventually(Duration::from_secs(20), "offset committed", || async {
        (committed(&group, &topic) == Some(1)).then_some(())
    })
    .await;
    let dead = read_all(&dlq, 1, Duration::from_secs(10));
    assert_eq!(dead.len(), 1, "only the bad event");
    let (payload, headers) = &dead[0];
    let payload: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(
        payload["target"][0]["alternateId"],
        format!("{b}@corp.example")
    );
    let header = |k: &str| {
        headers
            .iter()
            .find(|(hk, _)| hk == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("deprovd-reason").as_deref(),
        Some("okta: data.events[1]: eventType is missing")
    );
    assert_eq!(
        header("deprovd-origin-part").as_deref(),
        Some("data.events[1]")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_untimed_alert_is_timed_at_its_kafka_record_timestamp() {
    let Fed {
        target,
        topic,
        app,
        _dirs,
        ..
    } = fed().await;
    let email = format!("{}@corp.example", unique("late"));
    let mut alert: serde_json::Value =
        serde_json::from_str(&alert_json(&unique("untimed"), &email)).unwrap();
    alert.as_object_mut().unwrap().remove("time");
    // The record entered Kafka an hour before deprovd reads it (a consumer restarting behind a
    // lag): its timestamp, not the moment it is normalized, is when the alert was received.
    let created = chrono::Utc::now() - chrono::Duration::hours(1);
    let created_ms = created.timestamp_millis();
    let payload = alert.to_string();
    crate::kit::kafka::producer()
        .send(
            rdkafka::producer::FutureRecord::<(), [u8]>::to(&topic)
                .payload(payload.as_bytes())
                .timestamp(created_ms),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    eventually(Duration::from_secs(20), "the account acted on", || async {
        (target.count("POST", "/good") == 1).then_some(())
    })
    .await;
    let acts = app.actions(&format!("subject={email}")).await;
    let at = acts[0]["origin"]["alert_time"].as_str().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert_eq!(at.timestamp_millis(), created_ms, "{acts:?}");
    app.stop().await;
}
