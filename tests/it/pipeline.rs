//! The whole path through HTTP ingest: policy → ledger → executor → connector, with retries,
//! backoff, budgets and dead letters, against scripted local HTTP targets.

use std::time::Duration;

use crate::kit::connector::{notify_webhook, webhook};
use crate::kit::{
    DISABLE_ALL_POLICY, Reply, Target, TestApp, TestAppBuilder, alert_json, eventually, policy_dir,
    unique,
};

/// The app as these tests run it: fast executor timings, a Redis ledger, 4 KiB bodies.
fn builder(data: &std::path::Path, policies: &std::path::Path) -> TestAppBuilder {
    TestApp::builder()
        .data_dir(data)
        .policies(policies)
        .fast_executor()
        .redis()
        .with(|s| s.api.max_body_bytes = 4096)
}

/// A ready app with one webhook connector `good` whose target answers 204, and the disable-all policy.
async fn with_one_good_webhook() -> (Target, tempfile::TempDir, tempfile::TempDir, TestApp) {
    let target = Target::start().await;
    target.always("POST", "/good", Reply::status(204));
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path())
        .connector("good", webhook("good", &target.url()))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;
    (target, data, policies, app)
}

async fn action_for(app: &TestApp, subject: &str, connector: &str) -> serde_json::Value {
    app.actions(&format!("subject={subject}"))
        .await
        .into_iter()
        .find(|a| a["connector"] == connector)
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn a_hostile_retry_after_is_cut_to_max_retry_after() {
    let target = Target::start().await;
    // Three years: honoured as asked, the action would not be tried again before then.
    target.then(
        "POST",
        "/greedy",
        Reply::status(429).header("Retry-After", "99999999"),
    );
    target.always("POST", "/greedy", Reply::status(204));
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path())
        .with(|s| s.executor.retry.max_retry_after = Duration::from_secs(1))
        .connector("greedy", webhook("greedy", &target.url()))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;

    let subject = format!("{}@corp.example", unique("oscar"));
    let (status, body) = app
        .post_alert(&alert_json(&unique("alert"), &subject))
        .await;
    assert_eq!(status, 202, "{body}");
    let done = eventually(
        Duration::from_secs(10),
        "retried after the capped wait and succeeded",
        || async {
            let a = action_for(&app, &subject, "greedy").await;
            (a["state"] == "succeeded").then_some(a)
        },
    )
    .await;
    assert_eq!(done["attempts"], 2, "{done}");
    let calls: Vec<_> = target
        .seen()
        .into_iter()
        .filter(|s| s.path == "/greedy")
        .collect();
    assert_eq!(calls.len(), 2);
    let gap = calls[1].at - calls[0].at;
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_secs(8),
        "retried after {gap:?}: the Retry-After, cut to max_retry_after = 1s"
    );
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_failing_target_fails_alone() {
    let target = Target::start().await;
    target.then(
        "POST",
        "/slow",
        Reply::status(429).header("Retry-After", "2"),
    );
    target.always("POST", "/slow", Reply::status(204));
    target.always("POST", "/broken", Reply::status(500));
    target.always("POST", "/good", Reply::status(204));
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let url = target.url();
    let app = builder(data.path(), policies.path())
        .connector("slow", webhook("slow", &url))
        .connector("broken", webhook("broken", &url))
        .connector("good", webhook("good", &url))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;

    let subject = format!("{}@corp.example", unique("mallory"));
    let (status, body) = app
        .post_alert(&alert_json(&unique("alert"), &subject))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["decisions"][0]["action"], "disable_account");
    assert_eq!(
        body["actions"].as_array().unwrap().len(),
        3,
        "one action per capable connector: {body}"
    );

    // The healthy connector is not held up by the failing one.
    let good = eventually(
        Duration::from_secs(10),
        "good connector succeeds",
        || async {
            let a = action_for(&app, &subject, "good").await;
            (a["state"] == "succeeded").then_some(a)
        },
    )
    .await;
    assert_eq!(good["attempts"], 1);

    // 429 + Retry-After: 2 → the retry comes no sooner than 2 s after the first call.
    eventually(
        Duration::from_secs(15),
        "slow connector succeeds after its retry",
        || async {
            (action_for(&app, &subject, "slow").await["state"] == "succeeded").then_some(())
        },
    )
    .await;
    let slow: Vec<_> = target
        .seen()
        .into_iter()
        .filter(|s| s.path == "/slow")
        .collect();
    assert_eq!(slow.len(), 2, "one 429, one success");
    let gap = slow[1].at - slow[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, before Retry-After"
    );

    // 500 every time → failed after the budget (3 attempts), dead-lettered with the reason.
    let broken = eventually(
        Duration::from_secs(15),
        "broken connector fails",
        || async {
            let a = action_for(&app, &subject, "broken").await;
            (a["state"] == "failed").then_some(a)
        },
    )
    .await;
    assert_eq!(broken["attempts"], 3, "{broken}");
    assert_eq!(target.count("POST", "/broken"), 3);
    assert!(
        broken["last_error"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{broken}"
    );
    let good_at = target
        .seen()
        .into_iter()
        .find(|s| s.path == "/good")
        .unwrap()
        .at;
    let last_broken_at = target
        .seen()
        .into_iter()
        .filter(|s| s.path == "/broken")
        .last()
        .unwrap()
        .at;
    assert!(
        good_at < last_broken_at,
        "the good connector acted while the broken one was still retrying"
    );

    let dlq =
        std::fs::read_to_string(data.path().join("actions.dlq.jsonl")).expect("dead-letter file");
    let rec: serde_json::Value = serde_json::from_str(dlq.lines().next().unwrap()).unwrap();
    assert!(rec["reason"].as_str().unwrap().contains("gave up"), "{rec}");
    assert!(
        rec["payload"]
            .as_str()
            .unwrap()
            .contains(broken["key"].as_str().unwrap())
    );

    let failed = app
        .metric("deprovd_actions_total{connector=\"broken\",operation=\"disable_account\",outcome=\"failed\"}")
        .await;
    assert_eq!(failed, Some(1.0));
    let attempts = app
        .metric("deprovd_action_attempts_total{connector=\"slow\",outcome=\"retry\"}")
        .await;
    assert_eq!(attempts, Some(1.0));
    app.stop().await;
}

