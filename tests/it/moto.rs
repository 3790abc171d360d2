//! A real IAM endpoint for tests: `moto_server` (PyPI `moto[server]`), one per [`Moto::start`], on a free
//! loopback port, killed on drop. Found through `DEPROVD_MOTO_SERVER`, else next to `DEPROVD_SCIM2_SERVER`
//! (scripts/test.sh installs both into one venv), else `<repo>/.venv/bin/moto_server`.
//!
//! [`Moto::start`] seeds the account while moto still accepts anything, then turns request
//! authentication ON (`POST /moto-api/reset-auth` with `0`, moto's documented switch): from then on every
//! request must carry a valid SigV4 signature of a known access key, and the caller's IAM policies are
//! evaluated (actions only: moto checks IAM actions against resource `*`, and ignores conditions it does
//! not implement, such as `DateLessThan`).
//!
//! Seeded users (each with its own access key):
//! - `deprovd`: exactly the actions of the least-privilege policy in docs/connectors/aws_iam.md
//!   ([`DEPROVD_ACTIONS`]), so the tests prove that list suffices;
//! - `auditor`: `iam:Get*` and `iam:List*`, to observe the effects independently of the connector;
//! - `alice`: the victim: inline policy `alice-work` (may `iam:GetUser`, `iam:ListAccessKeys`), one active
//!   and one already-inactive access key, a console password (login profile), and membership of the
//!   groups [`ALICE_GROUPS`].

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deprovd::IamClient;
use secrecy::SecretString;

use crate::scim_server::free_port;

/// The actions deprovd's IAM identity needs; the same list as docs/connectors/aws_iam.md.
pub(crate) const DEPROVD_ACTIONS: [&str; 9] = [
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:ListGroupsForUser",
    "iam:UpdateAccessKey",
    "iam:GetUserPolicy",
    "iam:PutUserPolicy",
    "iam:DeleteUserPolicy",
    "iam:GetLoginProfile",
    "iam:DeleteLoginProfile",
];

pub(crate) const ALICE_POLICY: &str = "alice-work";
/// The IAM groups alice is a member of (a third group, `auditors`, holds nobody).
pub(crate) const ALICE_GROUPS: [&str; 2] = ["developers", "tier0-admins"];

/// An access key pair as IAM returned it.
#[derive(Clone)]
pub(crate) struct Key {
    pub id: String,
    pub secret: String,
}

pub(crate) struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub deprovd: Key,
    pub auditor: Key,
    /// alice's active key.
    pub alice: Key,
    /// alice's second key, inactive before any test action.
    pub alice_inactive: Key,
    pub dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    // Beside scim2-server, when that is set: the same virtualenv.
    let beside_scim = std::env::var_os("DEPROVD_SCIM2_SERVER")
        .and_then(|p| PathBuf::from(p).parent().map(|dir| dir.join("moto_server")));
    crate::kit::venv_program(
        "DEPROVD_MOTO_SERVER",
        beside_scim,
        "moto_server",
        "install it with `.venv/bin/pip install 'moto[server]'` (scripts/test.sh does), or set \
         DEPROVD_MOTO_SERVER.",
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The text between `open` and `close` (first occurrence).
pub(crate) fn between<'a>(body: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = body.find(open)? + open.len();
    let len = body[start..].find(close)?;
    Some(&body[start..start + len])
}

/// A client signing with `key`.
pub(crate) fn client(endpoint: &str, key: &Key) -> IamClient {
    IamClient::new(
        endpoint,
        "us-east-1",
        &SecretString::from(key.id.clone()),
        &SecretString::from(key.secret.clone()),
        None,
        Duration::from_secs(10),
    )
    .expect("client builds")
}

fn allow(actions: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
    })
    .to_string()
}

