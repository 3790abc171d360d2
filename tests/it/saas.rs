//! The Slack and GitHub connectors (`connectors/slack.yaml`, `connectors/github.yaml`), built from
//! their config by `deprovd::build_connectors` exactly as the service builds them, against the
//! vendor fakes of [`crate::kit::vendors`]: Slack's SCIM 2.0 API and Web API
//! (`admin.users.session.reset`, `auth.test`, HTTP 200 with `{"ok": false, "error": ...}` for
//! failures, 429 `ratelimited` with Retry-After) on two hosts with two tokens; GitHub's REST API
//! (organization and team memberships, pending invitations, SAML SSO credential authorizations,
//! primary and secondary rate limits), its GraphQL API (teams with immediate members and their team
//! roles) and the Enterprise Managed Users SCIM API. Exact methods, paths, queries, bodies and
//! headers are asserted; round trips must leave the fakes' state exactly as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use axum::http::Method;
use deprovd::{InstanceConfig, Memberships, Operation, Outcome, build_connectors};
use serde_json::{Value, json};

use crate::kit::connector::{RunExt, Secrets, connector, retrying, run};
use crate::kit::fake::{Fake, now_secs, resp};
use crate::kit::vendors::github::*;
use crate::kit::vendors::slack::*;
use crate::kit::{DISABLE_ALL_POLICY, TestApp, eventually, policy_dir};

// ---------------------------------------------------------------------------------------------
// Slack: SCIM 2.0 (https://api.slack.com/scim/v2) and the Web API (https://slack.com/api).
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slack_contain_then_restore_leaves_the_workspace_as_it_was() {
    let (fake, slack, _s) = slack().await;
    let before = fake.vendor(|s| s.users.clone());
    let scim_port: u16 = fake.bases()[0].rsplit(':').next().unwrap().parse().unwrap();
    let web_port: u16 = fake.bases()[1].rsplit(':').next().unwrap().parse().unwrap();

    let check = slack.check().await;
    assert!(check.ok, "{check:?}");

    // The subject is an email: userName finds nobody, emails.value finds W0ALICE.
    fake.clear_log();
    let d = slack
        .expecting(
            Operation::DisableAccount,
            "alice@example.com",
            None,
            Outcome::Done,
        )
        .await;
    assert_eq!(d.pre_state, Some(json!({"prior_active": true})));
    assert_eq!(
        fake.calls(),
        [
            "GET /scim/v2/Users",
            "GET /scim/v2/Users",
            "GET /scim/v2/Users/W0ALICE",
            "PATCH /scim/v2/Users/W0ALICE",
        ]
    );
    let reqs = fake.requests();
    assert_eq!(reqs[0].query["filter"], "userName eq \"alice@example.com\"");
    assert_eq!(
        reqs[1].query["filter"],
        "emails.value eq \"alice@example.com\""
    );
    assert_eq!(
        reqs[3].body,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "active", "value": false}]})
    );
    assert!(reqs.iter().all(|r| r.port == scim_port
        && r.header("authorization") == Some(&format!("Bearer {SCIM_TOKEN}"))
        && r.header("accept") == Some("application/scim+json")));
    assert!(!fake.vendor(|s| s.users["W0ALICE"].active));

    // Sessions: the Web API on the other host, with the admin token, JSON body.
    fake.clear_log();
    slack
        .expecting(
            Operation::RevokeSessions,
            "alice@example.com",
            None,
            Outcome::Done,
        )
        .await;
    let reqs = fake.requests();
    let reset = reqs.last().unwrap();
    assert_eq!(
        format!("{} {}", reset.method, reset.path),
        "POST /api/admin.users.session.reset"
    );
    assert_eq!(reset.port, web_port);
    assert_eq!(
        reset.header("authorization"),
        Some(format!("Bearer {ADMIN_TOKEN}").as_str())
    );
    assert_eq!(
        reset.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(reset.body, json!({"user_id": "W0ALICE"}));
    assert_eq!(fake.vendor(|s| s.sessions_reset.clone()), ["W0ALICE"]);

    // A repeat is already_done and writes nothing.
    fake.clear_log();
    slack
        .expecting(
            Operation::DisableAccount,
            "alice@example.com",
            None,
            Outcome::AlreadyDone,
        )
        .await;
    assert!(fake.calls().iter().all(|c| c.starts_with("GET ")));

    // Restore with the recorded pre-state: active again, exactly as before.
    slack
        .expecting(
            Operation::EnableAccount,
            "alice@example.com",
            d.pre_state.clone(),
            Outcome::Done,
        )
        .await;
    let patch = fake.requests().into_iter().last().unwrap();
    assert_eq!(
        patch.body["Operations"],
        json!([{"op": "replace", "path": "active", "value": true}])
    );
    assert_eq!(fake.vendor(|s| s.users.clone()), before);

    // A user who was already deactivated stays deactivated through a contain → restore.
    let d = run(&*slack, Operation::DisableAccount, "gone", None).await;
    assert_eq!(d.outcome, Outcome::AlreadyDone);
    assert_eq!(d.pre_state, Some(json!({"prior_active": false})));
    let e = run(&*slack, Operation::EnableAccount, "gone", d.pre_state).await;
    assert_eq!(e.outcome, Outcome::AlreadyDone);
    assert_eq!(fake.vendor(|s| s.users.clone()), before);

    slack
        .expecting(
            Operation::DisableAccount,
            "nobody@example.com",
            None,
            Outcome::NotFound,
        )
        .await;
}

