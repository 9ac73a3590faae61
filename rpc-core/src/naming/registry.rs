//! The framework's own name registry, defined in `proto/naming.idl` and served by the
//! framework's own stubs.
//!
//! * [`RegistryService`] is the registry: an in-memory table of endpoints registered
//!   under a service name and version, each held by a *lease* with a time to live (TTL).
//!   Serve it with [`proto::RegistryServer`] over any transport (`rpc_registry` in the
//!   examples is a ready binary).
//! * [`Registration`] is a server's side: it registers an endpoint, renews the lease by
//!   heartbeats (every third of the granted TTL), registers again if the lease was lost
//!   (a registry restart, a long partition), and deregisters on request. A server built
//!   with [`RegisterOnServe`] (a `ServerBuilder::hook`) does all of this itself.
//! * [`RegistryResolver`] is a client's side: a [`Resolver`] that looks a name up and
//!   then follows it by long-polling `watch`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use rpc_core::naming::registry::proto::{RegistryClient, RegistryServer};
//! use rpc_core::naming::registry::{Registration, RegistryResolver, RegistryService};
//! use rpc_core::naming::{Endpoint, Resolver};
//! use rpc_core::{transport::memory, Server};
//!
//! let service = RegistryService::new();
//! let (channel, listener) = memory::endpoint(64);
//! let registry = Server::builder()
//!     .workers(service.config().recommended_workers())
//!     .add_service(RegistryServer::new(service.clone()))
//!     .serve(listener)
//!     .unwrap();
//!
//! // A server announces itself...
//! let client = RegistryClient::new(channel.clone());
//! let endpoint: Endpoint = "udp://127.0.0.1:7000".parse().unwrap();
//! let registration = Registration::start(client.clone(), "calc", 1, endpoint.clone(), Duration::ZERO)
//!     .await
//!     .unwrap();
//!
//! // ...and a client finds it.
//! let endpoints = RegistryResolver::new(client).watch("calc", 1).await.unwrap();
//! assert_eq!(*endpoints.borrow(), [endpoint]);
//!
//! registration.deregister().await.unwrap();
//! service.shutdown();
//! registry.shutdown().await;
//! # }
//! ```
//!
//! # Limits
//!
//! Everything the registry holds is bounded by [`RegistryConfig`]: names, entries per
//! name, entries in all, metadata bytes per entry, waiting watchers, TTLs and long-poll
//! waits. A registration beyond a cap is refused with [`Status::Application`] and one of
//! the [`codes`], and counted in [`RegistryStats`].
//!
//! # Expiry
//!
//! An entry whose lease was not renewed within its TTL disappears: it is removed when any
//! call touches the registry after the lease ran out, and by a sweeper task that wakes at
//! the earliest expiry (at least every [`RegistryConfig::sweep_interval`]), so an entry
//! is gone — and its watchers woken — no later than TTL + `sweep_interval` after its
//! last renewal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Endpoint, ResolveError, Resolver};
use crate::error::{RpcError, Status};
use crate::server::{CallContext, HookFuture, RunningHook, ServeHook, Serving};
use crate::transport::Channel;
use crate::CallOptions;

/// Stubs generated from `proto/naming.idl` (package `naming`): the wire types, the
/// [`proto::RegistryClient`], the [`proto::Registry`] server trait and
/// [`proto::RegistryServer`].
pub mod proto {
    crate::include_idl!("naming");
}

use proto::{EndpointSet, Lease, MetadataEntry, RegisteredEndpoint, RegistryClient};

/// The application error codes the registry answers with ([`Status::Application`]).
pub mod codes {
    /// The registry is full: it holds [`super::RegistryConfig::max_names`] names or
    /// [`super::RegistryConfig::max_total_entries`] entries.
    pub const REGISTRY_FULL: i32 = 1;
    /// The name (and version) already has
    /// [`super::RegistryConfig::max_entries_per_name`] entries.
    pub const NAME_FULL: i32 = 2;
    /// The registration is malformed: empty name, bad endpoint URL, port 0, duplicate
    /// metadata key, or too much metadata.
    pub const INVALID: i32 = 3;
}

