//! The IAM Query API transport: form encoding, SigV4 signing, the XML answers (only the fields
//! deprovd reads), error documents, and one typed method per IAM call.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::IamError;

const IAM_VERSION: &str = "2010-05-08";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// IAM users have at most two access keys; this only stops a misbehaving server's endless pagination.
const MAX_PAGES: usize = 50;

/// Percent-encode for a Query API form body: RFC 3986 unreserved characters stay, everything else is
/// `%XX` of its UTF-8 bytes (what AWS's own SDKs send).
pub(super) fn encode(value: &str) -> String {
    crate::net::encode_unreserved(value)
}

/// Decode `%XX` (and `+` as space), as IAM URL-encodes the policy documents it returns.
pub(super) fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

// ---- IAM Query API responses (only the fields deprovd reads) ------------------------------------

/// `<X><member>…</member>…</X>`: how the Query API serializes lists.
#[derive(Debug, Deserialize)]
pub(super) struct Members<T> {
    #[serde(default = "Vec::new")]
    pub(super) member: Vec<T>,
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

/// The answer of a `Marker`-paginated list call (`ListAccessKeys`, `ListUserPolicies`,
/// `ListGroupsForUser`): `<{Action}Response><{Action}Result>…</{Action}Result></{Action}Response>`.
/// The root element's name is not read; the result's is the call's, hence the aliases.
#[derive(Debug, Deserialize)]
pub(super) struct ListResponse<T> {
    #[serde(
        alias = "ListAccessKeysResult",
        alias = "ListUserPoliciesResult",
        alias = "ListGroupsForUserResult"
    )]
    pub(super) result: ListResult<T>,
}

/// One page of a list call: its items, and where the next page starts. The list element is named
/// after what it lists (`AccessKeyMetadata`, `PolicyNames`, `Groups`), hence the aliases.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListResult<T> {
    #[serde(
        default = "Members::default",
        alias = "AccessKeyMetadata",
        alias = "PolicyNames",
        alias = "Groups"
    )]
    pub(super) items: Members<T>,
    #[serde(default)]
    pub(super) is_truncated: bool,
    #[serde(default)]
    pub(super) marker: Option<String>,
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

/// An IAM group as `ListGroupsForUser` describes it (only its name is read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct IamGroup {
    pub(super) group_name: String,
}

/// The first `<Code>` and `<Message>` anywhere in an error document. IAM nests them in
/// `ErrorResponse/Error`, other AWS front ends in `ErrorResponse/Errors/Error`: reading by name copes with both.
pub(super) fn parse_error(body: &str) -> Option<(String, String)> {
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

pub(super) fn parse<T: for<'de> Deserialize<'de>>(
    action: &'static str,
    body: &str,
) -> Result<T, IamError> {
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
    pub(super) endpoint: String,
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
    ) -> Result<Self, crate::net::ClientError> {
        let http = crate::net::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
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

    /// [`call`](Self::call), with IAM's `NoSuchEntity` (no such user, key, policy or login profile)
    /// as `None`.
    async fn call_if_exists(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
    ) -> Result<Option<String>, IamError> {
        match self.call(action, params).await {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.is_no_such_entity() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GetUser`; `None` when IAM says `NoSuchEntity`.
    pub async fn get_user(&self, user: &str) -> Result<Option<IamUser>, IamError> {
        let Some(body) = self
            .call_if_exists("GetUser", &[("UserName", user)])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(
            parse::<GetUserResponse>("GetUser", &body)?
                .get_user_result
                .user,
        ))
    }

    /// Every item of the `Marker`-paginated list `action` for `user`.
    async fn list_all<T: for<'de> Deserialize<'de>>(
        &self,
        action: &'static str,
        user: &str,
    ) -> Result<Vec<T>, IamError> {
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![("UserName", user)];
            if let Some(m) = marker.as_deref() {
                params.push(("Marker", m));
            }
            let page = parse::<ListResponse<T>>(action, &self.call(action, &params).await?)?.result;
            items.extend(page.items.member);
            match (page.is_truncated, page.marker) {
                (true, Some(m)) if !m.is_empty() => marker = Some(m),
                _ => return Ok(items),
            }
        }
        Err(IamError::BadResponse {
            action,
            detail: format!("still truncated after {MAX_PAGES} pages"),
        })
    }

    /// Every access key of `user` (`ListAccessKeys`, following `Marker`).
    pub async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKey>, IamError> {
        self.list_all("ListAccessKeys", user).await
    }

    /// Names of `user`'s inline policies (`ListUserPolicies`, following `Marker`).
    pub async fn list_user_policies(&self, user: &str) -> Result<Vec<String>, IamError> {
        self.list_all("ListUserPolicies", user).await
    }

    /// Names of the IAM groups `user` belongs to (`ListGroupsForUser`, following `Marker`).
    pub async fn list_groups_for_user(&self, user: &str) -> Result<Vec<String>, IamError> {
        let groups: Vec<IamGroup> = self.list_all("ListGroupsForUser", user).await?;
        Ok(groups.into_iter().map(|g| g.group_name).collect())
    }

    /// The inline policy document `name` of `user` (URL-decoded), `None` if absent.
    pub async fn get_user_policy(
        &self,
        user: &str,
        name: &str,
    ) -> Result<Option<String>, IamError> {
        let params = [("UserName", user), ("PolicyName", name)];
        let Some(body) = self.call_if_exists("GetUserPolicy", &params).await? else {
            return Ok(None);
        };
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

    /// Whether `user` has a console password (`GetLoginProfile`).
    pub async fn has_login_profile(&self, user: &str) -> Result<bool, IamError> {
        let found = self
            .call_if_exists("GetLoginProfile", &[("UserName", user)])
            .await?;
        Ok(found.is_some())
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
        let params = [("UserName", user), ("PolicyName", name)];
        let found = self.call_if_exists("DeleteUserPolicy", &params).await?;
        Ok(found.is_some())
    }

    /// `DeleteLoginProfile`; `false` when there was none.
    pub async fn delete_login_profile(&self, user: &str) -> Result<bool, IamError> {
        let found = self
            .call_if_exists("DeleteLoginProfile", &[("UserName", user)])
            .await?;
        Ok(found.is_some())
    }
}
