//! Verifying a Security Event Token (RFC 8417) from one configured transmitter.
//!
//! Order of checks, and the RFC 8935 §2.4 error code each failure answers with:
//!
//! | check | failure code |
//! |---|---|
//! | compact JWS with three parts, JSON header and claims | `invalid_request` |
//! | header `typ` is `secevent+jwt` (RFC 8417 §2.3 explicit typing; `application/` prefix and case ignored) | `invalid_request` |
//! | `alg` in the receiver's allow-list (never `none`, never HMAC) | `invalid_key` |
//! | `iss` is this receiver's transmitter | `invalid_issuer` |
//! | `kid` in the transmitter's JWKS (refetched once on an unknown kid, rate-limited), key type fits `alg`, key not marked `use: enc` | `invalid_key` |
//! | … but the JWKS cannot be fetched at all | none: temporary, the transmitter must retry (push 503) |
//! | signature verifies under that key | `invalid_key` (the key that signed is not one the transmitter publishes) |
//! | `aud` names this receiver | `invalid_audience` |
//! | `iat` present, not in the future beyond the skew, not older than `max_age` | `invalid_request` |
//! | `jti` present; `events` holds exactly one event | `invalid_request` |
//!
//! `iss` is read before the signature is checked only to pick the transmitter's keys; nothing from
//! an unverified SET is used otherwise. Keys come only from the configured URLs — never from the
//! SET's own `jku`/`jwk`/`x5u` headers, which would let a forger bring a key.
//!
//! The key cache is per transmitter. A key withdrawn by the transmitter (rotated out, revoked) stops
//! verifying at the next refresh: on the first unknown `kid`, or after `jwks_ttl`. The cache lock is
//! never held across the JWKS request: one refetch runs at a time (single flight; the others that
//! need it wait for its result), while SETs signed with an already cached key verify meanwhile.
//!
//! Explicit typing (`typ`) keeps another kind of JWT signed by the same transmitter key (an ID token,
//! an access token) from being replayed here as a SET.

use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::time::Instant;

use super::ReceiverConfig;

/// The RFC 8935 §2.4 error codes a receiver answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrCode {
    InvalidRequest,
    InvalidKey,
    InvalidIssuer,
    InvalidAudience,
    AccessDenied,
}

impl ErrCode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrCode::InvalidRequest => "invalid_request",
            ErrCode::InvalidKey => "invalid_key",
            ErrCode::InvalidIssuer => "invalid_issuer",
            ErrCode::InvalidAudience => "invalid_audience",
            ErrCode::AccessDenied => "access_denied",
        }
    }
}

/// Why a SET was refused: the RFC code and a description for the transmitter (no secrets in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub(crate) struct Rejection {
    pub code: ErrCode,
    pub description: String,
    /// The pipeline refused the verified SET's event (it already audited and counted that).
    pub from_pipeline: bool,
    /// Not the SET's fault: the transmitter's keys could not be fetched. The SET must be delivered
    /// again later (push: 503; poll: not acknowledged), not refused for good.
    pub temporary: bool,
}

impl Rejection {
    pub(crate) fn new(code: ErrCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            from_pipeline: false,
            temporary: false,
        }
    }
}

/// A SET whose signature and claims checked out.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedSet {
    /// The whole claims object (what the `ssf` normalizer reads and `raw` keeps).
    pub claims: Value,
    pub jti: String,
    pub iss: String,
    /// The one event's type URI.
    pub event_type: String,
}

/// Parse an allow-listed JWS algorithm name; symmetric and `none` are refused.
pub(crate) fn parse_alg(name: &str) -> Result<Algorithm, VerifyError> {
    if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
        return Err(VerifyError::AlgRefused(name.to_string()));
    }
    match Algorithm::from_str(name) {
        Ok(
            a @ (Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384),
        ) => Ok(a),
        _ => Err(VerifyError::AlgUnsupported(name.to_string())),
    }
}

