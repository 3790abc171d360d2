//! Sending a request: credentials per attempt (one retry with a fresh token after a 401), the
//! target's rate budget, and a capped read of the response body.

use super::*;

/// Largest response body read; anything longer is refused (a target is not trusted to be small).
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

impl HttpConnector {
    /// Add the instance's credentials (fetching an access token if the scheme needs one).
    pub(super) async fn authorize(
        &self,
        auth: &Auth,
        request: &mut reqwest::Request,
    ) -> Result<Option<TokenLease>, Outcome> {
        auth.apply(&self.client, request).await.map_err(|e| {
            let reason = self.redact(&e.to_string());
            if e.is_retryable() {
                Outcome::Retry {
                    after: e.retry_after(),
                    reason,
                }
            } else {
                Outcome::Failed { reason }
            }
        })
    }

    /// Send with credentials. A 401 to an access token is answered once: the token is dropped, a new one
    /// fetched and the request sent again; a second 401 is left to the step's outcome rules (terminal).
    pub(super) async fn send(
        &self,
        mut request: reqwest::Request,
        endpoint: Option<&str>,
    ) -> Result<Response, Outcome> {
        let (_, _, auth) = self.target(endpoint)?;
        let spare = if auth.refreshes() {
            request.try_clone()
        } else {
            None
        };
        let lease = self.authorize(auth, &mut request).await?;
        let resp = self.send_once(request).await?;
        if resp.status == StatusCode::UNAUTHORIZED {
            if let (Some(lease), Some(mut again)) = (lease, spare) {
                tracing::info!(connector = %self.name, "the target refused the access token; fetching a new one and retrying once");
                auth.invalidate(lease);
                self.authorize(auth, &mut again).await?;
                return self.send_once(again).await;
            }
        }
        Ok(resp)
    }

    pub(super) async fn send_once(&self, request: reqwest::Request) -> Result<Response, Outcome> {
        match self.gate.admit(tokio::time::Instant::now()) {
            Admission::After(wait) if wait.is_zero() => {}
            Admission::After(wait) => {
                tracing::info!(connector = %self.name, wait_ms = wait.as_millis() as u64,
                    "the target's rate budget is (nearly) spent; waiting before the next request");
                tokio::time::sleep(wait).await;
                crate::connectors::note_rate_wait(wait);
            }
            Admission::TooLong(after) => {
                tracing::info!(connector = %self.name, after_s = after.as_secs(),
                    "the target's rate budget is spent until a distant reset; retrying the action then");
                return Err(Outcome::Retry {
                    after: Some(after),
                    reason: format!(
                        "rate limit: the target's announced budget is spent until its reset in {} s",
                        after.as_secs().max(1)
                    ),
                });
            }
        }
        let mut resp = self.client.execute(request).await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            Outcome::Retry {
                after: None,
                reason: format!("{kind}: {}", self.redact(&error_chain(&e))),
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.gate.observe(
            status,
            &headers,
            tokio::time::Instant::now(),
            SystemTime::now(),
        );
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(Outcome::Failed {
                            reason: format!(
                                "response body larger than {MAX_BODY_BYTES} bytes (HTTP {status})"
                            ),
                        });
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Outcome::Retry {
                        after: None,
                        reason: format!("reading response failed: {}", error_chain(&e)),
                    });
                }
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let json = serde_json::from_slice(&buf).unwrap_or(Value::Null);
        Ok(Response {
            status,
            headers,
            json,
            text,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
