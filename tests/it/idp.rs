//! The Okta, Microsoft Entra (Graph) and Google Workspace connectors, built from their config by
//! `deprovd::build_connectors` exactly as the service builds them, against the vendor fakes of
//! [`crate::kit::vendors`]: exact methods, paths, query strings, bodies and auth headers are
//! asserted, the vendors' own error shapes are reproduced (Okta E0000001/E0000007/E0000011, Graph
//! `Request_ResourceNotFound`/`InvalidAuthenticationToken`, Google `userRateLimitExceeded`), and the
//! token endpoints verify the RS256 assertions with the public key of the test key pair.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, UNIX_EPOCH};

use axum::http::Method;
use deprovd::{Memberships, Operation, Outcome};
use serde_json::json;

use crate::kit::connector::{RunExt, Secrets, build, connector, failed, retrying, run};
use crate::kit::eventually;
use crate::kit::fake::{Fake, Req, Vendor, WRONG_SECRET, now_secs};
use crate::kit::vendors::PRIVATE_PEM;
use crate::kit::vendors::entra::*;
use crate::kit::vendors::google::*;
use crate::kit::vendors::okta::*;

// ---------------------------------------------------------------------------------------------
// Okta.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn okta_contain_then_restore_leaves_the_org_as_it_was() {
    let (fake, okta, _s) = okta_ssws(json!({})).await;
    let before = fake.with(|i| i.vendor.clone());
    let subject = "alice.smith@example.com"; // the email; the login differs

    let d = okta
        .expecting(Operation::DisableAccount, subject, None, Outcome::Done)
        .await;
    assert_eq!(d.pre_state, Some(json!({"prior_status": "ACTIVE"})));
    assert_eq!(
        fake.calls(),
        [
            "GET /api/v1/users/alice.smith%40example.com",
            "GET /api/v1/users",
            "GET /api/v1/users/00u1alice",
            "POST /api/v1/users/00u1alice/lifecycle/suspend",
        ]
    );
    let reqs = fake.requests();
    assert_eq!(
        reqs[1].query.get("search").map(String::as_str),
        Some("profile.email eq \"alice.smith@example.com\"")
    );
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some("SSWS 00TESTssws-token-value"))
    );
    assert_eq!(
        fake.with(|i| i.vendor.users["00u1alice"].status.clone()),
        "SUSPENDED"
    );

    // Suspending twice would be Okta's 400 E0000001: the status is read first instead.
    fake.clear_log();
    let again = okta
        .expecting(
            Operation::DisableAccount,
            subject,
            None,
            Outcome::AlreadyDone,
        )
        .await;
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("POST")),
        "{:?}",
        fake.calls()
    );
    assert_eq!(again.pre_state, Some(json!({"prior_status": "SUSPENDED"})));

    okta.expecting(Operation::RevokeSessions, subject, None, Outcome::Done)
        .await;
    assert_eq!(
        fake.with(|i| i.vendor.sessions_cleared.clone()),
        [("00u1alice".to_string(), "true".to_string())]
    );

    let g = okta
        .expecting(
            Operation::RemoveGroupMemberships,
            subject,
            None,
            Outcome::Done,
        )
        .await;
    let recorded: BTreeSet<String> = g.pre_state.as_ref().expect("pre_state")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        recorded,
        BTreeSet::from(["00gEng".into(), "00gAdmins".into()])
    );
    fake.with(|i| {
        let g = &i.vendor.groups;
        assert!(!g["00gEng"].members.contains("00u1alice"));
        assert!(!g["00gAdmins"].members.contains("00u1alice"));
        assert!(g["00gEng"].members.contains("00u2bob"), "others untouched");
        assert!(
            g["00gEveryone"].members.contains("00u1alice"),
            "BUILT_IN skipped"
        );
        assert!(
            g["00gAD"].members.contains("00u1alice"),
            "APP_GROUP skipped"
        );
    });
    okta.expecting(
        Operation::RemoveGroupMemberships,
        subject,
        None,
        Outcome::AlreadyDone,
    )
    .await;

    // Restore: unsuspend (the disable found the user ACTIVE) and re-add the recorded groups.
    fake.clear_log();
    okta.expecting(
        Operation::EnableAccount,
        subject,
        d.pre_state.clone(),
        Outcome::Done,
    )
    .await;
    assert!(
        fake.calls()
            .contains(&"POST /api/v1/users/00u1alice/lifecycle/unsuspend".to_string())
    );
    okta.expecting(
        Operation::RestoreGroupMemberships,
        subject,
        g.pre_state.clone(),
        Outcome::Done,
    )
    .await;
    let puts: BTreeSet<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("PUT"))
        .collect();
    assert_eq!(
        puts,
        BTreeSet::from([
            "PUT /api/v1/groups/00gAdmins/users/00u1alice".to_string(),
            "PUT /api/v1/groups/00gEng/users/00u1alice".to_string(),
        ])
    );
    let mut after = fake.with(|i| i.vendor.clone());
    after.sessions_cleared.clear();
    assert_eq!(after, before, "contain → restore must leave Okta as it was");

    // The reversal of a disable that found the user already suspended leaves it suspended.
    run(&*okta, Operation::DisableAccount, subject, None).await;
    okta.expecting(
        Operation::EnableAccount,
        subject,
        Some(json!({"prior_status": "SUSPENDED"})),
        Outcome::AlreadyDone,
    )
    .await;
    assert_eq!(
        fake.with(|i| i.vendor.users["00u1alice"].status.clone()),
        "SUSPENDED"
    );
}

