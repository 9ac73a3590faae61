//! ONC RPC (RFC 5531) over TCP with record marking: adapters that let the unchanged
//! server and client runtimes talk to rpcgen / libtirpc peers.
//!
//! * [`OncTcpListener`] is a [`Listener`]: each accepted connection gets a receiver that
//!   turns records into Call frames and a sender whose Reply/Status frames go out as ONC
//!   replies, one record each.
//! * [`OncTcpChannel`] is a [`Channel`]: Call frames go out as ONC CALLs, replies come
//!   back as the Reply/Status frames the client runtime expects.
//!
//! What maps to what is [`rpc_core::onc`]'s business; this module only moves bytes.
//! Limits ([`OncTcpConfig`]): a record is at most `max_record` bytes and
//! `max_fragments` fragments (else the connection is closed); a record that has started
//! must be complete within `record_timeout`; a connection queues at most `send_queue`
//! outgoing frames; a client connection tracks at most `max_pending` calls awaiting a
//! reply (further calls are answered `Overloaded` at once).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rpc_core::frame::{Frame, FrameHeader};
use rpc_core::onc::{self, ClientAction, RecordDecoder, ServerInbound};
use rpc_core::transport::{frame_queue, Channel, Connection, FrameOutbox, FrameReceiver, Listener};
use rpc_core::{Status, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;
use tracing::debug;

/// Default time a started record has to complete: 30 s.
pub const DEFAULT_RECORD_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout of an [`OncTcpChannel`]: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of calls a client connection awaits at once: 4,096.
pub const DEFAULT_MAX_PENDING: usize = 4096;
/// Answers an adapter sends itself (`RPC_MISMATCH`, and a client's local answers) that
/// may wait for the writer; the receiver waits beyond it.
const DIRECT_QUEUE: usize = 16;
/// Frames the writer takes per batch.
const WRITE_BATCH: usize = 64;

/// Limits and timeouts of the ONC TCP adapters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OncTcpConfig {
    /// Largest record (fragments and their marks together). Default
    /// [`onc::DEFAULT_MAX_RECORD`].
    pub max_record: usize,
    /// Most fragments in one record. Default [`onc::DEFAULT_MAX_FRAGMENTS`].
    pub max_fragments: usize,
    /// A record that has started must be complete within this. Default
    /// [`DEFAULT_RECORD_TIMEOUT`].
    pub record_timeout: Duration,
    /// Outgoing frames a connection queues. Default
    /// [`rpc_core::transport::DEFAULT_SEND_QUEUE`].
    pub send_queue: usize,
    /// Client: connect timeout. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Client: calls a connection awaits at once. Default [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
}

impl Default for OncTcpConfig {
    fn default() -> Self {
        OncTcpConfig {
            max_record: onc::DEFAULT_MAX_RECORD,
            max_fragments: onc::DEFAULT_MAX_FRAGMENTS,
            record_timeout: DEFAULT_RECORD_TIMEOUT,
            send_queue: rpc_core::transport::DEFAULT_SEND_QUEUE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> TransportError {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string()).into()
}

/// Reads records off one connection.
struct RecordReader {
    read: OwnedReadHalf,
    buf: BytesMut,
    decoder: RecordDecoder,
    record_timeout: Duration,
}

impl RecordReader {
    fn new(read: OwnedReadHalf, config: &OncTcpConfig) -> Self {
        RecordReader {
            read,
            buf: BytesMut::with_capacity(8192),
            decoder: RecordDecoder::new(config.max_record, config.max_fragments),
            record_timeout: config.record_timeout,
        }
    }

    /// The next record; `Ok(None)` at a clean end of stream. Cancel-safe.
    async fn next_record(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            if let Some(record) = self.decoder.decode(&mut self.buf).map_err(invalid)? {
                return Ok(Some(record));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            let n = if self.decoder.in_record(&self.buf) {
                tokio::time::timeout(self.record_timeout, self.read.read_buf(&mut self.buf))
                    .await
                    .map_err(|_| {
                        TransportError::from(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "incomplete ONC record timed out",
                        ))
                    })??
            } else {
                self.read.read_buf(&mut self.buf).await?
            };
            if n == 0 {
                self.decoder.finish(&self.buf).map_err(invalid)?;
                return Ok(None);
            }
        }
    }
}

/// Writes frames from `outbox` (translated by `translate`) and ready messages from
/// `direct`, one record each, until every sender is gone or the connection is aborted.
async fn write_loop(
    mut outbox: FrameOutbox,
    mut direct: mpsc::Receiver<Bytes>,
    mut write: OwnedWriteHalf,
    mut translate: impl FnMut(Frame) -> Option<Bytes> + Send,
) {
    let abort = outbox.abort_signal();
    // Armed once, polled only when the writer would wait (see `writer::write_loop`).
    let abort = abort.aborted();
    tokio::pin!(abort);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let mut out = BytesMut::new();
        tokio::select! {
            biased;
            () = &mut abort => break,
            Some(message) = direct.recv() => out.extend_from_slice(&onc::encode_record(&message)),
            n = outbox.recv_batch(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    break;
                }
                for frame in batch.drain(..) {
                    if let Some(message) = translate(frame) {
                        out.extend_from_slice(&onc::encode_record(&message));
                    }
                }
            }
        }
        if out.is_empty() {
            continue;
        }
        tokio::select! {
            biased;
            r = write.write_all(&out) => if r.is_err() { break },
            () = &mut abort => break,
        }
    }
    let _ = write.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------

