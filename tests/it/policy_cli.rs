//! The `deprovd policy` commands as a policy author runs them: the built binary, real files, exit
//! codes. `test` as a CI gate, `check`, `eval` and `diff` (the worked example of docs/policies.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::kit::policy_dir;

const BIN: &str = env!("CARGO_BIN_EXE_deprovd");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deprovd(args: &[&str], dir: Option<&Path>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("DEPROVD_CONFIG")
        .current_dir(repo());
    if let Some(d) = dir {
        c.arg(d);
    }
    c.output().expect("run deprovd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A copy of the shipped bundle with `edit` applied to its data.yaml.
fn shipped_with(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["deprovd.rego", "deprovd_test.rego", "data.yaml"] {
        let body = std::fs::read_to_string(repo().join("policies").join(f)).unwrap();
        let body = if f == "data.yaml" { edit(&body) } else { body };
        std::fs::write(dir.path().join(f), body).unwrap();
    }
    dir
}

#[test]
fn policy_test_refuses_a_bundle_the_server_would_refuse() {
    let policy = std::fs::read_to_string(repo().join("policies/deprovd.rego"))
        .unwrap()
        .replacen(
            "d := decision(\"revoke_tokens\"",
            "d := decison(\"revoke_tokens\"",
            1,
        );
    let dir = shipped_with(|d| d.to_string());
    std::fs::write(dir.path().join("deprovd.rego"), policy).unwrap();
    let out = deprovd(&["policy", "test"], Some(dir.path()));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("COMPILE ERROR"), "{stdout}");
    assert!(stdout.contains("decison"), "{stdout}");
    assert!(!stdout.contains("PASS:"), "no test runs: {stdout}");
    // `validate`'s view agrees: the same bundle is refused by `policy check`.
    let out = deprovd(&["policy", "check"], Some(dir.path()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("deprovd.rego:"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn policy_test_json_coverage_and_threshold() {
    let policies = repo().join("policies");
    let out = deprovd(
        &["policy", "test", "--format", "json", "--coverage"],
        Some(&policies),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(report["passed"].as_u64().unwrap() >= 8, "{report}");
    assert_eq!(report["failed"], 0);
    assert_eq!(report["coverage"]["files"][0]["file"], "deprovd.rego");
    let pct = report["coverage"]["percent"].as_f64().unwrap();
    assert!(pct > 50.0, "{report}");

    let out = deprovd(
        &["policy", "test", "--min-coverage", "100.01"],
        Some(&policies),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("under --min-coverage"),
        "{}",
        text(&out.stderr)
    );

    let out = deprovd(
        &["policy", "test", "-v", "--run", "impossible_travel"],
        Some(&policies),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("test_impossible_travel_revokes_sessions_only: PASS"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS: 1/1"), "{stdout}");
}

#[test]
fn failing_test_shows_expected_and_actual() {
    let dir = policy_dir(&[
        ("p.rego", crate::kit::DISABLE_ALL_POLICY),
        (
            "p_test.rego",
            "package deprovd_test\n\nimport rego.v1\n\ntest_subjects if {\n    ds := data.deprovd.decisions with input as {\"alert\": {\"severity\": \"high\", \"category\": \"x\", \"title\": \"t\", \"subjects\": [{\"email\": \"a@x\"}]}}\n    subjects := {d.subject | some d in ds}\n    subjects == {\"b@x\"}\n}\n",
        ),
    ]);
    let out = deprovd(&["policy", "test"], Some(dir.path()));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("actual   subjects = [\"a@x\"]"), "{stdout}");
    assert!(
        stdout.contains("expected {\"b@x\"} = [\"b@x\"]"),
        "{stdout}"
    );
}

#[test]
fn policy_check_names_unknown_actions_with_their_position() {
    let dir = policy_dir(&[(
        "p.rego",
        "package deprovd\n\nimport rego.v1\n\ndecisions contains {\"action\": \"disable_acount\", \"subject\": \"a\", \"rule\": \"r\"} if true\n",
    )]);
    let out = deprovd(&["policy", "check"], Some(dir.path()));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("p.rego:5:32: error: unknown action `disable_acount`"),
        "{stdout}"
    );
    let out = deprovd(&["policy", "check"], Some(&repo().join("policies")));
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn policy_eval_prints_the_input_decisions_actions_and_fired_rules() {
    let line = std::fs::read_to_string(repo().join("policies/samples/alerts.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains("s-cred-critical"))
        .unwrap()
        .to_string();
    let mut child = Command::new(BIN)
        .args([
            "policy",
            "eval",
            "--alert",
            "-",
            "--explain",
            "--now",
            "2026-11-26T05:01:00Z",
        ])
        .args(["--policies", "policies"])
        .env_remove("DEPROVD_CONFIG")
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["input"]["alert"]["id"], "s-cred-critical");
    assert_eq!(doc["input"]["now"], "2026-11-26T05:01:00Z");
    assert!(doc["input"].get("context").is_some(), "{doc}");
    let decisions = doc["decisions"].as_array().unwrap();
    assert!(
        decisions
            .iter()
            .any(|d| d["action"] == "disable_account" && d["rule"] == "credential_theft.contain"),
        "{doc}"
    );
    assert!(!doc["actions"].as_array().unwrap().is_empty(), "{doc}");
    let fired: Vec<&serde_json::Value> = doc["explain"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["fired"] == true)
        .collect();
    assert_eq!(fired.len(), 2, "disable + revoke rules fired: {doc}");
    assert!(
        fired
            .iter()
            .all(|r| r["location"].as_str().unwrap().starts_with("deprovd.rego:"))
    );
}

fn diff(candidate: &Path, extra: &[&str]) -> Output {
    let samples: PathBuf = repo().join("policies/samples/alerts.jsonl");
    let mut args = vec!["policy", "diff", "--policies", "policies", "--alerts"];
    let samples = samples.to_str().unwrap().to_string();
    let cand = candidate.to_str().unwrap().to_string();
    args.push(&samples);
    args.push("--candidate");
    args.push(&cand);
    args.extend_from_slice(extra);
    deprovd(&args, None)
}

#[test]
fn policy_diff_shows_who_a_lower_threshold_would_contain() {
    let candidate =
        shipped_with(|d| d.replace("credential_theft: high", "credential_theft: medium"));
    let out = diff(candidate.path(), &["--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["counts"]["newly_contained"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["counts"]["no_longer_contained"], 0, "{report}");
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["kind"] == "newly_contained"
            && c["action"] == "disable_account"
            && c["rules"][0] == "credential_theft.contain"
            && c["alerts"][0] == "s-cred-medium"),
        "{report}"
    );
    // The same change as a CI gate: more new subjects than allowed is exit 3.
    let out = diff(candidate.path(), &["--max-new", "0"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("NEWLY CONTAINED"),
        "{}",
        text(&out.stdout)
    );
    // Against itself nothing changes.
    let same = shipped_with(|d| d.to_string());
    let out = diff(same.path(), &["--max-new", "0"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("no change"),
        "{}",
        text(&out.stdout)
    );
}
