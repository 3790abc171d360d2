//! The declarative HTTP connector runtime: one YAML spec per target type in `connectors/`.
//!
//! Adding a SaaS target means adding a spec file, not code: [`spec`] defines and compiles the file
//! format, [`runtime`] executes it, [`auth`] holds the schemes (those are code). Instances come from the
//! main config as [`ConnectorConfig`] (`[connectors.<name>]`) and are built by [`build_connectors`].
//! Built-in specs are compiled into the binary so it works from any directory; a file with the same name
//! in the configured spec directory overrides the built-in one.
//!
//! ```toml
//! [connectors.scim-prod]
//! type = "scim"
//! base_url = "https://idp.example.com/scim/v2"
//! auth = { scheme = "bearer", token = "env:SCIM_TOKEN" }
//! vars = { user_attribute = "userName" }
//! timeout = "10s"
//! concurrency = 8
//! max_attempts = 8
//! lookup_cache = { ttl = "60s", not_found_ttl = "10s", max_entries = 10000 }
//! ```

pub(crate) mod auth;
pub(crate) mod lookup_cache;
pub(crate) mod ratelimit;
pub(crate) mod runtime;
pub(crate) mod spec;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

pub(crate) use auth::AuthConfig;
pub(crate) use runtime::{EndpointParts, HttpConnector, HttpConnectorParts};
pub(crate) use spec::Spec;

use crate::config::Problem;
use crate::connectors::ConnectorSet;

/// Specs shipped inside the binary: (file name, source).
pub(crate) const BUILTIN_SPECS: &[(&str, &str)] = &[
    (
        "crowdstrike.yaml",
        include_str!("../../../connectors/crowdstrike.yaml"),
    ),
    ("entra.yaml", include_str!("../../../connectors/entra.yaml")),
    (
        "google.yaml",
        include_str!("../../../connectors/google.yaml"),
    ),
    (
        "keycloak.yaml",
        include_str!("../../../connectors/keycloak.yaml"),
    ),
    ("okta.yaml", include_str!("../../../connectors/okta.yaml")),
    ("scim.yaml", include_str!("../../../connectors/scim.yaml")),
    ("slack.yaml", include_str!("../../../connectors/slack.yaml")),
    (
        "github.yaml",
        include_str!("../../../connectors/github.yaml"),
    ),
    (
        "webhook.yaml",
        include_str!("../../../connectors/webhook.yaml"),
    ),
];

/// Loaded specs by type name.
pub(crate) type SpecSet = BTreeMap<String, Arc<Spec>>;

/// One `[connectors.<name>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// The spec's `name` (`scim`, `webhook`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Root of the target's API; step paths are appended. `https://` unless the host is loopback.
    pub base_url: String,
    /// Which scheme and where its secrets live.
    pub auth: AuthConfig,
    /// Values for the spec's templates (`vars.*`), over the spec's `defaults`.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    /// Per HTTP request.
    #[serde(
        default = "crate::connectors::default_timeout",
        with = "humantime_serde"
    )]
    pub timeout: Duration,
    /// Operations in flight at once against this instance.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts per action before it is failed and dead-lettered (used by the executor); unset means
    /// `executor.retry.max_attempts`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// How long `lookup` results (subject → the target's id) are reused; see `lookup_cache.rs`.
    #[serde(default)]
    pub lookup_cache: lookup_cache::LookupCacheConfig,
    /// Overrides for the spec's named `endpoints` (another root URL, other credentials).
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// The operations this instance offers (each defined by its spec). Unset: the spec's
    /// `default_operations`, else all it defines — for `webhook`, only `notify`.
    #[serde(default)]
    pub operations: Option<Vec<crate::action::Operation>>,
}

/// `[connectors.<name>.endpoints.<endpoint>]`: where one of the spec's further APIs lives for this
/// instance and which credentials it takes. Both optional: by default the spec's URL (else `base_url`)
/// and the instance's `auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

fn default_concurrency() -> usize {
    8
}

