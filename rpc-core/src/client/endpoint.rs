//! One endpoint: its channel, its current connection, connecting with a reconnect
//! backoff of its own, the incarnation probe, and its health.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::Instrument;

use crate::error::TransportError;
use crate::frame::{Frame, FrameHeader};
use crate::naming::Endpoint;
use crate::transport::{Channel, FrameSender};

use super::connection::{read_replies, Registration};
use super::inflight::{lock, ConnCalls, Delivery, Inbox, LiveId};
use super::stats::Counters;
use super::{ClientConfig, EndpointStats, Inner, RetryPolicy};

/// One endpoint of a client.
pub(super) struct Ep<C> {
    pub(super) id: u64,
    pub(super) endpoint: Option<Endpoint>,
    pub(super) channel: C,
    conn: RwLock<ConnSlot>,
    /// Serialises connection attempts and holds the backoff state.
    connecting: tokio::sync::Mutex<Backoff>,
    pub(super) outstanding: AtomicUsize,
    calls: AtomicU64,
    failures: AtomicU64,
    connect_failures: AtomicU64,
    /// Whether a connection to it was ever made (a refused connection to an endpoint
    /// that never answered fails a call at once: nothing listens there).
    ever_connected: AtomicBool,
    /// No failure since the last success (lets the per-call success path skip the lock).
    healthy: AtomicBool,
    health: Mutex<Health>,
}

struct Health {
    consecutive_failures: u32,
    /// Down until then (then the next call probes it); `None`: up.
    down_until: Option<Instant>,
    probe_backoff: Duration,
}

struct Backoff {
    next_attempt: Option<Instant>,
    delay: Duration,
    last_error: Option<TransportError>,
}

#[derive(Default)]
struct ConnSlot {
    sender: Option<FrameSender>,
    calls: Option<Arc<ConnCalls>>,
    /// The incarnation of the server at the other end, learned by a probe on connect;
    /// `None` while the probe has not been answered (the connection is kept and the
    /// next attempt probes it again rather than reconnecting).
    incarnation: Option<u64>,
}

/// The current connection of an endpoint, as a call sees it.
pub(super) struct Link {
    pub(super) sender: FrameSender,
    pub(super) calls: Arc<ConnCalls>,
    pub(super) incarnation: u64,
}

/// Why connecting failed.
pub(super) struct ConnectError {
    pub(super) error: TransportError,
    /// The call's own deadline passed while connecting.
    pub(super) deadline_passed: bool,
}

impl<C> Ep<C> {
    pub(super) fn new(
        id: u64,
        endpoint: Option<Endpoint>,
        channel: C,
        config: &ClientConfig,
    ) -> Self {
        Ep {
            id,
            endpoint,
            channel,
            conn: RwLock::new(ConnSlot::default()),
            connecting: tokio::sync::Mutex::new(Backoff {
                next_attempt: None,
                delay: config.reconnect_backoff_min,
                last_error: None,
            }),
            outstanding: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            ever_connected: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            health: Mutex::new(Health {
                consecutive_failures: 0,
                down_until: None,
                probe_backoff: config.probe_backoff_min,
            }),
        }
    }

    /// Up, or down with its probe time come.
    pub(super) fn usable(&self, now: Instant) -> bool {
        lock(&self.health).down_until.is_none_or(|t| t <= now)
    }

    fn is_up(&self) -> bool {
        lock(&self.health).down_until.is_none()
    }

    /// Whether it has ever accepted a connection.
    pub(super) fn ever_connected(&self) -> bool {
        self.ever_connected.load(Ordering::Relaxed)
    }

    /// A down endpoint whose probe time has come is probed by the call that chose it
    /// alone: the next probe waits another backoff (an answer marks it up before that).
    pub(super) fn claim_probe(&self, now: Instant) {
        let mut h = lock(&self.health);
        if h.down_until.is_some_and(|t| t <= now) {
            h.down_until = Some(now + crate::id::jitter(h.probe_backoff));
        }
    }

    pub(super) fn record_success(&self, config: &ClientConfig) {
        if self.healthy.load(Ordering::Relaxed) {
            return;
        }
        let mut h = lock(&self.health);
        if h.down_until.is_some() {
            tracing::debug!(endpoint = ?self.endpoint, "endpoint up again");
        }
        h.consecutive_failures = 0;
        h.down_until = None;
        h.probe_backoff = config.probe_backoff_min;
        self.healthy.store(true, Ordering::Relaxed);
    }

