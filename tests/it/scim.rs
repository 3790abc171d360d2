//! The declarative HTTP connector runtime against a real SCIM 2.0 server (`scim2-server` from PyPI) and
//! against a local axum target for the failure paths (429/500/400) and webhook signing.
//!
//! `scim2-server` is found through `DEPROVD_SCIM2_SERVER`, else `<repo>/.venv/bin/scim2-server`, else
//! `/work/main/.venv/bin/scim2-server`. Install it with
//! `python3 -m venv .venv && .venv/bin/pip install scim2-server`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::kit::connector::{RunExt, request, retrying};
use crate::scim_server::{ScimServer, free_port};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use deprovd::{
    Connector, HttpConnectorConfig, Operation, Outcome, build_http_connectors, verify_webhook,
};
use secrecy::SecretString;
use serde_json::{Value, json};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

// ---------------------------------------------------------------------------------------------
// Against the real SCIM server.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn scim_disable_is_idempotent_and_enable_restores() {
    let scim = ScimServer::start().await;
    let conn = scim.connector(None, "token");
    assert!(conn.supports(Operation::DisableAccount));
    assert!(conn.supports(Operation::RemoveGroupMemberships));
    assert!(
        !conn.supports(Operation::RevokeSessions),
        "not in SCIM core"
    );

    let name = unique("alice");
    let id = scim
        .create_user(&name, &format!("{name}@example.com"))
        .await;

    let r = conn
        .expecting(Operation::DisableAccount, &name, None, Outcome::Done)
        .await;
    assert_eq!(r.pre_state, Some(json!({"prior_active": true})));
    let after = scim.user(&id).await;
    assert_eq!(after["active"], json!(false), "{after}");
    let version = after["meta"]["version"].clone();

    let again = conn
        .expecting(Operation::DisableAccount, &name, None, Outcome::AlreadyDone)
        .await;
    assert!(
        !again.summary.contains("PATCH"),
        "no write expected: {}",
        again.summary
    );
    assert_eq!(again.pre_state, Some(json!({"prior_active": false})));
    assert_eq!(
        scim.user(&id).await["meta"]["version"],
        version,
        "the user must not have been modified"
    );

    conn.expecting(
        Operation::EnableAccount,
        &name,
        r.pre_state.clone(),
        Outcome::Done,
    )
    .await;
    assert_eq!(scim.user(&id).await["active"], json!(true));

    // Reversing a disable that found the account already inactive leaves it inactive.
    conn.execute(&request(Operation::DisableAccount, &name, None))
        .await;
    conn.expecting(
        Operation::EnableAccount,
        &name,
        Some(json!({"prior_active": false})),
        Outcome::AlreadyDone,
    )
    .await;
    assert_eq!(scim.user(&id).await["active"], json!(false));
    // A manual enable (no pre-state) does enable.
    conn.expecting(Operation::EnableAccount, &name, None, Outcome::Done)
        .await;
    assert_eq!(scim.user(&id).await["active"], json!(true));
}

#[tokio::test]
async fn scim_lookup_falls_back_to_email_and_unknown_user_is_not_found() {
    let scim = ScimServer::start().await;
    let conn = scim.connector(None, "token");
    let name = unique("bob");
    let email = format!("{name}@corp.example.com");
    let id = scim.create_user(&name, &email).await;

    conn.expecting(Operation::DisableAccount, &email, None, Outcome::Done)
        .await;
    assert_eq!(scim.user(&id).await["active"], json!(false));

    for op in [
        Operation::DisableAccount,
        Operation::EnableAccount,
        Operation::RemoveGroupMemberships,
    ] {
        let r = conn
            .execute(&request(op, "nobody-here@example.com", None))
            .await;
        assert_eq!(r.outcome, Outcome::NotFound, "{op}: {}", r.summary);
    }
}

