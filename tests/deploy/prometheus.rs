//! deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests (`promtool
//! test rules`), every alert has a test, and every deprovd metric the rules and the dashboard name
//! is one the binary really exports.

use std::process::Command;

use serde_json::Value;

use crate::{deploy, exports, metric_names, run, text, tool, yaml_docs};

const PROMTOOL: &str = "apt-get install prometheus (Debian's package ships promtool)";

fn rules() -> Vec<Value> {
    yaml_docs(&deploy("prometheus/alerts.yaml"))[0]["groups"]
        .as_array()
        .expect("groups")
        .clone()
}

#[test]
fn promtool_checks_the_alert_rules() {
    let Some(promtool) = tool("promtool", PROMTOOL) else {
        return;
    };
    let out = run(Command::new(promtool)
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yaml")));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{}",
        text(&out)
    );
}

#[test]
fn promtool_unit_tests_fire_and_stay_quiet_as_written() {
    let Some(promtool) = tool("promtool", PROMTOOL) else {
        return;
    };
    let out = run(Command::new(promtool)
        .args(["test", "rules", "alerts_test.yaml"])
        .current_dir(deploy("prometheus")));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn every_required_alert_exists_and_has_a_unit_test() {
    let alerts: Vec<String> = rules()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    for required in [
        "DeprovdBreakerOpen",
        "DeprovdLedgerBacklog",
        "DeprovdActionsFailed",
        "DeprovdDeadLetters",
        "DeprovdPolicyReloadRejected",
        "DeprovdConsumerLag",
        "DeprovdContainmentSLOFastBurn",
        "DeprovdContainmentSLOSlowBurn",
    ] {
        assert!(
            alerts.iter().any(|a| a == required),
            "{required} in {alerts:?}"
        );
    }
    let tests = std::fs::read_to_string(deploy("prometheus/alerts_test.yaml")).unwrap();
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has a case in alerts_test.yaml"
        );
    }
    for rule in rules()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
    {
        if let Some(alert) = rule["alert"].as_str() {
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("page" | "ticket")),
                "{alert}: severity is page or ticket"
            );
        }
    }
}

/// `deprovd_*`/`process_*` names in the rules and in the dashboard's queries.
fn kit_metric_names() -> Vec<String> {
    let mut names = Vec::new();
    let rule_exprs = rules()
        .into_iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| r["expr"].as_str().expect("expr").to_string());
    for expr in rule_exprs.chain(crate::grafana::expressions()) {
        names.extend(metric_names(&expr));
    }
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported_by_deprovd() {
    let Some(mut d) = crate::compose::start(&[]) else {
        return;
    };
    crate::compose::wait_ready(&mut d).await;
    let exposition = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names = kit_metric_names();
    assert!(names.len() > 10, "{names:?}");
    // Series of sinks that the example config does not have: no label values, so no series.
    let needs_config = ["deprovd_notifications_total"];
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !exports(&exposition, n) && !needs_config.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}\n{exposition}"
    );
    // Series initialised at zero from the config (compose's example has scim-hr and soc-webhook).
    assert!(
        exposition.contains(
            "deprovd_actions_total{connector=\"scim-hr\",operation=\"disable_account\",outcome=\"failed\"} 0"
        ),
        "{exposition}"
    );
    assert!(exposition.contains("deprovd_build_info{"), "{exposition}");
    assert!(
        exports(&exposition, "process_resident_memory_bytes"),
        "{exposition}"
    );
}
