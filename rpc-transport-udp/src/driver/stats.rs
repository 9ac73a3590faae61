//! [`UdpStats`] and [`UdpStatsHandle`]: counters of the protocol and the driver.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::Shared;

/// A snapshot of the counters of one or more sockets (a listener's one socket, or every
/// socket a channel opened, including those already closed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Sockets counted (open or closed).
    pub sockets: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Data fragments retransmitted.
    pub retransmits: u64,
    /// Data datagrams received more than once.
    pub duplicates: u64,
    /// Datagrams dropped because their CRC did not match.
    pub checksum_failures: u64,
    /// Datagrams dropped because they were malformed otherwise.
    pub malformed: u64,
    /// Datagrams for no known connection.
    pub unknown_connection: u64,
    /// Data datagrams beyond the receive window.
    pub beyond_window: u64,
    /// Data datagrams dropped for lack of reassembly memory.
    pub over_budget: u64,
    /// Retransmission timeouts.
    pub rto_timeouts: u64,
    /// Connections opened (client side).
    pub connections_opened: u64,
    /// Connections accepted by the protocol (server side).
    pub connections_accepted: u64,
    /// Handshakes refused by the protocol (connection limit).
    pub connections_refused: u64,
    /// Connections closed and freed.
    pub connections_closed: u64,
    /// `sendto` failures other than a full buffer (the protocol retransmits).
    pub send_errors: u64,
    /// `recvfrom` failures.
    pub recv_errors: u64,
    /// Datagrams dropped because the socket's buffer and the driver's queue were full.
    pub pending_out_drops: u64,
    /// Datagrams sent with a gather list (`sendmsg`: the datagram header, then payload
    /// chunks referenced where they lie, not copied).
    pub datagrams_gathered: u64,
    /// Send system calls that carried more than one datagram (segmentation offload,
    /// GSO: see [`crate::UdpConfig::gso`]).
    pub gso_sends: u64,
    /// Receive system calls (`recvmmsg`) that returned at least one datagram; with
    /// `datagrams_received` it shows how many datagrams a call took on average.
    pub recv_calls: u64,
    /// Received buffers that held more than one datagram (coalesced by the kernel's
    /// receive offload, GRO) and were split into their datagrams.
    pub gro_batches: u64,
    /// New connections closed because the accept backlog was full.
    pub accept_overflow: u64,
    /// Messages that were not a valid RPC frame (their connection was closed).
    pub bad_frames: u64,
    /// Retries sent: stateless answers to Inits without a valid cookie (address validation).
    pub retries_sent: u64,
    /// Inits whose cookie was too old.
    pub cookies_expired: u64,
    /// Inits whose cookie did not verify (forged, or another address's).
    pub cookies_invalid: u64,
    /// Inits replaying the handshake of a connection already closed.
    pub replays_refused: u64,
    /// Inits refused for out-of-range parameters (Close reason 5).
    pub bad_parameters: u64,
    /// Handshakes refused by the per-IP connection limit (also in `connections_refused`).
    pub refused_per_ip: u64,
    /// Connections accepted before their address was validated (under-load mode).
    pub accepted_unvalidated: u64,
    /// Datagrams held back by the anti-amplification limit.
    pub amplification_blocked: u64,
    /// Connections closed because the peer never acknowledged any Data.
    pub never_acked_closes: u64,
    /// Connections closed because the peer acknowledged nothing new for `peer_timeout`
    /// while it kept sending (pings) and Data was in flight.
    pub no_progress_closes: u64,
    /// Connections evicted to free reassembly memory for others.
    pub reassembly_evictions: u64,
    /// Secure handshakes completed (sealed connections opened).
    pub handshakes_completed: u64,
    /// Secure handshakes that did not authenticate (the wrong key, an unknown PSK id, a tampered message).
    pub handshakes_failed: u64,
    /// Server: secure handshakes that proved a client key not in the allowed set.
    pub handshakes_refused: u64,
    /// Server: plain Inits to a sealed endpoint and Hellos to a plain one (Close 6).
    pub security_mismatch: u64,
    /// Plaintext datagrams for a sealed connection (other than the handshake): dropped.
    pub unsealed_dropped: u64,
    /// Sealed datagrams dropped by the replay window (seen before, or too old).
    pub replays_dropped: u64,
    /// Sealed datagrams that did not authenticate (tampered, forged, or another connection's): dropped.
    pub forged_dropped: u64,
    /// Current connections: (peer, smoothed RTT µs (0 before a sample), RTO µs).
    pub connections: Vec<(SocketAddr, u64, u64)>,
}

