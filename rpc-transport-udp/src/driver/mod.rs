//! The tokio driver: a thin loop around the sans-IO [`crate::proto`] core.
//!
//! One socket, one [`Endpoint`], one driver task. All protocol logic stays in the core;
//! the driver moves datagrams between the socket and the endpoint, keeps the endpoint's
//! timer, and connects the endpoint's events to the runtime's [`Connection`]s.
//!
//! ```text
//!  caller's task (FrameSender)            driver task (one per socket)
//!  ──────────────────────────             ─────────────────────────────────────────
//!  try_send: lock, endpoint.send,         socket readable → try_recv_from × batch
//!            poll_transmit → sendto         → lock, handle_datagram, flush, events
//!  (no hand-off on the send path)         timer (endpoint.poll_timeout) → handle_timeout
//!                                         Notify (timer moved earlier, queue, exit)
//!  runtime's task (FrameReceiver)         socket writable (only while pending_out)
//!  ──────────────────────────
//!  recv: lock, endpoint.poll_message (the core's bounded per-connection queue), or
//!        park its waker until Event::Readable; parse + CRC check outside the lock
//! ```
//!
//! State shared between them lives in one `std::sync::Mutex` (never held across an
//! `.await`): the endpoint, per-connection driver state, a reusable datagram buffer, a
//! bounded queue of datagrams that met a full socket buffer, and the deadline the driver
//! task has armed (a sender only wakes the driver when it moved that deadline earlier).

mod channel;
mod config;
mod conn;
mod listener;
mod metrics;
mod stats;

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::transport::{Connection, FrameSender};
use rpc_core::TransportError;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, trace, Instrument};

use crate::proto::{close_code, CloseReason, ConnectionHandle, Endpoint, Event, HandleMap};

pub use channel::{UdpAddr, UdpChannel};
pub use config::UdpConfig;
pub use conn::UdpFrameReceiver;
pub use listener::UdpListener;
pub use stats::{UdpStats, UdpStatsHandle};

use conn::{ConnShared, ConnSink};
use stats::Registry;

/// Largest UDP payload (IPv4: 65,535 − 8 − 20); the receive buffer holds one.
const MAX_UDP_PAYLOAD: usize = 65_536;

/// What the connect oneshot of a client connection carries.
type ConnectResult = Result<(), Arc<io::Error>>;

/// Everything of one socket that the caller's tasks and the driver task share.
pub(crate) struct Shared {
    state: Mutex<State>,
    socket: UdpSocket,
    /// Wakes the driver task: its deadline moved earlier, `pending_out` filled, or it may
    /// have nothing left to drive.
    notify: Notify,
    local_addr: SocketAddr,
    registry: Arc<Registry>,
}

/// Driver-level counters (the endpoint keeps the protocol's).
#[derive(Debug, Clone, Copy, Default)]
struct DriverCounters {
    send_errors: u64,
    recv_errors: u64,
    pending_out_drops: u64,
    datagrams_gathered: u64,
    accept_overflow: u64,
    bad_frames: u64,
}

/// Per-connection driver state. Received messages stay in the protocol core's bounded
/// queue ([`Endpoint::poll_message`]) until the receiver takes them.
struct ConnState {
    shared: Arc<ConnShared>,
    /// The receiver waiting for a message.
    reader: Option<Waker>,
    /// Senders waiting for room in the send backlog.
    writers: Vec<Waker>,
    /// Client: completes when the handshake does.
    connect: Option<oneshot::Sender<ConnectResult>>,
    /// Overrides the error the close reason maps to (e.g. ICMP port unreachable).
    fail: Option<Arc<io::Error>>,
}

