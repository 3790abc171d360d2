//! The test kit: everything integration tests share, one of each.
//!
//! - [`app`]: the real application in-process from typed settings (`TestApp::builder()`).
//! - [`connector`]: connector instance configs for the builder, and the real connectors built from them.
//! - [`fake`]: one generic vendor fake (recorded requests, one-shot scripted answers, an OAuth token
//!   endpoint).
//! - [`vendors`]: one state model per vendor (Okta, Entra, Google, Keycloak, CrowdStrike, Slack,
//!   GitHub) for the fake to serve.
//! - [`http`]: a scriptable HTTP target and a counting proxy.
//! - [`kafka`]: topics, producing and reading back against the test broker.
//! - [`redis`]: a `redis-server` of the test's own, to SIGKILL and restart from its AOF.
//! - [`contract`]: the connector contract suite (contain → already done → restore → state unchanged).
//! - here: polling with a deadline ([`eventually`]), running the `deprovd` binary ([`deprovd`]),
//!   unique names, policies and alerts.

#![allow(dead_code)]

pub(crate) mod app;
pub(crate) mod connector;
pub(crate) mod contract;
pub(crate) mod fake;
pub(crate) mod http;
pub(crate) mod kafka;
pub(crate) mod redis;
pub(crate) mod vendors;

use std::future::Future;
use std::time::{Duration, Instant};

pub(crate) use app::{TestApp, TestAppBuilder};
pub(crate) use http::{CountingProxy, Reply, Seen, Target};

/// Poll `check` until it returns `Some`, or panic with `what` after `timeout`.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `GET url` until it answers 2xx (a server the test started is up), or panic with `what`
/// after 30 seconds.
pub(crate) async fn until_ok(url: &str, what: &str) {
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), what, || async {
        http.get(url)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
}

/// A helper program the tests run (a Python, a fake server): `$env` when set, then `also`, then
/// `.venv/bin/<name>` in the repository, whichever is a file; else `Err` saying where it looked and
/// how to `install` it.
pub(crate) fn venv_program(
    env: &str,
    also: Option<std::path::PathBuf>,
    name: &str,
    install: &str,
) -> Result<std::path::PathBuf, String> {
    let candidates: Vec<std::path::PathBuf> = std::env::var_os(env)
        .map(Into::into)
        .into_iter()
        .chain(also)
        .chain([std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv/bin")
            .join(name)])
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| format!("{name} not found (looked at {candidates:?}): {install}"))
}

/// Run this tree's `deprovd` binary with `args` and extra environment (no `DEPROVD_URL` or
/// `DEPROVD_TOKEN` from the test's own); (exit code, stdout, stderr).
pub(crate) async fn deprovd(
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovd"))
            .args(&args)
            .env_remove("DEPROVD_URL")
            .env_remove("DEPROVD_TOKEN")
            .envs(env)
            .output()
            .expect("run deprovd");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("deprovd task")
}

/// A random lower-case suffix for topic, group and key names, so tests never share state.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A policy directory holding `files` (name → Rego or data), in a temp dir kept alive by the caller.
pub(crate) fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write policy");
    }
    dir
}

/// A policy that disables every subject of every high or critical alert, on every capable connector.
pub(crate) const DISABLE_ALL_POLICY: &str = r#"package deprovd

import rego.v1

decisions contains d if {
    input.alert.severity in {"high", "critical"}
    some s in input.alert.subjects
    d := {
        "action": "disable_account",
        "subject": s.email,
        "reason": sprintf("%s: %s", [input.alert.category, input.alert.title]),
        "rule": "test.disable_high",
    }
}
"#;

/// A canonical alert for `email` with id `id`.
pub(crate) fn alert_json(id: &str, email: &str) -> String {
    serde_json::json!({
        "id": id,
        "source": {"vendor": "test"},
        "time": chrono::Utc::now().to_rfc3339(),
        "severity": "high",
        "category": "credential_theft",
        "title": "Credential theft detected",
        "subjects": [{"email": email}],
    })
    .to_string()
}

pub(crate) fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// Leave the shared Redis as we found it: drop every key under `prefix` (a test's ledger).
pub(crate) async fn drop_redis_prefix(prefix: &str) {
    let Ok(client) = ::redis::Client::open("redis://127.0.0.1:6379/0") else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{prefix}*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap_or((0, Vec::new()));
        if !keys.is_empty() {
            let _: Result<(), _> = ::redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}
