//! The binary in pipes and containers: a closed stdout ends it quietly, logs carry no colour codes
//! when stderr is not a terminal, and `deprovd healthcheck` exits 1 for anything but a ready server.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{BIN, free_port, repo, run, text};

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    // `deprovd schema alert | head -1`, made deterministic: the reader is gone before the first write.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["schema", "alert"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stderr.is_empty(),
        "no panic, no message: {}",
        text(&out)
    );
    // With a reader, the whole schema arrives.
    let out = run(Command::new(BIN).args(["schema", "alert"]));
    let schema: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    assert!(schema.is_object());
}

#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deprovd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[state]\nbackend = \"embedded\"\npath = \"{d}\"\n\
             [policy]\ndir = \"{p}\"\nwatch = false\n[telemetry]\nlog_format = \"text\"\nlog_level = \"debug\"\n",
            d = dir.path().display(),
            port = free_port(),
            p = repo().join("policies").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr);
        let mut first = String::new();
        let _ = lines.read_line(&mut first);
        let _ = tx.send(first);
        // Drain, so deprovd never blocks on a full pipe.
        let _ = lines.read_to_end(&mut Vec::new());
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a log line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains("INFO") || first.contains("DEBUG"),
        "a text log line: {first:?}"
    );
    assert!(
        !first.contains('\u{1b}'),
        "no ANSI escape in a piped log: {first:?}"
    );
}

#[test]
fn healthcheck_exits_one_when_nothing_answers() {
    let url = format!("http://127.0.0.1:{}/readyz", free_port());
    let out = run(Command::new(BIN).args(["healthcheck", "--url", &url, "--timeout", "2s"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&url),
        "{}",
        text(&out)
    );
}

#[test]
fn healthcheck_exits_one_on_not_ready_and_shows_the_report() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = conn.read(&mut request);
        let body = r#"{"ready":false,"store":false}"#;
        write!(
            conn,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/readyz");
    let out = run(Command::new(BIN).args(["healthcheck", "--url", &url]));
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("503") && said.contains("\"store\":false"),
        "{}",
        text(&out)
    );
}
