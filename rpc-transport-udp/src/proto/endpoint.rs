//! An endpoint: every connection of one UDP socket, and the routing between them.
//!
//! The driver feeds it datagrams ([`Endpoint::handle_datagram`]) and timeouts
//! ([`Endpoint::handle_timeout`]), and drains datagrams to send
//! ([`Endpoint::poll_transmit`]), the next deadline ([`Endpoint::poll_timeout`]) and
//! events ([`Endpoint::poll_event`]); the application takes complete messages from each
//! connection's bounded queue ([`Endpoint::poll_message`]). Connections are keyed by
//! (peer address, connection id); a server endpoint creates one for each new Init whose
//! cookie proves the client's address (PROTOCOL.md 9.3; up to `max_connections`, and
//! `max_connections_per_ip` per client IP), and answers other Inits statelessly (Retry,
//! or Close 4 or 5).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use super::chain::Chain;
use super::config::{AddressValidation, Config};
use super::connection::{
    close_code, peer_params_ok, CloseReason, Connection, ConnectionStats, Ctx, Event, SendError,
    Side,
};
use super::cookie::{CookieError, CookieKeys};
use super::packet::{AckInfo, Body, Cookie, Packet, PacketError, SackRanges};
use super::reassembly::GlobalBudget;
use super::seal::{self, HandshakeError, HelloFields, OpenError};
use super::HandleSet;

/// Identifies a connection within its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub u64);

/// An endpoint's counters (connections that were freed included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Datagrams handed to the endpoint.
    pub datagrams_received: u64,
    /// Datagrams the endpoint produced.
    pub datagrams_sent: u64,
    /// Datagrams dropped because their CRC did not match.
    pub checksum_failures: u64,
    /// Datagrams dropped because they were malformed otherwise.
    pub malformed: u64,
    /// Datagrams for no known connection.
    pub unknown_connection: u64,
    /// Resets sent to peers that addressed an unknown connection.
    pub resets_sent: u64,
    /// Endpoint datagrams (resets, refusals) dropped because their queue was full.
    pub endpoint_transmits_dropped: u64,
    /// Connections opened by `connect`.
    pub connections_opened: u64,
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Handshakes refused (connection limit).
    pub connections_refused: u64,
    /// Connections closed and freed.
    pub connections_closed: u64,
    /// Data fragments retransmitted.
    pub retransmits: u64,
    /// Data datagrams received more than once.
    pub duplicates: u64,
    /// Data datagrams beyond the receive window.
    pub beyond_window: u64,
    /// Data datagrams dropped for lack of reassembly memory.
    pub over_budget: u64,
    /// Retransmission timeouts.
    pub rto_timeouts: u64,
    /// Retries sent (stateless answers to Inits without a valid cookie).
    pub retries_sent: u64,
    /// Inits whose cookie was too old (answered with a fresh Retry).
    pub cookies_expired: u64,
    /// Inits whose cookie did not verify: forged, altered, or another address's
    /// (answered with a fresh Retry).
    pub cookies_invalid: u64,
    /// Inits with a valid cookie issued before their (address, connection id) was
    /// closed: replays (answered with a fresh Retry).
    pub replays_refused: u64,
    /// Closed connections remembered for replay detection (see
    /// [`Config::max_quarantined`]), in total.
    pub quarantined: u64,
    /// Of those, forgotten early because the quarantine was full.
    pub quarantine_overflow: u64,
    /// Inits refused for out-of-range parameters (Close reason 5).
    pub bad_parameters: u64,
    /// Of `connections_refused`, those refused by the per-IP limit.
    pub refused_per_ip: u64,
    /// Connections accepted before their address was validated
    /// ([`AddressValidation::UnderLoad`]).
    pub accepted_unvalidated: u64,
    /// Datagrams held back by the anti-amplification limit (summed over connections).
    pub amplification_blocked: u64,
    /// Connections closed because their peer never acknowledged any Data.
    pub never_acked_closes: u64,
    /// Connections closed because their peer kept sending (pings) but acknowledged
    /// nothing new for `peer_timeout` with Data in flight.
    pub no_progress_closes: u64,
    /// Connections closed to free reassembly memory for others: when the endpoint's
    /// budget was full, the one holding the most lost its partial messages.
    pub reassembly_evictions: u64,
    /// Secure handshakes completed (PROTOCOL.md 9.10).
    pub handshakes_completed: u64,
    /// Secure handshakes that failed: a Hello or Welcome that did not authenticate (the
    /// wrong key, an unknown PSK id, a tampered message) or offered a mode this
    /// endpoint lacks.
    pub handshakes_failed: u64,
    /// Server: handshakes that proved a client key not in the allowed set.
    pub handshakes_refused: u64,
    /// Server: a plain Init to a sealed endpoint, or a Hello to a plain one (Close 6).
    pub security_mismatch: u64,
    /// Plaintext datagrams for a sealed connection, other than the handshake: dropped.
    pub unsealed_dropped: u64,
    /// Sealed datagrams whose packet number was seen before or is older than the
    /// replay window: dropped before decryption.
    pub replays_dropped: u64,
    /// Sealed datagrams that did not authenticate (tampered, forged, or sealed for
    /// another connection): dropped.
    pub forged_dropped: u64,
}

