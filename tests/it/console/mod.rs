//! The responders' console in a real browser: Debian's headless `chromium` driven by Playwright
//! (PyPI) against the real application, with Okta's fake as the target. `e2e.py` beside this file
//! walks the screens and checks what a person would see; this side sets the scene (tokens, a
//! hostile alert), then checks what the target and the audit trail saw.
//!
//! Found through `DEPROVD_PLAYWRIGHT_PYTHON` (a Python with `playwright` installed; set by
//! scripts/test.sh), else `<repo>/.venv/bin/python`; the browser through `DEPROVD_CHROMIUM`, else
//! `/usr/bin/chromium`. Screenshots and measurements land in `<target>/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::kit::connector::{Secrets, instance};
use crate::kit::fake::Fake;
use crate::kit::vendors::okta::okta_world;
use crate::kit::{DISABLE_ALL_POLICY, TestApp, policy_dir, venv_program};

const RESPONDER: &str = "resp-console-token";
const APPROVER: &str = "appr-console-token";
const VIEWER: &str = "view-console-token";
const ADMIN: &str = "admin-console-token";
const INGEST: &str = "ingest-console-token";

/// A Python with Playwright.
fn python() -> PathBuf {
    venv_program(
        "DEPROVD_PLAYWRIGHT_PYTHON",
        None,
        "python",
        "a Python with Playwright is needed: run scripts/test.sh, or `.venv/bin/pip install \
         playwright` and `apt-get install chromium`, or point DEPROVD_PLAYWRIGHT_PYTHON at one",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn responders_lock_out_approve_and_restore_in_a_real_browser() {
    let chromium = std::env::var("DEPROVD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} missing: `apt-get install chromium` (scripts/test.sh does)"
    );
    let python = python();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    let secrets = Secrets::new();
    let okta_token = "00TESTssws-token-value";
    let fake = Fake::start_with_static_auth(okta_world(), format!("SSWS {okta_token}")).await;
    let okta = instance(json!({
        "type": "okta",
        "base_url": fake.base(),
        "auth": {"scheme": "ssws", "token": secrets.file("okta-token", okta_token)},
    }));
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder()
        .policies(policies.path())
        .fast_executor()
        .connector("okta", okta)
        .named_token("rita", "responder", RESPONDER)
        .named_token("avery", "approver", APPROVER)
        .named_token("vic", "viewer", VIEWER)
        .named_token("ada", "admin", ADMIN)
        .named_token("siem", "ingest", INGEST)
        .with(|s| s.guards.breaker.enabled = true)
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;

    // An attacker-written alert: its title and subject carry markup. Low severity: nothing acts.
    let hostile_subject = "x<img src=x onerror=alert(7)>@evil.example";
    let hostile = json!({
        "id": "xss-probe-1",
        "source": {"vendor": "test"},
        "time": chrono::Utc::now().to_rfc3339(),
        "severity": "low",
        "category": "probe",
        "title": "<script>alert('title')</script><img src=x onerror=alert(8)>",
        "subjects": [{"email": hostile_subject}],
    });
    let r = app
        .http
        .post(app.url("/v1/alerts"))
        .bearer_auth(INGEST)
        .json(&hostile)
        .send()
        .await
        .expect("post alert");
    assert!(
        r.status().is_success(),
        "hostile alert refused: {}",
        r.status()
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/console/e2e.py");
    let base = app.url("");
    let run = tokio::task::spawn_blocking({
        let shots = shots.clone();
        move || {
            std::process::Command::new(python)
                .arg(script)
                .env("CONSOLE_URL", base.trim_end_matches('/'))
                .env("CHROMIUM", chromium)
                .env("SHOTS", &shots)
                .env("RESPONDER_TOKEN", RESPONDER)
                .env("APPROVER_TOKEN", APPROVER)
                .env("VIEWER_TOKEN", VIEWER)
                .env("ADMIN_TOKEN", ADMIN)
                .env("HOSTILE_SUBJECT", hostile_subject)
                .output()
                .expect("run e2e.py")
        }
    })
    .await
    .expect("e2e task");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "browser run failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    // The target saw the lockouts and the restore: bob stays suspended, alice is back to ACTIVE.
    let calls = fake.calls();
    let suspend = |id: &str| {
        calls
            .iter()
            .any(|c| c.contains(id) && c.contains("lifecycle/suspend"))
    };
    assert!(suspend("00u2bob"), "bob was never suspended: {calls:?}");
    assert!(suspend("00u1alice"), "alice was never suspended: {calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c.contains("00u1alice") && c.contains("lifecycle/unsuspend")),
        "alice was never unsuspended: {calls:?}"
    );
    let status = |id: &str| fake.vendor(|o| o.users[id].status.clone());
    assert_eq!(status("00u2bob"), "SUSPENDED");
    assert_eq!(
        status("00u1alice"),
        "ACTIVE",
        "restore did not bring alice back"
    );

    // Console sign-ins and actions are in the trail like API calls, with who and via.
    let audit: Value = app
        .http
        .get(app.url("/v1/audit?limit=1000"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit json");
    let records = audit["records"].as_array().expect("records");
    let via_console = |route: &str, who: &str| {
        records.iter().any(|r| {
            r["detail"]["via"] == "console"
                && r["detail"]["route"] == route
                && r["actor"]["name"] == who
        })
    };
    assert!(via_console("/console/signin", "rita"));
    assert!(via_console("/v1/lockouts", "rita"));
    assert!(via_console("/v1/approvals/{id}/approve", "avery"));
    assert!(via_console("/v1/lockouts/{id}/restore", "rita"));
    // The viewer's forged lockout was refused by the API's own rule, and recorded as such.
    assert!(records.iter().any(|r| {
        r["detail"]["via"] == "console"
            && r["detail"]["route"] == "/v1/lockouts"
            && r["actor"]["name"] == "vic"
            && r["detail"]["status"] == 403
    }));
    // Nothing was locked out by the cross-origin attempts: two lockouts (bob, alice) in all.
    let manual: Vec<&Value> = records
        .iter()
        .filter(|r| r["detail"]["route"] == "/v1/lockouts" && r["detail"]["status"] == 202)
        .collect();
    assert_eq!(manual.len(), 2, "{manual:?}");
    app.stop().await;
}
