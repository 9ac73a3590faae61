//! The server's reply cache: what makes exactly-once (and at-most-once) calls run at
//! most once however often the network or the client repeats them.
//!
//! Keyed by ([`ClientScope`], client id, call id): a client's entries are only ever
//! seen and changed by frames from the scope that created them — the connection's
//! authenticated [`Principal`](crate::Principal) when it has one, else its peer IP
//! address — so another peer that learns a client id cannot read its cached replies,
//! pre-answer its calls, raise its low-water mark or (see the server's cancel
//! handling) cancel its calls. A call is
//! either *running* (its duplicates wait for the running execution's reply) or *done*
//! (its duplicates get the cached reply at once). Memory is bounded five ways:
//!
//! 1. **The client's low-water mark.** Every call carries the lowest call id its client
//!    still waits for; everything of that client below it is dropped, and the client's
//!    *floor* rises to it. Only that client's own scope can raise it.
//! 2. **A per-client cap** (entries and bytes) and 3. **a global cap** (entries and
//!    bytes): beyond them the oldest finished replies are evicted early (counted), and
//!    the floor rises above them.
//! 4. **Idle expiry:** a client not heard from for `client_idle` is forgotten entirely.
//! 5. **Client admission:** at most `max_clients` clients are tracked, at most
//!    `max_clients_per_peer` of them from one scope (principal or address). A call
//!    from a new client beyond either is refused ([`Lookup::Refused`], answered `Overloaded`): known clients
//!    are never pushed out to make room, so strangers minting client ids cannot evict
//!    an established client's entries and make its retried call run twice.
//!
//! Duplicates waiting on a running call are bounded too (`max_waiters` per call;
//! beyond it a duplicate is dropped, [`Lookup::Dropped`], and its sender retries).
//!
//! A call below its client's floor was either answered and acknowledged, or evicted: it
//! is refused ([`Lookup::Forgotten`], answered `ReplyEvicted`) rather than run again.
//! Running entries are never evicted (their count is bounded by the server's admission
//! limit). The one way a call can run twice is a client forgotten by idle expiry whose
//! retry arrives after `client_idle` (10 minutes by default, far beyond any deadline).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::scope::ClientScope;

use crate::frame::Frame;
use crate::transport::FrameSender;

/// Bytes charged per entry on top of its payload (map node, header, bookkeeping).
const ENTRY_OVERHEAD: usize = 128;

/// Limits of a [`ReplyCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplyCacheConfig {
    /// Finished replies kept per client. Default 4096.
    pub per_client_entries: usize,
    /// Bytes of finished replies kept per client. Default 4 MiB.
    pub per_client_bytes: usize,
    /// Finished replies kept in all. Default 200,000.
    pub total_entries: usize,
    /// Bytes of finished replies kept in all. Default 128 MiB.
    pub total_bytes: usize,
    /// Clients tracked at once; a call from a new client beyond it is refused
    /// (`Overloaded`) until idle clients expire. Default 20,000.
    pub max_clients: usize,
    /// Clients tracked at once from one [`ClientScope`] (one principal, or one peer IP
    /// address when the connection has no principal); beyond it, as for `max_clients`.
    /// Default 1,024.
    pub max_clients_per_peer: usize,
    /// Duplicates that may wait for one running call; further ones are dropped (their
    /// sender retries and gets the cached reply). Default 8.
    pub max_waiters: usize,
    /// A client not heard from for this long is forgotten. Default 10 minutes (far
    /// longer than any sensible call deadline).
    pub client_idle: Duration,
}

impl Default for ReplyCacheConfig {
    fn default() -> Self {
        ReplyCacheConfig {
            per_client_entries: 4096,
            per_client_bytes: 4 << 20,
            total_entries: 200_000,
            total_bytes: 128 << 20,
            max_clients: 20_000,
            max_clients_per_peer: 1024,
            max_waiters: 8,
            client_idle: Duration::from_secs(600),
        }
    }
}

impl ReplyCacheConfig {
    /// Sets the per-client caps.
    pub fn per_client(mut self, entries: usize, bytes: usize) -> Self {
        self.per_client_entries = entries.max(1);
        self.per_client_bytes = bytes;
        self
    }

    /// Sets the global caps.
    pub fn total(mut self, entries: usize, bytes: usize) -> Self {
        self.total_entries = entries.max(1);
        self.total_bytes = bytes;
        self
    }

    /// Sets the client limit.
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n.max(1);
        self
    }

    /// Sets the per-scope (per principal, else per peer address) client limit.
    pub fn max_clients_per_peer(mut self, n: usize) -> Self {
        self.max_clients_per_peer = n.max(1);
        self
    }

    /// Sets the limit of duplicates waiting for one running call.
    pub fn max_waiters(mut self, n: usize) -> Self {
        self.max_waiters = n;
        self
    }

    /// Sets the idle expiry.
    pub fn client_idle(mut self, d: Duration) -> Self {
        self.client_idle = d;
        self
    }
}

/// What to do with an arriving call.
#[derive(Debug)]
pub enum Lookup {
    /// First time seen: run it (the cache now records it as running).
    Run,
    /// A duplicate of a call still running: its reply will also go to this requester.
    Joined,
    /// A duplicate of a finished call: send this reply again.
    Cached(Frame),
    /// Below the client's floor (acknowledged or evicted): refuse it, never run it.
    Forgotten,
    /// A new client while the cache tracks as many clients as it may (in all, or from
    /// this peer): refuse the call as overloaded; nothing was recorded.
    Refused,
    /// A duplicate of a running call that already has `max_waiters` duplicates
    /// waiting: drop it (no answer); nothing was recorded.
    Dropped,
    /// The call id of a recorded call, with different arguments (or another procedure):
    /// a client bug. Refuse it as bad arguments; the original is not affected.
    Mismatch,
}