#[tokio::test]
async fn scim_group_memberships_are_removed_recorded_and_restored() {
    let scim = ScimServer::start().await;
    // Override the built-in spec with a page size of 2 so that the member-of query pages.
    let spec_dir = tempfile::tempdir().expect("tempdir");
    let builtin = include_str!("../../connectors/scim.yaml");
    assert!(builtin.contains("count: 100"));
    std::fs::write(
        spec_dir.path().join("scim.yaml"),
        builtin.replace("count: 100", "count: 2"),
    )
    .expect("write spec");
    let conn = scim.connector(Some(spec_dir.path()), "token");

    let name = unique("carol");
    let id = scim
        .create_user(&name, &format!("{name}@example.com"))
        .await;
    let other = scim.create_user(&unique("dave"), "dave@example.com").await;
    let mut member_of = Vec::new();
    for i in 0..3 {
        let gname = unique(&format!("grp{i}"));
        let gid = scim.create_group(&gname, &[&id, &other]).await;
        member_of.push((gid, gname));
    }
    let unrelated = scim.create_group(&unique("unrelated"), &[&other]).await;

    let r = conn
        .expecting(
            Operation::RemoveGroupMemberships,
            &name,
            None,
            Outcome::Done,
        )
        .await;
    assert_eq!(
        r.summary.matches("GET /v2/Groups →").count(),
        2,
        "3 groups at 2 per page take 2 pages: {}",
        r.summary
    );
    let mut recorded: Vec<(String, String)> = r.pre_state.as_ref().expect("pre_state")["groups"]
        .as_array()
        .expect("groups list")
        .iter()
        .map(|g| {
            (
                g["id"].as_str().unwrap_or_default().to_string(),
                g["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    recorded.sort();
    let mut want = member_of.clone();
    want.sort();
    assert_eq!(recorded, want);
    for (gid, _) in &member_of {
        let members = scim.group_members(gid).await;
        assert!(!members.contains(&id), "{gid} still has the user");
        assert!(members.contains(&other), "{gid} lost another member");
    }
    assert_eq!(scim.group_members(&unrelated).await, vec![other.clone()]);

    conn.expecting(
        Operation::RemoveGroupMemberships,
        &name,
        None,
        Outcome::AlreadyDone,
    )
    .await;

    conn.expecting(
        Operation::RestoreGroupMemberships,
        &name,
        r.pre_state.clone(),
        Outcome::Done,
    )
    .await;
    for (gid, _) in &member_of {
        assert!(
            scim.group_members(gid).await.contains(&id),
            "{gid} was not restored"
        );
    }
    assert!(!scim.group_members(&unrelated).await.contains(&id));
}

#[tokio::test]
async fn scim_check_passes_with_the_token_and_explains_a_wrong_one() {
    let scim = ScimServer::start().await;
    let ok = scim.connector(None, "token").check().await;
    assert!(ok.ok, "{ok:?}");

    std::fs::write(scim.secrets.path().join("wrong"), "not-the-token").expect("write");
    let bad = scim.connector(None, "wrong").check().await;
    assert!(!bad.ok, "{bad:?}");
    assert!(bad.detail.contains("401"), "{bad:?}");
    assert!(
        bad.fix
            .as_deref()
            .unwrap_or_default()
            .contains("credentials"),
        "{bad:?}"
    );
    assert!(!bad.detail.contains("not-the-token"));
}

// ---------------------------------------------------------------------------------------------
// Against a local axum target: failure mapping and webhook signatures.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Received {
    /// (signature valid, body) of every /hook request.
    hooks: Vec<(bool, Value, HeaderMap)>,
}

const HOOK_SECRET: &str = "whsec-test-0123456789";

async fn spawn_target() -> (String, Arc<Mutex<Received>>) {
    let state = Arc::new(Mutex::new(Received::default()));
    let app = Router::new()
        .route(
            "/limited",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")], "slow down") }),
        )
        .route(
            "/broken",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/invalid",
            post(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"detail":"subject is not a valid account name"}"#,
                )
            }),
        )
        .route(
            "/huge",
            post(|| async { "x".repeat(5 * 1024 * 1024) }),
        )
        .route(
            "/pages",
            axum::routing::get(
                |axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>| async move {
                    let page: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                    let next = match (q.get("escape"), page) {
                        (Some(_), _) => json!("http://elsewhere.example.com/pages?page=2"),
                        (None, 1 | 2) => json!(format!("/pages?page={}", page + 1)),
                        (None, _) => Value::Null,
                    };
                    axum::Json(json!({"items": [format!("p{page}a"), format!("p{page}b")], "next": next}))
                },
            ),
        )
        .route(
            "/thing",
            axum::routing::get(|| async {
                (
                    [("etag", "W/\"7\""), ("content-type", "application/json")],
                    r#"{"state":"on"}"#,
                )
            })
            .patch(|headers: HeaderMap| async move {
                match headers.get("if-match").and_then(|v| v.to_str().ok()) {
                    Some("W/\"7\"") => StatusCode::NO_CONTENT,
                    _ => StatusCode::PRECONDITION_FAILED,
                }
            }),
        )
        .route(
            "/hook",
            post(
                |State(st): State<Arc<Mutex<Received>>>, headers: HeaderMap, body: Bytes| async move {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let valid = verify_webhook(
                        &SecretString::from(HOOK_SECRET),
                        &h("x-deprovd-timestamp"),
                        &h("x-deprovd-signature"),
                        &body,
                        now,
                        300,
                    );
                    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    st.lock().expect("lock").hooks.push((valid, json, headers.clone()));
                    if valid {
                        StatusCode::NO_CONTENT.into_response()
                    } else {
                        StatusCode::UNAUTHORIZED.into_response()
                    }
                },
            ),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), state)
}

