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

/// Why a secret reference is malformed or cannot be read. Messages name the reference, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("`env:{0}` is not a valid environment variable name")]
    BadEnvName(String),
    #[error("`file:` needs a path")]
    EmptyPath,
    #[error("secrets must be given by reference, as `env:NAME` or `file:PATH`, never inline")]
    Inline,
    #[error("environment variable `{0}` is not set")]
    EnvUnset(String),
    /// An empty secret is a deployment mistake (a `${VAR:-}` default, an empty file), never a
    /// credential: refused rather than sent, or hashed into an API token anyone could present.
    #[error("`{0}` is empty")]
    Empty(String),
    #[error("cannot read secret file `{path}`: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl SecretRef {
    /// Parse `env:NAME` / `file:PATH`.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(SecretError::BadEnvName(name.to_string()));
            }
            Ok(SecretRef::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SecretError::EmptyPath);
            }
            Ok(SecretRef::File(PathBuf::from(path)))
        } else {
            Err(SecretError::Inline)
        }
    }

    /// Read the secret now. Trailing newlines of files are trimmed; an empty (or all-whitespace)
    /// secret is refused.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        let value = match self {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvUnset(name.clone()))?
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|source| SecretError::File {
                    path: path.display().to_string(),
                    source,
                })?,
        };
        if value.trim().is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(SecretString::from(value))
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

/// One `DEPROVD__…` variable that set a value: the dotted key path it set and its name, so a
/// problem with that value blames the variable rather than the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub path: String,
    pub var: String,
}

impl Override {
    /// Whether a problem at `problem_path` is about the value this variable set (the key itself, a
    /// key below it, or the table it was set in when the problem names the key as unknown).
    pub fn blames(&self, problem_path: &str) -> bool {
        problem_path == self.path
            || problem_path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    }
}

/// Name the environment variable behind each problem it caused: ` (set by DEPROVD__API__LISTEN)`
/// is added to the message. The last variable applied to a path wins, as in the document.
pub(crate) fn blame_overrides(problems: &mut [Problem], overrides: &[Override]) {
    for p in problems {
        if let Some(o) = overrides.iter().rev().find(|o| o.blames(&p.path)) {
            p.message = format!(
                "{} (set by environment variable `{}`, not the file)",
                p.message, o.var
            );
        }
    }
}

/// [`apply_env_overrides`], also returning which variable set which key path.
pub(crate) fn apply_env_overrides_traced(
    mut doc: toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> (toml::Table, Vec<Override>) {
    let mut applied = Vec::new();
    // Sorted, so that the outcome never depends on the environment's order.
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(n, _)| n.starts_with("DEPROVD__"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("DEPROVD__") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        applied.push(Override {
            path: path.join("."),
            var: name.clone(),
        });
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
    (doc, applied)
}

/// Every secret reference in `doc` (a string `env:NAME` or `file:PATH` at any depth) that cannot be
/// resolved now: the variable is unset or empty, the file is missing, unreadable or empty. Found by
/// walking the document, so no section can forget to report its own; values are never printed.
pub(crate) fn unresolved_secrets(doc: &toml::Table) -> Vec<Problem> {
    fn walk(path: &str, v: &toml::Value, out: &mut Vec<Problem>) {
        match v {
            toml::Value::String(s) if s.starts_with("env:") || s.starts_with("file:") => {
                let Ok(r) = SecretRef::parse(s) else { return };
                if let Err(e) = r.resolve() {
                    out.push(Problem::new(path, e.to_string()));
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            toml::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (k, v) in doc {
        walk(k, v, &mut out);
    }
    out
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
    fn an_empty_secret_file_is_refused_naming_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " \n").unwrap();
        let e = SecretRef::File(path.clone()).resolve().unwrap_err();
        assert!(matches!(e, SecretError::Empty(_)), "{e}");
        assert_eq!(e.to_string(), format!("`file:{}` is empty", path.display()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let ok = SecretRef::File(path).resolve().unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&ok), "s3cret");
    }

    #[test]
    fn a_problem_with_an_overridden_value_names_the_variable() {
        let (doc, overrides) = apply_env_overrides_traced(
            toml::Table::new(),
            vec![("DEPROVD__API__LISTEN".to_string(), "nope".to_string())],
        );
        assert_eq!(doc["api"]["listen"].as_str(), Some("nope"));
        let mut problems = vec![
            Problem::new("api.listen", "is not host:port"),
            Problem::new("api.listen_x", "other"),
        ];
        blame_overrides(&mut problems, &overrides);
        assert!(
            problems[0].message.contains("`DEPROVD__API__LISTEN`"),
            "{}",
            problems[0]
        );
        assert_eq!(problems[1].message, "other");
    }

    #[test]
    fn unresolved_secret_references_are_found_anywhere_in_the_document() {
        let doc: toml::Table = toml::from_str(
            "[a]\nt = \"env:DEPROVD_TEST_SURELY_UNSET_42\"\nok = \"plain\"\n[[b]]\nf = \"file:/nonexistent/x\"\n",
        )
        .unwrap();
        let p = unresolved_secrets(&doc);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["a.t", "b[0].f"], "{p:?}");
        assert!(p[0].message.contains("is not set"), "{}", p[0]);
    }

    #[test]
    fn debug_never_shows_the_value() {
        // SAFETY of the assertion: the variable is private to this test.
        let r = SecretRef::File("/run/secrets/x".into());
        assert_eq!(format!("{r:?}"), "SecretRef(file:/run/secrets/x)");
    }
}
