//! Moved to [`crate::kit`]; these re-exports keep files written against the old paths compiling until
//! they switch to `crate::kit`.

#![allow(unused_imports)]

pub(crate) use crate::kit::{
    CountingProxy, DISABLE_ALL_POLICY, Reply, Seen, Target, TestApp, alert_json, eventually, kafka,
    metric_value, policy_dir, unique,
};

/// Transitional, for files not yet on [`TestApp::builder`]: build from whole-config TOML text.
impl TestApp {
    pub(crate) async fn spawn(toml: &str) -> TestApp {
        let settings =
            deprovd::app::Settings::from_toml(toml, Vec::new()).expect("test config parses");
        TestApp::start(settings).await
    }
}

/// Transitional: Redis `[state]` TOML with a random key prefix (the builder's `.redis()`).
pub(crate) fn redis_state() -> String {
    format!(
        "[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{}:\"\n",
        unique("deprovd-test")
    )
}