#[tokio::test]
async fn slack_ok_false_with_http_200_is_a_failure_and_error_codes_map_to_outcomes() {
    let (fake, slack, _s) = slack().await;
    let reset_answer = |error: &str| resp(200, json!({"ok": false, "error": error}));

    // HTTP 200 with ok:false is never success: Slack's error code is the reason.
    fake.inject(
        Method::POST,
        "/admin.users.session.reset",
        reset_answer("not_an_admin"),
    );
    let r = run(&*slack, Operation::RevokeSessions, "mona", None).await;
    match &r.outcome {
        Outcome::Failed { reason } => assert!(reason.contains("not_an_admin"), "{reason}"),
        other => panic!("ok:false must fail, got {other:?}"),
    }
    assert!(fake.vendor(|s| s.sessions_reset.is_empty()));

    // (twice: a not_found after a cached lookup makes the connector resolve the subject again and retry)
    for _ in 0..2 {
        fake.inject(
            Method::POST,
            "/admin.users.session.reset",
            reset_answer("user_not_found"),
        );
    }
    slack
        .expecting(Operation::RevokeSessions, "mona", None, Outcome::NotFound)
        .await;

    fake.inject(
        Method::POST,
        "/admin.users.session.reset",
        reset_answer("internal_error"),
    );
    let r = run(&*slack, Operation::RevokeSessions, "mona", None).await;
    assert!(
        matches!(&r.outcome, Outcome::Retry { reason, .. } if reason.contains("internal_error")),
        "{:?}",
        r.outcome
    );

    // Rate limited: 429 with Retry-After and the ratelimited body → retry no sooner than asked.
    fake.inject(
        Method::POST,
        "/admin.users.session.reset",
        (
            429,
            json!({"ok": false, "error": "ratelimited"}),
            vec![("Retry-After".into(), "7".into())],
        ),
    );
    let r = run(&*slack, Operation::RevokeSessions, "mona", None).await;
    let (after, reason) = retrying(&r);
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert!(reason.contains("ratelimited"), "{reason}");
    assert!(fake.vendor(|s| s.sessions_reset.is_empty()));
    slack
        .expecting(Operation::RevokeSessions, "mona", None, Outcome::Done)
        .await;
    assert_eq!(fake.vendor(|s| s.sessions_reset.clone()), ["W0MONA"]);

    // One token for both APIs, but it lacks admin.users:write: Slack's own missing_scope, named.
    let secrets = Secrets::new();
    let one_token = connector("slack", slack_config(&fake, &secrets, false));
    let r = run(&*one_token, Operation::RevokeSessions, "mona", None).await;
    match &r.outcome {
        Outcome::Failed { reason } => {
            assert!(reason.contains("missing_scope"), "{reason}");
            assert!(reason.contains("admin.users:write"), "{reason}");
            assert!(!reason.contains(SCIM_TOKEN), "{reason}");
        }
        other => panic!("expected a terminal failure, got {other:?}"),
    }
    let check = one_token.check().await;
    assert!(
        !check.ok,
        "auth.test with the SCIM-only token must fail: {check:?}"
    );
    assert!(check.detail.contains("invalid_auth"), "{check:?}");
}

