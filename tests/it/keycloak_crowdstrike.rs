//! The Keycloak (Admin REST API) and CrowdStrike Falcon (Hosts API) connectors, built from their
//! config by `deprovd::build_connectors` exactly as the service builds them, against the vendor
//! fakes of [`crate::kit::vendors`]: exact methods, paths, query strings, bodies and auth headers
//! asserted, form-encoded client-credentials token requests checked, the vendors' error shapes
//! reproduced (Keycloak `{"error": "User not found"}` / `HTTP 401 Unauthorized`; CrowdStrike's
//! `{meta, resources, errors}` envelope, `X-RateLimit-RetryAfter` on 429, asynchronous
//! `containment_pending` states), and the Keycloak fake applies Keycloak 24's full-replacement PUT
//! semantics, so a partial write would visibly lose data.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use deprovd::{Memberships, Operation, Outcome};
use serde_json::json;

use crate::kit::connector::{RunExt, Secrets, connector, failed, retrying, run};
use crate::kit::fake::{Fake, Req, WRONG_SECRET, epoch_secs};
use crate::kit::vendors::crowdstrike::*;
use crate::kit::vendors::keycloak::*;
use crate::kit::{TestApp, eventually, policy_dir, unique};

// ---------------------------------------------------------------------------------------------
// Keycloak Admin REST API.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn keycloak_contain_then_restore_leaves_the_realm_as_it_was() {
    let (fake, kc, _s) = keycloak().await;
    let before = fake.with(|i| i.vendor.users.clone());
    let subject = "Alice.Smith@example.com";

    let d = kc
        .expecting(Operation::DisableAccount, subject, None, Outcome::Done)
        .await;
    assert_eq!(d.pre_state, Some(json!({"prior_enabled": true})));
    let users_path = format!("/admin/realms/{REALM}/users");
    let alice_path = format!("{users_path}/{ALICE}");
    assert_eq!(
        fake.calls(),
        [
            format!("GET {users_path}"),
            format!("GET {alice_path}"),
            format!("PUT {alice_path}"),
        ]
    );
    let reqs = fake.api_requests();
    let q = &reqs[0].query;
    assert_eq!(q.get("email").map(String::as_str), Some(subject));
    assert_eq!(q.get("exact").map(String::as_str), Some("true"));
    assert_eq!(
        reqs[0].query.len(),
        3,
        "email, exact, briefRepresentation: {q:?}"
    );
    // The PUT sends back what was read, with only `enabled` changed.
    let mut want = before[ALICE].full();
    want["enabled"] = json!(false);
    assert_eq!(reqs[2].body, want);
    // Every API call carries the token issued by the realm's token endpoint for the service account.
    let tokens = fake.token_request_log();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        tokens[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        tokens[0].body,
        json!({"grant_type": "client_credentials", "client_id": KC_CLIENT, "client_secret": KC_SECRET})
    );
    let issued = fake
        .with(|i| i.valid.iter().next().cloned())
        .expect("token");
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {issued}")))
    );
    let after_disable = fake.with(|i| i.vendor.users[ALICE].clone());
    assert!(!after_disable.enabled);
    assert_eq!(
        after_disable,
        KcUser {
            enabled: false,
            ..before[ALICE].clone()
        },
        "nothing but `enabled` changed (Keycloak 24 clears omitted attributes)"
    );

    // Sessions: POST .../logout, no body.
    fake.clear_log();
    kc.expecting(Operation::RevokeSessions, subject, None, Outcome::Done)
        .await;
    assert_eq!(
        fake.calls().last(),
        Some(&format!("POST {alice_path}/logout"))
    );
    assert_eq!(fake.with(|i| i.vendor.sessions[ALICE]), 0);

    // Disabling again is already_done, without a write, recording that it was already disabled.
    fake.clear_log();
    let again = kc
        .expecting(
            Operation::DisableAccount,
            subject,
            None,
            Outcome::AlreadyDone,
        )
        .await;
    assert_eq!(again.pre_state, Some(json!({"prior_enabled": false})));
    assert!(!fake.calls().iter().any(|c| c.starts_with("PUT")));

    // Restore from the first action's pre-state: re-enabled, the user exactly as before.
    fake.clear_log();
    kc.expecting(
        Operation::EnableAccount,
        subject,
        d.pre_state.clone(),
        Outcome::Done,
    )
    .await;
    assert_eq!(
        fake.api_requests().last().map(|r| r.body.clone()),
        Some({
            let mut v = after_disable.full();
            v["enabled"] = json!(true);
            v
        })
    );
    assert_eq!(fake.with(|i| i.vendor.users.clone()), before);

    // Restoring the second (already_done) disable leaves the user alone.
    fake.clear_log();
    kc.expecting(
        Operation::EnableAccount,
        subject,
        again.pre_state,
        Outcome::AlreadyDone,
    )
    .await;
    assert!(!fake.calls().iter().any(|c| c.starts_with("PUT")));
    assert_eq!(fake.with(|i| i.vendor.users.clone()), before);
    let report = kc.check().await;
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn keycloak_finds_users_by_username_and_id_and_reports_unknown_ones_as_not_found() {
    let (fake, kc, _s) = keycloak().await;
    let users_path = format!("/admin/realms/{REALM}/users");

    // A username without an email: the email search finds nothing, the username search finds bob.
    kc.expecting(Operation::DisableAccount, "bob", None, Outcome::Done)
        .await;
    let reqs = fake.api_requests();
    assert_eq!(reqs[1].path, users_path);
    assert_eq!(
        reqs[1].query.get("username").map(String::as_str),
        Some("bob")
    );
    assert_eq!(reqs[1].query.get("exact").map(String::as_str), Some("true"));
    assert!(!fake.with(|i| i.vendor.users[BOB].enabled));

    // The Keycloak user id (a per-system id of the subject).
    fake.clear_log();
    kc.expecting(Operation::EnableAccount, BOB, None, Outcome::Done)
        .await;
    assert_eq!(
        fake.calls(),
        [
            format!("GET {users_path}"),
            format!("GET {users_path}"),
            format!("GET {users_path}/{BOB}"),
            format!("GET {users_path}/{BOB}"),
            format!("PUT {users_path}/{BOB}"),
        ]
    );
    assert!(fake.with(|i| i.vendor.users[BOB].enabled));

    // Carol was disabled before anyone acted: already_done, and a restore leaves her disabled.
    let c = kc
        .expecting(
            Operation::DisableAccount,
            "carol@example.com",
            None,
            Outcome::AlreadyDone,
        )
        .await;
    kc.expecting(
        Operation::EnableAccount,
        "carol@example.com",
        c.pre_state,
        Outcome::AlreadyDone,
    )
    .await;
    assert!(!fake.with(|i| i.vendor.users[CAROL].enabled));

    // Nobody: three lookups, the last a 404 {"error": "User not found"}, and nothing written.
    fake.clear_log();
    let before = fake.with(|i| i.vendor.clone());
    kc.expecting(
        Operation::DisableAccount,
        "nobody@example.com",
        None,
        Outcome::NotFound,
    )
    .await;
    assert_eq!(fake.calls().len(), 3, "{:?}", fake.calls());
    assert_eq!(fake.with(|i| i.vendor.clone()), before);
}

