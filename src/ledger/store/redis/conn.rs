//! The connection under [`RedisStore`](super::RedisStore): one node, a Redis Cluster, or the primary
//! that Redis Sentinel names; and, in `replicas` durability mode, a `WAIT` after every write.
//!
//! All three are multiplexed (one socket per node, shared by every task) and cheap to clone, and all
//! three implement [`ConnectionLike`], so the store's commands, pipelines and scripts run unchanged on
//! any of them:
//!
//! - **one node**: redis-rs' `ConnectionManager`, which reconnects in the background.
//! - **Cluster**: redis-rs' cluster connection (slot map, `MOVED`/`ASK`, topology refresh after a
//!   failover). Every key is in the `{ledger}` slot, so every script and pipeline goes to the one
//!   primary that owns it.
//! - **Sentinel**: a multiplexed connection to the primary the sentinels name. A connection error,
//!   or a `READONLY` answer (the node was demoted by a failover), drops it; the next command asks the
//!   sentinels again. The failing command is not retried here: the caller sees
//!   [`StoreError::Unavailable`](crate::ledger::StoreError) and retries on its own schedule, as after
//!   any outage.
//!
//! **`WAIT`** (`durability = "replicas"`): each write is sent as the pipeline `write; INCR fence;
//! WAIT n timeout` on the same connection, one round trip. `WAIT` covers every write this connection
//! made before it; the fence write (a counter in the `{ledger}` slot) makes sure that is also true of
//! a write that changed nothing (a script answering `duplicate`), whose answer may rest on a write of
//! an earlier connection that the replicas have not yet received. Fewer than `n` acknowledgements in
//! time is an error the store reports as retryable: the write may exist on the primary, but it is
//! not acknowledged, so no Kafka offset is committed for it; the retry finds it (`duplicate`) and
//! waits again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

/// `replicas` mode's wait: after each write, `INCR fence` and `WAIT replicas timeout_ms`.
#[derive(Debug)]
pub(crate) struct WaitFor {
    pub(crate) replicas: u32,
    pub(crate) timeout_ms: u64,
    /// A counter in the `{ledger}` slot (`<prefix>{ledger}:wait-fence`).
    pub(crate) fence: String,
}

/// The store's connection: cheap to clone, one multiplexed socket per node underneath.
#[derive(Clone)]
pub(crate) struct LedgerConn {
    inner: Inner,
    wait: Option<Arc<WaitFor>>,
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl LedgerConn {
    pub(crate) fn single(conn: ConnectionManager, wait: Option<WaitFor>) -> Self {
        Self {
            inner: Inner::Single(conn),
            wait: wait.map(Arc::new),
        }
    }

    pub(crate) fn cluster(conn: ClusterConnection, wait: Option<WaitFor>) -> Self {
        Self {
            inner: Inner::Cluster(conn),
            wait: wait.map(Arc::new),
        }
    }

    pub(crate) fn sentinel(conn: SentinelConn, wait: Option<WaitFor>) -> Self {
        Self {
            inner: Inner::Sentinel(conn),
            wait: wait.map(Arc::new),
        }
    }

    /// This connection without the `WAIT` after writes (startup checks, reads in tests).
    pub(crate) fn without_wait(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            wait: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// `cmd` on the primary that holds the ledger: on a Cluster, the primary of `key`'s slot
    /// (commands without keys would go to any node); elsewhere, the one primary.
    pub(crate) async fn on_slot_primary(&mut self, key: &str, cmd: Cmd) -> RedisResult<Value> {
        match &mut self.inner {
            Inner::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
            _ => self.one(&cmd).await,
        }
    }

    async fn one(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_command(cmd).await,
            Inner::Cluster(c) => c.req_packed_command(cmd).await,
            Inner::Sentinel(c) => {
                c.run(|mut conn| async move { conn.req_packed_command(cmd).await })
                    .await
            }
        }
    }

    async fn many(&mut self, p: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(p, offset, count).await,
            Inner::Cluster(c) => c.req_packed_commands(p, offset, count).await,
            Inner::Sentinel(c) => {
                c.run(|mut conn| async move { conn.req_packed_commands(p, offset, count).await })
                    .await
            }
        }
    }

    /// `cmd`, then the fence and `WAIT`, in one round trip; the command's own answer once enough
    /// replicas hold it.
    async fn write_and_wait(&mut self, cmd: &Cmd, wait: &WaitFor) -> RedisResult<Value> {
        let mut p = ::redis::pipe();
        p.add_command(cmd.clone());
        p.cmd("INCR").arg(&wait.fence);
        p.cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms);
        let mut replies = self.many(&p, 0, 3).await?.into_iter();
        let (Some(answer), Some(_fence), Some(acks)) =
            (replies.next(), replies.next(), replies.next())
        else {
            return Err(RedisError::from((
                ErrorKind::Client,
                "short reply to a write followed by WAIT",
            )));
        };
        let answer = answer.extract_error()?;
        check_acks(acks, wait)?;
        Ok(answer)
    }

    /// After a pipeline that wrote: the fence and `WAIT` (a second round trip; the store's only
    /// writing pipeline is the breaker reset).
    async fn wait_after(&mut self, wait: &WaitFor) -> RedisResult<()> {
        let mut p = ::redis::pipe();
        p.cmd("INCR").arg(&wait.fence);
        p.cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms);
        let mut replies = self.many(&p, 0, 2).await?.into_iter();
        let (Some(_fence), Some(acks)) = (replies.next(), replies.next()) else {
            return Err(RedisError::from((ErrorKind::Client, "short reply to WAIT")));
        };
        check_acks(acks, wait)
    }
}

