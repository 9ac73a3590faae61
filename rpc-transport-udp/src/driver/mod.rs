//! The tokio driver: a thin loop around the sans-IO [`crate::proto`] core.
//!
//! One socket, one [`Endpoint`], one driver task. All protocol logic stays in the core;
//! the driver moves datagrams between the socket and the endpoint, keeps the endpoint's
//! timer, and connects the endpoint's events to the runtime's [`Connection`]s.
//!
//! ```text
//!  caller's task (FrameSender)            driver task (one per socket)
//!  ──────────────────────────             ─────────────────────────────────────────
//!  try_send: lock, endpoint.send,         socket readable → recvmmsg (RECV_SLOTS
//!            flush (below)                  buffers; GRO buffers split per datagram)
//!  (no hand-off on the send path)           until recv_batch → lock, handle_datagrams,
//!                                           flush, events
//!  runtime's task (FrameReceiver)         timer (endpoint.poll_timeout) → handle_timeout
//!  ──────────────────────────             Notify (timer moved earlier, queue, exit)
//!  recv: lock, endpoint.poll_message      socket writable (only while pending_out)
//!        (the core's bounded queue), or
//!        park until Event::Readable;      flush: poll_transmit_gather → datagram
//!        parse + CRC outside the lock       whole in buf → GSO run (same peer, same
//!                                             length, ≤ 64 datagrams, ≤ 64 KiB)
//!                                             → one sendmsg with UDP_SEGMENT
//!                                           buf + gathered chunks → sendmsg (iovecs),
//!                                             after the run before it
//!                                           WouldBlock → pending_out (bounded)
//! ```
//!
//! Batched I/O goes through `quinn-udp`'s `UdpSocketState`, made once per socket: it
//! sets GRO and the packet-info options and forbids IP fragmentation (datagrams larger
//! than the interface's MTU are refused, not fragmented). Without it (its socket options
//! refused) every datagram is its own `recvfrom`/`sendto`. GSO is used only where the
//! kernel offers it and [`UdpConfig::gso`] allows; a refused GSO send is sent again one
//! datagram per call.
//!
//! State shared between them lives in one `std::sync::Mutex` (never held across an
//! `.await`): the endpoint, per-connection driver state, a reusable datagram buffer, the
//! GSO run (at most 64 KiB), a bounded queue of datagrams that met a full socket buffer,
//! and the deadline the driver task has armed (a sender only wakes the driver when it
//! moved that deadline earlier). The driver task alone owns its receive buffers
//! (`RECV_SLOTS` × 64 KiB).

mod channel;
mod config;
mod conn;
mod listener;
mod metrics;
mod stats;

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
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

thread_local! {
    /// A thread's empty list of wakers, traded for the full one of the state it
    /// releases (see [`Shared::process_and_release_at`]).
    static SPARE_WAKERS: Cell<Vec<Waker>> = const { Cell::new(Vec::new()) };
}

/// Largest UDP payload (IPv4: 65,535 − 8 − 20); each receive buffer holds one, or one
/// GRO batch (the kernel coalesces at most 64 KiB).
const MAX_UDP_PAYLOAD: usize = 65_536;

/// Receive buffers handed to one `recvmmsg` (each [`MAX_UDP_PAYLOAD`] bytes: the driver
/// task's receive memory is this × 64 KiB = 512 KiB, touched only as far as datagrams
/// fill it).
const RECV_SLOTS: usize = if quinn_udp::BATCH_SIZE < 8 {
    quinn_udp::BATCH_SIZE
} else {
    8
};

/// Most bytes one GSO send carries (the largest UDP payload: the kernel refuses more).
const MAX_GSO_BYTES: usize = 65_507;

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
    /// Batched I/O on `socket` (`recvmmsg`, GRO, GSO); `None` if the socket options it
    /// needs could not be set, then every datagram is its own `recvfrom`/`sendto`.
    udp: Option<UdpSocketState>,
}

/// Driver-level counters (the endpoint keeps the protocol's).
#[derive(Debug, Clone, Copy, Default)]
struct DriverCounters {
    send_errors: u64,
    recv_errors: u64,
    pending_out_drops: u64,
    datagrams_gathered: u64,
    gso_sends: u64,
    recv_calls: u64,
    gro_batches: u64,
    accept_overflow: u64,
    bad_frames: u64,
}

