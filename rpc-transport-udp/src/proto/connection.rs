//! One reliable connection to one peer: the protocol's state machine.
//!
//! ```text
//!  client: connect()                          server: Init (9.3)
//!      │ send Init (retransmitted on RTO)        ├─ no/invalid/expired/replayed cookie ─▶ Retry, no state
//!      │◀── Retry: send Init with its cookie     ├─ bad parameters / limits ─▶ Close 5 / 4, no state
//!      ▼     (at most 8 Retries)                 ├─ valid cookie ───────────────┐ send Accept
//!  ┌─────────────┐   Accept (our incarnation)    │                              ▼
//!  │ Handshaking │ ─────────────────────────────────────────────────▶ ┌─────────────┐
//!  └─────────────┘                               └─ under load, no cookie ─▶ │ Established │
//!      │ peer silent for peer_timeout               Accept + Retry; sends     └─────────────┘
//!      │ or Init sent max_retransmits times         ≤ 3× received until an      │
//!      ▼                                            Init with the cookie        │ close()  → send Close
//!  ┌────────────────────┐                           validates the address       │ Close / Reset received
//!  │ Closed(reason)     │◀──────────────────────────────────────────────────────┘ peer silent (peer_timeout
//!  └────────────────────┘                             with data in flight, or idle_timeout)
//!      │ Close sent (if the reason calls for one      a datagram retransmitted too often
//!      │   and, unvalidated, it fits the 3× budget)   server: peer never acked (8 RTOs / 5 s)
//!      ▼                                              an incomplete message timed out or evicted
//!   freed; server: (address, id) quarantined
//!   for the cookie lifetime
//! ```
//!
//! (PROTOCOL.md 9.3 and 9.8; the server's stateless answers are the endpoint's.)
//!
//! Sending: a message is cut into fragments ([`packet::fragment_range`]); each fragment
//! gets the next sequence number when it is first sent, keeps it across retransmissions,
//! and stays in the in-flight table until acknowledged. At most `min(send_window, peer's
//! receive window)` fragments are in flight. A fragment is retransmitted when the
//! retransmission timer fires (RFC 6298: one timer, restarted when new data is acked,
//! exponential backoff) or, sooner, when a datagram sent after it with a sequence number
//! `reorder_threshold` higher is acknowledged (fast retransmit).
//!
//! Receiving: the [`RecvWindow`] classifies each sequence number; fragments go to the
//! [`Reassembler`], and a message is handed up as soon as its last fragment arrives,
//! whatever happened to other messages. Every datagram carries the cumulative ack and
//! selective-ack ranges; an ack waits at most `ack_delay` alone, and goes out at once
//! after a gap, a duplicate, a keepalive, or every `ack_every` datagrams.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::chain::Chain;
use super::config::{Config, AMPLIFICATION_FACTOR, MAX_DATAGRAM, MAX_WINDOW, MIN_DATAGRAM};
use super::packet::{
    self, AckInfo, Body, Cookie, Packet, SackRanges, COOKIE_LEN, DATA_SACK_RANGES, HEADER_LEN,
    MAX_SACK_RANGES, SACK_RANGE_LEN,
};
use super::reassembly::{GlobalBudget, Insert, Reassembler};
use super::rtt::RttEstimator;
use super::seal::{self, ClientHandshake, HandshakeError, HelloFields, OpenError, Session};
use super::sent::{Acked, Sent, SentPackets};
use super::timer::{Timer, TimerTable};
use super::window::{RecvWindow, Seen};

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opened the connection with a handshake.
    Client,
    /// Accepted it.
    Server,
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// This side closed it.
    Local,
    /// The peer sent Close with this reason code.
    PeerClosed {
        /// The peer's reason code ([`close_code`]).
        code: u32,
    },
    /// The peer stopped answering (or never answered the handshake).
    Unreachable,
    /// Nothing was heard from the peer for the idle timeout.
    Idle,
    /// The peer no longer knows this connection (it restarted or dropped it).
    Reset,
    /// The peer opened a new connection with a new incarnation on the same id: it
    /// restarted.
    PeerRestarted,
    /// An incomplete message timed out after its fragments were acknowledged; the
    /// stream of messages can no longer be completed.
    ReassemblyTimeout,
    /// The peer broke the protocol (inconsistent fragments, oversized message).
    ProtocolError,
    /// The endpoint refused the connection (connection limit).
    Refused,
    /// Sealing failed: the server's Welcome did not open (the wrong server key or PSK,
    /// or a forged answer), or this endpoint has no client security to offer.
    HandshakeFailed,
}

/// Reason codes carried in Close datagrams.
pub mod close_code {
    /// Normal close.
    pub const NORMAL: u32 = 0;
    /// The sender stopped hearing from the receiver of the Close.
    pub const IDLE: u32 = 1;
    /// An incomplete message timed out.
    pub const REASSEMBLY_TIMEOUT: u32 = 2;
    /// The receiver of the Close broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 3;
    /// The connection limit was reached (of the endpoint, or of the client's IP
    /// address).
    pub const REFUSED: u32 = 4;
    /// The handshake advertised values out of range (a maximum datagram below
    /// [`crate::proto::config::MIN_DATAGRAM`], a receive window of 0).
    pub const BAD_PARAMETERS: u32 = 5;
    /// Security: the server requires sealed datagrams and got a plain Init, or offers
    /// none and got a Hello, or the handshake failed (an unknown PSK id, the wrong key,
    /// a client key it does not allow). PROTOCOL.md 9.10.
    pub const SECURITY: u32 = 6;
}

/// Most Retries a client follows in one handshake (and, established, in its
/// connection's life); more are ignored, so an on-path forger cannot keep it looping.
pub const MAX_RETRIES_FOLLOWED: u32 = 8;

/// Whether advertised handshake values are acceptable at all (larger ones are clamped,
/// these are refused).
pub fn peer_params_ok(recv_window: u32, max_datagram: u32) -> bool {
    recv_window >= 1 && max_datagram as usize >= MIN_DATAGRAM
}

impl CloseReason {
    fn close_code(self) -> Option<u32> {
        match self {
            CloseReason::Local => Some(close_code::NORMAL),
            CloseReason::Idle => Some(close_code::IDLE),
            CloseReason::ReassemblyTimeout => Some(close_code::REASSEMBLY_TIMEOUT),
            CloseReason::ProtocolError => Some(close_code::PROTOCOL_ERROR),
            CloseReason::Refused => Some(close_code::REFUSED),
            CloseReason::HandshakeFailed => Some(close_code::SECURITY),
            // The peer is gone or already knows.
            CloseReason::PeerClosed { .. }
            | CloseReason::Unreachable
            | CloseReason::Reset
            | CloseReason::PeerRestarted => None,
        }
    }
}

