//! The operator's tools as a new user meets them (issue 12): the binary alone starts anywhere on its
//! embedded policies (`run --dev`, `policy init`); `validate` and `simulate` are truthful gates; a
//! startup that cannot complete exits non-zero with its cause; and the responder CLI finds actions,
//! lockouts, the breaker and the trail by short ids.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::kit::connector::webhook;
use crate::kit::{
    DISABLE_ALL_POLICY, Reply, Target, TestApp, deprovd, eventually, policy_dir, unique, until_ok,
};

const BIN: &str = env!("CARGO_BIN_EXE_deprovd");

/// `deprovd` with no inherited config, client or dev-token environment.
fn bare() -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "DEPROVD_CONFIG",
        "DEPROVD_URL",
        "DEPROVD_TOKEN",
        "DEPROVD_DEV_TOKEN",
    ] {
        c.env_remove(var);
    }
    c
}

fn run_to_end(mut c: Command, stdin: Option<&str>) -> (i32, String, String) {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start deprovd");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn run_dev_from_an_empty_directory_serves_the_embedded_policies_and_prints_an_export() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = bare()
        .args(["run", "--dev", "--listen", "127.0.0.1:0"])
        .env("DEPROVD_DEV_TOKEN", "dpv_stable_dev_token_for_tests")
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("export DEPROVD_URL=");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    let export = banner.last().expect("banner").trim().to_string();
    assert!(
        banner
            .iter()
            .any(|l| l.contains("embedded starter policies")),
        "{banner:?}"
    );
    // export DEPROVD_URL=http://127.0.0.1:PORT DEPROVD_TOKEN=dpv_…
    let url = export
        .split_whitespace()
        .find_map(|w| w.strip_prefix("DEPROVD_URL="))
        .unwrap()
        .to_string();
    let token = export
        .split_whitespace()
        .find_map(|w| w.strip_prefix("DEPROVD_TOKEN="))
        .unwrap()
        .to_string();
    assert_eq!(token, "dpv_stable_dev_token_for_tests");
    let http = reqwest::Client::new();
    until_ok(&format!("{url}/readyz"), "dev server ready").await;
    // The starter policies decide: critical credential theft → disable + revoke.
    let alert = serde_json::json!({
        "id": unique("dev"), "source": "crowdstrike", "time": "2026-11-26T10:00:00Z",
        "severity": "critical", "category": "credential_theft", "title": "Credential dumping",
        "subjects": ["jdoe@corp.example"]
    });
    let r = http
        .post(format!("{url}/v1/alerts"))
        .bearer_auth(&token)
        .json(&alert)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let body: Value = r.json().await.unwrap();
    let rules: Vec<&str> = body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["rule"].as_str())
        .collect();
    assert!(rules.contains(&"credential_theft.contain"), "{body}");
    // The CLI works with exactly what the banner exported.
    let (code, out, err) = deprovd(
        vec!["actions".into(), "list".into()],
        vec![
            ("DEPROVD_URL", url.clone()),
            ("DEPROVD_TOKEN", token.clone()),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("no actions match") || out.contains("ACTION"),
        "{out}"
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "clean exit: {status}");
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "dev mode leaves nothing in the working directory"
    );
}

#[test]
fn a_missing_policy_directory_is_named_as_a_directory_and_startup_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[policy]\ndir = \"{d}/nope\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut c = bare();
    c.args(["run", "--config"]).arg(&config);
    let (code, _, err) = run_to_end(c, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("policy directory"), "{err}");
    assert!(err.contains("deprovd policy init"), "{err}");
    assert!(
        !err.contains("No such file"),
        "the OS error is not repeated: {err}"
    );
}

#[test]
fn a_startup_that_cannot_complete_exits_non_zero_with_its_cause() {
    // The listener's port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cwd = tempfile::tempdir().unwrap();
    let mut c = bare();
    c.args(["run", "--dev", "--listen", &addr])
        .current_dir(cwd.path());
    let (code, _, err) = run_to_end(c, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("binding {addr}")), "{err}");

    // Protected groups with no connector that can list groups: refused before anything listens.
    let config = cwd.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[guards]\nprotected_groups = [\"Break-Glass\"]\n\
             [connectors.hook]\ntype = \"webhook\"\nbase_url = \"http://127.0.0.1:9\"\nauth = {{ scheme = \"none\" }}\n",
            d = cwd.path().display()
        ),
    )
    .unwrap();
    let mut c = bare();
    c.args(["run", "--config"]).arg(&config);
    let (code, _, err) = run_to_end(c, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("protected_groups"), "{err}");
}

