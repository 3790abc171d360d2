//! The Okta, Microsoft Entra (Graph) and Google Workspace connectors, built from TOML config by
//! `deprovd::connectors::build_all` exactly as the service builds them, against local fakes of the
//! vendors' APIs written from their API references: exact methods, paths, query strings, bodies and
//! auth headers are asserted, the vendors' own error shapes are reproduced (Okta E0000001/E0000007/
//! E0000011, Graph `Request_ResourceNotFound`/`InvalidAuthenticationToken`, Google `userRateLimitExceeded`),
//! and the token endpoints verify the RS256 assertions with the public key of the test key pair.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::Method;
use deprovd::connectors::{Connector, Memberships, Operation, Outcome};
use serde_json::{Value, json};

use crate::kit::connector::{Secrets, build, run};
use crate::kit::contract::Case;
use crate::kit::eventually;
use crate::kit::fake::{Fake, Req, Resp, Vendor, now_secs, resp};

const PRIVATE_PEM: &str = include_str!("../fixtures/idp/test-rsa-private.pem");
const PUBLIC_PEM: &str = include_str!("../fixtures/idp/test-rsa-public.pem");

/// The answer of a token endpoint refusing the client, with the reason.
fn invalid_client(e: String) -> Resp {
    resp(
        400,
        json!({"error": "invalid_client", "error_description": e}),
    )
}

/// Verify an RS256 assertion with the test public key; its claims.
fn verify_assertion(jwt: &str, aud: &str) -> Result<Value, String> {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| format!("assertion does not verify: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Building the real connectors from TOML.
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Okta.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct OktaUser {
    id: String,
    login: String,
    email: String,
    status: String,
}

#[derive(Clone, Debug, PartialEq)]
struct OktaGroup {
    id: String,
    name: String,
    kind: String,
    members: BTreeSet<String>,
}

#[derive(Default, Clone, PartialEq, Debug)]
struct Okta {
    users: BTreeMap<String, OktaUser>,
    groups: BTreeMap<String, OktaGroup>,
    /// (user id, oauthTokens query value) of every session clear.
    sessions_cleared: Vec<(String, String)>,
    /// When set, Okta's rate limiting of the API: every answer carries `X-Rate-Limit-*`, and a request
    /// beyond the budget before the reset gets 429 E0000047.
    rate: Option<OktaRate>,
}

/// One Okta rate-limit bucket (developer.okta.com "Rate limits": X-Rate-Limit-Limit, -Remaining, and -Reset
/// in UTC epoch seconds).
#[derive(Clone, Debug, PartialEq)]
struct OktaRate {
    limit: u64,
    remaining: u64,
    reset: u64,
    /// Every request refused with 429.
    refused: usize,
}

fn okta_error(status: u16, code: &str, summary: &str, causes: &[&str]) -> Resp {
    resp(
        status,
        json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": format!("oae{}", uuid::Uuid::new_v4().simple()),
            "errorCauses": causes.iter().map(|c| json!({"errorSummary": c})).collect::<Vec<_>>(),
        }),
    )
}

fn okta_not_found(what: &str, kind: &str) -> Resp {
    okta_error(
        404,
        "E0000007",
        &format!("Not found: Resource not found: {what} ({kind})"),
        &[],
    )
}

impl Okta {
    fn user_json(u: &OktaUser) -> Value {
        json!({"id": u.id, "status": u.status, "profile": {"login": u.login, "email": u.email},
               "_links": {}})
    }
    fn find(&self, key: &str) -> Option<&OktaUser> {
        self.users
            .values()
            .find(|u| u.id == key || u.login.eq_ignore_ascii_case(key))
    }
}

impl Vendor for Okta {
    const TOKEN_PATH: Option<&'static str> = Some("/oauth2/v1/token");

    fn check_token_request(form: &BTreeMap<String, String>, token_url: &str) -> Result<(), Resp> {
        let check = || -> Result<(), String> {
            // Okta service app, private_key_jwt (developer.okta.com "Implement OAuth for Okta with a service app").
            let keys: Vec<&str> = form.keys().map(String::as_str).collect();
            if keys
                != [
                    "client_assertion",
                    "client_assertion_type",
                    "client_id",
                    "grant_type",
                    "scope",
                ]
            {
                return Err(format!("unexpected form fields {keys:?}"));
            }
            if form["grant_type"] != "client_credentials"
                || form["client_assertion_type"]
                    != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                || form["scope"] != "okta.users.read okta.users.manage okta.groups.manage"
            {
                return Err(format!("unexpected form {form:?}"));
            }
            let claims = verify_assertion(&form["client_assertion"], token_url)?;
            if claims["iss"] != "0oaservice" || claims["sub"] != "0oaservice" {
                return Err(format!("iss/sub must be the client id: {claims}"));
            }
            let exp = claims["exp"].as_u64().unwrap_or(0);
            if exp <= now_secs() || exp > now_secs() + 3600 || claims["jti"].as_str().is_none() {
                return Err(format!("exp must be within the hour and jti set: {claims}"));
            }
            Ok(())
        };
        check().map_err(invalid_client)
    }

    fn unauthorized() -> Resp {
        resp(
            401,
            json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided",
               "errorLink": "E0000011", "errorId": "oaeX", "errorCauses": []}),
        )
    }

    fn handle(&mut self, req: &Req, base: &str) -> Resp {
        let Some(mut rate) = self.rate.clone() else {
            return self.api(req, base);
        };
        if now_secs() >= rate.reset {
            rate.remaining = rate.limit;
            rate.reset = now_secs() + 60;
        }
        let mut answer = if rate.remaining == 0 {
            rate.refused += 1;
            okta_error(
                429,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
                &[],
            )
        } else {
            rate.remaining -= 1;
            self.api(req, base)
        };
        for (k, v) in [
            ("X-Rate-Limit-Limit", rate.limit),
            ("X-Rate-Limit-Remaining", rate.remaining),
            ("X-Rate-Limit-Reset", rate.reset),
        ] {
            answer.2.push((k.to_string(), v.to_string()));
        }
        self.rate = Some(rate);
        answer
    }
}