    pub(super) fn record_failure(&self, config: &ClientConfig) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.healthy.store(false, Ordering::Relaxed);
        let mut h = lock(&self.health);
        h.consecutive_failures += 1;
        if h.consecutive_failures >= config.failures_to_down {
            let wait = crate::id::jitter(h.probe_backoff);
            if h.down_until.is_none() {
                tracing::debug!(endpoint = ?self.endpoint, "endpoint marked down");
            }
            h.down_until = Some(Instant::now() + wait);
            h.probe_backoff = (h.probe_backoff * 2).min(config.probe_backoff_max);
        }
    }

    /// Counts an attempt sent to it; outstanding while the guard lives.
    pub(super) fn start_attempt(&self) -> Outstanding<'_, C> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding(self)
    }

    pub(super) fn stats(&self, now: Instant) -> EndpointStats {
        let backoff = self.connecting.try_lock().ok();
        EndpointStats {
            reconnect_in: backoff
                .as_ref()
                .and_then(|b| b.next_attempt)
                .filter(|&at| at > now)
                .map(|at| at - now),
            reconnect_backoff: backoff.as_ref().map(|b| b.delay).unwrap_or_default(),
            endpoint: self.endpoint.clone(),
            up: self.is_up(),
            outstanding: self.outstanding.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
        }
    }

    /// The connection and its probed incarnation, if both are there and open.
    fn current_link(&self) -> Option<Link> {
        let slot = self.conn.read().unwrap_or_else(|e| e.into_inner());
        match (&slot.sender, &slot.calls, slot.incarnation) {
            (Some(s), Some(calls), Some(incarnation)) if !s.is_closed() => Some(Link {
                sender: s.clone(),
                calls: calls.clone(),
                incarnation,
            }),
            _ => None,
        }
    }

    /// The open connection whose incarnation probe has not been answered yet.
    fn unprobed_link(&self) -> Option<(FrameSender, Arc<ConnCalls>)> {
        let slot = self.conn.read().unwrap_or_else(|e| e.into_inner());
        match (&slot.sender, &slot.calls, slot.incarnation) {
            (Some(s), Some(calls), None) if !s.is_closed() => Some((s.clone(), calls.clone())),
            _ => None,
        }
    }

    /// Forgets connection `calls` if it is still the current one.
    pub(super) fn forget(&self, calls: &Arc<ConnCalls>) {
        let mut slot = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if slot.calls.as_ref().is_some_and(|c| Arc::ptr_eq(c, calls)) {
            slot.sender = None;
            slot.calls = None;
            slot.incarnation = None;
        }
    }

    /// Drops the current connection; its calls fail with `Closed`.
    pub(super) fn disconnect(&self) {
        let calls = {
            let mut slot = self.conn.write().unwrap_or_else(|e| e.into_inner());
            slot.sender = None;
            slot.incarnation = None;
            slot.calls.take()
        };
        if let Some(calls) = calls {
            calls.fail(TransportError::Closed);
        }
    }
}

/// Counts an attempt as outstanding on its endpoint while it lives.
pub(super) struct Outstanding<'a, C>(&'a Ep<C>);