/// A cache's counters and occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplyCacheStats {
    /// Clients tracked.
    pub clients: usize,
    /// Finished replies held.
    pub entries: usize,
    /// Bytes charged for finished replies.
    pub bytes: usize,
    /// Calls running.
    pub running: usize,
    /// Duplicates answered from the cache or joined to a running call.
    pub dedup_hits: u64,
    /// Finished replies evicted before their client acknowledged them.
    pub evicted_early: u64,
    /// Finished replies freed by clients' low-water marks.
    pub released: u64,
    /// Late duplicates refused because they were below the floor.
    pub refused_forgotten: u64,
    /// Clients forgotten after `client_idle` without a call.
    pub clients_expired: u64,
    /// Calls of new clients refused because the client limits were reached.
    pub clients_refused: u64,
    /// Duplicates dropped because their call had `max_waiters` waiting already.
    pub waiters_dropped: u64,
    /// Calls refused because they reused a recorded call id with other arguments.
    pub mismatched: u64,
}

struct Waiter {
    call: crate::frame::FrameHeader,
    reply_to: FrameSender,
}

enum Entry {
    Running {
        waiters: Vec<Waiter>,
        fingerprint: u32,
    },
    Done {
        reply: Frame,
        bytes: usize,
        fingerprint: u32,
    },
}

impl Entry {
    fn fingerprint(&self) -> u32 {
        match self {
            Entry::Running { fingerprint, .. } | Entry::Done { fingerprint, .. } => *fingerprint,
        }
    }
}

/// What identifies a call's request beyond its ids: a CRC-32 of its interface id,
/// interface version, procedure and argument bytes. A duplicate must match the
/// original's, or it is a different request reusing the call id.
pub fn fingerprint(call: &crate::frame::FrameHeader, args: &[u8]) -> u32 {
    let mut h = crate::frame::crc32_hasher();
    h.update(&call.interface_id.to_be_bytes());
    h.update(&call.interface_version.to_be_bytes());
    h.update(&call.procedure.to_be_bytes());
    h.update(args);
    h.finalize()
}

#[derive(Default)]
struct ClientState {
    /// Calls below this are forgotten.
    floor: u64,
    calls: BTreeMap<u64, Entry>,
    done_entries: usize,
    done_bytes: usize,
    /// When a call of this client last arrived.
    last_seen: Option<Instant>,
    /// The time the client is filed under in `ReplyCache::lru` (at most `last_seen`:
    /// refiled lazily, by `expire`, not on every call).
    filed: Option<Instant>,
}

/// Whose entries: the scope the client's calls come from (its principal, else its peer
/// address) and its client id.
pub type ClientKey = (ClientScope, u64);

/// The reply cache's counters as `metrics` handles (`rpc_server_reply_cache_<name>_total`),
/// registered when the cache is made.
struct CacheMetrics {
    dedup_hits: metrics::Counter,
    evicted_early: metrics::Counter,
    released: metrics::Counter,
    refused_forgotten: metrics::Counter,
    clients_expired: metrics::Counter,
    clients_refused: metrics::Counter,
    waiters_dropped: metrics::Counter,
    mismatched: metrics::Counter,
}

impl CacheMetrics {
    fn new() -> Self {
        CacheMetrics {
            dedup_hits: metrics::counter!("rpc_server_reply_cache_dedup_hits_total"),
            evicted_early: metrics::counter!("rpc_server_reply_cache_evicted_early_total"),
            released: metrics::counter!("rpc_server_reply_cache_released_total"),
            refused_forgotten: metrics::counter!("rpc_server_reply_cache_refused_forgotten_total"),
            clients_expired: metrics::counter!("rpc_server_reply_cache_clients_expired_total"),
            clients_refused: metrics::counter!("rpc_server_reply_cache_clients_refused_total"),
            waiters_dropped: metrics::counter!("rpc_server_reply_cache_waiters_dropped_total"),
            mismatched: metrics::counter!("rpc_server_reply_cache_mismatched_total"),
        }
    }
}

/// The reply cache. Not synchronised: the server wraps it in a mutex.
pub struct ReplyCache {
    cfg: ReplyCacheConfig,
    clients: HashMap<ClientKey, ClientState>,
    /// Clients tracked, in all and per scope (shared by the shards of a sharded cache,
    /// whose client limits hold for all of them together).
    admitted: Arc<Mutex<Admitted>>,
    /// Finished replies in completion order, for global eviction (oldest first). Entries
    /// freed by other means stay here until they reach the front or a compaction.
    order: VecDeque<(ClientKey, u64)>,
    /// Clients by when they were filed (least recent first), so expiry and the client
    /// limit cost O(log n) per client removed rather than a scan. A client is filed when
    /// first seen and refiled under its `last_seen` only when expiry reaches it: a call
    /// of a known client does not touch the set.
    lru: BTreeSet<(Instant, ClientKey)>,
    done_entries: usize,
    done_bytes: usize,
    running: usize,
    stats: ReplyCacheStats,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for ReplyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyCache")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ReplyCache {
    /// An empty cache.
    pub fn new(cfg: ReplyCacheConfig) -> Self {
        Self::sharing(cfg, Arc::default())
    }