/// Every connection of one socket.
#[derive(Debug)]
pub struct Endpoint {
    cfg: Config,
    incarnation: u64,
    accept: bool,
    rng: u64,
    next_handle: u64,
    connections: BTreeMap<u64, Connection>,
    by_key: HashMap<(SocketAddr, u32), u64>,
    /// Connections that may have something to send, in round-robin order.
    dirty: DirtyQueue,
    budget: GlobalBudget,
    events: VecDeque<(ConnectionHandle, Event)>,
    scratch: VecDeque<Event>,
    /// Reused by [`Endpoint::poll_transmit`] for the chunks it then copies.
    gather: Vec<Bytes>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    stats: EndpointStats,
    /// Counters of connections already freed.
    freed: ConnectionStats,
    /// Every connection's armed deadline in a min-heap, so the earliest is found without
    /// a scan. Each connection keeps the deadline armed for it (`Connection::armed`); a
    /// heap entry that no longer matches it (or whose connection is gone) is stale and
    /// skipped, and the heap is rebuilt when stale entries outnumber connections.
    ///
    /// Deadlines change on almost every datagram, nearly always to a later time (an
    /// acknowledged send stops its retransmission timer, a datagram pushes the idle
    /// timer on). So a deadline is re-armed at once only when it moves *earlier*; a
    /// later one leaves the armed (earlier) entry in place, and [`Endpoint::poll_timeout`]
    /// corrects the top entry when it is asked (the connection's own deadline is the
    /// truth: `Connection::next_timeout`). What it returns is therefore exact, and a
    /// connection's timers cost a heap operation only when the earliest one changes.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Reused by `handle_timeout`.
    due: Vec<u64>,
    /// Address validation (server).
    cookies: CookieKeys,
    /// The start of the endpoint's microsecond clock (the first `now` it was given).
    epoch: Option<Instant>,
    /// The latest `now` it was given, in microseconds since `epoch`.
    now_us: u64,
    /// Connections per peer IP address.
    per_ip: HashMap<IpAddr, usize>,
    /// Recently closed server connections: when each closed (µs), oldest first.
    quarantine: HashMap<(SocketAddr, u32), u64>,
    quarantine_order: VecDeque<(u64, SocketAddr, u32)>,
    /// Connections that received Data in the current batch of datagrams (their pause is
    /// decided at its end); at most one entry per datagram of the batch.
    touched: Vec<u64>,
}

/// A 32-byte secret from the process's random hash keys and the time, used only if the
/// operating system's random generator fails.
fn fallback_secret() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

impl Endpoint {
    /// An endpoint with `incarnation` (chosen at start, e.g. randomly; a peer that sees
    /// it change knows this side restarted). `accept`: whether it accepts connections
    /// (servers) or only opens them (clients).
    pub fn new(cfg: Config, incarnation: u64, accept: bool) -> Self {
        Endpoint {
            budget: GlobalBudget::new(cfg.global_reassembly_budget),
            incarnation,
            accept,
            rng: incarnation ^ 0x9e37_79b9_7f4a_7c15,
            next_handle: 1,
            connections: BTreeMap::new(),
            by_key: HashMap::new(),
            dirty: DirtyQueue::default(),
            events: VecDeque::new(),
            scratch: VecDeque::new(),
            gather: Vec::new(),
            transmits: VecDeque::new(),
            stats: EndpointStats::default(),
            freed: ConnectionStats::default(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            cookies: CookieKeys::random(cfg.cookie_lifetime)
                .unwrap_or_else(|| CookieKeys::new(&fallback_secret(), cfg.cookie_lifetime)),
            epoch: None,
            now_us: 0,
            per_ip: HashMap::new(),
            quarantine: HashMap::new(),
            quarantine_order: VecDeque::new(),
            touched: Vec::new(),
            cfg,
        }
    }

    /// Replaces the random secret the endpoint's cookies are derived from (for
    /// reproducible tests; a server keeps the random one).
    pub fn set_cookie_secret(&mut self, secret: &[u8; 32]) {
        self.cookies = CookieKeys::new(secret, self.cfg.cookie_lifetime);
    }

    /// Microseconds since the endpoint's clock started, as of `now` (never backwards).
    fn clock_us(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let ms =
            u64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX);
        self.now_us = self.now_us.max(ms);
        self.now_us
    }

    /// A cookie for `peer` and `conn_id`, issued now.
    pub fn issue_cookie(&mut self, now: Instant, peer: SocketAddr, conn_id: u32) -> Cookie {
        let now_us = self.clock_us(now);
        self.cookies.issue(peer, conn_id, now_us)
    }

    /// Closed connections currently remembered for replay detection.
    pub fn quarantine_len(&self) -> usize {
        self.quarantine.len()
    }

