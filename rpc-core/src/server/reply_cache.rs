//! The server's reply cache: what makes exactly-once (and at-most-once) calls run at
//! most once however often the network or the client repeats them.
//!
//! Keyed by (client id, call id). A call is either *running* (its duplicates wait for the
//! running execution's reply) or *done* (its duplicates get the cached reply at once).
//! Memory is bounded four ways:
//!
//! 1. **The client's low-water mark.** Every call carries the lowest call id its client
//!    still waits for; everything of that client below it is dropped, and the client's
//!    *floor* rises to it.
//! 2. **A per-client cap** (entries and bytes) and 3. **a global cap** (entries and
//!    bytes): beyond them the oldest finished replies are evicted early (counted), and
//!    the floor rises above them.
//! 4. **Idle expiry:** a client not heard from for `client_idle` is forgotten entirely.
//!
//! A call below its client's floor was either answered and acknowledged, or evicted: it
//! is refused ([`Lookup::Forgotten`]) rather than run again. Running entries are never
//! evicted (their count is bounded by the server's admission limit).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

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
    /// Clients tracked at once; a new client beyond it evicts the least recently seen
    /// idle one. Default 20,000.
    pub max_clients: usize,
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
    /// Clients forgotten (idle, or pushed out by the client limit).
    pub clients_expired: u64,
}

struct Waiter {
    call: crate::frame::FrameHeader,
    reply_to: FrameSender,
}

enum Entry {
    Running { waiters: Vec<Waiter> },
    Done { reply: Frame, bytes: usize },
}

#[derive(Default)]
struct ClientState {
    /// Calls below this are forgotten.
    floor: u64,
    calls: BTreeMap<u64, Entry>,
    done_entries: usize,
    done_bytes: usize,
    last_seen: Option<Instant>,
}

