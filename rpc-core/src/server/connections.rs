//! The table of open connections: what a connection's calls and replies share
//! ([`ConnState`]), and the connection limits applied on accept — the global cap and the
//! per-address cap, at which the longest-idle connection is closed to make room rather
//! than the new client being locked out.
//!
//! Victim choice at the global cap: the longest-idle connection (no call in flight, no
//! reply bytes unwritten) of the address that holds the most connections; failing
//! that, the longest-idle connection of any address; failing that (every connection is
//! busy), the new connection is closed. At the per-address cap, the longest-idle
//! connection of that address; failing that, the new one. So a peer that opens many
//! idle connections only ever displaces its own, and a busy server sheds idle
//! connections before it refuses anyone.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use super::limits::ServerLimits;
use super::scope::ClientScope;
use super::{lock, CallControl};
use crate::transport::FrameSender;
use crate::Principal;

/// What the connection loop, its calls and the table share about one connection.
#[derive(Debug)]
pub(super) struct ConnState {
    id: u64,
    pub(super) peer: SocketAddr,
    /// Whose state this connection's calls may touch: its principal, else its address.
    /// Computed once, at admission.
    pub(super) scope: ClientScope,
    /// The connection's sender (for the table's idleness check; the loop holds its own).
    sender: FrameSender,
    /// Calls admitted and not yet answered (reply handed to the transport or dropped).
    calls: AtomicUsize,
    /// Woken when a call is answered.
    progress: Notify,
    /// Replies waiting for room in the transport.
    waiting: AtomicUsize,
    /// Milliseconds since the server's epoch at the last frame received.
    last_active_ms: AtomicU64,
    /// Set when the server closes the connection (eviction, write timeout, shutdown):
    /// replies waiting for room give up.
    closing: AtomicBool,
    close: Notify,
    /// This connection's calls admitted to the worker pool and not finished, by
    /// (client id, call id), for cancellation. Per connection, so a pooled call takes
    /// no server-wide lock; a Cancel looks here first, then at the other connections of
    /// its scope ([`ConnectionTable::find_control`]).
    controls: Mutex<ControlMap>,
}

/// Cancellation handles by (client id, call id).
type ControlMap = HashMap<(u64, u64), Arc<CallControl>, BuildHasherDefault<crate::id::IdHasher>>;

impl ConnState {
    /// Registers the cancellation handle of a call admitted to the worker pool (a call
    /// with the same ids still running, an at-least-once duplicate, is replaced).
    pub(super) fn add_control(&self, client_id: u64, call_id: u64, control: Arc<CallControl>) {
        lock(&self.controls).insert((client_id, call_id), control);
    }

    /// Removes a call's cancellation handle when the call ends — only `control`: an
    /// at-least-once duplicate running at the same time may have replaced it.
    pub(super) fn remove_control(&self, client_id: u64, call_id: u64, control: &Arc<CallControl>) {
        let mut controls = lock(&self.controls);
        if controls
            .get(&(client_id, call_id))
            .is_some_and(|c| Arc::ptr_eq(c, control))
        {
            controls.remove(&(client_id, call_id));
        }
    }

    /// The cancellation handle of a call of this connection in the worker pool.
    pub(super) fn control(&self, client_id: u64, call_id: u64) -> Option<Arc<CallControl>> {
        lock(&self.controls).get(&(client_id, call_id)).cloned()
    }

    /// Calls in flight.
    pub(super) fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    /// Counts a call until the returned guard drops (when its reply was handed over).
    pub(super) fn begin_call(self: &Arc<Self>) -> CallSlot {
        self.calls.fetch_add(1, Ordering::AcqRel);
        CallSlot(self.clone())
    }

