//! [`TcpConfig`]: the knobs of a TCP connection.

use std::time::Duration;

use rpc_core::transport::DEFAULT_SEND_QUEUE;
use socket2::SockRef;
use tracing::warn;

/// Default [`TcpConfig::frame_timeout`]: 30 s.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings shared by [`crate::TcpChannel`] and [`crate::TcpListener`].
///
/// Start from [`TcpConfig::default`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use rpc_transport_tcp::TcpConfig;
///
/// let config = TcpConfig::default()
///     .max_payload(1 << 20)
///     .connect_timeout(Duration::from_secs(1))
///     .recv_buffer_size(Some(1 << 20));
/// assert_eq!(config.max_payload, 1 << 20);
/// assert!(config.nodelay);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpConfig {
    /// Longest payload accepted from the peer, in bytes; a longer one closes the
    /// connection with `PayloadTooLarge`. Default 16 MiB.
    pub max_payload: u32,
    /// Capacity of the outgoing frame queue; senders wait when it is full.
    /// Default [`DEFAULT_SEND_QUEUE`].
    pub send_queue: usize,
    /// Most frames the writer gathers into one vectored write. Default 64.
    pub write_batch: usize,
    /// `SO_SNDBUF`, or `None` for the system default (and autotuning). Default `None`.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF`, or `None` for the system default (and autotuning). Default `None`.
    pub recv_buffer_size: Option<usize>,
    /// `TCP_NODELAY`: send small frames at once instead of waiting to coalesce them
    /// (the writer already batches). Default `true`.
    pub nodelay: bool,
    /// How long [`crate::TcpChannel`] waits for name resolution and the handshake.
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Initial capacity of a connection's read buffer, and how much room is made when
    /// it runs out. Default 8 KiB.
    pub read_buffer_capacity: usize,
    /// Busy-polling: when a connection's receiver finds no complete frame, it retries a
    /// non-blocking read (yielding to the runtime between tries) for up to this long
    /// before it parks on the socket's readiness. `None` (the default) parks at once.
    ///
    /// Spinning saves the wakeup of a parked thread (on this kind of VM a cross-core
    /// wakeup costs 15–20 µs) at the cost of a core kept busy while a reply is awaited;
    /// see docs/PERFORMANCE.md. Set it on the client's channel, the server's listener, or
    /// both.
    pub busy_poll: Option<Duration>,
    /// Direct writes: a frame is written in the sender's task when nothing is queued
    /// ahead of it (one `writev`, no hand-off); only what the socket cannot take at once
    /// goes to the connection's writer task. `false` (the default) hands every frame to
    /// the writer task through a queue, which gathers whatever accumulated into one
    /// `writev`.
    ///
    /// Measured on loopback (docs/PERFORMANCE.md): with one call in flight direct writes
    /// take about 0.3 µs off a 15 µs round trip; with 32 in flight they cost a system
    /// call per frame instead of per batch and halve throughput (about 105–137k calls/s
    /// against 211k). Turn it on for clients that make one call at a time.
    pub direct_write: bool,
    /// How long a frame may take to arrive completely once its first byte has: a peer
    /// that trickles a frame in (slowloris) or announces a payload it never sends has
    /// its connection closed after it (the receiver fails with
    /// [`std::io::ErrorKind::TimedOut`]; the server counts it in `slow_frames`). `None`
    /// waits forever. Default 30 s. Incomplete payloads hold only what has arrived
    /// (buffers grow as bytes arrive, see [`crate::codec`]).
    pub frame_timeout: Option<Duration>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_payload: rpc_core::frame::DEFAULT_MAX_PAYLOAD,
            send_queue: DEFAULT_SEND_QUEUE,
            write_batch: 64,
            send_buffer_size: None,
            recv_buffer_size: None,
            nodelay: true,
            connect_timeout: Duration::from_secs(5),
            read_buffer_capacity: 8 << 10,
            busy_poll: None,
            direct_write: false,
            frame_timeout: Some(DEFAULT_FRAME_TIMEOUT),
        }
    }
}