/// What a connection reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client: the handshake completed.
    Connected {
        /// The server's incarnation number.
        server_incarnation: u64,
    },
    /// Server: a new connection was accepted.
    Accepted {
        /// The client's address.
        peer: SocketAddr,
        /// The client's incarnation number.
        client_incarnation: u64,
    },
    /// Complete messages wait in the connection's queue: take them with
    /// [`crate::proto::Endpoint::poll_message`]. Reported when the queue goes from empty
    /// to non-empty (take until `None` before waiting for the next one).
    Readable,
    /// A send that was refused as full may now succeed.
    Writable,
    /// The connection closed; nothing more will be delivered or sent.
    Closed(CloseReason),
}

/// Why a message was not accepted for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The send backlog is full; wait for [`Event::Writable`] and try again.
    Full(Chain),
    /// Longer than the maximum message size.
    TooLarge(Chain),
    /// The connection is closed.
    Closed(CloseReason),
}

/// A connection's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Datagrams sent (all kinds).
    pub datagrams_sent: u64,
    /// Datagrams received and accepted as this connection's.
    pub datagrams_received: u64,
    /// Data fragments retransmitted.
    pub retransmits: u64,
    /// Of those, retransmitted early because later datagrams were acknowledged.
    pub fast_retransmits: u64,
    /// Retransmission timeouts.
    pub rto_timeouts: u64,
    /// Data datagrams received again (dropped, acknowledged again).
    pub duplicates: u64,
    /// Data datagrams beyond the receive window (dropped).
    pub beyond_window: u64,
    /// Data datagrams dropped unacknowledged because reassembly memory was exhausted.
    pub over_budget: u64,
    /// Data datagrams dropped unacknowledged because the application was not taking
    /// messages.
    pub paused_drops: u64,
    /// Messages accepted for sending.
    pub messages_sent: u64,
    /// Messages delivered.
    pub messages_received: u64,
    /// Acks that acknowledged unsent sequence numbers (ignored).
    pub invalid_acks: u64,
    /// Smoothed RTT in microseconds (0 before the first sample).
    pub srtt_us: u64,
    /// Current retransmission timeout in microseconds.
    pub rto_us: u64,
    /// Fragments in flight.
    pub in_flight: u64,
    /// Times a datagram was held back by the anti-amplification limit (unvalidated
    /// peer address).
    pub amplification_blocked: u64,
    /// Retries received and followed (client).
    pub retries_followed: u64,
    /// 1 if the connection was closed because its peer never acknowledged any Data.
    pub never_acked_closes: u64,
    /// 1 if the connection was closed because its peer, though heard from, acknowledged
    /// nothing new for `peer_timeout` while Data was in flight.
    pub no_progress_closes: u64,
}

/// Endpoint-wide state a connection needs while handling an input.
pub(crate) struct Ctx<'a> {
    pub(crate) events: &'a mut VecDeque<Event>,
    pub(crate) budget: &'a mut GlobalBudget,
}

#[derive(Debug)]
enum State {
    /// Client: Init sent, no Accept yet.
    Handshaking {
        /// When Init was first sent (for an RTT sample if it is never resent).
        first_sent: Option<Instant>,
        /// How many times Init was sent.
        transmissions: u32,
        /// The cookie of the server's last Retry, echoed in every Init from then on.
        cookie: Option<Cookie>,
        /// An Init is due (first, retransmitted on RTO, or repeated with a cookie).
        init_pending: bool,
    },
    Established,
    Closed {
        reason: CloseReason,
        /// The Close datagram still to send (its reason code), if the reason calls for
        /// one.
        close_pending: Option<u32>,
    },
}

/// Data payloads at least this long are gathered into the datagram by the socket
/// (`sendmsg` with the datagram header and the payload's chunks) instead of being copied.
pub const GATHER_MIN: usize = 512;

/// A message accepted for sending whose fragments are not all sent yet.
#[derive(Debug)]
struct Outgoing {
    msg: Chain,
    frag_count: u32,
    next_index: u32,
    /// Sequence number of fragment 0 once it is sent.
    msg_id: Option<u64>,
}

/// Bytes exchanged with a peer whose address is not validated yet (server).
#[derive(Debug, Clone, Copy)]
struct Unvalidated {
    received: u64,
    sent: u64,
}

impl Unvalidated {
    /// Bytes that may still be sent.
    fn room(&self) -> usize {
        let allowed = self.received.saturating_mul(AMPLIFICATION_FACTOR);
        usize::try_from(allowed.saturating_sub(self.sent)).unwrap_or(usize::MAX)
    }
}

/// What the next datagram carries: a control body, or a Data fragment whose payload is
/// still the message's chunks (copied into the datagram or gathered by `poll_transmit`).
#[derive(Debug)]
enum Next {
    Control(Body),
    Data(DataOut),
}

/// A Data fragment to send (new or retransmitted).
#[derive(Debug)]
struct DataOut {
    seq: u64,
    frag_index: u32,
    frag_count: u32,
    msg_len: u32,
    payload: Chain,
}

/// What the next datagram may cost (anti-amplification), and its header sizes.
#[derive(Debug, Clone, Copy)]
struct Room {
    bytes: usize,
    /// Header plus SACK ranges of a non-Data datagram.
    head: usize,
    /// The same for a Data datagram (fewer ranges).
    data_head: usize,
}

