//! etcd as the name service (feature `etcd`), over etcd's v3 gRPC API with the
//! [`etcd-client`](https://docs.rs/etcd-client) crate.
//!
//! Instances register under `{prefix}/{name}/{version}/{endpoint}` (prefix
//! [`DEFAULT_PREFIX`] unless configured), the value a JSON object
//! `{"endpoint": "udp://host:port", "metadata": {...}}`, attached to a lease that an
//! [`EtcdRegistration`] keeps alive over a keepalive stream: when the instance stops (or
//! loses etcd for longer than the TTL), the key disappears with its lease. An
//! [`EtcdResolver`] reads the `{prefix}/{name}/{version}/` range and then follows it with
//! an etcd watch.
//!
//! Every request runs under a timeout ([`DEFAULT_REQUEST_TIMEOUT`]); an answer larger than
//! etcd-client's 4 MiB per message is refused, and a resolver keeps at most
//! [`DEFAULT_MAX_INSTANCES`] instances per service (configurable; the rest are counted in
//! [`EtcdResolver::ignored_instances`]). TLS and authentication are not enabled: use a
//! local or otherwise trusted etcd (`http://host:port`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    WatchOptions, WatchResponse,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Endpoint, ResolveError, Resolver};

/// The key prefix services are registered under by default.
pub const DEFAULT_PREFIX: &str = "/rpc/services";

/// How long one request to etcd may take by default (connecting included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a resolver's watch may stay silent by default before the resolver asks etcd
/// for a progress report; when that goes unanswered for as long again, the resolver reads
/// the range again and starts a new watch (guards against half-open connections).
pub const DEFAULT_WATCH_IDLE: Duration = Duration::from_secs(60);

/// How many instances of one service version a resolver keeps by default; further ones
/// are ignored (and counted) until some go away.
pub const DEFAULT_MAX_INSTANCES: usize = 4096;

/// The port of an etcd URL without one.
const DEFAULT_PORT: u16 = 2379;
/// Longest wait between a resolver's attempts to re-read and re-watch after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// HTTP/2 pings on the connection to etcd: how often, while it is otherwise idle.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Where etcd is and how keys are laid out; shared by [`EtcdRegistration`] and
/// [`EtcdResolver`].
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Normalized `http://host:port` URLs.
    endpoints: Vec<String>,
    prefix: String,
    timeout: Duration,
    watch_idle: Duration,
    max_instances: usize,
}

