//! Single-thread policy evaluation throughput with the starter policies, VM vs interpreter.
//!
//! `cargo bench --bench policy_throughput`. Builds 10,000 varied canonical alerts of about 1.3 KB
//! (serialized), parses them into `Alert`s up front (parsing happens before evaluation in the
//! service), then times `Policies::evaluate` over all of them for each engine and prints alerts/s;
//! then the full decision path, its extra cost with a shadow bundle, and `policy diff`'s replay rate.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deprovd::{Alert, Policies, PolicyBackend, PolicyConfig};

const ALERTS: usize = 10_000;

/// A small deterministic generator (xorshift) so runs are comparable without a seed dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn make_alert(i: usize, rng: &mut Rng) -> String {
    let category = rng.pick(&[
        "credential_theft",
        "impossible_travel",
        "malware",
        "phishing",
        "suspicious_login",
        "data_exfiltration",
    ]);
    let severity = rng.pick(&["informational", "low", "medium", "high", "critical"]);
    let vendor = rng.pick(&["okta", "microsoft", "crowdstrike", "proofpoint"]);
    let n_subjects = 1 + (rng.next() % 2) as usize;
    let subjects: Vec<serde_json::Value> = (0..n_subjects)
        .map(|k| {
            let user = if rng.next() % 50 == 0 {
                "svc-backup".to_string()
            } else {
                format!("user{}", rng.next() % 5000)
            };
            if k == 1 && rng.next() % 2 == 0 {
                serde_json::json!({"kind": "user", "username": user, "domain": "CORP"})
            } else {
                serde_json::json!({
                    "kind": "user",
                    "email": format!("{user}@example.com"),
                    "username": user,
                    "display_name": format!("User {user}"),
                    "ids": {"okta": format!("00u{:012x}", rng.next() % 0xffff_ffff_ffff)}
                })
            }
        })
        .collect();
    let mut alert = serde_json::json!({
        "id": format!("alert-{i:08}-{:016x}", rng.next()),
        "source": {"vendor": vendor, "product": "detector", "format": "generic"},
        "time": "2026-11-26T05:00:00Z",
        "severity": severity,
        "severity_score": (rng.next() % 100) as f64,
        "category": category,
        "title": format!("{category} detected by {vendor} for {n_subjects} account(s), rule {}", rng.next() % 997),
        "subjects": subjects,
        "indicators": [
            {"type": "ip", "value": format!("203.0.113.{}", rng.next() % 255)},
            {"type": "domain", "value": format!("c2-{}.example.net", rng.next() % 1000)}
        ],
        "labels": {"env": rng.pick(&["prod", "staging"]), "mitre": rng.pick(&["T1078", "T1110", "T1566", "T1204"])},
        "raw": {
            "detection_id": format!("ldt:{:032x}", rng.next()),
            "tactic": "Credential Access",
            "technique": "Valid Accounts",
            "description": "The detector observed behaviour consistent with the category above; see the console for the process tree.",
            "device": {"platform": "Windows", "agent_version": "7.10.1", "site": "HQ"},
            // Vendor detail the model does not carry, to bring the document to about 1.3 KB.
            "process": {
                "name": "powershell.exe",
                "cmdline": format!("powershell.exe -nop -w hidden -enc {:032x}{:016x}", rng.next(), rng.next()),
                "parent": "winword.exe",
                "sha256": format!("{:016x}{:016x}{:016x}{:016x}", rng.next(), rng.next(), rng.next(), rng.next())
            },
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        }
    });
    if rng.next() % 2 == 0 {
        alert["host"] = serde_json::json!({
            "hostname": format!("wks-{}", rng.next() % 10_000),
            "id": format!("{:032x}", rng.next()),
            "ips": [format!("10.1.{}.{}", rng.next() % 255, rng.next() % 255)],
            "os": "windows"
        });
    }
    alert.to_string()
}

fn run(engine: PolicyBackend, alerts: &[Alert], now: DateTime<Utc>) -> (f64, usize, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let config = PolicyConfig {
        dir: Some(dir),
        engine,
        eval_timeout: Duration::from_secs(1),
        ..PolicyConfig::default()
    };
    let policies = Policies::load(&config).expect("starter policies load");
    assert_eq!(policies.backend(), engine, "engine actually used");
    let ctx = serde_json::json!({});
    // Warm up: builds this thread's evaluator, faults in caches.
    for a in alerts.iter().take(500) {
        black_box(policies.evaluate(a, now, &ctx));
    }
    let mut decisions = 0;
    let mut errors = 0;
    let started = Instant::now();
    for a in alerts {
        let eval = policies.evaluate(black_box(a), now, &ctx);
        decisions += eval.decisions.len();
        errors += eval.errors.len();
    }
    let secs = started.elapsed().as_secs_f64();
    (alerts.len() as f64 / secs, decisions, errors)
}

