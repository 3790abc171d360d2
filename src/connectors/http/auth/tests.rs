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
        toml::from_str::<AuthConfig>("scheme = \"bearer\"\ntoken = \"env:X\"\nextra = 1").is_err()
    );
    // oauth2's fields are a struct of their own: it refuses unknown keys too.
    let oauth2 = "scheme = \"oauth2\"\ntoken_url = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"env:X\"";
    assert_eq!(
        toml::from_str::<AuthConfig>(oauth2).unwrap().scheme(),
        "oauth2"
    );
    assert!(toml::from_str::<AuthConfig>(&format!("{oauth2}\nextra = 1")).is_err());
    assert!(toml::from_str::<AuthConfig>(&oauth2.replace("env:X", "abc")).is_err());
}

// -----------------------------------------------------------------------------------------
// Token schemes against a local token endpoint.
// -----------------------------------------------------------------------------------------

use std::collections::BTreeMap;
use std::sync::Mutex;

const PRIVATE_PEM: &str = include_str!("../../../../tests/fixtures/idp/test-rsa-private.pem");
const PUBLIC_PEM: &str = include_str!("../../../../tests/fixtures/idp/test-rsa-public.pem");

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
                    let form: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
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

/// [`oauth2_secret`] against `url` with no extra keys, its client secret `secret` read from a file.
fn client_secret_auth(url: &str, secret: &str) -> Auth {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(&dir, "cs", secret);
    oauth2_secret(url, &file, "").resolve().unwrap()
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
    let c: AuthConfig = toml::from_str(&format!("scheme = \"ssws\"\ntoken = \"{token}\"")).unwrap();
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
    let auth = client_secret_auth(&url, "s3cr3t value&=");
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
    let auth = Arc::new(client_secret_auth(&url, "secret-1"));
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
    let auth = client_secret_auth(&url, "secret-1");
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
    let auth = client_secret_auth(&url, "secret-1");
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
    let auth = client_secret_auth(&url, "wrong-secret");
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