/// Datagrams to one peer waiting to leave with one GSO send: `count` datagrams of
/// `segment` bytes back to back in `buf` (at most [`MAX_GSO_BYTES`]), the last possibly
/// shorter (which closes the run: the kernel cuts `buf` every `segment` bytes).
#[derive(Debug, Default)]
struct GsoRun {
    to: Option<SocketAddr>,
    buf: Vec<u8>,
    segment: usize,
    count: usize,
    closed: bool,
}

impl GsoRun {
    fn is_empty(&self) -> bool {
        self.to.is_none()
    }

    fn clear(&mut self) {
        self.to = None;
        self.buf.clear();
        self.segment = 0;
        self.count = 0;
        self.closed = false;
    }

    /// Appends `datagram` for `to` if it can join the run, or starts a run with it if
    /// the run is empty; returns whether it did. A datagram longer than half of
    /// [`MAX_GSO_BYTES`] starts none (no second one of its size would fit; it is sent
    /// as it is, without a copy).
    fn push(&mut self, to: SocketAddr, datagram: &[u8], max_segments: usize) -> bool {
        let len = datagram.len();
        match self.to {
            None => {
                if len == 0 || len > MAX_GSO_BYTES / 2 {
                    return false;
                }
                self.to = Some(to);
                self.segment = len;
                self.count = 1;
            }
            Some(run_to) => {
                if run_to != to
                    || self.closed
                    || len == 0
                    || len > self.segment
                    || self.count >= max_segments
                    || self.buf.len() + len > MAX_GSO_BYTES
                {
                    return false;
                }
                self.closed = len < self.segment;
                self.count += 1;
            }
        }
        self.buf.extend_from_slice(datagram);
        true
    }
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
    /// The GSO run being built by `flush`: datagrams of `gso.segment` bytes (the last
    /// may be shorter) back to back, at most [`MAX_GSO_BYTES`].
    gso: GsoRun,
    /// [`UdpConfig::gso`].
    gso_enabled: bool,
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
        // Sets GRO and the packet-info options, and makes the socket refuse datagrams
        // larger than the interface's MTU instead of fragmenting them (IP_PMTUDISC_PROBE,
        // IPV6_DONTFRAG); connected sockets, ICMP errors and IPv6 are unaffected.
        let udp = match UdpSocketState::new(UdpSockRef::from(&socket)) {
            Ok(udp) => {
                // ECN is not used: no TOS / traffic class control message per datagram.
                let sock = SockRef::from(&socket);
                let _ = match local_addr {
                    SocketAddr::V4(_) => sock.set_recv_tos(false),
                    SocketAddr::V6(_) => sock.set_recv_tclass_v6(false),
                };
                debug!(
                    gso_segments = udp.max_gso_segments(),
                    gro_segments = udp.gro_segments(),
                    "batched UDP I/O"
                );
                Some(udp)
            }
            Err(e) => {
                debug!(error = %e, "no batched UDP I/O on this socket; one datagram per call");
                None
            }
        };
        let state = State {
            endpoint,
            conns: HandleMap::default(),
            buf: Vec::with_capacity(config.protocol.max_datagram),
            gather: Vec::new(),
            gso: GsoRun::default(),
            gso_enabled: config.gso,
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
            udp,
        });
        shared.registry.register(&shared);
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs [`State::process`] and does what it asks once the lock is released.
    fn process_and_release(self: &Arc<Self>, st: MutexGuard<'_, State>) {
        self.process_and_release_at(st, Instant::now());
    }

    /// [`Shared::process_and_release`] with the time the caller already read.
    fn process_and_release_at(self: &Arc<Self>, mut st: MutexGuard<'_, State>, now: Instant) {
        let notify = st.process(self, now);
        if st.published.due(now) {
            let counters = st.counters_snapshot();
            st.published.publish(&counters);
        }
        // The wakers leave in this thread's spare list, which the state gets in
        // exchange: neither list allocates once it has grown.
        let mut wake = SPARE_WAKERS.try_with(Cell::take).unwrap_or_default();
        std::mem::swap(&mut wake, &mut st.wake);
        drop(st);
        for w in wake.drain(..) {
            w.wake();
        }
        let _ = SPARE_WAKERS.try_with(|spare| spare.set(wake));
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
            gso_sends: d.gso_sends,
            recv_calls: d.recv_calls,
            gro_batches: d.gro_batches,
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
            self.flush(&shared.socket, shared.udp.as_ref(), now);
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

    /// Writes every datagram the endpoint has to send (queued ones first). Datagrams
    /// copied whole into `buf` join a GSO run when segmentation offload is on (see
    /// [`GsoRun`]); gathered ones leave by `send_gather`, after the run before them.
    fn flush(&mut self, socket: &UdpSocket, udp: Option<&UdpSocketState>, now: Instant) {
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
        // GSO as far as the kernel offers it now (it may have been switched off after a
        // refused GSO send).
        let max_segments = match udp {
            Some(udp) if self.gso_enabled && !blocked => udp.max_gso_segments(),
            _ => 1,
        };
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
            if max_segments > 1 && gather.is_empty() {
                if self.gso.push(to, &buf, max_segments) {
                    continue;
                }
                // It does not fit the run: send the run, start another with it.
                blocked = self.send_run(socket, udp);
                if blocked {
                    self.queue_pending(to, &buf, &gather);
                    continue;
                }
                if self.gso.push(to, &buf, max_segments) {
                    continue;
                }
            } else if !self.gso.is_empty() {
                blocked = self.send_run(socket, udp);
                if blocked {
                    self.queue_pending(to, &buf, &gather);
                    continue;
                }
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
        if !self.gso.is_empty() {
            self.send_run(socket, udp);
        }
        // Drop the references now: they keep callers' buffers alive.
        gather.clear();
        self.buf = buf;
        self.gather = gather;
    }

    /// Sends the GSO run (one system call for all of its datagrams, or a plain send for
    /// a run of one) and empties it. Returns whether the socket's buffer was full: then
    /// the run's datagrams wait in `pending_out`. A GSO send refused for another reason
    /// (a device without segmentation offload: `EIO`, `EINVAL`; `quinn-udp` stops offering
    /// GSO on the socket after those) is sent again datagram by datagram.
    fn send_run(&mut self, socket: &UdpSocket, udp: Option<&UdpSocketState>) -> bool {
        let Some(to) = self.gso.to else {
            return false;
        };
        let run = std::mem::take(&mut self.gso.buf);
        let segment = self.gso.segment.max(1);
        let count = self.gso.count;
        self.gso.clear();
        // Ok(whether a full buffer stopped it, what is left queued already).
        let outcome: io::Result<bool> = match udp {
            Some(udp) if count > 1 => {
                let transmit = Transmit {
                    destination: to,
                    ecn: None,
                    contents: &run,
                    segment_size: Some(segment),
                    src_ip: None,
                };
                let sent = socket.try_io(Interest::WRITABLE, || {
                    udp.try_send(UdpSockRef::from(socket), &transmit)
                });
                match sent {
                    Ok(()) => {
                        self.counters.gso_sends += 1;
                        Ok(false)
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || (e.kind() == io::ErrorKind::ConnectionRefused
                                && self.peer.is_some()) =>
                    {
                        Err(e)
                    }
                    Err(e) => {
                        debug!(%to, error = %e, segments = count, "GSO send refused; sending one by one");
                        Ok(self.send_each(socket, to, &run, segment))
                    }
                }
            }
            _ => Self::send_one(socket, self.peer, &run, to).map(|_| false),
        };
        let blocked = match outcome {
            Ok(blocked) => blocked,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                for datagram in run.chunks(segment) {
                    self.queue_pending(to, datagram, &[]);
                }
                true
            }
            Err(e) => {
                self.send_failed(&e, to);
                false
            }
        };
        // Keep the allocation for the next run.
        self.gso.buf = run;
        self.gso.buf.clear();
        blocked
    }

    /// The run's datagrams one system call each (GSO refused). Returns whether a full
    /// socket buffer stopped it (what is left is queued then); other errors are counted
    /// per datagram.
    fn send_each(
        &mut self,
        socket: &UdpSocket,
        to: SocketAddr,
        run: &[u8],
        segment: usize,
    ) -> bool {
        let mut datagrams = run.chunks(segment);
        while let Some(datagram) = datagrams.next() {
            match Self::send_one(socket, self.peer, datagram, to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.queue_pending(to, datagram, &[]);
                    for rest in datagrams {
                        self.queue_pending(to, rest, &[]);
                    }
                    return true;
                }
                Err(e) => self.send_failed(&e, to),
            }
        }
        false
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

/// The driver task's receive buffers: [`RECV_SLOTS`] buffers of [`MAX_UDP_PAYLOAD`]
/// bytes for one `recvmmsg`, and what the kernel says of each.
struct RxBufs {
    slots: Box<[u8]>,
    meta: [RecvMeta; RECV_SLOTS],
}

impl RxBufs {
    fn new() -> Self {
        RxBufs {
            slots: vec![0u8; RECV_SLOTS * MAX_UDP_PAYLOAD].into_boxed_slice(),
            meta: [RecvMeta::default(); RECV_SLOTS],
        }
    }
}

/// What one receive call did.
#[derive(Default)]
struct Received {
    datagrams: usize,
    calls: u64,
    gro_batches: u64,
    errors: u64,
    refused: bool,
}

impl Received {
    /// Counts a failed receive call; returns whether the socket has nothing left
    /// (`EWOULDBLOCK`: stop reading). A refusal (ICMP port unreachable on a connected
    /// socket) is noted, any other error counted; reading goes on after both.
    fn failed(&mut self, e: &io::Error) -> bool {
        match e.kind() {
            io::ErrorKind::WouldBlock => return true,
            io::ErrorKind::ConnectionRefused => self.refused = true,
            _ => {
                self.errors += 1;
                debug!(error = %e, "recv failed");
            }
        }
        false
    }
}

/// Reads datagrams without waiting into `batch`, up to `recv_batch` (one receive call
/// may go past it by what GRO coalesced into its last buffers) or until the socket has
/// none. Each datagram is copied out to an exactly sized buffer: reassembly accounts
/// for each datagram's memory.
fn read_datagrams(
    shared: &Shared,
    rx: &mut RxBufs,
    batch: &mut Vec<(SocketAddr, Bytes)>,
    recv_batch: usize,
) -> Received {
    let mut r = Received::default();
    let Some(udp) = shared.udp.as_ref() else {
        for _ in 0..recv_batch {
            match shared
                .socket
                .try_recv_from(&mut rx.slots[..MAX_UDP_PAYLOAD])
            {
                Ok((n, from)) => {
                    r.calls += 1;
                    batch.push((from, Bytes::copy_from_slice(&rx.slots[..n])));
                }
                Err(e) => {
                    if r.failed(&e) {
                        break;
                    }
                }
            }
        }
        r.datagrams = batch.len();
        return r;
    };
    // Bounded like the datagrams: every call either returns some or is an error.
    for _ in 0..recv_batch {
        let want = RECV_SLOTS.min(recv_batch.saturating_sub(batch.len()));
        if want == 0 {
            break;
        }
        let mut slots = rx.slots.chunks_mut(MAX_UDP_PAYLOAD);
        let mut bufs: [io::IoSliceMut<'_>; RECV_SLOTS] =
            std::array::from_fn(|_| io::IoSliceMut::new(slots.next().unwrap_or_default()));
        let meta = &mut rx.meta;
        // Fewer buffers filled than offered: `recvmmsg` found the socket empty after
        // them. Telling the runtime so (`WouldBlock` clears the socket's readiness,
        // unless readiness arrived since this call began) saves the call that would
        // only say so.
        let mut drained: Option<usize> = None;
        let got = shared.socket.try_io(Interest::READABLE, || {
            match udp.recv(UdpSockRef::from(&shared.socket), &mut bufs[..want], meta) {
                Ok(n) if n < want => {
                    drained = Some(n);
                    Err(io::Error::from(io::ErrorKind::WouldBlock))
                }
                other => other,
            }
        });
        let got = match (got, drained) {
            (Err(e), Some(n)) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            (other, _) => other,
        };
        match got {
            Ok(n) => {
                r.calls += 1;
                for (buf, meta) in bufs.iter().zip(meta.iter()).take(n) {
                    let data = &buf[..meta.len.min(buf.len())];
                    if data.is_empty() {
                        // An empty datagram: the endpoint counts it as malformed.
                        batch.push((meta.addr, Bytes::new()));
                        continue;
                    }
                    let stride = if meta.stride == 0 {
                        data.len()
                    } else {
                        meta.stride
                    };
                    if data.len() > stride {
                        r.gro_batches += 1;
                    }
                    for datagram in data.chunks(stride) {
                        batch.push((meta.addr, Bytes::copy_from_slice(datagram)));
                    }
                }
                if drained.is_some() {
                    break;
                }
            }
            Err(e) => {
                if r.failed(&e) {
                    break;
                }
            }
        }
    }
    r.datagrams = batch.len();
    r
}

/// Reads up to `recv_batch` datagrams without waiting (see [`read_datagrams`]) and hands
/// them to the endpoint; returns how many were read.
fn receive_now(
    shared: &Arc<Shared>,
    rx: &mut RxBufs,
    batch: &mut Vec<(SocketAddr, Bytes)>,
    recv_batch: usize,
) -> usize {
    let r = read_datagrams(shared, rx, batch, recv_batch);
    if r.datagrams == 0 && r.errors == 0 && !r.refused {
        return 0;
    }
    let mut st = shared.lock();
    st.counters.recv_errors += r.errors;
    st.counters.recv_calls += r.calls;
    st.counters.gro_batches += r.gro_batches;
    st.refused |= r.refused && st.peer.is_some();
    let now = Instant::now();
    st.endpoint.handle_datagrams(now, batch);
    shared.process_and_release_at(st, now);
    r.datagrams
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
    let mut rx = RxBufs::new();
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
                if receive_now(&shared, &mut rx, &mut batch, recv_batch) > 0 {
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
                    receive_now(&shared, &mut rx, &mut batch, recv_batch);
                }
            }
            Wake::Ready(Err(e)) => {
                debug!(error = %e, "waiting for readability failed");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Wake::Timer => {
                sleeping_until = None;
                let mut st = shared.lock();
                let now = Instant::now();
                st.endpoint.handle_timeout(now);
                shared.process_and_release_at(st, now);
            }
            Wake::Notified | Wake::Writable => {
                let st = shared.lock();
                shared.process_and_release(st);
            }
        }
    }
    debug!(local = %shared.local_addr, "driver finished");
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1000);
    const B: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2000);

    #[test]
    fn a_gso_run_takes_equal_datagrams_to_one_peer_and_a_shorter_last() {
        let mut run = GsoRun::default();
        assert!(run.is_empty());
        assert!(run.push(A, &[1; 100], 64));
        assert!(run.push(A, &[2; 100], 64));
        // Another peer, a longer datagram: not in this run.
        assert!(!run.push(B, &[3; 100], 64));
        assert!(!run.push(A, &[3; 101], 64));
        // A shorter one ends the run.
        assert!(run.push(A, &[4; 40], 64));
        assert!(!run.push(A, &[5; 40], 64));
        assert_eq!((run.to, run.segment, run.count), (Some(A), 100, 3));
        assert_eq!(run.buf.len(), 240);
        assert_eq!(&run.buf[200..], &[4; 40][..]);
        run.clear();
        assert!(run.is_empty() && run.buf.is_empty());
        assert!(run.push(B, &[6; 10], 64));
        assert!(run.push(B, &[6; 10], 64));
    }

    #[test]
    fn a_gso_run_is_bounded_in_segments_and_bytes() {
        let mut run = GsoRun::default();
        for _ in 0..3 {
            assert!(run.push(A, &[0; 10], 3));
        }
        assert!(!run.push(A, &[0; 10], 3), "at most max_segments datagrams");

        let mut run = GsoRun::default();
        let big = vec![0u8; 20_000];
        assert!(run.push(A, &big, 64));
        assert!(run.push(A, &big, 64));
        assert!(run.push(A, &big, 64));
        assert!(!run.push(A, &big, 64), "at most MAX_GSO_BYTES");
        assert!(run.buf.len() <= MAX_GSO_BYTES);

        // Too large for two to share a send, and empty datagrams: no run.
        let mut run = GsoRun::default();
        assert!(!run.push(A, &vec![0u8; MAX_GSO_BYTES / 2 + 1], 64));
        assert!(!run.push(A, &[], 64));
        assert!(run.is_empty());
    }
}
