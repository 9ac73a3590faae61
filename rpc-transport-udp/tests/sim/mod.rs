//! A deterministic network simulator for the sans-IO core (shared by the `sim_*` and
//! `proto_*` tests through `mod sim;`).
//!
//! * A virtual clock: a base [`Instant`] plus a [`Duration`] offset. Nothing reads the
//!   wall clock, so a run is a pure function of its seed.
//! * Endpoints ([`Node`]s) at fake addresses, joined by a seeded network with, per
//!   direction, loss, duplication, reordering (random extra delay), corruption (one bit
//!   flipped) and jitter around a base one-way delay (as smoltcp's `fault_injector`).
//! * An event loop ([`Sim::run`]): deliver the datagrams due, fire the due timers, hand
//!   events to the applications, collect transmits, then jump the clock to the next
//!   arrival or deadline. Iterations and virtual time are capped so that a livelock (a
//!   deadline that never moves, a retransmission storm, a run that never ends) fails the
//!   test with its seed instead of hanging it.
//! * Applications ([`App`]): an echo client/server pair that sends messages with an
//!   embedded id and checksum and records every delivery, for exactly-once checks.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::packet::{AckInfo, Body, Cookie, Packet, SackRange, SackRanges};
use rpc_transport_udp::proto::{Chain, CloseReason, ConnectionHandle, Endpoint, SendError};

/// The core's events as the tests see them: each [`rpc_transport_udp::proto::Event::Readable`]
/// becomes one `Message` per message then taken with `Endpoint::poll_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        server_incarnation: u64,
    },
    Accepted {
        peer: SocketAddr,
        client_incarnation: u64,
    },
    Message(Bytes),
    Writable,
    Closed(CloseReason),
}

/// Translates one core event (taking the messages a `Readable` announces).
pub fn expand(
    ep: &mut Endpoint,
    h: ConnectionHandle,
    ev: rpc_transport_udp::proto::Event,
) -> Vec<Event> {
    use rpc_transport_udp::proto::Event as E;
    match ev {
        E::Connected { server_incarnation } => vec![Event::Connected { server_incarnation }],
        E::Accepted {
            peer,
            client_incarnation,
        } => vec![Event::Accepted {
            peer,
            client_incarnation,
        }],
        E::Readable => std::iter::from_fn(|| ep.poll_message(h))
            .map(Event::Message)
            .collect(),
        E::Writable => vec![Event::Writable],
        E::Closed(r) => vec![Event::Closed(r)],
    }
}

// ---------------------------------------------------------------------------------------
// Randomness

/// SplitMix64: tiny, fast, and good enough to drive a fault injector.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let x = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Addresses and wire helpers

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

pub fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Encodes a packet.
pub fn emit(p: &Packet) -> Bytes {
    let mut out = Vec::new();
    p.emit(&mut out);
    Bytes::from(out)
}

/// Parses a datagram that must be valid.
pub fn parse(bytes: &[u8]) -> Packet {
    Packet::parse(&Bytes::copy_from_slice(bytes)).expect("endpoint emitted an invalid datagram")
}

pub fn ack_info(cumulative: u64, ranges: &[(u64, u64)]) -> AckInfo {
    let mut r = SackRanges::new();
    for &(start, end) in ranges {
        assert!(r.push(SackRange { start, end }));
    }
    AckInfo {
        cumulative,
        delay_us: 0,
        ranges: r,
    }
}

pub fn packet(conn_id: u32, ack: AckInfo, body: Body) -> Bytes {
    emit(&Packet { conn_id, ack, body })
}

/// The SACK ranges of a packet as (start, end) pairs.
pub fn sacks(p: &Packet) -> Vec<(u64, u64)> {
    p.ack
        .ranges
        .as_slice()
        .iter()
        .map(|r| (r.start, r.end))
        .collect()
}

/// Everything `ep` wants to send right now, parsed.
pub fn drain(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Packet)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(to) = ep.poll_transmit(now, &mut buf) {
        out.push((to, parse(&buf)));
    }
    out
}

/// Everything `ep` wants to send right now, raw.
pub fn drain_raw(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Bytes)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(to) = ep.poll_transmit(now, &mut buf) {
        out.push((to, Bytes::copy_from_slice(&buf)));
    }
    out
}

