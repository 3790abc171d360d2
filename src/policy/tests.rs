//! Unit tests for loading, evaluating and reloading bundles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::*;
use crate::alert::Alert;

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn config(dir: &Path, engine: Backend) -> PolicyConfig {
    PolicyConfig {
        dir: Some(dir.to_path_buf()),
        engine,
        ..PolicyConfig::default()
    }
}

/// The bundle in `dir`, loaded on the VM and on the interpreter.
fn on_both_engines(dir: &Path) -> [(Backend, Arc<Policies>); 2] {
    [Backend::Vm, Backend::Interpreter]
        .map(|engine| (engine, Policies::load(&config(dir, engine)).unwrap()))
}

fn now() -> DateTime<Utc> {
    "2026-11-26T05:01:00Z".parse().unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn alert(id: &str, category: &str, severity: &str, subjects: serde_json::Value) -> Alert {
    serde_json::from_value(serde_json::json!({
        "id": id, "source": {"vendor": "test"}, "time": "2026-11-26T05:00:00Z",
        "severity": severity, "category": category, "title": "t", "subjects": subjects,
        "raw": {"vendor_field": id}
    }))
    .unwrap()
}

fn sorted(mut d: Vec<Decision>) -> Vec<Decision> {
    d.sort_by(|a, b| {
        (a.action, &a.subject, &a.rule, a.mode.as_str()).cmp(&(
            b.action,
            &b.subject,
            &b.rule,
            b.mode.as_str(),
        ))
    });
    d
}

fn samples() -> Vec<(Alert, Vec<Decision>)> {
    let dir = shipped_dir().join("samples");
    let alerts = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    let alerts: Vec<Alert> = alerts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<serde_json::Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), expected.len(), "one expectation per sample");
    alerts
        .into_iter()
        .zip(expected)
        .map(|(a, e)| {
            assert_eq!(
                e["id"],
                a.id.as_str(),
                "expected.jsonl follows alerts.jsonl"
            );
            let d: Vec<Decision> = serde_json::from_value(e["decisions"].clone()).unwrap();
            (a, d)
        })
        .collect()
}

#[test]
fn shipped_samples_produce_expected_decisions_on_both_engines() {
    for (engine, policies) in on_both_engines(&shipped_dir()) {
        assert_eq!(policies.backend(), engine);
        let mut rules_seen = std::collections::BTreeSet::new();
        for (alert, expected) in samples() {
            let eval = policies.evaluate(&alert, now(), &serde_json::json!({}));
            assert!(eval.errors.is_empty(), "{}: {:?}", alert.id, eval.errors);
            assert_eq!(
                sorted(eval.decisions.clone()),
                sorted(expected),
                "{engine:?} {}",
                alert.id
            );
            rules_seen.extend(eval.decisions.into_iter().map(|d| d.rule));
        }
        // The samples cover every rule of the starter set.
        assert_eq!(rules_seen.len(), 5, "{rules_seen:?}");
    }
}

