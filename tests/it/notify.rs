//! Notifications through the real application, to local receivers: Slack, Teams and signed-webhook
//! bodies as the vendors document them, the signature verifies, a 500 is retried and a 429's
//! `Retry-After` is honoured, a hung receiver never delays a lockout, and a failed action is
//! announced.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::kit::connector::webhook;
use crate::kit::{
    DISABLE_ALL_POLICY, Reply, Seen, Target, TestApp, TestAppBuilder, alert_json, eventually,
    metric_value, policy_dir, unique,
};

/// The app: one webhook connector `conn` at `target` (path `/conn`), policies that disable every
/// subject of a high alert, fast notification retries (a `Retry-After` over `max_delay = 2s` is cut
/// to it), and `sinks` (`[[notify.sinks]]` entries).
fn app(policies: &std::path::Path, target: &Target, sinks: Vec<Value>) -> TestAppBuilder {
    let mut app = TestApp::builder()
        .policies(policies)
        .fast_executor()
        .max_attempts(2)
        .connector("conn", webhook("conn", &target.url()))
        .redis()
        .with(|s| {
            s.notify.retry.base_delay = Duration::from_millis(50);
            s.notify.retry.max_delay = Duration::from_secs(2);
            s.notify.retry.max_attempts = 4;
        });
    for sink in sinks {
        app = app.notify_sink(sink);
    }
    app
}

/// A secret file holding `value`; the config refers to it as `file:PATH`.
fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    format!("file:{}", p.display())
}

/// A `[[notify.sinks]]` entry: `name`, `kind`, `url` and the fields of `extra`.
fn sink(name: &str, kind: &str, url: &str, extra: Value) -> Value {
    let mut sink = json!({"name": name, "kind": kind, "url": url});
    if let (Some(sink), Some(extra)) = (sink.as_object_mut(), extra.as_object()) {
        sink.extend(extra.clone());
    }
    sink
}

async fn lockout(app: &TestApp, subject: &str) -> String {
    app.disable_via_lockout(subject, "conn").await
}

/// POST requests `target` received at `path`, in arrival order.
fn received(target: &Target, path: &str) -> Vec<Seen> {
    target
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == path)
        .collect()
}

fn json_of(s: &Seen) -> Value {
    serde_json::from_slice(&s.body).unwrap_or(Value::Null)
}

/// Wait until `path` on `target` got a webhook body with this `event` and `subject`.
async fn webhook_notice(target: &Target, path: &str, event: &str, subject: &str) -> Seen {
    eventually(
        Duration::from_secs(15),
        &format!("{event} notice for {subject}"),
        || async {
            received(target, path).into_iter().find(|s| {
                let v = json_of(s);
                v["event"] == event && v["subject"] == subject
            })
        },
    )
    .await
}

