//! ONC RPC (RFC 5531) over plain UDP, one message per datagram: adapters that let the
//! unchanged server and client runtimes talk to rpcgen / libtirpc peers. Separate from
//! the framework's reliable UDP protocol ([`crate::proto`]): nothing here acknowledges,
//! fragments or orders anything.
//!
//! * [`OncUdpListener`] is a [`Listener`] on one socket: each peer address is a
//!   "connection" (at most `max_peers` at once; one silent for `peer_idle` ends), whose
//!   receiver turns datagrams into Call frames and whose sender turns Reply/Status
//!   frames into reply datagrams. Duplicate requests are answered by the server's reply
//!   cache (the calls are exactly-once, keyed by the peer's client id and the xid).
//! * [`OncUdpChannel`] is a [`Channel`]: each call is sent as a datagram and
//!   retransmitted with the same xid, like libtirpc's `clnt_udp`: after
//!   `initial_retransmit` (1 s), then doubling up to `max_retransmit`, until the call's
//!   deadline (or `default_call_time` for a call without one). Duplicate replies are
//!   dropped.
//!
//! What maps to what is [`rpc_core::onc`]'s business; this module only moves datagrams.
//! Malformed datagrams are dropped, never answered.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader};
use rpc_core::onc::{self, ClientAction, ServerInbound};
use rpc_core::transport::{frame_queue, Channel, Connection, FrameOutbox, FrameReceiver, Listener};
use rpc_core::{Status, TransportError};
use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

/// Default number of peers a listener serves at once: 1,024.
pub const DEFAULT_MAX_PEERS: usize = 1024;
/// Default time after which a silent peer's "connection" ends: 60 s.
pub const DEFAULT_PEER_IDLE: Duration = Duration::from_secs(60);
/// Default number of datagrams queued per peer before the runtime takes them: 64
/// (further ones are dropped; the peer retransmits).
pub const DEFAULT_PEER_QUEUE: usize = 64;
/// Default first retransmission interval of a call: 1 s (libtirpc's `clnt_udp` default).
pub const DEFAULT_INITIAL_RETRANSMIT: Duration = Duration::from_secs(1);
/// Default longest retransmission interval: 16 s.
pub const DEFAULT_MAX_RETRANSMIT: Duration = Duration::from_secs(16);
/// Default time a call without a deadline is retransmitted: 25 s (libtirpc's total
/// timeout default).
pub const DEFAULT_CALL_TIME: Duration = Duration::from_secs(25);
/// Default number of calls a channel's connection awaits at once: 4,096.
pub const DEFAULT_MAX_PENDING: usize = 4096;
/// Largest datagram received (the largest UDP payload over IPv4 is 65,507 bytes).
const MAX_DATAGRAM: usize = 65_536;
/// New peers waiting for the server to accept them; beyond it their datagrams are dropped.
const ACCEPT_BACKLOG: usize = 64;
/// Local answers waiting for a client receiver.
const LOCAL_QUEUE: usize = 16;

/// Limits and timers of the ONC UDP adapters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OncUdpConfig {
    /// Listener: peers served at once. Default [`DEFAULT_MAX_PEERS`].
    pub max_peers: usize,
    /// Listener: a peer silent this long is forgotten. Default [`DEFAULT_PEER_IDLE`].
    pub peer_idle: Duration,
    /// Listener: datagrams queued per peer. Default [`DEFAULT_PEER_QUEUE`].
    pub peer_queue: usize,
    /// Outgoing frames a connection queues. Default
    /// [`rpc_core::transport::DEFAULT_SEND_QUEUE`].
    pub send_queue: usize,
    /// Client: first retransmission interval. Default [`DEFAULT_INITIAL_RETRANSMIT`].
    pub initial_retransmit: Duration,
    /// Client: longest retransmission interval. Default [`DEFAULT_MAX_RETRANSMIT`].
    pub max_retransmit: Duration,
    /// Client: how long a call without a deadline is retransmitted. Default
    /// [`DEFAULT_CALL_TIME`].
    pub default_call_time: Duration,
    /// Client: calls awaited at once (more are answered `Overloaded`). Default
    /// [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
}

