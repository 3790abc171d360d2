//! OpenID Shared Signals: a transmitter written here (SSF 1.0 metadata, JWKS, RFC 8936 poll endpoint,
//! SETs signed with fixture keys) talks to the real deprovd; and one deprovd's transmitter talks to
//! another deprovd's receiver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::kit::connector::webhook;
use crate::kit::{
    DISABLE_ALL_POLICY, Reply, Target, TestApp, TestAppBuilder, eventually, policy_dir, unique,
};

const CREDENTIAL_COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";
const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const AUDIENCE: &str = "https://deprovd.test";
const POLL_TOKEN: &str = "poll-secret-for-tests";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn jwk(name: &str) -> Value {
    serde_json::from_str(&fixture(&format!("ssf/{name}.jwk.json"))).unwrap()
}

#[derive(Default)]
struct TxState {
    issuer: String,
    keys: Vec<Value>,
    jwks_fetches: usize,
    /// Answer the JWKS with 500 (an outage of the transmitter's key endpoint).
    jwks_down: bool,
    /// SETs not yet acknowledged or errored, by jti (RFC 8936 §2.4: redelivered until then).
    outstanding: BTreeMap<String, String>,
    polls: Vec<Value>,
    /// When each poll arrived.
    poll_times: Vec<std::time::Instant>,
}

/// A Shared Signals transmitter: `/.well-known/ssf-configuration`, `/jwks`, and an RFC 8936 poll
/// endpoint (`POST /poll`, bearer-authenticated).
#[derive(Clone)]
struct Transmitter {
    url: String,
    state: Arc<Mutex<TxState>>,
}

impl Transmitter {
    async fn start() -> Transmitter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(TxState {
            issuer: url.clone(),
            keys: vec![jwk("k1")],
            ..Default::default()
        }));
        let app = Router::new()
            .route("/.well-known/ssf-configuration", get(tx_metadata))
            .route("/jwks", get(tx_jwks))
            .route("/poll", post(tx_poll))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Transmitter { url, state }
    }

    fn issuer(&self) -> String {
        self.url.clone()
    }

    fn publish(&self, keys: Vec<Value>) {
        self.state.lock().unwrap().keys = keys;
    }

    fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    fn queue(&self, jti: &str, set: String) {
        self.state
            .lock()
            .unwrap()
            .outstanding
            .insert(jti.to_string(), set);
    }

    fn polls(&self) -> Vec<Value> {
        self.state.lock().unwrap().polls.clone()
    }

    fn poll_times(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().poll_times.clone()
    }
}

async fn tx_metadata(State(s): State<Arc<Mutex<TxState>>>) -> Json<Value> {
    let issuer = s.lock().unwrap().issuer.clone();
    Json(json!({
        "spec_version": "1_0",
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
    }))
}

