//! A `redis-server` of the test's own on a free port, to SIGKILL and restart from its data directory
//! (the shared Redis on 6379 must never be killed). The launcher is the library's own test kit
//! (`src/ledger/store/redis/testkit.rs`, which also starts clusters and sentinels for the store's
//! tests), compiled here from the same source since integration tests cannot reach `#[cfg(test)]`
//! code.

#[path = "../../../src/ledger/store/redis/testkit.rs"]
mod testkit;

pub(crate) use testkit::RedisProc;
