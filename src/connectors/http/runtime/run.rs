//! Running one operation: the subject's `lookup` through the cache, then the steps in order (`when`,
//! `foreach`, paging, outcome rules), then the operation's `record`.

use super::*;

use super::paging::{MAX_PAGES, merge_pages};
use super::response::{extract_all, step_outcome};

impl HttpConnector {
    /// Resolve `req.subject` with the spec's `lookup`, through the cache: `Ok((record, from_cache))`, or
    /// the outcome that ends the operation (`not_found`, a retry, a failure). Lookups of one subject are
    /// single-flight: a concurrent caller waits for the running lookup and uses its answer.
    pub(super) async fn resolve(
        &self,
        req: &OperationRequest,
        op_name: &str,
        trail: &mut Vec<String>,
    ) -> Result<(Value, bool), Outcome> {
        let label = (op_name != LOOKUP).then_some(op_name);
        if !self.lookups.enabled() {
            let found = Box::pin(self.run_named(LOOKUP, req, label)).await;
            trail.extend(found.trail.iter().map(|t| format!("lookup {t}")));
            return match found.outcome {
                Outcome::Done | Outcome::AlreadyDone => {
                    Ok((found.record.unwrap_or(Value::Null), false))
                }
                other => Err(other),
            };
        }
        let slot = self.lookups.slot(&req.subject);
        let mut cached = slot.lock().await;
        if let Some((at, value)) = &*cached
            && self.lookups.fresh(*at, value, tokio::time::Instant::now())
        {
            trail.push("lookup (cached)".to_string());
            return match value {
                Cached::Found(record) => Ok((record.clone(), true)),
                Cached::NotFound => Err(Outcome::NotFound),
            };
        }
        let found = Box::pin(self.run_named(LOOKUP, req, label)).await;
        trail.extend(found.trail.iter().map(|t| format!("lookup {t}")));
        let now = tokio::time::Instant::now();
        match found.outcome {
            Outcome::Done | Outcome::AlreadyDone => {
                let record = found.record.unwrap_or(Value::Null);
                *cached = Some((now, Cached::Found(record.clone())));
                Ok((record, false))
            }
            Outcome::NotFound => {
                *cached = Some((now, Cached::NotFound));
                Err(Outcome::NotFound)
            }
            other => {
                *cached = None;
                Err(other)
            }
        }
    }

    pub(super) async fn run_named(
        &self,
        op_name: &str,
        req: &OperationRequest,
        operation_label: Option<&str>,
    ) -> Run {
        let Some(op) = self.spec.operations.get(op_name) else {
            return Run::end(Outcome::Failed {
                reason: format!(
                    "connector `{}` (type {}) does not support `{op_name}`",
                    self.name, self.spec.name
                ),
            });
        };
        // The one lookup form (NFKC, controls refused, bounded length): what the guards checked.
        let subject = match crate::identity::lookup_form(&req.subject) {
            Ok(s) => s.into_owned(),
            Err(e) => {
                return Run::end(Outcome::Failed {
                    reason: format!("subject refused: {e}"),
                });
            }
        };
        let mut ctx = Map::new();
        ctx.insert("subject".into(), Value::String(subject));
        ctx.insert("vars".into(), Value::Object(self.vars.clone()));
        ctx.insert(
            "pre_state".into(),
            req.pre_state.clone().unwrap_or(Value::Null),
        );
        ctx.insert(
            "context".into(),
            Value::Object(req.context.clone().into_iter().collect()),
        );
        ctx.insert(
            "idempotency_key".into(),
            Value::String(req.idempotency_key.clone()),
        );
        ctx.insert(
            "operation".into(),
            Value::String(operation_label.unwrap_or(op_name).to_string()),
        );
        let mut trail = Vec::new();
        if !op.uses_lookup {
            return self.run_steps(op, ctx).await;
        }
        let from_cache = match self.resolve(req, op_name, &mut trail).await {
            Ok((record, from_cache)) => {
                ctx.insert("lookup".into(), record);
                from_cache
            }
            Err(outcome) => {
                return Run {
                    outcome,
                    trail,
                    ..Run::end(Outcome::Done)
                };
            }
        };
        let mut run = self.run_steps(op, ctx.clone()).await;
        if run.outcome == Outcome::NotFound {
            // The id no longer names an account here (deleted, or recreated under a new id).
            self.lookups.invalidate(&req.subject);
            if from_cache {
                trail.append(&mut run.trail);
                trail.push("cached lookup was stale; resolving again".to_string());
                match self.resolve(req, op_name, &mut trail).await {
                    Ok((record, _)) => {
                        ctx.insert("lookup".into(), record);
                        run = self.run_steps(op, ctx).await;
                    }
                    Err(outcome) => {
                        return Run {
                            outcome,
                            trail,
                            ..Run::end(Outcome::Done)
                        };
                    }
                }
            }
        }
        trail.append(&mut run.trail);
        run.trail = trail;
        run
    }

