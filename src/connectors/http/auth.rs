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

/// Every scheme name an instance may choose and a spec may accept.
pub const SCHEMES: [&str; 8] = [
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
pub const REFRESH_EARLY: Duration = Duration::from_secs(60);
/// Lifetime of the JWT client assertions we sign (`private_key_jwt`); Okta and Entra accept up to 1 hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// Lifetime asked for in a Google service-account assertion: Google's maximum.
const GOOGLE_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Token endpoints that omit `expires_in` (RFC 6749 only recommends it): assume a short life.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Token requests of a request built without a timeout.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// `client_assertion_type` of RFC 7523 §2.2.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `grant_type` of RFC 7523 §2.1, used by Google service accounts.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token endpoint, when the key file names none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

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
    /// A private key or service-account key file is unusable (found when the connector is built).
    #[error("{what}: {reason}")]
    Key { what: String, reason: String },
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
    /// Okta API token: `Authorization: SSWS <token>`.
    Ssws { token: SecretRef },
    /// OAuth 2.0 client credentials grant (RFC 6749 §4.4): Microsoft identity platform (Entra / Graph),
    /// Okta OAuth service apps. Exactly one of `client_secret` and `private_key`.
    Oauth2 {
        /// Token endpoint (`https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`,
        /// `https://<org>.okta.com/oauth2/v1/token`).
        token_url: String,
        client_id: String,
        /// Sent space-separated as `scope`; omitted when empty.
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        client_secret: Option<SecretRef>,
        /// PEM private key (PKCS#8 or PKCS#1 RSA) for `private_key_jwt`.
        #[serde(default)]
        private_key: Option<SecretRef>,
        /// `kid` of the assertion header: the key's id as registered with the IdP (Okta requires it).
        #[serde(default)]
        key_id: Option<String>,
        /// `x5t#S256` of the assertion header: base64url SHA-256 thumbprint of the certificate uploaded to
        /// an Entra app registration (Entra finds the key by it).
        #[serde(default)]
        certificate_thumbprint: Option<String>,
        /// Overrides the default method (`client_secret_post`, or `private_key_jwt` with a key).
        #[serde(default)]
        client_auth: Option<ClientAuthMethod>,
    },
    /// Google service account with domain-wide delegation: an RS256 JWT assertion (RFC 7523) for
    /// `subject`, the Workspace admin the account acts as.
    GoogleServiceAccount {
        /// The JSON key file's content (`file:/etc/deprovd/google-sa.json`).
        key: SecretRef,
        /// The impersonated admin (`sub` claim).
        subject: String,
        scopes: Vec<String>,
        /// Overrides the key file's `token_uri` (private service connect, tests).
        #[serde(default)]
        token_url: Option<String>,
    },
}

impl fmt::Debug for AuthConfig {
    // Secret references are not secret, but keep the output short and uniform with `Auth`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthConfig({})", self.scheme())
    }
}