/// The reply cache. Not synchronised: the server wraps it in a mutex.
pub struct ReplyCache {
    cfg: ReplyCacheConfig,
    clients: HashMap<u64, ClientState>,
    /// Finished replies in completion order, for global eviction (oldest first). Entries
    /// freed by other means stay here until they reach the front or a compaction.
    order: VecDeque<(u64, u64)>,
    /// Clients by when they were last seen (least recent first), so expiry and the
    /// client limit cost O(log n) per client removed rather than a scan.
    lru: BTreeSet<(Instant, u64)>,
    done_entries: usize,
    done_bytes: usize,
    running: usize,
    stats: ReplyCacheStats,
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
        ReplyCache {
            cfg,
            clients: HashMap::new(),
            order: VecDeque::new(),
            lru: BTreeSet::new(),
            done_entries: 0,
            done_bytes: 0,
            running: 0,
            stats: ReplyCacheStats::default(),
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

    /// Looks an arriving call up. `low_water` is the lowest call id its client still
    /// waits for (0: unknown); `reply_to` receives the reply if the call joins a running
    /// execution.
    pub fn begin(
        &mut self,
        call: &crate::frame::FrameHeader,
        low_water: u64,
        reply_to: &FrameSender,
        now: Instant,
    ) -> Lookup {
        if !self.clients.contains_key(&call.client_id) && self.clients.len() >= self.cfg.max_clients
        {
            self.expire(now);
            if self.clients.len() >= self.cfg.max_clients {
                self.evict_least_recent_client();
            }
        }
        let client = self.clients.entry(call.client_id).or_default();
        if let Some(seen) = client.last_seen.replace(now) {
            self.lru.remove(&(seen, call.client_id));
        }
        self.lru.insert((now, call.client_id));
        if low_water > client.floor {
            // Everything below the low-water mark was answered and acknowledged.
            let keep = client.calls.split_off(&low_water);
            let released = std::mem::replace(&mut client.calls, keep);
            client.floor = low_water;
            for (_, entry) in released {
                match entry {
                    Entry::Done { bytes, .. } => {
                        client.done_entries -= 1;
                        client.done_bytes -= bytes;
                        self.done_entries -= 1;
                        self.done_bytes -= bytes;
                        self.stats.released += 1;
                    }
                    // A call still running below the mark: the client gave up on it.
                    // Its execution finishes and its reply is dropped.
                    Entry::Running { .. } => self.running -= 1,
                }
            }
        }
        match client.calls.get_mut(&call.call_id) {
            None if call.call_id < client.floor => {
                self.stats.refused_forgotten += 1;
                Lookup::Forgotten
            }
            None => {
                client.calls.insert(
                    call.call_id,
                    Entry::Running {
                        waiters: Vec::new(),
                    },
                );
                self.running += 1;
                Lookup::Run
            }
            Some(Entry::Running { waiters }) => {
                self.stats.dedup_hits += 1;
                waiters.push(Waiter {
                    call: *call,
                    reply_to: reply_to.clone(),
                });
                Lookup::Joined
            }
            Some(Entry::Done { reply, .. }) => {
                self.stats.dedup_hits += 1;
                let mut again = reply.clone();
                again.header.call_id = call.call_id;
                Lookup::Cached(again)
            }
        }
    }

    /// Records the reply of a call that [`ReplyCache::begin`] said to run, and returns
    /// the duplicates that joined it (each to be answered with the same reply).
    pub fn finish(
        &mut self,
        client_id: u64,
        call_id: u64,
        reply: &Frame,
    ) -> Vec<(crate::frame::FrameHeader, FrameSender)> {
        let Some(client) = self.clients.get_mut(&client_id) else {
            return Vec::new();
        };
        let Some(Entry::Running { waiters }) = client.calls.remove(&call_id) else {
            // Released by the low-water mark (or the client expired) while running.
            return Vec::new();
        };
        self.running -= 1;
        let bytes = reply.payload_len() + ENTRY_OVERHEAD;
        client.calls.insert(
            call_id,
            Entry::Done {
                reply: reply.clone(),
                bytes,
            },
        );
        client.done_entries += 1;
        client.done_bytes += bytes;
        self.done_entries += 1;
        self.done_bytes += bytes;
        self.order.push_back((client_id, call_id));
        self.enforce_caps(client_id);
        waiters.into_iter().map(|w| (w.call, w.reply_to)).collect()
    }

    /// Forgets a call that [`ReplyCache::begin`] said to run but that will not run after
    /// all (refused as overloaded, expired or cancelled before a worker took it), so a
    /// retry may run it. Returns the duplicates that had joined it, to be answered with
    /// the same refusal.
    pub fn abandon(
        &mut self,
        client_id: u64,
        call_id: u64,
    ) -> Vec<(crate::frame::FrameHeader, FrameSender)> {
        let Some(client) = self.clients.get_mut(&client_id) else {
            return Vec::new();
        };
        if !matches!(client.calls.get(&call_id), Some(Entry::Running { .. })) {
            return Vec::new();
        }
        let Some(Entry::Running { waiters }) = client.calls.remove(&call_id) else {
            return Vec::new();
        };
        self.running -= 1;
        waiters.into_iter().map(|w| (w.call, w.reply_to)).collect()
    }

    /// Evicts the oldest finished replies of `client_id` over its caps, then of any
    /// client over the global caps.
    fn enforce_caps(&mut self, client_id: u64) {
        let cfg = self.cfg;
        while let Some(client) = self.clients.get(&client_id) {
            if client.done_entries <= cfg.per_client_entries
                && client.done_bytes <= cfg.per_client_bytes
            {
                break;
            }
            if !self.evict_oldest_done(client_id) {
                break;
            }
        }
        while self.done_entries > cfg.total_entries || self.done_bytes > cfg.total_bytes {
            // The oldest finished reply of any client goes first.
            let Some((client, call)) = self.order.pop_front() else {
                break;
            };
            self.evict_done(client, call);
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
    fn evict_done(&mut self, client_id: u64, call_id: u64) -> bool {
        let Some(client) = self.clients.get_mut(&client_id) else {
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
        }
        // Its duplicates must now be refused, not run again.
        client.floor = client.floor.max(call_id + 1);
        true
    }

    /// Evicts a client's oldest finished reply, raising its floor above it (calls below
    /// it that are still running keep their entries: the floor only refuses arrivals).
    fn evict_oldest_done(&mut self, client_id: u64) -> bool {
        let oldest = self.clients.get(&client_id).and_then(|client| {
            client
                .calls
                .iter()
                .find(|(_, e)| matches!(e, Entry::Done { .. }))
                .map(|(id, _)| *id)
        });
        oldest.is_some_and(|id| self.evict_done(client_id, id))
    }

    fn forget_client(&mut self, id: u64) {
        if let Some(client) = self.clients.remove(&id) {
            if let Some(seen) = client.last_seen {
                self.lru.remove(&(seen, id));
            }
            self.done_entries -= client.done_entries;
            self.done_bytes -= client.done_bytes;
            self.running -= client
                .calls
                .values()
                .filter(|e| matches!(e, Entry::Running { .. }))
                .count();
            self.stats.clients_expired += 1;
        }
    }

    fn has_running(&self, id: u64) -> bool {
        self.clients
            .get(&id)
            .is_some_and(|c| c.calls.values().any(|e| matches!(e, Entry::Running { .. })))
    }

    fn evict_least_recent_client(&mut self) {
        let victim = self
            .lru
            .iter()
            .map(|&(_, id)| id)
            .find(|&id| !self.has_running(id));
        if let Some(id) = victim {
            self.forget_client(id);
        }
    }

    /// Forgets every client not heard from for `client_idle` and with nothing running.
    pub fn expire(&mut self, now: Instant) {
        let idle = self.cfg.client_idle;
        let expired: Vec<u64> = self
            .lru
            .iter()
            .take_while(|&&(seen, _)| now.saturating_duration_since(seen) >= idle)
            .map(|&(_, id)| id)
            .filter(|&id| !self.has_running(id))
            .collect();
        for id in expired {
            self.forget_client(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameHeader, FrameKind};
    use crate::transport::frame_queue;
    use bytes::Bytes;

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
        assert!(matches!(c.begin(&call(1, 5), 0, &tx, now), Lookup::Run));
        assert!(matches!(c.begin(&call(1, 5), 0, &tx, now), Lookup::Joined));
        let joined = c.finish(1, 5, &reply(1, 5, 10));
        assert_eq!(joined.len(), 1);
        match c.begin(&call(1, 5), 0, &tx, now) {
            Lookup::Cached(f) => assert_eq!(f.payload, Bytes::from(vec![5u8; 10])),
            other => panic!("{other:?}"),
        }
        // The client acknowledges progress up to 6: entry 5 is released, duplicates
        // of it are refused.
        assert!(matches!(c.begin(&call(1, 6), 6, &tx, now), Lookup::Run));
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().released, 1);
        assert!(matches!(
            c.begin(&call(1, 5), 6, &tx, now),
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
            assert!(matches!(c.begin(&call(9, id), 0, &tx, now), Lookup::Run));
            c.finish(9, id, &reply(9, id, 4));
        }
        let s = c.stats();
        assert_eq!((s.entries, s.evicted_early), (3, 2));
        assert!(matches!(
            c.begin(&call(9, 1), 0, &tx, now),
            Lookup::Forgotten
        ));
        assert!(matches!(
            c.begin(&call(9, 2), 0, &tx, now),
            Lookup::Forgotten
        ));
        assert!(matches!(
            c.begin(&call(9, 3), 0, &tx, now),
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
                    c.begin(&call(client, id), 0, &tx, now),
                    Lookup::Run
                ));
                c.finish(client, id, &reply(client, id, 100));
                let s = c.stats();
                assert!(s.entries <= 1000 && s.bytes <= 200_000, "{s:?}");
            }
        }
        assert!(c.stats().evicted_early > 0);
    }

    #[test]
    fn idle_clients_expire_and_client_limit_holds() {
        let (tx, _rx) = frame_queue(8);
        let t0 = Instant::now();
        let cfg = ReplyCacheConfig::default()
            .max_clients(10)
            .client_idle(Duration::from_secs(60));
        let mut c = ReplyCache::new(cfg);
        for client in 0..25u64 {
            assert!(matches!(c.begin(&call(client, 1), 0, &tx, t0), Lookup::Run));
            c.finish(client, 1, &reply(client, 1, 8));
            assert!(c.stats().clients <= 10);
        }
        c.expire(t0 + Duration::from_secs(61));
        assert_eq!(c.stats().clients, 0);
        assert_eq!((c.stats().entries, c.stats().bytes), (0, 0));
    }

    #[test]
    fn running_entries_are_never_evicted() {
        let (tx, _rx) = frame_queue(8);
        let now = Instant::now();
        let mut c = ReplyCache::new(ReplyCacheConfig::default().per_client(1, usize::MAX));
        assert!(matches!(c.begin(&call(1, 1), 0, &tx, now), Lookup::Run));
        assert!(matches!(c.begin(&call(1, 2), 0, &tx, now), Lookup::Run));
        c.finish(1, 2, &reply(1, 2, 4));
        assert!(matches!(c.begin(&call(1, 3), 0, &tx, now), Lookup::Run));
        c.finish(1, 3, &reply(1, 3, 4));
        // Call 1 is still running: a duplicate joins it rather than being refused.
        assert!(matches!(c.begin(&call(1, 1), 0, &tx, now), Lookup::Joined));
        assert_eq!(c.stats().running, 1);
    }
}
