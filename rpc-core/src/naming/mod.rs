//! Naming: calling a service by name instead of by address.
//!
//! A [`Resolver`] turns a service name and version into a changing set of
//! [`Endpoint`]s (`udp://host:port` or `tcp://host:port`; `onc+tcp://` and `onc+udp://`
//! for ONC RPC peers), published through a `tokio::sync::watch` channel that always
//! holds the latest known set. Built in: [`StaticResolver`] (a fixed list),
//! [`DnsResolver`] (a host name re-resolved periodically), the framework's own registry
//! ([`registry`]), and etcd (feature `etcd`); rpcbind, for ONC RPC programs, is
//! `rpc_transport_tcp::rpcbind::RpcbindResolver`.
//! A balanced [`crate::Client`] follows such a channel and spreads calls over the
//! endpoints.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

#[cfg(feature = "etcd")]
pub mod etcd;

pub mod registry;

/// The transport an endpoint is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// The framework's reliable UDP (`udp://`).
    Udp,
    /// TCP (`tcp://`).
    Tcp,
    /// ONC RPC (RFC 5531) over TCP, with record marking (`onc+tcp://`).
    OncTcp,
    /// ONC RPC (RFC 5531) over UDP, one message per datagram (`onc+udp://`).
    OncUdp,
}

impl Scheme {
    /// `"udp"`, `"tcp"`, `"onc+tcp"` or `"onc+udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Udp => "udp",
            Scheme::Tcp => "tcp",
            Scheme::OncTcp => "onc+tcp",
            Scheme::OncUdp => "onc+udp",
        }
    }
}

/// One instance of a service: where it is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Free-form metadata the instance registered (zone, weight, ...).
    pub metadata: BTreeMap<String, String>,
}

impl Endpoint {
    /// An endpoint without metadata.
    pub fn new(scheme: Scheme, host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            scheme,
            host: host.into(),
            port,
            metadata: BTreeMap::new(),
        }
    }

    /// An endpoint for a socket address.
    pub fn from_addr(scheme: Scheme, addr: SocketAddr) -> Self {
        Endpoint::new(scheme, addr.ip().to_string(), addr.port())
    }

    /// `host:port` (IPv6 hosts in brackets), for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The address, if the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.authority().parse().ok()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

impl FromStr for Endpoint {
    type Err = ResolveError;

    /// Parses `udp://host:port`, `tcp://host:port`, `onc+tcp://host:port` or
    /// `onc+udp://host:port` (`[v6]:port` for IPv6).
    fn from_str(s: &str) -> Result<Self, ResolveError> {
        let bad = |why: &str| ResolveError::BadEndpoint {
            endpoint: s.to_owned(),
            reason: why.to_owned(),
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected udp://, tcp://, onc+tcp:// or onc+udp://"))?;
        let scheme = match scheme {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "onc+tcp" => Scheme::OncTcp,
            "onc+udp" => Scheme::OncUdp,
            _ => return Err(bad("unknown scheme; expected udp, tcp, onc+tcp or onc+udp")),
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in IPv6 host"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("expected :port"))?;
            (host, port)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("port is not a number 0..=65535"))?;
        Ok(Endpoint::new(scheme, host, port))
    }
}

/// Why a name could not be resolved.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// An endpoint string is malformed.
    #[error("bad endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The string.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The name service could not be reached or answered with an error.
    #[error("name service error: {0}")]
    Service(String),
    /// The name is not known.
    #[error("no endpoints for {name} version {version}")]
    NotFound {
        /// The name.
        name: String,
        /// The version.
        version: u32,
    },
}

/// Turns a service name and version into a changing set of endpoints.
pub trait Resolver: Send + Sync + 'static {
    /// Starts following `name` (`version`): the receiver holds the latest known set of
    /// endpoints, sorted and without duplicates, and changes when the set changes. The
    /// first value is already resolved when this returns. Following stops when every
    /// receiver is dropped.
    fn watch(
        &self,
        name: &str,
        version: u32,
    ) -> impl Future<Output = Result<watch::Receiver<Vec<Endpoint>>, ResolveError>> + Send;
}

/// How often [`DnsResolver`] re-resolves by default (std's resolver exposes no TTLs).
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

/// A fixed set of endpoints, whatever the name.
#[derive(Debug, Clone)]
pub struct StaticResolver {
    endpoints: Vec<Endpoint>,
}

impl StaticResolver {
    /// Resolves every name to `endpoints`.
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        let mut endpoints: Vec<Endpoint> = endpoints.into_iter().collect();
        endpoints.sort();
        endpoints.dedup();
        StaticResolver { endpoints }
    }

    /// Parses `udp://…`/`tcp://…` strings.
    pub fn parse<'a>(urls: impl IntoIterator<Item = &'a str>) -> Result<Self, ResolveError> {
        let endpoints = urls
            .into_iter()
            .map(str::parse)
            .collect::<Result<Vec<Endpoint>, _>>()?;
        Ok(StaticResolver::new(endpoints))
    }
}

impl Resolver for StaticResolver {
    async fn watch(
        &self,
        _name: &str,
        _version: u32,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ResolveError> {
        // The sender is dropped at once: the value never changes.
        Ok(watch::channel(self.endpoints.clone()).1)
    }
}

/// Resolves a DNS host name to its addresses (every address one endpoint with the given
/// port and scheme), again every `refresh` while someone follows it.
#[derive(Debug, Clone)]
pub struct DnsResolver {
    host: String,
    port: u16,
    scheme: Scheme,
    refresh: Duration,
}

impl DnsResolver {
    /// A resolver for `host:port` over `scheme`, refreshed every [`DEFAULT_DNS_REFRESH`].
    pub fn new(scheme: Scheme, host: impl Into<String>, port: u16) -> Self {
        DnsResolver {
            host: host.into(),
            port,
            scheme,
            refresh: DEFAULT_DNS_REFRESH,
        }
    }