    /// Starts or stops accepting new connections (a server whose listener is gone stops;
    /// its existing connections carry on). Inits that are not accepted are answered with
    /// a Reset.
    pub fn set_accept(&mut self, accept: bool) {
        self.accept = accept;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// This endpoint's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic for a given incarnation, which the simulator needs.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Opens a connection to `peer` (the handshake starts at the next
    /// [`Endpoint::poll_transmit`]).
    pub fn connect(&mut self, peer: SocketAddr, now: Instant) -> ConnectionHandle {
        let conn_id = loop {
            let id = (self.next_random() >> 32) as u32;
            if !self.by_key.contains_key(&(peer, id)) {
                break id;
            }
        };
        let handle = self.next_handle;
        self.next_handle += 1;
        let mut conn = Connection::client(peer, conn_id, &self.cfg, self.incarnation, now);
        if let Some(security) = &self.cfg.security {
            match seal::client_hello(security, &conn.hello_fields()) {
                Some((handshake, hello)) => conn.seal_client(handshake, hello),
                None => {
                    // A server's configuration has no client key or PSK to offer.
                    self.stats.handshakes_failed += 1;
                    let mut ctx = Ctx {
                        events: &mut self.scratch,
                        budget: &mut self.budget,
                    };
                    conn.fail_handshake(&mut ctx);
                }
            }
        }
        self.connections.insert(handle, conn);
        self.by_key.insert((peer, conn_id), handle);
        self.dirty.mark(handle);
        self.stats.connections_opened += 1;
        self.refresh_timer(handle);
        ConnectionHandle(handle)
    }

    /// Queues a message on a connection.
    pub fn send(&mut self, h: ConnectionHandle, msg: impl Into<Chain>) -> Result<(), SendError> {
        let Some(conn) = self.connections.get_mut(&h.0) else {
            return Err(SendError::Closed(CloseReason::Local));
        };
        conn.send(msg.into())?;
        self.dirty.mark(h.0);
        Ok(())
    }

    /// Whether a send on `h` would be accepted now.
    pub fn is_writable(&self, h: ConnectionHandle) -> bool {
        self.connections
            .get(&h.0)
            .is_some_and(Connection::is_writable)
    }

    /// Closes a connection (a Close datagram goes to the peer).
    pub fn close(&mut self, h: ConnectionHandle) {
        if let Some(conn) = self.connections.get_mut(&h.0) {
            let mut ctx = Ctx {
                events: &mut self.scratch,
                budget: &mut self.budget,
            };
            conn.close(&mut ctx);
            self.dirty.mark(h.0);
        }
        self.collect(h.0);
    }

    /// Closes a connection for `reason`, telling the peer with the Close code the reason
    /// maps to (e.g. [`CloseReason::ProtocolError`]: code 3, for a message that is not a
    /// valid frame).
    pub fn close_with(&mut self, h: ConnectionHandle, reason: CloseReason) {
        if let Some(conn) = self.connections.get_mut(&h.0) {
            let mut ctx = Ctx {
                events: &mut self.scratch,
                budget: &mut self.budget,
            };
            conn.fail(reason, &mut ctx);
            self.dirty.mark(h.0);
        }
        self.collect(h.0);
    }

    /// Fails a connection at once without telling the peer (e.g. the socket reported
    /// the peer's port unreachable): no Close is sent.
    pub fn abort(&mut self, h: ConnectionHandle, reason: CloseReason) {
        if let Some(conn) = self.connections.get_mut(&h.0) {
            let mut ctx = Ctx {
                events: &mut self.scratch,
                budget: &mut self.budget,
            };
            conn.fail(reason, &mut ctx);
        }
        self.collect(h.0);
    }

    /// The peer's identity as a sealed connection's handshake proved it (server side:
    /// the client's static key or PSK id); `None` on a plain connection.
    pub fn principal(&self, h: ConnectionHandle) -> Option<&rpc_core::Principal> {
        self.connections.get(&h.0)?.principal()
    }

    /// Takes the oldest complete message of a connection ([`Event::Readable`] said
    /// there is one). Each connection queues at most [`Config::max_undelivered`]
    /// messages; while its queue is full it refuses new data (unacknowledged, so the peer
    /// resends it) until it has been taken down to half. A closed connection keeps its
    /// queue until it is taken or discarded, and is freed only then.
    pub fn poll_message(&mut self, h: ConnectionHandle) -> Option<Bytes> {
        let conn = self.connections.get_mut(&h.0)?;
        let m = conn.take_message();
        if m.is_some() && conn.undelivered() == 0 && conn.is_drained() {
            self.collect(h.0);
        }
        m
    }

    /// Drops the messages of a connection that nobody will take (its reader is gone),
    /// and every message it completes from now on.
    pub fn discard_messages(&mut self, h: ConnectionHandle) {
        if let Some(conn) = self.connections.get_mut(&h.0) {
            conn.discard_messages();
        }
        self.collect(h.0);
    }

    /// Messages of a connection waiting for [`Endpoint::poll_message`].
    pub fn undelivered(&self, h: ConnectionHandle) -> usize {
        self.connections
            .get(&h.0)
            .map_or(0, Connection::undelivered)
    }

    /// The peer of a connection.
    pub fn peer_addr(&self, h: ConnectionHandle) -> Option<SocketAddr> {
        self.connections.get(&h.0).map(|c| c.peer)
    }

    /// The peer's incarnation, once the handshake told it.
    pub fn peer_incarnation(&self, h: ConnectionHandle) -> Option<u64> {
        self.connections
            .get(&h.0)
            .and_then(Connection::peer_incarnation)
    }

    /// Why a connection closed (`None` while open or once freed).
    pub fn close_reason(&self, h: ConnectionHandle) -> Option<CloseReason> {
        self.connections
            .get(&h.0)
            .and_then(Connection::close_reason)
    }

    /// A connection's counters.
    pub fn connection_stats(&self, h: ConnectionHandle) -> Option<ConnectionStats> {
        self.connections.get(&h.0).map(Connection::stats)
    }

    /// Connections held (including closed ones not yet freed).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Reassembly memory in use across all connections.
    pub fn reassembly_bytes(&self) -> usize {
        self.budget.used()
    }

    /// Reassembly memory one connection holds.
    pub fn connection_reassembly_bytes(&self, h: ConnectionHandle) -> usize {
        self.connections
            .get(&h.0)
            .map_or(0, Connection::reassembly_bytes)
    }

    /// The endpoint's counters.
    pub fn stats(&self) -> EndpointStats {
        let mut s = self.stats;
        let mut add = |c: &ConnectionStats| {
            s.retransmits += c.retransmits;
            s.duplicates += c.duplicates;
            s.beyond_window += c.beyond_window;
            s.over_budget += c.over_budget;
            s.rto_timeouts += c.rto_timeouts;
            s.amplification_blocked += c.amplification_blocked;
            s.never_acked_closes += c.never_acked_closes;
            s.no_progress_closes += c.no_progress_closes;
        };
        add(&self.freed);
        for c in self.connections.values() {
            add(&c.stats());
        }
        s
    }

    fn queue_endpoint_transmit(&mut self, to: SocketAddr, pkt: Packet) {
        if self.transmits.len() >= self.cfg.max_endpoint_transmits {
            self.stats.endpoint_transmits_dropped += 1;
            return;
        }
        let mut out = Vec::with_capacity(pkt.encoded_len());
        pkt.emit(&mut out);
        self.transmits.push_back((to, out));
    }

    fn bare_packet(conn_id: u32, body: Body) -> Packet {
        Packet {
            conn_id,
            ack: AckInfo {
                cumulative: 0,
                delay_us: 0,
                ranges: SackRanges::new(),
            },
            body,
        }
    }

    /// Handles one datagram received from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.handle_one(now, from, datagram);
        self.end_batch();
    }