/// `Ok` when `WAIT` answered at least `wait.replicas`; else a retryable error (`TRYAGAIN`), never an
/// acknowledgement.
fn check_acks(acks: Value, wait: &WaitFor) -> RedisResult<()> {
    let acks: i64 = ::redis::from_redis_value(acks.extract_error()?)
        .map_err(|e| RedisError::from((ErrorKind::Parse, "WAIT answer", e.to_string())))?;
    if acks >= i64::from(wait.replicas) {
        Ok(())
    } else {
        Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::TryAgain),
            "write not acknowledged by enough replicas",
            format!(
                "{acks} of {} replicas within {} ms; not acknowledged, retry",
                wait.replicas, wait.timeout_ms
            ),
        )))
    }
}

/// Commands that never write: no `WAIT` after them. Anything else (scripts, `SET`, `DEL`…) is a write.
fn is_read(cmd: &Cmd) -> bool {
    let Some(::redis::Arg::Simple(name)) = cmd.args_iter().next() else {
        return false;
    };
    const READS: [&[u8]; 20] = [
        b"GET",
        b"MGET",
        b"EXISTS",
        b"ZRANGE",
        b"ZRANGEBYSCORE",
        b"ZREVRANGE",
        b"ZSCORE",
        b"ZCOUNT",
        b"ZCARD",
        b"LRANGE",
        b"LLEN",
        b"SCARD",
        b"SMEMBERS",
        b"SISMEMBER",
        b"PING",
        b"SCAN",
        b"INFO",
        b"CONFIG",
        b"SCRIPT",
        b"PTTL",
    ];
    READS.iter().any(|r| name.eq_ignore_ascii_case(r))
}

impl ConnectionLike for LedgerConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.wait.clone() {
                Some(wait) if !is_read(cmd) => self.write_and_wait(cmd, &wait).await,
                _ => self.one(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let values = self.many(cmd, offset, count).await?;
            if let Some(wait) = self.wait.clone()
                && !cmd.cmd_iter().all(is_read)
            {
                self.wait_after(&wait).await?;
            }
            Ok(values)
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
            Inner::Sentinel(c) => c.0.db,
        }
    }
}

/// A connection to the primary the sentinels name, replaced after a connection error or a
/// `READONLY` answer.
#[derive(Clone)]
pub(crate) struct SentinelConn(Arc<SentinelShared>);

struct SentinelShared {
    /// Asks the sentinels for the primary and checks its role; one lookup at a time.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The current primary's connection and its generation (so that a task reporting an error on
    /// an older connection does not drop a newer one).
    current: std::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    generations: AtomicU64,
    config: AsyncConnectionConfig,
    /// Bound on finding and connecting to the primary.
    connect_timeout: Duration,
    db: i64,
}

impl SentinelConn {
    /// Sentinels at `urls` watching `master_name`; the data nodes' `db`, user and password in
    /// `node`. Connects once, so that a wrong name or unreachable sentinels fail startup.
    pub(crate) async fn connect(
        urls: &[String],
        master_name: &str,
        node: SentinelNodeConnectionInfo,
        db: i64,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> RedisResult<Self> {
        let client = SentinelClient::build(
            urls.to_vec(),
            master_name.to_string(),
            Some(node),
            SentinelServerType::Master,
        )?;
        let conn = SentinelConn(Arc::new(SentinelShared {
            client: tokio::sync::Mutex::new(client),
            current: std::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(response_timeout)),
            connect_timeout,
            db,
        }));
        conn.primary().await?;
        Ok(conn)
    }

    /// The current primary's connection, asking the sentinels when there is none.
    async fn primary(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.0.current.lock().expect("not poisoned").clone() {
            return Ok(c);
        }
        let mut client = self.0.client.lock().await;
        if let Some(c) = self.0.current.lock().expect("not poisoned").clone() {
            return Ok(c);
        }
        let conn = tokio::time::timeout(
            self.0.connect_timeout * 2,
            client.get_async_connection_with_config(&self.0.config),
        )
        .await
        .map_err(|_| {
            RedisError::from((
                ErrorKind::Io,
                "finding the primary through Sentinel timed out",
            ))
        })??;
        let generation = self.0.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.0.current.lock().expect("not poisoned") = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Run `f` on the primary's connection; drop that connection when the answer says it is no
    /// longer usable (broken, or the node is a replica now).
    async fn run<'a, T, F, Fut>(&'a self, f: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>> + 'a,
    {
        let (generation, conn) = self.primary().await?;
        let result = f(conn).await;
        if let Err(e) = &result
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || matches!(
                    e.kind(),
                    ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                ))
        {
            let mut current = self.0.current.lock().expect("not poisoned");
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                *current = None;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_told_from_writes_by_command_name() {
        assert!(is_read(::redis::cmd("GET").arg("k")));
        assert!(is_read(::redis::cmd("zrangebyscore").arg("k")));
        assert!(!is_read(::redis::cmd("SET").arg("k").arg("v")));
        assert!(!is_read(::redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(!is_read(::redis::cmd("DEL").arg("k")));
    }

    #[test]
    fn too_few_acks_is_a_retryable_error_never_an_ack() {
        let wait = WaitFor {
            replicas: 2,
            timeout_ms: 100,
            fence: "f".into(),
        };
        assert!(check_acks(Value::Int(2), &wait).is_ok());
        assert!(check_acks(Value::Int(3), &wait).is_ok());
        let e = check_acks(Value::Int(1), &wait).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Server(ServerErrorKind::TryAgain));
        assert!(e.to_string().contains("1 of 2"), "{e}");
    }
}
