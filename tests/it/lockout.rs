//! Manual lockouts and restores through the real application: the HTTP API (RBAC, Idempotency-Key
//! raced), guards, the executor marking originals `restored`, against the real SCIM server; and the
//! `deprovd lockout|status|restore` CLI as a process.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kafka::scim_connector;
use crate::kit::connector::webhook;
use crate::kit::{
    CountingProxy, DISABLE_ALL_POLICY, Target, TestApp, TestAppBuilder, deprovd, eventually,
    policy_dir, unique,
};
use crate::scim_server::ScimServer;

/// The app as these tests run it: fast executor timings.
fn builder(data: &std::path::Path, policies: &std::path::Path) -> TestAppBuilder {
    TestApp::builder()
        .data_dir(data)
        .policies(policies)
        .fast_executor()
}

async fn post(
    app: &TestApp,
    token: &str,
    path: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> (u16, Value) {
    let mut req = app.http.post(app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Poll `GET /v1/lockouts/{id}` until `done` holds for it.
async fn status_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(20), what, || async {
        let s = app.get_json(&format!("/v1/lockouts/{id}")).await;
        done(&s).then_some(s)
    })
    .await
}

fn all_actions(s: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    s["actions"]
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(pred))
}

#[tokio::test]
async fn lockout_then_restore_round_trips_active_and_groups_on_real_scim() {
    let scim = ScimServer::start().await;
    let proxy = CountingProxy::start(scim.base.trim_end_matches("/v2").to_string()).await;
    let email = format!("{}@corp.example", unique("alice"));
    let uid = scim.create_user(&email, &email).await;
    let bob_email = format!("{}@corp.example", unique("bob"));
    let bob = scim.create_user(&bob_email, &bob_email).await;
    let eng = scim.create_group(&unique("eng"), &[&uid, &bob]).await;
    let vpn = scim.create_group(&unique("vpn"), &[&uid]).await;

    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path())
        .redis()
        .connector("scim", scim_connector(&proxy, &scim))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;

    let (status, created) = post(
        &app,
        &app.token,
        "/v1/lockouts",
        Some(&json!({
            "subject": email,
            "operations": ["disable_account", "remove_group_memberships"],
            "reason": "phished: credentials in a paste",
            "ticket": "INC-4242",
        })),
        None,
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 7),
        "{id}"
    );
    assert_eq!(created["actions"].as_array().unwrap().len(), 2, "{created}");

    let locked = status_until(&app, &id, "lockout succeeds on SCIM", |s| {
        all_actions(s, |a| a["state"] == "succeeded")
    })
    .await;
    assert_eq!(locked["ticket"], "INC-4242");
    assert_eq!(locked["settled"], true);
    assert_eq!(scim.user(&uid).await["active"], json!(false));
    assert!(!scim.group_members(&eng).await.contains(&uid));
    assert!(!scim.group_members(&vpn).await.contains(&uid));
    assert_eq!(
        scim.group_members(&eng).await,
        vec![bob.clone()],
        "bob keeps his group"
    );

    // Every action was recorded as manual, with the lockout's request id.
    let ledger = app.actions(&format!("subject={email}")).await;
    assert_eq!(ledger.len(), 2);
    for a in &ledger {
        assert_eq!(a["rule"], "manual");
        assert_eq!(a["origin"]["kind"], "manual");
        assert_eq!(a["origin"]["request_id"], id.as_str());
    }

    let (status, restored) = post(
        &app,
        &app.token,
        &format!("/v1/lockouts/{id}/restore"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 202, "{restored}");
    let mut reversals: Vec<String> = restored["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reversal_operation"].as_str().unwrap_or("-").to_string())
        .collect();
    reversals.sort();
    assert_eq!(reversals, ["enable_account", "restore_group_memberships"]);

    let after = status_until(&app, &id, "every action restored", |s| {
        all_actions(s, |a| {
            a["state"] == "restored" && a["reversal"]["state"] == "succeeded"
        })
    })
    .await;
    assert_eq!(after["settled"], true);
    assert_eq!(scim.user(&uid).await["active"], json!(true));
    assert!(
        scim.group_members(&eng).await.contains(&uid),
        "eng re-added"
    );
    assert!(scim.group_members(&eng).await.contains(&bob));
    assert!(
        scim.group_members(&vpn).await.contains(&uid),
        "vpn re-added"
    );

    // Restore is idempotent: asking again records nothing new and calls nothing.
    let patches = proxy.count("PATCH", "/v2/");
    let (status, again) = post(
        &app,
        &app.token,
        &format!("/v1/lockouts/{id}/restore"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 202, "{again}");
    let keys = |v: &Value| {
        let mut k: Vec<String> = v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["reversal_key"].as_str().unwrap().to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&again), keys(&restored));
    assert_eq!(app.actions(&format!("subject={email}")).await.len(), 4);
    assert_eq!(proxy.count("PATCH", "/v2/"), patches);
    app.stop().await;
}

