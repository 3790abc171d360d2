//! The HTTP server loop: the router served over HTTP/1.1 with every slow-client limit in one place.
//!
//! A hostile or broken client must not be able to hold the server's resources without bound:
//!
//! - **Connections are counted.** At most `max_connections` are served at once (a semaphore); a
//!   connection beyond that is accepted and closed at once, so file descriptors never run out and the
//!   kernel backlog, not the process, absorbs a flood. Slots come back as the timeouts below close
//!   connections that do nothing useful.
//! - **Headers have a deadline.** A new connection must deliver a request's headers within
//!   `header_timeout` of being accepted; a kept-alive one within `header_timeout` of the first byte of
//!   its next request. A slowloris client dripping header bytes is disconnected.
//! - **Bodies have a deadline.** A request's whole body must arrive within `body_timeout` of its
//!   headers (a deadline, not an inactivity timer that a byte a second would keep resetting). A body
//!   shorter than its `Content-Length` gets 408 `body_timeout` and the connection is closed.
//! - **Idle connections expire.** A kept-alive connection with no request for `idle_timeout` is
//!   closed.
//!
//! - **TLS handshakes share the header deadline.** With `[api.tls]` the handshake runs inside the
//!   same `header_timeout` from acceptance, so a client that stalls mid-handshake is closed like a
//!   slowloris; a failed handshake (plain HTTP on the TLS port, no or a foreign client certificate)
//!   closes the connection before any HTTP is read. Each connection takes the TLS configuration
//!   serving when it was accepted ([`super::tls::ServerTls`]), so certificates change without
//!   touching the listener.
//!
//! Time is tokio's clock, so the limits follow `tokio::time::pause()` in tests. Shutdown is graceful:
//! on the stop signal no new connection is accepted, each connection finishes its request in flight
//! and closes, and [`serve`] returns when every connection has.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::tls::ServerTls;

/// The slow-client limits (`[api]` `header_timeout`, `body_timeout`, `idle_timeout`,
/// `max_connections`).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Set on a request whose body missed its deadline, so the audit layer records what the client got.
#[derive(Clone, Default)]
pub(crate) struct BodyDeadline(Arc<AtomicBool>);

impl BodyDeadline {
    pub(crate) fn missed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serve `router` on `listener` (over TLS when `tls` is given) until `stop` turns true, then drain
/// and return.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    tls: Option<Arc<ServerTls>>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: the error repeats until something closes, so do not spin.
                warn!(error = %e, "cannot accept a connection");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, limit = limits.max_connections, "connection limit reached; closing the new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            tls.as_ref().map(|t| t.acceptor()),
            stop.clone(),
            slot,
        ));
    }
    drop(listener);
    // Every connection holds a slot until it ends: having them all back means all have ended.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServeLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new(limits));
    let watched = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let Some(acceptor) = tls else {
        return http(TokioIo::new(watched), peer, router, limits, activity, stop).await;
    };
    // The handshake's bytes count as the head's: it must end within the header deadline.
    let handshake = tokio::select! {
        r = acceptor.accept(watched) => Some(r),
        why = activity.expired() => {
            debug!(%peer, reason = why, "closing a connection whose TLS handshake ran out of time");
            None
        }
        _ = stop.wait_for(|s| *s) => None,
    };
    match handshake {
        Some(Ok(stream)) => http(TokioIo::new(stream), peer, router, limits, activity, stop).await,
        Some(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed; connection closed"),
        None => {}
    }
}

/// HTTP/1.1 on an accepted (and, with TLS, handshaken) connection, until it ends, runs out of time
/// or `stop`.
async fn http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    router: Router,
    limits: ServeLimits,
    activity: Arc<Activity>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            handle(
                req,
                peer,
                router.clone(),
                limits.body_timeout,
                activity.clone(),
            )
        })
    };
    // hyper's own header timer is left off: it also runs while a kept-alive connection waits for
    // its next request, which would make the idle timeout the header timeout. `Activity` keeps both.
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            why = activity.expired() => {
                // Dropping the connection closes the socket.
                debug!(%peer, reason = why, "closing a connection that ran out of time");
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request: peer address for the handlers, the body deadline, and the connection's phase.
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    router: Router,
    body_timeout: Duration,
    activity: Arc<Activity>,
) -> Result<Response, std::convert::Infallible> {
    let _busy = activity.begin_request();
    let deadline = BodyDeadline::default();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    parts.extensions.insert(deadline.clone());
    let body = deadline_body(
        Body::new(body),
        Instant::now() + body_timeout,
        body_timeout,
        deadline.clone(),
    );
    let response = router
        .oneshot(Request::from_parts(parts, body))
        .await
        .unwrap_or_else(|never| match never {});
    if deadline.missed() {
        return Ok(body_timeout_response(body_timeout));
    }
    Ok(response)
}

