//! The action tables' transactions: insert, put, claim by lane, list, and the secondary and lane
//! indexes they keep in step. Each runs inside one redb transaction.

use super::*;

/// Give every due action its lane entry: a ledger written before lanes existed has due actions
/// that no lane holds, and the executor claims only through lanes. Cheap when nothing is missing
/// (one lookup per due action, and the due index holds only unfinished work).
pub(super) fn index_lanes(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    {
        let due = tx.open_table(DUE).map_err(db_err)?;
        let records = tx.open_table(RECORDS).map_err(db_err)?;
        let lanes = tx.open_table(LANES).map_err(db_err)?;
        for entry in due.iter().map_err(db_err)? {
            let (k, _) = entry.map_err(db_err)?;
            let key = k.value().1;
            let Some(g) = records.get(key).map_err(db_err)? else {
                continue;
            };
            let rec = decode(key, g.value())?;
            let d = Derived::of(&rec);
            if let Some(score) = d.lane_score()
                && lanes
                    .get((d.connector, score, key))
                    .map_err(db_err)?
                    .is_none()
            {
                missing.push((rec.connector.clone(), score, key.to_string()));
            }
        }
    }
    let mut lanes = tx.open_table(LANES).map_err(db_err)?;
    for (connector, score, key) in &missing {
        lanes
            .insert((connector.as_str(), *score, key.as_str()), ())
            .map_err(db_err)?;
    }
    Ok(())
}

/// Add `key`'s entries to every index derived from `d`.
fn index_add(tx: &WriteTransaction, d: &Derived<'_>, key: &str) -> Result<(), StoreError> {
    if let Some(due) = d.due_ms {
        tx.open_table(DUE)
            .map_err(db_err)?
            .insert((due, key), ())
            .map_err(db_err)?;
    }
    if let Some(score) = d.lane_score() {
        tx.open_table(LANES)
            .map_err(db_err)?
            .insert((d.connector, score, key), ())
            .map_err(db_err)?;
    }
    if d.pending {
        tx.open_table(PENDING)
            .map_err(db_err)?
            .insert(key, ())
            .map_err(db_err)?;
    }
    tx.open_table(CREATED)
        .map_err(db_err)?
        .insert((d.created_ms, key), ())
        .map_err(db_err)?;
    tx.open_table(BY_SUBJECT)
        .map_err(db_err)?
        .insert((d.subject, d.created_ms, key), ())
        .map_err(db_err)?;
    tx.open_table(BY_STATE)
        .map_err(db_err)?
        .insert((d.state, d.created_ms, key), ())
        .map_err(db_err)?;
    if let Some(alert) = d.alert_id {
        tx.open_table(BY_ALERT)
            .map_err(db_err)?
            .insert((alert, d.created_ms, key), ())
            .map_err(db_err)?;
    }
    Ok(())
}

/// Remove `key`'s entries from the indexes derived from `d` (its previous version). The alert index
/// keeps its entries: they include linked alerts, which are never unlinked.
fn index_remove(tx: &WriteTransaction, d: &Derived<'_>, key: &str) -> Result<(), StoreError> {
    if let Some(due) = d.due_ms {
        tx.open_table(DUE)
            .map_err(db_err)?
            .remove((due, key))
            .map_err(db_err)?;
    }
    if let Some(score) = d.lane_score() {
        tx.open_table(LANES)
            .map_err(db_err)?
            .remove((d.connector, score, key))
            .map_err(db_err)?;
    }
    if d.pending {
        tx.open_table(PENDING)
            .map_err(db_err)?
            .remove(key)
            .map_err(db_err)?;
    }
    tx.open_table(CREATED)
        .map_err(db_err)?
        .remove((d.created_ms, key))
        .map_err(db_err)?;
    tx.open_table(BY_SUBJECT)
        .map_err(db_err)?
        .remove((d.subject, d.created_ms, key))
        .map_err(db_err)?;
    tx.open_table(BY_STATE)
        .map_err(db_err)?
        .remove((d.state, d.created_ms, key))
        .map_err(db_err)?;
    Ok(())
}