    pub(super) async fn run_steps(
        &self,
        op: &CompiledOperation,
        mut ctx: Map<String, Value>,
    ) -> Run {
        ctx.insert("steps".into(), Value::Object(Map::new()));
        let mut run = Run::end(Outcome::Done);
        let mut ended: Option<Outcome> = None;
        'steps: for step in &op.steps {
            if let Some(when) = &step.when {
                match self.truthy(when, &ctx) {
                    Ok(true) => {}
                    Ok(false) => {
                        set_step(
                            &mut ctx,
                            &step.name,
                            json!({"skipped": true, "processed": []}),
                        );
                        match step.otherwise {
                            None | Some(StepOutcome::Continue) => continue,
                            Some(o) => {
                                ended = Some(step_outcome(o, format!("{} skipped", step.name)));
                                break;
                            }
                        }
                    }
                    Err(o) => {
                        ended = Some(o);
                        break;
                    }
                }
            }
            let items: Vec<Option<Value>> = match &step.foreach {
                None => vec![None],
                Some(t) => match self.render_value(t, &ctx) {
                    Ok(Value::Array(a)) => a.into_iter().map(Some).collect(),
                    Ok(Value::Null) => Vec::new(),
                    Ok(other) => {
                        ended = Some(Outcome::Failed {
                            reason: format!(
                                "{}.foreach: expected a list, got {}",
                                step.path,
                                short(&other.to_string())
                            ),
                        });
                        break;
                    }
                    Err(o) => {
                        ended = Some(o);
                        break;
                    }
                },
            };
            let mut processed = Vec::new();
            set_step(
                &mut ctx,
                &step.name,
                json!({"skipped": false, "processed": []}),
            );
            for item in items {
                if let Some(it) = &item {
                    ctx.insert("item".into(), it.clone());
                }
                let result = self.run_step(step, &mut ctx, &mut run).await;
                ctx.remove("item");
                match result {
                    StepOutcome::Continue | StepOutcome::Done if step.foreach.is_some() => {
                        if let Some(it) = item {
                            processed.push(it);
                        }
                        set_processed(&mut ctx, &step.name, &processed);
                    }
                    StepOutcome::Continue => {}
                    StepOutcome::Done => {
                        ended = Some(Outcome::Done);
                        break 'steps;
                    }
                    _ => {
                        ended = Some(run.pending.take().unwrap_or(Outcome::Failed {
                            reason: "step ended without a reason".into(),
                        }));
                        set_processed(&mut ctx, &step.name, &processed);
                        break 'steps;
                    }
                }
            }
        }
        run.outcome = ended.unwrap_or(Outcome::Done);
        // The record is kept for partial failures too: a retried group removal must not forget the
        // memberships its first attempt already removed.
        if !matches!(run.outcome, Outcome::NotFound) && !op.record.is_empty() {
            let mut rec = Map::new();
            for (k, t) in &op.record {
                match self.render_value(t, &ctx) {
                    Ok(v) => {
                        rec.insert(k.clone(), v);
                    }
                    Err(e) => {
                        tracing::debug!(connector = %self.name, key = %k, error = ?e, "record value not available");
                    }
                }
            }
            if !rec.is_empty() {
                run.record = Some(Value::Object(rec));
            }
        }
        run
    }

    /// One request (following pages), its extracts stored under `steps.<name>`, its outcome returned.
    /// For terminal outcomes the full [`Outcome`] is left in `run.pending`.
    pub(super) async fn run_step(
        &self,
        step: &CompiledStep,
        ctx: &mut Map<String, Value>,
        run: &mut Run,
    ) -> StepOutcome {
        let mut request = match self.build_request(step, ctx) {
            Ok(r) => r,
            Err(o) => {
                run.pending = Some(o);
                return StepOutcome::Failed;
            }
        };
        let mut merged: Option<Map<String, Value>> = None;
        let mut pages = 0usize;
        loop {
            pages += 1;
            let next = request.try_clone();
            let url_for_trail = request.url().path().to_string();
            let method = request.method().clone();
            let resp = match self.send(request, step.endpoint.as_deref()).await {
                Ok(r) => r,
                Err(o) => {
                    run.trail.push(format!("{method} {url_for_trail} → error"));
                    run.pending = Some(o);
                    return StepOutcome::Retry;
                }
            };
            run.trail.push(format!(
                "{method} {url_for_trail} → {}",
                resp.status.as_u16()
            ));
            run.last_status = Some(resp.status.as_u16());
            let extracts = extract_all(step, &resp);
            let values = match merged.take() {
                None => extracts,
                Some(prev) => merge_pages(prev, extracts),
            };
            set_step(ctx, &step.name, Value::Object(values.clone()));
            let (outcome, full) = self.classify(step, &resp, ctx);
            if outcome != StepOutcome::Continue {
                run.pending = full;
                return outcome;
            }
            merged = Some(values);
            let Some(paginate) = &step.paginate else {
                return outcome;
            };
            if pages >= MAX_PAGES {
                return outcome;
            }
            let Some(mut next) = next else {
                return outcome;
            };
            match self.next_page(paginate, &resp, &mut next, step.endpoint.as_deref()) {
                Ok(true) => request = next,
                Ok(false) => return outcome,
                Err(o) => {
                    run.pending = Some(o);
                    return StepOutcome::Failed;
                }
            }
        }
    }
}

pub(super) fn set_step(ctx: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
        // Keep `processed` accumulated by earlier items of a foreach step.
        let processed = steps
            .get(name)
            .and_then(|s| s.get("processed"))
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let mut value = value;
        if let Value::Object(m) = &mut value {
            m.entry("processed").or_insert(processed);
            m.entry("skipped").or_insert(Value::Bool(false));
        }
        steps.insert(name.to_string(), value);
    }
}

pub(super) fn set_processed(ctx: &mut Map<String, Value>, name: &str, processed: &[Value]) {
    if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
        if let Some(Value::Object(s)) = steps.get_mut(name) {
            s.insert("processed".into(), Value::Array(processed.to_vec()));
        }
    }
}