/// `body` that fails once `deadline` passes (and flags `missed`): the whole body, not each chunk,
/// must arrive in time.
fn deadline_body(body: Body, deadline: Instant, limit: Duration, missed: BodyDeadline) -> Body {
    let stream = body.into_data_stream();
    Body::from_stream(futures::stream::unfold(Some(stream), move |s| {
        let missed = missed.clone();
        async move {
            let mut s = s?;
            match tokio::time::timeout_at(deadline, s.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(s))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => {
                    missed.0.store(true, Ordering::Relaxed);
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("request body not complete within {limit:?}"),
                    );
                    Some((Err(e), None))
                }
            }
        }
    }))
}

fn body_timeout_response(limit: Duration) -> Response {
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({
            "code": "body_timeout",
            "message": format!(
                "the request body did not arrive within {} (api.body_timeout); is Content-Length right?",
                humantime::format_duration(limit)
            ),
        })),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// Where a connection is in its life, for its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Accepted, no request yet: headers due `header_timeout` after acceptance.
    Fresh { since: Instant },
    /// Between requests on a kept-alive connection, nothing received yet.
    Idle { since: Instant },
    /// Bytes of a request's head received since `since`; the head is not complete.
    Head { since: Instant },
    /// Requests being handled (their bodies have their own deadline).
    Busy { requests: u32 },
}

/// A connection's phase, updated by its I/O and its requests, watched for the deadline.
struct Activity {
    limits: ServeLimits,
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new(limits: ServeLimits) -> Self {
        Self {
            limits,
            phase: Mutex::new(Phase::Fresh {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn set(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut p = self.phase.lock().expect("phase lock");
        *p = f(*p);
        drop(p);
        self.changed.notify_waiters();
    }

    /// Bytes arrived: a waiting connection now has a request's head under way.
    fn read_some(&self) {
        let waiting = matches!(
            *self.phase.lock().expect("phase lock"),
            Phase::Fresh { .. } | Phase::Idle { .. }
        );
        if waiting {
            self.set(|p| match p {
                // A fresh connection's deadline stays counted from acceptance.
                Phase::Fresh { since } => Phase::Head { since },
                Phase::Idle { .. } => Phase::Head {
                    since: Instant::now(),
                },
                other => other,
            });
        }
    }

    fn begin_request(self: &Arc<Self>) -> BusyGuard {
        self.set(|p| match p {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        });
        BusyGuard(self.clone())
    }

    fn deadline(&self) -> Option<(Instant, &'static str)> {
        match *self.phase.lock().expect("phase lock") {
            Phase::Fresh { since } | Phase::Head { since } => {
                Some((since + self.limits.header_timeout, "header_timeout"))
            }
            Phase::Idle { since } => Some((since + self.limits.idle_timeout, "idle_timeout")),
            Phase::Busy { .. } => None,
        }
    }

    /// Resolves once the connection has passed its deadline; returns which one.
    async fn expired(&self) -> &'static str {
        loop {
            // Register for changes before reading the phase, so none is missed in between.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline() {
                Some((at, why)) if Instant::now() >= at => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Ends a request's busy phase when dropped (also when the request's future is cancelled).
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(|p| match p {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }
}

/// The socket, reporting reads to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServeLimits {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_must_finish_its_head_within_the_header_timeout_of_acceptance() {
        let a = Activity::new(limits());
        tokio::time::advance(Duration::from_secs(4)).await;
        a.read_some();
        let started = Instant::now();
        assert_eq!(a.expired().await, "header_timeout");
        // Counted from acceptance, not from the first byte.
        assert_eq!(started.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_gets_the_idle_timeout_then_the_header_timeout_from_its_first_byte()
     {
        let a = Arc::new(Activity::new(limits()));
        drop(a.begin_request());
        let idle_from = Instant::now();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { (a.expired().await, Instant::now()) }
        });
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!waiter.is_finished());
        a.read_some();
        let (why, at) = waiter.await.unwrap();
        assert_eq!(why, "header_timeout");
        assert_eq!(at - idle_from, Duration::from_secs(69));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_has_no_connection_deadline() {
        let a = Arc::new(Activity::new(limits()));
        let busy = a.begin_request();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.expired().await }
        });
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished());
        drop(busy);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(waiter.await.unwrap(), "idle_timeout");
    }
}
