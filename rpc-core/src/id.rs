//! Random identifiers and jitter without an RNG dependency: std's `RandomState` is
//! seeded from the OS once per process and perturbed per instance.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random, non-zero u64 (client ids, server incarnations).
pub(crate) fn random_u64() -> u64 {
    loop {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        h.write_u64(nanos);
        let v = h.finish();
        if v != 0 {
            return v;
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.0).
pub(crate) fn jitter(d: Duration) -> Duration {
    let frac = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + frac / 2.0)
}
