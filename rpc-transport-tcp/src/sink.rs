//! [`TcpSink`]: the send half of a TCP connection as a [`FrameSink`] — frames are written
//! in the sender's task when the socket has room, with no hand-off to a writer task.
//!
//! ```text
//!  sender's task (try_send)                 writer task (only when needed)
//!  ─────────────────────────                ──────────────────────────────────────
//!  lock; queue empty? → writev now          woken when a write was partial or the
//!    all written → done (the common case)   socket was full: waits for writability,
//!    partial / EWOULDBLOCK → queue the rest writes the queue out in batches (writev),
//!      and wake the writer                  wakes senders waiting for room
//!  queue not empty → append (order kept)
//! ```
//!
//! The lock is a `std::sync::Mutex` held only around non-blocking work (a `writev` that
//! returns at once). Frames are never interleaved: a frame is written directly only when
//! nothing is queued ahead of it, and the queue is written strictly in order. The queue
//! holds at most `capacity` frames; a sender that finds it full waits in
//! [`FrameSink::poll_ready`]. When every sender is gone, the writer finishes the queue and
//! the write half is shut down (FIN).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use rpc_core::frame::{Frame, HEADER_LEN};
use rpc_core::transport::{FrameSink, TrySendError};
use rpc_core::TransportError;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tracing::{debug, Instrument};

/// A frame not completely written yet.
struct Pending {
    header: [u8; HEADER_LEN],
    frame: Frame,
    /// Bytes of header + payload already written.
    written: usize,
}

impl Pending {
    fn len(&self) -> usize {
        HEADER_LEN + self.frame.payload_len()
    }

    /// Appends the unwritten part's slices to `iov`.
    fn slices<'a>(&'a self, iov: &mut Vec<IoSlice<'a>>) {
        let mut skip = self.written;
        let parts = std::iter::once(&self.header[..]).chain(self.frame.chunks().map(|c| &c[..]));
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            iov.push(IoSlice::new(&part[skip..]));
            skip = 0;
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// Why writing failed; the connection is unusable for sending after it.
    failed: Option<io::ErrorKind>,
    /// Every sender is gone: finish the queue, then shut down.
    senders_gone: bool,
    /// Senders waiting for room in the queue.
    room: Vec<Waker>,
    /// Bytes of the queue not written yet.
    queued_bytes: usize,
}

