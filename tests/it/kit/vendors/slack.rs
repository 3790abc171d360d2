//! Slack (api.slack.com): the SCIM 2.0 API (`/scim/v2`: users, `active` PATCH, groups) and the
//! Web API (`admin.users.session.reset`, `auth.test`; HTTP 200 with `{"ok": false, "error": ...}`
//! for failures), served on two hosts with two tokens. Rate limits (429 `ratelimited` with
//! `Retry-After`) are scripted by the tests through [`Fake::inject`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::http::Method;
use deprovd::{Connector, InstanceConfig, Operation};
use serde_json::{Value, json};

use crate::kit::connector::{Secrets, connector, instance};
use crate::kit::contract::{Case, fake_state};
use crate::kit::fake::{Fake, Req, Resp, Vendor, resp};

pub(crate) const SCIM_TOKEN: &str = "xoxp-scim-0000-test";
pub(crate) const ADMIN_TOKEN: &str = "xoxp-admin-1111-test";

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SlackUser {
    pub(crate) user_name: String,
    pub(crate) email: String,
    pub(crate) active: bool,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Slack {
    pub(crate) users: BTreeMap<String, SlackUser>,
    /// User ids whose sessions were reset, in order.
    pub(crate) sessions_reset: Vec<String>,
    /// IdP groups (SCIM Groups): id → (displayName, member user ids).
    pub(crate) groups: BTreeMap<String, (String, BTreeSet<String>)>,
}

pub(crate) fn slack_world() -> Slack {
    let mut s = Slack::default();
    for (id, user_name, email, active) in [
        ("W0ALICE", "alice", "alice@example.com", true),
        ("W0MONA", "mona", "mona@example.com", true),
        ("W0GONE", "gone", "gone@example.com", false),
    ] {
        s.users.insert(
            id.into(),
            SlackUser {
                user_name: user_name.into(),
                email: email.into(),
                active,
            },
        );
    }
    s.groups.insert(
        "S0TIER0".into(),
        (
            "Tier0 Admins".into(),
            BTreeSet::from(["W0ALICE".to_string()]),
        ),
    );
    s.groups.insert(
        "S0ENG".into(),
        (
            "Engineering".into(),
            BTreeSet::from(["W0ALICE".to_string(), "W0MONA".to_string()]),
        ),
    );
    s
}

/// Slack's SCIM error body.
pub(crate) fn slack_scim_error(status: u16, description: &str) -> Resp {
    resp(
        status,
        json!({"Errors": {"description": description, "code": status}}),
    )
}

impl Slack {
    /// A SCIM user; `groups` (read-only, {value, display}) lists the groups that hold it.
    pub(crate) fn scim_user(&self, id: &str, u: &SlackUser) -> Value {
        let groups: Vec<Value> = self
            .groups
            .iter()
            .filter(|(_, (_, members))| members.contains(id))
            .map(|(gid, (name, _))| json!({"value": gid, "display": name}))
            .collect();
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id,
            "userName": u.user_name,
            "active": u.active,
            "emails": [{"value": u.email, "primary": true}],
            "groups": groups,
            "meta": {"resourceType": "User", "location": format!("https://api.slack.com/scim/v2/Users/{id}")},
        })
    }

    pub(crate) fn scim(&mut self, req: &Req) -> Resp {
        if req.header("authorization") != Some(&format!("Bearer {SCIM_TOKEN}")) {
            return slack_scim_error(401, "invalid_authentication");
        }
        let segs = req.segs();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (req.method.as_str(), &segs[2..]) {
            ("GET", ["Users"]) => {
                let matching: Vec<Value> = match req.query.get("filter") {
                    None => self
                        .users
                        .iter()
                        .map(|(id, u)| self.scim_user(id, u))
                        .collect(),
                    Some(f) => {
                        let Some((attr, value)) = f.split_once(" eq ") else {
                            return slack_scim_error(400, "invalid_filter");
                        };
                        let Ok(value) = serde_json::from_str::<String>(value) else {
                            return slack_scim_error(400, "invalid_filter");
                        };
                        let pick: fn(&SlackUser) -> &str = match attr {
                            "userName" => |u| &u.user_name,
                            "emails.value" => |u| &u.email,
                            _ => return slack_scim_error(400, "invalid_filter_attribute"),
                        };
                        self.users
                            .iter()
                            .filter(|(_, u)| pick(u).eq_ignore_ascii_case(&value))
                            .map(|(id, u)| self.scim_user(id, u))
                            .collect()
                    }
                };
                let count: usize = req
                    .query
                    .get("count")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(100);
                let page: Vec<Value> = matching.iter().take(count).cloned().collect();
                resp(
                    200,
                    json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": matching.len(),
                        "itemsPerPage": page.len(),
                        "startIndex": 1,
                        "Resources": page,
                    }),
                )
            }
            ("GET", ["Users", id]) => match self.users.get(*id) {
                Some(u) => resp(200, self.scim_user(id, u)),
                None => slack_scim_error(404, "user_not_found"),
            },
            ("PATCH", ["Users", id]) => {
                if req.header("content-type") != Some("application/scim+json") {
                    return slack_scim_error(415, "unsupported_media_type");
                }
                let Some(u) = self.users.get_mut(*id) else {
                    return slack_scim_error(404, "user_not_found");
                };
                if req.body["schemas"] != json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]) {
                    return slack_scim_error(400, "invalid_schemas");
                }
                let ops = req.body["Operations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for op in &ops {
                    match (op["op"].as_str(), op["path"].as_str(), &op["value"]) {
                        (Some("replace"), Some("active"), Value::Bool(b)) => u.active = *b,
                        _ => return slack_scim_error(400, "invalid_operation"),
                    }
                }
                let u = u.clone();
                resp(200, self.scim_user(id, &u))
            }
            _ => slack_scim_error(404, "not_found"),
        }
    }

    pub(crate) fn web_api(&mut self, req: &Req) -> Resp {
        // The Web API answers HTTP 200 with ok:false for almost every failure.
        let fail = |error: &str| resp(200, json!({"ok": false, "error": error}));
        if req.method != Method::POST {
            return fail("invalid_post_type");
        }
        if !req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return fail("invalid_post_type");
        }
        let token = req.header("authorization").unwrap_or_default();
        let method = req.path.trim_start_matches("/api/");
        match method {
            "auth.test" if token == format!("Bearer {ADMIN_TOKEN}") => resp(
                200,
                json!({"ok": true, "url": "https://acme.enterprise.slack.com/", "team": "Acme",
                       "user": "secops-bot", "team_id": "E0ACME", "user_id": "W0SECOPS",
                       "is_enterprise_install": true}),
            ),
            "admin.users.session.reset" => {
                if token == format!("Bearer {SCIM_TOKEN}") {
                    // The SCIM token carries only `admin`.
                    return resp(
                        200,
                        json!({"ok": false, "error": "missing_scope",
                               "needed": "admin.users:write", "provided": "admin"}),
                    );
                }
                if token != format!("Bearer {ADMIN_TOKEN}") {
                    return fail("invalid_auth");
                }
                let Some(user_id) = req.body["user_id"].as_str() else {
                    return fail("invalid_arguments");
                };
                if !self.users.contains_key(user_id) {
                    return fail("user_not_found");
                }
                self.sessions_reset.push(user_id.to_string());
                resp(200, json!({"ok": true}))
            }
            _ if token != format!("Bearer {ADMIN_TOKEN}") => fail("invalid_auth"),
            _ => fail("unknown_method"),
        }
    }
}