pub fn events(ep: &mut Endpoint) -> Vec<(ConnectionHandle, Event)> {
    let mut out = Vec::new();
    while let Some((h, ev)) = ep.poll_event() {
        for e in expand(ep, h, ev) {
            out.push((h, e));
        }
    }
    out
}

/// A short description of a datagram for traces and failure messages.
pub fn describe(p: &Packet) -> String {
    let body = match &p.body {
        Body::Data {
            seq,
            frag_index,
            frag_count,
            ..
        } => format!("Data seq={seq} frag={frag_index}/{frag_count}"),
        other => format!("{:?}", std::mem::discriminant(other)).replace("Discriminant", "Body"),
    };
    format!(
        "{body} cum={} delay={}us sacks={:?}",
        p.ack.cumulative,
        p.ack.delay_us,
        sacks(p)
    )
}

// ---------------------------------------------------------------------------------------
// The network

/// Faults of one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay before jitter.
    pub delay: Duration,
    /// Each datagram's delay is uniform in `delay ± jitter`.
    pub jitter: Duration,
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// Probability a datagram is delivered twice (each copy with its own delay).
    pub duplicate: f64,
    /// Probability a datagram is held back by up to `reorder_extra` more.
    pub reorder: f64,
    pub reorder_extra: Duration,
    /// Probability one random bit of a datagram is flipped.
    pub corrupt: f64,
}

impl LinkConfig {
    /// A fixed delay and no faults.
    pub fn fixed(delay: Duration) -> Self {
        LinkConfig {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_extra: Duration::ZERO,
            corrupt: 0.0,
        }
    }

    /// 50 µs ± 30 µs, no faults.
    pub fn lan() -> Self {
        LinkConfig {
            jitter: us(30),
            ..LinkConfig::fixed(us(50))
        }
    }

    /// The LAN link with `loss` and every other fault enabled.
    pub fn hostile(loss: f64) -> Self {
        LinkConfig {
            loss,
            duplicate: 0.05,
            reorder: 0.1,
            reorder_extra: us(2_000),
            corrupt: 0.03,
            ..LinkConfig::lan()
        }
    }
}

/// What the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub delivered: u64,
    /// Dropped by a test's filter.
    pub filtered: u64,
}

impl std::ops::AddAssign for NetStats {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.corrupted += o.corrupted;
        self.delivered += o.delivered;
        self.filtered += o.filtered;
    }
}

/// One datagram on the wire.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Bytes,
}

/// Something the network did with a datagram, kept when tracing is on.
#[derive(Debug, Clone)]
pub struct TraceEntry {
    /// Virtual time of the send.
    pub at: Duration,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub packet: Packet,
}

/// Decides whether a datagram is dropped (true = drop), before the random faults.
pub type Filter = Box<dyn FnMut(Duration, &Datagram) -> bool>;

pub struct Net {
    pub rng: Rng,
    pub default_link: LinkConfig,
    /// Per-direction overrides, keyed by (from, to).
    pub links: HashMap<(SocketAddr, SocketAddr), LinkConfig>,
    /// Datagrams on the wire, by (arrival time, send order).
    queue: BTreeMap<(Duration, u64), Datagram>,
    order: u64,
    pub stats: NetStats,
    pub filter: Option<Filter>,
    /// Every datagram sent, parsed (when `tracing` is on).
    pub tracing: bool,
    pub trace: Vec<TraceEntry>,
}

impl Net {
    pub fn new(seed: u64, default_link: LinkConfig) -> Self {
        Net {
            rng: Rng::new(seed),
            default_link,
            links: HashMap::new(),
            queue: BTreeMap::new(),
            order: 0,
            stats: NetStats::default(),
            filter: None,
            tracing: false,
            trace: Vec::new(),
        }
    }

    fn link(&self, from: SocketAddr, to: SocketAddr) -> LinkConfig {
        self.links
            .get(&(from, to))
            .copied()
            .unwrap_or(self.default_link)
    }