    /// An empty cache whose client limits count the clients of every cache made with
    /// the same `admitted`.
    fn sharing(cfg: ReplyCacheConfig, admitted: Arc<Mutex<Admitted>>) -> Self {
        ReplyCache {
            cfg,
            clients: HashMap::new(),
            admitted,
            order: VecDeque::new(),
            lru: BTreeSet::new(),
            done_entries: 0,
            done_bytes: 0,
            running: 0,
            stats: ReplyCacheStats::default(),
            metrics: CacheMetrics::new(),
        }
    }

    /// Counters and occupancy.
    pub fn stats(&self) -> ReplyCacheStats {
        ReplyCacheStats {
            clients: self.clients.len(),
            entries: self.done_entries,
            bytes: self.done_bytes,
            running: self.running,
            ..self.stats
        }
    }

    /// Looks an arriving call from `scope` up (an [`IpAddr`](std::net::IpAddr) converts
    /// into the scope of a connection without a principal). `low_water` is the lowest
    /// call id its client still waits for (0: unknown); `reply_to` receives the reply
    /// if the call joins a running execution.
    pub fn begin(
        &mut self,
        scope: impl Into<ClientScope>,
        call: &crate::frame::FrameHeader,
        fingerprint: u32,
        low_water: u64,
        reply_to: &FrameSender,
        now: Instant,
    ) -> Lookup {
        self.begin_counted(
            scope.into(),
            call,
            fingerprint,
            low_water,
            reply_to,
            now,
            true,
        )
    }

    /// [`ReplyCache::begin`]; a refusal is counted only if `count_refusal` (a sharded
    /// cache tries again after expiring idle clients of every shard).
    #[allow(clippy::too_many_arguments)]
    fn begin_counted(
        &mut self,
        scope: ClientScope,
        call: &crate::frame::FrameHeader,
        fingerprint: u32,
        low_water: u64,
        reply_to: &FrameSender,
        now: Instant,
        count_refusal: bool,
    ) -> Lookup {
        let key = (scope, call.client_id);
        // A known client's call looks its client up once.
        let client = match self.clients.get_mut(&key) {
            Some(client) => client,
            None => {
                if !self.admit_client(&key.0, now) {
                    if count_refusal {
                        self.stats.clients_refused += 1;
                        self.metrics.clients_refused.increment(1);
                    }
                    return Lookup::Refused;
                }
                self.lru.insert((now, key.clone()));
                self.clients.entry(key.clone()).or_insert(ClientState {
                    filed: Some(now),
                    ..ClientState::default()
                })
            }
        };
        client.last_seen = Some(now);
        if low_water > client.floor {
            // Everything below the low-water mark was answered and acknowledged (with
            // one call in flight, that is the previous call's entry: taken off the
            // front, with no new map built).
            client.floor = low_water;
            while let Some(first) = client.calls.first_entry() {
                if *first.key() >= low_water {
                    break;
                }
                let entry = first.remove();
                match entry {
                    Entry::Done { bytes, .. } => {
                        client.done_entries -= 1;
                        client.done_bytes -= bytes;
                        self.done_entries -= 1;
                        self.done_bytes -= bytes;
                        self.stats.released += 1;
                        self.metrics.released.increment(1);
                    }
                    // A call still running below the mark: the client gave up on it.
                    // Its execution finishes and its reply is dropped.
                    Entry::Running { .. } => self.running -= 1,
                }
            }
            // Their places in the eviction order, if they lead it (they do when this
            // client's calls are the latest finished), go too, so the queue does not
            // grow until a compaction.
            while self
                .order
                .front()
                .is_some_and(|(k, id)| *id < low_water && *k == key)
            {
                self.order.pop_front();
            }
        }
        match client.calls.get_mut(&call.call_id) {
            Some(entry) if entry.fingerprint() != fingerprint => {
                self.stats.mismatched += 1;
                self.metrics.mismatched.increment(1);
                Lookup::Mismatch
            }
            None if call.call_id < client.floor => {
                self.stats.refused_forgotten += 1;
                self.metrics.refused_forgotten.increment(1);
                Lookup::Forgotten
            }
            None => {
                client.calls.insert(
                    call.call_id,
                    Entry::Running {
                        waiters: Vec::new(),
                        fingerprint,
                    },
                );
                self.running += 1;
                Lookup::Run
            }
            Some(Entry::Running { waiters, .. }) => {
                if waiters.len() >= self.cfg.max_waiters {
                    self.stats.waiters_dropped += 1;
                    self.metrics.waiters_dropped.increment(1);
                    return Lookup::Dropped;
                }
                self.stats.dedup_hits += 1;
                self.metrics.dedup_hits.increment(1);
                waiters.push(Waiter {
                    call: *call,
                    reply_to: reply_to.clone(),
                });
                Lookup::Joined
            }
            Some(Entry::Done { reply, .. }) => {
                self.stats.dedup_hits += 1;
                self.metrics.dedup_hits.increment(1);
                let mut again = reply.clone();
                again.header.call_id = call.call_id;
                Lookup::Cached(again)
            }
        }
    }

    /// Whether a new client from `scope` may be tracked (expiring idle clients first if
    /// a limit is reached); counts it in its scope's quota if so.
    fn admit_client(&mut self, scope: &ClientScope, now: Instant) -> bool {
        if self.try_admit(scope) {
            return true;
        }
        self.expire(now);
        self.try_admit(scope)
    }

    /// Counts a new client from `scope` if both client limits allow it.
    fn try_admit(&self, scope: &ClientScope) -> bool {
        let mut admitted = lock(&self.admitted);
        let of_scope = admitted.per_scope.get(scope).copied().unwrap_or(0);
        if admitted.clients >= self.cfg.max_clients || of_scope >= self.cfg.max_clients_per_peer {
            return false;
        }
        admitted.clients += 1;
        match admitted.per_scope.get_mut(scope) {
            Some(n) => *n += 1,
            None => {
                admitted.per_scope.insert(scope.clone(), 1);
            }
        }
        true
    }