/// The registry's limits and timings.
///
/// The defaults suit a registry of a few thousand services. Construct with
/// `RegistryConfig::default()` and change fields:
///
/// ```
/// use std::time::Duration;
/// let mut config = rpc_core::naming::registry::RegistryConfig::default();
/// config.default_ttl = Duration::from_secs(5);
/// assert_eq!(config.max_names, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// Most distinct (name, version) pairs with at least one entry. A registration that
    /// would add one more is refused with [`codes::REGISTRY_FULL`]. Default 10,000.
    pub max_names: usize,
    /// Most entries under one name and version (clamped to
    /// [`proto::MAX_ENDPOINTS`]); beyond it: [`codes::NAME_FULL`]. Default 1,000.
    pub max_entries_per_name: usize,
    /// Most entries in all; beyond it: [`codes::REGISTRY_FULL`]. Default 100,000.
    pub max_total_entries: usize,
    /// Most metadata bytes (keys plus values) on one entry; beyond it:
    /// [`codes::INVALID`]. Together with `max_entries_per_name` this bounds a lookup's
    /// answer (1,000 × (256 + 1,024 + overhead) ≈ 1.4 MB by default). Default 1,024.
    pub max_metadata_bytes: usize,
    /// Shortest TTL granted (shorter requests are raised to it). Default 500 ms.
    pub min_ttl: Duration,
    /// Longest TTL granted (longer requests are lowered to it). Default 1 h.
    pub max_ttl: Duration,
    /// TTL granted to a registration that asks for none (`ttl_ms` 0). Default 10 s.
    pub default_ttl: Duration,
    /// Longest a `watch` long poll waits. Default 30 s.
    pub max_wait: Duration,
    /// Most `watch` calls waiting at once; a watch beyond it answers at once (counted
    /// in [`RegistryStats::watches_refused`]). Each waiting watch holds one of the
    /// server's workers: serve the registry with more workers than this
    /// ([`RegistryConfig::recommended_workers`]). Default 1,024.
    pub max_watchers: usize,
    /// Longest the sweeper sleeps between looking for expired leases (it also wakes at
    /// the earliest expiry it knows of). Default 250 ms.
    pub sweep_interval: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_names: 10_000,
            max_entries_per_name: 1_000,
            max_total_entries: 100_000,
            max_metadata_bytes: 1_024,
            min_ttl: Duration::from_millis(500),
            max_ttl: Duration::from_secs(3600),
            default_ttl: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
            max_watchers: 1_024,
            sweep_interval: Duration::from_millis(250),
        }
    }
}

impl RegistryConfig {
    /// Server workers for a registry with this configuration: every watcher may hold
    /// one, plus 64 for everything else.
    pub fn recommended_workers(&self) -> usize {
        self.max_watchers.saturating_add(64)
    }

    /// The TTL granted for a request of `ttl_ms` (0: the default).
    fn grant(&self, ttl_ms: u32) -> Duration {
        let max = self.max_ttl.max(self.min_ttl);
        let asked = if ttl_ms == 0 {
            self.default_ttl
        } else {
            Duration::from_millis(u64::from(ttl_ms))
        };
        // Whole milliseconds, so the TTL answered is the TTL applied.
        let granted = asked.clamp(self.min_ttl, max);
        Duration::from_millis(granted.as_millis().clamp(1, u128::from(u32::MAX)) as u64)
    }
}

/// A snapshot of the registry's occupancy and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryStats {
    /// (name, version) pairs with at least one entry.
    pub names: u64,
    /// Entries (live leases).
    pub entries: u64,
    /// `watch` calls waiting right now.
    pub watchers: u64,
    /// Registrations granted (replacements included).
    pub registrations: u64,
    /// Heartbeats that renewed a lease.
    pub renewals: u64,
    /// Heartbeats for unknown or expired leases (answered false).
    pub renewals_unknown: u64,
    /// Entries removed because their lease expired.
    pub expirations: u64,
    /// Entries removed by `deregister`.
    pub deregistrations: u64,
    /// Registrations refused in all (the three counters below).
    pub refused: u64,
    /// Refused with [`codes::REGISTRY_FULL`].
    pub refused_registry_full: u64,
    /// Refused with [`codes::NAME_FULL`].
    pub refused_name_full: u64,
    /// Refused with [`codes::INVALID`].
    pub refused_invalid: u64,
    /// `watch` calls answered at once because `max_watchers` were waiting.
    pub watches_refused: u64,
}

type Key = (String, u32);

#[derive(Debug)]
struct Entry {
    lease: u64,
    metadata: Vec<MetadataEntry>,
    ttl: Duration,
    expires: Instant,
}

#[derive(Debug)]
struct NameState {
    /// Entries by normalised endpoint URL.
    entries: BTreeMap<String, Entry>,
    /// The set's revision (0 until the first change).
    revision: u64,
    /// Wakes long polls: holds `revision`.
    notify: watch::Sender<u64>,
}