impl Okta {
    /// The Management API itself (no rate limiting).
    fn api(&mut self, req: &Req, base: &str) -> Resp {
        if req.header("accept") != Some("application/json") {
            return resp(
                406,
                json!({"errorSummary": "Accept: application/json expected"}),
            );
        }
        let segs = req.segs();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = req.method.as_str();
        match (m, segs.as_slice()) {
            ("GET", ["api", "v1", "users"]) => {
                let limit: usize = req
                    .query
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(200);
                let found: Vec<Value> = match req.query.get("search") {
                    Some(s) => {
                        let Some(email) = s
                            .strip_prefix("profile.email eq \"")
                            .and_then(|r| r.strip_suffix('"'))
                        else {
                            return okta_error(
                                400,
                                "E0000031",
                                "Invalid search.",
                                &[&format!("Invalid search criteria: {s}")],
                            );
                        };
                        self.users
                            .values()
                            .filter(|u| u.email.eq_ignore_ascii_case(email))
                            .map(Self::user_json)
                            .collect()
                    }
                    None => self.users.values().map(Self::user_json).collect(),
                };
                resp(200, Value::Array(found.into_iter().take(limit).collect()))
            }
            ("GET", ["api", "v1", "users", key]) => match self.find(key) {
                Some(u) => resp(200, Self::user_json(u)),
                None => okta_not_found(key, "User"),
            },
            ("POST", ["api", "v1", "users", id, "lifecycle", op]) => {
                let Some(u) = self.users.get_mut(*id) else {
                    return okta_not_found(id, "User");
                };
                let (from, to, cause): (&[&str], &str, &str) = match *op {
                    "suspend" => (
                        &["ACTIVE"],
                        "SUSPENDED",
                        "Cannot suspend a user that is not active",
                    ),
                    "unsuspend" => (
                        &["SUSPENDED"],
                        "ACTIVE",
                        "Cannot unsuspend a user that is not suspended",
                    ),
                    "deactivate" => (
                        &[
                            "STAGED",
                            "PROVISIONED",
                            "ACTIVE",
                            "RECOVERY",
                            "LOCKED_OUT",
                            "PASSWORD_EXPIRED",
                            "SUSPENDED",
                        ],
                        "DEPROVISIONED",
                        "Cannot deactivate a user that is deprovisioned",
                    ),
                    "activate" => (
                        &["STAGED", "DEPROVISIONED"],
                        "ACTIVE",
                        "Activation failed because the user is already active",
                    ),
                    _ => return okta_not_found(op, "Operation"),
                };
                if matches!(*op, "deactivate" | "activate")
                    && req.query.get("sendEmail").map(String::as_str) != Some("false")
                {
                    return resp(400, json!({"errorSummary": "test expects sendEmail=false"}));
                }
                if !req.raw.is_empty() {
                    return resp(400, json!({"errorSummary": "lifecycle calls take no body"}));
                }
                if !from.contains(&u.status.as_str()) {
                    return okta_error(
                        400,
                        "E0000001",
                        &format!("Api validation failed: {op}"),
                        &[cause],
                    );
                }
                u.status = to.to_string();
                resp(200, json!({}))
            }
            ("DELETE", ["api", "v1", "users", id, "sessions"]) => {
                if !self.users.contains_key(*id) {
                    return okta_not_found(id, "User");
                }
                let tokens = req.query.get("oauthTokens").cloned().unwrap_or_default();
                self.sessions_cleared.push((id.to_string(), tokens));
                resp(204, Value::Null)
            }
            ("GET", ["api", "v1", "users", id, "groups"]) => {
                if !self.users.contains_key(*id) {
                    return okta_not_found(id, "User");
                }
                // Cursor pagination: `limit` (default and maximum 200), `after` = the last id of the previous
                // page, the next page announced as `Link: <…>; rel="next"` beside `rel="self"`.
                let limit = req
                    .query
                    .get("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(200)
                    .clamp(1, 200);
                let after = req.query.get("after").cloned().unwrap_or_default();
                let all: Vec<&OktaGroup> = self
                    .groups
                    .values()
                    .filter(|g| g.members.contains(*id) && g.id > after)
                    .collect();
                let page: Vec<Value> = all
                    .iter()
                    .take(limit)
                    .map(|g| json!({"id": g.id, "type": g.kind, "profile": {"name": g.name, "description": null}}))
                    .collect();
                let path = format!("{base}/api/v1/users/{id}/groups");
                let self_link = if after.is_empty() {
                    format!("<{path}?limit={limit}>; rel=\"self\"")
                } else {
                    format!("<{path}?after={after}&limit={limit}>; rel=\"self\"")
                };
                let mut headers = vec![("Link".to_string(), self_link)];
                if all.len() > limit {
                    let last = &all[limit - 1].id;
                    headers.push((
                        "Link".to_string(),
                        format!("<{path}?after={last}&limit={limit}>; rel=\"next\""),
                    ));
                }
                (200, Value::Array(page), headers)
            }
            (m @ ("PUT" | "DELETE"), ["api", "v1", "groups", gid, "users", uid]) => {
                if !self.users.contains_key(*uid) {
                    return okta_not_found(uid, "User");
                }
                let Some(g) = self.groups.get_mut(*gid) else {
                    return okta_not_found(gid, "UserGroup");
                };
                if g.kind != "OKTA_GROUP" {
                    return okta_error(
                        403,
                        "E0000006",
                        "You do not have permission to perform the requested action",
                        &[],
                    );
                }
                if m == "PUT" {
                    g.members.insert(uid.to_string());
                } else {
                    g.members.remove(*uid);
                }
                resp(204, Value::Null)
            }
            _ => okta_not_found(&req.path, "Resource"),
        }
    }
}

fn okta_world() -> Okta {
    let mut o = Okta::default();
    for (id, login, email, status) in [
        (
            "00u1alice",
            "asmith@example.com",
            "alice.smith@example.com",
            "ACTIVE",
        ),
        ("00u2bob", "bob@example.com", "bob@example.com", "ACTIVE"),
        (
            "00u3staged",
            "new.hire@example.com",
            "new.hire@example.com",
            "STAGED",
        ),
        (
            "00u4gone",
            "gone@example.com",
            "gone@example.com",
            "DEPROVISIONED",
        ),
    ] {
        o.users.insert(
            id.into(),
            OktaUser {
                id: id.into(),
                login: login.into(),
                email: email.into(),
                status: status.into(),
            },
        );
    }
    for (id, name, kind, members) in [
        (
            "00gEveryone",
            "Everyone",
            "BUILT_IN",
            &["00u1alice", "00u2bob", "00u3staged"][..],
        ),
        (
            "00gEng",
            "Engineering",
            "OKTA_GROUP",
            &["00u1alice", "00u2bob"][..],
        ),
        ("00gAdmins", "Okta Admins", "OKTA_GROUP", &["00u1alice"][..]),
        ("00gAD", "AD: Domain Users", "APP_GROUP", &["00u1alice"][..]),
    ] {
        o.groups.insert(
            id.into(),
            OktaGroup {
                id: id.into(),
                name: name.into(),
                kind: kind.into(),
                members: members.iter().map(|s| s.to_string()).collect(),
            },
        );
    }
    o
}

async fn okta_ssws(vars: &str) -> (Fake<Okta>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let token = "00TESTssws-token-value";
    let fake = Fake::start_with_static_auth(okta_world(), format!("SSWS {token}")).await;
    let set = build(&format!(
        r#"
[connectors.okta]
type = "okta"
base_url = "{}"
auth = {{ scheme = "ssws", token = "{}" }}
{vars}
"#,
        fake.base(),
        secrets.file("okta-token", token)
    ));
    (fake, set["okta"].clone(), secrets)
}

#[tokio::test]
async fn okta_contain_then_restore_leaves_the_org_as_it_was() {
    let (fake, okta, _s) = okta_ssws("").await;
    let before = fake.with(|i| i.vendor.clone());
    let subject = "alice.smith@example.com"; // the email; the login differs

    let d = run(&*okta, Operation::DisableAccount, subject, None).await;
    assert_eq!(d.outcome, Outcome::Done, "{}", d.summary);
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
    let again = run(&*okta, Operation::DisableAccount, subject, None).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.summary);
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("POST")),
        "{:?}",
        fake.calls()
    );
    assert_eq!(again.pre_state, Some(json!({"prior_status": "SUSPENDED"})));

    let s = run(&*okta, Operation::RevokeSessions, subject, None).await;
    assert_eq!(s.outcome, Outcome::Done, "{}", s.summary);
    assert_eq!(
        fake.with(|i| i.vendor.sessions_cleared.clone()),
        [("00u1alice".to_string(), "true".to_string())]
    );

    let g = run(&*okta, Operation::RemoveGroupMemberships, subject, None).await;
    assert_eq!(g.outcome, Outcome::Done, "{}", g.summary);
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
    let none_left = run(&*okta, Operation::RemoveGroupMemberships, subject, None).await;
    assert_eq!(
        none_left.outcome,
        Outcome::AlreadyDone,
        "{}",
        none_left.summary
    );

    // Restore: unsuspend (the disable found the user ACTIVE) and re-add the recorded groups.
    fake.clear_log();
    let e = run(
        &*okta,
        Operation::EnableAccount,
        subject,
        d.pre_state.clone(),
    )
    .await;
    assert_eq!(e.outcome, Outcome::Done, "{}", e.summary);
    assert!(
        fake.calls()
            .contains(&"POST /api/v1/users/00u1alice/lifecycle/unsuspend".to_string())
    );
    let r = run(
        &*okta,
        Operation::RestoreGroupMemberships,
        subject,
        g.pre_state.clone(),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
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
    let keep = run(
        &*okta,
        Operation::EnableAccount,
        subject,
        Some(json!({"prior_status": "SUSPENDED"})),
    )
    .await;
    assert_eq!(keep.outcome, Outcome::AlreadyDone, "{}", keep.summary);
    assert_eq!(
        fake.with(|i| i.vendor.users["00u1alice"].status.clone()),
        "SUSPENDED"
    );
}

