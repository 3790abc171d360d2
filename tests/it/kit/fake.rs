//! One generic vendor fake: a fallback handler on one or more loopback listeners, a log of every
//! request (method, path, query, headers, body, arrival time), one-shot scripted answers per route
//! (status, body, headers such as `Retry-After` or rate-limit headers), and an optional OAuth token
//! endpoint whose tokens the API accepts until the test expires them. A vendor brings only its state
//! model ([`Vendor::handle`]) and its token rules; the plumbing (percent-decoding, form bodies,
//! repeated headers) is here once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use deprovd::{Connector, Operation, Outcome};
use serde_json::{Value, json};

use super::connector::{failed, run, run_expecting};

/// A client secret no vendor fake accepts ([`Fake::check_refused_client`]).
pub(crate) const WRONG_SECRET: &str = "not-the-secret";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    /// The JSON body, or a form body as a JSON object of its fields; `Null` when empty or neither.
    pub body: Value,
    pub raw: Bytes,
    /// Whether the body was `application/x-www-form-urlencoded` (token endpoints insist on it).
    pub is_form: bool,
    /// Which of the fake's listeners took it (0 = the first; Slack's fake serves two hosts).
    pub port: u16,
    /// When the fake received it (wall clock: rate-limit resets are announced in epoch seconds).
    pub at: SystemTime,
}

impl Req {
    pub(crate) fn new(method: Method, uri: &Uri, headers: HeaderMap, raw: Bytes, port: u16) -> Req {
        let query = form_pairs(uri.query().unwrap_or(""));
        let is_form = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        let body = if is_form {
            serde_json::to_value(form_pairs(&String::from_utf8_lossy(&raw))).unwrap_or(Value::Null)
        } else {
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        };
        Req {
            method,
            path: uri.path().to_string(),
            query,
            headers,
            body,
            raw,
            is_form,
            port,
            at: SystemTime::now(),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Path segments, percent-decoded (as the vendors' routers see them).
    pub(crate) fn segs(&self) -> Vec<String> {
        self.path
            .trim_matches('/')
            .split('/')
            .map(percent_decode)
            .collect()
    }
}

/// `a=1&b=x%20y` → map, decoded as a browser form would be.
fn form_pairs(s: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{s}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer: status, JSON body (`Null` = empty), extra headers.
pub(crate) type Resp = (u16, Value, Vec<(String, String)>);

pub(crate) fn resp(status: u16, body: Value) -> Resp {
    (status, body, Vec::new())
}

/// The answer as a response. Headers are appended: a vendor may send one twice (Okta: one `Link` per
/// relation).
pub(crate) fn respond((status, body, extra): Resp) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if body.is_null() {
        code.into_response()
    } else {
        (code, axum::Json(body)).into_response()
    };
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            response.headers_mut().append(k, v);
        }
    }
    response
}

/// Seconds since the epoch (rate-limit resets are announced in epoch seconds).
pub(crate) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now, in epoch seconds.
pub(crate) fn now_secs() -> u64 {
    epoch_secs(SystemTime::now())
}

/// A vendor's API as the fake serves it: its state model and, when it issues OAuth tokens, its
/// token rules.
pub(crate) trait Vendor: Send + 'static {
    /// Path of the OAuth token endpoint the fake serves, issuing tokens the API then accepts.
    /// `None`: no token endpoint and no token check by the fake; the vendor checks its own static
    /// credentials in [`Vendor::handle`].
    const TOKEN_PATH: Option<&'static str> = None;
    /// Check a token request's form (`token_url` is the endpoint's full URL, the JWT audience);
    /// `Err` is the vendor's refusal.
    fn check_token_request(_form: &BTreeMap<String, String>, _token_url: &str) -> Result<(), Resp> {
        Ok(())
    }
    /// The vendor's successful token answer.
    fn token_response(token: &str) -> Resp {
        resp(
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token}),
        )
    }
    /// The vendor's answer to a refused credential.
    fn unauthorized() -> Resp {
        resp(401, Value::Null)
    }
    /// The API itself. `base` is the root URL of the listener that took the request (for next links).
    fn handle(&mut self, req: &Req, base: &str) -> Resp;
}