impl NameState {
    fn new() -> Self {
        NameState {
            entries: BTreeMap::new(),
            revision: 0,
            notify: watch::channel(0).0,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    names: HashMap<Key, NameState>,
    /// (name, version) pairs with at least one entry.
    live_names: usize,
    /// Where each lease's entry is.
    leases: HashMap<u64, (Key, String)>,
    /// Expiry index: (expiry, lease).
    expiry: BTreeSet<(Instant, u64)>,
    next_lease: u64,
    next_revision: u64,
    stats: RegistryStats,
}

impl State {
    fn new_lease(&mut self) -> u64 {
        loop {
            self.next_lease = self.next_lease.wrapping_add(1);
            if self.next_lease != 0 && !self.leases.contains_key(&self.next_lease) {
                return self.next_lease;
            }
        }
    }

    /// Records a change of `key`'s set and wakes its watchers.
    fn changed(&mut self, key: &Key) {
        self.next_revision += 1;
        let revision = self.next_revision;
        if let Some(name) = self.names.get_mut(key) {
            name.revision = revision;
            name.notify.send_replace(revision);
        }
    }

    /// Removes `lease`'s entry; returns whether there was one.
    fn remove_lease(&mut self, lease: u64) -> bool {
        let Some((key, url)) = self.leases.remove(&lease) else {
            return false;
        };
        if let Some(name) = self.names.get_mut(&key) {
            if let Some(entry) = name.entries.remove(&url) {
                self.expiry.remove(&(entry.expires, lease));
            }
            if name.entries.is_empty() {
                self.live_names -= 1;
            }
        }
        self.changed(&key);
        self.collect(&key);
        true
    }

    /// Forgets `key` if it has no entries and nobody waits on it.
    fn collect(&mut self, key: &Key) {
        if self
            .names
            .get(key)
            .is_some_and(|n| n.entries.is_empty() && n.notify.receiver_count() == 0)
        {
            self.names.remove(key);
        }
    }

    /// Removes every entry whose lease ran out by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, lease)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            if self.remove_lease(lease) {
                self.stats.expirations += 1;
            }
        }
    }

    fn snapshot(&self, key: &Key) -> EndpointSet {
        match self.names.get(key) {
            None => EndpointSet {
                endpoints: Vec::new(),
                revision: 0,
            },
            Some(name) => EndpointSet {
                endpoints: name
                    .entries
                    .iter()
                    .map(|(url, e)| RegisteredEndpoint {
                        endpoint: url.clone(),
                        metadata: e.metadata.clone(),
                    })
                    .collect(),
                revision: name.revision,
            },
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: RegistryConfig,
    state: Mutex<State>,
    watchers: AtomicUsize,
    sweeper_started: AtomicBool,
    closing: watch::Sender<bool>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent before anything can panic,
        // so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The registry: serve it with [`proto::RegistryServer`].
///
/// A cheap handle (clones share the table), so keep one for [`RegistryService::stats`]
/// and [`RegistryService::shutdown`] while the server holds another. State lives behind
/// one `std::sync::Mutex`, never held across an `.await`; long polls wait on a
/// `tokio::sync::watch` per name.
#[derive(Debug, Clone)]
pub struct RegistryService {
    inner: Arc<Inner>,
}

impl Default for RegistryService {
    fn default() -> Self {
        RegistryService::new()
    }
}

impl RegistryService {
    /// A registry with [`RegistryConfig::default`].
    pub fn new() -> Self {
        RegistryService::with_config(RegistryConfig::default())
    }

    /// A registry with `config`.
    pub fn with_config(mut config: RegistryConfig) -> Self {
        config.max_entries_per_name = config
            .max_entries_per_name
            .min(proto::MAX_ENDPOINTS as usize);
        config.sweep_interval = config.sweep_interval.max(Duration::from_millis(1));
        let state = State {
            next_lease: crate::id::random_u64(),
            ..State::default()
        };
        RegistryService {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
                watchers: AtomicUsize::new(0),
                sweeper_started: AtomicBool::new(false),
                closing: watch::channel(false).0,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Occupancy and counters.
    pub fn stats(&self) -> RegistryStats {
        let state = self.inner.lock();
        RegistryStats {
            names: state.live_names as u64,
            entries: state.leases.len() as u64,
            watchers: self.inner.watchers.load(Ordering::Relaxed) as u64,
            ..state.stats
        }
    }

    /// Starts the sweeper task that removes expired entries (on the current tokio
    /// runtime) if it is not running yet. The first call the registry serves starts it
    /// too; call this to have expiry work before any. The task ends when every handle
    /// on the registry is dropped.
    pub fn spawn_sweeper(&self) {
        if self.inner.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(sweep(weak, self.inner.config.sweep_interval));
    }

    /// Prepares for shutdown: every waiting `watch` answers at once, and later ones do
    /// not wait. Call it before `ServerHandle::shutdown`, which otherwise waits for the
    /// long polls in flight to time out.
    pub fn shutdown(&self) {
        self.inner.closing.send_replace(true);
    }

    fn refuse(&self, state: &mut State, code: i32, message: String) -> Status {
        state.stats.refused += 1;
        match code {
            codes::REGISTRY_FULL => state.stats.refused_registry_full += 1,
            codes::NAME_FULL => state.stats.refused_name_full += 1,
            _ => state.stats.refused_invalid += 1,
        }
        Status::application(code, message)
    }

    /// Checks a registration; returns its normalised endpoint URL.
    fn validate(&self, r: &proto::Registration) -> Result<String, (i32, String)> {
        let invalid = |m: String| (codes::INVALID, m);
        if r.name.is_empty() || r.name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "service name {:?} must be non-empty and without control characters",
                r.name
            )));
        }
        let endpoint: Endpoint = r
            .endpoint
            .parse()
            .map_err(|e: ResolveError| invalid(e.to_string()))?;
        if endpoint.port == 0 {
            return Err(invalid(format!("endpoint {endpoint} has port 0")));
        }
        let mut keys = BTreeSet::new();
        let mut bytes = 0usize;
        for m in &r.metadata {
            if !keys.insert(m.key.as_str()) {
                return Err(invalid(format!("duplicate metadata key {:?}", m.key)));
            }
            bytes += m.key.len() + m.value.len();
        }
        if bytes > self.inner.config.max_metadata_bytes {
            return Err(invalid(format!(
                "metadata of {bytes} bytes exceeds the limit of {}",
                self.inner.config.max_metadata_bytes
            )));
        }
        Ok(endpoint.to_string())
    }

    fn ensure_sweeper(&self) {
        if !self.inner.sweeper_started.load(Ordering::Acquire) {
            self.spawn_sweeper();
        }
    }
}

