//! A real SCIM 2.0 server (`scim2-server` from PyPI) for tests, started on a free loopback port and
//! killed on drop. Found through `DEPROVD_SCIM2_SERVER` (set by scripts/test.sh), else
//! `<repo>/.venv/bin/scim2-server`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deprovd::{Connector, HttpConnectorConfig, build_http_connectors};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Harness: the real SCIM server.
// ---------------------------------------------------------------------------------------------

/// The `scim2-server` program, or why it cannot be found.
fn scim2_server() -> Result<PathBuf, String> {
    crate::kit::venv_program(
        "DEPROVD_SCIM2_SERVER",
        None,
        "scim2-server",
        "install it with `python3 -m venv .venv && .venv/bin/pip install scim2-server` in the \
         repository, or point DEPROVD_SCIM2_SERVER at the binary.",
    )
}

pub(crate) fn scim2_server_binary() -> PathBuf {
    scim2_server().unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A running `scim2-server`, killed when dropped.
pub(crate) struct ScimServer {
    child: Child,
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    /// Holds the token file referenced by connector configs.
    pub secrets: tempfile::TempDir,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ScimServer {
    pub(crate) async fn start() -> ScimServer {
        let bin = scim2_server_binary();
        let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
        // A port taken between probing and binding makes readiness fail; try a few.
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
                .args(["--bearer-token", &token])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let http = reqwest::Client::new();
            let base = format!("http://127.0.0.1:{port}/v2");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut ready = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited (port taken?)
                }
                let r = http
                    .get(format!("{base}/ServiceProviderConfig"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if ready {
                let secrets = tempfile::tempdir().expect("tempdir");
                std::fs::write(secrets.path().join("token"), &token).expect("write token");
                return ScimServer {
                    child,
                    base,
                    token,
                    http,
                    secrets,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("scim2-server did not become ready");
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("SCIM request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path} → {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub(crate) async fn create_user(&self, user_name: &str, email: &str) -> String {
        let u = self
            .call(
                reqwest::Method::POST,
                "/Users",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "emails": [{"value": email, "primary": true}],
                    "active": true,
                })),
            )
            .await;
        u["id"].as_str().expect("user id").to_string()
    }

    pub(crate) async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let g = self
            .call(
                reqwest::Method::POST,
                "/Groups",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name,
                    "members": members,
                })),
            )
            .await;
        g["id"].as_str().expect("group id").to_string()
    }

    pub(crate) async fn user(&self, id: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/Users/{id}"), None)
            .await
    }

    pub(crate) async fn group_members(&self, id: &str) -> Vec<String> {
        let g = self
            .call(reqwest::Method::GET, &format!("/Groups/{id}"), None)
            .await;
        g["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn connector(
        &self,
        spec_dir: Option<&Path>,
        token_file: &str,
    ) -> Arc<dyn Connector> {
        let toml_src = format!(
            r#"
type = "scim"
base_url = "{}"
auth = {{ scheme = "bearer", token = "file:{}" }}
timeout = "5s"
"#,
            self.base,
            self.secrets.path().join(token_file).display()
        );
        let cfg: HttpConnectorConfig = toml::from_str(&toml_src).expect("connector config");
        let mut configs = BTreeMap::new();
        configs.insert("scim-test".to_string(), cfg);
        let set = build_http_connectors(&configs, spec_dir)
            .unwrap_or_else(|p| panic!("build_http_connectors failed: {p:?}"));
        set["scim-test"].clone()
    }
}

/// The real SCIM server in the connector contract suite: deactivate and group removal, then back.
/// `Err` (the reason) when scim2-server is not installed.
pub(crate) async fn scim_contract_case() -> Result<crate::kit::contract::Case, String> {
    scim2_server()?;
    let scim = Arc::new(ScimServer::start().await);
    let email = format!("{}@corp.example", crate::kit::unique("contract"));
    let uid = scim.create_user(&email, &email).await;
    let gid = scim.create_group(&crate::kit::unique("eng"), &[&uid]).await;
    let s = scim.clone();
    Ok(crate::kit::contract::Case {
        name: "scim",
        connector: scim.connector(None, "token"),
        subject: email,
        pairs: vec![
            (
                deprovd::Operation::DisableAccount,
                deprovd::Operation::EnableAccount,
            ),
            (
                deprovd::Operation::RemoveGroupMemberships,
                deprovd::Operation::RestoreGroupMemberships,
            ),
        ],
        state: Box::new(move || {
            let (s, uid, gid) = (s.clone(), uid.clone(), gid.clone());
            Box::pin(async move {
                let active = s.user(&uid).await["active"].clone();
                format!("active={active} members={:?}", s.group_members(&gid).await)
            })
        }),
        settle: None,
        keep: Box::new(scim),
    })
}
