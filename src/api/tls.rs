//! TLS on the API (`[api.tls]`): rustls with the ring provider, the certificate chain and key from
//! PEM files, optional client certificates (mTLS), and the files swapped in while serving.
//!
//! **Loading** reads the files once, fingerprints their bytes (SHA-256) and builds the rustls
//! `ServerConfig` from those same bytes, so what was fingerprinted is what is served. Every problem
//! is reported at once with its key path — a missing or unreadable file, a file with no PEM
//! certificate or key, a key that is not the certificate's, an unusable `client_ca` — by startup
//! and by `deprovd validate` alike.
//!
//! **Reloading never touches the listener.** Each accepted connection takes the configuration
//! serving at that moment (an `Arc` behind a lock), so a swap changes only connections accepted
//! after it; connections in flight keep theirs. The files are re-read every `watch_interval` (with
//! `watch`, the default) and on SIGHUP. When their bytes changed, the new set is built and swapped
//! in (`deprovd_tls_reloads_total{outcome="ok"}`), or — broken, mismatched, half-written — refused
//! with an error log and `outcome="rejected"`, and the previous certificate keeps serving. The
//! watcher does not retry a refused set until the files change again; SIGHUP always retries.
//!
//! **mTLS** (`client_ca`): every client must present, during the handshake, a certificate that
//! chains to one of those CAs; a connection without one, or with one from another CA, is closed
//! before any HTTP is read (so `/healthz`, `/readyz` and `/metrics` need one too). The client
//! certificate is a transport gate only: it maps to no identity or role. Bearer tokens still say
//! who is calling and what they may do, and are still required, so a stolen token is useless
//! without a certificate and a certificate without a token.
//!
//! HTTP/1.1 only (ALPN `http/1.1`), as on the plain listener; TLS 1.2 and 1.3 with rustls's safe
//! defaults.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, error, info};

use crate::config::Problem;
use crate::telemetry::{Metrics, ReloadOutcome};

/// `[api.tls]` settings: serve the API over HTTPS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's own certificate first, then intermediates.
    pub cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1). Readable by deprovd only.
    pub key: PathBuf,
    /// PEM CA certificates: when set, every client must present a certificate issued by one of
    /// them (mutual TLS), checked before any request is read.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Re-read the files every `watch_interval` and serve a changed set (SIGHUP re-reads them
    /// regardless).
    #[serde(default = "default_watch")]
    pub watch: bool,
    #[serde(default = "default_watch_interval", with = "humantime_serde")]
    pub watch_interval: Duration,
}

fn default_watch() -> bool {
    true
}

fn default_watch_interval() -> Duration {
    Duration::from_secs(5)
}

/// Reading three small files is cheap, but not a busy loop.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
const MAX_WATCH_INTERVAL: Duration = Duration::from_secs(3600);

impl TlsConfig {
    /// Pure checks of the values (nothing is read); [`TlsConfig::check_files`] reads the files.
    pub(crate) fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        for (key, file) in [
            ("cert", Some(&self.cert)),
            ("key", Some(&self.key)),
            ("client_ca", self.client_ca.as_ref()),
        ] {
            if file.is_some_and(|f| f.as_os_str().is_empty()) {
                problems.push(Problem::new(format!("{path}.{key}"), "must be a file path"));
            }
        }
        if self.watch_interval < MIN_WATCH_INTERVAL || self.watch_interval > MAX_WATCH_INTERVAL {
            problems.push(Problem::new(
                format!("{path}.watch_interval"),
                "must be at least 100ms and at most 1h",
            ));
        }
    }

    /// Read the files and build the server configuration as startup would: every problem, each
    /// with its key path (`deprovd validate`).
    pub(crate) fn check_files(&self, path: &str) -> Vec<Problem> {
        match Files::read(self).build(self, path) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }
}

/// The bytes of the configured files as read at one moment (or why each could not be read). No
/// `Debug`: it holds the private key.
struct Files {
    cert: std::io::Result<Vec<u8>>,
    key: std::io::Result<Vec<u8>>,
    client_ca: Option<std::io::Result<Vec<u8>>>,
}

type Fingerprint = [u8; 32];

impl Files {
    fn read(cfg: &TlsConfig) -> Self {
        Files {
            cert: std::fs::read(&cfg.cert),
            key: std::fs::read(&cfg.key),
            client_ca: cfg.client_ca.as_ref().map(std::fs::read),
        }
    }