async fn sweep(inner: Weak<Inner>, every: Duration) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let now = Instant::now();
            let mut state = inner.lock();
            state.expire(now);
            let cap = now + every;
            state.expiry.first().map_or(cap, |&(at, _)| at.min(cap))
        };
        tokio::time::sleep_until(next).await;
    }
}

/// Decrements the waiting-watcher count when a long poll ends, however it ends.
struct WatcherSlot<'a>(&'a AtomicUsize);

impl Drop for WatcherSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl proto::Registry for RegistryService {
    async fn register(&self, _ctx: &CallContext, r: proto::Registration) -> Result<Lease, Status> {
        self.ensure_sweeper();
        let config = &self.inner.config;
        let ttl = config.grant(r.ttl_ms);
        let validated = self.validate(&r);
        let now = Instant::now();
        let mut state = self.inner.lock();
        state.expire(now);
        let url = match validated {
            Ok(url) => url,
            Err((code, message)) => return Err(self.refuse(&mut state, code, message)),
        };
        let key: Key = (r.name, r.service_version);
        let existing = state
            .names
            .get(&key)
            .and_then(|n| n.entries.get(&url))
            .map(|e| (e.lease, e.metadata == r.metadata));
        let lease = state.new_lease();
        let expires = now + ttl;
        match existing {
            Some((old, same_metadata)) => {
                // The same endpoint registers again (a restart, a lost lease): it takes
                // over the entry; the set changes only if its metadata does.
                state.leases.remove(&old);
                let State { names, expiry, .. } = &mut *state;
                let entry = names
                    .get_mut(&key)
                    .and_then(|n| n.entries.get_mut(&url))
                    .expect("entry found above");
                expiry.remove(&(entry.expires, old));
                *entry = Entry {
                    lease,
                    metadata: r.metadata,
                    ttl,
                    expires,
                };
                expiry.insert((expires, lease));
                state.leases.insert(lease, (key.clone(), url));
                if !same_metadata {
                    state.changed(&key);
                }
            }
            None => {
                let count = state.names.get(&key).map_or(0, |n| n.entries.len());
                if state.leases.len() >= config.max_total_entries {
                    let message = format!(
                        "registry full: {} entries (max_total_entries)",
                        config.max_total_entries
                    );
                    return Err(self.refuse(&mut state, codes::REGISTRY_FULL, message));
                }
                if count == 0 && state.live_names >= config.max_names {
                    let message = format!("registry full: {} names (max_names)", config.max_names);
                    return Err(self.refuse(&mut state, codes::REGISTRY_FULL, message));
                }
                if count >= config.max_entries_per_name {
                    let message = format!(
                        "{} version {} already has {} entries (max_entries_per_name)",
                        key.0, key.1, config.max_entries_per_name
                    );
                    return Err(self.refuse(&mut state, codes::NAME_FULL, message));
                }
                if count == 0 {
                    state.live_names += 1;
                }
                state
                    .names
                    .entry(key.clone())
                    .or_insert_with(NameState::new)
                    .entries
                    .insert(
                        url.clone(),
                        Entry {
                            lease,
                            metadata: r.metadata,
                            ttl,
                            expires,
                        },
                    );
                state.expiry.insert((expires, lease));
                state.leases.insert(lease, (key.clone(), url));
                state.changed(&key);
            }
        }
        state.stats.registrations += 1;
        Ok(Lease {
            id: lease,
            ttl_ms: ttl.as_millis() as u32,
        })
    }

