//! Authentication schemes for HTTP connectors.
//!
//! Schemes are code, not data: a spec only lists which schemes it accepts (`auth: [bearer, basic]`), the
//! instance config picks one and points at its secrets ([`AuthConfig`]), and [`Auth`] holds the resolved
//! secrets and signs each finished [`reqwest::Request`]. Signing the *finished* request (method, URL,
//! headers and body bytes) is what lets the schemes still to come plug into the same enum: AWS SigV4 and
//! the webhook HMAC need the body, OAuth2 client credentials and Google service-account JWT need the
//! shared client to fetch (and cache) an access token first, Okta SSWS is a header with a fixed prefix.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::{Problem, SecretRef};

/// Header carrying the webhook signature: `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-deprovd-signature";
/// Header carrying the Unix time (seconds) covered by the signature, so a receiver can refuse replays.
pub const TIMESTAMP_HEADER: &str = "x-deprovd-timestamp";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A secret reference could not be read when the connector was built.
    #[error("cannot resolve secret {reference}: {reason}")]
    Secret { reference: String, reason: String },
    /// A secret or name cannot be sent in an HTTP header (control characters, non-ASCII).
    #[error(
        "{what} is not a valid HTTP header {part}; remove control characters and non-ASCII bytes"
    )]
    InvalidHeader {
        what: &'static str,
        part: &'static str,
    },
}

/// The `auth` table of a connector instance: `auth = { scheme = "bearer", token = "env:SCIM_TOKEN" }`.
/// Secrets are [`SecretRef`]s (`env:` / `file:`), never inline values.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No credentials (a target on a trusted network, or one authenticated by mTLS at a proxy).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer { token: SecretRef },
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        username: String,
        password: SecretRef,
    },
    /// An API key in a named header (`X-Api-Key: <key>`).
    Header { name: String, value: SecretRef },
    /// Webhook signing: HMAC-SHA256 of `"<timestamp>.<body>"` in `X-Deprovd-Signature`, the timestamp in
    /// `X-Deprovd-Timestamp`. Optionally also a bearer token for receivers that want both.
    Hmac {
        secret: SecretRef,
        #[serde(default)]
        bearer: Option<SecretRef>,
    },
}

impl fmt::Debug for AuthConfig {
    // Secret references are not secret, but keep the output short and uniform with `Auth`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthConfig({})", self.scheme())
    }
}

impl AuthConfig {
    /// The scheme's name as written in specs and config.
    pub fn scheme(&self) -> &'static str {
        match self {
            AuthConfig::None => "none",
            AuthConfig::Bearer { .. } => "bearer",
            AuthConfig::Basic { .. } => "basic",
            AuthConfig::Header { .. } => "header",
            AuthConfig::Hmac { .. } => "hmac",
        }
    }

    /// Pure checks (no secret is read): header names are valid.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        match self {
            AuthConfig::Header { name, .. } if HeaderName::from_bytes(name.as_bytes()).is_err() => {
                problems.push(Problem::new(
                    format!("{path}.name"),
                    format!("`{name}` is not a valid HTTP header name"),
                ));
            }
            AuthConfig::Basic { username, .. } if username.contains(':') || username.is_empty() => {
                problems.push(Problem::new(
                    format!("{path}.username"),
                    "a basic-auth username must be non-empty and contain no `:`",
                ));
            }
            _ => {}
        }
    }

    /// Read the secrets now (at build time) so a missing one fails startup, not the first containment.
    pub fn resolve(&self) -> Result<Auth, AuthError> {
        fn read(r: &SecretRef) -> Result<SecretString, AuthError> {
            r.resolve().map_err(|reason| AuthError::Secret {
                reference: r.to_string(),
                reason,
            })
        }
        fn header_value(s: &str, what: &'static str) -> Result<HeaderValue, AuthError> {
            let mut v = HeaderValue::from_str(s).map_err(|_| AuthError::InvalidHeader {
                what,
                part: "value",
            })?;
            v.set_sensitive(true);
            Ok(v)
        }
        Ok(match self {
            AuthConfig::None => Auth::None,
            AuthConfig::Bearer { token } => {
                let token = read(token)?;
                let value =
                    header_value(&format!("Bearer {}", token.expose_secret()), "the token")?;
                Auth::Header {
                    name: AUTHORIZATION,
                    value,
                    secret: token,
                }
            }
            AuthConfig::Basic { username, password } => {
                let password = read(password)?;
                let raw = format!("{username}:{}", password.expose_secret());
                let value = header_value(
                    &format!("Basic {}", base64_encode(raw.as_bytes())),
                    "the password",
                )?;
                Auth::Header {
                    name: AUTHORIZATION,
                    value,
                    secret: password,
                }
            }
            AuthConfig::Header { name, value } => {
                let key = read(value)?;
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    AuthError::InvalidHeader {
                        what: "the API key header",
                        part: "name",
                    }
                })?;
                let value = header_value(key.expose_secret(), "the API key")?;
                Auth::Header {
                    name,
                    value,
                    secret: key,
                }
            }
            AuthConfig::Hmac { secret, bearer } => {
                let bearer = match bearer {
                    Some(r) => {
                        let token = read(r)?;
                        let v = header_value(
                            &format!("Bearer {}", token.expose_secret()),
                            "the token",
                        )?;
                        Some((v, token))
                    }
                    None => None,
                };
                Auth::Hmac {
                    secret: read(secret)?,
                    bearer,
                }
            }
        })
    }
}