#[tokio::test]
async fn raced_lockouts_with_one_idempotency_key_make_one_lockout_and_one_call() {
    let scim = ScimServer::start().await;
    let proxy = CountingProxy::start(scim.base.trim_end_matches("/v2").to_string()).await;
    let email = format!("{}@corp.example", unique("carol"));
    let uid = scim.create_user(&email, &email).await;
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path())
        .redis()
        .connector("scim", scim_connector(&proxy, &scim))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;

    let key = uuid::Uuid::new_v4().to_string();
    let body = json!({"subject": email, "reason": "token theft", "connectors": ["scim"]});
    let ((s1, r1), (s2, r2)) = tokio::join!(
        post(&app, &app.token, "/v1/lockouts", Some(&body), Some(&key)),
        post(&app, &app.token, "/v1/lockouts", Some(&body), Some(&key)),
    );
    assert_eq!((s1, s2), (202, 202), "{r1} {r2}");
    assert_eq!(r1, r2, "same key and body: the same answer");
    let id = r1["id"].as_str().unwrap().to_string();

    status_until(&app, &id, "lockout succeeds", |s| {
        all_actions(s, |a| a["state"] == "succeeded")
    })
    .await;
    assert_eq!(scim.user(&uid).await["active"], json!(false));
    assert_eq!(proxy.count("PATCH", "/v2/Users"), 1, "one disable call");
    assert_eq!(app.actions(&format!("subject={email}")).await.len(), 1);

    // A later replay answers the same; the same key with another body is refused.
    let (s3, r3) = post(&app, &app.token, "/v1/lockouts", Some(&body), Some(&key)).await;
    assert_eq!((s3, &r3), (202, &r1));
    let other = json!({"subject": email, "reason": "something else", "connectors": ["scim"]});
    let (s4, r4) = post(&app, &app.token, "/v1/lockouts", Some(&other), Some(&key)).await;
    assert_eq!(s4, 422, "{r4}");
    assert_eq!(r4["code"], "idempotency_key_reused");
    assert_eq!(proxy.count("PATCH", "/v2/Users"), 1);
    app.stop().await;
}

#[tokio::test]
async fn protected_subject_is_skipped_and_never_called_while_others_are_locked_out_fast() {
    let target = Target::hook().await;
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path())
        .redis()
        .connector("hook", webhook("hook", &target.url()))
        .with(|s| {
            s.guards.protected = vec![
                "breakglass@corp.example".into(),
                "svc-*@corp.example".into(),
            ]
        })
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;

    for subject in ["BreakGlass@corp.example", "svc-backup@corp.example"] {
        let (status, created) = post(
            &app,
            &app.token,
            "/v1/lockouts",
            Some(&json!({"subject": subject, "reason": "test"})),
            None,
        )
        .await;
        assert_eq!(status, 202, "{created}");
        let actions = created["actions"].as_array().unwrap();
        assert_eq!(
            actions.len(),
            2,
            "disable + revoke on the webhook: {created}"
        );
        for a in actions {
            assert_eq!(a["state"], "skipped", "{created}");
            assert!(
                a["note"].as_str().unwrap().contains("protected"),
                "{created}"
            );
        }
    }

    // An ordinary subject is acted on, and the first request leaves promptly.
    let victim = format!("{}@corp.example", unique("dave"));
    let started = Instant::now();
    let (status, created) = post(
        &app,
        &app.token,
        "/v1/lockouts",
        Some(&json!({"subject": victim, "reason": "test"})),
        None,
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let first = eventually(Duration::from_secs(10), "webhook called", || async {
        target.seen().first().map(|s| s.at)
    })
    .await;
    let latency = first.saturating_duration_since(started);
    eprintln!("first connector request {latency:?} after the API call");
    assert!(
        latency < Duration::from_millis(250),
        "first connector request took {latency:?}"
    );
    let id = created["id"].as_str().unwrap();
    status_until(&app, id, "victim locked out", |s| {
        all_actions(s, |a| a["state"] == "succeeded")
    })
    .await;
    let bodies: Vec<String> = target
        .seen()
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).to_lowercase())
        .collect();
    assert_eq!(bodies.len(), 2, "disable + revoke for the victim only");
    assert!(bodies.iter().all(|b| b.contains(&victim)));
    assert!(
        !bodies
            .iter()
            .any(|b| b.contains("breakglass") || b.contains("svc-backup"))
    );
    let skipped = app
        .metric("deprovd_guard_blocks_total{guard=\"protected\"}")
        .await;
    assert_eq!(skipped, Some(4.0));
    app.stop().await;
}

