//! GitHub (docs.github.com/rest): organization and team memberships with pending invitations,
//! SAML SSO credential authorizations, the GraphQL API (teams with immediate members and their team
//! roles), and the Enterprise Managed Users SCIM API. Rate limits (primary `x-ratelimit-*`,
//! secondary `retry-after`) are scripted by the tests through [`Fake::inject`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deprovd::{Connector, InstanceConfig};
use serde_json::{Value, json};

use crate::kit::connector::{Secrets, connector, instance};
use crate::kit::fake::{Fake, Req, Resp, Vendor, resp};

pub(crate) const GH_TOKEN: &str = "ghp_test0000000000000000000000000000";
/// The GraphQL document `github.yaml` sends (asserted byte for byte).
pub(crate) const TEAMS_QUERY: &str = "query($org: String!, $login: String!) { organization(login: $org) { teams(first: 100, userLogins: [$login]) { pageInfo { hasNextPage } nodes { slug maintainers: members(first: 100, membership: IMMEDIATE, role: MAINTAINER, query: $login) { nodes { login } } direct_members: members(first: 100, membership: IMMEDIATE, role: MEMBER, query: $login) { nodes { login } } } } } }";

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Team {
    pub(crate) parent: Option<String>,
    /// login → (role "member"|"maintainer", state "active"|"pending")
    pub(crate) members: BTreeMap<String, (String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Credential {
    pub(crate) id: u64,
    pub(crate) login: String,
    pub(crate) kind: String,
    pub(crate) last_eight: String,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct GitHub {
    /// Every GitHub account (logins as spelled).
    pub(crate) accounts: BTreeSet<String>,
    /// Organization `acme`: login → (role "admin"|"member", state "active"|"pending").
    pub(crate) members: BTreeMap<String, (String, String)>,
    pub(crate) teams: BTreeMap<String, Team>,
    pub(crate) credentials: Vec<Credential>,
    /// EMU SCIM users of enterprise `acme-emu`: id → (userName, active).
    pub(crate) scim: BTreeMap<String, (String, bool)>,
    /// The fake's own root URL, for absolute `Link` headers as GitHub sends them.
    pub(crate) base: String,
}

pub(crate) fn gh_error(status: u16, message: &str) -> Resp {
    resp(
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.to_string()}),
    )
}

pub(crate) fn github_world() -> GitHub {
    let mut g = GitHub::default();
    for login in ["mona", "monalisa", "octo", "hubot", "outsider"] {
        g.accounts.insert(login.into());
    }
    for (login, role) in [
        ("mona", "admin"),
        ("monalisa", "member"),
        ("octo", "member"),
        ("hubot", "member"),
    ] {
        g.members
            .insert(login.into(), (role.into(), "active".into()));
    }
    let team = |parent: Option<&str>, members: &[(&str, &str)]| Team {
        parent: parent.map(String::from),
        members: members
            .iter()
            .map(|(l, r)| (l.to_string(), (r.to_string(), "active".to_string())))
            .collect(),
    };
    g.teams.insert(
        "platform".into(),
        team(None, &[("mona", "maintainer"), ("monalisa", "member")]),
    );
    // mona reaches `engineering` only through its child team `sre`: not an immediate member.
    g.teams
        .insert("engineering".into(), team(None, &[("octo", "maintainer")]));
    g.teams.insert(
        "sre".into(),
        team(
            Some("engineering"),
            &[("mona", "member"), ("hubot", "member")],
        ),
    );
    g.teams
        .insert("security".into(), team(None, &[("monalisa", "maintainer")]));
    g.credentials = vec![
        Credential {
            id: 161,
            login: "mona".into(),
            kind: "personal access token".into(),
            last_eight: "abcd1234".into(),
        },
        Credential {
            id: 162,
            login: "mona".into(),
            kind: "SSH key".into(),
            last_eight: String::new(),
        },
        Credential {
            id: 170,
            login: "octo".into(),
            kind: "personal access token".into(),
            last_eight: "ffff0000".into(),
        },
    ];
    g.scim.insert(
        "7fce0092-d52e-4f76-b727-3955bd72c939".into(),
        ("mona@acme.example".into(), true),
    );
    g
}

impl GitHub {
    pub(crate) fn account(&self, login: &str) -> Option<&String> {
        self.accounts.iter().find(|a| a.eq_ignore_ascii_case(login))
    }

    pub(crate) fn membership_json(login: &str, role: &str, state: &str) -> Value {
        json!({"url": format!("https://api.github.com/orgs/acme/memberships/{login}"),
               "state": state, "role": role,
               "organization_url": "https://api.github.com/orgs/acme",
               "organization": {"login": "acme"}, "user": {"login": login}})
    }

    pub(crate) fn graphql(&self, req: &Req) -> Resp {
        if req.body["query"] != json!(TEAMS_QUERY) {
            return resp(
                200,
                json!({"errors": [{"message": format!("unexpected query {}", req.body["query"])}]}),
            );
        }
        let vars = &req.body["variables"];
        if vars["org"] != "acme" {
            return resp(
                200,
                json!({"data": {"organization": null}, "errors": [{"type": "NOT_FOUND", "path": ["organization"],
                       "locations": [{"line": 1, "column": 42}],
                       "message": format!("Could not resolve to an Organization with the login of '{}'.", vars["org"].as_str().unwrap_or_default())}]}),
            );
        }
        let login = vars["login"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        // userLogins matches teams the user belongs to, including through a child team.
        let belongs = |slug: &str| {
            self.teams.iter().any(|(s, t)| {
                (s == slug || t.parent.as_deref() == Some(slug))
                    && t.members.keys().any(|m| m.to_ascii_lowercase() == login)
            })
        };
        let nodes: Vec<Value> = self
            .teams
            .iter()
            .filter(|(slug, _)| belongs(slug))
            .map(|(slug, t)| {
                // `query` is a substring search over logins: "mona" also finds "monalisa".
                let pick = |role: &str| -> Vec<Value> {
                    t.members
                        .iter()
                        .filter(|(m, (r, _))| r == role && m.to_ascii_lowercase().contains(&login))
                        .map(|(m, _)| json!({"login": m}))
                        .collect()
                };
                json!({"slug": slug, "maintainers": {"nodes": pick("maintainer")},
                       "direct_members": {"nodes": pick("member")}})
            })
            .collect();
        resp(
            200,
            json!({"data": {"organization": {"teams": {"pageInfo": {"hasNextPage": false}, "nodes": nodes}}}}),
        )
    }

    pub(crate) fn scim_user(id: &str, user_name: &str, active: bool) -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id,
               "externalId": "E1", "userName": user_name, "displayName": "Mona", "active": active,
               "emails": [{"value": user_name, "primary": true, "type": "work"}],
               "meta": {"resourceType": "User"}})
    }

    pub(crate) fn emu(&mut self, req: &Req, segs: &[&str]) -> Resp {
        if req.header("accept") != Some("application/scim+json") {
            return gh_error(415, "Unsupported Media Type");
        }
        match (req.method.as_str(), segs) {
            ("GET", ["Users"]) => {
                let Some(name) = req
                    .query
                    .get("filter")
                    .and_then(|f| f.strip_prefix("userName eq "))
                    .and_then(|v| serde_json::from_str::<String>(v).ok())
                else {
                    return resp(
                        200,
                        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                               "totalResults": self.scim.len(), "itemsPerPage": self.scim.len(), "startIndex": 1,
                               "Resources": self.scim.iter().map(|(id, (n, a))| Self::scim_user(id, n, *a)).collect::<Vec<_>>()}),
                    );
                };
                let found: Vec<Value> = self
                    .scim
                    .iter()
                    .filter(|(_, (n, _))| n.eq_ignore_ascii_case(&name))
                    .map(|(id, (n, a))| Self::scim_user(id, n, *a))
                    .collect();
                resp(
                    200,
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                           "totalResults": found.len(), "itemsPerPage": found.len(), "startIndex": 1, "Resources": found}),
                )
            }
            ("GET", ["Users", id]) => match self.scim.get(*id) {
                Some((n, a)) => resp(200, Self::scim_user(id, n, *a)),
                None => resp(
                    404,
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "404", "detail": "Resource not found"}),
                ),
            },
            ("PATCH", ["Users", id]) => {
                if req.header("content-type") != Some("application/scim+json") {
                    return gh_error(415, "Unsupported Media Type");
                }
                let Some((n, a)) = self.scim.get_mut(*id) else {
                    return resp(
                        404,
                        json!({"status": "404", "detail": "Resource not found"}),
                    );
                };
                let expected_schema = json!(["urn:ietf:params:scim:api:messages:2.0:PatchOp"]);
                match req.body["Operations"].as_array().map(Vec::as_slice) {
                    Some([op])
                        if req.body["schemas"] == expected_schema
                            && op["op"] == "replace"
                            && op["value"]["active"].is_boolean() =>
                    {
                        *a = op["value"]["active"].as_bool().unwrap_or(*a);
                    }
                    _ => return resp(400, json!({"status": "400", "detail": "invalid PATCH"})),
                }
                let (n, a) = (n.clone(), *a);
                resp(200, Self::scim_user(id, &n, a))
            }
            _ => gh_error(404, "Not Found"),
        }
    }
}

