//! One connection's two halves: [`ConnSink`] (behind the runtime's `FrameSender`) and
//! [`UdpFrameReceiver`].

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameError, HEADER_LEN};
use rpc_core::transport::{FrameReceiver, FrameSink, TrySendError};
use rpc_core::TransportError;
use tracing::debug;

use super::Shared;
use crate::proto::connection::GATHER_MIN;
use crate::proto::{Chain, ConnectionHandle, SendError};

/// What both halves of a connection and the driver share without the lock.
#[derive(Debug, Default)]
pub(super) struct ConnShared {
    /// Why the connection closed; set once, under the socket's lock.
    closed: OnceLock<TransportError>,
    /// The failure the receiver reports once (after the queued messages), if any.
    report: Mutex<Option<TransportError>>,
}

impl ConnShared {
    pub(super) fn mark_closed(&self, e: TransportError) {
        let _ = self.closed.set(e);
    }

    pub(super) fn report_once(&self, e: TransportError) {
        *self.report.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
    }

    fn take_report(&self) -> Option<TransportError> {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn closed(&self) -> Option<TransportError> {
        self.closed.get().cloned()
    }

    fn is_closed(&self) -> bool {
        self.closed.get().is_some()
    }
}

/// The sending half: takes each frame in the sender's task, hands it to the endpoint and
/// writes the resulting datagrams to the socket at once (no writer task, no hand-off).
/// Shared by every clone of the connection's `FrameSender`; dropping the last one closes
/// the connection.
pub(super) struct ConnSink {
    shared: Arc<Shared>,
    h: ConnectionHandle,
    conn: Arc<ConnShared>,
}

impl ConnSink {
    pub(super) fn new(
        shared: Arc<Shared>,
        h: ConnectionHandle,
        conn: Arc<ConnShared>,
    ) -> Arc<Self> {
        Arc::new(ConnSink { shared, h, conn })
    }
}

impl FrameSink for ConnSink {
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        if let Some(e) = self.conn.closed() {
            return Err(TrySendError::Closed(e));
        }
        // A small frame: header and payload in one message (one copy, outside the lock).
        // A large one: the header and the payload's chunks as they are (the caller's
        // buffers, with shared descriptors), each fragment gathered by `sendmsg`.
        let msg = if frame.payload_len() < GATHER_MIN {
            match frame.to_bytes() {
                Ok(msg) => Chain::from(msg),
                Err(e) => return Err(TrySendError::Closed(TransportError::BadFrame(e))),
            }
        } else {
            match frame.header_bytes() {
                Ok(header) => Chain::from_chunks(
                    std::iter::once(Bytes::copy_from_slice(&header)).chain(frame.chunks().cloned()),
                ),
                Err(e) => return Err(TrySendError::Closed(TransportError::BadFrame(e))),
            }
        };
        let mut st = self.shared.lock();
        match st.endpoint.send(self.h, msg) {
            Ok(()) => {}
            Err(SendError::Full(_)) => return Err(TrySendError::Full(frame)),
            Err(SendError::TooLarge(_)) => {
                let max = st.endpoint.config().reassembly.max_message;
                return Err(TrySendError::Closed(TransportError::BadFrame(
                    FrameError::PayloadTooLarge {
                        len: frame.payload_len() as u64,
                        max: max.saturating_sub(HEADER_LEN as u32),
                    },
                )));
            }
            Err(SendError::Closed(_)) => {
                return Err(TrySendError::Closed(
                    self.conn.closed().unwrap_or(TransportError::Closed),
                ))
            }
        }
        self.shared.process_and_release(st);
        Ok(())
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let mut st = self.shared.lock();
        if let Some(e) = self.conn.closed() {
            return Poll::Ready(Err(e));
        }
        if st.endpoint.is_writable(self.h) {
            return Poll::Ready(Ok(()));
        }
        match st.conns.get_mut(&self.h) {
            Some(cs) => {
                if !cs.writers.iter().any(|w| w.will_wake(cx.waker())) {
                    cs.writers.push(cx.waker().clone());
                }
                Poll::Pending
            }
            None => Poll::Ready(Err(TransportError::Closed)),
        }
    }

    fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }
}

