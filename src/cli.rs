//! What the `deprovd` subcommands do beyond parsing: deep validation, the policy test runner,
//! `simulate`, and the connectors preflight. Each returns the process exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Problem, Problems, Settings};
use crate::connectors::Operation;
use crate::connectors::http::load_specs;
use crate::guard::Guards;
use crate::pipeline::Decider;
use crate::plan::Planner;
use crate::policy::Policies;
use crate::telemetry::Metrics;

/// Everything `validate` can check without connecting anywhere: the config itself, the connector
/// specs and instances, and the policy bundle (compiled). Secrets are not resolved.
pub fn validate_deep(settings: &Settings) -> Result<(), Problems> {
    let mut problems = settings.validate();
    match load_specs(settings.connector_specs.as_deref()) {
        Ok(specs) => {
            for (name, c) in &settings.connectors {
                let crate::connectors::InstanceConfig::Http(c) = c else {
                    continue;
                };
                if !specs.contains_key(&c.kind) {
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
        }
        Err(p) => problems.extend(p),
    }
    if let Err(e) = Policies::load(&settings.policy) {
        problems.push(Problem::new("policy", e.to_string()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(problems))
    }
}

/// `deprovd policy test DIR`: exit 0 when every test passes, 1 when one fails, 2 when the bundle does
/// not load.
pub fn policy_test(dir: &Path) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match crate::policy::run_tests(dir, &mut out) {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("deprovd policy test: {e}");
            ExitCode::from(2)
        }
    }
}

/// What each connector instance can do, from specs alone (no secrets): the configured instances, or,
/// when none are configured, one instance per built-in spec named after its type, so `simulate`
/// shows the actions a typical deployment would take.
fn capabilities(
    settings: &Settings,
) -> Result<BTreeMap<String, BTreeSet<Operation>>, Vec<Problem>> {
    let specs = load_specs(settings.connector_specs.as_deref())?;
    let caps = |kind: &str| -> BTreeSet<Operation> {
        specs
            .get(kind)
            .map(|s| {
                Operation::ALL
                    .into_iter()
                    .filter(|op| s.supports(*op))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(if settings.connectors.is_empty() {
        specs.keys().map(|k| (k.clone(), caps(k))).collect()
    } else {
        settings
            .connectors
            .iter()
            .map(|(name, c)| {
                let ops = match c {
                    crate::connectors::InstanceConfig::Http(h) => caps(&h.kind),
                    crate::connectors::InstanceConfig::Ldap(..) => {
                        crate::connectors::ldap::SUPPORTED.into_iter().collect()
                    }
                    crate::connectors::InstanceConfig::AwsIam(_) => {
                        crate::connectors::aws_iam::SUPPORTED.into_iter().collect()
                    }
                };
                (name.clone(), ops)
            })
            .collect()
    })
}

/// `deprovd simulate`: one JSON line per input line —
/// `{"line", "alert", "decisions", "actions", "problems"}` or `{"line", "error"}` — and no side effects.
pub fn simulate(
    settings: &Settings,
    alerts: &Path,
    format: Option<&str>,
    policies: Option<&Path>,
) -> ExitCode {
    let mut policy_cfg = settings.policy.clone();
    if let Some(dir) = policies {
        policy_cfg.dir = dir.to_path_buf();
    }
    let policies = match Policies::load(&policy_cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("deprovd simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let caps = match capabilities(settings) {
        Ok(c) => c,
        Err(p) => {
            eprint!("{}", Problems(p));
            return ExitCode::from(2);
        }
    };
    let guards = match Guards::new(&settings.guards) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("deprovd simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let decider = Decider::new(
        policies,
        Planner::from_capabilities(caps),
        guards,
        Arc::new(Metrics::new()),
    );
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for item in crate::ingest::file::read_jsonl(alerts) {
        let line = match item {
            Ok((n, bytes)) => match decider.decide(&bytes, format) {
                Ok(p) => serde_json::json!({
                    "line": n,
                    "alert": p.alert,
                    "decisions": p.decisions,
                    "actions": p.actions.iter().map(|a| serde_json::json!({
                        "connector": a.connector,
                        "operation": a.operation,
                        "subject": a.subject,
                        "state": a.state,
                        "note": a.note,
                        "rule": a.rule,
                        "key": a.key,
                    })).collect::<Vec<_>>(),
                    "problems": p.problems,
                    "policy_digest": p.policy_digest,
                }),
                Err(e) => {
                    serde_json::json!({"line": n, "error": e.to_string(), "code": e.reason_code()})
                }
            },
            Err(e) => {
                eprintln!("deprovd simulate: cannot read {}: {e}", alerts.display());
                failed = true;
                break;
            }
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `deprovd connectors check`: preflight every configured instance and print a table; exit 1 when any
/// check fails.
pub async fn connectors_check(settings: &Settings) -> ExitCode {
    let connectors = match crate::connectors::build_all(
        &settings.connectors,
        settings.connector_specs.as_deref(),
    ) {
        Ok(c) => c,
        Err(p) => {
            eprint!("{}", Problems(p));
            return ExitCode::from(2);
        }
    };
    if connectors.is_empty() {
        println!("no connectors configured");
        return ExitCode::SUCCESS;
    }
    let reports = futures::future::join_all(connectors.values().map(|c| c.check())).await;
    let width = reports
        .iter()
        .map(|r| r.connector.len())
        .max()
        .unwrap_or(9)
        .max(9);
    println!("{:<width$}  {:<6}  DETAIL", "CONNECTOR", "STATUS");
    let mut ok = true;
    for r in &reports {
        ok &= r.ok;
        println!(
            "{:<width$}  {:<6}  {}",
            r.connector,
            if r.ok { "ok" } else { "FAILED" },
            r.detail
        );
        if let Some(fix) = &r.fix {
            println!("{:<width$}  {:<6}  fix: {fix}", "", "");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
