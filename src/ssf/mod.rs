//! OpenID Shared Signals Framework 1.0 (CAEP, RISC): the `[ssf]` settings, verification of incoming
//! Security Event Tokens against a transmitter's JWKS ([`verify`]), and deprovd's own transmitter
//! ([`transmit`]) that tells downstream apps when it contained an account.
//!
//! The receiving side's HTTP push handling and poll client live in [`crate::ingest::ssf`] (they are a
//! source of alerts like Kafka); the SET → alert mapping is the `ssf` normalizer
//! ([`crate::alert::ssf`]). This module depends on nothing above it: the executor hands it contained
//! actions through a non-blocking [`transmit::SignalEmitter`], like [`crate::notify`].
//!
//! ```toml
//! [[ssf.receivers]]
//! name = "okta"                                   # push endpoint: POST /v1/ssf/okta
//! issuer = "https://corp.okta.com"
//! audience = "https://deprovd.corp.example"
//! config_url = "https://corp.okta.com/.well-known/ssf-configuration"   # or jwks_uri = "…"
//! push = true
//! poll_url = "https://corp.okta.com/ssf/poll"     # optional: RFC 8936 poll client
//! poll_token = "env:OKTA_SSF_POLL_TOKEN"
//!
//! [ssf.transmitter]
//! issuer = "https://deprovd.corp.example"         # this deprovd's public base URL
//! signing_key = "file:/run/secrets/ssf-signing.pem"
//! alg = "RS256"                                   # or ES256
//! kid = "deprovd-2026-01"
//! [[ssf.transmitter.receivers]]
//! name = "crm"
//! push_url = "https://crm.corp.example/ssf/events"
//! audience = "https://crm.corp.example"
//! token = "env:CRM_SSF_TOKEN"
//! ```

pub(crate) mod transmit;
pub(crate) mod verify;

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Problem, SecretRef};

/// RFC 8935 push delivery method URI (SSF 1.0 `delivery_methods_supported`).
pub(crate) const PUSH_METHOD: &str = "urn:ietf:rfc:8935";
/// RISC account-disabled: what deprovd emits after `disable_account` succeeds.
pub(crate) const RISC_ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC account-enabled: what deprovd emits after a restore re-enables an account it had disabled.
pub(crate) const RISC_ACCOUNT_ENABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
/// CAEP session-revoked: what deprovd emits after `revoke_sessions` succeeds.
pub(crate) const CAEP_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// The media type of a SET on the wire (RFC 8417 §2.3, RFC 8935 §2).
pub(crate) const SET_CONTENT_TYPE: &str = "application/secevent+jwt";

/// The `[ssf]` table. Empty by default: no receivers, no transmitter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsfConfig {
    /// Transmitters deprovd listens to.
    pub receivers: Vec<ReceiverConfig>,
    /// deprovd's own transmitter, if it should tell others about containment.
    pub transmitter: Option<TransmitterConfig>,
}

/// One transmitter deprovd receives SETs from (`[[ssf.receivers]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Stable name: the push path (`/v1/ssf/{name}`), metric label and dead-letter header.
    pub name: String,
    /// The transmitter's `iss`, exactly as it writes it.
    pub issuer: String,
    /// The `aud` this deprovd is known by at that transmitter; SETs for anyone else are refused.
    pub audience: String,
    /// The transmitter's `/.well-known/ssf-configuration`; its `jwks_uri` gives the keys and its
    /// `issuer` must equal `issuer`.
    #[serde(default)]
    pub config_url: Option<String>,
    /// The JWKS URL directly, for transmitters without SSF metadata.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accept pushed SETs at `POST /v1/ssf/{name}` (RFC 8935).
    #[serde(default = "yes")]
    pub push: bool,
    /// The transmitter's poll endpoint (RFC 8936); polled when set.
    #[serde(default)]
    pub poll_url: Option<String>,
    /// Bearer token for the poll endpoint.
    #[serde(default)]
    pub poll_token: Option<SecretRef>,
    /// Pause between polls when the last one returned nothing.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// `maxEvents` asked for per poll.
    #[serde(default = "default_max_events")]
    pub max_events: u32,
    /// Accepted JWS algorithms. Only asymmetric ones can be configured: `none` and HMAC are refused
    /// because a JWKS publishes public keys, and HMAC "verified" with a public key is forgeable.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Oldest `iat` accepted; also how long a `jti` is remembered for replay detection.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Largest `iat` in the future accepted (clock skew).
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Cached keys are refreshed after this long even when every `kid` is known, so a key the
    /// transmitter withdrew stops verifying.
    #[serde(default = "default_jwks_ttl", with = "humantime_serde")]
    pub jwks_ttl: Duration,
    /// Least time between two JWKS fetches caused by an unknown `kid`: a flood of SETs with made-up
    /// kids must not become a flood of requests to the transmitter.
    #[serde(default = "default_refetch", with = "humantime_serde")]
    pub jwks_refetch_interval: Duration,
}