impl EtcdConfig {
    /// etcd at `etcd_url`: `http://host:port` or just `host:port` (port 2379 when left
    /// out), or several members separated by commas. Default prefix and timeouts.
    pub fn new(etcd_url: &str) -> Result<Self, ResolveError> {
        let endpoints = etcd_url
            .split(',')
            .map(parse_url)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EtcdConfig {
            endpoints,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_REQUEST_TIMEOUT,
            watch_idle: DEFAULT_WATCH_IDLE,
            max_instances: DEFAULT_MAX_INSTANCES,
        })
    }

    /// Sets the key prefix (a trailing `/` is ignored).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        self.prefix = prefix.trim_end_matches('/').to_owned();
        self
    }

    /// Sets how long one request may take (at least 10 ms).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Sets how long a watch may stay silent before the resolver checks on it (at least
    /// 100 ms).
    pub fn watch_idle(mut self, idle: Duration) -> Self {
        self.watch_idle = idle.max(Duration::from_millis(100));
        self
    }

    /// Sets how many instances of one service version a resolver keeps (at least 1).
    /// Further ones are left out and counted; when a kept one goes away, the resolver
    /// reads the range again and takes one of them in.
    pub fn max_instances(mut self, max: usize) -> Self {
        self.max_instances = max.max(1);
        self
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The etcd members, as `http://host:port`.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// `{prefix}/{name}/{version}/`: where the instances of one service version live.
    fn service_dir(&self, name: &str, version: u32) -> Result<String, ResolveError> {
        if name.is_empty() || name.contains('/') {
            return Err(ResolveError::Service(format!(
                "etcd: invalid service name {name:?} (must be non-empty and contain no '/')"
            )));
        }
        Ok(format!("{}/{name}/{version}/", self.prefix))
    }

    /// A client for the configured members. Connections are made lazily (and again after
    /// a failure) by the client's channel: this does not wait for etcd.
    async fn client(&self) -> Result<Client, ResolveError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_keep_alive(PING_INTERVAL, self.timeout)
            .with_keep_alive_while_idle(true);
        self.run("connect", Client::connect(&self.endpoints, Some(options)))
            .await
    }

    /// Runs one request under the request timeout, its error described for the caller.
    async fn run<T>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ResolveError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(self.error(what, e)),
            Err(_) => Err(self.error(what, format_args!("no answer within {:?}", self.timeout))),
        }
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> ResolveError {
        ResolveError::Service(format!("etcd {}: {what}: {e}", self.endpoints.join(",")))
    }

    async fn grant(&self, client: &mut Client, ttl_secs: i64) -> Result<(i64, i64), ResolveError> {
        let answer = self
            .run("lease grant", client.lease_grant(ttl_secs, None))
            .await?;
        if !answer.error().is_empty() {
            return Err(self.error("lease grant", answer.error()));
        }
        if answer.id() == 0 {
            return Err(self.error("lease grant", "answered without a lease id"));
        }
        Ok((answer.id(), answer.ttl().max(1)))
    }

    async fn revoke(&self, client: &mut Client, lease: i64) -> Result<(), ResolveError> {
        match tokio::time::timeout(self.timeout, client.lease_revoke(lease)).await {
            Ok(Ok(_)) => Ok(()),
            // Already gone (expired, or revoked by someone else): nothing to revoke.
            Ok(Err(etcd_client::Error::GRpcStatus(s))) if i32::from(s.code()) == GRPC_NOT_FOUND => {
                Ok(())
            }
            Ok(Err(e)) => Err(self.error("lease revoke", e)),
            Err(_) => Err(self.error(
                "lease revoke",
                format_args!("no answer within {:?}", self.timeout),
            )),
        }
    }

    async fn put(
        &self,
        client: &mut Client,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<(), ResolveError> {
        let options = PutOptions::new().with_lease(lease);
        self.run("put", client.put(key, value, Some(options)))
            .await?;
        Ok(())
    }

    /// Every instance under `dir` (at most `max_instances`), the number left out, and the
    /// store revision the answer reflects.
    async fn range(
        &self,
        client: &mut Client,
        dir: &str,
    ) -> Result<(Instances, i64), ResolveError> {
        let options = GetOptions::new().with_prefix();
        let answer = self.run("range", client.get(dir, Some(options))).await?;
        let revision = answer
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| self.error("range", "answered without a revision"))?;
        let mut set = Instances::new(self.max_instances);
        for kv in answer.kvs() {
            set.put(dir, kv.key(), kv.value());
        }
        Ok((set, revision))
    }
}

/// gRPC's NOT_FOUND status code, as etcd answers a revoke of an unknown lease.
const GRPC_NOT_FOUND: i32 = 5;

/// `http://host:port` from `http://host:port`, `host:port` or `host` (a trailing `/` is
/// allowed; paths, other schemes and TLS are not).
fn parse_url(url: &str) -> Result<String, ResolveError> {
    let url = url.trim();
    let bad = |why: &str| ResolveError::Service(format!("bad etcd URL {url:?}: {why}"));
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(bad("TLS is not supported; use http://")),
        Some(_) => return Err(bad("expected http://host:port")),
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(bad("expected no path"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("expected :port"))?,
                ),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
        None => DEFAULT_PORT,
    };
    Ok(if host.contains(':') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    })
}

/// An instance from its key and value: the value's `endpoint` and `metadata`, or, for a
/// value that is not our JSON, the endpoint spelled by the key's last part.
fn decode_instance(dir: &str, key: &[u8], value: &[u8]) -> Option<Endpoint> {
    let mut endpoint_text: Option<String> = None;
    let mut metadata = BTreeMap::new();
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(value) {
        endpoint_text = obj
            .get("endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(Value::Object(meta)) = obj.get("metadata") {
            for (k, v) in meta {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                metadata.insert(k.clone(), v);
            }
        }
    }
    let text = match endpoint_text {
        Some(e) => e,
        None => std::str::from_utf8(key).ok()?.strip_prefix(dir)?.to_owned(),
    };
    match text.parse::<Endpoint>() {
        Ok(mut endpoint) => {
            endpoint.metadata = metadata;
            Some(endpoint)
        }
        Err(e) => {
            tracing::debug!(key = %String::from_utf8_lossy(key), error = %e, "etcd: ignoring a malformed instance");
            None
        }
    }
}

