//! Calls in flight: call ids and the low-water mark ([`CallIds`]), the calls waiting on
//! each connection ([`ConnCalls`]), and the slot a call's answer lands in ([`Inbox`]).
//!
//! Nothing here is one lock for the whole client: ids come from [`ID_SHARDS`] shards
//! taken round robin, and each connection has its own table of waiting calls, itself
//! sharded by call id, so concurrent calls rarely meet on a lock.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

use crate::error::TransportError;
use crate::frame::Frame;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data inconsistent
    // (every critical section is a single insert/remove/replace), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client's limit of calls in flight (`ClientConfig::max_in_flight`): a counter,
/// so taking and returning a slot is one atomic operation each, with no lock; only a
/// call that finds every slot taken waits (on a [`Notify`], woken as slots come back).
pub(super) struct InFlight {
    limit: usize,
    used: AtomicUsize,
    /// Calls waiting for a slot (a returned slot wakes one only if there are any).
    waiting: AtomicUsize,
    freed: Notify,
}

impl InFlight {
    pub(super) fn new(limit: usize) -> Self {
        InFlight {
            limit: limit.max(1),
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Calls holding a slot now.
    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A slot, if one is free now.
    pub(super) fn try_acquire(&self) -> Option<InFlightSlot<'_>> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used >= self.limit {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(InFlightSlot(self)),
                Err(now) => used = now,
            }
        }
    }

    /// Waits for a slot.
    pub(super) async fn acquire(&self) -> InFlightSlot<'_> {
        loop {
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            let _waiting = Waiting::new(&self.waiting);
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A slot returned between the check above and `enable` saw `waiting` and
            // notified (or is seen here).
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            notified.await;
        }
    }
}

/// Counts a call waiting for an in-flight slot while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A call's in-flight slot, returned when dropped.
pub(super) struct InFlightSlot<'a>(&'a InFlight);

impl Drop for InFlightSlot<'_> {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// Shards of the call-id allocator.
pub(super) const ID_SHARDS: usize = 16;

/// Call ids, and the lowest id still live (the low-water mark each call carries to the
/// server's reply cache: it may forget calls below it).
///
/// Shard `s` hands out the ids `s + 1`, `s + 1 + ID_SHARDS`, `s + 1 + 2 * ID_SHARDS`, …
/// in order, under its own lock, and publishes its *floor*: its lowest live id, or, with
/// none live, the next id it will hand out. Floors only grow, so the minimum over the
/// shards' floors (read without locks) never passes an id that is live or will be handed
/// out later: the mark can lag, never overtake. Shards are taken round robin, so they
/// advance together and the mark lags the true lowest live id by about `ID_SHARDS`.
pub(super) struct CallIds {
    shards: [IdShard; ID_SHARDS],
    turn: AtomicUsize,
}

struct IdShard {
    state: Mutex<ShardIds>,
    floor: AtomicU64,
}

struct ShardIds {
    /// The id of `live[0]`.
    base: u64,
    /// Ids `base`, `base + ID_SHARDS`, …: whether each is finished. The front is never
    /// finished (finished ids at the front are popped).
    live: VecDeque<bool>,
}

impl ShardIds {
    fn next(&self) -> u64 {
        self.base + self.live.len() as u64 * ID_SHARDS as u64
    }
}

impl Default for CallIds {
    fn default() -> Self {
        CallIds {
            shards: std::array::from_fn(|s| IdShard {
                state: Mutex::new(ShardIds {
                    base: s as u64 + 1,
                    live: VecDeque::new(),
                }),
                floor: AtomicU64::new(s as u64 + 1),
            }),
            turn: AtomicUsize::new(0),
        }
    }
}

impl CallIds {
    /// A new call id, live until [`CallIds::finish`].
    pub(super) fn allocate(&self) -> u64 {
        let shard = &self.shards[self.turn.fetch_add(1, Ordering::Relaxed) % ID_SHARDS];
        let mut ids = lock(&shard.state);
        let id = ids.next();
        ids.live.push_back(false);
        // The floor is the front, which this push did not change unless it was empty
        // (then the floor was already `id`).
        id
    }

    /// Marks `id` finished.
    pub(super) fn finish(&self, id: u64) {
        let shard = &self.shards[((id - 1) % ID_SHARDS as u64) as usize];
        let mut ids = lock(&shard.state);
        let Some(offset) = id.checked_sub(ids.base) else {
            return;
        };
        let index = (offset / ID_SHARDS as u64) as usize;
        match ids.live.get_mut(index) {
            Some(done) => *done = true,
            None => return,
        }
        if index == 0 {
            while ids.live.front() == Some(&true) {
                ids.live.pop_front();
                ids.base += ID_SHARDS as u64;
            }
            shard.floor.store(ids.base, Ordering::Release);
        }
    }

