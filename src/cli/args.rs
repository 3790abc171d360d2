//! The `deprovd` command line: every subcommand and flag (clap derive). `main.rs` parses and
//! dispatches; completions and the man page are generated from [`Cli`] too.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Where the client commands look by default: the service's default listen address (the same
/// value as `client::DEFAULT_SERVER`, which sits beside this module in the layer table).
const DEFAULT_SERVER: &str = "http://127.0.0.1:8780";

#[derive(Parser)]
#[command(
    name = "deprovd",
    version,
    about = "Policy-driven security auto-deprovisioning"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service. No config: a loopback server on the embedded starter policies and an
    /// embedded ledger under ./deprovd-data, with an admin token printed once.
    Run {
        #[arg(long, short, env = "DEPROVD_CONFIG", conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// Dev mode: no config file, a throwaway ledger in a temp dir (gone at exit), and a banner
        /// with ready-to-paste `export DEPROVD_URL=… DEPROVD_TOKEN=…`.
        #[arg(long)]
        dev: bool,
        /// Listen here instead of `[api] listen` (e.g. `127.0.0.1:0` for any free port).
        #[arg(long)]
        listen: Option<String>,
        /// The admin token when no `[[api.tokens]]` are configured (default: a random one), so
        /// scripts keep working across restarts. Never use a dev token in production.
        #[arg(long, env = "DEPROVD_DEV_TOKEN", hide_env_values = true)]
        dev_token: Option<String>,
    },
    /// Check a config (default: the dev setup, i.e. no file) and print every problem with its key
    /// path: unknown keys, values, unset secret references, unsatisfiable guards, connector specs,
    /// the policy bundle. Exit 0 when clean, 2 otherwise.
    Validate {
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a JSON Schema: `alert` (the canonical alert), or `openapi` (the HTTP API's OpenAPI 3.1
    /// document, as served at /v1/openapi.json and checked in as docs/openapi.json).
    Schema {
        #[arg(value_parser = ["alert", "openapi"])]
        what: String,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Replay alerts through normalization, policies and planning; print what would be done, do
    /// nothing. Exit 0 when every line decided cleanly, 1 when a line could not be read as an alert or
    /// carried problems (unless `--allow-problems`), 2 when the input or the bundle cannot be read.
    Simulate {
        /// JSONL file, one alert per line; `-` reads standard input.
        #[arg(long)]
        alerts: PathBuf,
        /// Exit 0 even when lines were rejected or had problems (they are still printed).
        #[arg(long)]
        allow_problems: bool,
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
        operations: Vec<crate::connectors::Operation>,
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
    /// Actions in the ledger: list them, show one, retry a failed one (ids by any unique prefix).
    Actions {
        #[command(subcommand)]
        command: ActionsCommand,
    },
    /// Responders' lockouts, newest first (`deprovd status ID` shows one).
    Lockouts {
        /// Only this subject's.
        #[arg(long)]
        subject: Option<String>,
        /// Most shown (default 50, at most 200).
        #[arg(long)]
        limit: Option<usize>,
        /// Older than this lockout id (the `--before` the previous page printed).
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The blast-radius breaker: its scopes (default) or `reset` (admin).
    Breaker {
        #[command(subcommand)]
        command: Option<BreakerCommand>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout: `deprovd man > /usr/local/share/man/man1/deprovd.1`.
    Man,
    /// Ask a running deprovd whether it is ready (GET /readyz): exit 0 if so, 1 if not or no answer.
    /// For container health checks: needs no shell, curl or token.
    Healthcheck {
        /// The URL to GET.
        #[arg(long, default_value = crate::cli::HEALTHCHECK_URL)]
        url: String,
        /// Give up after this long (e.g. `3s`).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        tls: TlsArgs,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The latest audit records through the API, oldest first (like `tail`).
    Tail {
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        alert: Option<String>,
        /// An action key (full).
        #[arg(long)]
        action: Option<String>,
        /// RFC 3339, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        /// Most shown (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        server: ServerArgs,
    },
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
pub struct ServerArgs {
    /// deprovd API base URL.
    #[arg(long, env = "DEPROVD_URL", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Bearer token (role responder to act, approver to approve, viewer to read).
    #[arg(long, env = "DEPROVD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Output: a table for people, or the server's JSON for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Trust for an `https://` deprovd with a private or self-signed CA, and the client certificate
/// one with `[api.tls] client_ca` requires. Verification is never switched off.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM CA certificate(s) to trust for an https:// server, instead of the public roots.
    #[arg(long, env = "DEPROVD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a server that requires one (mutual TLS).
    #[arg(long, env = "DEPROVD_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "DEPROVD_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The client's TLS options.
    pub fn options(&self) -> crate::net::ClientTls {
        crate::net::ClientTls {
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

/// How client commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl ServerArgs {
    /// Whether to print JSON.
    pub fn wants_json(&self) -> bool {
        self.json || self.format == Format::Json
    }
}

#[derive(Subcommand)]
pub enum ActionsCommand {
    /// Actions newest first, filtered.
    List {
        #[arg(long)]
        subject: Option<String>,
        /// planned, awaiting_approval, running, succeeded, failed, skipped, cancelled, restored.
        #[arg(long)]
        state: Option<String>,
        /// The alert id that caused them.
        #[arg(long)]
        alert: Option<String>,
        /// A connector instance.
        #[arg(long)]
        connector: Option<String>,
        /// Created at or after (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Most shown (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One action in full, by its key or any unique prefix.
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Plan a failed action again with a fresh retry budget (responder).
    Retry {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub enum BreakerCommand {
    /// Each scope: open or closed, subjects in the window.
    Status,
    /// Close the breaker and empty its window (admin; audited).
    Reset {
        /// `global` or a connector instance (default: every scope).
        #[arg(long)]
        scope: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
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
        #[command(flatten)]
        args: super::EvalArgs,
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Replay alerts through the live bundle and a candidate; print per subject and action what
    /// would change. Exit 3 when more than --max-new distinct subjects would be newly contained.
    Diff {
        #[command(flatten)]
        args: super::DiffArgs,
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write the embedded starter policies (rules, tests, data, samples) to DIR for editing; then
    /// set `[policy] dir = "DIR"`.
    Init {
        dir: PathBuf,
        /// Overwrite starter files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Bundle signatures: key generation, signing, verification.
    #[command(flatten)]
    Sign(SignCommand),
}

#[derive(Subcommand)]
pub enum SignCommand {
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

#[derive(Subcommand)]
pub enum ConnectorsCommand {
    /// Preflight every configured connector: reachable, credentials valid, permitted. Changes nothing.
    Check {
        #[arg(long, short, env = "DEPROVD_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn parse_operation(s: &str) -> Result<crate::connectors::Operation, UnknownOperation> {
    crate::connectors::Operation::parse(s).ok_or_else(|| UnknownOperation(s.to_string()))
}

/// An `--operation` value that names no operation; clap prints the message.
#[derive(Debug, thiserror::Error)]
#[error("unknown operation `{0}` (known: {known})", known = crate::connectors::Operation::ALL.map(|o| o.as_str()).join(", "))]
pub struct UnknownOperation(String);
