//! The boundary between the runtime and the transports.
//!
//! A transport turns a byte pipe into a stream of [`Frame`]s. The runtime never names a
//! transport: the client is generic over a [`Channel`] (how to connect to a server), the
//! server over a [`Listener`] (how to accept connections). Both yield a [`Connection`]:
//!
//! * its [`FrameSender`] takes outgoing frames: either a bounded queue whose other end (a
//!   [`FrameOutbox`]) the transport drains from a writer task, batching whatever is
//!   queued into one vectored write (TCP), or the transport's own [`FrameSink`], which
//!   takes each frame in the sender's task (reliable UDP). Senders wait (asynchronously)
//!   when there is no room; when the connection dies, sends fail with
//!   [`TransportError::Closed`].
//! * its receiver ([`FrameReceiver`]) is polled directly by the runtime's own task (the
//!   client's reply reader, the server's dispatch loop), so a received frame costs no
//!   task hand-off before the runtime sees it.
//!
//! Dropping every sender and the receiver closes the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, Notify};

use crate::error::TransportError;
use crate::frame::{Frame, HEADER_LEN};

/// Default capacity of a connection's outgoing frame queue.
pub const DEFAULT_SEND_QUEUE: usize = 1024;

/// The sending half of a connection.
///
/// Either a bounded queue drained by the transport's writer task ([`frame_queue`]: TCP,
/// the in-process transport), or a transport's own [`FrameSink`] that takes the frame in
/// the caller's task ([`FrameSender::from_sink`]: reliable UDP hands it straight to its
/// protocol core and the socket). Cheap to clone; clones feed the same connection.
#[derive(Clone)]
pub struct FrameSender {
    inner: SenderInner,
}

#[derive(Clone)]
enum SenderInner {
    Queue(mpsc::UnboundedSender<Frame>, Arc<QueueState>),
    Sink(Arc<dyn FrameSink>),
}

/// What a queue's two ends share besides the frames: how many bytes are waiting to be
/// written, and whether the connection was aborted.
#[derive(Debug)]
struct QueueState {
    /// Frames in the queue (sent, not yet taken by the writer): at most `capacity`. The
    /// queue's own count, not a channel semaphore's, so taking frames out costs one
    /// atomic operation instead of the semaphore's waiter-list lock.
    frames: AtomicUsize,
    /// [`frame_queue`]'s `capacity`.
    capacity: usize,
    /// Woken when frames leave a full queue while senders wait for room.
    room: Notify,
    /// Senders waiting for room (see `drain_waiters`).
    room_waiters: AtomicUsize,
    /// Bytes (headers included) of frames sent and not yet written: queued, or in the
    /// batch the transport is writing now.
    bytes: AtomicUsize,
    /// Woken whenever `bytes` falls (a batch was written) while someone waits.
    drained: Notify,
    /// Tasks in [`FrameSender::written`]: without any, a written batch skips the
    /// notification (and the lock it takes).
    drain_waiters: AtomicUsize,
    /// [`FrameSender::abort`] was called.
    aborted: AtomicBool,
    /// Woken by [`FrameSender::abort`].
    abort: Notify,
}

impl QueueState {
    fn new(capacity: usize) -> Self {
        QueueState {
            frames: AtomicUsize::new(0),
            capacity: capacity.max(1),
            room: Notify::new(),
            room_waiters: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            drained: Notify::new(),
            drain_waiters: AtomicUsize::new(0),
            aborted: AtomicBool::new(false),
            abort: Notify::new(),
        }
    }

