//! The Keycloak (Admin REST API) and CrowdStrike Falcon (Hosts API) connectors, built from TOML config by
//! `deprovd::connectors::build_all` exactly as the service builds them, against local fakes written from
//! the vendors' API references: exact methods, paths, query strings, bodies and auth headers asserted,
//! form-encoded client-credentials token requests checked, the vendors' error shapes reproduced (Keycloak
//! `{"error": "User not found"}` / `HTTP 401 Unauthorized`; CrowdStrike's `{meta, resources, errors}`
//! envelope, `X-RateLimit-RetryAfter` on 429, asynchronous `containment_pending` states), and the Keycloak
//! fake applies Keycloak 24's full-replacement PUT semantics, so a partial write would visibly lose data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use deprovd::connectors::{Connector, Memberships, Operation, Outcome};
use serde_json::{Value, json};

use crate::kit::connector::{Secrets, build, run};
use crate::kit::contract::Case;
use crate::kit::fake::{Fake, Req, Resp, Vendor, epoch_secs, resp};
use crate::support::{TestApp, eventually, policy_dir, redis_state, unique};

// ---------------------------------------------------------------------------------------------
// Keycloak Admin REST API.
// ---------------------------------------------------------------------------------------------

const REALM: &str = "corp";
const KC_CLIENT: &str = "deprovd-containment";
const KC_SECRET: &str = "kc-client-secret-value";

/// The user as Keycloak stores it (what a full representation shows).
#[derive(Clone, Debug, PartialEq)]
struct KcUser {
    id: String,
    username: String,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    enabled: bool,
    email_verified: bool,
    attributes: BTreeMap<String, Vec<String>>,
    required_actions: Vec<String>,
    created: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Keycloak {
    users: BTreeMap<String, KcUser>,
    /// Online sessions per user id (not part of the user: logout cannot be "restored").
    sessions: BTreeMap<String, u32>,
    /// User ids logged out, in order.
    logouts: Vec<String>,
    /// An older server that ignores `exact=true` and searches by substring.
    ignore_exact: bool,
    /// Groups in the order Keycloak lists them: (id, name, path, ids of direct members).
    groups: Vec<(String, String, String, BTreeSet<String>)>,
}

impl KcUser {
    fn brief(&self) -> Value {
        json!({
            "id": self.id, "username": self.username, "email": self.email,
            "firstName": self.first_name, "lastName": self.last_name,
            "enabled": self.enabled, "emailVerified": self.email_verified,
            "createdTimestamp": self.created,
        })
    }
    /// `GET /users/{id}`: the full UserRepresentation (Keycloak omits null fields and empty attributes).
    fn full(&self) -> Value {
        let mut v = self.brief();
        let m = v.as_object_mut().expect("object");
        m.retain(|_, x| !x.is_null());
        if !self.attributes.is_empty() {
            m.insert("attributes".into(), json!(self.attributes));
        }
        m.insert("totp".into(), json!(false));
        m.insert("disableableCredentialTypes".into(), json!([]));
        m.insert("requiredActions".into(), json!(self.required_actions));
        m.insert("notBefore".into(), json!(0));
        m.insert(
            "access".into(),
            json!({"manageGroupMembership": true, "view": true, "mapRoles": true,
                   "impersonate": false, "manage": true}),
        );
        v
    }
}

fn kc_error(status: u16, message: &str) -> Resp {
    resp(status, json!({"error": message}))
}

impl Vendor for Keycloak {
    const TOKEN_PATH: Option<&'static str> = Some("/realms/corp/protocol/openid-connect/token");

    fn check_token_request(form: &BTreeMap<String, String>, _token_url: &str) -> Result<(), Resp> {
        // client_secret_post: grant_type, client_id, client_secret and nothing else.
        let keys: Vec<&str> = form.keys().map(String::as_str).collect();
        if keys != ["client_id", "client_secret", "grant_type"]
            || form["grant_type"] != "client_credentials"
        {
            return Err(resp(
                400,
                json!({"error": "invalid_request", "error_description": format!("unexpected form {keys:?}")}),
            ));
        }
        if form["client_id"] != KC_CLIENT || form["client_secret"] != KC_SECRET {
            return Err(resp(
                401,
                json!({"error": "unauthorized_client",
                       "error_description": "Invalid client or Invalid client credentials"}),
            ));
        }
        Ok(())
    }