/// A `webhook` connector opted into every operation its spec defines (by default it only notifies).
fn webhook(base: &str, path: &str, auth: &str) -> Arc<dyn Connector> {
    let operations =
        serde_json::to_string(&crate::kit::connector::WEBHOOK_OPERATIONS).expect("json");
    let cfg: HttpConnectorConfig = toml::from_str(&format!(
        "type = \"webhook\"\nbase_url = \"{base}\"\nauth = {auth}\nvars = {{ path = \"{path}\" }}\ntimeout = \"5s\"\noperations = {operations}\n"
    ))
    .expect("config");
    let mut configs = BTreeMap::new();
    configs.insert("hook".to_string(), cfg);
    build_http_connectors(&configs, None)
        .unwrap_or_else(|p| panic!("{p:?}"))
        .remove("hook")
        .expect("built")
}

#[tokio::test]
async fn target_failures_map_to_retry_and_failed() {
    let (base, _) = spawn_target().await;
    let none = "{ scheme = \"none\" }";

    let r = webhook(&base, "limited", none)
        .execute(&request(Operation::Notify, "u@example.com", None))
        .await;
    let (after, reason) = retrying(&r);
    assert_eq!(after, Some(Duration::from_secs(2)));
    assert!(reason.contains("429"), "{reason}");

    let r = webhook(&base, "broken", none)
        .execute(&request(Operation::Notify, "u@example.com", None))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Retry { after: None, reason } if reason.contains("500")),
        "{:?}",
        r.outcome
    );

    let r = webhook(&base, "invalid", none)
        .execute(&request(Operation::Notify, "u@example.com", None))
        .await;
    assert_eq!(
        r.outcome,
        Outcome::Failed {
            reason: "HTTP 400: subject is not a valid account name".into()
        }
    );

    let r = webhook(&base, "huge", none)
        .execute(&request(Operation::Notify, "u@example.com", None))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("larger than")),
        "{:?}",
        r.outcome
    );

    // Nobody listening: a connection error is retryable.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let r = webhook(&closed, "x", none)
        .execute(&request(Operation::Notify, "u@example.com", None))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Retry { .. }),
        "{:?}",
        r.outcome
    );
}

