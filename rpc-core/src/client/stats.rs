//! The client's counters, and the snapshots it hands out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::naming::Endpoint;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) calls: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    pub(super) unmatched_replies: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) outcome_unknown: AtomicU64,
    pub(super) server_restarted: AtomicU64,
    pub(super) cancels_sent: AtomicU64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self, in_flight: u64) -> ClientStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            calls: get(&self.calls),
            failures: get(&self.failures),
            timeouts: get(&self.timeouts),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            unmatched_replies: get(&self.unmatched_replies),
            in_flight,
            retries: get(&self.retries),
            outcome_unknown: get(&self.outcome_unknown),
            server_restarted: get(&self.server_restarted),
            cancels_sent: get(&self.cancels_sent),
        }
    }
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that ended in an error (timeouts included).
    pub failures: u64,
    /// Calls whose own deadline passed (`RpcError::Timeout`).
    pub timeouts: u64,
    /// Connections established (incarnation probe answered).
    pub connects: u64,
    /// Connection attempts that failed: refused, timed out (the handshake or the
    /// incarnation probe), or any other connect error.
    pub connect_failures: u64,
    /// Replies that matched no pending call (late replies after a call ended, or bogus
    /// ids).
    pub unmatched_replies: u64,
    /// Calls started and not finished yet.
    pub in_flight: u64,
    /// Attempts after the first (resends and retries of refused calls).
    pub retries: u64,
    /// At-most-once calls that ended in doubt (`RpcError::OutcomeUnknown`).
    pub outcome_unknown: u64,
    /// Calls failed because the server restarted while they were in doubt.
    pub server_restarted: u64,
    /// Cancel frames sent for calls abandoned before their answer.
    pub cancels_sent: u64,
}

/// One endpoint's counters and health, for observability and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The endpoint (`None` for a client over a single channel).
    pub endpoint: Option<Endpoint>,
    /// Whether it is up (not marked down).
    pub up: bool,
    /// Attempts in flight on it now.
    pub outstanding: usize,
    /// Attempts sent to it.
    pub calls: u64,
    /// Failures recorded against it.
    pub failures: u64,
    /// Failed connection attempts to it (refused or timed out).
    pub connect_failures: u64,
    /// Time left in its reconnect backoff: the next connection attempt to it waits this
    /// long (`None`: no backoff pending, or an attempt is under way now).
    pub reconnect_in: Option<Duration>,
    /// The current reconnect backoff step (it doubles after each failed attempt, up to
    /// `ClientConfig::reconnect_backoff`'s maximum, and resets on success).
    pub reconnect_backoff: Duration,
}