    /// Waits until a call is answered.
    pub(super) fn progress(&self) -> tokio::sync::futures::Notified<'_> {
        self.progress.notified()
    }

    /// Replies waiting for room in the transport.
    pub(super) fn waiting_for_room(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Counts a reply waiting for room until the guard drops.
    pub(super) fn wait_for_room(&self) -> WaitingForRoom<'_> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        WaitingForRoom(self)
    }

    /// Records activity at `now`.
    pub(super) fn touch(&self, epoch: Instant, now: Instant) {
        let ms = now.saturating_duration_since(epoch).as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether nothing is in flight on this connection.
    fn is_idle(&self) -> bool {
        self.calls() == 0 && self.sender.queued_bytes() == 0
    }

    /// Tells everyone waiting on this connection that the server is closing it.
    pub(super) fn begin_close(&self) {
        self.closing.store(true, Ordering::Release);
        self.close.notify_waiters();
    }

    /// Whether [`begin_close`](Self::begin_close) was called.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Resolves once the server closes the connection.
    pub(super) async fn closing(&self) {
        loop {
            let notified = self.close.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }
}

/// One call of a connection in flight; dropping it answers the call.
#[derive(Debug)]
pub(super) struct CallSlot(Arc<ConnState>);

impl CallSlot {
    /// The connection the call came from.
    pub(super) fn conn(&self) -> &ConnState {
        &self.0
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
        self.0.progress.notify_waiters();
    }
}

/// A reply waiting for room; see [`ConnState::wait_for_room`].
pub(super) struct WaitingForRoom<'a>(&'a ConnState);

impl Drop for WaitingForRoom<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.progress.notify_waiters();
    }
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `max_connections` open and none idle.
    Full,
    /// `max_connections_per_ip` open from its address and none idle.
    PerIp,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<ConnState>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<ConnState>> {
        let conn = self.open.remove(&id)?;
        let ip = conn.peer.ip();
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(conn)
    }

    /// The longest-idle idle connection among those `from` accepts.
    fn longest_idle(&self, from: impl Fn(&ConnState) -> bool) -> Option<u64> {
        self.open
            .values()
            .filter(|c| from(c) && c.is_idle())
            .min_by_key(|c| c.last_active_ms.load(Ordering::Relaxed))
            .map(|c| c.id)
    }

    /// The address with the most connections.
    fn biggest_holder(&self) -> Option<IpAddr> {
        self.per_ip
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(ip, _)| *ip)
    }
}

/// The open connections, with the limits applied on accept.
#[derive(Debug)]
pub(super) struct ConnectionTable {
    table: Mutex<Table>,
    /// Connections open (same as the table's size, readable without the lock).
    open: AtomicUsize,
    /// Woken when the last connection closes.
    all_closed: Notify,
    /// `rpc_server_connections_open`, moved by this table's changes (so several servers
    /// in one process add up).
    gauge: metrics::Gauge,
}

impl Default for ConnectionTable {
    fn default() -> Self {
        ConnectionTable {
            table: Mutex::default(),
            open: AtomicUsize::new(0),
            all_closed: Notify::new(),
            gauge: metrics::gauge!(crate::metrics::SERVER_CONNECTIONS_OPEN),
        }
    }
}

impl ConnectionTable {
    /// Admits a connection from `peer` under `limits`, closing an idle one to make room
    /// if need be (counted by the caller from the returned eviction flag).
    pub(super) fn admit(
        &self,
        peer: SocketAddr,
        principal: Option<Principal>,
        sender: FrameSender,
        limits: &ServerLimits,
        epoch: Instant,
    ) -> Result<(Arc<ConnState>, bool), Refusal> {
        let mut t = lock(&self.table);
        let ip = peer.ip();
        let mut evicted = None;
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_connections_per_ip {
            match t.longest_idle(|c| c.peer.ip() == ip) {
                Some(victim) => evicted = t.remove(victim),
                None => return Err(Refusal::PerIp),
            }
        } else if t.open.len() >= limits.max_connections {
            let biggest = t.biggest_holder();
            let victim = biggest
                .and_then(|big| t.longest_idle(|c| c.peer.ip() == big))
                .or_else(|| t.longest_idle(|_| true));
            match victim {
                Some(victim) => evicted = t.remove(victim),
                None => return Err(Refusal::Full),
            }
        }
        let was_evicted = evicted.is_some();
        if let Some(victim) = evicted {
            victim.begin_close();
        } else {
            self.gauge.increment(1.0);
        }
        t.next_id += 1;
        let conn = Arc::new(ConnState {
            id: t.next_id,
            peer,
            scope: ClientScope::of(ip, principal),
            sender,
            calls: AtomicUsize::new(0),
            progress: Notify::new(),
            waiting: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            controls: Mutex::default(),
        });
        conn.touch(epoch, Instant::now());
        t.open.insert(conn.id, conn.clone());
        *t.per_ip.entry(ip).or_insert(0) += 1;
        self.open.store(t.open.len(), Ordering::Release);
        Ok((conn, was_evicted))
    }

