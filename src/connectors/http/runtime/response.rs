//! Reading a response: status (and body, header, condition) → step outcome, the retry decision for
//! rate-limited 403s, the target's own error text, and the values a step extracts.

use super::*;

impl HttpConnector {
    /// The step's outcome for `resp`: spec rules first, then the defaults. The full [`Outcome`] is
    /// returned for terminal ones.
    pub(super) fn classify(
        &self,
        step: &CompiledStep,
        resp: &Response,
        ctx: &Map<String, Value>,
    ) -> (StepOutcome, Option<Outcome>) {
        let code = resp.status.as_u16();
        for rule in &step.outcomes {
            if !rule
                .status
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&code))
            {
                continue;
            }
            if let Some((ptr, test)) = &rule.body {
                let v = pointer_get(&resp.json, ptr);
                let ok = match test {
                    BodyTest::Equals(want) => v.as_ref() == Some(want),
                    BodyTest::Exists(e) => v.as_ref().is_some_and(|v| !v.is_null()) == *e,
                };
                if !ok {
                    continue;
                }
            }
            if let Some((name, test)) = &rule.header {
                let v = resp
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim);
                let ok = match test {
                    HeaderTest::Equals(want) => v == Some(want.as_str()),
                    HeaderTest::Exists(e) => v.is_some() == *e,
                };
                if !ok {
                    continue;
                }
            }
            if let Some(w) = &rule.when {
                match self.truthy(w, ctx) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(o) => return (StepOutcome::Failed, Some(o)),
                }
            }
            let message = match &rule.message {
                Some(t) => match self.render_text(t, ctx) {
                    Ok(m) => m,
                    Err(o) => return (StepOutcome::Failed, Some(o)),
                },
                None => self.target_message(resp),
            };
            return (
                rule.outcome,
                Some(self.full_outcome(rule.outcome, resp, message)),
            );
        }
        let mut default = default_outcome(resp.status);
        if default == StepOutcome::Failed && self.is_rate_limited(resp) {
            default = StepOutcome::Retry;
        }
        if default == StepOutcome::Continue {
            return (default, None);
        }
        let message = self.target_message(resp);
        (default, Some(self.full_outcome(default, resp, message)))
    }

    /// A 403 that means "slow down", not "forbidden": Google's `rateLimitExceeded` /
    /// `userRateLimitExceeded` (and `RESOURCE_EXHAUSTED`) error reasons, GitHub's secondary rate limit
    /// (403 with `Retry-After`, or with the remaining budget at 0).
    pub(super) fn is_rate_limited(&self, resp: &Response) -> bool {
        if resp.status != StatusCode::FORBIDDEN {
            return false;
        }
        let reasons = resp
            .json
            .pointer("/error/errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("reason").and_then(Value::as_str));
        let google = reasons
            .chain(resp.json.pointer("/error/status").and_then(Value::as_str))
            .any(|r| {
                matches!(
                    r,
                    "rateLimitExceeded" | "userRateLimitExceeded" | "RESOURCE_EXHAUSTED"
                )
            });
        let spent = self.spec.rate_limit.remaining.iter().any(|h| {
            resp.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == "0")
        });
        google || spent || resp.headers.contains_key(RETRY_AFTER)
    }

    pub(super) fn full_outcome(&self, o: StepOutcome, resp: &Response, message: String) -> Outcome {
        let code = resp.status.as_u16();
        match o {
            StepOutcome::Retry => Outcome::Retry {
                after: retry_after(&resp.headers, SystemTime::now()),
                reason: format!("HTTP {code}: {message}"),
            },
            StepOutcome::Failed => {
                let hint = match code {
                    401 => " (credentials refused: check the instance's auth secret)",
                    403 => " (permission denied: grant the permissions listed in the spec)",
                    _ => "",
                };
                Outcome::Failed {
                    reason: format!("HTTP {code}: {message}{hint}"),
                }
            }
            other => step_outcome(other, String::new()),
        }
    }

    /// The target's own error text, short and scrubbed of our secrets.
    pub(super) fn target_message(&self, resp: &Response) -> String {
        const POINTERS: [&str; 8] = [
            "/detail",
            "/error_description",
            "/errorSummary",
            "/message",
            "/error/message",
            "/error",
            "/errors/0/message",
            "/title",
        ];
        let found = POINTERS
            .iter()
            .find_map(|p| resp.json.pointer(p).and_then(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| resp.text.clone());
        let cleaned: String = found
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let cleaned = cleaned.trim();
        let msg = if cleaned.is_empty() {
            resp.status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        } else {
            short(cleaned)
        };
        self.redact(&msg)
    }
}

/// 2xx → continue, 404 → not found, 408/429/5xx → retry, everything else → failed.
pub(crate) fn default_outcome(status: StatusCode) -> StepOutcome {
    match status.as_u16() {
        200..=299 => StepOutcome::Continue,
        404 | 410 => StepOutcome::NotFound,
        408 | 425 | 429 | 500..=599 => StepOutcome::Retry,
        _ => StepOutcome::Failed,
    }
}

pub(super) fn step_outcome(o: StepOutcome, reason: String) -> Outcome {
    match o {
        StepOutcome::Done | StepOutcome::Continue => Outcome::Done,
        StepOutcome::AlreadyDone => Outcome::AlreadyDone,
        StepOutcome::NotFound => Outcome::NotFound,
        StepOutcome::Retry => Outcome::Retry {
            after: None,
            reason,
        },
        StepOutcome::Failed => Outcome::Failed { reason },
    }
}

pub(super) fn extract_all(step: &CompiledStep, resp: &Response) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("status".into(), Value::from(resp.status.as_u16()));
    m.insert(
        "etag".into(),
        resp.headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|s| Value::String(s.to_string()))
            .unwrap_or(Value::Null),
    );
    for (k, x) in &step.extract {
        let v = match x {
            Extractor::Pointer(p) => pointer_get(&resp.json, p).unwrap_or(Value::Null),
            Extractor::Header(h) => resp
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|s| Value::String(s.to_string()))
                .unwrap_or(Value::Null),
            Extractor::Project { from, fields } => {
                let items = match pointer_get(&resp.json, from) {
                    Some(Value::Array(a)) => a,
                    Some(Value::Null) | None => Vec::new(),
                    Some(one) => vec![one],
                };
                Value::Array(
                    items
                        .iter()
                        .map(|it| {
                            let mut o = Map::new();
                            for (f, p) in fields {
                                o.insert(f.clone(), pointer_get(it, p).unwrap_or(Value::Null));
                            }
                            Value::Object(o)
                        })
                        .collect(),
                )
            }
        };
        m.insert(k.clone(), v);
    }
    m
}

/// Follow a pointer; `*` maps the rest over an array. `None` when absent.
pub(crate) fn pointer_get(v: &Value, segs: &[Seg]) -> Option<Value> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(v.clone());
    };
    match first {
        Seg::Any => match v {
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|i| pointer_get(i, rest)).collect(),
            )),
            _ => Some(Value::Array(Vec::new())),
        },
        Seg::Key(k) => {
            let next = match v {
                Value::Object(m) => m.get(k),
                Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }?;
            pointer_get(next, rest)
        }
    }
}