/// Accepts ONC RPC clients over TCP for the server runtime (see the module docs).
#[derive(Debug)]
pub struct OncTcpListener {
    inner: tokio::net::TcpListener,
    local_addr: SocketAddr,
    config: OncTcpConfig,
    next_client: AtomicU64,
}

impl OncTcpListener {
    /// Binds with the default configuration.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with(addr, OncTcpConfig::default()).await
    }

    /// Binds with `config`.
    pub async fn bind_with(addr: impl ToSocketAddrs, config: OncTcpConfig) -> io::Result<Self> {
        let inner = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = inner.local_addr()?;
        Ok(OncTcpListener {
            inner,
            local_addr,
            config,
            next_client: AtomicU64::new(onc::random_id()),
        })
    }
}

/// The receiving half of an accepted ONC connection: records become Call frames.
#[derive(Debug)]
pub struct OncTcpServerReceiver {
    reader: RecordReaderBox,
    client_id: u64,
    xids: onc::XidExtender,
    direct: mpsc::Sender<Bytes>,
}

/// Keeps the reader out of the `Debug` output.
struct RecordReaderBox(RecordReader);

impl std::fmt::Debug for RecordReaderBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordReader")
    }
}

impl FrameReceiver for OncTcpServerReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            let Some(record) = self.reader.0.next_record().await? else {
                return Ok(None);
            };
            match onc::server_inbound(&record, self.client_id, &mut self.xids) {
                ServerInbound::Call(frame) => return Ok(Some(frame)),
                ServerInbound::Answer(reply) => {
                    let message = onc::encode_reply(&reply).map_err(invalid)?;
                    self.direct
                        .send(message)
                        .await
                        .map_err(|_| TransportError::Closed)?;
                }
                ServerInbound::Malformed(e) => {
                    debug!(error = %e, "malformed ONC call; closing the connection");
                    return Err(invalid(e));
                }
            }
        }
    }
}

impl Listener for OncTcpListener {
    type Receiver = OncTcpServerReceiver;

