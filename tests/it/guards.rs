//! Guards and approvals through the real application against real Redis: the blast-radius breaker
//! holding a flood, admin reset and approval by a second person, self-approval refused, expiry that
//! never executes, the `deprovd approvals|approve` CLI, and the RBAC matrix of every `/v1` endpoint.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use deprovd::GuardConfig;

use crate::kit::connector::webhook;
use crate::kit::{
    DISABLE_ALL_POLICY, Target, TestApp, alert_json, deprovd, eventually, policy_dir, unique,
};

/// Roles and their tokens: every test app accepts exactly these.
const TOKENS: [(&str, &str); 5] = [
    ("ingest", "tok-ingest-guards"),
    ("viewer", "tok-viewer-guards"),
    ("responder", "tok-responder-guards"),
    ("approver", "tok-approver-guards"),
    ("admin", "tok-admin-guards"),
];

fn token(role: &str) -> &'static str {
    TOKENS.iter().find(|(r, _)| *r == role).unwrap().1
}

/// Every decision of this policy asks for approval (`mode: approval`).
const APPROVAL_POLICY: &str = r#"package deprovd

import rego.v1

decisions contains d if {
    some s in input.alert.subjects
    d := {
        "action": "disable_account",
        "subject": s.email,
        "reason": input.alert.title,
        "mode": "approval",
        "rule": "test.ask_first",
    }
}
"#;