impl ConnectorConfig {
    /// Pure checks of one instance (no spec, no secret, no network). `path` is `connectors.<name>`.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.kind.trim().is_empty() {
            problems.push(Problem::new(
                format!("{path}.type"),
                "must name a connector spec",
            ));
        }
        check_base_url(&format!("{path}.base_url"), &self.base_url, problems);
        self.auth.validate(&format!("{path}.auth"), problems);
        for (name, ep) in &self.endpoints {
            let p = format!("{path}.endpoints.{name}");
            if let Some(url) = &ep.base_url {
                check_base_url(&format!("{p}.base_url"), url, problems);
            }
            if let Some(auth) = &ep.auth {
                auth.validate(&format!("{p}.auth"), problems);
            }
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            problems.push(Problem::new(
                format!("{path}.timeout"),
                "must be between 1ms and 5m",
            ));
        }
        if !(1..=1024).contains(&self.concurrency) {
            problems.push(Problem::new(
                format!("{path}.concurrency"),
                "must be between 1 and 1024",
            ));
        }
        if self.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            problems.push(Problem::new(
                format!("{path}.max_attempts"),
                "must be between 1 and 100",
            ));
        }
        self.lookup_cache
            .validate(&format!("{path}.lookup_cache"), problems);
        if self.operations.as_ref().is_some_and(Vec::is_empty) {
            problems.push(Problem::new(
                format!("{path}.operations"),
                "must name at least one operation (omit it for the spec's default)",
            ));
        }
    }
}