impl Moto {
    /// Start moto, seed the users, and switch authentication on.
    pub(crate) async fn start() -> Moto {
        let bin = moto_binary();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let endpoint = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut ready = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited (port taken?)
                }
                if http
                    .get(format!("{endpoint}/moto-api/"))
                    .send()
                    .await
                    .is_ok()
                {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ready {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            // Seeding happens before authentication is on: any key signs.
            let boot = client(
                &endpoint,
                &Key {
                    id: "AKIABOOTSTRAP0000000".into(),
                    secret: "bootstrap".into(),
                },
            );
            let deprovd = seed_user(
                &boot,
                "deprovd",
                &allow(&DEPROVD_ACTIONS),
                "deprovd-least-privilege",
            )
            .await;
            let auditor = seed_user(
                &boot,
                "auditor",
                &allow(&["iam:Get*", "iam:List*"]),
                "read-all",
            )
            .await;
            let alice = seed_user(
                &boot,
                "alice",
                &allow(&["iam:GetUser", "iam:ListAccessKeys"]),
                ALICE_POLICY,
            )
            .await;
            let alice_inactive = create_key(&boot, "alice").await;
            boot.set_key_status("alice", &alice_inactive.id, false)
                .await
                .expect("deactivate alice's second key");
            boot.call(
                "CreateLoginProfile",
                &[("UserName", "alice"), ("Password", "Alice-console-pw-1!")],
            )
            .await
            .expect("give alice a console password");
            for group in ALICE_GROUPS.iter().chain(&["auditors"]) {
                boot.call("CreateGroup", &[("GroupName", group)])
                    .await
                    .unwrap_or_else(|e| panic!("CreateGroup {group}: {e}"));
            }
            for group in ALICE_GROUPS {
                boot.call(
                    "AddUserToGroup",
                    &[("GroupName", group), ("UserName", "alice")],
                )
                .await
                .unwrap_or_else(|e| panic!("AddUserToGroup {group}: {e}"));
            }
            let r = http
                .post(format!("{endpoint}/moto-api/reset-auth"))
                .body("0")
                .send()
                .await
                .expect("reset-auth");
            assert!(
                r.status().is_success(),
                "moto refused reset-auth: {}",
                r.status()
            );
            return Moto {
                child,
                endpoint,
                deprovd,
                auditor,
                alice,
                alice_inactive,
                dir: tempfile::tempdir().expect("tempdir"),
            };
        }
        panic!("moto_server did not become ready");
    }

    /// Write `key` to secret files and return TOML for an `aws_iam` connector using them.
    pub(crate) fn connector_toml(&self, key: &Key) -> String {
        let id = self
            .dir
            .path()
            .join(format!("id-{}", uuid::Uuid::new_v4().simple()));
        let secret = self
            .dir
            .path()
            .join(format!("secret-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&id, format!("{}\n", key.id)).expect("write key id");
        std::fs::write(&secret, format!("{}\n", key.secret)).expect("write secret");
        format!(
            "endpoint = \"{}\"\naccess_key_id = \"file:{}\"\nsecret_access_key = \"file:{}\"\ntimeout = \"10s\"\n",
            self.endpoint,
            id.display(),
            secret.display()
        )
    }
}

async fn create_key(boot: &IamClient, user: &str) -> Key {
    let body = boot
        .call("CreateAccessKey", &[("UserName", user)])
        .await
        .unwrap_or_else(|e| panic!("CreateAccessKey {user}: {e}"));
    Key {
        id: between(&body, "<AccessKeyId>", "</AccessKeyId>")
            .expect("AccessKeyId in CreateAccessKey answer")
            .to_string(),
        secret: between(&body, "<SecretAccessKey>", "</SecretAccessKey>")
            .expect("SecretAccessKey in CreateAccessKey answer")
            .to_string(),
    }
}

async fn seed_user(boot: &IamClient, user: &str, policy: &str, policy_name: &str) -> Key {
    boot.call("CreateUser", &[("UserName", user)])
        .await
        .unwrap_or_else(|e| panic!("CreateUser {user}: {e}"));
    boot.put_user_policy(user, policy_name, policy)
        .await
        .unwrap_or_else(|e| panic!("PutUserPolicy {user}: {e}"));
    create_key(boot, user).await
}
