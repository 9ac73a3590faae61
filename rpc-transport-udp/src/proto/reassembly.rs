//! Bounded reassembly of fragmented messages.
//!
//! A [`Reassembler`] (one per connection) holds the fragments of partial messages until
//! the last one arrives. Memory is bounded twice: per connection
//! ([`ReassemblyConfig::per_peer_budget`]) and per endpoint ([`GlobalBudget`], shared by
//! all of an endpoint's reassemblers). A partial message is charged for its fragment
//! table (`frag_count * size_of::<Option<Bytes>>()`, allocated with its first fragment)
//! plus the payload bytes it holds, so a flood of first fragments of huge messages is
//! bounded as well. Charges are refunded when a message completes, expires or is cleared.

use std::collections::{BTreeSet, HashMap};
use std::mem::size_of;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::packet::fragment_range;

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Largest message accepted, in bytes (default 16 MiB).
    pub max_message: u32,
    /// Most bytes one connection may hold in partial messages (default 32 MiB).
    pub per_peer_budget: usize,
    /// How long a partial message may wait for its missing fragments (default 10 s: far
    /// longer than a 16 MiB message takes on any link this transport serves, and a third
    /// of the time an attacker's never-completed messages used to pin memory).
    pub timeout: Duration,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_message: 16 << 20,
            per_peer_budget: 32 << 20,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Bytes held across all peers, with a cap (shared by one endpoint; passed by &mut — no Arc/locks).
#[derive(Debug)]
pub struct GlobalBudget {
    used: usize,
    limit: usize,
}

impl GlobalBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Self {
        Self { used: 0, limit }
    }

    /// Bytes currently charged.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn fits(&self, bytes: usize) -> bool {
        self.used
            .checked_add(bytes)
            .is_some_and(|total| total <= self.limit)
    }

    fn charge(&mut self, bytes: usize) {
        self.used = self.used.saturating_add(bytes);
    }

    fn refund(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }
}

/// What [`Reassembler::insert`] did with a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// The message is whole: here it is.
    Complete(Bytes),
    /// Stored; more fragments are missing.
    Pending,
    /// This fragment was already held; nothing changed.
    Duplicate,
    /// Storing it would exceed the connection's budget; nothing stored (do not
    /// acknowledge the datagram).
    OverBudget,
    /// Storing it would exceed the endpoint-wide budget (the connection's own had room);
    /// nothing stored, as for `OverBudget`.
    OverGlobalBudget,
    /// The message is larger than [`ReassemblyConfig::max_message`].
    TooLarge,
    /// The fragment contradicts itself or earlier fragments of the same message.
    Inconsistent,
}

/// One message still missing fragments.
struct Partial {
    frag_count: u32,
    msg_len: u32,
    frags: Vec<Option<Bytes>>,
    missing: u32,
    /// Bytes charged to both budgets for this message (fragment table + payload).
    charged: usize,
    started: Instant,
}

/// Bytes charged for a message's fragment table.
fn table_cost(frag_count: u32) -> usize {
    (frag_count as usize).saturating_mul(size_of::<Option<Bytes>>())
}

/// Collects fragments into whole messages, within budgets; one per connection.
pub struct Reassembler {
    cfg: ReassemblyConfig,
    partials: HashMap<u64, Partial>,
    /// (started, msg_id) of every partial message, oldest first.
    by_start: BTreeSet<(Instant, u64)>,
    bytes_used: usize,
}

impl Reassembler {
    /// An empty reassembler with limits `cfg`.
    pub fn new(cfg: ReassemblyConfig) -> Self {
        Self {
            cfg,
            partials: HashMap::new(),
            by_start: BTreeSet::new(),
            bytes_used: 0,
        }
    }

