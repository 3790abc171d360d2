//! Console sessions: a token exchanged for a random id in a cookie; the session itself in the state
//! store (so replicas share it); CSRF tokens; the same-origin check on POSTs.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ConsoleConfig;
use crate::api::{Caller, TokenStore};
use crate::ledger::{DocStore, StoreError};

/// State-store namespace of sessions (SHA-256 of the id → [`SessionDoc`]).
pub(crate) const SESSION_NS: &str = "console_session";
/// The session cookie's name.
pub(crate) const COOKIE: &str = "deprovd_console";

/// What the store keeps for a session. The id itself is only in the browser's cookie; the store
/// has its hash, so reading the store does not yield a usable cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionDoc {
    /// SHA-256 (hex) of the token signed in with; the holder is looked up on every request.
    token_sha256: String,
    /// Per-session CSRF token, in every form.
    csrf: String,
    created_at: DateTime<Utc>,
    /// Last time the session was refreshed in the store (see [`touch_every`]).
    seen_at: DateTime<Utc>,
    /// Signed out: refused even if the document has not expired yet.
    #[serde(default)]
    revoked: bool,
}

/// A live session: who is signed in (as the token store names them now) and its CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// SHA-256 (hex) of the session id: the store key.
    key: String,
    pub(crate) caller: Caller,
    pub(crate) csrf: String,
}

/// 32 bytes from `rand::rng()` (ChaCha12, seeded from the OS and reseeded), hex: session ids and
/// CSRF tokens.
pub(crate) fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key_of(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// How often a busy session is re-written to extend its idle expiry: a quarter of the idle time, at
/// most a minute, so a page polling every second does not write the store every second. The idle
/// expiry is therefore honoured to within this much.
fn touch_every(cfg: &ConsoleConfig) -> Duration {
    (cfg.session_idle / 4).min(Duration::from_secs(60))
}

/// Start a session for the holder of a token whose SHA-256 is `token_hash`; the new id (for the
/// cookie) and the session.
pub(crate) async fn create(
    store: &dyn DocStore,
    caller: Caller,
    token_hash: &[u8; 32],
    cfg: &ConsoleConfig,
    now: DateTime<Utc>,
) -> Result<(String, Session), StoreError> {
    let id = new_secret();
    let doc = SessionDoc {
        token_sha256: hex::encode(token_hash),
        csrf: new_secret(),
        created_at: now,
        seen_at: now,
        revoked: false,
    };
    let key = key_of(&id);
    store
        .put_json(
            SESSION_NS,
            &key,
            &to_json(&doc),
            true,
            Some(cfg.session_idle),
        )
        .await?;
    Ok((
        id,
        Session {
            key,
            caller,
            csrf: doc.csrf,
        },
    ))
}

fn to_json(doc: &SessionDoc) -> serde_json::Value {
    serde_json::to_value(doc).unwrap_or_default()
}

/// The live session for cookie value `id` at `now`: `None` when unknown, expired (idle or
/// absolute), signed out, or when its token no longer exists. Extends the idle expiry.
pub(crate) async fn load(
    store: &dyn DocStore,
    tokens: &TokenStore,
    id: &str,
    cfg: &ConsoleConfig,
    now: DateTime<Utc>,
) -> Result<Option<Session>, StoreError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let key = key_of(id);
    let Some(raw) = store.get_json(SESSION_NS, &key).await? else {
        return Ok(None);
    };
    let Ok(mut doc) = serde_json::from_value::<SessionDoc>(raw) else {
        return Ok(None);
    };
    let age = |t: DateTime<Utc>| (now - t).to_std().unwrap_or_default();
    if doc.revoked || age(doc.created_at) > cfg.session_max || age(doc.seen_at) > cfg.session_idle {
        return Ok(None);
    }
    let Some(hash) = hex::decode(&doc.token_sha256)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
    else {
        return Ok(None);
    };
    let Some(caller) = tokens.verify_hash(&hash) else {
        return Ok(None);
    };
    if age(doc.seen_at) >= touch_every(cfg) {
        doc.seen_at = now;
        // Never beyond the absolute expiry.
        let left = cfg.session_max.saturating_sub(age(doc.created_at));
        store
            .put_json(
                SESSION_NS,
                &key,
                &to_json(&doc),
                false,
                Some(cfg.session_idle.min(left).max(Duration::from_secs(1))),
            )
            .await?;
    }
    Ok(Some(Session {
        key,
        caller,
        csrf: doc.csrf,
    }))
}