impl Drop for ConnSink {
    /// Every sender is gone: nothing more can be sent, so the connection is over (as a
    /// TCP connection whose writer shut down). Close it; the peer gets a Close datagram
    /// and this side's receiver the end of the stream.
    fn drop(&mut self) {
        if self.conn.is_closed() {
            return;
        }
        let mut st = self.shared.lock();
        st.endpoint.close(self.h);
        self.shared.process_and_release(st);
    }
}

/// The receiving half of a reliable-UDP connection, polled by the runtime's own task.
///
/// Complete messages (one RPC frame each) wait in the protocol core's bounded queue of
/// the connection ([`crate::proto::Endpoint::poll_message`], at most
/// `max_undelivered`; beyond it the connection refuses new data until the queue is half
/// empty); `recv` takes one and validates it ([`Frame::parse`]: header, length, CRC) in
/// the caller's task. A bad frame inside a reliable message means a broken peer: `recv`
/// returns [`TransportError::BadFrame`] and the connection is closed. After a clean close
/// (by either side) `recv` returns `Ok(None)` once the queue is empty; after a failure
/// (peer unreachable, reset, restarted, idle) it returns the error once, then `Ok(None)`.
pub struct UdpFrameReceiver {
    shared: Arc<Shared>,
    h: ConnectionHandle,
    conn: Arc<ConnShared>,
    max_payload: u32,
}

impl fmt::Debug for UdpFrameReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpFrameReceiver")
            .field("local", &self.shared.local_addr)
            .field("connection", &self.h)
            .field("closed", &self.conn.is_closed())
            .finish()
    }
}

/// What one poll of the receiver found.
enum Polled {
    Message(Bytes),
    Failed(TransportError),
    End,
}

impl UdpFrameReceiver {
    pub(super) fn new(
        shared: Arc<Shared>,
        h: ConnectionHandle,
        conn: Arc<ConnShared>,
        max_payload: u32,
    ) -> Self {
        UdpFrameReceiver {
            shared,
            h,
            conn,
            max_payload,
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Polled> {
        let mut st = self.shared.lock();
        let before = st.endpoint.connection_count();
        if let Some(m) = st.endpoint.poll_message(self.h) {
            if st.endpoint.connection_count() != before {
                // Taking the last message freed a closed connection: the driver may
                // have nothing left to drive.
                self.shared.process_and_release(st);
            }
            return Poll::Ready(Polled::Message(m));
        }
        if self.conn.is_closed() {
            drop(st);
            return Poll::Ready(match self.conn.take_report() {
                Some(e) => Polled::Failed(e),
                None => Polled::End,
            });
        }
        match st.conns.get_mut(&self.h) {
            Some(cs) => {
                if !cs.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    cs.reader = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            None => Poll::Ready(Polled::End),
        }
    }

    fn bad_frame(&self, e: &FrameError) {
        debug!(connection = ?self.h, error = %e, "bad frame in a reliable message; closing");
        let mut st = self.shared.lock();
        st.counters.bad_frames += 1;
        // Code 3, protocol error: the peer sent a message that is not a frame.
        st.endpoint
            .close_with(self.h, crate::proto::CloseReason::ProtocolError);
        self.shared.process_and_release(st);
    }
}

impl FrameReceiver for UdpFrameReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        let bytes = match std::future::poll_fn(|cx| self.poll_next(cx)).await {
            Polled::Message(m) => m,
            Polled::Failed(e) => return Err(e),
            Polled::End => return Ok(None),
        };
        match Frame::parse(&bytes, self.max_payload) {
            Ok(frame) => Ok(Some(frame)),
            Err(e) => {
                self.bad_frame(&e);
                Err(TransportError::BadFrame(e))
            }
        }
    }
}

impl Drop for UdpFrameReceiver {
    fn drop(&mut self) {
        // Nobody reads any more: the queued messages are dropped, and so is every message
        // the connection completes from now on (it must not stay paused: the peer would
        // retransmit in vain).
        let mut st = self.shared.lock();
        if let Some(cs) = st.conns.get_mut(&self.h) {
            cs.reader = None;
        }
        st.endpoint.discard_messages(self.h);
        self.shared.process_and_release(st);
    }
}