    async fn accept(&mut self) -> Result<Connection<OncTcpServerReceiver>, TransportError> {
        let (stream, peer_addr) = self.inner.accept().await?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (sender, outbox) = frame_queue(self.config.send_queue);
        let (direct_tx, direct_rx) = mpsc::channel(DIRECT_QUEUE);
        tokio::spawn(write_loop(outbox, direct_rx, write, |frame| {
            let reply = onc::server_outbound(&frame)?;
            onc::encode_reply(&reply).ok()
        }));
        let client_id = self.next_client.fetch_add(1, Ordering::Relaxed);
        debug!(%peer_addr, client_id, "accepted ONC connection");
        Ok(Connection {
            sender,
            receiver: OncTcpServerReceiver {
                reader: RecordReaderBox(RecordReader::new(read, &self.config)),
                client_id,
                xids: onc::XidExtender::new(),
                direct: direct_tx,
            },
            peer_addr,
            principal: None,
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

/// Calls awaiting a reply on one client connection, by xid.
type Pending = Arc<Mutex<HashMap<u32, FrameHeader>>>;

fn lock(p: &Pending) -> MutexGuard<'_, HashMap<u32, FrameHeader>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects the client runtime to an ONC RPC server over TCP (see the module docs).
///
/// ONC servers have no incarnation: the channel answers the runtime's incarnation probe
/// itself with a constant of its own, so reconnecting never looks like a restart.
#[derive(Debug, Clone)]
pub struct OncTcpChannel {
    addr: SocketAddr,
    config: OncTcpConfig,
    incarnation: u64,
}

impl OncTcpChannel {
    /// A channel to `addr` with the default configuration.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_config(addr, OncTcpConfig::default())
    }

    /// A channel to `addr` with `config`.
    pub fn with_config(addr: SocketAddr, config: OncTcpConfig) -> Self {
        OncTcpChannel {
            addr,
            config,
            incarnation: onc::random_id() | 1,
        }
    }
}

/// The receiving half of a client ONC connection: replies become answer frames.
#[derive(Debug)]
pub struct OncTcpClientReceiver {
    reader: RecordReaderBox,
    pending: Pending,
    local: mpsc::Receiver<Frame>,
    incarnation: u64,
}

impl FrameReceiver for OncTcpClientReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            let record = tokio::select! {
                biased;
                Some(frame) = self.local.recv() => return Ok(Some(frame)),
                r = self.reader.0.next_record() => match r? {
                    Some(record) => record,
                    None => return Ok(None),
                },
            };
            match onc::decode_message(&record) {
                Ok(onc::OncMessage::Reply(reply)) => {
                    let Some(call) = lock(&self.pending).remove(&reply.xid) else {
                        continue; // late, duplicate or cancelled
                    };
                    return Ok(Some(onc::client_inbound(&reply, &call, self.incarnation)));
                }
                Ok(onc::OncMessage::Call(_)) => return Err(invalid("server sent an ONC CALL")),
                Err(e) => return Err(invalid(e)),
            }
        }
    }
}

/// What the client writer does with one outgoing frame: the message to send, if any;
/// `Err` is an answer for the receiver to hand to the runtime at once.
fn client_frame(
    frame: Frame,
    pending: &Pending,
    max_pending: usize,
    incarnation: u64,
) -> Result<Option<Bytes>, Frame> {
    match onc::client_action(&frame, incarnation) {
        ClientAction::Send {
            xid,
            message,
            header,
        } => {
            if !header.is_oneway() {
                let mut p = lock(pending);
                if p.len() >= max_pending && !p.contains_key(&xid) {
                    return Err(onc::answer_frame(&header, incarnation, &Status::Overloaded));
                }
                p.insert(xid, header);
            }
            Ok(Some(message))
        }
        ClientAction::Answer(frame) => Err(frame),
        ClientAction::Forget(xid) => {
            lock(pending).remove(&xid);
            Ok(None)
        }
        ClientAction::Ignore => Ok(None),
    }
}

impl Channel for OncTcpChannel {
    type Receiver = OncTcpClientReceiver;

    async fn connect(&self) -> Result<Connection<OncTcpClientReceiver>, TransportError> {
        let addr = self.addr.to_string();
        let stream =
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(self.addr))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(TransportError::Connect {
                        addr,
                        source: Arc::new(e),
                    })
                }
                Err(_) => return Err(TransportError::ConnectTimedOut { addr }),
            };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (sender, outbox) = frame_queue(self.config.send_queue);
        let pending: Pending = Arc::default();
        let (local_tx, local_rx) = mpsc::channel(DIRECT_QUEUE);
        // Local answers go straight to the receiver; nothing goes to `direct`.
        let (_direct_tx, direct_rx) = mpsc::channel(1);
        let (p, max, inc) = (pending.clone(), self.config.max_pending, self.incarnation);
        tokio::spawn(write_loop(outbox, direct_rx, write, move |frame| {
            match client_frame(frame, &p, max, inc) {
                Ok(Some(message)) => Some(message),
                Ok(None) => None,
                Err(answer) => {
                    // Bounded: when the receiver is not keeping up, the answer is
                    // dropped and the call times out.
                    let _ = local_tx.try_send(answer);
                    None
                }
            }
        }));
        Ok(Connection {
            sender,
            receiver: OncTcpClientReceiver {
                reader: RecordReaderBox(RecordReader::new(read, &self.config)),
                pending,
                local: local_rx,
                incarnation: self.incarnation,
            },
            peer_addr: self.addr,
            principal: None,
        })
    }

    fn remote(&self) -> String {
        format!("onc+tcp://{}", self.addr)
    }
}