/// The real application with one configured (hashed) token per role, named `<role>-bot`; its
/// helpers speak as the role each endpoint needs.
struct App {
    app: TestApp,
    /// The webhook target behind connector `hook`; it accepts every call.
    target: Target,
    _policies: tempfile::TempDir,
}

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl App {
    async fn spawn(policy: &str, guards: impl FnOnce(&mut GuardConfig)) -> App {
        let target = Target::hook().await;
        let policies = policy_dir(&[("p.rego", policy)]);
        let mut builder = TestApp::builder()
            .policies(policies.path())
            .quick_scan()
            .connector("hook", webhook("hook", &target.url()))
            .with(|s| guards(&mut s.guards))
            .redis();
        for (role, tok) in TOKENS {
            builder = builder.token(role, tok);
        }
        let app = App {
            app: builder.spawn().await,
            target,
            _policies: policies,
        };
        app.wait_ready(Duration::from_secs(15)).await;
        app
    }

    async fn stop(self) {
        self.app.stop().await;
    }

    /// One request; `body` `None` sends no body. Returns (status, JSON body or Null).
    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, role: &str) -> Value {
        let (s, v) = self.call(Method::GET, path, Some(token(role)), None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    async fn alert(&self, id: &str, email: &str) -> Value {
        let resp = self
            .http
            .post(self.url("/v1/alerts"))
            .bearer_auth(token("ingest"))
            .header("content-type", "application/json")
            .body(alert_json(id, email))
            .send()
            .await
            .expect("post alert");
        assert_eq!(resp.status().as_u16(), 202);
        resp.json().await.unwrap()
    }

    async fn actions(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/v1/actions?{query}"), "viewer").await["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn approvals(&self) -> Vec<Value> {
        self.get("/v1/approvals", "viewer").await["approvals"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every audit record (newest first).
    /// Held action `key` is cancelled with a note starting `note`: it has left the approval queue,
    /// and an approval now is refused with 409 `code`.
    async fn assert_cancelled_for_good(&self, key: &str, note: &str, code: &str) {
        let action = self.get(&format!("/v1/actions/{key}"), "viewer").await;
        assert_eq!(action["state"], "cancelled", "{action}");
        assert!(
            action["note"].as_str().is_some_and(|n| n.starts_with(note)),
            "{action}"
        );
        assert!(self.approvals().await.iter().all(|a| a["key"] != key));
        let (s, v) = self.approve(key, "approver").await;
        assert_eq!((s, v["code"].as_str()), (409, Some(code)), "{v}");
    }

    /// Approve held action `key` as `role`, without a comment.
    async fn approve(&self, key: &str, role: &str) -> (u16, Value) {
        self.call(
            Method::POST,
            &format!("/v1/approvals/{key}/approve"),
            Some(token(role)),
            None,
        )
        .await
    }

    async fn audit(&self) -> Vec<Value> {
        self.get("/v1/audit?limit=1000", "viewer").await["records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn count_state(actions: &[Value], state: &str) -> usize {
    actions.iter().filter(|a| a["state"] == state).count()
}

#[tokio::test]
async fn breaker_lets_exactly_n_through_holds_the_rest_until_admin_reset_and_approval() {
    const N: usize = 3;
    const FLOOD: usize = 8;
    let app = App::spawn(DISABLE_ALL_POLICY, |g| {
        g.approval_ttl = Duration::from_secs(3600);
        g.breaker.threshold = N as u64;
        g.breaker.window = Duration::from_secs(600);
    })
    .await;
    assert_eq!(
        app.metric("deprovd_breaker_open{scope=\"global\"}").await,
        Some(0.0)
    );

    // The flood: distinct users, all at once.
    let run = unique("flood");
    let emails: Vec<String> = (0..FLOOD)
        .map(|i| format!("{run}-user{i}@corp.example"))
        .collect();
    let ids: Vec<String> = (0..FLOOD).map(|i| format!("{run}-{i}")).collect();
    let posts = ids.iter().zip(&emails).map(|(id, e)| app.alert(id, e));
    futures::future::join_all(posts).await;

    let ledger = eventually(
        Duration::from_secs(20),
        "N succeeded and the rest held",
        || async {
            let all: Vec<Value> = app
                .actions("limit=1000")
                .await
                .into_iter()
                .filter(|a| a["subject"].as_str().is_some_and(|s| s.starts_with(&run)))
                .collect();
            (all.len() == FLOOD
                && count_state(&all, "succeeded") == N
                && count_state(&all, "awaiting_approval") == FLOOD - N)
                .then_some(all)
        },
    )
    .await;
    assert_eq!(
        app.target.count("POST", "/hook"),
        N,
        "exactly N lockouts executed"
    );
    assert!(
        ledger
            .iter()
            .all(|a| a["state"] == "succeeded" || a["state"] == "awaiting_approval")
    );
    let held = app.approvals().await;
    assert_eq!(held.len(), FLOOD - N, "{held:?}");
    for h in &held {
        assert!(
            h["note"]
                .as_str()
                .is_some_and(|n| n.contains("blast-radius breaker")),
            "{h}"
        );
        assert_eq!(h["requested_by"], "policy:test.disable_high");
        assert!(h["expires_at"].is_string(), "{h}");
    }
    assert_eq!(
        app.metric("deprovd_breaker_open{scope=\"global\"}").await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("deprovd_breaker_open{scope=\"hook\"}").await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("deprovd_guard_blocks_total{guard=\"breaker\"}")
            .await,
        Some((FLOOD - N) as f64)
    );
    let status = app.get("/v1/breaker", "viewer").await;
    assert_eq!(status["open"], true, "{status}");
    let global = &status["scopes"][0];
    assert_eq!(
        (&global["scope"], &global["subjects"], &global["threshold"]),
        (&json!("global"), &json!(FLOOD), &json!(N)),
        "{status}"
    );

    // While open, held actions stay held (nothing is due), and only an admin may reset.
    let (s, body) = app
        .call(
            Method::POST,
            "/v1/breaker/reset",
            Some(token("approver")),
            None,
        )
        .await;
    assert_eq!((s, body["code"].as_str()), (403, Some("forbidden")));
    let (s, reset) = app
        .call(
            Method::POST,
            "/v1/breaker/reset",
            Some(token("admin")),
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, 200, "{reset}");
    let mut was_open: Vec<&str> = reset["was_open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    was_open.sort();
    assert_eq!(was_open, ["global", "hook"]);
    assert_eq!(
        app.metric("deprovd_breaker_open{scope=\"global\"}").await,
        Some(0.0)
    );
    assert_eq!(app.target.count("POST", "/hook"), N, "a reset runs nothing");

    // A different person approves each held action: now they proceed.
    for h in &held {
        let key = h["key"].as_str().unwrap();
        let (s, v) = app
            .call(
                Method::POST,
                &format!("/v1/approvals/{key}/approve"),
                Some(token("approver")),
                Some(&json!({"comment": "checked: real incident"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["note"],
            "approved by approver-bot: checked: real incident"
        );
    }
    eventually(
        Duration::from_secs(20),
        "every approved action ran",
        || async {
            let all = app.actions("limit=1000").await;
            let mine: Vec<&Value> = all
                .iter()
                .filter(|a| a["subject"].as_str().is_some_and(|s| s.starts_with(&run)))
                .collect();
            (mine.iter().filter(|a| a["state"] == "succeeded").count() == FLOOD).then_some(())
        },
    )
    .await;
    assert_eq!(app.target.count("POST", "/hook"), FLOOD);
    assert!(app.approvals().await.is_empty());
    let bodies: Vec<String> = app
        .target
        .seen()
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    for e in &emails {
        assert_eq!(
            bodies.iter().filter(|b| b.contains(e.as_str())).count(),
            1,
            "{e} locked out exactly once"
        );
    }

    // The trail: one trip (system), the reset by the admin, each approval by the approver.
    let audit = app.audit().await;
    let events = |name: &str| -> Vec<&Value> {
        audit
            .iter()
            .filter(|r| r["detail"]["event"] == name)
            .collect()
    };
    let trips = events("breaker_tripped");
    assert_eq!(trips.len(), 2, "one trip per scope: {trips:?}");
    assert!(trips.iter().all(|t| t["actor"]["name"] == "breaker"));
    let resets = events("breaker_reset");
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0]["actor"]["name"], "admin-bot");
    assert_eq!(resets[0]["actor"]["role"], "admin");
    assert!(
        resets[0]["actor"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:"))
    );
    let approvals = events("approved");
    assert_eq!(approvals.len(), FLOOD - N);
    for a in approvals {
        assert_eq!(a["actor"]["name"], "approver-bot");
        assert_eq!(a["actor"]["role"], "approver");
        assert!(a["actor"]["source"].is_string());
        assert_eq!(a["detail"]["comment"], "checked: real incident");
        assert_eq!(a["detail"]["requested_by"], "policy:test.disable_high");
    }
    app.stop().await;
}

#[tokio::test]
async fn requester_cannot_approve_their_own_action_and_policy_holds_flow_through_approval() {
    let app = App::spawn(APPROVAL_POLICY, |g| {
        g.approval_ttl = Duration::from_secs(3600)
    })
    .await;

    // A four-eyes lockout by the admin: held, requested by the admin.
    let subject = format!("{}@corp.example", unique("gina"));
    let (s, created) = app
        .call(
            Method::POST,
            "/v1/lockouts",
            Some(token("admin")),
            Some(&json!({"subject": subject, "reason": "suspicious", "require_approval": true})),
        )
        .await;
    assert_eq!(s, 202, "{created}");
    let keys: Vec<String> = created["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["state"], "awaiting_approval", "{created}");
            a["key"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(keys.len(), 2, "disable + revoke: {created}");
    let held = app.approvals().await;
    assert!(
        held.iter()
            .filter(|h| keys.contains(&h["key"].as_str().unwrap().to_string()))
            .all(|h| h["requested_by"] == "admin-bot")
    );

    // The requester may not approve (nor reject) it, whatever their role; a responder has no say.
    for verb in ["approve", "reject"] {
        let (s, v) = app
            .call(
                Method::POST,
                &format!("/v1/approvals/{}/{verb}", keys[0]),
                Some(token("admin")),
                None,
            )
            .await;
        assert_eq!((s, v["code"].as_str()), (403, Some("self_approval")), "{v}");
    }
    let (s, v) = app.approve(&keys[0], "responder").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert_eq!(app.target.count("POST", "/hook"), 0, "nothing ran");

    // Through the CLI: the list shows both; self-approval exits 1 naming the code.
    let server = app.url("");
    let with = |mut v: Vec<String>, role: &str| {
        v.extend([
            "--server".into(),
            server.clone(),
            "--token".into(),
            token(role).into(),
        ]);
        v
    };
    let (code, out, err) = deprovd(with(vec!["approvals".into()], "viewer"), vec![]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID "), "{out}");
    for k in &keys {
        assert!(out.contains(k.as_str()), "{out}");
    }
    assert!(out.contains("admin-bot"), "{out}");
    let (code, _, err) = deprovd(
        with(vec!["approve".into(), keys[0].clone()], "admin"),
        vec![],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("self_approval"), "{err}");

    // Another person decides: one approved (it runs), one rejected (it never does).
    let (code, out, err) = deprovd(
        with(
            vec![
                "approve".into(),
                keys[0].clone(),
                "--comment".into(),
                "confirmed with the user's manager".into(),
                "--json".into(),
            ],
            "approver",
        ),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let approved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(approved["state"], "planned");
    let (code, out, err) = deprovd(
        with(
            vec![
                "approve".into(),
                keys[1].clone(),
                "--reject".into(),
                "--comment".into(),
                "sessions can stay".into(),
            ],
            "approver",
        ),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cancelled"), "{out}");
    eventually(Duration::from_secs(15), "approved action ran", || async {
        let a = app.get(&format!("/v1/actions/{}", keys[0]), "viewer").await;
        (a["state"] == "succeeded").then_some(())
    })
    .await;
    let rejected = app.get(&format!("/v1/actions/{}", keys[1]), "viewer").await;
    assert_eq!(rejected["state"], "cancelled");
    assert_eq!(
        app.target.count("POST", "/hook"),
        1,
        "only the approved one ran"
    );
    let (s, v) = app.approve(&keys[1], "approver").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("not_awaiting_approval")),
        "a decided action cannot be decided again: {v}"
    );

    // A policy decision in `approval` mode lands in the same queue, requested by its rule.
    let email = format!("{}@corp.example", unique("hank"));
    let processed = app.alert(&unique("alert"), &email).await;
    assert_eq!(processed["actions"][0]["state"], "awaiting_approval");
    let key = processed["actions"][0]["key"].as_str().unwrap().to_string();
    let held = app.approvals().await;
    let h = held
        .iter()
        .find(|h| h["key"] == key.as_str())
        .expect("held");
    assert_eq!(h["requested_by"], "policy:test.ask_first");
    let (s, v) = app.approve(&key, "approver").await;
    assert_eq!(s, 200, "{v}");
    eventually(
        Duration::from_secs(15),
        "policy-held action ran",
        || async {
            let a = app.get(&format!("/v1/actions/{key}"), "viewer").await;
            (a["state"] == "succeeded").then_some(())
        },
    )
    .await;
    assert_eq!(app.target.count("POST", "/hook"), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_responders_lockout_is_not_absorbed_by_a_held_action_and_runs_at_once() {
    let app = App::spawn(APPROVAL_POLICY, |g| {
        g.approval_ttl = Duration::from_secs(3600)
    })
    .await;

    // An approval-mode rule holds an automatic action for alice.
    let email = format!("{}@corp.example", unique("alice"));
    let processed = app.alert(&unique("alert"), &email).await;
    assert_eq!(processed["actions"][0]["state"], "awaiting_approval");
    let held = processed["actions"][0]["key"].as_str().unwrap().to_string();

    // A responder locks alice out: recorded as its own runnable action, not folded into the hold.
    let (s, created) = app
        .call(
            Method::POST,
            "/v1/lockouts",
            Some(token("responder")),
            Some(&json!({
                "subject": email,
                "connectors": ["hook"],
                "operations": ["disable_account"],
                "reason": "confirmed phish",
            })),
        )
        .await;
    assert_eq!(s, 202, "{created}");
    let lockout = created["actions"][0]["key"].as_str().unwrap().to_string();
    assert_ne!(lockout, held, "absorbed by the held action: {created}");
    assert_eq!(created["actions"][0]["state"], "planned", "{created}");

    // The target is called promptly, once.
    eventually(Duration::from_secs(10), "lockout ran", || async {
        let a = app.get(&format!("/v1/actions/{lockout}"), "viewer").await;
        (a["state"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(app.target.count("POST", "/hook"), 1);

    // The held action was cancelled as superseded: it can no longer run after an approval.
    app.assert_cancelled_for_good(
        &held,
        &format!("superseded by {lockout}"),
        "not_awaiting_approval",
    )
    .await;
    let trail = app.audit().await;
    assert!(
        trail.iter().any(|r| r["detail"]["event"] == "superseded"
            && r["action_key"] == held.as_str()
            && r["detail"]["superseded_by"] == lockout.as_str()),
        "the supersede is in the trail"
    );

    // A later alert for alice (held by the rule again) coalesces into the lockout that ran.
    let again = app.alert(&unique("alert"), &email).await;
    assert_eq!(again["actions"][0]["disposition"], "coalesced", "{again}");
    assert_eq!(again["actions"][0]["coalesced_into"], lockout.as_str());
    assert_eq!(app.target.count("POST", "/hook"), 1);
    app.stop().await;
}

#[tokio::test]
async fn expired_approval_is_cancelled_notified_in_the_trail_and_never_executes() {
    let app = App::spawn(APPROVAL_POLICY, |g| g.approval_ttl = Duration::from_secs(1)).await;
    let email = format!("{}@corp.example", unique("ivan"));
    let processed = app.alert(&unique("alert"), &email).await;
    let key = processed["actions"][0]["key"].as_str().unwrap().to_string();
    assert_eq!(processed["actions"][0]["state"], "awaiting_approval");

    let expired = eventually(Duration::from_secs(10), "approval expires", || async {
        let a = app.get(&format!("/v1/actions/{key}"), "viewer").await;
        (a["state"] == "cancelled").then_some(a)
    })
    .await;
    assert_eq!(expired["state"], "cancelled", "{expired}");
    app.assert_cancelled_for_good(&key, "approval expired", "approval_expired")
        .await;
    let after = app.get(&format!("/v1/actions/{key}"), "viewer").await;
    assert_eq!(
        after["state"], "cancelled",
        "a late approval changes nothing"
    );
    assert_eq!(after["next_attempt_at"], Value::Null);
    assert_eq!(app.target.count("POST", "/hook"), 0, "never executed");
    let audit = app.audit().await;
    let exp: Vec<&Value> = audit
        .iter()
        .filter(|r| r["detail"]["event"] == "approval_expired" && r["action_key"] == key.as_str())
        .collect();
    assert_eq!(exp.len(), 1, "{exp:?}");
    assert_eq!(exp[0]["subject"], email.as_str());
    assert_eq!(
        app.metric("deprovd_actions_total{connector=\"hook\",operation=\"disable_account\",outcome=\"expired\"}")
            .await,
        Some(1.0)
    );
    app.stop().await;
}

/// One endpoint of the RBAC matrix: method, path, body, roles allowed, status when allowed.
type Row = (Method, String, Option<Value>, &'static [&'static str], u16);

#[tokio::test]
async fn rbac_matrix_every_endpoint_by_every_role_and_without_or_with_a_bad_token() {
    let app = App::spawn(DISABLE_ALL_POLICY, |_| {}).await;

    // Fixtures: a lockout (its id and one action key) to read and restore.
    let subject = format!("{}@corp.example", unique("judy"));
    let lockout_body = json!({"subject": subject, "reason": "rbac matrix", "connectors": ["hook"]});
    let (s, created) = app
        .call(
            Method::POST,
            "/v1/lockouts",
            Some(token("responder")),
            Some(&lockout_body),
        )
        .await;
    assert_eq!(s, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let action = created["actions"][0]["key"].as_str().unwrap().to_string();
    let unknown = "f".repeat(64);
    let alert: Value = serde_json::from_str(&alert_json(&unique("rbac"), &subject)).unwrap();

    // (method, path, body, roles allowed, status when allowed). A role not listed gets 403
    // `forbidden`; no token and a bad token get 401 `unauthenticated`. "Allowed" statuses for
    // approve/reject/restore-by-key use an unknown id: 404 proves the call got past auth.
    let table: Vec<Row> = vec![
        (
            Method::POST,
            "/v1/alerts".into(),
            Some(alert),
            &["ingest", "admin"],
            202,
        ),
        (
            Method::POST,
            "/v1/lockouts".into(),
            Some(lockout_body.clone()),
            &["responder", "admin"],
            202,
        ),
        (
            Method::GET,
            format!("/v1/lockouts/{id}"),
            None,
            &["viewer", "responder", "approver", "admin"],
            200,
        ),
        (
            Method::POST,
            format!("/v1/lockouts/{id}/restore"),
            None,
            &["responder", "admin"],
            202,
        ),
        (
            Method::GET,
            "/v1/actions".into(),
            None,
            &["viewer", "responder", "approver", "admin"],
            200,
        ),
        (
            Method::GET,
            format!("/v1/actions/{action}"),
            None,
            &["viewer", "responder", "approver", "admin"],
            200,
        ),
        (
            Method::POST,
            format!("/v1/actions/{unknown}/restore"),
            None,
            &["responder", "admin"],
            404,
        ),
        (
            Method::POST,
            format!("/v1/actions/{unknown}/retry"),
            None,
            &["responder", "admin"],
            404,
        ),
        (
            Method::GET,
            "/v1/lockouts".into(),
            None,
            &["viewer", "responder", "approver", "admin"],
            200,
        ),
        (
            Method::GET,
            "/v1/approvals".into(),
            None,
            &["viewer", "responder", "approver", "admin"],
            200,
        ),
        (
            Method::POST,
            format!("/v1/approvals/{unknown}/approve"),
            None,
            &["approver", "admin"],
            404,
        ),
        (
            Method::POST,
            format!("/v1/approvals/{unknown}/reject"),
            None,
            &["approver", "admin"],
            404,
        ),
        (
            Method::GET,
            "/v1/audit".into(),
            None,
            &["viewer", "responder", "approver", "admin"],
            200,
        ),
        (
            Method::GET,
            "/v1/breaker".into(),
            None,
            &["viewer", "responder", "approver", "admin"],
            200,
        ),
        (
            Method::POST,
            "/v1/breaker/reset".into(),
            None,
            &["admin"],
            200,
        ),
    ];
    let mut checked = 0;
    let mut failures = Vec::new();
    for (method, path, body, allowed, ok) in &table {
        let callers: Vec<(String, Option<&str>, u16, &str)> = TOKENS
            .iter()
            .map(|(role, tok)| {
                if allowed.contains(role) {
                    (role.to_string(), Some(*tok), *ok, "")
                } else {
                    (role.to_string(), Some(*tok), 403, "forbidden")
                }
            })
            .chain([
                ("no token".to_string(), None, 401, "unauthenticated"),
                (
                    "bad token".to_string(),
                    Some("not-a-token"),
                    401,
                    "unauthenticated",
                ),
            ])
            .collect();
        for (who, tok, want, code) in callers {
            let (got, v) = app.call(method.clone(), path, tok, body.as_ref()).await;
            checked += 1;
            if got != want || (!code.is_empty() && v["code"] != code) {
                failures.push(format!(
                    "{method} {path} as {who}: want {want} {code}, got {got} {v}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, table.len() * 7);
    app.stop().await;
}

#[tokio::test]
async fn manual_lockouts_count_towards_the_breaker_but_are_never_held() {
    let app = App::spawn(DISABLE_ALL_POLICY, |g| {
        g.breaker.threshold = 1;
        g.breaker.window = Duration::from_secs(600);
    })
    .await;
    let run = unique("manual");
    // Two responders' lockouts of two people: the second trips the breaker, and still runs.
    let mut ids = Vec::new();
    for i in 0..2 {
        let (s, created) = app
            .call(
                Method::POST,
                "/v1/lockouts",
                Some(token("responder")),
                Some(&json!({
                    "subject": format!("{run}-{i}@corp.example"),
                    "reason": "confirmed compromise",
                    "operations": ["disable_account"],
                })),
            )
            .await;
        assert_eq!(s, 202, "{created}");
        assert_eq!(created["actions"][0]["state"], "planned", "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        eventually(Duration::from_secs(15), "manual lockout ran", || async {
            let st = app.get(&format!("/v1/lockouts/{id}"), "viewer").await;
            (st["actions"][0]["state"] == "succeeded").then_some(())
        })
        .await;
    }
    assert_eq!(
        app.metric("deprovd_breaker_open{scope=\"global\"}").await,
        Some(1.0),
        "manual lockouts are counted"
    );
    // An automatic action now waits for a person.
    let processed = app
        .alert(&unique("alert"), &format!("{run}-auto@corp.example"))
        .await;
    assert_eq!(
        processed["actions"][0]["state"], "awaiting_approval",
        "{processed}"
    );
    assert_eq!(app.target.count("POST", "/hook"), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_retried_approval_with_one_idempotency_key_answers_the_same_and_runs_once() {
    let app = App::spawn(APPROVAL_POLICY, |g| {
        g.approval_ttl = Duration::from_secs(3600)
    })
    .await;
    let subject = format!("{}@corp.example", unique("ivan"));
    let (s, created) = app
        .call(
            Method::POST,
            "/v1/lockouts",
            Some(token("admin")),
            Some(
                &json!({"subject": subject, "reason": "four eyes", "require_approval": true,
                         "operations": ["disable_account"]}),
            ),
        )
        .await;
    assert_eq!(s, 202, "{created}");
    let key = created["actions"][0]["key"].as_str().unwrap().to_string();
    let decide = |verb: &'static str| {
        app.http
            .post(app.url(&format!("/v1/approvals/{key}/{verb}")))
            .bearer_auth(token("approver"))
            .header("Idempotency-Key", "approve-ivan-1")
            .send()
    };
    let first = decide("approve").await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    // The answer was "lost": the client sends the same decision again.
    let again = decide("approve").await.unwrap();
    assert_eq!(again.status().as_u16(), 200, "a replay is not a 409");
    let v: Value = again.json().await.unwrap();
    assert_eq!(v["key"], key.as_str());
    assert_ne!(v["state"], "awaiting_approval", "{v}");
    // A different decision under the same key is refused.
    let other = decide("reject").await.unwrap();
    assert_eq!(other.status().as_u16(), 422);
    let v: Value = other.json().await.unwrap();
    assert_eq!(v["code"], "idempotency_key_reused", "{v}");
    eventually(Duration::from_secs(10), "approved action ran", || async {
        let a = app.get(&format!("/v1/actions/{key}"), "viewer").await;
        (a["state"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(
        app.target.count("POST", "/hook"),
        1,
        "one call for one approval"
    );
    app.stop().await;
}
