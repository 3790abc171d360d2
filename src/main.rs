//! The `deprovd` command: thin — parse, load config, call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use deprovd::Settings;
use deprovd::cli::args::{
    ActionsCommand, AuditCommand, BreakerCommand, Cli, Command, ConnectorsCommand, PolicyCommand,
    ServerArgs, SignCommand,
};
use deprovd::client::views::{ActionsFilter, AuditFilter, View};

/// jemalloc, not the system allocator: see Cargo.toml and docs/performance-2026-12.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Run `f` to completion on a new multi-threaded runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Run `f` to completion on a new single-threaded runtime (client commands: one request at a time).
fn block_on_current<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Run one responder view against a deprovd server.
fn view(server: ServerArgs, view: View) -> ExitCode {
    client_command(server, deprovd::client::Command::View(view))
}

/// Run one client subcommand against a deprovd server.
fn client_command(server: ServerArgs, command: deprovd::client::Command) -> ExitCode {
    block_on_current(async move {
        let json = server.wants_json();
        let token = secrecy::SecretString::from(server.token);
        let result =
            match deprovd::client::Client::with_tls(&server.server, token, &server.tls.options()) {
                Ok(client) => {
                    let mut out = std::io::stdout().lock();
                    deprovd::client::run(&client, &command, json, &mut out).await
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

/// Run `f` with the `[policy]` section of `config`, or the defaults without one.
fn with_policy_config(
    config: Option<&std::path::Path>,
    f: impl FnOnce(&deprovd::PolicyConfig) -> ExitCode,
) -> ExitCode {
    match config {
        Some(_) => with_settings(config, |s| f(&s.policy)),
        None => f(&deprovd::PolicyConfig::default()),
    }
}

fn policy_command(command: PolicyCommand) -> ExitCode {
    let default_dir = || PathBuf::from("policies");
    match command {
        PolicyCommand::Init { dir, force } => deprovd::cli::policy_init(&dir, force),
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
        } => with_policy_config(config.as_deref(), |cfg| {
            deprovd::cli::policy_test(
                cfg,
                &deprovd::cli::TestArgs {
                    dir: dir.unwrap_or_else(default_dir),
                    run,
                    verbose,
                    json: format == "json",
                    coverage,
                    min_coverage,
                },
            )
        }),
        PolicyCommand::Check {
            dir,
            format,
            strict,
            config,
        } => with_policy_config(config.as_deref(), |cfg| {
            deprovd::cli::policy_check(
                cfg,
                &dir.unwrap_or_else(default_dir),
                format == "json",
                strict,
            )
        }),
        PolicyCommand::Eval { args, config } => {
            with_settings(config.as_deref(), |s| deprovd::cli::policy_eval(&s, &args))
        }
        PolicyCommand::Diff { args, config } => {
            with_settings(config.as_deref(), |s| deprovd::cli::policy_diff(&s, &args))
        }
    }
}

/// Load the settings from `config` (or the defaults and the environment) and run `f` with them;
/// a config with problems prints every one and exits 2 without calling `f`.
fn with_settings(
    config: Option<&std::path::Path>,
    f: impl FnOnce(Settings) -> ExitCode,
) -> ExitCode {
    match Settings::load(config) {
        Ok(settings) => f(settings),
        Err(problems) => {
            eprint!("{problems}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            dev,
            listen,
            dev_token,
        } => with_settings(config.as_deref(), |mut settings| {
            let dev_dir = if dev {
                match deprovd::cli::dev_settings(&mut settings) {
                    Ok(dir) => Some(dir),
                    Err(e) => {
                        eprintln!("deprovd cannot start: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                None
            };
            if let Some(listen) = listen {
                settings.api.listen = listen;
            }
            deprovd::init_tracing(&settings.telemetry);
            let code = block_on(deprovd::cli::run(settings, dev_token));
            drop(dev_dir);
            code
        }),
        Command::Validate { config } => {
            let code = deprovd::cli::validate(config.as_deref(), std::env::vars());
            ExitCode::from(code)
        }
        Command::Schema { what } => {
            if what == "openapi" {
                // Byte for byte docs/openapi.json (print_line adds the final newline back).
                let text = deprovd::openapi_json();
                deprovd::cli::print_line(format_args!("{}", text.trim_end_matches('\n')));
            } else {
                deprovd::cli::print_line(format_args!(
                    "{}",
                    serde_json::to_string_pretty(&deprovd::alert_json_schema()).expect("json")
                ));
            }
            ExitCode::SUCCESS
        }
        Command::Policy { command } => policy_command(command),
        Command::Simulate {
            alerts,
            allow_problems,
            format,
            policies,
            config,
        } => with_settings(config.as_deref(), |settings| {
            deprovd::cli::simulate(
                &settings,
                &alerts,
                format.as_deref(),
                policies.as_deref(),
                allow_problems,
            )
        }),
        Command::Connectors {
            command: ConnectorsCommand::Check { config },
        } => with_settings(config.as_deref(), |settings| {
            block_on(deprovd::cli::connectors_check(&settings))
        }),
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
        Command::Actions { command } => match command {
            ActionsCommand::List {
                subject,
                state,
                alert,
                connector,
                since,
                limit,
                server,
            } => view(
                server,
                View::Actions(ActionsFilter {
                    subject,
                    state,
                    alert,
                    connector,
                    since,
                    limit,
                }),
            ),
            ActionsCommand::Show { id, server } => view(server, View::ActionShow(id)),
            ActionsCommand::Retry { id, server } => view(server, View::ActionRetry(id)),
        },
        Command::Lockouts {
            subject,
            limit,
            before,
            server,
        } => view(
            server,
            View::Lockouts {
                subject,
                limit,
                before,
            },
        ),
        Command::Breaker { command, server } => match command {
            None | Some(BreakerCommand::Status) => view(server, View::Breaker),
            Some(BreakerCommand::Reset { scope }) => view(server, View::BreakerReset(scope)),
        },
        Command::Audit {
            command:
                AuditCommand::Tail {
                    subject,
                    alert,
                    action,
                    since,
                    limit,
                    server,
                },
        } => view(
            server,
            View::AuditTail(AuditFilter {
                subject,
                alert,
                action,
                since,
                limit,
            }),
        ),
        Command::Completions { shell } => deprovd::cli::completions(shell),
        Command::Man => deprovd::cli::man_page(),
        Command::Audit {
            command: AuditCommand::Verify { config, from },
        } => with_settings(config.as_deref(), |settings| {
            block_on(deprovd::cli::audit_verify(&settings, from))
        }),
        Command::Healthcheck { url, timeout, tls } => {
            block_on_current(deprovd::cli::healthcheck(&url, timeout, &tls.options()))
        }
    }
}