/// Sign out: the session is refused from now on, on every replica.
pub(crate) async fn revoke(
    store: &dyn DocStore,
    session: &Session,
    cfg: &ConsoleConfig,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let doc = SessionDoc {
        token_sha256: String::new(),
        csrf: String::new(),
        created_at: now,
        seen_at: now,
        revoked: true,
    };
    store
        .put_json(
            SESSION_NS,
            &session.key,
            &to_json(&doc),
            false,
            Some(cfg.session_idle),
        )
        .await?;
    Ok(())
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub(crate) fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The session cookie's value in `headers`, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// `Set-Cookie` for a new session.
pub(crate) fn set_cookie(id: &str, cfg: &ConsoleConfig) -> String {
    format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        cfg.session_max.as_secs(),
        if cfg.secure_cookie { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie(cfg: &ConsoleConfig) -> String {
    format!(
        "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if cfg.secure_cookie { "; Secure" } else { "" }
    )
}

/// Why a POST is refused before any handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CsrfError {
    #[error("this request came from another site (Sec-Fetch-Site: {0})")]
    CrossSite(&'static str),
    #[error("this request came from another origin than this console")]
    OtherOrigin,
    #[error("the form's CSRF token is missing or not this session's; reload the page and retry")]
    Token,
}

/// Refuse a state-changing request a browser says came from elsewhere: `Sec-Fetch-Site` (when
/// sent) must be `same-origin`, and `Origin` (when sent) must be this host over http or https.
/// Requests with neither (curl, old browsers) rely on the CSRF token alone.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), CsrfError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site != "same-origin" {
            return Err(CsrfError::CrossSite(match site {
                "same-site" => "same-site",
                "cross-site" => "cross-site",
                "none" => "none",
                _ => "other",
            }));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        match (authority, host) {
            (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => {}
            _ => return Err(CsrfError::OtherOrigin),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Role;
    use crate::ledger::store::embedded::EmbeddedStore;

    fn tokens() -> TokenStore {
        let mut t = TokenStore::from_config(&[]).unwrap();
        t.add("resp-token", "rita", Role::Responder);
        t
    }

    fn cfg() -> ConsoleConfig {
        ConsoleConfig {
            session_idle: Duration::from_secs(600),
            session_max: Duration::from_secs(3600),
            ..ConsoleConfig::default()
        }
    }

    async fn signed_in(store: &EmbeddedStore, now: DateTime<Utc>) -> (String, Session) {
        let caller = tokens().verify("resp-token").unwrap();
        create(
            store,
            caller,
            &crate::api::hash_token("resp-token"),
            &cfg(),
            now,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_session_names_its_holder_until_idle_or_absolute_expiry_or_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let t0 = Utc::now();
        let (id, s) = signed_in(&store, t0).await;
        assert_eq!(id.len(), 64);
        let again = load(&store, &tokens(), &id, &cfg(), t0).await.unwrap();
        let again = again.expect("fresh session loads");
        assert_eq!(again.caller.name, "rita");
        assert_eq!(again.csrf, s.csrf);

        // Busy but older than the absolute expiry: ended.
        let mut t = t0;
        for _ in 0..6 {
            t += chrono::Duration::seconds(540);
            assert!(
                load(&store, &tokens(), &id, &cfg(), t)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        let late = t0 + chrono::Duration::seconds(3601);
        assert!(
            load(&store, &tokens(), &id, &cfg(), late)
                .await
                .unwrap()
                .is_none()
        );

        // Idle past session_idle: ended.
        let (id2, _) = signed_in(&store, t0).await;
        let idle = t0 + chrono::Duration::seconds(601);
        assert!(
            load(&store, &tokens(), &id2, &cfg(), idle)
                .await
                .unwrap()
                .is_none()
        );

        // Signed out: ended at once.
        let (id3, s3) = signed_in(&store, Utc::now()).await;
        revoke(&store, &s3, &cfg()).await.unwrap();
        assert!(
            load(&store, &tokens(), &id3, &cfg(), Utc::now())
                .await
                .unwrap()
                .is_none()
        );

        // A token no longer configured ends its sessions; a forged or unknown id finds nothing.
        let (id4, _) = signed_in(&store, Utc::now()).await;
        let none = TokenStore::from_config(&[]).unwrap();
        assert!(
            load(&store, &none, &id4, &cfg(), Utc::now())
                .await
                .unwrap()
                .is_none()
        );
        for forged in [
            String::new(),
            "x".into(),
            "0".repeat(64),
            format!("{id4}'; drop"),
        ] {
            assert!(
                load(&store, &tokens(), &forged, &cfg(), Utc::now())
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[tokio::test]
    async fn csrf_tokens_are_per_session_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let (_, a) = signed_in(&store, Utc::now()).await;
        let (_, b) = signed_in(&store, Utc::now()).await;
        assert_ne!(a.csrf, b.csrf);
        assert!(a.csrf_matches(&a.csrf.clone()));
        assert!(!a.csrf_matches(&b.csrf));
        assert!(!a.csrf_matches(""));
        assert!(!a.csrf_matches(&a.csrf[..63]));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn posts_from_other_origins_are_refused() {
        let host = ("host", "127.0.0.1:8780");
        assert_eq!(same_origin(&headers(&[host])), Ok(()));
        assert_eq!(
            same_origin(&headers(&[
                host,
                ("origin", "http://127.0.0.1:8780"),
                ("sec-fetch-site", "same-origin")
            ])),
            Ok(())
        );
        assert_eq!(
            same_origin(&headers(&[host, ("sec-fetch-site", "cross-site")])),
            Err(CsrfError::CrossSite("cross-site"))
        );
        for origin in ["http://evil.example", "null", "http://127.0.0.1:8781"] {
            assert_eq!(
                same_origin(&headers(&[host, ("origin", origin)])),
                Err(CsrfError::OtherOrigin),
                "{origin}"
            );
        }
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_console() {
        let c = set_cookie("abc", &cfg());
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/console",
            "Max-Age=3600",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Secure"));
        let secure = ConsoleConfig {
            secure_cookie: true,
            ..cfg()
        };
        assert!(set_cookie("abc", &secure).ends_with("; Secure"));
        let h = headers(&[("cookie", "a=1; deprovd_console=abc ; b=2")]);
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        assert!(clear_cookie(&cfg()).contains("Max-Age=0"));
    }
}
