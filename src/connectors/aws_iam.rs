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

use crate::net::is_loopback_host;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{
    CheckReport, Connector, Memberships, Operation, OperationRequest, OperationResult, Outcome,
    Resolution,
};
use crate::config::{Problem, SecretRef};

/// Name of the inline deny-all policy `disable_account` attaches and `enable_account` removes.
pub const DENY_POLICY_NAME: &str = "deprovd-deny-all";
/// Name of the inline policy `revoke_sessions` attaches (replaced, with a newer cut-off, on each call).
pub const REVOKE_POLICY_NAME: &str = "deprovd-revoke-older-sessions";
/// The deny-all document: one explicit Deny overrides every Allow the user has.
pub const DENY_ALL_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"DeprovdDenyAll","Effect":"Deny","Action":"*","Resource":"*"}]}"#;

const IAM_VERSION: &str = "2010-05-08";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// IAM users have at most two access keys; this only stops a misbehaving server's endless pagination.
const MAX_PAGES: usize = 50;

/// What this connector can do.
pub const SUPPORTED: [Operation; 3] = [
    Operation::DisableAccount,
    Operation::EnableAccount,
    Operation::RevokeSessions,
];

/// `[connectors.<name>]` with `type = "aws_iam"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIamConfig {
    /// IAM Query API endpoint; IAM is global, so the default serves every commercial-partition account.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// SigV4 signing region; IAM in the `aws` partition signs with `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// deprovd's access key id, by reference (`env:NAME` / `file:PATH`).
    pub access_key_id: SecretRef,
    /// Its secret access key, by reference.
    pub secret_access_key: SecretRef,
    /// Session token of temporary credentials (assumed role), by reference.
    #[serde(default)]
    pub session_token: Option<SecretRef>,
    /// Limit for each IAM request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Calls in flight at once (also the executor's lane width). IAM throttles per account: keep it low.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retry budget; falls back to `[executor.retry].max_attempts`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

fn default_endpoint() -> String {
    "https://iam.amazonaws.com".to_string()
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_concurrency() -> usize {
    2
}

impl AwsIamConfig {
    /// Check every value without connecting; report each problem with its key path.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let https = self.endpoint.starts_with("https://");
        if !https && !self.endpoint.starts_with("http://") {
            problems.push(Problem::new(
                format!("{path}.endpoint"),
                format!(
                    "`{}` must be an https:// URL (e.g. https://iam.amazonaws.com)",
                    self.endpoint
                ),
            ));
        } else if !https && !is_loopback_host(&self.endpoint) {
            problems.push(Problem::new(
                format!("{path}.endpoint"),
                format!(
                    "`{}` is cleartext to a remote host; use https:// (http:// is allowed for loopback test servers only)",
                    self.endpoint
                ),
            ));
        } else if reqwest::Url::parse(&self.endpoint).is_err() {
            problems.push(Problem::new(
                format!("{path}.endpoint"),
                format!("`{}` is not a valid URL", self.endpoint),
            ));
        }
        if self.region.trim().is_empty()
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problems.push(Problem::new(
                format!("{path}.region"),
                format!(
                    "`{}` is not an AWS region name (e.g. us-east-1)",
                    self.region
                ),
            ));
        }
        super::validate_limits(
            path,
            self.timeout,
            self.concurrency,
            self.max_attempts,
            problems,
        );
    }
}

/// Validate, resolve the credentials, and build the connector.
pub fn build(name: &str, cfg: &AwsIamConfig) -> Result<Arc<dyn Connector>, Vec<Problem>> {
    let path = format!("connectors.{name}");
    let mut problems = Vec::new();
    cfg.validate(&path, &mut problems);
    let mut resolve = |key: &str, r: &SecretRef| match r.resolve() {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Problem::new(format!("{path}.{key}"), e));
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
    .map_err(|e| vec![Problem::new(format!("{path}.endpoint"), e)])?;
    Ok(Arc::new(AwsIamConnector {
        name: name.to_string(),
        client,
        permits: Semaphore::new(cfg.concurrency.max(1)),
    }))
}

