//! Who is calling: bearer tokens (kept only as hashes), roles, and the [`Caller`] extractor — the one
//! place a request is authenticated and its role checked against the route's [`super::access`] rule.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};
use crate::audit::Actor;
use crate::config::SecretRef;

/// Roles, from least to most powerful. `admin` can do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ingest,
    Viewer,
    Responder,
    Approver,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether a holder of `self` may use an endpoint that requires `needed`.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Admin, _) => true,
            (a, b) if a == b => true,
            // Responders and approvers can read what they act on.
            (Role::Responder | Role::Approver, Role::Viewer) => true,
            _ => false,
        }
    }
}

/// `[[api.tokens]]`: one bearer token, given by reference or by its SHA-256 hex hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shows up in logs and, later, the audit trail).
    pub name: String,
    pub role: Role,
    /// `env:NAME` / `file:PATH` of the token itself; hashed at start, then forgotten.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Lower-case hex SHA-256 of the token, for configs that should not reference the token at all.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// A verified identity. As an extractor it authenticates the bearer token and checks the role the
/// route needs ([`super::access`]); the audit layer extracts it first and leaves it in the request's
/// extensions, so a handler taking a `Caller` neither hashes the token twice nor can skip the check.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub name: String,
    pub role: Role,
}

/// A caller already authenticated by an in-process client of the `/v1` router (the responders'
/// console, which signed its holder in with a token and keeps a session). The audit layer takes it
/// in place of a bearer header and then applies the route's role rule and audit record exactly as
/// for a bearer call, noting `"via": "console"`. Only code in this process can put it in a request's
/// extensions; nothing from the network can.
#[derive(Debug, Clone)]
pub(crate) struct Delegated(pub Caller);

/// Why the configured tokens cannot be loaded. Messages name the token entry, never the value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("api token `{name}`: {source}")]
    Secret {
        name: String,
        source: crate::config::SecretError,
    },
    #[error("api token `{name}`: sha256: {source}")]
    NotHex {
        name: String,
        source: hex::FromHexError,
    },
    #[error("api token `{name}`: sha256 must be 32 bytes")]
    WrongLength { name: String },
    #[error("api token `{name}` has neither token nor sha256")]
    Missing { name: String },
}

/// Hashes of every accepted token.
pub(crate) struct TokenStore {
    entries: Vec<([u8; 32], Caller)>,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenStore {
    /// Resolve references and hash them. Errors name the token entry, never the value.
    pub(crate) fn from_config(tokens: &[TokenConfig]) -> Result<Self, TokenError> {
        use secrecy::ExposeSecret;
        let mut entries = Vec::new();
        for t in tokens {
            let name = || t.name.clone();
            let hash = match (&t.token, &t.sha256) {
                (Some(r), _) => hash_token(
                    r.resolve()
                        .map_err(|source| TokenError::Secret {
                            name: name(),
                            source,
                        })?
                        .expose_secret(),
                ),
                (None, Some(h)) => {
                    let bytes = hex::decode(h).map_err(|source| TokenError::NotHex {
                        name: name(),
                        source,
                    })?;
                    bytes
                        .try_into()
                        .map_err(|_| TokenError::WrongLength { name: name() })?
                }
                (None, None) => return Err(TokenError::Missing { name: name() }),
            };
            entries.push((
                hash,
                Caller {
                    name: t.name.clone(),
                    role: t.role,
                },
            ));
        }
        Ok(Self { entries })
    }

    pub(crate) fn add(&mut self, token: &str, name: &str, role: Role) {
        self.entries.push((
            hash_token(token),
            Caller {
                name: name.into(),
                role,
            },
        ));
    }

    /// Constant-time lookup over all entries.
    pub(crate) fn verify(&self, presented: &str) -> Option<Caller> {
        self.verify_hash(&hash_token(presented))
    }

    /// The holder of the token whose SHA-256 is `h`, by the same constant-time walk: a console
    /// session keeps only the hash, and finds its holder (name and role as configured now) on
    /// every request.
    pub(crate) fn verify_hash(&self, h: &[u8; 32]) -> Option<Caller> {
        let mut found: Option<&Caller> = None;
        for (stored, caller) in &self.entries {
            if bool::from(stored.ct_eq(h)) && found.is_none() {
                found = Some(caller);
            }
        }
        found.cloned()
    }
}

impl Caller {
    /// The caller as named in the audit trail.
    pub(crate) fn actor(&self, peer: SocketAddr) -> Actor {
        Actor {
            name: self.name.clone(),
            role: Some(self.role.as_str().to_string()),
            source: Some(peer.to_string()),
        }
    }
}

/// The peer address of a request (set by the server for every connection).
pub(crate) fn peer(parts: &Parts) -> SocketAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

impl Caller {
    /// The holder of the bearer token in `headers`: 401 without one or with an unknown one.
    pub(crate) fn authenticate(
        tokens: &TokenStore,
        headers: &HeaderMap,
    ) -> Result<Caller, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "missing bearer token".into(),
                )
            })?;
        tokens.verify(presented).ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "invalid bearer token".into(),
            )
        })
    }

    /// 403 unless this caller's role allows `needed`.
    pub(crate) fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.allows(needed) {
            return Ok(());
        }
        Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "role `{}` may not do this; needs `{}`",
                self.role.as_str(),
                needed.as_str()
            ),
        ))
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        // Fail closed: a handler asking for a caller on a route without an access rule is a bug,
        // not a public route.
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string());
        let access = route
            .as_deref()
            .and_then(|r| super::access(&parts.method, r))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("route {route:?} has no access rule"),
                )
            })?;
        let caller = Caller::authenticate(&state.tokens, &parts.headers)?;
        caller.require(access.role)?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}