    fn token_response(token: &str) -> Resp {
        resp(
            200,
            json!({"access_token": token, "expires_in": 300, "refresh_expires_in": 0,
                   "token_type": "Bearer", "not-before-policy": 0, "scope": "profile email"}),
        )
    }

    fn unauthorized() -> Resp {
        kc_error(401, "HTTP 401 Unauthorized")
    }

    fn handle(&mut self, req: &Req, _base: &str) -> Resp {
        let segs = req.segs();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        match segs.as_slice() {
            ["admin", "realms", realm, ..] if *realm != REALM => kc_error(404, "Realm not found."),
            ["admin", "realms", _, "users"] if req.method == Method::GET => {
                let exact = req.query.get("exact").map(String::as_str) == Some("true")
                    && !self.ignore_exact;
                let matches = |have: &Option<String>, want: &str| {
                    let have = have.as_deref().unwrap_or_default();
                    let want = want.to_lowercase();
                    if exact {
                        have == want
                    } else {
                        have.contains(&want)
                    }
                };
                let found: Vec<Value> = self
                    .users
                    .values()
                    .filter(|u| {
                        req.query.get("email").is_none_or(|e| matches(&u.email, e))
                            && req
                                .query
                                .get("username")
                                .is_none_or(|n| matches(&Some(u.username.clone()), n))
                    })
                    .map(|u| {
                        if req.query.get("briefRepresentation").map(String::as_str) == Some("true")
                        {
                            u.brief()
                        } else {
                            u.full()
                        }
                    })
                    .collect();
                let max = req
                    .query
                    .get("max")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(100);
                resp(200, Value::Array(found.into_iter().take(max).collect()))
            }
            ["admin", "realms", _, "users", id] => match req.method.as_str() {
                "GET" => match self.users.get(*id) {
                    Some(u) => resp(200, u.full()),
                    None => kc_error(404, "User not found"),
                },
                "PUT" => self.put_user(id, req),
                _ => kc_error(405, "HTTP 405 Method Not Allowed"),
            },
            // The groups the user is a direct member of, paged by `first` (offset, default 0) and `max`
            // (default 100); brief GroupRepresentations.
            ["admin", "realms", _, "users", id, "groups"] if req.method == Method::GET => {
                if !self.users.contains_key(*id) {
                    return kc_error(404, "User not found");
                }
                let num = |k: &str, d: usize| match req.query.get(k) {
                    None => Ok(d),
                    Some(v) => v
                        .parse::<usize>()
                        .map_err(|_| kc_error(400, "Invalid query")),
                };
                let (first, max) = match (num("first", 0), num("max", 100)) {
                    (Ok(f), Ok(m)) => (f, m),
                    (Err(e), _) | (_, Err(e)) => return e,
                };
                let page: Vec<Value> = self
                    .groups
                    .iter()
                    .filter(|g| g.3.contains(*id))
                    .skip(first)
                    .take(max)
                    .map(|(gid, name, path, _)| {
                        json!({"id": gid, "name": name, "path": path, "subGroupCount": 0})
                    })
                    .collect();
                resp(200, Value::Array(page))
            }
            ["admin", "realms", _, "users", id, "logout"] if req.method == Method::POST => {
                if !self.users.contains_key(*id) {
                    return kc_error(404, "User not found");
                }
                if !req.raw.is_empty() {
                    return kc_error(400, "logout takes no body");
                }
                self.sessions.insert(id.to_string(), 0);
                self.logouts.push(id.to_string());
                resp(204, Value::Null)
            }
            _ => kc_error(404, "HTTP 404 Not Found"),
        }
    }
}

impl Keycloak {
    /// Keycloak 24+ `PUT /users/{id}`: the representation replaces the user's root attributes and
    /// `attributes` (an omitted one is cleared); `enabled`, `emailVerified`, `requiredActions` change
    /// only when present; the username is read-only.
    fn put_user(&mut self, id: &str, req: &Req) -> Resp {
        if req.header("content-type") != Some("application/json") {
            return kc_error(415, "HTTP 415 Unsupported Media Type");
        }
        let Some(rep) = req.body.as_object() else {
            return kc_error(400, "unable to read contents from stream");
        };
        let Some(u) = self.users.get_mut(id) else {
            return kc_error(404, "User not found");
        };
        let text = |k: &str| rep.get(k).and_then(Value::as_str).map(str::to_string);
        if text("username").is_some_and(|n| n != u.username) {
            return resp(
                400,
                json!({"field": "username", "errorMessage": "error-user-attribute-read-only",
                       "params": ["username"]}),
            );
        }
        u.email = text("email");
        u.first_name = text("firstName");
        u.last_name = text("lastName");
        u.attributes = rep
            .get("attributes")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default();
        if let Some(e) = rep.get("enabled").and_then(Value::as_bool) {
            u.enabled = e;
        }
        if let Some(e) = rep.get("emailVerified").and_then(Value::as_bool) {
            u.email_verified = e;
        }
        if let Some(r) = rep.get("requiredActions") {
            u.required_actions = serde_json::from_value(r.clone()).unwrap_or_default();
        }
        resp(204, Value::Null)
    }
}

fn keycloak_world() -> Keycloak {
    let mut k = Keycloak::default();
    let mut add = |id: &str, username: &str, email: Option<&str>, first: &str, enabled: bool| {
        let mut attributes = BTreeMap::new();
        attributes.insert("department".to_string(), vec!["finance".to_string()]);
        attributes.insert("employeeNumber".to_string(), vec![format!("E-{id}")]);
        k.users.insert(
            id.to_string(),
            KcUser {
                id: id.to_string(),
                username: username.to_string(),
                email: email.map(str::to_string),
                first_name: Some(first.to_string()),
                last_name: Some("Example".to_string()),
                enabled,
                email_verified: true,
                attributes,
                required_actions: vec![],
                created: 1_700_000_000_000,
            },
        );
        k.sessions.insert(id.to_string(), 2);
    };
    add(
        "6f1c2d1e-0000-4000-8000-00000000a11c",
        "asmith",
        Some("alice.smith@example.com"),
        "Alice",
        true,
    );
    add(
        "6f1c2d1e-0000-4000-8000-0000000a11c2",
        "asmith2",
        Some("alice.smith2@example.com"),
        "Alicia",
        true,
    );
    add(
        "6f1c2d1e-0000-4000-8000-000000000b0b",
        "bob",
        None,
        "Bob",
        true,
    );
    add(
        "6f1c2d1e-0000-4000-8000-000000000ca7",
        "carol",
        Some("carol@example.com"),
        "Carol",
        false,
    );
    k
}

const ALICE: &str = "6f1c2d1e-0000-4000-8000-00000000a11c";
const BOB: &str = "6f1c2d1e-0000-4000-8000-000000000b0b";
const CAROL: &str = "6f1c2d1e-0000-4000-8000-000000000ca7";

fn keycloak_toml(name: &str, base: &str, secret_ref: &str) -> String {
    format!(
        r#"
[connectors.{name}]
type = "keycloak"
base_url = "{base}"
vars = {{ realm = "{REALM}" }}
[connectors.{name}.auth]
scheme = "oauth2"
token_url = "{base}/realms/{REALM}/protocol/openid-connect/token"
client_id = "{KC_CLIENT}"
client_secret = "{secret_ref}"
"#
    )
}

async fn keycloak() -> (Fake<Keycloak>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let fake = Fake::start(keycloak_world()).await;
    let set = build(&keycloak_toml(
        "keycloak",
        fake.base(),
        &secrets.file("kc-secret", KC_SECRET),
    ));
    (fake, set["keycloak"].clone(), secrets)
}

#[tokio::test]
async fn keycloak_contain_then_restore_leaves_the_realm_as_it_was() {
    let (fake, kc, _s) = keycloak().await;
    let before = fake.with(|i| i.vendor.users.clone());
    let subject = "Alice.Smith@example.com";

    let d = run(&*kc, Operation::DisableAccount, subject, None).await;
    assert_eq!(d.outcome, Outcome::Done, "{}", d.summary);
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
    let r = run(&*kc, Operation::RevokeSessions, subject, None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(
        fake.calls().last(),
        Some(&format!("POST {alice_path}/logout"))
    );
    assert_eq!(fake.with(|i| i.vendor.sessions[ALICE]), 0);

    // Disabling again is already_done, without a write, recording that it was already disabled.
    fake.clear_log();
    let again = run(&*kc, Operation::DisableAccount, subject, None).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.summary);
    assert_eq!(again.pre_state, Some(json!({"prior_enabled": false})));
    assert!(!fake.calls().iter().any(|c| c.starts_with("PUT")));

    // Restore from the first action's pre-state: re-enabled, the user exactly as before.
    fake.clear_log();
    let e = run(&*kc, Operation::EnableAccount, subject, d.pre_state.clone()).await;
    assert_eq!(e.outcome, Outcome::Done, "{}", e.summary);
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
    let e = run(&*kc, Operation::EnableAccount, subject, again.pre_state).await;
    assert_eq!(e.outcome, Outcome::AlreadyDone, "{}", e.summary);
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
    let r = run(&*kc, Operation::DisableAccount, "bob", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
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
    let r = run(&*kc, Operation::EnableAccount, BOB, None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
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
    let c = run(&*kc, Operation::DisableAccount, "carol@example.com", None).await;
    assert_eq!(c.outcome, Outcome::AlreadyDone, "{}", c.summary);
    let c = run(
        &*kc,
        Operation::EnableAccount,
        "carol@example.com",
        c.pre_state,
    )
    .await;
    assert_eq!(c.outcome, Outcome::AlreadyDone, "{}", c.summary);
    assert!(!fake.with(|i| i.vendor.users[CAROL].enabled));

    // Nobody: three lookups, the last a 404 {"error": "User not found"}, and nothing written.
    fake.clear_log();
    let before = fake.with(|i| i.vendor.clone());
    let nf = run(&*kc, Operation::DisableAccount, "nobody@example.com", None).await;
    assert_eq!(nf.outcome, Outcome::NotFound, "{}", nf.summary);
    assert_eq!(fake.calls().len(), 3, "{:?}", fake.calls());
    assert_eq!(fake.with(|i| i.vendor.clone()), before);
}

#[tokio::test]
async fn keycloak_lookup_never_takes_a_substring_match_from_a_server_that_ignores_exact() {
    let (fake, kc, _s) = keycloak().await;
    fake.with(|i| i.vendor.ignore_exact = true);
    // "asmith" is a substring of "asmith2": an old server answers both; only the equal one is taken.
    let r = run(&*kc, Operation::DisableAccount, "asmith", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
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
    let r = run(&*kc, Operation::RevokeSessions, "bob", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.token_requests(), 1, "one token for lookup and logout");

    // Mid-run the token stops being accepted (expired / revoked at Keycloak): 401 → one refresh → retry.
    // (The subject's id comes from the connector's lookup cache, so the logout is the first call.)
    fake.expire_tokens();
    fake.clear_log();
    let r = run(&*kc, Operation::RevokeSessions, "bob", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.token_requests(), 2);
    let logout = format!("POST /admin/realms/{REALM}/users/{BOB}/logout");
    assert_eq!(
        fake.calls(),
        [logout.clone(), logout],
        "the refused request is sent once more with the new token"
    );
    let reqs = fake.api_requests();
    assert_ne!(
        reqs[0].header("authorization"),
        reqs[1].header("authorization")
    );

    // The service account is disabled at Keycloak: the fresh token is refused too → one refresh, then
    // a terminal failure carrying Keycloak's words.
    fake.with(|i| i.refuse_new_tokens = true);
    fake.expire_tokens();
    fake.clear_log();
    let r = run(&*kc, Operation::RevokeSessions, "bob", None).await;
    match &r.outcome {
        Outcome::Failed { reason } => assert!(
            reason.contains("401") && reason.contains("HTTP 401 Unauthorized"),
            "{reason}"
        ),
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(fake.token_requests(), 3, "exactly one more refresh");
    assert_eq!(fake.calls().len(), 2, "one retry: {:?}", fake.calls());
}

#[tokio::test]
async fn keycloak_wrong_client_secret_fails_terminally_without_leaking_it() {
    let secrets = Secrets::new();
    let fake = Fake::start(keycloak_world()).await;
    let set = build(&keycloak_toml(
        "kc",
        fake.base(),
        &secrets.file("wrong", "not-the-secret"),
    ));
    let r = run(&*set["kc"], Operation::DisableAccount, "bob", None).await;
    match &r.outcome {
        Outcome::Failed { reason } => {
            assert!(
                reason.contains("Invalid client or Invalid client credentials"),
                "{reason}"
            );
            assert!(!reason.contains("not-the-secret"), "{reason}");
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(fake.calls().is_empty(), "no API call without a token");
    let report = set["kc"].check().await;
    assert!(!report.ok, "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// CrowdStrike Falcon Hosts API.
// ---------------------------------------------------------------------------------------------

const CS_CLIENT: &str = "0123456789abcdef0123456789abcdef";
const CS_SECRET: &str = "cs-client-secret-value";

#[derive(Clone, Debug, PartialEq)]
struct Device {
    hostname: String,
    /// normal | containment_pending | contained | lift_containment_pending
    status: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Falcon {
    devices: BTreeMap<String, Device>,
    /// (action_name, ids) of every accepted devices-actions call.
    actions: Vec<(String, Vec<String>)>,
}

impl Falcon {
    /// The sensor checks in: pending states complete.
    fn settle(&mut self) {
        for d in self.devices.values_mut() {
            d.status = match d.status.as_str() {
                "containment_pending" => "contained".into(),
                "lift_containment_pending" => "normal".into(),
                s => s.to_string(),
            };
        }
    }
}

fn cs_meta() -> Value {
    json!({"query_time": 0.004, "powered_by": "device-api",
           "trace_id": uuid::Uuid::new_v4().to_string()})
}

fn cs_error(status: u16, message: &str) -> Resp {
    (
        status,
        json!({"meta": cs_meta(), "resources": [], "errors": [{"code": status, "message": message}]}),
        rate_headers(),
    )
}

fn rate_headers() -> Vec<(String, String)> {
    vec![
        ("X-RateLimit-Limit".into(), "6000".into()),
        ("X-RateLimit-Remaining".into(), "5999".into()),
        ("X-Cs-Region".into(), "us-1".into()),
    ]
}

/// One FQL comparison `prop:'value'` (backslash escapes), as the Hosts API parses it.
fn parse_fql(filter: &str) -> Option<(String, String)> {
    let (prop, rest) = filter.split_once(':')?;
    let mut chars = rest.strip_prefix('\'')?.chars();
    let mut value = String::new();
    loop {
        match chars.next()? {
            '\\' => value.push(chars.next()?),
            '\'' => break,
            c => value.push(c),
        }
    }
    chars.next().is_none().then(|| (prop.to_string(), value))
}

/// FQL string equality: case-sensitive (as the FQL reference says values are), `*` a wildcard.
fn fql_matches(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

impl Vendor for Falcon {
    const TOKEN_PATH: Option<&'static str> = Some("/oauth2/token");

    fn check_token_request(form: &BTreeMap<String, String>, _token_url: &str) -> Result<(), Resp> {
        // oauth2AccessToken: client_id and client_secret (member_cid optional); generic OAuth clients add
        // grant_type=client_credentials, which the endpoint accepts.
        let keys: Vec<&str> = form.keys().map(String::as_str).collect();
        if keys != ["client_id", "client_secret", "grant_type"]
            || form["grant_type"] != "client_credentials"
        {
            return Err(cs_error(400, &format!("unexpected form {keys:?}")));
        }
        if form["client_id"] != CS_CLIENT || form["client_secret"] != CS_SECRET {
            return Err(cs_error(403, "access denied, invalid client"));
        }
        Ok(())
    }

    fn token_response(token: &str) -> Resp {
        (
            201,
            json!({"access_token": token, "token_type": "bearer", "expires_in": 1799}),
            rate_headers(),
        )
    }

    fn unauthorized() -> Resp {
        cs_error(401, "access denied, invalid bearer token")
    }

    fn handle(&mut self, req: &Req, _base: &str) -> Resp {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/devices/queries/devices/v1") => {
                let limit: usize = req
                    .query
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(100);
                let ids: Vec<String> = match req.query.get("filter") {
                    None => self.devices.keys().cloned().collect(),
                    Some(f) => match parse_fql(f) {
                        Some((p, v)) if p == "hostname" => self
                            .devices
                            .iter()
                            .filter(|(_, d)| fql_matches(&v, &d.hostname))
                            .map(|(id, _)| id.clone())
                            .collect(),
                        Some((p, v)) if p == "device_id" => self
                            .devices
                            .keys()
                            .filter(|id| fql_matches(&v, id))
                            .cloned()
                            .collect(),
                        _ => return cs_error(400, &format!("Invalid filter: {f}")),
                    },
                };
                let total = ids.len();
                let mut meta = cs_meta();
                meta["pagination"] = json!({"offset": 0, "limit": limit, "total": total});
                (
                    200,
                    json!({"meta": meta, "resources": ids.into_iter().take(limit).collect::<Vec<_>>(), "errors": []}),
                    rate_headers(),
                )
            }
            ("GET", "/devices/entities/devices/v2") => {
                let resources: Vec<Value> = req
                    .query
                    .get("ids")
                    .and_then(|id| self.devices.get(id).map(|d| (id, d)))
                    .map(|(id, d)| {
                        json!({"device_id": id, "cid": "c1d2e3", "hostname": d.hostname,
                               "status": d.status, "platform_name": "Windows",
                               "last_seen": "2026-11-26T09:00:00Z"})
                    })
                    .into_iter()
                    .collect();
                (
                    200,
                    json!({"meta": cs_meta(), "resources": resources, "errors": []}),
                    rate_headers(),
                )
            }
            ("POST", "/devices/entities/devices-actions/v2") => {
                if req.header("content-type") != Some("application/json") {
                    return cs_error(400, "Content-Type must be application/json");
                }
                let action = req.query.get("action_name").cloned().unwrap_or_default();
                let ids: Vec<String> = req.body["ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.is_empty() || req.body.as_object().map(|o| o.len()) != Some(1) {
                    return cs_error(400, "body must be {\"ids\": [...]}");
                }
                let to = match action.as_str() {
                    "contain" => "containment_pending",
                    "lift_containment" => "lift_containment_pending",
                    _ => return cs_error(400, &format!("invalid action_name {action}")),
                };
                for id in &ids {
                    let Some(d) = self.devices.get_mut(id) else {
                        return cs_error(404, &format!("Device {id} not found"));
                    };
                    d.status = to.to_string();
                }
                self.actions.push((action, ids.clone()));
                (
                    202,
                    json!({"meta": cs_meta(),
                           "resources": ids.iter().map(|id| json!({"id": id, "path": ""})).collect::<Vec<_>>(),
                           "errors": []}),
                    rate_headers(),
                )
            }
            _ => cs_error(404, "Not Found"),
        }
    }
}

const AID_ALICE: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b40";
const AID_OBRIEN: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b41";
const AID_OLD: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b42";
const AID_NEW: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b43";
const AID_SERVER: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b44";

fn falcon_world() -> Falcon {
    let mut f = Falcon::default();
    for (id, host, status) in [
        (AID_ALICE, "WKS-ALICE-01", "normal"),
        (AID_OBRIEN, "o'brien-pc", "normal"),
        (AID_OLD, "WKS-REIMAGED", "normal"),
        (AID_NEW, "WKS-REIMAGED", "normal"),
        (AID_SERVER, "SRV-DB-01", "contained"),
    ] {
        f.devices.insert(
            id.to_string(),
            Device {
                hostname: host.to_string(),
                status: status.to_string(),
            },
        );
    }
    f
}

fn falcon_toml(name: &str, base: &str, secret_ref: &str) -> String {
    format!(
        r#"
[connectors.{name}]
type = "crowdstrike"
base_url = "{base}"
[connectors.{name}.auth]
scheme = "oauth2"
token_url = "{base}/oauth2/token"
client_id = "{CS_CLIENT}"
client_secret = "{secret_ref}"
"#
    )
}

async fn falcon() -> (Fake<Falcon>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let fake = Fake::start(falcon_world()).await;
    let set = build(&falcon_toml(
        "falcon",
        fake.base(),
        &secrets.file("cs-secret", CS_SECRET),
    ));
    (fake, set["falcon"].clone(), secrets)
}

#[tokio::test]
async fn crowdstrike_contain_then_lift_leaves_the_host_as_it_was() {
    let (fake, cs, _s) = falcon().await;
    let before = fake.with(|i| i.vendor.devices.clone());

    let c = run(&*cs, Operation::ContainHost, "WKS-ALICE-01", None).await;
    assert_eq!(c.outcome, Outcome::Done, "{}", c.summary);
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
    let again = run(&*cs, Operation::ContainHost, "WKS-ALICE-01", None).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.summary);
    fake.with(|i| i.vendor.settle());
    let again = run(&*cs, Operation::ContainHost, AID_ALICE, None).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.summary);
    assert!(!fake.calls().iter().any(|c| c.starts_with("POST")));

    // Lift from the recorded pre-state: lift_containment on the recorded device id.
    fake.clear_log();
    let l = run(
        &*cs,
        Operation::LiftContainment,
        "WKS-ALICE-01",
        c.pre_state.clone(),
    )
    .await;
    assert_eq!(l.outcome, Outcome::Done, "{}", l.summary);
    let post = fake.api_requests().pop().expect("a request");
    assert_eq!(post.path, "/devices/entities/devices-actions/v2");
    assert_eq!(
        post.query.get("action_name").map(String::as_str),
        Some("lift_containment")
    );
    assert_eq!(post.body, json!({"ids": [AID_ALICE]}));
    // Lifting while the lift is pending is already_done; then the host is exactly as before.
    let l = run(
        &*cs,
        Operation::LiftContainment,
        "WKS-ALICE-01",
        c.pre_state,
    )
    .await;
    assert_eq!(l.outcome, Outcome::AlreadyDone, "{}", l.summary);
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
    let c = run(&*cs, Operation::ContainHost, "srv-db-01", None).await;
    assert_eq!(c.outcome, Outcome::AlreadyDone, "{}", c.summary);
    assert_eq!(
        fake.api_requests()
            .iter()
            .filter_map(|r| r.query.get("filter").cloned())
            .collect::<Vec<_>>(),
        ["hostname:'srv-db-01'", "hostname:'SRV-DB-01'"]
    );
    assert_eq!(c.pre_state.as_ref().unwrap()["prior_status"], "contained");
    let l = run(&*cs, Operation::LiftContainment, "srv-db-01", c.pre_state).await;
    assert_eq!(l.outcome, Outcome::AlreadyDone, "{}", l.summary);
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
    let r = run(&*cs, Operation::ContainHost, "o'brien-pc", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
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
    let r = run(&*cs, Operation::ContainHost, AID_NEW, None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(
        fake.with(|i| i.vendor.devices[AID_OLD].status.clone()),
        "normal"
    );

    // An unknown host: both queries answer no resources → not_found, nothing sent.
    fake.clear_log();
    let r = run(&*cs, Operation::ContainHost, "WKS-NOBODY", None).await;
    assert_eq!(r.outcome, Outcome::NotFound, "{}", r.summary);
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
    match &r.outcome {
        Outcome::Retry { after, reason } => {
            let after = after.expect("a retry time");
            assert!(
                after > Duration::from_secs(1) && after <= Duration::from_secs(3),
                "{after:?} is not the time left to {reset}"
            );
            assert!(
                reason.contains("429") && reason.contains("API rate limit exceeded."),
                "{reason}"
            );
        }
        other => panic!("expected retry, got {other:?}"),
    }
    assert_eq!(
        fake.with(|i| i.vendor.devices[AID_ALICE].status.clone()),
        "normal"
    );

    // The token expires at CrowdStrike mid-run: 401 in CrowdStrike's envelope → one refresh → success.
    fake.expire_tokens();
    let r = run(&*cs, Operation::ContainHost, "WKS-ALICE-01", None).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(fake.token_requests(), 2);

    // The API client is deleted: the new token is refused as well → one refresh, then failed.
    fake.with(|i| i.refuse_new_tokens = true);
    fake.expire_tokens();
    fake.clear_log();
    let r = run(&*cs, Operation::LiftContainment, "WKS-ALICE-01", None).await;
    match &r.outcome {
        Outcome::Failed { reason } => assert!(
            reason.contains("401") && reason.contains("access denied, invalid bearer token"),
            "{reason}"
        ),
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(fake.token_requests(), 3, "exactly one more refresh");
    assert_eq!(fake.calls().len(), 2, "one retry: {:?}", fake.calls());
}

#[tokio::test]
async fn crowdstrike_refused_client_fails_terminally_with_the_envelope_message() {
    let secrets = Secrets::new();
    let fake = Fake::start(falcon_world()).await;
    let set = build(&falcon_toml(
        "cs",
        fake.base(),
        &secrets.file("wrong", "not-the-secret"),
    ));
    let r = run(&*set["cs"], Operation::ContainHost, "WKS-ALICE-01", None).await;
    match &r.outcome {
        Outcome::Failed { reason } => {
            assert!(reason.contains("access denied, invalid client"), "{reason}");
            assert!(!reason.contains("not-the-secret"), "{reason}");
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(fake.calls().is_empty());
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
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", CONTAIN_POLICY)]);
    let app = TestApp::spawn(&format!(
        r#"data_dir = "{data}"
[api]
listen = "127.0.0.1:0"
[policy]
dir = "{policies}"
watch = false
[executor]
poll_interval = "50ms"
[executor.retry]
base_delay = "50ms"
max_delay = "200ms"
max_attempts = 4
{falcon}
{keycloak}
{state}"#,
        data = data.path().display(),
        policies = policies.path().display(),
        falcon = falcon_toml("falcon", cs.base(), &secrets.file("cs", CS_SECRET)),
        keycloak = keycloak_toml("keycloak", kc.base(), &secrets.file("kc", KC_SECRET)),
        state = redis_state(),
    ))
    .await;
    eventually(Duration::from_secs(10), "app ready", || async {
        app.ready().await.then_some(())
    })
    .await;

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

/// Keycloak in the connector contract suite: disable, then enable; the realm's users as before.
pub(crate) async fn keycloak_contract_case() -> Case {
    let (fake, kc, secrets) = keycloak().await;
    let f = fake.clone();
    Case {
        name: "keycloak",
        connector: kc,
        subject: "Alice.Smith@example.com".into(),
        pairs: vec![(Operation::DisableAccount, Operation::EnableAccount)],
        state: Box::new(move || {
            let users = f.vendor(|v| v.users.clone());
            Box::pin(async move { format!("{users:#?}") })
        }),
        settle: None,
        keep: Box::new((fake, secrets)),
    }
}

/// CrowdStrike in the connector contract suite: contain, then lift; the host as before. The fake's
/// sensor settles each pending change after every operation.
pub(crate) async fn crowdstrike_contract_case() -> Case {
    let (fake, cs, secrets) = falcon().await;
    let (f, s) = (fake.clone(), fake.clone());
    Case {
        name: "crowdstrike",
        connector: cs,
        subject: "WKS-ALICE-01".into(),
        pairs: vec![(Operation::ContainHost, Operation::LiftContainment)],
        state: Box::new(move || {
            let devices = f.vendor(|v| v.devices.clone());
            Box::pin(async move { format!("{devices:#?}") })
        }),
        settle: Some(Box::new(move || s.vendor(|v| v.settle()))),
        keep: Box::new((fake, secrets)),
    }
}