#[tokio::test]
async fn slack_and_github_endpoint_config_is_validated_against_the_specs() {
    let secrets = Secrets::new();
    let token = secrets.file("t", "x");
    #[derive(serde::Deserialize)]
    struct Root {
        connectors: BTreeMap<String, InstanceConfig>,
    }
    let root: Root = toml::from_str(&format!(
        r#"
[connectors.slack]
type = "slack"
base_url = "https://api.slack.com/scim/v2"
auth = {{ scheme = "bearer", token = "{token}" }}
[connectors.slack.endpoints.web_api]
base_url = "http://slack.example.com/api"
auth = {{ scheme = "basic", username = "u", password = "{token}" }}
[connectors.slack.endpoints.webapi]
base_url = "https://slack.com/api"

[connectors.github]
type = "github"
base_url = "https://api.github.com"
auth = {{ scheme = "bearer", token = "{token}" }}
vars = {{ org = "acme" }}
"#
    ))
    .expect("parses");
    let Err(problems) = build_connectors(&root.connectors, None) else {
        panic!("must be refused")
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "connectors.slack.endpoints.web_api.base_url",
            "connectors.slack.endpoints.webapi",
            "connectors.slack.endpoints.web_api.auth.scheme",
        ],
        "{problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// GitHub: REST (memberships, teams, credential authorizations), GraphQL, EMU SCIM.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn github_contain_then_restore_reinvites_with_the_role_and_immediate_teams() {
    let (fake, gh, _s) = github(json!({"org": "acme"})).await;
    let before = fake.vendor(|g| g.clone());
    let check = gh.check().await;
    assert!(check.ok, "{check:?}");

    fake.clear_log();
    let d = gh
        .expecting(Operation::DisableAccount, "Mona", None, Outcome::Done)
        .await;
    assert_eq!(
        fake.calls(),
        [
            "GET /users/Mona",
            "GET /orgs/acme/memberships/mona",
            "POST /graphql",
            "DELETE /orgs/acme/memberships/mona",
        ]
    );
    let reqs = fake.requests();
    assert!(reqs.iter().all(|r| {
        r.header("authorization") == Some(&format!("Bearer {GH_TOKEN}"))
            && r.header("accept") == Some("application/vnd.github+json")
            && r.header("x-github-api-version") == Some("2022-11-28")
    }));
    assert_eq!(
        reqs[2].body,
        json!({"query": TEAMS_QUERY, "variables": {"org": "acme", "login": "mona"}})
    );
    // Immediate teams only (not `engineering`, reached through `sre`), and only mona's own role
    // (`monalisa` also matches the substring search).
    assert_eq!(
        d.pre_state,
        Some(
            json!({"was_member": true, "role": "admin", "state": "active",
                    "maintainer_of": ["platform"], "member_of": ["sre"], "prior_active": null})
        )
    );
    fake.vendor(|g| {
        assert!(!g.members.contains_key("mona"));
        assert!(g.teams.values().all(|t| !t.members.contains_key("mona")));
        assert_eq!(g.members["monalisa"], before.members["monalisa"]);
    });

    // Repeat: not a member any more → already_done, no write.
    fake.clear_log();
    let again = gh
        .expecting(
            Operation::DisableAccount,
            "mona",
            None,
            Outcome::AlreadyDone,
        )
        .await;
    assert_eq!(
        fake.calls(),
        ["GET /users/mona", "GET /orgs/acme/memberships/mona"]
    );
    assert_eq!(
        again.pre_state.as_ref().unwrap()["was_member"],
        json!(false)
    );
    // Restoring that no-op removal gives nothing back.
    gh.expecting(
        Operation::EnableAccount,
        "mona",
        again.pre_state,
        Outcome::AlreadyDone,
    )
    .await;
    assert!(!fake.vendor(|g| g.members.contains_key("mona")));

    // Restore: re-invite as admin, then the recorded teams with their team roles.
    fake.clear_log();
    let e = gh
        .expecting(
            Operation::EnableAccount,
            "mona",
            d.pre_state.clone(),
            Outcome::Done,
        )
        .await;
    assert_eq!(
        fake.calls(),
        [
            // (the lookup of `mona` is served from the connector's lookup cache)
            "GET /orgs/acme/memberships/mona",
            "PUT /orgs/acme/memberships/mona",
            "PUT /orgs/acme/teams/platform/memberships/mona",
            "PUT /orgs/acme/teams/sre/memberships/mona",
        ]
    );
    let bodies: Vec<Value> = fake.requests().iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies[1], json!({"role": "admin"}));
    assert_eq!(bodies[2], json!({"role": "maintainer"}));
    assert_eq!(bodies[3], json!({"role": "member"}));
    assert_eq!(e.pre_state, Some(json!({"teams": ["platform", "sre"]})));
    assert_eq!(
        fake.vendor(|g| g.members["mona"].clone()),
        ("admin".into(), "pending".into())
    );
    // GitHub invites; once mona accepts, the organization is exactly as it was.
    fake.vendor(|g| g.accept_invitation("mona"));
    assert_eq!(fake.vendor(|g| g.clone()), before);

    // A second restore changes nothing (the membership is read first; team PUTs are idempotent).
    let e2 = run(&*gh, Operation::EnableAccount, "mona", d.pre_state).await;
    assert!(e2.outcome.is_success(), "{}", e2.summary);
    assert_eq!(fake.vendor(|g| g.clone()), before);
}

