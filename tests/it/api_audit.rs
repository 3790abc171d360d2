//! The audit layer no handler can bypass: every authenticated call to every route is exactly one
//! `api_call` record (ingest: when refused), a 403 is recorded, a protected-subject lockout leaves a
//! guard record, and the execution records of a manual action name the requester and the lockout.

use std::time::Duration;

use serde_json::{Value, json};

use deprovd::GuardConfig;

use crate::kit::connector::webhook;
use crate::kit::{DISABLE_ALL_POLICY, Target, TestApp, eventually, policy_dir};

/// The real app with named tokens (admin, responder, viewer, approver) and one webhook connector.
struct App {
    app: TestApp,
    _policies: tempfile::TempDir,
}

const ADMIN: &str = "tok-admin-audit";
const RESPONDER: &str = "tok-responder-audit";
const VIEWER: &str = "tok-viewer-audit";
const APPROVER: &str = "tok-approver-audit";

impl App {
    async fn start(target: &Target, guards: impl FnOnce(&mut GuardConfig)) -> App {
        let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
        let mut builder = TestApp::builder()
            .policies(policies.path())
            .quick_scan()
            .connector("hook", webhook("hook", &target.url()))
            .with(|s| guards(&mut s.guards));
        for (name, role, tok) in [
            ("ada-admin", "admin", ADMIN),
            ("rita-responder", "responder", RESPONDER),
            ("vic-viewer", "viewer", VIEWER),
            ("abe-approver", "approver", APPROVER),
        ] {
            builder = builder.named_token(name, role, tok);
        }
        let app = builder.spawn().await;
        app.wait_ready(Duration::from_secs(15)).await;
        App {
            app,
            _policies: policies,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .app
            .http
            .request(method.parse().unwrap(), self.app.url(path))
            .bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The whole trail, newest first (this read is itself recorded, after it answered).
    async fn trail(&self) -> Vec<Value> {
        let (status, body) = self
            .call("GET", "/v1/audit?limit=1000", ADMIN, None, &[])
            .await;
        assert_eq!(status, 200, "{body}");
        body["records"].as_array().cloned().unwrap_or_default()
    }

    async fn api_calls(&self, route: &str) -> Vec<Value> {
        self.trail()
            .await
            .into_iter()
            .filter(|r| r["kind"] == "api_call" && r["detail"]["route"] == route)
            .collect()
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

/// (method, route, path, body, headers) of one call.
type Probe<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
);

#[tokio::test]
async fn every_authenticated_call_on_every_route_is_exactly_one_api_call_record() {
    let target = Target::hook().await;
    let app = App::start(&target, |_| {}).await;
    let (status, created) = app
        .call(
            "POST",
            "/v1/lockouts",
            RESPONDER,
            Some(r#"{"subject": "mallory@example.org", "reason": "table test"}"#),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let lockout = created["id"].as_str().unwrap().to_string();
    let key = created["actions"][0]["key"].as_str().unwrap().to_string();
    let lockout_path = format!("/v1/lockouts/{lockout}");

    // (method, route, path, body, headers): one authenticated call per route that needs a token.
    let restore_lockout = format!("{lockout_path}/restore");
    let action_path = format!("/v1/actions/{key}");
    let restore_action = format!("{action_path}/restore");
    let retry_action = format!("{action_path}/retry");
    let approve = format!("/v1/approvals/{key}/approve");
    let reject = format!("/v1/approvals/{key}/reject");
    let okta = [("x-okta-verification-challenge", "challenge-1")];
    let set = [("content-type", "application/secevent+jwt")];
    let calls: Vec<Probe> = vec![
        ("POST", "/v1/alerts", "/v1/alerts", Some("{not json"), &[]),
        ("GET", "/v1/alerts", "/v1/alerts", None, &okta),
        ("GET", "/v1/actions", "/v1/actions", None, &[]),
        ("GET", "/v1/actions/{key}", &action_path, None, &[]),
        (
            "POST",
            "/v1/actions/{key}/restore",
            &restore_action,
            None,
            &[],
        ),
        ("POST", "/v1/actions/{key}/retry", &retry_action, None, &[]),
        ("GET", "/v1/lockouts", "/v1/lockouts", None, &[]),
        (
            "POST",
            "/v1/lockouts",
            "/v1/lockouts",
            Some(r#"{"subject": "trent@example.org", "reason": "table test"}"#),
            &[],
        ),
        ("GET", "/v1/lockouts/{id}", &lockout_path, None, &[]),
        (
            "POST",
            "/v1/lockouts/{id}/restore",
            &restore_lockout,
            None,
            &[],
        ),
        ("GET", "/v1/audit", "/v1/audit", None, &[]),
        ("GET", "/v1/audit/verify", "/v1/audit/verify", None, &[]),
        ("GET", "/v1/approvals", "/v1/approvals", None, &[]),
        ("POST", "/v1/approvals/{id}/approve", &approve, None, &[]),
        ("POST", "/v1/approvals/{id}/reject", &reject, None, &[]),
        ("GET", "/v1/breaker", "/v1/breaker", None, &[]),
        ("GET", "/v1/policy/shadow", "/v1/policy/shadow", None, &[]),
        ("POST", "/v1/breaker/reset", "/v1/breaker/reset", None, &[]),
        (
            "POST",
            "/v1/ssf/{receiver}",
            "/v1/ssf/nobody",
            Some("x.y.z"),
            &set,
        ),
    ];
    // The table covers every route with an access rule, and nothing else.
    let covered: Vec<(&str, &str)> = calls.iter().map(|c| (c.0, c.1)).collect();
    for (method, route) in deprovd::API_ROUTES {
        let rule = deprovd::route_access(&method.parse().unwrap(), route);
        assert_eq!(
            rule.is_some(),
            covered.contains(&(*method, *route)),
            "{method} {route}"
        );
    }
    for (method, route, path, body, headers) in calls {
        let before = app.api_calls(route).await.len();
        let (status, answer) = app.call(method, path, ADMIN, body, headers).await;
        let records = app.api_calls(route).await;
        // Reading the trail is itself a `GET /v1/audit` call: the read before this one adds one.
        let expected = if route == "/v1/audit" { 2 } else { 1 };
        assert_eq!(
            records.len() - before,
            expected,
            "{method} {path} → {status} {answer}"
        );
        // Newest first: the call under test (the read after it is recorded only once answered).
        let r = &records[0];
        assert_eq!(r["actor"]["name"], "ada-admin", "{r}");
        assert_eq!(r["actor"]["role"], "admin", "{r}");
        assert_eq!(r["detail"]["method"], method, "{r}");
        assert_eq!(r["detail"]["path"], path, "{r}");
        assert_eq!(r["detail"]["status"], status, "{r}");
        assert!(r["detail"]["outcome"].is_string(), "{r}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_accepted_alert_is_recorded_by_its_own_record_and_a_refused_call_is_recorded_as_forbidden()
 {
    let target = Target::start().await;
    let app = App::start(&target, |_| {}).await;
    let alert = crate::kit::alert_json("audit-alert-1", "dora@example.org");
    let (status, _) = app
        .call("POST", "/v1/alerts", ADMIN, Some(&alert), &[])
        .await;
    assert_eq!(status, 202);
    let trail = app.trail().await;
    assert!(
        trail.iter().any(|r| r["kind"] == "alert_received"
            && r["alert_id"] == "audit-alert-1"
            && r["actor"]["name"] == "ada-admin"),
        "the alert's own record names the caller"
    );
    assert!(
        !trail
            .iter()
            .any(|r| r["kind"] == "api_call" && r["detail"]["route"] == "/v1/alerts"),
        "an accepted delivery is one audit record per alert, not two: {trail:#?}"
    );

    let (status, _) = app
        .call(
            "POST",
            "/v1/lockouts",
            VIEWER,
            Some(r#"{"subject": "x@example.org", "reason": "not mine to ask"}"#),
            &[],
        )
        .await;
    assert_eq!(status, 403);
    let refused = app.api_calls("/v1/lockouts").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["actor"]["name"], "vic-viewer");
    assert_eq!(refused[0]["detail"]["outcome"], "forbidden");
    assert_eq!(refused[0]["detail"]["code"], "forbidden");

    // An unknown token names nobody: 401, and nothing for anyone to fill the trail with.
    let calls = |trail: Vec<Value>| {
        trail
            .into_iter()
            .filter(|r| r["kind"] == "api_call")
            .count()
    };
    let before = calls(app.trail().await);
    let (status, _) = app.call("GET", "/v1/actions", "nope", None, &[]).await;
    assert_eq!(status, 401);
    // Only the `GET /v1/audit` read above was added.
    assert_eq!(calls(app.trail().await), before + 1);
    app.stop().await;
}

#[tokio::test]
async fn a_lockout_of_a_protected_subject_leaves_a_guard_record_naming_the_requester() {
    let target = Target::hook().await;
    let app = App::start(&target, |g| {
        g.protected = vec!["breakglass@example.org".into()]
    })
    .await;
    let (status, created) = app
        .call(
            "POST",
            "/v1/lockouts",
            RESPONDER,
            Some(r#"{"subject": "breakglass@example.org", "reason": "try it"}"#),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["actions"][0]["state"], "skipped", "{created}");
    let id = created["id"].as_str().unwrap();
    let trail = app.trail().await;
    let guard: Vec<&Value> = trail
        .iter()
        .filter(|r| r["kind"] == "guard" && r["subject"] == "breakglass@example.org")
        .collect();
    assert_eq!(guard.len(), created["actions"].as_array().unwrap().len());
    assert_eq!(guard[0]["detail"]["guard"], "protected", "{}", guard[0]);
    assert_eq!(guard[0]["detail"]["requested_by"], "rita-responder");
    assert_eq!(guard[0]["detail"]["request_id"], id);
    assert_eq!(target.count("POST", "/hook"), 0);
    app.stop().await;
}

#[tokio::test]
async fn an_executed_manual_action_is_recorded_with_its_requester_and_lockout_id() {
    let target = Target::hook().await;
    let app = App::start(&target, |_| {}).await;
    let (status, created) = app
        .call(
            "POST",
            "/v1/lockouts",
            RESPONDER,
            Some(&json!({"subject": "eve@example.org", "reason": "stolen laptop"}).to_string()),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let done = eventually(
        Duration::from_secs(10),
        "the lockout's action succeeded",
        || async {
            app.trail().await.into_iter().find(|r| {
                r["kind"] == "action_state"
                    && r["subject"] == "eve@example.org"
                    && r["detail"]["state"] == "succeeded"
            })
        },
    )
    .await;
    assert_eq!(done["detail"]["requested_by"], "rita-responder", "{done}");
    assert_eq!(done["detail"]["request_id"], id.as_str(), "{done}");
    app.stop().await;
}

#[tokio::test]
async fn a_refused_self_approval_retried_with_its_idempotency_key_is_refused_again() {
    let target = Target::hook().await;
    let app = App::start(&target, |_| {}).await;
    let (status, created) = app
        .call(
            "POST",
            "/v1/lockouts",
            ADMIN,
            Some(r#"{"subject": "sam@example.org", "reason": "needs four eyes", "require_approval": true}"#),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let key = created["actions"][0]["key"].as_str().unwrap().to_string();
    let approve = format!("/v1/approvals/{key}/approve");
    let idem = [("idempotency-key", "self-approval-1")];
    for attempt in 1..=3 {
        let (status, body) = app.call("POST", &approve, ADMIN, None, &idem).await;
        assert_eq!(status, 403, "attempt {attempt}: {body}");
        assert_eq!(body["code"], "self_approval", "attempt {attempt}: {body}");
    }
    // A decision that was made is still replayed to its retry, not refused as "not awaiting".
    let other = [("idempotency-key", "approval-by-abe")];
    let (first, rec) = app.call("POST", &approve, APPROVER, None, &other).await;
    assert_eq!(first, 200, "{rec}");
    let (again, rec) = app.call("POST", &approve, APPROVER, None, &other).await;
    assert_eq!(again, 200, "{rec}");
    assert_eq!(rec["key"], key.as_str());
    // Without the key the same retry is the honest 409.
    let (bare, _) = app.call("POST", &approve, APPROVER, None, &[]).await;
    assert_eq!(bare, 409);
    app.stop().await;
}