impl Vendor for GitHub {
    fn handle(&mut self, req: &Req, _base: &str) -> Resp {
        if req.header("authorization") != Some(&format!("Bearer {GH_TOKEN}")) {
            return gh_error(401, "Bad credentials");
        }
        if req.header("x-github-api-version") != Some("2022-11-28") {
            return gh_error(400, "Unsupported 'X-GitHub-Api-Version'");
        }
        let segs = req.segs();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        if let ["scim", "v2", "enterprises", "acme-emu", rest @ ..] = segs.as_slice() {
            return self.emu(req, rest);
        }
        if req.header("accept") != Some("application/vnd.github+json") {
            return gh_error(415, "Unsupported 'Accept' header");
        }
        match (req.method.as_str(), segs.as_slice()) {
            ("POST", ["graphql"]) => self.graphql(req),
            ("GET", ["users", login]) => match self.account(login) {
                Some(l) => resp(200, json!({"login": l, "id": 583231, "type": "User"})),
                None => gh_error(404, "Not Found"),
            },
            ("GET", ["orgs", "acme", "members"]) => resp(
                200,
                Value::Array(
                    self.members
                        .keys()
                        .take(1)
                        .map(|l| json!({"login": l}))
                        .collect(),
                ),
            ),
            ("GET", ["orgs", "acme", "memberships", login]) => match self.members.get(*login) {
                Some((role, state)) => resp(200, Self::membership_json(login, role, state)),
                None => gh_error(404, "Not Found"),
            },
            ("DELETE", ["orgs", "acme", "memberships", login]) => {
                if self.members.remove(*login).is_none() {
                    return gh_error(404, "Not Found");
                }
                for t in self.teams.values_mut() {
                    t.members.remove(*login);
                }
                resp(204, Value::Null)
            }
            ("PUT", ["orgs", "acme", "memberships", login]) => {
                let Some(role) = req.body["role"]
                    .as_str()
                    .filter(|r| ["admin", "member"].contains(r))
                else {
                    return gh_error(422, "Validation Failed");
                };
                if self.account(login).is_none() {
                    return gh_error(404, "Not Found");
                }
                // A non-member gets an invitation: pending until accepted.
                let entry = self
                    .members
                    .entry(login.to_string())
                    .or_insert((String::new(), "pending".into()));
                entry.0 = role.to_string();
                let (role, state) = entry.clone();
                resp(200, Self::membership_json(login, &role, &state))
            }
            ("PUT", ["orgs", "acme", "teams", slug, "memberships", login]) => {
                let Some(role) = req.body["role"]
                    .as_str()
                    .filter(|r| ["member", "maintainer"].contains(r))
                else {
                    return gh_error(422, "Validation Failed");
                };
                let org_state = self.members.get(*login).map(|(_, s)| s.clone());
                let Some(team) = self.teams.get_mut(*slug) else {
                    return gh_error(404, "Not Found");
                };
                // Pending with the organization invitation, active once it is accepted.
                let state = org_state.unwrap_or_else(|| "pending".into());
                team.members
                    .insert(login.to_string(), (role.to_string(), state.clone()));
                resp(
                    200,
                    json!({"url": format!("https://api.github.com/organizations/1/team/2/memberships/{login}"),
                           "role": role, "state": state}),
                )
            }
            ("GET", ["orgs", "acme", "credential-authorizations"]) => {
                let login = req.query.get("login").cloned();
                let num = |k: &str, d: usize| {
                    req.query
                        .get(k)
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(d)
                };
                let (per_page, page) = (num("per_page", 30).min(100), num("page", 1).max(1));
                let all: Vec<Value> = self
                    .credentials
                    .iter()
                    .filter(|c| login.as_ref().is_none_or(|l| *l == c.login))
                    .map(|c| json!({"login": c.login, "credential_id": c.id, "credential_type": c.kind,
                                     "token_last_eight": c.last_eight,
                                     "credential_authorized_at": "2026-01-26T19:06:43Z", "scopes": ["repo"]}))
                    .collect();
                let list: Vec<Value> = all
                    .iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .cloned()
                    .collect();
                let mut headers = Vec::new();
                if page * per_page < all.len() {
                    let mut next = reqwest::Url::parse(&format!(
                        "{}/orgs/acme/credential-authorizations",
                        self.base
                    ))
                    .expect("url");
                    next.query_pairs_mut()
                        .append_pair("login", login.as_deref().unwrap_or_default())
                        .append_pair("per_page", &per_page.to_string())
                        .append_pair("page", &(page + 1).to_string());
                    headers.push(("link".to_string(), format!("<{next}>; rel=\"next\"")));
                }
                (200, Value::Array(list), headers)
            }
            ("DELETE", ["orgs", "acme", "credential-authorizations", id]) => {
                let before = self.credentials.len();
                self.credentials.retain(|c| c.id.to_string() != *id);
                if self.credentials.len() == before {
                    return gh_error(404, "Not Found");
                }
                resp(204, Value::Null)
            }
            _ => gh_error(404, "Not Found"),
        }
    }
}

