//! [`AuthConfig`]: the `auth` table of a connector instance, its pure validation and resolution.

use super::*;

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
    /// Okta OAuth service apps.
    Oauth2(Oauth2Config),
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

/// `auth = { scheme = "oauth2", … }`: the client credentials grant. Exactly one of `client_secret` and
/// `private_key`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oauth2Config {
    /// Token endpoint (`https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`,
    /// `https://<org>.okta.com/oauth2/v1/token`).
    pub token_url: String,
    pub client_id: String,
    /// Sent space-separated as `scope`; omitted when empty.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// PEM private key (PKCS#8 or PKCS#1 RSA) for `private_key_jwt`.
    #[serde(default)]
    pub private_key: Option<SecretRef>,
    /// `kid` of the assertion header: the key's id as registered with the IdP (Okta requires it).
    #[serde(default)]
    pub key_id: Option<String>,
    /// `x5t#S256` of the assertion header: base64url SHA-256 thumbprint of the certificate uploaded to
    /// an Entra app registration (Entra finds the key by it).
    #[serde(default)]
    pub certificate_thumbprint: Option<String>,
    /// Overrides the default method (`client_secret_post`, or `private_key_jwt` with a key).
    #[serde(default)]
    pub client_auth: Option<ClientAuthMethod>,
}

impl fmt::Debug for AuthConfig {
    // Secret references are not secret, but keep the output short and uniform with `Auth`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthConfig({})", self.scheme())
    }
}

/// Why `url` may not receive credentials, if it may not: https, or plain http to a loopback host.
pub(crate) fn check_credential_url(url: &str) -> Result<reqwest::Url, CredentialUrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|source| CredentialUrlError::NotUrl {
        url: url.to_string(),
        source,
    })?;
    let loopback = crate::net::is_loopback_url(&parsed);
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        s => {
            return Err(CredentialUrlError::Scheme {
                url: url.to_string(),
                scheme: s.to_string(),
            });
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CredentialUrlError::EmbeddedCredentials {
            url: url.to_string(),
        });
    }
    Ok(parsed)
}

