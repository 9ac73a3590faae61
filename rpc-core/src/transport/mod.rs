//! The boundary between the runtime and the transports.
//!
//! A transport turns a byte pipe into a stream of [`Frame`]s. The runtime never names a
//! transport: the client is generic over a [`Channel`] (how to connect to a server), the
//! server over a [`Listener`] (how to accept connections). Both yield a [`Connection`]:
//!
//! * its [`FrameSender`] is the bounded queue of outgoing frames. The transport owns the
//!   other end (a [`FrameOutbox`]) and drains it from a writer task, batching whatever
//!   is queued into one vectored write. Senders wait (asynchronously) when the queue is
//!   full; when the writer dies, sends fail with [`TransportError::Closed`].
//! * its receiver ([`FrameReceiver`]) is polled directly by the runtime's own task (the
//!   client's reply reader, the server's dispatch loop), so a received frame costs no
//!   task hand-off before the runtime sees it.
//!
//! Dropping every sender and the receiver closes the connection.

use std::future::Future;
use std::net::SocketAddr;

use tokio::sync::mpsc;

use crate::error::TransportError;
use crate::frame::Frame;

/// Default capacity of a connection's outgoing frame queue.
pub const DEFAULT_SEND_QUEUE: usize = 1024;

/// The sending half of a connection: a bounded queue drained by the transport's writer.
#[derive(Debug, Clone)]
pub struct FrameSender {
    tx: mpsc::Sender<Frame>,
}

/// The transport's end of a connection's outgoing queue.
#[derive(Debug)]
pub struct FrameOutbox {
    rx: mpsc::Receiver<Frame>,
}

/// A bounded outgoing frame queue holding at most `capacity` frames.
pub fn frame_queue(capacity: usize) -> (FrameSender, FrameOutbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (FrameSender { tx }, FrameOutbox { rx })
}

impl FrameSender {
    /// Queues a frame, waiting while the queue is full.
    pub async fn send(&self, frame: Frame) -> Result<(), TransportError> {
        self.tx
            .send(frame)
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Queues a frame if there is room right now; `Ok(false)` if the queue is full.
    pub fn try_send(&self, frame: Frame) -> Result<bool, TransportError> {
        match self.tx.try_send(frame) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransportError::Closed),
        }
    }

    /// Whether the transport's writer has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the transport's writer has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Whether both senders feed the same connection.
    pub fn same_connection(&self, other: &FrameSender) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

impl FrameOutbox {
    /// Waits for at least one frame and moves up to `limit` queued frames into `out`.
    /// Returns 0 once every sender is gone and the queue is empty.
    pub async fn recv_batch(&mut self, out: &mut Vec<Frame>, limit: usize) -> usize {
        self.rx.recv_many(out, limit.max(1)).await
    }

    /// Takes one frame if one is queued now.
    pub fn try_recv(&mut self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }

    /// Stops accepting frames; frames already queued can still be received.
    pub fn close(&mut self) {
        self.rx.close()
    }
}

/// The receiving half of a connection, polled by the runtime.
pub trait FrameReceiver: Send + 'static {
    /// The next complete, validated frame. `Ok(None)` is a clean end of stream; an error
    /// ends the connection (the runtime stops polling after it).
    fn recv(&mut self) -> impl Future<Output = Result<Option<Frame>, TransportError>> + Send;
}

/// An established connection to one peer.
#[derive(Debug)]
pub struct Connection<R> {
    /// Queue of frames to send to the peer.
    pub sender: FrameSender,
    /// Frames received from the peer.
    pub receiver: R,
    /// The peer's address.
    pub peer_addr: SocketAddr,
}

/// Client side: knows how to (re)connect to one server.
pub trait Channel: Send + Sync + 'static {
    /// The connection's receiving half.
    type Receiver: FrameReceiver;

    /// Opens a new connection. The runtime calls this lazily on the first call and again
    /// after a connection drops (with backoff).
    fn connect(
        &self,
    ) -> impl Future<Output = Result<Connection<Self::Receiver>, TransportError>> + Send;

    /// The server this channel connects to, for logs and errors.
    fn remote(&self) -> String;
}

/// Server side: accepts connections from clients.
pub trait Listener: Send + 'static {
    /// The connection's receiving half.
    type Receiver: FrameReceiver;

    /// Waits for the next connection. An error is logged and accepting continues, unless
    /// the listener is closed for good (then it returns [`TransportError::Closed`]).
    fn accept(
        &mut self,
    ) -> impl Future<Output = Result<Connection<Self::Receiver>, TransportError>> + Send;

    /// The address the listener is bound to.
    fn local_addr(&self) -> SocketAddr;
}

pub mod memory;

impl FrameReceiver for FrameOutbox {
    /// Frames queued by the other side's [`FrameSender`]s; `Ok(None)` once they are all
    /// gone. This is what makes a pair of queues an in-process connection
    /// ([`memory`]).
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        Ok(self.rx.recv().await)
    }
}
