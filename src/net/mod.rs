//! Outbound HTTP, one of each: the client factory every caller builds its `reqwest::Client` from
//! (rustls, no redirects, bounded connect time), the URL policy (what counts as loopback), capped
//! body reads ([`body`]), rate-limit and `Retry-After` headers ([`headers`]) and webhook signing
//! ([`signing`]). Connectors, notifications, Shared Signals and the CLI client all use it, so a
//! hardening made here holds everywhere.

pub(crate) mod body;
pub(crate) mod headers;
pub(crate) mod signing;

use std::time::Duration;

pub(crate) use body::{ReadError, read_json_capped, read_prefix};

/// RFC 3986 §2.3 unreserved characters (`A-Z a-z 0-9 - . _ ~`) stay; everything else is `%XX` of
/// its UTF-8 bytes. Used for URL path segments (a subject like `../Groups/x` cannot walk a target's
/// API) and for AWS Query API form values (what AWS's own SDKs send).
pub(crate) const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded with [`UNRESERVED`].
pub(crate) fn encode_unreserved(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// How long a TCP (and TLS) connection may take to establish, for every client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The one way to build an HTTP client: rustls, **no redirects** (a redirect could carry credentials
/// elsewhere and hides misconfigured base URLs), bounded connect time, deprovd's user agent. Callers
/// add their own overall `timeout` and then `build()`.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("deprovd/", env!("CARGO_PKG_VERSION")))
}

/// Why a URL does not parse (`url::ParseError`, named through reqwest, which re-exports `Url` only).
pub(crate) type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Why a client could not be built (the TLS backend failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// A client from [`client_builder`] with an overall per-request `timeout` (`None`: none, for
/// callers that bound each request themselves).
pub fn client(timeout: Option<Duration>) -> Result<reqwest::Client, ClientError> {
    let b = client_builder();
    let b = match timeout {
        Some(t) => b.timeout(t),
        None => b,
    };
    Ok(b.build()?)
}

/// How the CLI and `deprovd healthcheck` reach a deprovd whose API serves HTTPS with a private CA
/// or requires client certificates (`[api.tls]`): verification is never switched off, the CA is
/// named instead.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificate(s) to trust *instead of* the public roots (a self-signed or private-CA
    /// deployment), as `curl --cacert` does.
    pub ca_cert: Option<std::path::PathBuf>,
    /// PEM client certificate chain, for a deployment with `client_ca` (mTLS).
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<std::path::PathBuf>,
}

/// Why a client with [`ClientTls`] could not be built. Messages name files, never their contents.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientTlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (--ca-cert / DEPROVD_CA_CERT)")]
    NoCertificate { path: String },
    #[error(
        "a client certificate needs its key, and a key its certificate: give both --client-cert and --client-key"
    )]
    HalfIdentity,
    #[error("{what} {path} is not usable: {source}")]
    Unusable {
        what: &'static str,
        path: String,
        source: reqwest::Error,
    },
    #[error(transparent)]
    Build(#[from] ClientError),
}

fn read_pem(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// [`client`] that also trusts `tls.ca_cert` (and only it) and presents `tls.client_cert`.
pub(crate) fn client_with_tls(
    timeout: Option<Duration>,
    tls: &ClientTls,
) -> Result<reqwest::Client, ClientTlsError> {
    let mut b = client_builder();
    if let Some(path) = &tls.ca_cert {
        let shown = || path.display().to_string();
        let certs = reqwest::Certificate::from_pem_bundle(&read_pem("CA certificate", path)?)
            .map_err(|source| ClientTlsError::Unusable {
                what: "CA certificate",
                path: shown(),
                source,
            })?;
        if certs.is_empty() {
            return Err(ClientTlsError::NoCertificate { path: shown() });
        }
        b = b.tls_built_in_root_certs(false);
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let mut pem = read_pem("client certificate", cert)?;
            pem.push(b'\n');
            pem.extend(read_pem("client key", key)?);
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|source| ClientTlsError::Unusable {
                    what: "client certificate and key",
                    path: format!("{} + {}", cert.display(), key.display()),
                    source,
                })?;
            b = b.identity(identity);
        }
        _ => return Err(ClientTlsError::HalfIdentity),
    }
    let b = match timeout {
        Some(t) => b.timeout(t),
        None => b,
    };
    Ok(b.build().map_err(ClientError)?)
}

/// Whether `url` points at this machine (`localhost`, `127.0.0.0/8`, `::1`): the only place plaintext
/// protocols may send credentials to. Native connectors, HTTP connectors and the SSF code use it to
/// validate their endpoints.
///
/// The URL is parsed, not matched by prefix: `http://localhost:80@evil.example/` (userinfo) and
/// `http://127.evil.example/` (a DNS name) are remote hosts. Anything that does not parse is not
/// loopback.
pub(crate) fn is_loopback_host(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| is_loopback_url(&u))
}

/// As [`is_loopback_host`], for an already parsed URL.
pub(crate) fn is_loopback_url(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 literals come bracketed; non-special schemes (`ldap://`) keep IPv4 literals as names.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
/// A one-shot HTTP server on loopback: it reads the request, then `answer` writes the response.
pub(crate) async fn one_shot<F, Fut>(answer: F) -> String
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut req).await;
        answer(s).await;
    });
    format!("http://{addr}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognized() {
        for url in [
            "http://localhost/",
            "http://LOCALHOST:8080/x",
            "http://127.0.0.1:9000/jwks",
            "http://127.8.9.10/",
            "http://[::1]:8080/",
            "ldap://127.0.0.1:389",
            "ldap://localhost",
        ] {
            assert!(is_loopback_host(url), "{url}");
        }
    }

    #[test]
    fn prefix_tricks_are_not_loopback() {
        for url in [
            // userinfo: the host is evil.example
            "http://localhost:80@evil.example/",
            "http://127.0.0.1@evil.example/",
            // DNS names that merely start like loopback
            "http://127.evil.example/",
            "http://localhost.evil.example/",
            "http://[::2]/",
            "http://10.0.0.1/",
            "not a url",
            "localhost",
        ] {
            assert!(!is_loopback_host(url), "{url}");
        }
    }

    #[tokio::test]
    async fn clients_do_not_follow_redirects() {
        use tokio::io::AsyncWriteExt;
        let url = one_shot(|mut s| async move {
            s.write_all(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let resp = client(Some(Duration::from_secs(5)))
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "the redirect is answered, not followed");
    }
}
