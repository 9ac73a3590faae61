//! [`UdpListener`]: the server side.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rpc_core::transport::{Connection, Listener};
use rpc_core::TransportError;
use socket2::SockRef;
use tokio::net::ToSocketAddrs;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    bind_socket, random_u64, spawn_driver, Shared, UdpConfig, UdpFrameReceiver, UdpStatsHandle,
};
use crate::proto::Endpoint;

/// Accepts reliable-UDP connections from clients: the server side of the transport.
///
/// One socket and one driver task (spawned on the current tokio runtime) serve every
/// connection. The protocol accepts a handshake as soon as it arrives; the connection
/// then waits in a queue of [`UdpConfig::accept_backlog`] connections for
/// [`accept`](Listener::accept) (beyond it, new connections are closed and counted in
/// [`crate::UdpStats::accept_overflow`]).
///
/// Dropping the listener stops accepting (new handshakes are answered with a reset);
/// connections already accepted carry on until they are closed, as with TCP, so a
/// server's graceful shutdown can still answer the calls in flight. The socket is
/// closed when the last of them is.
pub struct UdpListener {
    shared: Arc<Shared>,
    accept_rx: mpsc::Receiver<Connection<UdpFrameReceiver>>,
    local_addr: SocketAddr,
    stats: UdpStatsHandle,
}

impl fmt::Debug for UdpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpListener")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl UdpListener {
    /// Binds to `addr` (e.g. `"0.0.0.0:4000"`, or port 0 for any free port) with the
    /// default [`UdpConfig`].
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<UdpListener, TransportError> {
        UdpListener::bind_with(addr, UdpConfig::default()).await
    }

    /// Binds to `addr` with `config`. Every address `addr` resolves to is tried in turn.
    pub async fn bind_with(
        addr: impl ToSocketAddrs,
        config: UdpConfig,
    ) -> Result<UdpListener, TransportError> {
        let mut last_err = None;
        for a in tokio::net::lookup_host(addr).await? {
            match UdpListener::bind_addr(a, &config) {
                Ok(listener) => return Ok(listener),
                Err(e) => {
                    debug!(addr = %a, error = %e, "bind failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing")
            })
            .into())
    }

    fn bind_addr(addr: SocketAddr, config: &UdpConfig) -> io::Result<UdpListener> {
        let socket = bind_socket(addr, None, config)?;
        let endpoint = Endpoint::new(config.protocol.clone(), random_u64(), true);
        let (tx, accept_rx) = mpsc::channel(config.accept_backlog.max(1));
        let stats = UdpStatsHandle::new();
        let shared = Shared::new(
            socket,
            endpoint,
            config,
            None,
            Some(tx),
            stats.registry().clone(),
        )?;
        let local_addr = shared.local_addr;
        spawn_driver(shared.clone());
        debug!(%local_addr, "listening");
        Ok(UdpListener {
            shared,
            accept_rx,
            local_addr,
            stats,
        })
    }

    /// Uses `config` from now on. Meant to be called right after [`UdpListener::bind`]:
    /// the protocol settings replace the endpoint only while it has no connection yet
    /// (otherwise they are ignored, with a warning); buffer sizes and the driver's
    /// settings always apply. [`UdpListener::bind_with`] avoids the question.
    pub fn with_config(mut self, config: UdpConfig) -> Self {
        config.apply_buffer_sizes(SockRef::from(&self.shared.socket));
        let mut st = self.shared.lock();
        if st.endpoint.connection_count() == 0 {
            let incarnation = st.endpoint.incarnation();
            st.endpoint = Endpoint::new(config.protocol.clone(), incarnation, true);
            st.buf = Vec::with_capacity(config.protocol.max_datagram);
        } else {
            warn!("UdpListener::with_config after connections arrived: protocol settings ignored");
        }
        st.max_payload = config.effective_max_payload();
        st.recv_batch = config.recv_batch.max(1);
        st.busy_poll = config.busy_poll;
        st.max_pending_out = config.max_pending_out;
        if self.accept_rx.is_empty() && st.conns.is_empty() {
            let (tx, rx) = mpsc::channel(config.accept_backlog.max(1));
            st.accept_tx = Some(tx);
            self.accept_rx = rx;
        }
        drop(st);
        self
    }

    /// Counters of the listener's socket (they stay readable after it closes).
    pub fn stats_handle(&self) -> UdpStatsHandle {
        self.stats.clone()
    }
}

impl Listener for UdpListener {
    type Receiver = UdpFrameReceiver;

    async fn accept(&mut self) -> Result<Connection<UdpFrameReceiver>, TransportError> {
        self.accept_rx.recv().await.ok_or(TransportError::Closed)
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for UdpListener {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.endpoint.set_accept(false);
        st.accept_tx = None;
        // The driver may have nothing left to do: let it look.
        self.shared.process_and_release(st);
        self.shared.notify.notify_one();
        // Connections still queued for `accept` are dropped with `accept_rx`, which
        // closes them.
    }
}
