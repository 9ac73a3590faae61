//! [`UdpConfig`]: the knobs of the reliable-UDP driver.

use std::time::Duration;

use socket2::SockRef;
use tracing::{debug, warn};

use crate::proto;

/// Settings shared by [`crate::UdpChannel`] and [`crate::UdpListener`]: the protocol
/// core's [`proto::Config`] plus what the driver itself needs.
///
/// Start from [`UdpConfig::default`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use rpc_transport_udp::proto;
/// use rpc_transport_udp::UdpConfig;
///
/// let config = UdpConfig::default()
///     .protocol(proto::Config::loopback())
///     .max_payload(1 << 20)
///     .connect_timeout(Duration::from_secs(1));
/// assert_eq!(config.max_payload, 1 << 20);
/// assert_eq!(config.recv_buffer_size, Some(4 << 20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpConfig {
    /// The protocol core's settings (datagram size, windows, timers, limits).
    pub protocol: proto::Config,
    /// Largest RPC frame payload accepted from the peer, in bytes; a larger one is a
    /// broken peer and closes the connection. Default 16 MiB. The value used is at most
    /// `protocol.reassembly.max_message` − 56 (a frame and its header are one message).
    pub max_payload: u32,
    /// `SO_SNDBUF`, or `None` for the system default. Default 4 MiB (a burst of a whole
    /// send window must fit). The size the kernel granted is logged at debug level.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF`, or `None` for the system default. Default 4 MiB: datagrams that
    /// arrive while the driver is busy wait here instead of being dropped.
    pub recv_buffer_size: Option<usize>,
    /// Connections accepted by the protocol but not yet taken by
    /// [`rpc_core::transport::Listener::accept`]; beyond it new connections are closed
    /// at once and counted ([`crate::UdpStats::accept_overflow`]). Default 128.
    pub accept_backlog: usize,
    /// Most datagrams read from the socket per wakeup of the driver. Default 64. The
    /// driver asks for no more than that many with each `recvmmsg`, but one GRO buffer
    /// (several datagrams of one sender coalesced by the kernel, at most 64 KiB) counts
    /// as one until it is split, so a wakeup may take up to one call's worth more.
    pub recv_batch: usize,
    /// How long [`crate::UdpChannel`] waits for name resolution and the handshake.
    /// Default 5 s (the protocol's own `peer_timeout` may end the handshake sooner).
    pub connect_timeout: Duration,
    /// Datagrams queued when the socket's send buffer is full (`EWOULDBLOCK`), sent when
    /// it drains; beyond it they are dropped and counted (the protocol retransmits).
    /// Default 1024.
    pub max_pending_out: usize,
    /// Busy-polling: after the driver has handled what the socket had, it retries a
    /// non-blocking receive (yielding to the runtime between tries) for up to this long
    /// before it parks on the socket's readiness. `None` (the default) parks at once.
    ///
    /// Spinning saves the wakeup of a parked thread (on this kind of VM a cross-core
    /// wakeup costs 15–20 µs) at the cost of a core kept busy; timers and queued sends
    /// are served at most this much later. See docs/PERFORMANCE.md. Set it on the
    /// client's channel, the server's listener, or both.
    pub busy_poll: Option<Duration>,
    /// Segmentation offload on send (Linux `UDP_SEGMENT`, GSO): consecutive datagrams
    /// to one peer that are copied whole into the driver's buffer (not gathered) and
    /// have the same length (the last may be shorter) leave in one system call, up to
    /// 64 datagrams and 64 KiB at a time. Used only where the kernel offers it; a GSO
    /// send the kernel or the device refuses is sent again datagram by datagram, and
    /// GSO is not tried again on that socket. Counted in [`crate::UdpStats::gso_sends`].
    /// Default `true`; `false` sends every datagram with its own system call. Receiving
    /// is batched either way (`recvmmsg`, and GRO where the kernel offers it).
    pub gso: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            protocol: proto::Config::default(),
            max_payload: 16 << 20,
            send_buffer_size: Some(4 << 20),
            recv_buffer_size: Some(4 << 20),
            accept_backlog: 128,
            recv_batch: 64,
            connect_timeout: Duration::from_secs(5),
            max_pending_out: 1024,
            busy_poll: None,
            gso: true,
        }
    }
}