struct State {
    endpoint: Endpoint,
    conns: HandleMap<ConnectionHandle, ConnState>,
    /// Reusable list of payload chunks gathered after `buf` (see `send_gather`).
    gather: Vec<Bytes>,
    /// Reusable buffer for `poll_transmit`.
    buf: Vec<u8>,
    /// Datagrams that met `EWOULDBLOCK`, sent when the socket is writable again.
    pending_out: VecDeque<(SocketAddr, Vec<u8>)>,
    max_pending_out: usize,
    /// The deadline the driver task sleeps until.
    armed: Option<Instant>,
    /// A client socket is connected to its one peer: sends skip the address, and an ICMP
    /// port unreachable comes back as `ECONNREFUSED`.
    peer: Option<SocketAddr>,
    /// An `ECONNREFUSED` was seen on the connected socket.
    refused: bool,
    /// Server: where accepted connections go; `None` once the listener is gone.
    accept_tx: Option<mpsc::Sender<Connection<UdpFrameReceiver>>>,
    /// Wakers to wake once the lock is released.
    wake: Vec<Waker>,
    max_payload: u32,
    recv_batch: usize,
    /// [`UdpConfig::busy_poll`].
    busy_poll: Option<Duration>,
    counters: DriverCounters,
    /// The counters' metric handles.
    published: metrics::Published,
}

impl Shared {
    fn new(
        socket: UdpSocket,
        endpoint: Endpoint,
        config: &UdpConfig,
        peer: Option<SocketAddr>,
        accept_tx: Option<mpsc::Sender<Connection<UdpFrameReceiver>>>,
        registry: Arc<Registry>,
    ) -> io::Result<Arc<Shared>> {
        let local_addr = socket.local_addr()?;
        let state = State {
            endpoint,
            conns: HandleMap::default(),
            buf: Vec::with_capacity(config.protocol.max_datagram),
            gather: Vec::new(),
            pending_out: VecDeque::new(),
            max_pending_out: config.max_pending_out,
            armed: None,
            peer,
            refused: false,
            accept_tx,
            wake: Vec::new(),
            max_payload: config.effective_max_payload(),
            recv_batch: config.recv_batch.max(1),
            busy_poll: config.busy_poll,
            counters: DriverCounters::default(),
            published: metrics::Published::new(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            socket,
            notify: Notify::new(),
            local_addr,
            registry,
        });
        shared.registry.register(&shared);
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs [`State::process`] and does what it asks once the lock is released.
    fn process_and_release(self: &Arc<Self>, mut st: MutexGuard<'_, State>) {
        let now = Instant::now();
        let notify = st.process(self, now);
        if st.published.due(now) {
            let counters = st.counters_snapshot();
            st.published.publish(&counters);
        }
        let wake = std::mem::take(&mut st.wake);
        drop(st);
        self.after_unlock(notify, wake);
    }

    fn after_unlock(&self, notify: bool, wake: Vec<Waker>) {
        for w in wake {
            w.wake();
        }
        if notify {
            self.notify.notify_one();
        }
    }

    /// Counters of this socket's endpoint and driver, and the RTT of its connections.
    fn snapshot(&self) -> UdpStats {
        let st = self.lock();
        let mut s = st.counters_snapshot();
        for h in st.conns.keys() {
            if let (Some(peer), Some(c)) =
                (st.endpoint.peer_addr(*h), st.endpoint.connection_stats(*h))
            {
                s.connections.push((peer, c.srtt_us, c.rto_us));
            }
        }
        s
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The counters of a socket that is gone still count in its handle's totals.
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let counters = st.counters_snapshot();
        st.published.publish(&counters);
        self.registry.retire(&counters);
    }
}

impl State {
    fn counters_snapshot(&self) -> UdpStats {
        let e = self.endpoint.stats();
        let d = self.counters;
        UdpStats {
            sockets: 1,
            datagrams_sent: e.datagrams_sent,
            datagrams_received: e.datagrams_received,
            retransmits: e.retransmits,
            duplicates: e.duplicates,
            checksum_failures: e.checksum_failures,
            malformed: e.malformed,
            unknown_connection: e.unknown_connection,
            beyond_window: e.beyond_window,
            over_budget: e.over_budget,
            rto_timeouts: e.rto_timeouts,
            connections_opened: e.connections_opened,
            connections_accepted: e.connections_accepted,
            connections_refused: e.connections_refused,
            connections_closed: e.connections_closed,
            send_errors: d.send_errors,
            recv_errors: d.recv_errors,
            pending_out_drops: d.pending_out_drops,
            datagrams_gathered: d.datagrams_gathered,
            accept_overflow: d.accept_overflow,
            bad_frames: d.bad_frames,
            retries_sent: e.retries_sent,
            cookies_expired: e.cookies_expired,
            cookies_invalid: e.cookies_invalid,
            replays_refused: e.replays_refused,
            bad_parameters: e.bad_parameters,
            refused_per_ip: e.refused_per_ip,
            accepted_unvalidated: e.accepted_unvalidated,
            amplification_blocked: e.amplification_blocked,
            never_acked_closes: e.never_acked_closes,
            no_progress_closes: e.no_progress_closes,
            reassembly_evictions: e.reassembly_evictions,
            handshakes_completed: e.handshakes_completed,
            handshakes_failed: e.handshakes_failed,
            handshakes_refused: e.handshakes_refused,
            security_mismatch: e.security_mismatch,
            unsealed_dropped: e.unsealed_dropped,
            replays_dropped: e.replays_dropped,
            forged_dropped: e.forged_dropped,
            connections: Vec::new(),
        }
    }