#[tokio::test]
async fn keycloak_lookup_never_takes_a_substring_match_from_a_server_that_ignores_exact() {
    let (fake, kc, _s) = keycloak().await;
    fake.with(|i| i.vendor.ignore_exact = true);
    // "asmith" is a substring of "asmith2": an old server answers both; only the equal one is taken.
    kc.expecting(Operation::DisableAccount, "asmith", None, Outcome::Done)
        .await;
    let users = fake.with(|i| i.vendor.users.clone());
    assert!(!users[ALICE].enabled);
    assert!(
        users["6f1c2d1e-0000-4000-8000-0000000a11c2"].enabled,
        "asmith2 untouched"
    );
}

#[tokio::test]
async fn keycloak_token_is_refreshed_once_after_a_401_then_fails() {
    let (fake, kc, _s) = keycloak().await;
    kc.expecting(Operation::RevokeSessions, "bob", None, Outcome::Done)
        .await;
    assert_eq!(fake.token_requests(), 1, "one token for lookup and logout");

    // Mid-run the token stops being accepted (expired / revoked at Keycloak): 401 → one refresh → retry.
    // (The subject's id comes from the connector's lookup cache, so the logout is the first call.)
    // The service account is disabled at Keycloak: the fresh token is refused too → one refresh, then
    // a terminal failure carrying Keycloak's words.
    fake.check_token_refresh(
        &*kc,
        Operation::RevokeSessions,
        "bob",
        &format!("POST /admin/realms/{REALM}/users/{BOB}/logout"),
        "HTTP 401 Unauthorized",
    )
    .await;
}