    /// Sets how often the name is resolved again.
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every.max(Duration::from_millis(10));
        self
    }

    async fn lookup(&self) -> Result<Vec<Endpoint>, ResolveError> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| ResolveError::Service(format!("DNS lookup of {}: {e}", self.host)))?;
        let mut endpoints: Vec<Endpoint> =
            addrs.map(|a| Endpoint::from_addr(self.scheme, a)).collect();
        endpoints.sort();
        endpoints.dedup();
        Ok(endpoints)
    }
}

impl Resolver for DnsResolver {
    async fn watch(
        &self,
        name: &str,
        version: u32,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ResolveError> {
        let me = self.clone();
        // DNS hiccups should not empty a working client: an empty answer keeps the set.
        let empty = EmptyAnswer::KeepsTheSet;
        refreshing_watch(name, version, self.refresh, empty, move || {
            let me = me.clone();
            async move { me.lookup().await }
        })
        .await
    }
}

/// What a later empty answer does in [`refreshing_watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyAnswer {
    /// The last set stays (a lookup that can answer "none" by mistake: DNS).
    KeepsTheSet,
    /// It replaces the set (the source is authoritative: every server unregistered).
    ReplacesTheSet,
}

/// A watch over `lookup`, repeated every `refresh` for as long as a receiver lives: what
/// a polling [`Resolver::watch`] returns.
///
/// The first answer must name at least one endpoint ([`ResolveError::NotFound`]
/// otherwise); a later one replaces the set when it differs (receivers see a change
/// only then), an empty one as `empty` says; a failed lookup keeps the last set (logged
/// at debug level).
pub async fn refreshing_watch<F, Fut>(
    name: &str,
    version: u32,
    refresh: Duration,
    empty: EmptyAnswer,
    mut lookup: F,
) -> Result<watch::Receiver<Vec<Endpoint>>, ResolveError>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<Endpoint>, ResolveError>> + Send,
{
    let first = lookup().await?;
    if first.is_empty() {
        return Err(ResolveError::NotFound {
            name: name.to_owned(),
            version,
        });
    }
    let (tx, rx) = watch::channel(first);
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(refresh) => {}
            }
            match lookup().await {
                Ok(set) if set.is_empty() && empty == EmptyAnswer::KeepsTheSet => {}
                Ok(set) => {
                    tx.send_if_modified(|cur| {
                        let changed = *cur != set;
                        if changed {
                            *cur = set;
                        }
                        changed
                    });
                }
                Err(e) => {
                    tracing::debug!(%name, error = %e, "refreshing the endpoints failed; keeping the last set")
                }
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print() {
        let e: Endpoint = "udp://127.0.0.1:7000".parse().unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Udp, "127.0.0.1", 7000)
        );
        assert_eq!(e.to_string(), "udp://127.0.0.1:7000");
        for text in ["onc+tcp://127.0.0.1:2049", "onc+udp://10.0.0.1:111"] {
            let onc: Endpoint = text.parse().unwrap();
            assert!(matches!(onc.scheme, Scheme::OncTcp | Scheme::OncUdp));
            assert_eq!(onc.to_string(), text);
        }
        let v6: Endpoint = "tcp://[::1]:80".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "tcp://[::1]:80");
        assert_eq!(v6.socket_addr(), Some("[::1]:80".parse().unwrap()));
        for bad in [
            "127.0.0.1:1",
            "http://x:1",
            "onc://x:1",
            "udp://x",
            "udp://:1",
            "udp://x:99999",
            "tcp://[::1:80",
        ] {
            assert!(
                matches!(
                    bad.parse::<Endpoint>(),
                    Err(ResolveError::BadEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn static_resolver_sorts_and_dedups() {
        let r = StaticResolver::parse(["tcp://b:2", "tcp://a:1", "tcp://b:2"]).unwrap();
        let rx = r.watch("calc", 1).await.unwrap();
        let names: Vec<String> = rx.borrow().iter().map(|e| e.to_string()).collect();
        assert_eq!(names, ["tcp://a:1", "tcp://b:2"]);
    }

    #[tokio::test]
    async fn dns_resolver_resolves_localhost() {
        let r = DnsResolver::new(Scheme::Tcp, "localhost", 7000).refresh(Duration::from_millis(20));
        let rx = r.watch("calc", 1).await.unwrap();
        let set = rx.borrow().clone();
        assert!(!set.is_empty());
        assert!(
            set.iter()
                .all(|e| e.port == 7000 && e.scheme == Scheme::Tcp),
            "{set:?}"
        );
        assert!(
            set.iter().any(|e| e.host == "127.0.0.1" || e.host == "::1"),
            "localhost resolves to a loopback address: {set:?}"
        );
        // It keeps refreshing without changing a stable answer.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*rx.borrow(), set);
    }

    #[tokio::test]
    async fn dns_resolver_reports_unknown_hosts() {
        let r = DnsResolver::new(Scheme::Udp, "no-such-host.invalid", 1);
        assert!(matches!(
            r.watch("x", 1).await,
            Err(ResolveError::Service(_))
        ));
    }
}