/// Why `url` may not receive credentials, if it may not: https, or plain http to a loopback host.
pub fn check_credential_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let loopback = crate::net::is_loopback_url(&parsed);
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        s => {
            return Err(format!(
                "`{url}`: scheme `{s}` would expose credentials; use https (http only for loopback)"
            ));
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("`{url}` must not embed credentials"));
    }
    Ok(parsed)
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
            AuthConfig::Ssws { .. } => "ssws",
            AuthConfig::Oauth2 { .. } => "oauth2",
            AuthConfig::GoogleServiceAccount { .. } => "google_service_account",
        }
    }

    /// Pure checks (no secret is read): header names, URLs, the combination of oauth2 fields.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let scopes_ok = |scopes: &[String], problems: &mut Vec<Problem>| {
            for (i, s) in scopes.iter().enumerate() {
                if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    problems.push(Problem::new(
                        format!("{path}.scopes[{i}]"),
                        "a scope must be non-empty and contain no spaces (give one per list item)",
                    ));
                }
            }
        };
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
            AuthConfig::Oauth2 {
                token_url,
                client_id,
                scopes,
                client_secret,
                private_key,
                key_id,
                certificate_thumbprint,
                client_auth,
            } => {
                if let Err(m) = check_credential_url(token_url) {
                    problems.push(Problem::new(format!("{path}.token_url"), m));
                }
                if client_id.trim().is_empty() {
                    problems.push(Problem::new(
                        format!("{path}.client_id"),
                        "must not be empty",
                    ));
                }
                scopes_ok(scopes, problems);
                match (client_secret, private_key) {
                    (Some(_), Some(_)) | (None, None) => problems.push(Problem::new(
                        path.to_string(),
                        "give exactly one of `client_secret` (client_secret_post/basic) or `private_key` (private_key_jwt)",
                    )),
                    (Some(_), None) => {
                        if key_id.is_some() || certificate_thumbprint.is_some() {
                            problems.push(Problem::new(
                                format!("{path}.key_id"),
                                "`key_id` and `certificate_thumbprint` only apply with `private_key`",
                            ));
                        }
                        if *client_auth == Some(ClientAuthMethod::PrivateKeyJwt) {
                            problems.push(Problem::new(
                                format!("{path}.client_auth"),
                                "private_key_jwt needs `private_key`, not `client_secret`",
                            ));
                        }
                    }
                    (None, Some(_)) => {
                        if client_auth.is_some_and(|m| m != ClientAuthMethod::PrivateKeyJwt) {
                            problems.push(Problem::new(
                                format!("{path}.client_auth"),
                                "a `private_key` is used with private_key_jwt only",
                            ));
                        }
                    }
                }
            }
            AuthConfig::GoogleServiceAccount {
                subject,
                scopes,
                token_url,
                ..
            } => {
                if !subject.contains('@') {
                    problems.push(Problem::new(
                        format!("{path}.subject"),
                        "must be the email of the Workspace admin the service account acts as",
                    ));
                }
                if scopes.is_empty() {
                    problems.push(Problem::new(
                        format!("{path}.scopes"),
                        "list the OAuth scopes granted to the service account's client id",
                    ));
                }
                scopes_ok(scopes, problems);
                if let Some(Err(m)) = token_url.as_deref().map(check_credential_url) {
                    problems.push(Problem::new(format!("{path}.token_url"), m));
                }
            }
            _ => {}
        }
    }

    /// Read the secrets now (at build time) so a missing one (or an unparsable key) fails startup, not the
    /// first containment.
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
        fn url(u: &str, what: &str) -> Result<reqwest::Url, AuthError> {
            check_credential_url(u).map_err(|reason| AuthError::Key {
                what: what.to_string(),
                reason,
            })
        }
        let scope = |scopes: &[String]| (!scopes.is_empty()).then(|| scopes.join(" "));
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
            AuthConfig::Ssws { token } => {
                let token = read(token)?;
                let value =
                    header_value(&format!("SSWS {}", token.expose_secret()), "the API token")?;
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
            AuthConfig::Oauth2 {
                token_url,
                client_id,
                scopes,
                client_secret,
                private_key,
                key_id,
                certificate_thumbprint,
                client_auth,
            } => {
                let token_url = url(token_url, "oauth2 token_url")?;
                let grant = match (client_secret, private_key) {
                    (Some(secret), None) => Grant::ClientSecret {
                        client_id: client_id.clone(),
                        secret: read(secret)?,
                        basic: *client_auth == Some(ClientAuthMethod::ClientSecretBasic),
                        scope: scope(scopes),
                    },
                    (None, Some(key_ref)) => {
                        let pem = read(key_ref)?;
                        let key =
                            jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
                                .map_err(|e| AuthError::Key {
                                    what: format!("oauth2 private_key {key_ref}"),
                                    reason: format!("not an RSA private key in PEM form ({e})"),
                                })?;
                        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                        header.kid = key_id.clone();
                        header.x5t_s256 = certificate_thumbprint.clone();
                        Grant::PrivateKeyJwt {
                            client_id: client_id.clone(),
                            key: Box::new(key),
                            header,
                            scope: scope(scopes),
                        }
                    }
                    _ => {
                        return Err(AuthError::Key {
                            what: "oauth2".into(),
                            reason: "give exactly one of `client_secret` or `private_key`".into(),
                        });
                    }
                };
                Auth::Token(Box::new(TokenSource::new(grant, token_url)))
            }
            AuthConfig::GoogleServiceAccount {
                key,
                subject,
                scopes,
                token_url,
            } => {
                let what = format!("google service-account key {key}");
                let file = read(key)?;
                let parsed: GoogleKeyFile =
                    serde_json::from_str(file.expose_secret()).map_err(|e| AuthError::Key {
                        what: what.clone(),
                        reason: format!(
                            "not a service-account JSON key file ({}); download one from the Google Cloud console",
                            e.classify_name()
                        ),
                    })?;
                if parsed.kind != "service_account" {
                    return Err(AuthError::Key {
                        what,
                        reason: format!(
                            "`type` is `{}`; domain-wide delegation needs a `service_account` key",
                            parsed.kind
                        ),
                    });
                }
                let signing =
                    jsonwebtoken::EncodingKey::from_rsa_pem(parsed.private_key.as_bytes())
                        .map_err(|e| AuthError::Key {
                            what: what.clone(),
                            reason: format!(
                                "`private_key` is not an RSA private key in PEM form ({e})"
                            ),
                        })?;
                let token_url = url(
                    token_url
                        .as_deref()
                        .or(parsed.token_uri.as_deref())
                        .unwrap_or(GOOGLE_TOKEN_URI),
                    &format!("{what}: token_uri"),
                )?;
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = parsed.private_key_id.clone();
                Auth::Token(Box::new(TokenSource::new(
                    Grant::GoogleJwt {
                        client_email: parsed.client_email,
                        subject: subject.clone(),
                        scope: scopes.join(" "),
                        key: Box::new(signing),
                        header,
                    },
                    token_url,
                )))
            }
        })
    }
}

