//! deprovd as a Shared Signals transmitter: when it contains an account, downstream apps hear it.
//!
//! - `disable_account` succeeded → RISC `account-disabled` (`reason: hijacking`: deprovd disables
//!   accounts it believes compromised);
//! - `revoke_sessions` succeeded → CAEP `session-revoked` (`initiating_entity` `policy` for alert-driven
//!   actions, `admin` for a responder's lockout);
//! - a restore's `enable_account` succeeded → RISC `account-enabled`, so apps that dropped the account on
//!   `account-disabled` let it back in.
//!
//! The executor calls [`SignalEmitter::contained`], which only queues (bounded; a full queue drops and
//! counts — containment never waits for a downstream app). A background task signs one SET per
//! receiver (its own `aud`) and pushes it (RFC 8935), retrying timeouts, 408, 429 and 5xx with
//! jittered exponential backoff (honouring `Retry-After`), up to `max_attempts`; a 400 with an RFC
//! error code or a 401/403 is final and logged with the receiver's `err` and `description`.
//!
//! The `jti` is derived from the action key and the audience, so a SET re-sent for the same action
//! (the executor re-running an action after a crash) carries the same `jti` and a receiver drops it
//! as a replay. Queued SETs are not persisted: a restart loses those not yet delivered (they are
//! notifications about containment that already happened; the ledger and audit trail keep the truth).
//!
//! Keys: the private signing key is a PEM behind a secret reference; its public half for the JWKS
//! (RSA `n`/`e`, EC P-256 `x`/`y`) is derived from it with `ring`, so only one key is configured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::{
    CAEP_SESSION_REVOKED, PUSH_METHOD, RISC_ACCOUNT_DISABLED, RISC_ACCOUNT_ENABLED,
    SET_CONTENT_TYPE, TransmitterConfig,
};
use crate::action::Operation;
use crate::telemetry::{Delivery as DeliveryOutcome, Metrics};

/// Contained accounts waiting to be signalled; beyond this, new ones are dropped and counted.
const QUEUE: usize = 1024;
/// Deliveries in flight at once, over all receivers.
const CONCURRENCY: usize = 16;
/// Longest pause between two delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest error answer read from a receiver.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One containment to signal.
#[derive(Debug, Clone)]
pub(crate) struct Contained {
    pub subject: String,
    pub operation: Operation,
    pub action_key: String,
    /// A responder's lockout rather than a policy decision.
    pub manual: bool,
    pub reason: String,
}

/// The executor's handle: queue a containment without waiting. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SignalEmitter {
    tx: mpsc::Sender<Contained>,
    metrics: Arc<Metrics>,
}

impl SignalEmitter {
    /// Queue `c` if its operation has a signal (disable_account, a restore's enable_account,
    /// revoke_sessions). Never blocks.
    pub(crate) fn contained(&self, c: Contained) {
        if event_for(c.operation).is_none() {
            return;
        }
        if let Err(e) = self.tx.try_send(c) {
            let c = e.into_inner();
            warn!(action_key = %c.action_key, "ssf: transmit queue full; signal dropped");
            self.metrics.ssf_dropped();
        }
    }
}

fn event_for(op: Operation) -> Option<&'static str> {
    match op {
        Operation::DisableAccount => Some(RISC_ACCOUNT_DISABLED),
        Operation::EnableAccount => Some(RISC_ACCOUNT_ENABLED),
        Operation::RevokeSessions => Some(CAEP_SESSION_REVOKED),
        _ => None,
    }
}

struct Target {
    name: String,
    push_url: String,
    audience: String,
    token: Option<SecretString>,
}

/// The configured transmitter: keys, metadata, receivers and the delivery queue.
pub(crate) struct Transmitter {
    issuer: String,
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    public_jwk: Value,
    targets: Vec<Arc<Target>>,
    max_attempts: u32,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Contained>,
    rx: Mutex<Option<mpsc::Receiver<Contained>>>,
}