impl Default for OncUdpConfig {
    fn default() -> Self {
        OncUdpConfig {
            max_peers: DEFAULT_MAX_PEERS,
            peer_idle: DEFAULT_PEER_IDLE,
            peer_queue: DEFAULT_PEER_QUEUE,
            send_queue: rpc_core::transport::DEFAULT_SEND_QUEUE,
            initial_retransmit: DEFAULT_INITIAL_RETRANSMIT,
            max_retransmit: DEFAULT_MAX_RETRANSMIT,
            default_call_time: DEFAULT_CALL_TIME,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------

/// Serves ONC RPC clients over UDP for the server runtime (see the module docs).
#[derive(Debug)]
pub struct OncUdpListener {
    local_addr: SocketAddr,
    incoming: mpsc::Receiver<Connection<OncUdpServerReceiver>>,
    demux: tokio::task::JoinHandle<()>,
}

impl Drop for OncUdpListener {
    fn drop(&mut self) {
        self.demux.abort();
    }
}

impl OncUdpListener {
    /// Binds with the default configuration.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with(addr, OncUdpConfig::default()).await
    }

    /// Binds with `config`.
    pub async fn bind_with(addr: impl ToSocketAddrs, config: OncUdpConfig) -> io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local_addr = socket.local_addr()?;
        let (tx, incoming) = mpsc::channel(ACCEPT_BACKLOG);
        let demux = tokio::spawn(demux(socket, config, tx, onc::random_id()));
        Ok(OncUdpListener {
            local_addr,
            incoming,
            demux,
        })
    }
}

/// Reads the listener's socket and hands each datagram to its peer's connection,
/// opening one (bounded) for a new peer.
async fn demux(
    socket: Arc<UdpSocket>,
    config: OncUdpConfig,
    accept: mpsc::Sender<Connection<OncUdpServerReceiver>>,
    first_client: u64,
) {
    let mut peers: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut next_client = first_client;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors for earlier replies surface here on some systems.
                debug!(error = %e, "ONC UDP receive error");
                continue;
            }
        };
        let datagram = Bytes::copy_from_slice(&buf[..n]);
        if let Some(tx) = peers.get(&peer) {
            if !tx.is_closed() {
                // A full queue drops the datagram: the peer retransmits.
                let _ = tx.try_send(datagram);
                continue;
            }
            peers.remove(&peer);
        }
        if peers.len() >= config.max_peers {
            peers.retain(|_, tx| !tx.is_closed());
            if peers.len() >= config.max_peers {
                debug!(%peer, "ONC UDP peer limit reached; datagram dropped");
                continue;
            }
        }
        let (tx, rx) = mpsc::channel(config.peer_queue.max(1));
        let _ = tx.try_send(datagram);
        let (sender, outbox) = frame_queue(config.send_queue);
        let client_id = next_client;
        next_client = next_client.wrapping_add(1);
        let connection = Connection {
            sender,
            receiver: OncUdpServerReceiver {
                datagrams: rx,
                client_id,
                xids: onc::XidExtender::new(),
                socket: socket.clone(),
                peer,
                idle: config.peer_idle,
            },
            peer_addr: peer,
            principal: None,
        };
        match accept.try_send(connection) {
            Ok(()) => {
                tokio::spawn(reply_writer(outbox, socket.clone(), peer));
                peers.insert(peer, tx);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(%peer, "ONC UDP accept backlog full; datagram dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// Sends the runtime's answers to one peer as reply datagrams.
async fn reply_writer(mut outbox: FrameOutbox, socket: Arc<UdpSocket>, peer: SocketAddr) {
    let abort = outbox.abort_signal();
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = abort.aborted() => return,
            n = outbox.recv_batch(&mut batch, 64) => {
                if n == 0 {
                    return;
                }
            }
        }
        for frame in batch.drain(..) {
            let Some(reply) = onc::server_outbound(&frame) else {
                continue;
            };
            if let Ok(message) = onc::encode_reply(&reply) {
                let _ = socket.send_to(&message, peer).await;
            }
        }
    }
}

/// The receiving half of one UDP peer: its datagrams become Call frames.
#[derive(Debug)]
pub struct OncUdpServerReceiver {
    datagrams: mpsc::Receiver<Bytes>,
    client_id: u64,
    xids: onc::XidExtender,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    idle: Duration,
}

impl FrameReceiver for OncUdpServerReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            let datagram = match tokio::time::timeout(self.idle, self.datagrams.recv()).await {
                Ok(Some(d)) => d,
                // Idle, or the listener is gone: the peer's "connection" ends.
                Ok(None) | Err(_) => return Ok(None),
            };
            match onc::server_inbound(&datagram, self.client_id, &mut self.xids) {
                ServerInbound::Call(frame) => return Ok(Some(frame)),
                ServerInbound::Answer(reply) => {
                    if let Ok(message) = onc::encode_reply(&reply) {
                        let _ = self.socket.send_to(&message, self.peer).await;
                    }
                }
                ServerInbound::Malformed(e) => {
                    debug!(peer = %self.peer, error = %e, "malformed ONC datagram dropped");
                }
            }
        }
    }
}

impl Listener for OncUdpListener {
    type Receiver = OncUdpServerReceiver;