/// The fields of a Google service-account key file that we use.
#[derive(Deserialize)]
struct GoogleKeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    #[serde(default)]
    private_key_id: Option<String>,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    /// The error's category only: a parse error message can quote part of the (secret) input.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => {
                "a required field is missing or has the wrong type"
            }
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
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

/// How a [`TokenSource`] asks for a token.
enum Grant {
    /// RFC 6749 §4.4 with `client_secret_post` or `client_secret_basic`.
    ClientSecret {
        client_id: String,
        secret: SecretString,
        basic: bool,
        scope: Option<String>,
    },
    /// RFC 6749 §4.4 with an RFC 7523 client assertion (`private_key_jwt`).
    PrivateKeyJwt {
        client_id: String,
        key: Box<jsonwebtoken::EncodingKey>,
        header: jsonwebtoken::Header,
        scope: Option<String>,
    },
    /// RFC 7523 §2.1 JWT bearer grant for a Google service account acting as `subject`.
    GoogleJwt {
        client_email: String,
        subject: String,
        scope: String,
        key: Box<jsonwebtoken::EncodingKey>,
        header: jsonwebtoken::Header,
    },
}

impl Grant {
    fn name(&self) -> &'static str {
        match self {
            Grant::ClientSecret { basic: false, .. } => "oauth2 client_secret_post",
            Grant::ClientSecret { basic: true, .. } => "oauth2 client_secret_basic",
            Grant::PrivateKeyJwt { .. } => "oauth2 private_key_jwt",
            Grant::GoogleJwt { .. } => "google_service_account",
        }
    }
}

/// A cached access token.
struct Token {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    /// The bare token, to scrub echoes of it.
    value: SecretString,
    /// Use no longer than this (expiry minus the early-refresh margin).
    refresh_at: Instant,
    generation: u64,
}

/// Fetches, caches and refreshes the access token of one connector instance (see the module docs).
pub struct TokenSource {
    grant: Grant,
    token_url: reqwest::Url,
    current: std::sync::RwLock<Option<Arc<Token>>>,
    /// Held while fetching, so concurrent callers share one refresh.
    refresh: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} via {}, [redacted]",
            self.grant.name(),
            self.token_url
        )
    }
}

#[derive(serde::Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

#[derive(serde::Serialize)]
struct GoogleClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl TokenSource {
    fn new(grant: Grant, token_url: reqwest::Url) -> Self {
        Self {
            grant,
            token_url,
            current: std::sync::RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Option<Arc<Token>> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    fn fresh(&self) -> Option<Arc<Token>> {
        self.current().filter(|t| Instant::now() < t.refresh_at)
    }

    fn invalidate(&self, lease: TokenLease) {
        if let Ok(mut g) = self.current.write() {
            if g.as_ref().is_some_and(|t| t.generation == lease.generation) {
                *g = None;
            }
        }
    }

    /// A fresh token: the cached one, or one fetched now (once for all concurrent callers).
    async fn token(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Arc<Token>, AuthError> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _guard = self.refresh.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t); // another caller refreshed while we waited
        }
        let token = Arc::new(self.fetch(client, timeout).await?);
        if let Ok(mut g) = self.current.write() {
            *g = Some(token.clone());
        }
        Ok(token)
    }

    fn err(&self, reason: String, retry: bool, after: Option<Duration>) -> AuthError {
        AuthError::Token {
            url: self.token_url.to_string(),
            reason,
            retry,
            after,
        }
    }