impl Vendor for Slack {
    fn handle(&mut self, req: &Req, _base: &str) -> Resp {
        if req.path.starts_with("/scim/v2/") {
            self.scim(req)
        } else if req.path.starts_with("/api/") {
            self.web_api(req)
        } else {
            resp(404, Value::Null)
        }
    }
}

/// Slack served on two ports: SCIM on the first, the Web API on the second, each with its own token
/// (or, without `separate_admin_token`, the Web API with the SCIM token).
pub(crate) fn slack_config(
    fake: &Fake<Slack>,
    secrets: &Secrets,
    separate_admin_token: bool,
) -> InstanceConfig {
    let mut web_api = json!({"base_url": format!("{}/api", fake.bases()[1])});
    if separate_admin_token {
        web_api["auth"] =
            json!({"scheme": "bearer", "token": secrets.file("slack-admin", ADMIN_TOKEN)});
    }
    instance(json!({
        "type": "slack",
        "base_url": format!("{}/scim/v2", fake.bases()[0]),
        "auth": {"scheme": "bearer", "token": secrets.file("slack-scim", SCIM_TOKEN)},
        "endpoints": {"web_api": web_api},
    }))
}

/// The standard workspace on two hosts, and the real connector with both tokens.
pub(crate) async fn slack() -> (Fake<Slack>, Arc<dyn Connector>, Secrets) {
    let fake = Fake::start_listeners(slack_world(), 2).await;
    let secrets = Secrets::new();
    let slack = connector("slack", slack_config(&fake, &secrets, true));
    (fake, slack, secrets)
}

/// Slack in the connector contract suite: deactivate, then reactivate; the workspace's users as
/// before.
pub(crate) async fn contract_case() -> Case {
    let (fake, slack, secrets) = slack().await;
    Case {
        name: "slack",
        connector: slack,
        subject: "alice@example.com".into(),
        pairs: vec![(Operation::DisableAccount, Operation::EnableAccount)],
        state: fake_state(&fake, |v| format!("{:#?}", v.users)),
        settle: None,
        keep: Box::new((fake, secrets)),
    }
}