    /// Adds fragment `index` of the message identified by `msg_id` (the seq of its fragment 0).
    /// frag_count == 1 → Complete(payload) at once, zero-copy, no accounting.
    /// msg_len > max_message → TooLarge. A fragment whose frag_count/msg_len disagree with earlier fragments of the same msg_id, or whose payload length != fragment_range(..).len() → Inconsistent.
    /// Already-held fragment → Duplicate. If holding payload.len() more bytes would exceed per_peer_budget → OverBudget, the global limit → OverGlobalBudget (nothing stored; the caller must not acknowledge the datagram).
    /// Otherwise stores it (charging both budgets) and returns Complete(whole message, one copy, budgets refunded) when the last missing fragment arrives, else Pending.
    ///
    /// Checks run in this order: the fragment's own fields (`frag_count >= 1`,
    /// `frag_index < frag_count`, `frag_count <= msg_len.max(1)`, payload length) →
    /// Inconsistent; size → TooLarge (single-fragment messages included); agreement with
    /// earlier fragments → Inconsistent; Duplicate; then budgets. The first fragment of a
    /// message is also charged for its fragment table.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        global: &mut GlobalBudget,
        msg_id: u64,
        frag_index: u32,
        frag_count: u32,
        msg_len: u32,
        payload: Bytes,
        now: Instant,
    ) -> Insert {
        if frag_count == 0
            || frag_index >= frag_count
            || frag_count > msg_len.max(1)
            || payload.len() != fragment_range(msg_len, frag_count, frag_index).len()
        {
            return Insert::Inconsistent;
        }
        if msg_len > self.cfg.max_message {
            return Insert::TooLarge;
        }

        let Some(partial) = self.partials.get_mut(&msg_id) else {
            if frag_count == 1 {
                return Insert::Complete(payload);
            }
            return self.start_message(
                global, msg_id, frag_index, frag_count, msg_len, payload, now,
            );
        };

        if partial.frag_count != frag_count || partial.msg_len != msg_len {
            return Insert::Inconsistent;
        }
        let Some(slot) = partial.frags.get_mut(frag_index as usize) else {
            return Insert::Inconsistent;
        };
        if slot.is_some() {
            return Insert::Duplicate;
        }
        let cost = payload.len();
        if !fits(self.bytes_used, cost, self.cfg.per_peer_budget) {
            return Insert::OverBudget;
        }
        if !global.fits(cost) {
            return Insert::OverGlobalBudget;
        }
        *slot = Some(payload);
        partial.missing = partial.missing.saturating_sub(1);
        partial.charged = partial.charged.saturating_add(cost);
        self.bytes_used = self.bytes_used.saturating_add(cost);
        global.charge(cost);
        if partial.missing > 0 {
            return Insert::Pending;
        }

        match self.remove(global, msg_id) {
            Some(done) => Insert::Complete(assemble(done)),
            // Unreachable: the entry was just found.
            None => Insert::Inconsistent,
        }
    }

    /// Stores the first fragment to arrive of a multi-fragment message.
    #[allow(clippy::too_many_arguments)]
    fn start_message(
        &mut self,
        global: &mut GlobalBudget,
        msg_id: u64,
        frag_index: u32,
        frag_count: u32,
        msg_len: u32,
        payload: Bytes,
        now: Instant,
    ) -> Insert {
        let cost = table_cost(frag_count).saturating_add(payload.len());
        // Checked before the table is allocated.
        if !fits(self.bytes_used, cost, self.cfg.per_peer_budget) {
            return Insert::OverBudget;
        }
        if !global.fits(cost) {
            return Insert::OverGlobalBudget;
        }
        let mut frags = vec![None; frag_count as usize];
        if let Some(slot) = frags.get_mut(frag_index as usize) {
            *slot = Some(payload);
        }
        self.partials.insert(
            msg_id,
            Partial {
                frag_count,
                msg_len,
                frags,
                missing: frag_count - 1,
                charged: cost,
                started: now,
            },
        );
        self.by_start.insert((now, msg_id));
        self.bytes_used = self.bytes_used.saturating_add(cost);
        global.charge(cost);
        Insert::Pending
    }

    /// Removes a partial message and refunds its charge.
    fn remove(&mut self, global: &mut GlobalBudget, msg_id: u64) -> Option<Partial> {
        let partial = self.partials.remove(&msg_id)?;
        self.by_start.remove(&(partial.started, msg_id));
        self.bytes_used = self.bytes_used.saturating_sub(partial.charged);
        global.refund(partial.charged);
        Some(partial)
    }

    /// Frees every partial message started at or before now - timeout; returns how many were dropped.
    pub fn expire(&mut self, global: &mut GlobalBudget, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some(&(started, msg_id)) = self.by_start.first() {
            if !self.is_expired(started, now) {
                break;
            }
            if self.remove(global, msg_id).is_none() {
                // Index out of step with the map (cannot happen); drop the stale entry.
                self.by_start.remove(&(started, msg_id));
            }
            dropped += 1;
        }
        dropped
    }

    /// True when a message started at `started` has timed out by `now`.
    fn is_expired(&self, started: Instant, now: Instant) -> bool {
        started
            .checked_add(self.cfg.timeout)
            .is_some_and(|deadline| deadline <= now)
    }

    /// When the oldest partial message times out.
    ///
    /// None when nothing is held (or the deadline is beyond what `Instant` can express).
    pub fn next_expiry(&self) -> Option<Instant> {
        let &(started, _) = self.by_start.first()?;
        started.checked_add(self.cfg.timeout)
    }

    /// Bytes held by this connection.
    pub fn bytes_used(&self) -> usize {
        self.bytes_used
    }

    /// Partial messages held.
    pub fn partial_messages(&self) -> usize {
        self.partials.len()
    }

    /// Frees everything (connection closed), refunding the global budget.
    pub fn clear(&mut self, global: &mut GlobalBudget) {
        for partial in self.partials.values() {
            global.refund(partial.charged);
        }
        self.partials.clear();
        self.by_start.clear();
        self.bytes_used = 0;
    }
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("cfg", &self.cfg)
            .field("partial_messages", &self.partials.len())
            .field("bytes_used", &self.bytes_used)
            .finish()
    }
}