    fn sign<C: serde::Serialize>(
        &self,
        header: &jsonwebtoken::Header,
        claims: &C,
        key: &jsonwebtoken::EncodingKey,
    ) -> Result<String, AuthError> {
        jsonwebtoken::encode(header, claims, key)
            .map_err(|e| self.err(format!("cannot sign the JWT assertion: {e}"), false, None))
    }

    /// One token request.
    async fn fetch(&self, client: &reqwest::Client, timeout: Duration) -> Result<Token, AuthError> {
        let now = unix_now();
        let aud = self.token_url.as_str();
        let mut form: Vec<(&str, String)> = Vec::new();
        let mut request = client.post(self.token_url.clone()).timeout(timeout);
        match &self.grant {
            Grant::ClientSecret {
                client_id,
                secret,
                basic,
                scope,
            } => {
                form.push(("grant_type", "client_credentials".into()));
                if *basic {
                    // RFC 6749 §2.3.1: both parts form-encoded before Basic encoding.
                    let raw = format!(
                        "{}:{}",
                        form_encode(client_id),
                        form_encode(secret.expose_secret())
                    );
                    let mut v =
                        HeaderValue::from_str(&format!("Basic {}", base64_encode(raw.as_bytes())))
                            .map_err(|_| {
                                self.err("client secret is not header-safe".into(), false, None)
                            })?;
                    v.set_sensitive(true);
                    request = request.header(AUTHORIZATION, v);
                } else {
                    form.push(("client_id", client_id.clone()));
                    form.push(("client_secret", secret.expose_secret().to_string()));
                }
                if let Some(s) = scope {
                    form.push(("scope", s.clone()));
                }
            }
            Grant::PrivateKeyJwt {
                client_id,
                key,
                header,
                scope,
            } => {
                let claims = AssertionClaims {
                    iss: client_id,
                    sub: client_id,
                    aud,
                    iat: now,
                    nbf: now,
                    exp: now + ASSERTION_LIFETIME.as_secs(),
                    jti: uuid::Uuid::new_v4().to_string(),
                };
                let assertion = self.sign(header, &claims, key)?;
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_id", client_id.clone()));
                if let Some(s) = scope {
                    form.push(("scope", s.clone()));
                }
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION_TYPE.into()));
                form.push(("client_assertion", assertion));
            }
            Grant::GoogleJwt {
                client_email,
                subject,
                scope,
                key,
                header,
            } => {
                let claims = GoogleClaims {
                    iss: client_email,
                    sub: subject,
                    scope,
                    aud,
                    iat: now,
                    exp: now + GOOGLE_ASSERTION_LIFETIME.as_secs(),
                };
                let assertion = self.sign(header, &claims, key)?;
                form.push(("grant_type", JWT_BEARER_GRANT.into()));
                form.push(("assertion", assertion));
            }
        }
        let resp = request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                };
                self.err(format!("{kind}: {e}"), true, None)
            })?;
        let status = resp.status();
        let after = crate::net::headers::retry_after(resp.headers(), SystemTime::now());
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.err(format!("reading the response failed: {e}"), true, None))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let retry = matches!(status.as_u16(), 408 | 429 | 500..=599);
            let code = json.get("error").and_then(Value::as_str).unwrap_or("");
            // RFC 6749 §5.2 `error_description`, else an error envelope's first message (CrowdStrike:
            // `{"errors": [{"code": 403, "message": "access denied, invalid client"}]}`).
            let desc = json
                .get("error_description")
                .or_else(|| json.pointer("/errors/0/message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut reason = format!("HTTP {}", status.as_u16());
            for part in [code, desc] {
                if !part.is_empty() {
                    reason.push_str(": ");
                    reason.push_str(&part.chars().take(300).collect::<String>());
                }
            }
            if !retry {
                reason.push_str(
                    " (the token endpoint refused the client: check client id, secret or key, and the granted scopes)",
                );
            }
            return Err(self.err(self.scrub(&reason), retry, after));
        }
        let Some(access) = json.get("access_token").and_then(Value::as_str) else {
            return Err(self.err(
                format!("HTTP {} without an access_token", status.as_u16()),
                false,
                None,
            ));
        };
        if let Some(kind) = json.get("token_type").and_then(Value::as_str) {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(self.err(
                    format!("token_type `{kind}` is not supported (only Bearer)"),
                    false,
                    None,
                ));
            }
        }
        // `expires_in` is a number in RFC 6749; Entra's v1 endpoint sends it as a string.
        let lifetime = match json.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64().map(Duration::from_secs),
            Some(Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
            _ => None,
        }
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let mut header = HeaderValue::from_str(&format!("Bearer {access}"))
            .map_err(|_| self.err("the access token is not header-safe".into(), false, None))?;
        header.set_sensitive(true);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(token_url = %self.token_url, grant = self.grant.name(), lifetime_secs = lifetime.as_secs(), "fetched an access token");
        Ok(Token {
            header,
            value: SecretString::from(access.to_string()),
            refresh_at: refresh_at(Instant::now(), lifetime),
            generation,
        })
    }

    fn scrub(&self, text: &str) -> String {
        match &self.grant {
            Grant::ClientSecret { secret, .. } if secret.expose_secret().len() >= 4 => {
                text.replace(secret.expose_secret(), "[redacted]")
            }
            _ => text.to_string(),
        }
    }
}