#[tokio::test]
async fn okta_lists_a_users_group_names_for_the_protected_groups_guard() {
    let (_fake, conn, _secrets) = okta_ssws("").await;
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
    let (fake, okta, _s) = okta_ssws("").await;
    // Unknown user: E0000007 on the login, no match by email → not_found.
    let nf = run(
        &*okta,
        Operation::DisableAccount,
        "nobody@example.com",
        None,
    )
    .await;
    assert_eq!(nf.outcome, Outcome::NotFound, "{}", nf.summary);
    // Already deactivated: contained already.
    let gone = run(&*okta, Operation::DisableAccount, "gone@example.com", None).await;
    assert_eq!(gone.outcome, Outcome::AlreadyDone, "{}", gone.summary);
    // STAGED cannot be suspended: a terminal failure that says what to do.
    let staged = run(
        &*okta,
        Operation::DisableAccount,
        "new.hire@example.com",
        None,
    )
    .await;
    match &staged.outcome {
        Outcome::Failed { reason } => {
            assert!(
                reason.contains("STAGED") && reason.contains("deactivate"),
                "{reason}"
            )
        }
        other => panic!("expected failed, got {other:?}: {}", staged.summary),
    }
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
    let ok = run(&*okta, Operation::DisableAccount, "bob@example.com", None).await;
    assert_eq!(ok.outcome, Outcome::Done, "{}", ok.summary);
}