    /// The low-water mark: no id below it is live or will be handed out.
    pub(super) fn low_water(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.floor.load(Ordering::Acquire))
            .min()
            .unwrap_or(1)
    }

    /// Ids handed out and not finished.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(&s.state).live.iter().filter(|d| !**d).count())
            .sum()
    }
}

/// A call id, live until dropped.
pub(super) struct LiveId<'a> {
    ids: &'a CallIds,
    /// The id.
    pub(super) id: u64,
}

impl<'a> LiveId<'a> {
    pub(super) fn new(ids: &'a CallIds) -> Self {
        LiveId {
            ids,
            id: ids.allocate(),
        }
    }
}

impl Drop for LiveId<'_> {
    fn drop(&mut self) {
        self.ids.finish(self.id);
    }
}

/// Where one call's answer lands. A call is registered (under its id) in the table of
/// every connection an attempt of it went out on, all pointing at one inbox, so a reply
/// to any attempt ends the call, for the whole of its life.
#[derive(Default)]
pub(super) struct Inbox {
    state: Mutex<InboxState>,
    notify: Notify,
}

#[derive(Default)]
struct InboxState {
    /// The answer, and the connection it came on.
    answer: Option<(Frame, u64)>,
    /// The connection the latest attempt went out on, and whether it has failed.
    current: u64,
    lost: Option<TransportError>,
}

/// What a call waiting on its inbox learns.
pub(super) enum Delivery {
    /// A reply or status for it arrived on connection `.1`.
    Answer(Frame, u64),
    /// The connection its latest attempt went out on failed.
    Lost(TransportError),
}

impl Inbox {
    /// Notes that the latest attempt goes out on connection `serial` (failures of other
    /// connections no longer concern the call).
    pub(super) fn sending_on(&self, serial: u64) {
        let mut s = lock(&self.state);
        s.current = serial;
        s.lost = None;
    }

    fn deliver(&self, frame: Frame, serial: u64) {
        {
            let mut s = lock(&self.state);
            if s.answer.is_some() {
                return;
            }
            s.answer = Some((frame, serial));
        }
        self.notify.notify_one();
    }

    fn lose(&self, serial: u64, error: TransportError) {
        {
            let mut s = lock(&self.state);
            if s.current != serial || s.answer.is_some() {
                return;
            }
            s.lost = Some(error);
        }
        self.notify.notify_one();
    }

    /// Waits for an answer, or for the loss of the latest attempt's connection.
    pub(super) async fn wait(&self) -> Delivery {
        loop {
            {
                let mut s = lock(&self.state);
                if let Some((frame, serial)) = s.answer.take() {
                    return Delivery::Answer(frame, serial);
                }
                if let Some(e) = s.lost.take() {
                    return Delivery::Lost(e);
                }
            }
            // `notify_one` stores a permit when nobody waits, so a delivery between the
            // check above and this await is not missed.
            self.notify.notified().await;
        }
    }
}

/// Shards of a connection's table of waiting calls.
const CALL_SHARDS: usize = 8;

type CallMap = HashMap<u64, Arc<Inbox>, BuildHasherDefault<crate::id::IdHasher>>;

/// The calls waiting for an answer on one connection, by call id. Its reply reader
/// delivers answers from it; when the connection fails, every call still in it learns
/// at once, and later registrations are refused (a call must not wait on a connection
/// whose failure it already missed).
pub(super) struct ConnCalls {
    /// Unique per connection of a client (the inboxes tell connections apart by it).
    pub(super) serial: u64,
    shards: [Mutex<CallMap>; CALL_SHARDS],
    failed: AtomicBool,
    error: OnceLock<TransportError>,
}

impl ConnCalls {
    pub(super) fn new(serial: u64) -> Self {
        ConnCalls {
            serial,
            shards: std::array::from_fn(|_| Mutex::new(CallMap::default())),
            failed: AtomicBool::new(false),
            error: OnceLock::new(),
        }
    }

    fn shard(&self, call_id: u64) -> &Mutex<CallMap> {
        &self.shards[(call_id % CALL_SHARDS as u64) as usize]
    }

    /// Registers a call; its connection's error if the connection has already failed.
    pub(super) fn register(&self, call_id: u64, inbox: &Arc<Inbox>) -> Result<(), TransportError> {
        lock(self.shard(call_id)).insert(call_id, inbox.clone());
        // `fail` sets the flag before draining the shards: a registration it drained is
        // told, one it missed sees the flag here.
        if self.failed.load(Ordering::SeqCst) {
            lock(self.shard(call_id)).remove(&call_id);
            return Err(self.error.get().cloned().unwrap_or(TransportError::Closed));
        }
        Ok(())
    }

