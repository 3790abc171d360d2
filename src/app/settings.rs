//! [`Settings`]: the whole configuration file, the aggregate of every section's own config struct.
//!
//! It lives here, at the top, because it names every part's config; each part owns its section's
//! type and its pure `validate`, and [`crate::config`] below them all provides only the shared
//! vocabulary (`Problem`, `SecretRef`, environment overrides).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{
    Override, Problem, Problems, apply_env_overrides_traced, blame_overrides, unresolved_secrets,
};

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
        Self::parse(text, env).map(|p| p.settings)
    }

    /// Parse TOML text with environment overrides applied, reporting **every** unknown key and
    /// wrongly typed value (each is taken out and the rest parsed again), each problem naming the
    /// `DEPROVD__…` variable that set its value, if one did.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Parsed, Problems> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Problems(vec![Problem::new("<file>", e.to_string())]))?;
        let (doc, overrides) = apply_env_overrides_traced(doc, env);
        let mut working = doc.clone();
        let mut problems = Vec::new();
        // Each round takes one bad key out; a document has far fewer keys than this.
        for _ in 0..256 {
            match Settings::deserialize(toml::Value::Table(working.clone())) {
                Ok(settings) if problems.is_empty() => {
                    return Ok(Parsed {
                        settings,
                        doc,
                        overrides,
                    });
                }
                Ok(_) => break,
                Err(e) => {
                    let (problem, remove) = locate(&e);
                    problems.push(problem);
                    if remove.is_empty() || !remove_key(&mut working, &remove) {
                        break;
                    }
                }
            }
        }
        blame_overrides(&mut problems, &overrides);
        Err(Problems(problems))
    }

    /// Read `path` (or use the defaults when `None`), apply `DEPROVD__*` overrides, validate.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, Problems> {
        let text = read_config(path)?;
        let parsed = Self::parse(&text, std::env::vars())?;
        let mut problems = parsed.settings.validate();
        if problems.is_empty() {
            Ok(parsed.settings)
        } else {
            blame_overrides(&mut problems, &parsed.overrides);
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

    /// Everything `deprovd validate` checks in the config itself, all at once: parse problems (every
    /// unknown key and bad type), value problems, and secret references that cannot be resolved now.
    /// Returns the settings when they parsed, for the deeper checks (specs, policies, guards).
    pub fn check(
        path: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> (Option<Self>, Vec<Problem>) {
        let text = match read_config(path) {
            Ok(t) => t,
            Err(p) => return (None, p.0),
        };
        match Self::parse(&text, env) {
            Ok(parsed) => {
                let mut problems = parsed.settings.validate();
                problems.extend(unresolved_secrets(&parsed.doc));
                blame_overrides(&mut problems, &parsed.overrides);
                (Some(parsed.settings), problems)
            }
            Err(p) => (None, p.0),
        }
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

/// A parsed configuration with what produced it.
pub struct Parsed {
    pub settings: Settings,
    /// The document after environment overrides (for checks that walk it, like secret references).
    pub doc: toml::Table,
    /// Which `DEPROVD__…` variable set which key.
    pub overrides: Vec<Override>,
}

fn read_config(path: Option<&std::path::Path>) -> Result<String, Problems> {
    match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            Problems(vec![Problem::new(
                "<file>",
                format!("cannot read {}: {e}", p.display()),
            )])
        }),
        None => Ok(String::new()),
    }
}

/// The problem a deserialization error describes, at its key path, and the path to take out of the
/// document before trying again (empty: cannot continue). toml names the failing table or key as
/// a final ``in `a.b` `` line; an unknown key is named in the message, under that table.
fn locate(e: &toml::de::Error) -> (Problem, Vec<String>) {
    let text = e.to_string();
    let keys: Vec<String> = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `").and_then(|r| r.strip_suffix('`')))
        .map(|k| k.split('.').map(str::to_string).collect())
        .unwrap_or_default();
    let message = e.message().trim();
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(f, _)| f.to_string())
    {
        let rest = message
            .split_once(", ")
            .map(|(_, r)| format!(" ({r})"))
            .unwrap_or_default();
        let mut path = keys;
        path.push(field);
        return (
            Problem::new(path.join("."), format!("unknown key{rest}")),
            path,
        );
    }
    let shown = if keys.is_empty() {
        "<file>".to_string()
    } else {
        keys.join(".")
    };
    (Problem::new(shown, message.to_string()), keys)
}

/// Take the key at `path` out of `doc` (array elements by index); false when it is not there.
fn remove_key(doc: &mut toml::Table, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur: &mut toml::Value = match parents.first() {
        Some(first) => match doc.get_mut(first) {
            Some(v) => v,
            None => return false,
        },
        None => return doc.remove(last).is_some(),
    };
    for seg in &parents[1..] {
        cur = match cur {
            toml::Value::Table(t) => match t.get_mut(seg) {
                Some(v) => v,
                None => return false,
            },
            toml::Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        toml::Value::Table(t) => t.remove(last).is_some(),
        toml::Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
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
        assert_eq!(err.0[0].path, "api.listen_addr", "{err}");
        assert!(
            err.0[0].message.contains("expected one of"),
            "names the known keys: {err}"
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
    fn every_unknown_key_and_bad_type_is_reported_in_one_run() {
        let err = Settings::parse(
            "bogus = 1\n[api]\nlisten_addr = \"x\"\nmax_body_bytes = \"big\"\n[executor]\nbtach = 3\n",
            Vec::new(),
        )
        .err()
        .expect("problems");
        let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "bogus",
            "api.listen_addr",
            "api.max_body_bytes",
            "executor.btach",
        ] {
            assert!(paths.contains(&want), "missing {want} in {:?}", err.0);
        }
    }

    #[test]
    fn a_bad_override_is_blamed_on_its_variable() {
        let err = Settings::parse(
            "",
            vec![("DEPROVD__EXECUTOR__BATCH".to_string(), "lots".to_string())],
        )
        .err()
        .expect("problems");
        assert_eq!(err.0[0].path, "executor.batch", "{:?}", err.0);
        assert!(
            err.0[0].message.contains("DEPROVD__EXECUTOR__BATCH"),
            "{}",
            err.0[0]
        );
        let (_, problems) = Settings::check(
            None,
            vec![("DEPROVD__API__LISTEN".to_string(), "nowhere".to_string())],
        );
        assert!(
            problems
                .iter()
                .any(|p| p.path == "api.listen" && p.message.contains("DEPROVD__API__LISTEN")),
            "{problems:?}"
        );
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
