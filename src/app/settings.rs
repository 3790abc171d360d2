//! [`Settings`]: the whole configuration file, the aggregate of every section's own config struct.
//!
//! It lives here, at the top, because it names every part's config; each part owns its section's
//! type and its pure `validate`, and [`crate::config`] below them all provides only the shared
//! vocabulary (`Problem`, `SecretRef`, environment overrides).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Problem, Problems, apply_env_overrides};

/// The whole configuration file. Every section has defaults, so an empty file (or none) is a working
/// single-node dev setup: loopback API, embedded ledger under `./deprovd-data`, policies from
/// `./policies`, no Kafka, no connectors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the embedded ledger and the dead-letter file live.
    pub data_dir: PathBuf,
    pub api: crate::api::ApiConfig,
    /// The responders' console under `/console` on the API's port.
    pub console: crate::console::ConsoleConfig,
    pub state: crate::ledger::store::StoreConfig,
    pub policy: crate::policy::PolicyConfig,
    /// Kafka source; absent means HTTP ingest only.
    pub kafka: Option<crate::ingest::kafka::KafkaConfig>,
    pub executor: crate::executor::ExecutorConfig,
    pub guards: crate::guard::GuardConfig,
    /// One spelling per account across systems (domain aliases); see [`crate::identity`].
    pub identity: crate::identity::IdentityConfig,
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// A live action for the same (subject, connector, operation) absorbs new alerts for this long.
    #[serde(with = "humantime_serde")]
    pub coalesce_window: std::time::Duration,
    /// Folder of connector spec files that add to or override the built-in specs.
    pub connector_specs: Option<PathBuf>,
    /// Connector instances by name.
    pub connectors: std::collections::BTreeMap<String, crate::connectors::InstanceConfig>,
    /// Notifications to people (Slack, Teams, signed webhook).
    pub notify: crate::notify::NotifyConfig,
    /// Audit trail options (Kafka mirror).
    pub audit: crate::audit_mirror::AuditConfig,
    /// OpenID Shared Signals: receivers (CAEP/RISC in) and the transmitter (containment out).
    pub ssf: crate::ssf::SsfConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./deprovd-data"),
            api: Default::default(),
            console: Default::default(),
            state: Default::default(),
            policy: Default::default(),
            kafka: None,
            executor: Default::default(),
            guards: Default::default(),
            identity: Default::default(),
            telemetry: Default::default(),
            coalesce_window: std::time::Duration::from_secs(600),
            connector_specs: None,
            connectors: Default::default(),
            notify: Default::default(),
            audit: Default::default(),
            ssf: Default::default(),
        }
    }
}

impl Settings {
    /// Parse TOML text with environment overrides applied; a parse error is one [`Problem`] naming
    /// the key and line.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Problems> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Problems(vec![Problem::new("<file>", e.to_string())]))?;
        let doc = apply_env_overrides(doc, env);
        Settings::deserialize(toml::Value::Table(doc)).map_err(|e| {
            Problems(vec![Problem::new(
                "<file>",
                e.to_string().trim().to_string(),
            )])
        })
    }

    /// Read `path` (or use the defaults when `None`), apply `DEPROVD__*` overrides, validate.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, Problems> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                Problems(vec![Problem::new(
                    "<file>",
                    format!("cannot read {}: {e}", p.display()),
                )])
            })?,
            None => String::new(),
        };
        let settings = Self::from_toml(&text, std::env::vars())?;
        let problems = settings.validate();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(Problems(problems))
        }
    }

    /// Valid but unsafe in production (relaxed Redis durability), with key paths: `deprovd
    /// validate` prints them and startup logs them; neither refuses.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut w = Vec::new();
        self.state.warnings("state", &mut w);
        w
    }

    /// Pure validation: every problem, with its key path; nothing is connected or resolved.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        self.api.validate("api", &mut p);
        self.console.validate("console", &mut p);
        self.state.validate("state", &mut p);
        self.policy.validate("policy", &mut p);
        let formats = crate::alert::NormalizerRegistry::new().names();
        if let Some(k) = &self.kafka {
            k.validate("kafka", &formats, &mut p);
        }
        self.executor.validate("executor", &mut p);
        self.guards.validate("guards", &mut p);
        self.identity.validate("identity", &mut p);
        self.guards
            .validate_connectors("guards", self.connectors.keys(), &mut p);
        self.telemetry.validate("telemetry", &mut p);
        if self.coalesce_window.is_zero() {
            p.push(Problem::new("coalesce_window", "must be greater than zero"));
        }
        for (name, c) in &self.connectors {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                p.push(Problem::new(
                    format!("connectors.{name}"),
                    "connector names use letters, digits, `-` and `_` only (they appear in metrics)",
                ));
            }
            c.validate(&format!("connectors.{name}"), &mut p);
        }
        self.notify.validate("notify", &mut p);
        self.audit.validate("audit", self.kafka.is_some(), &mut p);
        self.ssf.validate("ssf", &mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_a_working_dev_setup() {
        let s = Settings::from_toml("", Vec::new()).unwrap();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        assert_eq!(s.api.listen, "127.0.0.1:8780");
        assert!(s.kafka.is_none());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Settings::from_toml("[api]\nlisten_addr = \"x\"\n", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        assert!(
            err.to_string().contains("in `api`"),
            "names the table: {err}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let s = Settings::from_toml(
            "coalesce_window = \"0s\"\n[api]\nlisten = \"nope\"\n[executor]\nbatch = 0\n[guards]\nprotected = [\"a[\"]\n",
            Vec::new(),
        )
        .unwrap();
        let paths: Vec<String> = s.validate().into_iter().map(|p| p.path).collect();
        for want in [
            "api.listen",
            "executor.batch",
            "guards.protected[0]",
            "coalesce_window",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "missing {want} in {paths:?}"
            );
        }
    }

    #[test]
    fn environment_overrides_win() {
        let s = Settings::from_toml(
            "[api]\nlisten = \"127.0.0.1:1\"\n",
            vec![
                (
                    "DEPROVD__API__LISTEN".to_string(),
                    "127.0.0.1:9999".to_string(),
                ),
                ("DEPROVD__EXECUTOR__BATCH".to_string(), "7".to_string()),
                ("OTHER".to_string(), "x".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(s.api.listen, "127.0.0.1:9999");
        assert_eq!(s.executor.batch, 7);
    }
}