/// Why an algorithm name, a JWS segment or the transmitter's keys were refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error("`{0}` is refused: SETs must be signed with an asymmetric key (RS*, PS*, ES*)")]
    AlgRefused(String),
    #[error("`{0}` is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384)")]
    AlgUnsupported(String),
    #[error("not base64url: {0}")]
    NotBase64(base64::DecodeError),
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("GET {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("GET {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("GET {url}: {source}")]
    Read {
        url: String,
        source: crate::net::ReadError,
    },
    #[error("{config_url} names issuer `{issuer}`, not the configured `{expected}`")]
    WrongIssuer {
        config_url: String,
        /// As the metadata wrote it, clipped.
        issuer: String,
        expected: String,
    },
    #[error("{config_url} has no `jwks_uri`")]
    NoJwksUri { config_url: String },
    #[error("{0}")]
    JwksUri(#[from] super::UrlError),
    #[error("no config_url or jwks_uri")]
    NoKeySource,
    #[error("{jwks_uri} is not a JWK set (no `keys` array)")]
    NotJwkSet { jwks_uri: String },
}

#[derive(Default)]
struct KeyCache {
    keys: Vec<Jwk>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried (success or not), for the refetch rate limit.
    tried_at: Option<Instant>,
    /// Why the last fetch failed; `None` after a success.
    last_error: Option<String>,
}

/// Verifies SETs from one transmitter; holds its cached JWKS. Cheap to share (`Arc`).
pub(crate) struct Verifier {
    cfg: ReceiverConfig,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    /// Held only to read or update, never across a fetch.
    cache: std::sync::Mutex<KeyCache>,
    /// Held across a JWKS fetch: at most one in flight.
    refetch: tokio::sync::Mutex<()>,
}

/// Longest JWKS or metadata document read.
const MAX_DOC_BYTES: usize = 256 * 1024;

impl Verifier {
    pub(crate) fn new(cfg: ReceiverConfig, http: reqwest::Client) -> Arc<Self> {
        let algorithms = cfg
            .algorithms
            .iter()
            .filter_map(|a| parse_alg(a).ok())
            .collect();
        Arc::new(Self {
            cfg,
            algorithms,
            http,
            cache: std::sync::Mutex::new(KeyCache::default()),
            refetch: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn config(&self) -> &ReceiverConfig {
        &self.cfg
    }

    /// Check `token` completely (see the module table). `now` is injected for tests.
    pub(crate) async fn verify(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<VerifiedSet, Rejection> {
        let bad = |m: String| Rejection::new(ErrCode::InvalidRequest, m);
        let token = token.trim();
        let parts: Vec<&str> = token.split('.').collect();
        match parts.len() {
            3 => {}
            5 => {
                return Err(bad(
                    "encrypted SETs (JWE) are not supported; sign, don't encrypt".into(),
                ));
            }
            n => {
                return Err(bad(format!(
                    "not a compact JWS: {n} dot-separated parts, expected 3"
                )));
            }
        }
        let header = decode_json(parts[0]).map_err(|e| bad(format!("JWS header: {e}")))?;
        let claims = decode_json(parts[1]).map_err(|e| bad(format!("SET claims: {e}")))?;
        if !claims.is_object() || !header.is_object() {
            return Err(bad("header and claims must be JSON objects".into()));
        }
        check_typ(&header)?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = parse_alg(alg_name)
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| {
                Rejection::new(
                    ErrCode::InvalidKey,
                    format!(
                        "alg `{}` is not accepted from this transmitter",
                        clip(alg_name)
                    ),
                )
            })?;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss != self.cfg.issuer {
            return Err(Rejection::new(
                ErrCode::InvalidIssuer,
                format!("issuer `{}` is not this receiver's transmitter", clip(iss)),
            ));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let jwk = self.key_for(kid).await?;
        let key = decoding_key(&jwk, alg)?;
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            Rejection::new(
                ErrCode::InvalidKey,
                format!(
                    "signature does not verify under key `{}` of the transmitter: {e}",
                    kid.unwrap_or("(no kid)")
                ),
            )
        })?;

        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.cfg.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.cfg.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(Rejection::new(
                ErrCode::InvalidAudience,
                format!(
                    "`aud` does not name this receiver (`{}`)",
                    self.cfg.audience
                ),
            ));
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("`iat` is missing or not a NumericDate".into()))?;
        let age = now.timestamp() - iat;
        if -age > self.cfg.clock_skew.as_secs() as i64 {
            return Err(bad(format!("`iat` is {}s in the future", -age)));
        }
        if age > self.cfg.max_age.as_secs() as i64 {
            return Err(bad(format!(
                "`iat` is {age}s old, beyond this receiver's max_age of {}s",
                self.cfg.max_age.as_secs()
            )));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| bad("`jti` is missing, empty or longer than 256 characters".into()))?
            .to_string();
        let events = claims
            .get("events")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("`events` is missing or not an object".into()))?;
        if events.len() != 1 {
            return Err(bad(format!(
                "`events` holds {} events; exactly one per SET",
                events.len()
            )));
        }
        let event_type = events.keys().next().expect("one").clone();
        Ok(VerifiedSet {
            iss: iss.to_string(),
            claims,
            jti,
            event_type,
        })
    }

    /// The JWK for `kid`: from the cache, else after one (rate-limited, single-flight) refetch.
    async fn key_for(&self, kid: Option<&str>) -> Result<Jwk, Rejection> {
        let (cached, stale, seen_try) = {
            let cache = self.lock_cache();
            let stale = cache
                .fetched_at
                .is_none_or(|t| t.elapsed() >= self.cfg.jwks_ttl);
            (find(&cache.keys, kid).cloned(), stale, cache.tried_at)
        };
        if let Some(k) = &cached
            && !stale
        {
            return Ok(k.clone());
        }
        // A fetch is wanted (stale keys, or an unknown kid: the transmitter may have rotated). One
        // at a time; a known key is good enough while another task refreshes.
        let _flight = match (self.refetch.try_lock(), &cached) {
            (Ok(g), _) => g,
            (Err(_), Some(k)) => return Ok(k.clone()),
            (Err(_), None) => self.refetch.lock().await,
        };
        // Fetch unless another task just did (its result is ours too), or we just tried.
        let fetch = {
            let cache = self.lock_cache();
            cache.tried_at == seen_try && self.may_fetch(&cache)
        };
        if fetch {
            self.refresh().await;
        }
        let cache = self.lock_cache();
        if let Some(k) = find(&cache.keys, kid) {
            return Ok(k.clone());
        }
        if let Some(e) = &cache.last_error {
            // We could not ask: refusing for good would lose a genuine SET signed with a new key.
            let mut r = Rejection::new(
                ErrCode::InvalidKey,
                format!("the transmitter's keys cannot be fetched right now: {e}"),
            );
            r.temporary = true;
            return Err(r);
        }
        Err(Rejection::new(
            ErrCode::InvalidKey,
            match kid {
                Some(k) => format!(
                    "key `{}` is not in the transmitter's JWKS (unknown, rotated out or revoked)",
                    clip(k)
                ),
                None => "the SET has no `kid` and the transmitter's JWKS has not exactly one key"
                    .to_string(),
            },
        ))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        // The cache holds plain data updated in one assignment each: usable after a panic elsewhere.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn may_fetch(&self, cache: &KeyCache) -> bool {
        cache
            .tried_at
            .is_none_or(|t| t.elapsed() >= self.cfg.jwks_refetch_interval)
    }

    /// Fetch the keys; on failure keep the old ones (an outage of the transmitter's metadata must not
    /// make known keys unusable) and log.
    /// The caller holds `refetch`; the cache lock is taken only around the updates.
    async fn refresh(&self) {
        self.lock_cache().tried_at = Some(Instant::now());
        let fetched = self.fetch_keys().await;
        let mut cache = self.lock_cache();
        match fetched {
            Ok(keys) => {
                tracing::info!(receiver = %self.cfg.name, keys = keys.len(), "ssf: transmitter keys fetched");
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.last_error = None;
            }
            Err(e) => {
                cache.last_error = Some(e.to_string());
                tracing::warn!(receiver = %self.cfg.name, error = %e, "ssf: cannot fetch the transmitter's keys");
            }
        }
    }

    async fn fetch_keys(&self) -> Result<Vec<Jwk>, VerifyError> {
        let jwks_uri = match (&self.cfg.jwks_uri, &self.cfg.config_url) {
            (Some(u), _) => u.clone(),
            (None, Some(config_url)) => {
                let meta = self.get_json(config_url).await?;
                let issuer = meta.get("issuer").and_then(Value::as_str).unwrap_or("");
                if issuer != self.cfg.issuer {
                    return Err(VerifyError::WrongIssuer {
                        config_url: config_url.clone(),
                        issuer: clip(issuer),
                        expected: self.cfg.issuer.clone(),
                    });
                }
                let uri = meta
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| VerifyError::NoJwksUri {
                        config_url: config_url.clone(),
                    })?;
                super::check_url(uri)?;
                uri.to_string()
            }
            (None, None) => return Err(VerifyError::NoKeySource),
        };
        let doc = self.get_json(&jwks_uri).await?;
        let keys =
            doc.get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| VerifyError::NotJwkSet {
                    jwks_uri: jwks_uri.clone(),
                })?;
        // One odd key (an unknown `kty`) must not hide the others.
        Ok(keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .collect())
    }

    async fn get_json(&self, url: &str) -> Result<Value, VerifyError> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|source| VerifyError::Request {
                url: url.to_string(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(VerifyError::Status {
                url: url.to_string(),
                status: resp.status(),
            });
        }
        crate::net::read_json_capped(resp, MAX_DOC_BYTES)
            .await
            .map_err(|source| VerifyError::Read {
                url: url.to_string(),
                source,
            })
    }
}

