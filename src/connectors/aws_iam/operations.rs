//! What each operation does to an IAM user: the subject → user name rule, containment (deny-all,
//! keys, console password), its reversal, and session revocation, each reading before it writes.

use serde_json::{Value, json};

use super::{
    AccessKey, AwsIamConnector, DENY_ALL_POLICY, DENY_POLICY_NAME, IamError, REVOKE_POLICY_NAME,
};
use crate::connectors::{Operation, OperationRequest, OperationResult, Outcome};

/// The IAM user name a subject designates. See the module docs.
pub(crate) fn user_name_of(subject: &str) -> Result<String, IamError> {
    let bad = |why| IamError::BadSubject {
        subject: subject.to_string(),
        why,
    };
    // The one lookup form (NFKC, controls refused, bounded length): what the guards checked, so a
    // fullwidth `ｂｒｅａｋｇｌａｓｓ` is the user `breakglass` here as it is to the guards.
    let subject = crate::identity::lookup_form(subject)
        .map_err(|_| bad("control or invisible characters, or longer than any account name"))?;
    let subject = subject.as_ref();
    let name = if let Some(rest) = subject.strip_prefix("arn:") {
        // arn:PARTITION:iam::ACCOUNT:user/PATH/NAME
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if parts.len() != 5 || parts[1] != "iam" {
            return Err(bad("an ARN must look like arn:aws:iam::ACCOUNT:user/NAME"));
        }
        let Some(resource) = parts[4].strip_prefix("user/") else {
            return Err(bad(
                "only IAM user ARNs (…:user/NAME) can be contained by this connector",
            ));
        };
        resource.rsplit('/').next().unwrap_or("")
    } else {
        subject
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("IAM user names are 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(bad(
            "IAM user names use only letters, digits and + = , . @ _ -",
        ));
    }
    Ok(name.to_string())
}

/// The policy `revoke_sessions` attaches: deny everything to tokens issued before `cutoff`.
pub(crate) fn revoke_older_sessions_policy(cutoff: chrono::DateTime<chrono::Utc>) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DeprovdRevokeOlderSessions",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {
                "aws:TokenIssueTime": cutoff.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            }}
        }]
    })
    .to_string()
}

/// Whether a stored document is our deny-all (compared as JSON: IAM may reformat what it stores).
fn is_deny_all(document: &str) -> bool {
    let parsed = |d: &str| serde_json::from_str::<Value>(d).ok();
    parsed(document).is_some() && parsed(document) == parsed(DENY_ALL_POLICY)
}