/// Resolved credentials of one connector instance. `Debug` shows the scheme only.
pub enum Auth {
    None,
    /// A single static header (bearer, basic, API key). `secret` is kept to redact echoes of it.
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
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self {
            Auth::None => "none",
            Auth::Header { name, .. } => {
                return write!(f, "Auth(header {name}: [redacted])");
            }
            Auth::Hmac { .. } => "hmac",
        };
        write!(f, "Auth({scheme}, [redacted])")
    }
}

impl Auth {
    /// Add credentials to a finished request. Synchronous today; becomes `async` (taking the shared
    /// client) when OAuth2 client credentials or Google JWT need to fetch and cache an access token.
    pub fn apply(&self, request: &mut reqwest::Request) {
        match self {
            Auth::None => {}
            Auth::Header { name, value, .. } => {
                request.headers_mut().insert(name.clone(), value.clone());
            }
            Auth::Hmac { secret, bearer } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
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
        }
    }

    /// Replace any echo of a secret in target output (error bodies sometimes quote the request).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        let mut scrub = |s: &SecretString| {
            let s = s.expose_secret();
            if s.len() >= 4 {
                out = out.replace(s, "[redacted]");
            }
        };
        match self {
            Auth::None => {}
            Auth::Header { secret, .. } => scrub(secret),
            Auth::Hmac { secret, bearer } => {
                scrub(secret);
                if let Some((_, t)) = bearer {
                    scrub(t);
                }
            }
        }
        out
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, `"<timestamp>.<body>"`). Including the timestamp in the MAC stops
/// an attacker from replaying an old body with a fresh timestamp.
pub fn sign_webhook(secret: &SecretString, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Receiver side of [`sign_webhook`], for webhook consumers written in Rust and for tests: checks the
/// signature in constant time and refuses timestamps more than `tolerance_secs` away from `now`.
pub fn verify_webhook(
    secret: &SecretString,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> bool {
    let Ok(ts) = timestamp_header.trim().parse::<u64>() else {
        return false;
    };
    if ts.abs_diff(now) > tolerance_secs {
        return false;
    }
    let Some(hex_sig) = signature_header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Standard base64 with padding (RFC 4648 §4); small enough not to need a dependency.
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }

    #[test]
    fn webhook_signature_verifies_and_refuses_tampering_and_replay() {
        let secret = SecretString::from("s3cret-key");
        let sig = sign_webhook(&secret, 1_700_000_000, b"{\"a\":1}");
        assert!(verify_webhook(
            &secret,
            "1700000000",
            &sig,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify_webhook(
            &secret,
            "1700000000",
            &sig,
            b"{\"a\":2}",
            1_700_000_010,
            300
        ));
        assert!(!verify_webhook(
            &secret,
            "1700000001",
            &sig,
            b"{\"a\":1}",
            1_700_000_010,
            300
        ));
        assert!(!verify_webhook(
            &secret,
            "1700000000",
            &sig,
            b"{\"a\":1}",
            1_700_009_999,
            300
        ));
    }

    #[test]
    fn auth_config_parses_by_scheme_and_refuses_inline_secrets_and_unknown_keys() {
        let c: AuthConfig = toml::from_str("scheme = \"bearer\"\ntoken = \"env:X\"").unwrap();
        assert_eq!(c.scheme(), "bearer");
        assert!(toml::from_str::<AuthConfig>("scheme = \"bearer\"\ntoken = \"abc\"").is_err());
        assert!(
            toml::from_str::<AuthConfig>("scheme = \"bearer\"\ntoken = \"env:X\"\nextra = 1")
                .is_err()
        );
    }

    #[test]
    fn debug_and_redaction_never_show_the_secret() {
        let auth = Auth::Header {
            name: AUTHORIZATION,
            value: HeaderValue::from_static("Bearer tok-123456"),
            secret: SecretString::from("tok-123456"),
        };
        assert!(!format!("{auth:?}").contains("tok-123456"));
        assert_eq!(
            auth.redact("bad token tok-123456 given"),
            "bad token [redacted] given"
        );
    }
}