/// Why an IAM call failed. Mapped to an [`Outcome`] by [`IamError::outcome`].
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// IAM answered with an error document.
    #[error("IAM {action} failed: HTTP {status} {code}: {message}")]
    Api {
        action: &'static str,
        status: u16,
        code: String,
        message: String,
        /// From a `Retry-After` header, when the server sent one.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or lost, timeout, TLS failure.
    #[error("IAM {action} request to {endpoint} failed: {source}")]
    Transport {
        action: &'static str,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// A success status with a body we cannot read.
    #[error("IAM {action} answered something unreadable: {detail}")]
    BadResponse {
        action: &'static str,
        detail: String,
    },
    /// The request could not be signed (should not happen with a validated config).
    #[error("cannot sign the IAM {action} request: {detail}")]
    Signing {
        action: &'static str,
        detail: String,
    },
    /// The subject cannot be an IAM user name.
    #[error("subject `{subject}` is not an IAM user name or user ARN: {why}")]
    BadSubject { subject: String, why: &'static str },
}

/// Error codes IAM (and AWS generally) uses for throttling.
const THROTTLING: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
];

impl IamError {
    /// The AWS error code, when IAM answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            IamError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: throttling, 5xx, lost connections, timeouts.
    /// Credentials, permissions and validation errors do not heal.
    pub fn is_retryable(&self) -> bool {
        match self {
            IamError::Api { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || THROTTLING.contains(&code.as_str())
                    || code == "ServiceUnavailable"
                    || code == "ServiceFailure"
                    || code == "InternalFailure"
            }
            IamError::Transport { source, .. } => {
                source.is_timeout() || source.is_connect() || source.is_request()
            }
            IamError::BadResponse { .. } => true,
            IamError::Signing { .. } | IamError::BadSubject { .. } => false,
        }
    }

    /// What an operator should do about a terminal failure.
    pub fn fix(&self) -> Option<&'static str> {
        match self.code()? {
            "AccessDenied" | "AccessDeniedException" => Some(
                "deprovd's IAM identity lacks a permission: attach the policy in docs/connectors/aws_iam.md",
            ),
            "InvalidClientTokenId" | "UnrecognizedClientException" => Some(
                "the access key id is unknown or deleted: check access_key_id (and session_token for temporary credentials)",
            ),
            "SignatureDoesNotMatch" => Some(
                "the secret access key does not match the access key id: check secret_access_key; also check region and that the clock is in sync",
            ),
            "ExpiredToken" | "RequestExpired" => Some(
                "the temporary credentials or the request time expired: refresh session_token, and sync the clock (NTP)",
            ),
            "IncompleteSignature" | "MissingAuthenticationToken" => {
                Some("the endpoint refused the signature format: check endpoint and region")
            }
            "LimitExceeded" => Some(
                "the user's inline policies exceed IAM's size quota: remove an unused inline policy from the user",
            ),
            _ => None,
        }
    }

    /// The outcome the executor should see.
    pub fn outcome(&self) -> Outcome {
        let reason = match self.fix() {
            Some(fix) => format!("{self}; fix: {fix}"),
            None => self.to_string(),
        };
        if self.is_retryable() {
            let after = match self {
                IamError::Api { retry_after, .. } => *retry_after,
                _ => None,
            };
            Outcome::Retry { after, reason }
        } else {
            Outcome::Failed { reason }
        }
    }
}

/// Percent-encode for a Query API form body: RFC 3986 unreserved characters stay, everything else is
/// `%XX` of its UTF-8 bytes (what AWS's own SDKs send).
fn encode(value: &str) -> String {
    crate::net::encode_unreserved(value)
}