/// Key ids recorded under `keys_deactivated` in a pre-state.
fn recorded_keys(pre: Option<&Value>) -> Vec<String> {
    pre.and_then(|p| p.get("keys_deactivated"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl AwsIamConnector {
    /// Contain: deny-all first (blocks every API call at once), then keys, then the console password.
    async fn disable(
        &self,
        user: &str,
        req: &OperationRequest,
    ) -> Result<OperationResult, IamError> {
        let keys = self.client.list_access_keys(user).await?;
        let policy = self.client.get_user_policy(user, DENY_POLICY_NAME).await?;
        let had_profile = self.client.has_login_profile(user).await?;
        let active: Vec<String> = keys
            .iter()
            .filter(|k| k.is_active())
            .map(|k| k.access_key_id.clone())
            .collect();
        // A retry keeps what the first attempt recorded: by now those keys may be inactive because of us.
        let mut deactivated = recorded_keys(req.pre_state.as_ref());
        for k in &active {
            if !deactivated.contains(k) {
                deactivated.push(k.clone());
            }
        }
        let had_login_profile = had_profile
            || req
                .pre_state
                .as_ref()
                .and_then(|p| p.get("had_login_profile"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let pre = json!({
            "user": user,
            "keys_deactivated": deactivated,
            "had_login_profile": had_login_profile,
            "policy_attached": true,
        });
        let policy_in_place = policy.as_deref().is_some_and(is_deny_all);
        if active.is_empty() && policy_in_place && !had_profile {
            return Ok(OperationResult::with_pre_state(
                Outcome::AlreadyDone,
                Some(pre),
                format!("{user}: no active key, {DENY_POLICY_NAME} attached, no console password"),
            ));
        }
        if !policy_in_place {
            self.client
                .put_user_policy(user, DENY_POLICY_NAME, DENY_ALL_POLICY)
                .await?;
        }
        for k in &active {
            match self.client.set_key_status(user, k, false).await {
                Ok(()) => {}
                // Deleted in between: it can no longer be used either.
                Err(e) if e.is_no_such_entity() => {}
                Err(e) => return Ok(OperationResult::with_pre_state(e.outcome(), Some(pre), "")),
            }
        }
        let deleted = match self.client.delete_login_profile(user).await {
            Ok(d) => d,
            Err(e) => return Ok(OperationResult::with_pre_state(e.outcome(), Some(pre), "")),
        };
        Ok(OperationResult::with_pre_state(
            Outcome::Done,
            Some(pre),
            format!(
                "{user}: {DENY_POLICY_NAME} attached, {} key(s) deactivated{}",
                active.len(),
                if deleted {
                    ", console password deleted (cannot be restored; an admin must set a new one)"
                } else {
                    ""
                }
            ),
        ))
    }

    /// Restore: reactivate exactly the recorded keys, remove the deny-all.
    async fn enable(
        &self,
        user: &str,
        req: &OperationRequest,
    ) -> Result<OperationResult, IamError> {
        let wanted = recorded_keys(req.pre_state.as_ref());
        let keys = self.client.list_access_keys(user).await?;
        let policy = self.client.get_user_policy(user, DENY_POLICY_NAME).await?;
        let pre = json!({
            "user": user,
            "keys": keys.iter().map(|k| json!({"id": k.access_key_id, "status": k.status})).collect::<Vec<_>>(),
            "policy_attached": policy.is_some(),
        });
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !keys.iter().any(|k| &k.access_key_id == *w))
            .collect();
        let to_activate: Vec<&AccessKey> = keys
            .iter()
            .filter(|k| !k.is_active() && wanted.contains(&k.access_key_id))
            .collect();
        let mut notes = Vec::new();
        if !missing.is_empty() {
            notes.push(format!(
                "recorded key(s) no longer exist: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if req.pre_state.is_none() {
            notes.push("no pre-state: no key reactivated".to_string());
        }
        if req
            .pre_state
            .as_ref()
            .and_then(|p| p.get("had_login_profile"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            notes.push(
                "the deleted console password cannot be restored: an admin must set a new one (CreateLoginProfile)"
                    .to_string(),
            );
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        };
        if to_activate.is_empty() && policy.is_none() {
            return Ok(OperationResult::with_pre_state(
                Outcome::AlreadyDone,
                Some(pre),
                format!("{user}: recorded keys active, {DENY_POLICY_NAME} absent{notes}"),
            ));
        }
        for k in &to_activate {
            match self
                .client
                .set_key_status(user, &k.access_key_id, true)
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_no_such_entity() => {}
                Err(e) => return Ok(OperationResult::with_pre_state(e.outcome(), Some(pre), "")),
            }
        }
        if policy.is_some()
            && let Err(e) = self.client.delete_user_policy(user, DENY_POLICY_NAME).await
        {
            return Ok(OperationResult::with_pre_state(e.outcome(), Some(pre), ""));
        }
        Ok(OperationResult::with_pre_state(
            Outcome::Done,
            Some(pre),
            format!(
                "{user}: {} key(s) reactivated, {DENY_POLICY_NAME} removed{notes}",
                to_activate.len()
            ),
        ))
    }

    /// Deny every token issued before now; sessions started afterwards (and long-term keys) still work.
    async fn revoke_sessions(&self, user: &str) -> Result<OperationResult, IamError> {
        let now = chrono::Utc::now();
        self.client
            .put_user_policy(user, REVOKE_POLICY_NAME, &revoke_older_sessions_policy(now))
            .await?;
        Ok(OperationResult::with_pre_state(
            Outcome::Done,
            None,
            format!(
                "{user}: {REVOKE_POLICY_NAME} denies tokens issued before {}",
                now.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ))
    }

    pub(super) async fn run(&self, req: &OperationRequest) -> Result<OperationResult, IamError> {
        let user = user_name_of(&req.subject)?;
        if self.client.get_user(&user).await?.is_none() {
            return Ok(OperationResult::new(
                Outcome::NotFound,
                format!("no IAM user named `{user}`"),
            ));
        }
        match req.operation {
            Operation::DisableAccount => self.disable(&user, req).await,
            Operation::EnableAccount => self.enable(&user, req).await,
            Operation::RevokeSessions => self.revoke_sessions(&user).await,
            op => Ok(OperationResult::failed(format!(
                "{op} is not supported by aws_iam connectors"
            ))),
        }
    }
}