    /// Records the reply of a call that [`ReplyCache::begin`] said to run, and returns
    /// the duplicates that joined it (each to be answered with the same reply).
    pub fn finish(
        &mut self,
        scope: impl Into<ClientScope>,
        client_id: u64,
        call_id: u64,
        reply: &Frame,
    ) -> Vec<(crate::frame::FrameHeader, FrameSender)> {
        let key = (scope.into(), client_id);
        let Some(client) = self.clients.get_mut(&key) else {
            return Vec::new();
        };
        // Released by the low-water mark (or the client expired) while running: absent.
        let Some(entry) = client.calls.get_mut(&call_id) else {
            return Vec::new();
        };
        let Entry::Running {
            waiters,
            fingerprint,
        } = entry
        else {
            return Vec::new();
        };
        let waiters = std::mem::take(waiters);
        let bytes = reply.payload_len() + ENTRY_OVERHEAD;
        *entry = Entry::Done {
            reply: reply.clone(),
            bytes,
            fingerprint: *fingerprint,
        };
        self.running -= 1;
        client.done_entries += 1;
        client.done_bytes += bytes;
        let over_client = client.done_entries > self.cfg.per_client_entries
            || client.done_bytes > self.cfg.per_client_bytes;
        self.done_entries += 1;
        self.done_bytes += bytes;
        if over_client {
            self.enforce_client_caps(&key);
        }
        self.order.push_back((key, call_id));
        self.enforce_total_caps();
        waiters.into_iter().map(|w| (w.call, w.reply_to)).collect()
    }

    /// Forgets a call that [`ReplyCache::begin`] said to run but that will not run after
    /// all (refused as overloaded, expired or cancelled before a worker took it), so a
    /// retry may run it. Returns the duplicates that had joined it, to be answered with
    /// the same refusal.
    pub fn abandon(
        &mut self,
        scope: impl Into<ClientScope>,
        client_id: u64,
        call_id: u64,
    ) -> Vec<(crate::frame::FrameHeader, FrameSender)> {
        let Some(client) = self.clients.get_mut(&(scope.into(), client_id)) else {
            return Vec::new();
        };
        if !matches!(client.calls.get(&call_id), Some(Entry::Running { .. })) {
            return Vec::new();
        }
        let Some(Entry::Running { waiters, .. }) = client.calls.remove(&call_id) else {
            return Vec::new();
        };
        self.running -= 1;
        waiters.into_iter().map(|w| (w.call, w.reply_to)).collect()
    }

    /// Evicts the oldest finished replies of `client_id` over its caps.
    fn enforce_client_caps(&mut self, client_id: &ClientKey) {
        let cfg = self.cfg;
        while let Some(client) = self.clients.get(client_id) {
            if client.done_entries <= cfg.per_client_entries
                && client.done_bytes <= cfg.per_client_bytes
            {
                break;
            }
            if !self.evict_oldest_done(client_id) {
                break;
            }
        }
    }

    /// Evicts the oldest finished replies of any client while over the global caps.
    fn enforce_total_caps(&mut self) {
        let cfg = self.cfg;
        while self.done_entries > cfg.total_entries || self.done_bytes > cfg.total_bytes {
            // The oldest finished reply of any client goes first.
            let Some((client, call)) = self.order.pop_front() else {
                break;
            };
            self.evict_done(&client, call);
        }
        // Keep the order queue proportional to what it indexes.
        if self.order.len() > 2 * self.done_entries + 1024 {
            let clients = &self.clients;
            self.order.retain(|(client, call)| {
                clients
                    .get(client)
                    .is_some_and(|c| matches!(c.calls.get(call), Some(Entry::Done { .. })))
            });
        }
    }

    /// Evicts one finished reply (if it is still held), raising its client's floor.
    fn evict_done(&mut self, client_id: &ClientKey, call_id: u64) -> bool {
        let Some(client) = self.clients.get_mut(client_id) else {
            return false;
        };
        if !matches!(client.calls.get(&call_id), Some(Entry::Done { .. })) {
            return false;
        }
        if let Some(Entry::Done { bytes, .. }) = client.calls.remove(&call_id) {
            client.done_entries -= 1;
            client.done_bytes -= bytes;
            self.done_entries -= 1;
            self.done_bytes -= bytes;
            self.stats.evicted_early += 1;
            self.metrics.evicted_early.increment(1);
        }
        // Its duplicates must now be refused, not run again.
        // (Saturating: the call id is the peer's to choose, u64::MAX included.)
        client.floor = client.floor.max(call_id.saturating_add(1));
        true
    }

    /// Evicts a client's oldest finished reply, raising its floor above it (calls below
    /// it that are still running keep their entries: the floor only refuses arrivals).
    fn evict_oldest_done(&mut self, client_id: &ClientKey) -> bool {
        let oldest = self.clients.get(client_id).and_then(|client| {
            client
                .calls
                .iter()
                .find(|(_, e)| matches!(e, Entry::Done { .. }))
                .map(|(id, _)| *id)
        });
        oldest.is_some_and(|id| self.evict_done(client_id, id))
    }