#[tokio::test]
async fn okta_lists_a_users_group_names_for_the_protected_groups_guard() {
    let (_fake, conn, _secrets) = okta_ssws(json!({})).await;
    assert!(conn.lists_groups());
    let Memberships::Groups(mut names) = conn.group_memberships("asmith@example.com").await else {
        panic!("groups expected");
    };
    names.sort();
    assert_eq!(
        names,
        ["AD: Domain Users", "Engineering", "Everyone", "Okta Admins"]
    );
    assert_eq!(
        conn.group_memberships("nobody@example.com").await,
        Memberships::NotFound
    );
}

#[tokio::test]
async fn okta_lifecycle_errors_map_to_outcomes() {
    let (fake, okta, _s) = okta_ssws(json!({})).await;
    // Unknown user: E0000007 on the login, no match by email → not_found.
    okta.expecting(
        Operation::DisableAccount,
        "nobody@example.com",
        None,
        Outcome::NotFound,
    )
    .await;
    // Already deactivated: contained already.
    okta.expecting(
        Operation::DisableAccount,
        "gone@example.com",
        None,
        Outcome::AlreadyDone,
    )
    .await;
    // STAGED cannot be suspended: a terminal failure that says what to do.
    let staged = run(
        &*okta,
        Operation::DisableAccount,
        "new.hire@example.com",
        None,
    )
    .await;
    let reason = failed(&staged);
    assert!(
        reason.contains("STAGED") && reason.contains("deactivate"),
        "{reason}"
    );
    // The user changed between the read and the suspend (Okta's E0000001): read again later.
    fake.inject(
        Method::POST,
        "/lifecycle/suspend",
        okta_error(
            400,
            "E0000001",
            "Api validation failed: suspend",
            &["Cannot suspend a user that is not active"],
        ),
    );
    let raced = run(&*okta, Operation::DisableAccount, "bob@example.com", None).await;
    assert!(
        matches!(raced.outcome, Outcome::Retry { .. }),
        "{:?}",
        raced.outcome
    );
    assert_eq!(
        fake.with(|i| i.vendor.users["00u2bob"].status.clone()),
        "ACTIVE"
    );
    // Okta's rate limit: 429 with X-Rate-Limit-Reset (epoch seconds) → retry no sooner than the reset.
    let reset = now_secs() + 30;
    fake.inject(
        Method::POST,
        "/lifecycle/suspend",
        (
            429,
            json!({"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."}),
            vec![
                ("X-Rate-Limit-Limit".into(), "600".into()),
                ("X-Rate-Limit-Remaining".into(), "0".into()),
                ("X-Rate-Limit-Reset".into(), reset.to_string()),
            ],
        ),
    );
    let limited = run(&*okta, Operation::DisableAccount, "bob@example.com", None).await;
    match limited.outcome {
        Outcome::Retry {
            after: Some(after),
            ref reason,
        } => {
            assert!(
                (Duration::from_secs(27)..=Duration::from_secs(30)).contains(&after),
                "{after:?}"
            );
            assert!(reason.contains("rate limit"), "{reason}");
        }
        other => panic!("expected retry with a delay, got {other:?}"),
    }
    okta.expecting(
        Operation::DisableAccount,
        "bob@example.com",
        None,
        Outcome::Done,
    )
    .await;
}

