//! What the `deprovd` subcommands do beyond parsing: deep validation, the policy test runner,
//! `simulate`, and the connectors preflight. Each returns the process exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::action::Operation;
use crate::app::Settings;
use crate::config::{Problem, Problems};
use crate::connectors::http::load_specs;
use crate::guard::Guards;
use crate::pipeline::Decider;
use crate::plan::Planner;
use crate::policy::Policies;
use crate::telemetry::Metrics;

mod policy;

pub use policy::{
    DiffArgs, EvalArgs, TestArgs, policy_check, policy_diff, policy_eval, policy_keygen,
    policy_sign, policy_test, policy_verify,
};

/// `println!` that ends the process quietly when stdout's reader is gone ([`print_line`]).
macro_rules! out {
    ($($arg:tt)*) => {
        print_line(format_args!($($arg)*))
    };
}

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
                if let Some(spec) = specs.get(&c.kind) {
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

/// What each connector instance can do, from specs alone (no secrets): the configured instances, or,
/// when none are configured, one instance per built-in spec named after its type, so `simulate`
/// shows the actions a typical deployment would take.
pub(crate) fn capabilities(
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
    let identity = crate::identity::Identity::new(&settings.identity);
    let guards = match Guards::with_identity(&settings.guards, identity.clone()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("deprovd simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let decider = Decider::new(
        policies,
        Planner::from_capabilities(caps).with_identity(identity),
        guards,
        Arc::new(Metrics::new()),
    );
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for item in crate::ingest::file::read_jsonl(alerts) {
        // A delivery that splits (an Okta event hook) prints one line per event, with `at`.
        let lines: Vec<serde_json::Value> = match item {
            Ok((n, bytes)) => match decider.decide_all(&bytes, format) {
                Ok(parts) => parts
                    .into_iter()
                    .map(|part| {
                        let mut line = match part.result {
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
                            Err(e) => serde_json::json!({
                                "line": n, "error": e.to_string(), "code": e.reason_code()
                            }),
                        };
                        if let Some(at) = part.at {
                            line["at"] = at.into();
                        }
                        line
                    })
                    .collect(),
                Err(e) => {
                    vec![
                        serde_json::json!({"line": n, "error": e.to_string(), "code": e.reason_code()}),
                    ]
                }
            },
            Err(e) => {
                eprintln!("deprovd simulate: cannot read {}: {e}", alerts.display());
                failed = true;
                break;
            }
        };
        if lines.iter().any(|line| writeln!(out, "{line}").is_err()) {
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
        out!("no connectors configured");
        return ExitCode::SUCCESS;
    }
    let reports = futures::future::join_all(connectors.values().map(|c| c.check())).await;
    let width = reports
        .iter()
        .map(|r| r.connector.len())
        .max()
        .unwrap_or(9)
        .max(9);
    out!("{:<width$}  {:<6}  DETAIL", "CONNECTOR", "STATUS");
    let mut ok = true;
    for r in &reports {
        ok &= r.ok;
        out!(
            "{:<width$}  {:<6}  {}",
            r.connector,
            if r.ok { "ok" } else { "FAILED" },
            r.detail
        );
        if let Some(fix) = &r.fix {
            out!("{:<width$}  {:<6}  fix: {fix}", "", "");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub use crate::ledger::audit_check;

/// `deprovd audit verify`: exit 0 when the trail is intact, 1 when a record was edited, deleted or
/// reordered (naming the first bad one), 2 when the store cannot be read. The embedded store is a
/// single-process file: stop the service first (or use Redis, which any number of readers share).
pub async fn audit_verify(settings: &Settings, from: Option<u64>) -> ExitCode {
    let store = match settings.state.open().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("deprovd audit verify: cannot open the state store: {e}");
            return ExitCode::from(2);
        }
    };
    match audit_check(store.as_ref(), from).await {
        Ok(Ok(n)) => {
            let start = from.unwrap_or(1).max(1);
            if n == 0 {
                out!("audit trail ok: no records from {start}");
            } else {
                out!(
                    "audit trail ok: {n} records verified ({start}..={})",
                    start + n - 1
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            out!("audit trail TAMPERED: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("deprovd audit verify: cannot read the audit trail: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where `deprovd healthcheck` asks by default: the readiness route on the default listen port.
pub const HEALTHCHECK_URL: &str = "http://127.0.0.1:8780/readyz";

/// `deprovd healthcheck`: GET `url` (normally `/readyz`); exit 0 on a 2xx answer, 1 on anything else
/// or no answer within `timeout`. For container health checks, which run in an image with no shell
/// or curl: the answer (the readiness report) goes to stdout or stderr, so `docker inspect` shows
/// why a replica is unhealthy.
pub async fn healthcheck(url: &str, timeout: std::time::Duration) -> ExitCode {
    /// The readiness report is a few dozen bytes; anything longer is cut.
    const MAX_BODY: usize = 4096;
    let client = match crate::net::client(Some(timeout)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("deprovd healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = crate::net::body::read_prefix(resp, MAX_BODY).await;
            let body = String::from_utf8_lossy(&body);
            if status.is_success() {
                out!("{url}: {status} {}", body.trim_end());
                ExitCode::SUCCESS
            } else {
                eprintln!("deprovd healthcheck: {url}: {status} {}", body.trim_end());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            // `{:#}` of anyhow: the error with its causes (e.g. "Connection refused").
            eprintln!("deprovd healthcheck: {url}: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

/// Print one line to stdout. A reader that went away (`deprovd schema alert | head`) ends the
/// process quietly with status 0, as `cat` or `grep` would, instead of a panic and a backtrace;
/// any other write error ends it with status 1 and the reason.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("deprovd: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}