    fn forget_client(&mut self, id: ClientKey) {
        if let Some(client) = self.clients.remove(&id) {
            {
                let mut admitted = lock(&self.admitted);
                admitted.clients = admitted.clients.saturating_sub(1);
                if let Some(n) = admitted.per_scope.get_mut(&id.0) {
                    *n -= 1;
                    if *n == 0 {
                        admitted.per_scope.remove(&id.0);
                    }
                }
            }
            if let Some(filed) = client.filed {
                self.lru.remove(&(filed, id));
            }
            self.done_entries -= client.done_entries;
            self.done_bytes -= client.done_bytes;
            self.running -= client
                .calls
                .values()
                .filter(|e| matches!(e, Entry::Running { .. }))
                .count();
            self.stats.clients_expired += 1;
            self.metrics.clients_expired.increment(1);
        }
    }

    /// Forgets every client not heard from for `client_idle` and with nothing running.
    pub fn expire(&mut self, now: Instant) {
        let idle = self.cfg.client_idle;
        let idle_since = |t: Instant| now.saturating_duration_since(t) >= idle;
        // Clients are filed no later than they were last seen, so every idle client is
        // in the idle prefix of the set; the ones seen since are refiled under the time
        // they were last seen (and clients with calls running stay), after the scan.
        let mut refile = Vec::new();
        while let Some((filed, _)) = self.lru.first() {
            if !idle_since(*filed) {
                break;
            }
            let Some((filed, id)) = self.lru.pop_first() else {
                break;
            };
            let Some(client) = self.clients.get_mut(&id) else {
                continue;
            };
            let seen = client.last_seen.unwrap_or(filed);
            let running = client
                .calls
                .values()
                .any(|e| matches!(e, Entry::Running { .. }));
            if idle_since(seen) && !running {
                client.filed = None;
                self.forget_client(id);
            } else {
                client.filed = Some(seen);
                refile.push((seen, id));
            }
        }
        self.lru.extend(refile);
    }
}

/// Most shards a server's reply cache is split into.
const SHARDS: usize = 16;

/// The server's reply cache: [`SHARDS`] caches, each under its own mutex, so calls of
/// different clients rarely meet on a lock. A client's entries all live in one shard,
/// chosen by its client id mixed with a key drawn at random per server (a peer cannot
/// aim its client ids at one shard). Each shard holds its share of the global caps
/// (`total_entries` and `total_bytes` divided by the number of shards, and evicts its
/// own oldest replies over them); the per-client caps apply as they are, and the client
/// limits (`max_clients`, `max_clients_per_peer`) count the clients of all shards
/// together, exactly.
pub(crate) struct ReplyCacheShards {
    shards: Box<[Mutex<ReplyCache>]>,
    key: u64,
}

