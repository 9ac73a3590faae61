//! Protocol settings. Every limit the core enforces is here, with its default and why.

use std::time::Duration;

use super::reassembly::ReassemblyConfig;
use super::rtt::RttConfig;

/// Settings of an [`super::Endpoint`] and its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest datagram sent, in bytes (UDP payload). Default 1200: fits the IPv6
    /// minimum MTU (1280) minus IPv6 and UDP headers with room to spare, so it is never
    /// fragmented by IP on a real network. Loopback can use up to 65,507.
    pub max_datagram: usize,
    /// Largest datagram for a connection whose peer is on a loopback address, where the
    /// MTU is 64 KiB and no path can fragment it; `None` keeps `max_datagram` there too.
    /// Both ends advertise their size in the handshake and the smaller one is used.
    /// Default 65,000: a 64 KiB message is 2 datagrams instead of 56, which is what makes
    /// large messages fast on loopback (each datagram costs two system calls).
    pub loopback_max_datagram: Option<usize>,
    /// Most sequenced datagrams in flight (sent, not acknowledged) per connection; the
    /// peer's advertised receive window caps it further. Default 1024.
    pub send_window: u32,
    /// Sequence numbers above the cumulative ack that the receiver tracks (and advertises
    /// to the peer in the handshake). Default 4096.
    pub recv_window: u32,
    /// Bytes of messages accepted for sending but not yet sent (fragments waiting for
    /// window space) per connection; a message is accepted while the backlog is below
    /// this (so one message of any size up to the maximum is always accepted on an idle
    /// connection) and senders wait otherwise. Default 4 MiB.
    pub send_buffer: usize,
    /// Retransmission timeout estimation (RFC 6298) bounds. Defaults: initial 50 ms,
    /// minimum 5 ms, maximum 2 s, granularity 1 ms. The minimum is a LAN choice: RTTs are
    /// ~0.1 ms, and 5 ms still leaves room for a delayed ack (1 ms) and scheduling delays
    /// on a loaded host, while recovering from loss 40× sooner than TCP's 200 ms floor.
    pub rtt: RttConfig,
    /// Longest an acknowledgement waits alone for a datagram to ride on. Default 1 ms:
    /// long enough for a fast handler's reply to carry the ack of its request, short
    /// enough to be far below the minimum RTO.
    pub ack_delay: Duration,
    /// Acknowledge at once after this many ack-eliciting datagrams were received without
    /// sending an ack. Default 2 (as TCP).
    pub ack_every: u32,
    /// Packet-reordering threshold for fast retransmission: an unacknowledged datagram
    /// is declared lost when one sent after it, with a sequence number at least this much
    /// higher, is acknowledged. Default 3.
    pub reorder_threshold: u64,
    /// Reassembly limits (largest message, per-connection memory, timeout of an
    /// incomplete message). Defaults 16 MiB, 32 MiB, 30 s.
    pub reassembly: ReassemblyConfig,
    /// Memory for reassembly across all connections of an endpoint. Default 256 MiB.
    pub global_reassembly_budget: usize,
    /// Messages received but not yet taken by the application, per connection, before
    /// the connection stops accepting new data (unacknowledged, so the peer resends it
    /// later). Default 1024.
    pub max_undelivered: usize,
    /// An idle established connection sends a keepalive after this long without sending
    /// anything. Default 1 s.
    pub keepalive_interval: Duration,
    /// A connection with data in flight (or a handshake pending) whose peer has sent
    /// nothing for this long is declared unreachable. Default 10 s.
    pub peer_timeout: Duration,
    /// A single datagram retransmitted this many times declares the peer unreachable.
    /// Default 64.
    pub max_retransmits: u32,
    /// A connection whose peer has sent nothing for this long is closed and freed, busy
    /// or not. Default 30 s.
    pub idle_timeout: Duration,
    /// Most connections an endpoint holds; handshakes beyond it are refused. Default
    /// 10,000.
    pub max_connections: usize,
    /// Datagrams an endpoint queues to send on its own behalf (resets to unknown peers)
    /// before dropping them. Default 256.
    pub max_endpoint_transmits: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_datagram: 1200,
            loopback_max_datagram: Some(65_000),
            send_window: 1024,
            recv_window: 4096,
            send_buffer: 4 << 20,
            rtt: RttConfig::default(),
            ack_delay: Duration::from_millis(1),
            ack_every: 2,
            reorder_threshold: 3,
            reassembly: ReassemblyConfig::default(),
            global_reassembly_budget: 256 << 20,
            max_undelivered: 1024,
            keepalive_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(10),
            max_retransmits: 64,
            idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_endpoint_transmits: 256,
        }
    }
}

impl Config {
    /// A configuration suited to loopback: 65,000-byte datagrams.
    pub fn loopback() -> Self {
        Config {
            max_datagram: 65_000,
            ..Config::default()
        }
    }

    /// Sets the largest datagram (clamped to 128..=65,507).
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.max_datagram = bytes.clamp(128, 65_507);
        self
    }

    /// Sets [`Config::loopback_max_datagram`] (clamped to 128..=65,507).
    pub fn loopback_max_datagram(mut self, bytes: Option<usize>) -> Self {
        self.loopback_max_datagram = bytes.map(|b| b.clamp(128, 65_507));
        self
    }

    /// The largest datagram for a connection to `peer`.
    pub fn max_datagram_for(&self, peer: std::net::SocketAddr) -> usize {
        match self.loopback_max_datagram {
            Some(b) if peer.ip().is_loopback() => b.max(self.max_datagram),
            _ => self.max_datagram,
        }
    }

    /// Sets the send window in datagrams (at least 1).
    pub fn send_window(mut self, datagrams: u32) -> Self {
        self.send_window = datagrams.max(1);
        self
    }

    /// Sets the receive window in sequence numbers (at least 1).
    pub fn recv_window(mut self, seqs: u32) -> Self {
        self.recv_window = seqs.max(1);
        self
    }

    /// Sets the RTO bounds.
    pub fn rtt(mut self, rtt: RttConfig) -> Self {
        self.rtt = rtt;
        self
    }

    /// Sets the delayed-ack bound.
    pub fn ack_delay(mut self, d: Duration) -> Self {
        self.ack_delay = d;
        self
    }

    /// Sets the reassembly limits.
    pub fn reassembly(mut self, r: ReassemblyConfig) -> Self {
        self.reassembly = r;
        self
    }

    /// Sets the endpoint-wide reassembly budget.
    pub fn global_reassembly_budget(mut self, bytes: usize) -> Self {
        self.global_reassembly_budget = bytes;
        self
    }

    /// Sets the keepalive interval.
    pub fn keepalive_interval(mut self, d: Duration) -> Self {
        self.keepalive_interval = d;
        self
    }

    /// Sets the peer timeout.
    pub fn peer_timeout(mut self, d: Duration) -> Self {
        self.peer_timeout = d;
        self
    }

    /// Sets the retransmission limit per datagram.
    pub fn max_retransmits(mut self, n: u32) -> Self {
        self.max_retransmits = n.max(1);
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Sets the connection limit.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets the per-connection send backlog in bytes.
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = bytes.max(1);
        self
    }
}