    /// SHA-256 over every file's bytes (or its read error's kind), so any change — including a
    /// file appearing or vanishing — is a new fingerprint.
    fn fingerprint(&self) -> Fingerprint {
        let mut h = Sha256::new();
        for part in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()] {
            match part {
                None => h.update([0u8]),
                Some(Ok(bytes)) => {
                    h.update([1u8]);
                    h.update((bytes.len() as u64).to_be_bytes());
                    h.update(bytes);
                }
                Some(Err(e)) => {
                    h.update([2u8]);
                    h.update(e.kind().to_string().as_bytes());
                }
            }
        }
        h.finalize().into()
    }

    /// The rustls server configuration these bytes make, or every problem with them.
    fn build(&self, cfg: &TlsConfig, path: &str) -> Result<Arc<ServerConfig>, Vec<Problem>> {
        let at = |key: &str| format!("{path}.{key}");
        let mut problems = Vec::new();
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let certs = match &self.cert {
            Err(e) => {
                problems.push(unreadable(at("cert"), &cfg.cert, e));
                None
            }
            Ok(bytes) => match certificates(bytes) {
                Ok(certs) if certs.is_empty() => {
                    problems.push(Problem::new(
                        at("cert"),
                        format!(
                            "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                            cfg.cert.display()
                        ),
                    ));
                    None
                }
                Ok(certs) => Some(certs),
                Err(e) => {
                    problems.push(Problem::new(
                        at("cert"),
                        format!("{} is not a PEM certificate chain: {e}", cfg.cert.display()),
                    ));
                    None
                }
            },
        };

        let key = match &self.key {
            Err(e) => {
                problems.push(unreadable(at("key"), &cfg.key, e));
                None
            }
            // The parser's own message is left out: it may quote the file, which holds a secret.
            Ok(bytes) => match PrivateKeyDer::from_pem_slice(bytes) {
                Ok(key) => Some(key),
                Err(_) => {
                    problems.push(Problem::new(
                        at("key"),
                        format!(
                            "{} holds no readable PEM private key (PKCS#8, PKCS#1 or SEC1)",
                            cfg.key.display()
                        ),
                    ));
                    None
                }
            },
        };

        // The pair is checked even when another file has a problem, so every problem is listed.
        let certified = match (certs, key) {
            (Some(certs), Some(key)) => {
                match rustls::sign::CertifiedKey::from_der(certs, key, &provider) {
                    Ok(certified) => Some(certified),
                    Err(e) => {
                        problems.push(pair_problem(cfg, path, e));
                        None
                    }
                }
            }
            _ => None,
        };

        let verifier = match (&cfg.client_ca, &self.client_ca) {
            (Some(file), Some(Err(e))) => {
                problems.push(unreadable(at("client_ca"), file, e));
                None
            }
            (Some(file), Some(Ok(bytes))) => match client_verifier(bytes, file, &provider) {
                Ok(v) => Some(v),
                Err(message) => {
                    problems.push(Problem::new(at("client_ca"), message));
                    None
                }
            },
            _ => None,
        };

        let (Some(certified), true) = (certified, problems.is_empty()) else {
            return Err(problems);
        };
        let builder = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| vec![Problem::new(path, format!("TLS setup failed: {e}"))])?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn unreadable(path: String, file: &Path, e: &std::io::Error) -> Problem {
    Problem::new(path, format!("cannot read {}: {e}", file.display()))
}

fn certificates(
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(bytes).collect()
}

/// A verifier requiring a client certificate issued by one of the CAs in `bytes`.
fn client_verifier(
    bytes: &[u8],
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let certs = certificates(bytes)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM CA certificate (`-----BEGIN CERTIFICATE-----`)",
            file.display()
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            format!(
                "certificate {} in {} is not a usable CA certificate: {e}",
                i + 1,
                file.display()
            )
        })?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// What rustls said when pairing the chain with the key, blamed on the right file.
