//! What the end-to-end benches share: load knobs from the environment, a free loopback port,
//! percentiles, RSS readings, and starting the release `deprovd` binary on a config.

#![allow(dead_code)] // each bench uses its own subset

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `p50 … max` of `lat` (sorted here) in milliseconds, for one line of output.
pub(crate) fn summary(lat: &mut [Duration]) -> String {
    if lat.is_empty() {
        return "no samples".into();
    }
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(lat, 0.50)),
        ms(percentile(lat, 0.90)),
        ms(percentile(lat, 0.99)),
        ms(*lat.last().unwrap()),
    )
}

pub(crate) fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// CPU time (user + system) the process `pid` has used so far, from fields 14 and 15 of
/// `/proc/<pid>/stat` (clock ticks, converted with `getconf CLK_TCK`, 100 on Linux when unknown).
/// This counts every thread of the process — the async runtime, librdkafka's and the blocking pool —
/// and nothing of the broker, Redis or the load generator, so a busy machine barely distorts it.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    Some(Duration::from_micros((utime + stime) * 1_000_000 / hz))
}

/// The config every bench starts from: `data_dir`, the API on `port`, the Redis ledger under
/// `redis_prefix` (`None`: the embedded store in `data_dir`), and the policies in `policies`
/// unwatched. A bench appends its own sections (kafka, executor, guards, connectors).
pub(crate) fn base_config(
    data_dir: &Path,
    port: u16,
    redis_prefix: Option<&str>,
    policies: &Path,
) -> String {
    let state = match redis_prefix {
        Some(prefix) => {
            format!("[state]\nbackend = \"redis\"\n[state.redis]\nkey_prefix = \"{prefix}\"\n")
        }
        None => String::new(),
    };
    format!(
        "data_dir = \"{d}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n{state}[policy]\ndir = \"{p}\"\nwatch = false\n",
        d = data_dir.display(),
        p = policies.display(),
    )
}

/// The deprovd binary the benches start: `DEPROVD_BENCH_BIN` when set (to measure another build,
/// e.g. a saved copy of `main`'s, with the same load generator), else the one cargo just built.
pub(crate) fn deprovd_bin() -> std::path::PathBuf {
    std::env::var_os("DEPROVD_BENCH_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_deprovd").into())
}

/// The release binary running `config`, ready (`/readyz` 200) on `port`, with the first line it
/// printed (the dev admin token when the config names no tokens).
pub(crate) async fn start_deprovd(config: &Path, port: u16) -> (Child, String) {
    let mut child = Command::new(deprovd_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deprovd");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "deprovd did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, first)
}

/// SIGTERM, then wait: the graceful path, as an operator would stop it.
pub(crate) fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Leave the shared Redis as we found it: drop every key under `prefix` (a run's ledger).
pub(crate) async fn drop_redis_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open("redis://127.0.0.1:6379/0") else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{prefix}*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap_or((0, Vec::new()));
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}
