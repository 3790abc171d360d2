//! `deprovd run`: build the application, print the dev banner when deprovd made up its own admin
//! token, run until a signal, and turn every way of failing into a non-zero exit with its cause.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::{Application, Settings};

/// The throwaway data directory of `run --dev`: removed when the process ends normally.
pub struct DevDir(PathBuf);

impl DevDir {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for DevDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Turn `settings` into Vault-style dev mode: a fresh ledger and dead-letter files in a temp dir
/// (nothing persists), the loopback listener over plain HTTP (no `[api.tls]`, even from an
/// environment override), and the embedded policies unless a dir was given.
pub fn dev_settings(settings: &mut Settings) -> std::io::Result<DevDir> {
    let dir = std::env::temp_dir().join(format!("deprovd-dev-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    settings.api.tls = None;
    settings.data_dir = dir.clone();
    settings.state.backend = crate::ledger::store::Backend::Embedded;
    settings.state.path = dir.join("ledger");
    Ok(DevDir(dir))
}

/// The lines printed once to stdout when deprovd generated (or was given) its own admin token:
/// where it listens, what it serves, and the `export` a responder pastes to use the CLI.
pub fn banner(url: &str, token: &str, policies: &str, data_dir: &std::path::Path) -> String {
    format!(
        "deprovd dev admin token (shown once): {token}\n\
         deprovd is listening on {url} ({policies}; ledger in {data})\n\
         \n    export DEPROVD_URL={url} DEPROVD_TOKEN={token}\n",
        data = data_dir.display(),
    )
}

/// Build and run until SIGTERM/Ctrl-C. Exit 0 after a clean stop; 2 when it cannot start (config,
/// policies, connectors, the listener); 1 when a part fails after start (the pipeline cannot be
/// built, a task panics, the listener dies) — never a half-alive process answering with the wrong
/// cause.
pub async fn run(settings: Settings, dev_token: Option<String>) -> ExitCode {
    if dev_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        eprintln!("deprovd cannot start: --dev-token (DEPROVD_DEV_TOKEN) is empty");
        return ExitCode::from(2);
    }
    let policies = settings.policy.location();
    let data_dir = settings.data_dir.clone();
    let app = match Application::build_with_dev_token(settings, dev_token).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("deprovd cannot start: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(token) = app.generated_token() {
        // Printed once, to stdout only, so a developer can call the API; never logged. One write,
        // and its failure ignored: a reader that took the first line and left (a supervisor, a test)
        // must not stop the server, as `print_line`'s quiet exit on a broken pipe would.
        use std::io::Write;
        let text = banner(&app.url(), token, &policies, &data_dir);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    match app.run_until_stopped(crate::app::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deprovd failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_carries_a_ready_to_paste_export() {
        let b = banner(
            "http://127.0.0.1:8780",
            "dpv_x",
            "the embedded starter policies",
            std::path::Path::new("/tmp/d"),
        );
        assert!(
            b.contains("export DEPROVD_URL=http://127.0.0.1:8780 DEPROVD_TOKEN=dpv_x"),
            "{b}"
        );
        assert!(
            b.contains("deprovd dev admin token (shown once): dpv_x"),
            "{b}"
        );
    }

    #[test]
    fn dev_mode_uses_a_fresh_embedded_ledger_removed_at_the_end() {
        let mut s = Settings::from_toml("[state]\nbackend = \"redis\"\n", Vec::new()).unwrap();
        let dir = dev_settings(&mut s).unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.is_dir());
        assert_eq!(s.state.backend, crate::ledger::store::Backend::Embedded);
        assert!(s.state.path.starts_with(&path));
        drop(dir);
        assert!(!path.exists());
    }
}
