//! Native AWS IAM connector (`type = "aws_iam"`): contains an IAM *user* through IAM's Query API.
//!
//! IAM answers XML, which the declarative JSON runtime in [`super::http`] does not read, so this is native
//! code behind the same [`Connector`] trait. Requests are signed with SigV4 by the `aws-sigv4` crate (no
//! hand-rolled crypto) and answers are read with `quick-xml`'s serde support.
//!
//! # Subject
//! The subject is the IAM **user name** (`alice`, or `alice@example.org` — `@` is legal in IAM user names
//! and is *not* cut to its local part), or the user's ARN (`arn:aws:iam::123456789012:user/path/alice`: the
//! name is the part after the last `/`). Anything else (roles, malformed ARNs, characters IAM does not
//! allow in user names) fails the action rather than guessing.
//!
//! # What it does
//! | operation | calls | pre-state |
//! |---|---|---|
//! | `disable_account` | `PutUserPolicy` (inline deny-all named [`DENY_POLICY_NAME`]) first, so every API call is refused at once; then `UpdateAccessKey Status=Inactive` for every active key (`ListAccessKeys`, paginated); then `DeleteLoginProfile` | `{user, keys_deactivated: [ids], had_login_profile, policy_attached: true}` |
//! | `enable_account` | `UpdateAccessKey Status=Active` for exactly the recorded keys, `DeleteUserPolicy` of the deny-all | the state found before restoring |
//! | `group_memberships` (for `[guards] protected_groups`) | `ListGroupsForUser`, following `Marker`; read-only | — |
//! | `revoke_sessions` | `PutUserPolicy` [`REVOKE_POLICY_NAME`]: deny everything for tokens whose `aws:TokenIssueTime` is before now (AWS's "revoke older sessions" pattern); long-term keys carry no token issue time and are unaffected, new sessions work | — |
//!
//! Every operation reads before it writes (`GetUser`, `ListAccessKeys`, `GetUserPolicy`, `GetLoginProfile`):
//! a user already contained (no active key, deny-all present, no login profile) answers `already_done`.
//! A retry keeps the pre-state the first attempt recorded and adds to it.
//!
//! A deleted console password **cannot be restored** (IAM never reveals it): `enable_account` leaves the
//! user without a login profile and says so in its summary; an administrator sets a new password
//! (`CreateLoginProfile` with `PasswordResetRequired`). `had_login_profile` in the pre-state tells whom.
//!
//! # Outcomes
//! `NoSuchEntity` for the user → `not_found`. `Throttling`, other throttling codes, HTTP 5xx, timeouts and
//! connection errors → `retry` (honouring `Retry-After`). `AccessDenied`, `InvalidClientTokenId`,
//! `SignatureDoesNotMatch` and other 4xx → `failed`, with the fix in the reason.
//!
//! The least-privilege policy for deprovd's own credentials is in `docs/connectors/aws_iam.md`.

mod client;
mod config;
mod error;
mod operations;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{
    CheckReport, Connector, Memberships, Operation, OperationRequest, OperationResult, Resolution,
};
use crate::config::{Problem, SecretRef};

pub(crate) use client::AccessKey;
pub use client::IamClient;
pub use config::AwsIamConfig;
pub(crate) use error::IamError;
pub(crate) use operations::user_name_of;

/// Name of the inline deny-all policy `disable_account` attaches and `enable_account` removes.
pub const DENY_POLICY_NAME: &str = "deprovd-deny-all";
/// Name of the inline policy `revoke_sessions` attaches (replaced, with a newer cut-off, on each call).
pub const REVOKE_POLICY_NAME: &str = "deprovd-revoke-older-sessions";
/// The deny-all document: one explicit Deny overrides every Allow the user has.
pub(crate) const DENY_ALL_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"DeprovdDenyAll","Effect":"Deny","Action":"*","Resource":"*"}]}"#;

/// What this connector can do.
pub(crate) const SUPPORTED: [Operation; 3] = [
    Operation::DisableAccount,
    Operation::EnableAccount,
    Operation::RevokeSessions,
];

