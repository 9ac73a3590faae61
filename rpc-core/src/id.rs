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

/// Hashes ids (call ids, client ids, pairs of them) with one multiplication per id
/// (Fibonacci hashing), for maps whose keys need no keyed hash: the client's table of
/// its own sequential call ids (a peer can only look them up, never insert them), and
/// a server connection's cancellation handles by (client id, call id) — the peer's to
/// choose, but the map is the peer's own connection's and holds at most its calls in
/// flight (bounded by admission): ids made to collide only slow down its own calls'
/// bookkeeping. One id hashes to `id × φ⁻¹·2⁶⁴`, spreading sequential ids over the
/// high bits the table uses.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0.rotate_left(29) ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