    /// Takes a place in the queue if there is one.
    fn reserve(&self) -> bool {
        self.frames
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// `n` frames left the queue (or never entered it).
    fn unreserve(&self, n: usize) {
        if n > 0 {
            // SeqCst pairs with `wait_for_room`, as in `release`.
            self.frames.fetch_sub(n, Ordering::SeqCst);
            if self.room_waiters.load(Ordering::SeqCst) > 0 {
                self.room.notify_waiters();
            }
        }
    }

    /// Waits until the queue has room (or `tx`'s receiver is gone).
    async fn wait_for_room(&self, tx: &mpsc::UnboundedSender<Frame>) {
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Decrement(&self.room_waiters);
        let notified = self.room.notified();
        tokio::pin!(notified);
        // Registered before the check: a frame taken after it wakes this waiter.
        notified.as_mut().enable();
        if self.frames.load(Ordering::SeqCst) < self.capacity {
            return;
        }
        tokio::select! {
            () = notified => {}
            () = tx.closed() => {}
        }
    }

    fn release(&self, bytes: usize) {
        if bytes > 0 {
            // SeqCst pairs with `written`: either this load sees its waiter, or the
            // waiter's check of `bytes` (after it registered) sees this release.
            self.bytes.fetch_sub(bytes, Ordering::SeqCst);
            if self.drain_waiters.load(Ordering::SeqCst) > 0 {
                self.drained.notify_waiters();
            }
        }
    }
}

/// Takes one off a waiter count when dropped.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many bytes a frame occupies on the wire (header included).
fn wire_len(frame: &Frame) -> usize {
    HEADER_LEN + frame.payload_len()
}

impl std::fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            SenderInner::Queue(..) => "queue",
            SenderInner::Sink(_) => "sink",
        };
        f.debug_struct("FrameSender")
            .field("kind", &kind)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Why [`FrameSink::try_send`] did not take a frame.
#[derive(Debug)]
pub enum TrySendError {
    /// No room now (e.g. the send window is full); the frame is handed back. The sender
    /// waits with [`FrameSink::poll_ready`] and tries again.
    Full(Frame),
    /// The connection is gone.
    Closed(TransportError),
}

/// A transport's own way to take frames in the sender's task, without a writer task.
///
/// Implementations must be non-blocking: `try_send` either takes the frame or says why
/// not at once, and `poll_ready` registers the waker to be woken when room may have
/// appeared (or the connection closed).
pub trait FrameSink: Send + Sync + 'static {
    /// Takes `frame` now, or hands it back.
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError>;

    /// `Ready(Ok)` when a `try_send` may succeed, `Ready(Err)` when the connection is
    /// gone; otherwise registers `cx`'s waker and returns `Pending`.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>>;

    /// Whether the connection is gone.
    fn is_closed(&self) -> bool;

    /// Bytes taken and not yet written to the network, if the sink tracks them (the
    /// server pauses reading from a connection whose replies pile up). Default 0.
    fn queued_bytes(&self) -> usize {
        0
    }

    /// Gives up on the connection at once: frames not yet written are discarded and the
    /// connection is closed. Default: nothing (the sink closes when its senders are gone).
    fn abort(&self) {}
}

/// The transport's end of a connection's outgoing queue.
///
/// It accounts for the bytes waiting to be written ([`FrameSender::queued_bytes`]): a
/// frame counts from [`FrameSender::send`] until the transport comes back for more
/// frames after receiving it (that is, once the batch it belonged to was written), or
/// until the outbox is dropped.
#[derive(Debug)]
pub struct FrameOutbox {
    rx: mpsc::UnboundedReceiver<Frame>,
    state: Arc<QueueState>,
    /// Bytes of the frames handed out by the last receive, released by the next.
    in_writer: usize,
}

/// Resolves once the connection's sender called [`FrameSender::abort`]; see
/// [`FrameOutbox::abort_signal`].
#[derive(Debug, Clone)]
pub struct AbortSignal {
    state: Arc<QueueState>,
}