/// Validate, resolve the credentials, and build the connector.
pub fn build(name: &str, cfg: &AwsIamConfig) -> Result<Arc<dyn Connector>, Vec<Problem>> {
    let path = format!("connectors.{name}");
    let mut problems = Vec::new();
    cfg.validate(&path, &mut problems);
    let mut resolve = |key: &str, r: &SecretRef| match r.resolve() {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Problem::new(format!("{path}.{key}"), e.to_string()));
            None
        }
    };
    let key_id = resolve("access_key_id", &cfg.access_key_id);
    let secret = resolve("secret_access_key", &cfg.secret_access_key);
    let token = cfg
        .session_token
        .as_ref()
        .map(|t| resolve("session_token", t));
    let (Some(key_id), Some(secret)) = (key_id, secret) else {
        return Err(problems);
    };
    let token = match token {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => return Err(problems),
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let client = IamClient::new(
        &cfg.endpoint,
        &cfg.region,
        &key_id,
        &secret,
        token.as_ref(),
        cfg.timeout,
    )
    .map_err(|e| vec![Problem::new(format!("{path}.endpoint"), e.to_string())])?;
    Ok(Arc::new(AwsIamConnector {
        name: name.to_string(),
        client,
        permits: Semaphore::new(cfg.concurrency.max(1)),
    }))
}

/// The connector instance.
pub(crate) struct AwsIamConnector {
    name: String,
    client: IamClient,
    /// Bounds calls in flight (IAM throttles per account).
    permits: Semaphore,
}

#[async_trait]
impl Connector for AwsIamConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports(&self, op: Operation) -> bool {
        SUPPORTED.contains(&op)
    }

    async fn execute(&self, request: &OperationRequest) -> OperationResult {
        if !self.supports(request.operation) {
            return OperationResult::failed(format!(
                "{} is not supported by the aws_iam connector `{}`",
                request.operation, self.name
            ));
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return OperationResult::failed("connector is shutting down");
        };
        self.run(request)
            .await
            .unwrap_or_else(|e| OperationResult::new(e.outcome(), ""))
    }

    fn lists_groups(&self) -> bool {
        true
    }

    /// The IAM user name the action would act on, derived without a call (IAM names users by
    /// name; a user ARN names its user by its last path segment).
    async fn resolve_account(&self, subject: &str) -> Resolution {
        match user_name_of(subject) {
            Ok(name) => Resolution::Account(vec![name]),
            // Execution refuses it too: nothing will be acted on.
            Err(_) => Resolution::NotFound,
        }
    }

    /// Read-only: the names of the IAM groups the user is in (`ListGroupsForUser`, every page), for
    /// `[guards] protected_groups`. A user IAM does not know is in no group here.
    async fn group_memberships(&self, subject: &str) -> Memberships {
        let user = match user_name_of(subject) {
            Ok(u) => u,
            // Not an IAM user name or ARN (e.g. a role): no IAM user can be in a group under it.
            Err(_) => return Memberships::NotFound,
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return Memberships::Unavailable("connector is shutting down".into());
        };
        match self.client.list_groups_for_user(&user).await {
            Ok(names) => Memberships::Groups(names),
            Err(e) if e.is_no_such_entity() => Memberships::NotFound,
            Err(e) => Memberships::Unavailable(e.to_string()),
        }
    }

    /// Read-only: `GetUser` on a user name nobody has. `NoSuchEntity` proves the endpoint is reachable,
    /// the signature and key are accepted, and `iam:GetUser` is granted on users.
    async fn check(&self) -> CheckReport {
        match self.client.get_user("deprovd-preflight-probe").await {
            Ok(_) => CheckReport::passed(
                &self.name,
                format!(
                    "{}: credentials accepted, iam:GetUser permitted (write permissions cannot be checked without writing)",
                    self.client.endpoint
                ),
            ),
            Err(e) => CheckReport::failed(&self.name, e.to_string(), e.fix()),
        }
    }
}
