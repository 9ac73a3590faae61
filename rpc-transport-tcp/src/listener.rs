//! [`TcpListener`]: the server side.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rpc_core::transport::{Connection, Listener};
use rpc_core::{Principal, TransportError};
use socket2::SockRef;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::config::TcpConfig;
use crate::receiver::TcpFrameReceiver;
use crate::tls::TlsServer;
use crate::Stream;

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
    tls: Option<TlsServer>,
    /// TLS handshakes in progress, each in a task of its own (so a silent client holds
    /// up nobody), at most `TlsServer::max_handshakes`.
    handshakes: JoinSet<(HandshakeResult, SocketAddr)>,
    stats: Arc<HandshakeCounters>,
}

/// A finished handshake: the stream and the client's principal (mutual TLS), or why not.
type HandshakeResult = io::Result<(TlsStream<TcpStream>, Option<Principal>)>;

/// Counters of a TLS listener's handshakes ([`TcpListener::handshake_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeStats {
    /// Handshakes that completed: connections handed to the server.
    pub completed: u64,
    /// Handshakes that failed (bad certificate, no ALPN in common, not TLS at all, ...).
    pub failed: u64,
    /// Handshakes cut off by the handshake timeout.
    pub timed_out: u64,
    /// Handshakes in progress now.
    pub in_progress: u64,
}

/// Reads a TLS listener's handshake counters ([`TcpListener::handshake_stats_handle`]).
#[derive(Debug, Clone)]
pub struct HandshakeStatsHandle(Arc<HandshakeCounters>);

impl HandshakeStatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> HandshakeStats {
        let c = &self.0;
        HandshakeStats {
            completed: c.completed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            in_progress: c.in_progress.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct HandshakeCounters {
    completed: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    in_progress: AtomicU64,
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
            tls: None,
            handshakes: JoinSet::new(),
            stats: Arc::default(),
        })
    }

    /// Speaks TLS 1.3 on every connection accepted from now on (see [`TlsServer`]).
    /// With mutual TLS, each connection carries its client's certificate as its
    /// principal ([`crate::certificate_principal`]).
    /// Each handshake runs in a task of its own, bounded by the handshake timeout, and
    /// at most `max_handshakes` run at once; `accept` returns connections whose
    /// handshake completed, and a failed one is counted ([`Self::handshake_stats`]) and
    /// dropped.
    pub fn with_tls(mut self, tls: TlsServer) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Counters of the TLS handshakes (all zero without TLS).
    pub fn handshake_stats(&self) -> HandshakeStats {
        self.handshake_stats_handle().snapshot()
    }

    /// A handle on the handshake counters that stays usable after the listener has
    /// been handed to a server.
    pub fn handshake_stats_handle(&self) -> HandshakeStatsHandle {
        HandshakeStatsHandle(self.stats.clone())
    }

    /// A TLS connection whose handshake completed; starts handshakes meanwhile.
    async fn accept_tls(
        &mut self,
        tls: &TlsServer,
    ) -> Result<Connection<TcpFrameReceiver>, TransportError> {
        loop {
            tokio::select! {
                accepted = self.inner.accept(), if self.handshakes.len() < tls.max_handshakes => {
                    let (stream, peer_addr) = accepted?;
                    debug!(local = %self.local_addr, %peer_addr, "accepted; TLS handshake");
                    // Socket options before the handshake, so it runs with them.
                    self.config.apply_to_stream(SockRef::from(&stream));
                    let tls = tls.clone();
                    let stats = self.stats.clone();
                    stats.in_progress.fetch_add(1, Ordering::Relaxed);
                    self.handshakes.spawn(async move {
                        let result = tls.accept(stream).await;
                        stats.in_progress.fetch_sub(1, Ordering::Relaxed);
                        (result, peer_addr)
                    });
                }
                Some(done) = self.handshakes.join_next() => {
                    let Ok((result, peer_addr)) = done else { continue };
                    match result {
                        Ok((stream, principal)) => {
                            self.stats.completed.fetch_add(1, Ordering::Relaxed);
                            debug!(local = %self.local_addr, %peer_addr, ?principal, "TLS handshake completed");
                            let stream = Stream::Tls(Box::new(stream.into()));
                            let mut conn = crate::open(stream, peer_addr, &self.config);
                            conn.principal = principal;
                            return Ok(conn);
                        }
                        Err(e) => {
                            let counter = match e.kind() {
                                io::ErrorKind::TimedOut => &self.stats.timed_out,
                                _ => &self.stats.failed,
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            debug!(local = %self.local_addr, %peer_addr, error = %e, "TLS handshake failed");
                        }
                    }
                }
            }
        }
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
        if let Some(tls) = self.tls.clone() {
            return self.accept_tls(&tls).await;
        }
        let (stream, peer_addr) = self.inner.accept().await?;
        debug!(local = %self.local_addr, %peer_addr, "accepted");
        // Buffer sizes are inherited from the listening socket (see `with_config`).
        Ok(crate::open(Stream::Plain(stream), peer_addr, &self.config))
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}
