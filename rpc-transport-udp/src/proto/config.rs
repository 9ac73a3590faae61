//! Protocol settings. Every limit the core enforces is here, with its default and why.

use std::time::Duration;

use super::reassembly::ReassemblyConfig;
use super::rtt::RttConfig;

/// Smallest datagram a peer may advertise in its handshake (and the smallest this side
/// uses): a Data datagram of this size still carries 16 payload bytes after the header,
/// 8 SACK ranges and the Data header. An Init (or Accept) advertising less is refused
/// (Close reason 5).
pub const MIN_DATAGRAM: usize = 128;
/// Largest datagram anyone may advertise (the largest IPv4 UDP payload); larger
/// advertised values are clamped to it.
pub const MAX_DATAGRAM: usize = 65_507;
/// Largest receive window anyone may advertise; larger advertised values are clamped to
/// it. A window of 0 is refused (Close reason 5).
pub const MAX_WINDOW: u32 = 1 << 16;
/// Until its address is validated, a server sends a peer at most this many times the
/// bytes it received from it (RFC 9000 8.1).
pub const AMPLIFICATION_FACTOR: u64 = 3;

/// When a server makes a client prove its address (PROTOCOL.md 9.3) before it creates
/// any state for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressValidation {
    /// Every Init without a valid cookie is answered with a stateless Retry (the
    /// default: one extra round trip per connection, no state and no amplification for
    /// spoofed sources).
    Always,
    /// While the endpoint holds fewer than `connections` connections, an Init without a
    /// cookie opens a connection at once, unvalidated: it may send the peer at most
    /// [`AMPLIFICATION_FACTOR`] times the bytes received until the client echoes the
    /// cookie of the Retry sent along with the Accept. From `connections` on, it behaves
    /// as `Always`.
    UnderLoad {
        /// Connections held from which Retry is required.
        connections: usize,
    },
}

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
    /// incomplete message). Defaults 16 MiB, 32 MiB, 10 s.
    pub reassembly: ReassemblyConfig,
    /// Memory for reassembly across all connections of an endpoint. Default 256 MiB.
    pub global_reassembly_budget: usize,
    /// Complete messages a connection queues for [`super::Endpoint::poll_message`]
    /// before it stops accepting new data (unacknowledged, so the peer resends it later);
    /// it accepts data again once the application has taken the queue down to half.
    /// Checked after each datagram, or after each batch given to
    /// [`super::Endpoint::handle_datagrams`] (which may overshoot by the batch's length).
    /// Default 1024.
    pub max_undelivered: usize,
    /// An idle established connection sends a keepalive after this long without sending
    /// anything. Default 1 s.
    pub keepalive_interval: Duration,
    /// A connection with data in flight (or a handshake pending) whose peer has sent
    /// nothing for this long is declared unreachable; so is one with data in flight
    /// whose peer keeps sending (pings) but acknowledges nothing new for this long.
    /// Default 10 s.
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
    /// Server: when a client must prove its address with a cookie. Default
    /// [`AddressValidation::Always`].
    pub address_validation: AddressValidation,
    /// How long a Retry's cookie stays valid (and how often the cookie key rotates; the
    /// key of the previous period still verifies cookies issued in it). Default 5 s:
    /// many round trips, yet a captured exchange is useless soon after.
    pub cookie_lifetime: Duration,
    /// Connections one peer IP address may hold at once; further Inits from it are
    /// refused (Close reason 4). Default 256.
    pub max_connections_per_ip: usize,
    /// Server: closed connections whose (address, connection id) is remembered for
    /// `cookie_lifetime`, so a replay of their Init with its old cookie is refused
    /// (answered with a fresh Retry). The oldest is forgotten beyond this. Default 4096.
    pub max_quarantined: usize,
    /// Sealed datagrams (PROTOCOL.md 9.10): the keys this endpoint proves and accepts.
    /// `None` (the default): plaintext datagrams, and Hellos are refused (Close 6). With
    /// it, every datagram after the handshake is encrypted and authenticated, plain
    /// Inits are refused (Close 6), and every client must prove its address with a
    /// cookie before the server spends a Diffie-Hellman on it, whatever
    /// [`Config::address_validation`] says.
    pub security: Option<super::seal::Security>,
    /// Server: a connection whose peer has never acknowledged any of its Data is closed
    /// (unreachable) after this many retransmission timeouts without an ack, or after
    /// [`Config::never_acked_timeout`], whichever comes first. Default 8.
    pub never_acked_retransmits: u32,
    /// Server: see [`Config::never_acked_retransmits`]; the time since the connection's
    /// first Data went out, checked when the retransmission timer fires. Default 5 s.
    /// Both bound what a server sends to an address that never acknowledges.
    pub never_acked_timeout: Duration,
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
            address_validation: AddressValidation::Always,
            cookie_lifetime: Duration::from_secs(5),
            max_connections_per_ip: 256,
            max_quarantined: 4096,
            security: None,
            never_acked_retransmits: 8,
            never_acked_timeout: Duration::from_secs(5),
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

    /// Sets the largest datagram (clamped to [`MIN_DATAGRAM`]..=[`MAX_DATAGRAM`]).
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.max_datagram = bytes.clamp(MIN_DATAGRAM, MAX_DATAGRAM);
        self
    }

    /// Sets [`Config::security`].
    pub fn security(mut self, security: super::seal::Security) -> Self {
        self.security = Some(security);
        self
    }

    /// Sets [`Config::loopback_max_datagram`] (clamped to [`MIN_DATAGRAM`]..=[`MAX_DATAGRAM`]).
    pub fn loopback_max_datagram(mut self, bytes: Option<usize>) -> Self {
        self.loopback_max_datagram = bytes.map(|b| b.clamp(MIN_DATAGRAM, MAX_DATAGRAM));
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

    /// Sets the receive window in sequence numbers (clamped to 1..=[`MAX_WINDOW`]).
    pub fn recv_window(mut self, seqs: u32) -> Self {
        self.recv_window = seqs.clamp(1, MAX_WINDOW);
        self
    }

    /// Sets when clients must prove their address.
    pub fn address_validation(mut self, v: AddressValidation) -> Self {
        self.address_validation = v;
        self
    }

    /// Sets the cookie lifetime (at least 1 ms).
    pub fn cookie_lifetime(mut self, d: Duration) -> Self {
        self.cookie_lifetime = d.max(Duration::from_millis(1));
        self
    }

    /// Sets the connection limit per peer IP address (at least 1).
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n.max(1);
        self
    }

    /// Sets the bounds on retransmitting to a peer that never acknowledged anything.
    pub fn never_acked(mut self, retransmits: u32, timeout: Duration) -> Self {
        self.never_acked_retransmits = retransmits.max(1);
        self.never_acked_timeout = timeout;
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