#[tokio::test]
async fn keycloak_wrong_client_secret_fails_terminally_without_leaking_it() {
    let secrets = Secrets::new();
    let fake = Fake::start(keycloak_world()).await;
    let kc = connector(
        "kc",
        keycloak_config(fake.base(), &secrets.file("wrong", WRONG_SECRET)),
    );
    fake.check_refused_client(
        &*kc,
        Operation::DisableAccount,
        "bob",
        "Invalid client or Invalid client credentials",
    )
    .await;
    let report = kc.check().await;
    assert!(!report.ok, "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// CrowdStrike Falcon Hosts API.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn crowdstrike_contain_then_lift_leaves_the_host_as_it_was() {
    let (fake, cs, _s) = falcon().await;
    let before = fake.with(|i| i.vendor.devices.clone());

    let c = cs
        .expecting(Operation::ContainHost, "WKS-ALICE-01", None, Outcome::Done)
        .await;
    assert_eq!(
        c.pre_state,
        Some(json!({"device_id": AID_ALICE, "hostname": "WKS-ALICE-01", "prior_status": "normal"}))
    );
    assert_eq!(
        fake.calls(),
        [
            "GET /devices/queries/devices/v1",
            "GET /devices/entities/devices/v2",
            "POST /devices/entities/devices-actions/v2",
        ]
    );
    let reqs = fake.api_requests();
    assert_eq!(
        reqs[0].query.get("filter").map(String::as_str),
        Some("hostname:'WKS-ALICE-01'")
    );
    assert_eq!(
        reqs[1].query.get("ids").map(String::as_str),
        Some(AID_ALICE)
    );
    assert_eq!(
        reqs[2].query.get("action_name").map(String::as_str),
        Some("contain")
    );
    assert_eq!(reqs[2].body, json!({"ids": [AID_ALICE]}));
    let tokens = fake.token_request_log();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        tokens[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(tokens[0].body["client_id"], CS_CLIENT);
    assert_eq!(tokens[0].body["client_secret"], CS_SECRET);
    let issued = fake
        .with(|i| i.valid.iter().next().cloned())
        .expect("token");
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {issued}")))
    );
    assert_eq!(
        fake.with(|i| i.vendor.devices[AID_ALICE].status.clone()),
        "containment_pending"
    );

    // Containment is asynchronous: asked again while pending, and once contained, nothing is sent.
    fake.clear_log();
    cs.expecting(
        Operation::ContainHost,
        "WKS-ALICE-01",
        None,
        Outcome::AlreadyDone,
    )
    .await;
    fake.with(|i| i.vendor.settle());
    cs.expecting(
        Operation::ContainHost,
        AID_ALICE,
        None,
        Outcome::AlreadyDone,
    )
    .await;
    assert!(!fake.calls().iter().any(|c| c.starts_with("POST")));

    // Lift from the recorded pre-state: lift_containment on the recorded device id.
    fake.clear_log();
    cs.expecting(
        Operation::LiftContainment,
        "WKS-ALICE-01",
        c.pre_state.clone(),
        Outcome::Done,
    )
    .await;
    let post = fake.api_requests().pop().expect("a request");
    assert_eq!(post.path, "/devices/entities/devices-actions/v2");
    assert_eq!(
        post.query.get("action_name").map(String::as_str),
        Some("lift_containment")
    );
    assert_eq!(post.body, json!({"ids": [AID_ALICE]}));
    // Lifting while the lift is pending is already_done; then the host is exactly as before.
    cs.expecting(
        Operation::LiftContainment,
        "WKS-ALICE-01",
        c.pre_state,
        Outcome::AlreadyDone,
    )
    .await;
    fake.with(|i| i.vendor.settle());
    assert_eq!(fake.with(|i| i.vendor.devices.clone()), before);
    assert_eq!(
        fake.with(|i| i.vendor.actions.clone()),
        [
            ("contain".to_string(), vec![AID_ALICE.to_string()]),
            ("lift_containment".to_string(), vec![AID_ALICE.to_string()]),
        ]
    );
    // `deprovd connectors check` passes with Hosts: Read.
    let report = cs.check().await;
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn crowdstrike_host_contained_before_is_already_done_and_stays_contained_on_restore() {
    let (fake, cs, _s) = falcon().await;
    // The alert spelled the name in lower case; Falcon has it in upper case (FQL values are
    // case-sensitive): the upper-case spelling is tried before the device id.
    let c = cs
        .expecting(
            Operation::ContainHost,
            "srv-db-01",
            None,
            Outcome::AlreadyDone,
        )
        .await;
    assert_eq!(
        fake.api_requests()
            .iter()
            .filter_map(|r| r.query.get("filter").cloned())
            .collect::<Vec<_>>(),
        ["hostname:'srv-db-01'", "hostname:'SRV-DB-01'"]
    );
    assert_eq!(c.pre_state.as_ref().unwrap()["prior_status"], "contained");
    cs.expecting(
        Operation::LiftContainment,
        "srv-db-01",
        c.pre_state,
        Outcome::AlreadyDone,
    )
    .await;
    assert!(fake.with(|i| i.vendor.actions.is_empty()), "nothing sent");
    assert_eq!(
        fake.with(|i| i.vendor.devices[AID_SERVER].status.clone()),
        "contained"
    );
}

#[tokio::test]
async fn crowdstrike_fql_is_escaped_and_wildcards_duplicates_and_unknown_hosts_never_act() {
    let (fake, cs, _s) = falcon().await;

    // A quote in the name is escaped in the FQL string, and the right host is contained.
    cs.expecting(Operation::ContainHost, "o'brien-pc", None, Outcome::Done)
        .await;
    assert_eq!(
        fake.api_requests()[0]
            .query
            .get("filter")
            .map(String::as_str),
        Some(r"hostname:'o\'brien-pc'")
    );
    assert_eq!(
        fake.with(|i| i.vendor.actions.clone()),
        [("contain".to_string(), vec![AID_OBRIEN.to_string()])]
    );

    // A wildcard would match a host by pattern: refused.
    let r = run(&*cs, Operation::ContainHost, "WKS-ALICE-*", None).await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("wildcard")),
        "{r:?}"
    );
    // Two sensors report the same name (a re-imaged machine): refused, the device id works.
    let r = run(&*cs, Operation::ContainHost, "WKS-REIMAGED", None).await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("more than one") && reason.contains("device id")),
        "{r:?}"
    );
    assert_eq!(
        fake.with(|i| i.vendor.actions.len()),
        1,
        "nothing more sent"
    );
    cs.expecting(Operation::ContainHost, AID_NEW, None, Outcome::Done)
        .await;
    assert_eq!(
        fake.with(|i| i.vendor.devices[AID_OLD].status.clone()),
        "normal"
    );

    // An unknown host: both queries answer no resources → not_found, nothing sent.
    fake.clear_log();
    cs.expecting(
        Operation::ContainHost,
        "WKS-NOBODY",
        None,
        Outcome::NotFound,
    )
    .await;
    let reqs = fake.api_requests();
    assert_eq!(
        reqs.iter()
            .map(|r| r.query.get("filter").cloned().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["hostname:'WKS-NOBODY'", "device_id:'WKS-NOBODY'"]
    );
    assert_eq!(fake.with(|i| i.vendor.actions.len()), 2);
}