impl UdpStats {
    fn add(&mut self, o: &UdpStats) {
        self.sockets += o.sockets;
        self.datagrams_sent += o.datagrams_sent;
        self.datagrams_received += o.datagrams_received;
        self.retransmits += o.retransmits;
        self.duplicates += o.duplicates;
        self.checksum_failures += o.checksum_failures;
        self.malformed += o.malformed;
        self.unknown_connection += o.unknown_connection;
        self.beyond_window += o.beyond_window;
        self.over_budget += o.over_budget;
        self.rto_timeouts += o.rto_timeouts;
        self.connections_opened += o.connections_opened;
        self.connections_accepted += o.connections_accepted;
        self.connections_refused += o.connections_refused;
        self.connections_closed += o.connections_closed;
        self.send_errors += o.send_errors;
        self.recv_errors += o.recv_errors;
        self.pending_out_drops += o.pending_out_drops;
        self.datagrams_gathered += o.datagrams_gathered;
        self.gso_sends += o.gso_sends;
        self.recv_calls += o.recv_calls;
        self.gro_batches += o.gro_batches;
        self.retries_sent += o.retries_sent;
        self.cookies_expired += o.cookies_expired;
        self.cookies_invalid += o.cookies_invalid;
        self.replays_refused += o.replays_refused;
        self.bad_parameters += o.bad_parameters;
        self.refused_per_ip += o.refused_per_ip;
        self.accepted_unvalidated += o.accepted_unvalidated;
        self.amplification_blocked += o.amplification_blocked;
        self.never_acked_closes += o.never_acked_closes;
        self.no_progress_closes += o.no_progress_closes;
        self.reassembly_evictions += o.reassembly_evictions;
        self.accept_overflow += o.accept_overflow;
        self.bad_frames += o.bad_frames;
        self.handshakes_completed += o.handshakes_completed;
        self.handshakes_failed += o.handshakes_failed;
        self.handshakes_refused += o.handshakes_refused;
        self.security_mismatch += o.security_mismatch;
        self.unsealed_dropped += o.unsealed_dropped;
        self.replays_dropped += o.replays_dropped;
        self.forged_dropped += o.forged_dropped;
        self.connections.extend_from_slice(&o.connections);
    }
}

/// The sockets behind one handle, and the totals of those already gone.
#[derive(Debug, Default)]
pub(super) struct Registry {
    sockets: Mutex<Vec<Weak<Shared>>>,
    retired: Mutex<UdpStats>,
}

impl Registry {
    pub(super) fn register(&self, shared: &Arc<Shared>) {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        sockets.retain(|w| w.strong_count() > 0);
        sockets.push(Arc::downgrade(shared));
    }

    pub(super) fn retire(&self, final_stats: &UdpStats) {
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(final_stats);
    }
}

/// Reads the counters of a [`crate::UdpListener`]'s socket or of every socket a
/// [`crate::UdpChannel`] opened. Cheap to clone; does not keep sockets open.
#[derive(Debug, Clone, Default)]
pub struct UdpStatsHandle {
    registry: Arc<Registry>,
}

impl UdpStatsHandle {
    pub(super) fn new() -> Self {
        UdpStatsHandle::default()
    }

    pub(super) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The counters now: sockets still open plus the final counts of closed ones.
    pub fn snapshot(&self) -> UdpStats {
        let live: Vec<Arc<Shared>> = self
            .registry
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut total = self
            .registry
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for shared in live {
            total.add(&shared.snapshot());
        }
        total
    }
}