    /// Handles datagrams read together from the socket (draining `batch`). A connection
    /// whose queue of messages fills up within the batch stops accepting data at the end
    /// of the batch: its queue may then hold up to [`Config::max_undelivered`] plus the
    /// batch's length (each datagram completes at most one message). The application
    /// could not have taken any message in between, and refusing the rest of a burst
    /// already in hand would only make the peer resend it after a backed-off timeout.
    pub fn handle_datagrams(&mut self, now: Instant, batch: &mut Vec<(SocketAddr, Bytes)>) {
        for (from, datagram) in batch.drain(..) {
            self.handle_one(now, from, datagram);
        }
        self.end_batch();
    }

    fn end_batch(&mut self) {
        // Taken and put back: the list keeps its allocation from batch to batch.
        let mut touched = std::mem::take(&mut self.touched);
        for h in touched.drain(..) {
            if let Some(conn) = self.connections.get_mut(&h) {
                conn.update_pause();
            }
        }
        self.touched = touched;
    }

    fn handle_one(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.stats.datagrams_received += 1;
        self.clock_us(now);
        self.expire_quarantine();
        // A plain endpoint has no sealed connections: to it a sealed datagram is just one
        // that fails its checksum.
        if self.cfg.security.is_some() && seal::is_sealed(&datagram) {
            self.handle_sealed(now, from, &datagram);
            return;
        }
        let len = datagram.len();
        let mut pkt = match Packet::parse(&datagram) {
            Ok(p) => p,
            Err(PacketError::BadChecksum { .. }) => {
                self.stats.checksum_failures += 1;
                return;
            }
            Err(e) => {
                tracing::trace!(%from, error = %e, "malformed datagram");
                self.stats.malformed += 1;
                return;
            }
        };
        let key = (from, pkt.conn_id);
        let mut pre_validated = false;
        if let Some(&h) = self.by_key.get(&key) {
            if !self.clear_allowed(h, &pkt.body) {
                self.stats.unsealed_dropped += 1;
                return;
            }
            if let Body::Welcome { handshake } = &pkt.body {
                match self.open_welcome(h, handshake) {
                    Some(accept) => pkt.body = accept,
                    None => return,
                }
            }
            if let Some((client_incarnation, cookie)) = pkt.body.init_fields() {
                let (server, restarted) = match self.connections.get(&h) {
                    Some(conn) => (
                        conn.side() == Side::Server,
                        conn.peer_incarnation()
                            .is_some_and(|inc| inc != client_incarnation),
                    ),
                    None => (false, false),
                };
                let cookie = cookie.copied();
                let cookie_ok = match cookie {
                    Some(c) if server => self.check_cookie(now, from, pkt.conn_id, &c).is_ok(),
                    _ => false,
                };
                if restarted && !cookie_ok {
                    // Replacing a connection takes a proven address: an Init from a
                    // spoofed source must not be able to kill the real client's one.
                    self.send_retry(now, from, pkt.conn_id);
                    return;
                }
                if restarted {
                    // Same address and id, new incarnation, address proven: the client
                    // restarted. Its old connection is dead; the Init opens a new one.
                    if let Some(conn) = self.connections.get_mut(&h) {
                        let mut ctx = Ctx {
                            events: &mut self.scratch,
                            budget: &mut self.budget,
                        };
                        conn.fail(CloseReason::PeerRestarted, &mut ctx);
                    }
                    self.by_key.remove(&key);
                    self.collect(h);
                    pre_validated = true;
                } else if cookie_ok {
                    if let Some(conn) = self.connections.get_mut(&h) {
                        conn.set_validated();
                    }
                }
            }
            if !pre_validated {
                self.dispatch(h, pkt, len, now);
                return;
            }
        }
        let sealed_endpoint = self.cfg.security.is_some();
        match pkt.body {
            Body::Init { .. } | Body::Hello { .. }
                if self.accept && sealed_endpoint != matches!(pkt.body, Body::Hello { .. }) =>
            {
                // A plain client of a sealed server, or a sealing one of a plain server.
                self.stats.security_mismatch += 1;
                self.refuse(from, pkt.conn_id, close_code::SECURITY);
            }
            Body::Init {
                client_incarnation,
                recv_window,
                max_datagram,
                cookie,
            } if self.accept => {
                let init = InitInfo {
                    from,
                    conn_id: pkt.conn_id,
                    len,
                    client_incarnation,
                    recv_window,
                    max_datagram,
                    cookie,
                    handshake: None,
                };
                self.admit(now, init, pre_validated);
            }
            Body::Hello {
                client_incarnation,
                recv_window,
                max_datagram,
                handshake,
                cookie,
            } if self.accept => {
                let init = InitInfo {
                    from,
                    conn_id: pkt.conn_id,
                    len,
                    client_incarnation,
                    recv_window,
                    max_datagram,
                    cookie,
                    handshake: Some(handshake),
                };
                self.admit(now, init, pre_validated);
            }
            // Never answer these with a Reset: two endpoints that both lost state would
            // bounce resets forever (and a Retry or Welcome is only ever an answer).
            Body::Reset
            | Body::Close { .. }
            | Body::Ack
            | Body::Retry { .. }
            | Body::Welcome { .. } => {
                self.stats.unknown_connection += 1;
            }
            _ => {
                self.stats.unknown_connection += 1;
                self.stats.resets_sent += 1;
                self.queue_endpoint_transmit(from, Endpoint::bare_packet(pkt.conn_id, Body::Reset));
            }
        }
    }