    async fn accept(&mut self) -> Result<Connection<OncUdpServerReceiver>, TransportError> {
        self.incoming.recv().await.ok_or(TransportError::Closed)
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// A call awaiting its reply.
#[derive(Debug)]
struct PendingCall {
    header: FrameHeader,
    message: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

type Pending = Arc<Mutex<HashMap<u32, PendingCall>>>;

fn lock(p: &Pending) -> MutexGuard<'_, HashMap<u32, PendingCall>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects the client runtime to an ONC RPC server over UDP (see the module docs).
///
/// ONC servers have no incarnation: the channel answers the runtime's incarnation probe
/// itself with a constant of its own.
#[derive(Debug, Clone)]
pub struct OncUdpChannel {
    addr: SocketAddr,
    config: OncUdpConfig,
    incarnation: u64,
}

impl OncUdpChannel {
    /// A channel to `addr` with the default configuration.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_config(addr, OncUdpConfig::default())
    }

    /// A channel to `addr` with `config`.
    pub fn with_config(addr: SocketAddr, config: OncUdpConfig) -> Self {
        OncUdpChannel {
            addr,
            config,
            incarnation: onc::random_id() | 1,
        }
    }
}

/// The receiving half of a client ONC UDP "connection": replies become answer frames.
#[derive(Debug)]
pub struct OncUdpClientReceiver {
    socket: Arc<UdpSocket>,
    pending: Pending,
    local: mpsc::Receiver<Frame>,
    incarnation: u64,
    buf: Vec<u8>,
}

impl FrameReceiver for OncUdpClientReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            let n = tokio::select! {
                biased;
                Some(frame) = self.local.recv() => return Ok(Some(frame)),
                r = self.socket.recv(&mut self.buf) => r?,
            };
            let datagram = Bytes::copy_from_slice(&self.buf[..n]);
            let reply = match onc::decode_message(&datagram) {
                Ok(onc::OncMessage::Reply(reply)) => reply,
                Ok(onc::OncMessage::Call(_)) | Err(_) => continue, // dropped
            };
            let Some(call) = lock(&self.pending).remove(&reply.xid) else {
                continue; // a duplicate, or a call given up or cancelled
            };
            return Ok(Some(onc::client_inbound(
                &reply,
                &call.header,
                self.incarnation,
            )));
        }
    }
}

/// Sends the runtime's calls and retransmits them until answered or given up.
async fn call_writer(
    mut outbox: FrameOutbox,
    socket: Arc<UdpSocket>,
    pending: Pending,
    local: mpsc::Sender<Frame>,
    config: OncUdpConfig,
    incarnation: u64,
) {
    let abort = outbox.abort_signal();
    let mut batch = Vec::new();
    loop {
        let wake = lock(&pending)
            .values()
            .map(|p| p.next.min(p.give_up))
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            () = abort.aborted() => return,
            n = outbox.recv_batch(&mut batch, 64) => {
                if n == 0 {
                    return;
                }
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        let mut send = Vec::new();
        for frame in batch.drain(..) {
            match onc::client_action(&frame, incarnation) {
                ClientAction::Send {
                    xid,
                    message,
                    header,
                } => {
                    if !header.is_oneway() {
                        let mut p = lock(&pending);
                        if p.len() >= config.max_pending && !p.contains_key(&xid) {
                            drop(p);
                            let _ = local.try_send(onc::answer_frame(
                                &header,
                                incarnation,
                                &Status::Overloaded,
                            ));
                            continue;
                        }
                        let time = header.deadline_budget().unwrap_or(config.default_call_time);
                        p.insert(
                            xid,
                            PendingCall {
                                header,
                                message: message.clone(),
                                next: now + config.initial_retransmit,
                                interval: config.initial_retransmit,
                                give_up: now + time,
                            },
                        );
                    }
                    send.push(message);
                }
                // Bounded: when the receiver is not keeping up, the answer is dropped
                // and the call times out.
                ClientAction::Answer(answer) => {
                    let _ = local.try_send(answer);
                }
                ClientAction::Forget(xid) => {
                    lock(&pending).remove(&xid);
                }
                ClientAction::Ignore => {}
            }
        }
        {
            let mut p = lock(&pending);
            p.retain(|_, call| call.give_up > now);
            for call in p.values_mut() {
                if call.next <= now {
                    call.interval = (call.interval * 2).min(config.max_retransmit);
                    call.next = now + call.interval;
                    send.push(call.message.clone());
                }
            }
        }
        for message in send {
            // Errors (ICMP port unreachable and the like) are the receiver's to see.
            let _ = socket.send(&message).await;
        }
    }
}

impl Channel for OncUdpChannel {
    type Receiver = OncUdpClientReceiver;

    async fn connect(&self) -> Result<Connection<OncUdpClientReceiver>, TransportError> {
        let addr = self.addr.to_string();
        let connect_err = |e: io::Error| TransportError::Connect {
            addr: addr.clone(),
            source: Arc::new(e),
        };
        let local: SocketAddr = match self.addr.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(connect_err)?;
        socket.connect(self.addr).await.map_err(connect_err)?;
        let socket = Arc::new(socket);
        let (sender, outbox) = frame_queue(self.config.send_queue);
        let pending: Pending = Arc::default();
        let (local_tx, local_rx) = mpsc::channel(LOCAL_QUEUE);
        tokio::spawn(call_writer(
            outbox,
            socket.clone(),
            pending.clone(),
            local_tx,
            self.config.clone(),
            self.incarnation,
        ));
        Ok(Connection {
            sender,
            receiver: OncUdpClientReceiver {
                socket,
                pending,
                local: local_rx,
                incarnation: self.incarnation,
                buf: vec![0; MAX_DATAGRAM],
            },
            peer_addr: self.addr,
            principal: None,
        })
    }

    fn remote(&self) -> String {
        format!("onc+udp://{}", self.addr)
    }
}
