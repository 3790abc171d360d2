//! The responders' CLI client: `deprovd lockout`, `deprovd restore`, `deprovd status`,
//! `deprovd approvals` and `deprovd approve` call a running deprovd over its HTTP API and print a
//! table (or the server's JSON with `--json`).
//!
//! A lockout is sent with a fresh `Idempotency-Key`, and a request that fails on the way (connection
//! refused or reset, 503) is retried with the *same* key: the server then replays the first attempt
//! instead of locking the subject out twice.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::ledger::ActionRecord;
use crate::lockout::{Created, LockoutRequest, Restored, Status};

mod resolve;
pub mod views;

use resolve::{Kinds, Resolved};

/// Default server: the service's default listen address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8780";
/// Attempts for one request when the server cannot be reached or is not ready.
const ATTEMPTS: u32 = 3;

/// Why a CLI request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing usable came back: the server is down, unreachable, or not deprovd.
    #[error("cannot reach deprovd at {server}: {reason} (check --server / DEPROVD_URL)")]
    Unreachable { server: String, reason: String },
    /// The server answered with an error.
    #[error("deprovd refused ({status}, {code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The TLS options (`--ca-cert`, `--client-cert`, `--client-key`) cannot be used.
    #[error("{0}")]
    Tls(String),
    /// The server's answer was not what this client understands (version mismatch?).
    #[error("unexpected answer from deprovd: {0}")]
    Decode(String),
    /// No action or lockout id starts with the prefix given.
    #[error("no {what} id starts with `{prefix}`")]
    NotFound { what: &'static str, prefix: String },
    /// More than one id starts with the prefix given: type more of it.
    #[error("`{prefix}` is ambiguous: it starts {} ids (type more of it):\n  {}", .matches.len(), .matches.join("\n  "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
}

impl ClientError {
    /// Process exit code: 1 when the server refused, 2 when it could not be asked.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Api { .. }
            | ClientError::NotFound { .. }
            | ClientError::Ambiguous { .. } => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }
}

/// A connection to one deprovd.
pub struct Client {
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

impl Client {
    /// `server` is the base URL (`http://127.0.0.1:8780`); `token` a bearer token of the right role.
    pub fn new(server: &str, token: SecretString) -> Result<Client, ClientError> {
        Self::with_tls(server, token, &crate::net::ClientTls::default())
    }

