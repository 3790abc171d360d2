//! [`TokenSource`]: one connector instance's access token — fetched, cached, refreshed early, and
//! invalidated once per generation when the target refuses it.

use super::*;

/// How a [`TokenSource`] asks for a token.
pub(super) enum Grant {
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
    pub(super) fn name(&self) -> &'static str {
        match self {
            Grant::ClientSecret { basic: false, .. } => "oauth2 client_secret_post",
            Grant::ClientSecret { basic: true, .. } => "oauth2 client_secret_basic",
            Grant::PrivateKeyJwt { .. } => "oauth2 private_key_jwt",
            Grant::GoogleJwt { .. } => "google_service_account",
        }
    }
}

/// A cached access token.
pub(super) struct Token {
    /// `Bearer <token>`, marked sensitive.
    pub(super) header: HeaderValue,
    /// The bare token, to scrub echoes of it.
    pub(super) value: SecretString,
    /// Use no longer than this (expiry minus the early-refresh margin).
    refresh_at: Instant,
    pub(super) generation: u64,
}

/// Fetches, caches and refreshes the access token of one connector instance (see the module docs).
pub struct TokenSource {
    pub(super) grant: Grant,
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
pub(super) struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

#[derive(serde::Serialize)]
pub(super) struct GoogleClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl TokenSource {
    pub(super) fn new(grant: Grant, token_url: reqwest::Url) -> Self {
        Self {
            grant,
            token_url,
            current: std::sync::RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    pub(super) fn current(&self) -> Option<Arc<Token>> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    pub(super) fn fresh(&self) -> Option<Arc<Token>> {
        self.current().filter(|t| Instant::now() < t.refresh_at)
    }

    pub(super) fn invalidate(&self, lease: TokenLease) {
        if let Ok(mut g) = self.current.write() {
            if g.as_ref().is_some_and(|t| t.generation == lease.generation) {
                *g = None;
            }
        }
    }

    /// A fresh token: the cached one, or one fetched now (once for all concurrent callers).
    pub(super) async fn token(
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

    pub(super) fn err(&self, reason: String, retry: bool, after: Option<Duration>) -> AuthError {
        AuthError::Token {
            url: self.token_url.to_string(),
            reason,
            retry,
            after,
        }
    }

    pub(super) fn sign<C: serde::Serialize>(
        &self,
        header: &jsonwebtoken::Header,
        claims: &C,
        key: &jsonwebtoken::EncodingKey,
    ) -> Result<String, AuthError> {
        jsonwebtoken::encode(header, claims, key)
            .map_err(|e| self.err(format!("cannot sign the JWT assertion: {e}"), false, None))
    }

    /// One token request.
    pub(super) async fn fetch(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Token, AuthError> {
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

    pub(super) fn scrub(&self, text: &str) -> String {
        match &self.grant {
            Grant::ClientSecret { secret, .. } if secret.expose_secret().len() >= 4 => {
                text.replace(secret.expose_secret(), "[redacted]")
            }
            _ => text.to_string(),
        }
    }
}