pub(super) fn insert_tx(
    db: &Database,
    action: &ActionRecord,
    window_ms: i64,
    linked_alert: Option<&str>,
) -> Result<Inserted, StoreError> {
    let now = now_ms();
    let tx = db.begin_write().map_err(db_err)?;
    let key = action.key.as_str();
    let d = Derived::of(action);
    let mut superseded = None;
    {
        let mut records = tx.open_table(RECORDS).map_err(db_err)?;
        if records.get(key).map_err(db_err)?.is_some() {
            drop(records);
            tx.abort().map_err(db_err)?;
            return Ok(Inserted::Duplicate);
        }

        let mut coalesce = tx.open_table(COALESCE).map_err(db_err)?;
        let holder = coalesce
            .get(d.coalesce.as_str())
            .map_err(db_err)?
            .and_then(|g| {
                let (holder, expires) = g.value();
                (expires > now).then(|| holder.to_string())
            });
        if let Some(holder) = holder {
            let live = match records.get(holder.as_str()).map_err(db_err)? {
                Some(g) => Some(decode(&holder, g.value())?),
                None => None,
            };
            if live
                .as_ref()
                .is_some_and(|h| h.state.superseded_by(action.state))
            {
                superseded = Some(holder.clone());
            }
            let live = live.filter(|h| h.state.absorbs(action.state));
            if let Some(mut live) = live {
                if let Some(alert) = linked_alert {
                    if !live.linked_alerts.iter().any(|l| l == alert) {
                        live.linked_alerts.push(alert.to_string());
                        records
                            .insert(holder.as_str(), encode(&live)?.as_slice())
                            .map_err(db_err)?;
                        tx.open_table(BY_ALERT)
                            .map_err(db_err)?
                            .insert(
                                (alert, live.created_at.timestamp_millis(), holder.as_str()),
                                (),
                            )
                            .map_err(db_err)?;
                    }
                }
                drop((records, coalesce));
                tx.commit().map_err(db_err)?;
                return Ok(Inserted::Coalesced(holder));
            }
        }

        records
            .insert(key, encode(action)?.as_slice())
            .map_err(db_err)?;
        if d.absorbs && window_ms > 0 {
            coalesce
                .insert(d.coalesce.as_str(), (key, now.saturating_add(window_ms)))
                .map_err(db_err)?;
        }
    }
    index_add(&tx, &d, key)?;
    tx.commit().map_err(db_err)?;
    Ok(superseded.map_or(Inserted::New, Inserted::Superseded))
}

