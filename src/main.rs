//! The `deprovd` command: thin — parse, load config, call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use deprovd::Settings;
use deprovd::cli::args::{
    ActionsCommand, AuditCommand, BreakerCommand, Cli, Command, ConnectorsCommand, PolicyCommand,
    ServerArgs,
};
use deprovd::client::views::{ActionsFilter, AuditFilter, View};

/// Run `f` to completion on a new multi-threaded runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let json = server.wants_json();
        let token = secrecy::SecretString::from(server.token);
        let result = match deprovd::client::Client::new(&server.server, token) {
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

fn load(config: Option<&std::path::Path>) -> Result<Settings, ExitCode> {
    Settings::load(config).map_err(|problems| {
        eprint!("{problems}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            dev,
            listen,
            dev_token,
        } => {
            let mut settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
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
        }
        Command::Validate { config } => {
            let code = deprovd::cli::validate(config.as_deref(), std::env::vars());
            ExitCode::from(code)
        }
        Command::Schema { .. } => {
            deprovd::cli::print_line(format_args!(
                "{}",
                serde_json::to_string_pretty(&deprovd::alert_json_schema()).expect("json")
            ));
            ExitCode::SUCCESS
        }
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("policies"));
            deprovd::cli::policy_test(&dir)
        }
        Command::Policy {
            command: PolicyCommand::Init { dir, force },
        } => deprovd::cli::policy_init(&dir, force),
        Command::Simulate {
            alerts,
            allow_problems,
            format,
            policies,
            config,
        } => {
            let settings = match load(config.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            deprovd::cli::simulate(
                &settings,
                &alerts,
                format.as_deref(),
                policies.as_deref(),
                allow_problems,
            )
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