#[tokio::test]
async fn okta_deactivate_mode_deactivates_and_restore_reactivates_without_email() {
    let (fake, okta, _s) = okta_ssws(json!({"disable_mode": "deactivate"})).await;
    let d = okta
        .expecting(
            Operation::DisableAccount,
            "bob@example.com",
            None,
            Outcome::Done,
        )
        .await;
    assert!(
        fake.calls()
            .contains(&"POST /api/v1/users/00u2bob/lifecycle/deactivate".to_string())
    );
    assert_eq!(
        fake.with(|i| i.vendor.users["00u2bob"].status.clone()),
        "DEPROVISIONED"
    );
    okta.expecting(
        Operation::EnableAccount,
        "bob@example.com",
        d.pre_state,
        Outcome::Done,
    )
    .await;
    assert_eq!(
        fake.with(|i| i.vendor.users["00u2bob"].status.clone()),
        "ACTIVE"
    );

    let bad = okta_ssws(json!({"disable_mode": "delete"})).await;
    let r = run(&*bad.1, Operation::DisableAccount, "bob@example.com", None).await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("disable_mode")),
        "{:?}",
        r.outcome
    );
}

#[tokio::test]
async fn okta_service_app_token_is_refreshed_once_after_a_401_then_fails() {
    let secrets = Secrets::new();
    let fake = Fake::start(okta_world()).await;
    let set = build(&format!(
        r#"
[connectors.okta]
type = "okta"
base_url = "{base}"
[connectors.okta.auth]
scheme = "oauth2"
token_url = "{base}/oauth2/v1/token"
client_id = "0oaservice"
scopes = ["okta.users.read", "okta.users.manage", "okta.groups.manage"]
private_key = "{key}"
key_id = "test-kid"
"#,
        base = fake.base(),
        key = secrets.file("okta.pem", PRIVATE_PEM)
    ));
    let okta = set["okta"].clone();
    okta.expecting(
        Operation::RevokeSessions,
        "bob@example.com",
        None,
        Outcome::Done,
    )
    .await;
    assert_eq!(fake.token_requests(), 1, "one token for lookup and revoke");
    okta.expecting(
        Operation::RevokeSessions,
        "bob@example.com",
        None,
        Outcome::Done,
    )
    .await;
    assert_eq!(fake.token_requests(), 1, "cached");

    // Mid-run the token expires at Okta: the 401 (E0000011) causes one refresh and one retry (of the
    // DELETE: the subject's id comes from the lookup cache). A credential revoked at the IdP: the
    // fresh token is refused too → one refresh, then a failure.
    fake.check_token_refresh(
        &*okta,
        Operation::RevokeSessions,
        "bob@example.com",
        "DELETE /api/v1/users/00u2bob/sessions",
        "Invalid token provided",
    )
    .await;
}

