//! [`UdpChannel`]: the client side.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rpc_core::transport::{Channel, Connection};
use rpc_core::TransportError;
use tokio::sync::oneshot;
use tracing::debug;

use super::{
    bind_socket, client_bind_addr, new_connection, random_u64, spawn_driver, Shared, UdpConfig,
    UdpFrameReceiver, UdpStatsHandle,
};
use crate::proto::Endpoint;

/// Where a [`UdpChannel`] connects: the address type every transport shares
/// ([`rpc_core::transport::Addr`]).
pub type UdpAddr = rpc_core::transport::Addr;

/// Connects to one server over reliable UDP: the client side of the transport.
///
/// Each [`connect`](Channel::connect) binds a fresh socket (the loopback address for a
/// loopback server, the unspecified address of the server's family otherwise; any port),
/// `connect(2)`s it to the server (so only the server's datagrams are received, and an
/// ICMP port unreachable fails the connection at once), spawns the socket's driver task
/// on the current tokio runtime and runs the protocol's handshake. The protocol
/// retransmits the handshake and gives up after `peer_timeout`;
/// [`UdpConfig::connect_timeout`] bounds the whole attempt, name resolution included.
/// Failures are [`TransportError::Connect`] naming the address dialled.
///
/// All connections of one channel share an incarnation (random per channel), and their
/// counters are read through [`UdpChannel::stats_handle`].
///
/// ```
/// use rpc_transport_udp::{UdpChannel, UdpConfig};
/// # use rpc_core::transport::Channel;
///
/// let channel = UdpChannel::new("localhost:4000").with_config(UdpConfig::default());
/// assert_eq!(channel.remote(), "udp://localhost:4000");
/// ```
#[derive(Debug, Clone)]
pub struct UdpChannel {
    addr: UdpAddr,
    config: Arc<UdpConfig>,
    incarnation: u64,
    stats: UdpStatsHandle,
}

impl UdpChannel {
    /// A channel to `addr`: a [`SocketAddr`], an `(ip, port)` pair, or a string (a
    /// literal address, or `host:port` resolved at connect time).
    pub fn new(addr: impl Into<UdpAddr>) -> Self {
        UdpChannel {
            addr: addr.into(),
            config: Arc::new(UdpConfig::default()),
            incarnation: random_u64(),
            stats: UdpStatsHandle::new(),
        }
    }

    /// Uses `config` for the connections this channel opens.
    pub fn with_config(mut self, config: UdpConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &UdpConfig {
        &self.config
    }

    /// The address this channel connects to.
    pub fn addr(&self) -> &UdpAddr {
        &self.addr
    }

    /// The incarnation this channel's connections announce to the server.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Counters of every socket this channel opened (and its clones open).
    pub fn stats_handle(&self) -> UdpStatsHandle {
        self.stats.clone()
    }

    /// Tries every address the channel's address resolves to, in order (as TCP does),
    /// until a handshake completes.
    async fn dial(&self) -> io::Result<Connection<UdpFrameReceiver>> {
        let mut last_err = None;
        for peer in self.addr.resolve().await? {
            match self.dial_one(peer).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    debug!(addr = %peer, error = %e, "connect attempt failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no address to connect to")))
    }

    async fn dial_one(&self, peer: SocketAddr) -> io::Result<Connection<UdpFrameReceiver>> {
        let config = &*self.config;
        let socket = bind_socket(client_bind_addr(peer), Some(peer), config)?;
        let mut endpoint = Endpoint::new(config.protocol.clone(), self.incarnation, false);
        let now = Instant::now();
        let h = endpoint.connect(peer, now);
        let shared = Shared::new(
            socket,
            endpoint,
            config,
            Some(peer),
            None,
            self.stats.registry().clone(),
        )?;
        let (tx, rx) = oneshot::channel();
        // If this future is dropped before the handshake completes, dropping `connection`
        // (its sink) closes the connection and the driver task ends.
        let connection = {
            let mut st = shared.lock();
            let (connection, cs) = new_connection(&shared, &st, h, peer, Some(tx));
            st.conns.insert(h, cs);
            // The Init goes out now, from this task.
            shared.process_and_release(st);
            connection
        };
        spawn_driver(shared.clone());
        match rx.await {
            Ok(Ok(())) => {
                debug!(local = %shared.local_addr, %peer, "connected");
                Ok(connection)
            }
            Ok(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
            Err(_) => Err(io::Error::other("the connection's driver ended")),
        }
    }
}

impl Channel for UdpChannel {
    type Receiver = UdpFrameReceiver;

    async fn connect(&self) -> Result<Connection<UdpFrameReceiver>, TransportError> {
        let connect_err = |source: io::Error| TransportError::Connect {
            addr: self.addr.to_string(),
            source: Arc::new(source),
        };
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, self.dial()).await {
            Ok(result) => result.map_err(connect_err),
            Err(_) => Err(connect_err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no handshake within {timeout:?}"),
            ))),
        }
    }

    fn remote(&self) -> String {
        format!("udp://{}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn addresses() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(UdpAddr::from("127.0.0.1:80"), UdpAddr::Socket(a));
        assert_eq!(UdpAddr::from((Ipv4Addr::LOCALHOST, 80)), UdpAddr::Socket(a));
        assert_eq!(
            UdpAddr::from(String::from("[::1]:9")).to_string(),
            "[::1]:9"
        );
        assert_eq!(
            UdpAddr::from("example.invalid:80"),
            UdpAddr::Host("example.invalid:80".into())
        );
        assert_eq!(UdpChannel::new(a).remote(), "udp://127.0.0.1:80");
        assert_ne!(
            UdpChannel::new(a).incarnation(),
            UdpChannel::new(a).incarnation()
        );
    }
}
