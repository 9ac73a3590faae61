//! [`Addr`]: where a client channel connects, shared by every transport so that the
//! same string means the same thing over TCP and UDP.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// Where a channel connects: an address, or a `host:port` resolved at each connect (so
/// a reconnect follows DNS changes). Every transport tries the resolved addresses in
/// the order the resolver gives them, until one connects.
///
/// ```
/// use rpc_core::transport::Addr;
///
/// assert_eq!(Addr::from("127.0.0.1:80"), Addr::Socket("127.0.0.1:80".parse().unwrap()));
/// assert_eq!(Addr::from("localhost:80"), Addr::Host("localhost:80".into()));
/// assert_eq!(Addr::from((std::net::Ipv6Addr::LOCALHOST, 80)).to_string(), "[::1]:80");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addr {
    /// A socket address; no name resolution.
    Socket(SocketAddr),
    /// `host:port`, resolved with [`tokio::net::lookup_host`] when connecting.
    Host(String),
}

impl Addr {
    /// The socket addresses to try, in order: the address itself, or what the name
    /// resolves to now. A name that resolves to nothing is an error.
    pub async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            Addr::Socket(a) => Ok(vec![*a]),
            Addr::Host(host) => {
                let all: Vec<SocketAddr> = tokio::net::lookup_host(host.as_str()).await?.collect();
                if all.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{host} resolved to no addresses"),
                    ));
                }
                Ok(all)
            }
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Socket(a) => a.fmt(f),
            Addr::Host(h) => f.write_str(h),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        Addr::Socket(a)
    }
}

impl<I: Into<IpAddr>> From<(I, u16)> for Addr {
    fn from((ip, port): (I, u16)) -> Self {
        Addr::Socket(SocketAddr::new(ip.into(), port))
    }
}

impl From<&str> for Addr {
    /// A literal socket address (`127.0.0.1:80`, `[::1]:80`) is used as is; anything
    /// else is a `host:port` to resolve.
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(a) => Addr::Socket(a),
            Err(_) => Addr::Host(s.to_owned()),
        }
    }
}

impl From<String> for Addr {
    fn from(s: String) -> Self {
        match s.parse() {
            Ok(a) => Addr::Socket(a),
            Err(_) => Addr::Host(s),
        }
    }
}

impl From<&String> for Addr {
    fn from(s: &String) -> Self {
        Addr::from(s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_resolve_to_themselves_and_names_to_every_address() {
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(Addr::from(a).resolve().await.unwrap(), vec![a]);
        let all = Addr::from("localhost:9").resolve().await.unwrap();
        assert!(!all.is_empty() && all.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        assert!(Addr::from("no-such-host.invalid:9")
            .resolve()
            .await
            .is_err());
    }
}