#[tokio::test]
async fn okta_group_pages_follow_the_link_header_and_every_page_is_removed_and_restored() {
    let (fake, okta, _s) = okta_ssws(json!({"page_limit": "2"})).await;
    fake.with(|i| {
        for n in 1..=3 {
            i.vendor.groups.insert(
                format!("00gExtra{n}"),
                OktaGroup {
                    id: format!("00gExtra{n}"),
                    name: format!("Extra {n}"),
                    kind: "OKTA_GROUP".into(),
                    members: BTreeSet::from(["00u1alice".to_string()]),
                },
            );
        }
    });
    let before = fake.with(|i| i.vendor.clone());
    let subject = "asmith@example.com";

    let g = okta
        .expecting(
            Operation::RemoveGroupMemberships,
            subject,
            None,
            Outcome::Done,
        )
        .await;
    // Alice is in 7 groups: 4 pages of 2, each asked for with Okta's cursor.
    let pages: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::GET && r.path.ends_with("/groups"))
        .collect();
    let cursors: Vec<Option<&str>> = pages
        .iter()
        .map(|r| r.query.get("after").map(String::as_str))
        .collect();
    assert_eq!(
        cursors,
        [
            None,
            Some("00gAdmins"),
            Some("00gEveryone"),
            Some("00gExtra2")
        ]
    );
    assert!(
        pages
            .iter()
            .all(|r| r.query.get("limit").map(String::as_str) == Some("2"))
    );
    let recorded: BTreeSet<String> = g.pre_state.as_ref().expect("pre_state")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let okta_groups: BTreeSet<String> =
        ["00gAdmins", "00gEng", "00gExtra1", "00gExtra2", "00gExtra3"]
            .map(String::from)
            .into();
    assert_eq!(recorded, okta_groups, "groups from every page are recorded");
    fake.with(|i| {
        for id in &okta_groups {
            assert!(!i.vendor.groups[id].members.contains("00u1alice"), "{id}");
        }
    });

    okta.expecting(
        Operation::RestoreGroupMemberships,
        subject,
        g.pre_state.clone(),
        Outcome::Done,
    )
    .await;
    assert_eq!(fake.with(|i| i.vendor.clone()), before);
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused_before_credentials_leave() {
    let (fake, okta, _s) = okta_ssws(json!({})).await;
    fake.inject(
        Method::GET,
        "/api/v1/users/00u1alice/groups",
        (
            200,
            json!([{"id": "00gEng", "type": "OKTA_GROUP", "profile": {"name": "Engineering"}}]),
            vec![(
                "Link".into(),
                "<http://127.0.0.2:9/api/v1/users/00u1alice/groups?after=00gEng>; rel=\"next\""
                    .into(),
            )],
        ),
    );
    let g = run(
        &*okta,
        Operation::RemoveGroupMemberships,
        "asmith@example.com",
        None,
    )
    .await;
    let reason = failed(&g);
    assert!(reason.contains("leaves the target"), "{reason}");
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("DELETE")),
        "nothing removed on a half-read list: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn contain_resolves_the_subject_once_for_all_its_operations() {
    let (fake, okta, _s) = okta_ssws(json!({})).await;
    let subject = "asmith@example.com";
    // The three containment actions run at once, as the executor runs them.
    let (d, s, g) = tokio::join!(
        run(&*okta, Operation::DisableAccount, subject, None),
        run(&*okta, Operation::RevokeSessions, subject, None),
        run(&*okta, Operation::RemoveGroupMemberships, subject, None),
    );
    for r in [&d, &s, &g] {
        assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    }
    let lookups = fake
        .calls()
        .into_iter()
        .filter(|c| c == "GET /api/v1/users/asmith%40example.com")
        .count();
    assert_eq!(lookups, 1, "{:?}", fake.calls());

    // The user is deleted and recreated under a new id: the cached id answers 404, the entry is dropped,
    // and the operation resolves the subject again and acts on the new account.
    fake.with(|i| {
        let mut u = i.vendor.users.remove("00u1alice").expect("alice");
        u.id = "00u9alice".into();
        u.status = "ACTIVE".into();
        i.vendor.users.insert(u.id.clone(), u);
    });
    fake.clear_log();
    okta.expecting(Operation::DisableAccount, subject, None, Outcome::Done)
        .await;
    assert_eq!(
        fake.calls(),
        [
            "GET /api/v1/users/00u1alice",
            "GET /api/v1/users/asmith%40example.com",
            "GET /api/v1/users/00u9alice",
            "POST /api/v1/users/00u9alice/lifecycle/suspend",
        ]
    );
}

#[tokio::test]
async fn spent_okta_budget_makes_the_next_request_wait_for_the_announced_reset() {
    let (throttled, okta, _s) = okta_ssws(json!({})).await;
    let (other_fake, other, _s2) = okta_ssws(json!({})).await;
    // One request left in this window; the window resets in 2 s (epoch seconds, as Okta announces it).
    let reset = now_secs() + 2;
    throttled.with(|i| {
        i.vendor.rate = Some(OktaRate {
            limit: 600,
            remaining: 1,
            reset,
            refused: 0,
        })
    });
    let subject = "asmith@example.com";
    // The lookup spends the last request (its answer says remaining 0); the DELETE must wait for the reset.
    // Meanwhile another Okta instance is not held up.
    let (r, o) = tokio::join!(
        run(&*okta, Operation::RevokeSessions, subject, None),
        async {
            // Once the lookup has spent the budget, this instance's DELETE is waiting for the reset.
            eventually(Duration::from_secs(5), "the throttled lookup", || async {
                (!throttled.requests().is_empty()).then_some(())
            })
            .await;
            run(&*other, Operation::RevokeSessions, subject, None).await
        }
    );
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(o.outcome, Outcome::Done, "{}", o.summary);
    let reqs = throttled.requests();
    assert_eq!(reqs.len(), 2, "{:?}", throttled.calls());
    let reset_at = UNIX_EPOCH + Duration::from_secs(reset);
    assert!(reqs[0].at < reset_at);
    assert!(
        reqs[1].at >= reset_at,
        "the DELETE left {:?} before the announced reset",
        reset_at.duration_since(reqs[1].at).unwrap_or_default()
    );
    assert_eq!(
        throttled.with(|i| i.vendor.rate.as_ref().map(|r| r.refused)),
        Some(0),
        "no request hit the limit"
    );
    let other_reqs = other_fake.requests();
    assert!(
        other_reqs.iter().all(|r| r.at < reset_at),
        "the other connector did not wait for this one's reset"
    );
}