impl std::fmt::Debug for ReplyCacheShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyCacheShards")
            .field("shards", &self.shards.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl ReplyCacheShards {
    /// An empty cache with `cfg`'s limits.
    pub(crate) fn new(cfg: ReplyCacheConfig) -> Self {
        // No shard gets a share of zero entries.
        let n = SHARDS.min(cfg.total_entries).max(1);
        let share = ReplyCacheConfig {
            total_entries: (cfg.total_entries / n).max(1),
            total_bytes: cfg.total_bytes / n,
            ..cfg
        };
        let admitted = Arc::new(Mutex::new(Admitted::default()));
        let key = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
        };
        ReplyCacheShards {
            shards: (0..n)
                .map(|_| Mutex::new(ReplyCache::sharing(share, admitted.clone())))
                .collect(),
            key,
        }
    }

    /// The shard of `client_id`'s entries.
    fn shard(&self, client_id: u64) -> &Mutex<ReplyCache> {
        let mixed = (client_id ^ self.key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let index = ((mixed >> 32) % self.shards.len() as u64) as usize;
        &self.shards[index]
    }

    /// [`ReplyCache::begin`] in the call's shard. When the client limits refuse a new
    /// client, idle clients of every shard are expired (one shard at a time) and the
    /// call is looked up once more.
    pub(crate) fn begin(
        &self,
        scope: &ClientScope,
        call: &crate::frame::FrameHeader,
        fingerprint: u32,
        low_water: u64,
        reply_to: &FrameSender,
        now: Instant,
    ) -> Lookup {
        let shard = self.shard(call.client_id);
        let single = self.shards.len() == 1;
        let first = lock(shard).begin_counted(
            scope.clone(),
            call,
            fingerprint,
            low_water,
            reply_to,
            now,
            single,
        );
        if single || !matches!(first, Lookup::Refused) {
            return first;
        }
        self.expire(now);
        lock(shard).begin_counted(
            scope.clone(),
            call,
            fingerprint,
            low_water,
            reply_to,
            now,
            true,
        )
    }

    /// [`ReplyCache::finish`] in the call's shard.
    pub(crate) fn finish(
        &self,
        scope: &ClientScope,
        client_id: u64,
        call_id: u64,
        reply: &Frame,
    ) -> Vec<(crate::frame::FrameHeader, FrameSender)> {
        lock(self.shard(client_id)).finish(scope.clone(), client_id, call_id, reply)
    }

    /// [`ReplyCache::abandon`] in the call's shard.
    pub(crate) fn abandon(
        &self,
        scope: &ClientScope,
        client_id: u64,
        call_id: u64,
    ) -> Vec<(crate::frame::FrameHeader, FrameSender)> {
        lock(self.shard(client_id)).abandon(scope.clone(), client_id, call_id)
    }

    /// [`ReplyCache::expire`] in every shard, one at a time.
    pub(crate) fn expire(&self, now: Instant) {
        for shard in self.shards.iter() {
            lock(shard).expire(now);
        }
    }

    /// The shards' counters and occupancy added up.
    pub(crate) fn stats(&self) -> ReplyCacheStats {
        self.shards
            .iter()
            .map(|s| lock(s).stats())
            .fold(ReplyCacheStats::default(), |a, b| ReplyCacheStats {
                clients: a.clients + b.clients,
                entries: a.entries + b.entries,
                bytes: a.bytes + b.bytes,
                running: a.running + b.running,
                dedup_hits: a.dedup_hits + b.dedup_hits,
                evicted_early: a.evicted_early + b.evicted_early,
                released: a.released + b.released,
                refused_forgotten: a.refused_forgotten + b.refused_forgotten,
                clients_expired: a.clients_expired + b.clients_expired,
                clients_refused: a.clients_refused + b.clients_refused,
                waiters_dropped: a.waiters_dropped + b.waiters_dropped,
                mismatched: a.mismatched + b.mismatched,
            })
    }
}

/// Clients tracked, in all and per scope, for the client limits.
#[derive(Debug, Default)]
struct Admitted {
    clients: usize,
    per_scope: HashMap<ClientScope, usize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the data consistent: poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameHeader, FrameKind};
    use crate::transport::frame_queue;
    use bytes::Bytes;

    use std::net::IpAddr;

    const P: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const Q: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    fn call(client: u64, id: u64) -> FrameHeader {
        FrameHeader::call(client, id, 1, 1, 1)
    }

    fn reply(client: u64, id: u64, len: usize) -> Frame {
        Frame::new(
            FrameHeader::answer(&call(client, id), FrameKind::Reply, 7),
            Bytes::from(vec![id as u8; len]),
        )
    }

    #[test]
    fn run_join_cached_forgotten() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let mut c = ReplyCache::new(ReplyCacheConfig::default());
        assert!(matches!(
            c.begin(P, &call(1, 5), 0, 0, &tx, now),
            Lookup::Run
        ));
        assert!(matches!(
            c.begin(P, &call(1, 5), 0, 0, &tx, now),
            Lookup::Joined
        ));
        let joined = c.finish(P, 1, 5, &reply(1, 5, 10));
        assert_eq!(joined.len(), 1);
        match c.begin(P, &call(1, 5), 0, 0, &tx, now) {
            Lookup::Cached(f) => assert_eq!(f.payload, Bytes::from(vec![5u8; 10])),
            other => panic!("{other:?}"),
        }
        // The client acknowledges progress up to 6: entry 5 is released, duplicates
        // of it are refused.
        assert!(matches!(
            c.begin(P, &call(1, 6), 0, 6, &tx, now),
            Lookup::Run
        ));
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().released, 1);
        assert!(matches!(
            c.begin(P, &call(1, 5), 0, 6, &tx, now),
            Lookup::Forgotten
        ));
        assert_eq!(c.stats().dedup_hits, 2);
    }

    #[test]
    fn per_client_cap_evicts_oldest_and_refuses_its_duplicate() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let mut c = ReplyCache::new(ReplyCacheConfig::default().per_client(3, usize::MAX));
        for id in 1..=5 {
            assert!(matches!(
                c.begin(P, &call(9, id), 0, 0, &tx, now),
                Lookup::Run
            ));
            c.finish(P, 9, id, &reply(9, id, 4));
        }
        let s = c.stats();
        assert_eq!((s.entries, s.evicted_early), (3, 2));
        assert!(matches!(
            c.begin(P, &call(9, 1), 0, 0, &tx, now),
            Lookup::Forgotten
        ));
        assert!(matches!(
            c.begin(P, &call(9, 2), 0, 0, &tx, now),
            Lookup::Forgotten
        ));
        assert!(matches!(
            c.begin(P, &call(9, 3), 0, 0, &tx, now),
            Lookup::Cached(_)
        ));
    }

    #[test]
    fn global_caps_hold_across_many_clients() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let cfg = ReplyCacheConfig::default()
            .per_client(100, usize::MAX)
            .total(1000, 200_000)
            .max_clients(usize::MAX);
        let mut c = ReplyCache::new(cfg);
        for client in 0..500u64 {
            for id in 1..=10 {
                assert!(matches!(
                    c.begin(P, &call(client, id), 0, 0, &tx, now),
                    Lookup::Run
                ));
                c.finish(P, client, id, &reply(client, id, 100));
                let s = c.stats();
                assert!(s.entries <= 1000 && s.bytes <= 200_000, "{s:?}");
            }
        }
        assert!(c.stats().evicted_early > 0);
    }

    #[test]
    fn idle_clients_expire_and_the_client_limit_refuses_newcomers() {
        let (tx, _rx) = frame_queue(8);
        let t0 = Instant::now();
        let cfg = ReplyCacheConfig::default()
            .max_clients(10)
            .client_idle(Duration::from_secs(60));
        let mut c = ReplyCache::new(cfg);
        for client in 0..25u64 {
            match c.begin(P, &call(client, 1), 0, 0, &tx, t0) {
                Lookup::Run => {
                    c.finish(P, client, 1, &reply(client, 1, 8));
                }
                Lookup::Refused => assert!(client >= 10, "client {client}"),
                other => panic!("{other:?}"),
            }
            assert!(c.stats().clients <= 10);
        }
        assert_eq!(c.stats().clients_refused, 15);
        // The established clients kept their entries: a duplicate is still cached.
        assert!(matches!(
            c.begin(P, &call(3, 1), 0, 0, &tx, t0),
            Lookup::Cached(_)
        ));
        c.expire(t0 + Duration::from_secs(61));
        assert_eq!(c.stats().clients, 0);
        assert_eq!((c.stats().entries, c.stats().bytes), (0, 0));
        let later = t0 + Duration::from_secs(62);
        assert!(matches!(
            c.begin(P, &call(99, 1), 0, 0, &tx, later),
            Lookup::Run
        ));
    }

    #[test]
    fn one_peer_cannot_take_every_client_slot() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let cfg = ReplyCacheConfig::default()
            .max_clients(100)
            .max_clients_per_peer(5);
        let mut c = ReplyCache::new(cfg);
        let refused = (0..50u64)
            .filter(|&id| matches!(c.begin(Q, &call(id, 1), 0, 0, &tx, now), Lookup::Refused))
            .count();
        assert_eq!(refused, 45);
        assert!(matches!(
            c.begin(P, &call(1000, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
    }

    #[test]
    fn peers_do_not_see_each_others_entries() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let mut c = ReplyCache::new(ReplyCacheConfig::default());
        assert!(matches!(
            c.begin(P, &call(7, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
        c.finish(P, 7, 1, &reply(7, 1, 4));
        // Same client id from another address: its own, empty history. It can neither
        // read the reply nor, with a low-water mark, release or refuse P's entries.
        assert!(matches!(
            c.begin(Q, &call(7, 1), 0, 1_000, &tx, now),
            Lookup::Forgotten
        ));
        assert!(matches!(
            c.begin(Q, &call(7, 2_000), 0, 1_000, &tx, now),
            Lookup::Run
        ));
        assert!(matches!(
            c.begin(P, &call(7, 1), 0, 0, &tx, now),
            Lookup::Cached(_)
        ));
        assert!(matches!(
            c.begin(P, &call(7, 2), 0, 0, &tx, now),
            Lookup::Run
        ));
    }

    #[test]
    fn principals_on_one_address_do_not_see_each_others_entries() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let alice = || ClientScope::Principal(crate::Principal::Certificate("alice".into()));
        let bob = || ClientScope::Principal(crate::Principal::StaticKey([7; 32]));
        let mut c = ReplyCache::new(ReplyCacheConfig::default());
        assert!(matches!(
            c.begin(alice(), &call(7, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
        c.finish(alice(), 7, 1, &reply(7, 1, 4));
        // Bob (and the bare address both come from) has an empty history of client 7:
        // no cached reply, no mismatch, and his low-water mark releases nothing of
        // alice's.
        assert!(matches!(
            c.begin(bob(), &call(7, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
        assert!(matches!(
            c.begin(P, &call(7, 1), 0xFF, 0, &tx, now),
            Lookup::Run
        ));
        assert!(matches!(
            c.begin(bob(), &call(7, 500), 0, 500, &tx, now),
            Lookup::Run
        ));
        assert!(c.abandon(bob(), 7, 1).is_empty());
        assert!(matches!(
            c.begin(alice(), &call(7, 1), 0, 0, &tx, now),
            Lookup::Cached(_)
        ));
        assert_eq!((c.stats().clients, c.stats().released), (3, 0));
    }

    #[test]
    fn the_client_quota_is_per_principal() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let cfg = ReplyCacheConfig::default().max_clients_per_peer(2);
        let mut c = ReplyCache::new(cfg);
        let mallory = || ClientScope::Principal(crate::Principal::PreSharedKey("m".into()));
        let refused = (0..10u64)
            .filter(|&id| {
                matches!(
                    c.begin(mallory(), &call(id, 1), 0, 0, &tx, now),
                    Lookup::Refused
                )
            })
            .count();
        assert_eq!(refused, 8);
        // Another principal, and the bare address, keep their own quota.
        let alice = ClientScope::Principal(crate::Principal::Certificate("alice".into()));
        assert!(matches!(
            c.begin(alice, &call(100, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
        assert!(matches!(
            c.begin(P, &call(101, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
    }

    #[test]
    fn waiters_per_running_call_are_bounded() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let mut c = ReplyCache::new(ReplyCacheConfig::default().max_waiters(3));
        assert!(matches!(
            c.begin(P, &call(1, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
        let outcomes: Vec<_> = (0..10)
            .map(|_| c.begin(P, &call(1, 1), 0, 0, &tx, now))
            .collect();
        assert_eq!(
            outcomes
                .iter()
                .filter(|l| matches!(l, Lookup::Joined))
                .count(),
            3
        );
        assert_eq!(c.stats().waiters_dropped, 7);
        assert_eq!(c.finish(P, 1, 1, &reply(1, 1, 4)).len(), 3);
    }

    #[test]
    fn the_largest_call_id_is_evicted_without_overflow() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let mut c = ReplyCache::new(ReplyCacheConfig::default().per_client(1, usize::MAX));
        for id in [u64::MAX - 1, u64::MAX] {
            assert!(matches!(
                c.begin(P, &call(1, id), 0, 0, &tx, now),
                Lookup::Run
            ));
            c.finish(P, 1, id, &reply(1, id, 4));
        }
        assert!(matches!(
            c.begin(P, &call(1, u64::MAX), 0, 0, &tx, now),
            Lookup::Cached(_)
        ));
        // Evicting u64::MAX itself raises the floor to u64::MAX (saturated).
        assert!(matches!(
            c.begin(P, &call(2, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
        c.finish(P, 2, 1, &reply(2, 1, 4));
        assert!(c.evict_done(&(P.into(), 1), u64::MAX));
        assert!(matches!(
            c.begin(P, &call(1, u64::MAX - 1), 0, 0, &tx, now),
            Lookup::Forgotten
        ));
    }

    #[test]
    fn running_entries_are_never_evicted() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let mut c = ReplyCache::new(ReplyCacheConfig::default().per_client(1, usize::MAX));
        assert!(matches!(
            c.begin(P, &call(1, 1), 0, 0, &tx, now),
            Lookup::Run
        ));
        assert!(matches!(
            c.begin(P, &call(1, 2), 0, 0, &tx, now),
            Lookup::Run
        ));
        c.finish(P, 1, 2, &reply(1, 2, 4));
        assert!(matches!(
            c.begin(P, &call(1, 3), 0, 0, &tx, now),
            Lookup::Run
        ));
        c.finish(P, 1, 3, &reply(1, 3, 4));
        // Call 1 is still running: a duplicate joins it rather than being refused.
        assert!(matches!(
            c.begin(P, &call(1, 1), 0, 0, &tx, now),
            Lookup::Joined
        ));
        assert_eq!(c.stats().running, 1);
    }

    #[test]
    fn a_reused_call_id_with_another_fingerprint_is_a_mismatch() {
        let mut c = ReplyCache::new(ReplyCacheConfig::default());
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        assert!(matches!(
            c.begin(P, &call(1, 5), 0xAA, 0, &tx, now),
            Lookup::Run
        ));
        assert!(matches!(
            c.begin(P, &call(1, 5), 0xBB, 0, &tx, now),
            Lookup::Mismatch
        ));
        assert!(matches!(
            c.begin(P, &call(1, 5), 0xAA, 0, &tx, now),
            Lookup::Joined
        ));
        c.finish(P, 1, 5, &reply(1, 5, 4));
        assert!(matches!(
            c.begin(P, &call(1, 5), 0xBB, 0, &tx, now),
            Lookup::Mismatch
        ));
        assert!(matches!(
            c.begin(P, &call(1, 5), 0xAA, 0, &tx, now),
            Lookup::Cached(_)
        ));
        assert_eq!(c.stats().mismatched, 2);
        let h = call(1, 5);
        assert_ne!(fingerprint(&h, b"a"), fingerprint(&h, b"b"));
        let mut other = h;
        other.procedure += 1;
        assert_ne!(fingerprint(&h, b"a"), fingerprint(&other, b"a"));
    }

    #[test]
    fn a_client_seen_again_is_not_expired_from_when_it_was_first_filed() {
        let (tx, _rx) = frame_queue(8);
        let t0 = Instant::now();
        let mut c =
            ReplyCache::new(ReplyCacheConfig::default().client_idle(Duration::from_secs(60)));
        for (client, at) in [(1, 0), (2, 0), (1, 50)] {
            let now = t0 + Duration::from_secs(at);
            assert!(matches!(
                c.begin(P, &call(client, at + 1), 0, 0, &tx, now),
                Lookup::Run
            ));
            c.finish(P, client, at + 1, &reply(client, at + 1, 4));
        }
        // Client 2 is idle; client 1 was seen 20 s ago (filed under its first call).
        c.expire(t0 + Duration::from_secs(70));
        assert_eq!((c.stats().clients, c.stats().clients_expired), (1, 1));
        assert!(matches!(
            c.begin(P, &call(1, 51), 0, 0, &tx, t0 + Duration::from_secs(70)),
            Lookup::Cached(_)
        ));
        // Refiled under its last call: idle only a full `client_idle` after it.
        c.expire(t0 + Duration::from_secs(129));
        assert_eq!(c.stats().clients, 1);
        c.expire(t0 + Duration::from_secs(131));
        assert_eq!((c.stats().clients, c.stats().entries), (0, 0));
    }

    #[test]
    fn shards_share_the_client_limits_exactly_and_split_the_global_caps() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let cfg = ReplyCacheConfig::default()
            .max_clients(10)
            .max_clients_per_peer(6)
            .total(SHARDS * 4, usize::MAX);
        let c = ReplyCacheShards::new(cfg);
        assert_eq!(c.shards.len(), SHARDS);
        let p = ClientScope::from(P);
        let q = ClientScope::from(Q);
        let run = |scope: &ClientScope, client: u64| {
            matches!(
                c.begin(scope, &call(client, 1), 0, 0, &tx, now),
                Lookup::Run
            )
        };
        // At most 6 clients from one scope, 10 in all, wherever their shards are.
        assert_eq!((0..20u64).filter(|&id| run(&p, id)).count(), 6);
        assert_eq!((100..120u64).filter(|&id| run(&q, id)).count(), 4);
        let s = c.stats();
        assert_eq!((s.clients, s.running, s.clients_refused), (10, 10, 30));
        // Every shard keeps at most its share (4) of finished replies.
        for client in 1000..1100u64 {
            let scope = ClientScope::from(std::net::IpAddr::from([10, 0, 0, client as u8]));
            let c =
                ReplyCacheShards::new(ReplyCacheConfig::default().total(SHARDS * 4, usize::MAX));
            for id in 1..=10 {
                assert!(matches!(
                    c.begin(&scope, &call(client, id), 0, 0, &tx, now),
                    Lookup::Run
                ));
                c.finish(&scope, client, id, &reply(client, id, 8));
            }
            let s = c.stats();
            assert_eq!((s.entries, s.evicted_early), (4, 6), "{s:?}");
        }
        // A refused new client gets a slot once idle clients of any shard expire.
        let later = now + ReplyCacheConfig::default().client_idle;
        for id in 0..20u64 {
            c.abandon(&p, id, 1);
        }
        for id in 100..120u64 {
            c.abandon(&q, id, 1);
        }
        assert!(matches!(
            c.begin(&q, &call(500, 1), 0, 0, &tx, later),
            Lookup::Run
        ));
        // (Shards not needed to make room may still hold their idle clients.)
        c.expire(later);
        assert_eq!(c.stats().clients, 1);
    }
}