#[tokio::test]
async fn github_not_a_member_is_already_done_and_an_unknown_login_is_not_found() {
    let (fake, gh, _s) = github(json!({"org": "acme"})).await;
    let before = fake.vendor(|g| g.clone());
    gh.expecting(
        Operation::DisableAccount,
        "outsider",
        None,
        Outcome::AlreadyDone,
    )
    .await;
    gh.expecting(
        Operation::DisableAccount,
        "alice@example.com",
        None,
        Outcome::NotFound,
    )
    .await;
    assert_eq!(
        fake.calls().last().map(String::as_str),
        Some("GET /users/alice%40example.com")
    );
    assert_eq!(fake.vendor(|g| g.clone()), before);

    // A misconfigured instance (org mode without an org) fails with what to set, acting on nothing.
    let secrets = Secrets::new();
    let bad = connector(
        "gh",
        github_config(&fake, &secrets, "gh", json!({"mode": "org"})),
    );
    let r = run(&*bad, Operation::DisableAccount, "mona", None).await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("vars.org")),
        "{:?}",
        r.outcome
    );
    assert_eq!(fake.vendor(|g| g.clone()), before);
}

#[tokio::test]
async fn github_primary_and_secondary_rate_limits_are_retried_after_the_signalled_time() {
    let (fake, gh, _s) = github(json!({"org": "acme"})).await;
    // Secondary rate limit: 403 with retry-after.
    fake.inject(
        Method::DELETE,
        "/orgs/acme/memberships/octo",
        (
            403,
            json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                   "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}),
            vec![("retry-after".into(), "3".into())],
        ),
    );
    let r = run(&*gh, Operation::DisableAccount, "octo", None).await;
    let (after, reason) = retrying(&r);
    assert_eq!(after, Some(Duration::from_secs(3)));
    assert!(reason.contains("secondary rate limit"), "{reason}");
    assert!(
        fake.vendor(|g| g.members.contains_key("octo")),
        "not removed yet"
    );

    // A 403 without rate-limit signals is a permission problem: terminal, with GitHub's message.
    fake.inject(
        Method::DELETE,
        "/orgs/acme/memberships/octo",
        gh_error(403, "You must be an org owner to remove members"),
    );
    let r = run(&*gh, Operation::DisableAccount, "octo", None).await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("org owner")),
        "{:?}",
        r.outcome
    );

    let ok = gh
        .expecting(Operation::DisableAccount, "octo", None, Outcome::Done)
        .await;
    assert_eq!(
        ok.pre_state.as_ref().unwrap()["maintainer_of"],
        json!(["engineering"])
    );
    assert!(!fake.vendor(|g| g.members.contains_key("octo")));

    // GraphQL errors arrive with HTTP 200: a failure, and nothing is removed.
    fake.inject(
        Method::POST,
        "/graphql",
        resp(
            200,
            json!({"errors": [{"type": "FORBIDDEN", "message": "Resource not accessible by integration"}]}),
        ),
    );
    let r = run(&*gh, Operation::DisableAccount, "hubot", None).await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("not accessible")),
        "{:?}",
        r.outcome
    );
    assert!(fake.vendor(|g| g.members.contains_key("hubot")));

    // Primary rate limit (last: deprovd then holds further requests to GitHub until the reset):
    // 403 with x-ratelimit-remaining: 0 → retry at x-ratelimit-reset.
    let reset = now_secs() + 30;
    fake.inject(
        Method::GET,
        "/orgs/acme/memberships/octo",
        (
            403,
            json!({"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit"}),
            vec![
                ("x-ratelimit-limit".into(), "5000".into()),
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-used".into(), "5000".into()),
                ("x-ratelimit-reset".into(), reset.to_string()),
                ("x-ratelimit-resource".into(), "core".into()),
            ],
        ),
    );
    let r = run(&*gh, Operation::DisableAccount, "octo", None).await;
    match &r.outcome {
        Outcome::Retry {
            after: Some(after),
            reason,
        } => {
            assert!(
                (Duration::from_secs(27)..=Duration::from_secs(30)).contains(after),
                "{after:?}"
            );
            assert!(reason.contains("primary rate limit"), "{reason}");
        }
        other => panic!("expected retry with a delay, got {other:?}"),
    }
}