async fn tx_jwks(State(s): State<Arc<Mutex<TxState>>>) -> Response {
    let mut s = s.lock().unwrap();
    s.jwks_fetches += 1;
    if s.jwks_down {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(json!({ "keys": s.keys })).into_response()
}

/// RFC 8936 §2.4: apply `ack` and `setErrs`, then answer with up to `maxEvents` outstanding SETs.
async fn tx_poll(
    State(s): State<Arc<Mutex<TxState>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {POLL_TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut s = s.lock().unwrap();
    s.polls.push(body.clone());
    s.poll_times.push(std::time::Instant::now());
    for jti in body["ack"].as_array().into_iter().flatten() {
        s.outstanding.remove(jti.as_str().unwrap_or_default());
    }
    for jti in body["setErrs"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        s.outstanding.remove(jti);
    }
    let max = body["maxEvents"].as_u64().unwrap_or(u64::MAX) as usize;
    let sets: serde_json::Map<String, Value> = s
        .outstanding
        .iter()
        .take(max)
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    let more = s.outstanding.len() > sets.len();
    Json(json!({ "sets": sets, "moreAvailable": more })).into_response()
}

/// The claims of a SET about `email`, with a fresh `jti`.
fn claims(iss: &str, aud: &str, event_type: &str, event: Value, email: &str) -> (String, Value) {
    let jti = uuid::Uuid::new_v4().simple().to_string();
    let c = json!({
        "iss": iss,
        "iat": chrono::Utc::now().timestamp(),
        "jti": jti,
        "aud": aud,
        "sub_id": { "format": "email", "email": email },
        "events": { event_type: event },
    });
    (jti, c)
}

/// Sign `claims` as a SET with the RSA key in `tests/fixtures/<pem>`, naming `kid`.
fn sign(pem: &str, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.typ = Some("secevent+jwt".into());
    h.kid = Some(kid.into());
    jsonwebtoken::encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(fixture(pem).as_bytes()).unwrap(),
    )
    .unwrap()
}

fn compromise(tx: &Transmitter, email: &str) -> (String, Value) {
    claims(
        &tx.issuer(),
        AUDIENCE,
        CREDENTIAL_COMPROMISE,
        json!({"credential_type": "password", "reason_admin": {"en": "found in a breach corpus"}}),
        email,
    )
}

/// A `[[ssf.receivers]]` entry for `tx`: `name`, its issuer and configuration URL, and the fields of
/// `extra`.
fn receiver(name: &str, tx: &Transmitter, extra: Value) -> Value {
    let mut receiver = json!({
        "name": name,
        "issuer": tx.issuer(),
        "audience": AUDIENCE,
        "config_url": format!("{}/.well-known/ssf-configuration", tx.url),
    });
    if let (Some(receiver), Some(extra)) = (receiver.as_object_mut(), extra.as_object()) {
        receiver.extend(extra.clone());
    }
    receiver
}

/// The app: a webhook connector `good` at `target`, the ledger in Redis, `ssf` as its `[ssf]`
/// section, its data in `data`.
fn builder(
    data: &std::path::Path,
    policies: &std::path::Path,
    target: &str,
    ssf: Value,
) -> TestAppBuilder {
    TestApp::builder()
        .data_dir(data)
        .policies(policies)
        .quick_scan()
        .connector("good", webhook("good", target))
        .redis()
        .ssf(ssf)
}

/// Push `set` to receiver `idp`; it must be refused with 400 and the RFC 8935 `err` code.
async fn push_refused(app: &TestApp, set: &str, err: &str) {
    let (status, body) = push(app, "idp", set).await;
    assert_eq!((status, body["err"].as_str()), (400, Some(err)), "{body}");
}

/// [`push_refused`] for `claims` signed with the transmitter's own key `k1`.
async fn push_refused_k1(app: &TestApp, claims: &Value, err: &str) {
    push_refused(app, &sign("ssf/k1.pem", "k1", claims), err).await;
}

struct Setup {
    target: Target,
    data: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
}

/// The app receiving from `receivers`.
async fn deprovd_receiving(receivers: Vec<Value>) -> Setup {
    deprovd_with(json!({"receivers": receivers})).await
}

async fn deprovd_with(ssf: Value) -> Setup {
    let target = Target::start().await;
    target.always("POST", "/good", Reply::status(204));
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = builder(data.path(), policies.path(), &target.url(), ssf)
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;
    Setup {
        target,
        data,
        _policies: policies,
        app,
    }
}

async fn push(app: &TestApp, receiver: &str, set: &str) -> (u16, Value) {
    push_as(
        app,
        receiver,
        set,
        Some(&app.token),
        "application/secevent+jwt",
    )
    .await
}

async fn push_as(
    app: &TestApp,
    receiver: &str,
    set: &str,
    token: Option<&str>,
    content_type: &str,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url(&format!("/v1/ssf/{receiver}")))
        .header("content-type", content_type)
        .body(set.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Subjects the webhook target was asked to act on.
fn acted_on(target: &Target) -> Vec<String> {
    target
        .seen()
        .iter()
        .filter_map(|s| serde_json::from_slice::<Value>(&s.body).ok())
        .filter_map(|b| b["subject"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn pushed_credential_compromise_set_disables_the_user_and_a_replay_never_acts_twice() {
    let tx = Transmitter::start().await;
    let s = deprovd_receiving(vec![receiver("idp", &tx, json!({}))]).await;
    let email = format!("{}@corp.example", unique("alice"));
    let (jti, c) = compromise(&tx, &email);
    let set = sign("ssf/k1.pem", "k1", &c);

    let (status, body) = push(&s.app, "idp", &set).await;
    assert_eq!(status, 202, "{body}");
    eventually(
        Duration::from_secs(10),
        "the target disables the user",
        || async { acted_on(&s.target).contains(&email).then_some(()) },
    )
    .await;
    let actions = s.app.actions(&format!("subject={email}")).await;
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["origin"]["alert_id"], jti.as_str());
    assert_eq!(actions[0]["operation"], "disable_account");

    // The same SET again — a transmitter retrying after a lost 202, or a replay: acknowledged (a 400
    // is final per RFC 8935 and would tell a retrying transmitter its SET was refused), never acted
    // on twice.
    let (status, body) = push(&s.app, "idp", &set).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(s.app.actions(&format!("subject={email}")).await.len(), 1);
    assert_eq!(
        s.app
            .metric("deprovd_ssf_sets_total{outcome=\"duplicate\",receiver=\"idp\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        acted_on(&s.target).iter().filter(|e| **e == email).count(),
        1,
        "one connector call"
    );
    assert_eq!(
        s.app
            .metric("deprovd_ssf_sets_total{outcome=\"accepted\",receiver=\"idp\"}")
            .await,
        Some(1.0)
    );
    s.app.stop().await;
}

#[tokio::test]
async fn forged_misaddressed_foreign_and_unauthenticated_sets_are_refused_with_rfc_codes() {
    let tx = Transmitter::start().await;
    let s = deprovd_receiving(vec![receiver("idp", &tx, json!({}))]).await;
    let email = format!("{}@corp.example", unique("bob"));

    // Signed by a key that is not the transmitter's, under the transmitter's kid.
    let (_, c) = compromise(&tx, &email);
    let forged = sign("idp/test-rsa-private.pem", "k1", &c);
    push_refused(&s.app, &forged, "invalid_key").await;

    // Addressed to another receiver.
    let (_, mut c) = compromise(&tx, &email);
    c["aud"] = "https://someone-else.test".into();
    push_refused_k1(&s.app, &c, "invalid_audience").await;

    // From an issuer this receiver does not listen to.
    let (_, mut c) = compromise(&tx, &email);
    c["iss"] = "https://evil.test".into();
    push_refused_k1(&s.app, &c, "invalid_issuer").await;

    // Unsigned (`alg: none`).
    let (_, c) = compromise(&tx, &email);
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "k1", "typ": "secevent+jwt"})),
        b64(&c)
    );
    push_refused(&s.app, &unsigned, "invalid_key").await;

    // Signed with the transmitter's key but not typed as a SET (another kind of JWT replayed here).
    let (_, c) = compromise(&tx, &email);
    let mut h = Header::new(Algorithm::RS256);
    h.typ = Some("JWT".into());
    h.kid = Some("k1".into());
    let key = EncodingKey::from_rsa_pem(fixture("ssf/k1.pem").as_bytes()).unwrap();
    let untyped = jsonwebtoken::encode(&h, &c, &key).unwrap();
    let (status, body) = push(&s.app, "idp", &untyped).await;
    assert_eq!(
        (status, body["err"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["description"].as_str().unwrap().contains("typ"),
        "{body}"
    );

    // Two events in one SET.
    let (_, mut c) = compromise(&tx, &email);
    c["events"][ACCOUNT_DISABLED] = json!({"reason": "hijacking"});
    push_refused_k1(&s.app, &c, "invalid_request").await;

    // Too old, and from the future.
    let (_, mut c) = compromise(&tx, &email);
    c["iat"] = (chrono::Utc::now().timestamp() - 3 * 24 * 3600).into();
    let (status, body) = push(&s.app, "idp", &sign("ssf/k1.pem", "k1", &c)).await;
    assert_eq!(
        (status, body["err"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert!(
        body["description"].as_str().unwrap().contains("max_age"),
        "{body}"
    );
    let (_, mut c) = compromise(&tx, &email);
    c["iat"] = (chrono::Utc::now().timestamp() + 3600).into();
    push_refused_k1(&s.app, &c, "invalid_request").await;

    // Wrong media type, no token, bad token, no such receiver.
    let (_, c) = compromise(&tx, &email);
    let good = sign("ssf/k1.pem", "k1", &c);
    let (status, body) =
        push_as(&s.app, "idp", &good, Some(&s.app.token), "application/json").await;
    assert_eq!(
        (status, body["err"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = push_as(&s.app, "idp", &good, None, "application/secevent+jwt").await;
    assert_eq!(
        (status, body["err"].as_str()),
        (401, Some("authentication_failed")),
        "{body}"
    );
    let (status, body) = push_as(
        &s.app,
        "idp",
        &good,
        Some("nope"),
        "application/secevent+jwt",
    )
    .await;
    assert_eq!(
        (status, body["err"].as_str()),
        (401, Some("authentication_failed")),
        "{body}"
    );
    let (status, _) = push(&s.app, "nobody", &good).await;
    assert_eq!(status, 404);

    // Nothing was acted on; every refusal is in the dead-letter file with its reason.
    assert!(s.app.actions(&format!("subject={email}")).await.is_empty());
    let dlq = std::fs::read_to_string(s.data.path().join("alerts.dlq.jsonl")).unwrap();
    let lines: Vec<Value> = dlq
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let codes: Vec<&str> = lines
        .iter()
        .map(|l| l["origin"]["deprovd-ssf-err"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_key",
            "invalid_audience",
            "invalid_issuer",
            "invalid_key",
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "invalid_request"
        ]
    );
    assert!(lines[0]["reason"].as_str().unwrap().contains("signature"));
    assert_eq!(lines[0]["payload"], forged.as_str());
    assert_eq!(
        s.app
            .metric("deprovd_ssf_sets_total{outcome=\"invalid_key\",receiver=\"idp\"}")
            .await,
        Some(2.0)
    );
    // And audited, with the receiver and the code.
    let audit = s.app.get_json("/v1/audit?limit=1000").await;
    let refused = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "alert_received" && r["detail"]["source"] == "ssf")
        .count();
    assert_eq!(refused, 8, "{audit}");
    s.app.stop().await;
}

#[tokio::test]
async fn rotated_key_is_picked_up_and_the_rotated_out_key_is_refused() {
    let tx = Transmitter::start().await;
    let s = deprovd_receiving(vec![
        receiver("idp", &tx, json!({"jwks_refetch_interval": "0s"})),
        receiver("idp-slow", &tx, json!({"jwks_refetch_interval": "1h"})),
    ])
    .await;
    let user = |n: &str| format!("{}@corp.example", unique(n));

    let (_, c) = compromise(&tx, &user("before"));
    assert_eq!(
        push(&s.app, "idp", &sign("ssf/k1.pem", "k1", &c)).await.0,
        202
    );

    // The transmitter rotates k1 out and k2 in; a SET under k2 makes the receiver look again.
    tx.publish(vec![jwk("k2")]);
    let (_, c) = compromise(&tx, &user("after"));
    let (status, body) = push(&s.app, "idp", &sign("ssf/k2.pem", "k2", &c)).await;
    assert_eq!(status, 202, "{body}");

    // k1 is no longer published: its SETs are refused, though the signature itself is fine.
    let (_, c) = compromise(&tx, &user("stale"));
    let (status, body) = push(&s.app, "idp", &sign("ssf/k1.pem", "k1", &c)).await;
    assert_eq!(
        (status, body["err"].as_str()),
        (400, Some("invalid_key")),
        "{body}"
    );
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("rotated out")
    );

    // An EC (ES256) key published beside it verifies too.
    tx.publish(vec![jwk("k2"), jwk("ec")]);
    let (_, c) = compromise(&tx, &user("ec"));
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("secevent+jwt".into());
    h.kid = Some("ec1".into());
    let ec_set = jsonwebtoken::encode(
        &h,
        &c,
        &EncodingKey::from_ec_pem(fixture("ssf/ec.pem").as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, body) = push(&s.app, "idp", &ec_set).await;
    assert_eq!(status, 202, "{body}");

    // Made-up kids cannot make a receiver hammer the transmitter's JWKS: one fetch per interval.
    let (_, c) = compromise(&tx, &user("warm"));
    assert_eq!(
        push(&s.app, "idp-slow", &sign("ssf/k2.pem", "k2", &c))
            .await
            .0,
        202
    );
    let before = tx.jwks_fetches();
    for i in 0..5 {
        let (_, c) = compromise(&tx, &user("flood"));
        let (status, body) = push(
            &s.app,
            "idp-slow",
            &sign("ssf/k2.pem", &format!("made-up-{i}"), &c),
        )
        .await;
        assert_eq!((status, body["err"].as_str()), (400, Some("invalid_key")));
    }
    assert!(
        tx.jwks_fetches() - before <= 1,
        "{} JWKS fetches for 5 unknown kids",
        tx.jwks_fetches() - before
    );
    s.app.stop().await;
}

#[tokio::test]
async fn polled_sets_are_acked_by_jti_after_the_ledger_and_bad_ones_returned_as_set_errs() {
    let tx = Transmitter::start().await;
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), POLL_TOKEN).unwrap();
    let extra = json!({
        "push": false,
        "poll_url": format!("{}/poll", tx.url),
        "poll_token": format!("file:{}", token_file.path().display()),
        "poll_interval": "50ms",
    });
    let email = format!("{}@corp.example", unique("carol"));
    let (good_jti, c) = compromise(&tx, &email);
    tx.queue(&good_jti, sign("ssf/k1.pem", "k1", &c));
    let (bad_jti, c) = compromise(&tx, &email);
    tx.queue(&bad_jti, sign("idp/test-rsa-private.pem", "k1", &c));

    let s = deprovd_receiving(vec![receiver("idp", &tx, extra)]).await;
    let ack_poll = eventually(
        Duration::from_secs(15),
        "a poll acknowledging the SETs",
        || async {
            tx.polls()
                .into_iter()
                .find(|p| p["ack"].as_array().is_some_and(|a| !a.is_empty()))
        },
    )
    .await;
    assert_eq!(ack_poll["ack"], json!([good_jti]));
    assert_eq!(
        ack_poll["setErrs"][&bad_jti]["err"], "invalid_key",
        "{ack_poll}"
    );
    assert!(ack_poll["setErrs"].get(&good_jti).is_none());
    assert_eq!(ack_poll["returnImmediately"], true);
    // Acknowledged only after the alert's action was in the ledger.
    let actions = s.app.actions(&format!("subject={email}")).await;
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["origin"]["alert_id"], good_jti.as_str());
    eventually(
        Duration::from_secs(10),
        "the target disables the user",
        || async { acted_on(&s.target).contains(&email).then_some(()) },
    )
    .await;
    assert!(tx.state.lock().unwrap().outstanding.is_empty());
    s.app.stop().await;
}

#[tokio::test]
async fn a_lockout_on_one_deprovd_is_signalled_to_another_and_contains_the_user_there() {
    // A's issuer must be its own URL, so A's port is chosen before A starts.
    let port_a = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let issuer_a = format!("http://127.0.0.1:{port_a}");

    // B listens to A.
    let b = deprovd_receiving(vec![json!({
        "name": "deprovd-a",
        "issuer": issuer_a,
        "audience": AUDIENCE,
        "config_url": format!("{issuer_a}/.well-known/ssf-configuration"),
    })])
    .await;
    let b_token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(b_token.path(), &b.app.token).unwrap();

    // A transmits to B, signing with the fixture key.
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), fixture("ssf/k1.pem")).unwrap();
    let a_target = Target::start().await;
    a_target.always("POST", "/good", Reply::status(204));
    let a_data = tempfile::tempdir().unwrap();
    let a_policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let a_ssf = json!({"transmitter": {
        "issuer": issuer_a,
        "signing_key": format!("file:{}", key_file.path().display()),
        "kid": "a-1",
        "receivers": [{
            "name": "b",
            "push_url": b.app.url("/v1/ssf/deprovd-a"),
            "audience": AUDIENCE,
            "token": format!("file:{}", b_token.path().display()),
        }],
    }});
    let a = builder(a_data.path(), a_policies.path(), &a_target.url(), a_ssf)
        .with(|s| s.api.listen = format!("127.0.0.1:{port_a}"))
        .spawn()
        .await;
    a.wait_ready(Duration::from_secs(10)).await;

    // A publishes its metadata and the public half of its key.
    let meta: Value = a
        .http
        .get(a.url("/.well-known/ssf-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], issuer_a.as_str());
    assert_eq!(meta["jwks_uri"], format!("{issuer_a}/v1/ssf/jwks"));
    let jwks: Value = a
        .http
        .get(a.url("/v1/ssf/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut want = jwk("k1");
    want["kid"] = "a-1".into();
    assert_eq!(jwks["keys"], json!([want]));
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");

    // A responder locks the user out on A.
    let email = format!("{}@corp.example", unique("dave"));
    let r = a
        .http
        .post(a.url("/v1/lockouts"))
        .bearer_auth(&a.token)
        .json(&json!({"subject": email, "reason": "stolen laptop", "operations": ["disable_account"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    eventually(Duration::from_secs(10), "A disables the user", || async {
        acted_on(&a_target).contains(&email).then_some(())
    })
    .await;

    // B receives RISC account-disabled (hijacking → high) and disables the user on its side too.
    eventually(Duration::from_secs(15), "B disables the user", || async {
        acted_on(&b.target).contains(&email).then_some(())
    })
    .await;
    let actions = b.app.actions(&format!("subject={email}")).await;
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(
        actions[0]["reason"]
            .as_str()
            .unwrap()
            .contains("account disabled"),
        "{actions:?}"
    );
    eventually(Duration::from_secs(5), "A counts the delivery", || async {
        a.metric("deprovd_ssf_transmitted_total{outcome=\"delivered\",receiver=\"b\"}")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(
        b.app
            .metric("deprovd_ssf_sets_total{outcome=\"accepted\",receiver=\"deprovd-a\"}")
            .await,
        Some(1.0)
    );
    a.stop().await;
    b.app.stop().await;
}

#[tokio::test]
async fn containment_and_restore_signals_are_signed_sets_retried_after_a_5xx() {
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), fixture("ssf/k1.pem")).unwrap();
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), "crm-token").unwrap();
    // The downstream receiver is unavailable at first.
    let crm = Target::start().await;
    crm.then("POST", "/ssf", Reply::status(503));
    crm.then(
        "POST",
        "/ssf",
        Reply::status(503).header("Retry-After", "1"),
    );
    crm.always("POST", "/ssf", Reply::status(202));
    let s = deprovd_with(json!({"transmitter": {
        "issuer": "https://deprovd.test",
        "signing_key": format!("file:{}", key_file.path().display()),
        "kid": "k1",
        "receivers": [{
            "name": "crm",
            "push_url": format!("{}/ssf", crm.url()),
            "audience": "https://crm.test",
            "token": format!("file:{}", token_file.path().display()),
        }],
    }}))
    .await;
    let email = format!("{}@corp.example", unique("erin"));
    let r = s
        .app
        .http
        .post(s.app.url("/v1/lockouts"))
        .bearer_auth(&s.app.token)
        .json(&json!({"subject": email, "reason": "phished",
                      "operations": ["disable_account", "revoke_sessions"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let lockout: Value = r.json().await.unwrap();
    // Containment does not wait for the signal's retries.
    eventually(Duration::from_secs(5), "both containment calls", || async {
        (acted_on(&s.target).iter().filter(|e| **e == email).count() == 2).then_some(())
    })
    .await;
    assert!(
        crm.count("POST", "/ssf") < 4,
        "containment finished before the signals were delivered"
    );
    eventually(
        Duration::from_secs(15),
        "both signals delivered",
        || async {
            s.app
                .metric("deprovd_ssf_transmitted_total{outcome=\"delivered\",receiver=\"crm\"}")
                .await
                .filter(|v| *v == 2.0)
        },
    )
    .await;
    let seen = crm.seen();
    assert_eq!(seen.len(), 4, "two 503s retried, then two 202s");

    // Each is a SET signed with the published key, addressed to the receiver, about the user.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk("k1")).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.set_audience(&["https://crm.test"]);
    v.set_issuer(&["https://deprovd.test"]);
    let mut events = Vec::new();
    for req in &seen {
        assert_eq!(req.headers["content-type"], "application/secevent+jwt");
        assert_eq!(req.headers["authorization"], "Bearer crm-token");
        let set = std::str::from_utf8(&req.body).unwrap();
        let data = jsonwebtoken::decode::<Value>(
            set,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .expect("a valid SET");
        assert_eq!(data.header.typ.as_deref(), Some("secevent+jwt"));
        assert_eq!(data.header.kid.as_deref(), Some("k1"));
        assert_eq!(
            data.claims["sub_id"],
            json!({"format": "email", "email": email})
        );
        let (event_type, event) = data.claims["events"]
            .as_object()
            .unwrap()
            .iter()
            .next()
            .unwrap();
        events.push((
            event_type.clone(),
            event.clone(),
            data.claims["jti"].clone(),
        ));
    }
    let delivered: Vec<_> = events[2..].to_vec();
    let types: std::collections::BTreeSet<&str> =
        delivered.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            ACCOUNT_DISABLED,
            "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
        ]
        .into_iter()
        .collect()
    );
    for (t, e, _) in &delivered {
        if t == ACCOUNT_DISABLED {
            assert_eq!(e["reason"], "hijacking");
        } else {
            assert_eq!(e["initiating_entity"], "admin");
            assert_eq!(
                e["reason_admin"]["en"]
                    .as_str()
                    .map(|r| r.contains("phished")),
                Some(true),
                "{e}"
            );
        }
    }
    // A retried SET is the same SET (same jti), so a receiver that did see it drops the copy.
    let jtis: std::collections::BTreeSet<String> =
        events.iter().map(|(_, _, j)| j.to_string()).collect();
    assert_eq!(jtis.len(), 2, "{events:?}");

    // Restoring the lockout re-enables the account: downstream hears RISC account-enabled.
    let id = lockout["id"].as_str().expect("lockout id");
    let r = s
        .app
        .http
        .post(s.app.url(&format!("/v1/lockouts/{id}/restore")))
        .bearer_auth(&s.app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    eventually(
        Duration::from_secs(15),
        "account-enabled delivered",
        || async {
            s.app
                .metric("deprovd_ssf_transmitted_total{outcome=\"delivered\",receiver=\"crm\"}")
                .await
                .filter(|v| *v == 3.0)
        },
    )
    .await;
    let last = crm.seen().pop().expect("the restore's SET");
    let data = jsonwebtoken::decode::<Value>(
        std::str::from_utf8(&last.body).unwrap(),
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &v,
    )
    .expect("a valid SET");
    assert_eq!(
        data.claims["events"],
        json!({"https://schemas.openid.net/secevent/risc/event-type/account-enabled": {}})
    );
    assert_eq!(
        data.claims["sub_id"],
        json!({"format": "email", "email": email})
    );
    s.app.stop().await;
}

#[tokio::test]
async fn an_unreachable_jwks_asks_the_transmitter_to_retry_instead_of_refusing_the_set() {
    let tx = Transmitter::start().await;
    let s = deprovd_receiving(vec![receiver(
        "idp",
        &tx,
        json!({"jwks_refetch_interval": "0s"}),
    )])
    .await;
    let email = format!("{}@corp.example", unique("frank"));
    let (_, c) = compromise(&tx, &email);
    let set = sign("ssf/k1.pem", "k1", &c);

    tx.state.lock().unwrap().jwks_down = true;
    let (status, body) = push(&s.app, "idp", &set).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("cannot be fetched"),
        "{body}"
    );

    // The transmitter retries once its key endpoint is back: the same SET is accepted, not a replay.
    tx.state.lock().unwrap().jwks_down = false;
    let (status, body) = push(&s.app, "idp", &set).await;
    assert_eq!(status, 202, "{body}");
    eventually(
        Duration::from_secs(10),
        "the target disables the user",
        || async { acted_on(&s.target).contains(&email).then_some(()) },
    )
    .await;
    s.app.stop().await;
}

#[tokio::test]
async fn a_poll_round_that_settles_nothing_waits_instead_of_spinning() {
    let tx = Transmitter::start().await;
    // The transmitter's keys cannot be fetched: every polled SET is "retry later" (neither acked
    // nor errored), and the transmitter, asked with returnImmediately, hands it out again at once.
    tx.state.lock().unwrap().jwks_down = true;
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), POLL_TOKEN).unwrap();
    let mut extra = json!({
        "push": false,
        "poll_url": format!("{}/poll", tx.url),
        "poll_token": format!("file:{}", token_file.path().display()),
        "poll_interval": "50ms",
    });
    let email = format!("{}@corp.example", unique("gina"));
    let (jti, c) = compromise(&tx, &email);
    tx.queue(&jti, sign("ssf/k1.pem", "k1", &c));
    extra["jwks_refetch_interval"] = json!("0s");
    let s = deprovd_receiving(vec![receiver("idp", &tx, extra)]).await;
    eventually(Duration::from_secs(10), "the first polls", || async {
        (tx.polls().len() >= 2).then_some(())
    })
    .await;
    // While stuck the receiver backs off: every poll comes at least the 50 ms interval (longer each
    // round) after the one before; a loop without a pause would poll again at once. Six gaps in a
    // row, however long they take, rather than a count over a wall-clock window.
    let before = tx.polls().len();
    eventually(
        Duration::from_secs(15),
        "six more polls while stuck",
        || async { (tx.polls().len() > before + 6).then_some(()) },
    )
    .await;
    let times = tx.poll_times();
    for w in times[before - 1..].windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(50),
            "polls only {gap:?} apart while stuck"
        );
    }
    assert!(tx.polls().iter().all(|p| p["ack"] == json!([])));

    // Once the keys are back the SET is processed and acknowledged (the backoff is capped).
    tx.state.lock().unwrap().jwks_down = false;
    eventually(Duration::from_secs(15), "the SET acknowledged", || async {
        tx.polls()
            .iter()
            .any(|p| p["ack"] == json!([jti]))
            .then_some(())
    })
    .await;
    s.app.stop().await;
}