/// The fake's state: the vendor's model plus what the fake itself keeps.
pub(crate) struct Inner<V> {
    pub vendor: V,
    /// Every request, token requests included, in arrival order.
    pub log: Vec<Req>,
    /// (method, path suffix, answer): answered once, instead of the vendor, by the first matching
    /// request (after the credential check, as the vendor would).
    pub inject: VecDeque<(Method, String, Resp)>,
    /// A static `Authorization` value accepted besides issued tokens (Okta SSWS).
    pub static_auth: Option<String>,
    pub issued: usize,
    pub valid: BTreeSet<String>,
    /// Newly issued tokens are not accepted by the API (a client disabled after issuing).
    pub refuse_new_tokens: bool,
    pub token_forms: Vec<BTreeMap<String, String>>,
    /// How long every answer takes (a slow target keeps calls in flight).
    pub delay: std::time::Duration,
}

/// A running fake of one vendor; clones share the state.
pub(crate) struct Fake<V: Vendor> {
    inner: Arc<Mutex<Inner<V>>>,
    /// Root URL of each listener (Slack's fake serves two hosts from one state).
    bases: Vec<String>,
}

impl<V: Vendor> Clone for Fake<V> {
    fn clone(&self) -> Self {
        Fake {
            inner: self.inner.clone(),
            bases: self.bases.clone(),
        }
    }
}

impl<V: Vendor> Fake<V> {
    /// Serve `vendor` on one loopback port.
    pub(crate) async fn start(vendor: V) -> Self {
        Self::serve(vendor, 1, None).await
    }

    /// Serve `vendor` on one port, also accepting the static `Authorization` value `auth`.
    pub(crate) async fn start_with_static_auth(vendor: V, auth: String) -> Self {
        Self::serve(vendor, 1, Some(auth)).await
    }

    /// Serve one `vendor` state on `listeners` loopback ports.
    pub(crate) async fn start_listeners(vendor: V, listeners: usize) -> Self {
        Self::serve(vendor, listeners, None).await
    }

    async fn serve(vendor: V, listeners: usize, static_auth: Option<String>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            vendor,
            log: Vec::new(),
            inject: VecDeque::new(),
            static_auth,
            issued: 0,
            valid: BTreeSet::new(),
            refuse_new_tokens: false,
            token_forms: Vec::new(),
            delay: std::time::Duration::ZERO,
        }));
        let mut bases = Vec::new();
        for _ in 0..listeners {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let base = format!("http://127.0.0.1:{port}");
            bases.push(base.clone());
            let app = Router::new()
                .fallback(serve::<V>)
                .with_state((inner.clone(), port, base));
            tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        }
        Fake { inner, bases }
    }

    /// Root URL of the first listener.
    pub(crate) fn base(&self) -> &str {
        &self.bases[0]
    }

    /// Root URLs of every listener.
    pub(crate) fn bases(&self) -> &[String] {
        &self.bases
    }

    /// The fake's state (vendor model, log, tokens) under its lock.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Inner<V>) -> T) -> T {
        f(&mut self.inner.lock().expect("fake state"))
    }

    /// The vendor's model under the lock.
    pub(crate) fn vendor<T>(&self, f: impl FnOnce(&mut V) -> T) -> T {
        self.with(|i| f(&mut i.vendor))
    }

    /// Answer the next `method` request whose path ends with `path_suffix` with `answer`, once.
    pub(crate) fn inject(&self, method: Method, path_suffix: &str, answer: Resp) {
        self.with(|i| {
            i.inject
                .push_back((method, path_suffix.to_string(), answer))
        });
    }

    /// Every request, token requests included.
    pub(crate) fn requests(&self) -> Vec<Req> {
        self.with(|i| i.log.clone())
    }

    /// Requests to the API (token requests excluded).
    pub(crate) fn api_requests(&self) -> Vec<Req> {
        self.with(|i| {
            i.log
                .iter()
                .filter(|r| Some(r.path.as_str()) != V::TOKEN_PATH)
                .cloned()
                .collect()
        })
    }

    /// Requests to the token endpoint.
    pub(crate) fn token_request_log(&self) -> Vec<Req> {
        self.with(|i| {
            i.log
                .iter()
                .filter(|r| Some(r.path.as_str()) == V::TOKEN_PATH)
                .cloned()
                .collect()
        })
    }

    /// Requests to the API (token requests excluded), as "METHOD path", in order.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.api_requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// How many API requests had this method and path.
    pub(crate) fn count(&self, method: &str, path: &str) -> usize {
        self.api_requests()
            .iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .count()
    }

    pub(crate) fn clear_log(&self) {
        self.with(|i| i.log.clear());
    }

    /// Every token issued so far stops working, as when it expires at the vendor before our cache
    /// says so.
    pub(crate) fn expire_tokens(&self) {
        self.with(|i| i.valid.clear());
    }

    /// Token requests answered so far (issued or refused).
    pub(crate) fn token_requests(&self) -> usize {
        self.with(|i| i.token_forms.len())
    }

    /// An OAuth connector `c` configured with [`WRONG_SECRET`], which the vendor's token endpoint
    /// refuses: `op` fails terminally with the vendor's `words`, never echoing the secret, and no API
    /// call is made without a token.
    pub(crate) async fn check_refused_client(
        &self,
        c: &dyn Connector,
        op: Operation,
        subject: &str,
        words: &str,
    ) {
        let r = run(c, op, subject, None).await;
        let reason = failed(&r);
        assert!(reason.contains(words), "{reason}");
        assert!(!reason.contains(WRONG_SECRET), "{reason}");
        assert!(self.calls().is_empty(), "no API call without a token");
    }

    /// The token-refresh contract of an OAuth connector `c` holding a cached token: when the vendor
    /// stops accepting that token (it expired at the vendor first), the 401 causes exactly one refresh
    /// and one retry of the refused request (`refused_call`, "METHOD path"), now with the new token,
    /// and `op` is done; when the client's fresh tokens are refused too (the client was disabled), one
    /// more refresh and then a terminal failure carrying the 401 and the vendor's `words`.
    pub(crate) async fn check_token_refresh(
        &self,
        c: &dyn Connector,
        op: Operation,
        subject: &str,
        refused_call: &str,
        words: &str,
    ) {
        let issued = self.token_requests();
        self.expire_tokens();
        self.clear_log();
        run_expecting(c, op, subject, None, Outcome::Done).await;
        assert_eq!(self.token_requests(), issued + 1, "one refresh");
        assert_eq!(
            self.calls(),
            [refused_call, refused_call],
            "the refused request is sent once more with the new token"
        );
        let reqs = self.api_requests();
        assert_ne!(
            reqs[0].header("authorization"),
            reqs[1].header("authorization")
        );

        self.with(|i| i.refuse_new_tokens = true);
        self.expire_tokens();
        self.clear_log();
        let r = run(c, op, subject, None).await;
        let reason = failed(&r);
        assert!(reason.contains("401") && reason.contains(words), "{reason}");
        assert_eq!(
            self.token_requests(),
            issued + 2,
            "exactly one more refresh"
        );
        assert_eq!(self.calls().len(), 2, "one retry: {:?}", self.calls());
    }
}