#[tokio::test]
async fn a_distant_okta_reset_ends_the_attempt_as_retry_instead_of_blocking() {
    let (fake, okta, _s) = okta_ssws(json!({})).await;
    let reset = now_secs() + 120; // beyond the spec's max_wait (30 s)
    fake.with(|i| {
        i.vendor.rate = Some(OktaRate {
            limit: 600,
            remaining: 1,
            reset,
            refused: 0,
        })
    });
    let started = std::time::Instant::now();
    let r = run(
        &*okta,
        Operation::RevokeSessions,
        "asmith@example.com",
        None,
    )
    .await;
    match &r.outcome {
        Outcome::Retry {
            after: Some(after),
            reason,
        } => {
            assert!(
                *after > Duration::from_secs(100) && *after <= Duration::from_secs(120),
                "{after:?}"
            );
            assert!(reason.contains("rate limit"), "{reason}");
        }
        other => panic!("expected retry after the reset, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "did not sleep");
    assert_eq!(
        fake.calls(),
        ["GET /api/v1/users/asmith%40example.com"],
        "only the lookup was sent"
    );
    assert_eq!(
        fake.with(|i| i.vendor.rate.as_ref().map(|r| r.refused)),
        Some(0)
    );
}

// ---------------------------------------------------------------------------------------------
// Microsoft Entra ID through Microsoft Graph v1.0.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn entra_confirm_compromised_marks_the_user_risky_after_disabling_only_when_configured() {
    // Default: no Identity Protection call (it needs a P2 licence and its own permission).
    let (fake, entra, _s) = entra().await;
    entra
        .expecting(
            Operation::DisableAccount,
            "alice@contoso.com",
            None,
            Outcome::Done,
        )
        .await;
    assert!(fake.with(|i| i.vendor.compromised.is_empty()));
    assert!(
        fake.calls()
            .iter()
            .all(|c| !c.contains("identityProtection"))
    );

    let secrets = Secrets::new();
    let fake = Fake::start(graph_world()).await;
    let secret = secrets.file("graph-secret", "graph-client-secret");
    let confirming = connector(
        "entra",
        entra_config(&fake, &secret, json!({"confirm_compromised": true})),
    );
    confirming
        .expecting(
            Operation::DisableAccount,
            "bob@contoso.com",
            None,
            Outcome::Done,
        )
        .await;
    let api: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| Some(r.path.as_str()) != Graph::TOKEN_PATH)
        .collect();
    let patch = api
        .iter()
        .position(|r| r.method == Method::PATCH)
        .expect("patch");
    let confirm = api
        .iter()
        .position(|r| r.path == "/v1.0/identityProtection/riskyUsers/confirmCompromised")
        .expect("confirmCompromised called");
    assert!(
        patch < confirm,
        "sign-in is blocked before the optional risk call"
    );
    assert_eq!(api[confirm].method, Method::POST);
    assert_eq!(api[confirm].body, json!({"userIds": ["u-bob"]}));
    assert_eq!(fake.with(|i| i.vendor.compromised.clone()), ["u-bob"]);
    assert!(!fake.with(|i| i.vendor.users["u-bob"].1));
}