impl AbortSignal {
    /// Waits until the connection is aborted (at once if it already is).
    pub async fn aborted(&self) {
        loop {
            let notified = self.state.abort.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.aborted.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Whether the connection was aborted.
    pub fn is_aborted(&self) -> bool {
        self.state.aborted.load(Ordering::Acquire)
    }
}

/// A bounded outgoing frame queue holding at most `capacity` frames.
pub fn frame_queue(capacity: usize) -> (FrameSender, FrameOutbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(QueueState::new(capacity));
    (
        FrameSender {
            inner: SenderInner::Queue(tx, state.clone()),
        },
        FrameOutbox {
            rx,
            state,
            in_writer: 0,
        },
    )
}

impl FrameSender {
    /// A sender backed by a transport's own sink.
    pub fn from_sink(sink: Arc<dyn FrameSink>) -> Self {
        FrameSender {
            inner: SenderInner::Sink(sink),
        }
    }

    /// Hands a frame to the transport, waiting while there is no room.
    pub async fn send(&self, frame: Frame) -> Result<(), TransportError> {
        match &self.inner {
            SenderInner::Queue(tx, state) => {
                while !state.reserve() {
                    if tx.is_closed() {
                        return Err(TransportError::Closed);
                    }
                    state.wait_for_room(tx).await;
                }
                let len = wire_len(&frame);
                state.bytes.fetch_add(len, Ordering::AcqRel);
                let sent = tx.send(frame);
                if sent.is_err() {
                    state.unreserve(1);
                    state.release(len);
                }
                sent.map_err(|_| TransportError::Closed)
            }
            SenderInner::Sink(sink) => {
                let mut frame = frame;
                loop {
                    match sink.try_send(frame) {
                        Ok(()) => return Ok(()),
                        Err(TrySendError::Closed(e)) => return Err(e),
                        Err(TrySendError::Full(back)) => {
                            frame = back;
                            std::future::poll_fn(|cx| sink.poll_ready(cx)).await?;
                        }
                    }
                }
            }
        }
    }

    /// Hands a frame over if there is room right now; `Ok(false)` if there is none
    /// (the frame is then dropped: [`FrameSender::try_send_frame`] hands it back).
    pub fn try_send(&self, frame: Frame) -> Result<bool, TransportError> {
        match self.try_send_frame(frame) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(TrySendError::Closed(e)) => Err(e),
        }
    }

    /// Hands a frame over if there is room right now, or hands it back.
    pub fn try_send_frame(&self, frame: Frame) -> Result<(), TrySendError> {
        match &self.inner {
            SenderInner::Queue(tx, state) => {
                if tx.is_closed() {
                    return Err(TrySendError::Closed(TransportError::Closed));
                }
                if !state.reserve() {
                    return Err(TrySendError::Full(frame));
                }
                let len = wire_len(&frame);
                state.bytes.fetch_add(len, Ordering::AcqRel);
                match tx.send(frame) {
                    Ok(()) => Ok(()),
                    Err(_) => {
                        state.unreserve(1);
                        state.release(len);
                        Err(TrySendError::Closed(TransportError::Closed))
                    }
                }
            }
            SenderInner::Sink(sink) => sink.try_send(frame),
        }
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            SenderInner::Queue(tx, _) => tx.is_closed(),
            SenderInner::Sink(sink) => sink.is_closed(),
        }
    }

    /// Bytes (headers included) handed to this connection and not yet written to the
    /// network (0 for a sink that does not track them, see [`FrameSink::queued_bytes`]).
    pub fn queued_bytes(&self) -> usize {
        match &self.inner {
            SenderInner::Queue(_, state) => state.bytes.load(Ordering::Acquire),
            SenderInner::Sink(sink) => sink.queued_bytes(),
        }
    }

    /// Waits until some of [`FrameSender::queued_bytes`] was written (or the connection
    /// closed). For a sink that does not track bytes it waits for room in the sink.
    pub async fn written(&self) {
        match &self.inner {
            SenderInner::Queue(tx, state) => {
                state.drain_waiters.fetch_add(1, Ordering::SeqCst);
                let _waiting = Decrement(&state.drain_waiters);
                tokio::select! {
                    () = state.drained.notified() => {}
                    () = tx.closed() => {}
                }
            }
            SenderInner::Sink(sink) => {
                let _ = std::future::poll_fn(|cx| sink.poll_ready(cx)).await;
            }
        }
    }

    /// Gives up on the connection at once: the transport stops writing, discards what
    /// is queued and closes the connection (the runtime uses it for peers that do not
    /// read, and at the end of a shutdown's grace period). Dropping the senders instead
    /// lets the transport finish writing what is queued.
    pub fn abort(&self) {
        match &self.inner {
            SenderInner::Queue(_, state) => {
                state.aborted.store(true, Ordering::Release);
                state.abort.notify_waiters();
            }
            SenderInner::Sink(sink) => sink.abort(),
        }
    }

