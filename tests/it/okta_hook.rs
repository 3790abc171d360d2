//! Okta event hooks over HTTP ingest: one delivery carries several System Log events; each becomes its
//! own alert, a bad event is dead-lettered alone, and Okta's one-time verification GET is answered.

use std::time::Duration;

use serde_json::{Value, json};

use crate::kit::connector::webhook;
use crate::kit::{DISABLE_ALL_POLICY, Target, TestApp, eventually, policy_dir, unique};

fn event(uuid: Option<&str>, login: &str, event_type: &str) -> Value {
    let mut e = json!({
        "published": chrono::Utc::now().to_rfc3339(),
        "eventType": event_type,
        "version": "0",
        "severity": "ERROR",
        "displayMessage": "Threat suspected",
        "actor": {"id": "00uAdmin", "type": "User", "alternateId": "okta-admin@corp.example"},
        "target": [{"id": format!("00u-{login}"), "type": "User", "alternateId": login}],
        "client": {"ipAddress": "198.51.100.20"},
        "outcome": {"result": "FAILURE"},
    });
    if let Some(u) = uuid {
        e["uuid"] = u.into();
    }
    e
}

/// An event that cannot be an alert: it says nothing about what happened (no `eventType`).
fn broken(login: &str) -> Value {
    let mut e = event(Some(&unique("evt")), login, "user.account.lock");
    e.as_object_mut().unwrap().remove("eventType");
    e
}

async fn app(hook: &Target) -> (TestApp, tempfile::TempDir, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder()
        .data_dir(data.path())
        .policies(policies.path())
        .quick_scan()
        .connector("hook", webhook("hook", &hook.url()))
        .redis()
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;
    (app, data, policies)
}

#[tokio::test]
async fn one_hook_delivery_becomes_one_alert_per_event_and_a_bad_event_dead_letters_alone() {
    let hook = Target::hook().await;
    let (app, data, _p) = app(&hook).await;
    let (a, b, c) = (unique("u"), unique("u"), unique("u"));
    let (ua, uc) = (unique("evt"), unique("evt"));
    let delivery = json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://corp.okta.com/api/v1/eventHooks/who8abc",
        "eventId": unique("hook"),
        "eventTime": chrono::Utc::now().to_rfc3339(),
        "contentType": "application/json",
        "data": {"events": [
            event(Some(&ua), &format!("{a}@corp.example"), "user.account.lock"),
            broken(&format!("{b}@corp.example")),
            event(Some(&uc), &format!("{c}@corp.example"), "user.account.lock"),
        ]},
    });
    let (status, body) = app.post_alert(&delivery.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alert_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ua.as_str(), uc.as_str()]);
    assert_eq!(body["rejected"][0]["at"], "data.events[1]");
    assert_eq!(
        body["rejected"][0]["reason"],
        "okta: data.events[1]: eventType is missing"
    );
    // Both good events are acted on; the bad one's user is not.
    eventually(Duration::from_secs(10), "both calls made", || async {
        (hook.count("POST", "/hook") == 2).then_some(())
    })
    .await;
    let called: Vec<String> = hook
        .seen()
        .iter()
        .filter_map(|s| serde_json::from_slice::<Value>(&s.body).ok())
        .map(|b| b["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(called.contains(&format!("{a}@corp.example")), "{called:?}");
    assert!(called.contains(&format!("{c}@corp.example")), "{called:?}");
    // The dead letter holds that event alone (its own bytes), the reason and where it sat.
    let dlq = data.path().join("alerts.dlq.jsonl");
    let line = eventually(Duration::from_secs(5), "dead letter written", || async {
        std::fs::read_to_string(&dlq)
            .ok()
            .and_then(|t| t.lines().last().map(str::to_string))
    })
    .await;
    let rec: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(rec["reason"], "okta: data.events[1]: eventType is missing");
    assert_eq!(rec["origin"]["deprovd-origin-part"], "data.events[1]");
    let payload: Value = serde_json::from_str(rec["payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        payload["target"][0]["alternateId"],
        format!("{b}@corp.example")
    );
    assert!(
        payload.get("data").is_none(),
        "the envelope is not dead-lettered"
    );
    // Each alert keeps its own event as raw: the ledger links each action to its own alert id.
    let acts = app.actions(&format!("subject={a}@corp.example")).await;
    assert_eq!(acts[0]["origin"]["alert_id"], ua.as_str());
    app.stop().await;
}

#[tokio::test]
async fn an_event_without_uuid_gets_a_content_id_and_its_redelivery_acts_once() {
    let hook = Target::hook().await;
    let (app, _data, _p) = app(&hook).await;
    let login = format!("{}@corp.example", unique("u"));
    let ev = event(None, &login, "user.account.lock");
    let delivery =
        |ev: &Value| json!({"eventType": "com.okta.event_hook", "data": {"events": [ev]}});
    let (status, first) = app.post_alert(&delivery(&ev).to_string()).await;
    assert_eq!(status, 202, "{first}");
    let id = first["alerts"][0]["alert_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"), "{first}");
    assert!(
        first.to_string().contains("id_derived"),
        "the derived id is noted: {first}"
    );
    // Okta redelivers the same event: re-indented, its keys in another order.
    let mut keys: Vec<(String, Value)> = ev.as_object().unwrap().clone().into_iter().collect();
    keys.reverse();
    let reordered = format!(
        "{{\n  \"eventType\": \"com.okta.event_hook\",\n  \"data\": {{\"events\": [{{{}}}]}}\n}}",
        keys.iter()
            .map(|(k, v)| format!("{}: {v}", Value::from(k.as_str())))
            .collect::<Vec<_>>()
            .join(",\n    ")
    );
    let (status, again) = app.post_alert(&reordered).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["alerts"][0]["alert_id"], id.as_str(), "{again}");
    eventually(Duration::from_secs(10), "the account acted on", || async {
        (hook.count("POST", "/hook") >= 1).then_some(())
    })
    .await;
    let acts = app.actions(&format!("subject={login}")).await;
    assert_eq!(acts.len(), 1, "acted once: {acts:?}");
    assert_eq!(hook.count("POST", "/hook"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_whose_every_event_is_bad_is_refused() {
    let hook = Target::start().await;
    let (app, _data, _p) = app(&hook).await;
    let delivery = json!({"eventType": "com.okta.event_hook", "data": {"events": [
        broken("x@corp.example"),
    ]}});
    let (status, body) = app.post_alert(&delivery.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid");
    assert!(
        body.to_string()
            .contains("data.events[0]: eventType is missing"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn okta_verification_challenge_is_echoed_to_an_ingest_caller_only() {
    let hook = Target::start().await;
    let (app, _data, _p) = app(&hook).await;
    let r = app
        .http
        .get(app.url("/v1/alerts"))
        .bearer_auth(&app.token)
        .header(
            "X-Okta-Verification-Challenge",
            "ku3jTGHi9x0uVHqWxVBpb_3lRFFVbqiOg8cHFimA",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"verification": "ku3jTGHi9x0uVHqWxVBpb_3lRFFVbqiOg8cHFimA"})
    );
    let r = app
        .http
        .get(app.url("/v1/alerts"))
        .header("X-Okta-Verification-Challenge", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(app.url("/v1/alerts"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}