/// RFC 8417 §2.3 explicit typing: `typ` must say this JWT is a SET. Media types are case-insensitive
/// and RFC 7515 §4.1.9 lets the `application/` prefix be omitted.
fn check_typ(header: &Value) -> Result<(), Rejection> {
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    let bare = typ
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"));
    let t = if bare.is_some() { &typ[12..] } else { typ };
    if t.eq_ignore_ascii_case("secevent+jwt") {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrCode::InvalidRequest,
            format!(
                "header `typ` is `{}`, not `secevent+jwt` (RFC 8417 explicit typing): not a SET",
                clip(typ)
            ),
        ))
    }
}

fn find<'a>(keys: &'a [Jwk], kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
}

/// The verification key for `alg` from `jwk`, refusing a key whose type does not fit the algorithm
/// (an `oct` key, or an EC key offered for RS256): algorithm confusion is a classic JWT forgery.
fn decoding_key(jwk: &Jwk, alg: Algorithm) -> Result<DecodingKey, Rejection> {
    let fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => {
            p.curve == jsonwebtoken::jwk::EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => {
            p.curve == jsonwebtoken::jwk::EllipticCurve::P384
        }
        _ => false,
    };
    let declared_ok = jwk
        .common
        .key_algorithm
        .and_then(|a| Algorithm::from_str(&a.to_string()).ok())
        .is_none_or(|a| a == alg);
    // A key the transmitter published for encryption is not one it signs with.
    let for_signing = !matches!(
        jwk.common.public_key_use,
        Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
    );
    if !for_signing {
        return Err(Rejection::new(
            ErrCode::InvalidKey,
            "the transmitter's key is for encryption (`use: enc`), not signing",
        ));
    }
    if !fits || !declared_ok {
        return Err(Rejection::new(
            ErrCode::InvalidKey,
            format!("the transmitter's key does not fit alg {alg:?}"),
        ));
    }
    DecodingKey::from_jwk(jwk)
        .map_err(|e| Rejection::new(ErrCode::InvalidKey, format!("unusable key in JWKS: {e}")))
}