fn pair_problem(cfg: &TlsConfig, path: &str, e: rustls::Error) -> Problem {
    match e {
        rustls::Error::InconsistentKeys(_) => Problem::new(
            format!("{path}.key"),
            format!(
                "{} is not the private key of the certificate in {}",
                cfg.key.display(),
                cfg.cert.display()
            ),
        ),
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Problem::new(
                format!("{path}.cert"),
                format!(
                    "{}: the first certificate is unusable: {e}",
                    cfg.cert.display()
                ),
            )
        }
        // A key of a type the provider cannot sign with; rustls's message names the type only.
        other => Problem::new(
            format!("{path}.key"),
            format!(
                "{}: cannot use this private key: {other}",
                cfg.key.display()
            ),
        ),
    }
}

/// The configuration serving now and the fingerprint of the files it came from.
struct Serving {
    config: Arc<ServerConfig>,
    fingerprint: Fingerprint,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reload {
    /// The files are as they were (or as when last refused, for the watcher).
    Unchanged,
    /// The new files serve every connection accepted from now on.
    Swapped,
    /// The new files were refused (the message lists why); the previous set keeps serving.
    Rejected(String),
}

/// The API's TLS configuration, swappable while serving: the accept loop asks it for an acceptor
/// per connection; the watcher and SIGHUP reload it.
pub(crate) struct ServerTls {
    config: TlsConfig,
    /// The key path problems are reported under (`api.tls`).
    path: String,
    current: RwLock<Serving>,
    /// The fingerprint of the last refused set, so the watcher reports it once, not every tick.
    refused: Mutex<Option<Fingerprint>>,
    metrics: Arc<Metrics>,
}

impl ServerTls {
    /// Read and build the configured files; every problem at once when they do not make a working
    /// configuration.
    pub(crate) fn load(
        config: &TlsConfig,
        path: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, Vec<Problem>> {
        let files = Files::read(config);
        let serving = Serving {
            config: files.build(config, path)?,
            fingerprint: files.fingerprint(),
        };
        Ok(Arc::new(Self {
            config: config.clone(),
            path: path.to_string(),
            current: RwLock::new(serving),
            refused: Mutex::new(None),
            metrics,
        }))
    }

    /// An acceptor with the configuration serving now, for one new connection.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self.current.read().expect("tls lock").config.clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Whether clients must present a certificate.
    pub(crate) fn requires_client_certificates(&self) -> bool {
        self.config.client_ca.is_some()
    }

    /// Re-read the files and serve them if they changed and work. `retry_refused`: try a set the
    /// watcher already refused (SIGHUP: the operator asked). Blocking file I/O: call it from a
    /// blocking task. Logs and counts what it did.
    pub(crate) fn reload(&self, trigger: &'static str, retry_refused: bool) -> Reload {
        let files = Files::read(&self.config);
        let fingerprint = files.fingerprint();
        if fingerprint == self.current.read().expect("tls lock").fingerprint {
            debug!(trigger, "TLS files unchanged");
            return Reload::Unchanged;
        }
        let mut refused = self.refused.lock().expect("tls lock");
        if !retry_refused && *refused == Some(fingerprint) {
            return Reload::Unchanged;
        }
        match files.build(&self.config, &self.path) {
            Ok(config) => {
                *self.current.write().expect("tls lock") = Serving {
                    config,
                    fingerprint,
                };
                *refused = None;
                self.metrics.tls_reload(ReloadOutcome::Ok);
                info!(trigger, "TLS certificate reloaded; new connections get it");
                Reload::Swapped
            }
            Err(problems) => {
                *refused = Some(fingerprint);
                let why = problems
                    .iter()
                    .map(Problem::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                self.metrics.tls_reload(ReloadOutcome::Rejected);
                error!(trigger, error = %why, "TLS certificate change rejected; the previous certificate keeps serving");
                Reload::Rejected(why)
            }
        }
    }

    /// Reload on file change every `watch_interval` (when `watch`), until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if !self.config.watch {
            return;
        }
        let mut ticker = tokio::time::interval(self.config.watch_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the files were just read.
        ticker.tick().await;
        loop {
            // Decide inside `select!`, act outside it: the stop branch's borrow is not `Send`.
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopping {
                return;
            }
            let this = self.clone();
            if let Err(e) =
                tokio::task::spawn_blocking(move || this.reload("file change", false)).await
            {
                error!(error = %e, "TLS file watcher task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key written to `dir` as `<name>.crt` and `<name>.key`.
    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self_signed(name);
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    /// A self-signed certificate for `<name>.test` and `127.0.0.1` and its key, as PEM.
    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![format!("{name}.test")]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn config(cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert,
            key,
            client_ca,
            watch: true,
            watch_interval: Duration::from_secs(1),
        }
    }

    fn paths(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    /// `problem`'s message contains `needle`.
    fn assert_mentions(problem: &Problem, needle: &str) {
        assert!(problem.message.contains(needle), "{problem}");
    }

    #[test]
    fn a_matching_pair_and_ca_build_a_server_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (ca, _) = pair(dir.path(), "ca");
        let cfg = config(cert, key, Some(ca));
        assert_eq!(cfg.check_files("api.tls"), Vec::new());
        let mut problems = Vec::new();
        cfg.validate("api.tls", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn every_file_problem_is_reported_with_its_key_path() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").unwrap();
        let cfg = config(
            dir.path().join("missing.crt"),
            garbage.clone(),
            Some(dir.path().join("missing-ca.pem")),
        );
        let problems = cfg.check_files("api.tls");
        assert_eq!(
            paths(&problems),
            ["api.tls.cert", "api.tls.key", "api.tls.client_ca"],
            "{problems:?}"
        );
        assert_mentions(&problems[0], "missing.crt");
        assert_mentions(&problems[1], "no readable PEM private key");

        // A CA file with no certificate, and a certificate file with none.
        let cfg = config(garbage.clone(), garbage.clone(), Some(garbage));
        let problems = cfg.check_files("api.tls");
        assert_eq!(
            paths(&problems),
            ["api.tls.cert", "api.tls.key", "api.tls.client_ca"],
            "{problems:?}"
        );
        assert_mentions(&problems[0], "no PEM certificate");
        assert_mentions(&problems[2], "no PEM CA certificate");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let problems = config(cert, other_key, None).check_files("api.tls");
        assert_eq!(paths(&problems), ["api.tls.key"], "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("is not the private key of the certificate"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn the_key_files_contents_never_appear_in_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA!!\n-----END PRIVATE KEY-----\n";
        std::fs::write(&key, secret).unwrap();
        let (cert, _) = pair(dir.path(), "a");
        let problems = config(cert, key, None).check_files("api.tls");
        assert_eq!(paths(&problems), ["api.tls.key"], "{problems:?}");
        assert!(!problems[0].message.contains("c2VjcmV0"), "{}", problems[0]);
    }

    #[test]
    fn impossible_values_are_refused_without_reading_anything() {
        let mut cfg = config(PathBuf::new(), "/k".into(), Some(PathBuf::new()));
        cfg.watch_interval = Duration::from_millis(10);
        let mut problems = Vec::new();
        cfg.validate("api.tls", &mut problems);
        assert_eq!(
            paths(&problems),
            [
                "api.tls.cert",
                "api.tls.client_ca",
                "api.tls.watch_interval"
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn a_broken_change_is_refused_once_and_the_previous_set_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let metrics = Arc::new(Metrics::new());
        let cfg = config(cert.clone(), key.clone(), None);
        let tls = ServerTls::load(&cfg, "api.tls", metrics.clone()).unwrap();
        let rejected = || metrics.value("tls_reloads_total", &[("outcome", "rejected")]);
        let ok = || metrics.value("tls_reloads_total", &[("outcome", "ok")]);
        let before = Arc::as_ptr(&tls.current.read().unwrap().config);

        assert_eq!(tls.reload("test", false), Reload::Unchanged);

        // A new certificate whose key is not there yet (a half-done rotation): refused, once.
        let (new_cert, new_key) = self_signed("b");
        std::fs::write(&cert, &new_cert).unwrap();
        assert!(
            matches!(tls.reload("test", false), Reload::Rejected(m) if m.contains("api.tls.key"))
        );
        assert_eq!(tls.reload("test", false), Reload::Unchanged);
        assert_eq!(rejected(), Some(1.0));
        // SIGHUP retries it anyway.
        assert!(matches!(tls.reload("test", true), Reload::Rejected(_)));
        assert_eq!(rejected(), Some(2.0));
        assert_eq!(Arc::as_ptr(&tls.current.read().unwrap().config), before);

        // The key arrives: the pair serves.
        std::fs::write(&key, &new_key).unwrap();
        assert_eq!(tls.reload("test", false), Reload::Swapped);
        assert_eq!(ok(), Some(1.0));
        assert_ne!(Arc::as_ptr(&tls.current.read().unwrap().config), before);
    }
}
