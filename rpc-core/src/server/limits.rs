//! Every bound the server keeps against its peers, in one place: what it limits, its
//! default, what happens at the bound, and the counter that shows it.
//!
//! | limit | default | at the bound | counter ([`super::ServerStats`]) |
//! |---|---|---|---|
//! | [`ServerLimits::max_connections`] | 1,024 | the longest-idle connection of the peer address holding the most is closed to admit the new one; if no connection is idle, the new one is closed | `connections_evicted`, `connections_rejected` |
//! | [`ServerLimits::max_connections_per_ip`] | 256 | the longest-idle connection of that address is closed; if none is idle, the new one is closed | `connections_evicted`, `connections_rejected_per_ip` |
//! | [`ServerLimits::idle_timeout`] | 5 min | a connection with no call in flight and no frame for that long is closed | `idle_closed` |
//! | [`ServerLimits::max_calls_per_connection`] | 256 | the server stops reading from that connection until one of its calls is answered (flow control, like HTTP/2's concurrent-stream limit) | `reads_paused` |
//! | [`ServerLimits::max_queued_reply_bytes`] | 8 MiB | the server stops reading from that connection until its peer reads replies | `reads_paused` |
//! | [`ServerLimits::write_timeout`] | 30 s | a connection whose replies have not moved for that long is aborted (its queued replies discarded) | `write_timeouts` |
//! | [`ServerLimits::shutdown_grace`] | 10 s | a graceful shutdown stops waiting for calls and for peers to read their replies, and aborts what is left | `shutdown_aborted` |
//!
//! The work queue (`workers` + `queue_depth` calls queued or running, answered
//! `Overloaded` beyond it) counts a call only while it waits for a worker or its handler
//! runs: a reply waiting for its connection to drain holds no worker and no admission
//! slot, only its own connection's call budget. The reply cache has its own limits
//! ([`super::ReplyCacheConfig`]); frame-level limits (payload size, the time a frame may
//! take to arrive) belong to the transport (e.g. `TcpConfig::max_payload`,
//! `TcpConfig::frame_timeout`).
//!
//! Memory held for one connection's replies is at most `max_queued_reply_bytes` plus
//! what the calls admitted before the pause produce (`max_calls_per_connection` replies).

use std::time::Duration;

/// Default [`ServerLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`ServerLimits::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Default [`ServerLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`ServerLimits::max_calls_per_connection`].
pub const DEFAULT_MAX_CALLS_PER_CONNECTION: usize = 256;
/// Default [`ServerLimits::max_queued_reply_bytes`].
pub const DEFAULT_MAX_QUEUED_REPLY_BYTES: usize = 8 << 20;
/// Default [`ServerLimits::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerLimits::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The server's per-connection and lifecycle limits (see the [module docs](self) for the
/// table of bounds, defaults and counters). Set them through the `ServerBuilder`
/// methods of the same names, or all at once with `ServerBuilder::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one peer IP address.
    pub max_connections_per_ip: usize,
    /// A connection with no call in flight that sends no frame for this long is closed
    /// (`None`: never). Clients reconnect transparently.
    pub idle_timeout: Option<Duration>,
    /// Calls of one connection queued, running or waiting for their reply to be handed
    /// to the transport; beyond it the connection is not read.
    pub max_calls_per_connection: usize,
    /// Bytes of one connection's replies handed to the transport and not yet written;
    /// beyond it the connection is not read.
    pub max_queued_reply_bytes: usize,
    /// How long a connection's replies may stay unwritten (no byte written, no reply
    /// handed over) before the connection is aborted.
    pub write_timeout: Duration,
    /// How long a graceful shutdown waits for calls to finish and replies to be written.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_calls_per_connection: DEFAULT_MAX_CALLS_PER_CONNECTION,
            max_queued_reply_bytes: DEFAULT_MAX_QUEUED_REPLY_BYTES,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ServerLimits {
    /// Whether a connection with `calls` in flight and `queued` reply bytes unwritten
    /// must not be read for now.
    pub(super) fn must_pause(&self, calls: usize, queued: usize) -> bool {
        calls >= self.max_calls_per_connection || queued >= self.max_queued_reply_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_pause_rule() {
        let l = ServerLimits::default();
        assert_eq!(l.max_connections, 1024);
        assert_eq!(l.max_connections_per_ip, 256);
        assert_eq!(l.idle_timeout, Some(Duration::from_secs(300)));
        assert!(!l.must_pause(255, (8 << 20) - 1));
        assert!(l.must_pause(256, 0));
        assert!(l.must_pause(0, 8 << 20));
    }
}
