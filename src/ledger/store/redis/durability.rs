//! The startup check of `[state.redis] durability`: refuse to run on a Redis whose settings can lose
//! an acknowledged write, and say exactly what is wrong.
//!
//! - `aof`: `CONFIG GET appendonly` / `appendfsync` must answer `yes` / `always`. Managed services
//!   often rename or deny `CONFIG`; then `INFO persistence` still shows `aof_enabled`, but not the
//!   fsync policy, which only the operator's `aof_always_asserted = true` can vouch for.
//! - `replicas`: `INFO replication` must show at least `replicas` connected replicas, else every
//!   write would time out in `WAIT`.
//!
//! On a Cluster the node checked is the primary of the `{ledger}` slot, which holds every key.

use std::collections::HashMap;

use ::redis::{Cmd, RedisResult, Value};

use super::config::{Durability, RedisConfig};
use super::conn::LedgerConn;
use crate::ledger::StoreError;

/// Check `config.durability` against the server behind `conn`; [`StoreError::Refused`] lists
/// every setting that is wrong. `shown` names the server (credentials redacted).
pub(super) async fn check(
    conn: &LedgerConn,
    config: &RedisConfig,
    slot_key: &str,
    shown: &str,
) -> Result<(), StoreError> {
    let mut conn = conn.without_wait();
    match config.durability {
        Durability::Relaxed => Ok(()),
        Durability::Aof => {
            let wrong = aof_problems(&mut conn, slot_key, config.aof_always_asserted).await?;
            refuse_if_any(config.durability, shown, wrong, AOF_FIX)
        }
        Durability::Replicas => {
            let info = info(&mut conn, slot_key, "replication")
                .await
                .map_err(|e| unavailable(shown, "INFO replication", e))?;
            let mut wrong = Vec::new();
            if let Some(role) = info.get("role")
                && role != "master"
            {
                wrong.push(format!("the node is a `{role}`, not the primary"));
            }
            let connected: u32 = info
                .get("connected_slaves")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if connected < config.replicas {
                wrong.push(format!(
                    "{connected} replica(s) connected, {} required (`replicas`): every write would time out in WAIT",
                    config.replicas
                ));
            }
            refuse_if_any(config.durability, shown, wrong, REPLICAS_FIX)
        }
    }
}

const AOF_FIX: &str = "set them in redis.conf, or at runtime with `CONFIG SET appendonly yes`, \
    `CONFIG SET appendfsync always` and `CONFIG REWRITE`; if `CONFIG` is renamed or denied on this \
    server and you know it runs with them, set `aof_always_asserted = true`";

const REPLICAS_FIX: &str = "point deprovd at the primary, start the replicas (or lower `replicas`), \
    or choose durability = \"aof\"";

/// What is wrong with the server's AOF settings for `aof` mode (empty: nothing).
async fn aof_problems(
    conn: &mut LedgerConn,
    slot_key: &str,
    asserted: bool,
) -> Result<Vec<String>, StoreError> {
    let mut wrong = Vec::new();
    match config_get(conn, slot_key, &["appendonly", "appendfsync"]).await {
        Ok(values) => {
            for (name, want) in [("appendonly", "yes"), ("appendfsync", "always")] {
                match values.get(name) {
                    Some(v) if v.eq_ignore_ascii_case(want) => {}
                    Some(v) => wrong.push(format!("`{name}` is `{v}`, must be `{want}`")),
                    None => wrong.push(format!("`CONFIG GET {name}` answered nothing")),
                }
            }
        }
        Err(config_err) => {
            // CONFIG renamed or denied: INFO shows whether AOF is on, never the fsync policy.
            match info(conn, slot_key, "persistence").await {
                Ok(info) => {
                    if info.get("aof_enabled").map(String::as_str) != Some("1") {
                        wrong.push("`INFO persistence` shows `aof_enabled:0` (appendonly is off)".into());
                    }
                }
                Err(info_err) if !asserted => wrong.push(format!(
                    "neither `CONFIG GET` ({config_err}) nor `INFO persistence` ({info_err}) can be read"
                )),
                Err(_) => {}
            }
            if !asserted {
                wrong.push(format!(
                    "`CONFIG GET appendfsync` is refused ({config_err}), so `appendfsync always` cannot be checked"
                ));
            }
        }
    }
    Ok(wrong)
}

fn refuse_if_any(
    mode: Durability,
    shown: &str,
    wrong: Vec<String>,
    fix: &str,
) -> Result<(), StoreError> {
    if wrong.is_empty() {
        return Ok(());
    }
    Err(StoreError::Refused(format!(
        "durability = \"{}\" cannot be guaranteed by Redis at {shown}: {}; {fix}",
        mode.as_str(),
        wrong.join("; ")
    )))
}

fn unavailable(shown: &str, what: &str, e: ::redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!(
        "checking durability on Redis at {shown} ({what}): {e}"
    ))
}

/// `cmd` on the node that holds the ledger (on a Cluster: the primary of `slot_key`'s slot).
async fn on_ledger_node(conn: &mut LedgerConn, slot_key: &str, cmd: Cmd) -> RedisResult<Value> {
    conn.on_slot_primary(slot_key, cmd).await
}

async fn config_get(
    conn: &mut LedgerConn,
    slot_key: &str,
    names: &[&str],
) -> RedisResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for name in names {
        let mut cmd = ::redis::cmd("CONFIG");
        cmd.arg("GET").arg(*name);
        let v = on_ledger_node(conn, slot_key, cmd).await?;
        let pairs: HashMap<String, String> = ::redis::from_redis_value(v).map_err(|e| {
            ::redis::RedisError::from((::redis::ErrorKind::Parse, "CONFIG GET", e.to_string()))
        })?;
        out.extend(pairs);
    }
    Ok(out)
}

/// `INFO <section>` as `field → value`.
async fn info(
    conn: &mut LedgerConn,
    slot_key: &str,
    section: &str,
) -> RedisResult<HashMap<String, String>> {
    let mut cmd = ::redis::cmd("INFO");
    cmd.arg(section);
    let v = on_ledger_node(conn, slot_key, cmd).await?;
    let text: String = ::redis::from_redis_value(v).map_err(|e| {
        ::redis::RedisError::from((::redis::ErrorKind::Parse, "INFO", e.to_string()))
    })?;
    Ok(parse_info(&text))
}

fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_becomes_fields() {
        let m = parse_info("# Persistence\r\nloading:0\r\naof_enabled:1\r\n\r\n");
        assert_eq!(m.get("aof_enabled").map(String::as_str), Some("1"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_refusal_lists_everything_wrong_and_how_to_fix_it() {
        let e = refuse_if_any(
            Durability::Aof,
            "`redis://***@h:6379/0`",
            vec![
                "`appendonly` is `no`, must be `yes`".into(),
                "`appendfsync` is `everysec`, must be `always`".into(),
            ],
            AOF_FIX,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(!e.is_retryable());
        for want in [
            "durability = \"aof\"",
            "appendonly",
            "everysec",
            "CONFIG SET appendfsync always",
            "aof_always_asserted",
        ] {
            assert!(text.contains(want), "missing {want}: {text}");
        }
    }
}