#[tokio::test]
async fn entra_contain_then_restore_leaves_the_tenant_as_it_was() {
    let (fake, entra, _s) = entra().await;
    let before = fake.with(|i| i.vendor.clone());
    let subject = "alice@contoso.com";

    let d = entra
        .expecting(Operation::DisableAccount, subject, None, Outcome::Done)
        .await;
    assert_eq!(d.pre_state, Some(json!({"prior_enabled": true})));
    let reqs = fake.requests();
    let api: Vec<&Req> = reqs
        .iter()
        .filter(|r| Some(r.path.as_str()) != Graph::TOKEN_PATH)
        .collect();
    assert_eq!(api[0].path, "/v1.0/users/alice%40contoso.com");
    assert_eq!(api[0].query["$select"], "id,userPrincipalName");
    assert_eq!(api[1].query["$select"], "id,accountEnabled");
    assert_eq!(
        (api[2].method.as_str(), api[2].path.as_str()),
        ("PATCH", "/v1.0/users/u-alice")
    );
    assert_eq!(api[2].body, json!({"accountEnabled": false}));
    assert_eq!(api[2].header("content-type"), Some("application/json"));
    assert!(api.iter().all(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer at-1-"))
    }));
    assert!(!fake.with(|i| i.vendor.users["u-alice"].1));

    entra
        .expecting(
            Operation::DisableAccount,
            subject,
            None,
            Outcome::AlreadyDone,
        )
        .await;

    fake.clear_log();
    entra
        .expecting(Operation::RevokeSessions, subject, None, Outcome::Done)
        .await;
    assert_eq!(fake.with(|i| i.vendor.revoked.clone()), ["u-alice"]);
    let post = fake
        .requests()
        .into_iter()
        .find(|r| r.method == Method::POST)
        .expect("post");
    assert!(post.raw.is_empty(), "revokeSignInSessions takes no body");

    fake.clear_log();
    let g = entra
        .expecting(
            Operation::RemoveGroupMemberships,
            subject,
            None,
            Outcome::Done,
        )
        .await;
    let pages = fake
        .calls()
        .iter()
        .filter(|c| c.contains("/memberOf/"))
        .count();
    assert_eq!(
        pages,
        3,
        "6 groups at 2 per page, following @odata.nextLink: {:?}",
        fake.calls()
    );
    let removed: BTreeSet<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("DELETE"))
        .collect();
    assert_eq!(
        removed,
        BTreeSet::from([
            "DELETE /v1.0/groups/g-m365/members/u-alice/$ref".to_string(),
            "DELETE /v1.0/groups/g-sec/members/u-alice/$ref".to_string(),
            "DELETE /v1.0/groups/g-sec2/members/u-alice/$ref".to_string(),
        ]),
        "synced, dynamic and Exchange-managed groups are skipped"
    );
    let recorded: BTreeSet<String> = g.pre_state.as_ref().expect("pre_state")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        recorded,
        BTreeSet::from(["g-sec".into(), "g-m365".into(), "g-sec2".into()])
    );
    assert!(fake.with(|i| i.vendor.groups["g-sec"].members.contains("u-bob")));

    fake.clear_log();
    entra
        .expecting(
            Operation::EnableAccount,
            subject,
            d.pre_state.clone(),
            Outcome::Done,
        )
        .await;
    entra
        .expecting(
            Operation::RestoreGroupMemberships,
            subject,
            g.pre_state.clone(),
            Outcome::Done,
        )
        .await;
    let adds: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with("/members/$ref"))
        .collect();
    assert_eq!(adds.len(), 3);
    for a in &adds {
        assert_eq!(
            a.body,
            json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/u-alice"})
        );
    }
    // Restoring again meets Graph's "already exist" 400 and counts it as done.
    entra
        .expecting(
            Operation::RestoreGroupMemberships,
            subject,
            g.pre_state.clone(),
            Outcome::Done,
        )
        .await;

    let mut after = fake.with(|i| i.vendor.clone());
    after.revoked.clear();
    assert_eq!(
        after, before,
        "contain → restore must leave the tenant as it was"
    );
    assert_eq!(fake.token_requests(), 1, "one token for the whole run");
}

#[tokio::test]
async fn entra_lists_a_users_group_names_for_the_protected_groups_guard() {
    let (fake, entra, _s) = entra().await;
    let expected: BTreeSet<String> = fake.with(|i| {
        let id = i.vendor.user_id("alice@contoso.com").expect("alice");
        i.vendor
            .groups
            .values()
            .filter(|g| g.members.contains(&id))
            .map(|g| g.name.clone())
            .collect()
    });
    assert!(!expected.is_empty());
    assert!(entra.lists_groups());
    let Memberships::Groups(names) = entra.group_memberships("alice@contoso.com").await else {
        panic!("groups expected");
    };
    assert_eq!(names.into_iter().collect::<BTreeSet<_>>(), expected);
    let listed = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/transitiveMemberOf/"))
        .count();
    assert!(listed >= 1, "nested groups are asked for");
    assert_eq!(
        entra.group_memberships("nobody@contoso.com").await,
        Memberships::NotFound
    );
}