impl UdpConfig {
    /// Sets [`UdpConfig::protocol`].
    pub fn protocol(mut self, protocol: proto::Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// Seals every datagram with `security` (sets the protocol's
    /// [`proto::Config::security`]; call it after [`UdpConfig::protocol`], which
    /// replaces the whole protocol configuration). See PROTOCOL.md 9.10.
    ///
    /// ```
    /// use rpc_transport_udp::{PreSharedKey, Security, UdpConfig};
    ///
    /// let psk = PreSharedKey::new("billing", [7; 32]).unwrap();
    /// let client = UdpConfig::default().security(Security::client_psk(psk.clone()));
    /// let server = UdpConfig::default().security(Security::server_psk([psk]));
    /// assert!(client.protocol.security.is_some() && server.protocol.security.is_some());
    /// ```
    pub fn security(mut self, security: proto::Security) -> Self {
        self.protocol.security = Some(security);
        self
    }

    /// Sets [`UdpConfig::max_payload`].
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`UdpConfig::send_buffer_size`].
    pub fn send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer_size = bytes;
        self
    }

    /// Sets [`UdpConfig::recv_buffer_size`].
    pub fn recv_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.recv_buffer_size = bytes;
        self
    }

    /// Sets [`UdpConfig::accept_backlog`] (at least 1).
    pub fn accept_backlog(mut self, connections: usize) -> Self {
        self.accept_backlog = connections.max(1);
        self
    }

    /// Sets [`UdpConfig::busy_poll`] (a zero duration is the same as `None`).
    pub fn busy_poll(mut self, budget: Option<Duration>) -> Self {
        self.busy_poll = budget.filter(|d| !d.is_zero());
        self
    }

    /// Sets [`UdpConfig::gso`].
    pub fn gso(mut self, enabled: bool) -> Self {
        self.gso = enabled;
        self
    }

    /// Sets [`UdpConfig::recv_batch`] (at least 1).
    pub fn recv_batch(mut self, datagrams: usize) -> Self {
        self.recv_batch = datagrams.max(1);
        self
    }

    /// Sets [`UdpConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`UdpConfig::max_pending_out`].
    pub fn max_pending_out(mut self, datagrams: usize) -> Self {
        self.max_pending_out = datagrams;
        self
    }

    /// The payload limit actually enforced: [`UdpConfig::max_payload`], but never more
    /// than what fits in one protocol message with the frame header.
    pub fn effective_max_payload(&self) -> u32 {
        let room = self
            .protocol
            .reassembly
            .max_message
            .saturating_sub(rpc_core::frame::HEADER_LEN as u32);
        self.max_payload.min(room)
    }

    /// Sets the socket buffer sizes. Failures are logged, not returned: the kernel clamps
    /// these values anyway (`net.core.rmem_max`), and a socket with default buffers works.
    pub(crate) fn apply_buffer_sizes(&self, socket: SockRef<'_>) {
        if let Some(size) = self.send_buffer_size {
            match socket.set_send_buffer_size(size) {
                Ok(()) => debug!(
                    requested = size,
                    granted = socket.send_buffer_size().ok(),
                    "SO_SNDBUF"
                ),
                Err(e) => warn!(size, error = %e, "could not set SO_SNDBUF"),
            }
        }
        if let Some(size) = self.recv_buffer_size {
            match socket.set_recv_buffer_size(size) {
                Ok(()) => debug!(
                    requested = size,
                    granted = socket.recv_buffer_size().ok(),
                    "SO_RCVBUF"
                ),
                Err(e) => warn!(size, error = %e, "could not set SO_RCVBUF"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = UdpConfig::default();
        assert_eq!(c.max_payload, 16 << 20);
        assert_eq!(c.send_buffer_size, Some(4 << 20));
        assert_eq!(c.recv_buffer_size, Some(4 << 20));
        assert_eq!(c.accept_backlog, 128);
        assert_eq!(c.recv_batch, 64);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert!(c.gso);
        assert!(!c.clone().gso(false).gso);
        // 16 MiB messages leave 16 MiB - 56 for the payload.
        assert_eq!(c.effective_max_payload(), (16 << 20) - 56);
    }

    #[test]
    fn setters_clamp_zero() {
        let c = UdpConfig::default().accept_backlog(0).recv_batch(0);
        assert_eq!(c.accept_backlog, 1);
        assert_eq!(c.recv_batch, 1);
        assert_eq!(c.max_payload(10).effective_max_payload(), 10);
    }
}
