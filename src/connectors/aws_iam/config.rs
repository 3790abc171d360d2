//! `[connectors.<name>]` with `type = "aws_iam"`: the config struct and its pure validation, which
//! reports every problem before anything connects.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Problem, SecretRef};
use crate::net::is_loopback_host;

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
    #[serde(
        default = "crate::connectors::default_timeout",
        with = "humantime_serde"
    )]
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
        crate::connectors::validate_limits(
            path,
            self.timeout,
            self.concurrency,
            self.max_attempts,
            problems,
        );
    }
}