#[test]
fn vm_and_interpreter_agree_on_varied_alerts() {
    let vm = Policies::load(&config(&shipped_dir(), Backend::Vm)).unwrap();
    let interp = Policies::load(&config(&shipped_dir(), Backend::Interpreter)).unwrap();
    assert_eq!(vm.digest(), interp.digest());
    let subjects = [
        serde_json::json!([]),
        serde_json::json!([{"email": "a@example.com"}, {"username": "b"}]),
        serde_json::json!([{"username": "svc-backup"}, {"email": "C@Example.com", "username": "c"}]),
    ];
    let mut compared = 0;
    for category in [
        "credential_theft",
        "impossible_travel",
        "malware",
        "phishing",
        "other",
    ] {
        for severity in ["informational", "low", "medium", "high", "critical"] {
            for (i, subj) in subjects.iter().enumerate() {
                for with_host in [false, true] {
                    let mut a = alert(&format!("v{i}"), category, severity, subj.clone());
                    if with_host {
                        a.host = Some(crate::alert::Host {
                            hostname: Some("h".into()),
                            ..Default::default()
                        });
                    }
                    let x = vm.evaluate(&a, now(), &serde_json::Value::Null);
                    let y = interp.evaluate(&a, now(), &serde_json::Value::Null);
                    assert!(x.errors.is_empty() && y.errors.is_empty(), "{x:?} {y:?}");
                    assert_eq!(
                        sorted(x.decisions),
                        sorted(y.decisions),
                        "{category} {severity}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 150);
}

const SLOW_POLICY: &str = r#"package deprovd
import rego.v1
decisions contains d if {
	some i in numbers.range(1, 3000)
	some j in numbers.range(1, 3000)
	i * j == -1
	d := {"action": "notify", "subject": "x", "rule": "slow"}
}
"#;

#[test]
fn over_budget_evaluation_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "slow.rego", SLOW_POLICY);
    for engine in [Backend::Vm, Backend::Interpreter] {
        let mut cfg = config(dir.path(), engine);
        // Let the clock, not the instruction limit, stop the VM.
        cfg.max_instructions = usize::MAX;
        let policies = Policies::load(&cfg).unwrap();
        let a = alert("x", "malware", "high", serde_json::json!([]));
        let started = Instant::now();
        let eval = policies.evaluate(&a, now(), &serde_json::Value::Null);
        let took = started.elapsed();
        assert!(eval.decisions.is_empty());
        assert_eq!(eval.errors.len(), 1, "{engine:?}: {:?}", eval.errors);
        assert!(
            eval.errors[0].to_lowercase().contains("time limit"),
            "{engine:?}: {}",
            eval.errors[0]
        );
        assert!(took < Duration::from_secs(2), "{engine:?} took {took:?}");
    }
}

#[test]
fn vm_instruction_limit_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "slow.rego", SLOW_POLICY);
    let mut cfg = config(dir.path(), Backend::Vm);
    cfg.eval_timeout = Duration::from_secs(10);
    cfg.max_instructions = 10_000;
    let policies = Policies::load(&cfg).unwrap();
    let eval = policies.evaluate(
        &alert("x", "malware", "high", serde_json::json!([])),
        now(),
        &serde_json::Value::Null,
    );
    assert_eq!(eval.errors.len(), 1);
    assert!(eval.errors[0].contains("instruction limit"), "{eval:?}");
}

#[test]
fn invalid_decision_elements_are_reported_and_valid_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        r#"package deprovd
import rego.v1
decisions contains {"action": "notify", "subject": "ok@example.com", "rule": "good"}
decisions contains {"action": "explode", "subject": "x", "rule": "bad_action"}
decisions contains {"action": "notify", "subject": "x", "rule": "extra", "colour": "red"}
decisions contains {"action": "notify", "rule": "no_subject"}
decisions contains "not an object"
"#,
    );
    for (engine, policies) in on_both_engines(dir.path()) {
        let eval = policies.evaluate(
            &alert("x", "other", "high", serde_json::json!([])),
            now(),
            &serde_json::Value::Null,
        );
        assert_eq!(
            eval.decisions,
            vec![Decision {
                action: crate::action::Operation::Notify,
                subject: "ok@example.com".into(),
                connectors: None,
                reason: String::new(),
                mode: Mode::Enforce,
                rule: "good".into(),
            }],
            "{engine:?}"
        );
        assert_eq!(eval.errors.len(), 4, "{engine:?}: {:?}", eval.errors);
        let all = eval.errors.join("\n");
        for needle in ["explode", "colour", "subject", "not an object"] {
            assert!(
                all.contains(needle),
                "{engine:?}: {needle} missing in {all}"
            );
        }
    }
}