pub(super) fn put_tx(db: &Database, mut action: ActionRecord) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(db_err)?;
    let key = action.key.clone();
    let old = {
        let records = tx.open_table(RECORDS).map_err(db_err)?;
        let found = records.get(key.as_str()).map_err(db_err)?;
        match found {
            Some(g) => decode(&key, g.value())?,
            None => {
                drop(found);
                drop(records);
                tx.abort().map_err(db_err)?;
                return Err(StoreError::Other(format!(
                    "cannot update action `{key}`: no such action (insert it with insert_action first)"
                )));
            }
        }
    };
    // Linked alerts are append-only: keep any linked since the caller read the record.
    for l in old.linked_alerts.iter() {
        if !action.linked_alerts.contains(l) {
            action.linked_alerts.push(l.clone());
        }
    }
    let od = Derived::of(&old);
    let nd = Derived::of(&action);
    index_remove(&tx, &od, &key)?;
    index_add(&tx, &nd, &key)?;
    tx.open_table(RECORDS)
        .map_err(db_err)?
        .insert(key.as_str(), encode(&action)?.as_slice())
        .map_err(db_err)?;
    if !nd.absorbs {
        let mut coalesce = tx.open_table(COALESCE).map_err(db_err)?;
        let held_by_us = coalesce
            .get(nd.coalesce.as_str())
            .map_err(db_err)?
            .is_some_and(|g| g.value().0 == key);
        if held_by_us {
            coalesce.remove(nd.coalesce.as_str()).map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(())
}

/// One claim round ([`ActionStore::claim_lanes`](crate::ledger::ActionStore::claim_lanes)) in one
/// write transaction: for each lane, walk its ranks most urgent first and take the due actions no
/// live claim holds, then measure what is left.
pub(super) fn claim_lanes_tx(
    db: &Database,
    lanes: &[(String, usize)],
    now: i64,
    owner: &str,
    ttl_ms: i64,
) -> Result<Vec<LaneDue>, StoreError> {
    let tx = db.begin_write().map_err(db_err)?;
    let mut out = Vec::with_capacity(lanes.len());
    {
        let index = tx.open_table(LANES).map_err(db_err)?;
        let mut claims = tx.open_table(CLAIMS).map_err(db_err)?;
        let stored = tx.open_table(RECORDS).map_err(db_err)?;
        for (connector, limit) in lanes {
            let c = connector.as_str();
            let mut claimed = Vec::new();
            let (mut due, mut oldest, mut next) = (0u64, None::<i64>, None::<i64>);
            for rank in 0..Urgency::LEVELS {
                let base = lane_score(rank, 0);
                let due_end = lane_score(rank, now).saturating_add(1);
                for entry in index
                    .range((c, base, "")..(c, due_end, ""))
                    .map_err(db_err)?
                {
                    let (k, _) = entry.map_err(db_err)?;
                    let (_, score, key) = k.value();
                    due += 1;
                    oldest = Some(oldest.map_or(score - base, |o| o.min(score - base)));
                    if claimed.len() >= *limit {
                        continue;
                    }
                    let held = claims
                        .get(key)
                        .map_err(db_err)?
                        .is_some_and(|g| g.value().1 > now);
                    if !held {
                        claims
                            .insert(key, (owner, now.saturating_add(ttl_ms)))
                            .map_err(db_err)?;
                        claimed.push(key.to_string());
                    }
                }
                let first_later = index
                    .range((c, due_end, "")..(c, base + LANE_SPAN_MS, ""))
                    .map_err(db_err)?
                    .next();
                if let Some(entry) = first_later {
                    let at = entry.map_err(db_err)?.0.value().1 - base;
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            let records = claimed
                .iter()
                .map(|k| {
                    let found = stored.get(k.as_str()).map_err(db_err)?;
                    found.map(|g| decode(k, g.value())).transpose()
                })
                .collect::<Result<_, StoreError>>()?;
            out.push(LaneDue {
                waiting: due - claimed.len() as u64,
                claimed,
                records,
                oldest_due: oldest.map(from_ms).transpose()?,
                next_due: next.map(from_ms).transpose()?,
            });
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(out)
}

pub(super) fn list_tx(
    db: &Database,
    filter: &ActionFilter,
) -> Result<Vec<ActionRecord>, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let records = tx.open_table(RECORDS).map_err(db_err)?;
    let limit = effective_limit(filter.limit);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // Returns true once the listing is full.
    let mut consider = |key: &str| -> Result<bool, StoreError> {
        if let Some(g) = records.get(key).map_err(db_err)? {
            let a = decode(key, g.value())?;
            if matches(filter, &a) {
                out.push(a);
            }
        }
        Ok(out.len() >= limit)
    };
    // Walk the narrowest index the filter allows, newest (or oldest) first.
    let by: Option<(SecondaryIndex, &str)> = if let Some(alert) = filter.alert_id.as_deref() {
        Some((BY_ALERT, alert))
    } else if let Some(subject) = filter.subject.as_deref() {
        Some((BY_SUBJECT, subject))
    } else {
        filter.state.map(|s| (BY_STATE, s.as_str()))
    };
    match by {
        Some((table, value)) => {
            let index = tx.open_table(table).map_err(db_err)?;
            // An alert can be indexed twice for one action (caused, then linked): list it once.
            let mut seen = std::collections::HashSet::new();
            let range = index
                .range((value, i64::MIN, "")..(value, i64::MAX, ""))
                .map_err(db_err)?;
            let walk: Box<dyn Iterator<Item = _>> = if filter.oldest_first {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            for entry in walk {
                let (k, _) = entry.map_err(db_err)?;
                let (_, _, key) = k.value();
                if seen.insert(key.to_string()) && consider(key)? {
                    break;
                }
            }
        }
        None => {
            let index = tx.open_table(CREATED).map_err(db_err)?;
            let all = index.iter().map_err(db_err)?;
            let walk: Box<dyn Iterator<Item = _>> = if filter.oldest_first {
                Box::new(all)
            } else {
                Box::new(all.rev())
            };
            for entry in walk {
                let (k, _) = entry.map_err(db_err)?;
                if consider(k.value().1)? {
                    break;
                }
            }
        }
    }
    Ok(out)
}