fn yes() -> bool {
    true
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_events() -> u32 {
    100
}
fn default_algorithms() -> Vec<String> {
    [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    ]
    .map(String::from)
    .to_vec()
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_jwks_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_refetch() -> Duration {
    Duration::from_secs(30)
}

/// deprovd's transmitter (`[ssf.transmitter]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitterConfig {
    /// This deprovd's public base URL: the `iss` of its SETs; metadata is served at
    /// `{issuer}/.well-known/ssf-configuration` and keys at `{issuer}/v1/ssf/jwks`.
    pub issuer: String,
    /// The private signing key, PEM (PKCS#8; PKCS#1 also for RSA).
    pub signing_key: SecretRef,
    /// `RS256` or `ES256` (P-256).
    #[serde(default = "default_alg")]
    pub alg: String,
    /// Key id published in the JWKS and in every SET's header; change it when rotating the key.
    pub kid: String,
    /// Who hears about containment.
    #[serde(default)]
    pub receivers: Vec<TransmitReceiverConfig>,
    /// Delivery attempts per SET and receiver before giving up (retryable failures only).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_alg() -> String {
    "RS256".into()
}
fn default_attempts() -> u32 {
    6
}

/// One receiver of deprovd's SETs (`[[ssf.transmitter.receivers]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitReceiverConfig {
    /// Metric label and log field.
    pub name: String,
    /// The receiver's RFC 8935 push endpoint.
    pub push_url: String,
    /// The `aud` of SETs sent there.
    pub audience: String,
    /// Bearer token the receiver expects, if any.
    #[serde(default)]
    pub token: Option<SecretRef>,
}

/// A URL deprovd may fetch keys from or send SETs and tokens to: `https://`, or plain `http://` on
/// this machine only (tests, sidecars).
pub(crate) fn check_url(url: &str) -> Result<(), UrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|source| UrlError::NotUrl {
        url: url.to_string(),
        source,
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if crate::net::is_loopback_url(&parsed) => Ok(()),
        _ => Err(UrlError::NotHttps {
            url: url.to_string(),
        }),
    }
}

/// Why [`check_url`] refused a URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("`{url}` is not a URL: {source}")]
    NotUrl {
        url: String,
        source: crate::net::UrlParseError,
    },
    #[error("`{url}` must be an https:// URL (plain http only to localhost / 127.0.0.1)")]
    NotHttps { url: String },
}

