//! Hostile documents over HTTP: duplicate JSON keys are refused everywhere (and a refused alert is
//! dead-lettered with the reason), and an Okta delivery over the event cap is refused whole.

use std::time::Duration;

use serde_json::{Value, json};

use crate::kit::connector::webhook;
use crate::kit::{DISABLE_ALL_POLICY, TestApp, eventually, policy_dir};

/// The app with its executor off (nothing here should act), its data in the returned directory.
async fn app() -> (TestApp, tempfile::TempDir, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder()
        .data_dir(data.path())
        .policies(policies.path())
        .with(|s| s.executor.enabled = false)
        .connector("hook", webhook("hook", "http://127.0.0.1:9"))
        .redis()
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;
    (app, data, policies)
}

async fn post(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .post(app.url(path))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_alert_with_a_duplicate_key_is_refused_and_dead_lettered_with_the_reason() {
    let (app, data, _p) = app().await;
    let doc = r#"{"id": "dup-1", "source": {"vendor": "t"}, "severity": "low",
        "category": "credential_theft", "title": "t", "subjects": [{"email": "d@example.org"}],
        "severity": "critical"}"#;
    let (status, body) = post(&app, "/v1/alerts", doc).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_json", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("duplicate key `severity`"), "{message}");
    // Nested too: a second `email` inside a subject.
    let nested = r#"{"id": "dup-2", "source": {"vendor": "t"}, "severity": "high",
        "category": "credential_theft", "title": "t",
        "subjects": [{"email": "a@example.org", "email": "b@example.org"}]}"#;
    let (status, body) = post(&app, "/v1/alerts", nested).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key `email`")
    );

    let dlq = data.path().join("alerts.dlq.jsonl");
    let lines = eventually(Duration::from_secs(5), "two dead letters", || async {
        let text = std::fs::read_to_string(&dlq).ok()?;
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() == 2).then_some(lines)
    })
    .await;
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("duplicate key `severity`"),
        "{}",
        lines[0]
    );
    assert!(app.actions("").await.is_empty(), "nothing was planned");
    app.stop().await;
}

#[tokio::test]
async fn api_bodies_with_duplicate_keys_are_refused_at_any_depth() {
    let (app, _d, _p) = app().await;
    let (status, body) = post(
        &app,
        "/v1/lockouts",
        r#"{"subject": "a@example.org", "reason": "r", "subject": "breakglass@example.org"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("duplicate key"));
    let (status, body) = post(
        &app,
        "/v1/breaker/reset",
        r#"{"scope": "global", "scope": "hook"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("duplicate key"));
    app.stop().await;
}

fn okta_delivery(events: usize) -> String {
    let events: Vec<Value> = (0..events)
        .map(|i| {
            json!({
                "uuid": format!("evt-{i}-{}", uuid::Uuid::new_v4()),
                "published": chrono::Utc::now().to_rfc3339(),
                "eventType": "security.threat.detected",
                "version": "0",
                "severity": "ERROR",
                "displayMessage": "Threat suspected",
                "actor": {"id": "00uAdmin", "type": "User", "alternateId": "okta-admin@corp.example"},
                "target": [{"id": format!("00u{i}"), "type": "User", "alternateId": format!("user{i}@corp.example")}],
                "outcome": {"result": "FAILURE"},
            })
        })
        .collect();
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://corp.okta.com/api/v1/eventHooks/who1",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "data": {"events": events},
        "eventTime": chrono::Utc::now().to_rfc3339(),
        "contentType": "application/json",
    })
    .to_string()
}

#[tokio::test]
async fn an_okta_delivery_over_the_event_cap_is_refused_whole_and_one_at_okta_size_is_taken() {
    let (app, _d, _p) = app().await;
    let cap = deprovd::MAX_EVENTS_PER_DELIVERY;
    for n in [cap + 1, 2000] {
        let started = std::time::Instant::now();
        let (status, body) = post(&app, "/v1/alerts?format=okta", &okta_delivery(n)).await;
        assert_eq!(status, 413, "{n} events: {body}");
        assert_eq!(body["code"], "too_large", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{n}")) && message.contains(&format!("limit of {cap}")),
            "{message}"
        );
        eprintln!("{n}-event delivery refused in {:?}", started.elapsed());
    }
    assert!(
        app.actions("limit=1000").await.is_empty(),
        "nothing of a refused delivery is recorded"
    );
    let started = std::time::Instant::now();
    let (status, body) = post(&app, "/v1/alerts?format=okta", &okta_delivery(50)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["alerts"].as_array().unwrap().len(), 50, "{body}");
    eprintln!("50-event delivery accepted in {:?}", started.elapsed());
    app.stop().await;
}
