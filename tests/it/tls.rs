//! TLS on the API (`[api.tls]`): a real rustls client (reqwest, trusting only the test's CA)
//! against the real server, with CAs, server and client certificates made by rcgen per test:
//! HTTPS served and plain HTTP refused on the port, client certificates required and checked,
//! certificates replaced on disk served to new connections while a broken replacement is refused,
//! and `deprovd healthcheck` and the CLI verifying the server through `--ca-cert`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::json;

use crate::kit::{TestApp, TestAppBuilder, deprovd, eventually, metric_value};

/// A certificate authority of the test's own.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// An issued certificate and its key, as PEM, and the certificate's DER (what a client sees).
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `127.0.0.1`, `localhost` and `name`, with serial `serial`.
    fn server(&self, name: &str, serial: u64) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_string(), "localhost".to_string()])
            .expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate for `name`.
    fn client(&self, name: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// The files `[api.tls]` names, in a temp dir kept alive with it.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new(server: &Leaf, client_ca: Option<&Ca>) -> Self {
        let files = TlsFiles {
            dir: tempfile::tempdir().expect("tls dir"),
        };
        files.install(server);
        if let Some(ca) = client_ca {
            std::fs::write(files.path("clients.pem"), &ca.pem).expect("client CA");
        }
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Put `leaf` in place as a rotation tool would: each file written aside, then renamed over.
    fn install(&self, leaf: &Leaf) {
        for (name, text) in [("server.key", &leaf.key), ("server.crt", &leaf.cert)] {
            let tmp = self.path(&format!(".{name}.new"));
            std::fs::write(&tmp, text).expect("write");
            std::fs::rename(&tmp, self.path(name)).expect("rename");
        }
    }

    /// `[api.tls]` for these files, parsed by the service's own deserializer.
    fn config(&self, mtls: bool) -> deprovd::ApiTlsConfig {
        let mut tls = json!({
            "cert": self.path("server.crt"),
            "key": self.path("server.key"),
            "watch_interval": "100ms",
        });
        if mtls {
            tls["client_ca"] = json!(self.path("clients.pem"));
        }
        serde_json::from_value(tls).expect("[api.tls]")
    }
}

fn app_with(files: &TlsFiles, mtls: bool) -> TestAppBuilder {
    let tls = files.config(mtls);
    TestApp::builder().with(move |s| s.api.tls = Some(tls))
}

fn https_url(app: &TestApp, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", app.port)
}

