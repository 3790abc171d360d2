//! A broken policy change picked up by the file watcher (not SIGHUP) is rejected, counted and
//! written to the audit trail, and the previous bundle keeps serving; the fixed change that follows
//! is taken, counted as `outcome="ok"` and audited.

use std::time::Duration;

use deprovd::AuditKind;
use serde_json::json;

use crate::kit::{DISABLE_ALL_POLICY, TestApp, eventually, policy_dir, unique};

#[tokio::test]
async fn a_broken_bundle_rejected_by_the_watcher_is_audited() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let prefix = format!("{}:", unique("deprovd-watch"));
    let app = TestApp::builder()
        .data_dir(data.path())
        .policies(policies.path())
        .watch_policies()
        .redis_prefix(&prefix)
        .spawn()
        .await;
    let store = deprovd::StoreConfig {
        backend: deprovd::StoreBackend::Redis,
        redis: deprovd::RedisConfig::single("redis://127.0.0.1:6379/0", &prefix),
        ..Default::default()
    }
    .open()
    .await
    .unwrap();
    // Both outcomes exist from the start, at zero.
    for outcome in ["ok", "rejected"] {
        assert_eq!(
            app.metric(&format!(
                "deprovd_policy_reloads_total{{outcome=\"{outcome}\"}}"
            ))
            .await,
            Some(0.0),
            "{outcome}"
        );
    }
    // The startup record carries the serving digest.
    let started = eventually(Duration::from_secs(15), "startup audited", || async {
        let t = store.audit_range(1, 0).await.ok()?;
        t.into_iter().find(|r| r.kind == AuditKind::Config)
    })
    .await;

    std::fs::write(
        policies.path().join("p.rego"),
        "package deprovd\ndecisions contains {\n",
    )
    .unwrap();

    let rejected = eventually(Duration::from_secs(15), "rejection audited", || async {
        let t = store.audit_range(1, 0).await.ok()?;
        t.into_iter()
            .find(|r| r.kind == AuditKind::PolicyReload && r.detail["outcome"] == "rejected")
    })
    .await;
    assert_eq!(rejected.actor.name, "policy-watcher");
    assert!(
        rejected.detail["error"]
            .as_str()
            .is_some_and(|e| e.contains("p.rego")),
        "names the broken file: {}",
        rejected.detail
    );
    assert_ne!(
        rejected.detail["rejected_digest"].as_str(),
        started.policy_digest.as_deref(),
        "the refused bundle's digest"
    );
    assert_eq!(
        rejected.policy_digest, started.policy_digest,
        "the previous bundle keeps serving"
    );
    assert_eq!(
        app.metric("deprovd_policy_reloads_total{outcome=\"rejected\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.metric("deprovd_policy_reloads_total{outcome=\"ok\"}")
            .await,
        Some(0.0),
        "a refused change is no reload"
    );

    // A fixed change is taken by the watcher alone (no SIGHUP), counted and audited.
    std::fs::write(
        policies.path().join("p.rego"),
        DISABLE_ALL_POLICY.replace("test.disable_high", "test.fixed"),
    )
    .unwrap();
    eventually(Duration::from_secs(15), "the fix counted as ok", || async {
        app.metric("deprovd_policy_reloads_total{outcome=\"ok\"}")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    let reloaded = eventually(Duration::from_secs(15), "the reload audited", || async {
        let t = store.audit_range(1, 0).await.ok()?;
        t.into_iter()
            .find(|r| r.kind == AuditKind::PolicyReload && r.detail["outcome"] == "ok")
    })
    .await;
    assert_eq!(reloaded.detail["previous"], json!(started.policy_digest));
    assert_ne!(reloaded.policy_digest, started.policy_digest);
    app.stop().await;
}