impl GitHub {
    /// The invitee accepts: the org membership and the teams that waited on it become active.
    pub(crate) fn accept_invitation(&mut self, login: &str) {
        if let Some(m) = self.members.get_mut(login) {
            m.1 = "active".into();
        }
        for t in self.teams.values_mut() {
            if let Some(m) = t.members.get_mut(login) {
                m.1 = "active".into();
            }
        }
    }
}

/// A `github` connector named `name` against `fake` with the test token, `vars` as its `vars` table.
pub(crate) fn github_config(
    fake: &Fake<GitHub>,
    secrets: &Secrets,
    name: &str,
    vars: Value,
) -> InstanceConfig {
    instance(json!({
        "type": "github",
        "base_url": fake.base(),
        "auth": {"scheme": "bearer", "token": secrets.file(&format!("{name}-token"), GH_TOKEN)},
        "vars": vars,
    }))
}

/// The standard organization (answering with absolute `Link` headers), and the real connector.
pub(crate) async fn github(vars: Value) -> (Fake<GitHub>, Arc<dyn Connector>, Secrets) {
    let fake = Fake::start(github_world()).await;
    let base = fake.base().to_string();
    fake.vendor(|g| g.base = base);
    let secrets = Secrets::new();
    let github = connector("github", github_config(&fake, &secrets, "github", vars));
    (fake, github, secrets)
}
