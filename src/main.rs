//! The `deprovd` command: thin — parse, load config, call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deprovd::Settings;

#[derive(Parser)]
#[command(
    name = "deprovd",
    version,
    about = "Policy-driven security auto-deprovisioning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (no config: a loopback dev server with an embedded ledger).
    Run {
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a config file and print every problem with its key path.
    Validate {
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: PathBuf,
    },
    /// Print a JSON Schema.
    Schema {
        #[arg(value_parser = ["alert"])]
        what: String,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Replay alerts through normalization, policies and planning; print what would be done, do nothing.
    Simulate {
        /// JSONL file, one alert per line.
        #[arg(long)]
        alerts: PathBuf,
        /// Alert format (default: detect per line).
        #[arg(long)]
        format: Option<String>,
        /// Policy directory (default: the config's, or ./policies).
        #[arg(long)]
        policies: Option<PathBuf>,
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Connector tools.
    Connectors {
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
    /// Lock a subject out now (disable + revoke sessions everywhere, unless narrowed).
    Lockout {
        /// Email, username or per-system id.
        subject: String,
        /// Why (required; stored and audited).
        #[arg(long)]
        reason: String,
        /// Only these connector instances (repeatable).
        #[arg(long = "connector")]
        connectors: Vec<String>,
        /// Only these operations (repeatable), e.g. `remove_group_memberships`.
        #[arg(long = "operation", value_parser = parse_operation)]
        operations: Vec<deprovd::Operation>,
        /// Incident or ticket reference.
        #[arg(long)]
        ticket: Option<String>,
        /// Hold every action until another person approves it (`deprovd approve ID`).
        #[arg(long)]
        require_approval: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Undo a lockout (its id) or one action (its 64-hex key) from the recorded pre-state.
    Restore {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a lockout's live per-connector status (or one action's, by key).
    Status {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List actions awaiting approval (held by policy, the breaker, or a four-eyes lockout).
    Approvals {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve a held action by its id (a ledger key) so it runs; `--reject` cancels it instead.
    /// The approver must not be the requester.
    Approve {
        id: String,
        /// Reject instead of approve: the action is cancelled.
        #[arg(long)]
        reject: bool,
        /// Why, for the audit trail.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Ask a running deprovd whether it is ready (GET /readyz): exit 0 if so, 1 if not or no answer.
    /// For container health checks: needs no shell, curl or token.
    Healthcheck {
        /// The URL to GET.
        #[arg(long, default_value = deprovd::cli::HEALTHCHECK_URL)]
        url: String,
        /// Give up after this long (e.g. `3s`).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain in the configured state store; exit 1 naming the first edited, deleted or
    /// reordered record, 2 when the store cannot be read.
    Verify {
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
        /// Start at this record (the one before it is trusted as the anchor).
        #[arg(long)]
        from: Option<u64>,
    },
}

/// Where the API is and who is calling: for the client subcommands.
#[derive(clap::Args)]
struct ServerArgs {
    /// deprovd API base URL.
    #[arg(long, env = "DEPROVD_URL", default_value = deprovd::client::DEFAULT_SERVER)]
    server: String,
    /// Bearer token (role responder to act, approver to approve, viewer to read).
    #[arg(long, env = "DEPROVD_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_operation(s: &str) -> Result<deprovd::Operation, UnknownOperation> {
    deprovd::Operation::parse(s).ok_or_else(|| UnknownOperation(s.to_string()))
}

/// An `--operation` value that names no operation; clap prints the message.
#[derive(Debug, thiserror::Error)]
#[error("unknown operation `{0}` (known: {known})", known = deprovd::Operation::ALL.map(|o| o.as_str()).join(", "))]
struct UnknownOperation(String);

/// Run `f` to completion on a new multi-threaded runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Run one client subcommand against a deprovd server.
fn client_command(server: ServerArgs, command: deprovd::client::Command) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let token = secrecy::SecretString::from(server.token);
        let result = match deprovd::client::Client::new(&server.server, token) {
            Ok(client) => {
                let mut out = std::io::stdout().lock();
                deprovd::client::run(&client, &command, server.json, &mut out).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("deprovd: {e}");
                e.exit_code()
            }
        }
    })
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Compile the bundle as the server would, then run every `test_*` rule, like `opa test`.
    /// Exit 1 when a test fails, the bundle does not compile, or coverage is under --min-coverage.
    Test {
        /// Policy directory (default: ./policies).
        dir: Option<PathBuf>,
        /// Only tests whose full name (`data.pkg.test_x`) matches this regular expression.
        #[arg(long)]
        run: Option<String>,
        /// List passing tests too, with their print() output.
        #[arg(long, short)]
        verbose: bool,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Report covered and uncovered lines per policy file.
        #[arg(long)]
        coverage: bool,
        /// Exit 1 when total coverage is under this percentage (implies --coverage).
        #[arg(long, value_name = "PERCENT")]
        min_coverage: Option<f64>,
        /// The server's config: its `[policy]` engine and limits are used to compile.
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Compile the bundle as the server would and lint its decisions (unknown actions or modes,
    /// one subject and action decided in two modes); findings as file:line:col. Exit 1 on an error.
    Check {
        /// Policy directory (default: ./policies).
        dir: Option<PathBuf>,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Warnings fail too.
        #[arg(long)]
        strict: bool,
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Evaluate one alert: print the exact input handed to Rego, the decisions and the planned
    /// actions, as JSON. Changes nothing.
    Eval {
        /// Alert file, or `-` for stdin.
        #[arg(long)]
        alert: PathBuf,
        /// Alert format (default: detect).
        #[arg(long)]
        format: Option<String>,
        /// Policy directory (default: the config's, or ./policies).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// The input's `now` (RFC 3339; default: the current time).
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
        /// Show which `decisions` rules fired and what each produced.
        #[arg(long)]
        explain: bool,
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Replay alerts through the live bundle and a candidate; print per subject and action what
    /// would change. Exit 3 when more than --max-new distinct subjects would be newly contained.
    Diff {
        /// The candidate bundle's directory.
        #[arg(long)]
        candidate: PathBuf,
        /// JSONL file of alerts to replay.
        #[arg(long, conflicts_with = "since", required_unless_present = "since")]
        alerts: Option<PathBuf>,
        /// Replay the alerts the state store retained over this last stretch (e.g. `7d`); needs
        /// `[policy] retain_alerts` on the server.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Alert format of --alerts (default: detect per line).
        #[arg(long = "alert-format")]
        alert_format: Option<String>,
        /// The live bundle (default: the config's policy.dir, or ./policies).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Exit 3 when the candidate would newly contain more distinct subjects than this.
        #[arg(long)]
        max_new: Option<usize>,
        /// `text` or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Bundle signatures: key generation, signing, verification.
    #[command(flatten)]
    Sign(SignCommand),
}

#[derive(Subcommand)]
enum SignCommand {
    /// Write a new Ed25519 key pair: OUT.key (private, PKCS#8 PEM, mode 0600) and OUT.pub (public,
    /// base64) — the file `[policy] verify_key` names.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a bundle directory: writes DIR/.signature over every policy and data file.
    Sign {
        dir: PathBuf,
        /// The private key (`keygen`'s OUT.key).
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a bundle's signature as the server does with `verify_key`; exit 1 when it does not match.
    Verify {
        dir: PathBuf,
        /// The public key (`keygen`'s OUT.pub).
        #[arg(long)]
        key: PathBuf,
    },
}

/// The `[policy]` section of `config`, or the defaults without one.
fn policy_config(config: Option<&std::path::Path>) -> Result<deprovd::PolicyConfig, ExitCode> {
    match config {
        Some(_) => load(config).map(|s| s.policy),
        None => Ok(deprovd::PolicyConfig::default()),
    }
}

fn policy_command(command: PolicyCommand) -> ExitCode {
    let default_dir = || PathBuf::from("policies");
    match command {
        PolicyCommand::Sign(SignCommand::Keygen { out }) => deprovd::cli::policy_keygen(&out),
        PolicyCommand::Sign(SignCommand::Sign { dir, key }) => {
            deprovd::cli::policy_sign(&dir, &key)
        }
        PolicyCommand::Sign(SignCommand::Verify { dir, key }) => {
            deprovd::cli::policy_verify(&dir, &key)
        }
        PolicyCommand::Test {
            dir,
            run,
            verbose,
            format,
            coverage,
            min_coverage,
            config,
        } => match policy_config(config.as_deref()) {
            Ok(cfg) => deprovd::cli::policy_test(
                &cfg,
                &deprovd::cli::TestArgs {
                    dir: dir.unwrap_or_else(default_dir),
                    run,
                    verbose,
                    json: format == "json",
                    coverage,
                    min_coverage,
                },
            ),
            Err(code) => code,
        },
        PolicyCommand::Check {
            dir,
            format,
            strict,
            config,
        } => match policy_config(config.as_deref()) {
            Ok(cfg) => deprovd::cli::policy_check(
                &cfg,
                &dir.unwrap_or_else(default_dir),
                format == "json",
                strict,
            ),
            Err(code) => code,
        },
        PolicyCommand::Eval {
            alert,
            format,
            policies,
            now,
            explain,
            config,
        } => match load(config.as_deref()) {
            Ok(s) => deprovd::cli::policy_eval(
                &s,
                &deprovd::cli::EvalArgs {
                    alert,
                    format,
                    policies,
                    now,
                    explain,
                },
            ),
            Err(code) => code,
        },
        PolicyCommand::Diff {
            candidate,
            alerts,
            since,
            alert_format,
            policies,
            max_new,
            format,
            config,
        } => match load(config.as_deref()) {
            Ok(s) => deprovd::cli::policy_diff(
                &s,
                &deprovd::cli::DiffArgs {
                    candidate,
                    alerts,
                    since,
                    format: alert_format,
                    policies,
                    max_new,
                    json: format == "json",
                },
            ),
            Err(code) => code,
        },
    }
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Preflight every configured connector: reachable, credentials valid, permitted. Changes nothing.
    Check {
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    Settings::load(config).map_err(|problems| {
        eprint!("{problems}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            deprovd::init_tracing(&settings.telemetry);
            block_on(async move {
                let app = match deprovd::Application::build(settings).await {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("deprovd cannot start: {e:#}");
                        return ExitCode::from(2);
                    }
                };
                if let Some(token) = app.generated_token() {
                    // Printed once, to stdout only, so a developer can call the API; never logged.
                    deprovd::cli::print_line(format_args!(
                        "deprovd dev admin token (shown once): {token}"
                    ));
                }
                match app.run_until_stopped(deprovd::shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("deprovd failed: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Validate { config } => match load(Some(&config)) {
            Ok(s) => match deprovd::cli::validate_deep(&s) {
                Ok(()) => {
                    for w in s.warnings() {
                        eprintln!("warning: {w}");
                    }
                    deprovd::cli::print_line(format_args!("{}: ok", config.display()));
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprint!("{problems}");
                    ExitCode::from(2)
                }
            },
            Err(code) => code,
        },
        Command::Schema { .. } => {
            deprovd::cli::print_line(format_args!(
                "{}",
                serde_json::to_string_pretty(&deprovd::alert_json_schema()).expect("json")
            ));
            ExitCode::SUCCESS
        }
        Command::Policy { command } => policy_command(command),
        Command::Simulate {
            alerts,
            format,
            policies,
            config,
        } => {
            let settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            deprovd::cli::simulate(&settings, &alerts, format.as_deref(), policies.as_deref())
        }
        Command::Connectors {
            command: ConnectorsCommand::Check { config },
        } => {
            let settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            block_on(deprovd::cli::connectors_check(&settings))
        }
        Command::Lockout {
            subject,
            reason,
            connectors,
            operations,
            ticket,
            require_approval,
            server,
        } => client_command(
            server,
            deprovd::client::Command::Lockout(deprovd::LockoutRequest {
                subject,
                connectors: (!connectors.is_empty()).then_some(connectors),
                operations: (!operations.is_empty()).then_some(operations),
                reason,
                ticket,
                require_approval,
            }),
        ),
        Command::Restore { id, server } => {
            client_command(server, deprovd::client::Command::Restore(id))
        }
        Command::Status { id, server } => {
            client_command(server, deprovd::client::Command::Status(id))
        }
        Command::Approvals { server } => {
            client_command(server, deprovd::client::Command::Approvals)
        }
        Command::Approve {
            id,
            reject,
            comment,
            server,
        } => client_command(
            server,
            deprovd::client::Command::Approve {
                id,
                reject,
                comment,
            },
        ),
        Command::Audit {
            command: AuditCommand::Verify { config, from },
        } => {
            let settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            block_on(deprovd::cli::audit_verify(&settings, from))
        }
        Command::Healthcheck { url, timeout } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(deprovd::cli::healthcheck(&url, timeout)),
    }
}