#[tokio::test]
async fn github_revoke_tokens_deletes_only_the_users_sso_credential_authorizations() {
    let (fake, gh, _s) = github(json!({"org": "acme"})).await;
    fake.clear_log();
    let r = gh
        .expecting(Operation::RevokeTokens, "mona", None, Outcome::Done)
        .await;
    assert_eq!(
        fake.calls(),
        [
            "GET /users/mona",
            "GET /orgs/acme/credential-authorizations",
            "DELETE /orgs/acme/credential-authorizations/161",
            "DELETE /orgs/acme/credential-authorizations/162",
        ]
    );
    let list = &fake.requests()[1];
    assert_eq!(list.query.get("login").map(String::as_str), Some("mona"));
    assert_eq!(list.query.get("per_page").map(String::as_str), Some("100"));
    assert_eq!(
        r.pre_state,
        Some(json!({"credentials": [
            {"id": 161, "type": "personal access token", "last_eight": "abcd1234"},
            {"id": 162, "type": "SSH key", "last_eight": ""},
        ]}))
    );
    let left: Vec<u64> = fake.vendor(|g| g.credentials.iter().map(|c| c.id).collect());
    assert_eq!(left, [170]);
    gh.expecting(Operation::RevokeTokens, "mona", None, Outcome::AlreadyDone)
        .await;

    // More than a page (100) of authorizations: the Link header is followed, every one is revoked.
    fake.vendor(|g| {
        for id in 1000..1150 {
            g.credentials.push(Credential {
                id,
                login: "hubot".into(),
                kind: "SSH key".into(),
                last_eight: String::new(),
            });
        }
    });
    fake.clear_log();
    let many = gh
        .expecting(Operation::RevokeTokens, "hubot", None, Outcome::Done)
        .await;
    let pages: Vec<Option<String>> = fake
        .requests()
        .iter()
        .filter(|r| r.method == Method::GET && r.path.ends_with("/credential-authorizations"))
        .map(|r| r.query.get("page").cloned())
        .collect();
    assert_eq!(pages, [None, Some("2".to_string())]);
    assert_eq!(
        many.pre_state.as_ref().unwrap()["credentials"]
            .as_array()
            .map(Vec::len),
        Some(150)
    );
    let left: Vec<u64> = fake.vendor(|g| g.credentials.iter().map(|c| c.id).collect());
    assert_eq!(left, [170]);
}