/// Why [`check_credential_url`] refused a URL.
#[derive(Debug, thiserror::Error)]
pub enum CredentialUrlError {
    #[error("`{url}` is not a URL: {source}")]
    NotUrl {
        url: String,
        source: crate::net::UrlParseError,
    },
    #[error(
        "`{url}`: scheme `{scheme}` would expose credentials; use https (http only for loopback)"
    )]
    Scheme { url: String, scheme: String },
    #[error("`{url}` must not embed credentials")]
    EmbeddedCredentials { url: String },
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
            AuthConfig::Oauth2(oauth2) => oauth2.validate(path, problems),
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
                check_scopes(path, scopes, problems);
                if let Some(Err(m)) = token_url.as_deref().map(check_credential_url) {
                    problems.push(Problem::new(format!("{path}.token_url"), m.to_string()));
                }
            }
            _ => {}
        }
    }

    /// Read the secrets now (at build time) so a missing one (or an unparsable key) fails startup, not the
    /// first containment.
    pub fn resolve(&self) -> Result<Auth, AuthError> {
        Ok(match self {
            AuthConfig::None => Auth::None,
            AuthConfig::Bearer { token } => {
                let token = read(token)?;
                authorization(bearer(&token)?, token)
            }
            AuthConfig::Ssws { token } => {
                let token = read(token)?;
                let value =
                    header_value(&format!("SSWS {}", token.expose_secret()), "the API token")?;
                authorization(value, token)
            }
            AuthConfig::Basic { username, password } => {
                let password = read(password)?;
                let raw = format!("{username}:{}", password.expose_secret());
                let value = header_value(
                    &format!("Basic {}", base64_encode(raw.as_bytes())),
                    "the password",
                )?;
                authorization(value, password)
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
            AuthConfig::Hmac {
                secret,
                bearer: token,
            } => {
                let bearer = match token {
                    Some(r) => {
                        let token = read(r)?;
                        Some((bearer(&token)?, token))
                    }
                    None => None,
                };
                Auth::Hmac {
                    secret: read(secret)?,
                    bearer,
                }
            }
            AuthConfig::Oauth2(oauth2) => oauth2.resolve()?,
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

impl Oauth2Config {
    /// See [`AuthConfig::validate`].
    fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if let Err(m) = check_credential_url(&self.token_url) {
            problems.push(Problem::new(format!("{path}.token_url"), m.to_string()));
        }
        if self.client_id.trim().is_empty() {
            problems.push(Problem::new(
                format!("{path}.client_id"),
                "must not be empty",
            ));
        }
        check_scopes(path, &self.scopes, problems);
        match (&self.client_secret, &self.private_key) {
            (Some(_), Some(_)) | (None, None) => problems.push(Problem::new(
                path.to_string(),
                "give exactly one of `client_secret` (client_secret_post/basic) or `private_key` (private_key_jwt)",
            )),
            (Some(_), None) => {
                if self.key_id.is_some() || self.certificate_thumbprint.is_some() {
                    problems.push(Problem::new(
                        format!("{path}.key_id"),
                        "`key_id` and `certificate_thumbprint` only apply with `private_key`",
                    ));
                }
                if self.client_auth == Some(ClientAuthMethod::PrivateKeyJwt) {
                    problems.push(Problem::new(
                        format!("{path}.client_auth"),
                        "private_key_jwt needs `private_key`, not `client_secret`",
                    ));
                }
            }
            (None, Some(_)) => {
                if self
                    .client_auth
                    .is_some_and(|m| m != ClientAuthMethod::PrivateKeyJwt)
                {
                    problems.push(Problem::new(
                        format!("{path}.client_auth"),
                        "a `private_key` is used with private_key_jwt only",
                    ));
                }
            }
        }
    }

    /// See [`AuthConfig::resolve`].
    fn resolve(&self) -> Result<Auth, AuthError> {
        let token_url = url(&self.token_url, "oauth2 token_url")?;
        let scope = (!self.scopes.is_empty()).then(|| self.scopes.join(" "));
        let grant = match (&self.client_secret, &self.private_key) {
            (Some(secret), None) => Grant::ClientSecret {
                client_id: self.client_id.clone(),
                secret: read(secret)?,
                basic: self.client_auth == Some(ClientAuthMethod::ClientSecretBasic),
                scope,
            },
            (None, Some(key_ref)) => {
                let pem = read(key_ref)?;
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
                    .map_err(|e| AuthError::Key {
                    what: format!("oauth2 private_key {key_ref}"),
                    reason: format!("not an RSA private key in PEM form ({e})"),
                })?;
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = self.key_id.clone();
                header.x5t_s256 = self.certificate_thumbprint.clone();
                Grant::PrivateKeyJwt {
                    client_id: self.client_id.clone(),
                    key: Box::new(key),
                    header,
                    scope,
                }
            }
            _ => {
                return Err(AuthError::Key {
                    what: "oauth2".into(),
                    reason: "give exactly one of `client_secret` or `private_key`".into(),
                });
            }
        };
        Ok(Auth::Token(Box::new(TokenSource::new(grant, token_url))))
    }
}

/// Each OAuth scope under `{path}.scopes` is one non-empty word.
fn check_scopes(path: &str, scopes: &[String], problems: &mut Vec<Problem>) {
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(Problem::new(
                format!("{path}.scopes[{i}]"),
                "a scope must be non-empty and contain no spaces (give one per list item)",
            ));
        }
    }
}

/// The secret `r` names, read now.
fn read(r: &SecretRef) -> Result<SecretString, AuthError> {
    r.resolve().map_err(|reason| AuthError::Secret {
        reference: r.to_string(),
        reason,
    })
}

/// A header value holding a credential (`what`), marked sensitive so it is never logged.
fn header_value(s: &str, what: &'static str) -> Result<HeaderValue, AuthError> {
    let mut v = HeaderValue::from_str(s).map_err(|_| AuthError::InvalidHeader {
        what,
        part: "value",
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Bearer <token>`.
fn bearer(token: &SecretString) -> Result<HeaderValue, AuthError> {
    header_value(&format!("Bearer {}", token.expose_secret()), "the token")
}

/// `Authorization: value`, with the `secret` it carries (redacted from the target's answers).
fn authorization(value: HeaderValue, secret: SecretString) -> Auth {
    Auth::Header {
        name: AUTHORIZATION,
        value,
        secret,
    }
}

/// A token endpoint's URL, checked as [`check_credential_url`] does.
fn url(u: &str, what: &str) -> Result<reqwest::Url, AuthError> {
    check_credential_url(u).map_err(|reason| AuthError::Url {
        what: what.to_string(),
        reason,
    })
}

/// The fields of a Google service-account key file that we use.
#[derive(Deserialize)]
pub(super) struct GoogleKeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    #[serde(default)]
    private_key_id: Option<String>,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

pub(super) trait ClassifyName {
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
