//! Okta's Management API (developer.okta.com): users by id, login or `profile.email eq` search,
//! lifecycle operations with their state rules and E0000001 causes, session clearing, group
//! membership with `Link` cursor pagination, the service-app token endpoint (private_key_jwt), and
//! the `X-Rate-Limit-*` bucket with 429 E0000047.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deprovd::Connector;
use serde_json::{Value, json};

use super::{invalid_client, verify_assertion};
use crate::kit::connector::{Secrets, connector, instance};
use crate::kit::contract::{Case, DISABLE_AND_UNGROUP, fake_state};
use crate::kit::fake::{Fake, Req, Resp, Vendor, now_secs, resp};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OktaUser {
    pub(crate) id: String,
    pub(crate) login: String,
    pub(crate) email: String,
    pub(crate) status: String,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OktaGroup {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) members: BTreeSet<String>,
}

#[derive(Default, Clone, PartialEq, Debug)]
pub(crate) struct Okta {
    pub(crate) users: BTreeMap<String, OktaUser>,
    pub(crate) groups: BTreeMap<String, OktaGroup>,
    /// (user id, oauthTokens query value) of every session clear.
    pub(crate) sessions_cleared: Vec<(String, String)>,
    /// When set, Okta's rate limiting of the API: every answer carries `X-Rate-Limit-*`, and a request
    /// beyond the budget before the reset gets 429 E0000047.
    pub(crate) rate: Option<OktaRate>,
}

/// One Okta rate-limit bucket (developer.okta.com "Rate limits": X-Rate-Limit-Limit, -Remaining, and -Reset
/// in UTC epoch seconds).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OktaRate {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset: u64,
    /// Every request refused with 429.
    pub(crate) refused: usize,
}

pub(crate) fn okta_error(status: u16, code: &str, summary: &str, causes: &[&str]) -> Resp {
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

pub(crate) fn okta_not_found(what: &str, kind: &str) -> Resp {
    okta_error(
        404,
        "E0000007",
        &format!("Not found: Resource not found: {what} ({kind})"),
        &[],
    )
}

impl Okta {
    pub(crate) fn user_json(u: &OktaUser) -> Value {
        json!({"id": u.id, "status": u.status, "profile": {"login": u.login, "email": u.email},
               "_links": {}})
    }
    pub(crate) fn find(&self, key: &str) -> Option<&OktaUser> {
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
    pub(crate) fn api(&mut self, req: &Req, base: &str) -> Resp {
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

pub(crate) fn okta_world() -> Okta {
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

/// Okta with an SSWS API token, `vars` as the connector's `vars` table: the fake and the real
/// connector.
pub(crate) async fn okta_ssws(vars: Value) -> (Fake<Okta>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let token = "00TESTssws-token-value";
    let fake = Fake::start_with_static_auth(okta_world(), format!("SSWS {token}")).await;
    let config = instance(json!({
        "type": "okta",
        "base_url": fake.base(),
        "auth": {"scheme": "ssws", "token": secrets.file("okta-token", token)},
        "vars": vars,
    }));
    let okta = connector("okta", config);
    (fake, okta, secrets)
}

/// Okta in the connector contract suite: suspend and group removal, then back. Cleared sessions
/// stay cleared (a restore does not give sessions back).
pub(crate) async fn contract_case() -> Case {
    let (fake, okta, secrets) = okta_ssws(json!({})).await;
    Case {
        name: "okta",
        connector: okta,
        subject: "alice.smith@example.com".into(),
        pairs: DISABLE_AND_UNGROUP.to_vec(),
        state: fake_state(&fake, |v| {
            let mut v = v.clone();
            v.sessions_cleared.clear();
            format!("{v:#?}")
        }),
        settle: None,
        keep: Box::new((fake, secrets)),
    }
}
