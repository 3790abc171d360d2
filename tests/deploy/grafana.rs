//! deploy/grafana/deprovd.json: a dashboard Grafana loads (schemaVersion, unique panel ids, a grid
//! that fits, the provisioned datasource), whose every query is PromQL that Prometheus's own parser
//! (`promtool`) accepts, and whose recording rules exist. Its metrics are checked against a running
//! deprovd in `prometheus.rs`.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::{deploy, run, text, tool};

fn dashboard() -> Value {
    let text = std::fs::read_to_string(deploy("grafana/deprovd.json")).unwrap();
    serde_json::from_str(&text).expect("deprovd.json is JSON")
}

/// Every query of every panel, Grafana's `$__rate_interval` replaced by a duration.
pub(crate) fn expressions() -> Vec<String> {
    dashboard()["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("every target has an expr")
                .replace("$__rate_interval", "5m")
        })
        .collect()
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_on_the_provisioned_datasource() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 36, "schemaVersion {schema}");
    assert_eq!(d["uid"], "deprovd");
    assert!(d["title"].is_string());
    let var = &d["templating"]["list"][0];
    assert_eq!(
        (&var["name"], &var["type"], &var["query"]),
        (
            &"datasource".into(),
            &"datasource".into(),
            &"prometheus".into()
        )
    );
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} is unique");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "panel {id} fits the grid"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} queries something");
    }
    let provisioned = crate::yaml_docs(&deploy("grafana/provisioning/datasources/prometheus.yaml"));
    assert_eq!(provisioned[0]["datasources"][0]["type"], "prometheus");
}

#[test]
fn every_panel_query_parses_as_promql_and_its_recording_rules_exist() {
    let exprs = expressions();
    let alerts = std::fs::read_to_string(deploy("prometheus/alerts.yaml")).unwrap();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("deprovd:") {
                assert!(
                    alerts.contains(&format!("record: {word}\n")),
                    "{word} is recorded"
                );
            }
        }
    }
    let Some(promtool) = tool("promtool", "apt-get install prometheus") else {
        return;
    };
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(
            |(i, e)| serde_json::json!({"record": format!("dashboard:panel_query:{i}"), "expr": e}),
        )
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard_rules.yaml");
    // JSON is YAML.
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let out = run(Command::new(promtool).args(["check", "rules"]).arg(&path));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{}",
        text(&out)
    );
}
