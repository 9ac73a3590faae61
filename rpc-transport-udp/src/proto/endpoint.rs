//! An endpoint: every connection of one UDP socket, and the routing between them.
//!
//! The driver feeds it datagrams ([`Endpoint::handle_datagram`]) and timeouts
//! ([`Endpoint::handle_timeout`]), and drains datagrams to send
//! ([`Endpoint::poll_transmit`]), the next deadline ([`Endpoint::poll_timeout`]) and
//! events ([`Endpoint::poll_event`]). Connections are keyed by (peer address, connection
//! id); a server endpoint creates one for each new Init (up to `max_connections`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::chain::Chain;
use super::config::Config;
use super::connection::{
    close_code, CloseReason, Connection, ConnectionStats, Ctx, Event, SendError,
};
use super::packet::{AckInfo, Body, Packet, PacketError, SackRanges};
use super::reassembly::GlobalBudget;
use super::{HandleMap, HandleSet};

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
    /// Every connection's next deadline in a min-heap, so the earliest is found without
    /// a scan. `deadlines` holds each handle's current deadline; a heap entry that no
    /// longer matches it is stale and skipped (a changed deadline pushes a new entry
    /// instead of searching for the old one: a push is much cheaper than a sorted-set
    /// update, and deadlines change on almost every datagram). The top is never stale,
    /// and the heap is rebuilt when stale entries outnumber live ones.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    deadlines: HandleMap<u64, Instant>,
    /// Reused by `handle_timeout`.
    due: Vec<u64>,
}

impl Endpoint {
    /// An endpoint with `incarnation` (chosen at start, e.g. randomly; a peer that sees
    /// it change knows this side restarted). `accept`: whether it accepts connections
    /// (servers) or only opens them (clients).
    pub fn new(cfg: Config, incarnation: u64, accept: bool) -> Self {
        Endpoint {
            budget: GlobalBudget::new(cfg.global_reassembly_budget),
            cfg,
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
            deadlines: HandleMap::default(),
            due: Vec::new(),
        }
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
        let conn = Connection::client(peer, conn_id, &self.cfg, self.incarnation, now);
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

    /// Stops or resumes accepting data on a connection whose application is not taking
    /// messages (see [`Config::max_undelivered`]).
    pub fn set_paused(&mut self, h: ConnectionHandle, paused: bool) {
        if let Some(conn) = self.connections.get_mut(&h.0) {
            conn.set_paused(paused);
        }
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
        self.stats.datagrams_received += 1;
        let pkt = match Packet::parse(&datagram) {
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
        if let Some(&h) = self.by_key.get(&key) {
            let restarted = match (&pkt.body, self.connections.get(&h)) {
                (
                    Body::Init {
                        client_incarnation, ..
                    },
                    Some(conn),
                ) => conn
                    .peer_incarnation()
                    .is_some_and(|inc| inc != *client_incarnation),
                _ => false,
            };
            if !restarted {
                if let Some(conn) = self.connections.get_mut(&h) {
                    let mut ctx = Ctx {
                        events: &mut self.scratch,
                        budget: &mut self.budget,
                    };
                    conn.handle_packet(pkt, now, &mut ctx);
                }
                self.dirty.mark(h);
                self.collect(h);
                return;
            }
            // Same address and id, new incarnation: the client restarted. Its old
            // connection is dead; the Init opens a new one.
            if let Some(conn) = self.connections.get_mut(&h) {
                let mut ctx = Ctx {
                    events: &mut self.scratch,
                    budget: &mut self.budget,
                };
                conn.fail(CloseReason::PeerRestarted, &mut ctx);
            }
            self.by_key.remove(&key);
            self.collect(h);
        }
        match pkt.body {
            Body::Init {
                client_incarnation,
                recv_window,
                max_datagram,
            } if self.accept => {
                if self.by_key.len() >= self.cfg.max_connections {
                    self.stats.connections_refused += 1;
                    let close = Endpoint::bare_packet(
                        pkt.conn_id,
                        Body::Close {
                            reason: close_code::REFUSED,
                        },
                    );
                    self.queue_endpoint_transmit(from, close);
                    return;
                }
                let handle = self.next_handle;
                self.next_handle += 1;
                let conn = Connection::server(
                    from,
                    pkt.conn_id,
                    &self.cfg,
                    self.incarnation,
                    client_incarnation,
                    recv_window,
                    max_datagram,
                    now,
                );
                self.connections.insert(handle, conn);
                self.by_key.insert(key, handle);
                self.dirty.mark(handle);
                self.refresh_timer(handle);
                self.stats.connections_accepted += 1;
                self.events.push_back((
                    ConnectionHandle(handle),
                    Event::Accepted {
                        peer: from,
                        client_incarnation,
                    },
                ));
            }
            // Never answer these with a Reset: two endpoints that both lost state would
            // bounce resets forever.
            Body::Reset | Body::Close { .. } | Body::Ack => {
                self.stats.unknown_connection += 1;
            }
            _ => {
                self.stats.unknown_connection += 1;
                self.stats.resets_sent += 1;
                self.queue_endpoint_transmit(from, Endpoint::bare_packet(pkt.conn_id, Body::Reset));
            }
        }
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
                self.stats.connections_closed += 1;
            }
            self.dirty.forget(h);
            self.refresh_timer(h);
        }
    }

    /// Brings the ordered deadline set up to date with connection `h`.
    fn refresh_timer(&mut self, h: u64) {
        let next = self.connections.get(&h).and_then(Connection::next_timeout);
        let old = self.deadlines.get(&h).copied();
        if old == next {
            return;
        }
        match next {
            Some(at) => {
                self.deadlines.insert(h, at);
                self.timers.push(Reverse((at, h)));
            }
            None => {
                self.deadlines.remove(&h);
            }
        }
        if self.timers.len() > 2 * self.deadlines.len() + 64 {
            self.timers = self
                .deadlines
                .iter()
                .map(|(&h, &at)| Reverse((at, h)))
                .collect();
        }
        self.drop_stale_timers();
    }

    /// Pops stale entries off the top of the timer heap (see `timers`).
    fn drop_stale_timers(&mut self) {
        while let Some(&Reverse((at, h))) = self.timers.peek() {
            if self.deadlines.get(&h) == Some(&at) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        while let Some(&Reverse((at, h))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.deadlines.get(&h) == Some(&at) {
                // Re-armed (or not) by `collect` once the connection has run.
                self.deadlines.remove(&h);
                due.push(h);
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
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|&Reverse((at, _))| at)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<(ConnectionHandle, Event)> {
        self.events.pop_front()
    }
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