    /// Puts a datagram on the wire at virtual time `now`.
    pub fn send(&mut self, now: Duration, d: Datagram) {
        self.stats.sent += 1;
        if self.tracing {
            if let Ok(packet) = Packet::parse(&d.bytes) {
                self.trace.push(TraceEntry {
                    at: now,
                    from: d.from,
                    to: d.to,
                    packet,
                });
            }
        }
        if let Some(f) = self.filter.as_mut() {
            if f(now, &d) {
                self.stats.filtered += 1;
                return;
            }
        }
        let link = self.link(d.from, d.to);
        if self.rng.chance(link.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(link.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = link.jitter.as_nanos() as u64;
            let base = link.delay.as_nanos() as u64;
            let mut delay = (base + self.rng.range(0, 2 * jitter)).saturating_sub(jitter);
            if self.rng.chance(link.reorder) {
                self.stats.reordered += 1;
                delay += self.rng.range(0, link.reorder_extra.as_nanos() as u64);
            }
            let mut bytes = d.bytes.clone();
            if !bytes.is_empty() && self.rng.chance(link.corrupt) {
                self.stats.corrupted += 1;
                let mut v = bytes.to_vec();
                let bit = self.rng.below(v.len() as u64 * 8);
                v[(bit / 8) as usize] ^= 1 << (bit % 8);
                bytes = Bytes::from(v);
            }
            self.inject(
                now + Duration::from_nanos(delay),
                Datagram {
                    from: d.from,
                    to: d.to,
                    bytes,
                },
            );
        }
    }

    /// Schedules a datagram to arrive at `at`, bypassing every fault.
    pub fn inject(&mut self, at: Duration, d: Datagram) {
        self.order += 1;
        self.queue.insert((at, self.order), d);
    }

    pub fn next_arrival(&self) -> Option<Duration> {
        self.queue.keys().next().map(|&(at, _)| at)
    }

    fn pop_due(&mut self, now: Duration) -> Option<Datagram> {
        let (&key, _) = self.queue.iter().next()?;
        if key.0 > now {
            return None;
        }
        self.queue.remove(&key)
    }

    /// Removes (and drops) the datagrams due at `now`.
    pub fn pop_due_for_test(&mut self, now: Duration) {
        while self.pop_due(now).is_some() {}
    }

    pub fn in_transit(&self) -> usize {
        self.queue.len()
    }
}

// ---------------------------------------------------------------------------------------
// Nodes, applications and the event loop

/// The application running on a node: reacts to events, says when it is finished.
pub trait App {
    fn on_event(&mut self, ep: &mut Endpoint, h: ConnectionHandle, ev: Event, now: Instant);
    /// Called once per loop iteration (after events), e.g. to retry refused sends.
    fn poll(&mut self, _ep: &mut Endpoint, _now: Instant) {}
    fn done(&self, ep: &Endpoint) -> bool;
}

/// One endpoint at one address.
pub struct Node {
    pub addr: SocketAddr,
    pub ep: Endpoint,
    /// Events of this node's endpoint not consumed by an application, with their time.
    pub log: Vec<(Duration, ConnectionHandle, Event)>,
}

/// Bounds of a run; hitting one is a livelock (or a run that never converges).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_iterations: u64,
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_iterations: 2_000_000,
            max_time: Duration::from_secs(600),
        }
    }
}

pub struct Sim {
    pub seed: u64,
    pub base: Instant,
    /// Virtual time since `base`.
    pub elapsed: Duration,
    pub nodes: Vec<Node>,
    pub net: Net,
    /// Datagrams sent to addresses no node has (e.g. a hand-crafted peer), with the time.
    pub unrouted: Vec<(Duration, Datagram)>,
    pub iterations: u64,
}

