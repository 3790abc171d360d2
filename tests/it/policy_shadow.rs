//! Shadow mode and alert retention in the running service: a candidate bundle evaluated beside the
//! live one is compared, counted and shown by `GET /v1/policy/shadow`, never executed; decided
//! alerts are kept in the store for `policy diff --since`.

use std::time::Duration;

use crate::kit::{DISABLE_ALL_POLICY, TestApp, alert_json, eventually, policy_dir};

/// The live policy's decision, held for approval instead of enforced.
const APPROVAL_POLICY: &str = r#"package deprovd

import rego.v1

decisions contains d if {
    input.alert.severity in {"high", "critical"}
    some s in input.alert.subjects
    d := {"action": "disable_account", "subject": s.email, "mode": "approval", "rule": "shadow.hold"}
}
"#;

#[tokio::test]
async fn shadow_disagreements_are_counted_and_shown_and_alerts_are_retained() {
    let data = tempfile::tempdir().unwrap();
    let live = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let shadow = policy_dir(&[("p.rego", APPROVAL_POLICY)]);
    let shadow_dir = shadow.path().to_path_buf();
    let app = TestApp::builder()
        .data_dir(data.path())
        .policies(live.path())
        .with(move |s| {
            s.policy.shadow_dir = Some(shadow_dir);
            s.policy.retain_alerts = Some(Duration::from_secs(3600));
        })
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;
    // Exported at zero from the start.
    assert_eq!(
        app.metric("deprovd_shadow_disagreements_total{kind=\"mode_changed\"}")
            .await,
        Some(0.0)
    );
    let (status, body) = app
        .post_alert(&alert_json("shadow-1", "jdoe@example.com"))
        .await;
    assert_eq!(status, 202, "{body}");
    // The live bundle's decision only: the shadow's never reaches the ledger.
    let decided: Vec<&str> = body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rule"].as_str().unwrap())
        .collect();
    assert_eq!(decided, ["test.disable_high"], "{body}");

    let report = app.get_json("/v1/policy/shadow").await;
    assert_eq!(report["evaluated"], 1, "{report}");
    assert_eq!(report["disagreeing_alerts"], 1, "{report}");
    assert_eq!(report["counts"]["mode_changed"], 1, "{report}");
    assert_eq!(report["counts"]["newly_contained"], 0, "{report}");
    let d = &report["recent"][0];
    assert_eq!(d["alert_id"], "shadow-1");
    assert_eq!(d["subject"], "jdoe@example.com");
    assert_eq!(d["action"], "disable_account");
    assert_eq!(d["kind"], "mode_changed");
    assert_eq!(d["detail"], "enforce → approval");
    assert_eq!(d["rules"][0], "shadow.hold");
    assert_ne!(report["live_digest"], report["shadow_digest"]);
    assert_eq!(
        app.metric("deprovd_shadow_disagreements_total{kind=\"mode_changed\"}")
            .await,
        Some(1.0)
    );
    assert!(
        app.actions("")
            .await
            .iter()
            .all(|a| a["rule"] != "shadow.hold"),
        "the shadow bundle is never executed"
    );

    // Stopping writes what the retention queue holds; the alert is then in the store.
    app.stop().await;
    let store = deprovd::StoreConfig {
        backend: deprovd::StoreBackend::Embedded,
        path: data.path().join("ledger"),
        ..Default::default()
    }
    .open()
    .await
    .unwrap();
    let kept = eventually(Duration::from_secs(5), "alert retained", || async {
        let page = store
            .retained_alerts(chrono::Utc::now() - chrono::TimeDelta::hours(1), None, 10)
            .await
            .ok()?;
        (!page.is_empty()).then_some(page)
    })
    .await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].alert.id, "shadow-1");
    assert_eq!(
        kept[0].alert.subjects[0].email.as_deref(),
        Some("jdoe@example.com")
    );
    drop(store);

    // `policy diff --since` replays the retained alert through the live bundle and the candidate.
    let config = data.path().join("deprovd.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nbackend = \"embedded\"\npath = {:?}\n[policy]\ndir = {:?}\nretain_alerts = \"1h\"\n",
            data.path().join("ledger"),
            live.path()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovd"))
        .args([
            "policy", "diff", "--since", "1h", "--format", "json", "--config",
        ])
        .arg(&config)
        .arg("--candidate")
        .arg(shadow.path())
        .env_remove("DEPROVD_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["alerts"], 1, "{report}");
    assert_eq!(report["counts"]["mode_changed"], 1, "{report}");
    assert_eq!(report["changes"][0]["alerts"][0], "shadow-1", "{report}");
}

#[tokio::test]
async fn without_a_shadow_the_route_says_so() {
    let live = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder().policies(live.path()).spawn().await;
    app.wait_ready(Duration::from_secs(15)).await;
    let resp = reqwest::Client::new()
        .get(app.url("/v1/policy/shadow"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}