/// A root URL credentials will be sent to: https (http only to loopback), no query, fragment or
/// userinfo. `key` is the config path reported.
fn check_base_url(key: &str, base_url: &str, problems: &mut Vec<Problem>) {
    match reqwest::Url::parse(base_url) {
        Err(e) => problems.push(Problem::new(
            key.to_string(),
            format!("`{base_url}` is not a URL: {e}"),
        )),
        Ok(url) => {
            let loopback = crate::net::is_loopback_url(&url);
            match url.scheme() {
                "https" => {}
                "http" if loopback => {}
                "http" => problems.push(Problem::new(
                    key.to_string(),
                    "plain http would expose credentials; use https (http is allowed only for loopback)",
                )),
                s => problems.push(Problem::new(
                    key.to_string(),
                    format!("scheme `{s}` is not supported; use https"),
                )),
            }
            if url.query().is_some() || url.fragment().is_some() {
                problems.push(Problem::new(
                    key.to_string(),
                    "must not have a query or fragment",
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                problems.push(Problem::new(
                    key.to_string(),
                    "must not embed credentials; use `auth`",
                ));
            }
        }
    }
}

/// Load the built-in specs, then every `*.yaml`/`*.yml` of `dir` (overriding built-ins of the same file
/// name). Every problem of every file is returned; `deprovd validate` prints them.
pub fn load_specs(dir: Option<&Path>) -> Result<SpecSet, Vec<Problem>> {
    let mut sources: BTreeMap<String, (String, String)> = BTreeMap::new(); // file → (origin, text)
    for (file, src) in BUILTIN_SPECS {
        sources.insert(
            file.to_string(),
            (format!("built-in {file}"), src.to_string()),
        );
    }
    let mut problems = Vec::new();
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Err(e) => problems.push(Problem::new(
                dir.display().to_string(),
                format!("cannot read connector spec directory: {e}"),
            )),
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let is_yaml = matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml")
                    );
                    let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                        continue;
                    };
                    if !is_yaml || !path.is_file() {
                        continue;
                    }
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            sources.insert(file.to_string(), (path.display().to_string(), text));
                        }
                        Err(e) => problems.push(Problem::new(
                            path.display().to_string(),
                            format!("cannot read: {e}"),
                        )),
                    }
                }
            }
        }
    }
    let mut specs = SpecSet::new();
    for (file, (_origin, text)) in &sources {
        match Spec::parse(file, text) {
            Ok(spec) => {
                if specs.contains_key(&spec.name) {
                    problems.push(Problem::new(
                        file.clone(),
                        format!("a second spec named `{}`", spec.name),
                    ));
                } else {
                    specs.insert(spec.name.clone(), Arc::new(spec));
                }
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

/// Build every configured HTTP connector: validate each instance, match it to its spec, check its auth
/// scheme and vars against the spec, resolve its secrets. All problems are reported together, with
/// paths `connectors.<name>.<key>`.
pub fn build_connectors(
    configs: &BTreeMap<String, ConnectorConfig>,
    spec_dir: Option<&Path>,
) -> Result<ConnectorSet, Vec<Problem>> {
    let specs = load_specs(spec_dir)?;
    let client =
        crate::net::client(None).map_err(|e| vec![Problem::new("connectors", e.to_string())])?;
    let mut problems = Vec::new();
    let mut set = ConnectorSet::new();
    for (name, cfg) in configs {
        if let Some(c) = build_one(name, cfg, &specs, &client, &mut problems) {
            set.insert(name.clone(), Arc::new(c));
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// Build one instance; problems are appended, `None` when there were any.
pub fn build_one(
    name: &str,
    cfg: &ConnectorConfig,
    specs: &SpecSet,
    client: &reqwest::Client,
    problems: &mut Vec<Problem>,
) -> Option<HttpConnector> {
    let path = format!("connectors.{name}");
    let before = problems.len();
    cfg.validate(&path, problems);
    let Some(spec) = specs.get(&cfg.kind) else {
        problems.push(Problem::new(
            format!("{path}.type"),
            format!(
                "unknown connector type `{}`; available: {}",
                cfg.kind,
                specs.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
        return None;
    };
    check_against_spec(&path, cfg, spec, problems);
    let mut vars: Map<String, Value> = spec
        .defaults
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &cfg.vars {
        vars.insert(k.clone(), v.clone());
    }
    if problems.len() > before {
        return None;
    }
    let auth = match cfg.auth.resolve() {
        Ok(a) => a,
        Err(e) => {
            problems.push(Problem::new(format!("{path}.auth"), e.to_string()));
            return None;
        }
    };
    let base_url = reqwest::Url::parse(&cfg.base_url).ok()?;
    let mut endpoints = BTreeMap::new();
    for (ep, default_url) in &spec.endpoints {
        let c = cfg.endpoints.get(ep);
        let url = c
            .and_then(|c| c.base_url.as_deref())
            .or(default_url.as_deref())
            .unwrap_or(&cfg.base_url);
        let Ok(url) = reqwest::Url::parse(url) else {
            problems.push(Problem::new(
                format!("{path}.endpoints.{ep}.base_url"),
                format!("`{url}` is not a URL"),
            ));
            return None;
        };
        let auth = match c.and_then(|c| c.auth.as_ref()).map(AuthConfig::resolve) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                problems.push(Problem::new(
                    format!("{path}.endpoints.{ep}.auth"),
                    e.to_string(),
                ));
                return None;
            }
        };
        endpoints.insert(
            ep.clone(),
            EndpointParts {
                base_url: url,
                auth,
            },
        );
    }
    Some(HttpConnector::new(HttpConnectorParts {
        name: name.to_string(),
        spec: spec.clone(),
        base_url,
        auth,
        client: client.clone(),
        timeout: cfg.timeout,
        vars,
        concurrency: cfg.concurrency,
        lookup_cache: cfg.lookup_cache.clone(),
        endpoints,
        operations: spec.offered(cfg.operations.as_deref()),
    }))
}

/// What an instance must agree on with its spec: accepted auth schemes (its own and its endpoints'),
/// declared endpoints, vars the spec uses (no typos, none missing). Pure: `deprovd validate` runs it
/// too, without resolving secrets. `path` is `connectors.<name>`.
pub(crate) fn check_against_spec(
    path: &str,
    cfg: &ConnectorConfig,
    spec: &Spec,
    problems: &mut Vec<Problem>,
) {
    let mut auths = vec![(format!("{path}.auth.scheme"), cfg.auth.scheme())];
    for (ep, c) in &cfg.endpoints {
        if !spec.endpoints.contains_key(ep) {
            problems.push(Problem::new(
                format!("{path}.endpoints.{ep}"),
                format!(
                    "{} has no endpoint `{ep}`; it has: {}",
                    spec.file,
                    spec.endpoints
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(a) = &c.auth {
            auths.push((format!("{path}.endpoints.{ep}.auth.scheme"), a.scheme()));
        }
    }
    for (key, scheme) in auths {
        if !spec.auth.iter().any(|s| s == scheme) {
            problems.push(Problem::new(
                key,
                format!(
                    "`{scheme}` is not accepted by {}; use one of: {}",
                    spec.file,
                    spec.auth.join(", ")
                ),
            ));
        }
    }
    for op in cfg.operations.iter().flatten() {
        if !spec.supports(*op) {
            problems.push(Problem::new(
                format!("{path}.operations"),
                format!("{} does not define `{op}`", spec.file),
            ));
        }
    }
    for k in cfg.vars.keys() {
        if !spec.var_refs.contains(k) && !spec.defaults.contains_key(k) {
            problems.push(Problem::new(
                format!("{path}.vars.{k}"),
                format!("{} does not use this var (typo?)", spec.file),
            ));
        }
    }
    for v in &spec.var_refs {
        if !cfg.vars.contains_key(v) && !spec.defaults.contains_key(v) {
            problems.push(Problem::new(
                format!("{path}.vars.{v}"),
                format!("{} needs this var and has no default", spec.file),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_src: &str) -> BTreeMap<String, ConnectorConfig> {
        #[derive(Deserialize)]
        struct Root {
            connectors: BTreeMap<String, ConnectorConfig>,
        }
        toml::from_str::<Root>(toml_src).unwrap().connectors
    }

    #[test]
    fn config_parses_with_defaults() {
        let c = cfg(r#"
[connectors.scim]
type = "scim"
base_url = "https://idp.example.com/scim/v2"
auth = { scheme = "bearer", token = "env:SCIM_TOKEN" }
"#);
        let s = &c["scim"];
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.max_attempts, None, "inherits executor.retry.max_attempts");
        let mut p = Vec::new();
        s.validate("connectors.scim", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn build_reports_every_problem_with_its_path() {
        let c = cfg(r#"
[connectors.a]
type = "scim"
base_url = "http://idp.example.com/scim"
auth = { scheme = "hmac", secret = "env:DEPROVD_TEST_UNSET_A" }
concurrency = 0

[connectors.b]
type = "nosuch"
base_url = "https://x.example.com"
auth = { scheme = "none" }

[connectors.c]
type = "scim"
base_url = "https://idp.example.com"
auth = { scheme = "bearer", token = "env:DEPROVD_TEST_UNSET_C" }

[connectors.d]
type = "scim"
base_url = "https://idp.example.com"
auth = { scheme = "none" }
vars = { user_atribute = "mail" }
"#);
        let Err(problems) = build_connectors(&c, None) else {
            panic!("build must fail")
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "connectors.a.base_url",
                "connectors.a.concurrency",
                "connectors.a.auth.scheme",
                "connectors.b.type",
                "connectors.c.auth",
                "connectors.d.auth.scheme",
                "connectors.d.vars.user_atribute",
            ],
            "{problems:#?}"
        );
        assert!(problems[4].message.contains("DEPROVD_TEST_UNSET_C"));
    }

    #[test]
    fn spec_dir_overrides_builtin_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("webhook.yaml"),
            "name: webhook\nauth: [none]\noperations:\n  notify:\n    steps:\n      - { method: POST, path: /custom }\n",
        )
        .unwrap();
        let specs = load_specs(Some(dir.path())).unwrap();
        assert!(!specs["webhook"].supports(crate::action::Operation::DisableAccount));
        assert!(specs["scim"].supports(crate::action::Operation::DisableAccount));
        std::fs::write(
            dir.path().join("broken.yaml"),
            "name: broken\nauth: [none]\noperations:\n  notify:\n    steps:\n      - { method: POST, path: \"/{{ x\" }\n",
        )
        .unwrap();
        let problems = load_specs(Some(dir.path())).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .to_string()
                .starts_with("broken.yaml: operations.notify[0].path: template error"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_webhook_offers_only_notify_unless_its_config_opts_into_more() {
        use crate::action::Operation;
        let token = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token.path(), "scim-token").unwrap();
        let c = cfg(&format!(
            r#"
[connectors.chatops]
type = "webhook"
base_url = "https://hooks.example"
auth = {{ scheme = "none" }}

[connectors.soar]
type = "webhook"
base_url = "https://soar.example"
auth = {{ scheme = "none" }}
operations = ["notify", "disable_account", "revoke_sessions"]

[connectors.scim]
type = "scim"
base_url = "https://idp.example.com/scim/v2"
auth = {{ scheme = "bearer", token = "file:{}" }}
"#,
            token.path().display()
        ));
        let set = build_connectors(&c, None).unwrap();
        let offered = |name: &str| -> Vec<Operation> {
            Operation::ALL
                .into_iter()
                .filter(|op| set[name].supports(*op))
                .collect()
        };
        assert_eq!(offered("chatops"), [Operation::Notify]);
        assert_eq!(
            offered("soar"),
            [
                Operation::DisableAccount,
                Operation::RevokeSessions,
                Operation::Notify
            ]
        );
        assert!(
            offered("scim").contains(&Operation::DisableAccount),
            "a spec without default_operations offers all it defines"
        );
        // The plan sends a decision naming no connector only where it is offered.
        let planner = crate::plan::Planner::new(&set);
        assert_eq!(
            planner.capabilities()["chatops"],
            std::collections::BTreeSet::from([Operation::Notify])
        );
        assert!(planner.capabilities()["soar"].contains(&Operation::DisableAccount));
    }

    #[tokio::test]
    async fn a_webhook_refuses_an_operation_it_does_not_offer_without_sending_it() {
        use crate::action::Operation;
        use crate::connectors::{OperationRequest, Outcome};
        // Port 9 on loopback: nothing listens, so a request sent would be `retry`, not `failed`.
        let c = cfg(r#"
[connectors.chatops]
type = "webhook"
base_url = "http://127.0.0.1:9"
auth = { scheme = "none" }
"#);
        let set = build_connectors(&c, None).unwrap();
        let r = set["chatops"]
            .execute(&OperationRequest {
                operation: Operation::DisableAccount,
                subject: "jdoe@corp.example".into(),
                idempotency_key: "k".into(),
                pre_state: None,
                context: BTreeMap::new(),
            })
            .await;
        let Outcome::Failed { reason } = &r.outcome else {
            panic!("{r:?}")
        };
        assert!(
            reason.contains("does not offer `disable_account`"),
            "{reason}"
        );
    }

    #[test]
    fn operations_must_be_defined_by_the_spec_and_not_empty() {
        let c = cfg(r#"
[connectors.a]
type = "webhook"
base_url = "https://hooks.example"
auth = { scheme = "none" }
operations = []

[connectors.b]
type = "webhook"
base_url = "https://hooks.example"
auth = { scheme = "none" }
operations = ["remove_group_memberships"]
"#);
        let Err(problems) = build_connectors(&c, None) else {
            panic!("build must fail")
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{text:#?}");
        assert_eq!(problems[0].path, "connectors.a.operations");
        assert_eq!(problems[1].path, "connectors.b.operations");
        assert!(
            problems[1]
                .message
                .contains("does not define `remove_group_memberships`"),
            "{text:#?}"
        );
    }

    #[test]
    fn default_operations_must_name_defined_operations() {
        let problems = Spec::parse(
            "t.yaml",
            "name: t\nauth: [none]\ndefault_operations: [notify, disable_account, lookup]\noperations:\n  notify:\n    steps:\n      - { method: POST, path: /n }\n",
        )
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "t.yaml: default_operations[1]: `disable_account` is not defined under `operations`",
                "t.yaml: default_operations[2]: `lookup` is not an operation an instance can offer",
            ]
        );
    }
}
