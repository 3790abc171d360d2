//! Keycloak's Admin REST API (keycloak.org, version 24): users by `username`/`email` with
//! `exact=true` (an older server that ignores it can be modelled), full-replacement PUT of the
//! UserRepresentation (a partial write visibly loses data), logout, a user's groups with paths and
//! `first`/`max` paging, the realm's client-credentials token endpoint, and Keycloak's error shapes
//! (`{"error": "User not found"}`, `HTTP 401 Unauthorized`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::Method;
use deprovd::{Connector, InstanceConfig, Operation};
use serde_json::{Value, json};

use crate::kit::connector::{Secrets, connector, instance};
use crate::kit::contract::{Case, fake_state};
use crate::kit::fake::{Fake, Req, Resp, Vendor, resp};

pub(crate) const REALM: &str = "corp";
pub(crate) const KC_CLIENT: &str = "deprovd-containment";
pub(crate) const KC_SECRET: &str = "kc-client-secret-value";

/// The user as Keycloak stores it (what a full representation shows).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct KcUser {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) email: Option<String>,
    pub(crate) first_name: Option<String>,
    pub(crate) last_name: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) email_verified: bool,
    pub(crate) attributes: BTreeMap<String, Vec<String>>,
    pub(crate) required_actions: Vec<String>,
    pub(crate) created: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Keycloak {
    pub(crate) users: BTreeMap<String, KcUser>,
    /// Online sessions per user id (not part of the user: logout cannot be "restored").
    pub(crate) sessions: BTreeMap<String, u32>,
    /// User ids logged out, in order.
    pub(crate) logouts: Vec<String>,
    /// An older server that ignores `exact=true` and searches by substring.
    pub(crate) ignore_exact: bool,
    /// Groups in the order Keycloak lists them: (id, name, path, ids of direct members).
    pub(crate) groups: Vec<(String, String, String, BTreeSet<String>)>,
}

impl KcUser {
    pub(crate) fn brief(&self) -> Value {
        json!({
            "id": self.id, "username": self.username, "email": self.email,
            "firstName": self.first_name, "lastName": self.last_name,
            "enabled": self.enabled, "emailVerified": self.email_verified,
            "createdTimestamp": self.created,
        })
    }
    /// `GET /users/{id}`: the full UserRepresentation (Keycloak omits null fields and empty attributes).
    pub(crate) fn full(&self) -> Value {
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

pub(crate) fn kc_error(status: u16, message: &str) -> Resp {
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
    pub(crate) fn put_user(&mut self, id: &str, req: &Req) -> Resp {
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

pub(crate) fn keycloak_world() -> Keycloak {
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

pub(crate) const ALICE: &str = "6f1c2d1e-0000-4000-8000-00000000a11c";
pub(crate) const BOB: &str = "6f1c2d1e-0000-4000-8000-000000000b0b";
pub(crate) const CAROL: &str = "6f1c2d1e-0000-4000-8000-000000000ca7";

/// The `keycloak` connector against `base`, with a confidential client's secret at `secret_ref`.
pub(crate) fn keycloak_config(base: &str, secret_ref: &str) -> InstanceConfig {
    instance(json!({
        "type": "keycloak",
        "base_url": base,
        "vars": {"realm": REALM},
        "auth": {
            "scheme": "oauth2",
            "token_url": format!("{base}/realms/{REALM}/protocol/openid-connect/token"),
            "client_id": KC_CLIENT,
            "client_secret": secret_ref,
        },
    }))
}

/// The standard realm, and the real connector with the right client secret.
pub(crate) async fn keycloak() -> (Fake<Keycloak>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let fake = Fake::start(keycloak_world()).await;
    let config = keycloak_config(fake.base(), &secrets.file("kc-secret", KC_SECRET));
    (fake, connector("keycloak", config), secrets)
}

/// Keycloak in the connector contract suite: disable, then enable; the realm's users as before.
pub(crate) async fn contract_case() -> Case {
    let (fake, kc, secrets) = keycloak().await;
    Case {
        name: "keycloak",
        connector: kc,
        subject: "Alice.Smith@example.com".into(),
        pairs: vec![(Operation::DisableAccount, Operation::EnableAccount)],
        state: fake_state(&fake, |v| format!("{:#?}", v.users)),
        settle: None,
        keep: Box::new((fake, secrets)),
    }
}