    /// Forgets a connection that has closed (it may already be gone if it was evicted).
    pub(super) fn remove(&self, conn: &ConnState) {
        let mut t = lock(&self.table);
        if t.remove(conn.id).is_some() {
            self.gauge.decrement(1.0);
        }
        self.open.store(t.open.len(), Ordering::Release);
        if t.open.is_empty() {
            self.all_closed.notify_waiters();
        }
    }

    /// Tells every open connection that the server is closing it.
    pub(super) fn close_all(&self) {
        for conn in lock(&self.table).open.values() {
            conn.begin_close();
        }
    }

    /// The cancellation handle of a call in the worker pool that came on another open
    /// connection of `conn`'s scope (a client that reconnected, or that has several
    /// connections, may cancel on any of them). Only a Cancel looks here.
    pub(super) fn find_control(
        &self,
        conn: &ConnState,
        client_id: u64,
        call_id: u64,
    ) -> Option<Arc<CallControl>> {
        let t = lock(&self.table);
        t.open
            .values()
            .filter(|c| c.id != conn.id && c.scope == conn.scope)
            .find_map(|c| c.control(client_id, call_id))
    }

    /// Connections open.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Reply bytes unwritten over every open connection.
    pub(super) fn queued_bytes(&self) -> usize {
        let t = lock(&self.table);
        t.open.values().map(|c| c.sender.queued_bytes()).sum()
    }

    /// Waits until every connection has closed.
    pub(super) async fn wait_all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.table).open.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame_queue;

    fn addr(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, ip], port))
    }

    fn limits(total: usize, per_ip: usize) -> ServerLimits {
        ServerLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..ServerLimits::default()
        }
    }

    #[test]
    fn at_the_cap_the_biggest_holders_idle_connection_makes_room() {
        let table = ConnectionTable::default();
        let epoch = Instant::now();
        let l = limits(4, 4);
        let mut keep = Vec::new();
        for port in 0..3 {
            let (tx, rx) = frame_queue(4);
            keep.push(rx);
            keep_conn(&table, addr(2, port), tx, &l, epoch);
        }
        let (tx, rx) = frame_queue(4);
        keep.push(rx);
        let (honest, _) = table.admit(addr(1, 9), None, tx, &l, epoch).expect("room");
        // Full: a newcomer displaces one of 127.0.0.2's idle connections, never the
        // only connection of 127.0.0.1.
        let (tx, _rx) = frame_queue(4);
        let (_new, evicted) = table
            .admit(addr(3, 1), None, tx, &l, epoch)
            .expect("evicts");
        assert!(evicted);
        assert!(!honest.is_closing());
        assert_eq!(table.open(), 4);
    }

    #[test]
    fn busy_connections_are_never_evicted() {
        let table = ConnectionTable::default();
        let epoch = Instant::now();
        let l = limits(2, 2);
        let mut slots = Vec::new();
        for port in 0..2 {
            let (tx, _rx) = frame_queue(4);
            let (c, _) = table
                .admit(addr(2, port), None, tx, &l, epoch)
                .expect("room");
            slots.push(c.begin_call());
        }
        let (tx, _rx) = frame_queue(4);
        assert_eq!(
            table.admit(addr(1, 1), None, tx, &l, epoch).unwrap_err(),
            Refusal::Full
        );
        let (tx, _rx) = frame_queue(4);
        assert_eq!(
            table.admit(addr(2, 9), None, tx, &l, epoch).unwrap_err(),
            Refusal::PerIp
        );
        drop(slots);
        let (tx, _rx) = frame_queue(4);
        assert!(table.admit(addr(1, 1), None, tx, &l, epoch).is_ok());
    }

    fn keep_conn(
        table: &ConnectionTable,
        peer: SocketAddr,
        tx: FrameSender,
        l: &ServerLimits,
        epoch: Instant,
    ) {
        table.admit(peer, None, tx, l, epoch).expect("room");
    }
}
