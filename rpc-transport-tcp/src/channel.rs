//! [`TcpChannel`]: the client side.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rpc_core::transport::{Channel, Connection};
use rpc_core::TransportError;
use socket2::SockRef;
use tokio::net::{TcpSocket, TcpStream};
use tracing::debug;

use crate::config::TcpConfig;
use crate::receiver::TcpFrameReceiver;
use crate::tls::TlsClient;
use crate::Stream;

/// Where a [`TcpChannel`] connects: the address type every transport shares
/// ([`rpc_core::transport::Addr`]).
pub type TcpAddr = rpc_core::transport::Addr;

/// Connects to one server over TCP: the client side of the transport.
///
/// Each [`connect`](Channel::connect) opens a new connection: it resolves the address
/// (if it is a name), dials with [`TcpConfig::connect_timeout`] covering resolution and
/// every attempt, sets `TCP_NODELAY` and the buffer sizes, and spawns the connection's
/// writer task on the current tokio runtime. Failures are
/// [`TransportError::Connect`] naming the address dialled.
///
/// ```
/// use rpc_transport_tcp::{TcpChannel, TcpConfig};
///
/// let by_addr = TcpChannel::new("127.0.0.1:4000");
/// let by_name = TcpChannel::new("localhost:4000").with_config(TcpConfig::default().nodelay(true));
/// # use rpc_core::transport::Channel;
/// assert_eq!(by_name.remote(), "tcp://localhost:4000");
/// # let _ = by_addr;
/// ```
#[derive(Debug, Clone)]
pub struct TcpChannel {
    addr: TcpAddr,
    config: Arc<TcpConfig>,
    tls: Option<TlsClient>,
}

impl TcpChannel {
    /// A channel to `addr`: a [`SocketAddr`], an `(ip, port)` pair, or a string (a
    /// literal address, or `host:port` resolved at connect time).
    pub fn new(addr: impl Into<TcpAddr>) -> Self {
        TcpChannel {
            addr: addr.into(),
            config: Arc::new(TcpConfig::default()),
            tls: None,
        }
    }

    /// Speaks TLS 1.3 on every connection this channel opens (see [`TlsClient`]). The
    /// server is verified as the endpoint's host name (or IP address), which is also
    /// sent as SNI, unless the configuration names another
    /// ([`crate::TlsClientBuilder::server_name`]). [`TcpConfig::connect_timeout`] covers
    /// the handshake too. A failed handshake is a [`TransportError::Connect`] whose
    /// source names the reason (unknown issuer, expired certificate, name mismatch,
    /// refused client certificate, ...).
    pub fn with_tls(mut self, tls: TlsClient) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Uses `config` for the connections this channel opens.
    pub fn with_config(mut self, config: TcpConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }

    /// The address this channel connects to.
    pub fn addr(&self) -> &TcpAddr {
        &self.addr
    }

    async fn dial(&self) -> io::Result<TcpStream> {
        let mut last_err = None;
        for a in self.addr.resolve().await? {
            match self.dial_one(a).await {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    debug!(addr = %a, error = %e, "connect attempt failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no address to connect to")))
    }

    async fn dial_one(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Before connecting, so the window scale offered in the SYN accounts for them.
        self.config.apply_buffer_sizes(SockRef::from(&socket));
        socket.connect(addr).await
    }
}

impl Channel for TcpChannel {
    type Receiver = TcpFrameReceiver;

    async fn connect(&self) -> Result<Connection<TcpFrameReceiver>, TransportError> {
        let connect_err = |source: io::Error| TransportError::Connect {
            addr: self.addr.to_string(),
            source: Arc::new(source),
        };
        let stream = tokio::time::timeout(self.config.connect_timeout, async {
            let stream = self.dial().await?;
            match &self.tls {
                None => Ok(Stream::Plain(stream)),
                Some(tls) => {
                    let tls = tls.connect(&host_of(&self.addr), stream).await?;
                    Ok(Stream::Tls(Box::new(tls.into())))
                }
            }
        })
        .await
        .map_err(|_| {
            connect_err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.config.connect_timeout),
            ))
        })?
        .map_err(connect_err)?;
        let peer_addr = match &stream {
            Stream::Plain(s) => s.peer_addr(),
            Stream::Tls(s) => s.get_ref().0.peer_addr(),
        }
        .map_err(connect_err)?;
        debug!(remote = %self.addr, %peer_addr, tls = self.tls.is_some(), "connected");
        Ok(crate::open(stream, peer_addr, &self.config))
    }

    /// `tcp://` and the address, as UDP channels say `udp://`.
    fn remote(&self) -> String {
        format!("tcp://{}", self.addr)
    }
}

/// The host part of an address, as TLS verifies it: a name without its port, or the
/// IP address.
fn host_of(addr: &TcpAddr) -> String {
    match addr {
        TcpAddr::Socket(a) => a.ip().to_string(),
        TcpAddr::Host(h) => {
            let host = h.rsplit_once(':').map_or(h.as_str(), |(host, _)| host);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn addresses() {
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(TcpAddr::from("127.0.0.1:80"), TcpAddr::Socket(a));
        assert_eq!(TcpAddr::from((Ipv4Addr::LOCALHOST, 80)), TcpAddr::Socket(a));
        assert_eq!(
            TcpAddr::from(String::from("[::1]:9")).to_string(),
            "[::1]:9"
        );
        assert_eq!(
            TcpAddr::from("example.invalid:80"),
            TcpAddr::Host("example.invalid:80".into())
        );
        assert_eq!(TcpChannel::new(a).remote(), "tcp://127.0.0.1:80");
        assert_eq!(host_of(&TcpAddr::Socket(a)), "127.0.0.1");
        assert_eq!(host_of(&TcpAddr::from("localhost:4000")), "localhost");
        assert_eq!(host_of(&TcpAddr::from("[::1]:9")), "::1");
    }
}