/// The instances of one service version, by key, bounded.
#[derive(Debug, Clone)]
struct Instances {
    by_key: HashMap<Vec<u8>, Endpoint>,
    max: usize,
    /// Instances left out because the set was full (not yet added to the counters).
    ignored: u64,
    /// Some instance was left out since the set was read: a place freed later is filled
    /// by reading the range again.
    overflowed: bool,
}

impl Instances {
    fn new(max: usize) -> Self {
        Instances {
            by_key: HashMap::new(),
            max,
            ignored: 0,
            overflowed: false,
        }
    }

    /// A written key: added or replaced (or removed, when it no longer decodes).
    fn put(&mut self, dir: &str, key: &[u8], value: &[u8]) {
        match decode_instance(dir, key, value) {
            Some(endpoint) => {
                if self.by_key.len() >= self.max && !self.by_key.contains_key(key) {
                    self.ignored += 1;
                    self.overflowed = true;
                    tracing::warn!(%dir, max = self.max, "etcd: too many instances; ignoring one");
                    return;
                }
                self.by_key.insert(key.to_vec(), endpoint);
            }
            None => {
                self.by_key.remove(key);
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        self.by_key.remove(key);
    }

    /// Some instance was left out, and there is room now.
    fn has_room_for_the_ignored(&self) -> bool {
        self.overflowed && self.by_key.len() < self.max
    }

    fn sorted(&self) -> Vec<Endpoint> {
        let mut v: Vec<Endpoint> = self.by_key.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }
}

/// One service instance registered in etcd, kept alive by a background task.
///
/// [`deregister`](EtcdRegistration::deregister) removes the key at once (by revoking its
/// lease); dropping the handle just stops the keepalives, so the key expires with the
/// lease, within its TTL.
pub struct EtcdRegistration {
    config: EtcdConfig,
    client: Client,
    key: String,
    lease: Arc<AtomicI64>,
    task: JoinHandle<()>,
}

impl EtcdRegistration {
    /// Registers `endpoint` as an instance of `name` (`version`) in etcd at `etcd_url`
    /// (under [`DEFAULT_PREFIX`]), with `metadata` (added to the endpoint's own) and a
    /// lease of `ttl` (whole seconds, at least 1; etcd may grant more). Returns once the
    /// key is written. Must be called within a tokio runtime.
    pub async fn start(
        etcd_url: &str,
        name: &str,
        version: u32,
        endpoint: Endpoint,
        metadata: BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<Self, ResolveError> {
        let config = EtcdConfig::new(etcd_url)?;
        EtcdRegistration::start_with(config, name, version, endpoint, metadata, ttl).await
    }

    /// [`start`](EtcdRegistration::start) with a configuration (prefix, timeouts).
    pub async fn start_with(
        config: EtcdConfig,
        name: &str,
        version: u32,
        endpoint: Endpoint,
        metadata: BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<Self, ResolveError> {
        let dir = config.service_dir(name, version)?;
        let addr = endpoint.to_string();
        let key = format!("{dir}{addr}");
        let mut all_metadata = endpoint.metadata.clone();
        all_metadata.extend(metadata);
        let value = serde_json::to_vec(&json!({ "endpoint": addr, "metadata": all_metadata }))
            .map_err(|e| ResolveError::Service(format!("etcd: encoding the value: {e}")))?;
        let ttl_secs = i64::try_from(
            ttl.as_secs()
                .saturating_add(u64::from(ttl.subsec_nanos() > 0)),
        )
        .unwrap_or(i64::MAX)
        .max(1);

        let mut client = config.client().await?;
        let (lease, granted) = config.grant(&mut client, ttl_secs).await?;
        if let Err(e) = config.put(&mut client, &key, &value, lease).await {
            // Do not leave the lease behind.
            let _ = config.revoke(&mut client, lease).await;
            return Err(e);
        }
        let shared = Arc::new(AtomicI64::new(lease));
        let task = tokio::spawn(keep_alive(
            config.clone(),
            client.clone(),
            key.clone(),
            value,
            ttl_secs,
            granted,
            shared.clone(),
        ));
        tracing::debug!(%key, lease, ttl = granted, "etcd: registered");
        Ok(EtcdRegistration {
            config,
            client,
            key,
            lease: shared,
            task,
        })
    }

    /// The key this instance is registered under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease the key is attached to now (it changes when a lost lease is replaced).
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// Stops the keepalives and revokes the lease, which deletes the key at once. If etcd
    /// cannot be reached, the error is returned and the key expires with its lease.
    pub async fn deregister(mut self) -> Result<(), ResolveError> {
        self.task.abort();
        // Wait for the task to be gone so that it cannot write the key again.
        let _ = (&mut self.task).await;
        let lease = self.lease.load(Ordering::SeqCst);
        let mut client = self.client.clone();
        self.config.revoke(&mut client, lease).await?;
        tracing::debug!(key = %self.key, lease, "etcd: deregistered");
        Ok(())
    }
}

impl std::fmt::Debug for EtcdRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistration")
            .field("endpoints", &self.config.endpoints)
            .field("key", &self.key)
            .field("lease", &self.lease_id())
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdRegistration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one keepalive found.
enum Renewal {
    /// Renewed; the TTL etcd granted (unknown when a new stream was opened).
    Renewed(Option<i64>),
    /// etcd no longer knows the lease (expired or revoked).
    Lost,
    /// etcd could not be asked.
    Failed(ResolveError),
}

/// A keepalive stream for one lease.
struct KeepAlive {
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
}

/// Renews `lease` once: on the open stream, or on a new one.
async fn renew(
    config: &EtcdConfig,
    client: &mut Client,
    stream: &mut Option<KeepAlive>,
    lease: i64,
) -> Renewal {
    let Some(open) = stream.as_mut().filter(|s| s.keeper.id() == lease) else {
        // Opening the stream sends the first keepalive and waits for its answer.
        return match tokio::time::timeout(config.timeout, client.lease_keep_alive(lease)).await {
            Ok(Ok((keeper, answers))) => {
                *stream = Some(KeepAlive { keeper, answers });
                Renewal::Renewed(None)
            }
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => Renewal::Lost,
            Ok(Err(e)) => Renewal::Failed(config.error("lease keepalive", e)),
            Err(_) => Renewal::Failed(config.error(
                "lease keepalive",
                format_args!("no answer within {:?}", config.timeout),
            )),
        };
    };
    let exchange = async {
        open.keeper.keep_alive().await?;
        open.answers.message().await
    };
    let outcome = match tokio::time::timeout(config.timeout, exchange).await {
        // An expired or unknown lease comes back with TTL 0.
        Ok(Ok(Some(answer))) if answer.ttl() > 0 => return Renewal::Renewed(Some(answer.ttl())),
        Ok(Ok(Some(_))) => Renewal::Lost,
        Ok(Ok(None)) => Renewal::Failed(config.error("lease keepalive", "stream ended")),
        Ok(Err(e)) => Renewal::Failed(config.error("lease keepalive", e)),
        Err(_) => Renewal::Failed(config.error(
            "lease keepalive",
            format_args!("no answer within {:?}", config.timeout),
        )),
    };
    *stream = None;
    outcome
}

/// Renews the lease every third of its TTL; when etcd has lost it (expired while etcd
/// was unreachable, or revoked), grants a new one and writes the key again.
async fn keep_alive(
    config: EtcdConfig,
    mut client: Client,
    key: String,
    value: Vec<u8>,
    ttl_secs: i64,
    mut granted: i64,
    lease: Arc<AtomicI64>,
) {
    let mut stream: Option<KeepAlive> = None;
    let mut lost = false;
    loop {
        let period = Duration::from_millis((granted.max(1) as u64).saturating_mul(1000) / 3)
            .max(Duration::from_millis(300));
        tokio::time::sleep(period).await;
        if !lost {
            let current = lease.load(Ordering::SeqCst);
            match renew(&config, &mut client, &mut stream, current).await {
                Renewal::Renewed(ttl) => {
                    granted = ttl.unwrap_or(granted);
                    continue;
                }
                Renewal::Lost => {
                    tracing::info!(%key, lease = current, "etcd: lease lost; registering again");
                    lost = true;
                }
                Renewal::Failed(e) => {
                    // Try again next period; if the lease expires meanwhile, the next
                    // keepalive says so.
                    tracing::debug!(%key, error = %e, "etcd: keepalive failed");
                    continue;
                }
            }
        }
        match config.grant(&mut client, ttl_secs).await {
            Ok((new_lease, ttl)) => {
                // Published before the put: a deregister that aborts us mid-put revokes
                // the lease the key may be written with.
                lease.store(new_lease, Ordering::SeqCst);
                granted = ttl;
                match config.put(&mut client, &key, &value, new_lease).await {
                    Ok(()) => {
                        lost = false;
                        tracing::info!(%key, lease = new_lease, "etcd: registered again");
                    }
                    Err(e) => {
                        tracing::debug!(%key, error = %e, "etcd: writing the key again failed");
                        let _ = config.revoke(&mut client, new_lease).await;
                    }
                }
            }
            Err(e) => tracing::debug!(%key, error = %e, "etcd: lease grant failed"),
        }
    }
}

/// A [`Resolver`] that reads instances from etcd and follows them with a watch.
///
/// The first set comes from a range read (an empty set when no instance is registered
/// yet: the receiver changes when one appears). Then a watch from the next revision adds
/// and removes instances as they are written and deleted. When the watch breaks (etcd
/// restarted, connection lost, revision compacted, silent too long), the resolver waits a
/// little, reads the range again and watches again, keeping the last known set meanwhile.
#[derive(Debug, Clone)]
pub struct EtcdResolver {
    config: EtcdConfig,
    counters: Arc<Counters>,
}

/// What the watches of one resolver (and its clones) went through.
#[derive(Debug, Default)]
struct Counters {
    /// Instances left out because a service had `max_instances` already.
    ignored: AtomicU64,
    /// Watches that ended or failed and were replaced by a new range read and watch.
    restarts: AtomicU64,
}

impl EtcdResolver {
    /// A resolver for etcd at `etcd_url` (as [`EtcdConfig::new`] takes it), under
    /// [`DEFAULT_PREFIX`].
    pub fn new(etcd_url: &str) -> Result<Self, ResolveError> {
        Ok(EtcdResolver::with_config(EtcdConfig::new(etcd_url)?))
    }

    /// A resolver with a configuration (prefix, timeouts, limits).
    pub fn with_config(config: EtcdConfig) -> Self {
        EtcdResolver {
            config,
            counters: Arc::default(),
        }
    }

    /// How many times an instance was left out because a service already had
    /// [`EtcdConfig::max_instances`] of them (over every watch of this resolver and its
    /// clones).
    pub fn ignored_instances(&self) -> u64 {
        self.counters.ignored.load(Ordering::Relaxed)
    }

    /// How many times a watch ended or failed (etcd restarted, connection lost or
    /// silent, revision compacted) or made way for a fresh read of a full service whose
    /// instance went away, and was replaced by a new range read and watch, over every
    /// watch of this resolver and its clones.
    pub fn watch_restarts(&self) -> u64 {
        self.counters.restarts.load(Ordering::Relaxed)
    }
}

impl Resolver for EtcdResolver {
    async fn watch(
        &self,
        name: &str,
        version: u32,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ResolveError> {
        let dir = self.config.service_dir(name, version)?;
        let mut client = self.config.client().await?;
        let (mut set, revision) = self.config.range(&mut client, &dir).await?;
        self.counters
            .ignored
            .fetch_add(std::mem::take(&mut set.ignored), Ordering::Relaxed);
        let (tx, rx) = watch::channel(set.sorted());
        let follower = Follower {
            config: self.config.clone(),
            client,
            dir,
            set,
            revision,
            tx,
            counters: self.counters.clone(),
        };
        tokio::spawn(follower.run());
        Ok(rx)
    }
}

/// The background half of one [`EtcdResolver::watch`].
struct Follower {
    config: EtcdConfig,
    client: Client,
    dir: String,
    set: Instances,
    /// The store revision `set` reflects.
    revision: i64,
    tx: watch::Sender<Vec<Endpoint>>,
    counters: Arc<Counters>,
}

impl Follower {
    fn publish(&mut self) {
        self.counters
            .ignored
            .fetch_add(std::mem::take(&mut self.set.ignored), Ordering::Relaxed);
        let next = self.set.sorted();
        self.tx.send_if_modified(|cur| {
            let changed = *cur != next;
            if changed {
                *cur = next;
            }
            changed
        });
    }

    /// Watches from `revision + 1`; on any break, backs off, reads the range again and
    /// watches again. Returns when every receiver is gone.
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let tx = self.tx.clone();
            let outcome = tokio::select! {
                () = tx.closed() => return,
                r = self.watch_once() => r,
            };
            self.counters.restarts.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok(()) => tracing::debug!(dir = %self.dir, "etcd: watch ended; watching again"),
                Err(e) => {
                    tracing::debug!(dir = %self.dir, error = %e, "etcd: watch failed; watching again")
                }
            }
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let mut client = self.client.clone();
                match self.config.range(&mut client, &self.dir).await {
                    Ok((fresh, revision)) => {
                        self.set = fresh;
                        self.revision = revision;
                        self.publish();
                        backoff = MIN_BACKOFF;
                        break;
                    }
                    // Keep the last known set while etcd is away.
                    Err(e) => {
                        tracing::debug!(dir = %self.dir, error = %e, "etcd: range failed; retrying")
                    }
                }
            }
        }
    }

    /// One watch: applies its events to the set (publishing each change) until it ends or
    /// fails.
    async fn watch_once(&mut self) -> Result<(), ResolveError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.revision + 1);
        let mut client = self.client.clone();
        let stream = self
            .config
            .run("watch", client.watch(self.dir.as_str(), Some(options)))
            .await?;
        let (mut requests, mut answers) = stream.split();
        let idle = self.config.watch_idle;
        let mut heard = Instant::now();
        let mut asked = false;
        loop {
            let check = if asked {
                heard + idle * 2
            } else {
                heard + idle
            };
            tokio::select! {
                answer = answers.message() => {
                    let answer = answer.map_err(|e| self.config.error("watch", e))?;
                    let Some(answer) = answer else {
                        return Ok(());
                    };
                    heard = Instant::now();
                    asked = false;
                    let batch = WatchBatch::from_response(&answer);
                    batch.apply(&self.dir, &mut self.set, &mut self.revision)
                        .map_err(|e| self.config.error("watch", e))?;
                    self.publish();
                    if self.set.has_room_for_the_ignored() {
                        // Read the range again to fill the freed place.
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(check) => {
                    if asked {
                        return Err(self.config.error(
                            "watch",
                            format_args!("silent for {:?}, progress request unanswered", idle * 2),
                        ));
                    }
                    // A healthy watch answers with a progress report.
                    requests
                        .request_progress()
                        .await
                        .map_err(|e| self.config.error("watch", e))?;
                    asked = true;
                }
            }
        }
    }
}

/// What one watch answer says, in a form that does not depend on the client's types.
#[derive(Debug, Default)]
struct WatchBatch {
    canceled: bool,
    compact_revision: i64,
    cancel_reason: String,
    events: Vec<WatchEvent>,
}

#[derive(Debug)]
struct WatchEvent {
    delete: bool,
    key: Vec<u8>,
    value: Vec<u8>,
    mod_revision: i64,
}

impl WatchBatch {
    fn from_response(answer: &WatchResponse) -> Self {
        WatchBatch {
            canceled: answer.canceled(),
            compact_revision: answer.compact_revision(),
            cancel_reason: answer.cancel_reason().to_owned(),
            events: answer
                .events()
                .iter()
                .filter_map(|event| {
                    let kv = event.kv()?;
                    Some(WatchEvent {
                        delete: event.event_type() == EventType::Delete,
                        key: kv.key().to_vec(),
                        value: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                    })
                })
                .collect(),
        }
    }