impl<C> Drop for Outstanding<'_, C> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C: Channel> Inner<C> {
    /// The endpoint's current connection, connecting (with backoff) if there is none.
    ///
    /// A connection attempt that fails or times out (the connect itself or the
    /// incarnation probe) is counted in `connect_failures` and starts the endpoint's
    /// reconnect backoff. A connection whose handshake succeeded is kept even if its
    /// probe timed out: the next attempt probes it again instead of reconnecting.
    pub(super) async fn link(
        self: &Arc<Self>,
        ep: &Arc<Ep<C>>,
        attempt_deadline: Instant,
        call_deadline: Instant,
        policy: &RetryPolicy,
    ) -> Result<Link, ConnectError> {
        if let Some(found) = ep.current_link() {
            return Ok(found);
        }
        let timed_out = |ep: &Ep<C>| ConnectError {
            error: TransportError::ConnectTimedOut {
                addr: ep.channel.remote(),
            },
            deadline_passed: Instant::now() >= call_deadline,
        };
        let mut backoff =
            match tokio::time::timeout_at(attempt_deadline.into(), ep.connecting.lock()).await {
                Ok(guard) => guard,
                // Waited for another call's connection attempt that did not finish in
                // time: not an attempt of ours, not counted.
                Err(_) => return Err(timed_out(ep)),
            };
        // Someone else may have connected while we waited for the lock.
        if let Some(found) = ep.current_link() {
            return Ok(found);
        }
        let (sender, calls) = match ep.unprobed_link() {
            Some(open) => open,
            None => {
                if let Some(at) = backoff.next_attempt {
                    // While the endpoint is in its reconnect backoff, a call does not
                    // wait it out (unless its policy waits for the server): the attempt
                    // fails at once with the last connect error, nothing sent, and the
                    // call's own retry policy decides what comes next (a balanced client
                    // fails over). So a call that may not retry fails fast.
                    let waits = policy.wait_for_server && !self.balanced;
                    if at > attempt_deadline || (at > Instant::now() && !waits) {
                        let error = backoff.last_error.clone().unwrap_or(TransportError::Closed);
                        return Err(ConnectError {
                            error,
                            deadline_passed: false,
                        });
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                match tokio::time::timeout_at(attempt_deadline.into(), ep.channel.connect()).await {
                    Ok(Ok(conn)) => {
                        let serial = self.next_conn.fetch_add(1, Ordering::Relaxed);
                        let calls = Arc::new(ConnCalls::new(serial));
                        {
                            let mut slot = ep.conn.write().unwrap_or_else(|e| e.into_inner());
                            slot.sender = Some(conn.sender.clone());
                            slot.calls = Some(calls.clone());
                            slot.incarnation = None;
                        }
                        ep.ever_connected.store(true, Ordering::Relaxed);
                        // Its own root span: the reader outlives the call that
                        // opened the connection.
                        let span = tracing::debug_span!(
                            parent: None,
                            "rpc.reply_reader",
                            remote = %ep.channel.remote()
                        );
                        tokio::spawn(
                            read_replies(
                                Arc::downgrade(self),
                                Arc::downgrade(ep),
                                calls.clone(),
                                conn.receiver,
                            )
                            .instrument(span),
                        );
                        (conn.sender, calls)
                    }
                    Ok(Err(e)) => {
                        return Err(ConnectError {
                            error: self.connect_failed(ep, &mut backoff, e),
                            deadline_passed: false,
                        })
                    }
                    Err(_) => {
                        let mut e = timed_out(ep);
                        e.error = self.connect_failed(ep, &mut backoff, e.error);
                        return Err(e);
                    }
                }
            }
        };
        // Learn which server incarnation this connection reaches before any call uses
        // it: that is how a restarted server is told from a slow one.
        let incarnation = match self
            .probe_incarnation(&sender, &calls, attempt_deadline)
            .await
        {
            Ok(incarnation) => incarnation,
            Err(None) => {
                let mut e = timed_out(ep);
                e.error = self.connect_failed(ep, &mut backoff, e.error);
                return Err(e);
            }
            Err(Some(error)) => {
                return Err(ConnectError {
                    error: self.connect_failed(ep, &mut backoff, error),
                    deadline_passed: false,
                })
            }
        };
        {
            let mut slot = ep.conn.write().unwrap_or_else(|e| e.into_inner());
            if slot.calls.as_ref().is_some_and(|c| Arc::ptr_eq(c, &calls)) {
                slot.incarnation = Some(incarnation);
            }
        }
        backoff.next_attempt = None;
        backoff.delay = self.config.reconnect_backoff_min;
        backoff.last_error = None;
        Counters::bump(&self.stats.connects);
        crate::metrics::bump(crate::metrics::CLIENT_CONNECTS);
        tracing::debug!(
            remote = %ep.channel.remote(),
            serial = calls.serial,
            incarnation,
            "connected"
        );
        Ok(Link {
            sender,
            calls,
            incarnation,
        })
    }

    /// Counts a failed connection attempt and starts (or doubles) the endpoint's
    /// reconnect backoff; the error for the call.
    fn connect_failed(
        &self,
        ep: &Ep<C>,
        backoff: &mut Backoff,
        e: TransportError,
    ) -> TransportError {
        Counters::bump(&self.stats.connect_failures);
        crate::metrics::bump(crate::metrics::CLIENT_CONNECT_FAILURES);
        ep.connect_failures.fetch_add(1, Ordering::Relaxed);
        let delay = backoff.delay;
        backoff.next_attempt = Some(Instant::now() + crate::id::jitter(delay));
        backoff.delay = (delay * 2).min(self.config.reconnect_backoff_max);
        backoff.last_error = Some(e.clone());
        tracing::debug!(remote = %ep.channel.remote(), error = %e, "connect failed");
        e
    }

    /// Asks the server at the other end of a new connection for its incarnation (a Call
    /// to interface 0, procedure 0; the answer's aux field carries it). `Err(None)`: no
    /// answer in time.
    async fn probe_incarnation(
        &self,
        sender: &FrameSender,
        calls: &Arc<ConnCalls>,
        deadline: Instant,
    ) -> Result<u64, Option<TransportError>> {
        let live = LiveId::new(&self.ids);
        let header =
            FrameHeader::call(self.client_id, live.id, crate::server::PING_INTERFACE, 0, 0);
        let inbox = Arc::new(Inbox::default());
        inbox.sending_on(calls.serial);
        let mut registration = Registration::new(live.id, header);
        registration.register(calls, &inbox).map_err(Some)?;
        sender
            .send(Frame::new(header, Bytes::new()))
            .await
            .map_err(Some)?;
        match tokio::time::timeout_at(deadline.into(), inbox.wait()).await {
            Ok(Delivery::Answer(answer, _)) => Ok(answer.header.aux),
            Ok(Delivery::Lost(e)) => Err(Some(e)),
            Err(_) => Err(None),
        }
    }
}