#[tokio::test]
async fn github_emu_suspends_and_reactivates_through_enterprise_scim() {
    let (fake, gh, _s) = github(json!({"mode": "emu", "enterprise": "acme-emu"})).await;
    let before = fake.vendor(|g| g.clone());
    let id = "7fce0092-d52e-4f76-b727-3955bd72c939";
    assert!(gh.check().await.ok);
    fake.clear_log();
    let d = gh
        .expecting(
            Operation::DisableAccount,
            "mona@acme.example",
            None,
            Outcome::Done,
        )
        .await;
    assert_eq!(
        fake.calls(),
        [
            "GET /scim/v2/enterprises/acme-emu/Users".to_string(),
            format!("GET /scim/v2/enterprises/acme-emu/Users/{id}"),
            format!("PATCH /scim/v2/enterprises/acme-emu/Users/{id}"),
        ]
    );
    let reqs = fake.requests();
    assert_eq!(reqs[0].query["filter"], "userName eq \"mona@acme.example\"");
    assert_eq!(
        reqs[2].body,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "value": {"active": false}}]})
    );
    assert!(
        reqs.iter()
            .all(|r| r.header("accept") == Some("application/scim+json"))
    );
    assert!(!fake.vendor(|g| g.scim[id].1));
    assert_eq!(d.pre_state.as_ref().unwrap()["prior_active"], json!(true));
    // The organization was not touched.
    assert_eq!(fake.vendor(|g| g.members.clone()), before.members);

    gh.expecting(
        Operation::DisableAccount,
        "mona@acme.example",
        None,
        Outcome::AlreadyDone,
    )
    .await;

    gh.expecting(
        Operation::EnableAccount,
        "mona@acme.example",
        d.pre_state,
        Outcome::Done,
    )
    .await;
    assert_eq!(
        fake.requests().last().unwrap().body["Operations"],
        json!([{"op": "replace", "value": {"active": true}}])
    );
    assert_eq!(fake.vendor(|g| g.clone()), before);

    gh.expecting(
        Operation::DisableAccount,
        "nobody@acme.example",
        None,
        Outcome::NotFound,
    )
    .await;
    let rt = run(&*gh, Operation::RevokeTokens, "mona@acme.example", None).await;
    assert!(
        matches!(rt.outcome, Outcome::Failed { .. }),
        "{:?}",
        rt.outcome
    );
}