fn main() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let raw: Vec<String> = (0..ALERTS).map(|i| make_alert(i, &mut rng)).collect();
    let avg = raw.iter().map(String::len).sum::<usize>() / raw.len();
    let alerts: Vec<Alert> = raw
        .iter()
        .map(|s| serde_json::from_str(s).expect("generated alert is canonical"))
        .collect();
    let now: DateTime<Utc> = "2026-11-26T05:01:00Z".parse().expect("valid time");
    println!("policy_throughput: {ALERTS} alerts, average {avg} bytes each, single thread");
    let mut results = Vec::new();
    for engine in [PolicyBackend::Vm, PolicyBackend::Interpreter] {
        let (rate, decisions, errors) = run(engine, &alerts, now);
        let name = format!("{engine:?}");
        println!(
            "  {name:<12} {rate:>10.0} alerts/s  ({:.1} µs/alert; {decisions} decisions, {errors} errors)",
            1e6 / rate
        );
        assert_eq!(errors, 0, "no policy errors on generated alerts");
        results.push((rate, decisions));
    }
    assert_eq!(
        results[0].1, results[1].1,
        "both engines make the same number of decisions"
    );
    println!("  VM speed-up: {:.1}x", results[0].0 / results[1].0);
    let registry = deprovd::NormalizerRegistry::new();
    let started = Instant::now();
    for r in &raw {
        black_box(
            registry
                .normalize(black_box(r.as_bytes()), None)
                .expect("normalizes"),
        );
    }
    let rate = raw.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "  normalize    {rate:>10.0} alerts/s  ({:.1} µs/alert: bytes → canonical Alert, format detected)",
        1e6 / rate
    );
    let (rate, actions) = run_decider(&raw, None);
    println!(
        "  full path    {rate:>10.0} alerts/s  ({:.1} µs/alert: bytes → normalize → evaluate (VM) → plan → guards; {actions} actions)",
        1e6 / rate
    );
    // Shadow mode and replay diff, with a candidate that contains credential theft from `medium`.
    let candidate = candidate_bundle();
    let (shadow_rate, _) = run_decider(&raw, Some(candidate.path()));
    println!(
        "  + shadow     {shadow_rate:>10.0} alerts/s  ({:.1} µs/alert; shadow mode adds {:.1} µs/alert)",
        1e6 / shadow_rate,
        1e6 / shadow_rate - 1e6 / rate
    );
    let (replay_rate, changes) = run_replay(&alerts, candidate.path());
    println!(
        "  replay diff  {replay_rate:>10.0} alerts/s  (live + candidate per alert, compared; {changes} change lines)"
    );
}

/// The starter bundle with `thresholds.credential_theft` lowered from high to medium.
fn candidate_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for f in ["deprovd.rego", "data.yaml"] {
        let text = std::fs::read_to_string(src.join(f)).expect("starter file");
        let text = text.replace("credential_theft: high", "credential_theft: medium");
        std::fs::write(dir.path().join(f), text).expect("write candidate");
    }
    dir
}

fn decider(dir: &Path) -> deprovd::Decider {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use deprovd::Decider;
    use deprovd::Operation;
    use deprovd::Planner;
    use deprovd::{GuardConfig, Guards};

    let config = PolicyConfig {
        dir: Some(dir.to_path_buf()),
        engine: PolicyBackend::Vm,
        eval_timeout: Duration::from_secs(1),
        ..PolicyConfig::default()
    };
    let policies = Policies::load(&config).expect("bundle loads");
    let mut caps = BTreeMap::new();
    caps.insert(
        "idp".to_string(),
        BTreeSet::from([
            Operation::DisableAccount,
            Operation::RevokeSessions,
            Operation::RevokeTokens,
        ]),
    );
    caps.insert("chat".to_string(), BTreeSet::from([Operation::Notify]));
    let guards = Guards::new(&GuardConfig {
        dry_run: false,
        protected: vec!["breakglass@example.com".into(), "svc-*".into()],
        ..GuardConfig::default()
    })
    .expect("guards");
    Decider::new(
        policies,
        Planner::from_capabilities(caps),
        guards,
        Arc::new(deprovd::Metrics::new()),
    )
}

/// `policy diff`'s work: every alert through the live and the candidate bundle, compared.
fn run_replay(alerts: &[Alert], candidate: &Path) -> (f64, usize) {
    let live = decider(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"));
    let cand = decider(candidate);
    let mut warm = deprovd::Replay::new(&live, &cand);
    for a in alerts.iter().take(500) {
        warm.add(a.clone());
    }
    let mut replay = deprovd::Replay::new(&live, &cand);
    for a in alerts {
        replay.add(black_box(a.clone()));
    }
    let report = replay.finish();
    (report.alerts_per_second, report.changes.len())
}

/// The service's whole CPU path per alert, as the pipeline runs it on a blocking thread: parse the
/// bytes, normalize, evaluate, plan against two connectors, apply guards — and, with `shadow`,
/// evaluate and compare that bundle too.
fn run_decider(raw: &[String], shadow: Option<&Path>) -> (f64, usize) {
    let mut decider = decider(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"));
    if let Some(dir) = shadow {
        let config = PolicyConfig {
            dir: Some(dir.to_path_buf()),
            engine: PolicyBackend::Vm,
            eval_timeout: Duration::from_secs(1),
            ..PolicyConfig::default()
        };
        let policies = Policies::load(&config).expect("shadow bundle loads");
        decider.shadow = Some(std::sync::Arc::new(deprovd::Shadow::new(policies)));
    }
    for r in raw.iter().take(500) {
        black_box(
            decider
                .decide(r.as_bytes(), None)
                .expect("generated alert normalizes"),
        );
    }
    let mut actions = 0;
    let started = Instant::now();
    for r in raw {
        let planned = decider
            .decide(black_box(r.as_bytes()), None)
            .expect("generated alert normalizes");
        actions += planned.actions.len();
    }
    (raw.len() as f64 / started.elapsed().as_secs_f64(), actions)
}
