//! deploy/compose.yaml: compose itself resolves it (every secret required), and deprovd, run with
//! exactly the environment compose passes to its service and the config file compose mounts,
//! becomes ready and says so through `deprovd healthcheck`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{BIN, deploy, free_port, run, text, tool};

/// `docker compose` (v2) when the plugin is there, else `docker-compose`.
fn compose_cli() -> Option<Vec<OsString>> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    tool("docker-compose", "apt-get install docker-compose").map(|p| vec![p.into_os_string()])
}

/// The variables compose.yaml requires (`${NAME:?…}`), in order of appearance.
fn required_vars() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("compose.yaml")).unwrap();
    let config: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names: Vec<String> = config
        .split("${")
        .skip(1)
        .filter_map(|s| s.split_once(":?").map(|(name, _)| name.to_string()))
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    names.dedup();
    names
}

/// `compose config` with `vars` as the operator's environment: the resolved file, or its output.
fn compose_config(cli: &[OsString], vars: &BTreeMap<String, String>) -> Result<Value, String> {
    let mut cmd = Command::new(&cli[0]);
    cmd.args(&cli[1..])
        .args(["-f", "compose.yaml", "config"])
        .current_dir(deploy(""));
    for name in required_vars() {
        cmd.env_remove(name);
    }
    cmd.envs(vars);
    let out = run(&mut cmd);
    if !out.status.success() {
        return Err(text(&out));
    }
    yaml_serde::from_slice(&out.stdout).map_err(|e| format!("compose config output: {e}"))
}

fn secrets() -> BTreeMap<String, String> {
    required_vars()
        .into_iter()
        .map(|name| (name, format!("test-{}", uuid::Uuid::new_v4().simple())))
        .collect()
}

#[test]
fn compose_requires_every_secret_and_refuses_an_empty_one() {
    let Some(cli) = compose_cli() else { return };
    let required = required_vars();
    for name in [
        "DEPROVD_ADMIN_TOKEN",
        "DEPROVD_SIEM_TOKEN",
        "SCIM_TOKEN",
        "WEBHOOK_SECRET",
    ] {
        assert!(
            required.iter().any(|r| r == name),
            "{name} is not required: {required:?}"
        );
    }
    compose_config(&cli, &secrets()).expect("compose.yaml resolves with every secret set");
    for name in &required {
        let mut vars = secrets();
        vars.insert(name.clone(), String::new());
        let err = compose_config(&cli, &vars).expect_err(name);
        assert!(
            err.contains(name.as_str()),
            "the refusal names {name}: {err}"
        );
    }
}

#[test]
fn every_service_restarts_and_deprovd_s_healthcheck_needs_no_shell() {
    let Some(cli) = compose_cli() else { return };
    let resolved = compose_config(&cli, &secrets()).unwrap();
    let services = resolved["services"].as_object().expect("services");
    for (name, service) in services {
        assert_eq!(
            service["restart"], "unless-stopped",
            "{name}: restart policy"
        );
        if let Some(image) = service["image"].as_str().filter(|_| name != "deprovd") {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                tag.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == 'v')
                    && tag.contains('.'),
                "{name}: image `{image}` is pinned to an exact version"
            );
        }
    }
    let check = &services["deprovd"]["healthcheck"]["test"];
    assert_eq!(check[0], "CMD", "exec form, no shell: {check}");
    assert_eq!(check[2], "healthcheck", "{check}");
    let redis = services["redis"]["command"].as_array().unwrap();
    let redis: Vec<&str> = redis.iter().filter_map(Value::as_str).collect();
    assert!(
        redis.windows(2).any(|w| w == ["--appendonly", "yes"])
            && redis.windows(2).any(|w| w == ["--appendfsync", "always"]),
        "the ledger's Redis fsyncs every write: {redis:?}"
    );
}

/// deprovd as compose would start it, on this machine.
pub(crate) struct ComposedDeprovd {
    child: Child,
    pub(crate) port: u16,
    _data: tempfile::TempDir,
}

impl Drop for ComposedDeprovd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ComposedDeprovd {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The environment compose passes to the deprovd service, and the host file it mounts as the config.
fn deprovd_env(
    cli: &[OsString],
    vars: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, PathBuf) {
    let resolved = compose_config(cli, vars).expect("compose config");
    let service = &resolved["services"]["deprovd"];
    let env: BTreeMap<String, String> = service["environment"]
        .as_object()
        .expect("environment map")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        })
        .collect();
    let in_image = env
        .get("DEPROVD_CONFIG")
        .expect("DEPROVD_CONFIG is set")
        .clone();
    let config = service["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find_map(|v| match v {
            // compose v1 prints `source:target:mode`, v2 a mapping.
            Value::String(s) => {
                let mut parts = s.split(':');
                let (source, target) = (parts.next()?, parts.next()?);
                (target == in_image).then(|| PathBuf::from(source))
            }
            v => (v["target"] == in_image.as_str())
                .then(|| PathBuf::from(v["source"].as_str().unwrap())),
        })
        .expect("the config file is mounted");
    (env, config)
}