#[tokio::test]
async fn webhook_requests_are_signed_and_verify() {
    let (base, state) = spawn_target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("hook-secret");
    std::fs::write(&secret_file, format!("{HOOK_SECRET}\n")).expect("write");
    let conn = webhook(
        &base,
        "hook",
        &format!(
            "{{ scheme = \"hmac\", secret = \"file:{}\" }}",
            secret_file.display()
        ),
    );
    let mut req = request(Operation::DisableAccount, "eve@example.com", None);
    req.context
        .insert("reason".into(), json!("impossible travel"));
    let r = conn.execute(&req).await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);

    {
        let got = state.lock().expect("lock");
        assert_eq!(got.hooks.len(), 1);
        let (valid, body, headers) = &got.hooks[0];
        assert!(valid, "signature did not verify: {headers:?}");
        assert_eq!(
            body,
            &json!({
                "event": "deprovd.disable_account",
                "operation": "disable_account",
                "subject": "eve@example.com",
                "idempotency_key": req.idempotency_key,
                "context": {"reason": "impossible travel"},
            })
        );
        assert_eq!(
            headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
            Some(req.idempotency_key.as_str())
        );
    }
    // A signature with the wrong secret is refused by the receiver: the check is not vacuous.
    std::fs::write(&secret_file, "another-secret").expect("write");
    let wrong = webhook(
        &base,
        "hook",
        &format!(
            "{{ scheme = \"hmac\", secret = \"file:{}\" }}",
            secret_file.display()
        ),
    );
    let r = wrong
        .execute(&request(Operation::Notify, "eve@example.com", None))
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("401")),
        "{:?}",
        r.outcome
    );
    assert!(!state.lock().expect("lock").hooks[1].0);
}

#[tokio::test]
async fn etag_from_a_read_is_sent_as_if_match() {
    let (base, _) = spawn_target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("etagged.yaml"),
        r#"
name: etagged
auth: [none]
operations:
  disable_account:
    steps:
      - { name: read, method: GET, path: /thing, extract: { state: /state } }
      - method: PATCH
        path: /thing
        headers: { If-Match: '{{ steps.read.etag or "" }}' }
        body: { state: "off", was: "{{ steps.read.state }}" }
    record: { etag: "{{ steps.read.etag }}" }
"#,
    )
    .expect("write spec");
    let cfg: HttpConnectorConfig = toml::from_str(&format!(
        "type = \"etagged\"\nbase_url = \"{base}\"\nauth = {{ scheme = \"none\" }}\n"
    ))
    .expect("config");
    let set = build_http_connectors(&BTreeMap::from([("t".to_string(), cfg)]), Some(dir.path()))
        .unwrap_or_else(|p| panic!("{p:?}"));
    let r = set["t"]
        .execute(&request(Operation::DisableAccount, "x", None))
        .await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(r.pre_state, Some(json!({"etag": "W/\"7\""})));
}

#[tokio::test]
async fn next_link_pagination_concatenates_pages_and_stays_on_the_target() {
    let (base, _) = spawn_target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("paged.yaml"),
        r#"
name: paged
auth: [none]
defaults: { escape: false }
operations:
  lookup:
    steps:
      - name: list
        method: GET
        path: '/pages{{ "?escape=1" if vars.escape else "" }}'
        paginate: { next_link: { pointer: /next } }
        extract: { items: /items }
    record: { items: "{{ steps.list.items }}" }
"#,
    )
    .expect("write spec");
    let build = |escape: bool| {
        let cfg: HttpConnectorConfig = toml::from_str(&format!(
            "type = \"paged\"\nbase_url = \"{base}\"\nauth = {{ scheme = \"none\" }}\nvars = {{ escape = {escape} }}\n"
        ))
        .expect("config");
        let specs = deprovd::load_connector_specs(Some(dir.path())).expect("specs");
        let client = deprovd::http_client(None).expect("client");
        let mut problems = Vec::new();
        deprovd::build_http_connector("p", &cfg, &specs, &client, &mut problems)
            .unwrap_or_else(|| panic!("{problems:?}"))
    };
    let r = build(false).lookup("anyone").await;
    assert_eq!(r.outcome, Outcome::Done, "{}", r.summary);
    assert_eq!(
        r.pre_state,
        Some(json!({"items": ["p1a", "p1b", "p2a", "p2b", "p3a", "p3b"]}))
    );
    let r = build(true).lookup("anyone").await;
    assert!(
        matches!(&r.outcome, Outcome::Failed { reason } if reason.contains("leaves the target")),
        "{:?}",
        r.outcome
    );
}
