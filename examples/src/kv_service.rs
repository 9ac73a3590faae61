//! `KvService`: an in-memory key-value store (the server side of `proto/kv.idl`), and
//! [`AnyChannel`], a channel to a `udp://` or `tcp://` endpoint for balanced clients.
//!
//! Each instance has a name (returned by `whoami`, to see where a balanced client's
//! calls land) and counts the calls it executed, per procedure and in all. The store is
//! bounded: at most `max_keys` keys and values of at most `max_value` bytes; beyond
//! either, `put` fails with an application error ([`codes`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rpc_core::frame::Frame;
use rpc_core::naming::{Endpoint, Scheme};
use rpc_core::transport::{Channel, Connection, FrameReceiver};
use rpc_core::{CallContext, Status, TransportError};
use rpc_transport_tcp::{TcpChannel, TcpFrameReceiver};
use rpc_transport_udp::{UdpChannel, UdpFrameReceiver};

use crate::kv::{Key, Kv, Value};

/// Application error codes of the store.
pub mod codes {
    /// The store holds `max_keys` keys already and the key is new.
    pub const FULL: i32 = 1;
    /// The value is larger than the instance allows.
    pub const TOO_LARGE: i32 = 2;
}

/// Default limit on the number of keys an instance holds.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Default limit on a value's size, in bytes.
pub const DEFAULT_MAX_VALUE: usize = 64 * 1024;

/// Calls an instance executed (counted when its handler starts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvStats {
    /// `get` calls.
    pub get: u64,
    /// `put` calls.
    pub put: u64,
    /// `delete` calls.
    pub delete: u64,
    /// `whoami` calls.
    pub whoami: u64,
    /// Every call.
    pub total: u64,
}

#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    whoami: AtomicU64,
    total: AtomicU64,
}

/// One instance of the store.
#[derive(Debug)]
pub struct KvService {
    name: String,
    map: Mutex<HashMap<String, Value>>,
    max_keys: usize,
    max_value: usize,
    delay: Duration,
    counters: Counters,
}

impl KvService {
    /// An empty store named `name`, with the default limits.
    pub fn new(name: impl Into<String>) -> Self {
        KvService {
            name: name.into(),
            map: Mutex::new(HashMap::new()),
            max_keys: DEFAULT_MAX_KEYS,
            max_value: DEFAULT_MAX_VALUE,
            delay: Duration::ZERO,
            counters: Counters::default(),
        }
    }

    /// Sets the limits: most keys held, largest value in bytes.
    pub fn with_limits(mut self, max_keys: usize, max_value: usize) -> Self {
        self.max_keys = max_keys;
        self.max_value = max_value;
        self
    }

    /// Makes every call wait `delay` before it is answered (a deliberately slow
    /// instance, to watch a least-outstanding balancer avoid it).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls executed so far.
    pub fn stats(&self) -> KvStats {
        let c = &self.counters;
        KvStats {
            get: c.get.load(Ordering::Relaxed),
            put: c.put.load(Ordering::Relaxed),
            delete: c.delete.load(Ordering::Relaxed),
            whoami: c.whoami.load(Ordering::Relaxed),
            total: c.total.load(Ordering::Relaxed),
        }
    }