impl Transmitter {
    /// Load the key (resolving its secret reference) and the receivers' tokens. Fails with a message
    /// naming the key path when a secret is missing or the key unusable.
    pub(crate) fn build(
        cfg: &TransmitterConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, TransmitError> {
        let pem = cfg
            .signing_key
            .resolve()
            .map_err(|e| TransmitError::SigningKey(KeyError::Secret(e)))?;
        let (alg, key, public_jwk) = signing_key(pem.expose_secret(), &cfg.alg, &cfg.kid)
            .map_err(TransmitError::SigningKey)?;
        let mut targets = Vec::new();
        for (i, r) in cfg.receivers.iter().enumerate() {
            let token = match &r.token {
                Some(t) => Some(
                    t.resolve()
                        .map_err(|source| TransmitError::ReceiverToken { index: i, source })?,
                ),
                None => None,
            };
            targets.push(Arc::new(Target {
                name: r.name.clone(),
                push_url: r.push_url.clone(),
                audience: r.audience.clone(),
                token,
            }));
        }
        let http = crate::net::client(Some(Duration::from_secs(10)))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok(Arc::new(Self {
            issuer: cfg.issuer.trim_end_matches('/').to_string(),
            kid: cfg.kid.clone(),
            alg,
            key,
            public_jwk,
            targets,
            max_attempts: cfg.max_attempts,
            http,
            metrics,
            tx,
            rx: Mutex::new(Some(rx)),
        }))
    }

    pub(crate) fn emitter(&self) -> SignalEmitter {
        SignalEmitter {
            tx: self.tx.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// `GET /.well-known/ssf-configuration` (SSF 1.0 §7.1).
    pub(crate) fn metadata(&self) -> Value {
        json!({
            "spec_version": "1_0",
            "issuer": self.issuer,
            "jwks_uri": format!("{}/v1/ssf/jwks", self.issuer),
            "delivery_methods_supported": [PUSH_METHOD],
            "events_supported": [RISC_ACCOUNT_DISABLED, RISC_ACCOUNT_ENABLED, CAEP_SESSION_REVOKED],
            "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}],
        })
    }

    /// `GET /v1/ssf/jwks`: the public key only.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk] })
    }

    /// Sign the SET for `c` addressed to `audience`.
    pub(crate) fn sign(
        &self,
        c: &Contained,
        audience: &str,
        now: i64,
    ) -> Result<String, TransmitError> {
        let event = event_for(c.operation).ok_or(TransmitError::NoSignal)?;
        let payload = if event == RISC_ACCOUNT_DISABLED {
            json!({ "reason": "hijacking" })
        } else if event == RISC_ACCOUNT_ENABLED {
            json!({})
        } else {
            json!({
                "initiating_entity": if c.manual { "admin" } else { "policy" },
                "reason_admin": { "en": c.reason },
                "event_timestamp": now,
            })
        };
        let sub_id = if c.subject.contains('@') {
            json!({ "format": "email", "email": c.subject })
        } else {
            json!({ "format": "opaque", "id": c.subject })
        };
        let digest = Sha256::digest(format!("deprovd-ssf\0{}\0{audience}", c.action_key));
        let claims = json!({
            "iss": self.issuer,
            "iat": now,
            "jti": hex::encode(&digest[..16]),
            "aud": audience,
            "txn": c.action_key,
            "sub_id": sub_id,
            "events": { event: payload },
        });
        let mut header = Header::new(self.alg);
        header.typ = Some("secevent+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(TransmitError::Sign)
    }

    /// Deliver queued signals until `stop`; in-flight deliveries are abandoned at stop.
    pub(crate) async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        self.run_with(stop, CONCURRENCY).await
    }

    /// [`run`](Self::run) with `concurrency` deliveries in flight at most.
    async fn run_with(self: Arc<Self>, mut stop: watch::Receiver<bool>, concurrency: usize) {
        let Some(mut rx) = self.rx.lock().expect("not poisoned").take() else {
            return;
        };
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        'recv: loop {
            let c = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => break },
                _ = stop.wait_for(|s| *s) => break,
            };
            while tasks.try_join_next().is_some() {}
            let now = chrono::Utc::now().timestamp();
            for t in &self.targets {
                let set = match self.sign(&c, &t.audience, now) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, receiver = %t.name, "ssf: cannot sign a SET");
                        continue;
                    }
                };
                // Take the permit before spawning: while every delivery slot is busy this loop
                // stops receiving, the queue fills, and `contained` drops and counts — instead of
                // the queue draining into an unbounded set of waiting tasks.
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stop.wait_for(|s| *s) => break 'recv,
                };
                let this = self.clone();
                let t = t.clone();
                let key = c.action_key.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let outcome = this.deliver(&t, &set, &key).await;
                    this.metrics.ssf_transmitted(&t.name, outcome);
                });
            }
        }
        tasks.abort_all();
    }

    /// Push one SET to one receiver with retries; returns the outcome label.
    async fn deliver(&self, t: &Target, set: &str, action_key: &str) -> DeliveryOutcome {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .post(&t.push_url)
                .header("content-type", SET_CONTENT_TYPE)
                .header("accept", "application/json")
                .body(set.to_string());
            if let Some(tok) = &t.token {
                req = req.bearer_auth(tok.expose_secret());
            }
            let (retry, after, why) = match req.send().await {
                Ok(r) if r.status().is_success() => {
                    info!(receiver = %t.name, %action_key, "ssf: SET delivered");
                    return DeliveryOutcome::Delivered;
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    // Only `err` and `description` are read: a small cap, whatever is sent.
                    let body = crate::net::read_json_capped(r, MAX_ERROR_BODY)
                        .await
                        .unwrap_or(Value::Null);
                    let why = format!(
                        "HTTP {status} {} {}",
                        body.get("err").and_then(Value::as_str).unwrap_or(""),
                        body.get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    );
                    (matches!(status, 408 | 429) || status >= 500, after, why)
                }
                Err(e) => (true, None, format!("{e}")),
            };
            if !retry {
                warn!(receiver = %t.name, %action_key, error = %why.trim(), "ssf: receiver refused the SET");
                return DeliveryOutcome::Rejected;
            }
            if attempt >= self.max_attempts {
                warn!(receiver = %t.name, %action_key, attempts = attempt, error = %why.trim(), "ssf: giving up on a SET");
                return DeliveryOutcome::Failed;
            }
            let cap =
                (Duration::from_millis(500) * 2u32.saturating_pow(attempt - 1)).min(MAX_BACKOFF);
            let jittered =
                Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64));
            let wait = after.map_or(jittered, |a| a.max(jittered)).min(MAX_BACKOFF);
            debug!(receiver = %t.name, attempt, wait_ms = wait.as_millis() as u64, error = %why.trim(), "ssf: SET delivery will be retried");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The signing key and its public JWK, from a PEM private key.
