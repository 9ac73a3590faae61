//! [`TcpFrameReceiver`]: the receiving half of a TCP connection.

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rpc_core::frame::{Frame, HEADER_LEN};
use rpc_core::transport::FrameReceiver;
use rpc_core::TransportError;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tracing::debug;

use crate::codec::FrameDecoder;

/// Reads frames from a TCP connection; the runtime polls it through [`FrameReceiver`].
///
/// [`recv`](FrameReceiver::recv) returns:
/// * `Ok(Some(frame))`: the next frame, header and CRC checked; its payload is a
///   zero-copy slice of the read buffer.
/// * `Ok(None)`: the peer closed the stream cleanly, on a frame boundary.
/// * `Err(TransportError::BadFrame(_))`: the peer sent a bad frame (bad magic, version,
///   kind or flags, a payload over the limit, a wrong CRC).
/// * `Err(TransportError::Io(_))`: a read failed, or the stream ended in the middle of a
///   frame (the error's kind is then [`io::ErrorKind::UnexpectedEof`]).
///
/// After `Ok(None)` it keeps returning `Ok(None)`; after an error it returns
/// [`TransportError::Closed`] (the stream cannot be resynchronised).
///
/// `recv` is cancellation safe: the buffer and the decoder's progress live in the
/// receiver, so dropping a pending `recv` (e.g. in a `select!`) loses no bytes.
///
/// A frame must arrive completely within the frame timeout
/// ([`crate::TcpConfig::frame_timeout`]) of its first byte; otherwise `recv` fails with
/// an I/O error of kind [`io::ErrorKind::TimedOut`] and the connection is unusable
/// (a slowloris peer that trickles a frame in cannot hold the connection and its buffer).
#[derive(Debug)]
pub struct TcpFrameReceiver {
    read: ReadSide,
    buf: BytesMut,
    decoder: FrameDecoder,
    read_capacity: usize,
    busy_poll: Option<Duration>,
    frame_timeout: Option<Duration>,
    /// When the first byte of the incomplete frame at the front of `buf` arrived.
    frame_started: Option<Instant>,
    state: State,
}

/// Where a receiver reads from: the socket, or the TLS stream over it.
pub(crate) enum ReadSide {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<tokio_rustls::TlsStream<tokio::net::TcpStream>>),
}

impl std::fmt::Debug for ReadSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadSide::Plain(_) => "Plain",
            ReadSide::Tls(_) => "Tls",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Eof,
    Failed,
}

impl TcpFrameReceiver {
    /// A receiver over `read` that accepts payloads up to `max_payload` bytes and starts
    /// with a read buffer of `read_capacity` bytes (at least a header).
    pub fn new(read: OwnedReadHalf, max_payload: u32, read_capacity: usize) -> Self {
        TcpFrameReceiver::from_side(ReadSide::Plain(read), max_payload, read_capacity)
    }

    pub(crate) fn from_side(read: ReadSide, max_payload: u32, read_capacity: usize) -> Self {
        let read_capacity = read_capacity.max(HEADER_LEN);
        TcpFrameReceiver {
            read,
            buf: BytesMut::with_capacity(read_capacity),
            decoder: FrameDecoder::new(max_payload),
            read_capacity,
            busy_poll: None,
            frame_timeout: None,
            frame_started: None,
            state: State::Open,
        }
    }

    /// Fails the connection when a frame has not arrived completely `timeout` after its
    /// first byte; `None` waits forever. See [`crate::TcpConfig::frame_timeout`].
    pub fn with_frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frame_timeout = timeout.filter(|d| !d.is_zero());
        self
    }

    /// Spins for up to `budget` (non-blocking reads, yielding to the runtime between
    /// tries) before parking when no complete frame is buffered; `None` parks at once.
    /// See [`crate::TcpConfig::busy_poll`].
    pub fn with_busy_poll(mut self, budget: Option<Duration>) -> Self {
        self.busy_poll = budget.filter(|d| !d.is_zero());
        self
    }

    /// Reads what the socket has into the buffer: spins first if busy-polling is on,
    /// then waits for readiness. Returns the bytes read (0 at end of stream).
    async fn fill(&mut self) -> io::Result<usize> {
        let read = match &mut self.read {
            ReadSide::Plain(read) => read,
            ReadSide::Tls(read) => return read.read_buf(&mut self.buf).await,
        };
        if let Some(budget) = self.busy_poll {
            let start = Instant::now();
            loop {
                match read.try_read_buf(&mut self.buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if start.elapsed() >= budget {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        read.read_buf(&mut self.buf).await
    }

    async fn next_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                self.frame_started = None;
                return Ok(Some(frame));
            }
            if !self.buf.is_empty() && self.frame_started.is_none() {
                self.frame_started = Some(Instant::now());
            }
            // The decoder has made room for the rest of the current frame; also make sure
            // a read can pick up a good run of small frames at once, rather than a few
            // bytes at the tail of an almost full buffer.
            if self.buf.capacity() - self.buf.len() < (self.read_capacity / 8).max(HEADER_LEN) {
                self.buf.reserve(self.read_capacity);
            }
            let read = match (self.frame_started, self.frame_timeout) {
                (Some(started), Some(timeout)) => {
                    let deadline = tokio::time::Instant::from_std(started + timeout);
                    match tokio::time::timeout_at(deadline, self.fill()).await {
                        Ok(read) => read?,
                        Err(_) => {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "frame incomplete {timeout:?} after its first byte \
                                     ({} bytes buffered)",
                                    self.buf.len()
                                ),
                            )
                            .into())
                        }
                    }
                }
                _ => self.fill().await?,
            };
            if read == 0 {
                if self.buf.is_empty() && self.decoder.is_idle() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed in the middle of a frame ({} bytes buffered)",
                        self.buf.len()
                    ),
                )
                .into());
            }
        }
    }
}

impl FrameReceiver for TcpFrameReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self.state {
            State::Open => {}
            State::Eof => return Ok(None),
            State::Failed => return Err(TransportError::Closed),
        }
        let result = self.next_frame().await;
        match &result {
            Ok(Some(_)) => {}
            Ok(None) => {
                debug!("peer closed the connection");
                self.state = State::Eof;
            }
            Err(e) => {
                debug!(error = %e, "receive failed; connection unusable");
                self.state = State::Failed;
                // Give the memory back now: the runtime may keep the receiver a while.
                self.buf = BytesMut::new();
            }
        }
        result
    }
}