    /// Calls executed so far, all procedures together.
    pub fn executions(&self) -> u64 {
        self.counters.total.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        // Every critical section is a single map operation: a panic cannot leave the
        // map half-updated, so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn enter(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

impl Kv for KvService {
    async fn get(&self, _ctx: &CallContext, key: Key) -> Result<Option<Value>, Status> {
        self.enter(&self.counters.get).await;
        Ok(self.lock().get(&key).cloned())
    }

    async fn put(
        &self,
        _ctx: &CallContext,
        key: Key,
        value: Value,
    ) -> Result<Option<Value>, Status> {
        self.enter(&self.counters.put).await;
        if value.len() > self.max_value {
            return Err(Status::application(
                codes::TOO_LARGE,
                format!(
                    "value of {} bytes is over this instance's limit of {}",
                    value.len(),
                    self.max_value
                ),
            ));
        }
        let mut map = self.lock();
        if map.len() >= self.max_keys && !map.contains_key(&key) {
            return Err(Status::application(
                codes::FULL,
                format!("the store is full ({} keys)", self.max_keys),
            ));
        }
        // A `Bytes` slice of the receive buffer would pin the whole buffer: keep a copy.
        Ok(map.insert(key, Value::copy_from_slice(&value)))
    }

    async fn delete(&self, _ctx: &CallContext, key: Key) -> Result<bool, Status> {
        self.enter(&self.counters.delete).await;
        Ok(self.lock().remove(&key).is_some())
    }

    async fn whoami(&self, _ctx: &CallContext) -> Result<String, Status> {
        self.enter(&self.counters.whoami).await;
        Ok(self.name.clone())
    }
}

/// A channel over either transport, so one balanced client can follow a set of
/// endpoints that mixes `udp://` and `tcp://`.
#[derive(Debug, Clone)]
pub enum AnyChannel {
    /// Reliable UDP.
    Udp(UdpChannel),
    /// TCP.
    Tcp(TcpChannel),
}

impl AnyChannel {
    /// The channel for `endpoint` (its host may be a name, resolved on connect);
    /// `None` for an ONC RPC endpoint (`onc+tcp://`, `onc+udp://`), which speaks another
    /// protocol than the key-value service.
    pub fn for_endpoint(endpoint: &Endpoint) -> Option<Self> {
        match endpoint.scheme {
            Scheme::Udp => Some(AnyChannel::Udp(UdpChannel::new(
                endpoint.authority().as_str(),
            ))),
            Scheme::Tcp => Some(AnyChannel::Tcp(TcpChannel::new(endpoint.authority()))),
            Scheme::OncTcp | Scheme::OncUdp => None,
        }
    }

    /// The `connect` function for [`rpc_core::Client::balanced`]: every endpoint of
    /// this framework's protocols gets a channel (ONC RPC ones are skipped).
    pub fn connect(endpoint: &Endpoint) -> Option<AnyChannel> {
        AnyChannel::for_endpoint(endpoint)
    }
}

/// The receiving half of an [`AnyChannel`] connection.
#[derive(Debug)]
pub enum AnyReceiver {
    /// Reliable UDP.
    Udp(UdpFrameReceiver),
    /// TCP.
    Tcp(TcpFrameReceiver),
}

impl FrameReceiver for AnyReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self {
            AnyReceiver::Udp(r) => r.recv().await,
            AnyReceiver::Tcp(r) => r.recv().await,
        }
    }
}

impl Channel for AnyChannel {
    type Receiver = AnyReceiver;

    async fn connect(&self) -> Result<Connection<AnyReceiver>, TransportError> {
        match self {
            AnyChannel::Udp(c) => Ok(c.connect().await?.map_receiver(AnyReceiver::Udp)),
            AnyChannel::Tcp(c) => Ok(c.connect().await?.map_receiver(AnyReceiver::Tcp)),
        }
    }

    fn remote(&self) -> String {
        match self {
            // Already `udp://host:port` / `tcp://host:port`.
            AnyChannel::Udp(c) => c.remote(),
            AnyChannel::Tcp(c) => c.remote(),
        }
    }
}

/// The name kv instances register under.
pub const SERVICE_NAME: &str = "kv";
/// The version they register under (the `Kv` interface's).
pub const SERVICE_VERSION: u32 = 1;

/// Where a kv client finds the instances.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A fixed list of endpoints ([`rpc_core::naming::StaticResolver`]).
    Static(Vec<Endpoint>),
    /// The framework's name registry at this endpoint
    /// ([`rpc_core::naming::registry::RegistryResolver`]).
    Registry(Endpoint),
}

/// Follows the instances of `kv` (version 1) as `discovery` says: the receiver feeds
/// [`rpc_core::Client::balanced`].
pub async fn follow_instances(
    discovery: &Discovery,
) -> Result<tokio::sync::watch::Receiver<Vec<Endpoint>>, rpc_core::naming::ResolveError> {
    use rpc_core::naming::registry::proto::RegistryClient;
    use rpc_core::naming::registry::RegistryResolver;
    use rpc_core::naming::{Resolver, StaticResolver};
    match discovery {
        Discovery::Static(endpoints) => {
            StaticResolver::new(endpoints.iter().cloned())
                .watch(SERVICE_NAME, SERVICE_VERSION)
                .await
        }
        Discovery::Registry(registry) => {
            let channel = AnyChannel::for_endpoint(registry).ok_or_else(|| {
                rpc_core::naming::ResolveError::BadEndpoint {
                    endpoint: registry.to_string(),
                    reason: "the registry is reached over udp:// or tcp://".to_owned(),
                }
            })?;
            let client = RegistryClient::new(channel);
            RegistryResolver::new(client)
                .watch(SERVICE_NAME, SERVICE_VERSION)
                .await
        }
    }
}