    /// The driver task has nothing left to do: no connection, no listener, nothing
    /// queued.
    fn finished(&self) -> bool {
        self.accept_tx.is_none()
            && self.endpoint.connection_count() == 0
            && self.pending_out.is_empty()
    }

    /// Sends what the endpoint has to send, then handles its events, until neither has
    /// anything left. Returns whether the driver task must look again (its deadline moved
    /// earlier, datagrams wait for writability, or it may be finished).
    fn process(&mut self, shared: &Arc<Shared>, now: Instant) -> bool {
        let pending_before = !self.pending_out.is_empty();
        loop {
            self.flush(&shared.socket, now);
            if self.refused {
                self.refused = false;
                self.fail_all_refused();
                continue;
            }
            if !self.dispatch_events(shared) {
                break;
            }
        }
        let deadline = self.endpoint.poll_timeout();
        let earlier = match (deadline, self.armed) {
            (Some(d), Some(a)) => d < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            self.armed = deadline;
        }
        earlier || (!pending_before && !self.pending_out.is_empty()) || self.finished()
    }

    fn send_one(
        socket: &UdpSocket,
        peer: Option<SocketAddr>,
        buf: &[u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        if peer == Some(to) {
            socket.try_send(buf)
        } else {
            socket.try_send_to(buf, to)
        }
    }

    /// Sends the datagram `head` followed by `gather` with one `sendmsg` (no copy of
    /// the gathered payload); a plain send when there is nothing to gather.
    fn send_gather(
        socket: &UdpSocket,
        peer: Option<SocketAddr>,
        head: &[u8],
        gather: &[Bytes],
        to: SocketAddr,
    ) -> io::Result<usize> {
        if gather.is_empty() {
            return Self::send_one(socket, peer, head, to);
        }
        let mut iov: Vec<io::IoSlice<'_>> = Vec::with_capacity(1 + gather.len());
        iov.push(io::IoSlice::new(head));
        iov.extend(gather.iter().map(|c| io::IoSlice::new(c)));
        socket.try_io(tokio::io::Interest::WRITABLE, || {
            let sock = SockRef::from(socket);
            if peer == Some(to) {
                sock.send_vectored(&iov)
            } else {
                sock.send_to_vectored(&iov, &to.into())
            }
        })
    }

    fn send_failed(&mut self, e: &io::Error, to: SocketAddr) {
        if e.kind() == io::ErrorKind::ConnectionRefused && self.peer.is_some() {
            self.refused = true;
        } else {
            self.counters.send_errors += 1;
            debug!(%to, error = %e, "sendto failed; the protocol will retransmit");
        }
    }

    /// Keeps a datagram (`head` then `gather`) that met a full socket buffer.
    fn queue_pending(&mut self, to: SocketAddr, head: &[u8], gather: &[Bytes]) {
        if self.pending_out.len() >= self.max_pending_out {
            self.counters.pending_out_drops += 1;
        } else {
            let mut datagram = head.to_vec();
            for chunk in gather {
                datagram.extend_from_slice(chunk);
            }
            self.pending_out.push_back((to, datagram));
        }
    }

    /// Writes every datagram the endpoint has to send (queued ones first).
    fn flush(&mut self, socket: &UdpSocket, now: Instant) {
        let mut blocked = false;
        while let Some((to, datagram)) = self.pending_out.front() {
            match Self::send_one(socket, self.peer, datagram, *to) {
                Ok(_) => {
                    self.pending_out.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) => {
                    let to = *to;
                    self.pending_out.pop_front();
                    self.send_failed(&e, to);
                }
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut gather = std::mem::take(&mut self.gather);
        while let Some(to) = self
            .endpoint
            .poll_transmit_gather(now, &mut buf, &mut gather)
        {
            if blocked {
                self.queue_pending(to, &buf, &gather);
                continue;
            }
            match Self::send_gather(socket, self.peer, &buf, &gather, to) {
                Ok(_) => {
                    if !gather.is_empty() {
                        self.counters.datagrams_gathered += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    self.queue_pending(to, &buf, &gather);
                }
                Err(e) => self.send_failed(&e, to),
            }
        }
        // Drop the references now: they keep callers' buffers alive.
        gather.clear();
        self.buf = buf;
        self.gather = gather;
    }

    /// The connected peer's port is closed (ICMP port unreachable): fail its connections
    /// now instead of retransmitting into the void until `peer_timeout`.
    fn fail_all_refused(&mut self) {
        let handles: Vec<ConnectionHandle> = self.conns.keys().copied().collect();
        for h in handles {
            if let Some(cs) = self.conns.get_mut(&h) {
                cs.fail.get_or_insert_with(|| {
                    Arc::new(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "nothing listens on the peer's port (ICMP port unreachable)",
                    ))
                });
            }
            // Nobody listens there: no Close to send.
            self.endpoint.abort(h, CloseReason::Unreachable);
        }
    }

    /// Handles every queued event; returns whether it closed a connection (so there is
    /// something more to send).
    fn dispatch_events(&mut self, shared: &Arc<Shared>) -> bool {
        let mut closed_any = false;
        while let Some((h, event)) = self.endpoint.poll_event() {
            match event {
                Event::Readable => {
                    if let Some(w) = self.conns.get_mut(&h).and_then(|cs| cs.reader.take()) {
                        self.wake.push(w);
                    }
                }
                Event::Writable => {
                    if let Some(cs) = self.conns.get_mut(&h) {
                        self.wake.append(&mut cs.writers);
                    }
                }
                Event::Connected { server_incarnation } => {
                    trace!(?h, server_incarnation, "connected");
                    if let Some(tx) = self.conns.get_mut(&h).and_then(|cs| cs.connect.take()) {
                        let _ = tx.send(Ok(()));
                    }
                }
                Event::Accepted { peer, .. } => {
                    if !self.accept(shared, h, peer) {
                        closed_any = true;
                    }
                }
                Event::Closed(reason) => self.on_closed(h, reason),
            }
        }
        closed_any
    }

    /// Hands a new connection to the listener; closes it if there is no room (or no
    /// listener). Returns whether it was handed over.
    fn accept(&mut self, shared: &Arc<Shared>, h: ConnectionHandle, peer: SocketAddr) -> bool {
        if self.accept_tx.is_none() {
            self.endpoint.close(h);
            self.endpoint.discard_messages(h);
            return false;
        }
        let (connection, cs) = new_connection(shared, self, h, peer, None);
        let conn_shared = cs.shared.clone();
        self.conns.insert(h, cs);
        let sent = match &self.accept_tx {
            Some(tx) => tx.try_send(connection),
            None => Err(mpsc::error::TrySendError::Closed(connection)),
        };
        match sent {
            Ok(()) => {
                debug!(local = %shared.local_addr, %peer, "accepted");
                true
            }
            Err(e) => {
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    self.counters.accept_overflow += 1;
                    debug!(%peer, "accept backlog full; closing the new connection");
                }
                // Marked closed first, so dropping its sink here (under the lock) does
                // not try to close it again.
                conn_shared.mark_closed(TransportError::Closed);
                drop(e);
                self.endpoint.close(h);
                // Nobody will read it.
                self.endpoint.discard_messages(h);
                false
            }
        }
    }

    fn on_closed(&mut self, h: ConnectionHandle, reason: CloseReason) {
        let Some(mut cs) = self.conns.remove(&h) else {
            return;
        };
        let cause = cs.fail.take().or_else(|| close_cause(reason));
        debug!(?h, ?reason, "connection closed");
        let err = cause
            .clone()
            .map_or(TransportError::Closed, TransportError::Io);
        cs.shared.mark_closed(err.clone());
        if let Some(tx) = cs.connect.take() {
            let _ = tx.send(Err(cause.unwrap_or_else(|| connect_cause(reason))));
        } else if cause.is_some() {
            // The receiver returns it once, after the messages still queued.
            cs.shared.report_once(err);
        }
        self.wake.append(&mut cs.writers);
        self.wake.extend(cs.reader.take());
    }
}

/// The error a close reason means for an established connection; `None` for a clean
/// close (this side closed it, or the peer closed it normally).
fn close_cause(reason: CloseReason) -> Option<Arc<io::Error>> {
    use io::ErrorKind::{
        ConnectionAborted, ConnectionRefused, ConnectionReset, PermissionDenied, TimedOut,
    };
    let (kind, msg): (io::ErrorKind, &str) = match reason {
        CloseReason::Local => return None,
        CloseReason::PeerClosed { code } => match code {
            close_code::NORMAL => return None,
            close_code::IDLE => (
                TimedOut,
                "peer closed the connection: it heard nothing from us",
            ),
            close_code::REASSEMBLY_TIMEOUT => (
                ConnectionAborted,
                "peer closed the connection: a message could not be completed",
            ),
            close_code::PROTOCOL_ERROR => (
                ConnectionAborted,
                "peer closed the connection: it says we broke the protocol",
            ),
            close_code::REFUSED => (ConnectionRefused, "peer refused the connection"),
            close_code::BAD_PARAMETERS => (
                ConnectionRefused,
                "peer refused the handshake's parameters (datagram size or window)",
            ),
            close_code::SECURITY => (
                PermissionDenied,
                "peer refused the secure handshake: it requires sealing we do not offer \
                 (or offers none), or our key or pre-shared key is not the one it knows",
            ),
            _ => (
                ConnectionReset,
                "peer closed the connection with an unknown reason",
            ),
        },
        CloseReason::Unreachable => (
            TimedOut,
            "peer unreachable: no answer within peer_timeout or after max_retransmits",
        ),
        CloseReason::Idle => (TimedOut, "nothing heard from the peer for idle_timeout"),
        CloseReason::Reset => (
            ConnectionReset,
            "peer reset the connection (it no longer knows it)",
        ),
        CloseReason::PeerRestarted => (ConnectionReset, "peer restarted"),
        CloseReason::ReassemblyTimeout => (
            ConnectionAborted,
            "an incomplete message timed out; the connection cannot continue",
        ),
        CloseReason::ProtocolError => (ConnectionAborted, "peer broke the protocol"),
        CloseReason::Refused => (ConnectionRefused, "connection refused (connection limit)"),
        CloseReason::HandshakeFailed => (
            PermissionDenied,
            "secure handshake failed: the server's answer did not authenticate \
             (the wrong server key or pre-shared key), or no client key is configured",
        ),
    };
    Some(Arc::new(io::Error::new(kind, msg)))
}

/// The error a close reason means while the handshake is pending.
fn connect_cause(reason: CloseReason) -> Arc<io::Error> {
    let (kind, msg) = match reason {
        CloseReason::PeerClosed {
            code: close_code::SECURITY,
        }
        | CloseReason::HandshakeFailed => {
            return close_cause(reason).unwrap_or_else(|| Arc::new(io::Error::other("closed")))
        }
        CloseReason::Unreachable => (io::ErrorKind::TimedOut, "no answer to the handshake"),
        CloseReason::Reset | CloseReason::Refused | CloseReason::PeerClosed { .. } => (
            io::ErrorKind::ConnectionRefused,
            "the peer refused the connection",
        ),
        CloseReason::Local => (io::ErrorKind::ConnectionAborted, "connect abandoned"),
        _ => return close_cause(reason).unwrap_or_else(|| Arc::new(io::Error::other("closed"))),
    };
    Arc::new(io::Error::new(kind, msg))
}

/// A connection's sender, receiver and driver state.
fn new_connection(
    shared: &Arc<Shared>,
    st: &State,
    h: ConnectionHandle,
    peer: SocketAddr,
    connect: Option<oneshot::Sender<ConnectResult>>,
) -> (Connection<UdpFrameReceiver>, ConnState) {
    let conn_shared = Arc::new(ConnShared::default());
    let sink = ConnSink::new(shared.clone(), h, conn_shared.clone());
    let receiver = UdpFrameReceiver::new(shared.clone(), h, conn_shared.clone(), st.max_payload);
    let state = ConnState {
        shared: conn_shared,
        reader: None,
        writers: Vec::new(),
        connect,
        fail: None,
    };
    (
        Connection {
            sender: FrameSender::from_sink(sink),
            receiver,
            peer_addr: peer,
            principal: st.endpoint.principal(h).cloned(),
        },
        state,
    )
}

/// A nonblocking UDP socket with the configured buffer sizes, bound to `local` and, for
/// a client, connected to `peer`.
fn bind_socket(
    local: SocketAddr,
    peer: Option<SocketAddr>,
    config: &UdpConfig,
) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    config.apply_buffer_sizes(SockRef::from(&socket));
    socket.bind(&local.into())?;
    if let Some(peer) = peer {
        socket.connect(&peer.into())?;
    }
    UdpSocket::from_std(socket.into())
}

/// Where a client socket for `peer` binds: the loopback address for a loopback peer,
/// the unspecified address of its family otherwise; any port.
fn client_bind_addr(peer: SocketAddr) -> SocketAddr {
    let ip = match peer.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// A random 64-bit number (an incarnation): std's per-process random hash keys, a
/// counter, the process id and the time.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// Reads up to `recv_batch` datagrams without waiting and hands them to the endpoint;
/// returns how many were read.
fn receive_now(
    shared: &Arc<Shared>,
    rx_buf: &mut [u8],
    batch: &mut Vec<(SocketAddr, Bytes)>,
    recv_batch: usize,
) -> usize {
    let mut refused = false;
    let mut errors = 0;
    for _ in 0..recv_batch {
        match shared.socket.try_recv_from(rx_buf) {
            // Exactly sized: reassembly accounts for each datagram's memory.
            Ok((n, from)) => batch.push((from, Bytes::copy_from_slice(&rx_buf[..n]))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => refused = true,
            Err(e) => {
                errors += 1;
                debug!(error = %e, "recv failed");
            }
        }
    }
    if batch.is_empty() && errors == 0 && !refused {
        return 0;
    }
    let received = batch.len();
    let mut st = shared.lock();
    st.counters.recv_errors += errors;
    st.refused |= refused && st.peer.is_some();
    let now = Instant::now();
    st.endpoint.handle_datagrams(now, batch);
    shared.process_and_release(st);
    received
}

/// Takes the socket's pending error (`SO_ERROR`). On a connected socket a refusal
/// (ICMP port unreachable) fails the socket's connections at once, as a refused `recv`
/// does; when no error is pending the stale error readiness is cleared.
fn take_socket_error(shared: &Arc<Shared>) {
    match shared.socket.take_error() {
        Ok(Some(e)) => {
            let mut st = shared.lock();
            if e.kind() == io::ErrorKind::ConnectionRefused {
                st.refused |= st.peer.is_some();
            } else {
                st.counters.recv_errors += 1;
                debug!(error = %e, "socket error");
            }
            shared.process_and_release(st);
        }
        Ok(None) => {
            let _ = shared.socket.try_io(Interest::ERROR, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
        Err(e) => debug!(error = %e, "reading the socket's pending error failed"),
    }
}

/// Spawns the driver task of a socket on the current tokio runtime.
fn spawn_driver(shared: Arc<Shared>) {
    // Its own root span: the driver outlives the call that opened the socket.
    let span = tracing::debug_span!(parent: None, "udp_driver", local = %shared.local_addr);
    tokio::spawn(drive(shared).instrument(span));
}

enum Wake {
    Ready(io::Result<tokio::io::Ready>),
    Timer,
    Notified,
    Writable,
}

/// The driver task: reads datagrams, fires the endpoint's timer, flushes queued
/// datagrams; ends when the socket has no connection and no listener left.
async fn drive(shared: Arc<Shared>) {
    let mut rx_buf = vec![0u8; MAX_UDP_PAYLOAD].into_boxed_slice();
    let mut batch: Vec<(SocketAddr, Bytes)> = Vec::new();
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    // The deadline `sleep` is set to, if it has not fired yet.
    let mut sleeping_until: Option<Instant> = None;
    debug!(local = %shared.local_addr, "driver started");
    'driver: loop {
        let (deadline, pending_out, recv_batch, busy_poll) = {
            let mut st = shared.lock();
            if st.finished() {
                break;
            }
            st.armed = st.endpoint.poll_timeout();
            (
                st.armed,
                !st.pending_out.is_empty(),
                st.recv_batch,
                st.busy_poll,
            )
        };
        if let Some(budget) = busy_poll {
            // Spin: try the socket, then let the runtime run what is ready (the tasks our
            // last datagrams woke, the I/O driver), until something arrives or the budget
            // is spent. A due timer waits at most `budget`.
            let start = Instant::now();
            while deadline.is_none_or(|d| start < d) {
                if receive_now(&shared, &mut rx_buf, &mut batch, recv_batch) > 0 {
                    continue 'driver;
                }
                if start.elapsed() >= budget {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        if let Some(d) = deadline {
            if sleeping_until != Some(d) {
                sleep.as_mut().reset(d.into());
                sleeping_until = Some(d);
            }
        }
        let wake = tokio::select! {
            biased;
            // Error readiness too: an ICMP port unreachable on a connected socket shows
            // only as a pending socket error, which a wait for readability never sees.
            r = shared.socket.ready(Interest::READABLE | Interest::ERROR) => Wake::Ready(r),
            () = &mut sleep, if deadline.is_some() => Wake::Timer,
            () = shared.notify.notified() => Wake::Notified,
            r = shared.socket.writable(), if pending_out => {
                if let Err(e) = r {
                    debug!(error = %e, "waiting for writability failed");
                }
                Wake::Writable
            }
        };
        match wake {
            Wake::Ready(Ok(ready)) => {
                if ready.is_error() {
                    take_socket_error(&shared);
                }
                if ready.is_readable() {
                    receive_now(&shared, &mut rx_buf, &mut batch, recv_batch);
                }
            }
            Wake::Ready(Err(e)) => {
                debug!(error = %e, "waiting for readability failed");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Wake::Timer => {
                sleeping_until = None;
                let mut st = shared.lock();
                st.endpoint.handle_timeout(Instant::now());
                shared.process_and_release(st);
            }
            Wake::Notified | Wake::Writable => {
                let st = shared.lock();
                shared.process_and_release(st);
            }
        }
    }
    debug!(local = %shared.local_addr, "driver finished");
}