#[tokio::test]
async fn entra_429_is_retried_after_retry_after_and_an_expired_token_is_refreshed_mid_run() {
    let (fake, entra, _s) = entra().await;
    fake.inject(
        Method::PATCH,
        "/users/u-bob",
        (
            429,
            json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}}),
            vec![("Retry-After".into(), "7".into())],
        ),
    );
    let r = run(&*entra, Operation::DisableAccount, "bob@contoso.com", None).await;
    let (after, reason) = retrying(&r);
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert!(reason.contains("429"), "{reason}");
    assert!(
        fake.with(|i| i.vendor.users["u-bob"].1),
        "nothing changed yet"
    );

    // The token expires at Graph mid-run: 401 InvalidAuthenticationToken → one refresh → success.
    fake.expire_tokens();
    entra
        .expecting(
            Operation::DisableAccount,
            "bob@contoso.com",
            None,
            Outcome::Done,
        )
        .await;
    assert_eq!(fake.token_requests(), 2);
    assert!(!fake.with(|i| i.vendor.users["u-bob"].1));

    entra
        .expecting(
            Operation::DisableAccount,
            "nobody@contoso.com",
            None,
            Outcome::NotFound,
        )
        .await;

    // A subject that is the mail address, not the UPN: found by `$filter=mail eq '...'` (quotes doubled).
    fake.clear_log();
    entra
        .expecting(
            Operation::DisableAccount,
            "alice.o'neil@contoso.com",
            None,
            Outcome::Done,
        )
        .await;
    let filter = fake
        .requests()
        .into_iter()
        .find_map(|r| r.query.get("$filter").cloned());
    assert_eq!(
        filter.as_deref(),
        Some("mail eq 'alice.o''neil@contoso.com'")
    );
    assert!(!fake.with(|i| i.vendor.users["u-alice"].1));
}

