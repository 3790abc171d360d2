//! Microsoft Entra ID through Microsoft Graph v1.0 (learn.microsoft.com/graph): users by id, UPN
//! or `mail eq` filter with `$select`, `accountEnabled` PATCH, `revokeSignInSessions`,
//! Identity Protection's `confirmCompromised`, group membership with `@odata.nextLink` paging and
//! the rules for groups that cannot be changed (synced, dynamic, mail-enabled security), the
//! identity platform's client-credentials token endpoint, and Graph's error shapes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deprovd::{Connector, InstanceConfig};
use serde_json::{Value, json};

use super::invalid_client;
use crate::kit::connector::{Secrets, connector, instance};
use crate::kit::contract::{Case, DISABLE_AND_UNGROUP, fake_state};
use crate::kit::fake::{Fake, Req, Resp, Vendor, resp};

pub(crate) const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const GRAPH_PAGE: usize = 2;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GraphGroup {
    pub(crate) name: String,
    pub(crate) group_types: Vec<&'static str>,
    pub(crate) mail_enabled: bool,
    pub(crate) security_enabled: bool,
    pub(crate) synced: bool,
    pub(crate) rule: Option<&'static str>,
    pub(crate) members: BTreeSet<String>,
}

#[derive(Default, Clone, Debug, PartialEq)]
pub(crate) struct Graph {
    /// id → (userPrincipalName, accountEnabled)
    pub(crate) users: BTreeMap<String, (String, bool)>,
    /// id → mail (primary SMTP address)
    pub(crate) mails: BTreeMap<String, String>,
    pub(crate) groups: BTreeMap<String, GraphGroup>,
    pub(crate) revoked: Vec<String>,
    /// Ids confirmed compromised in Identity Protection (riskLevel high).
    pub(crate) compromised: Vec<String>,
}

pub(crate) fn graph_error(status: u16, code: &str, message: &str) -> Resp {
    resp(
        status,
        json!({"error": {"code": code, "message": message,
            "innerError": {"date": "2026-11-26T07:00:00", "request-id": uuid::Uuid::new_v4().to_string(),
                           "client-request-id": uuid::Uuid::new_v4().to_string()}}}),
    )
}

impl Graph {
    pub(crate) fn user_id(&self, key: &str) -> Option<String> {
        self.users
            .iter()
            .find(|(id, (upn, _))| id.as_str() == key || upn.eq_ignore_ascii_case(key))
            .map(|(id, _)| id.clone())
    }
    pub(crate) fn not_found(key: &str) -> Resp {
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

pub(crate) fn graph_world() -> Graph {
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

/// The `entra` connector against `fake`, `vars` as its `vars` table.
pub(crate) fn entra_config(fake: &Fake<Graph>, client_secret: &str, vars: Value) -> InstanceConfig {
    instance(json!({
        "type": "entra",
        "base_url": format!("{}/v1.0", fake.base()),
        "auth": {
            "scheme": "oauth2",
            "token_url": format!("{}/{TENANT}/oauth2/v2.0/token", fake.base()),
            "client_id": "app-0001",
            "scopes": ["https://graph.microsoft.com/.default"],
            "client_secret": client_secret,
        },
        "vars": vars,
    }))
}

/// Graph with the standard tenant, and the real connector with the right client secret.
pub(crate) async fn entra() -> (Fake<Graph>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let fake = Fake::start(graph_world()).await;
    let secret = secrets.file("graph-secret", "graph-client-secret");
    let entra = connector("entra", entra_config(&fake, &secret, json!({})));
    (fake, entra, secrets)
}

/// Entra in the connector contract suite: disable and group removal, then back.
pub(crate) async fn contract_case() -> Case {
    let (fake, entra, secrets) = entra().await;
    Case {
        name: "entra",
        connector: entra,
        subject: "alice@contoso.com".into(),
        pairs: DISABLE_AND_UNGROUP.to_vec(),
        state: fake_state(&fake, |v| {
            let mut v = v.clone();
            v.revoked.clear();
            format!("{v:#?}")
        }),
        settle: None,
        keep: Box::new((fake, secrets)),
    }
}