    /// Whether a plaintext datagram may reach connection `h`: always on a plain
    /// connection; on a sealed one only the handshake — a client's repeated Init or
    /// Hello to the server, and to a client still handshaking the server's Welcome,
    /// Retry or refusal (Close, Reset), as on a plain connection.
    fn clear_allowed(&self, h: u64, body: &Body) -> bool {
        let Some(conn) = self.connections.get(&h) else {
            return true;
        };
        if !conn.is_sealed() {
            return !matches!(body, Body::Welcome { .. } | Body::Hello { .. });
        }
        match conn.side() {
            Side::Server => matches!(body, Body::Init { .. } | Body::Hello { .. }),
            Side::Client => {
                conn.is_handshaking()
                    && matches!(
                        body,
                        Body::Welcome { .. }
                            | Body::Retry { .. }
                            | Body::Close { .. }
                            | Body::Reset
                    )
            }
        }
    }

    /// Client: opens the server's Welcome into the Accept it carries; a Welcome that does
    /// not authenticate fails the connection (and is counted).
    fn open_welcome(&mut self, h: u64, welcome: &[u8]) -> Option<Body> {
        let conn = self.connections.get_mut(&h)?;
        match conn.open_welcome(welcome) {
            Ok(accept) => {
                self.stats.handshakes_completed += 1;
                Some(accept)
            }
            Err(e) => {
                tracing::debug!(peer = %conn.peer, error = ?e, "secure handshake failed");
                self.stats.handshakes_failed += 1;
                let mut ctx = Ctx {
                    events: &mut self.scratch,
                    budget: &mut self.budget,
                };
                conn.fail_handshake(&mut ctx);
                self.dirty.mark(h);
                self.collect(h);
                None
            }
        }
    }

