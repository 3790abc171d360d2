//! The `deprovd policy` subcommands: `test`, `check`, `eval` and `diff`.
//!
//! Exit codes: 0 success; 1 a test failed, the bundle does not compile, a lint error, or coverage is
//! under `--min-coverage`; 2 the command could not run (unreadable files, bad config); 3 (`diff`) the
//! candidate would newly contain more distinct subjects than `--max-new`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::app::Settings;
use crate::config::Problems;
use crate::guard::Guards;
use crate::pipeline::{Decider, Replay};
use crate::plan::Planner;
use crate::policy::{Policies, PolicyConfig, Severity, TestOptions};
use crate::telemetry::Metrics;

/// `deprovd policy test` options.
#[derive(Debug, Clone, Default)]
pub struct TestArgs {
    pub dir: PathBuf,
    /// Only tests whose `data.pkg.test_name` matches this regular expression.
    pub run: Option<String>,
    /// List passing tests and every test's `print()` output.
    pub verbose: bool,
    pub json: bool,
    pub coverage: bool,
    /// Fail (exit 1) when total coverage is under this percentage; implies `coverage`.
    pub min_coverage: Option<f64>,
}

/// `deprovd policy test DIR`: compile as the server would (`config`'s engine), run the tests.
pub fn policy_test(config: &PolicyConfig, args: &TestArgs) -> ExitCode {
    let run = match args.run.as_deref().map(regex::Regex::new).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("deprovd policy test: --run: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = TestOptions {
        config: config.clone(),
        run,
        coverage: args.coverage || args.min_coverage.is_some(),
    };
    let report = match crate::policy::run_tests(&args.dir, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("deprovd policy test: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = crate::policy::write_report(&report, args.json, args.verbose, &mut out) {
        eprintln!("deprovd policy test: {e}");
        return ExitCode::from(2);
    }
    let below = match (args.min_coverage, &report.coverage) {
        (Some(min), Some(c)) if c.percent < min => {
            eprintln!(
                "deprovd policy test: coverage {:.2}% is under --min-coverage {min}%",
                c.percent
            );
            true
        }
        _ => false,
    };
    if report.ok() && !below {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `deprovd policy check DIR`: compile + lint; every finding as `file:line:col: severity: message`
/// (or a JSON array). Exit 1 on an error, or on a warning with `strict`.
pub fn policy_check(config: &PolicyConfig, dir: &Path, json: bool, strict: bool) -> ExitCode {
    let findings = match crate::policy::check_bundle(dir, config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("deprovd policy check: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &findings)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        findings
            .iter()
            .try_for_each(|f| writeln!(out, "{f}"))
            .and_then(|()| {
                let errors = findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .count();
                writeln!(
                    out,
                    "{}: {errors} error(s), {} warning(s)",
                    dir.display(),
                    findings.len() - errors
                )
            })
    };
    if let Err(e) = written {
        eprintln!("deprovd policy check: cannot write: {e}");
        return ExitCode::from(2);
    }
    let failing = findings
        .iter()
        .any(|f| f.severity == Severity::Error || strict);
    if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Why a command could not set up its evaluator.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("{0}")]
    Config(Problems),
    #[error("{0}")]
    Guards(#[from] crate::guard::GuardError),
}

/// The pure decision path (normalize → policy → plan → guards) for `policy_dir`, with the
/// configured connectors' capabilities (or one instance per built-in spec), as `simulate` builds it.
fn decider(settings: &Settings, policy: &PolicyConfig) -> Result<Decider, SetupError> {
    let policies = Policies::load(policy)?;
    let caps = super::capabilities(settings).map_err(|p| SetupError::Config(Problems(p)))?;
    let identity = crate::identity::Identity::new(&settings.identity);
    let guards = Guards::with_identity(&settings.guards, identity.clone())?;
    Ok(Decider::new(
        policies,
        Planner::from_capabilities(caps).with_identity(identity),
        guards,
        Arc::new(Metrics::new()),
    ))
}

fn with_dir(settings: &Settings, dir: Option<&Path>) -> PolicyConfig {
    let mut cfg = settings.policy.clone();
    if let Some(d) = dir {
        cfg.dir = Some(d.to_path_buf());
    }
    cfg
}

/// `deprovd policy eval` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EvalArgs {
    /// Alert file, or `-` for stdin: one document (a multi-event delivery gives one result each).
    #[arg(long)]
    pub alert: PathBuf,
    /// Alert format (default: detect).
    #[arg(long)]
    pub format: Option<String>,
    /// Policy directory (default: the config's, or ./policies).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// The input's `now` (RFC 3339; default: the current time).
    #[arg(long)]
    pub now: Option<DateTime<Utc>>,
    /// Show which `decisions` rules fired and what each produced.
    #[arg(long)]
    pub explain: bool,
}

/// `deprovd policy eval`: for each document, the exact input handed to Rego, the decisions, the
/// planned actions and problems (and with `explain`, each `decisions` rule's output), as JSON.
pub fn policy_eval(settings: &Settings, args: &EvalArgs) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("deprovd policy eval: {e}");
        ExitCode::from(2)
    };
    let decider = match decider(settings, &with_dir(settings, args.policies.as_deref())) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let mut bytes = Vec::new();
    let read = if args.alert.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(&args.alert).map(|b| bytes = b)
    };
    if let Err(e) = read {
        return fail(&format!("cannot read {}: {e}", args.alert.display()));
    }
    let parts = match decider
        .registry
        .normalize_all(&bytes, args.format.as_deref())
    {
        Ok(p) => p,
        Err(e) => {
            return fail(&format!(
                "cannot normalize the alert ({}): {e}",
                e.reason_code()
            ));
        }
    };
    let now = args.now.unwrap_or_else(Utc::now);
    let context = serde_json::Value::Null;
    let mut out = std::io::stdout().lock();
    let mut code = ExitCode::SUCCESS;
    for part in parts {
        let mut doc = serde_json::json!({
            "policy_digest": decider.policies.digest().as_ref(),
            "engine": decider.policies.backend(),
        });
        if let Some(at) = &part.at {
            doc["at"] = at.clone().into();
        }
        match part.result {
            Err(e) => {
                doc["error"] = e.to_string().into();
                code = ExitCode::from(2);
            }
            Ok(alert) => {
                match decider.policies.input_document(&alert, now, &context) {
                    Ok(input) => doc["input"] = input,
                    Err(e) => doc["input_error"] = e.to_string().into(),
                }
                if args.explain {
                    match decider.policies.explain(&alert, now, &context) {
                        Ok(x) => doc["explain"] = serde_json::to_value(x).unwrap_or_default(),
                        Err(e) => doc["explain_error"] = e.to_string().into(),
                    }
                }
                let planned = decider.decide_alert_at(alert, now);
                doc["decisions"] = serde_json::to_value(&planned.decisions).unwrap_or_default();
                doc["actions"] = planned.actions.iter().map(super::planned_json).collect();
                doc["problems"] = serde_json::to_value(&planned.problems).unwrap_or_default();
            }
        }
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if writeln!(out, "{text}").is_err() {
            break;
        }
    }
    code
}

