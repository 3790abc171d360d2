//! Authentication schemes for HTTP connectors.
//!
//! Schemes are code, not data: a spec only lists which schemes it accepts (`auth: [bearer, basic]`), the
//! instance config picks one and points at its secrets ([`AuthConfig`]), and [`Auth`] holds the resolved
//! secrets and signs each finished [`reqwest::Request`] just before it is sent. Signing the *finished*
//! request (method, URL, headers and body bytes) lets every scheme plug into the same enum: the webhook HMAC
//! needs the body, Okta SSWS is a header with a fixed prefix, and the token schemes (`oauth2` client
//! credentials, `google_service_account`) fetch an access token with the shared client first.
//!
//! # Access tokens
//!
//! A [`TokenSource`] caches one token per connector instance and fetches a new one
//! [`REFRESH_EARLY`] before the old one expires. Concurrent callers that find no fresh token queue on one
//! refresh lock, so a burst of actions causes one token request, not one per action. When the target
//! answers 401 to a token it accepted before (revoked, clock skew, key rotation), the runtime calls
//! [`Auth::invalidate`] with the lease of the token it used and retries the request once with a new token;
//! a second 401 is a terminal failure. Leases carry a generation number so that a burst of 401s for the
//! same token causes one refresh.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{Problem, SecretRef};
use crate::net::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook};

mod config;
#[cfg(test)]
mod tests;
mod token;

pub(crate) use config::{AuthConfig, CredentialUrlError, check_credential_url};
use token::Grant;
pub(crate) use token::TokenSource;

/// Every scheme name an instance may choose and a spec may accept.
pub(crate) const SCHEMES: [&str; 8] = [
    "none",
    "bearer",
    "basic",
    "header",
    "hmac",
    "ssws",
    "oauth2",
    "google_service_account",
];

/// A cached access token is replaced this long before it expires (or at half its lifetime when that is
/// shorter), so a request never leaves with a token that expires in flight.
pub(crate) const REFRESH_EARLY: Duration = Duration::from_secs(60);
/// Lifetime of the JWT client assertions we sign (`private_key_jwt`); Okta and Entra accept up to 1 hour.
pub(super) const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// Lifetime asked for in a Google service-account assertion: Google's maximum.
pub(super) const GOOGLE_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Token endpoints that omit `expires_in` (RFC 6749 only recommends it): assume a short life.
pub(super) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Token requests of a request built without a timeout.
pub(super) const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// `client_assertion_type` of RFC 7523 §2.2.
pub(crate) const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `grant_type` of RFC 7523 §2.1, used by Google service accounts.
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token endpoint, when the key file names none.
pub(super) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A secret reference could not be read when the connector was built.
    #[error("cannot resolve secret {reference}: {reason}")]
    Secret {
        reference: String,
        reason: crate::config::SecretError,
    },
    /// A secret or name cannot be sent in an HTTP header (control characters, non-ASCII).
    #[error(
        "{what} is not a valid HTTP header {part}; remove control characters and non-ASCII bytes"
    )]
    InvalidHeader {
        what: &'static str,
        part: &'static str,
    },
    /// A private key or service-account key file is unusable (found when the connector is built).
    #[error("{what}: {reason}")]
    Key { what: String, reason: String },
    /// A URL taken from a key file may not receive credentials.
    #[error("{what}: {reason}")]
    Url {
        what: String,
        reason: CredentialUrlError,
    },
    /// The token endpoint could not issue an access token. `retry` tells a transient failure (network,
    /// 429, 5xx) from a refusal of the client's credentials, which retrying cannot fix.
    #[error("cannot get an access token from {url}: {reason}")]
    Token {
        url: String,
        reason: String,
        retry: bool,
        after: Option<Duration>,
    },
}

impl AuthError {
    /// Whether the same call may succeed later (token endpoint unreachable, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AuthError::Token { retry: true, .. })
    }

    /// When the token endpoint asked us to come back.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Token { after, .. } => *after,
            _ => None,
        }
    }
}

/// How an `oauth2` client proves itself at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// `client_id` and `client_secret` in the form body (the default with a `client_secret`).
    ClientSecretPost,
    /// `Authorization: Basic` of the form-encoded `client_id:client_secret`.
    ClientSecretBasic,
    /// A JWT signed with `private_key` (RS256) as `client_assertion` (the default with a `private_key`).
    PrivateKeyJwt,
}