    /// A sealed datagram: opened by its connection's keys (the replay window first),
    /// then handled as the plaintext datagram inside. Nothing here is answered: an
    /// unknown connection gets no Reset, since a Reset in clear could not be trusted.
    fn handle_sealed(&mut self, now: Instant, from: SocketAddr, datagram: &Bytes) {
        let Some(conn_id) = seal::sealed_conn_id(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(&h) = self.by_key.get(&(from, conn_id)) else {
            self.stats.unknown_connection += 1;
            return;
        };
        let Some(conn) = self.connections.get_mut(&h) else {
            return;
        };
        let plain = match conn.open_sealed(datagram) {
            Ok(plain) => plain,
            Err(OpenError::Replayed) => {
                self.stats.replays_dropped += 1;
                return;
            }
            Err(OpenError::Forged) => {
                self.stats.forged_dropped += 1;
                return;
            }
            Err(OpenError::Malformed) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let pkt = match Packet::parse(&plain) {
            Ok(pkt)
                if pkt.conn_id == conn_id
                    && matches!(
                        pkt.body,
                        Body::Data { .. }
                            | Body::Ack
                            | Body::Ping
                            | Body::Close { .. }
                            | Body::Reset
                    ) =>
            {
                pkt
            }
            // Authentic but not what a sealed datagram may carry: a broken peer.
            _ => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.dispatch(h, pkt, datagram.len(), now);
    }

    /// Hands a datagram to its connection, then does what the connection asks of the
    /// endpoint (evict a reassembly hog, send an unvalidated peer a Retry).
    fn dispatch(&mut self, h: u64, pkt: Packet, len: usize, now: Instant) {
        if matches!(pkt.body, Body::Data { .. }) {
            self.touched.push(h);
        }
        let mut starved = false;
        let mut retry_for = None;
        if let Some(conn) = self.connections.get_mut(&h) {
            conn.on_bytes_received(len);
            let mut ctx = Ctx {
                events: &mut self.scratch,
                budget: &mut self.budget,
            };
            conn.handle_packet(pkt, now, &mut ctx);
            starved = conn.take_global_starved();
            if conn.is_unvalidated() && conn.wants_retry(now) {
                retry_for = Some((conn.peer, conn.conn_id));
            }
        }
        if let Some((peer, id)) = retry_for {
            let cookie = self.issue_cookie(now, peer, id);
            if let Some(conn) = self.connections.get_mut(&h) {
                conn.queue_retry(cookie);
            }
        }
        self.dirty.mark(h);
        self.collect(h);
        if starved {
            self.evict_for(h);
        }
    }

    /// The endpoint's reassembly budget is full and connection `h` was refused a
    /// fragment: the connection holding the most (if it holds more than `h`) loses its
    /// partial messages, and with them the connection (Close reason 2).
    fn evict_for(&mut self, h: u64) {
        let mine = self
            .connections
            .get(&h)
            .map_or(0, Connection::reassembly_bytes);
        let hog = self
            .connections
            .iter()
            .filter(|(&k, _)| k != h)
            .map(|(&k, c)| (c.reassembly_bytes(), k))
            .max();
        let Some((bytes, hog)) = hog else { return };
        if bytes <= mine {
            return;
        }
        if let Some(conn) = self.connections.get_mut(&hog) {
            tracing::debug!(peer = %conn.peer, bytes, "reassembly budget full: evicting");
            let mut ctx = Ctx {
                events: &mut self.scratch,
                budget: &mut self.budget,
            };
            conn.fail(CloseReason::ReassemblyTimeout, &mut ctx);
            self.stats.reassembly_evictions += 1;
        }
        self.dirty.mark(hog);
        self.collect(hog);
    }

    /// Checks a cookie (counting what is wrong with it).
    fn check_cookie(
        &mut self,
        now: Instant,
        from: SocketAddr,
        conn_id: u32,
        cookie: &Cookie,
    ) -> Result<(), CookieError> {
        let now_us = self.clock_us(now);
        let r = self.cookies.verify(from, conn_id, cookie, now_us);
        match r {
            Ok(()) => {}
            Err(CookieError::Expired) => self.stats.cookies_expired += 1,
            Err(CookieError::Invalid) => self.stats.cookies_invalid += 1,
        }
        r
    }

    /// Answers an Init with a Retry carrying a fresh cookie; nothing is stored.
    fn send_retry(&mut self, now: Instant, to: SocketAddr, conn_id: u32) {
        let cookie = self.issue_cookie(now, to, conn_id);
        self.stats.retries_sent += 1;
        self.queue_endpoint_transmit(to, Endpoint::bare_packet(conn_id, Body::Retry { cookie }));
    }

    fn refuse(&mut self, to: SocketAddr, conn_id: u32, reason: u32) {
        let close = Endpoint::bare_packet(conn_id, Body::Close { reason });
        self.queue_endpoint_transmit(to, close);
    }

    /// An Init for no existing connection: refuse it, answer it with a Retry, or open
    /// the connection.
    fn admit(&mut self, now: Instant, init: InitInfo, pre_validated: bool) {
        let InitInfo { from, conn_id, .. } = init;
        if !peer_params_ok(init.recv_window, init.max_datagram) {
            self.stats.bad_parameters += 1;
            self.refuse(from, conn_id, close_code::BAD_PARAMETERS);
            return;
        }
        let validated = if pre_validated {
            true
        } else {
            match init.cookie {
                Some(c) => {
                    if self.check_cookie(now, from, conn_id, &c).is_err() {
                        self.send_retry(now, from, conn_id);
                        return;
                    }
                    if self.is_quarantined(from, conn_id, c.issued_us) {
                        self.stats.replays_refused += 1;
                        self.send_retry(now, from, conn_id);
                        return;
                    }
                    true
                }
                None => {
                    let required = match self.cfg.address_validation {
                        // No Diffie-Hellman for an unproven address.
                        _ if self.cfg.security.is_some() => true,
                        AddressValidation::Always => true,
                        AddressValidation::UnderLoad { connections } => {
                            self.connections.len() >= connections
                        }
                    };
                    if required {
                        self.send_retry(now, from, conn_id);
                        return;
                    }
                    false
                }
            }
        };
        if self.by_key.len() >= self.cfg.max_connections {
            self.stats.connections_refused += 1;
            self.refuse(from, conn_id, close_code::REFUSED);
            return;
        }
        let ip = from.ip();
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.cfg.max_connections_per_ip {
            self.stats.connections_refused += 1;
            self.stats.refused_per_ip += 1;
            self.refuse(from, conn_id, close_code::REFUSED);
            return;
        }
        let unvalidated = if validated {
            None
        } else {
            self.stats.accepted_unvalidated += 1;
            Some((init.len, self.issue_cookie(now, from, conn_id)))
        };
        let mut conn = Connection::server(
            from,
            conn_id,
            &self.cfg,
            self.incarnation,
            init.client_incarnation,
            init.recv_window,
            init.max_datagram,
            unvalidated,
            now,
        );
        if let (Some(security), Some(handshake)) = (&self.cfg.security, &init.handshake) {
            let fields = HelloFields {
                conn_id,
                client_incarnation: init.client_incarnation,
                recv_window: init.recv_window,
                max_datagram: init.max_datagram,
            };
            match seal::server_welcome(security, &fields, handshake, &conn.accept_payload()) {
                Ok((session, welcome)) => {
                    self.stats.handshakes_completed += 1;
                    conn.seal_server(session, welcome);
                }
                Err(e) => {
                    tracing::debug!(peer = %from, error = ?e, "secure handshake refused");
                    match e {
                        HandshakeError::NotAllowed => self.stats.handshakes_refused += 1,
                        HandshakeError::Failed | HandshakeError::Unsupported => {
                            self.stats.handshakes_failed += 1
                        }
                    }
                    self.refuse(from, conn_id, close_code::SECURITY);
                    return;
                }
            }
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        self.connections.insert(handle, conn);
        self.by_key.insert((from, conn_id), handle);
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.dirty.mark(handle);
        self.refresh_timer(handle);
        self.stats.connections_accepted += 1;
        self.events.push_back((
            ConnectionHandle(handle),
            Event::Accepted {
                peer: from,
                client_incarnation: init.client_incarnation,
            },
        ));
    }

    fn release_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Drops quarantine entries older than the cookie lifetime (their cookies expired).
    fn expire_quarantine(&mut self) {
        let lifetime = u64::try_from(self.cfg.cookie_lifetime.as_micros()).unwrap_or(u64::MAX);
        while let Some(&(closed, peer, id)) = self.quarantine_order.front() {
            if self.now_us.saturating_sub(closed) <= lifetime {
                break;
            }
            self.quarantine_order.pop_front();
            if self.quarantine.get(&(peer, id)) == Some(&closed) {
                self.quarantine.remove(&(peer, id));
            }
        }
    }

    /// Remembers a closed server connection so a replay of its handshake is refused.
    fn remember_closed(&mut self, peer: SocketAddr, conn_id: u32) {
        self.expire_quarantine();
        if self.cfg.max_quarantined == 0 {
            return;
        }
        while self.quarantine.len() >= self.cfg.max_quarantined {
            let Some((closed, p, id)) = self.quarantine_order.pop_front() else {
                break;
            };
            if self.quarantine.get(&(p, id)) == Some(&closed) {
                self.quarantine.remove(&(p, id));
                self.stats.quarantine_overflow += 1;
            }
        }
        let closed = self.now_us;
        self.quarantine.insert((peer, conn_id), closed);
        self.quarantine_order.push_back((closed, peer, conn_id));
        // Re-inserted keys leave stale order entries; keep the queue bounded too.
        if self.quarantine_order.len() > 2 * self.cfg.max_quarantined {
            let live = &self.quarantine;
            self.quarantine_order
                .retain(|(c, p, id)| live.get(&(*p, *id)) == Some(c));
        }
        self.stats.quarantined += 1;
    }

    /// Whether a cookie issued at `issued_us` predates the close of this
    /// (address, connection id): a replayed handshake.
    fn is_quarantined(&mut self, peer: SocketAddr, conn_id: u32, issued_us: u64) -> bool {
        self.expire_quarantine();
        self.quarantine
            .get(&(peer, conn_id))
            .is_some_and(|&closed| issued_us <= closed)
    }

    /// Moves a connection's new events to the endpoint queue and frees it if drained.
    fn collect(&mut self, h: u64) {
        while let Some(e) = self.scratch.pop_front() {
            self.events.push_back((ConnectionHandle(h), e));
        }
        self.refresh_timer(h);
        let drained = self.connections.get(&h).is_some_and(Connection::is_drained);
        if drained {
            if let Some(conn) = self.connections.remove(&h) {
                if self.by_key.get(&(conn.peer, conn.conn_id)) == Some(&h) {
                    self.by_key.remove(&(conn.peer, conn.conn_id));
                }
                let s = conn.stats();
                self.freed.retransmits += s.retransmits;
                self.freed.duplicates += s.duplicates;
                self.freed.beyond_window += s.beyond_window;
                self.freed.over_budget += s.over_budget;
                self.freed.rto_timeouts += s.rto_timeouts;
                self.freed.amplification_blocked += s.amplification_blocked;
                self.freed.never_acked_closes += s.never_acked_closes;
                self.freed.no_progress_closes += s.no_progress_closes;
                self.stats.connections_closed += 1;
                if conn.side() == Side::Server {
                    self.release_ip(conn.peer.ip());
                    self.remember_closed(conn.peer, conn.conn_id);
                }
            }
            self.dirty.forget(h);
            self.refresh_timer(h);
        }
    }

    /// Arms connection `h`'s deadline in the heap if it moved earlier than the armed one
    /// (or none is armed); a later one is left to [`Endpoint::settle_timers`]. A
    /// connection that is gone leaves only stale entries.
    fn refresh_timer(&mut self, h: u64) {
        let Some(conn) = self.connections.get_mut(&h) else {
            return;
        };
        match (conn.next_timeout(), conn.armed) {
            (Some(at), Some(armed)) if at >= armed => return,
            (Some(at), _) => {
                conn.armed = Some(at);
                self.timers.push(Reverse((at, h)));
            }
            (None, None) => return,
            (None, Some(_)) => conn.armed = None,
        }
        if self.timers.len() > 2 * self.connections.len() + 64 {
            self.timers = self
                .connections
                .iter()
                .filter_map(|(&h, c)| c.armed.map(|at| Reverse((at, h))))
                .collect();
        }
        self.drop_stale_timers();
    }

    /// Makes the heap's top entry the earliest deadline of any connection: pops stale
    /// entries, and re-arms a top connection whose deadline moved later (see `timers`).
    fn settle_timers(&mut self) {
        loop {
            self.drop_stale_timers();
            let Some(&Reverse((at, h))) = self.timers.peek() else {
                return;
            };
            let Some(conn) = self.connections.get_mut(&h) else {
                // (Not reached: `drop_stale_timers` leaves a live entry on top.)
                self.timers.pop();
                continue;
            };
            let next = conn.next_timeout();
            if next == Some(at) {
                return;
            }
            self.timers.pop();
            conn.armed = next;
            if let Some(next) = next {
                self.timers.push(Reverse((next, h)));
            }
        }
    }

    /// Whether the heap entry `(at, h)` is the one armed for a live connection.
    fn is_armed(&self, h: u64, at: Instant) -> bool {
        self.connections
            .get(&h)
            .is_some_and(|c| c.armed == Some(at))
    }

    /// Pops stale entries off the top of the timer heap (see `timers`).
    fn drop_stale_timers(&mut self) {
        while let Some(&Reverse((at, h))) = self.timers.peek() {
            if self.is_armed(h, at) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock_us(now);
        self.expire_quarantine();
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        while let Some(&Reverse((at, h))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(conn) = self.connections.get_mut(&h) {
                if conn.armed == Some(at) {
                    // Re-armed (or not) by `collect` once the connection has run (it may
                    // find nothing due: the armed deadline can be earlier than its own).
                    conn.armed = None;
                    due.push(h);
                }
            }
        }
        self.drop_stale_timers();
        for &h in &due {
            if let Some(conn) = self.connections.get_mut(&h) {
                let mut ctx = Ctx {
                    events: &mut self.scratch,
                    budget: &mut self.budget,
                };
                conn.handle_timeout(now, &mut ctx);
            }
            self.dirty.mark(h);
            self.collect(h);
        }
        self.due = due;
    }

    /// The next datagram to send: written into `out`, with its destination returned.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        let mut gather = std::mem::take(&mut self.gather);
        let to = self.poll_transmit_gather(now, out, &mut gather);
        for chunk in gather.drain(..) {
            out.extend_from_slice(&chunk);
        }
        self.gather = gather;
        to
    }

    /// Like [`Endpoint::poll_transmit`], but a large Data payload is not copied into
    /// `out`: the datagram is `out` followed by the chunks left in `gather`, for one
    /// vectored send (`sendmsg`). `gather` is cleared first; it stays empty for small
    /// datagrams.
    pub fn poll_transmit_gather(
        &mut self,
        now: Instant,
        out: &mut Vec<u8>,
        gather: &mut Vec<Bytes>,
    ) -> Option<SocketAddr> {
        gather.clear();
        if let Some((to, datagram)) = self.transmits.pop_front() {
            out.clear();
            out.extend_from_slice(&datagram);
            self.stats.datagrams_sent += 1;
            return Some(to);
        }
        while let Some(h) = self.dirty.front() {
            let sent = match self.connections.get_mut(&h) {
                Some(conn) => conn
                    .poll_transmit(now, out, gather, &mut self.scratch)
                    .then_some(conn.peer),
                None => None,
            };
            match sent {
                Some(peer) => {
                    // Round robin: the connection goes to the back of the line.
                    self.dirty.rotate();
                    self.collect(h);
                    self.stats.datagrams_sent += 1;
                    return Some(peer);
                }
                None => {
                    self.dirty.pop();
                    self.collect(h);
                }
            }
        }
        None
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.settle_timers();
        self.timers.peek().map(|&Reverse((at, _))| at)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<(ConnectionHandle, Event)> {
        self.events.pop_front()
    }
}

/// The fields of an Init the endpoint decides on.
struct InitInfo {
    from: SocketAddr,
    conn_id: u32,
    /// The datagram's length (for the anti-amplification budget).
    len: usize,
    client_incarnation: u64,
    recv_window: u32,
    max_datagram: u32,
    cookie: Option<Cookie>,
    /// A Hello's handshake field.
    handshake: Option<Bytes>,
}

/// Handles of connections that may have output, each at most once, in FIFO order.
#[derive(Debug, Default)]
struct DirtyQueue {
    order: VecDeque<u64>,
    members: HandleSet<u64>,
}

impl DirtyQueue {
    fn mark(&mut self, h: u64) {
        if self.members.insert(h) {
            self.order.push_back(h);
        }
    }

    fn front(&self) -> Option<u64> {
        self.order.front().copied()
    }

    /// Moves the front to the back.
    fn rotate(&mut self) {
        if let Some(h) = self.order.pop_front() {
            self.order.push_back(h);
        }
    }

    /// Drops the front.
    fn pop(&mut self) {
        if let Some(h) = self.order.pop_front() {
            self.members.remove(&h);
        }
    }

    fn forget(&mut self, h: u64) {
        if self.members.remove(&h) {
            self.order.retain(|&x| x != h);
        }
    }
}