/// `deprovd policy diff` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffArgs {
    /// The candidate bundle's directory.
    #[arg(long)]
    pub candidate: PathBuf,
    /// JSONL file of alerts to replay.
    #[arg(long, conflicts_with = "since", required_unless_present = "since")]
    pub alerts: Option<PathBuf>,
    /// Replay the alerts the state store retained over this last stretch (e.g. `7d`); needs
    /// `[policy] retain_alerts` on the server.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Alert format of --alerts (default: detect per line).
    #[arg(long = "alert-format")]
    pub format: Option<String>,
    /// The live bundle (default: the config's policy.dir, or ./policies).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Exit 3 when the candidate would newly contain more distinct subjects than this.
    #[arg(long)]
    pub max_new: Option<usize>,
    /// JSON output (`--format json`).
    #[arg(long = "format", default_value = "text", action = clap::ArgAction::Set, value_parser = parse_json_format)]
    pub json: bool,
}

/// `--format text|json` as a flag: true for `json`.
fn parse_json_format(s: &str) -> Result<bool, String> {
    match s {
        "text" => Ok(false),
        "json" => Ok(true),
        _ => Err("expected `text` or `json`".into()),
    }
}

/// `deprovd policy diff`: replay alerts through the live bundle and the candidate; print per subject
/// and action what would change.
pub fn policy_diff(settings: &Settings, args: &DiffArgs) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("deprovd policy diff: {e}");
        ExitCode::from(2)
    };
    let live_cfg = with_dir(settings, args.policies.as_deref());
    let mut cand_cfg = live_cfg.clone();
    cand_cfg.dir = Some(args.candidate.clone());
    let (live, candidate) = match (decider(settings, &live_cfg), decider(settings, &cand_cfg)) {
        (Ok(l), Ok(c)) => (l, c),
        (Err(e), _) => return fail(&format!("live bundle {}: {e}", live_cfg.location())),
        (_, Err(e)) => return fail(&format!("candidate {}: {e}", cand_cfg.location())),
    };
    let mut replay = Replay::new(&live, &candidate);
    match (&args.alerts, args.since) {
        (Some(alerts), None) => {
            for item in crate::ingest::file::read_jsonl(alerts) {
                let bytes = match item {
                    Ok((_, b)) => b,
                    Err(e) => return fail(&format!("cannot read {}: {e}", alerts.display())),
                };
                match live.registry.normalize_all(&bytes, args.format.as_deref()) {
                    Ok(parts) => {
                        for p in parts {
                            match p.result {
                                Ok(alert) => replay.add(alert),
                                Err(_) => replay.unreadable(),
                            }
                        }
                    }
                    Err(_) => replay.unreadable(),
                }
            }
        }
        (None, Some(since)) => {
            if let Err(e) = replay_retained(settings, since, &mut replay) {
                return fail(&e);
            }
        }
        _ => return fail(&"give exactly one of --alerts FILE and --since DURATION"),
    }
    let report = replay.finish();
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        report.write_text(&mut out)
    };
    if let Err(e) = written {
        return fail(&format!("cannot write: {e}"));
    }
    match args.max_new {
        Some(max) if report.new_contained_subjects > max => {
            eprintln!(
                "deprovd policy diff: the candidate would newly contain {} distinct subjects (--max-new {max})",
                report.new_contained_subjects
            );
            ExitCode::from(3)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Alerts read per store round trip by `policy diff --since`.
const RETAINED_PAGE: usize = 1000;

/// Why the retained alerts could not be replayed.
#[derive(Debug, thiserror::Error)]
enum RetainedError {
    #[error("--since is out of range: {0}")]
    Since(#[from] chrono::OutOfRangeError),
    #[error("cannot start a runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("cannot read retained alerts from the state store: {0}")]
    Store(#[from] crate::ledger::StoreError),
}

/// Feed `replay` every alert the configured store retained over the last `since`, oldest first,
/// each decided at the time it was received. Reads only: nothing is written to the store.
fn replay_retained(
    settings: &Settings,
    since: std::time::Duration,
    replay: &mut Replay<'_>,
) -> Result<(), RetainedError> {
    if settings.policy.retain_alerts.is_none() {
        eprintln!(
            "deprovd policy diff: note: [policy] retain_alerts is not set in this config; the store may hold no alerts"
        );
    }
    let from = Utc::now() - chrono::TimeDelta::from_std(since)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = settings.state.open().await?;
        let mut after = None;
        loop {
            let page = store
                .retained_alerts(from, after.as_ref(), RETAINED_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.cursor());
            let full = page.len() == RETAINED_PAGE;
            for r in page {
                replay.add_at(r.alert, r.received_at);
            }
            if !full {
                break;
            }
        }
        Ok(())
    })
}

/// `deprovd policy keygen --out OUT`: OUT.key (PKCS#8 PEM, 0600) and OUT.pub (base64).
pub fn policy_keygen(out: &Path) -> ExitCode {
    let (private, public) = match crate::policy::generate_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("deprovd policy keygen: {e}");
            return ExitCode::from(2);
        }
    };
    let with_ext = |ext: &str| {
        let mut p = out.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (key_path, pub_path) = (with_ext(".key"), with_ext(".pub"));
    let written = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .and_then(|mut f| f.write_all(private.as_bytes()))
            .and_then(|()| std::fs::write(&pub_path, format!("{public}\n")))
    };
    match written {
        Ok(()) => {
            super::print_line(format_args!(
                "private key: {} (keep it off the servers)\npublic key:  {} (set [policy] verify_key to it)",
                key_path.display(),
                pub_path.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "deprovd policy keygen: cannot write {}: {e}",
                key_path.display()
            );
            ExitCode::from(2)
        }
    }
}

/// `deprovd policy sign DIR --key KEY`: write DIR/.signature.
pub fn policy_sign(dir: &Path, key: &Path) -> ExitCode {
    match crate::policy::sign_bundle(dir, key) {
        Ok(_) => {
            super::print_line(format_args!(
                "signed {}: {}",
                dir.display(),
                dir.join(crate::policy::SIGNATURE_FILE).display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("deprovd policy sign: {e}");
            ExitCode::from(2)
        }
    }
}

/// `deprovd policy verify DIR --key PUB`: exit 0 when the signature matches, 1 when it does not, 2
/// when the files or key cannot be read.
pub fn policy_verify(dir: &Path, key: &Path) -> ExitCode {
    use crate::policy::{PolicyError, SignatureError};
    match crate::policy::verify_bundle(dir, key) {
        Ok(()) => {
            super::print_line(format_args!("{}: signature ok", dir.display()));
            ExitCode::SUCCESS
        }
        Err(
            e @ PolicyError::Signature(
                SignatureError::Missing | SignatureError::Malformed | SignatureError::Mismatch,
            ),
        ) => {
            eprintln!("deprovd policy verify: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("deprovd policy verify: {e}");
            ExitCode::from(2)
        }
    }
}
