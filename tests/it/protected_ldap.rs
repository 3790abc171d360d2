//! Protected subjects against a real slapd (issue 10): spellings a directory folds — fullwidth
//! letters, the long s, a bare username — never lock a protected entry, and neither does a subject
//! that the planning guard cannot recognise but that resolves to a protected entry (the executor's
//! post-resolution check). Every refusal is audited; the directory is checked, not only the answers.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::kit::connector::instance;
use crate::kit::{DISABLE_ALL_POLICY, TestApp, eventually, policy_dir};
use crate::slapd::{self, Slapd};

const BREAKGLASS_DN: &str = "uid=breakglass,ou=people,dc=example,dc=org";
const BREAKGLASS_PW: &str = "breakglass-pw";
/// Protected by its mail only: nothing in the subject `opsroot` says so.
const OPSROOT_DN: &str = "uid=opsroot,ou=people,dc=example,dc=org";
const OPSROOT_PW: &str = "opsroot-pw";

async fn add_person(server: &Slapd, uid: &str, mail: &str, password: &str, number: &str) {
    let mut ldap = server.root().await;
    let dn = format!("uid={uid},ou=people,dc=example,dc=org");
    let attrs = vec![
        (
            "objectClass",
            HashSet::from(["inetOrgPerson", "posixAccount"]),
        ),
        ("uid", HashSet::from([uid])),
        ("cn", HashSet::from([uid])),
        ("sn", HashSet::from([uid])),
        ("mail", HashSet::from([mail])),
        ("uidNumber", HashSet::from([number])),
        ("gidNumber", HashSet::from([number])),
        ("homeDirectory", HashSet::from(["/home/x"])),
        ("userPassword", HashSet::from([password])),
    ];
    ldap.add(&dn, attrs)
        .await
        .expect("add request")
        .success()
        .expect("entry added");
}

/// The app: an `ldap` connector `directory` to `server` binding as the service account, and two
/// protected subjects.
async fn app(policies: &std::path::Path, server: &Slapd) -> TestApp {
    let secret = server
        .dir()
        .join(format!("pw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&secret, format!("{}\n", slapd::SERVICE_PW)).expect("write secret");
    let directory = instance(json!({
        "type": "ldap",
        "url": server.url,
        "bind_dn": slapd::SERVICE_DN,
        "bind_password": format!("file:{}", secret.display()),
        "base_dn": "ou=people,dc=example,dc=org",
        "group_base_dn": "ou=groups,dc=example,dc=org",
        "timeout": "5s",
    }));
    TestApp::builder()
        .policies(policies)
        .fast_executor()
        .with(|s| {
            s.guards.protected = vec![
                "breakglass@example.org".into(),
                "root-ops@example.org".into(),
            ]
        })
        .connector("directory", directory)
        .redis()
        .spawn()
        .await
}

async fn lockout(app: &TestApp, subject: &str) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/v1/lockouts"))
        .bearer_auth(&app.token)
        .json(&json!({
            "subject": subject,
            "reason": "issue 10 regression",
            "connectors": ["directory"],
            "operations": ["disable_account"],
        }))
        .send()
        .await
        .expect("post lockout");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The one action of lockout `id`, once it has ended (any state but planned/running).
async fn ended_action(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(20), "lockout action ends", || async {
        let s = app.get_json(&format!("/v1/lockouts/{id}")).await;
        let action = s["actions"].as_array()?.first()?.clone();
        (!matches!(action["state"].as_str(), Some("planned" | "running"))).then_some(action)
    })
    .await
}

async fn untouched(server: &Slapd, dn: &str, pw: &str) {
    assert!(
        server.values(dn, "pwdAccountLockedTime").await.is_empty(),
        "{dn} must not be locked"
    );
    assert!(server.can_bind(dn, pw).await, "{dn} must still bind");
}

#[tokio::test]
async fn folded_spellings_and_resolved_aliases_never_lock_a_protected_entry() {
    let server = Slapd::start();
    add_person(
        &server,
        "breakglass",
        "breakglass@example.org",
        BREAKGLASS_PW,
        "10100",
    )
    .await;
    add_person(
        &server,
        "opsroot",
        "root-ops@example.org",
        OPSROOT_PW,
        "10101",
    )
    .await;
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = app(policies.path(), &server).await;
    app.wait_ready(Duration::from_secs(15)).await;

    // Planning guard: each spelling the directory would fold onto `breakglass` is skipped.
    for subject in [
        "ｂｒｅａｋｇｌａｓｓ",
        "breakglaſs",
        "breakglass",
        "ＢｒｅａｋＧｌａｓｓ@example.org",
        "breakglass@other.example",
    ] {
        let (status, created) = lockout(&app, subject).await;
        assert_eq!(status, 202, "{subject}: {created}");
        let id = created["id"].as_str().expect("lockout id");
        let action = ended_action(&app, id).await;
        assert_eq!(action["state"], "skipped", "{subject}: {action}");
    }

    // Control characters are refused outright: nothing is recorded.
    for subject in ["breakglass\u{0}", "break\u{200B}glass"] {
        let (status, body) = lockout(&app, subject).await;
        assert_eq!(status, 422, "{subject:?}: {body}");
        assert!(body.to_string().contains("U+"), "{body}");
    }

    // Post-resolution: `opsroot` names no protected subject, but its entry's mail is protected.
    let (status, created) = lockout(&app, "opsroot").await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().expect("lockout id");
    let action = ended_action(&app, id).await;
    assert_eq!(action["state"], "skipped", "{action}");
    let key = action["key"].as_str().expect("action key");
    let record = app.get_json(&format!("/v1/actions/{key}")).await;
    let audit = app.get_json(&format!("/v1/audit?action_key={key}")).await;
    let guard = audit["records"]
        .as_array()
        .expect("audit records")
        .iter()
        .find(|r| r["kind"] == "guard")
        .unwrap_or_else(|| panic!("no guard record for {key}: {audit} (action {record})"));
    assert_eq!(
        guard["detail"]["resolved_to"], "root-ops@example.org",
        "{guard}"
    );

    untouched(&server, BREAKGLASS_DN, BREAKGLASS_PW).await;
    untouched(&server, OPSROOT_DN, OPSROOT_PW).await;

    // The same path does lock an unprotected entry, so the skips above are the guards' doing.
    let (status, created) = lockout(&app, "alice").await;
    assert_eq!(status, 202, "{created}");
    let action = ended_action(&app, created["id"].as_str().unwrap()).await;
    assert_eq!(action["state"], "succeeded", "{action}");
    assert_eq!(
        server.values(slapd::ALICE_DN, "pwdAccountLockedTime").await,
        vec![deprovd::LDAP_PERMANENT_LOCK.to_string()],
        "{action}"
    );
    app.stop().await;
}
