//! A `redis-server` of the test's own on a free port, to SIGKILL and restart from its data directory
//! (the shared Redis on 6379 must never be killed). The library's Redis tests keep their own
//! equivalent (clusters, sentinels) beside the store, since integration tests cannot reach
//! `#[cfg(test)]` code.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` on `port` working in `dir`; SIGKILLed when dropped. It runs under a `sh` guard
/// that kills it when the test process's end of the guard's stdin closes, so it never outlives the
/// tests.
pub(crate) struct RedisProc {
    pub(crate) port: u16,
    dir: PathBuf,
    args: Vec<String>,
    guard: Option<(Child, ChildStdin, u32)>,
}

impl RedisProc {
    /// `redis-server --port <free> --dir <dir> --save "" <args…>`, answering `PING`.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> RedisProc {
        let mut p = RedisProc {
            port: crate::scim_server::free_port(),
            dir: dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            guard: None,
        };
        p.spawn();
        p
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("redis dir");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("redis-server \"$@\" >/dev/null 2>&1 & echo $!; read _; kill -9 $! 2>/dev/null")
            .arg("sh")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", ""])
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start redis-server");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("redis-server pid");
        let pid: u32 = line.trim().parse().expect("a pid");
        self.guard = Some((child, stdin, pid));
        self.wait_for(true);
    }

    /// Poll until the server answers `PING` (`up`) or refuses connections (`!up`).
    fn wait_for(&self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ping() != up {
            assert!(
                Instant::now() < deadline,
                "redis on {} up = {up}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        ::redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// SIGKILL: no shutdown; only what the server already wrote (and fsynced) survives.
    pub(crate) fn kill9(&mut self) {
        if let Some((mut child, stdin, pid)) = self.guard.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            drop(stdin);
            let _ = child.wait();
            self.wait_for(false);
        }
    }

    /// Start again on the same port from the same directory (its AOF).
    pub(crate) fn restart(&mut self) {
        assert!(self.guard.is_none(), "restart after kill9");
        self.spawn();
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        if let Some((mut child, stdin, pid)) = self.guard.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            drop(stdin);
            let _ = child.wait();
        }
    }
}