impl TcpConfig {
    /// Sets [`TcpConfig::max_payload`].
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`TcpConfig::send_queue`] (at least 1).
    pub fn send_queue(mut self, frames: usize) -> Self {
        self.send_queue = frames.max(1);
        self
    }

    /// Sets [`TcpConfig::write_batch`] (at least 1).
    pub fn write_batch(mut self, frames: usize) -> Self {
        self.write_batch = frames.max(1);
        self
    }

    /// Sets [`TcpConfig::send_buffer_size`].
    pub fn send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer_size = bytes;
        self
    }

    /// Sets [`TcpConfig::recv_buffer_size`].
    pub fn recv_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.recv_buffer_size = bytes;
        self
    }

    /// Sets [`TcpConfig::nodelay`].
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Sets [`TcpConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`TcpConfig::direct_write`].
    pub fn direct_write(mut self, on: bool) -> Self {
        self.direct_write = on;
        self
    }

    /// Sets [`TcpConfig::frame_timeout`] (a zero duration is the same as `None`).
    pub fn frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frame_timeout = timeout.filter(|d| !d.is_zero());
        self
    }

    /// Sets [`TcpConfig::busy_poll`] (a zero duration is the same as `None`).
    pub fn busy_poll(mut self, budget: Option<Duration>) -> Self {
        self.busy_poll = budget.filter(|d| !d.is_zero());
        self
    }

    /// Sets [`TcpConfig::read_buffer_capacity`] (at least one header).
    pub fn read_buffer_capacity(mut self, bytes: usize) -> Self {
        self.read_buffer_capacity = bytes;
        self
    }

    /// The read buffer capacity actually used: never less than a frame header.
    pub(crate) fn read_capacity(&self) -> usize {
        self.read_buffer_capacity.max(rpc_core::frame::HEADER_LEN)
    }

    /// Applies the buffer sizes to a socket (a listening socket passes them on to the
    /// connections it accepts; a client socket should get them before connecting, so the
    /// window scale is chosen with them).
    ///
    /// Failures are logged, not returned: the kernel clamps these values anyway, and a
    /// connection with default buffers still works.
    pub(crate) fn apply_buffer_sizes(&self, socket: SockRef<'_>) {
        if let Some(size) = self.send_buffer_size {
            if let Err(e) = socket.set_send_buffer_size(size) {
                warn!(size, error = %e, "could not set SO_SNDBUF");
            }
        }
        if let Some(size) = self.recv_buffer_size {
            if let Err(e) = socket.set_recv_buffer_size(size) {
                warn!(size, error = %e, "could not set SO_RCVBUF");
            }
        }
    }

    /// Applies the per-connection options to an established socket. Failures are
    /// logged: e.g. macOS refuses `TCP_NODELAY` on a connection the peer has already
    /// reset, and that connection then fails on its first read or write anyway.
    pub(crate) fn apply_to_stream(&self, socket: SockRef<'_>) {
        if let Err(e) = socket.set_nodelay(self.nodelay) {
            warn!(nodelay = self.nodelay, error = %e, "could not set TCP_NODELAY");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = TcpConfig::default();
        assert_eq!(c.max_payload, 16 * 1024 * 1024);
        assert_eq!(c.send_queue, DEFAULT_SEND_QUEUE);
        assert_eq!(c.write_batch, 64);
        assert_eq!(c.send_buffer_size, None);
        assert_eq!(c.recv_buffer_size, None);
        assert!(c.nodelay);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.read_buffer_capacity, 8192);
        assert_eq!(c.frame_timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn setters_clamp_zero() {
        let c = TcpConfig::default()
            .send_queue(0)
            .write_batch(0)
            .read_buffer_capacity(0);
        assert_eq!(c.send_queue, 1);
        assert_eq!(c.write_batch, 1);
        assert_eq!(c.read_capacity(), rpc_core::frame::HEADER_LEN);
    }
}