    /// Removes a call's registration.
    pub(super) fn deregister(&self, call_id: u64) {
        lock(self.shard(call_id)).remove(&call_id);
    }

    /// Hands an answer to the call waiting for it; false if none is.
    pub(super) fn deliver(&self, call_id: u64, frame: Frame) -> bool {
        let waiting = lock(self.shard(call_id)).remove(&call_id);
        match waiting {
            Some(inbox) => {
                inbox.deliver(frame, self.serial);
                true
            }
            None => false,
        }
    }

    /// Marks the connection failed and tells every call still waiting on it.
    pub(super) fn fail(&self, error: TransportError) {
        let _ = self.error.set(error.clone());
        self.failed.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let drained: Vec<(u64, Arc<Inbox>)> = lock(shard).drain().collect();
            for (_, inbox) in drained {
                inbox.lose(self.serial, error.clone());
            }
        }
    }

    /// Calls waiting on it now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_flight_slots_are_bounded_and_a_returned_one_wakes_a_waiter() {
        let limit = Arc::new(InFlight::new(2));
        let a = limit.try_acquire().expect("a free slot");
        let b = limit.try_acquire().expect("a free slot");
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.used(), 2);
        let waiter = {
            let limit = limit.clone();
            tokio::spawn(async move {
                let _slot = limit.acquire().await;
                limit.used()
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        assert_eq!(waiter.await.unwrap(), 2);
        drop(b);
        assert_eq!(limit.used(), 0);
    }
    use crate::frame::FrameHeader;

    #[test]
    fn the_low_water_mark_never_passes_a_live_id() {
        let ids = CallIds::default();
        assert_eq!(ids.low_water(), 1);
        let first: Vec<u64> = (0..40).map(|_| ids.allocate()).collect();
        assert_eq!(first, (1..=40).collect::<Vec<_>>());
        assert_eq!(ids.low_water(), 1);
        // Finish everything but id 3: the mark stays at 3.
        for &id in first.iter().filter(|&&id| id != 3) {
            ids.finish(id);
        }
        assert_eq!(ids.low_water(), 3);
        assert_eq!(ids.live(), 1);
        ids.finish(3);
        // Nothing live: the mark is the lowest id any shard will hand out next.
        assert_eq!(ids.low_water(), 41);
        assert_eq!(ids.allocate(), 41);
        // Unknown and repeated finishes are ignored.
        ids.finish(3);
        ids.finish(10_000);
        assert_eq!(ids.live(), 1);
    }

    #[test]
    fn concurrent_allocation_keeps_the_mark_below_every_live_id() {
        let ids = Arc::new(CallIds::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    let mut held = VecDeque::new();
                    for i in 0..20_000u32 {
                        let id = ids.allocate();
                        assert!(ids.low_water() <= id, "mark passed live id {id}");
                        held.push_back(id);
                        if held.len() > (i % 7) as usize {
                            ids.finish(held.pop_front().unwrap());
                        }
                    }
                    for id in held {
                        ids.finish(id);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ids.live(), 0);
        assert_eq!(ids.low_water(), 80_001);
    }

    fn frame(call_id: u64) -> Frame {
        Frame::new(FrameHeader::call(1, call_id, 1, 1, 1), bytes::Bytes::new())
    }

    #[tokio::test]
    async fn a_failed_connection_tells_its_calls_and_refuses_new_ones() {
        let conn = ConnCalls::new(5);
        let inbox = Arc::new(Inbox::default());
        inbox.sending_on(5);
        conn.register(9, &inbox).unwrap();
        assert_eq!(conn.len(), 1);
        conn.fail(TransportError::Closed);
        assert!(matches!(
            inbox.wait().await,
            Delivery::Lost(TransportError::Closed)
        ));
        assert_eq!(conn.len(), 0);
        assert!(conn.register(10, &inbox).is_err());
        assert_eq!(conn.len(), 0);
    }

    #[tokio::test]
    async fn an_answer_on_any_connection_reaches_the_call_and_old_failures_do_not() {
        let old = ConnCalls::new(1);
        let new = ConnCalls::new(2);
        let inbox = Arc::new(Inbox::default());
        inbox.sending_on(1);
        old.register(4, &inbox).unwrap();
        inbox.sending_on(2);
        new.register(4, &inbox).unwrap();
        // The first connection fails: the call is on the second now, and keeps waiting.
        old.fail(TransportError::Closed);
        // A late answer on the second (or any) connection ends it.
        assert!(new.deliver(4, frame(4)));
        assert!(matches!(inbox.wait().await, Delivery::Answer(f, 2) if f.header.call_id == 4));
        assert!(!new.deliver(4, frame(4)), "delivered once");
    }
}
