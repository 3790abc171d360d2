//! Slow clients and connection floods against the real server: headers, bodies and idle connections
//! have deadlines, and a flood of idle connections cannot keep `/healthz` out of reach.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use deprovd::ApiConfig;

use crate::kit::{DISABLE_ALL_POLICY, TestApp, eventually, policy_dir};

/// Short limits, so a test sees them pass in well under a second.
fn short(api: &mut ApiConfig) {
    api.header_timeout = Duration::from_millis(300);
    api.body_timeout = Duration::from_millis(300);
    api.idle_timeout = Duration::from_millis(600);
}

/// An app with its `[api]` table as `api` leaves it.
async fn app(api: impl FnOnce(&mut ApiConfig)) -> (TestApp, tempfile::TempDir) {
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder()
        .policies(policies.path())
        .with(|s| api(&mut s.api))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;
    (app, policies)
}

/// Read until the server closes the connection (EOF or reset); what was read, and when it closed.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {within:?} (read so far: {:?})",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

#[tokio::test]
async fn slowloris_headers_are_cut_off_at_the_header_timeout() {
    let (app, _p) = app(short).await;
    let stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let started = Instant::now();
    // A client that drips its head one byte every 20 ms: 2,000 bytes would take 40 s.
    let dripper = tokio::spawn(async move {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
            "a".repeat(2000)
        );
        let mut sent = 0usize;
        for b in head.bytes() {
            if tx.write_all(&[b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    });
    let answer = read_until_closed(&mut rx, Duration::from_secs(5)).await;
    let closed_after = started.elapsed();
    dripper.abort();
    // hyper may say 408 before closing; what matters is that no request was served.
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("200 OK"), "{text}");
    assert!(
        closed_after >= Duration::from_millis(250) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}; header_timeout is 300ms"
    );
    // A well-behaved client is still served.
    let ok = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_408_at_the_body_timeout() {
    let (app, _p) = app(short).await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\": \"a1\"",
        app.token
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_dripped_slowly_misses_its_deadline_even_though_bytes_keep_coming() {
    let (app, _p) = app(short).await;
    let stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (mut rx, mut tx) = stream.into_split();
    let head = format!(
        "POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        app.token
    );
    tx.write_all(head.as_bytes()).await.unwrap();
    let dripper = tokio::spawn(async move {
        for _ in 0..200 {
            if tx.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let answer = read_until_closed(&mut rx, Duration::from_secs(5)).await;
    dripper.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let (app, _p) = app(short).await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let rest = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(rest.is_empty());
    let idle = idle_from.elapsed();
    // Not at the header timeout (300ms): kept-alive connections get the idle timeout (600ms).
    assert!(
        idle >= Duration::from_millis(550) && idle < Duration::from_secs(3),
        "closed after {idle:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_flood_of_idle_connections_cannot_keep_healthz_out_of_reach() {
    let (app, _p) = app(|api| {
        short(api);
        api.max_connections = 16;
    })
    .await;
    // Three times the limit, all silent. The excess is closed at once; the rest at the header
    // timeout — the server never holds more than 16.
    let mut flood = Vec::new();
    for _ in 0..48 {
        flood.push(TcpStream::connect(("127.0.0.1", app.port)).await.unwrap());
    }
    let started = Instant::now();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "/healthz answers a fresh client",
        || {
            let fresh = fresh.clone();
            let url = app.url("/healthz");
            async move {
                let r = fresh.get(url).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
    let reachable_after = started.elapsed();
    eprintln!("/healthz reachable {reachable_after:?} after a 48-connection flood");
    assert!(
        reachable_after < Duration::from_secs(2),
        "{reachable_after:?}"
    );
    for s in &mut flood {
        assert!(
            read_until_closed(s, Duration::from_secs(3))
                .await
                .is_empty()
        );
    }
    // Shutdown does not wait on anything a client holds.
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("the server stops while flood connections are open");
}

#[tokio::test]
async fn shutdown_is_graceful_with_connections_open() {
    // Long timeouts: only the shutdown can close the kept-alive connection in this test's time.
    let (app, _p) = app(|api| {
        api.idle_timeout = Duration::from_secs(3600);
        api.header_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut idle = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let silent = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops with a kept-alive and a silent connection open");
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(1))
            .await
            .is_empty()
    );
    drop(silent);
}
