//! The group commit: every audit append and every executor state change goes through one queue, and
//! whoever holds the append lock next writes all that is queued in one [`COMMIT`] script run — the
//! action records with their indexes, the claims they release, and the audit records, sealed as one
//! batch — then answers each caller. Concurrent alerts and actions therefore share round trips
//! instead of paying one each, and a state change is never in the ledger without its audit records.

use super::*;

/// One action update as [`COMMIT`] takes it (owned).
pub(super) struct PutArgs {
    key: String,
    record: String,
    coalesce: String,
    lane: String,
    json: Vec<u8>,
    created_ms: i64,
    due: String,
    pending: bool,
    absorbs: bool,
    state: &'static str,
    subject: String,
    alert_id: String,
    lane_score: String,
}

/// What one caller queued: audit drafts, and maybe an action update and a claim release (owner).
pub(super) struct Queued {
    drafts: Vec<AuditDraft>,
    put: Option<PutArgs>,
    release: Option<(String, String)>,
    done: tokio::sync::oneshot::Sender<Result<Vec<AuditRecord>, StoreError>>,
}

/// What one [`COMMIT`] run wrote: the sealed records, and the keys of updates whose record was
/// missing (skipped).
struct Committed {
    sealed: Vec<AuditRecord>,
    missing: Vec<String>,
}

impl RedisStore {
    /// `action` as [`COMMIT`] takes it.
    pub(super) fn put_args(&self, action: &ActionRecord) -> Result<PutArgs, StoreError> {
        let d = Derived::of(action);
        Ok(PutArgs {
            key: action.key.clone(),
            record: self.key("action", &action.key),
            coalesce: self.key("coalesce", &d.coalesce),
            lane: self.key("lane", d.connector),
            json: encode(action)?,
            created_ms: d.created_ms,
            due: due_arg(&d),
            pending: d.pending,
            absorbs: d.absorbs,
            state: d.state,
            subject: d.subject.to_string(),
            alert_id: opt(d.alert_id).to_string(),
            lane_score: lane_arg(&d),
        })
    }

    /// Queue `drafts` (and `put`, and the claim `release` of (key, owner)) for the next group
    /// commit; returns the sealed records once they are written.
    pub(super) async fn group_commit(
        &self,
        drafts: Vec<AuditDraft>,
        put: Option<PutArgs>,
        release: Option<(String, String)>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let (done, rx) = tokio::sync::oneshot::channel();
        self.audit_queue.lock().expect("not poisoned").push(Queued {
            drafts,
            put,
            release,
            done,
        });
        {
            let _leader = self.audit_append.lock().await;
            let queued = std::mem::take(&mut *self.audit_queue.lock().expect("not poisoned"));
            if !queued.is_empty() {
                self.lead(queued).await;
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Other("audit append abandoned".into())))
    }

    /// Write one action update now, outside the queue: [`COMMIT`] with no audit records neither
    /// reads nor moves the audit head, so it need not wait for the append lock.
    pub(super) async fn put_now(&self, put: PutArgs) -> Result<(), StoreError> {
        let Committed { missing, .. } = self
            .commit_now(Vec::new(), std::slice::from_ref(&put), &[])
            .await?;
        match missing.first() {
            Some(k) => Err(no_such_action(k)),
            None => Ok(()),
        }
    }

    /// Write every queued change in one script run (each caller's records kept contiguous, in queue
    /// order) and answer each caller.
    async fn lead(&self, queued: Vec<Queued>) {
        let mut drafts = Vec::new();
        let mut puts = Vec::new();
        let mut releases = Vec::new();
        let mut waiters = Vec::with_capacity(queued.len());
        for q in queued {
            waiters.push((
                q.drafts.len(),
                q.put.as_ref().map(|p| p.key.clone()),
                q.done,
            ));
            drafts.extend(q.drafts);
            puts.extend(q.put);
            releases.extend(q.release);
        }
        match self.commit_now(drafts, &puts, &releases).await {
            Ok(Committed { sealed, missing }) => {
                let mut sealed = sealed.into_iter();
                for (n, key, done) in waiters {
                    let mine: Vec<AuditRecord> = sealed.by_ref().take(n).collect();
                    let _ = done.send(match key {
                        Some(k) if missing.contains(&k) => Err(no_such_action(&k)),
                        _ => Ok(mine),
                    });
                }
            }
            Err(e) => {
                let retryable = e.is_retryable();
                let msg = e.to_string();
                for (_, _, done) in waiters {
                    let _ = done.send(Err(if retryable {
                        StoreError::Unavailable(msg.clone())
                    } else {
                        StoreError::Other(msg.clone())
                    }));
                }
            }
        }
    }

    /// One optimistic check-and-write after the last head this process saw; reseals and retries
    /// when another replica appended in between (nothing is written on a conflict).
    async fn commit_now(
        &self,
        mut drafts: Vec<AuditDraft>,
        puts: &[PutArgs],
        releases: &[(String, String)],
    ) -> Result<Committed, StoreError> {
        let appends = !drafts.is_empty();
        // With no records to seal the script neither checks nor moves the head.
        let mut expected = if appends {
            self.audit_head.lock().expect("not poisoned").clone()
        } else {
            String::new()
        };
        for _ in 0..AUDIT_APPEND_ATTEMPTS {
            let head = parse_head(&expected)?;
            let batch = seal_batch(drafts, head.as_ref());
            let new_head = head_string(batch.head.as_ref());
            let mut call = COMMIT.key(self.index("audit"));
            call.key(self.key("audit", "head"));
            for p in puts {
                call.key(&p.record).key(&p.coalesce).key(&p.lane);
            }
            for (key, _) in releases {
                call.key(self.key("claim", key));
            }
            call.arg(&*self.base)
                .arg(&expected)
                .arg(&new_head)
                .arg(puts.len())
                .arg(releases.len());
            for p in puts {
                call.arg(&p.key)
                    .arg(&p.json)
                    .arg(p.created_ms)
                    .arg(&p.due)
                    .arg(flag(p.pending))
                    .arg(flag(p.absorbs))
                    .arg(p.state)
                    .arg(&p.subject)
                    .arg(&p.alert_id)
                    .arg(&p.lane_score);
            }
            for (_, owner) in releases {
                call.arg(owner);
            }
            for bytes in &batch.encoded {
                call.arg(bytes);
            }
            let mut conn = self.conn.clone();
            let reply: Vec<String> = call
                .invoke_async(&mut conn)
                .await
                .map_err(|e| redis_err("writing state changes and the audit trail", e))?;
            match reply.split_first() {
                Some((ok, missing)) if ok == "ok" => {
                    if appends {
                        *self.audit_head.lock().expect("not poisoned") = new_head;
                    }
                    return Ok(Committed {
                        sealed: batch.records,
                        missing: missing.to_vec(),
                    });
                }
                Some((c, [current])) if c == "conflict" => {
                    // Another appender moved the head: reseal after it.
                    expected.clone_from(current);
                    *self.audit_head.lock().expect("not poisoned") = current.clone();
                    drafts = batch.into_drafts();
                    continue;
                }
                _ => {
                    return Err(StoreError::Other(format!(
                        "unexpected reply from the commit script: {reply:?}"
                    )));
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "the audit head kept moving during {AUDIT_APPEND_ATTEMPTS} append attempts; retry"
        )))
    }
}

/// `put_action` (alone or in a group commit) of a key that was never inserted.
fn no_such_action(key: &str) -> StoreError {
    StoreError::Other(format!(
        "cannot update action `{key}`: no such action (insert it with insert_action first)"
    ))
}