    /// [`Client::new`] for an `https://` server with a private CA or client certificates
    /// (`--ca-cert`, `--client-cert`, `--client-key`).
    pub fn with_tls(
        server: &str,
        token: SecretString,
        tls: &crate::net::ClientTls,
    ) -> Result<Client, ClientError> {
        let http = crate::net::client_with_tls(Some(Duration::from_secs(30)), tls)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(Client {
            base: server.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.token.expose_secret());
            if let Some(k) = idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(ClientError::Unreachable {
                        server: self.base.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(value);
            }
            let err = ClientError::Api {
                status: status.as_u16(),
                code: value["code"].as_str().unwrap_or("http_error").to_string(),
                message: value["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| text.chars().take(300).collect()),
            };
            if status != StatusCode::SERVICE_UNAVAILABLE {
                return Err(err);
            }
            last = Some(err);
        }
        Err(last.unwrap_or_else(|| ClientError::Decode("no attempt made".into())))
    }

    /// `POST /v1/lockouts` with a fresh `Idempotency-Key`.
    pub async fn lockout(&self, req: &LockoutRequest) -> Result<Value, ClientError> {
        let body = serde_json::to_value(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        let key = uuid::Uuid::new_v4().to_string();
        self.send(Method::POST, "/v1/lockouts", Some(&body), Some(&key))
            .await
    }

    /// Restore a lockout or a single action, by its id or any unique prefix of it.
    pub async fn restore(&self, id: &str) -> Result<Value, ClientError> {
        let path = match self.resolve(id, Kinds::Both).await? {
            Resolved::Action(key) => format!("/v1/actions/{key}/restore"),
            Resolved::Lockout(id) => format!("/v1/lockouts/{}/restore", path_segment(&id)),
        };
        let key = uuid::Uuid::new_v4().to_string();
        self.send(Method::POST, &path, None, Some(&key)).await
    }

    /// `GET /v1/approvals`: actions awaiting approval.
    pub async fn approvals(&self) -> Result<Value, ClientError> {
        self.send(Method::GET, "/v1/approvals", None, None).await
    }

    /// Approve (or reject) held action `key`, with an optional comment for the audit trail.
    pub async fn decide(
        &self,
        key: &str,
        reject: bool,
        comment: Option<&str>,
    ) -> Result<Value, ClientError> {
        let verb = if reject { "reject" } else { "approve" };
        let key = self.resolve_action(key).await?;
        let path = format!("/v1/approvals/{}/{verb}", path_segment(&key));
        let body = serde_json::json!({ "comment": comment });
        self.send(Method::POST, &path, Some(&body), None).await
    }

    /// Status of a lockout or a single action, by its id or any unique prefix of it.
    pub async fn status(&self, id: &str) -> Result<Value, ClientError> {
        let path = match self.resolve(id, Kinds::Both).await? {
            Resolved::Action(key) => format!("/v1/actions/{key}"),
            Resolved::Lockout(id) => format!("/v1/lockouts/{}", path_segment(&id)),
        };
        self.send(Method::GET, &path, None, None).await
    }

    /// `GET` `path_and_query` (a read of the API).
    pub async fn get(&self, path_and_query: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path_and_query, None, None).await
    }

    /// `POST` `path` with an optional JSON body.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        self.send(Method::POST, path, body, None).await
    }
}

/// Ledger action keys are 64 lower-case hex characters; lockout ids are UUIDs.
pub fn is_action_key(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Keep a user-typed id inside one path segment.
pub(crate) fn path_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// A subcommand of the client.
#[derive(Debug, Clone)]
pub enum Command {
    Lockout(LockoutRequest),
    Restore(String),
    Status(String),
    /// List actions awaiting approval.
    Approvals,
    /// Approve (or, with `reject`, reject) one held action.
    Approve {
        id: String,
        reject: bool,
        comment: Option<String>,
    },
    /// The responders' finders and fixers ([`views`]).
    View(views::View),
}

/// Run one client command, printing to `out`.
pub async fn run(
    client: &Client,
    command: &Command,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let value = match command {
        Command::Lockout(req) => client.lockout(req).await?,
        Command::Restore(id) => client.restore(id).await?,
        Command::Status(id) => client.status(id).await?,
        Command::Approvals => client.approvals().await?,
        Command::Approve {
            id,
            reject,
            comment,
        } => client.decide(id, *reject, comment.as_deref()).await?,
        Command::View(v) => v.fetch(client).await?,
    };
    let printed = if json {
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
    } else {
        render(command, &value)?
    };
    out.write_all(printed.as_bytes())
        .map_err(|e| ClientError::Decode(format!("cannot write output: {e}")))
}

/// The text (a table, or lines) for the server's answer `v` to `command`.
fn render(command: &Command, v: &Value) -> Result<String, ClientError> {
    Ok(match command {
        Command::Lockout(_) => render_created(&decode(v)?),
        Command::Restore(_) => render_restored(&decode(v)?),
        // An action answers with its record; a lockout with its status (which lists `actions`).
        Command::Status(_) if v.get("actions").is_none() => render_action(&decode(v)?),
        Command::Status(_) => render_status(&decode(v)?),
        Command::Approvals => render_approvals(&decode::<Vec<ActionRecord>>(&v["approvals"])?),
        Command::Approve { .. } => render_action(&decode(v)?),
        Command::View(view) => view.render(v)?,
    })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ClientError> {
    serde_json::from_value(v.clone()).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Rows as aligned columns under a header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// First 12 characters of a ledger key: enough to recognise it in a table.
pub(crate) fn short(key: &str) -> String {
    key.chars().take(12).collect()
}

pub fn render_created(c: &Created) -> String {
    let rows: Vec<Vec<String>> = c
        .actions
        .iter()
        .map(|a| {
            vec![
                a.connector.clone(),
                a.operation.to_string(),
                a.state.as_str().to_string(),
                short(&a.key),
                a.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "lockout {}\nsubject {}\n\n{}\nfollow it with: deprovd status {}\n",
        c.id,
        c.subject,
        table(
            &["CONNECTOR", "OPERATION", "STATE", "ACTION", "NOTE"],
            &rows
        ),
        c.id
    )
}

pub fn render_status(s: &Status) -> String {
    let rows: Vec<Vec<String>> = s
        .actions
        .iter()
        .map(|a| {
            let reversal = a
                .reversal
                .as_ref()
                .map(|r| format!("{} {}", r.operation, r.state.as_str()))
                .unwrap_or_else(|| "-".into());
            let detail = a
                .last_error
                .clone()
                .or_else(|| a.note.clone())
                .unwrap_or_default();
            vec![
                a.connector.clone(),
                a.operation.to_string(),
                a.state.map_or("missing", |s| s.as_str()).to_string(),
                a.attempts.to_string(),
                reversal,
                detail,
            ]
        })
        .collect();
    format!(
        "lockout  {}\nsubject  {}\nreason   {}\nticket   {}\nby       {} at {}\nsettled  {}\n\n{}",
        s.id,
        s.subject,
        s.reason,
        s.ticket.as_deref().unwrap_or("-"),
        s.requester,
        s.created_at.to_rfc3339(),
        if s.settled { "yes" } else { "no (in progress)" },
        table(
            &[
                "CONNECTOR",
                "OPERATION",
                "STATE",
                "ATTEMPTS",
                "RESTORE",
                "DETAIL"
            ],
            &rows
        )
    )
}

pub fn render_restored(r: &Restored) -> String {
    let rows: Vec<Vec<String>> = r
        .actions
        .iter()
        .map(|a| {
            vec![
                a.connector.clone(),
                a.operation.to_string(),
                a.reversal_operation
                    .map_or_else(|| "-".to_string(), |o| o.to_string()),
                a.state.as_str().to_string(),
                a.reversal_key.as_deref().map(short).unwrap_or_default(),
                a.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "restore of {}\n\n{}\nfollow it with: deprovd status {}\n",
        r.id,
        table(
            &["CONNECTOR", "UNDOES", "REVERSAL", "STATE", "ACTION", "NOTE"],
            &rows
        ),
        r.id
    )
}

pub fn render_approvals(actions: &[ActionRecord]) -> String {
    if actions.is_empty() {
        return "no actions awaiting approval\n".to_string();
    }
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            vec![
                a.key.clone(),
                a.subject.clone(),
                a.connector.clone(),
                a.operation.to_string(),
                a.requester(),
                a.expires_at
                    .map_or_else(|| "-".to_string(), |t| t.to_rfc3339()),
                a.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "{}\napprove with: deprovd approve ID  (or --reject)\n",
        table(
            &[
                "ID",
                "SUBJECT",
                "CONNECTOR",
                "OPERATION",
                "REQUESTED BY",
                "EXPIRES",
                "WHY HELD"
            ],
            &rows
        )
    )
}

pub fn render_action(a: &ActionRecord) -> String {
    table(
        &["FIELD", "VALUE"],
        &[
            vec!["key".into(), a.key.clone()],
            vec!["subject".into(), a.subject.clone()],
            vec!["connector".into(), a.connector.clone()],
            vec!["operation".into(), a.operation.to_string()],
            vec!["state".into(), a.state.as_str().to_string()],
            vec!["attempts".into(), a.attempts.to_string()],
            vec!["rule".into(), a.rule.clone()],
            vec!["reason".into(), a.reason.clone()],
            vec![
                "last_error".into(),
                a.last_error.clone().unwrap_or_else(|| "-".into()),
            ],
            vec!["note".into(), a.note.clone().unwrap_or_else(|| "-".into())],
            vec!["updated_at".into(), a.updated_at.to_rfc3339()],
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Operation;
    use crate::ledger::ActionState;
    use crate::lockout::ActionSummary;

    #[test]
    fn ids_route_to_lockouts_or_actions() {
        assert!(is_action_key(&"ab".repeat(32)));
        assert!(!is_action_key("0196b7e0-0000-7000-8000-000000000000"));
        assert_eq!(path_segment("../x/y-1"), "xy-1");
    }

    #[test]
    fn created_table_lines_up_and_names_every_action() {
        let c = Created {
            id: "0196".into(),
            subject: "alice@corp.example".into(),
            actions: vec![
                ActionSummary {
                    key: "a".repeat(64),
                    connector: "okta-prod".into(),
                    operation: Operation::DisableAccount,
                    state: ActionState::Planned,
                    note: None,
                },
                ActionSummary {
                    key: "b".repeat(64),
                    connector: "scim".into(),
                    operation: Operation::RevokeSessions,
                    state: ActionState::Skipped,
                    note: Some("protected subject".into()),
                },
            ],
        };
        let t = render_created(&c);
        assert!(t.contains("lockout 0196"), "{t}");
        let lines: Vec<&str> = t.lines().filter(|l| l.contains("  ")).collect();
        assert!(lines[0].starts_with("CONNECTOR"), "{t}");
        let col = lines[0].find("STATE").unwrap();
        assert_eq!(&lines[1][col..col + 7], "planned", "{t}");
        assert_eq!(&lines[2][col..col + 7], "skipped", "{t}");
        assert!(lines[2].ends_with("protected subject"), "{t}");
    }
}