#[tokio::test]
async fn entra_wrong_client_secret_fails_terminally_without_leaking_it() {
    let secrets = Secrets::new();
    let fake = Fake::start(graph_world()).await;
    let secret = secrets.file("graph-secret", WRONG_SECRET);
    let refused = connector("entra", entra_config(&fake, &secret, json!({})));
    fake.check_refused_client(
        &*refused,
        Operation::DisableAccount,
        "alice@contoso.com",
        "invalid_client",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Google Workspace Admin SDK Directory API.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn google_suspend_sign_out_and_token_revocation_with_domain_wide_delegation() {
    let secrets = Secrets::new();
    let mut dir = Directory::default();
    dir.users.insert(
        "1001".into(),
        (
            "carol@acme.example".into(),
            false,
            BTreeMap::from([
                (
                    "123.apps.googleusercontent.com".to_string(),
                    "Evil Mail Sync".to_string(),
                ),
                (
                    "456.apps.googleusercontent.com".to_string(),
                    "Calendar Helper".to_string(),
                ),
            ]),
        ),
    );
    let fake = Fake::start(dir).await;
    // The key as the console issues it, with a field the connector does not read.
    let mut key = service_account_key(&fake);
    key["auth_uri"] = json!("https://accounts.google.com/o/oauth2/auth");
    let google = connector(
        "google",
        google_config(
            &fake,
            &secrets.file("sa.json", &key.to_string()),
            &[
                "https://www.googleapis.com/auth/admin.directory.user",
                "https://www.googleapis.com/auth/admin.directory.user.security",
            ],
        ),
    );
    let subject = "carol@acme.example";

    // userRateLimitExceeded (403) is a rate limit, not a permission problem: retried.
    fake.inject(
        Method::PUT,
        "/users/1001",
        google_error(403, "userRateLimitExceeded", "User Rate Limit Exceeded"),
    );
    let limited = run(&*google, Operation::DisableAccount, subject, None).await;
    assert!(
        matches!(limited.outcome, Outcome::Retry { .. }),
        "{:?}",
        limited.outcome
    );

    let d = google
        .expecting(Operation::DisableAccount, subject, None, Outcome::Done)
        .await;
    assert_eq!(d.pre_state, Some(json!({"prior_suspended": false})));
    assert!(fake.with(|i| i.vendor.users["1001"].1));
    let put = fake
        .requests()
        .into_iter()
        .rfind(|r| r.method == Method::PUT)
        .expect("put");
    assert_eq!(put.path, "/admin/directory/v1/users/1001");
    assert_eq!(put.body, json!({"suspended": true}));
    google
        .expecting(
            Operation::DisableAccount,
            subject,
            None,
            Outcome::AlreadyDone,
        )
        .await;

    google
        .expecting(Operation::RevokeSessions, subject, None, Outcome::Done)
        .await;
    assert_eq!(fake.with(|i| i.vendor.signed_out.clone()), ["1001"]);

    fake.clear_log();
    google
        .expecting(Operation::RevokeTokens, subject, None, Outcome::Done)
        .await;
    assert!(fake.with(|i| i.vendor.users["1001"].2.is_empty()));
    let deletes: BTreeSet<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes,
        BTreeSet::from([
            "DELETE /admin/directory/v1/users/1001/tokens/123.apps.googleusercontent.com"
                .to_string(),
            "DELETE /admin/directory/v1/users/1001/tokens/456.apps.googleusercontent.com"
                .to_string(),
        ])
    );
    google
        .expecting(Operation::RevokeTokens, subject, None, Outcome::AlreadyDone)
        .await;

    google
        .expecting(
            Operation::EnableAccount,
            subject,
            d.pre_state.clone(),
            Outcome::Done,
        )
        .await;
    assert!(!fake.with(|i| i.vendor.users["1001"].1), "unsuspended");

    google
        .expecting(
            Operation::DisableAccount,
            "nobody@acme.example",
            None,
            Outcome::NotFound,
        )
        .await;
    assert_eq!(
        fake.token_requests(),
        1,
        "the delegated token is cached across operations"
    );
}

#[tokio::test]
async fn google_lists_a_users_group_names_and_emails_across_pages_without_changing_anything() {
    let secrets = Secrets::new();
    let mut dir = Directory::default();
    dir.users.insert(
        "1001".into(),
        ("carol@acme.example".into(), false, BTreeMap::new()),
    );
    dir.users.insert(
        "1002".into(),
        ("dave@acme.example".into(), false, BTreeMap::new()),
    );
    // 230 groups hold carol: two pages of at most 200. One group is dave's only.
    for n in 0..230 {
        dir.groups.push((
            format!("team-{n:03}@acme.example"),
            format!("Team {n:03}"),
            BTreeSet::from(["1001".to_string()]),
        ));
    }
    dir.groups.push((
        "tier0-admins@acme.example".into(),
        "Tier0 Admins".into(),
        BTreeSet::from(["1002".to_string()]),
    ));
    let before = dir.clone();
    let fake = Fake::start(dir).await;
    let key = service_account_key(&fake).to_string();
    let google = connector(
        "google",
        google_config(
            &fake,
            &secrets.file("sa.json", &key),
            &[
                "https://www.googleapis.com/auth/admin.directory.user.readonly",
                "https://www.googleapis.com/auth/admin.directory.group.readonly",
            ],
        ),
    );
    assert!(google.lists_groups());

    // A scope the delegation does not cover is refused at the token endpoint: listing is unavailable,
    // never "in no group".
    let refused = google.group_memberships("carol@acme.example").await;
    assert!(
        matches!(refused, Memberships::Unavailable(_)),
        "{refused:?}"
    );
    assert!(fake.calls().is_empty(), "no API call without a token");

    let google = connector(
        "google",
        google_config(
            &fake,
            &secrets.file("sa2.json", &key),
            &[
                "https://www.googleapis.com/auth/admin.directory.user",
                "https://www.googleapis.com/auth/admin.directory.group.readonly",
            ],
        ),
    );
    let Memberships::Groups(names) = google.group_memberships("carol@acme.example").await else {
        panic!("groups expected");
    };
    let got: BTreeSet<String> = names.into_iter().collect();
    let mut expected = BTreeSet::new();
    for n in 0..230 {
        expected.insert(format!("Team {n:03}"));
        expected.insert(format!("team-{n:03}@acme.example"));
    }
    assert_eq!(
        got, expected,
        "every group of both pages, by name and email"
    );
    let lists: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/admin/directory/v1/groups")
        .collect();
    assert_eq!(lists.len(), 2, "two pages");
    assert_eq!(
        lists[0].query.get("userKey").map(String::as_str),
        Some("1001")
    );
    assert_eq!(lists[0].query.get("pageToken"), None);
    assert_eq!(
        lists[1].query.get("pageToken").map(String::as_str),
        Some("gp-200")
    );
    assert_eq!(
        lists[1].query.get("userKey").map(String::as_str),
        Some("1001")
    );

    let Memberships::Groups(dave) = google.group_memberships("dave@acme.example").await else {
        panic!("groups expected");
    };
    assert_eq!(
        dave.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "Tier0 Admins".to_string(),
            "tier0-admins@acme.example".to_string()
        ])
    );
    assert_eq!(
        google.group_memberships("nobody@acme.example").await,
        Memberships::NotFound
    );
    assert!(
        fake.calls().iter().all(|c| c.starts_with("GET ")),
        "only reads: {:?}",
        fake.calls()
    );
    assert_eq!(fake.with(|i| i.vendor.clone()), before, "nothing changed");
}