    /// Whether both senders feed the same connection.
    pub fn same_connection(&self, other: &FrameSender) -> bool {
        match (&self.inner, &other.inner) {
            (SenderInner::Queue(a, _), SenderInner::Queue(b, _)) => a.same_channel(b),
            (SenderInner::Sink(a), SenderInner::Sink(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl FrameOutbox {
    /// Waits for at least one frame and moves up to `limit` queued frames into `out`.
    /// Returns 0 once every sender is gone and the queue is empty.
    ///
    /// Calling it again tells the queue that the frames of the previous batch have been
    /// written: their bytes leave [`FrameSender::queued_bytes`].
    pub async fn recv_batch(&mut self, out: &mut Vec<Frame>, limit: usize) -> usize {
        self.state.release(std::mem::take(&mut self.in_writer));
        let start = out.len();
        let n = self.rx.recv_many(out, limit.max(1)).await;
        self.state.unreserve(n);
        self.in_writer = out[start..].iter().map(wire_len).sum();
        n
    }

    /// Takes one frame if one is queued now (its bytes leave
    /// [`FrameSender::queued_bytes`] at once).
    pub fn try_recv(&mut self) -> Option<Frame> {
        let frame = self.rx.try_recv().ok()?;
        self.state.unreserve(1);
        self.state.release(wire_len(&frame));
        Some(frame)
    }

    /// A handle that resolves when the sending side aborts the connection
    /// ([`FrameSender::abort`]): a writer stops at once, mid-write if need be.
    pub fn abort_signal(&self) -> AbortSignal {
        AbortSignal {
            state: self.state.clone(),
        }
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
    /// The peer's identity, when the transport authenticated it (TLS with a client
    /// certificate, sealed UDP); `None` otherwise.
    pub principal: Option<crate::Principal>,
}

impl<R> Connection<R> {
    /// The same connection with its receiver wrapped (or replaced) by `wrap`: what a
    /// transport that combines others (for example [`Both`]) hands on.
    pub fn map_receiver<S>(self, wrap: impl FnOnce(R) -> S) -> Connection<S> {
        Connection {
            sender: self.sender,
            receiver: wrap(self.receiver),
            peer_addr: self.peer_addr,
            principal: self.principal,
        }
    }
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

mod addr;
pub mod both;
pub mod memory;

pub use addr::Addr;
pub use both::{Both, EitherReceiver};

impl FrameReceiver for FrameOutbox {
    /// Frames queued by the other side's [`FrameSender`]s; `Ok(None)` once they are all
    /// gone. This is what makes a pair of queues an in-process connection
    /// ([`memory`]).
    ///
    /// A frame sent with shared descriptors (several payload chunks) is made contiguous
    /// here, as a network transport's receiver would see it: that is the one copy the
    /// in-process transport makes.
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        let frame = self.rx.recv().await;
        if let Some(frame) = &frame {
            self.state.unreserve(1);
            self.state.release(wire_len(frame));
        }
        Ok(frame.map(Frame::into_contiguous))
    }
}

impl Drop for FrameOutbox {
    fn drop(&mut self) {
        // Nothing queued will be written any more: none of it is waiting.
        self.rx.close();
        let mut left = std::mem::take(&mut self.in_writer);
        while let Ok(frame) = self.rx.try_recv() {
            left += wire_len(&frame);
        }
        self.state.release(left);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::frame::FrameHeader;

    fn frame(call_id: u64) -> Frame {
        Frame::new(
            FrameHeader::call(1, call_id, 2, 1, 1),
            Bytes::from_static(b"abcd"),
        )
    }

    /// The queue's own count bounds it: the frame past `capacity` is refused, and a
    /// frame taken out makes room for exactly one more.
    #[test]
    fn queue_holds_at_most_capacity_frames() {
        let (tx, mut outbox) = frame_queue(3);
        for id in 0..3 {
            assert!(tx.try_send(frame(id)).expect("open"), "frame {id} fits");
        }
        assert!(
            !tx.try_send(frame(3)).expect("open"),
            "the fourth is refused"
        );
        assert_eq!(tx.queued_bytes(), 3 * (HEADER_LEN + 4));
        assert!(outbox.try_recv().is_some());
        assert!(tx.try_send(frame(4)).expect("open"), "room for one more");
        assert!(!tx.try_send(frame(5)).expect("open"), "and only one");
    }

    /// A sender waiting for room proceeds once the writer takes a batch, and fails
    /// (does not wait forever) once the writer is gone.
    #[tokio::test]
    async fn a_sender_waits_for_room_until_frames_leave_or_the_writer_goes() {
        let (tx, mut outbox) = frame_queue(1);
        tx.send(frame(0)).await.expect("room");
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(frame(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the queue is full: the sender waits"
        );
        let mut batch = Vec::new();
        assert_eq!(outbox.recv_batch(&mut batch, 8).await, 1);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting sender proceeds once a frame left")
            .expect("task")
            .expect("sent");

        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(frame(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!blocked.is_finished(), "full again: the sender waits");
        drop(outbox);
        let r = tokio::time::timeout(Duration::from_secs(10), blocked)
            .await
            .expect("a waiting sender ends once the writer is gone")
            .expect("task");
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
    }
}
