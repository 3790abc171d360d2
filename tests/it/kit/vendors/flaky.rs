//! Any vendor, unreliable: a share of API requests is throttled (429 with `Retry-After`) or fails
//! (503) before the vendor sees it, as a busy SaaS does; and every state change the vendor accepted
//! is counted per target path, so a test can say "contained exactly once".

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::kit::fake::{Req, Resp, Vendor, resp};

/// `V` behind throttling and failures.
pub(crate) struct Flaky<V> {
    pub(crate) vendor: V,
    /// Per mille of requests answered 429 with `Retry-After: 1`.
    pub(crate) throttle_per_mille: u32,
    /// Per mille of requests answered 503.
    pub(crate) fail_per_mille: u32,
    /// Successful (2xx) POSTs the vendor answered, by path: the side effects that happened.
    pub(crate) changes: BTreeMap<String, usize>,
    pub(crate) throttled: usize,
    pub(crate) failed: usize,
    rng: rand::rngs::StdRng,
}

impl<V> Flaky<V> {
    pub(crate) fn new(vendor: V, throttle_per_mille: u32, fail_per_mille: u32, seed: u64) -> Self {
        Flaky {
            vendor,
            throttle_per_mille,
            fail_per_mille,
            changes: BTreeMap::new(),
            throttled: 0,
            failed: 0,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }
}

impl<V: Vendor> Vendor for Flaky<V> {
    const TOKEN_PATH: Option<&'static str> = V::TOKEN_PATH;

    fn unauthorized() -> Resp {
        V::unauthorized()
    }

    fn handle(&mut self, req: &Req, base: &str) -> Resp {
        let roll = self.rng.random_range(0..1000);
        if roll < self.throttle_per_mille {
            self.throttled += 1;
            let mut r = resp(429, json!({"error": "too many requests"}));
            r.2.push(("Retry-After".into(), "1".into()));
            return r;
        }
        if roll < self.throttle_per_mille + self.fail_per_mille {
            self.failed += 1;
            return resp(503, Value::Null);
        }
        let answer = self.vendor.handle(req, base);
        if req.method == axum::http::Method::POST && (200..300).contains(&answer.0) {
            *self.changes.entry(req.path.clone()).or_default() += 1;
        }
        answer
    }
}
