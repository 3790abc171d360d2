//! The real `deprovd` binary as a process: crash (SIGKILL) and restart, SIGHUP policy reload, and the
//! CLI commands a newcomer runs (`policy test`, `simulate`, `validate`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::kit::kafka::{brokers, committed, create_topics, produce};
use crate::kit::{
    CountingProxy, DISABLE_ALL_POLICY, alert_json, eventually, metric_value, policy_dir, unique,
    until_ok,
};
use crate::scim_server::{ScimServer, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_deprovd");

/// The `[connectors.scim]` table of a config file for the process: the real SCIM server through
/// `proxy`. (These tests start the binary, so its config is a file, not typed settings.)
fn scim_connector(proxy: &CountingProxy, scim: &ScimServer) -> String {
    format!(
        "[connectors.scim]\ntype = \"scim\"\nbase_url = \"{}/v2\"\nauth = {{ scheme = \"bearer\", token = \"file:{}\" }}\n",
        proxy.url(),
        scim.secrets.path().join("token").display()
    )
}

/// A running `deprovd run`; SIGKILLed on drop unless stopped.
struct Proc {
    child: Child,
    port: u16,
    token: String,
    http: reqwest::Client,
}

impl Proc {
    /// Start with `config` (its `[api] listen` is set here) and wait until `/healthz` answers.
    async fn start(config_dir: &Path, config: &str) -> Proc {
        let port = free_port();
        let text = format!("{config}\n[api]\nlisten = \"127.0.0.1:{port}\"\n");
        let path = config_dir.join("deprovd.toml");
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .current_dir(config_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start deprovd");
        let stdout = child.stdout.take().unwrap();
        let token = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line.rsplit(' ').next().unwrap().trim().to_string()
        })
        .await
        .unwrap();
        assert!(
            token.starts_with("dpv_"),
            "dev token printed once at start, got {token:?}"
        );
        let p = Proc {
            child,
            port,
            token,
            http: reqwest::Client::new(),
        };
        until_ok(&p.url("/healthz"), "deprovd answers /healthz").await;
        p
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metric_value(&text, series)
    }

    async fn post_alert(&self, body: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url("/v1/alerts"))
            .bearer_auth(&self.token)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    async fn ready(&self) -> bool {
        self.http
            .get(self.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no cleanup, no final commit
        self.child.wait().unwrap();
    }

    async fn terminate(mut self) {
        self.signal("TERM");
        let status = tokio::task::spawn_blocking(move || self.child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "clean exit on SIGTERM: {status}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base_config(data: &Path, policies: &Path, rest: &str) -> String {
    format!(
        "data_dir = \"{d}\"\n{rest}\n[state]\nbackend = \"embedded\"\npath = \"{d}\"\n[policy]\ndir = \"{}\"\nwatch = false\n[executor]\npoll_interval = \"50ms\"\nclaim_ttl = \"5s\"\n",
        policies.display(),
        d = data.display()
    )
}

#[tokio::test]
async fn killed_after_the_ledger_write_and_before_the_call_completes_once_after_restart() {
    let scim = ScimServer::start().await;
    let proxy = CountingProxy::start(scim.base.trim_end_matches("/v2").to_string()).await;
    let email = format!("{}@corp.example", unique("dave"));
    let user_id = scim.create_user(&email, &email).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let connector = scim_connector(&proxy, &scim);

    // Run 1 records the action (202 = in the ledger) but has no executor: it dies before any call.
    let no_executor = base_config(dir.path(), policies.path(), &connector)
        .replace("[executor]\n", "[executor]\nenabled = false\n");
    let p1 = Proc::start(dir.path(), &no_executor).await;
    eventually(Duration::from_secs(20), "ready", || async {
        p1.ready().await.then_some(())
    })
    .await;
    let (status, body) = p1.post_alert(&alert_json(&unique("a"), &email)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["actions"][0]["state"], "planned");
    p1.kill9();
    assert_eq!(
        proxy.count("PATCH", "/v2/Users"),
        0,
        "nothing was called before the crash"
    );

    // Run 2 finds the planned action in the embedded ledger and completes it exactly once.
    let p2 = Proc::start(
        dir.path(),
        &base_config(dir.path(), policies.path(), &connector),
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the user is disabled after restart",
        || async { (scim.user(&user_id).await["active"] == false).then_some(()) },
    )
    .await;
    eventually(Duration::from_secs(10), "the action is counted", || async {
        p2.metric("deprovd_actions_total{connector=\"scim\",operation=\"disable_account\",outcome=\"succeeded\"}")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(proxy.count("PATCH", "/v2/Users"), 1);
    p2.terminate().await;
}

#[tokio::test]
async fn consumer_restarted_before_committing_does_not_act_twice() {
    let scim = ScimServer::start().await;
    let proxy = CountingProxy::start(scim.base.trim_end_matches("/v2").to_string()).await;
    let email = format!("{}@corp.example", unique("erin"));
    let user_id = scim.create_user(&email, &email).await;
    let (topic, group) = (unique("alerts"), unique("deprovd"));
    create_topics(&[&topic, &format!("{topic}.dlq")]).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    // Offsets are stored at once but committed only every 10 minutes, or on a clean shutdown.
    let kafka = format!(
        "[kafka]\nbrokers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\nproperties = {{ \"fetch.wait.max.ms\" = \"5\", \"auto.commit.interval.ms\" = \"600000\", \"session.timeout.ms\" = \"6000\", \"heartbeat.interval.ms\" = \"1000\" }}\n",
        brokers()
    );
    let config = base_config(
        dir.path(),
        policies.path(),
        &format!("{kafka}{}", scim_connector(&proxy, &scim)),
    );

    let p1 = Proc::start(dir.path(), &config).await;
    produce(&topic, alert_json(&unique("a"), &email).as_bytes()).await;
    eventually(Duration::from_secs(30), "the user is disabled", || async {
        (scim.user(&user_id).await["active"] == false).then_some(())
    })
    .await;
    p1.kill9();
    assert_eq!(committed(&group, &topic), None, "killed before committing");

    let p2 = Proc::start(dir.path(), &config).await;
    eventually(
        Duration::from_secs(30),
        "the redelivered alert is processed",
        || async {
            p2.metric("deprovd_alerts_total{outcome=\"accepted\",source=\"generic\"}")
                .await
                .filter(|v| *v == 1.0)
        },
    )
    .await;
    p2.terminate().await;
    assert_eq!(
        committed(&group, &topic),
        Some(1),
        "committed on clean shutdown"
    );
    assert_eq!(
        proxy.count("PATCH", "/v2/Users"),
        1,
        "exactly one PATCH across the restart"
    );
}

#[tokio::test]
async fn a_broken_policy_on_sighup_is_rejected_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let target = crate::kit::Target::start().await;
    target.always("POST", "/good", crate::kit::Reply::status(204));
    let connector = format!(
        "[connectors.good]\ntype = \"webhook\"\nbase_url = \"{}\"\nauth = {{ scheme = \"none\" }}\nvars = {{ path = \"good\" }}\noperations = {:?}\n",
        target.url(),
        crate::kit::connector::WEBHOOK_OPERATIONS
    );
    let p = Proc::start(
        dir.path(),
        &base_config(dir.path(), policies.path(), &connector),
    )
    .await;
    eventually(Duration::from_secs(20), "ready", || async {
        p.ready().await.then_some(())
    })
    .await;

    std::fs::write(
        policies.path().join("broken.rego"),
        "package deprovd\n\ndecisions contains d if {\n",
    )
    .unwrap();
    p.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the reload is rejected",
        || async {
            p.metric("deprovd_policy_reloads_total{outcome=\"rejected\"}")
                .await
                .filter(|v| *v == 1.0)
        },
    )
    .await;
    let (status, body) = p
        .post_alert(&alert_json(&unique("a"), "frank@corp.example"))
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        body["decisions"][0]["rule"], "test.disable_high",
        "old policy still decides: {body}"
    );

    // A fixed bundle is taken on the next SIGHUP.
    std::fs::remove_file(policies.path().join("broken.rego")).unwrap();
    std::fs::write(
        policies.path().join("p.rego"),
        DISABLE_ALL_POLICY.replace("test.disable_high", "test.renamed"),
    )
    .unwrap();
    p.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the fixed bundle loads",
        || async {
            p.metric("deprovd_policy_reloads_total{outcome=\"ok\"}")
                .await
                .filter(|v| *v >= 1.0)
        },
    )
    .await;
    let (_, body) = p
        .post_alert(&alert_json(&unique("a"), "frank@corp.example"))
        .await;
    assert_eq!(body["decisions"][0]["rule"], "test.renamed", "{body}");
    p.terminate().await;
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_policies_pass_their_tests() {
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(repo().join("policies"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "policy test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("PASS"), "{stdout}");
}

#[test]
fn failing_policy_tests_exit_one() {
    let dir = policy_dir(&[
        ("p.rego", DISABLE_ALL_POLICY),
        (
            "p_test.rego",
            "package deprovd_test\n\nimport rego.v1\n\ntest_nothing_decided if {\n    count(data.deprovd.decisions) == 1 with input as {\"alert\": {\"severity\": \"low\", \"subjects\": []}}\n}\n",
        ),
    ]);
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
}

#[test]
fn simulate_prints_the_expected_actions_for_the_shipped_samples() {
    let samples = repo().join("policies/samples/alerts.jsonl");
    let out = Command::new(BIN)
        .args(["simulate", "--alerts"])
        .arg(&samples)
        .args(["--policies"])
        .arg(repo().join("policies"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let inputs = std::fs::read_to_string(&samples).unwrap();
    let expected: Vec<serde_json::Value> =
        std::fs::read_to_string(repo().join("policies/samples/expected.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(
        lines.len(),
        inputs
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count()
    );
    assert_eq!(lines.len(), expected.len());
    for (got, want) in lines.iter().zip(&expected) {
        assert!(got["alert"]["id"].is_string(), "{got}");
        let mut got_d: Vec<String> = got["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{}:{}:{}", d["action"], d["subject"], d["mode"]))
            .collect();
        got_d.sort();
        let mut want_d: Vec<String> = want["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{}:{}:{}", d["action"], d["subject"], d["mode"]))
            .collect();
        want_d.sort();
        assert_eq!(got_d, want_d, "decisions for {}", got["alert"]["id"]);
        assert!(got["actions"].is_array());
    }
}

/// `deprovd validate` on a config file holding `toml`: its exit code and what it printed to stderr.
fn validate(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deprovd.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_lists_every_problem_with_its_path() {
    let (code, err) = validate(
        "[api]\nlisten = \"everywhere\"\n[executor]\nbatch = 0\n[connectors.okta]\ntype = \"nope\"\nbase_url = \"x\"\nauth = { scheme = \"bearer\", token = \"env:T\" }\n",
    );
    assert_eq!(code, Some(2));
    for want in ["api.listen", "executor.batch", "connectors.okta"] {
        assert!(err.contains(want), "missing {want}:\n{err}");
    }
    assert!(!err.contains("T="), "no secret values printed");
}

#[test]
fn validate_warns_about_relaxed_redis_durability_but_accepts_it() {
    let policies = repo().join("policies");
    let (code, err) = validate(&format!(
        "[state]\nbackend = \"redis\"\n[policy]\ndir = \"{}\"\n",
        policies.display()
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: state.redis.durability: is \"relaxed\""),
        "{err}"
    );
    let (code, err) = validate(&format!(
        "[state]\nbackend = \"redis\"\n[state.redis]\ndurability = \"aof\"\n[policy]\ndir = \"{}\"\n",
        policies.display()
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
}