/// Resolved credentials of one connector instance. `Debug` shows the scheme only.
pub enum Auth {
    None,
    /// A single static header (bearer, basic, API key, SSWS). `secret` is kept to redact echoes of it.
    Header {
        name: HeaderName,
        value: HeaderValue,
        secret: SecretString,
    },
    /// Webhook HMAC signing, optionally with a bearer token as well.
    Hmac {
        secret: SecretString,
        bearer: Option<(HeaderValue, SecretString)>,
    },
    /// A bearer access token fetched (and cached) from a token endpoint (boxed: it is large and rare).
    Token(Box<TokenSource>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self {
            Auth::None => "none",
            Auth::Header { name, .. } => {
                return write!(f, "Auth(header {name}: [redacted])");
            }
            Auth::Hmac { .. } => "hmac",
            Auth::Token(t) => return write!(f, "Auth({t:?})"),
        };
        write!(f, "Auth({scheme}, [redacted])")
    }
}

/// Which token a request was sent with; handed back to [`Auth::invalidate`] when the target refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLease {
    generation: u64,
}

impl Auth {
    /// Add credentials to a finished request, fetching an access token first for the token schemes.
    /// Returns the lease of the token used (token schemes only), for [`Auth::invalidate`].
    pub async fn apply(
        &self,
        client: &reqwest::Client,
        request: &mut reqwest::Request,
    ) -> Result<Option<TokenLease>, AuthError> {
        match self {
            Auth::None => {}
            Auth::Header { name, value, .. } => {
                request.headers_mut().insert(name.clone(), value.clone());
            }
            Auth::Hmac { secret, bearer } => {
                let now = unix_now();
                let body = request.body().and_then(|b| b.as_bytes()).unwrap_or(&[]);
                let signature = sign_webhook(secret, now, body);
                let headers = request.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&signature) {
                    headers.insert(HeaderName::from_static(SIGNATURE_HEADER), v);
                }
                headers.insert(
                    HeaderName::from_static(TIMESTAMP_HEADER),
                    HeaderValue::from(now),
                );
                if let Some((v, _)) = bearer {
                    headers.insert(AUTHORIZATION, v.clone());
                }
            }
            Auth::Token(source) => {
                let timeout = request.timeout().copied().unwrap_or(TOKEN_TIMEOUT);
                let token = source.token(client, timeout).await?;
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, token.header.clone());
                return Ok(Some(TokenLease {
                    generation: token.generation,
                }));
            }
        }
        Ok(None)
    }

    /// Whether a 401 from the target is worth one retry with a new token.
    pub fn refreshes(&self) -> bool {
        matches!(self, Auth::Token(_))
    }

    /// The target refused the token of `lease`: forget it (unless a newer one is already cached), so the
    /// next [`Auth::apply`] fetches a new one.
    pub fn invalidate(&self, lease: TokenLease) {
        if let Auth::Token(source) = self {
            source.invalidate(lease);
        }
    }

    /// Replace any echo of a secret in target output (error bodies sometimes quote the request).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        let mut scrub = |s: &str| {
            if s.len() >= 4 {
                out = out.replace(s, "[redacted]");
            }
        };
        match self {
            Auth::None => {}
            Auth::Header { secret, .. } => scrub(secret.expose_secret()),
            Auth::Hmac { secret, bearer } => {
                scrub(secret.expose_secret());
                if let Some((_, t)) = bearer {
                    scrub(t.expose_secret());
                }
            }
            Auth::Token(source) => {
                if let Grant::ClientSecret { secret, .. } = &source.grant {
                    scrub(secret.expose_secret());
                }
                if let Some(t) = source.current() {
                    scrub(t.value.expose_secret());
                }
            }
        }
        out
    }
}

/// When a token fetched at `fetched` with `lifetime` must be replaced: [`REFRESH_EARLY`] before expiry,
/// or half-way through lifetimes shorter than twice that.
pub(super) fn refresh_at(fetched: Instant, lifetime: Duration) -> Instant {
    fetched + lifetime - REFRESH_EARLY.min(lifetime / 2)
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B: space as `+`).
pub(super) fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Standard base64 with padding (RFC 4648 §4), for HTTP Basic credentials.
pub(super) fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}
