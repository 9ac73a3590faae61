//! The server's counters: atomics bumped where things happen, read as a [`ServerStats`]
//! snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use super::reply_cache::ReplyCacheStats;

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// New connections closed at once because `max_connections` were open and none of
    /// them was idle.
    pub connections_rejected: u64,
    /// New connections closed at once because their address had
    /// `max_connections_per_ip` open and none of them was idle.
    pub connections_rejected_per_ip: u64,
    /// Idle connections closed to make room for a new one (at either connection limit).
    pub connections_evicted: u64,
    /// Connections open right now.
    pub connections_open: u64,
    /// Call frames received.
    pub calls_received: u64,
    /// Calls a handler finished (successfully or not).
    pub calls_completed: u64,
    /// Of those, calls run inline on the dispatch loop (`ServerBuilder::run_inline`).
    pub calls_inline: u64,
    /// Calls refused because the work queue was full.
    pub overloaded: u64,
    /// Calls for an unknown interface.
    pub unknown_interface: u64,
    /// Calls for a hosted interface in a version not hosted.
    pub version_mismatch: u64,
    /// Calls for an unknown procedure.
    pub unknown_procedure: u64,
    /// Calls whose arguments did not decode.
    pub bad_arguments: u64,
    /// Calls dropped because their deadline passed before a worker took them.
    pub deadline_expired: u64,
    /// Calls refused during shutdown.
    pub refused_shutting_down: u64,
    /// Handlers that panicked.
    pub handler_panics: u64,
    /// Connections closed because of a bad frame or a protocol violation.
    pub bad_frames: u64,
    /// Connections closed because a frame did not arrive completely in time (the
    /// transport's frame timeout: slowloris, or a payload announced and never sent).
    pub slow_frames: u64,
    /// Replies that could not be sent because the connection had closed (or, for
    /// duplicates joined to another connection's call, because it had no room).
    pub replies_dropped: u64,
    /// Connections closed by the idle timeout.
    pub idle_closed: u64,
    /// Connections that ended with an I/O error (e.g. the stream ended mid-frame).
    pub connection_errors: u64,
    /// Times a connection stopped being read because it had too many calls in flight
    /// or too many reply bytes unwritten.
    pub reads_paused: u64,
    /// Connections aborted because their replies did not drain for `write_timeout`.
    pub write_timeouts: u64,
    /// Connections aborted at the end of a shutdown's grace period.
    pub shutdown_aborted: u64,
    /// Calls skipped because their client cancelled them before a worker took them.
    pub cancelled_skipped: u64,
    /// Cancel frames received.
    pub cancels_received: u64,
    /// The reply cache's counters and occupancy.
    pub reply_cache: ReplyCacheStats,
    /// Calls queued or running a handler right now (what the work queue admits).
    pub in_flight: u64,
    /// Reply bytes handed to the transports and not yet written, summed over the open
    /// connections.
    pub queued_reply_bytes: u64,
}

/// The live counters behind [`ServerStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) connections_accepted: AtomicU64,
    pub(super) connections_rejected: AtomicU64,
    pub(super) connections_rejected_per_ip: AtomicU64,
    pub(super) connections_evicted: AtomicU64,
    pub(super) calls_received: AtomicU64,
    pub(super) calls_completed: AtomicU64,
    pub(super) calls_inline: AtomicU64,
    pub(super) overloaded: AtomicU64,
    pub(super) unknown_interface: AtomicU64,
    pub(super) version_mismatch: AtomicU64,
    pub(super) unknown_procedure: AtomicU64,
    pub(super) bad_arguments: AtomicU64,
    pub(super) deadline_expired: AtomicU64,
    pub(super) refused_shutting_down: AtomicU64,
    pub(super) handler_panics: AtomicU64,
    pub(super) bad_frames: AtomicU64,
    pub(super) slow_frames: AtomicU64,
    pub(super) replies_dropped: AtomicU64,
    pub(super) idle_closed: AtomicU64,
    pub(super) connection_errors: AtomicU64,
    pub(super) reads_paused: AtomicU64,
    pub(super) write_timeouts: AtomicU64,
    pub(super) shutdown_aborted: AtomicU64,
    pub(super) cancelled_skipped: AtomicU64,
    pub(super) cancels_received: AtomicU64,
}

/// Adds one to a counter.
pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The counters' part of a snapshot; the caller fills in the gauges.
    pub(super) fn snapshot(&self) -> ServerStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            connections_accepted: l(&self.connections_accepted),
            connections_rejected: l(&self.connections_rejected),
            connections_rejected_per_ip: l(&self.connections_rejected_per_ip),
            connections_evicted: l(&self.connections_evicted),
            calls_received: l(&self.calls_received),
            calls_completed: l(&self.calls_completed),
            calls_inline: l(&self.calls_inline),
            overloaded: l(&self.overloaded),
            unknown_interface: l(&self.unknown_interface),
            version_mismatch: l(&self.version_mismatch),
            unknown_procedure: l(&self.unknown_procedure),
            bad_arguments: l(&self.bad_arguments),
            deadline_expired: l(&self.deadline_expired),
            refused_shutting_down: l(&self.refused_shutting_down),
            handler_panics: l(&self.handler_panics),
            bad_frames: l(&self.bad_frames),
            slow_frames: l(&self.slow_frames),
            replies_dropped: l(&self.replies_dropped),
            idle_closed: l(&self.idle_closed),
            connection_errors: l(&self.connection_errors),
            reads_paused: l(&self.reads_paused),
            write_timeouts: l(&self.write_timeouts),
            shutdown_aborted: l(&self.shutdown_aborted),
            cancelled_skipped: l(&self.cancelled_skipped),
            cancels_received: l(&self.cancels_received),
            ..ServerStats::default()
        }
    }
}