#[test]
fn undefined_decisions_mean_no_decisions() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        "package deprovd\nimport rego.v1\ndecisions := {\"never\"} if input.alert.id == \"nope\"\n",
    );
    for (engine, policies) in on_both_engines(dir.path()) {
        let eval = policies.evaluate(
            &alert("x", "other", "high", serde_json::json!([])),
            now(),
            &serde_json::Value::Null,
        );
        assert_eq!(eval.decisions, vec![], "{engine:?}");
        assert_eq!(eval.errors, Vec::<String>::new(), "{engine:?}");
    }
}

#[test]
fn input_carries_alert_without_raw_plus_raw_now_and_context() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        r#"package deprovd
import rego.v1
decisions contains d if {
	not input.alert.raw
	d := {
		"action": "notify",
		"subject": input.raw.vendor_field,
		"reason": input.now,
		"rule": sprintf("%s/%s/%s", [input.context.source, input.alert.severity, input.alert.subjects[0].kind]),
	}
}
"#,
    );
    for (engine, policies) in on_both_engines(dir.path()) {
        let eval = policies.evaluate(
            &alert(
                "a-9",
                "other",
                "high",
                serde_json::json!([{"username": "u"}]),
            ),
            now(),
            &serde_json::json!({"source": "kafka"}),
        );
        assert_eq!(eval.errors, Vec::<String>::new());
        assert_eq!(eval.decisions.len(), 1, "{engine:?}");
        let d = &eval.decisions[0];
        assert_eq!(d.subject, "a-9");
        assert_eq!(d.reason, "2026-11-26T05:01:00Z");
        assert_eq!(d.rule, "kafka/high/user");
    }
}

#[test]
fn policies_see_the_alert_s_problems_and_may_hold_back_on_guessed_facts() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        r#"package deprovd
import rego.v1
guessed contains p.kind if some p in input.alert.problems
decisions contains d if {
	count(guessed) == 0
	d := {"action": "disable_account", "subject": input.alert.subjects[0].username, "rule": "sure"}
}
decisions contains d if {
	"severity_unknown" in guessed
	d := {"action": "notify", "subject": input.alert.subjects[0].username, "rule": "guessed"}
}
"#,
    );
    let mut guessed = alert(
        "a-10",
        "malware",
        "medium",
        serde_json::json!([{"username": "u"}]),
    );
    guessed.problems.push(crate::alert::AlertProblem {
        kind: crate::alert::ProblemKind::SeverityUnknown,
        detail: "severity `severe` is not a name; using the default `medium`".into(),
    });
    let sure = alert(
        "a-11",
        "malware",
        "medium",
        serde_json::json!([{"username": "u"}]),
    );
    for engine in [Backend::Vm, Backend::Interpreter] {
        let policies = Policies::load(&config(dir.path(), engine)).unwrap();
        let rules = |a: &Alert| {
            let eval = policies.evaluate(a, now(), &serde_json::Value::Null);
            assert_eq!(eval.errors, Vec::<String>::new(), "{engine:?}");
            eval.decisions
                .into_iter()
                .map(|d| d.rule)
                .collect::<Vec<_>>()
        };
        assert_eq!(rules(&guessed), ["guessed"], "{engine:?}");
        assert_eq!(rules(&sure), ["sure"], "{engine:?}");
    }
}

const WITH_POLICY: &str = r#"package deprovd
import rego.v1
base := input.alert.id
decisions contains d if {
	id := base with input.alert.id as "overridden"
	d := {"action": "notify", "subject": id, "rule": "with"}
}
"#;

#[test]
fn bundle_the_vm_rejects_falls_back_to_the_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", WITH_POLICY);
    let policies = Policies::load(&config(dir.path(), Backend::Auto)).unwrap();
    assert_eq!(policies.backend(), Backend::Interpreter);
    let eval = policies.evaluate(
        &alert("x", "other", "high", serde_json::json!([])),
        now(),
        &serde_json::Value::Null,
    );
    assert_eq!(eval.errors, Vec::<String>::new());
    assert_eq!(eval.decisions[0].subject, "overridden");

    let err = Policies::load(&config(dir.path(), Backend::Vm)).unwrap_err();
    assert!(err.to_string().contains("VM cannot compile"), "{err}");
}