#[tokio::test]
async fn rbac_viewer_cannot_lock_out_and_no_token_is_401() {
    let target = Target::hook().await;
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let tokens = [
        ("responder", "tok-responder-1"),
        ("viewer", "tok-viewer-1"),
        ("ingest", "tok-ingest-1"),
    ];
    let mut builder = builder(data.path(), policies.path())
        .redis()
        .connector("hook", webhook("hook", &target.url()));
    for (role, tok) in tokens {
        builder = builder.token(role, tok);
    }
    let app = builder.spawn().await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", app.port);
    eventually(Duration::from_secs(15), "ready", || async {
        http.get(url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(())
    })
    .await;

    let body = json!({"subject": format!("{}@corp.example", unique("erin")), "reason": "rbac"});
    let call = |method: reqwest::Method, path: String, token: Option<&'static str>| {
        let mut r = http.request(method, url(&path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let body = body.clone();
        async move {
            let resp = r.json(&body).send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    // (method, path, token, expected status, expected code)
    let (s, created) = call(Method::POST, "/v1/lockouts".into(), Some("tok-responder-1")).await;
    assert_eq!(s, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let cases: Vec<(Method, String, Option<&'static str>, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/lockouts".into(),
            None,
            401,
            "unauthenticated",
        ),
        (
            Method::POST,
            "/v1/lockouts".into(),
            Some("wrong"),
            401,
            "unauthenticated",
        ),
        (
            Method::POST,
            "/v1/lockouts".into(),
            Some("tok-viewer-1"),
            403,
            "forbidden",
        ),
        (
            Method::POST,
            "/v1/lockouts".into(),
            Some("tok-ingest-1"),
            403,
            "forbidden",
        ),
        (
            Method::GET,
            format!("/v1/lockouts/{id}"),
            None,
            401,
            "unauthenticated",
        ),
        (
            Method::GET,
            format!("/v1/lockouts/{id}"),
            Some("tok-ingest-1"),
            403,
            "forbidden",
        ),
        (
            Method::GET,
            format!("/v1/lockouts/{id}"),
            Some("tok-viewer-1"),
            200,
            "",
        ),
        (
            Method::GET,
            format!("/v1/lockouts/{id}"),
            Some("tok-responder-1"),
            200,
            "",
        ),
        (
            Method::GET,
            "/v1/lockouts/no-such-id".into(),
            Some("tok-viewer-1"),
            404,
            "not_found",
        ),
        (
            Method::POST,
            format!("/v1/lockouts/{id}/restore"),
            None,
            401,
            "unauthenticated",
        ),
        (
            Method::POST,
            format!("/v1/lockouts/{id}/restore"),
            Some("tok-viewer-1"),
            403,
            "forbidden",
        ),
        (
            Method::POST,
            format!("/v1/actions/{}/restore", "a".repeat(64)),
            Some("tok-viewer-1"),
            403,
            "forbidden",
        ),
        (
            Method::POST,
            format!("/v1/actions/{}/restore", "a".repeat(64)),
            Some("tok-responder-1"),
            404,
            "not_found",
        ),
    ];
    for (method, path, token, want, code) in cases {
        let (got, body) = call(method.clone(), path.clone(), token).await;
        assert_eq!(got, want, "{method} {path} with {token:?}: {body}");
        if !code.is_empty() {
            assert_eq!(body["code"], code, "{method} {path} with {token:?}: {body}");
        }
    }
    // Bad bodies are JSON errors with stable codes.
    let (s, b) = {
        let r = http
            .post(url("/v1/lockouts"))
            .bearer_auth("tok-responder-1")
            .body("{not json")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_json")), "{b}");
    let (s, b) = {
        let r = http
            .post(url("/v1/lockouts"))
            .bearer_auth("tok-responder-1")
            .json(&json!({"subject": "x@corp.example", "reason": "r", "connectors": ["nope"]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(
        (s, b["code"].as_str()),
        (422, Some("unknown_connector")),
        "{b}"
    );

    app.stop().await;
}

#[tokio::test]
async fn cli_lockout_status_restore_round_trip() {
    let target = Target::hook().await;
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    // The embedded store here, so lockout documents are exercised on both backends end to end.
    let app = builder(data.path(), policies.path())
        .with(|s| {
            s.state.backend = deprovd::StoreBackend::Embedded;
            s.state.path = data.path().join("ledger");
        })
        .connector("hook", webhook("hook", &target.url()))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;
    let server = app.url("");
    let subject = format!("{}@corp.example", unique("frank"));
    let with_server = |mut v: Vec<String>| {
        v.extend([
            "--server".into(),
            server.clone(),
            "--token".into(),
            app.token.clone(),
        ]);
        v
    };

    let (code, out, err) = deprovd(
        with_server(vec![
            "lockout".into(),
            subject.clone(),
            "--reason".into(),
            "cli test".into(),
            "--connector".into(),
            "hook".into(),
            "--ticket".into(),
            "INC-7".into(),
            "--json".into(),
        ]),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let created: Value = serde_json::from_str(&out).expect("--json prints JSON");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["subject"], subject.as_str());
    assert_eq!(created["actions"].as_array().unwrap().len(), 2, "{created}");

    status_until(&app, &id, "lockout succeeds", |s| {
        all_actions(s, |a| a["state"] == "succeeded")
    })
    .await;
    let (code, out, err) = deprovd(with_server(vec!["status".into(), id.clone()]), vec![]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("lockout  {id}")), "{out}");
    assert!(out.contains("ticket   INC-7"), "{out}");
    assert!(out.contains("settled  yes"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("hook ")).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| r.contains("succeeded")), "{out}");

    let (code, out, err) = deprovd(with_server(vec!["restore".into(), id.clone()]), vec![]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("enable_account"), "{out}");
    assert!(out.contains("revoke_sessions cannot be undone"), "{out}");
    eventually(
        Duration::from_secs(10),
        "enable sent to the webhook",
        || async {
            target
                .seen()
                .iter()
                .any(|s| String::from_utf8_lossy(&s.body).contains("deprovd.enable_account"))
                .then_some(())
        },
    )
    .await;

    // Server and token from the environment.
    // The original is marked `restored` just before its reversal's own success is written: wait for
    // both, i.e. for the lockout to settle.
    let st = status_until(&app, &id, "disable marked restored and settled", |s| {
        s["settled"] == true
            && s["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["state"] == "restored")
    })
    .await;
    assert_eq!(st["settled"], true);
    let (code, out, err) = deprovd(
        vec!["status".into(), id.clone(), "--json".into()],
        vec![
            ("DEPROVD_URL", server.clone()),
            ("DEPROVD_TOKEN", app.token.clone()),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    let disable = json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["operation"] == "disable_account")
        .unwrap();
    assert_eq!(disable["state"], "restored");
    assert_eq!(disable["reversal"]["state"], "succeeded");

    // Errors: a bad token is exit 1 with the server's code; an unknown id too.
    let (code, _, err) = deprovd(
        vec![
            "status".into(),
            id.clone(),
            "--server".into(),
            server.clone(),
            "--token".into(),
            "wrong".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unauthenticated"), "{err}");
    let (code, _, err) = deprovd(
        with_server(vec!["restore".into(), "no-such-lockout".into()]),
        vec![],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    // Ids are taken by unique prefix; nothing starts with this one.
    assert!(
        err.contains("no action or lockout id starts with `no-such-lockout`"),
        "{err}"
    );
    app.stop().await;
}