impl Sim {
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        Sim {
            seed,
            base: Instant::now(),
            elapsed: Duration::ZERO,
            nodes: Vec::new(),
            net: Net::new(seed, link),
            unrouted: Vec::new(),
            iterations: 0,
        }
    }

    pub fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// The virtual time of an instant.
    pub fn at(&self, t: Instant) -> Duration {
        t.duration_since(self.base)
    }

    /// Adds an endpoint at `addr`; returns its index.
    pub fn add(&mut self, addr: SocketAddr, ep: Endpoint) -> usize {
        self.nodes.push(Node {
            addr,
            ep,
            log: Vec::new(),
        });
        self.nodes.len() - 1
    }

    pub fn ep(&mut self, node: usize) -> &mut Endpoint {
        &mut self.nodes[node].ep
    }

    /// Delivers a hand-crafted datagram to `to` at `at` (no faults).
    pub fn inject(&mut self, at: Duration, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        self.net.inject(at, Datagram { from, to, bytes });
    }

    fn node_index(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == a)
    }

    /// Processes everything due at the current instant: arrivals, timers, events,
    /// transmits. Returns whether anything happened.
    pub fn step(&mut self, apps: &mut [&mut dyn App]) -> bool {
        let now = self.now();
        let mut busy = false;
        while let Some(d) = self.net.pop_due(self.elapsed) {
            busy = true;
            match self.node_index(d.to) {
                Some(i) => {
                    self.net.stats.delivered += 1;
                    self.nodes[i].ep.handle_datagram(now, d.from, d.bytes);
                }
                None => self.unrouted.push((self.elapsed, d)),
            }
        }
        for node in &mut self.nodes {
            if node.ep.poll_timeout().is_some_and(|t| t <= now) {
                busy = true;
                node.ep.handle_timeout(now);
            }
        }
        let mut buf = Vec::new();
        // Events before transmits (an application's reaction leaves at the same instant)
        // and again after (poll_transmit can raise Writable).
        for _ in 0..2 {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some((h, ev)) = node.ep.poll_event() {
                    busy = true;
                    for ev in expand(&mut node.ep, h, ev) {
                        match apps.get_mut(i) {
                            Some(app) => app.on_event(&mut node.ep, h, ev, now),
                            None => node.log.push((self.elapsed, h, ev)),
                        }
                    }
                }
                if let Some(app) = apps.get_mut(i) {
                    app.poll(&mut node.ep, now);
                }
                while let Some(to) = node.ep.poll_transmit(now, &mut buf) {
                    busy = true;
                    let d = Datagram {
                        from: node.addr,
                        to,
                        bytes: Bytes::copy_from_slice(&buf),
                    };
                    self.net.send(self.elapsed, d);
                }
            }
        }
        busy
    }

    /// The next instant anything is due (arrival or timer), if any.
    pub fn next_deadline(&mut self) -> Option<Duration> {
        let base = self.base;
        let timers = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.ep.poll_timeout())
            .map(|t| t.saturating_duration_since(base));
        self.net.next_arrival().into_iter().chain(timers).min()
    }

    /// Runs until `done` (checked after each step, together with every app's `done`)
    /// holds. Errors (with the seed) on a livelock: an iteration or virtual-time cap hit,
    /// or nothing left to happen while not done.
    pub fn run(
        &mut self,
        apps: &mut [&mut dyn App],
        limits: Limits,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<(), String> {
        let start_iter = self.iterations;
        loop {
            self.iterations += 1;
            self.step(apps);
            let apps_done = apps
                .iter()
                .zip(&self.nodes)
                .all(|(app, node)| app.done(&node.ep));
            if apps_done && done(self) {
                return Ok(());
            }
            if self.iterations - start_iter > limits.max_iterations {
                return Err(self.stuck(format!("{} iterations", limits.max_iterations)));
            }
            match self.next_deadline() {
                Some(t) if t > self.elapsed => {
                    if t > limits.max_time {
                        return Err(self.stuck(format!("virtual time cap {:?}", limits.max_time)));
                    }
                    self.elapsed = t;
                }
                // Something is due now: step again (the iteration cap catches a deadline
                // that never moves).
                Some(_) => {}
                None => return Err(self.stuck("nothing left to happen".into())),
            }
        }
    }

    /// Runs until virtual time `until` (everything due at `until` included).
    pub fn run_to(&mut self, apps: &mut [&mut dyn App], until: Duration) -> Result<(), String> {
        let limits = Limits {
            max_time: until,
            ..Limits::default()
        };
        let start_iter = self.iterations;
        loop {
            self.iterations += 1;
            self.step(apps);
            if self.iterations - start_iter > limits.max_iterations {
                return Err(self.stuck("iterations".into()));
            }
            match self.next_deadline() {
                Some(t) if t > self.elapsed && t <= until => self.elapsed = t,
                Some(t) if t <= self.elapsed => {}
                _ => {
                    self.elapsed = until.max(self.elapsed);
                    self.step(apps);
                    return Ok(());
                }
            }
        }
    }

    fn stuck(&mut self, why: String) -> String {
        let timers: Vec<_> = self
            .nodes
            .iter_mut()
            .map(|n| n.ep.poll_timeout())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.map(|t| self.at(t)))
            .collect();
        format!(
            "seed {}: livelock/stall ({why}) at virtual time {:?}, iteration {}; \
             node timers {:?}; {} datagrams in transit; net {:?}",
            self.seed,
            self.elapsed,
            self.iterations,
            timers,
            self.net.in_transit(),
            self.net.stats
        )
    }
}