/// When a token fetched at `fetched` with `lifetime` must be replaced: [`REFRESH_EARLY`] before expiry,
/// or half-way through lifetimes shorter than twice that.
fn refresh_at(fetched: Instant, lifetime: Duration) -> Instant {
    fetched + lifetime - REFRESH_EARLY.min(lifetime / 2)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
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
    fn auth_config_parses_by_scheme_and_refuses_inline_secrets_and_unknown_keys() {
        let c: AuthConfig = toml::from_str("scheme = \"bearer\"\ntoken = \"env:X\"").unwrap();
        assert_eq!(c.scheme(), "bearer");
        assert!(toml::from_str::<AuthConfig>("scheme = \"bearer\"\ntoken = \"abc\"").is_err());
        assert!(
            toml::from_str::<AuthConfig>("scheme = \"bearer\"\ntoken = \"env:X\"\nextra = 1")
                .is_err()
        );
    }

    // -----------------------------------------------------------------------------------------
    // Token schemes against a local token endpoint.
    // -----------------------------------------------------------------------------------------

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const PRIVATE_PEM: &str = include_str!("../../../tests/fixtures/idp/test-rsa-private.pem");
    const PUBLIC_PEM: &str = include_str!("../../../tests/fixtures/idp/test-rsa-public.pem");

    /// One token request as the endpoint saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        form: BTreeMap<String, String>,
        authorization: Option<String>,
        content_type: Option<String>,
    }

    /// (status, body, extra header) of a scripted failure.
    type Failure = (u16, Value, Option<(&'static str, &'static str)>);

    #[derive(Default)]
    struct Endpoint {
        seen: Mutex<Vec<Seen>>,
        /// (status, body, extra header) answered instead of a fresh token.
        fail: Mutex<Option<Failure>>,
        expires_in: AtomicU64,
        delay_ms: AtomicU64,
    }

    async fn token_endpoint() -> (String, Arc<Endpoint>) {
        use axum::response::IntoResponse;
        let state = Arc::new(Endpoint::default());
        state.expires_in.store(3600, Ordering::Relaxed);
        let app = axum::Router::new()
            .route(
                "/oauth2/token",
                axum::routing::post(
                    |axum::extract::State(st): axum::extract::State<Arc<Endpoint>>,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| async move {
                        let url = reqwest::Url::parse(&format!(
                            "http://x/?{}",
                            String::from_utf8_lossy(&body)
                        ))
                        .expect("form");
                        let form: BTreeMap<String, String> =
                            url.query_pairs().into_owned().collect();
                        let h = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        let n = {
                            let mut seen = st.seen.lock().unwrap();
                            seen.push(Seen {
                                form,
                                authorization: h("authorization"),
                                content_type: h("content-type"),
                            });
                            seen.len()
                        };
                        let delay = st.delay_ms.load(Ordering::Relaxed);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        if let Some((status, body, header)) = st.fail.lock().unwrap().clone() {
                            let mut resp = (
                                axum::http::StatusCode::from_u16(status).unwrap(),
                                axum::Json(body),
                            )
                                .into_response();
                            if let Some((k, v)) = header {
                                resp.headers_mut().insert(k, v.parse().unwrap());
                            }
                            return resp;
                        }
                        axum::Json(serde_json::json!({
                            "access_token": format!("access-token-{n}"),
                            "token_type": "Bearer",
                            "expires_in": st.expires_in.load(Ordering::Relaxed),
                        }))
                        .into_response()
                    },
                ),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (format!("http://{addr}/oauth2/token"), state)
    }

    fn secret_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        format!("file:{}", p.display())
    }

    async fn bearer_of(auth: &Auth, client: &reqwest::Client) -> (String, Option<TokenLease>) {
        let mut req = client.get("http://127.0.0.1:9/target").build().unwrap();
        let lease = auth.apply(client, &mut req).await.expect("apply");
        let v = req.headers()[AUTHORIZATION].to_str().unwrap().to_string();
        (v, lease)
    }

    fn oauth2_secret(url: &str, secret: &str, extra: &str) -> AuthConfig {
        toml::from_str(&format!(
            "scheme = \"oauth2\"\ntoken_url = \"{url}\"\nclient_id = \"0oa1client\"\nscopes = [\"okta.users.manage\", \"okta.groups.manage\"]\nclient_secret = \"{secret}\"\n{extra}"
        ))
        .unwrap()
    }

    fn verify(jwt: &str, aud: &str) -> (jsonwebtoken::Header, Value) {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&[aud]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Value>(jwt, &key, &v).expect("assertion verifies");
        (data.header, data.claims)
    }

    #[tokio::test]
    async fn ssws_sends_the_okta_api_token_header() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(&dir, "okta", "00abcdefOKTAtoken\n");
        let c: AuthConfig =
            toml::from_str(&format!("scheme = \"ssws\"\ntoken = \"{token}\"")).unwrap();
        let auth = c.resolve().unwrap();
        let client = reqwest::Client::new();
        let (v, lease) = bearer_of(&auth, &client).await;
        assert_eq!(v, "SSWS 00abcdefOKTAtoken");
        assert_eq!(lease, None);
        assert!(!format!("{auth:?}").contains("00abcdef"));
        assert_eq!(auth.redact("bad 00abcdefOKTAtoken"), "bad [redacted]");
    }

    #[tokio::test]
    async fn client_secret_post_sends_the_rfc6749_form_and_caches_the_token() {
        let (url, ep) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "cs", "s3cr3t value&=");
        let auth = oauth2_secret(&url, &secret, "").resolve().unwrap();
        let client = reqwest::Client::new();
        let (first, lease1) = bearer_of(&auth, &client).await;
        let (second, lease2) = bearer_of(&auth, &client).await;
        assert_eq!(first, "Bearer access-token-1");
        assert_eq!(second, first, "cached");
        assert_eq!(lease1, lease2);
        let seen = ep.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "one token request for two uses");
        let want: BTreeMap<String, String> = [
            ("grant_type", "client_credentials"),
            ("client_id", "0oa1client"),
            ("client_secret", "s3cr3t value&="),
            ("scope", "okta.users.manage okta.groups.manage"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(seen[0].form, want);
        assert_eq!(seen[0].authorization, None);
        assert_eq!(
            seen[0].content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        let dbg = format!("{auth:?}");
        assert!(
            !dbg.contains("s3cr3t") && !dbg.contains("access-token"),
            "{dbg}"
        );
        assert_eq!(
            auth.redact("echo s3cr3t value&= and access-token-1"),
            "echo [redacted] and [redacted]"
        );
    }

    #[tokio::test]
    async fn client_secret_basic_form_encodes_the_credentials_into_the_header() {
        let (url, ep) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "cs", "a:b+c");
        let auth = oauth2_secret(&url, &secret, "client_auth = \"client_secret_basic\"")
            .resolve()
            .unwrap();
        bearer_of(&auth, &reqwest::Client::new()).await;
        let seen = ep.seen.lock().unwrap().clone();
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some(format!("Basic {}", base64_encode(b"0oa1client:a%3Ab%2Bc")).as_str())
        );
        assert_eq!(
            seen[0].form.keys().collect::<Vec<_>>(),
            ["grant_type", "scope"],
            "no secret in the body"
        );
    }

    #[tokio::test]
    async fn private_key_jwt_assertion_is_rs256_signed_with_the_rfc7523_claims() {
        let (url, ep) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let key = secret_file(&dir, "key.pem", PRIVATE_PEM);
        let c: AuthConfig = toml::from_str(&format!(
            "scheme = \"oauth2\"\ntoken_url = \"{url}\"\nclient_id = \"app-123\"\nscopes = [\"https://graph.microsoft.com/.default\"]\nprivate_key = \"{key}\"\nkey_id = \"kid-1\"\ncertificate_thumbprint = \"thumb-256\""
        ))
        .unwrap();
        let mut p = Vec::new();
        c.validate("auth", &mut p);
        assert!(p.is_empty(), "{p:?}");
        let auth = c.resolve().unwrap();
        let before = unix_now();
        let (v, _) = bearer_of(&auth, &reqwest::Client::new()).await;
        assert_eq!(v, "Bearer access-token-1");
        let seen = ep.seen.lock().unwrap().clone();
        let form = &seen[0].form;
        assert_eq!(
            form.keys().collect::<Vec<_>>(),
            [
                "client_assertion",
                "client_assertion_type",
                "client_id",
                "grant_type",
                "scope"
            ]
        );
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "app-123");
        assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
        assert_eq!(form["client_assertion_type"], JWT_BEARER_ASSERTION_TYPE);
        let (header, claims) = verify(&form["client_assertion"], &url);
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("kid-1"));
        assert_eq!(header.x5t_s256.as_deref(), Some("thumb-256"));
        assert_eq!(claims["iss"], "app-123");
        assert_eq!(claims["sub"], "app-123");
        assert_eq!(claims["aud"], url.as_str());
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat >= before && iat <= unix_now());
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 300);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 32));
        // A second assertion has a new jti (replay protection at the IdP).
        auth.invalidate(TokenLease { generation: 1 });
        bearer_of(&auth, &reqwest::Client::new()).await;
        let seen = ep.seen.lock().unwrap().clone();
        let (_, again) = verify(&seen[1].form["client_assertion"], &url);
        assert_ne!(again["jti"], claims["jti"]);
    }

    #[tokio::test]
    async fn google_service_account_assertion_impersonates_the_admin_with_the_scopes() {
        let (url, ep) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let key_json = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "0123abcd",
            "private_key": PRIVATE_PEM,
            "client_email": "deprovd@p.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": url,
        });
        let key = secret_file(&dir, "sa.json", &key_json.to_string());
        let c: AuthConfig = toml::from_str(&format!(
            "scheme = \"google_service_account\"\nkey = \"{key}\"\nsubject = \"admin@example.com\"\nscopes = [\"https://www.googleapis.com/auth/admin.directory.user\", \"https://www.googleapis.com/auth/admin.directory.user.security\"]"
        ))
        .unwrap();
        let auth = c.resolve().unwrap();
        let client = reqwest::Client::new();
        let before = unix_now();
        let (v, _) = bearer_of(&auth, &client).await;
        bearer_of(&auth, &client).await;
        assert_eq!(v, "Bearer access-token-1");
        let seen = ep.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "cached like oauth2");
        let form = &seen[0].form;
        assert_eq!(form.keys().collect::<Vec<_>>(), ["assertion", "grant_type"]);
        assert_eq!(form["grant_type"], JWT_BEARER_GRANT);
        let (header, claims) = verify(&form["assertion"], &url);
        assert_eq!(header.kid.as_deref(), Some("0123abcd"));
        assert_eq!(claims["iss"], "deprovd@p.iam.gserviceaccount.com");
        assert_eq!(claims["sub"], "admin@example.com");
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/admin.directory.user https://www.googleapis.com/auth/admin.directory.user.security"
        );
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat >= before);
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 3600);
        assert!(!format!("{auth:?}").contains("PRIVATE"));
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let (url, ep) = token_endpoint().await;
        ep.delay_ms.store(200, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "cs", "secret-1");
        let auth = Arc::new(oauth2_secret(&url, &secret, "").resolve().unwrap());
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (auth, client) = (auth.clone(), client.clone());
            tasks.push(tokio::spawn(
                async move { bearer_of(&auth, &client).await.0 },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "Bearer access-token-1");
        }
        assert_eq!(ep.seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn tokens_are_replaced_a_minute_before_expiry_or_half_way_when_short() {
        let t0 = Instant::now();
        assert_eq!(
            refresh_at(t0, Duration::from_secs(3599)),
            t0 + Duration::from_secs(3539)
        );
        assert_eq!(
            refresh_at(t0, Duration::from_secs(60)),
            t0 + Duration::from_secs(30)
        );
        assert_eq!(refresh_at(t0, Duration::ZERO), t0);
    }

    #[tokio::test]
    async fn a_token_inside_the_refresh_margin_is_not_reused() {
        let (url, ep) = token_endpoint().await;
        // Expires at once: every use must fetch (a cached token is never sent past its refresh time).
        ep.expires_in.store(0, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "cs", "secret-1");
        let auth = oauth2_secret(&url, &secret, "").resolve().unwrap();
        let client = reqwest::Client::new();
        assert_eq!(bearer_of(&auth, &client).await.0, "Bearer access-token-1");
        assert_eq!(bearer_of(&auth, &client).await.0, "Bearer access-token-2");
        ep.expires_in.store(3600, Ordering::Relaxed);
        assert_eq!(bearer_of(&auth, &client).await.0, "Bearer access-token-3");
        assert_eq!(bearer_of(&auth, &client).await.0, "Bearer access-token-3");
    }

    #[tokio::test]
    async fn invalidating_a_refused_token_refreshes_once_even_for_late_reports() {
        let (url, ep) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "cs", "secret-1");
        let auth = oauth2_secret(&url, &secret, "").resolve().unwrap();
        let client = reqwest::Client::new();
        let (_, old) = bearer_of(&auth, &client).await;
        let old = old.expect("lease");
        auth.invalidate(old);
        let (v, new) = bearer_of(&auth, &client).await;
        assert_eq!(v, "Bearer access-token-2");
        // A second request that also got a 401 with the old token must not throw the new one away.
        auth.invalidate(old);
        let (v2, newer) = bearer_of(&auth, &client).await;
        assert_eq!(v2, "Bearer access-token-2");
        assert_eq!(new, newer);
        assert_eq!(ep.seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn token_endpoint_refusals_are_terminal_and_outages_retryable() {
        let (url, ep) = token_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "cs", "wrong-secret");
        let auth = oauth2_secret(&url, &secret, "").resolve().unwrap();
        let client = reqwest::Client::new();
        *ep.fail.lock().unwrap() = Some((
            401,
            serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided: wrong-secret"}),
            None,
        ));
        let mut req = client.get("http://127.0.0.1:9/").build().unwrap();
        let e = auth.apply(&client, &mut req).await.unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("invalid_client") && msg.contains("AADSTS7000215"),
            "{msg}"
        );
        assert!(!msg.contains("wrong-secret"), "{msg}");
        *ep.fail.lock().unwrap() = Some((
            503,
            serde_json::json!({"error": "temporarily_unavailable"}),
            Some(("retry-after", "7")),
        ));
        let e = auth.apply(&client, &mut req).await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        *ep.fail.lock().unwrap() = None;
        assert!(auth.apply(&client, &mut req).await.is_ok());
    }

    #[test]
    fn token_scheme_configs_are_validated_with_paths() {
        let check = |src: &str| {
            let c: AuthConfig = toml::from_str(src).unwrap();
            let mut p = Vec::new();
            c.validate("connectors.x.auth", &mut p);
            p.into_iter().map(|p| p.path).collect::<Vec<_>>()
        };
        assert_eq!(
            check(
                "scheme = \"oauth2\"\ntoken_url = \"http://login.example.com/token\"\nclient_id = \"\"\nscopes = [\"a b\"]"
            ),
            [
                "connectors.x.auth.token_url",
                "connectors.x.auth.client_id",
                "connectors.x.auth.scopes[0]",
                "connectors.x.auth",
            ]
        );
        assert_eq!(
            check(
                "scheme = \"oauth2\"\ntoken_url = \"https://login.example.com/token\"\nclient_id = \"c\"\nclient_secret = \"env:X\"\nkey_id = \"k\""
            ),
            ["connectors.x.auth.key_id"]
        );
        assert_eq!(
            check(
                "scheme = \"google_service_account\"\nkey = \"file:/k.json\"\nsubject = \"admin\"\nscopes = []"
            ),
            ["connectors.x.auth.subject", "connectors.x.auth.scopes"]
        );
        assert!(
            toml::from_str::<AuthConfig>("scheme = \"oauth2\"\ntoken_url = \"https://x\"\nclient_id = \"c\"\nclient_secret = \"inline\"").is_err(),
            "inline secrets are refused"
        );
    }

    #[test]
    fn unusable_keys_fail_at_build_without_echoing_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = secret_file(
            &dir,
            "sa.json",
            "{\"type\": \"service_account\", \"private_key\": \"SECRETSTUFF\", \"client_email\": \"a@b\"}",
        );
        let c: AuthConfig = toml::from_str(&format!(
            "scheme = \"google_service_account\"\nkey = \"{key}\"\nsubject = \"admin@example.com\"\nscopes = [\"s\"]"
        ))
        .unwrap();
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("not an RSA private key"), "{e}");
        assert!(!e.contains("SECRETSTUFF"), "{e}");
        let garbage = secret_file(&dir, "bad.json", "{\"private_key\": \"SECRETSTUFF\"");
        let c: AuthConfig = toml::from_str(&format!(
            "scheme = \"google_service_account\"\nkey = \"{garbage}\"\nsubject = \"admin@example.com\"\nscopes = [\"s\"]"
        ))
        .unwrap();
        let e = c.resolve().unwrap_err().to_string();
        assert!(
            e.contains("truncated JSON") && !e.contains("SECRETSTUFF"),
            "{e}"
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