// ---------------------------------------------------------------------------------------------
// Through the application: lockout API → ledger → executor → both connectors → restore.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lockout_on_slack_and_github_retries_slack_429_after_retry_after_and_restores_both() {
    let slack = Fake::start_listeners(slack_world(), 2).await;
    let gh = Fake::start(github_world()).await;
    let slack_before = slack.vendor(|s| s.users.clone());
    let gh_before = gh.vendor(|g| g.clone());
    let secrets = Secrets::new();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder()
        .policies(policies.path())
        .fast_executor()
        .max_attempts(5)
        .connector("slack", slack_config(&slack, &secrets, true))
        .connector(
            "github",
            github_config(&gh, &secrets, "github", json!({"org": "acme"})),
        )
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;
    // Slack's first session reset is rate limited for 1 s.
    slack.inject(
        Method::POST,
        "/admin.users.session.reset",
        (
            429,
            json!({"ok": false, "error": "ratelimited"}),
            vec![("Retry-After".into(), "1".into())],
        ),
    );

    let post = |path: String, body: Value| {
        let mut req = app.http.post(app.url(&path)).bearer_auth(&app.token);
        if !body.is_null() {
            req = req.json(&body);
        }
        async move {
            let r = req.send().await.expect("post");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let lockout_state = |id: String, want: fn(&Value) -> bool| {
        let app = &app;
        async move {
            eventually(Duration::from_secs(20), "lockout settles", || async {
                let s = app.get_json(&format!("/v1/lockouts/{id}")).await;
                want(&s).then_some(s)
            })
            .await
        }
    };

    // mona: Slack userName `mona`, GitHub login `mona`.
    let (status, created) = post(
        "/v1/lockouts".into(),
        json!({"subject": "mona", "reason": "token leaked", "ticket": "INC-7"}),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let done = lockout_state(id.clone(), |s| {
        s["actions"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["state"] == "succeeded"))
    })
    .await;
    let ops: BTreeSet<String> = done["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["connector"].as_str().unwrap(),
                a["operation"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        ops,
        BTreeSet::from([
            "github disable_account".to_string(),
            "slack disable_account".to_string(),
            "slack revoke_sessions".to_string(),
        ])
    );
    let resets: Vec<SystemTime> = slack
        .requests()
        .iter()
        .filter(|r| r.path == "/api/admin.users.session.reset")
        .map(|r| r.at)
        .collect();
    assert_eq!(
        resets.len(),
        2,
        "one 429, one retry: {done:#}\n{:#?}",
        slack.calls()
    );
    assert!(
        resets[1].duration_since(resets[0]).unwrap_or_default() >= Duration::from_secs(1),
        "retried {:?} after a Retry-After of 1 s",
        resets[1].duration_since(resets[0])
    );
    assert_eq!(slack.vendor(|s| s.sessions_reset.clone()), ["W0MONA"]);
    assert!(!slack.vendor(|s| s.users["W0MONA"].active));
    assert!(!gh.vendor(|g| g.members.contains_key("mona")));

    // octo exists only on GitHub: Slack's action is skipped as not found, GitHub still acts.
    let (status, created) = post(
        "/v1/lockouts".into(),
        json!({"subject": "octo", "operations": ["disable_account"], "reason": "phished", "ticket": "INC-8"}),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let octo = lockout_state(created["id"].as_str().unwrap().to_string(), |s| {
        s["actions"].as_array().is_some_and(|a| {
            a.len() == 2
                && a.iter()
                    .all(|x| x["state"] == "succeeded" || x["state"] == "skipped")
        })
    })
    .await;
    for a in octo["actions"].as_array().unwrap() {
        let want = if a["connector"] == "slack" {
            "skipped"
        } else {
            "succeeded"
        };
        assert_eq!(a["state"], want, "{octo}");
    }
    assert!(!gh.vendor(|g| g.members.contains_key("octo")));

    // Restore mona: Slack reactivated, GitHub re-invited with role and teams.
    let (status, body) = post(format!("/v1/lockouts/{id}/restore"), Value::Null).await;
    assert_eq!(status, 202, "{body}");
    lockout_state(id, |s| {
        s["actions"].as_array().is_some_and(|a| {
            let disables: Vec<&Value> = a
                .iter()
                .filter(|x| x["operation"] == "disable_account")
                .collect();
            disables.len() == 2
                && disables
                    .iter()
                    .all(|x| x["reversal"]["state"] == "succeeded")
        })
    })
    .await;
    assert_eq!(slack.vendor(|s| s.users.clone()), slack_before);
    gh.vendor(|g| g.accept_invitation("mona"));
    let mut gh_now = gh.vendor(|g| g.clone());
    // octo's lockout was not restored: put its membership back only for the comparison.
    gh_now
        .members
        .insert("octo".into(), gh_before.members["octo"].clone());
    assert_eq!(gh_now.members, gh_before.members);
    let teams_of_mona = |g: &GitHub| -> Vec<(String, (String, String))> {
        g.teams
            .iter()
            .filter_map(|(s, t)| t.members.get("mona").map(|m| (s.clone(), m.clone())))
            .collect()
    };
    assert_eq!(
        teams_of_mona(&gh.vendor(|g| g.clone())),
        teams_of_mona(&gh_before)
    );
    app.stop().await;
}

#[test]
fn deprovd_validate_accepts_slack_and_github_and_names_endpoint_and_var_typos() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let base = format!(
        r#"[policy]
dir = "{}"
[connectors.slack]
type = "slack"
base_url = "https://api.slack.com/scim/v2"
auth = {{ scheme = "bearer", token = "env:SLACK_TOKEN" }}
[connectors.slack.endpoints.web_api]
auth = {{ scheme = "bearer", token = "env:SLACK_ADMIN_TOKEN" }}
[connectors.github]
type = "github"
base_url = "https://github.example.com/api/v3"
auth = {{ scheme = "bearer", token = "env:GITHUB_TOKEN" }}
vars = {{ org = "acme" }}
[connectors.github.endpoints.graphql]
base_url = "https://github.example.com/api"
[connectors.github-emu]
type = "github"
base_url = "https://api.github.com"
auth = {{ scheme = "bearer", token = "env:GITHUB_SCIM_TOKEN" }}
vars = {{ mode = "emu", enterprise = "acme-emu" }}
"#,
        policies.path().display()
    );
    let validate = |toml: &str| {
        let path = dir.path().join("deprovd.toml");
        std::fs::write(&path, toml).unwrap();
        // The tokens the config references, set as a deployment would set them.
        std::process::Command::new(env!("CARGO_BIN_EXE_deprovd"))
            .args(["validate", "--config"])
            .arg(&path)
            .env("GITHUB_TOKEN", "t")
            .env("GITHUB_SCIM_TOKEN", "t")
            .env("SLACK_TOKEN", "t")
            .env("SLACK_ADMIN_TOKEN", "t")
            .output()
            .unwrap()
    };
    let ok = validate(&base);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = validate(
        &base
            .replace("endpoints.web_api]", "endpoints.webapi]")
            .replace(
                r#"vars = { mode = "emu""#,
                r#"vars = { enterprize = "x", mode = "emu""#,
            ),
    );
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    for want in [
        "connectors.slack.endpoints.webapi: slack.yaml has no endpoint `webapi`",
        "connectors.github-emu.vars.enterprize: github.yaml does not use this var",
    ] {
        assert!(err.contains(want), "missing {want}:\n{err}");
    }
}

#[tokio::test]
async fn slack_lists_a_users_groups_from_the_scim_user_without_changing_anything() {
    let (fake, slack, _s) = slack().await;
    let before = fake.vendor(|s| s.clone());
    assert!(slack.lists_groups());
    fake.clear_log();
    let Memberships::Groups(names) = slack.group_memberships("alice@example.com").await else {
        panic!("groups expected");
    };
    assert_eq!(
        names.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["Tier0 Admins".to_string(), "Engineering".to_string()])
    );
    assert_eq!(
        fake.calls().last().map(String::as_str),
        Some("GET /scim/v2/Users/W0ALICE")
    );
    assert_eq!(
        slack.group_memberships("gone").await,
        Memberships::Groups(vec![])
    );
    assert_eq!(
        slack.group_memberships("nobody@example.com").await,
        Memberships::NotFound
    );
    // A rate-limited SCIM read is unavailable, never "in no group".
    fake.inject(
        Method::GET,
        "/Users/W0MONA",
        (
            429,
            json!({"Errors": {"description": "rate_limited", "code": 429}}),
            vec![("retry-after".into(), "30".into())],
        ),
    );
    assert!(matches!(
        slack.group_memberships("mona").await,
        Memberships::Unavailable(_)
    ));
    assert!(
        fake.calls().iter().all(|c| c.starts_with("GET ")),
        "only reads: {:?}",
        fake.calls()
    );
    assert_eq!(fake.vendor(|s| s.clone()), before, "nothing changed");
}

#[tokio::test]
async fn github_lists_the_teams_a_user_is_an_immediate_member_of_without_changing_anything() {
    let (fake, gh, _s) = github(json!({"org": "acme"})).await;
    let before = fake.vendor(|g| g.clone());
    assert!(gh.lists_groups());
    fake.clear_log();
    // mona maintains `platform` and is a member of `sre`; she reaches `engineering` only through
    // `sre`, and the substring search's `monalisa` teams (`security`) are not hers.
    let Memberships::Groups(names) = gh.group_memberships("Mona").await else {
        panic!("groups expected");
    };
    assert_eq!(
        names.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["platform".to_string(), "sre".to_string()])
    );
    assert_eq!(fake.calls(), ["GET /users/Mona", "POST /graphql"]);
    let q = fake.requests().into_iter().last().expect("graphql");
    assert_eq!(q.body["query"], json!(TEAMS_QUERY));
    assert_eq!(q.body["variables"], json!({"org": "acme", "login": "mona"}));
    assert_eq!(
        gh.group_memberships("outsider").await,
        Memberships::Groups(vec![])
    );
    assert_eq!(
        gh.group_memberships("alice@example.com").await,
        Memberships::NotFound
    );
    // More than one page of teams is not guessed at: unavailable.
    fake.inject(
        Method::POST,
        "/graphql",
        resp(
            200,
            json!({"data": {"organization": {"teams": {"pageInfo": {"hasNextPage": true},
                   "nodes": [{"slug": "platform", "maintainers": {"nodes": [{"login": "mona"}]},
                              "direct_members": {"nodes": []}}]}}}}),
        ),
    );
    assert!(matches!(
        gh.group_memberships("mona").await,
        Memberships::Unavailable(_)
    ));
    let posts_are_queries = fake
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST)
        .all(|r| r.path == "/graphql" && r.body["query"] == json!(TEAMS_QUERY));
    assert!(posts_are_queries, "the only POST is the GraphQL read");
    assert!(
        fake.calls()
            .iter()
            .all(|c| c.starts_with("GET ") || c == "POST /graphql"),
        "only reads: {:?}",
        fake.calls()
    );
    assert_eq!(fake.vendor(|g| g.clone()), before, "nothing changed");

    // emu mode does not offer group listing (managed users' groups are their IdP's), so it neither
    // answers nor holds the guard up; the other operations stay offered.
    let (emu_fake, emu, _s) = github(json!({"mode": "emu", "enterprise": "acme-emu"})).await;
    assert!(!emu.lists_groups());
    assert!(emu.supports(Operation::DisableAccount));
    assert_eq!(
        emu.group_memberships("mona@acme.example").await,
        Memberships::Unsupported
    );
    assert!(emu_fake.calls().is_empty(), "nothing asked");
}