#[tokio::test]
async fn crowdstrike_429_waits_for_x_ratelimit_retryafter_and_401_refreshes_the_token_once() {
    let (fake, cs, _s) = falcon().await;
    let reset = epoch_secs(SystemTime::now()) + 3;
    let mut headers = rate_headers();
    headers.retain(|(k, _)| k != "X-RateLimit-Remaining");
    headers.push(("X-RateLimit-Remaining".into(), "0".into()));
    headers.push(("X-RateLimit-RetryAfter".into(), reset.to_string()));
    fake.inject(
        Method::POST,
        "/devices/entities/devices-actions/v2",
        (
            429,
            json!({"meta": cs_meta(), "resources": [], "errors": [{"code": 429, "message": "API rate limit exceeded."}]}),
            headers,
        ),
    );
    let r = run(&*cs, Operation::ContainHost, "WKS-ALICE-01", None).await;
    let (after, reason) = retrying(&r);
    let after = after.expect("a retry time");
    assert!(
        after > Duration::from_secs(1) && after <= Duration::from_secs(3),
        "{after:?} is not the time left to {reset}"
    );
    assert!(
        reason.contains("429") && reason.contains("API rate limit exceeded."),
        "{reason}"
    );
    assert_eq!(
        fake.with(|i| i.vendor.devices[AID_ALICE].status.clone()),
        "normal"
    );

    // The token expires at CrowdStrike mid-run: 401 in CrowdStrike's envelope → one refresh → success.
    fake.expire_tokens();
    cs.expecting(Operation::ContainHost, "WKS-ALICE-01", None, Outcome::Done)
        .await;
    assert_eq!(fake.token_requests(), 2);

    // The API client is deleted: the new token is refused as well → one refresh, then failed.
    fake.with(|i| i.refuse_new_tokens = true);
    fake.expire_tokens();
    fake.clear_log();
    let r = run(&*cs, Operation::LiftContainment, "WKS-ALICE-01", None).await;
    let reason = failed(&r);
    assert!(
        reason.contains("401") && reason.contains("access denied, invalid bearer token"),
        "{reason}"
    );
    assert_eq!(fake.token_requests(), 3, "exactly one more refresh");
    assert_eq!(fake.calls().len(), 2, "one retry: {:?}", fake.calls());
}