#[tokio::test]
async fn slack_teams_and_signed_webhook_get_documented_bodies_for_lockout_and_restore() {
    let conn = Target::start().await;
    conn.always("POST", "/conn", Reply::status(200));
    let chat = Target::start().await;
    // Slack answers a good incoming-webhook post with 200 and the text body `ok`.
    chat.always(
        "POST",
        "/services/T000/B000/XXXX",
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: "ok".into(),
        },
    );
    // Teams (Workflows webhook) accepts with 202.
    chat.always("POST", "/workflows/teams", Reply::status(202));
    chat.always("POST", "/hook", Reply::status(204));

    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let secrets = tempfile::tempdir().unwrap();
    let hook_secret = "whsec-notify-test-0123456789";
    let sinks = vec![
        sink(
            "slack",
            "slack",
            &secret_file(
                secrets.path(),
                "slack",
                &format!("{}/services/T000/B000/XXXX", chat.url()),
            ),
            json!({}),
        ),
        sink(
            "teams",
            "teams",
            &secret_file(
                secrets.path(),
                "teams",
                &format!("{}/workflows/teams", chat.url()),
            ),
            json!({"events": ["lockout_done"]}),
        ),
        sink(
            "soar",
            "webhook",
            &secret_file(secrets.path(), "hook", &format!("{}/hook", chat.url())),
            json!({"secret": secret_file(secrets.path(), "hook-secret", hook_secret)}),
        ),
    ];
    let app = app(policies.path(), &conn, sinks).spawn().await;
    app.wait_ready(Duration::from_secs(15)).await;

    let subject = format!("{}@corp.example", unique("alice"));
    let id = lockout(&app, &subject).await;

    // Generic webhook: the Notice JSON, signed like the webhook connector.
    let hook = webhook_notice(&chat, "/hook", "lockout_done", &subject).await;
    let body = json_of(&hook);
    assert_eq!(body["lockout_id"], id.as_str());
    assert_eq!(body["connector"], "conn");
    assert_eq!(body["operation"], "disable_account");
    assert!(body["action_key"].as_str().is_some_and(|k| k.len() == 64));
    let header = |s: &Seen, h: &str| {
        s.headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = SecretString::from(hook_secret.to_string());
    assert!(
        deprovd::verify_webhook(
            &key,
            &header(&hook, "x-deprovd-timestamp"),
            &header(&hook, "x-deprovd-signature"),
            &hook.body,
            now,
            300,
        ),
        "signature verifies over timestamp + body"
    );
    assert!(
        !deprovd::verify_webhook(
            &SecretString::from("another-secret".to_string()),
            &header(&hook, "x-deprovd-timestamp"),
            &header(&hook, "x-deprovd-signature"),
            &hook.body,
            now,
            300,
        ),
        "and only with the right key"
    );
    assert_eq!(header(&hook, "x-deprovd-event"), "lockout_done");
    assert_eq!(header(&hook, "content-type"), "application/json");

    // Slack: `text` plus `blocks` (header, section fields, context).
    let slack = eventually(Duration::from_secs(15), "slack message", || async {
        received(&chat, "/services/T000/B000/XXXX")
            .into_iter()
            .find(|s| {
                json_of(s)["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&subject))
            })
    })
    .await;
    let msg = json_of(&slack);
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Locked out: {subject}")),
        "{msg}"
    );
    let blocks = msg["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[1]["type"], "section");
    let fields = blocks[1]["fields"].as_array().unwrap();
    assert!(fields.iter().all(|f| f["type"] == "mrkdwn"));
    assert!(fields.contains(&json!({"type": "mrkdwn", "text": format!("*Lockout*\n{id}")})));
    assert_eq!(blocks[2]["type"], "context");

    // Teams: a message with one Adaptive Card.
    let teams = eventually(Duration::from_secs(15), "teams card", || async {
        received(&chat, "/workflows/teams").into_iter().next()
    })
    .await;
    let card = json_of(&teams);
    assert_eq!(card["type"], "message");
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let content = &card["attachments"][0]["content"];
    assert_eq!(content["type"], "AdaptiveCard");
    assert_eq!(
        content["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(content["body"][0]["type"], "TextBlock");
    assert_eq!(content["body"][1]["type"], "FactSet");
    assert!(
        content["body"][1]["facts"]
            .as_array()
            .unwrap()
            .contains(&json!({"title": "Subject", "value": subject}))
    );

    // Restore: the reversal's success is a `restored` notice naming the lockout.
    let r = app
        .http
        .post(app.url(&format!("/v1/lockouts/{id}/restore")))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let restored = webhook_notice(&chat, "/hook", "restored", &subject).await;
    let body = json_of(&restored);
    assert_eq!(body["lockout_id"], id.as_str());
    assert_eq!(body["operation"], "enable_account");

    eventually(Duration::from_secs(10), "delivered counted", || async {
        let m = app.metrics().await;
        let slack = metric_value(
            &m,
            "deprovd_notifications_total{outcome=\"delivered\",sink=\"slack\"}",
        )?;
        let soar = metric_value(
            &m,
            "deprovd_notifications_total{outcome=\"delivered\",sink=\"soar\"}",
        )?;
        (slack >= 2.0 && soar >= 2.0).then_some(())
    })
    .await;
    // `teams` hears only lockout_done: the restore never reached it.
    assert_eq!(received(&chat, "/workflows/teams").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_answering_500_then_200_gets_the_notice_and_429_retry_after_is_honoured() {
    let conn = Target::start().await;
    conn.always("POST", "/conn", Reply::status(200));
    let hook = Target::start().await;
    hook.then("POST", "/flaky", Reply::status(500));
    hook.always("POST", "/flaky", Reply::status(200));
    hook.then(
        "POST",
        "/limited",
        Reply::status(429).header("Retry-After", "1"),
    );
    hook.always("POST", "/limited", Reply::status(200));

    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let secrets = tempfile::tempdir().unwrap();
    let secret = secret_file(secrets.path(), "s", "k");
    let sinks = vec![
        sink(
            "flaky",
            "webhook",
            &secret_file(secrets.path(), "flaky", &format!("{}/flaky", hook.url())),
            json!({"secret": secret}),
        ),
        sink(
            "limited",
            "webhook",
            &secret_file(
                secrets.path(),
                "limited",
                &format!("{}/limited", hook.url()),
            ),
            json!({"secret": secret}),
        ),
    ];
    let app = app(policies.path(), &conn, sinks).spawn().await;
    app.wait_ready(Duration::from_secs(15)).await;

    let subject = format!("{}@corp.example", unique("bob"));
    lockout(&app, &subject).await;

    eventually(Duration::from_secs(15), "both delivered", || async {
        let m = app.metrics().await;
        let a = metric_value(
            &m,
            "deprovd_notifications_total{outcome=\"delivered\",sink=\"flaky\"}",
        )?;
        let b = metric_value(
            &m,
            "deprovd_notifications_total{outcome=\"delivered\",sink=\"limited\"}",
        )?;
        (a == 1.0 && b == 1.0).then_some(())
    })
    .await;
    let flaky = received(&hook, "/flaky");
    assert_eq!(flaky.len(), 2, "one 500, then the retry that succeeded");
    let ids: Vec<_> = flaky
        .iter()
        .map(|s| s.headers.get("idempotency-key").cloned())
        .collect();
    assert!(
        ids[0].is_some() && ids[0] == ids[1],
        "same notice id on the retry"
    );
    assert_eq!(json_of(&flaky[1])["subject"], subject.as_str());

    let limited = received(&hook, "/limited");
    assert_eq!(limited.len(), 2);
    assert!(
        limited[1].at.duration_since(limited[0].at) >= Duration::from_secs(1),
        "retried no sooner than Retry-After: 1"
    );
    let m = app.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            "deprovd_notifications_total{outcome=\"failed\",sink=\"flaky\"}"
        ),
        Some(0.0),
        "exported at zero from the start, and never counted"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_huge_retry_after_is_cut_to_max_delay_and_the_notice_still_arrives() {
    let conn = Target::start().await;
    conn.always("POST", "/conn", Reply::status(200));
    let hook = Target::start().await;
    // Three years: honoured as asked, the worker would sleep that long.
    hook.then(
        "POST",
        "/greedy",
        Reply::status(429).header("Retry-After", "99999999"),
    );
    hook.always("POST", "/greedy", Reply::status(200));

    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let secrets = tempfile::tempdir().unwrap();
    let sinks = vec![sink(
        "greedy",
        "slack",
        &secret_file(secrets.path(), "u", &format!("{}/greedy", hook.url())),
        json!({"concurrency": 1}),
    )];
    let app = app(policies.path(), &conn, sinks).spawn().await;
    app.wait_ready(Duration::from_secs(15)).await;

    lockout(&app, &format!("{}@corp.example", unique("gina"))).await;
    // `[notify.retry] max_delay` is 2s: the retry comes that soon, not in three years.
    eventually(
        Duration::from_secs(10),
        "delivered after the 429",
        || async {
            app.metric("deprovd_notifications_total{outcome=\"delivered\",sink=\"greedy\"}")
                .await
                .filter(|v| *v == 1.0)
        },
    )
    .await;
    let greedy = received(&hook, "/greedy");
    assert_eq!(greedy.len(), 2, "one 429, then the retry");
    assert!(greedy[1].at.duration_since(greedy[0].at) < Duration::from_secs(5));
    app.stop().await;
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_up_to_a_cap() {
    use futures::stream;

    let conn = Target::start().await;
    conn.always("POST", "/conn", Reply::status(200));
    // A receiver that refuses (400, not retried) with a body that never ends.
    let refusing = Router::new().fallback(move |_h: HeaderMap, _b: Bytes| async move {
        let body = stream::repeat_with(|| {
            Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; 16 * 1024]))
        });
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::body::Body::from_stream(body),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/refuse", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, refusing).await.unwrap() });

    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let secrets = tempfile::tempdir().unwrap();
    let sinks = vec![sink(
        "endless",
        "slack",
        &secret_file(secrets.path(), "u", &url),
        // A request timeout far beyond this test: only the cap can end the read.
        json!({"concurrency": 1, "timeout": "10m"}),
    )];
    let app = app(policies.path(), &conn, sinks).spawn().await;
    app.wait_ready(Duration::from_secs(15)).await;

    lockout(&app, &format!("{}@corp.example", unique("hank"))).await;
    eventually(Duration::from_secs(10), "the refusal recorded", || async {
        app.metric("deprovd_notifications_total{outcome=\"failed\",sink=\"endless\"}")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    app.stop().await;
}

/// A receiver that accepts every request and never answers (until the test ends).
struct Hung {
    url: String,
    arrived: Arc<Mutex<usize>>,
}

async fn hung_receiver() -> Hung {
    let arrived = Arc::new(Mutex::new(0usize));
    let counter = arrived.clone();
    let app = Router::new().fallback(move |_h: HeaderMap, _b: Bytes| {
        let counter = counter.clone();
        async move {
            *counter.lock().unwrap() += 1;
            std::future::pending::<()>().await;
            "never"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hang", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Hung { url, arrived }
}

#[tokio::test]
async fn a_hung_receiver_never_delays_a_lockout() {
    let conn = Target::start().await;
    conn.always("POST", "/conn", Reply::status(200));
    let hung = hung_receiver().await;

    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let secrets = tempfile::tempdir().unwrap();
    let sinks = vec![sink(
        "stuck",
        "slack",
        &secret_file(secrets.path(), "u", &hung.url),
        // One worker, a request timeout far beyond this test: the receiver holds it the whole time.
        json!({"concurrency": 1, "timeout": "10m"}),
    )];
    let app = app(policies.path(), &conn, sinks).spawn().await;
    app.wait_ready(Duration::from_secs(15)).await;

    let first = format!("{}@corp.example", unique("carol"));
    lockout(&app, &first).await;
    // The first lockout's notice is now stuck in the receiver.
    eventually(
        Duration::from_secs(15),
        "notice reached the hung receiver",
        || async { (*hung.arrived.lock().unwrap() >= 1).then_some(()) },
    )
    .await;

    // Later lockouts (and their notices, which queue behind the stuck one) still reach the target.
    let mut subjects = Vec::new();
    for _ in 0..3 {
        let s = format!("{}@corp.example", unique("dave"));
        lockout(&app, &s).await;
        subjects.push(s);
    }
    eventually(
        Duration::from_secs(15),
        "every later lockout called the target",
        || async {
            let calls: Vec<Value> = received(&conn, "/conn").iter().map(json_of).collect();
            subjects
                .iter()
                .all(|s| calls.iter().any(|c| c["subject"] == s.as_str()))
                .then_some(())
        },
    )
    .await;
    // Ordering, not timing: the target got every call while the one worker is still stuck on the
    // first notice (nothing else reached the receiver, nothing was answered).
    assert_eq!(*hung.arrived.lock().unwrap(), 1);
    assert_eq!(
        app.metric("deprovd_notifications_total{outcome=\"delivered\",sink=\"stuck\"}")
            .await,
        Some(0.0),
        "exported at zero from the start, and never counted"
    );
    for s in &subjects {
        let a = app.actions(&format!("subject={s}")).await;
        assert_eq!(a[0]["state"], "succeeded", "{a:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_failed_action_is_announced_with_its_error_and_alert() {
    let conn = Target::start().await;
    conn.always(
        "POST",
        "/conn",
        Reply::json(400, json!({"error": "subject is malformed"})),
    );
    let hook = Target::start().await;
    hook.always("POST", "/hook", Reply::status(200));

    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let secrets = tempfile::tempdir().unwrap();
    let sinks = vec![sink(
        "soar",
        "webhook",
        &secret_file(secrets.path(), "u", &format!("{}/hook", hook.url())),
        json!({"secret": secret_file(secrets.path(), "s", "k"), "events": ["action_failed"]}),
    )];
    let app = app(policies.path(), &conn, sinks).spawn().await;
    app.wait_ready(Duration::from_secs(15)).await;

    let subject = format!("{}@corp.example", unique("erin"));
    let alert_id = unique("alert");
    let (status, _) = app.post_alert(&alert_json(&alert_id, &subject)).await;
    assert_eq!(status, 202);

    let seen = webhook_notice(&hook, "/hook", "action_failed", &subject).await;
    let n = json_of(&seen);
    assert_eq!(n["alert_id"], alert_id.as_str());
    assert_eq!(n["connector"], "conn");
    assert_eq!(n["operation"], "disable_account");
    assert!(
        n["error"].as_str().is_some_and(|e| e.contains("400")),
        "the target's answer is in the notice: {n}"
    );
    let action = app.actions(&format!("subject={subject}")).await;
    assert_eq!(action[0]["state"], "failed");
    assert_eq!(n["action_key"], action[0]["key"]);
    // Only `action_failed` was subscribed: the sink got nothing else.
    assert!(
        received(&hook, "/hook")
            .iter()
            .all(|s| json_of(s)["event"] == "action_failed")
    );
    app.stop().await;
}

#[tokio::test]
async fn inline_urls_unknown_events_and_broken_templates_fail_startup_listing_each() {
    let text = r#"
[notify]
[[notify.sinks]]
name = "slack"
kind = "slack"
url = "https://hooks.slack.com/services/T0/B0/secretpart"
events = ["lockout_finished"]
[[notify.sinks]]
name = "hook"
kind = "webhook"
url = "env:HOOK_URL"
secret = "inline-secret"
[notify.sinks.templates]
restored = '{"who": {{ notice.subjet | tojson }}}'
"#;
    let settings = deprovd::Settings::from_toml(text, Vec::new()).unwrap();
    let err = deprovd::Application::build(settings)
        .await
        .err()
        .expect("startup refuses");
    let msg = format!("{err:#}");
    for want in [
        "notify.sinks[0].url",
        "notify.sinks[0].events[0]",
        "notify.sinks[1].secret",
        "notify.sinks[1].templates.restored",
    ] {
        assert!(msg.contains(want), "{want} missing in: {msg}");
    }
    assert!(
        !msg.contains("secretpart"),
        "the URL is never echoed: {msg}"
    );
    assert!(!msg.contains("inline-secret"), "nor the secret: {msg}");
}

#[tokio::test]
async fn the_guards_notices_reach_the_sinks_breaker_tripped_and_approval_needed() {
    let conn = Target::start().await;
    conn.always("POST", "/conn", Reply::status(200));
    let hook = Target::start().await;
    hook.always("POST", "/hook", Reply::status(200));

    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let secrets = tempfile::tempdir().unwrap();
    let sinks = vec![sink(
        "soar",
        "webhook",
        &secret_file(secrets.path(), "u", &format!("{}/hook", hook.url())),
        json!({
            "secret": secret_file(secrets.path(), "s", "k"),
            "events": ["breaker_tripped", "approval_needed"],
        }),
    )];
    let app = app(policies.path(), &conn, sinks)
        .with(|s| {
            s.guards.breaker.threshold = 1;
            s.guards.breaker.window = Duration::from_secs(600);
        })
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;

    let first = format!("{}@corp.example", unique("frank"));
    let second = format!("{}@corp.example", unique("grace"));
    assert_eq!(
        app.post_alert(&alert_json(&unique("a"), &first)).await.0,
        202
    );
    assert_eq!(
        app.post_alert(&alert_json(&unique("a"), &second)).await.0,
        202
    );

    let held = webhook_notice(&hook, "/hook", "approval_needed", &second).await;
    let n = json_of(&held);
    assert_eq!(n["connector"], "conn");
    assert!(n["approval_id"].as_str().is_some_and(|s| !s.is_empty()));
    let tripped = eventually(
        Duration::from_secs(15),
        "breaker_tripped notice",
        || async {
            received(&hook, "/hook")
                .into_iter()
                .map(|s| json_of(&s))
                .find(|v| v["event"] == "breaker_tripped")
        },
    )
    .await;
    assert_eq!(tripped["threshold"], 1);
    assert_eq!(tripped["window_secs"], 600);
    assert!(
        received(&hook, "/hook")
            .iter()
            .all(|s| json_of(s)["subject"] != first.as_str()),
        "the first subject went through: nothing to approve for it"
    );
    app.stop().await;
}