#[test]
fn shipped_policies_run_on_the_vm_in_auto_mode() {
    let policies = Policies::load(&config(&shipped_dir(), Backend::Auto)).unwrap();
    assert_eq!(policies.backend(), Backend::Vm);
}

#[test]
fn load_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.rego",
        "package deprovd\n\ndecisions contains x if {\n",
    );
    write(
        dir.path(),
        "sub/b.rego",
        "package other\nimport rego.v1\ny := [1,\n",
    );
    write(dir.path(), "data.yaml", "k: [1, 2\n");
    let err = Policies::load(&config(dir.path(), Backend::Auto)).unwrap_err();
    let PolicyError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    assert_eq!(problems.len(), 3, "{err}");
    let text = err.to_string();
    assert!(
        problems.contains(&"a.rego:4:1: expecting expression".to_string()),
        "{text}"
    );
    assert!(
        problems.contains(&"sub/b.rego:4:1: expecting `]` while parsing array".to_string()),
        "{text}"
    );
    assert!(text.contains("data.yaml:2: invalid YAML"), "{text}");

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Policies::load(&config(empty.path(), Backend::Auto)),
        Err(PolicyError::NoPolicies { .. })
    ));
}

#[test]
fn missing_entrypoint_and_semantic_errors_fail_the_load() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        "package other\nimport rego.v1\nx := 1\n",
    );
    let err = Policies::load(&config(dir.path(), Backend::Auto)).unwrap_err();
    assert!(err.to_string().contains("data.deprovd.decisions"), "{err}");

    write(
        dir.path(),
        "p.rego",
        "package deprovd\nimport rego.v1\ndecisions contains x if {\n\tx := no_such_function(1)\n}\n",
    );
    // The interpreter alone finds this only when evaluating; the VM compiler finds it at load, and
    // `auto` must refuse the bundle rather than fall back and fail on every alert.
    for engine in [Backend::Auto, Backend::Vm] {
        let err = Policies::load(&config(dir.path(), engine)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("p.rego:4:"), "{text}");
        assert!(text.contains("no_such_function"), "{text}");
    }
}

#[test]
fn data_files_merge_under_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        r#"package deprovd
import rego.v1
decisions contains {"action": "notify", "subject": data.root_key, "rule": data.team.a.rule_name}
"#,
    );
    write(dir.path(), "data.json", r#"{"root_key": "r@example.com"}"#);
    write(dir.path(), "team/a/data.yaml", "rule_name: from-yaml\n");
    for (engine, policies) in on_both_engines(dir.path()) {
        let eval = policies.evaluate(
            &alert("x", "other", "high", serde_json::json!([])),
            now(),
            &serde_json::Value::Null,
        );
        assert_eq!(eval.errors, Vec::<String>::new(), "{engine:?}");
        assert_eq!(eval.decisions[0].subject, "r@example.com");
        assert_eq!(eval.decisions[0].rule, "from-yaml");
    }
}

#[test]
fn digest_covers_policy_files_only_and_is_path_independent() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        write(
            d,
            "p.rego",
            "package deprovd\nimport rego.v1\ndecisions := set()\n",
        );
        write(d, "data.yaml", "x: 1\n");
    }
    let da = bundle::scan(a.path()).unwrap().digest;
    assert_eq!(da, bundle::scan(b.path()).unwrap().digest);
    write(b.path(), "README.md", "not part of the bundle");
    write(b.path(), ".git/x.rego", "hidden");
    assert_eq!(da, bundle::scan(b.path()).unwrap().digest);
    write(b.path(), "data.yaml", "x: 2\n");
    assert_ne!(da, bundle::scan(b.path()).unwrap().digest);
    assert_eq!(da.len(), 64);
}

