//! [`TcpListener`]: the server side.

use std::net::SocketAddr;

use rpc_core::transport::{Connection, Listener};
use rpc_core::TransportError;
use socket2::SockRef;
use tokio::net::ToSocketAddrs;
use tracing::debug;

use crate::config::TcpConfig;
use crate::receiver::TcpFrameReceiver;

/// Accepts TCP connections from clients: the server side of the transport.
///
/// [`accept`](Listener::accept) sets `TCP_NODELAY` on each new connection, spawns its
/// writer task on the current tokio runtime and returns it as a [`Connection`].
///
/// # Accept errors
///
/// A failed `accept(2)` — `EMFILE`/`ENFILE` (out of file descriptors), `ENOBUFS`,
/// `ECONNABORTED` (the client gave up while queued) — is returned as
/// [`TransportError::Io`]; the listener stays usable and the next `accept` may succeed.
/// Running out of descriptors is not transient within microseconds and the pending
/// connection stays queued, so a caller looping on `accept` should pause briefly after
/// such an error rather than spin.
#[derive(Debug)]
pub struct TcpListener {
    inner: tokio::net::TcpListener,
    local_addr: SocketAddr,
    config: TcpConfig,
}

impl TcpListener {
    /// Binds to `addr` (e.g. `"0.0.0.0:4000"`, or port 0 for any free port) with the
    /// default [`TcpConfig`].
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<TcpListener, TransportError> {
        let inner = tokio::net::TcpListener::bind(addr).await?;
        TcpListener::from_tokio(inner)
    }

    /// Wraps a listener that is already bound (e.g. one inherited through socket
    /// activation or configured beyond what [`TcpConfig`] covers).
    pub fn from_tokio(inner: tokio::net::TcpListener) -> Result<TcpListener, TransportError> {
        let local_addr = inner.local_addr()?;
        Ok(TcpListener {
            inner,
            local_addr,
            config: TcpConfig::default(),
        })
    }

    /// Uses `config` for the connections accepted from now on. Buffer sizes are also set
    /// on the listening socket, which passes them on to connections it accepts (the
    /// window scale is chosen during the handshake, before `accept` returns).
    pub fn with_config(mut self, config: TcpConfig) -> Self {
        config.apply_buffer_sizes(SockRef::from(&self.inner));
        self.config = config;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }
}

impl Listener for TcpListener {
    type Receiver = TcpFrameReceiver;

    async fn accept(&mut self) -> Result<Connection<TcpFrameReceiver>, TransportError> {
        let (stream, peer_addr) = self.inner.accept().await?;
        debug!(local = %self.local_addr, %peer_addr, "accepted");
        // Buffer sizes are inherited from the listening socket (see `with_config`).
        Ok(crate::open(stream, peer_addr, &self.config))
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}
