//! IAM error codes, HTTP statuses and transport failures, and how each maps to an [`Outcome`]: what
//! retries (honouring `Retry-After`), what fails, and what an operator should do about it.

use std::time::Duration;

use crate::connectors::Outcome;

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

    /// Whether IAM said the user, key, policy or login profile does not exist (`NoSuchEntity`).
    pub fn is_no_such_entity(&self) -> bool {
        self.code() == Some("NoSuchEntity")
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