    async fn heartbeat(&self, _ctx: &CallContext, lease: u64) -> Result<bool, Status> {
        self.ensure_sweeper();
        let now = Instant::now();
        let mut state = self.inner.lock();
        state.expire(now);
        let Some((key, url)) = state.leases.get(&lease).cloned() else {
            state.stats.renewals_unknown += 1;
            return Ok(false);
        };
        let State { names, expiry, .. } = &mut *state;
        if let Some(entry) = names.get_mut(&key).and_then(|n| n.entries.get_mut(&url)) {
            expiry.remove(&(entry.expires, lease));
            entry.expires = now + entry.ttl;
            expiry.insert((entry.expires, lease));
        }
        state.stats.renewals += 1;
        Ok(true)
    }

    async fn deregister(&self, _ctx: &CallContext, lease: u64) -> Result<(), Status> {
        self.ensure_sweeper();
        let mut state = self.inner.lock();
        state.expire(Instant::now());
        if state.remove_lease(lease) {
            state.stats.deregistrations += 1;
        }
        Ok(())
    }

    async fn lookup(
        &self,
        _ctx: &CallContext,
        name: String,
        service_version: u32,
    ) -> Result<EndpointSet, Status> {
        self.ensure_sweeper();
        let mut state = self.inner.lock();
        state.expire(Instant::now());
        Ok(state.snapshot(&(name, service_version)))
    }

    async fn watch(
        &self,
        ctx: &CallContext,
        name: String,
        service_version: u32,
        known_revision: u64,
        wait_ms: u32,
    ) -> Result<EndpointSet, Status> {
        self.ensure_sweeper();
        let config = &self.inner.config;
        let key: Key = (name, service_version);
        let mut wait = Duration::from_millis(u64::from(wait_ms)).min(config.max_wait);
        if let Some(remaining) = ctx.remaining() {
            // Answer a little before the caller gives up.
            wait = wait.min(remaining.saturating_sub(remaining / 10));
        }
        let mut closing = self.inner.closing.subscribe();
        let (mut changes, _slot) = {
            let mut state = self.inner.lock();
            state.expire(Instant::now());
            let set = state.snapshot(&key);
            if set.revision != known_revision || wait.is_zero() || *closing.borrow() {
                return Ok(set);
            }
            let waiting = self.inner.watchers.fetch_add(1, Ordering::AcqRel);
            let slot = WatcherSlot(&self.inner.watchers);
            if waiting >= config.max_watchers {
                state.stats.watches_refused += 1;
                return Ok(set);
            }
            let rx = state
                .names
                .entry(key.clone())
                .or_insert_with(NameState::new)
                .notify
                .subscribe();
            (rx, slot)
        };
        tokio::select! {
            _ = changes.wait_for(|r| *r != known_revision) => {}
            () = tokio::time::sleep(wait) => {}
            () = ctx.cancelled() => {}
            _ = closing.wait_for(|c| *c) => {}
        }
        drop(changes);
        let mut state = self.inner.lock();
        state.expire(Instant::now());
        let set = state.snapshot(&key);
        state.collect(&key);
        Ok(set)
    }
}