/// True when `used + more` stays within `limit`.
fn fits(used: usize, more: usize, limit: usize) -> bool {
    used.checked_add(more).is_some_and(|total| total <= limit)
}

/// Concatenates the fragments of a complete message (the one copy).
fn assemble(partial: Partial) -> Bytes {
    let mut out = BytesMut::with_capacity(partial.msg_len as usize);
    for frag in partial.frags.iter().flatten() {
        out.extend_from_slice(frag);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packet::fragment_count;

    const SLOT: usize = size_of::<Option<Bytes>>();

    fn message(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8)
            .collect()
    }

    /// The fragments of `msg` cut into pieces of at most `max` bytes.
    fn fragments(msg: &[u8], max: usize) -> Vec<(u32, u32, u32, Bytes)> {
        let len = msg.len() as u32;
        let count = fragment_count(len, max);
        (0..count)
            .map(|i| {
                let r = fragment_range(len, count, i);
                (i, count, len, Bytes::copy_from_slice(&msg[r]))
            })
            .collect()
    }

    struct Setup {
        r: Reassembler,
        g: GlobalBudget,
        t0: Instant,
    }

    fn setup() -> Setup {
        Setup {
            r: Reassembler::new(ReassemblyConfig::default()),
            g: GlobalBudget::new(usize::MAX),
            t0: Instant::now(),
        }
    }

    impl Setup {
        fn put(&mut self, id: u64, f: &(u32, u32, u32, Bytes)) -> Insert {
            self.r
                .insert(&mut self.g, id, f.0, f.1, f.2, f.3.clone(), self.t0)
        }
    }

    #[test]
    fn default_config() {
        let c = ReassemblyConfig::default();
        assert_eq!(c.max_message, 16 * 1024 * 1024);
        assert_eq!(c.per_peer_budget, 32 * 1024 * 1024);
        assert_eq!(c.timeout, Duration::from_secs(10));
    }

    #[test]
    fn single_fragment_is_zero_copy_and_unaccounted() {
        let mut s = setup();
        let payload = Bytes::from_static(b"hello");
        let got = s.r.insert(&mut s.g, 1, 0, 1, 5, payload.clone(), s.t0);
        let Insert::Complete(b) = got else {
            panic!("{got:?}")
        };
        assert_eq!(b.as_ptr(), payload.as_ptr());
        assert_eq!(s.r.bytes_used(), 0);
        assert_eq!(s.g.used(), 0);
        assert_eq!(s.r.partial_messages(), 0);
        // The empty message is one empty fragment.
        assert_eq!(
            s.r.insert(&mut s.g, 2, 0, 1, 0, Bytes::new(), s.t0),
            Insert::Complete(Bytes::new())
        );
    }

    #[test]
    fn in_order_completion() {
        let mut s = setup();
        let msg = message(1000, 1);
        let frags = fragments(&msg, 300);
        assert_eq!(frags.len(), 4);
        for f in &frags[..3] {
            assert_eq!(s.put(10, f), Insert::Pending);
        }
        assert_eq!(s.r.partial_messages(), 1);
        assert_eq!(s.r.bytes_used(), 4 * SLOT + 750);
        assert_eq!(s.g.used(), s.r.bytes_used());
        assert_eq!(s.put(10, &frags[3]), Insert::Complete(Bytes::from(msg)));
        assert_eq!(s.r.partial_messages(), 0);
        assert_eq!(s.r.bytes_used(), 0);
        assert_eq!(s.g.used(), 0);
        assert_eq!(s.r.next_expiry(), None);
    }

    #[test]
    fn out_of_order_completion() {
        let mut s = setup();
        let msg = message(1000, 2);
        let frags = fragments(&msg, 100);
        let order = [9, 3, 0, 7, 1, 8, 2, 6, 4];
        for &i in &order {
            assert_eq!(s.put(5, &frags[i]), Insert::Pending, "fragment {i}");
        }
        assert_eq!(s.put(5, &frags[5]), Insert::Complete(Bytes::from(msg)));
        assert_eq!(s.g.used(), 0);
    }

    #[test]
    fn interleaved_messages() {
        let mut s = setup();
        let a = message(500, 3);
        let b = message(700, 4);
        let fa = fragments(&a, 200);
        let fb = fragments(&b, 200);
        assert_eq!(s.put(1, &fa[0]), Insert::Pending);
        assert_eq!(s.put(4, &fb[3]), Insert::Pending);
        assert_eq!(s.put(4, &fb[0]), Insert::Pending);
        assert_eq!(s.put(1, &fa[2]), Insert::Pending);
        assert_eq!(s.r.partial_messages(), 2);
        assert_eq!(s.put(4, &fb[1]), Insert::Pending);
        assert_eq!(s.put(4, &fb[2]), Insert::Complete(Bytes::from(b)));
        assert_eq!(s.put(1, &fa[1]), Insert::Complete(Bytes::from(a)));
        assert_eq!(s.r.partial_messages(), 0);
    }

    #[test]
    fn duplicate_fragment() {
        let mut s = setup();
        let frags = fragments(&message(300, 5), 100);
        assert_eq!(s.put(1, &frags[1]), Insert::Pending);
        let used = s.r.bytes_used();
        assert_eq!(s.put(1, &frags[1]), Insert::Duplicate);
        assert_eq!(s.r.bytes_used(), used);
        assert_eq!(s.g.used(), used);
    }

    #[test]
    fn inconsistent_metadata() {
        let mut s = setup();
        let frags = fragments(&message(300, 6), 100);
        assert_eq!(s.put(1, &frags[0]), Insert::Pending);
        let used = s.r.bytes_used();
        // Different frag_count for the same message.
        let other = fragments(&message(300, 6), 150);
        assert_eq!(s.put(1, &other[1]), Insert::Inconsistent);
        // Different msg_len, same count.
        let f = &frags[1];
        let shorter = Bytes::copy_from_slice(&f.3[..99]);
        assert_eq!(
            s.r.insert(&mut s.g, 1, 1, 3, 299, shorter, s.t0),
            Insert::Inconsistent
        );
        assert_eq!(s.r.bytes_used(), used);
        assert_eq!(s.r.partial_messages(), 1);
    }

    #[test]
    fn inconsistent_fragment_fields() {
        let mut s = setup();
        let t = s.t0;
        let g = &mut s.g;
        let p = |n: usize| Bytes::from(vec![0u8; n]);
        // Payload length does not match the fragment's range.
        assert_eq!(s.r.insert(g, 1, 0, 3, 300, p(99), t), Insert::Inconsistent);
        assert_eq!(s.r.insert(g, 1, 0, 1, 5, p(4), t), Insert::Inconsistent);
        // Index out of range, zero fragments, more fragments than bytes.
        assert_eq!(s.r.insert(g, 1, 3, 3, 300, p(0), t), Insert::Inconsistent);
        assert_eq!(s.r.insert(g, 1, 0, 0, 300, p(0), t), Insert::Inconsistent);
        assert_eq!(s.r.insert(g, 1, 0, 4, 3, p(1), t), Insert::Inconsistent);
        assert_eq!(s.r.partial_messages(), 0);
        assert_eq!(g.used(), 0);
    }

    #[test]
    fn too_large() {
        let mut s = setup();
        s.r = Reassembler::new(ReassemblyConfig {
            max_message: 1000,
            ..ReassemblyConfig::default()
        });
        let frags = fragments(&message(1001, 7), 500);
        assert_eq!(s.put(1, &frags[0]), Insert::TooLarge);
        assert_eq!(s.r.partial_messages(), 0);
        assert_eq!(
            s.r.insert(&mut s.g, 2, 0, 1, 1001, Bytes::from(vec![0; 1001]), s.t0),
            Insert::TooLarge
        );
        let ok = fragments(&message(1000, 7), 500);
        assert_eq!(s.put(3, &ok[0]), Insert::Pending);
    }

    #[test]
    fn per_peer_budget_bounds_a_flood() {
        let budget = 100_000;
        let cfg = ReassemblyConfig {
            per_peer_budget: budget,
            ..ReassemblyConfig::default()
        };
        let mut g = GlobalBudget::new(1_000_000);
        let mut attacker = Reassembler::new(cfg);
        let t0 = Instant::now();
        let mut over = 0;
        // First fragments of 16 MiB messages (table alone ~480 KiB: refused outright).
        let huge_count = fragment_count(16 << 20, 1100);
        let first = Bytes::from(vec![0u8; fragment_range(16 << 20, huge_count, 0).len()]);
        assert_eq!(
            attacker.insert(&mut g, 1, 0, huge_count, 16 << 20, first, t0),
            Insert::OverBudget
        );
        assert_eq!(attacker.bytes_used(), 0);
        // Many never-completed 3-fragment messages.
        for id in 0..1000u64 {
            let payload = Bytes::from(vec![0u8; 1000]);
            match attacker.insert(&mut g, id * 10, 0, 3, 3000, payload, t0) {
                Insert::Pending => {}
                Insert::OverBudget => over += 1,
                other => panic!("{other:?}"),
            }
            assert!(attacker.bytes_used() <= budget);
        }
        assert!(over > 0);
        let per_msg = 3 * SLOT + 1000;
        assert_eq!(attacker.partial_messages(), budget / per_msg);
        assert_eq!(attacker.bytes_used(), (budget / per_msg) * per_msg);
        assert_eq!(g.used(), attacker.bytes_used());

        // Another connection on the same endpoint is unaffected.
        let mut victim = Reassembler::new(cfg);
        let msg = message(50_000, 8);
        let frags = fragments(&msg, 1100);
        let last = frags.len() - 1;
        for (i, f) in frags.iter().enumerate() {
            let got = victim.insert(&mut g, 77, f.0, f.1, f.2, f.3.clone(), t0);
            if i < last {
                assert_eq!(got, Insert::Pending);
            } else {
                assert_eq!(got, Insert::Complete(Bytes::from(msg.clone())));
            }
        }
        assert_eq!(g.used(), attacker.bytes_used());
    }

    #[test]
    fn global_budget_across_reassemblers() {
        let cfg = ReassemblyConfig {
            per_peer_budget: 10_000,
            ..ReassemblyConfig::default()
        };
        let per_msg = 2 * SLOT + 1000;
        let mut g = GlobalBudget::new(3 * per_msg);
        assert_eq!(g.limit(), 3 * per_msg);
        let mut a = Reassembler::new(cfg);
        let mut b = Reassembler::new(cfg);
        let t0 = Instant::now();
        let first = |i: u64| (i, Bytes::from(vec![1u8; 1000]));
        let (id, p) = first(1);
        assert_eq!(a.insert(&mut g, id, 0, 2, 2000, p, t0), Insert::Pending);
        let (id, p) = first(2);
        assert_eq!(a.insert(&mut g, id, 0, 2, 2000, p, t0), Insert::Pending);
        let (id, p) = first(3);
        assert_eq!(b.insert(&mut g, id, 0, 2, 2000, p, t0), Insert::Pending);
        assert_eq!(g.used(), 3 * per_msg);
        // Both connections are under their own budget, but the endpoint is full.
        let (id, p) = first(4);
        assert_eq!(
            b.insert(&mut g, id, 0, 2, 2000, p, t0),
            Insert::OverGlobalBudget
        );
        // Even a second fragment of a held message is refused now.
        let second = Bytes::from(vec![2u8; 1000]);
        assert_eq!(
            b.insert(&mut g, 3, 1, 2, 2000, second.clone(), t0),
            Insert::OverGlobalBudget
        );
        assert_eq!(b.partial_messages(), 1);
        assert_eq!(g.used(), a.bytes_used() + b.bytes_used());
        // Freeing a's messages makes room for b.
        a.clear(&mut g);
        assert_eq!(g.used(), per_msg);
        let Insert::Complete(m) = b.insert(&mut g, 3, 1, 2, 2000, second, t0) else {
            panic!("not complete")
        };
        assert_eq!(&m[..1000], &[1u8; 1000][..]);
        assert_eq!(&m[1000..], &[2u8; 1000][..]);
        assert_eq!(g.used(), 0);
    }

    #[test]
    fn expire_frees_and_refunds_exactly() {
        let mut s = setup();
        let timeout = ReassemblyConfig::default().timeout;
        let t0 = s.t0;
        let t1 = t0 + Duration::from_secs(10);
        let fa = fragments(&message(300, 9), 100);
        let fb = fragments(&message(400, 10), 100);
        assert_eq!(
            s.r.insert(&mut s.g, 1, 0, 3, 300, fa[0].3.clone(), t0),
            Insert::Pending
        );
        let used_a = s.r.bytes_used();
        assert_eq!(
            s.r.insert(&mut s.g, 2, 1, 4, 400, fb[1].3.clone(), t1),
            Insert::Pending
        );
        // A later fragment does not restart the clock.
        assert_eq!(
            s.r.insert(&mut s.g, 1, 1, 3, 300, fa[1].3.clone(), t1),
            Insert::Pending
        );
        let used_a = used_a + 100;
        let used_b = 4 * SLOT + 100;
        assert_eq!(s.r.bytes_used(), used_a + used_b);
        assert_eq!(s.r.next_expiry(), Some(t0 + timeout));

        assert_eq!(
            s.r.expire(&mut s.g, t0 + timeout - Duration::from_nanos(1)),
            0
        );
        assert_eq!(s.r.expire(&mut s.g, t0 + timeout), 1);
        assert_eq!(s.r.bytes_used(), used_b);
        assert_eq!(s.g.used(), used_b);
        assert_eq!(s.r.partial_messages(), 1);
        assert_eq!(s.r.next_expiry(), Some(t1 + timeout));
        // The expired message starts over if its fragments come again.
        assert_eq!(
            s.r.insert(&mut s.g, 1, 2, 3, 300, fa[2].3.clone(), t1),
            Insert::Pending
        );
        assert_eq!(
            s.r.expire(&mut s.g, t1 + timeout + Duration::from_secs(1)),
            2
        );
        assert_eq!(s.r.bytes_used(), 0);
        assert_eq!(s.g.used(), 0);
        assert_eq!(s.r.partial_messages(), 0);
        assert_eq!(s.r.next_expiry(), None);
    }

    #[test]
    fn clear_refunds() {
        let mut g = GlobalBudget::new(usize::MAX);
        let mut other = Reassembler::new(ReassemblyConfig::default());
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let t0 = Instant::now();
        let p = || Bytes::from(vec![0u8; 100]);
        assert_eq!(other.insert(&mut g, 1, 0, 2, 200, p(), t0), Insert::Pending);
        for id in 0..10 {
            assert_eq!(r.insert(&mut g, id, 1, 2, 200, p(), t0), Insert::Pending);
        }
        assert_eq!(g.used(), 11 * (2 * SLOT + 100));
        r.clear(&mut g);
        assert_eq!(r.bytes_used(), 0);
        assert_eq!(r.partial_messages(), 0);
        assert_eq!(r.next_expiry(), None);
        assert_eq!(g.used(), other.bytes_used());
        assert!(format!("{r:?}").contains("bytes_used: 0"));
    }

    #[test]
    fn sixteen_mib_message_in_random_order() {
        let mut s = setup();
        let len = 16 << 20;
        let msg = message(len, 11);
        let mut frags = fragments(&msg, 1100);
        assert!(frags.len() > 15_000);
        // Deterministic Fisher-Yates shuffle.
        let mut x = 0x1234_5678_9abc_def1u64;
        for i in (1..frags.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            frags.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (last, rest) = frags.split_last().unwrap();
        for f in rest {
            assert_eq!(s.put(99, f), Insert::Pending);
        }
        assert!(s.r.bytes_used() <= ReassemblyConfig::default().per_peer_budget);
        let Insert::Complete(got) = s.put(99, last) else {
            panic!("not complete")
        };
        assert_eq!(got.len(), len);
        assert!(got[..] == msg[..]);
        assert_eq!(s.g.used(), 0);
    }
}
