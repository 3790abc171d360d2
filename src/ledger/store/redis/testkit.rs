//! Test-only: `redis-server` processes the tests start themselves on free ports — single nodes
//! (with AOF, as replicas, as sentinels) and a 3-primary Redis Cluster shared by the tests of one
//! process.
//!
//! Each process runs under a small `sh` guard that kills it when the test process's end of the
//! guard's stdin closes, so no Redis outlives the tests even when a test panics or the harness
//! exits without running destructors (the shared cluster lives in a `static`).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Poll `check` every 20 ms until it is true; panic with `what` after `within`.
pub(crate) fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port whose Cluster bus port (`port + 10000`) is free too.
pub(crate) fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().expect("local addr").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// One `redis-server` (or sentinel) on `port`, working in `dir`; SIGKILLed when dropped.
pub(crate) struct RedisProc {
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    args: Vec<String>,
    guard: Option<(Child, ChildStdin, u32)>,
}

impl RedisProc {
    /// Start `redis-server --port <port> --dir <dir> <args…>` (no RDB snapshots) and wait until it
    /// answers `PING`.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> RedisProc {
        let mut p = RedisProc {
            port: free_port(),
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
        let mut cmd = Command::new("sh");
        // `$$`'s child runs in the background; `read` returns when our end of stdin closes.
        cmd.arg("-c")
            .arg("redis-server \"$@\" >/dev/null 2>&1 & echo $!; read _; kill -9 $! 2>/dev/null")
            .arg("sh");
        let first_is_conf = self.args.first().is_some_and(|a| a.ends_with(".conf"));
        if first_is_conf {
            cmd.arg(&self.args[0]);
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args[usize::from(first_is_conf)..]);
        if !self.args.iter().any(|a| a == "--sentinel") {
            cmd.args(["--save", ""]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start redis-server (is it installed?)");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("redis-server pid");
        let pid: u32 = line.trim().parse().expect("a pid");
        self.guard = Some((child, stdin, pid));
        let url = self.url();
        wait_until(
            Duration::from_secs(20),
            &format!("redis on {url} answers PING"),
            || ping(&url),
        );
    }

    /// SIGKILL: no shutdown, no final fsync beyond what the server already did.
    pub(crate) fn kill9(&mut self) {
        if let Some((mut child, stdin, pid)) = self.guard.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            drop(stdin);
            let _ = child.wait();
            wait_until(Duration::from_secs(10), "the killed redis is gone", || {
                !ping(&self.url())
            });
        }
    }

    /// Start again on the same port and directory (after [`kill9`](Self::kill9)).
    pub(crate) fn restart(&mut self) {
        assert!(self.guard.is_none(), "restart after kill9");
        self.spawn();
    }

    /// Start again with other arguments (a demoted primary rejoining as a replica).
    pub(crate) fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// A synchronous connection for the test's own commands.
    pub(crate) fn client(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis")
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

fn ping(url: &str) -> bool {
    ::redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

/// A 3-primary Redis Cluster on free ports, no replicas.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<RedisProc>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The cluster the tests of this process share (started on first use).
    pub(crate) fn shared() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(Cluster::start)
    }

    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("cluster dir");
        let nodes: Vec<RedisProc> = (0..3)
            .map(|i| {
                RedisProc::start(
                    &dir.path().join(format!("n{i}")),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--appendonly",
                        "no",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for n in &nodes {
            wait_until(
                Duration::from_secs(30),
                "cluster_state:ok on every node",
                || {
                    let mut c = n.client();
                    ::redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut c)
                        .is_ok_and(|i| i.contains("cluster_state:ok"))
                },
            );
        }
        Cluster { nodes, _dir: dir }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }
}
