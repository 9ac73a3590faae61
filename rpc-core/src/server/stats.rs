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
    /// Calls an authorizer refused (`PermissionDenied`, `Unauthenticated`, or another
    /// status it chose) before their arguments were decoded.
    pub unauthorized: u64,
    /// Calls whose credentials block was malformed (refused `BadArguments`).
    pub bad_credentials: u64,
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

/// One counter, kept twice: an atomic read by [`ServerStats`] snapshots, and a handle
/// of the `metrics` facade (`rpc_server_<name>_total`, registered once when the server
/// starts; a no-op when no recorder is installed).
#[derive(Debug)]
pub(super) struct Count {
    local: AtomicU64,
    metric: metrics::Counter,
}

impl Count {
    fn new(name: &'static str) -> Self {
        Count {
            local: AtomicU64::new(0),
            metric: metrics::counter!(name),
        }
    }
}

macro_rules! counters {
    ($($field:ident),* $(,)?) => {
        /// The live counters behind [`ServerStats`].
        #[derive(Debug)]
        pub(super) struct Counters {
            $(pub(super) $field: Count,)*
        }

        impl Counters {
            /// Registers every counter's metric with the installed recorder.
            pub(super) fn new() -> Self {
                Counters {
                    $($field: Count::new(concat!("rpc_server_", stringify!($field), "_total")),)*
                }
            }

            /// The counters' part of a snapshot; the caller fills in the gauges.
            pub(super) fn snapshot(&self) -> ServerStats {
                ServerStats {
                    $($field: self.$field.local.load(Ordering::Relaxed),)*
                    ..ServerStats::default()
                }
            }
        }
    };
}

counters!(
    connections_accepted,
    connections_rejected,
    connections_rejected_per_ip,
    connections_evicted,
    calls_received,
    calls_completed,
    calls_inline,
    overloaded,
    unknown_interface,
    version_mismatch,
    unknown_procedure,
    bad_arguments,
    unauthorized,
    bad_credentials,
    deadline_expired,
    refused_shutting_down,
    handler_panics,
    bad_frames,
    slow_frames,
    replies_dropped,
    idle_closed,
    connection_errors,
    reads_paused,
    write_timeouts,
    shutdown_aborted,
    cancelled_skipped,
    cancels_received,
);

/// Adds one to a counter.
pub(super) fn bump(c: &Count) {
    c.local.fetch_add(1, Ordering::Relaxed);
    c.metric.increment(1);
}