fn notify_policy(rule: &str) -> String {
    format!(
        "package deprovd\nimport rego.v1\ndecisions contains {{\"action\": \"notify\", \"subject\": \"s\", \"rule\": \"{rule}\"}}\n"
    )
}

fn first_rule(p: &Policies) -> String {
    let eval = p.evaluate(
        &alert("x", "other", "high", serde_json::json!([])),
        now(),
        &serde_json::Value::Null,
    );
    assert_eq!(eval.errors, Vec::<String>::new());
    assert_eq!(&*eval.digest, &*p.digest());
    eval.decisions[0].rule.clone()
}

#[test]
fn reload_swaps_atomically_and_a_broken_version_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", &notify_policy("v1"));
    let policies = Policies::load(&config(dir.path(), Backend::Auto)).unwrap();
    let d1 = policies.digest();
    assert_eq!(first_rule(&policies), "v1");

    write(dir.path(), "p.rego", &notify_policy("v2"));
    let d2 = policies.reload().unwrap();
    assert_ne!(*d1, *d2);
    assert_eq!(&*policies.digest(), d2.as_str());
    assert_eq!(first_rule(&policies), "v2");

    write(
        dir.path(),
        "p.rego",
        "package deprovd\ndecisions contains {\n",
    );
    let err = policies.reload().unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");
    assert_eq!(&*policies.digest(), d2.as_str());
    assert_eq!(first_rule(&policies), "v2");
}

#[test]
fn concurrent_evaluation_across_threads_matches_single_thread() {
    let policies = Policies::load(&config(&shipped_dir(), Backend::Auto)).unwrap();
    let samples = Arc::new(samples());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = policies.clone();
            let s = samples.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    for (a, expected) in s.iter() {
                        let eval = p.evaluate(a, now(), &serde_json::Value::Null);
                        assert_eq!(sorted(eval.decisions), sorted(expected.clone()));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[tokio::test]
async fn watcher_reloads_on_change_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", &notify_policy("v1"));
    let policies = Policies::load(&config(dir.path(), Backend::Auto)).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = policies
        .clone()
        .spawn_watcher_every(Duration::from_millis(20), rx);

    let before = policies.digest();
    write(
        dir.path(),
        "p.rego",
        "package deprovd\ndecisions contains {\n",
    );
    // A broken change is rejected: give the watcher a few polls, the old version must stay.
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline {
        assert_eq!(policies.digest(), before);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    write(dir.path(), "p.rego", &notify_policy("v2"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while policies.digest() == before {
        assert!(Instant::now() < deadline, "watcher did not reload");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let p = policies.clone();
    let rule = tokio::task::spawn_blocking(move || first_rule(&p))
        .await
        .unwrap();
    assert_eq!(rule, "v2");

    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("watcher stops on shutdown")
        .unwrap();
}

#[test]
fn config_defaults_parse_and_validation_reports_every_problem() {
    #[derive(serde::Deserialize)]
    struct Root {
        policy: PolicyConfig,
    }
    let root: Root = toml::from_str("[policy]\neval_timeout = \"20ms\"\n").unwrap();
    assert_eq!(root.policy.eval_timeout, Duration::from_millis(20));
    assert_eq!(
        root.policy.dir, None,
        "unset: the embedded starter policies"
    );
    assert!(root.policy.watch);
    assert!(toml::from_str::<Root>("[policy]\nwatcher = true\n").is_err());

    let mut problems = Vec::new();
    root.policy.validate("policy", &mut problems);
    assert!(problems.is_empty());
    let bad = PolicyConfig {
        dir: Some(PathBuf::new()),
        eval_timeout: Duration::ZERO,
        max_instructions: 0,
        ..PolicyConfig::default()
    };
    bad.validate("policy", &mut problems);
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "policy.dir",
            "policy.eval_timeout",
            "policy.max_instructions"
        ]
    );
}