impl Room {
    fn fits(room: Option<Room>, body_len: usize, data: bool) -> bool {
        room.is_none_or(|r| {
            let head = if data { r.data_head } else { r.head };
            head + body_len <= r.bytes
        })
    }
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) peer: SocketAddr,
    pub(crate) conn_id: u32,
    side: Side,
    state: State,
    cfg: Config,
    local_incarnation: u64,
    peer_incarnation: Option<u64>,
    peer_recv_window: u32,
    fragment_payload: usize,

    // Sending.
    /// Data datagrams in flight: sequence numbers, loss detection, retransmission.
    sent: SentPackets,
    outgoing: VecDeque<Outgoing>,
    backlog: usize,
    blocked: bool,
    rtt: RttEstimator,

    // Receiving.
    window: RecvWindow,
    reassembler: Reassembler,
    ack_needed: bool,
    ack_now: bool,
    unacked_eliciting: u32,
    /// Highest sequence number received, and when (for the ack delay field).
    largest_recv: u64,
    largest_recv_time: Option<Instant>,
    /// Complete messages not yet taken by the application (at most
    /// `cfg.max_undelivered`: beyond it new data is refused, see `paused`).
    inbox: VecDeque<Bytes>,
    /// The inbox reached `max_undelivered`: data datagrams are dropped unacknowledged
    /// (the peer resends them) until the application has taken it down to half.
    paused: bool,
    /// Nobody takes messages any more: complete messages are dropped.
    discard: bool,

    // Control datagrams waiting to go out.
    accept_pending: bool,
    ping_pending: bool,
    /// Server: a Retry to send (an unvalidated connection's invitation to validate).
    retry_pending: Option<Cookie>,
    /// Server: when the last Retry went out.
    retry_sent: Option<Instant>,
    /// Client, established: the cookie of a Retry to echo in an Init.
    revalidate: Option<Cookie>,
    /// Client: Retries followed so far.
    retries_followed: u32,

    /// Server: `Some` until the peer's address is validated.
    unvalidated: Option<Unvalidated>,
    /// The peer has acknowledged at least one of our Data datagrams.
    ever_acked: bool,
    /// When our first Data datagram went out.
    first_data_sent: Option<Instant>,
    /// Retransmission timeouts while the peer had never acknowledged anything.
    rto_without_ack: u32,
    /// A fragment was refused because the endpoint-wide reassembly budget was full.
    global_starved: bool,

    timers: TimerTable,
    /// The deadline the endpoint's timer heap holds for this connection (it may be
    /// earlier than `timers.next()`: see `Endpoint::timers`). The endpoint's alone.
    pub(crate) armed: Option<Instant>,
    last_recv: Instant,
    /// While Data is in flight: when the peer last acknowledged new data (or when the
    /// data went in flight). A peer that keeps pinging but acknowledges nothing for
    /// `peer_timeout` is as unreachable as a silent one.
    progress: Option<Instant>,
    last_send: Instant,
    closed_reported: bool,
    stats: ConnectionStats,
    /// Sealed datagrams (PROTOCOL.md 9.10); `None` on a plain connection.
    sealing: Option<Box<Sealing>>,
    /// Largest datagram sent: our maximum, and the peer's once known.
    send_datagram: usize,
}

/// A sealed connection's handshake and keys.
#[derive(Debug, Default)]
struct Sealing {
    /// Client: the Hello's handshake field, sent in every Init.
    hello: Option<Bytes>,
    /// Client: the handshake until the Welcome arrives.
    handshake: Option<ClientHandshake>,
    /// Server: the Welcome's handshake field, sent instead of Accept (again for a
    /// repeated Hello).
    welcome: Option<Bytes>,
    /// The keys, once the handshake is done.
    session: Option<Session>,
}

impl Connection {
    fn new(
        peer: SocketAddr,
        conn_id: u32,
        side: Side,
        cfg: &Config,
        incarnation: u64,
        now: Instant,
    ) -> Self {
        let mut cfg = cfg.clone();
        cfg.max_datagram = cfg.max_datagram_for(peer).clamp(MIN_DATAGRAM, MAX_DATAGRAM);
        cfg.recv_window = cfg.recv_window.clamp(1, MAX_WINDOW);
        Connection {
            peer,
            conn_id,
            side,
            state: State::Established,
            local_incarnation: incarnation,
            peer_incarnation: None,
            peer_recv_window: cfg.send_window,
            fragment_payload: packet::max_fragment_payload(cfg.max_datagram),
            sent: SentPackets::default(),
            outgoing: VecDeque::new(),
            backlog: 0,
            blocked: false,
            rtt: RttEstimator::new(cfg.rtt),
            window: RecvWindow::new(cfg.recv_window),
            reassembler: Reassembler::new(cfg.reassembly),
            ack_needed: false,
            ack_now: false,
            unacked_eliciting: 0,
            largest_recv: 0,
            largest_recv_time: None,
            inbox: VecDeque::new(),
            paused: false,
            discard: false,
            accept_pending: false,
            ping_pending: false,
            retry_pending: None,
            retry_sent: None,
            revalidate: None,
            retries_followed: 0,
            unvalidated: None,
            ever_acked: false,
            first_data_sent: None,
            rto_without_ack: 0,
            global_starved: false,
            timers: TimerTable::default(),
            armed: None,
            last_recv: now,
            progress: None,
            last_send: now,
            closed_reported: false,
            stats: ConnectionStats::default(),
            sealing: None,
            send_datagram: cfg.max_datagram,
            cfg,
        }
    }

    /// The fields of this client's Hello that the handshake binds.
    pub(crate) fn hello_fields(&self) -> HelloFields {
        HelloFields {
            conn_id: self.conn_id,
            client_incarnation: self.local_incarnation,
            recv_window: self.cfg.recv_window,
            max_datagram: self.cfg.max_datagram as u32,
        }
    }

    /// The Accept body this server connection announces (what a Welcome encrypts).
    pub(crate) fn accept_payload(&self) -> [u8; seal::ACCEPT_PAYLOAD_LEN] {
        let mut p = [0u8; seal::ACCEPT_PAYLOAD_LEN];
        p[0..8].copy_from_slice(&self.peer_incarnation.unwrap_or(0).to_be_bytes());
        p[8..16].copy_from_slice(&self.local_incarnation.to_be_bytes());
        p[16..20].copy_from_slice(&self.cfg.recv_window.to_be_bytes());
        p[20..24].copy_from_slice(&(self.cfg.max_datagram as u32).to_be_bytes());
        p
    }

    /// Client: seal this connection; every Init becomes a Hello with `hello`.
    pub(crate) fn seal_client(&mut self, handshake: ClientHandshake, hello: Bytes) {
        self.sealing = Some(Box::new(Sealing {
            hello: Some(hello),
            handshake: Some(handshake),
            ..Sealing::default()
        }));
        self.update_fragment_payload();
    }

    /// Server: seal this connection with the handshake's `session`; its Accept is the
    /// Welcome `welcome`.
    pub(crate) fn seal_server(&mut self, session: Session, welcome: Bytes) {
        self.sealing = Some(Box::new(Sealing {
            welcome: Some(welcome),
            session: Some(session),
            ..Sealing::default()
        }));
        self.update_fragment_payload();
    }

