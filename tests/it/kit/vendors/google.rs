//! Google Workspace's Admin SDK Directory API (developers.google.com/admin-sdk/directory): users by
//! id or primary email, `suspended` PUT, `signOut`, OAuth tokens listed and deleted per client id,
//! `groups.list?userKey=` with `maxResults` and `nextPageToken`, the service account's token
//! endpoint with domain-wide delegation (JWT bearer grant, delegated scopes only), and Google's error
//! shapes (`userRateLimitExceeded` on 403).

use std::collections::{BTreeMap, BTreeSet};

use deprovd::InstanceConfig;
use serde_json::{Value, json};

use super::{PRIVATE_PEM, invalid_client, verify_assertion};
use crate::kit::connector::instance;
use crate::kit::fake::{Fake, Req, Resp, Vendor, now_secs, resp};

#[derive(Default, Clone, Debug, PartialEq)]
pub(crate) struct Directory {
    /// id → (primaryEmail, suspended, tokens: clientId → displayText)
    pub(crate) users: BTreeMap<String, (String, bool, BTreeMap<String, String>)>,
    pub(crate) signed_out: Vec<String>,
    /// Groups in list order: (email, name, ids of direct members).
    pub(crate) groups: Vec<(String, String, BTreeSet<String>)>,
}

/// Scopes the service account's client id is authorised for in domain-wide delegation: a token
/// request may ask for any of them, and for nothing else.
pub(crate) const GOOGLE_DELEGATED: [&str; 3] = [
    "https://www.googleapis.com/auth/admin.directory.user",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
];

pub(crate) fn google_error(status: u16, reason: &str, message: &str) -> Resp {
    resp(
        status,
        json!({"error": {"code": status, "message": message,
                         "errors": [{"message": message, "domain": "global", "reason": reason}]}}),
    )
}

impl Directory {
    pub(crate) fn id(&self, key: &str) -> Option<String> {
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

/// A service-account key as the Cloud console issues it, for the test key pair, its `token_uri` the
/// fake's token endpoint.
pub(crate) fn service_account_key(fake: &Fake<Directory>) -> Value {
    json!({
        "type": "service_account",
        "project_id": "acme-sec",
        "private_key_id": "abc123",
        "private_key": PRIVATE_PEM,
        "client_email": "deprovd@acme-sec.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": format!("{}/token", fake.base()),
    })
}

/// The `google` connector against `fake`: the key at `key_ref`, delegated to
/// secops-admin@acme.example for `scopes`.
pub(crate) fn google_config(
    fake: &Fake<Directory>,
    key_ref: &str,
    scopes: &[&str],
) -> InstanceConfig {
    instance(json!({
        "type": "google",
        "base_url": format!("{}/admin/directory/v1", fake.base()),
        "auth": {
            "scheme": "google_service_account",
            "key": key_ref,
            "subject": "secops-admin@acme.example",
            "scopes": scopes,
        },
    }))
}