// ---------------------------------------------------------------------------------------
// Test messages: an id and a checksum embedded in the content

/// Messages shorter than this cannot hold the header; each such length is used once per
/// run and identified by its length (content derived from it).
pub const MSG_HEADER: usize = 16;
const TINY_ID_BASE: u64 = 1 << 62;

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A message `len` bytes long carrying `id`: `[id u64][checksum u64][random payload]`,
/// checksum = FNV-1a over id and payload. Shorter messages: see [`MSG_HEADER`].
pub fn make_message(id: u64, len: usize, rng: &mut Rng) -> (u64, Bytes) {
    if len < MSG_HEADER {
        let v: Vec<u8> = (0..len)
            .map(|i| fnv1a(len as u64, &[i as u8]) as u8)
            .collect();
        return (TINY_ID_BASE + len as u64, Bytes::from(v));
    }
    let mut v = vec![0u8; len];
    rng.fill(&mut v[MSG_HEADER..]);
    let sum = fnv1a(id, &v[MSG_HEADER..]);
    v[..8].copy_from_slice(&id.to_be_bytes());
    v[8..16].copy_from_slice(&sum.to_be_bytes());
    (id, Bytes::from(v))
}

/// The id of an intact message, or `None` when its checksum does not match.
pub fn check_message(m: &[u8]) -> Option<u64> {
    if m.len() < MSG_HEADER {
        let ok = m
            .iter()
            .enumerate()
            .all(|(i, &b)| b == fnv1a(m.len() as u64, &[i as u8]) as u8);
        return ok.then_some(TINY_ID_BASE + m.len() as u64);
    }
    let id = u64::from_be_bytes(m[..8].try_into().ok()?);
    let sum = u64::from_be_bytes(m[8..16].try_into().ok()?);
    (fnv1a(id, &m[MSG_HEADER..]) == sum).then_some(id)
}

/// Random message sizes in 1 ..= `max`, biased toward small ones and fragment boundaries.
pub fn message_sizes(rng: &mut Rng, n: usize, max: usize, frag_payload: usize) -> Vec<usize> {
    let mut tiny_used = [false; MSG_HEADER];
    (0..n)
        .map(|_| loop {
            let len = match rng.below(6) {
                0 => rng.range(1, 64) as usize,
                1 => rng.range(1, 3) as usize * frag_payload + rng.range(0, 2) as usize - 1,
                2 => rng.range(64, 2_000) as usize,
                _ => rng.range(2_000, max as u64) as usize,
            }
            .clamp(1, max);
            if len < MSG_HEADER {
                if tiny_used[len] {
                    continue;
                }
                tiny_used[len] = true;
            }
            break len;
        })
        .collect()
}

/// Deliveries seen by one side, for exactly-once and integrity checks.
#[derive(Debug, Default)]
pub struct Record {
    /// Times each id was delivered.
    pub count: HashMap<u64, u32>,
    /// Deliveries whose embedded checksum did not match.
    pub corrupt: u64,
    pub delivered: u64,
}

impl Record {
    pub fn add(&mut self, m: &[u8]) -> Option<u64> {
        self.delivered += 1;
        match check_message(m) {
            Some(id) => {
                *self.count.entry(id).or_default() += 1;
                Some(id)
            }
            None => {
                self.corrupt += 1;
                None
            }
        }
    }

    /// Every id of `sent` exactly once, nothing else, nothing corrupt.
    pub fn check_exactly_once(&self, sent: &HashMap<u64, Bytes>, who: &str) -> Result<(), String> {
        if self.corrupt > 0 {
            return Err(format!(
                "{who}: {} corrupt messages delivered",
                self.corrupt
            ));
        }
        for id in sent.keys() {
            match self.count.get(id) {
                Some(1) => {}
                Some(n) => return Err(format!("{who}: message {id:#x} delivered {n} times")),
                None => return Err(format!("{who}: message {id:#x} never delivered")),
            }
        }
        if let Some(id) = self.count.keys().find(|id| !sent.contains_key(id)) {
            return Err(format!("{who}: unknown message {id:#x} delivered"));
        }
        Ok(())
    }
}