#[tokio::test]
async fn okta_deactivate_mode_deactivates_and_restore_reactivates_without_email() {
    let (fake, okta, _s) = okta_ssws("vars = { disable_mode = \"deactivate\" }").await;
    let d = run(&*okta, Operation::DisableAccount, "bob@example.com", None).await;
    assert_eq!(d.outcome, Outcome::Done, "{}", d.summary);
    assert!(
        fake.calls()
            .contains(&"POST /api/v1/users/00u2bob/lifecycle/deactivate".to_string())
    );
    assert_eq!(
        fake.with(|i| i.vendor.users["00u2bob"].status.clone()),
        "DEPROVISIONED"
    );
    let e = run(
        &*okta,
        Operation::EnableAccount,
        "bob@example.com",
        d.pre_state,
    )
    .await;
    assert_eq!(e.outcome, Outcome::Done, "{}", e.summary);
    assert_eq!(
        fake.with(|i| i.vendor.users["00u2bob"].status.clone()),
        "ACTIVE"
    );

    let bad = okta_ssws("vars = { disable_mode = \"delete\" }").await;
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
    let r = run(&*okta, Operation::RevokeSessions, "bob@example.com", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.token_requests(), 1, "one token for lookup and revoke");
    let r = run(&*okta, Operation::RevokeSessions, "bob@example.com", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.token_requests(), 1, "cached");

    // Mid-run the token expires at Okta: the 401 (E0000011) causes one refresh and one retry (of the
    // DELETE: the subject's id comes from the lookup cache).
    fake.expire_tokens();
    fake.clear_log();
    let r = run(&*okta, Operation::RevokeSessions, "bob@example.com", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(
        fake.calls(),
        [
            "DELETE /api/v1/users/00u2bob/sessions",
            "DELETE /api/v1/users/00u2bob/sessions",
        ]
    );

    // A credential revoked at the IdP: the fresh token is refused too → one refresh, then a failure.
    fake.with(|i| i.refuse_new_tokens = true);
    fake.expire_tokens();
    fake.clear_log();
    let r = run(&*okta, Operation::RevokeSessions, "bob@example.com", None).await;
    match &r.outcome {
        Outcome::Failed { reason } => {
            assert!(
                reason.contains("401") && reason.contains("Invalid token provided"),
                "{reason}"
            )
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(fake.token_requests(), 3, "exactly one more refresh");
    assert_eq!(fake.calls().len(), 2, "one retry: {:?}", fake.calls());
}

#[tokio::test]
async fn okta_group_pages_follow_the_link_header_and_every_page_is_removed_and_restored() {
    let (fake, okta, _s) = okta_ssws(r#"vars = { page_limit = "2" }"#).await;
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

    let g = run(&*okta, Operation::RemoveGroupMemberships, subject, None).await;
    assert_eq!(g.outcome, Outcome::Done, "{}", g.summary);
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

    let r = run(
        &*okta,
        Operation::RestoreGroupMemberships,
        subject,
        g.pre_state.clone(),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.with(|i| i.vendor.clone()), before);
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused_before_credentials_leave() {
    let (fake, okta, _s) = okta_ssws("").await;
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
    match &g.outcome {
        Outcome::Failed { reason } => assert!(reason.contains("leaves the target"), "{reason}"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("DELETE")),
        "nothing removed on a half-read list: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn contain_resolves_the_subject_once_for_all_its_operations() {
    let (fake, okta, _s) = okta_ssws("").await;
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
    let again = run(&*okta, Operation::DisableAccount, subject, None).await;
    assert_eq!(again.outcome, Outcome::Done, "{}", again.summary);
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
    let (throttled, okta, _s) = okta_ssws("").await;
    let (other_fake, other, _s2) = okta_ssws("").await;
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
    let (fake, okta, _s) = okta_ssws("").await;
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

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const GRAPH_PAGE: usize = 2;

#[derive(Clone, Debug, PartialEq)]
struct GraphGroup {
    name: String,
    group_types: Vec<&'static str>,
    mail_enabled: bool,
    security_enabled: bool,
    synced: bool,
    rule: Option<&'static str>,
    members: BTreeSet<String>,
}

#[derive(Default, Clone, Debug, PartialEq)]
struct Graph {
    /// id → (userPrincipalName, accountEnabled)
    users: BTreeMap<String, (String, bool)>,
    /// id → mail (primary SMTP address)
    mails: BTreeMap<String, String>,
    groups: BTreeMap<String, GraphGroup>,
    revoked: Vec<String>,
    /// Ids confirmed compromised in Identity Protection (riskLevel high).
    compromised: Vec<String>,
}

fn graph_error(status: u16, code: &str, message: &str) -> Resp {
    resp(
        status,
        json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2026-11-26T07:00:00", "request-id": uuid::Uuid::new_v4().to_string(),
                           "client-request-id": uuid::Uuid::new_v4().to_string()}}}),
    )
}

impl Graph {
    fn user_id(&self, key: &str) -> Option<String> {
        self.users
            .iter()
            .find(|(id, (upn, _))| id.as_str() == key || upn.eq_ignore_ascii_case(key))
            .map(|(id, _)| id.clone())
    }
    fn not_found(key: &str) -> Resp {
        graph_error(
            404,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }
}

impl Vendor for Graph {
    const TOKEN_PATH: Option<&'static str> =
        Some("/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token");

    fn check_token_request(form: &BTreeMap<String, String>, _url: &str) -> Result<(), Resp> {
        let check = || -> Result<(), String> {
            // Microsoft identity platform, client credentials with a shared secret.
            let want: BTreeMap<String, String> = [
                ("client_id", "app-0001"),
                ("client_secret", "graph-client-secret"),
                ("grant_type", "client_credentials"),
                ("scope", "https://graph.microsoft.com/.default"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            if *form == want {
                Ok(())
            } else {
                Err(format!(
                    "AADSTS7000215: Invalid client secret provided. got {:?}",
                    form.keys()
                ))
            }
        };
        check().map_err(invalid_client)
    }

    fn unauthorized() -> Resp {
        resp(
            401,
            json!({"error": {"code": "InvalidAuthenticationToken",
                         "message": "Lifetime validation failed, the token is expired."}}),
        )
    }

    fn handle(&mut self, req: &Req, base: &str) -> Resp {
        let segs = req.segs();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = req.method.as_str();
        let Some(("v1.0", rest)) = segs.split_first().map(|(a, b)| (*a, b)) else {
            return graph_error(400, "BadRequest", "Invalid version");
        };
        match (m, rest) {
            ("GET", ["users"]) => match req.query.get("$filter") {
                None => resp(
                    200,
                    json!({"value": self.users.keys().take(1).map(|id| json!({"id": id})).collect::<Vec<_>>()}),
                ),
                Some(f) => {
                    let Some(mail) = f
                        .strip_prefix("mail eq '")
                        .and_then(|r| r.strip_suffix('\''))
                        .map(|m| m.replace("''", "'"))
                    else {
                        return graph_error(
                            400,
                            "BadRequest",
                            &format!("Invalid filter clause: {f}"),
                        );
                    };
                    let found: Vec<Value> = self
                        .mails
                        .iter()
                        .filter(|(_, m)| m.eq_ignore_ascii_case(&mail))
                        .map(|(id, _)| json!({"id": id}))
                        .collect();
                    resp(
                        200,
                        json!({"@odata.context": format!("{base}/v1.0/$metadata#users(id)"), "value": found}),
                    )
                }
            },
            ("GET", ["users", key]) => {
                let Some(id) = self.user_id(key) else {
                    return Self::not_found(key);
                };
                let (upn, enabled) = &self.users[&id];
                let select = req.query.get("$select").cloned().unwrap_or_default();
                let mut o = serde_json::Map::new();
                o.insert(
                    "@odata.context".into(),
                    json!(format!("{base}/v1.0/$metadata#users({select})/$entity")),
                );
                for f in select.split(',') {
                    match f {
                        "id" => o.insert("id".into(), json!(id)),
                        "userPrincipalName" => o.insert("userPrincipalName".into(), json!(upn)),
                        "accountEnabled" => o.insert("accountEnabled".into(), json!(enabled)),
                        _ => None,
                    };
                }
                resp(200, Value::Object(o))
            }
            ("PATCH", ["users", key]) => {
                let Some(id) = self.user_id(key) else {
                    return Self::not_found(key);
                };
                match req.body.as_object() {
                    Some(b) if b.len() == 1 && b["accountEnabled"].is_boolean() => {
                        self.users.get_mut(&id).expect("user").1 =
                            b["accountEnabled"] == json!(true);
                        resp(204, Value::Null)
                    }
                    _ => graph_error(
                        400,
                        "Request_BadRequest",
                        "test expects exactly {accountEnabled}",
                    ),
                }
            }
            // https://learn.microsoft.com/graph/api/riskyuser-confirmcompromised: `{"userIds": [...]}` → 204.
            ("POST", ["identityProtection", "riskyUsers", "confirmCompromised"]) => {
                let ids: Option<Vec<String>> = req
                    .body
                    .as_object()
                    .filter(|b| b.len() == 1)
                    .and_then(|b| serde_json::from_value(b.get("userIds")?.clone()).ok());
                match ids {
                    Some(ids)
                        if !ids.is_empty() && ids.iter().all(|i| self.users.contains_key(i)) =>
                    {
                        self.compromised.extend(ids);
                        resp(204, Value::Null)
                    }
                    _ => graph_error(
                        400,
                        "Request_BadRequest",
                        "userIds must list existing user object ids",
                    ),
                }
            }
            ("POST", ["users", key, "revokeSignInSessions"]) => {
                let Some(id) = self.user_id(key) else {
                    return Self::not_found(key);
                };
                self.revoked.push(id);
                resp(
                    200,
                    json!({"@odata.context": format!("{base}/v1.0/$metadata#Edm.Boolean"), "value": true}),
                )
            }
            // transitiveMemberOf lists nested groups too; this world has no nesting, so both agree.
            (
                "GET",
                [
                    "users",
                    key,
                    "memberOf" | "transitiveMemberOf",
                    "microsoft.graph.group",
                ],
            ) => {
                let Some(id) = self.user_id(key) else {
                    return Self::not_found(key);
                };
                let skip: usize = req
                    .query
                    .get("$skiptoken")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let all: Vec<(&String, &GraphGroup)> = self
                    .groups
                    .iter()
                    .filter(|(_, g)| g.members.contains(&id))
                    .collect();
                let page: Vec<Value> = all
                    .iter()
                    .skip(skip)
                    .take(GRAPH_PAGE)
                    .map(|(gid, g)| {
                        json!({"@odata.type": "#microsoft.graph.group", "id": gid, "displayName": g.name,
                               "groupTypes": g.group_types, "mailEnabled": g.mail_enabled,
                               "securityEnabled": g.security_enabled,
                               "onPremisesSyncEnabled": if g.synced { json!(true) } else { Value::Null },
                               "membershipRule": g.rule})
                    })
                    .collect();
                let mut body = json!({"@odata.context": format!("{base}/v1.0/$metadata#groups"), "value": page});
                if skip + GRAPH_PAGE < all.len() {
                    let mut next =
                        reqwest::Url::parse(&format!("{base}{}", req.path)).expect("url");
                    next.query_pairs_mut()
                        .append_pair(
                            "$select",
                            req.query.get("$select").map(String::as_str).unwrap_or(""),
                        )
                        .append_pair("$skiptoken", &(skip + GRAPH_PAGE).to_string());
                    body["@odata.nextLink"] = json!(next.to_string());
                }
                resp(200, body)
            }
            ("DELETE", ["groups", gid, "members", uid, "$ref"]) => {
                let Some(g) = self.groups.get_mut(*gid) else {
                    return Self::not_found(gid);
                };
                if g.synced
                    || g.rule.is_some()
                    || (g.mail_enabled && !g.group_types.contains(&"Unified"))
                {
                    return graph_error(
                        400,
                        "Request_BadRequest",
                        "Cannot Update a mail-enabled security groups and or distribution list.",
                    );
                }
                if g.members.remove(*uid) {
                    resp(204, Value::Null)
                } else {
                    Self::not_found(uid)
                }
            }
            ("POST", ["groups", gid, "members", "$ref"]) => {
                let Some(g) = self.groups.get_mut(*gid) else {
                    return Self::not_found(gid);
                };
                let Some(uid) = req
                    .body
                    .get("@odata.id")
                    .and_then(Value::as_str)
                    .and_then(|s| {
                        s.strip_prefix("https://graph.microsoft.com/v1.0/directoryObjects/")
                    })
                else {
                    return graph_error(400, "Request_BadRequest", "Invalid @odata.id");
                };
                if req.body.as_object().map(|o| o.len()) != Some(1) {
                    return graph_error(400, "Request_BadRequest", "only @odata.id expected");
                }
                if !g.members.insert(uid.to_string()) {
                    return graph_error(
                        400,
                        "Request_BadRequest",
                        "One or more added object references already exist for the following modified properties: 'members'.",
                    );
                }
                resp(204, Value::Null)
            }
            _ => graph_error(
                400,
                "BadRequest",
                &format!("Resource not found for the segment '{}'.", req.path),
            ),
        }
    }
}

fn graph_world() -> Graph {
    let mut g = Graph::default();
    g.users
        .insert("u-alice".into(), ("alice@contoso.com".into(), true));
    g.users
        .insert("u-bob".into(), ("bob@contoso.com".into(), true));
    g.mails
        .insert("u-alice".into(), "alice.o'neil@contoso.com".into());
    g.mails.insert("u-bob".into(), "bob@contoso.com".into());
    let both: BTreeSet<String> = ["u-alice".to_string(), "u-bob".to_string()].into();
    for (id, name, types, mail, sec, synced, rule) in [
        (
            "g-sec",
            "Security: Finance",
            vec![],
            false,
            true,
            false,
            None,
        ),
        (
            "g-m365",
            "Project X",
            vec!["Unified"],
            true,
            false,
            false,
            None,
        ),
        ("g-sec2", "VPN users", vec![], false, true, false, None),
        (
            "g-onprem",
            "On-prem: Domain Users",
            vec![],
            false,
            true,
            true,
            None,
        ),
        (
            "g-dyn",
            "All employees",
            vec!["DynamicMembership"],
            false,
            true,
            false,
            Some("user.accountEnabled -eq true"),
        ),
        ("g-dl", "all@contoso.com", vec![], true, false, false, None),
    ] {
        g.groups.insert(
            id.into(),
            GraphGroup {
                name: name.into(),
                group_types: types,
                mail_enabled: mail,
                security_enabled: sec,
                synced,
                rule,
                members: both.clone(),
            },
        );
    }
    g
}

async fn entra() -> (Fake<Graph>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let fake = Fake::start(graph_world()).await;
    let set = build(&format!(
        r#"
[connectors.entra]
type = "entra"
base_url = "{base}/v1.0"
[connectors.entra.auth]
scheme = "oauth2"
token_url = "{base}/{TENANT}/oauth2/v2.0/token"
client_id = "app-0001"
scopes = ["https://graph.microsoft.com/.default"]
client_secret = "{secret}"
"#,
        base = fake.base(),
        secret = secrets.file("graph-secret", "graph-client-secret")
    ));
    (fake, set["entra"].clone(), secrets)
}

#[tokio::test]
async fn entra_confirm_compromised_marks_the_user_risky_after_disabling_only_when_configured() {
    // Default: no Identity Protection call (it needs a P2 licence and its own permission).
    let (fake, entra, _s) = entra().await;
    let d = run(
        &*entra,
        Operation::DisableAccount,
        "alice@contoso.com",
        None,
    )
    .await;
    assert_eq!(d.outcome, Outcome::Done, "{}", d.summary);
    assert!(fake.with(|i| i.vendor.compromised.is_empty()));
    assert!(
        fake.calls()
            .iter()
            .all(|c| !c.contains("identityProtection"))
    );

    let secrets = Secrets::new();
    let fake = Fake::start(graph_world()).await;
    let set = build(&format!(
        r#"
[connectors.entra]
type = "entra"
base_url = "{base}/v1.0"
vars = {{ confirm_compromised = true }}
[connectors.entra.auth]
scheme = "oauth2"
token_url = "{base}/{TENANT}/oauth2/v2.0/token"
client_id = "app-0001"
scopes = ["https://graph.microsoft.com/.default"]
client_secret = "{secret}"
"#,
        base = fake.base(),
        secret = secrets.file("graph-secret", "graph-client-secret")
    ));
    let d = run(
        &*set["entra"],
        Operation::DisableAccount,
        "bob@contoso.com",
        None,
    )
    .await;
    assert_eq!(d.outcome, Outcome::Done, "{}", d.summary);
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

    let d = run(&*entra, Operation::DisableAccount, subject, None).await;
    assert_eq!(d.outcome, Outcome::Done, "{}", d.summary);
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

    let again = run(&*entra, Operation::DisableAccount, subject, None).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.summary);

    fake.clear_log();
    let s = run(&*entra, Operation::RevokeSessions, subject, None).await;
    assert_eq!(s.outcome, Outcome::Done, "{}", s.summary);
    assert_eq!(fake.with(|i| i.vendor.revoked.clone()), ["u-alice"]);
    let post = fake
        .requests()
        .into_iter()
        .find(|r| r.method == Method::POST)
        .expect("post");
    assert!(post.raw.is_empty(), "revokeSignInSessions takes no body");

    fake.clear_log();
    let g = run(&*entra, Operation::RemoveGroupMemberships, subject, None).await;
    assert_eq!(g.outcome, Outcome::Done, "{}", g.summary);
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
    let e = run(
        &*entra,
        Operation::EnableAccount,
        subject,
        d.pre_state.clone(),
    )
    .await;
    assert_eq!(e.outcome, Outcome::Done, "{}", e.summary);
    let r = run(
        &*entra,
        Operation::RestoreGroupMemberships,
        subject,
        g.pre_state.clone(),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
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
    let r2 = run(
        &*entra,
        Operation::RestoreGroupMemberships,
        subject,
        g.pre_state.clone(),
    )
    .await;
    assert_eq!(r2.outcome, Outcome::Done, "{}", r2.summary);

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
    match &r.outcome {
        Outcome::Retry { after, reason } => {
            assert_eq!(*after, Some(Duration::from_secs(7)));
            assert!(reason.contains("429"), "{reason}");
        }
        other => panic!("expected retry, got {other:?}"),
    }
    assert!(
        fake.with(|i| i.vendor.users["u-bob"].1),
        "nothing changed yet"
    );

    // The token expires at Graph mid-run: 401 InvalidAuthenticationToken → one refresh → success.
    fake.expire_tokens();
    let r = run(&*entra, Operation::DisableAccount, "bob@contoso.com", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.token_requests(), 2);
    assert!(!fake.with(|i| i.vendor.users["u-bob"].1));

    let nf = run(
        &*entra,
        Operation::DisableAccount,
        "nobody@contoso.com",
        None,
    )
    .await;
    assert_eq!(nf.outcome, Outcome::NotFound, "{}", nf.summary);

    // A subject that is the mail address, not the UPN: found by `$filter=mail eq '...'` (quotes doubled).
    fake.clear_log();
    let by_mail = run(
        &*entra,
        Operation::DisableAccount,
        "alice.o'neil@contoso.com",
        None,
    )
    .await;
    assert_eq!(by_mail.outcome, Outcome::Done, "{}", by_mail.summary);
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
    let set = build(&format!(
        r#"
[connectors.entra]
type = "entra"
base_url = "{base}/v1.0"
auth = {{ scheme = "oauth2", token_url = "{base}/{TENANT}/oauth2/v2.0/token", client_id = "app-0001", scopes = ["https://graph.microsoft.com/.default"], client_secret = "{secret}" }}
"#,
        base = fake.base(),
        secret = secrets.file("graph-secret", "not-the-secret")
    ));
    let r = run(
        &*set["entra"],
        Operation::DisableAccount,
        "alice@contoso.com",
        None,
    )
    .await;
    match &r.outcome {
        Outcome::Failed { reason } => {
            assert!(reason.contains("invalid_client"), "{reason}");
            assert!(!reason.contains("not-the-secret"), "{reason}");
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(fake.calls().is_empty(), "no API call without a token");
}

// ---------------------------------------------------------------------------------------------
// Google Workspace Admin SDK Directory API.
// ---------------------------------------------------------------------------------------------

#[derive(Default, Clone, Debug, PartialEq)]
struct Directory {
    /// id → (primaryEmail, suspended, tokens: clientId → displayText)
    users: BTreeMap<String, (String, bool, BTreeMap<String, String>)>,
    signed_out: Vec<String>,
    /// Groups in list order: (email, name, ids of direct members).
    groups: Vec<(String, String, BTreeSet<String>)>,
}

/// Scopes the service account's client id is authorised for in domain-wide delegation: a token
/// request may ask for any of them, and for nothing else.
const GOOGLE_DELEGATED: [&str; 3] = [
    "https://www.googleapis.com/auth/admin.directory.user",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
];

fn google_error(status: u16, reason: &str, message: &str) -> Resp {
    resp(
        status,
        json!({"error": {"code": status, "message": message,
                         "errors": [{"message": message, "domain": "global", "reason": reason}]}}),
    )
}

impl Directory {
    fn id(&self, key: &str) -> Option<String> {
        self.users
            .iter()
            .find(|(id, (email, _, _))| id.as_str() == key || email.eq_ignore_ascii_case(key))
            .map(|(id, _)| id.clone())
    }
}

impl Vendor for Directory {
    const TOKEN_PATH: Option<&'static str> = Some("/token");

    fn check_token_request(form: &BTreeMap<String, String>, token_url: &str) -> Result<(), Resp> {
        let check = || -> Result<(), String> {
            if form.keys().map(String::as_str).collect::<Vec<_>>() != ["assertion", "grant_type"]
                || form["grant_type"] != "urn:ietf:params:oauth:grant-type:jwt-bearer"
            {
                return Err(format!("unexpected form {:?}", form.keys()));
            }
            let c = verify_assertion(&form["assertion"], token_url)?;
            if c["iss"] != "deprovd@acme-sec.iam.gserviceaccount.com"
                || c["sub"] != "secops-admin@acme.example"
                || !c["scope"]
                    .as_str()
                    .is_some_and(|s| s.split(' ').all(|x| GOOGLE_DELEGATED.contains(&x)))
                || c["exp"].as_u64().unwrap_or(0) > now_secs() + 3600
            {
                return Err(format!(
                    "unauthorized_client: Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested. claims {c}"
                ));
            }
            Ok(())
        };
        check().map_err(invalid_client)
    }

    fn unauthorized() -> Resp {
        resp(
            401,
            json!({"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                         "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError", "location": "Authorization", "locationType": "header"}],
                         "status": "UNAUTHENTICATED"}}),
        )
    }

    fn handle(&mut self, req: &Req, _base: &str) -> Resp {
        let segs = req.segs();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let Some(rest) = segs.strip_prefix(&["admin", "directory", "v1"][..]) else {
            return google_error(404, "notFound", "Not Found");
        };
        let m = req.method.as_str();
        match (m, rest) {
            ("GET", ["users"]) => resp(200, json!({"users": [{"id": self.users.keys().next()}]})),
            ("GET", ["users", key]) => match self.id(key) {
                Some(id) => {
                    let (email, suspended, _) = &self.users[&id];
                    resp(
                        200,
                        json!({"kind": "admin#directory#user", "id": id, "primaryEmail": email, "suspended": suspended}),
                    )
                }
                None => google_error(404, "notFound", "Resource Not Found: userKey"),
            },
            ("PUT", ["users", key]) => {
                let Some(id) = self.id(key) else {
                    return google_error(404, "notFound", "Resource Not Found: userKey");
                };
                match req.body.as_object() {
                    Some(b) if b.len() == 1 && b["suspended"].is_boolean() => {
                        let u = self.users.get_mut(&id).expect("user");
                        u.1 = b["suspended"] == json!(true);
                        resp(200, json!({"id": id, "suspended": u.1}))
                    }
                    _ => google_error(400, "invalid", "test expects exactly {suspended}"),
                }
            }
            ("POST", ["users", key, "signOut"]) => match self.id(key) {
                Some(id) if req.raw.is_empty() => {
                    self.signed_out.push(id);
                    resp(204, Value::Null)
                }
                Some(_) => google_error(400, "invalid", "The request body must be empty."),
                None => google_error(404, "notFound", "Resource Not Found: userKey"),
            },
            ("GET", ["users", key, "tokens"]) => match self.id(key) {
                Some(id) => {
                    let items: Vec<Value> = self.users[&id]
                        .2
                        .iter()
                        .map(|(c, d)| json!({"kind": "admin#directory#token", "clientId": c, "displayText": d, "anonymous": false, "nativeApp": false, "userKey": id, "scopes": ["openid"]}))
                        .collect();
                    let mut body = json!({"kind": "admin#directory#tokenList", "etag": "\"e\""});
                    if !items.is_empty() {
                        body["items"] = Value::Array(items);
                    }
                    resp(200, body)
                }
                None => google_error(404, "notFound", "Resource Not Found: userKey"),
            },
            // groups.list with userKey: the groups the user is a direct member of, maxResults <= 200
            // per page (default 200), continued by the opaque nextPageToken.
            ("GET", ["groups"]) => {
                let Some(key) = req.query.get("userKey") else {
                    return google_error(400, "invalid", "Bad Request");
                };
                let Some(id) = self.id(key) else {
                    return google_error(404, "notFound", "Resource Not Found: userKey");
                };
                let max: usize = match req.query.get("maxResults").map(|m| m.parse::<usize>()) {
                    None => 200,
                    Some(Ok(m)) if (1..=200).contains(&m) => m,
                    Some(_) => {
                        return google_error(400, "invalid", "Invalid value for: maxResults");
                    }
                };
                let start: usize = match req.query.get("pageToken") {
                    None => 0,
                    Some(t) => match t.strip_prefix("gp-").and_then(|n| n.parse().ok()) {
                        Some(n) => n,
                        None => return google_error(400, "invalid", "Invalid pageToken"),
                    },
                };
                let mine: Vec<&(String, String, BTreeSet<String>)> =
                    self.groups.iter().filter(|g| g.2.contains(&id)).collect();
                let page: Vec<Value> = mine
                    .iter()
                    .skip(start)
                    .take(max)
                    .map(|(email, name, members)| {
                        json!({"kind": "admin#directory#group", "id": format!("g-{email}"), "email": email,
                               "name": name, "directMembersCount": members.len().to_string(),
                               "description": "", "adminCreated": true})
                    })
                    .collect();
                let mut body = json!({"kind": "admin#directory#groups", "etag": "\"e\""});
                if !page.is_empty() {
                    body["groups"] = Value::Array(page);
                }
                if start + max < mine.len() {
                    body["nextPageToken"] = json!(format!("gp-{}", start + max));
                }
                resp(200, body)
            }
            ("DELETE", ["users", key, "tokens", client]) => match self.id(key) {
                Some(id) => match self.users.get_mut(&id).expect("user").2.remove(*client) {
                    Some(_) => resp(204, Value::Null),
                    None => google_error(404, "notFound", "Resource Not Found: clientId"),
                },
                None => google_error(404, "notFound", "Resource Not Found: userKey"),
            },
            _ => google_error(404, "notFound", "Not Found"),
        }
    }
}

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
    let key = json!({
        "type": "service_account",
        "project_id": "acme-sec",
        "private_key_id": "abc123",
        "private_key": PRIVATE_PEM,
        "client_email": "deprovd@acme-sec.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/token", fake.base()),
    });
    let set = build(&format!(
        r#"
[connectors.google]
type = "google"
base_url = "{base}/admin/directory/v1"
[connectors.google.auth]
scheme = "google_service_account"
key = "{key}"
subject = "secops-admin@acme.example"
scopes = ["https://www.googleapis.com/auth/admin.directory.user", "https://www.googleapis.com/auth/admin.directory.user.security"]
"#,
        base = fake.base(),
        key = secrets.file("sa.json", &key.to_string())
    ));
    let google = set["google"].clone();
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

    let d = run(&*google, Operation::DisableAccount, subject, None).await;
    assert_eq!(d.outcome, Outcome::Done, "{}", d.summary);
    assert_eq!(d.pre_state, Some(json!({"prior_suspended": false})));
    assert!(fake.with(|i| i.vendor.users["1001"].1));
    let put = fake
        .requests()
        .into_iter()
        .rfind(|r| r.method == Method::PUT)
        .expect("put");
    assert_eq!(put.path, "/admin/directory/v1/users/1001");
    assert_eq!(put.body, json!({"suspended": true}));
    let again = run(&*google, Operation::DisableAccount, subject, None).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.summary);

    let s = run(&*google, Operation::RevokeSessions, subject, None).await;
    assert_eq!(s.outcome, Outcome::Done, "{}", s.summary);
    assert_eq!(fake.with(|i| i.vendor.signed_out.clone()), ["1001"]);

    fake.clear_log();
    let t = run(&*google, Operation::RevokeTokens, subject, None).await;
    assert_eq!(t.outcome, Outcome::Done, "{}", t.summary);
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
    let none = run(&*google, Operation::RevokeTokens, subject, None).await;
    assert_eq!(none.outcome, Outcome::AlreadyDone, "{}", none.summary);

    let e = run(
        &*google,
        Operation::EnableAccount,
        subject,
        d.pre_state.clone(),
    )
    .await;
    assert_eq!(e.outcome, Outcome::Done, "{}", e.summary);
    assert!(!fake.with(|i| i.vendor.users["1001"].1), "unsuspended");

    let nf = run(
        &*google,
        Operation::DisableAccount,
        "nobody@acme.example",
        None,
    )
    .await;
    assert_eq!(nf.outcome, Outcome::NotFound, "{}", nf.summary);
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
    let key = json!({
        "type": "service_account",
        "project_id": "acme-sec",
        "private_key_id": "abc123",
        "private_key": PRIVATE_PEM,
        "client_email": "deprovd@acme-sec.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": format!("{}/token", fake.base()),
    });
    let set = build(&format!(
        r#"
[connectors.google]
type = "google"
base_url = "{base}/admin/directory/v1"
[connectors.google.auth]
scheme = "google_service_account"
key = "{key}"
subject = "secops-admin@acme.example"
scopes = ["https://www.googleapis.com/auth/admin.directory.user.readonly", "https://www.googleapis.com/auth/admin.directory.group.readonly"]
"#,
        base = fake.base(),
        key = secrets.file("sa.json", &key.to_string())
    ));
    let google = set["google"].clone();
    assert!(google.lists_groups());

    // A scope the delegation does not cover is refused at the token endpoint: listing is unavailable,
    // never "in no group".
    let refused = google.group_memberships("carol@acme.example").await;
    assert!(
        matches!(refused, Memberships::Unavailable(_)),
        "{refused:?}"
    );
    assert!(fake.calls().is_empty(), "no API call without a token");

    let set = build(&format!(
        r#"
[connectors.google]
type = "google"
base_url = "{base}/admin/directory/v1"
[connectors.google.auth]
scheme = "google_service_account"
key = "{key}"
subject = "secops-admin@acme.example"
scopes = ["https://www.googleapis.com/auth/admin.directory.user", "https://www.googleapis.com/auth/admin.directory.group.readonly"]
"#,
        base = fake.base(),
        key = secrets.file("sa2.json", &key.to_string())
    ));
    let google = set["google"].clone();
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

/// A [`Case`]'s state reader over a fake: the vendor model's `Debug`, after `normalize`.
fn fake_state<V: Vendor + Clone + std::fmt::Debug>(
    fake: &Fake<V>,
    normalize: fn(&mut V),
) -> crate::kit::contract::StateFn {
    let fake = fake.clone();
    Box::new(move || {
        let mut v = fake.vendor(|v| v.clone());
        normalize(&mut v);
        Box::pin(async move { format!("{v:#?}") })
    })
}

/// Okta in the connector contract suite: suspend and group removal, then back. Cleared sessions
/// stay cleared (a restore does not give sessions back).
pub(crate) async fn okta_contract_case() -> Case {
    let (fake, okta, secrets) = okta_ssws("").await;
    Case {
        name: "okta",
        connector: okta,
        subject: "alice.smith@example.com".into(),
        pairs: vec![
            (Operation::DisableAccount, Operation::EnableAccount),
            (
                Operation::RemoveGroupMemberships,
                Operation::RestoreGroupMemberships,
            ),
        ],
        state: fake_state(&fake, |v| v.sessions_cleared.clear()),
        settle: None,
        keep: Box::new((fake, secrets)),
    }
}

/// Entra in the connector contract suite: disable and group removal, then back.
pub(crate) async fn entra_contract_case() -> Case {
    let (fake, entra, secrets) = entra().await;
    Case {
        name: "entra",
        connector: entra,
        subject: "alice@contoso.com".into(),
        pairs: vec![
            (Operation::DisableAccount, Operation::EnableAccount),
            (
                Operation::RemoveGroupMemberships,
                Operation::RestoreGroupMemberships,
            ),
        ],
        state: fake_state(&fake, |v| v.revoked.clear()),
        settle: None,
        keep: Box::new((fake, secrets)),
    }
}
