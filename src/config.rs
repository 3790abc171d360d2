//! Settings: one TOML file, environment overrides, secrets by reference.
//!
//! Loading is two steps, as in Vector: [`Settings::from_toml`] parses (unknown keys are errors), then the
//! *pure* [`Settings::validate`] checks every value and returns **all** problems with their key paths,
//! before anything connects. Secrets are never inline: a secret field holds `env:NAME` or `file:PATH`
//! ([`SecretRef`]) and is resolved only when the component that needs it is built.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

/// One thing wrong with the configuration, at a dotted key path (`connectors.okta.base_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, printed one per line.
#[derive(Debug, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Where a secret lives: `env:NAME` or `file:PATH`. Inline secrets are refused so that config files can
/// be committed and printed. `Debug` and `Display` show only the reference, never the value.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Parse `env:NAME` / `file:PATH`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`env:{name}` is not a valid environment variable name"
                ));
            }
            Ok(SecretRef::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path".into());
            }
            Ok(SecretRef::File(PathBuf::from(path)))
        } else {
            Err(
                "secrets must be given by reference, as `env:NAME` or `file:PATH`, never inline"
                    .into(),
            )
        }
    }

    /// Read the secret now. Trailing newlines of files are trimmed.
    pub fn resolve(&self) -> Result<SecretString, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(SecretString::from)
                .map_err(|_| format!("environment variable `{name}` is not set")),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| SecretString::from(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display())),
        }
    }
}

impl From<SecretRef> for String {
    fn from(r: SecretRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SecretRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_secrets_are_refused() {
        assert!(SecretRef::parse("hunter2").is_err());
        assert_eq!(
            SecretRef::parse("env:OKTA_TOKEN").unwrap(),
            SecretRef::Env("OKTA_TOKEN".into())
        );
        assert!(SecretRef::parse("env:BAD-NAME").is_err());
    }

    #[test]
    fn debug_never_shows_the_value() {
        // SAFETY of the assertion: the variable is private to this test.
        let r = SecretRef::File("/run/secrets/x".into());
        assert_eq!(format!("{r:?}"), "SecretRef(file:/run/secrets/x)");
    }
}

/// A duration written as `"250ms"`, `"10s"`, `"5m"` in the TOML.
pub type HumanDuration = std::time::Duration;

/// Parse a TOML document into a generic tree, then apply `DEPROVD__A__B=value` environment overrides
/// (double underscore separates key path segments, names are lower-cased; the value is read as a TOML
/// scalar when it parses as one — `true`, `8`, `"x"` — and as a string otherwise).
pub fn apply_env_overrides(
    mut doc: toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> toml::Table {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("DEPROVD__") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let mut table = &mut doc;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            table = entry.as_table_mut().expect("just made a table");
        }
        table.insert(path[path.len() - 1].clone(), parsed);
    }
    doc
}

/// The whole configuration file. Every section has defaults, so an empty file (or none) is a working
/// single-node dev setup: loopback API, embedded ledger under `./deprovd-data`, policies from
/// `./policies`, no Kafka, no connectors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the embedded ledger and the dead-letter file live.
    pub data_dir: PathBuf,
    pub api: crate::api::ApiConfig,
    pub state: crate::ledger::store::StoreConfig,
    pub policy: crate::policy::PolicyConfig,
    /// Kafka source; absent means HTTP ingest only.
    pub kafka: Option<crate::ingest::kafka::KafkaConfig>,
    pub executor: crate::executor::ExecutorConfig,
    pub guards: crate::guard::GuardConfig,
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
            state: Default::default(),
            policy: Default::default(),
            kafka: None,
            executor: Default::default(),
            guards: Default::default(),
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

    /// Pure validation: every problem, with its key path; nothing is connected or resolved.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        self.api.validate("api", &mut p);
        self.state.validate("state", &mut p);
        self.policy.validate("policy", &mut p);
        let formats = crate::alert::NormalizerRegistry::new().names();
        if let Some(k) = &self.kafka {
            k.validate("kafka", &formats, &mut p);
        }
        self.executor.validate("executor", &mut p);
        self.guards.validate("guards", &mut p);
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
mod settings_tests {
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