    /// Whether this connection seals its datagrams.
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealing.is_some()
    }

    /// Whether this is a client still waiting for the server's answer to its handshake.
    pub(crate) fn is_handshaking(&self) -> bool {
        matches!(self.state, State::Handshaking { .. })
    }

    /// The peer's identity, as the handshake proved it.
    pub(crate) fn principal(&self) -> Option<&rpc_core::Principal> {
        self.sealing.as_ref()?.session.as_ref()?.principal()
    }

    /// Client: opens the server's Welcome into the Accept it carries. A Welcome that
    /// does not open ends the handshake (the connection closes: `HandshakeFailed`).
    pub(crate) fn open_welcome(&mut self, welcome: &[u8]) -> Result<Body, HandshakeError> {
        if self.side != Side::Client || !self.is_handshaking() {
            return Err(HandshakeError::Unsupported);
        }
        let handshake = self
            .sealing
            .as_mut()
            .and_then(|s| s.handshake.take())
            .ok_or(HandshakeError::Unsupported)?;
        let (session, accept) = handshake.finish(welcome, None)?;
        if let Some(s) = self.sealing.as_mut() {
            s.session = Some(session);
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([accept[i], accept[i + 1], accept[i + 2], accept[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Ok(Body::Accept {
            client_incarnation: u64_at(0),
            server_incarnation: u64_at(8),
            recv_window: u32_at(16),
            max_datagram: u32_at(20),
        })
    }

    /// Opens a sealed datagram from the peer.
    pub(crate) fn open_sealed(&mut self, datagram: &[u8]) -> Result<Bytes, OpenError> {
        match self.sealing.as_mut().and_then(|s| s.session.as_mut()) {
            Some(session) => session.open(datagram),
            None => Err(OpenError::Forged),
        }
    }

    /// Fails a client handshake that cannot go on (see [`CloseReason::HandshakeFailed`]).
    pub(crate) fn fail_handshake(&mut self, ctx: &mut Ctx<'_>) {
        self.enter_closed(CloseReason::HandshakeFailed, ctx);
    }

    fn update_fragment_payload(&mut self) {
        let overhead = if self.sealing.is_some() {
            seal::SEAL_OVERHEAD
        } else {
            0
        };
        self.fragment_payload =
            packet::max_fragment_payload(self.send_datagram.saturating_sub(overhead)).max(1);
    }

    /// A client connection: sends Init at once.
    pub(crate) fn client(
        peer: SocketAddr,
        conn_id: u32,
        cfg: &Config,
        incarnation: u64,
        now: Instant,
    ) -> Self {
        let mut c = Connection::new(peer, conn_id, Side::Client, cfg, incarnation, now);
        c.state = State::Handshaking {
            first_sent: None,
            transmissions: 0,
            cookie: None,
            init_pending: true,
        };
        c.arm_liveness(now);
        c
    }

    /// A server connection for a peer's Init: established, sends Accept at once.
    /// `unvalidated`: the peer's address is not proven yet; `Some(init_len)` holds the
    /// bytes received so far (the Init) and, with it, a Retry to send after the Accept.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn server(
        peer: SocketAddr,
        conn_id: u32,
        cfg: &Config,
        incarnation: u64,
        client_incarnation: u64,
        peer_recv_window: u32,
        peer_max_datagram: u32,
        unvalidated: Option<(usize, Cookie)>,
        now: Instant,
    ) -> Self {
        let mut c = Connection::new(peer, conn_id, Side::Server, cfg, incarnation, now);
        c.set_peer_params(client_incarnation, peer_recv_window, peer_max_datagram);
        c.accept_pending = true;
        if let Some((init_len, cookie)) = unvalidated {
            c.unvalidated = Some(Unvalidated {
                received: init_len as u64,
                sent: 0,
            });
            c.retry_pending = Some(cookie);
        }
        c.arm_liveness(now);
        c
    }

    /// Takes the peer's advertised values, clamped: the window to 1..=[`MAX_WINDOW`],
    /// the datagram to [`MIN_DATAGRAM`]..=[`MAX_DATAGRAM`] (and to our own maximum).
    fn set_peer_params(&mut self, incarnation: u64, recv_window: u32, max_datagram: u32) {
        self.peer_incarnation = Some(incarnation);
        self.peer_recv_window = recv_window.clamp(1, MAX_WINDOW);
        let peer_max = (max_datagram as usize).clamp(MIN_DATAGRAM, MAX_DATAGRAM);
        self.send_datagram = self.cfg.max_datagram.min(peer_max);
        self.update_fragment_payload();
    }

    /// Server: the peer's address is proven (it echoed a valid cookie).
    pub(crate) fn set_validated(&mut self) {
        self.unvalidated = None;
        self.retry_pending = None;
    }

    /// Server: whether the peer's address is still unproven.
    pub(crate) fn is_unvalidated(&self) -> bool {
        self.unvalidated.is_some()
    }

    /// Server: counts bytes received from the unvalidated peer.
    pub(crate) fn on_bytes_received(&mut self, n: usize) {
        if let Some(u) = &mut self.unvalidated {
            u.received = u.received.saturating_add(n as u64);
        }
    }

    /// Server, unvalidated: whether a new Retry should go out (none pending, none sent
    /// within the last RTO).
    pub(crate) fn wants_retry(&self, now: Instant) -> bool {
        self.unvalidated.is_some()
            && self.retry_pending.is_none()
            && self
                .retry_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= self.rtt.rto())
    }

    /// Server, unvalidated: queues a Retry with `cookie`.
    pub(crate) fn queue_retry(&mut self, cookie: Cookie) {
        if self.unvalidated.is_some() {
            self.retry_pending = Some(cookie);
        }
    }

    /// Whether a fragment was refused for lack of endpoint-wide reassembly memory since
    /// the last call.
    pub(crate) fn take_global_starved(&mut self) -> bool {
        std::mem::take(&mut self.global_starved)
    }

    /// The side of the connection.
    pub(crate) fn side(&self) -> Side {
        self.side
    }

    /// The peer's incarnation, once known.
    pub(crate) fn peer_incarnation(&self) -> Option<u64> {
        self.peer_incarnation
    }

    /// Whether the connection is closed.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        match self.state {
            State::Closed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Closed, reported, and nothing left to send: the endpoint may free it.
    pub(crate) fn is_drained(&self) -> bool {
        matches!(
            self.state,
            State::Closed {
                close_pending: None,
                ..
            }
        ) && self.closed_reported
            && self.inbox.is_empty()
    }

    /// The connection's counters.
    pub(crate) fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            srtt_us: self.rtt.srtt().map_or(0, |d| d.as_micros() as u64),
            rto_us: self.rtt.rto().as_micros() as u64,
            in_flight: self.sent.in_flight() as u64,
            retries_followed: u64::from(self.retries_followed),
            ..self.stats
        }
    }

    /// Bytes this connection holds in reassembly.
    pub(crate) fn reassembly_bytes(&self) -> usize {
        self.reassembler.bytes_used()
    }

    /// Whether a [`Connection::send`] would be accepted now.
    pub(crate) fn is_writable(&self) -> bool {
        !matches!(self.state, State::Closed { .. }) && self.backlog < self.cfg.send_buffer
    }

    /// Takes the oldest complete message.
    pub(crate) fn take_message(&mut self) -> Option<Bytes> {
        let m = self.inbox.pop_front()?;
        if self.paused && self.inbox.len() <= self.cfg.max_undelivered / 2 {
            self.paused = false;
        }
        Some(m)
    }

    /// Stops accepting data if the inbox is full (called by the endpoint after each
    /// datagram, or after each batch of datagrams).
    pub(crate) fn update_pause(&mut self) {
        if self.inbox.len() >= self.cfg.max_undelivered.max(1) {
            self.paused = true;
        }
    }

    /// Drops every message not taken (nobody will read them) and accepts data again.
    pub(crate) fn discard_messages(&mut self) {
        self.inbox.clear();
        self.paused = false;
        self.discard = true;
    }

    /// Complete messages not yet taken.
    pub(crate) fn undelivered(&self) -> usize {
        self.inbox.len()
    }

    fn effective_window(&self) -> usize {
        self.cfg.send_window.min(self.peer_recv_window) as usize
    }

    /// Accepts a message for sending.
    pub(crate) fn send(&mut self, msg: Chain) -> Result<(), SendError> {
        if let State::Closed { reason, .. } = self.state {
            return Err(SendError::Closed(reason));
        }
        if msg.len() > self.cfg.reassembly.max_message as usize {
            return Err(SendError::TooLarge(msg));
        }
        if self.backlog >= self.cfg.send_buffer {
            self.blocked = true;
            return Err(SendError::Full(msg));
        }
        self.backlog += msg.len();
        self.stats.messages_sent += 1;
        self.outgoing.push_back(Outgoing {
            frag_count: 0,
            next_index: 0,
            msg_id: None,
            msg,
        });
        Ok(())
    }

    /// Closes the connection from this side (a Close datagram is sent).
    pub(crate) fn close(&mut self, ctx: &mut Ctx<'_>) {
        self.enter_closed(CloseReason::Local, ctx);
    }

    fn enter_closed(&mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::Closed { .. }) {
            return;
        }
        tracing::debug!(peer = %self.peer, conn_id = self.conn_id, ?reason, "connection closed");
        self.state = State::Closed {
            reason,
            close_pending: reason.close_code(),
        };
        self.sent.clear();
        self.outgoing.clear();
        self.backlog = 0;
        self.reassembler.clear(ctx.budget);
        self.timers.stop_all();
        self.accept_pending = false;
        self.ping_pending = false;
        self.ack_needed = false;
        ctx.events.push_back(Event::Closed(reason));
        self.closed_reported = true;
    }

    /// Fails the connection from outside (e.g. the endpoint learned the peer restarted).
    pub(crate) fn fail(&mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        self.enter_closed(reason, ctx);
    }

    /// When the peer is declared unreachable if it has not answered: `peer_timeout`
    /// after it was last heard, or, with Data in flight, after it last acknowledged new
    /// data (whichever is earlier).
    fn peer_deadline(&self) -> Instant {
        let since = match self.progress {
            Some(p) if self.sent.in_flight() > 0 => p.min(self.last_recv),
            _ => self.last_recv,
        };
        since + self.cfg.peer_timeout
    }

    fn arm_liveness(&mut self, now: Instant) {
        self.timers
            .set(Timer::Idle, self.last_recv + self.cfg.idle_timeout);
        if self.expects_answer() {
            self.timers.set(Timer::PeerTimeout, self.peer_deadline());
        } else {
            self.timers.stop(Timer::PeerTimeout);
        }
        // Only clients send keepalives: the server learns of a dead client from the idle
        // timeout, and one side probing is enough to keep both alive.
        if self.side == Side::Client && matches!(self.state, State::Established) {
            self.timers.set(
                Timer::Keepalive,
                self.last_send + self.cfg.keepalive_interval,
            );
        }
        let _ = now;
    }

    /// Whether the peer owes us an answer (handshake or unacknowledged data).
    fn expects_answer(&self) -> bool {
        matches!(self.state, State::Handshaking { .. })
            || self.sent.in_flight() > 0
            || !self.outgoing.is_empty()
    }

    /// Restarts the bookkeeping timers after anything changed.
    fn rearm(&mut self, now: Instant) {
        if matches!(self.state, State::Closed { .. }) {
            self.timers.stop_all();
            return;
        }
        self.arm_liveness(now);
        match self.reassembler.next_expiry() {
            Some(at) => self.timers.set(Timer::Reassembly, at),
            None => self.timers.stop(Timer::Reassembly),
        }
        let sending_data = self.sent.in_flight() > 0;
        let handshaking = matches!(self.state, State::Handshaking { .. });
        if !sending_data && !handshaking {
            self.timers.stop(Timer::Retransmit);
        }
    }

    /// The earliest timer deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Handles one parsed datagram from the peer.
    pub(crate) fn handle_packet(&mut self, pkt: Packet, now: Instant, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::Closed { .. }) {
            return;
        }
        self.stats.datagrams_received += 1;
        self.last_recv = now;
        match pkt.body {
            Body::Init { .. } | Body::Hello { .. } => {
                // A retransmitted Init from the same incarnation (the endpoint routes
                // other incarnations elsewhere): our Accept was lost.
                if self.side == Side::Server {
                    self.accept_pending = true;
                }
            }
            Body::Accept {
                client_incarnation,
                server_incarnation,
                recv_window,
                max_datagram,
            } => {
                if let State::Handshaking {
                    first_sent,
                    transmissions,
                    ..
                } = self.state
                {
                    if client_incarnation == self.local_incarnation
                        && !peer_params_ok(recv_window, max_datagram)
                    {
                        self.enter_closed(CloseReason::ProtocolError, ctx);
                    } else if client_incarnation == self.local_incarnation {
                        self.set_peer_params(server_incarnation, recv_window, max_datagram);
                        if let (1, Some(sent)) = (transmissions, first_sent) {
                            self.rtt.on_sample(now.saturating_duration_since(sent));
                        }
                        self.state = State::Established;
                        self.timers.stop(Timer::Retransmit);
                        ctx.events
                            .push_back(Event::Connected { server_incarnation });
                    }
                }
            }
            Body::Data {
                seq,
                frag_index,
                frag_count,
                msg_len,
                payload,
            } => {
                if matches!(self.state, State::Established) {
                    self.on_ack(&pkt.ack, now);
                    self.on_data(seq, frag_index, frag_count, msg_len, payload, now, ctx);
                }
            }
            Body::Ack => self.on_ack(&pkt.ack, now),
            Body::Ping => {
                self.on_ack(&pkt.ack, now);
                self.ack_needed = true;
                self.ack_now = true;
            }
            Body::Close { reason } => {
                self.enter_closed(CloseReason::PeerClosed { code: reason }, ctx)
            }
            Body::Reset => self.enter_closed(CloseReason::Reset, ctx),
            Body::Retry { cookie } => self.on_retry(cookie),
            // The endpoint opens Welcomes into Accepts; a stray one means nothing.
            Body::Welcome { .. } => {}
        }
        self.rearm(now);
    }

    /// Client: the server asks us to prove our address with `cookie`.
    fn on_retry(&mut self, cookie: Cookie) {
        if self.side != Side::Client || self.retries_followed >= MAX_RETRIES_FOLLOWED {
            return;
        }
        self.retries_followed += 1;
        match &mut self.state {
            State::Handshaking {
                first_sent,
                transmissions,
                cookie: held,
                init_pending,
            } => {
                // No RTT sample here: the Init that carries the cookie and its Accept
                // give the first one.
                *held = Some(cookie);
                *first_sent = None;
                *transmissions = 0;
                *init_pending = true;
                // Armed again when the Init goes out.
                self.timers.stop(Timer::Retransmit);
            }
            State::Established => self.revalidate = Some(cookie),
            State::Closed { .. } => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        seq: u64,
        frag_index: u32,
        frag_count: u32,
        msg_len: u32,
        payload: Bytes,
        now: Instant,
        ctx: &mut Ctx<'_>,
    ) {
        let seen = self.window.check(seq);
        // A datagram that fills a gap is acknowledged at once (RFC 5681 4.2), so the
        // sender learns quickly that the hole is closed.
        let fills_gap = seen == Seen::InOrder && self.window.recorded_above() > 0;
        match seen {
            Seen::Duplicate => {
                self.stats.duplicates += 1;
                // Our ack may have been lost: acknowledge again, now.
                self.ack_needed = true;
                self.ack_now = true;
                return;
            }
            Seen::BeyondWindow => {
                self.stats.beyond_window += 1;
                return;
            }
            Seen::InOrder | Seen::OutOfOrder => {}
        }
        if self.paused {
            self.stats.paused_drops += 1;
            return;
        }
        let Some(msg_id) = seq.checked_sub(frag_index as u64) else {
            self.enter_closed(CloseReason::ProtocolError, ctx);
            return;
        };
        match self.reassembler.insert(
            ctx.budget, msg_id, frag_index, frag_count, msg_len, payload, now,
        ) {
            Insert::Complete(msg) => {
                self.window.record(seq);
                self.stats.messages_received += 1;
                if self.discard {
                    drop(msg);
                } else {
                    if self.inbox.is_empty() {
                        ctx.events.push_back(Event::Readable);
                    }
                    self.inbox.push_back(msg);
                }
            }
            Insert::Pending | Insert::Duplicate => {
                self.window.record(seq);
            }
            Insert::OverBudget => {
                // Not recorded, not acknowledged: the peer will send it again.
                self.stats.over_budget += 1;
                return;
            }
            Insert::OverGlobalBudget => {
                // The same, and the endpoint may evict the biggest holder.
                self.stats.over_budget += 1;
                self.global_starved = true;
                return;
            }
            Insert::TooLarge | Insert::Inconsistent => {
                self.enter_closed(CloseReason::ProtocolError, ctx);
                return;
            }
        }
        if seq > self.largest_recv {
            self.largest_recv = seq;
            self.largest_recv_time = Some(now);
        }
        self.ack_needed = true;
        self.unacked_eliciting += 1;
        if seen == Seen::OutOfOrder || fills_gap || self.unacked_eliciting >= self.cfg.ack_every {
            self.ack_now = true;
        } else if self.timers.get(Timer::Ack).is_none() {
            self.timers.set(Timer::Ack, now + self.cfg.ack_delay);
        }
    }

    /// Processes the acknowledgement fields every datagram carries.
    fn on_ack(&mut self, ack: &AckInfo, now: Instant) {
        let (newly, sample) = match self.sent.on_ack(ack, now) {
            Acked::Invalid => {
                self.stats.invalid_acks += 1;
                return;
            }
            Acked::Ok { newly, sample } => (newly, sample),
        };
        if newly == 0 {
            return;
        }
        self.ever_acked = true;
        let in_flight = self.sent.in_flight();
        self.progress = (in_flight > 0).then_some(now);
        if let Some(mut r) = sample {
            let delay = Duration::from_micros(ack.delay_us as u64);
            if r > delay {
                r -= delay;
            }
            self.rtt.on_sample(r);
        }
        // RFC 6298 5.3: new data acknowledged restarts the timer.
        if in_flight > 0 {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        } else {
            self.timers.stop(Timer::Retransmit);
        }
        // Fast retransmit.
        self.stats.fast_retransmits += self.sent.detect_lost(self.cfg.reorder_threshold) as u64;
    }

    /// Handles every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::Closed { .. }) {
            return;
        }
        if self.timers.is_due(Timer::Idle, now) {
            self.enter_closed(CloseReason::Idle, ctx);
            return;
        }
        if self.timers.is_due(Timer::PeerTimeout, now) && self.expects_answer() {
            if now < self.last_recv + self.cfg.peer_timeout {
                // Heard from, but nothing acknowledged: counted apart.
                self.stats.no_progress_closes = 1;
            }
            self.enter_closed(CloseReason::Unreachable, ctx);
            return;
        }
        if self.timers.is_due(Timer::Reassembly, now)
            && self.reassembler.expire(ctx.budget, now) > 0
        {
            self.enter_closed(CloseReason::ReassemblyTimeout, ctx);
            return;
        }
        if self.timers.is_due(Timer::Ack, now) {
            self.timers.stop(Timer::Ack);
            if self.ack_needed {
                self.ack_now = true;
            }
        }
        if self.timers.is_due(Timer::Keepalive, now) {
            self.timers.stop(Timer::Keepalive);
            if matches!(self.state, State::Established) {
                self.ping_pending = true;
            }
        }
        if self.timers.is_due(Timer::Retransmit, now) {
            self.on_retransmit_timeout(now, ctx);
            if matches!(self.state, State::Closed { .. }) {
                return;
            }
        }
        self.rearm(now);
    }

    fn on_retransmit_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.stats.rto_timeouts += 1;
        if let State::Handshaking { transmissions, .. } = self.state {
            if transmissions >= self.cfg.max_retransmits {
                self.enter_closed(CloseReason::Unreachable, ctx);
                return;
            }
            self.rtt.on_timeout();
            if let State::Handshaking { init_pending, .. } = &mut self.state {
                *init_pending = true;
            }
            // Armed again when the Init goes out.
            self.timers.stop(Timer::Retransmit);
            return;
        }
        if self.side == Side::Server && !self.ever_acked && self.sent.in_flight() > 0 {
            // A peer that never acknowledged anything may not be there at all (a spoofed
            // address): bound what we keep sending it.
            self.rto_without_ack += 1;
            let since = self
                .first_data_sent
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            if self.rto_without_ack >= self.cfg.never_acked_retransmits
                || since >= self.cfg.never_acked_timeout
            {
                self.stats.never_acked_closes = 1;
                self.enter_closed(CloseReason::Unreachable, ctx);
                return;
            }
        }
        if self
            .sent
            .on_rto(now, self.rtt.rto(), self.cfg.max_retransmits)
            .is_err()
        {
            self.enter_closed(CloseReason::Unreachable, ctx);
            return;
        }
        // RFC 6298 5.5: back off.
        self.rtt.on_timeout();
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
    }

    fn ack_info(&self, now: Instant, max_ranges: usize) -> AckInfo {
        let mut ranges = SackRanges::new();
        self.window.sack_ranges(max_ranges, &mut ranges);
        let delay = self.largest_recv_time.map_or(0, |t| {
            now.saturating_duration_since(t)
                .as_micros()
                .min(u32::MAX as u128) as u32
        });
        AckInfo {
            cumulative: self.window.cumulative(),
            delay_us: delay,
            ranges,
        }
    }

    /// Writes the next datagram to send into `out` (cleared first). Returns false when
    /// there is nothing to send now.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut Vec<u8>,
        gather: &mut Vec<Bytes>,
        events: &mut VecDeque<Event>,
    ) -> bool {
        out.clear();
        gather.clear();
        // Unvalidated peer: what the datagram will cost must be known before choosing it,
        // so the ack goes first (it does not depend on what is sent).
        let early_ack = self
            .unvalidated
            .map(|u| (u.room(), self.ack_info(now, MAX_SACK_RANGES)));
        let room = early_ack.as_ref().map(|(bytes, ack)| Room {
            bytes: *bytes,
            head: HEADER_LEN + ack.ranges.len() * SACK_RANGE_LEN,
            data_head: HEADER_LEN + ack.ranges.len().min(DATA_SACK_RANGES) * SACK_RANGE_LEN,
        });
        let body = match self.next_body(now, events, room) {
            None => return false,
            Some(Next::Control(body)) => body,
            Some(Next::Data(d)) => {
                let payload = if d.payload.len() < GATHER_MIN && d.payload.is_contiguous() {
                    // Small: one copy into the datagram beats another iovec.
                    d.payload.to_bytes()
                } else {
                    // Large or in pieces: the datagram is `out` then these chunks
                    // (sendmsg); the Body carries none of them.
                    gather.extend(d.payload.chunks().cloned());
                    Bytes::new()
                };
                Body::Data {
                    seq: d.seq,
                    frag_index: d.frag_index,
                    frag_count: d.frag_count,
                    msg_len: d.msg_len,
                    payload,
                }
            }
        };
        let max_ranges = if matches!(body, Body::Data { .. }) {
            DATA_SACK_RANGES
        } else {
            MAX_SACK_RANGES
        };
        let ack = match early_ack {
            Some((_, mut ack)) => {
                ack.ranges.truncate(max_ranges);
                ack
            }
            None => self.ack_info(now, max_ranges),
        };
        let pkt = Packet {
            conn_id: self.conn_id,
            ack,
            body,
        };
        pkt.emit_gather(out, gather);
        if let Some(session) = self.sealing.as_mut().and_then(|s| s.session.as_mut()) {
            // After the handshake everything is sealed but a repeated Welcome.
            if !matches!(pkt.body, Body::Welcome { .. }) && !session.seal(self.conn_id, out, gather)
            {
                // 2^64 datagrams sealed: the packet numbers are spent (not reachable in
                // practice); nothing more leaves, and the peer times the connection out.
                out.clear();
                gather.clear();
                return false;
            }
        }
        if let Some(u) = &mut self.unvalidated {
            let len = out.len() + gather.iter().map(Bytes::len).sum::<usize>();
            u.sent = u.sent.saturating_add(len as u64);
        }
        if matches!(pkt.body, Body::Retry { .. }) {
            self.retry_sent = Some(now);
        }
        self.stats.datagrams_sent += 1;
        self.last_send = now;
        // Every datagram carries the current ack.
        self.ack_needed = false;
        self.ack_now = false;
        self.unacked_eliciting = 0;
        self.timers.stop(Timer::Ack);
        if self.side == Side::Client && matches!(self.state, State::Established) {
            self.timers
                .set(Timer::Keepalive, now + self.cfg.keepalive_interval);
        }
        true
    }

    /// Chooses what the next datagram carries, updating send state as if it were sent.
    fn next_body(
        &mut self,
        now: Instant,
        events: &mut VecDeque<Event>,
        room: Option<Room>,
    ) -> Option<Next> {
        let next = self.choose_body(now, events, room);
        if next.is_none() && room.is_some() && self.has_output() {
            self.stats.amplification_blocked += 1;
        }
        next
    }

    /// Whether something waits to be sent (for counting what the amplification limit
    /// holds back).
    fn has_output(&self) -> bool {
        matches!(
            self.state,
            State::Closed {
                close_pending: Some(_),
                ..
            }
        ) || self.accept_pending
            || self.retry_pending.is_some()
            || self.sent.has_lost()
            || (!self.outgoing.is_empty()
                && self
                    .sent
                    .can_send(self.effective_window(), self.peer_recv_window))
            || self.ping_pending
            || (self.ack_needed && self.ack_now)
    }

    fn choose_body(
        &mut self,
        now: Instant,
        events: &mut VecDeque<Event>,
        room: Option<Room>,
    ) -> Option<Next> {
        if let Some(decided) = self.control_before_data(now, room) {
            return decided.map(Next::Control);
        }
        let fits = |len: usize| Room::fits(room, len, false);
        if self.sent.has_lost() {
            return self.next_retransmission(now, room).map(Next::Data);
        }
        if let Some(data) = self.next_fragment(now, events, room) {
            return Some(Next::Data(data));
        }
        if !self.outgoing.is_empty()
            && room.is_some()
            && self
                .sent
                .can_send(self.effective_window(), self.peer_recv_window)
        {
            // Held back by the amplification limit: nothing smaller jumps the queue but
            // an ack.
            return (self.ack_needed && self.ack_now && fits(0))
                .then_some(Next::Control(Body::Ack));
        }
        if self.ping_pending {
            if !fits(0) {
                return None;
            }
            self.ping_pending = false;
            return Some(Next::Control(Body::Ping));
        }
        if self.ack_needed && self.ack_now && fits(0) {
            return Some(Next::Control(Body::Ack));
        }
        None
    }

    /// The control datagrams that go before any Data: `Some(decision)` when one is due
    /// (or when this state sends nothing else), `None` to go on to Data.
    fn control_before_data(&mut self, now: Instant, room: Option<Room>) -> Option<Option<Body>> {
        let fits = |len: usize| Room::fits(room, len, false);
        if let State::Closed { close_pending, .. } = &mut self.state {
            let code = close_pending.take();
            // An unproven peer that has had its share gets no Close.
            return Some(
                code.filter(|_| fits(4))
                    .map(|reason| Body::Close { reason }),
            );
        }
        if let State::Handshaking {
            first_sent,
            transmissions,
            cookie,
            init_pending,
        } = &mut self.state
        {
            if !*init_pending {
                return Some(None);
            }
            *init_pending = false;
            first_sent.get_or_insert(now);
            *transmissions += 1;
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
            let cookie = *cookie;
            return Some(Some(self.init_body(cookie)));
        }
        if let Some(cookie) = self.revalidate.take() {
            // Established client: the server wants our address proven (9.3, under load).
            return Some(Some(self.init_body(Some(cookie))));
        }
        if self.accept_pending {
            if !fits(24) {
                return Some(None);
            }
            self.accept_pending = false;
            if let Some(welcome) = self.sealing.as_ref().and_then(|s| s.welcome.clone()) {
                return Some(Some(Body::Welcome { handshake: welcome }));
            }
            return Some(Some(Body::Accept {
                client_incarnation: self.peer_incarnation.unwrap_or(0),
                server_incarnation: self.local_incarnation,
                recv_window: self.cfg.recv_window,
                max_datagram: self.cfg.max_datagram as u32,
            }));
        }
        if let Some(cookie) = self.retry_pending {
            if !fits(COOKIE_LEN) {
                return Some(None);
            }
            self.retry_pending = None;
            return Some(Some(Body::Retry { cookie }));
        }
        None
    }

    /// The Init this client sends: a Hello when the connection is sealed.
    fn init_body(&self, cookie: Option<Cookie>) -> Body {
        match self.sealing.as_ref().and_then(|s| s.hello.clone()) {
            Some(handshake) => Body::Hello {
                client_incarnation: self.local_incarnation,
                recv_window: self.cfg.recv_window,
                max_datagram: self.cfg.max_datagram as u32,
                handshake,
                cookie,
            },
            None => Body::Init {
                client_incarnation: self.local_incarnation,
                recv_window: self.cfg.recv_window,
                max_datagram: self.cfg.max_datagram as u32,
                cookie,
            },
        }
    }

    fn next_retransmission(&mut self, now: Instant, room: Option<Room>) -> Option<DataOut> {
        let (_, s) = self.sent.peek_lost()?;
        if !Room::fits(room, packet::DATA_HEADER_LEN + s.payload.len(), true) {
            return None;
        }
        let (seq, s) = self.sent.retransmit_next(now)?;
        let data = DataOut {
            seq,
            frag_index: s.frag_index,
            frag_count: s.frag_count,
            msg_len: s.msg_len,
            payload: s.payload.clone(),
        };
        self.stats.retransmits += 1;
        if self.timers.get(Timer::Retransmit).is_none() {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        Some(data)
    }

    fn next_fragment(
        &mut self,
        now: Instant,
        events: &mut VecDeque<Event>,
        room: Option<Room>,
    ) -> Option<DataOut> {
        if !self
            .sent
            .can_send(self.effective_window(), self.peer_recv_window)
        {
            return None;
        }
        let max_payload = self.fragment_payload;
        let out = self.outgoing.front_mut()?;
        let msg_len = out.msg.len() as u32;
        if out.frag_count == 0 {
            out.frag_count = packet::fragment_count(msg_len, max_payload);
        }
        let seq = self.sent.next_seq();
        let msg_id = *out.msg_id.get_or_insert(seq);
        let frag_index = out.next_index;
        let frag_count = out.frag_count;
        let range = packet::fragment_range(msg_len, frag_count, frag_index);
        if !Room::fits(room, packet::DATA_HEADER_LEN + range.len(), true) {
            if frag_index == 0 {
                // Nothing of the message went out: it may start later with another id.
                out.msg_id = None;
            }
            return None;
        }
        debug_assert_eq!(seq - msg_id, frag_index as u64);
        let payload = out.msg.slice(range);
        out.next_index += 1;
        if out.next_index == frag_count {
            self.outgoing.pop_front();
        }
        self.backlog = self.backlog.saturating_sub(payload.len());
        if self.sent.in_flight() == 0 {
            self.progress = Some(now);
        }
        let pushed = self.sent.push(Sent::new(
            frag_index,
            frag_count,
            msg_len,
            payload.clone(),
            now,
        ));
        debug_assert_eq!(pushed, seq);
        self.first_data_sent.get_or_insert(now);
        if self.timers.get(Timer::Retransmit).is_none() {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        self.timers.set(Timer::PeerTimeout, self.peer_deadline());
        if self.blocked && self.backlog < self.cfg.send_buffer {
            self.blocked = false;
            events.push_back(Event::Writable);
        }
        Some(DataOut {
            seq,
            frag_index,
            frag_count,
            msg_len,
            payload,
        })
    }
}