/// Start deprovd with compose's environment for its service. The only changes are the ones a
/// container's network and image make for it, mapped to this machine: the broker and Redis at the
/// test services (compose: `kafka:9092`, `redis:6379`, whose `appendfsync always` the shared test
/// Redis does not have, so durability is relaxed), the listen address on a free loopback port
/// (compose: `0.0.0.0:8780` inside the container), the config file at the path compose mounts it
/// from, the image's `/etc/deprovd/{policies,connectors}` and `/var/lib/deprovd` at the repository's
/// and a temporary directory, and a fresh key prefix and consumer group so runs do not meet.
pub(crate) fn start(overrides: &[(&str, &str)]) -> Option<ComposedDeprovd> {
    let cli = compose_cli()?;
    let mut vars = secrets();
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    // An empty value is refused by compose itself; give compose a value and the binary the override.
    let compose_vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.clone(), if v.is_empty() { "x".into() } else { v.clone() }))
        .collect();
    let (mut env, config) = deprovd_env(&cli, &compose_vars);
    for (k, v) in overrides {
        if env.contains_key(*k) {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let example = std::fs::read_to_string(&config).unwrap();
    for name in secret_refs(&example) {
        assert!(
            env.contains_key(&name),
            "compose passes `{name}`, which the config references"
        );
    }
    assert_eq!(env["DEPROVD__KAFKA__BROKERS"], "kafka:9092");
    assert_eq!(env["DEPROVD__STATE__REDIS__URL"], "redis://redis:6379/0");
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let kafka = std::env::var("DEPROVD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let repo = crate::repo();
    let machine = [
        ("DEPROVD__KAFKA__BROKERS", kafka),
        (
            "DEPROVD__STATE__REDIS__URL",
            "redis://127.0.0.1:6379/0".into(),
        ),
        // Compose's Redis runs `appendfsync always` (the example's `durability = "aof"` checks it);
        // the shared test Redis does not.
        ("DEPROVD__STATE__REDIS__DURABILITY", "relaxed".into()),
        ("DEPROVD__API__LISTEN", format!("127.0.0.1:{port}")),
        ("DEPROVD_CONFIG", config.display().to_string()),
        ("DEPROVD__DATA_DIR", data.path().display().to_string()),
        (
            "DEPROVD__POLICY__DIR",
            repo.join("policies").display().to_string(),
        ),
        (
            "DEPROVD__CONNECTOR_SPECS",
            repo.join("connectors").display().to_string(),
        ),
        (
            "DEPROVD__STATE__REDIS__KEY_PREFIX",
            format!("deploy-test-{unique}:"),
        ),
        ("DEPROVD__KAFKA__GROUP_ID", format!("deploy-test-{unique}")),
    ];
    for (k, v) in machine {
        env.insert(k.into(), v);
    }
    let child = Command::new(BIN)
        .arg("run")
        .env_clear()
        .envs(&env)
        .current_dir(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start deprovd");
    Some(ComposedDeprovd {
        child,
        port,
        _data: data,
    })
}

/// Every `env:NAME` a config file references.
fn secret_refs(config: &str) -> Vec<String> {
    config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split("\"env:").skip(1))
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect()
}

#[test]
fn the_example_config_references_the_secrets_compose_requires() {
    let example = std::fs::read_to_string(deploy("deprovd.example.toml")).unwrap();
    let refs = secret_refs(&example);
    assert!(refs.contains(&"WEBHOOK_SECRET".to_string()), "{refs:?}");
    let required = required_vars();
    for name in refs {
        assert!(required.contains(&name), "compose.yaml requires `{name}`");
    }
}

fn healthcheck(url: &str) -> std::process::Output {
    run(Command::new(BIN).args(["healthcheck", "--url", url, "--timeout", "3s"]))
}

/// Wait until `/readyz` answers 200; on a deadline or an early exit, panic with deprovd's stderr.
pub(crate) async fn wait_ready(d: &mut ComposedDeprovd) {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ok = http
            .get(d.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        let exited = d.child.try_wait().unwrap();
        if exited.is_some() || std::time::Instant::now() > deadline {
            let _ = d.child.kill();
            panic!(
                "deprovd not ready ({exited:?}): {}",
                stderr_of(&mut d.child)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deprovd_with_exactly_the_compose_environment_becomes_ready_and_healthcheck_says_so() {
    let Some(mut d) = start(&[]) else { return };
    wait_ready(&mut d).await;
    let out = healthcheck(&d.url("/readyz"));
    assert!(
        out.status.success(),
        "healthcheck on a ready deprovd: {}",
        text(&out)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("\"ready\":true"), "{said}");
}

/// stderr of a stopped (or killed) child, for a failure message.
fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    err
}

#[test]
fn an_empty_secret_stops_deprovd_at_startup_naming_it() {
    for name in [
        "SCIM_TOKEN",
        "WEBHOOK_SECRET",
        "DEPROVD_SIEM_TOKEN",
        "DEPROVD_ADMIN_TOKEN",
    ] {
        let Some(mut d) = start(&[(name, "")]) else {
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = d.child.try_wait().unwrap() {
                break Some(s);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = stderr_of(&mut d.child);
        let status = status.unwrap_or_else(|| panic!("deprovd kept running with {name} empty"));
        assert!(!status.success(), "{name} empty: {status}");
        assert!(
            stderr.contains(&format!("env:{name}")) && stderr.contains("is empty"),
            "{name}: the reason names the reference: {stderr}"
        );
    }
}
