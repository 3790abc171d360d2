//! Identity resolution and the protected-subject guards, through the whole application: spellings of
//! one account dedupe to one connector call; a protected account — by exact name, glob or group
//! membership, in any spelling — is never called, whatever the vendor format (property test).
//!
//! The SCIM directory here is a fake written from RFC 7644: `GET /Users?filter=userName eq "…"`,
//! `GET /Groups?filter=members.value eq "…"` (ListResponse with `totalResults`, `startIndex`,
//! `itemsPerPage`, `Resources`), `GET /Users/{id}` and `PATCH /Users/{id}` (PatchOp). It knows each
//! user's groups and counts the PATCHes (the only destructive call) per user.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use deprovd::InstanceConfig;

use crate::kit::connector::{Secrets, instance, webhook};
use crate::kit::{Target, TestApp, TestAppBuilder, eventually, policy_dir, unique};

/// Disables every subject of every alert, named as the alert gave it: email, else `DOMAIN\user`,
/// else the bare username. No severity or category condition: it targets everyone.
const EVERYONE_POLICY: &str = r#"package deprovd

import rego.v1

name(s) := s.email if s.email

name(s) := sprintf("%s\\%s", [s.domain, s.username]) if {
    not s.email
    s.domain
}

name(s) := s.username if {
    not s.email
    not s.domain
}

decisions contains d if {
    some s in input.alert.subjects
    d := {
        "action": "disable_account",
        "subject": name(s),
        "reason": "test: everyone",
        "rule": "test.everyone",
    }
}
"#;

/// The directory's bearer token (RFC 7644 §2: the service provider authenticates every request).
const DIR_TOKEN: &str = "scim-test-token";

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The fake SCIM service provider's state: users by `userName`, their groups, PATCHes per id.
#[derive(Default)]
struct Directory {
    /// userName → groups (display names).
    users: BTreeMap<String, Vec<String>>,
    patches: BTreeMap<String, usize>,
}

type Dir = Arc<Mutex<Directory>>;

fn id_of(user_name: &str) -> String {
    format!("u-{}", user_name.replace(['@', '.'], "-"))
}

fn list(resources: Vec<Value>) -> Response {
    let n = resources.len();
    axum::Json(json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": n,
        "startIndex": 1,
        "itemsPerPage": n,
        "Resources": resources,
    }))
    .into_response()
}

/// `attr eq "value"` → value (the only filter form the scim spec sends).
fn filter_value(q: &BTreeMap<String, String>, attr: &str) -> Option<String> {
    let f = q.get("filter")?;
    let rest = f
        .strip_prefix(attr)?
        .trim_start()
        .strip_prefix("eq")?
        .trim();
    serde_json::from_str(rest).ok()
}

async fn list_users(State(d): State<Dir>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let d = d.lock().unwrap();
    let wanted = filter_value(&q, "userName").or_else(|| filter_value(&q, "emails.value"));
    let found = wanted
        .filter(|w| d.users.contains_key(w))
        .map(|w| vec![json!({"id": id_of(&w)})])
        .unwrap_or_default();
    list(found)
}

async fn list_groups(State(d): State<Dir>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let d = d.lock().unwrap();
    let Some(member) = filter_value(&q, "members.value") else {
        return (StatusCode::BAD_REQUEST, "filter required").into_response();
    };
    let found = d
        .users
        .iter()
        .filter(|(name, _)| id_of(name) == member)
        .flat_map(|(_, gs)| gs.iter())
        .map(|g| json!({"id": format!("g-{g}"), "displayName": g}))
        .collect();
    list(found)
}

async fn user(State(d): State<Dir>, Path(id): Path<String>) -> Response {
    let d = d.lock().unwrap();
    match d.users.keys().find(|n| id_of(n) == id) {
        Some(name) => axum::Json(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id, "userName": name, "active": true,
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "404", "detail": "Resource not found",
            })),
        )
            .into_response(),
    }
}

async fn patch_user(State(d): State<Dir>, Path(id): Path<String>) -> Response {
    let mut d = d.lock().unwrap();
    *d.patches.entry(id.clone()).or_default() += 1;
    axum::Json(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id, "active": false,
    }))
    .into_response()
}

async fn require_token(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {DIR_TOKEN}").as_str());
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "401", "detail": "Authorization failure",
            })),
        )
            .into_response();
    }
    next.run(req).await
}