#[test]
fn policy_init_writes_the_starter_set_which_tests_green_and_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("policies");
    let mut c = bare();
    c.args(["policy", "init"]).arg(&target);
    let (code, out, err) = run_to_end(c, None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deprovd.rego"), "{out}");
    let mut c = bare();
    c.args(["policy", "test"]).arg(&target);
    let (code, out, err) = run_to_end(c, None);
    assert_eq!(code, 0, "{out}{err}");
    let mut c = bare();
    c.args(["policy", "init"]).arg(&target);
    let (code, _, err) = run_to_end(c, None);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
}

#[test]
fn validate_lists_every_problem_at_once_and_blames_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "colesce_window = \"1m\"\n[api]\nlisten_addr = \"x\"\n[guards]\nprotected_groups = [\"Admins\"]\n\
         [connectors.hook]\ntype = \"webhook\"\nbase_url = \"https://hooks.example\"\n\
         auth = { scheme = \"hmac\", secret = \"env:DEPROVD_IT_UNSET_HOOK_SECRET\" }\n",
    )
    .unwrap();
    let mut c = bare();
    c.args(["validate", "--config"])
        .arg(&config)
        .env("DEPROVD__EXECUTOR__BATCH", "lots");
    let (code, _, err) = run_to_end(c, None);
    assert_eq!(code, 2, "{err}");
    for want in [
        "colesce_window",
        "api.listen_addr",
        "executor.batch",
        "DEPROVD__EXECUTOR__BATCH",
    ] {
        assert!(err.contains(want), "missing {want}:\n{err}");
    }
    // With the parse fixed, the deeper problems all show in one run.
    std::fs::write(
        &config,
        "[guards]\nprotected_groups = [\"Admins\"]\n\
         [connectors.hook]\ntype = \"webhook\"\nbase_url = \"https://hooks.example\"\n\
         auth = { scheme = \"hmac\", secret = \"env:DEPROVD_IT_UNSET_HOOK_SECRET\" }\n",
    )
    .unwrap();
    let mut c = bare();
    c.args(["validate", "--config"]).arg(&config);
    let (code, _, err) = run_to_end(c, None);
    assert_eq!(code, 2, "{err}");
    for want in ["DEPROVD_IT_UNSET_HOOK_SECRET", "guards.protected_groups"] {
        assert!(err.contains(want), "missing {want}:\n{err}");
    }
    // No config: the dev setup, which is valid anywhere.
    let mut c = bare();
    c.arg("validate").current_dir(dir.path());
    let (code, out, err) = run_to_end(c, None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn simulate_reads_stdin_and_exits_one_when_a_line_is_not_an_alert() {
    let good = crate::kit::alert_json("sim-1", "ann@corp.example");
    let input = format!("{good}\nthis is not json\n");
    let mut c = bare();
    c.args(["simulate", "--alerts", "-"]);
    let (code, out, err) = run_to_end(c, Some(&input));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.lines().count(), 2, "one answer per line: {out}");
    assert!(err.contains("--allow-problems"), "{err}");
    let mut c = bare();
    c.args(["simulate", "--alerts", "-", "--allow-problems"]);
    let (code, _, err) = run_to_end(c, Some(&input));
    assert_eq!(code, 0, "{err}");
    let mut c = bare();
    c.args(["simulate", "--alerts", "-"]);
    let (code, _, err) = run_to_end(c, Some(&format!("{good}\n")));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn completions_and_the_man_page_know_every_command() {
    let (code, out, _) = run_to_end(
        {
            let mut c = bare();
            c.args(["completions", "bash"]);
            c
        },
        None,
    );
    assert_eq!(code, 0);
    for cmd in ["lockouts", "actions", "breaker", "policy", "completions"] {
        assert!(out.contains(cmd), "bash completion lacks {cmd}");
    }
    let (code, out, _) = run_to_end(
        {
            let mut c = bare();
            c.arg("man");
            c
        },
        None,
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie") || out.contains(".TH deprovd"),
        "roff: {}",
        &out[..80.min(out.len())]
    );
    assert!(
        out.contains("DEPROVD ACTIONS RETRY"),
        "subcommands are documented"
    );
}

#[tokio::test]
async fn responders_find_and_fix_things_by_short_ids_from_the_cli() {
    let target = Target::start().await;
    // Every call fails: the lockout's action ends `failed`, to be retried.
    target.always("POST", "/hook", Reply::status(500));
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let app = TestApp::builder()
        .policies(policies.path())
        .fast_executor()
        .connector("hook", webhook("hook", &target.url()))
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(15)).await;
    let env = vec![
        ("DEPROVD_URL", app.url("")),
        ("DEPROVD_TOKEN", app.token.clone()),
    ];
    let cli = |args: &[&str]| deprovd(args.iter().map(|s| s.to_string()).collect(), env.clone());

    let subject = format!("{}@corp.example", unique("ivy"));
    let id = app.disable_via_lockout(&subject, "hook").await;
    let failed = eventually(Duration::from_secs(20), "the action fails", || async {
        let a = app
            .actions(&format!("subject={subject}&state=failed"))
            .await;
        a.first().cloned()
    })
    .await;
    let key = failed["key"].as_str().unwrap().to_string();

    // Lockouts: listed, and found again by the first 8 characters of the id.
    let (code, out, err) = cli(&["lockouts"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id) && out.contains(&subject), "{out}");
    let (code, out, err) = cli(&["status", &id[..8]]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("lockout  {id}")), "{out}");
    let (code, out, _) = cli(&["lockouts", "--format", "json"]).await;
    assert_eq!(code, 0);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert!(
        page["lockouts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == id.as_str())
    );

    // Actions: the table's 12-character key works everywhere a key is taken.
    let (code, out, err) = cli(&[
        "actions",
        "list",
        "--state",
        "failed",
        "--connector",
        "hook",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&key[..12]), "{out}");
    let (code, out, err) = cli(&["actions", "show", &key[..12]]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&key) && out.contains("failed"), "{out}");

    // A retry plans it again with a fresh budget (the target now answers).
    target.always("POST", "/hook", Reply::status(204));
    let (code, out, err) = cli(&["actions", "retry", &key[..12]]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("retry planned"), "{out}");
    eventually(
        Duration::from_secs(20),
        "the retried action succeeds",
        || async {
            let a = app.get_json(&format!("/v1/actions/{key}")).await;
            (a["state"] == "succeeded").then_some(())
        },
    )
    .await;
    let (code, _, err) = cli(&["actions", "retry", &key]).await;
    assert_eq!(code, 1, "a succeeded action is not retried");
    assert!(err.contains("only a failed action"), "{err}");

    // A prefix nothing has, and one that everything has.
    let (code, _, err) = cli(&["actions", "show", "ffffffffffff0"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no action id starts with"), "{err}");
    let second = app
        .disable_via_lockout(&format!("{}@corp.example", unique("jon")), "hook")
        .await;
    let common: String = id
        .chars()
        .zip(second.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    if !common.is_empty() {
        let (code, _, err) = cli(&["status", &common]).await;
        assert_eq!(code, 1);
        assert!(err.contains("ambiguous"), "{err}");
    }

    // Breaker and audit.
    let (code, out, err) = cli(&["breaker"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("global") && out.contains("closed"), "{out}");
    let (code, out, err) = cli(&["breaker", "reset"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing was open"), "{out}");
    let (code, out, err) = cli(&["audit", "tail", "--subject", &subject]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("retry_requested"), "{out}");

    // Every call above is counted by its route template, never by the raw path (every route's
    // series exist from the start at zero: these ones have counted).
    let metrics = app.metrics().await;
    let http: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("deprovd_http_requests_total{"))
        .collect();
    let counted = |l: &&&str| !l.ends_with(" 0");
    assert!(
        http.iter()
            .filter(counted)
            .any(|l| l.contains("route=\"/v1/lockouts\"") && l.contains("status=\"200\"")),
        "{http:#?}"
    );
    assert!(
        http.iter()
            .filter(counted)
            .any(|l| l.contains("route=\"/v1/actions/{key}/retry\"")),
        "{http:#?}"
    );
    assert!(
        http.iter()
            .any(|l| l.contains("route=\"/v1/breaker/reset\"")
                && l.contains("status=\"500\"")
                && l.ends_with(" 0")),
        "the series to alert on exists at zero: {http:#?}"
    );
    assert!(
        !http.iter().any(|l| l.contains(&key)),
        "no raw path becomes a label: {http:#?}"
    );
    assert!(metrics.contains("deprovd_http_request_duration_seconds_bucket{"));
    app.stop().await;
}