///
/// RS256: PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`). ES256: PKCS#8 on P-256 (convert a
/// SEC1 `EC PRIVATE KEY` with `openssl pkcs8 -topk8 -nocrypt`).
pub(crate) fn signing_key(
    pem_text: &str,
    alg: &str,
    kid: &str,
) -> Result<(Algorithm, EncodingKey, Value), KeyError> {
    use ring::signature::KeyPair;
    let block = pem::parse(pem_text.as_bytes()).map_err(KeyError::NotPem)?;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    match alg {
        "RS256" => {
            let kp = match block.tag() {
                "PRIVATE KEY" => ring::signature::RsaKeyPair::from_pkcs8(block.contents()),
                "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(block.contents()),
                other => return Err(KeyError::NotRsa(other.to_string())),
            }
            .map_err(KeyError::RsaRejected)?;
            let c: ring::rsa::PublicKeyComponents<Vec<u8>> = kp.public().into();
            let key =
                EncodingKey::from_rsa_pem(pem_text.as_bytes()).map_err(KeyError::RsaUnusable)?;
            let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                             "n": b64(&c.n), "e": b64(&c.e)});
            Ok((Algorithm::RS256, key, jwk))
        }
        "ES256" => {
            if block.tag() != "PRIVATE KEY" {
                return Err(KeyError::NotPkcs8(block.tag().to_string()));
            }
            let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                block.contents(),
                &ring::rand::SystemRandom::new(),
            )
            .map_err(KeyError::EcRejected)?;
            let point = kp.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(KeyError::EcEncoding);
            }
            let key =
                EncodingKey::from_ec_pem(pem_text.as_bytes()).map_err(KeyError::EcUnusable)?;
            let jwk = json!({"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                             "x": b64(&point[1..33]), "y": b64(&point[33..])});
            Ok((Algorithm::ES256, key, jwk))
        }
        other => Err(KeyError::AlgUnsupported(other.to_string())),
    }
}

