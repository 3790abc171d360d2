//! deploy/kubernetes: every manifest passes `kubernetes-validate --strict` against the Kubernetes
//! API schemas; the ServiceMonitor (a Prometheus Operator CRD) and the Kustomization have no schema
//! in that tool, which the test confirms it says, and are checked for what ties them to the rest.
//! The Deployment keeps the security properties the schema cannot require, and its ConfigMap's
//! config passes `deprovd validate`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::{BIN, deploy, repo, run, text, tool, yaml_docs};

const INSTALL: &str = ".venv/bin/pip install kubernetes-validate";

/// Files whose kinds are not in the Kubernetes API (CRDs, kustomize).
const NO_SCHEMA: [&str; 2] = ["servicemonitor.yaml", "kustomization.yaml"];

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn doc(name: &str) -> Value {
    yaml_docs(&deploy("kubernetes").join(name)).remove(0)
}

#[test]
fn kubernetes_validate_passes_every_api_manifest_strictly() {
    let Some(kv) = tool("kubernetes-validate", INSTALL) else {
        return;
    };
    let core: Vec<PathBuf> = manifests()
        .into_iter()
        .filter(|p| !NO_SCHEMA.iter().any(|n| p.ends_with(n)))
        .collect();
    assert!(core.len() >= 7, "{core:?}");
    let out = run(Command::new(&kv).arg("--strict").args(&core));
    assert!(out.status.success(), "{}", text(&out));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for kind in [
        "namespace",
        "serviceaccount",
        "configmap",
        "deployment",
        "service",
        "poddisruptionbudget",
        "networkpolicy",
    ] {
        assert!(
            said.contains(&format!("passed for resource {kind}/")),
            "{kind}: {said}"
        );
    }
    for name in NO_SCHEMA {
        let out = run(Command::new(&kv)
            .arg("--strict")
            .arg(deploy("kubernetes").join(name)));
        let said = text(&out);
        assert!(
            said.contains("Couldn't find schema"),
            "kubernetes-validate now knows {name}'s kind: validate it like the others. {said}"
        );
    }
}

#[test]
fn kubernetes_validate_rejects_a_broken_deployment() {
    let Some(kv) = tool("kubernetes-validate", INSTALL) else {
        return;
    };
    let text_ = std::fs::read_to_string(deploy("kubernetes/deployment.yaml")).unwrap();
    let broken = text_.replace(
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: \"yes\"",
    );
    assert_ne!(broken, text_);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.yaml");
    std::fs::write(&path, broken).unwrap();
    let out = run(Command::new(kv).arg("--strict").arg(&path));
    assert!(
        !out.status.success(),
        "the tool checks types: {}",
        text(&out)
    );
}

#[test]
fn the_deployment_runs_locked_down_with_probes_and_resources() {
    let d = doc("deployment.yaml");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    // The ServiceMonitor scrapes a port the Service has, on the Deployment's pods.
    let svc = doc("service.yaml");
    let sm = doc("servicemonitor.yaml");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        svc["metadata"]["labels"]
    );
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    let port = &sm["spec"]["endpoints"][0]["port"];
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| &p["name"] == port)
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let pdb = doc("poddisruptionbudget.yaml");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    // kustomize applies every manifest.
    let listed = doc("kustomization.yaml")["resources"].clone();
    for file in manifests() {
        let name = file.file_name().unwrap().to_str().unwrap();
        if name != "kustomization.yaml" {
            assert!(
                listed.as_array().unwrap().iter().any(|r| r == name),
                "{name} in kustomization"
            );
        }
    }
}

#[test]
fn the_configmap_config_validates_and_every_secret_it_references_comes_from_the_secret() {
    let config = doc("configmap.yaml")["data"]["deprovd.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let d = doc("deployment.yaml");
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let mut secrets = Vec::new();
    for line in config.lines().filter(|l| l.contains("\"env:")) {
        let name = line
            .split("\"env:")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        secrets.push(name.to_string());
        let from = env.iter().find(|e| e["name"] == name);
        assert!(
            from.is_some_and(|e| e["valueFrom"]["secretKeyRef"]["name"] == "deprovd-secrets"),
            "{name} comes from the Secret"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deprovd.toml");
    std::fs::write(&path, config).unwrap();
    // The image's paths, mapped to the repository (as the image's COPY lines put them there).
    // The Secret's values, as the pod would have them (validate checks every `env:` reference).
    let mut validate = Command::new(BIN);
    for name in &secrets {
        validate.env(name, "from-the-secret");
    }
    let out = run(validate
        .args(["validate", "--config"])
        .arg(&path)
        .env("DEPROVD__POLICY__DIR", repo().join("policies"))
        .env("DEPROVD__CONNECTOR_SPECS", repo().join("connectors"))
        .env("DEPROVD__DATA_DIR", dir.path()));
    assert!(out.status.success(), "{}", text(&out));
}
