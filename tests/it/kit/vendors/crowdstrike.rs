//! CrowdStrike Falcon's Hosts API (falcon.crowdstrike.com/documentation): FQL `hostname:'…'`
//! queries (escapes, wildcards), device details, `devices-actions` contain and lift with their
//! asynchronous `*_pending` states (settled when the sensor checks in), the OAuth2 client-credentials
//! token endpoint, the `{meta, resources, errors}` envelope and `X-RateLimit-*` headers
//! (`X-RateLimit-RetryAfter` on 429).

use std::collections::BTreeMap;
use std::sync::Arc;

use deprovd::{Connector, InstanceConfig, Operation};
use serde_json::{Value, json};

use crate::kit::connector::{Secrets, connector, instance};
use crate::kit::contract::{Case, fake_state};
use crate::kit::fake::{Fake, Req, Resp, Vendor};

pub(crate) const CS_CLIENT: &str = "0123456789abcdef0123456789abcdef";
pub(crate) const CS_SECRET: &str = "cs-client-secret-value";

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Device {
    pub(crate) hostname: String,
    /// normal | containment_pending | contained | lift_containment_pending
    pub(crate) status: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Falcon {
    pub(crate) devices: BTreeMap<String, Device>,
    /// (action_name, ids) of every accepted devices-actions call.
    pub(crate) actions: Vec<(String, Vec<String>)>,
}

impl Falcon {
    /// The sensor checks in: pending states complete.
    pub(crate) fn settle(&mut self) {
        for d in self.devices.values_mut() {
            d.status = match d.status.as_str() {
                "containment_pending" => "contained".into(),
                "lift_containment_pending" => "normal".into(),
                s => s.to_string(),
            };
        }
    }
}

pub(crate) fn cs_meta() -> Value {
    json!({"query_time": 0.004, "powered_by": "device-api",
           "trace_id": uuid::Uuid::new_v4().to_string()})
}

pub(crate) fn cs_error(status: u16, message: &str) -> Resp {
    (
        status,
        json!({"meta": cs_meta(), "resources": [], "errors": [{"code": status, "message": message}]}),
        rate_headers(),
    )
}

pub(crate) fn rate_headers() -> Vec<(String, String)> {
    vec![
        ("X-RateLimit-Limit".into(), "6000".into()),
        ("X-RateLimit-Remaining".into(), "5999".into()),
        ("X-Cs-Region".into(), "us-1".into()),
    ]
}

/// One FQL comparison `prop:'value'` (backslash escapes), as the Hosts API parses it.
pub(crate) fn parse_fql(filter: &str) -> Option<(String, String)> {
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
pub(crate) fn fql_matches(pattern: &str, value: &str) -> bool {
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

pub(crate) const AID_ALICE: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b40";
pub(crate) const AID_OBRIEN: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b41";
pub(crate) const AID_OLD: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b42";
pub(crate) const AID_NEW: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b43";
pub(crate) const AID_SERVER: &str = "4a1c9e2b3d4e5f6a7b8c9d0e1f2a3b44";

pub(crate) fn falcon_world() -> Falcon {
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

/// The `crowdstrike` connector against `base`, with the API client's secret at `secret_ref`.
pub(crate) fn falcon_config(base: &str, secret_ref: &str) -> InstanceConfig {
    instance(json!({
        "type": "crowdstrike",
        "base_url": base,
        "auth": {
            "scheme": "oauth2",
            "token_url": format!("{base}/oauth2/token"),
            "client_id": CS_CLIENT,
            "client_secret": secret_ref,
        },
    }))
}

/// The standard hosts, and the real connector with the right client secret.
pub(crate) async fn falcon() -> (Fake<Falcon>, Arc<dyn Connector>, Secrets) {
    let secrets = Secrets::new();
    let fake = Fake::start(falcon_world()).await;
    let config = falcon_config(fake.base(), &secrets.file("cs-secret", CS_SECRET));
    (fake, connector("falcon", config), secrets)
}

/// CrowdStrike in the connector contract suite: contain, then lift; the host as before. The fake's
/// sensor settles each pending change after every operation.
pub(crate) async fn contract_case() -> Case {
    let (fake, cs, secrets) = falcon().await;
    let sensor = fake.clone();
    Case {
        name: "crowdstrike",
        connector: cs,
        subject: "WKS-ALICE-01".into(),
        pairs: vec![(Operation::ContainHost, Operation::LiftContainment)],
        state: fake_state(&fake, |v| format!("{:#?}", v.devices)),
        settle: Some(Box::new(move || sensor.vendor(|v| v.settle()))),
        keep: Box::new((fake, secrets)),
    }
}