/// Why the transmitter cannot start, or cannot sign one SET.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransmitError {
    #[error("ssf.transmitter.signing_key: {0}")]
    SigningKey(KeyError),
    #[error("ssf.transmitter.receivers[{index}].token: {source}")]
    ReceiverToken {
        index: usize,
        source: crate::config::SecretError,
    },
    #[error("ssf transmitter HTTP client: {0}")]
    Client(#[from] crate::net::ClientError),
    #[error("operation has no signal")]
    NoSignal,
    #[error("signing a SET: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// Why the configured signing key cannot be used (see [`signing_key`] for what is accepted).
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("{0}")]
    Secret(crate::config::SecretError),
    #[error("not a PEM key: {0}")]
    NotPem(pem::PemError),
    #[error("a `{0}` PEM is not an RSA private key")]
    NotRsa(String),
    #[error("unusable RSA private key: {0}")]
    RsaRejected(ring::error::KeyRejected),
    #[error("unusable RSA private key: {0}")]
    RsaUnusable(jsonwebtoken::errors::Error),
    #[error("a `{0}` PEM is not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt`")]
    NotPkcs8(String),
    #[error("unusable P-256 private key: {0}")]
    EcRejected(ring::error::KeyRejected),
    #[error("unexpected P-256 public key encoding")]
    EcEncoding,
    #[error("unusable P-256 private key: {0}")]
    EcUnusable(jsonwebtoken::errors::Error),
    #[error("alg `{0}` is not supported (RS256, ES256)")]
    AlgUnsupported(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/ssf/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn public_jwk_matches_the_one_openssl_derived() {
        for (pem, jwk, alg, kid) in [
            ("k1.pem", "k1.jwk.json", "RS256", "k1"),
            ("ec.pem", "ec.jwk.json", "ES256", "ec1"),
        ] {
            let (_, _, derived) = signing_key(&fixture(pem), alg, kid).unwrap();
            let want: Value = serde_json::from_str(&fixture(jwk)).unwrap();
            assert_eq!(derived, want, "{pem}");
        }
    }

    /// A transmitter whose one receiver accepts connections and never answers, with a queue of
    /// `queue` signals.
    async fn stalled_transmitter(
        queue: usize,
    ) -> (Arc<Transmitter>, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        let (alg, key, public_jwk) = signing_key(&fixture("k1.pem"), "RS256", "k1").unwrap();
        let (tx, rx) = mpsc::channel(queue);
        let t = Arc::new(Transmitter {
            issuer: "https://deprovd.example".into(),
            kid: "k1".into(),
            alg,
            key,
            public_jwk,
            targets: vec![Arc::new(Target {
                name: "stalled".into(),
                push_url: format!("http://{addr}/events"),
                audience: "https://stalled".into(),
                token: None,
            })],
            max_attempts: 1,
            http: reqwest::Client::new(),
            metrics: Arc::new(Metrics::new()),
            tx,
            rx: Mutex::new(Some(rx)),
        });
        (t, accepted)
    }

    fn contained(n: usize) -> Contained {
        Contained {
            subject: format!("u{n}@corp.example"),
            operation: Operation::DisableAccount,
            action_key: format!("ak{n}"),
            manual: false,
            reason: "r".into(),
        }
    }

    #[tokio::test]
    async fn a_stalled_receiver_fills_the_queue_and_further_signals_are_dropped_and_counted() {
        use std::sync::atomic::Ordering;
        let (t, accepted) = stalled_transmitter(4).await;
        let emitter = t.emitter();
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(t.clone().run_with(stop, 2));
        let dropped = || {
            t.metrics
                .value(
                    "ssf_transmitted_total",
                    &[("receiver", "*"), ("outcome", "dropped")],
                )
                .unwrap_or(0.0) as u64
        };
        // Two deliveries take both slots and hang at the receiver.
        for n in 0..2 {
            emitter.contained(contained(n));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while accepted.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A third is taken off the queue and waits for a slot; then the queue (4) fills.
        emitter.contained(contained(2));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while t.tx.capacity() < t.tx.max_capacity() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the loop never took a signal"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for n in 3..7 {
            emitter.contained(contained(n));
        }
        // Give the loop every chance to drain the queue (it must not: no slot is free).
        for _ in 0..50 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            t.tx.capacity(),
            0,
            "the queue must stay full while no slot is free"
        );
        assert_eq!(dropped(), 0);
        for n in 7..17 {
            emitter.contained(contained(n));
        }
        assert_eq!(
            dropped(),
            10,
            "signals beyond the queue are dropped and counted"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "no delivery beyond the slots"
        );
    }

    #[test]
    fn wrong_key_type_for_alg_is_refused() {
        assert!(signing_key(&fixture("ec.pem"), "RS256", "x").is_err());
        assert!(signing_key(&fixture("k1.pem"), "ES256", "x").is_err());
        assert!(signing_key("not a pem", "RS256", "x").is_err());
    }

    #[test]
    fn signed_sets_verify_with_the_published_key_and_carry_the_event() {
        for (pem, alg) in [("k1.pem", "RS256"), ("ec.pem", "ES256")] {
            let (alg, key, public) = signing_key(&fixture(pem), alg, "kid-1").unwrap();
            let (tx, _rx) = mpsc::channel(1);
            let t = Transmitter {
                issuer: "https://deprovd.example".into(),
                kid: "kid-1".into(),
                alg,
                key,
                public_jwk: public.clone(),
                targets: vec![],
                max_attempts: 1,
                http: reqwest::Client::new(),
                metrics: Arc::new(Metrics::new()),
                tx,
                rx: Mutex::new(None),
            };
            let c = Contained {
                subject: "alice@corp.example".into(),
                operation: Operation::DisableAccount,
                action_key: "ak1".into(),
                manual: false,
                reason: "r".into(),
            };
            let set = t.sign(&c, "https://crm", 1767225600).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(public).unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            v.set_audience(&["https://crm"]);
            let data = jsonwebtoken::decode::<Value>(
                &set,
                &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
                &v,
            )
            .unwrap();
            assert_eq!(data.header.typ.as_deref(), Some("secevent+jwt"));
            assert_eq!(data.claims["sub_id"]["email"], "alice@corp.example");
            assert_eq!(
                data.claims["events"][RISC_ACCOUNT_DISABLED]["reason"],
                "hijacking"
            );
            let restored = Contained {
                operation: Operation::EnableAccount,
                action_key: "ak-restore".into(),
                ..c.clone()
            };
            let enabled = t.sign(&restored, "https://crm", 1767225600).unwrap();
            let enabled = jsonwebtoken::decode::<Value>(
                &enabled,
                &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
                &v,
            )
            .unwrap();
            assert_eq!(
                enabled.claims["events"],
                json!({ RISC_ACCOUNT_ENABLED: {} })
            );
            let jti_of = |set: &str| -> Value {
                let claims = set.split('.').nth(1).unwrap();
                serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
                    ["jti"]
                    .clone()
            };
            // A re-sent signal for the same action is recognisably the same SET; another
            // receiver's is not.
            let again = t.sign(&c, "https://crm", 1).unwrap();
            assert_eq!(jti_of(&again), data.claims["jti"]);
            let other = t.sign(&c, "https://other", 1).unwrap();
            assert_ne!(jti_of(&other), data.claims["jti"]);
        }
    }
}