#[tokio::test]
async fn crowdstrike_refused_client_fails_terminally_with_the_envelope_message() {
    let secrets = Secrets::new();
    let fake = Fake::start(falcon_world()).await;
    let cs = connector(
        "cs",
        falcon_config(fake.base(), &secrets.file("wrong", WRONG_SECRET)),
    );
    fake.check_refused_client(
        &*cs,
        Operation::ContainHost,
        "WKS-ALICE-01",
        "access denied, invalid client",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Through the service: alert → policy → both connectors.
// ---------------------------------------------------------------------------------------------

const CONTAIN_POLICY: &str = r#"package deprovd

import rego.v1

decisions contains d if {
    input.alert.host.hostname
    d := {"action": "contain_host", "subject": input.alert.host.hostname,
          "reason": "malware", "rule": "test.contain_host"}
}

decisions contains d if {
    some s in input.alert.subjects
    d := {"action": "disable_account", "subject": s.email, "reason": "malware", "rule": "test.disable"}
}
"#;

#[tokio::test]
async fn alert_contains_the_host_at_crowdstrikes_reset_time_while_keycloak_reports_an_unknown_user()
{
    let secrets = Secrets::new();
    let cs = Fake::start(falcon_world()).await;
    let kc = Fake::start(keycloak_world()).await;
    let policies = policy_dir(&[("p.rego", CONTAIN_POLICY)]);
    let app = TestApp::builder()
        .policies(policies.path())
        .fast_executor()
        .max_attempts(4)
        .connector(
            "falcon",
            falcon_config(cs.base(), &secrets.file("cs", CS_SECRET)),
        )
        .connector(
            "keycloak",
            keycloak_config(kc.base(), &secrets.file("kc", KC_SECRET)),
        )
        .redis()
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;

    // CrowdStrike's gateway answers the first containment with 429 until the next whole second + 2.
    let reset = epoch_secs(SystemTime::now()) + 3;
    cs.inject(
        Method::POST,
        "/devices/entities/devices-actions/v2",
        (
            429,
            json!({"meta": cs_meta(), "resources": [], "errors": [{"code": 429, "message": "API rate limit exceeded."}]}),
            vec![
                ("X-RateLimit-Limit".into(), "6000".into()),
                ("X-RateLimit-Remaining".into(), "0".into()),
                ("X-RateLimit-RetryAfter".into(), reset.to_string()),
            ],
        ),
    );
    let unknown = format!("{}@example.com", unique("nobody"));
    let (status, body) = app
        .post_alert(
            &json!({
                "id": unique("alert"),
                "source": {"vendor": "test"},
                "time": chrono::Utc::now().to_rfc3339(),
                "severity": "high",
                "category": "malware",
                "title": "Malware on a workstation",
                "subjects": [{"email": unknown}],
                "host": {"hostname": "WKS-ALICE-01"},
            })
            .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["actions"].as_array().map(Vec::len), Some(2), "{body}");

    // Keycloak: the user is not there → skipped as not found, without holding anything up.
    let kc_action = eventually(Duration::from_secs(10), "keycloak not_found", || async {
        app.actions(&format!("subject={unknown}"))
            .await
            .into_iter()
            .find(|a| a["connector"] == "keycloak" && a["state"] == "skipped")
    })
    .await;
    assert_eq!(
        kc_action["note"], "subject not found on this target",
        "{kc_action}"
    );
    assert!(!kc.calls().iter().any(|c| c.starts_with("PUT")));

    // CrowdStrike: 429 first, then contained, with the retry no sooner than X-RateLimit-RetryAfter.
    let cs_action = eventually(Duration::from_secs(15), "host contained", || async {
        app.actions("subject=WKS-ALICE-01")
            .await
            .into_iter()
            .find(|a| a["connector"] == "falcon" && a["state"] == "succeeded")
    })
    .await;
    assert_eq!(cs_action["attempts"], 2, "{cs_action}");
    let posts: Vec<Req> = cs
        .api_requests()
        .into_iter()
        .filter(|r| r.method == Method::POST)
        .collect();
    assert_eq!(posts.len(), 2, "one 429, one accepted");
    assert!(
        posts[0].at < UNIX_EPOCH + Duration::from_secs(reset),
        "the first call came before the reset"
    );
    assert!(
        posts[1].at >= UNIX_EPOCH + Duration::from_secs(reset),
        "retried at {:?}, before X-RateLimit-RetryAfter {reset}",
        posts[1].at
    );
    assert_eq!(
        cs.with(|i| i.vendor.devices[AID_ALICE].status.clone()),
        "containment_pending"
    );
    app.stop().await;
}

#[tokio::test]
async fn keycloak_lists_a_users_group_names_and_paths_across_pages_without_changing_anything() {
    let (fake, kc, _s) = keycloak().await;
    fake.with(|i| {
        // 130 groups hold alice: two pages of 100. A nested one holds bob.
        for n in 0..130 {
            i.vendor.groups.push((
                format!("g-{n:03}"),
                format!("team-{n:03}"),
                format!("/teams/team-{n:03}"),
                BTreeSet::from([ALICE.to_string()]),
            ));
        }
        i.vendor.groups.push((
            "g-t0".into(),
            "tier0-admins".into(),
            "/it/tier0-admins".into(),
            BTreeSet::from([BOB.to_string()]),
        ));
    });
    let before = fake.with(|i| i.vendor.clone());
    assert!(kc.lists_groups());

    let Memberships::Groups(names) = kc.group_memberships("alice.smith@example.com").await else {
        panic!("groups expected");
    };
    let got: BTreeSet<String> = names.into_iter().collect();
    let mut expected = BTreeSet::new();
    for n in 0..130 {
        expected.insert(format!("team-{n:03}"));
        expected.insert(format!("/teams/team-{n:03}"));
    }
    assert_eq!(got, expected, "every group of both pages, by name and path");
    let lists: Vec<Req> = fake
        .api_requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/groups"))
        .collect();
    assert_eq!(lists.len(), 2, "two pages");
    assert_eq!(
        lists[0].path,
        format!("/admin/realms/{REALM}/users/{ALICE}/groups")
    );
    let q = |r: &Req, k: &str| r.query.get(k).cloned().unwrap_or_default();
    assert_eq!(
        (q(&lists[0], "first"), q(&lists[0], "max")),
        ("0".into(), "100".into())
    );
    assert_eq!(
        (q(&lists[1], "first"), q(&lists[1], "max")),
        ("100".into(), "100".into())
    );

    let Memberships::Groups(bob) = kc.group_memberships("bob").await else {
        panic!("groups expected");
    };
    assert_eq!(
        bob.into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["tier0-admins".to_string(), "/it/tier0-admins".to_string()])
    );
    // Carol is in no group: one short page.
    assert_eq!(
        kc.group_memberships("carol@example.com").await,
        Memberships::Groups(vec![])
    );
    assert_eq!(
        kc.group_memberships("nobody@example.com").await,
        Memberships::NotFound
    );
    assert!(
        fake.calls().iter().all(|c| c.starts_with("GET ")),
        "only reads: {:?}",
        fake.calls()
    );
    assert_eq!(fake.with(|i| i.vendor.clone()), before, "nothing changed");
}