/// A fresh rustls client (so every request is a new connection and handshake) trusting only `ca`,
/// presenting `identity` when given, following no redirects.
fn client(ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA"))
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some(leaf) = identity {
        let pem = format!("{}\n{}", leaf.cert, leaf.key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// The certificate the server presented on this response's connection (DER).
fn served(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec()
}

/// Poll `/readyz` over HTTPS until the app is ready.
async fn wait_ready(app: &TestApp, https: &reqwest::Client) {
    let url = https_url(app, "/readyz");
    let url = &url;
    eventually(
        Duration::from_secs(15),
        "ready over HTTPS",
        move || async move {
            let r = https.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
}

async fn metric(app: &TestApp, ca: &Ca, series: &str) -> f64 {
    let text = client(ca, None)
        .get(https_url(app, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metric_value(&text, series).unwrap_or_else(|| panic!("{series} not exported"))
}

#[tokio::test]
async fn the_api_serves_https_to_a_client_trusting_its_ca_and_refuses_plain_http() {
    let ca = Ca::new("deprovd test CA");
    let leaf = ca.server("deprovd.test", 1);
    let files = TlsFiles::new(&leaf, None);
    let app = app_with(&files, false).spawn().await;
    let https = client(&ca, None);

    let r = https
        .get(https_url(&app, "/healthz"))
        .send()
        .await
        .expect("HTTPS answers");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(served(&r), leaf.der, "the configured certificate is served");

    // Plain HTTP on the TLS port gets no HTTP answer, only a closed connection.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // Verification is real: a client trusting only the public roots refuses the server.
    let public_roots = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    assert!(
        public_roots
            .get(https_url(&app, "/healthz"))
            .send()
            .await
            .is_err()
    );

    // The API works as over HTTP: tokens, roles, the store.
    wait_ready(&app, &https).await;
    let r = https
        .get(https_url(&app, "/v1/actions"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Over HTTPS the console's session cookie is `Secure` without `[console] secure_cookie`.
    let r = https
        .post(https_url(&app, "/console/signin"))
        .form(&[("token", app.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "sign-in redirects");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    app.stop().await;
}

#[tokio::test]
async fn with_client_ca_only_a_certificate_from_that_ca_gets_in_and_a_token_is_still_needed() {
    let server_ca = Ca::new("server CA");
    let clients_ca = Ca::new("clients CA");
    let other_ca = Ca::new("someone else's CA");
    let files = TlsFiles::new(&server_ca.server("deprovd.test", 1), Some(&clients_ca));
    let app = app_with(&files, true).spawn().await;
    let url = https_url(&app, "/healthz");

    let none = client(&server_ca, None).get(&url).send().await;
    assert!(none.is_err(), "no client certificate: {none:?}");
    let foreign = client(&server_ca, Some(&other_ca.client("mallory")))
        .get(&url)
        .send()
        .await;
    assert!(foreign.is_err(), "certificate from another CA: {foreign:?}");

    let good = client(&server_ca, Some(&clients_ca.client("ops-laptop")));
    let r = good
        .get(&url)
        .send()
        .await
        .expect("a good certificate gets in");
    assert_eq!(r.status().as_u16(), 200);
    // The certificate is a transport gate, not an identity: the API still wants a token.
    let r = good
        .get(https_url(&app, "/v1/actions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_and_a_broken_one_keeps_the_last_good() {
    let ca = Ca::new("rotating CA");
    let first = ca.server("first.deprovd.test", 1);
    let files = TlsFiles::new(&first, None);
    let app = app_with(&files, false).spawn().await;
    let (ca, app_ref, url) = (&ca, &app, https_url(&app, "/healthz"));
    let url = &url;
    let served_now = move || async move {
        let r = client(ca, None)
            .get(url)
            .send()
            .await
            .expect("HTTPS answers");
        served(&r)
    };
    assert_eq!(served_now().await, first.der);

    // A renewed certificate (new serial, new name, new key) put in place: the same listener
    // serves it to new connections once the watcher has seen it.
    let renewed = ca.server("renewed.deprovd.test", 2);
    files.install(&renewed);
    let renewed_der = &renewed.der;
    eventually(
        Duration::from_secs(10),
        "the renewed certificate served",
        move || async move { (served_now().await == *renewed_der).then_some(()) },
    )
    .await;
    let ok = r#"deprovd_tls_reloads_total{outcome="ok"}"#;
    let rejected = r#"deprovd_tls_reloads_total{outcome="rejected"}"#;
    assert!(metric(app_ref, ca, ok).await >= 1.0);

    // A broken replacement is refused and counted; the renewed certificate keeps serving.
    let rejected_before = metric(app_ref, ca, rejected).await;
    std::fs::write(
        files.path("server.crt"),
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    eventually(Duration::from_secs(10), "the broken certificate refused", move || async move {
        (metric(app_ref, ca, rejected).await > rejected_before).then_some(())
    })
    .await;
    assert_eq!(served_now().await, renewed.der);
    app.stop().await;
}

#[tokio::test]
async fn startup_refuses_tls_files_that_do_not_make_a_working_pair() {
    let ca = Ca::new("CA");
    let files = TlsFiles::new(&ca.server("a.test", 1), None);
    // The key of another certificate, and a client CA file that is not there.
    std::fs::write(files.path("server.key"), ca.server("b.test", 2).key).unwrap();
    let mut tls = files.config(false);
    tls.client_ca = Some(files.path("missing.pem"));
    let builder = TestApp::builder().with(move |s| s.api.tls = Some(tls));
    let err = match deprovd::Application::build(builder.settings().clone()).await {
        Ok(_) => panic!("started with a key that is not the certificate's"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("api.tls.key"), "{err}");
    assert!(err.contains("api.tls.client_ca"), "{err}");
}

#[tokio::test]
async fn healthcheck_and_the_cli_verify_an_https_server_against_the_given_ca() {
    let ca = Ca::new("private CA");
    let clients_ca = Ca::new("clients CA");
    let files = TlsFiles::new(&ca.server("deprovd.test", 1), Some(&clients_ca));
    let client_leaf = clients_ca.client("healthcheck");
    std::fs::write(files.path("ca.pem"), &ca.pem).unwrap();
    std::fs::write(files.path("client.crt"), &client_leaf.cert).unwrap();
    std::fs::write(files.path("client.key"), &client_leaf.key).unwrap();
    let app = app_with(&files, true)
        .token("viewer", "viewer-tls-token")
        .spawn()
        .await;
    let path = |p: &Path| p.display().to_string();
    let identity = vec![
        "--client-cert".to_string(),
        path(&files.path("client.crt")),
        "--client-key".to_string(),
        path(&files.path("client.key")),
    ];
    let healthcheck = |extra: Vec<String>, env: Vec<(&'static str, String)>| {
        let mut args = vec![
            "healthcheck".to_string(),
            "--url".to_string(),
            https_url(&app, "/healthz"),
        ];
        args.extend(extra);
        deprovd(args, env)
    };

    // The CA by flag, and by environment; the client certificate the server requires.
    let (code, out, err) = healthcheck(
        [
            vec!["--ca-cert".into(), path(&files.path("ca.pem"))],
            identity.clone(),
        ]
        .concat(),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = healthcheck(
        identity.clone(),
        vec![("DEPROVD_CA_CERT", path(&files.path("ca.pem")))],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    // Without the CA the server is not trusted; without the client certificate it lets nobody in.
    let (code, _, err) = healthcheck(identity.clone(), vec![]).await;
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = healthcheck(
        vec!["--ca-cert".into(), path(&files.path("ca.pem"))],
        vec![],
    )
    .await;
    assert_eq!(code, 1, "{err}");

    // The responders' CLI, the same way.
    wait_ready(&app, &client(&ca, Some(&client_leaf))).await;
    let (code, out, err) = deprovd(
        [
            vec![
                "approvals".to_string(),
                "--server".into(),
                https_url(&app, ""),
                "--json".into(),
            ],
            identity,
        ]
        .concat(),
        vec![
            ("DEPROVD_TOKEN", "viewer-tls-token".to_string()),
            ("DEPROVD_CA_CERT", path(&files.path("ca.pem"))),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    app.stop().await;
}

/// The real binary, killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_https_and_takes_a_renewed_certificate_on_sighup() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let ca = Ca::new("sighup CA");
    let first = ca.server("first.deprovd.test", 1);
    let files = TlsFiles::new(&first, None);
    let data = tempfile::tempdir().unwrap();
    let port = crate::scim_server::free_port();
    // No file watching: only SIGHUP can bring the renewed certificate in.
    let config = format!(
        "data_dir = \"{d}\"\n[state]\nbackend = \"embedded\"\npath = \"{d}/ledger\"\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n\
         [api.tls]\ncert = \"{}\"\nkey = \"{}\"\nwatch = false\n",
        files.path("server.crt").display(),
        files.path("server.key").display(),
        d = data.path().display(),
    );
    let path = data.path().join("deprovd.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deprovd"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deprovd");
    let stdout = child.stdout.take().unwrap();
    let proc = Running(child);
    // The banner names the https:// URL.
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _token = lines.next();
        lines.next().and_then(Result::ok).unwrap_or_default()
    })
    .await
    .unwrap();
    assert!(
        banner.contains(&format!("https://127.0.0.1:{port}")),
        "{banner}"
    );

    let url = format!("https://127.0.0.1:{port}/healthz");
    let (ca, url) = (&ca, &url);
    let served_now = move || async move {
        let r = client(ca, None).get(url).send().await.ok()?;
        Some(served(&r))
    };
    let first_der = &first.der;
    eventually(
        Duration::from_secs(20),
        "deprovd serves HTTPS",
        move || async move { (served_now().await? == *first_der).then_some(()) },
    )
    .await;

    let renewed = ca.server("renewed.deprovd.test", 2);
    files.install(&renewed);
    let ok = Command::new("kill")
        .args(["-HUP", &proc.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
    let renewed_der = &renewed.der;
    eventually(
        Duration::from_secs(10),
        "the renewed certificate after SIGHUP",
        move || async move { (served_now().await? == *renewed_der).then_some(()) },
    )
    .await;
    drop(proc);
}