    /// Applies the events to `set`; an error when the watch was canceled or compacted.
    fn apply(&self, dir: &str, set: &mut Instances, revision: &mut i64) -> Result<(), String> {
        if self.compact_revision > 0 {
            return Err(format!(
                "revision {} compacted (now {})",
                *revision + 1,
                self.compact_revision
            ));
        }
        if self.canceled {
            let reason = if self.cancel_reason.is_empty() {
                "no reason given"
            } else {
                &self.cancel_reason
            };
            return Err(format!("canceled: {reason}"));
        }
        for event in &self.events {
            *revision = (*revision).max(event.mod_revision);
            if event.delete {
                set.delete(&event.key);
            } else {
                set.put(dir, &event.key, &event.value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let one = |url: &str| EtcdConfig::new(url).map(|c| c.endpoints().to_vec());
        assert_eq!(
            one("http://127.0.0.1:2379").unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert_eq!(one("localhost/").unwrap(), ["http://localhost:2379"]);
        assert_eq!(one("http://[::1]:1").unwrap(), ["http://[::1]:1"]);
        assert_eq!(one("[::1]").unwrap(), ["http://[::1]:2379"]);
        assert_eq!(
            one("http://a:1, b:2").unwrap(),
            ["http://a:1", "http://b:2"]
        );
        for bad in [
            "https://x:1",
            "ftp://x",
            "http://x:1/v3",
            "http://:1",
            "http://x:y",
            "http://[::1:1",
            "",
            "a:1,",
        ] {
            let err = EtcdConfig::new(bad).unwrap_err();
            assert!(err.to_string().contains("etcd URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn instances_decode_from_json_or_key() {
        let dir = "/rpc/services/calc/1/";
        let e = decode_instance(
            dir,
            b"/rpc/services/calc/1/udp://10.0.0.1:7",
            br#"{"endpoint":"udp://10.0.0.1:7","metadata":{"zone":"a","w":3}}"#,
        )
        .unwrap();
        assert_eq!(e.to_string(), "udp://10.0.0.1:7");
        assert_eq!(e.metadata["zone"], "a");
        assert_eq!(e.metadata["w"], "3");
        let e = decode_instance(dir, b"/rpc/services/calc/1/tcp://h:9", b"").unwrap();
        assert_eq!(e.to_string(), "tcp://h:9");
        assert!(decode_instance(dir, b"/rpc/services/calc/1/junk", b"x").is_none());
        assert!(decode_instance(dir, b"\xff\xfe", b"\xff").is_none());
    }

    fn put(key: &str, rev: i64) -> WatchEvent {
        WatchEvent {
            delete: false,
            key: key.as_bytes().to_vec(),
            value: Vec::new(),
            mod_revision: rev,
        }
    }

    #[test]
    fn watch_batches_apply() {
        let dir = "/s/calc/1/";
        let key = "/s/calc/1/udp://1.2.3.4:5";
        let mut set = Instances::new(10);
        let mut rev = 1;
        let batch = WatchBatch {
            events: vec![put(key, 7)],
            ..WatchBatch::default()
        };
        batch.apply(dir, &mut set, &mut rev).unwrap();
        assert_eq!((set.sorted().len(), rev), (1, 7));
        let batch = WatchBatch {
            events: vec![WatchEvent {
                delete: true,
                ..put(key, 8)
            }],
            ..WatchBatch::default()
        };
        batch.apply(dir, &mut set, &mut rev).unwrap();
        assert_eq!((set.sorted().len(), rev), (0, 8));
        // A key rewritten with junk is dropped.
        WatchBatch {
            events: vec![put(key, 9)],
            ..WatchBatch::default()
        }
        .apply(dir, &mut set, &mut rev)
        .unwrap();
        WatchBatch {
            events: vec![WatchEvent {
                value: b"{\"endpoint\":\"bogus\"}".to_vec(),
                ..put(key, 10)
            }],
            ..WatchBatch::default()
        }
        .apply(dir, &mut set, &mut rev)
        .unwrap();
        assert!(set.sorted().is_empty());
        let compacted = WatchBatch {
            canceled: true,
            compact_revision: 20,
            ..WatchBatch::default()
        };
        let err = compacted.apply(dir, &mut set, &mut rev).unwrap_err();
        assert!(err.contains("compacted"), "{err}");
        let canceled = WatchBatch {
            canceled: true,
            cancel_reason: "gone".to_owned(),
            ..WatchBatch::default()
        };
        assert_eq!(
            canceled.apply(dir, &mut set, &mut rev).unwrap_err(),
            "canceled: gone"
        );
    }

    #[test]
    fn instances_are_bounded_and_counted() {
        let dir = "/s/calc/1/";
        let mut set = Instances::new(2);
        for port in 1..=4 {
            set.put(dir, format!("{dir}udp://h:{port}").as_bytes(), b"");
        }
        assert_eq!(set.sorted().len(), 2);
        assert_eq!(set.ignored, 2);
        // Rewriting a kept key is not a new instance; after a delete there is room again.
        set.put(dir, format!("{dir}udp://h:1").as_bytes(), b"");
        assert_eq!(set.ignored, 2);
        set.delete(format!("{dir}udp://h:1").as_bytes());
        set.put(dir, format!("{dir}udp://h:3").as_bytes(), b"");
        let names: Vec<String> = set.sorted().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["udp://h:2", "udp://h:3"]);
    }
}