fn decode_json(segment: &str) -> Result<Value, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(VerifyError::NotBase64)?;
    crate::json::from_slice(&bytes).map_err(VerifyError::NotJson)
}

/// A sender's value, shortened for an error message.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_explicitly_typed_sets_are_accepted() {
        use serde_json::json;
        for ok in [
            "secevent+jwt",
            "application/secevent+jwt",
            "SecEvent+JWT",
            "Application/SECEVENT+jwt",
        ] {
            assert!(
                check_typ(&json!({"alg": "RS256", "typ": ok})).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            json!({"alg": "RS256"}),
            json!({"alg": "RS256", "typ": "JWT"}),
            json!({"alg": "RS256", "typ": "at+jwt"}),
            json!({"alg": "RS256", "typ": "application/jwt"}),
            json!({"alg": "RS256", "typ": "secevent+jwt; x"}),
            json!({"alg": "RS256", "typ": 1}),
            json!({"alg": "RS256", "typ": "é"}),
        ] {
            let r = check_typ(&bad).unwrap_err();
            assert_eq!(r.code, ErrCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn a_key_published_for_encryption_does_not_verify_sets() {
        let mut jwk: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/ssf/k1.jwk.json")).unwrap();
        let sig: Jwk = serde_json::from_value(jwk.clone()).unwrap();
        assert!(decoding_key(&sig, Algorithm::RS256).is_ok());
        jwk["use"] = "enc".into();
        let enc: Jwk = serde_json::from_value(jwk).unwrap();
        let r = decoding_key(&enc, Algorithm::RS256).err().unwrap();
        assert_eq!(r.code, ErrCode::InvalidKey);
        assert!(r.description.contains("use: enc"), "{}", r.description);
    }

    /// A verifier whose JWKS endpoint accepts connections and never answers, with `k1` cached.
    async fn verifier_with_stalled_jwks() -> Arc<Verifier> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let cfg: ReceiverConfig = toml::from_str(&format!(
            "name = \"idp\"\nissuer = \"https://idp.example\"\naudience = \"https://deprovd\"\n\
             jwks_uri = \"http://{addr}/jwks\"\njwks_refetch_interval = \"0s\""
        ))
        .unwrap();
        let v = Verifier::new(cfg, reqwest::Client::new());
        let k1: Jwk =
            serde_json::from_str(include_str!("../../tests/fixtures/ssf/k1.jwk.json")).unwrap();
        {
            let mut c = v.lock_cache();
            c.keys = vec![k1];
            c.fetched_at = Some(Instant::now());
            c.tried_at = Some(Instant::now());
        }
        v
    }

    #[tokio::test]
    async fn a_slow_jwks_refetch_does_not_hold_up_sets_signed_with_a_cached_key() {
        let v = verifier_with_stalled_jwks().await;
        // An unknown kid starts a refetch that hangs at the transmitter.
        let refetching = {
            let v = v.clone();
            tokio::spawn(async move { v.key_for(Some("rotated-in")).await })
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while v.refetch.try_lock().is_ok() {
            assert!(Instant::now() < deadline, "the refetch never started");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Meanwhile the cached key is served at once.
        let k = tokio::time::timeout(std::time::Duration::from_secs(2), v.key_for(Some("k1")))
            .await
            .expect("a cached kid must not wait for the JWKS request")
            .unwrap();
        assert_eq!(k.common.key_id.as_deref(), Some("k1"));
        refetching.abort();
    }

    #[test]
    fn none_and_hmac_are_refused_by_name() {
        assert!(parse_alg("none").is_err());
        assert!(parse_alg("HS256").is_err());
        assert!(parse_alg("hs512").is_err());
        assert!(parse_alg("EdDSA").is_err());
        assert_eq!(parse_alg("ES256").unwrap(), Algorithm::ES256);
    }

    #[test]
    fn an_ec_key_is_not_accepted_for_rs256() {
        let jwk: Jwk =
            serde_json::from_str(include_str!("../../tests/fixtures/ssf/ec.jwk.json")).unwrap();
        assert_eq!(
            decoding_key(&jwk, Algorithm::RS256).err().unwrap().code,
            ErrCode::InvalidKey
        );
        assert!(decoding_key(&jwk, Algorithm::ES256).is_ok());
        let oct: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"})).unwrap();
        assert!(decoding_key(&oct, Algorithm::RS256).is_err());
    }
}