/// Decode `%XX` (and `+` as space), as IAM URL-encodes the policy documents it returns.
fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The IAM user name a subject designates. See the module docs.
pub fn user_name_of(subject: &str) -> Result<String, IamError> {
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

// ---- IAM Query API responses (only the fields deprovd reads) ------------------------------------

/// `<X><member>…</member>…</X>`: how the Query API serializes lists.
#[derive(Debug, Deserialize)]
struct Members<T> {
    #[serde(default = "Vec::new")]
    member: Vec<T>,
}

impl<T> Default for Members<T> {
    fn default() -> Self {
        Members { member: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetUserResponse {
    get_user_result: GetUserResult,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetUserResult {
    user: IamUser,
}

/// An IAM user as `GetUser` describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IamUser {
    pub user_name: String,
    pub arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAccessKeysResponse {
    list_access_keys_result: ListAccessKeysResult,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAccessKeysResult {
    #[serde(default)]
    access_key_metadata: Members<AccessKey>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    marker: Option<String>,
}

/// One access key's metadata (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKey {
    pub access_key_id: String,
    /// `Active` or `Inactive`.
    pub status: String,
}

impl AccessKey {
    pub fn is_active(&self) -> bool {
        self.status == "Active"
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetUserPolicyResponse {
    get_user_policy_result: GetUserPolicyResult,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetUserPolicyResult {
    policy_document: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUserPoliciesResponse {
    list_user_policies_result: ListUserPoliciesResult,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUserPoliciesResult {
    #[serde(default)]
    policy_names: Members<String>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListGroupsForUserResponse {
    list_groups_for_user_result: ListGroupsForUserResult,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListGroupsForUserResult {
    #[serde(default)]
    groups: Members<IamGroup>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    marker: Option<String>,
}

/// An IAM group as `ListGroupsForUser` describes it (only its name is read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IamGroup {
    group_name: String,
}

/// The first `<Code>` and `<Message>` anywhere in an error document. IAM nests them in
/// `ErrorResponse/Error`, other AWS front ends in `ErrorResponse/Errors/Error`: reading by name copes with both.
fn parse_error(body: &str) -> Option<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(body);
    let (mut code, mut message) = (None::<String>, None::<String>);
    let mut current: Option<&'static str> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = match e.local_name().as_ref() {
                    b"Code" if code.is_none() => Some("code"),
                    b"Message" if message.is_none() => Some("message"),
                    _ => None,
                };
            }
            Ok(Event::Text(t)) => {
                if let Some(which) = current {
                    let text = t
                        .decode()
                        .ok()
                        .and_then(|s| quick_xml::escape::unescape(&s).ok().map(|u| u.into_owned()))
                        .unwrap_or_default();
                    match which {
                        "code" => code = Some(text.trim().to_string()),
                        _ => message = Some(text.trim().to_string()),
                    }
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    code.map(|c| (c, message.unwrap_or_default()))
}

fn parse<T: for<'de> Deserialize<'de>>(action: &'static str, body: &str) -> Result<T, IamError> {
    quick_xml::de::from_str(body).map_err(|e| IamError::BadResponse {
        action,
        detail: e.to_string(),
    })
}

// ---- the signed client ---------------------------------------------------------------------------

/// A SigV4-signing IAM Query API client. Public so operators' tooling and the integration tests can
/// make the same signed calls the connector makes.
pub struct IamClient {
    http: reqwest::Client,
    /// Endpoint with a trailing `/` (the Query API's only path).
    endpoint: String,
    region: String,
    /// The key pair (and token). `Debug` of `Credentials` redacts the secret.
    credentials: Credentials,
}

impl IamClient {
    /// A client for `endpoint`, signing for `region` with the given key pair (and session token).
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key_id: &SecretString,
        secret_access_key: &SecretString,
        session_token: Option<&SecretString>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = crate::net::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| crate::net::ClientError::from(e).to_string())?;
        let credentials = Credentials::new(
            access_key_id.expose_secret().trim(),
            secret_access_key.expose_secret().trim(),
            session_token.map(|t| t.expose_secret().trim().to_string()),
            None,
            "deprovd-config",
        );
        let mut endpoint = endpoint.trim().to_string();
        if !endpoint.ends_with('/') {
            endpoint.push('/');
        }
        Ok(Self {
            http,
            endpoint,
            region: region.to_string(),
            credentials,
        })
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` when set) for a POST of `body`.
    fn sign(&self, action: &'static str, body: &str) -> Result<Vec<(String, String)>, IamError> {
        let signing_err = |detail: String| IamError::Signing { action, detail };
        // The signer takes the smithy `Identity` the credentials convert into (an `Arc` clone).
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("iam")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| signing_err(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &self.endpoint,
            [("content-type", CONTENT_TYPE)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| signing_err(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| signing_err(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Call `action` with `params`; the XML body on success, the parsed error otherwise.
    pub async fn call(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
    ) -> Result<String, IamError> {
        let mut body = format!("Action={action}&Version={IAM_VERSION}");
        for (k, v) in params {
            body.push('&');
            body.push_str(&encode(k));
            body.push('=');
            body.push_str(&encode(v));
        }
        let mut req = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE);
        for (k, v) in self.sign(action, &body)? {
            req = req.header(k, v);
        }
        let transport = |source| IamError::Transport {
            action,
            endpoint: self.endpoint.clone(),
            source,
        };
        let resp = req.body(body).send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(text);
        }
        let (code, message) = parse_error(&text).unwrap_or_else(|| {
            (
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .replace(' ', ""),
                text.chars().take(200).collect(),
            )
        });
        Err(IamError::Api {
            action,
            status: status.as_u16(),
            code,
            message,
            retry_after,
        })
    }

    /// `GetUser`; `None` when IAM says `NoSuchEntity`.
    pub async fn get_user(&self, user: &str) -> Result<Option<IamUser>, IamError> {
        match self.call("GetUser", &[("UserName", user)]).await {
            Ok(body) => Ok(Some(
                parse::<GetUserResponse>("GetUser", &body)?
                    .get_user_result
                    .user,
            )),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every access key of `user` (`ListAccessKeys`, following `Marker`).
    pub async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKey>, IamError> {
        let mut keys = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![("UserName", user)];
            if let Some(m) = marker.as_deref() {
                params.push(("Marker", m));
            }
            let body = self.call("ListAccessKeys", &params).await?;
            let page =
                parse::<ListAccessKeysResponse>("ListAccessKeys", &body)?.list_access_keys_result;
            keys.extend(page.access_key_metadata.member);
            match (page.is_truncated, page.marker) {
                (true, Some(m)) if !m.is_empty() => marker = Some(m),
                _ => return Ok(keys),
            }
        }
        Err(IamError::BadResponse {
            action: "ListAccessKeys",
            detail: format!("still truncated after {MAX_PAGES} pages"),
        })
    }

    /// Names of `user`'s inline policies (`ListUserPolicies`, following `Marker`).
    pub async fn list_user_policies(&self, user: &str) -> Result<Vec<String>, IamError> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![("UserName", user)];
            if let Some(m) = marker.as_deref() {
                params.push(("Marker", m));
            }
            let body = self.call("ListUserPolicies", &params).await?;
            let page = parse::<ListUserPoliciesResponse>("ListUserPolicies", &body)?
                .list_user_policies_result;
            names.extend(page.policy_names.member);
            match (page.is_truncated, page.marker) {
                (true, Some(m)) if !m.is_empty() => marker = Some(m),
                _ => return Ok(names),
            }
        }
        Err(IamError::BadResponse {
            action: "ListUserPolicies",
            detail: format!("still truncated after {MAX_PAGES} pages"),
        })
    }

    /// Names of the IAM groups `user` belongs to (`ListGroupsForUser`, following `Marker`).
    pub async fn list_groups_for_user(&self, user: &str) -> Result<Vec<String>, IamError> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![("UserName", user)];
            if let Some(m) = marker.as_deref() {
                params.push(("Marker", m));
            }
            let body = self.call("ListGroupsForUser", &params).await?;
            let page = parse::<ListGroupsForUserResponse>("ListGroupsForUser", &body)?
                .list_groups_for_user_result;
            names.extend(page.groups.member.into_iter().map(|g| g.group_name));
            match (page.is_truncated, page.marker) {
                (true, Some(m)) if !m.is_empty() => marker = Some(m),
                _ => return Ok(names),
            }
        }
        Err(IamError::BadResponse {
            action: "ListGroupsForUser",
            detail: format!("still truncated after {MAX_PAGES} pages"),
        })
    }

    /// The inline policy document `name` of `user` (URL-decoded), `None` if absent.
    pub async fn get_user_policy(
        &self,
        user: &str,
        name: &str,
    ) -> Result<Option<String>, IamError> {
        match self
            .call("GetUserPolicy", &[("UserName", user), ("PolicyName", name)])
            .await
        {
            Ok(body) => {
                let doc = parse::<GetUserPolicyResponse>("GetUserPolicy", &body)?
                    .get_user_policy_result
                    .policy_document;
                let doc = doc.trim();
                Ok(Some(if doc.starts_with('{') {
                    doc.to_string()
                } else {
                    decode(doc)
                }))
            }
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `user` has a console password (`GetLoginProfile`).
    pub async fn has_login_profile(&self, user: &str) -> Result<bool, IamError> {
        match self.call("GetLoginProfile", &[("UserName", user)]).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `UpdateAccessKey` to `Active` or `Inactive`.
    pub async fn set_key_status(
        &self,
        user: &str,
        key_id: &str,
        active: bool,
    ) -> Result<(), IamError> {
        let status = if active { "Active" } else { "Inactive" };
        self.call(
            "UpdateAccessKey",
            &[
                ("UserName", user),
                ("AccessKeyId", key_id),
                ("Status", status),
            ],
        )
        .await
        .map(|_| ())
    }

    /// `PutUserPolicy` (creates or replaces the inline policy).
    pub async fn put_user_policy(
        &self,
        user: &str,
        name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        self.call(
            "PutUserPolicy",
            &[
                ("UserName", user),
                ("PolicyName", name),
                ("PolicyDocument", document),
            ],
        )
        .await
        .map(|_| ())
    }

    /// `DeleteUserPolicy`; `false` when it was not there.
    pub async fn delete_user_policy(&self, user: &str, name: &str) -> Result<bool, IamError> {
        match self
            .call(
                "DeleteUserPolicy",
                &[("UserName", user), ("PolicyName", name)],
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DeleteLoginProfile`; `false` when there was none.
    pub async fn delete_login_profile(&self, user: &str) -> Result<bool, IamError> {
        match self.call("DeleteLoginProfile", &[("UserName", user)]).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The policy `revoke_sessions` attaches: deny everything to tokens issued before `cutoff`.
pub fn revoke_older_sessions_policy(cutoff: chrono::DateTime<chrono::Utc>) -> String {
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

// ---- the connector -------------------------------------------------------------------------------

/// The connector instance.
pub struct AwsIamConnector {
    name: String,
    client: IamClient,
    /// Bounds calls in flight (IAM throttles per account).
    permits: Semaphore,
}

fn result(
    outcome: Outcome,
    pre_state: Option<Value>,
    summary: impl Into<String>,
) -> OperationResult {
    OperationResult {
        outcome,
        pre_state,
        summary: summary.into(),
    }
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
            return Ok(result(
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
                Err(e) if e.code() == Some("NoSuchEntity") => {}
                Err(e) => return Ok(result(e.outcome(), Some(pre), "")),
            }
        }
        let deleted = match self.client.delete_login_profile(user).await {
            Ok(d) => d,
            Err(e) => return Ok(result(e.outcome(), Some(pre), "")),
        };
        Ok(result(
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
            return Ok(result(
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
                Err(e) if e.code() == Some("NoSuchEntity") => {}
                Err(e) => return Ok(result(e.outcome(), Some(pre), "")),
            }
        }
        if policy.is_some()
            && let Err(e) = self.client.delete_user_policy(user, DENY_POLICY_NAME).await
        {
            return Ok(result(e.outcome(), Some(pre), ""));
        }
        Ok(result(
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
        Ok(result(
            Outcome::Done,
            None,
            format!(
                "{user}: {REVOKE_POLICY_NAME} denies tokens issued before {}",
                now.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ))
    }

    async fn run(&self, req: &OperationRequest) -> Result<OperationResult, IamError> {
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
            op => Ok(OperationResult::new(
                Outcome::Failed {
                    reason: format!("{op} is not supported by aws_iam connectors"),
                },
                "",
            )),
        }
    }
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
            return OperationResult::new(
                Outcome::Failed {
                    reason: format!(
                        "{} is not supported by the aws_iam connector `{}`",
                        request.operation, self.name
                    ),
                },
                "",
            );
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return OperationResult::new(
                Outcome::Failed {
                    reason: "connector is shutting down".into(),
                },
                "",
            );
        };
        self.run(request)
            .await
            .unwrap_or_else(|e| OperationResult::new(e.outcome(), ""))
    }

    fn lists_groups(&self) -> bool {
        true
    }

    /// Read-only: the names of the IAM groups the user is in (`ListGroupsForUser`, every page), for
    /// `[guards] protected_groups`. A user IAM does not know is in no group here.
    /// The IAM user name the action would act on, derived without a call (IAM names users by
    /// name; a user ARN names its user by its last path segment).
    async fn resolve_account(&self, subject: &str) -> Resolution {
        match user_name_of(subject) {
            Ok(name) => Resolution::Account(vec![name]),
            // Execution refuses it too: nothing will be acted on.
            Err(_) => Resolution::NotFound,
        }
    }

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
            Err(e) if e.code() == Some("NoSuchEntity") => Memberships::NotFound,
            Err(e) => Memberships::Unavailable(e.to_string()),
        }
    }

    /// Read-only: `GetUser` on a user name nobody has. `NoSuchEntity` proves the endpoint is reachable,
    /// the signature and key are accepted, and `iam:GetUser` is granted on users.
    async fn check(&self) -> CheckReport {
        let report = |ok: bool, detail: String, fix: Option<&str>| CheckReport {
            connector: self.name.clone(),
            ok,
            detail,
            fix: fix.map(str::to_string),
        };
        match self.client.get_user("deprovd-preflight-probe").await {
            Ok(_) => report(
                true,
                format!(
                    "{}: credentials accepted, iam:GetUser permitted (write permissions cannot be checked without writing)",
                    self.client.endpoint
                ),
                None,
            ),
            Err(e) => report(false, e.to_string(), e.fix()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        access_key_id = "env:AWS_KEY"
        secret_access_key = "env:AWS_SECRET"
    "#;

    fn cfg(src: &str) -> AwsIamConfig {
        toml::from_str(src).expect("valid test config")
    }

    fn problems(c: &AwsIamConfig) -> Vec<Problem> {
        let mut p = Vec::new();
        c.validate("connectors.aws", &mut p);
        p
    }

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let c = cfg(MINIMAL);
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!(c.endpoint, "https://iam.amazonaws.com");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.concurrency, 2);
        assert!(c.session_token.is_none());
    }

    #[test]
    fn unknown_keys_and_inline_secrets_are_refused() {
        assert!(toml::from_str::<AwsIamConfig>(&format!("{MINIMAL}\nbogus = 1")).is_err());
        let inline = MINIMAL.replace("env:AWS_SECRET", "wJalrXUtnFEMI");
        assert!(toml::from_str::<AwsIamConfig>(&inline).is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let c = cfg(&format!(
            "{MINIMAL}\nendpoint = \"http://iam.example.org\"\nregion = \"US East\"\ntimeout = \"0s\"\nconcurrency = 0\nmax_attempts = 0"
        ));
        let paths: Vec<String> = problems(&c).into_iter().map(|p| p.path).collect();
        for want in [
            "endpoint",
            "region",
            "timeout",
            "concurrency",
            "max_attempts",
        ] {
            assert!(
                paths.contains(&format!("connectors.aws.{want}")),
                "{want} missing from {paths:?}"
            );
        }
        let local = cfg(&format!("{MINIMAL}\nendpoint = \"http://127.0.0.1:5000\""));
        assert!(problems(&local).is_empty());
    }

    #[test]
    fn build_reports_unset_credentials_by_path() {
        let c = cfg(&MINIMAL
            .replace("AWS_KEY", "DEPROVD_TEST_IAM_UNSET_KEY_91c2")
            .replace("AWS_SECRET", "DEPROVD_TEST_IAM_UNSET_SECRET_91c2"));
        let Err(p) = build("aws", &c) else {
            panic!("build must fail without credentials");
        };
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "connectors.aws.access_key_id",
                "connectors.aws.secret_access_key"
            ]
        );
    }

    #[test]
    fn subjects_are_user_names_or_user_arns() {
        assert_eq!(user_name_of("alice").unwrap(), "alice");
        // An email is a legal IAM user name and is taken whole, not cut to its local part.
        assert_eq!(
            user_name_of("alice@example.org").unwrap(),
            "alice@example.org"
        );
        assert_eq!(
            user_name_of("arn:aws:iam::123456789012:user/eng/alice").unwrap(),
            "alice"
        );
        assert_eq!(
            user_name_of("arn:aws-us-gov:iam::123456789012:user/bob").unwrap(),
            "bob"
        );
        assert!(user_name_of("arn:aws:iam::123456789012:role/admin").is_err());
        assert!(user_name_of("arn:aws:s3:::bucket").is_err());
        assert!(user_name_of("").is_err());
        assert!(user_name_of("a b").is_err());
        assert!(user_name_of("x&Action=DeleteUser").is_err());
        assert!(user_name_of(&"a".repeat(65)).is_err());
    }

    #[test]
    fn form_encoding_is_rfc3986() {
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("{\"a\": \"*\"}"), "%7B%22a%22%3A%20%22%2A%22%7D");
        assert_eq!(encode("é&="), "%C3%A9%26%3D");
        assert_eq!(
            decode(&encode("{\"Effect\": \"Deny\"} é")),
            "{\"Effect\": \"Deny\"} é"
        );
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn iam_responses_parse() {
        let body = r#"<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
          <ListAccessKeysResult>
            <UserName>bob</UserName>
            <AccessKeyMetadata>
              <member><UserName>bob</UserName><AccessKeyId>AKIA1</AccessKeyId><Status>Active</Status><CreateDate>2026-01-01T00:00:00Z</CreateDate></member>
              <member><UserName>bob</UserName><AccessKeyId>AKIA2</AccessKeyId><Status>Inactive</Status></member>
            </AccessKeyMetadata>
            <IsTruncated>true</IsTruncated>
            <Marker>next</Marker>
          </ListAccessKeysResult>
          <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
        </ListAccessKeysResponse>"#;
        let r = parse::<ListAccessKeysResponse>("ListAccessKeys", body)
            .unwrap()
            .list_access_keys_result;
        assert_eq!(r.access_key_metadata.member.len(), 2);
        assert!(r.access_key_metadata.member[0].is_active());
        assert!(!r.access_key_metadata.member[1].is_active());
        assert!(r.is_truncated);
        assert_eq!(r.marker.as_deref(), Some("next"));

        let empty = r#"<ListAccessKeysResponse><ListAccessKeysResult><AccessKeyMetadata/><IsTruncated>false</IsTruncated></ListAccessKeysResult></ListAccessKeysResponse>"#;
        let r = parse::<ListAccessKeysResponse>("ListAccessKeys", empty)
            .unwrap()
            .list_access_keys_result;
        assert!(r.access_key_metadata.member.is_empty());
        assert!(!r.is_truncated);
    }

    #[test]
    fn error_documents_parse_in_both_shapes() {
        let iam = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with name x cannot be found.</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        assert_eq!(
            parse_error(iam),
            Some((
                "NoSuchEntity".into(),
                "The user with name x cannot be found.".into()
            ))
        );
        let nested = r#"<?xml version="1.0"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></Errors></ErrorResponse>"#;
        assert_eq!(parse_error(nested).unwrap().0, "InvalidClientTokenId");
        assert_eq!(parse_error("not xml at all"), None);
    }

    fn api(status: u16, code: &str) -> IamError {
        IamError::Api {
            action: "UpdateAccessKey",
            status,
            code: code.into(),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn error_codes_map_to_outcomes() {
        for (status, code) in [
            (400, "Throttling"),
            (503, "ServiceUnavailable"),
            (500, "InternalFailure"),
        ] {
            assert!(
                matches!(api(status, code).outcome(), Outcome::Retry { .. }),
                "{code}"
            );
        }
        for code in [
            "AccessDenied",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
        ] {
            let Outcome::Failed { reason } = api(403, code).outcome() else {
                panic!("{code} must be terminal");
            };
            assert!(reason.contains("fix:"), "{reason}");
        }
        let throttled = IamError::Api {
            action: "UpdateAccessKey",
            status: 400,
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        let Outcome::Retry { after, .. } = throttled.outcome() else {
            panic!("throttling retries");
        };
        assert_eq!(after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn revoke_policy_uses_token_issue_time() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-26T07:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let doc: Value = serde_json::from_str(&revoke_older_sessions_policy(t)).unwrap();
        assert_eq!(
            doc["Statement"][0]["Condition"]["DateLessThan"]["aws:TokenIssueTime"],
            "2026-11-26T07:00:00Z"
        );
        assert_eq!(doc["Statement"][0]["Effect"], "Deny");
        let deny: Value = serde_json::from_str(DENY_ALL_POLICY).unwrap();
        assert_eq!(deny["Statement"][0]["Action"], "*");
    }
}