type FakeState<V> = (Arc<Mutex<Inner<V>>>, u16, String);

async fn serve<V: Vendor>(
    State((inner, port, base)): State<FakeState<V>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let req = Req::new(method, &uri, headers, raw, port);
    let delay = inner.lock().expect("fake state").delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = {
        let mut inner = inner.lock().expect("fake state");
        inner.log.push(req.clone());
        answer(&mut inner, &req, &base)
    };
    respond(answer)
}

fn answer<V: Vendor>(inner: &mut Inner<V>, req: &Req, base: &str) -> Resp {
    if let Some(token_path) = V::TOKEN_PATH {
        if req.path == token_path {
            return issue_token(inner, req, &format!("{base}{token_path}"));
        }
        let auth = req.header("authorization").unwrap_or_default();
        let ok = inner.static_auth.as_deref() == Some(auth)
            || auth
                .strip_prefix("Bearer ")
                .is_some_and(|t| inner.valid.contains(t));
        if !ok {
            return V::unauthorized();
        }
    }
    if let Some(pos) = inner
        .inject
        .iter()
        .position(|(m, p, _)| *m == req.method && req.path.ends_with(p.as_str()))
    {
        if let Some((_, _, r)) = inner.inject.remove(pos) {
            return r;
        }
    }
    inner.vendor.handle(req, base)
}

/// RFC 6749 §3.2: the token endpoint takes a POSTed form.
fn issue_token<V: Vendor>(inner: &mut Inner<V>, req: &Req, token_url: &str) -> Resp {
    if req.method != Method::POST || !req.is_form {
        return resp(
            400,
            json!({"error": "invalid_request", "error_description": "POST form expected"}),
        );
    }
    let form: BTreeMap<String, String> =
        serde_json::from_value(req.body.clone()).unwrap_or_default();
    inner.token_forms.push(form.clone());
    if let Err(r) = V::check_token_request(&form, token_url) {
        return r;
    }
    inner.issued += 1;
    let token = format!("at-{}-{}", inner.issued, uuid::Uuid::new_v4().simple());
    if !inner.refuse_new_tokens {
        inner.valid.insert(token.clone());
    }
    V::token_response(&token)
}