#[tokio::test]
async fn http_ingest_answers_202_400_401_and_413() {
    let (_target, data, _policies, app) = with_one_good_webhook().await;

    let id = unique("alert");
    let (status, body) = app.post_alert(&alert_json(&id, "Bob@Corp.Example")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["alert_id"], id);
    assert_eq!(body["actions"][0]["subject"], "bob@corp.example");
    assert_eq!(body["actions"][0]["disposition"], "new");

    // The same alert again is a duplicate: no new action.
    let (status, body) = app.post_alert(&alert_json(&id, "bob@corp.example")).await;
    assert_eq!(status, 202);
    assert_eq!(body["actions"][0]["disposition"], "duplicate", "{body}");

    let (status, body) = app.post_alert("{\"id\": ").await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_json", "{body}");
    // A misspelt subject key could contain the wrong account: refused, naming the key. (A missing
    // `id` is not refused: the id is derived from the content.)
    let (status, body) = app
        .post_alert("{\"severity\": \"high\", \"subjects\": [{\"emial\": \"x@corp.example\"}]}")
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("emial"),
        "names the problem: {body}"
    );
    let dlq = std::fs::read_to_string(data.path().join("alerts.dlq.jsonl"))
        .expect("rejected alerts are dead-lettered");
    assert_eq!(dlq.lines().count(), 2);

    let no_token = app
        .http
        .post(app.url("/v1/alerts"))
        .body(alert_json("x", "a@b.c"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let bad_token = app
        .http
        .post(app.url("/v1/alerts"))
        .bearer_auth("nope")
        .body(alert_json("x", "a@b.c"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), 401);
    let huge = app
        .http
        .post(app.url("/v1/alerts"))
        .bearer_auth(&app.token)
        .body(vec![b' '; 8192])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    app.stop().await;
}

#[tokio::test]
async fn coalesced_alerts_call_the_target_once() {
    let (target, _data, _policies, app) = with_one_good_webhook().await;
    let subject = format!("{}@corp.example", unique("storm"));
    let mut dispositions = Vec::new();
    for _ in 0..5 {
        let (status, body) = app
            .post_alert(&alert_json(&unique("alert"), &subject))
            .await;
        assert_eq!(status, 202);
        dispositions.push(
            body["actions"][0]["disposition"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(dispositions[0], "new");
    assert!(
        dispositions[1..].iter().all(|d| d == "coalesced"),
        "{dispositions:?}"
    );
    eventually(Duration::from_secs(10), "action succeeds", || async {
        (action_for(&app, &subject, "good").await["state"] == "succeeded").then_some(())
    })
    .await;
    let action = action_for(&app, &subject, "good").await;
    assert_eq!(
        action["linked_alerts"].as_array().unwrap().len(),
        4,
        "{action}"
    );
    assert_eq!(target.count("POST", "/good"), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_alert_with_a_time_in_seconds_is_taken_and_its_problem_answered_and_counted() {
    let (_target, data, _policies, app) = with_one_good_webhook().await;
    let id = unique("alert");
    let mut alert: serde_json::Value = serde_json::from_str(&alert_json(&id, "dana@corp.example"))
        .expect("the kit's alert is JSON");
    alert["time"] = chrono::Utc::now().timestamp().into();
    let (status, body) = app.post_alert(&alert.to_string()).await;
    assert_eq!(
        status, 202,
        "a readable alert is never dead-lettered: {body}"
    );
    assert_eq!(body["alert_problems"][0]["kind"], "time_unit", "{body}");
    assert!(
        body["alert_problems"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("epoch seconds")),
        "{body}"
    );
    assert_eq!(body["actions"][0]["subject"], "dana@corp.example", "{body}");
    assert_eq!(
        app.metric("deprovd_alert_problems_total{format=\"generic\",kind=\"time_unit\"}")
            .await,
        Some(1.0)
    );
    assert!(
        !data.path().join("alerts.dlq.jsonl").exists(),
        "nothing dead-lettered"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_without_operations_receives_only_notify() {
    let target = Target::start().await;
    target.always("POST", "/chat", Reply::status(204));
    target.always("POST", "/soar", Reply::status(204));
    let data = tempfile::tempdir().unwrap();
    let policy = r#"package deprovd

import rego.v1

decisions contains d if {
    some s in input.alert.subjects
    some action in ["disable_account", "revoke_sessions", "notify"]
    d := {"action": action, "subject": s.email, "reason": "test", "rule": "test.contain_and_tell"}
}
"#;
    let policies = policy_dir(&[("p.rego", policy)]);
    let app = builder(data.path(), policies.path())
        // A notification receiver as configured in the wild: no `operations`.
        .connector("chat", notify_webhook("chat", &target.url()))
        // A receiver that carries out containment opts in.
        .connector("soar", webhook("soar", &target.url()))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;

    let subject = format!("{}@corp.example", unique("nina"));
    let (status, body) = app
        .post_alert(&alert_json(&unique("alert"), &subject))
        .await;
    assert_eq!(status, 202, "{body}");
    let planned = |connector: &str| -> Vec<String> {
        let mut ops: Vec<String> = body["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["connector"] == connector)
            .map(|a| a["operation"].as_str().unwrap().to_string())
            .collect();
        ops.sort();
        ops
    };
    assert_eq!(planned("chat"), ["notify"], "{body}");
    assert_eq!(
        planned("soar"),
        ["disable_account", "notify", "revoke_sessions"],
        "{body}"
    );
    // And on the wire: the notification receiver is called once, with `notify`.
    eventually(Duration::from_secs(10), "every action done", || async {
        let actions = app.actions(&format!("subject={subject}")).await;
        (actions.len() == 4 && actions.iter().all(|a| a["state"] == "succeeded")).then_some(())
    })
    .await;
    let events: Vec<String> = target
        .seen()
        .into_iter()
        .filter(|s| s.path == "/chat")
        .map(|s| {
            let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
            body["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(events, ["deprovd.notify"]);
    app.stop().await;
}