async fn start_directory(users: BTreeMap<String, Vec<String>>) -> (String, Dir) {
    let dir: Dir = Arc::new(Mutex::new(Directory {
        users,
        ..Default::default()
    }));
    let app = Router::new()
        .route("/scim/v2/Users", get(list_users))
        .route("/scim/v2/Groups", get(list_groups))
        .route("/scim/v2/Users/{id}", get(user).patch(patch_user))
        .route_layer(axum::middleware::from_fn(require_token))
        .with_state(dir.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/scim/v2"), dir)
}

/// The SCIM directory at `url` as connector `dir`, its bearer token at `token`.
fn directory_connector(url: &str, token: &str) -> InstanceConfig {
    instance(json!({
        "type": "scim",
        "base_url": url,
        "auth": {"scheme": "bearer", "token": token},
    }))
}

/// The app: a webhook connector `hook` at `hook`, `CORP` and `corp.com` as aliases of
/// `corp.example`, and what `more` adds (it gets the directory token's secret reference).
async fn spawn(
    hook: &Target,
    more: impl FnOnce(TestAppBuilder, String) -> TestAppBuilder,
) -> (TestApp, Secrets, tempfile::TempDir) {
    let secrets = Secrets::new();
    let token = secrets.file("dir-token", DIR_TOKEN);
    let policies = policy_dir(&[("p.rego", EVERYONE_POLICY)]);
    let builder = TestApp::builder()
        .policies(policies.path())
        .fast_executor()
        .with(|s| {
            s.identity.domain_aliases = BTreeMap::from([
                ("CORP".to_string(), "corp.example".to_string()),
                ("corp.com".to_string(), "corp.example".to_string()),
            ])
        })
        .connector("hook", webhook("hook", &hook.url()))
        .redis();
    let app = more(builder, token).spawn().await;
    app.wait_ready(Duration::from_secs(10)).await;
    (app, secrets, policies)
}

/// Wait until no action is `planned` or `running`.
async fn settled(app: &TestApp) {
    eventually(Duration::from_secs(30), "every action settles", || async {
        let planned = app.actions("state=planned&limit=1000").await;
        let running = app.actions("state=running&limit=1000").await;
        (planned.is_empty() && running.is_empty()).then_some(())
    })
    .await;
}

/// Subjects the webhook target was called for.
fn hook_subjects(hook: &Target) -> Vec<String> {
    hook.seen()
        .iter()
        .filter(|s| s.method == "POST")
        .filter_map(|s| serde_json::from_slice::<Value>(&s.body).ok())
        .filter_map(|b| b["subject"].as_str().map(str::to_string))
        .collect()
}

fn generic(id: &str, subjects: Value) -> String {
    json!({"id": id, "source": {"vendor": "test"}, "time": chrono::Utc::now().to_rfc3339(),
        "severity": "high", "category": "credential_theft", "title": "t", "subjects": subjects})
    .to_string()
}

#[tokio::test]
async fn two_spellings_of_one_account_dedupe_to_one_call() {
    let hook = Target::hook().await;
    let (app, _d, _p) = spawn(&hook, |b, _| b).await;
    let (s1, b1) = app
        .post_alert(&generic(&unique("a"), json!([r"CORP\jdoe"])))
        .await;
    let (s2, b2) = app
        .post_alert(&generic(&unique("b"), json!(["JDoe@Corp.com"])))
        .await;
    assert_eq!((s1, s2), (202, 202), "{b1} {b2}");
    // The decisions keep the policy's (the vendor's) spelling; the actions carry the canonical one.
    assert_eq!(b1["decisions"][0]["subject"], r"CORP\jdoe");
    assert_eq!(b2["decisions"][0]["subject"], "JDoe@Corp.com");
    assert_eq!(b1["actions"][0]["subject"], "jdoe@corp.example");
    assert_eq!(b2["actions"][0]["disposition"], "coalesced", "{b2}");
    settled(&app).await;
    assert_eq!(hook.count("POST", "/hook"), 1);
    assert_eq!(hook_subjects(&hook), ["jdoe@corp.example"]);
    // The alert's own record in the audit trail keeps the original spelling.
    let audit = app.get_json("/v1/audit?limit=1000").await.to_string();
    assert!(audit.contains(r#"CORP\\jdoe"#), "{audit}");
    app.stop().await;
}

#[tokio::test]
async fn a_manual_lockout_of_a_down_level_name_joins_the_alerts_action() {
    let hook = Target::hook().await;
    let (app, _d, _p) = spawn(&hook, |b, _| b).await;
    let (status, body) = app
        .post_alert(&generic(&unique("a"), json!(["jdoe@corp.example"])))
        .await;
    assert_eq!(status, 202, "{body}");
    let r = app
        .http
        .post(app.url("/v1/lockouts"))
        .bearer_auth(&app.token)
        .json(&json!({"subject": r"Corp\JDoe", "connectors": ["hook"],
            "operations": ["disable_account"], "reason": "phished"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["subject"], "jdoe@corp.example", "{created}");
    assert_eq!(
        created["actions"][0]["key"], body["actions"][0]["key"],
        "coalesced into the alert's action: {created}"
    );
    settled(&app).await;
    assert_eq!(hook.count("POST", "/hook"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_member_of_a_protected_group_is_never_called() {
    let hook = Target::hook().await;
    let (dir_url, dir) = start_directory(BTreeMap::from([
        (
            "admin@corp.example".to_string(),
            vec!["Everyone".to_string(), "Break-Glass".to_string()],
        ),
        (
            "jdoe@corp.example".to_string(),
            vec!["Everyone".to_string()],
        ),
    ]))
    .await;
    let (app, _d, _p) = spawn(&hook, |b, token| {
        b.connector("dir", directory_connector(&dir_url, &token))
            .with(|s| s.guards.protected_groups = vec!["break-glass".into()])
    })
    .await;
    let (status, body) = app
        .post_alert(&generic(
            &unique("a"),
            json!([r"CORP\admin", "jdoe@corp.com"]),
        ))
        .await;
    assert_eq!(status, 202, "{body}");
    settled(&app).await;
    // jdoe is acted on everywhere; admin nowhere — not even on the connector that cannot list groups.
    assert_eq!(hook_subjects(&hook), ["jdoe@corp.example"]);
    let patches = dir.lock().unwrap().patches.clone();
    assert_eq!(patches, BTreeMap::from([(id_of("jdoe@corp.example"), 1)]));
    let admin = app.actions("subject=admin@corp.example").await;
    assert_eq!(admin.len(), 2, "{admin:?}");
    for a in &admin {
        assert_eq!(a["state"], "skipped", "{a}");
        let note = a["note"].as_str().unwrap();
        assert!(
            note.contains("`Break-Glass`") && note.contains("`dir`"),
            "{note}"
        );
    }
    assert_eq!(
        app.metric(r#"deprovd_guard_blocks_total{guard="protected_group"}"#)
            .await,
        Some(2.0)
    );
    let audit = app
        .get_json("/v1/audit?subject=admin@corp.example&limit=1000")
        .await;
    let guards = audit["records"]
        .as_array()
        .or_else(|| audit.as_array())
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["kind"] == "guard")
        .count();
    assert_eq!(guards, 2, "{audit}");
    app.stop().await;
}

/// One account of the generated world: `user` at the canonical domain, or at a foreign one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Account {
    user: String,
    corp: bool,
}

impl Account {
    fn canonical(&self) -> String {
        if self.corp {
            format!("{}@corp.example", self.user)
        } else {
            format!("{}@other.example", self.user)
        }
    }

    /// A random spelling of this account's name, as some vendor would write it.
    fn spelling(&self, rng: &mut StdRng) -> String {
        let u = &self.user;
        let upper = |s: &str| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        };
        if !self.corp {
            return [
                format!("{u}@other.example"),
                format!("{}@Other.Example", upper(u)),
            ][rng.random_range(0..2)]
            .clone();
        }
        let forms = [
            format!(r"CORP\{u}"),
            format!(r"corp\{}", upper(u)),
            format!("{u}@corp.com"),
            format!("{}@Corp.Example", upper(u)),
            format!("{u}@corp.example"),
            format!("{}@CORP.COM", u.to_uppercase()),
        ];
        forms[rng.random_range(0..forms.len())].clone()
    }
}

/// The alert naming `accounts`, in one of several vendor formats, each with its own way of naming.
fn random_alert(rng: &mut StdRng, accounts: &[Account]) -> String {
    let id = unique("prop");
    let names: Vec<String> = accounts.iter().map(|a| a.spelling(rng)).collect();
    let now = chrono::Utc::now();
    match rng.random_range(0..4) {
        // Generic, bare strings.
        0 => generic(&id, json!(names)),
        // Generic, objects: down-level names split into username + domain.
        1 => {
            let subjects: Vec<Value> = names
                .iter()
                .map(|n| match n.split_once('\\') {
                    Some((d, u)) => json!({"username": u, "domain": d}),
                    None => json!({"email": n}),
                })
                .collect();
            generic(&id, json!(subjects))
        }
        // Okta System Log: one user-typed target per account.
        2 => {
            let targets: Vec<Value> = names
                .iter()
                .enumerate()
                .map(
                    |(i, n)| json!({"id": format!("00u{i}{id}"), "type": "User", "alternateId": n}),
                )
                .collect();
            json!({"uuid": id, "published": now.to_rfc3339(), "eventType": "user.account.lock",
                "severity": "WARN", "displayMessage": "locked", "target": targets,
                "actor": {"id": "00uadmin", "type": "User", "alternateId": "okta-admin@corp.example"}})
            .to_string()
        }
        // OCSF Detection Finding: actor plus evidences.
        _ => {
            let user = |n: &String| {
                if n.contains('@') {
                    json!({"email_addr": n})
                } else {
                    json!({"name": n})
                }
            };
            let evidences: Vec<Value> = names
                .iter()
                .skip(1)
                .map(|n| json!({"user": user(n)}))
                .collect();
            json!({"class_uid": 2004, "time": now.timestamp_millis(), "severity_id": 4,
                "finding_info": {"uid": id, "title": "t"},
                "metadata": {"product": {"vendor_name": "Test"}},
                "actor": {"user": user(&names[0])}, "evidences": evidences})
            .to_string()
        }
    }
}

#[tokio::test]
async fn random_alerts_never_call_a_protected_subject() {
    const CASES: u64 = 16;
    const ALERTS: usize = 25;
    let pool = [
        "jdoe",
        "asmith",
        "admin",
        "breakglass",
        "svc-backup",
        "svc-ci",
        "mlee",
        "kpatel",
    ];
    let mut total_calls = 0;
    for seed in 0..CASES {
        let mut rng = StdRng::seed_from_u64(0xD0_0D + seed);
        let accounts: Vec<Account> = pool
            .iter()
            .flat_map(|u| {
                [
                    Account {
                        user: u.to_string(),
                        corp: true,
                    },
                    Account {
                        user: u.to_string(),
                        corp: false,
                    },
                ]
            })
            .collect();
        let corp: Vec<&Account> = accounts.iter().filter(|a| a.corp).collect();
        // Protected: some accounts by exact name (any spelling), maybe a glob, some by group.
        let mut protected = BTreeSet::new();
        let mut entries = Vec::new();
        for a in &corp {
            if rng.random_bool(0.25) {
                entries.push(a.spelling(&mut rng));
                protected.insert(a.canonical());
            }
        }
        if rng.random_bool(0.5) {
            entries.push(
                ["svc-*@corp.example", "svc-*@corp.com", r"CORP\svc-*"][rng.random_range(0..3)]
                    .to_string(),
            );
            for a in corp.iter().filter(|a| a.user.starts_with("svc-")) {
                protected.insert(a.canonical());
            }
        }
        let mut directory = BTreeMap::new();
        for a in &corp {
            let mut groups = vec!["Everyone".to_string()];
            if rng.random_bool(0.25) {
                groups.push(
                    ["Break-Glass", "break-glass", "BREAK-GLASS"][rng.random_range(0..3)].into(),
                );
                protected.insert(a.canonical());
            }
            directory.insert(a.canonical(), groups);
        }
        let hook = Target::hook().await;
        let (dir_url, dir) = start_directory(directory).await;
        let (app, _d, _p) = spawn(&hook, |b, token| {
            b.connector("dir", directory_connector(&dir_url, &token))
                .with(|s| {
                    s.guards.protected = entries.clone();
                    s.guards.protected_groups = vec!["break-glass".into()];
                })
        })
        .await;
        for _ in 0..ALERTS {
            let n = rng.random_range(1..=3);
            let named: Vec<Account> = (0..n)
                .map(|_| accounts[rng.random_range(0..accounts.len())].clone())
                .collect();
            let body = random_alert(&mut rng, &named);
            let (status, resp) = app.post_alert(&body).await;
            assert_eq!(status, 202, "seed {seed}: {body} → {resp}");
        }
        settled(&app).await;
        let called = hook_subjects(&hook);
        for s in &called {
            assert!(
                !protected.contains(&s.to_lowercase()),
                "seed {seed}: protected subject {s} was called (protected: {protected:?}, entries: {entries:?})"
            );
        }
        let patches = dir.lock().unwrap().patches.clone();
        for id in patches.keys() {
            assert!(
                !protected.iter().any(|p| id_of(p) == *id),
                "seed {seed}: protected directory user {id} was disabled"
            );
        }
        total_calls += called.len() + patches.values().sum::<usize>();
        app.stop().await;
    }
    // The property would hold vacuously if nothing were ever called.
    assert!(
        total_calls > 20,
        "only {total_calls} calls in {CASES} cases"
    );
}
