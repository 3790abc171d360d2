//! The audit trail end to end: alerts posted over HTTP and actions run by the executor against a
//! scripted target leave a hash-chained trail in Redis; `GET /v1/audit` filters it; and editing,
//! deleting, swapping or cutting off records directly in Redis is caught by `verify` (library and
//! the `deprovd audit verify` command), naming the first bad record each time.

use std::time::Duration;

use deprovd::{AuditRecord, Settings, Tamper};

use crate::kit::connector::webhook;
use crate::kit::{
    DISABLE_ALL_POLICY, Reply, Target, TestApp, alert_json, eventually, policy_dir, unique,
};

/// The config file `deprovd audit verify` reads: the ledger in Redis under `prefix`.
fn cli_config(prefix: &str) -> String {
    format!(
        "[state]\nbackend = \"redis\"\n[state.redis]\nurl = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{prefix}\"\n"
    )
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open("redis://127.0.0.1:6379/0")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn cleanup(prefix: &str) {
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

async fn records(app: &TestApp, query: &str) -> Vec<serde_json::Value> {
    app.get_json(&format!("/v1/audit?{query}")).await["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether `target/debug/deprovd` is this tree's build. The target directory is shared by several
/// worktrees during development and another one's build may have replaced the binary between
/// `cargo` building it and this test running; then only the library half of the CLI is checked
/// (loudly). In a single checkout (CI, the merged tree) the binary is always checked.
fn binary_has_audit_verify() -> bool {
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_deprovd"))
        .args(["audit", "verify", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "WARNING: {} has no `audit verify` (replaced by another build in a shared target dir); \
             checking the CLI through the library only",
            env!("CARGO_BIN_EXE_deprovd")
        );
    }
    ok
}

/// Run `deprovd audit verify --config FILE` (exit code, output), or, when the binary is not this
/// tree's, the same function the binary calls, with its exit code and no output.
async fn cli_verify(config: &std::path::Path) -> (i32, String) {
    if !binary_has_audit_verify() {
        let settings = Settings::load(Some(config)).unwrap();
        let code = deprovd::cli::audit_verify(&settings, None).await;
        let code = [0u8, 1, 2]
            .into_iter()
            .find(|c| std::process::ExitCode::from(*c) == code)
            .map_or(-1, i32::from);
        return (code, String::new());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deprovd"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .env_remove("DEPROVD_CONFIG")
        .output()
        .expect("run deprovd");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_any_audit_record_in_redis_is_named_by_verify() {
    let prefix = format!("{}:", unique("deprovd-audit"));
    let outcome = tokio::spawn(scenario(prefix.clone())).await;
    cleanup(&prefix).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn scenario(prefix: String) {
    let target = Target::start().await;
    target.always("POST", "/wh", Reply::status(204));
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let toml = cli_config(&prefix);
    let config_file = data.path().join("deprovd.toml");
    std::fs::write(&config_file, &toml).unwrap();
    let app = TestApp::builder()
        .policies(policies.path())
        .quick_scan()
        .connector("wh", webhook("wh", &target.url()))
        .redis_prefix(&prefix)
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(10)).await;

    // Three alerts, each disabling one subject through the webhook target.
    let mut alerts = Vec::new();
    for _ in 0..3 {
        let id = unique("alert");
        let subject = format!("{}@corp.example", unique("mallory"));
        let (status, body) = app.post_alert(&alert_json(&id, &subject)).await;
        assert_eq!(status, 202, "{body}");
        let key = body["actions"][0]["key"].as_str().unwrap().to_string();
        alerts.push((id, subject, key, body["policy_digest"].clone()));
    }
    // The executor's `succeeded` record for every action.
    for (_, _, key, _) in &alerts {
        eventually(
            Duration::from_secs(10),
            "action succeeded in the trail",
            || async {
                records(&app, &format!("action_key={key}"))
                    .await
                    .iter()
                    .any(|r| r["kind"] == "action_state" && r["detail"]["state"] == "succeeded")
                    .then_some(())
            },
        )
        .await;
    }
    assert_eq!(target.count("POST", "/wh"), 3);

    // Filters: by alert (received + decision, with the policy digest and the API caller), by subject,
    // by time.
    let (id, subject, key, digest) = &alerts[1];
    let by_alert = records(&app, &format!("alert_id={id}")).await;
    let kinds: Vec<&str> = by_alert
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"alert_received") && kinds.contains(&"decision"),
        "{kinds:?}"
    );
    let decision = by_alert.iter().find(|r| r["kind"] == "decision").unwrap();
    assert_eq!(&decision["policy_digest"], digest);
    assert_eq!(
        decision["detail"]["decisions"][0]["action"],
        "disable_account"
    );
    assert_eq!(decision["detail"]["actions"][0]["key"], *key);
    let received = by_alert
        .iter()
        .find(|r| r["kind"] == "alert_received")
        .unwrap();
    assert_eq!(received["actor"]["name"], "generated-admin");
    assert_eq!(received["actor"]["role"], "admin");
    assert!(
        received["actor"]["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{received}"
    );
    let by_subject = records(&app, &format!("subject={subject}")).await;
    assert!(by_subject.iter().all(|r| r["subject"] == *subject));
    let states: Vec<&str> = by_subject
        .iter()
        .filter(|r| r["kind"] == "action_state")
        .map(|r| r["detail"]["state"].as_str().unwrap())
        .collect();
    // One record per attempt, with its outcome: `running` is the ledger's lease, not an event.
    assert_eq!(states, ["succeeded"], "newest first");
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let since = records(&app, &format!("since={}", urlencode(&future))).await;
    assert!(since.is_empty(), "{since:?}");
    // The audit reads themselves are audited.
    let calls = records(&app, "limit=1000").await;
    assert!(
        calls.iter().any(|r| r["kind"] == "api_call"
            && r["detail"]["path"] == "/v1/audit"
            && r["actor"]["role"] == "admin"),
        "no api_call record"
    );
    assert!(calls.iter().any(|r| r["kind"] == "config"));
    app.stop().await;

    // An intact trail verifies through the library and the command.
    let settings = Settings::from_toml(&toml, Vec::new()).unwrap();
    let store = settings.state.open().await.unwrap();
    let total = deprovd::cli::audit_check(store.as_ref(), None)
        .await
        .unwrap()
        .unwrap();
    // config + 3 × (received + decision + succeeded) + the API calls.
    assert!(total >= 10, "{total}");
    let (code, out) = cli_verify(&config_file).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.is_empty() || out.contains(&format!("{total} records verified")),
        "{out}"
    );

    let list = format!("{prefix}{{ledger}}:audit");
    let mut conn = redis().await;
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(&list)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw.len() as u64, total);
    let set = |i: usize, v: String| {
        let list = list.clone();
        async move {
            let mut conn = redis().await;
            let _: () = redis::cmd("LSET")
                .arg(&list)
                .arg(i)
                .arg(v)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    let check = |want_seq: u64, what: &'static str| {
        let store = store.clone();
        let config_file = config_file.clone();
        async move {
            let e = deprovd::cli::audit_check(store.as_ref(), None)
                .await
                .unwrap()
                .expect_err(what);
            assert_eq!(e.seq, want_seq, "{what}: {e}");
            let (code, out) = cli_verify(&config_file).await;
            assert_eq!(code, 1, "{what}: {out}");
            assert!(
                out.is_empty() || out.contains(&format!("audit record {want_seq} is bad")),
                "{what}: {out}"
            );
            e.tamper
        }
    };

    // Edit: change the detail of record 5 in place. Its batch's seal no longer matches: the batch
    // (from the record after the seal before it) is named.
    let parsed: Vec<AuditRecord> = raw
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    let batch_start = (1..5u64)
        .rev()
        .find(|&s| parsed[s as usize - 1].seals())
        .map_or(1, |s| s + 1);
    let mut edited = parsed[4].clone();
    edited.detail = serde_json::json!({"nothing": "to see"});
    set(4, serde_json::to_string(&edited).unwrap()).await;
    let t = check(batch_start, "edited record").await;
    assert!(
        matches!(t, Tamper::BatchEdited { last, .. } if last >= 5),
        "{t:?}"
    );
    set(4, raw[4].clone()).await;
    assert!(
        deprovd::cli::audit_check(store.as_ref(), None)
            .await
            .unwrap()
            .is_ok()
    );

    // Delete record 3.
    let _: i64 = redis::cmd("LREM")
        .arg(&list)
        .arg(1)
        .arg(&raw[2])
        .query_async(&mut conn)
        .await
        .unwrap();
    let t = check(3, "deleted record").await;
    assert_eq!(t, Tamper::Missing { found: 4 });
    let _: i64 = redis::cmd("LINSERT")
        .arg(&list)
        .arg("BEFORE")
        .arg(&raw[3])
        .arg(&raw[2])
        .query_async(&mut conn)
        .await
        .unwrap();

    // Swap records 7 and 8.
    set(6, raw[7].clone()).await;
    set(7, raw[6].clone()).await;
    let t = check(7, "swapped records").await;
    assert_eq!(t, Tamper::Missing { found: 8 });
    set(6, raw[6].clone()).await;
    set(7, raw[7].clone()).await;

    // Cut off the last record.
    let _: String = redis::cmd("RPOP")
        .arg(&list)
        .query_async(&mut conn)
        .await
        .unwrap();
    let t = check(total, "truncated trail").await;
    assert_eq!(
        t,
        Tamper::Truncated {
            last: total - 1,
            head: total
        }
    );
    let _: i64 = redis::cmd("RPUSH")
        .arg(&list)
        .arg(&raw[raw.len() - 1])
        .query_async(&mut conn)
        .await
        .unwrap();

    // Restored, it verifies again, also from a later record.
    assert_eq!(
        deprovd::cli::audit_check(store.as_ref(), Some(6))
            .await
            .unwrap(),
        Ok(total - 5)
    );
    let (code, out) = cli_verify(&config_file).await;
    assert_eq!(code, 0, "{out}");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