struct Inner {
    write: OwnedWriteHalf,
    state: Mutex<State>,
    /// Wakes the writer task (a stored permit if it is not waiting yet).
    work: Notify,
    capacity: usize,
    batch: usize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending half of a TCP connection (see the module docs).
pub(crate) struct TcpSink {
    inner: Arc<Inner>,
}

impl TcpSink {
    /// A sink over `write` whose queue holds at most `capacity` frames, and whose writer
    /// task (spawned on the current runtime) gathers up to `batch` frames per `writev`.
    pub(crate) fn spawn(write: OwnedWriteHalf, capacity: usize, batch: usize) -> TcpSink {
        let inner = Arc::new(Inner {
            write,
            state: Mutex::new(State::default()),
            work: Notify::new(),
            capacity: capacity.max(1),
            batch: batch.max(1),
        });
        tokio::spawn(
            writer(inner.clone())
                .instrument(tracing::debug_span!(parent: None, "tcp_direct_writer")),
        );
        TcpSink { inner }
    }
}

impl Drop for TcpSink {
    fn drop(&mut self) {
        self.inner.lock().senders_gone = true;
        self.inner.work.notify_one();
    }
}

/// What a sender sees once writing failed: the connection is gone, as with a queue
/// whose writer ended (the I/O error itself is logged at debug level).
fn closed(_kind: io::ErrorKind) -> TransportError {
    TransportError::Closed
}

impl FrameSink for TcpSink {
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        let header = match frame.header_bytes() {
            Ok(h) => h,
            Err(e) => return Err(TrySendError::Closed(TransportError::BadFrame(e))),
        };
        let mut st = self.inner.lock();
        if let Some(kind) = st.failed {
            return Err(TrySendError::Closed(closed(kind)));
        }
        if !st.queue.is_empty() {
            if st.queue.len() >= self.inner.capacity {
                return Err(TrySendError::Full(frame));
            }
            let pending = Pending {
                header,
                frame,
                written: 0,
            };
            st.queued_bytes += pending.len();
            st.queue.push_back(pending);
            return Ok(());
        }
        // Nothing ahead of it: write it now, in this task.
        let mut pending = Pending {
            header,
            frame,
            written: 0,
        };
        let result = if pending.frame.tail.len() <= 2 {
            // Header, payload and up to two shared chunks: slices on the stack.
            let mut iov = [IoSlice::new(&[]); 4];
            let parts =
                std::iter::once(&pending.header[..]).chain(pending.frame.chunks().map(|c| &c[..]));
            let mut n = 0;
            for (slot, part) in iov.iter_mut().zip(parts) {
                *slot = IoSlice::new(part);
                n += 1;
            }
            self.inner.write.try_write_vectored(&iov[..n])
        } else {
            let mut iov = Vec::with_capacity(2 + pending.frame.tail.len());
            pending.slices(&mut iov);
            self.inner.write.try_write_vectored(&iov)
        };
        match result {
            Ok(n) => pending.written = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                debug!(error = %e, "write failed; connection closed for sending");
                st.failed = Some(e.kind());
                let room = std::mem::take(&mut st.room);
                drop(st);
                room.into_iter().for_each(Waker::wake);
                return Err(TrySendError::Closed(TransportError::Closed));
            }
        }
        if pending.written == pending.len() {
            return Ok(());
        }
        // The socket is full: the writer task finishes this frame when it drains.
        st.queued_bytes += pending.len() - pending.written;
        st.queue.push_back(pending);
        drop(st);
        self.inner.work.notify_one();
        Ok(())
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let mut st = self.inner.lock();
        if let Some(kind) = st.failed {
            return Poll::Ready(Err(closed(kind)));
        }
        if st.queue.len() < self.inner.capacity {
            return Poll::Ready(Ok(()));
        }
        if !st.room.iter().any(|w| w.will_wake(cx.waker())) {
            st.room.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn is_closed(&self) -> bool {
        self.inner.lock().failed.is_some()
    }

    fn queued_bytes(&self) -> usize {
        self.inner.lock().queued_bytes
    }

    fn abort(&self) {
        fail(
            &self.inner,
            io::Error::new(io::ErrorKind::ConnectionAborted, "connection aborted"),
        );
        // Ends the writer task, even one waiting for a socket the peer does not read.
        self.inner.work.notify_one();
    }
}

/// Writes queued frames out whenever a sender could not; ends when every sender is gone
/// and the queue is written (dropping the last reference shuts the write half down), or
/// when a write fails.
async fn writer(inner: Arc<Inner>) {
    let mut iov: Vec<IoSlice<'static>> = Vec::new();
    loop {
        // Wait for work.
        loop {
            {
                let st = inner.lock();
                if st.failed.is_some() || (st.queue.is_empty() && st.senders_gone) {
                    return;
                }
                if !st.queue.is_empty() {
                    break;
                }
            }
            inner.work.notified().await;
        }
        // Write until the queue is empty, waiting for room in the socket as needed.
        loop {
            let (step, room) = write_some(&inner, &mut iov);
            room.into_iter().for_each(Waker::wake);
            match step {
                Step::Drained => break,
                Step::Progress => {}
                Step::Full => {
                    tokio::select! {
                        r = inner.write.writable() => if let Err(e) = r {
                            fail(&inner, e);
                            return;
                        },
                        // An abort (or more work, which changes nothing here).
                        () = inner.work.notified() => {}
                    }
                    if inner.lock().failed.is_some() {
                        return;
                    }
                }
                Step::Failed(e) => {
                    fail(&inner, e);
                    return;
                }
            }
        }
    }
}

/// What one write attempt of the writer task did.
enum Step {
    /// The queue is empty.
    Drained,
    /// Some bytes went out.
    Progress,
    /// The socket is full (`EWOULDBLOCK`).
    Full,
    /// The write failed.
    Failed(io::Error),
}

/// Writes as much of the queue as the socket takes now (up to `batch` frames in one
/// `writev`); returns what happened and the senders to wake (there is room again).
fn write_some(inner: &Inner, iov: &mut Vec<IoSlice<'static>>) -> (Step, Vec<Waker>) {
    let mut st = inner.lock();
    if st.queue.is_empty() {
        return (Step::Drained, std::mem::take(&mut st.room));
    }
    let mut slices = recycle(std::mem::take(iov));
    for p in st.queue.iter().take(inner.batch) {
        p.slices(&mut slices);
    }
    let result = inner.write.try_write_vectored(&slices);
    *iov = recycle(slices);
    match result {
        Ok(mut n) => {
            st.queued_bytes = st.queued_bytes.saturating_sub(n);
            while n > 0 {
                let Some(front) = st.queue.front_mut() else {
                    break;
                };
                let left = front.len() - front.written;
                if n >= left {
                    n -= left;
                    st.queue.pop_front();
                } else {
                    front.written += n;
                    n = 0;
                }
            }
            let room = if st.queue.len() < inner.capacity {
                std::mem::take(&mut st.room)
            } else {
                Vec::new()
            };
            (Step::Progress, room)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => (Step::Full, Vec::new()),
        Err(e) => (Step::Failed(e), Vec::new()),
    }
}

fn fail(inner: &Inner, e: io::Error) {
    debug!(error = %e, "write failed; connection closed for sending");
    let mut st = inner.lock();
    st.failed = Some(e.kind());
    st.queue.clear();
    st.queued_bytes = 0;
    let room = std::mem::take(&mut st.room);
    drop(st);
    room.into_iter().for_each(Waker::wake);
}

/// Empties `v` and hands back its allocation for slices of another lifetime (the
/// standard library's in-place collection reuses it: same layout, empty vector).
fn recycle<'b>(mut v: Vec<IoSlice<'_>>) -> Vec<IoSlice<'b>> {
    v.clear();
    v.into_iter().map(|_| IoSlice::new(&[])).collect()
}