fn good_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl SsfConfig {
    pub fn validate(&self, path: &str, p: &mut Vec<Problem>) {
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let at = format!("{path}.receivers[{i}]");
            if !good_name(&r.name) || r.name == "jwks" {
                p.push(Problem::new(
                    format!("{at}.name"),
                    "use 1 to 64 letters, digits, `-` and `_`, not `jwks` (it is a URL path segment and a metric label)",
                ));
            } else if !seen.insert(r.name.clone()) {
                p.push(Problem::new(
                    format!("{at}.name"),
                    format!("`{}` is used by another receiver", r.name),
                ));
            }
            if r.issuer.trim().is_empty() {
                p.push(Problem::new(format!("{at}.issuer"), "must not be empty"));
            }
            if r.audience.trim().is_empty() {
                p.push(Problem::new(format!("{at}.audience"), "must not be empty"));
            }
            match (&r.config_url, &r.jwks_uri) {
                (Some(_), Some(_)) | (None, None) => p.push(Problem::new(
                    format!("{at}.config_url"),
                    "set exactly one of `config_url` (SSF metadata) and `jwks_uri`",
                )),
                (Some(u), None) => {
                    if let Err(e) = check_url(u) {
                        p.push(Problem::new(format!("{at}.config_url"), e.to_string()));
                    }
                }
                (None, Some(u)) => {
                    if let Err(e) = check_url(u) {
                        p.push(Problem::new(format!("{at}.jwks_uri"), e.to_string()));
                    }
                }
            }
            if let Some(u) = &r.poll_url
                && let Err(e) = check_url(u)
            {
                p.push(Problem::new(format!("{at}.poll_url"), e.to_string()));
            }
            if !r.push && r.poll_url.is_none() {
                p.push(Problem::new(
                    format!("{at}.push"),
                    "with `push = false` a `poll_url` is needed, or nothing is ever received",
                ));
            }
            if r.poll_token.is_some() && r.poll_url.is_none() {
                p.push(Problem::new(
                    format!("{at}.poll_token"),
                    "is only used with `poll_url`",
                ));
            }
            if r.max_events == 0 {
                p.push(Problem::new(
                    format!("{at}.max_events"),
                    "must be at least 1",
                ));
            }
            if r.poll_interval.is_zero() {
                p.push(Problem::new(
                    format!("{at}.poll_interval"),
                    "must be greater than zero",
                ));
            }
            if r.max_age.is_zero() {
                p.push(Problem::new(
                    format!("{at}.max_age"),
                    "must be greater than zero",
                ));
            }
            if r.algorithms.is_empty() {
                p.push(Problem::new(
                    format!("{at}.algorithms"),
                    "must name at least one algorithm",
                ));
            }
            for (j, a) in r.algorithms.iter().enumerate() {
                if let Err(e) = verify::parse_alg(a) {
                    p.push(Problem::new(format!("{at}.algorithms[{j}]"), e.to_string()));
                }
            }
        }
        if let Some(t) = &self.transmitter {
            let at = format!("{path}.transmitter");
            if let Err(e) = check_url(&t.issuer) {
                p.push(Problem::new(format!("{at}.issuer"), e.to_string()));
            }
            if !matches!(t.alg.as_str(), "RS256" | "ES256") {
                p.push(Problem::new(
                    format!("{at}.alg"),
                    format!("`{}` is not supported; use RS256 or ES256", t.alg),
                ));
            }
            if t.kid.trim().is_empty() {
                p.push(Problem::new(format!("{at}.kid"), "must not be empty"));
            }
            if t.max_attempts == 0 {
                p.push(Problem::new(
                    format!("{at}.max_attempts"),
                    "must be at least 1",
                ));
            }
            let mut names = std::collections::BTreeSet::new();
            for (i, r) in t.receivers.iter().enumerate() {
                let rat = format!("{at}.receivers[{i}]");
                if !good_name(&r.name) {
                    p.push(Problem::new(
                        format!("{rat}.name"),
                        "use 1 to 64 letters, digits, `-` and `_` (it is a metric label)",
                    ));
                } else if !names.insert(r.name.clone()) {
                    p.push(Problem::new(
                        format!("{rat}.name"),
                        format!("`{}` is used by another receiver", r.name),
                    ));
                }
                if let Err(e) = check_url(&r.push_url) {
                    p.push(Problem::new(format!("{rat}.push_url"), e.to_string()));
                }
                if r.audience.trim().is_empty() {
                    p.push(Problem::new(format!("{rat}.audience"), "must not be empty"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_allowed_only_to_a_loopback_host() {
        assert!(check_url("https://idp.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        for bypass in [
            "http://localhost:80@evil.example/jwks",
            "http://127.evil.example/jwks",
            "http://127.0.0.1.evil.example/jwks",
            "ftp://localhost/jwks",
        ] {
            assert!(check_url(bypass).is_err(), "{bypass}");
        }
    }

    fn parse(text: &str) -> SsfConfig {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Root {
            ssf: SsfConfig,
        }
        toml::from_str::<Root>(text).unwrap().ssf
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let c = parse(
            r#"
[[ssf.receivers]]
name = "bad name"
issuer = ""
audience = "x"
config_url = "http://idp.example.com/.well-known/ssf-configuration"
jwks_uri = "https://idp.example.com/jwks"
algorithms = ["HS256", "none"]
[[ssf.receivers]]
name = "ok"
issuer = "https://idp"
audience = "a"
jwks_uri = "http://10.0.0.1/jwks"
push = false
[ssf.transmitter]
issuer = "http://deprovd.example.com"
signing_key = "env:K"
alg = "HS256"
kid = ""
[[ssf.transmitter.receivers]]
name = "crm"
push_url = "ftp://x"
audience = ""
"#,
        );
        let mut p = Vec::new();
        c.validate("ssf", &mut p);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "ssf.receivers[0].name",
            "ssf.receivers[0].issuer",
            "ssf.receivers[0].config_url",
            "ssf.receivers[0].algorithms[0]",
            "ssf.receivers[0].algorithms[1]",
            "ssf.receivers[1].jwks_uri",
            "ssf.receivers[1].push",
            "ssf.transmitter.issuer",
            "ssf.transmitter.alg",
            "ssf.transmitter.kid",
            "ssf.transmitter.receivers[0].push_url",
            "ssf.transmitter.receivers[0].audience",
        ] {
            assert!(paths.contains(&want), "missing {want} in {paths:?}");
        }
    }

    #[test]
    fn a_plain_receiver_is_valid_with_defaults() {
        let c = parse(
            "[[ssf.receivers]]\nname = \"okta\"\nissuer = \"https://corp.okta.com\"\naudience = \"deprovd\"\nconfig_url = \"https://corp.okta.com/.well-known/ssf-configuration\"\n",
        );
        let mut p = Vec::new();
        c.validate("ssf", &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert!(c.receivers[0].push);
        assert_eq!(
            c.receivers[0].jwks_refetch_interval,
            Duration::from_secs(30)
        );
    }
}
