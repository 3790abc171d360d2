//! The deployable kit in `deploy/`, each piece checked by the tool its users will run it with:
//! compose (`docker compose config`, then the binary with exactly the environment compose passes),
//! Prometheus rules (`promtool check rules`, `promtool test rules`), the Grafana dashboard (its
//! PromQL through `promtool`, its metrics against a running deprovd), Kubernetes manifests
//! (`kubernetes-validate`), the systemd unit (`systemd-analyze verify` and `security`), the
//! Dockerfile (`hadolint`), plus the CLI's behaviour in pipes and containers.
//!
//! A missing tool skips its test with a loud message on a developer's machine and fails it in CI
//! (`CI` set): scripts/test.sh installs every one of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod cli;
mod compose;
mod docker;
mod grafana;
mod kubernetes;
mod prometheus;
mod systemd;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_deprovd");

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

/// A tool by name: the repository's `.venv/bin` first (PyPI tools), then `PATH`. `None` (after a
/// loud message) when it is missing on a developer's machine; a panic in CI, where it must be.
pub(crate) fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let venv = repo().join(".venv/bin").join(name);
    let found = if venv.is_file() {
        Some(venv)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{name}` is required in CI; install it with: {install}"
        );
        eprintln!(
            "\n*** SKIPPED: `{name}` is not installed; this test checks nothing here. \
             Install it with: {install} (scripts/test.sh does) ***\n"
        );
    }
    found
}

/// Run a command to completion; its output, whatever the exit status.
pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// stdout and stderr of an output, for assertion messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A YAML file as JSON values (one per document).
pub(crate) fn yaml_docs(path: &Path) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| {
            serde_json::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .collect()
}

/// Every metric name `deprovd_*` or `process_*` a PromQL expression (or any text) mentions.
pub(crate) fn metric_names(expr: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names: Vec<String> = expr
        .split(|c: char| !is_name(c))
        .filter(|w| w.starts_with("deprovd_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether the Prometheus text exposition `exposition` has at least one sample of `name`.
pub(crate) fn exports(exposition: &str, name: &str) -> bool {
    exposition.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}