/// Sends queued messages, keeping those refused as `Full` for later.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Bytes>,
}

impl Outbox {
    pub fn push(&mut self, m: Bytes) {
        self.queue.push_back(m);
    }

    pub fn flush(&mut self, ep: &mut Endpoint, h: ConnectionHandle) {
        while let Some(m) = self.queue.pop_front() {
            // Every message goes in as three chunks (as a frame sent with shared
            // descriptors does), so fragments span chunk boundaries and are resent
            // from them under loss.
            let (a, b) = (m.len() / 3, 2 * m.len() / 3);
            let chain = Chain::from_chunks([m.slice(..a), m.slice(a..b), m.slice(b..)]);
            match ep.send(h, chain) {
                Ok(()) => {}
                Err(SendError::Full(_)) => {
                    self.queue.push_front(m);
                    return;
                }
                Err(e) => panic!("send failed: {e:?}"),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Connects to a server, sends its messages once connected, records the echoes.
pub struct Client {
    pub server: SocketAddr,
    pub handle: Option<ConnectionHandle>,
    pub to_send: Vec<Bytes>,
    /// Every message sent, by id.
    pub sent: HashMap<u64, Bytes>,
    pub outbox: Outbox,
    pub echoes: Record,
    /// Whether echoes are expected (false: the server only records).
    pub expect_echo: bool,
    pub connected: bool,
    pub closed: Option<Event>,
    pub server_incarnation: Option<u64>,
}

impl Client {
    pub fn new(server: SocketAddr, messages: Vec<(u64, Bytes)>, expect_echo: bool) -> Self {
        let sent = messages.iter().cloned().collect();
        Client {
            server,
            handle: None,
            to_send: messages.into_iter().map(|(_, m)| m).collect(),
            sent,
            outbox: Outbox::default(),
            echoes: Record::default(),
            expect_echo,
            connected: false,
            closed: None,
            server_incarnation: None,
        }
    }

    /// Opens the connection (call once, before running).
    pub fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        self.handle = Some(ep.connect(self.server, now));
    }

    /// Random messages: `n` of sizes in 1 ..= `max`, ids starting at `first_id`.
    pub fn random_messages(
        rng: &mut Rng,
        n: usize,
        max: usize,
        frag_payload: usize,
        first_id: u64,
    ) -> Vec<(u64, Bytes)> {
        message_sizes(rng, n, max, frag_payload)
            .into_iter()
            .enumerate()
            .map(|(i, len)| make_message(first_id + i as u64, len, rng))
            .collect()
    }
}

impl App for Client {
    fn on_event(&mut self, ep: &mut Endpoint, h: ConnectionHandle, ev: Event, _now: Instant) {
        assert_eq!(Some(h), self.handle, "event for an unknown connection");
        match ev {
            Event::Connected { server_incarnation } => {
                assert!(!self.connected, "Connected twice");
                self.connected = true;
                self.server_incarnation = Some(server_incarnation);
                for m in self.to_send.drain(..) {
                    self.outbox.push(m);
                }
                self.outbox.flush(ep, h);
            }
            Event::Message(m) => {
                assert!(self.expect_echo, "client got a message it did not expect");
                self.echoes.add(&m);
            }
            Event::Writable => self.outbox.flush(ep, h),
            ev @ Event::Closed(_) => self.closed = Some(ev),
            other => panic!("client: unexpected event {other:?}"),
        }
    }

    fn done(&self, ep: &Endpoint) -> bool {
        let Some(h) = self.handle else { return false };
        let idle = ep.connection_stats(h).is_some_and(|s| s.in_flight == 0);
        let echoed = !self.expect_echo || self.echoes.delivered as usize >= self.sent.len();
        self.connected && self.outbox.is_empty() && idle && echoed
    }
}

/// Accepts connections; records every message and (optionally) echoes it.
#[derive(Default)]
pub struct Server {
    pub echo: bool,
    pub received: Record,
    pub accepted: Vec<(ConnectionHandle, SocketAddr, u64)>,
    pub outboxes: HashMap<ConnectionHandle, Outbox>,
    pub closed: Vec<(ConnectionHandle, Event)>,
    /// Messages expected before the server is done.
    pub expect: usize,
}

impl App for Server {
    fn on_event(&mut self, ep: &mut Endpoint, h: ConnectionHandle, ev: Event, _now: Instant) {
        match ev {
            Event::Accepted {
                peer,
                client_incarnation,
            } => self.accepted.push((h, peer, client_incarnation)),
            Event::Message(m) => {
                self.received.add(&m);
                if self.echo {
                    let out = self.outboxes.entry(h).or_default();
                    out.push(m);
                    out.flush(ep, h);
                }
            }
            Event::Writable => {
                if let Some(out) = self.outboxes.get_mut(&h) {
                    out.flush(ep, h);
                }
            }
            ev @ Event::Closed(_) => self.closed.push((h, ev)),
            other => panic!("server: unexpected event {other:?}"),
        }
    }

    fn done(&self, ep: &Endpoint) -> bool {
        self.received.delivered as usize >= self.expect
            && self.outboxes.values().all(Outbox::is_empty)
            && self
                .accepted
                .iter()
                .all(|(h, ..)| ep.connection_stats(*h).is_none_or(|s| s.in_flight == 0))
    }
}

// ---------------------------------------------------------------------------------------
// Hand-driven pairs for exact-timer tests

/// A client and a server endpoint driven by hand: the test moves each datagram itself,
/// at the instants it chooses.
pub struct Pair {
    pub base: Instant,
    pub client: Endpoint,
    pub server: Endpoint,
    pub ca: SocketAddr,
    pub sa: SocketAddr,
}

pub const CLIENT_INCARNATION: u64 = 0x1111;
pub const SERVER_INCARNATION: u64 = 0x2222;

impl Pair {
    pub fn new(
        client: rpc_transport_udp::proto::Config,
        server: rpc_transport_udp::proto::Config,
    ) -> Self {
        Pair {
            base: Instant::now(),
            client: Endpoint::new(client, CLIENT_INCARNATION, false),
            server: Endpoint::new(server, SERVER_INCARNATION, true),
            ca: addr(1000),
            sa: addr(2000),
        }
    }

    /// The instant `d` after the base.
    pub fn t(&self, d: Duration) -> Instant {
        self.base + d
    }

    /// Everything the client sends at `now`, delivered to the server at `arrive`.
    pub fn client_to_server(&mut self, now: Instant, arrive: Instant) -> Vec<Packet> {
        let out = drain_raw(&mut self.client, now);
        out.iter()
            .map(|(to, bytes)| {
                assert_eq!(*to, self.sa);
                self.server.handle_datagram(arrive, self.ca, bytes.clone());
                parse(bytes)
            })
            .collect()
    }

    /// The client's cookie-less Init and the server's Retry, both at `now` without delay.
    pub fn retry_exchange(&mut self, now: Instant) {
        let init = self.client_to_server(now, now);
        assert!(
            matches!(
                init[..],
                [Packet {
                    body: Body::Init { cookie: None, .. },
                    ..
                }]
            ),
            "{init:?}"
        );
        let retry = self.server_to_client(now, now);
        assert!(
            matches!(
                retry[..],
                [Packet {
                    body: Body::Retry { .. },
                    ..
                }]
            ),
            "{retry:?}"
        );
        assert!(events(&mut self.server).is_empty());
    }

    /// Everything the server sends at `now`, delivered to the client at `arrive`.
    pub fn server_to_client(&mut self, now: Instant, arrive: Instant) -> Vec<Packet> {
        let out = drain_raw(&mut self.server, now);
        out.iter()
            .map(|(to, bytes)| {
                assert_eq!(*to, self.ca);
                self.client.handle_datagram(arrive, self.sa, bytes.clone());
                parse(bytes)
            })
            .collect()
    }

    /// Handshake with one-way delay `d`, starting at the base instant: the cookie-less
    /// Init and the server's Retry are exchanged at once at base (no delay; Retry gives
    /// no RTT sample), then the Init with the cookie leaves at base, the Accept leaves
    /// the server at base + d and arrives at base + 2d. Returns the client's and the
    /// server's handles; events are drained.
    pub fn establish(&mut self, d: Duration) -> (ConnectionHandle, ConnectionHandle) {
        let t0 = self.base;
        let ch = self.client.connect(self.sa, t0);
        self.retry_exchange(t0);
        let init = self.client_to_server(t0, t0 + d);
        assert!(
            matches!(
                init[..],
                [Packet {
                    body: Body::Init {
                        cookie: Some(_),
                        ..
                    },
                    ..
                }]
            ),
            "{init:?}"
        );
        let sh = match events(&mut self.server)[..] {
            [(sh, Event::Accepted { .. })] => sh,
            ref other => panic!("server events {other:?}"),
        };
        let accept = self.server_to_client(t0 + d, t0 + 2 * d);
        assert!(
            matches!(
                accept[..],
                [Packet {
                    body: Body::Accept { .. },
                    ..
                }]
            ),
            "{accept:?}"
        );
        assert_eq!(
            events(&mut self.client),
            vec![(
                ch,
                Event::Connected {
                    server_incarnation: SERVER_INCARNATION
                }
            )]
        );
        (ch, sh)
    }
}

// ---------------------------------------------------------------------------------------
// A hand-crafted peer talking to a real server endpoint

/// A fake client: the test writes its datagrams byte by byte and reads the server's.
pub struct FakePeer {
    pub addr: SocketAddr,
    pub conn_id: u32,
    pub incarnation: u64,
    /// The server's handle for this peer's connection.
    pub handle: ConnectionHandle,
}

impl FakePeer {
    /// Sends an Init from `addr` to `server` at `now` and takes the Accept.
    pub fn connect(
        server: &mut Endpoint,
        addr: SocketAddr,
        conn_id: u32,
        incarnation: u64,
        now: Instant,
    ) -> FakePeer {
        let cookie = Self::fetch_cookie(server, addr, conn_id, incarnation, now);
        server.handle_datagram(
            now,
            addr,
            Self::init_with(conn_id, incarnation, Some(cookie)),
        );
        let handle = match events(server)[..] {
            [(
                h,
                Event::Accepted {
                    peer,
                    client_incarnation,
                },
            )] => {
                assert_eq!((peer, client_incarnation), (addr, incarnation));
                h
            }
            ref other => panic!("server events {other:?}"),
        };
        let out = drain(server, now);
        assert!(
            matches!(out[..], [(to, Packet { body: Body::Accept { .. }, .. })] if to == addr),
            "{out:?}"
        );
        FakePeer {
            addr,
            conn_id,
            incarnation,
            handle,
        }
    }

    pub fn init(conn_id: u32, incarnation: u64) -> Bytes {
        Self::init_with(conn_id, incarnation, None)
    }

    pub fn init_with(conn_id: u32, incarnation: u64, cookie: Option<Cookie>) -> Bytes {
        packet(
            conn_id,
            ack_info(0, &[]),
            Body::Init {
                client_incarnation: incarnation,
                recv_window: 4096,
                max_datagram: 65_000,
                cookie,
            },
        )
    }

    /// Sends a cookie-less Init and returns the cookie of the server's Retry.
    pub fn fetch_cookie(
        server: &mut Endpoint,
        addr: SocketAddr,
        conn_id: u32,
        incarnation: u64,
        now: Instant,
    ) -> Cookie {
        server.handle_datagram(now, addr, Self::init(conn_id, incarnation));
        let out = drain(server, now);
        match &out[..] {
            [(
                to,
                Packet {
                    conn_id: id,
                    body: Body::Retry { cookie },
                    ..
                },
            )] if *to == addr && *id == conn_id => *cookie,
            other => panic!("expected a Retry, got {other:?}"),
        }
    }

    /// Fragment `index` of `msg` cut into `count` fragments, as datagram `seq`.
    pub fn fragment(&self, seq: u64, msg: &[u8], count: u32, index: u32) -> Bytes {
        let len = msg.len() as u32;
        let range = rpc_transport_udp::proto::packet::fragment_range(len, count, index);
        packet(
            self.conn_id,
            ack_info(0, &[]),
            Body::Data {
                seq,
                frag_index: index,
                frag_count: count,
                msg_len: len,
                payload: Bytes::copy_from_slice(&msg[range]),
            },
        )
    }

    /// A single-fragment message as datagram `seq`.
    pub fn single(&self, seq: u64, msg: &[u8]) -> Bytes {
        self.fragment(seq, msg, 1, 0)
    }

    pub fn send(&self, server: &mut Endpoint, now: Instant, datagram: Bytes) {
        server.handle_datagram(now, self.addr, datagram);
    }
}
