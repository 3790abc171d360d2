//! `deprovd validate`: every problem a config has, in one run, each with its key path — the parse
//! (every unknown key and bad type), values, unset secret references, connector specs and instances,
//! guards that can never work, the policy bundle and the API's TLS files — without connecting
//! anywhere.

use std::path::Path;

use crate::app::Settings;
use crate::config::{Problem, Problems};
use crate::connectors::InstanceConfig;
use crate::connectors::http::load_specs;
use crate::policy::Policies;

/// Run `deprovd validate` on `path` (none: the dev setup) with environment `env`; print `ok` or
/// every problem, and return the exit code (0 or 2).
pub fn validate(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> u8 {
    let (problems, warnings) = findings(path, env);
    let name = path.map_or_else(
        || "(no config: the dev setup)".to_string(),
        |p| p.display().to_string(),
    );
    if problems.is_empty() {
        // Valid but unsafe in production (relaxed Redis durability): said, never refused.
        for w in warnings {
            eprintln!("warning: {w}");
        }
        super::print_line(format_args!("{name}: ok"));
        0
    } else {
        eprint!("{name}: {}", Problems(problems));
        2
    }
}

/// Every problem `deprovd validate` reports for `path` under `env`.
pub fn validate_problems(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<Problem> {
    findings(path, env).0
}

/// The problems and, for settings that parsed, the warnings.
fn findings(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> (Vec<Problem>, Vec<Problem>) {
    let (settings, mut problems) = Settings::check(path, env);
    let mut warnings = Vec::new();
    if let Some(settings) = settings {
        problems.extend(deep_problems(&settings));
        warnings = settings.warnings();
    }
    (problems, warnings)
}

/// The checks beyond the config's own values: connector specs and instances, guards that no
/// configured connector can satisfy, the policy bundle (compiled), and the API's TLS files (read
/// and paired as startup would).
fn deep_problems(settings: &Settings) -> Vec<Problem> {
    let mut problems = Vec::new();
    let specs = match load_specs(settings.connector_specs.as_deref()) {
        Ok(specs) => Some(specs),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    let mut lists_groups = false;
    for (name, c) in &settings.connectors {
        let c = match c {
            InstanceConfig::Http(c) => c,
            InstanceConfig::Ldap(..) | InstanceConfig::AwsIam(_) => {
                lists_groups = true;
                continue;
            }
        };
        let Some(specs) = &specs else { continue };
        if let Some(spec) = specs.get(&c.kind) {
            lists_groups |= spec.has_operation(crate::connectors::http::spec::GROUPS);
            crate::connectors::http::check_against_spec(
                &format!("connectors.{name}"),
                c,
                spec,
                &mut problems,
            );
        } else {
            problems.push(Problem::new(
                format!("connectors.{name}.type"),
                format!(
                    "unknown connector type `{}` (known: {})",
                    c.kind,
                    specs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if specs.is_some()
        && !lists_groups
        && settings
            .guards
            .protected_groups
            .iter()
            .any(|g| !g.trim().is_empty())
    {
        problems.push(Problem::new(
            "guards.protected_groups",
            crate::guard::GuardError::NoGroupSource.to_string(),
        ));
    }
    if let Err(e) = Policies::load(&settings.policy) {
        problems.push(Problem::new("policy", e.to_string()));
    }
    if let Some(tls) = &settings.api.tls {
        problems.extend(tls.check_files("api.tls"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, env: Vec<(String, String)>) -> Vec<Problem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        validate_problems(Some(&path), env)
    }

    #[test]
    fn the_dev_setup_validates_without_a_file() {
        assert_eq!(validate_problems(None, Vec::new()), Vec::new());
    }

    #[test]
    fn unset_secrets_and_unsatisfiable_guards_are_problems() {
        let problems = check(
            "[guards]\nprotected_groups = [\"Break-Glass\"]\n\
             [connectors.hook]\ntype = \"webhook\"\nbase_url = \"https://hooks.example\"\n\
             auth = { scheme = \"hmac\", secret = \"env:DEPROVD_TEST_UNSET_SECRET_7\" }\n",
            Vec::new(),
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"guards.protected_groups"), "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("DEPROVD_TEST_UNSET_SECRET_7")),
            "{problems:?}"
        );
    }

    #[test]
    fn unreadable_tls_files_are_problems_with_their_key_paths() {
        let problems = check(
            "[api.tls]\ncert = \"/nonexistent/api.crt\"\nkey = \"/nonexistent/api.key\"\n\
             client_ca = \"/nonexistent/clients.pem\"\n",
            Vec::new(),
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in ["api.tls.cert", "api.tls.key", "api.tls.client_ca"] {
            assert!(paths.contains(&want), "missing {want} in {problems:?}");
        }
    }

    #[test]
    fn a_missing_policy_directory_is_called_a_directory_once() {
        let problems = check("[policy]\ndir = \"/nonexistent/policies\"\n", Vec::new());
        let p = problems
            .iter()
            .find(|p| p.path == "policy")
            .expect("policy problem");
        assert!(p.message.contains("policy directory"), "{p}");
        assert!(p.message.contains("policy init"), "{p}");
        assert!(!p.message.contains("No such file"), "no OS error text: {p}");
    }
}