/// Turns an answer into the sorted, deduplicated endpoints a [`Resolver`] publishes;
/// malformed URLs (which a registry of ours never stores) are skipped.
pub fn endpoints_of(set: &EndpointSet) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = set
        .endpoints
        .iter()
        .filter_map(|e| match e.endpoint.parse::<Endpoint>() {
            Ok(mut endpoint) => {
                endpoint.metadata = e
                    .metadata
                    .iter()
                    .map(|m| (m.key.clone(), m.value.clone()))
                    .collect();
                Some(endpoint)
            }
            Err(error) => {
                tracing::debug!(%error, "registry returned a malformed endpoint; skipped");
                None
            }
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// How long [`RegistryResolver`]'s long polls wait by default.
pub const DEFAULT_WATCH_WAIT: Duration = Duration::from_secs(20);

/// A [`Resolver`] backed by the registry: an initial `lookup`, then a background task
/// that long-polls `watch` and publishes every change.
///
/// A name with no endpoints resolves to an empty set (not an error): servers may
/// register after their clients start. When the registry cannot be reached the task
/// keeps the last known set and retries with exponential backoff (50 ms up to 5 s). It
/// stops — cancelling its long poll — when every receiver is dropped.
pub struct RegistryResolver<C: Channel> {
    client: RegistryClient<C>,
    wait: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl<C: Channel> Clone for RegistryResolver<C> {
    fn clone(&self) -> Self {
        RegistryResolver {
            client: self.client.clone(),
            wait: self.wait,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
        }
    }
}

impl<C: Channel> std::fmt::Debug for RegistryResolver<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryResolver")
            .field("registry", &self.client.client().remote())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl<C: Channel> RegistryResolver<C> {
    /// A resolver asking the registry behind `client`.
    pub fn new(client: RegistryClient<C>) -> Self {
        RegistryResolver {
            client,
            wait: DEFAULT_WATCH_WAIT,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }

    /// Sets how long each long poll asks the registry to wait (the registry caps it at
    /// its `max_wait`). Default [`DEFAULT_WATCH_WAIT`].
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.clamp(
            Duration::from_millis(1),
            Duration::from_millis(u64::from(u32::MAX)),
        );
        self
    }

    /// Sets the retry backoff range after a failed poll. Default 50 ms to 5 s.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }

    async fn follow(
        self,
        name: String,
        version: u32,
        mut revision: u64,
        tx: watch::Sender<Vec<Endpoint>>,
    ) {
        // The call may take the whole wait, plus time for the answer to travel.
        let poll = self.client.with_options(
            CallOptions::new().timeout(self.wait + self.wait / 4 + Duration::from_secs(1)),
        );
        let wait_ms = self.wait.as_millis() as u32;
        let mut backoff = self.backoff_min;
        loop {
            let started = Instant::now();
            let answer = tokio::select! {
                () = tx.closed() => return,
                r = poll.watch(name.clone(), version, revision, wait_ms) => r,
            };
            let pause = match answer {
                Ok(set) => {
                    backoff = self.backoff_min;
                    let unchanged = set.revision == revision;
                    if !unchanged {
                        revision = set.revision;
                        let endpoints = endpoints_of(&set);
                        tx.send_if_modified(|current| {
                            let changed = *current != endpoints;
                            if changed {
                                *current = endpoints;
                            }
                            changed
                        });
                    }
                    // An unchanged answer long before the wait was up: the registry is
                    // busy (too many watchers) or shutting down. Do not spin.
                    (unchanged && started.elapsed() < self.wait / 2).then_some(self.backoff_max)
                }
                Err(error) => {
                    tracing::debug!(%error, name, version, "registry watch failed; keeping the last set");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.backoff_max);
                    Some(pause)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

impl<C: Channel> Resolver for RegistryResolver<C> {
    async fn watch(
        &self,
        name: &str,
        version: u32,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ResolveError> {
        let first = self
            .client
            .lookup(name.to_owned(), version)
            .await
            .map_err(|e| ResolveError::Service(format!("registry lookup of {name}: {e}")))?;
        let (tx, rx) = watch::channel(endpoints_of(&first));
        tokio::spawn(
            self.clone()
                .follow(name.to_owned(), version, first.revision, tx),
        );
        Ok(rx)
    }
}

/// How long `deregister` waits for the registry.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default)]
struct LeaseState {
    /// The current lease (`None`: not registered yet, or lost and not yet replaced).
    lease: Option<u64>,
    ttl: Duration,
}

/// A server's registration with the registry, kept alive by heartbeats.
///
/// The heartbeat task renews the lease every third of the granted TTL and, if the
/// registry answers that the lease is unknown (it expired during a partition, or the
/// registry restarted), registers again. [`Registration::deregister`] removes the entry
/// at once; dropping the handle only stops the heartbeats, so the entry expires by its
/// TTL.
#[derive(Debug)]
pub struct Registration {
    endpoint: Endpoint,
    state: Arc<Mutex<LeaseState>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RpcError>>>,
}

struct Heartbeat<C: Channel> {
    client: RegistryClient<C>,
    request: proto::Registration,
    state: Arc<Mutex<LeaseState>>,
}

impl<C: Channel> Heartbeat<C> {
    fn set(&self, lease: Option<u64>, ttl: Duration) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = LeaseState { lease, ttl };
    }

    fn get(&self) -> LeaseState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn register(&self, timeout: Option<Duration>) -> Result<Lease, RpcError> {
        let client = match timeout {
            Some(t) => self.client.with_options(CallOptions::new().timeout(t)),
            None => self.client.clone(),
        };
        let lease = client.register(self.request.clone()).await?;
        self.set(
            Some(lease.id),
            Duration::from_millis(u64::from(lease.ttl_ms)),
        );
        Ok(lease)
    }

    /// Heartbeats (or registers) until told to stop; deregisters if told to, returns
    /// if the handle was dropped.
    async fn run(self, mut stop: oneshot::Receiver<()>) -> Result<(), RpcError> {
        let mut backoff = Duration::from_millis(50);
        let mut warned = false;
        // Not registered yet (started in the background): register at once.
        let mut first = true;
        loop {
            let LeaseState { lease, ttl } = self.get();
            let pause = match lease {
                Some(_) => (ttl / 3).max(Duration::from_millis(1)),
                None if first => Duration::ZERO,
                None => backoff,
            };
            first = false;
            tokio::select! {
                r = &mut stop => {
                    return match (r, self.get().lease) {
                        (Ok(()), Some(lease)) => {
                            self.set(None, ttl);
                            self.client
                                .with_options(CallOptions::new().timeout(DEREGISTER_TIMEOUT))
                                .deregister(lease)
                                .await
                        }
                        _ => Ok(()),
                    };
                }
                () = tokio::time::sleep(pause) => {}
            }
            // Each call must end well before the lease would lapse.
            let limit = (ttl / 3).max(Duration::from_millis(100));
            let outcome = match lease {
                Some(id) => match self
                    .client
                    .with_options(CallOptions::new().timeout(limit))
                    .heartbeat(id)
                    .await
                {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        tracing::info!(name = %self.request.name, endpoint = %self.request.endpoint, "registry lease lost; registering again");
                        self.set(None, ttl);
                        self.register(Some(limit)).await.map(drop)
                    }
                    Err(e) => Err(e),
                },
                None => self
                    .register(Some(Duration::from_secs(5).max(limit)))
                    .await
                    .map(drop),
            };
            match outcome {
                Ok(()) => {
                    if warned {
                        tracing::info!(name = %self.request.name, endpoint = %self.request.endpoint, "registered with the registry");
                    }
                    warned = false;
                    backoff = Duration::from_millis(50);
                }
                Err(error) => {
                    if !warned {
                        tracing::warn!(name = %self.request.name, endpoint = %self.request.endpoint, %error, "registry unreachable; retrying");
                        warned = true;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

impl Registration {
    /// Registers `endpoint` (with its metadata) under `name` and `version`, asking for
    /// `ttl` (`Duration::ZERO`: the registry's default; the registry clamps it to its
    /// range), then keeps the lease alive in a background task on the current runtime.
    /// Fails if the first registration fails.
    pub async fn start<C: Channel>(
        client: RegistryClient<C>,
        name: impl Into<String>,
        version: u32,
        endpoint: Endpoint,
        ttl: Duration,
    ) -> Result<Registration, RpcError> {
        let heartbeat = Heartbeat::new(client, name.into(), version, &endpoint, ttl);
        heartbeat.register(None).await?;
        Ok(Registration::spawn(heartbeat, endpoint))
    }

    /// Like [`Registration::start`], but returns at once: the first registration happens
    /// in the background and is retried with backoff (logging a warning) until it
    /// succeeds. Must be called within a tokio runtime.
    pub fn start_in_background<C: Channel>(
        client: RegistryClient<C>,
        name: impl Into<String>,
        version: u32,
        endpoint: Endpoint,
        ttl: Duration,
    ) -> Registration {
        let heartbeat = Heartbeat::new(client, name.into(), version, &endpoint, ttl);
        Registration::spawn(heartbeat, endpoint)
    }

    fn spawn<C: Channel>(heartbeat: Heartbeat<C>, endpoint: Endpoint) -> Registration {
        let (stop, stopped) = oneshot::channel();
        let state = heartbeat.state.clone();
        let task = tokio::spawn(heartbeat.run(stopped));
        Registration {
            endpoint,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The registered endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The current lease id (`None` while not registered).
    pub fn lease(&self) -> Option<u64> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).lease
    }

    /// The TTL the registry granted (zero before the first registration).
    pub fn ttl(&self) -> Duration {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).ttl
    }

    /// Stops the heartbeats and removes the entry from the registry at once (waiting at
    /// most a heartbeat call in progress plus 2 s for the registry).
    pub async fn deregister(mut self) -> Result<(), RpcError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(RpcError::Internal {
                    message: e.to_string(),
                })
            }),
            None => Ok(()),
        }
    }
}

impl<C: Channel> Heartbeat<C> {
    fn new(
        client: RegistryClient<C>,
        name: String,
        version: u32,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Self {
        Heartbeat {
            client,
            request: proto::Registration {
                name,
                service_version: version,
                endpoint: endpoint.to_string(),
                metadata: endpoint
                    .metadata
                    .iter()
                    .map(|(k, v)| MetadataEntry {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                ttl_ms: ttl.as_millis().min(u128::from(u32::MAX)) as u32,
            },
            state: Arc::new(Mutex::new(LeaseState::default())),
        }
    }
}

/// Registers a server with the registry while it serves: a [`ServeHook`] for
/// [`crate::server::ServerBuilder::hook`].
///
/// `serve` starts a [`Registration`] in the background (a port of 0 in the advertised
/// endpoint means the listener's port), which keeps the lease alive by heartbeats with
/// the registry's default TTL; if the registry cannot be reached the server serves
/// anyway, logs a warning and keeps trying. [`crate::server::ServerHandle::shutdown`]
/// deregisters first (waiting at most [`DEREGISTER_WAIT`] for the registry), before
/// draining; dropping the handle stops the heartbeats, so the entry expires by its TTL.
/// Add one hook per name to register several.
///
/// ```no_run
/// # async fn doc<L: rpc_core::transport::Listener, C: rpc_core::transport::Channel>(
/// #     listener: L, registry: rpc_core::naming::registry::proto::RegistryClient<C>,
/// #     svc: impl rpc_core::server::Service) {
/// use rpc_core::naming::registry::RegisterOnServe;
/// use rpc_core::server::Server;
/// let server = Server::builder()
///     .add_service(svc)
///     .hook(RegisterOnServe::new(registry, "calc", 1, "tcp://127.0.0.1:0".parse().unwrap()))
///     .serve(listener)
///     .unwrap();
/// # }
/// ```
pub struct RegisterOnServe {
    start: Box<dyn FnOnce(SocketAddr) -> Registration + Send>,
}

/// How long a graceful shutdown waits for the registry to confirm a deregistration.
pub const DEREGISTER_WAIT: Duration = Duration::from_secs(2);

impl std::fmt::Debug for RegisterOnServe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterOnServe").finish_non_exhaustive()
    }
}

impl RegisterOnServe {
    /// Registers as `name` (`version`) at `advertised` with the registry `client`
    /// speaks to, once the server serves.
    pub fn new<C: Channel>(
        client: RegistryClient<C>,
        name: impl Into<String>,
        version: u32,
        advertised: Endpoint,
    ) -> Self {
        let name = name.into();
        RegisterOnServe {
            start: Box::new(move |local: SocketAddr| {
                let mut endpoint = advertised;
                if endpoint.port == 0 {
                    endpoint.port = local.port();
                }
                Registration::start_in_background(client, name, version, endpoint, Duration::ZERO)
            }),
        }
    }
}

impl ServeHook for RegisterOnServe {
    fn start(self: Box<Self>, serving: &Serving) -> Box<dyn RunningHook> {
        Box::new((self.start)(serving.local_addr()))
    }
}

impl RunningHook for Registration {
    fn stop(self: Box<Self>) -> HookFuture {
        Box::pin(async move {
            let endpoint = self.endpoint().to_string();
            match tokio::time::timeout(DEREGISTER_WAIT, self.deregister()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%endpoint, %error, "could not deregister from the registry")
                }
                Err(_) => {
                    tracing::warn!(%endpoint, "the registry did not confirm the deregistration in time")
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::proto::RegistryServer;
    use super::*;
    use crate::transport::memory;
    use crate::Server;

    #[test]
    fn ttls_are_clamped_to_whole_milliseconds() {
        let config = RegistryConfig::default();
        assert_eq!(config.grant(0), config.default_ttl);
        assert_eq!(config.grant(1), config.min_ttl);
        assert_eq!(config.grant(u32::MAX), config.max_ttl);
        assert_eq!(config.grant(1_234), Duration::from_millis(1_234));
        assert_eq!(config.recommended_workers(), 1_088);
    }

    #[tokio::test]
    async fn port_zero_is_the_listeners_port() {
        let service = RegistryService::new();
        let (channel, listener) = memory::endpoint(16);
        let server = Server::builder()
            .add_service(RegistryServer::new(service.clone()))
            .serve(listener)
            .unwrap();
        let client = RegistryClient::new(channel);
        let hook = RegisterOnServe::new(
            client.clone(),
            "calc",
            1,
            "udp://10.1.2.3:0".parse().unwrap(),
        );
        let registration =
            Box::new(hook).start(&Serving::new("0.0.0.0:4242".parse().unwrap(), Vec::new()));
        let set = loop {
            let set = client.lookup("calc".into(), 1).await.unwrap();
            if !set.endpoints.is_empty() {
                break set;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(set.endpoints[0].endpoint, "udp://10.1.2.3:4242");
        registration.stop().await;
        assert!(client
            .lookup("calc".into(), 1)
            .await
            .unwrap()
            .endpoints
            .is_empty());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn expiry_is_lazy_as_well() {
        let service = RegistryService::with_config(RegistryConfig {
            min_ttl: Duration::from_millis(10),
            ..RegistryConfig::default()
        });
        // Pretend the sweeper runs (it does not): only lazy expiry removes entries.
        service.inner.sweeper_started.store(true, Ordering::Release);
        let (channel, listener) = memory::endpoint(16);
        let server = Server::builder()
            .add_service(RegistryServer::new(service.clone()))
            .serve(listener)
            .unwrap();
        let client = RegistryClient::new(channel);
        client
            .register(proto::Registration {
                name: "a".into(),
                service_version: 1,
                endpoint: "tcp://127.0.0.1:1".into(),
                metadata: Vec::new(),
                ttl_ms: 10,
            })
            .await
            .unwrap();
        assert_eq!(service.stats().entries, 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(service.stats().entries, 1, "no sweeper");
        let set = client.lookup("a".into(), 1).await.unwrap();
        assert!(set.endpoints.is_empty());
        let stats = service.stats();
        assert_eq!((stats.entries, stats.names, stats.expirations), (0, 0, 1));
        assert!(
            service.inner.lock().names.is_empty(),
            "empty names are forgotten"
        );
        server.shutdown().await;
    }
}
