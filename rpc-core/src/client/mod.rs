//! The client runtime: call-id allocation, the pending-call table, deadlines, retries,
//! (re)connection with backoff, and load balancing. Generated `FooClient`s are thin
//! wrappers over [`Client`].
//!
//! One [`Client`] multiplexes any number of concurrent calls over one connection per
//! endpoint; each call waits on its own slot in the pending table, which the reply reader
//! task of its connection fills when the reply (or status) with the call's id arrives.
//! When a connection drops, every call in flight on it fails at once (and is retried as
//! its semantics allow), and the next call reconnects (with exponential backoff after
//! failed attempts).
//!
//! A client over one [`Channel`] ([`Client::new`]) has one endpoint. A balanced client
//! ([`Client::balanced`]) follows a resolver's set of endpoints and spreads calls over
//! them ([`Balance`]): round robin, or the least outstanding of two random choices. Each
//! endpoint has a health state: `failures_to_down` consecutive failures (connection
//! refused or lost, timeouts) mark it down; a down endpoint is tried again (probed by the
//! next call) after a backoff that doubles up to a limit, and is up again when it
//! answers.

mod blocking;
mod handle;
mod layer;
mod options;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, Semaphore};
use tracing::Instrument;

pub use blocking::BlockingRuntime;
pub use handle::{BlockingCallHandle, CallHandle};
pub use layer::{error_from_layer, ClientCall, ClientStack, Direct};
pub use options::{Balance, CallOptions, ClientConfig, RetryPolicy};

use crate::error::{RpcError, Status, TransportError};
use crate::frame::{flags, Frame, FrameHeader, FrameKind, Semantics};
use crate::interface::{InterfaceInfo, ProcedureInfo};
use crate::naming::Endpoint;
use crate::transport::{Channel, FrameReceiver, FrameSender};
use crate::xdr::{XdrDecode, XdrError, XdrReader, XdrWriter};

/// A client of one server, over one [`Channel`]. Cheap to clone (clones share the
/// connection and the pending-call table).
pub struct Client<C: Channel> {
    inner: Arc<Inner<C>>,
    /// `Client::layer`s around the call (`None`: none set).
    layers: Option<ClientStack>,
}

impl<C: Channel> Clone for Client<C> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
            layers: self.layers.clone(),
        }
    }
}

impl<C: Channel> std::fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("remote", &self.remote())
            .field("client_id", &self.inner.client_id)
            .finish()
    }
}

struct Inner<C> {
    config: ClientConfig,
    /// Where calls go: one endpoint for a client over one channel, the resolver's current
    /// set for a balanced client.
    endpoints: RwLock<Vec<Arc<Ep<C>>>>,
    next_ep: AtomicU64,
    /// Round-robin position, and the state of the random choices.
    rr: AtomicUsize,
    rng: AtomicU64,
    /// Whether this is a balanced client (for `remote()`).
    balanced: bool,
    client_id: u64,
    /// Call ids: the next one, and those of calls not finished yet. The smallest live id
    /// is the low-water mark each call carries to the server's reply cache; ids are
    /// allocated and registered under one lock so the mark never passes a call that has
    /// an id but has not been sent yet.
    ids: Mutex<CallIds>,
    /// Calls waiting for an answer, by call id.
    pending: Mutex<PendingTable>,
    in_flight: Semaphore,
    stats: Counters,
}

/// One endpoint: its channel, its current connection, and its health.
struct Ep<C> {
    id: u64,
    endpoint: Option<Endpoint>,
    channel: C,
    conn: Mutex<ConnSlot>,
    /// Serialises connection attempts and holds the backoff state.
    connecting: tokio::sync::Mutex<Backoff>,
    outstanding: AtomicUsize,
    calls: AtomicU64,
    failures: AtomicU64,
    /// Whether a connection to it was ever made (a refused connection to an endpoint
    /// that never answered fails a call at once: nothing listens there).
    ever_connected: AtomicBool,
    health: Mutex<Health>,
}

struct Health {
    consecutive_failures: u32,
    /// Down until then (then the next call probes it); `None`: up.
    down_until: Option<Instant>,
    probe_backoff: Duration,
}

impl<C> Ep<C> {
    fn new(id: u64, endpoint: Option<Endpoint>, channel: C, config: &ClientConfig) -> Self {
        Ep {
            id,
            endpoint,
            channel,
            conn: Mutex::new(ConnSlot::default()),
            connecting: tokio::sync::Mutex::new(Backoff {
                next_attempt: None,
                delay: config.reconnect_backoff_min,
                last_error: None,
            }),
            outstanding: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ever_connected: AtomicBool::new(false),
            health: Mutex::new(Health {
                consecutive_failures: 0,
                down_until: None,
                probe_backoff: config.probe_backoff_min,
            }),
        }
    }

    /// Up, or down with its probe time come.
    fn usable(&self, now: Instant) -> bool {
        lock(&self.health).down_until.is_none_or(|t| t <= now)
    }

    fn is_up(&self) -> bool {
        lock(&self.health).down_until.is_none()
    }

    fn record_success(&self, config: &ClientConfig) {
        let mut h = lock(&self.health);
        if h.down_until.is_some() {
            tracing::debug!(endpoint = ?self.endpoint, "endpoint up again");
        }
        h.consecutive_failures = 0;
        h.down_until = None;
        h.probe_backoff = config.probe_backoff_min;
    }

    fn record_failure(&self, config: &ClientConfig) {
        self.failures.fetch_add(1, Ordering::Relaxed);
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
}

/// Counts an attempt as outstanding on its endpoint while it lives.
struct Outstanding<'a, C>(&'a Ep<C>);

impl<C> Drop for Outstanding<'_, C> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One endpoint's counters and health, for observability and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The endpoint (`None` for a client over a single channel).
    pub endpoint: Option<Endpoint>,
    /// Whether it is up (not marked down).
    pub up: bool,
    /// Attempts in flight on it now.
    pub outstanding: usize,
    /// Attempts sent to it.
    pub calls: u64,
    /// Failures recorded against it.
    pub failures: u64,
    /// Time left in its reconnect backoff: the next connection attempt to it waits this
    /// long (`None`: no backoff pending, or an attempt is under way now).
    pub reconnect_in: Option<Duration>,
}

#[derive(Default)]
struct ConnSlot {
    sender: Option<FrameSender>,
    generation: u64,
    /// The incarnation of the server at the other end, learned by a probe on connect;
    /// `None` while the probe has not been answered (the connection is kept and the
    /// next attempt probes it again rather than reconnecting).
    incarnation: Option<u64>,
}

struct CallIds {
    next: u64,
    live: BTreeSet<u64>,
}

/// A call id, live until dropped.
struct LiveId<'a, C> {
    inner: &'a Inner<C>,
    id: u64,
}

impl<C> LiveId<'_, C> {
    fn new(inner: &Inner<C>) -> LiveId<'_, C> {
        let mut ids = lock(&inner.ids);
        let id = ids.next;
        ids.next += 1;
        ids.live.insert(id);
        LiveId { inner, id }
    }
}

impl<C> Drop for LiveId<'_, C> {
    fn drop(&mut self) {
        lock(&self.inner.ids).live.remove(&self.id);
    }
}

impl<C> Inner<C> {
    /// The lowest call id still live (0 if none).
    fn low_water(&self) -> u64 {
        lock(&self.ids).live.first().copied().unwrap_or(0)
    }
}

/// The current connection of an endpoint, as a call sees it.
struct Link {
    sender: FrameSender,
    generation: u64,
    incarnation: u64,
}

struct Backoff {
    next_attempt: Option<Instant>,
    delay: Duration,
    last_error: Option<TransportError>,
}

/// Calls waiting for an answer, and which connections have failed. Both live under one
/// lock so a call can never be registered on a connection whose calls were already
/// failed (it would wait for an answer that cannot come).
#[derive(Default)]
struct PendingTable {
    calls: HashMap<u64, Pending>,
    /// Per endpoint, the highest connection generation that has failed.
    failed: HashMap<u64, u64>,
}

impl PendingTable {
    /// Registers a call; false if its connection has already failed.
    fn insert(&mut self, call_id: u64, pending: Pending) -> bool {
        if self
            .failed
            .get(&pending.ep)
            .is_some_and(|&g| g >= pending.generation)
        {
            return false;
        }
        self.calls.insert(call_id, pending);
        true
    }

    /// Marks connection `generation` of `ep` failed and takes its calls.
    fn fail(&mut self, ep: u64, generation: u64) -> Vec<Pending> {
        let g = self.failed.entry(ep).or_insert(0);
        *g = (*g).max(generation);
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, p)| p.ep == ep && p.generation == generation)
            .map(|(id, _)| *id)
            .collect();
        ids.iter().filter_map(|id| self.calls.remove(id)).collect()
    }
}

struct Pending {
    tx: oneshot::Sender<Result<Frame, RpcError>>,
    /// The endpoint and connection generation the request went out on.
    ep: u64,
    generation: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    unmatched_replies: AtomicU64,
    retries: AtomicU64,
    outcome_unknown: AtomicU64,
    server_restarted: AtomicU64,
    cancels_sent: AtomicU64,
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that ended in an error (timeouts included).
    pub failures: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Connections established.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Replies that matched no pending call (late replies after a timeout, or bogus ids).
    pub unmatched_replies: u64,
    /// Calls awaiting a reply right now.
    pub in_flight: u64,
    /// Attempts after the first (resends and retries of refused calls).
    pub retries: u64,
    /// At-most-once calls that ended in doubt.
    pub outcome_unknown: u64,
    /// Calls failed because the server restarted while they were in doubt.
    pub server_restarted: u64,
    /// Cancel frames sent for calls abandoned before their answer.
    pub cancels_sent: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data inconsistent
    // (every critical section is a single insert/remove/replace), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C: Channel> Client<C> {
    /// A client over `channel` with the default configuration. Connects lazily, on the
    /// first call.
    pub fn new(channel: C) -> Self {
        Client::with_config(channel, ClientConfig::default())
    }

    /// A client over `channel` with `config`.
    pub fn with_config(channel: C, config: ClientConfig) -> Self {
        let ep = Arc::new(Ep::new(0, None, channel, &config));
        Client::from_parts(vec![ep], config, false)
    }

    /// A client that follows `endpoints` (e.g. from a [`crate::naming::Resolver`]) and
    /// spreads calls over them as `config.balance` says. `connect` makes the channel for
    /// an endpoint (or `None` to skip one it cannot reach, e.g. another transport).
    /// Endpoints that appear are added; endpoints that disappear get no new calls.
    ///
    /// Must be called within a tokio runtime (a task follows the endpoint set).
    pub fn balanced(
        endpoints: tokio::sync::watch::Receiver<Vec<Endpoint>>,
        connect: impl Fn(&Endpoint) -> Option<C> + Send + Sync + 'static,
        config: ClientConfig,
    ) -> Self {
        let client = Client::from_parts(Vec::new(), config, true);
        client.inner.apply_endpoints(&endpoints.borrow(), &connect);
        tokio::spawn(follow_endpoints(
            Arc::downgrade(&client.inner),
            endpoints,
            connect,
        ));
        client
    }

    fn from_parts(endpoints: Vec<Arc<Ep<C>>>, config: ClientConfig, balanced: bool) -> Self {
        let in_flight = Semaphore::new(config.max_in_flight.min(Semaphore::MAX_PERMITS));
        let client_id = crate::id::random_u64();
        Client {
            inner: Arc::new(Inner {
                next_ep: AtomicU64::new(endpoints.len() as u64),
                endpoints: RwLock::new(endpoints),
                rr: AtomicUsize::new(0),
                rng: AtomicU64::new(client_id | 1),
                balanced,
                client_id,
                ids: Mutex::new(CallIds {
                    next: 1,
                    live: BTreeSet::new(),
                }),
                pending: Mutex::new(PendingTable::default()),
                in_flight,
                stats: Counters::default(),
                config,
            }),
            layers: None,
        }
    }

    /// This client's id (random, carried in every call header).
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// The client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The server this client talks to (a summary for a balanced client).
    pub fn remote(&self) -> String {
        let eps = self.inner.snapshot();
        match (self.inner.balanced, eps.first()) {
            (false, Some(ep)) => ep.channel.remote(),
            _ => format!("balanced over {} endpoints", eps.len()),
        }
    }

    /// Each endpoint's health and counters.
    pub fn endpoint_stats(&self) -> Vec<EndpointStats> {
        let now = Instant::now();
        self.inner
            .snapshot()
            .iter()
            .map(|ep| EndpointStats {
                reconnect_in: ep
                    .connecting
                    .try_lock()
                    .ok()
                    .and_then(|b| b.next_attempt)
                    .filter(|&at| at > now)
                    .map(|at| at - now),
                endpoint: ep.endpoint.clone(),
                up: ep.is_up(),
                outstanding: ep.outstanding.load(Ordering::Relaxed),
                calls: ep.calls.load(Ordering::Relaxed),
                failures: ep.failures.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> ClientStats {
        let s = &self.inner.stats;
        ClientStats {
            calls: s.calls.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            timeouts: s.timeouts.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            connect_failures: s.connect_failures.load(Ordering::Relaxed),
            unmatched_replies: s.unmatched_replies.load(Ordering::Relaxed),
            in_flight: lock(&self.inner.pending).calls.len() as u64,
            retries: s.retries.load(Ordering::Relaxed),
            outcome_unknown: s.outcome_unknown.load(Ordering::Relaxed),
            server_restarted: s.server_restarted.load(Ordering::Relaxed),
            cancels_sent: s.cancels_sent.load(Ordering::Relaxed),
        }
    }

    /// Connects now (to one endpoint) instead of on the first call.
    pub async fn connect(&self) -> Result<(), RpcError> {
        let deadline = Instant::now() + self.inner.config.default_timeout;
        let ep = self.inner.pick(None)?;
        self.link(&ep, deadline, &self.inner.config.retry)
            .await
            .map(|_| ())
    }

    /// Closes the current connections (calls in flight on them fail with a transport
    /// error); the next call reconnects.
    pub fn disconnect(&self) {
        for ep in self.inner.snapshot() {
            let generation = {
                let mut slot = lock(&ep.conn);
                slot.sender = None;
                slot.generation
            };
            self.inner
                .fail_generation(ep.id, generation, TransportError::Closed);
        }
    }

    /// [`Client::call`] without the client's layers.
    async fn call_direct<T>(
        &self,
        interface: &'static InterfaceInfo,
        procedure: &'static ProcedureInfo,
        options: &CallOptions,
        encode: impl FnOnce(&mut XdrWriter) -> Result<(), XdrError>,
        decode: impl FnOnce(&mut XdrReader<'_>) -> Result<T, XdrError>,
    ) -> Result<T, RpcError> {
        let semantics = self.semantics_for(interface, procedure, options);
        let span = tracing::debug_span!(
            "rpc.call",
            interface = interface.name,
            procedure = procedure.name,
            call_id = tracing::field::Empty,
            semantics = %semantics,
        );
        let result = self
            .call_inner(interface, procedure, options, semantics, encode, decode)
            .instrument(span)
            .await;
        if result.is_err() {
            self.inner.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// A call's semantics: oneway procedures are at-most-once; then the call options';
    /// then at-least-once for an `[idempotent]` procedure; then the interface's default;
    /// then the client's.
    fn semantics_for(
        &self,
        interface: &InterfaceInfo,
        procedure: &ProcedureInfo,
        options: &CallOptions,
    ) -> Semantics {
        if procedure.oneway {
            return Semantics::AtMostOnce;
        }
        if let Some(semantics) = options.semantics {
            return semantics;
        }
        if procedure.idempotent {
            return Semantics::AtLeastOnce;
        }
        interface
            .default_semantics
            .unwrap_or(self.inner.config.default_semantics)
    }

    fn deadline_for(&self, options: &CallOptions) -> Instant {
        options.deadline.unwrap_or_else(|| {
            Instant::now() + options.timeout.unwrap_or(self.inner.config.default_timeout)
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_inner<T>(
        &self,
        interface: &'static InterfaceInfo,
        procedure: &'static ProcedureInfo,
        options: &CallOptions,
        semantics: Semantics,
        encode: impl FnOnce(&mut XdrWriter) -> Result<(), XdrError>,
        decode: impl FnOnce(&mut XdrReader<'_>) -> Result<T, XdrError>,
    ) -> Result<T, RpcError> {
        let inner = &*self.inner;
        inner.stats.calls.fetch_add(1, Ordering::Relaxed);
        let deadline = self.deadline_for(options);
        let policy = options.retry.unwrap_or(inner.config.retry);

        let mut w = XdrWriter::with_capacity(64).sharing(inner.config.share_threshold);
        encode(&mut w).map_err(RpcError::Encode)?;
        // Large opaques the stub passed with `put_opaque_shared` stay references to the
        // caller's buffers (the shared-descriptor send path): every attempt's frame
        // points at them, and the transport gathers them into its writes.
        let (payload, tail) = w.split_payload();

        let _permit =
            match tokio::time::timeout_at(deadline.into(), inner.in_flight.acquire()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(RpcError::Transport(TransportError::Closed)),
                Err(_) => {
                    inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(RpcError::Timeout);
                }
            };
        // One call id for every attempt: it is what the server deduplicates by.
        let live = LiveId::new(inner);
        let call_id = live.id;
        tracing::Span::current().record("call_id", call_id);

        let mut attempt = 0u32;
        let mut backoff = policy.initial_backoff;
        // The server incarnation an earlier attempt may have reached (the call is in
        // doubt there).
        let mut in_doubt_at: Option<u64> = None;
        // Exactly-once calls in doubt stay with the endpoint whose reply cache may hold
        // them: a different server would run them again.
        let mut pinned: Option<Arc<Ep<C>>> = None;
        // The endpoint the last attempt failed on, avoided by the next one.
        let mut avoid: Option<u64> = None;
        let mut decode = Some(decode);
        'attempts: loop {
            attempt += 1;
            if attempt > 1 {
                inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                crate::metrics::bump(crate::metrics::CLIENT_RETRIES);
            }
            let ep = match &pinned {
                Some(ep) => ep.clone(),
                None => match inner.pick(avoid) {
                    Ok(ep) => ep,
                    Err(e) => {
                        if self
                            .pause_before_retry(&policy, attempt, &mut backoff, deadline)
                            .await
                        {
                            continue;
                        }
                        return Err(self.give_up(e, in_doubt_at.is_some(), semantics));
                    }
                },
            };
            // What to do if this attempt fails in a retryable way.
            let failure: RpcError;
            // Connecting (and the incarnation probe) is bounded like an attempt, so a lost
            // probe on a lossy path is retried instead of stalling the call.
            let link_deadline = match policy.attempt_timeout {
                Some(t) => deadline.min(Instant::now() + t),
                None => deadline,
            };
            let link = match self.link(&ep, link_deadline, &policy).await {
                Ok(link) => link,
                Err(e) => {
                    if Instant::now() >= deadline
                        && (matches!(e, RpcError::Timeout) || timed_out_connecting(&e))
                    {
                        // The call's own deadline passed while connecting.
                        inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(RpcError::Timeout);
                    }
                    ep.record_failure(&inner.config);
                    avoid = Some(ep.id);
                    let e = match e {
                        // The attempt's connect timed out (or waited for another one that
                        // did), not the call: nothing was sent.
                        RpcError::Timeout => RpcError::Unreachable(connect_timed_out(&ep.channel)),
                        e => e,
                    };
                    if in_doubt_at.is_none()
                        && (!policy.retry_not_executed || self.fail_fast(&ep, &e, &policy))
                    {
                        return Err(e);
                    }
                    failure = e;
                    match self
                        .pause_before_retry(&policy, attempt, &mut backoff, deadline)
                        .await
                    {
                        true => continue,
                        false => {
                            return Err(self.give_up(failure, in_doubt_at.is_some(), semantics))
                        }
                    }
                }
            };
            if let Some(earlier) = in_doubt_at {
                if earlier != link.incarnation && semantics != Semantics::AtLeastOnce {
                    // The server that may have run it is gone; running it on the new one
                    // could run it twice.
                    inner.stats.server_restarted.fetch_add(1, Ordering::Relaxed);
                    return Err(RpcError::ServerRestarted);
                }
            }

            let (tx, rx) = oneshot::channel();
            let registered = lock(&inner.pending).insert(
                call_id,
                Pending {
                    tx,
                    ep: ep.id,
                    generation: link.generation,
                },
            );
            ep.calls.fetch_add(1, Ordering::Relaxed);
            ep.outstanding.fetch_add(1, Ordering::Relaxed);
            let _outstanding = Outstanding(&ep);
            let low_water = inner.low_water();
            let mut header = FrameHeader::call(
                inner.client_id,
                call_id,
                interface.id,
                interface.version,
                procedure.number,
            );
            header.set_semantics(semantics);
            header.aux = low_water;
            if procedure.oneway {
                header.flags |= flags::ONEWAY;
            }
            if attempt > 1 {
                header.flags |= flags::RETRY;
            }
            header.deadline_us =
                FrameHeader::budget_from(Some(deadline.saturating_duration_since(Instant::now())));
            // Removes the pending entry however this attempt ends; if the caller stops
            // waiting while the call is out (dropped, timed out), tells the server.
            let mut guard = PendingGuard {
                inner,
                call_id,
                header,
                cancel_via: None,
            };
            if procedure.oneway {
                // No reply will come: the call is done once the transport has the frame.
                let decode = decode.take().expect("decode is used once");
                return link
                    .sender
                    .send(Frame {
                        header,
                        payload,
                        tail,
                    })
                    .await
                    .map_err(RpcError::Unreachable)
                    .and_then(|()| {
                        decode(&mut XdrReader::new(&Bytes::new())).map_err(RpcError::Decode)
                    });
            }
            let sent = match registered {
                // The connection failed between choosing it and registering the call: the
                // request must not go out on it (its reader already failed its calls).
                false => Err(TransportError::Closed),
                true => {
                    let frame = Frame {
                        header,
                        payload: payload.clone(),
                        tail: tail.clone(),
                    };
                    link.sender.send(frame).await
                }
            };
            if let Err(e) = sent {
                // The request never reached the transport: not executed by this attempt.
                drop(guard);
                if !policy.retry_not_executed && in_doubt_at.is_none() {
                    return Err(RpcError::Unreachable(e));
                }
                match self
                    .pause_before_retry(&policy, attempt, &mut backoff, deadline)
                    .await
                {
                    true => continue,
                    false => {
                        return Err(self.give_up(
                            RpcError::Unreachable(e),
                            in_doubt_at.is_some(),
                            semantics,
                        ))
                    }
                }
            }
            guard.cancel_via = Some(link.sender.clone());
            in_doubt_at = Some(link.incarnation);
            if semantics == Semantics::ExactlyOnce {
                pinned = Some(ep.clone());
            }
            tracing::trace!(attempt, "call sent");

            let mut attempt_deadline = match policy.attempt_timeout {
                Some(t) => deadline.min(Instant::now() + t),
                None => deadline,
            };
            let mut rx = rx;
            // Set once the attempt has timed out: the call then waits out its retry
            // pause still registered under its id, so a late reply to this attempt
            // (arriving in the pause) ends the call instead of being thrown away.
            let mut pausing = false;
            let answer = loop {
                break match tokio::time::timeout_at(attempt_deadline.into(), &mut rx).await {
                    Ok(Ok(Ok(frame))) => {
                        guard.cancel_via = None;
                        ep.record_success(&inner.config);
                        frame
                    }
                    // The connection failed after the request went out: in doubt.
                    Ok(Ok(Err(e))) => {
                        guard.cancel_via = None;

                        ep.record_failure(&inner.config);
                        avoid = Some(ep.id);
                        let lost = match e {
                            RpcError::Transport(t) => t,
                            other => return Err(other),
                        };
                        if semantics == Semantics::AtMostOnce {
                            inner.stats.outcome_unknown.fetch_add(1, Ordering::Relaxed);
                            return Err(RpcError::OutcomeUnknown(lost));
                        }
                        match self
                            .pause_before_retry(&policy, attempt, &mut backoff, deadline)
                            .await
                        {
                            true => continue 'attempts,
                            false => return Err(RpcError::Transport(lost)),
                        }
                    }
                    Ok(Err(_)) => {
                        guard.cancel_via = None;

                        ep.record_failure(&inner.config);
                        avoid = Some(ep.id);
                        if semantics == Semantics::AtMostOnce {
                            inner.stats.outcome_unknown.fetch_add(1, Ordering::Relaxed);
                            return Err(RpcError::OutcomeUnknown(TransportError::Closed));
                        }
                        match self
                            .pause_before_retry(&policy, attempt, &mut backoff, deadline)
                            .await
                        {
                            true => continue 'attempts,
                            false => return Err(RpcError::Transport(TransportError::Closed)),
                        }
                    }
                    // The pause after a timed-out attempt is over: next attempt.
                    Err(_) if pausing => continue 'attempts,
                    Err(_) if Instant::now() >= deadline => {
                        ep.record_failure(&inner.config);
                        inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(RpcError::Timeout);
                    }
                    Err(_) => {
                        // The attempt timed out, not the call: in doubt.
                        ep.record_failure(&inner.config);
                        avoid = Some(ep.id);
                        if semantics == Semantics::AtMostOnce {
                            inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                            return Err(RpcError::Timeout);
                        }
                        // The same call goes out again; the server must not skip it.
                        guard.cancel_via = None;
                        match retry_pause(&policy, attempt, &mut backoff, deadline) {
                            Some(pause) => {
                                pausing = true;
                                attempt_deadline = Instant::now() + pause;
                                continue;
                            }
                            None => {
                                inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                                return Err(RpcError::Timeout);
                            }
                        }
                    }
                };
            };
            drop(guard);
            match answer.header.kind {
                FrameKind::Reply => {
                    let decode = decode.take().expect("decode is used once");
                    let mut r = XdrReader::new(&answer.payload);
                    let value = decode(&mut r).map_err(RpcError::Decode)?;
                    r.finish().map_err(RpcError::Decode)?;
                    return Ok(value);
                }
                FrameKind::Status => {
                    let err = decode_status(&answer.payload);
                    let refused = matches!(err, RpcError::Overloaded | RpcError::ShuttingDown);
                    if refused && policy.retry_not_executed {
                        // Not executed: safe to send again whatever the semantics, and to
                        // another endpoint.
                        in_doubt_at = None;
                        pinned = None;
                        avoid = Some(ep.id);
                        if self
                            .pause_before_retry(&policy, attempt, &mut backoff, deadline)
                            .await
                        {
                            continue;
                        }
                    }
                    return Err(err);
                }
                // The reader only delivers Reply and Status frames.
                FrameKind::Call | FrameKind::Cancel => {
                    return Err(RpcError::Protocol(
                        "server answered with a call frame".into(),
                    ))
                }
            }
        }
    }

    /// Waits the retry backoff if another attempt is allowed and could start before the
    /// deadline; returns whether to retry.
    async fn pause_before_retry(
        &self,
        policy: &RetryPolicy,
        attempt: u32,
        backoff: &mut Duration,
        deadline: Instant,
    ) -> bool {
        match retry_pause(policy, attempt, backoff, deadline) {
            Some(pause) => {
                tokio::time::sleep(pause).await;
                true
            }
            None => false,
        }
    }

    /// Whether a failed connection attempt ends the call at once: the endpoint refused
    /// (or is backing off after refusing) and has never answered, so nothing listens
    /// there; waiting would only delay the error (unless the policy says to wait for
    /// the server). A balanced client fails over instead.
    fn fail_fast(&self, ep: &Ep<C>, e: &RpcError, policy: &RetryPolicy) -> bool {
        !self.inner.balanced
            && !policy.wait_for_server
            && !ep.ever_connected.load(Ordering::Relaxed)
            && matches!(e, RpcError::Unreachable(t) if refused(t))
    }

    /// The error a call ends with when it cannot be retried any more.
    fn give_up(&self, last: RpcError, in_doubt: bool, semantics: Semantics) -> RpcError {
        match (in_doubt, last) {
            (true, RpcError::Unreachable(e) | RpcError::Transport(e)) => {
                if semantics == Semantics::AtMostOnce {
                    self.inner
                        .stats
                        .outcome_unknown
                        .fetch_add(1, Ordering::Relaxed);
                    RpcError::OutcomeUnknown(e)
                } else {
                    RpcError::Transport(e)
                }
            }
            (_, last) => last,
        }
    }

    /// The endpoint's current connection, connecting (with backoff) if there is none.
    ///
    /// A connection attempt that fails or times out (the connect itself or the
    /// incarnation probe) is counted in `connect_failures` and starts the endpoint's
    /// reconnect backoff. A connection whose handshake succeeded is kept even if its
    /// probe timed out: the next attempt probes it again instead of reconnecting.
    async fn link(
        &self,
        ep: &Arc<Ep<C>>,
        deadline: Instant,
        policy: &RetryPolicy,
    ) -> Result<Link, RpcError> {
        if let Some(found) = current_link(ep) {
            return Ok(found);
        }
        let mut backoff = match tokio::time::timeout_at(deadline.into(), ep.connecting.lock()).await
        {
            Ok(guard) => guard,
            Err(_) => return Err(RpcError::Timeout),
        };
        // Someone else may have connected while we waited for the lock.
        if let Some(found) = current_link(ep) {
            return Ok(found);
        }
        let (sender, generation) = match unprobed_link(ep) {
            Some(open) => open,
            None => {
                if let Some(at) = backoff.next_attempt {
                    let now = Instant::now();
                    // With other endpoints to go to, a call does not wait out this one's
                    // reconnect backoff: it fails over at once (nothing was sent). Nor
                    // does a call to an endpoint that never answered, unless its policy
                    // waits for the server.
                    let never_answered =
                        !ep.ever_connected.load(Ordering::Relaxed) && !policy.wait_for_server;
                    if at > deadline || (at > now && (self.inner.balanced || never_answered)) {
                        let err = backoff.last_error.clone().unwrap_or(TransportError::Closed);
                        return Err(RpcError::Unreachable(err));
                    }
                    tokio::time::sleep_until(at.into()).await;
                }
                match tokio::time::timeout_at(deadline.into(), ep.channel.connect()).await {
                    Ok(Ok(conn)) => {
                        let generation = {
                            let mut slot = lock(&ep.conn);
                            slot.generation += 1;
                            slot.sender = Some(conn.sender.clone());
                            slot.incarnation = None;
                            slot.generation
                        };
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
                                Arc::downgrade(&self.inner),
                                Arc::downgrade(ep),
                                conn.receiver,
                                generation,
                            )
                            .instrument(span),
                        );
                        (conn.sender, generation)
                    }
                    Ok(Err(e)) => return Err(self.connect_failed(ep, &mut backoff, e)),
                    Err(_) => {
                        let e = connect_timed_out(&ep.channel);
                        return Err(self.connect_failed(ep, &mut backoff, e));
                    }
                }
            }
        };
        // Learn which server incarnation this connection reaches before any call uses
        // it: that is how a restarted server is told from a slow one.
        let incarnation = match self
            .probe_incarnation(&sender, ep.id, generation, deadline)
            .await
        {
            Ok(incarnation) => incarnation,
            Err(RpcError::Timeout) => {
                let e = connect_timed_out(&ep.channel);
                return Err(self.connect_failed(ep, &mut backoff, e));
            }
            Err(RpcError::Transport(e) | RpcError::Unreachable(e)) => {
                return Err(self.connect_failed(ep, &mut backoff, e))
            }
            Err(other) => {
                let e = TransportError::Io(Arc::new(std::io::Error::other(format!(
                    "incarnation probe failed: {other}"
                ))));
                return Err(self.connect_failed(ep, &mut backoff, e));
            }
        };
        {
            let mut slot = lock(&ep.conn);
            if slot.generation == generation {
                slot.incarnation = Some(incarnation);
            }
        }
        backoff.next_attempt = None;
        backoff.delay = self.inner.config.reconnect_backoff_min;
        backoff.last_error = None;
        self.inner.stats.connects.fetch_add(1, Ordering::Relaxed);
        crate::metrics::bump(crate::metrics::CLIENT_CONNECTS);
        tracing::debug!(
            remote = %ep.channel.remote(),
            generation,
            incarnation,
            "connected"
        );
        Ok(Link {
            sender,
            generation,
            incarnation,
        })
    }

    /// Counts a failed connection attempt and starts (or doubles) the endpoint's
    /// reconnect backoff; the error for the call.
    fn connect_failed(&self, ep: &Ep<C>, backoff: &mut Backoff, e: TransportError) -> RpcError {
        self.inner
            .stats
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        crate::metrics::bump(crate::metrics::CLIENT_CONNECT_FAILURES);
        let delay = backoff.delay;
        backoff.next_attempt = Some(Instant::now() + crate::id::jitter(delay));
        backoff.delay = (delay * 2).min(self.inner.config.reconnect_backoff_max);
        backoff.last_error = Some(e.clone());
        tracing::debug!(remote = %ep.channel.remote(), error = %e, "connect failed");
        RpcError::Unreachable(e)
    }

    /// Asks the server at the other end of a new connection for its incarnation (a Call
    /// to interface 0, procedure 0; the answer's aux field carries it).
    async fn probe_incarnation(
        &self,
        sender: &FrameSender,
        ep: u64,
        generation: u64,
        deadline: Instant,
    ) -> Result<u64, RpcError> {
        let inner = &*self.inner;
        let live = LiveId::new(inner);
        let call_id = live.id;
        let (tx, rx) = oneshot::channel();
        let registered = lock(&inner.pending).insert(call_id, Pending { tx, ep, generation });
        if !registered {
            return Err(RpcError::Transport(TransportError::Closed));
        }
        let header = FrameHeader::call(
            inner.client_id,
            call_id,
            crate::server::PING_INTERFACE,
            0,
            0,
        );
        let _guard = PendingGuard {
            inner,
            call_id,
            header,
            cancel_via: None,
        };
        sender
            .send(Frame::new(header, Bytes::new()))
            .await
            .map_err(RpcError::Unreachable)?;
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(Ok(answer))) => Ok(answer.header.aux),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(RpcError::Transport(TransportError::Closed)),
            Err(_) => Err(RpcError::Timeout),
        }
    }
}

fn current_link<C>(ep: &Ep<C>) -> Option<Link> {
    let slot = lock(&ep.conn);
    match (&slot.sender, slot.incarnation) {
        (Some(s), Some(incarnation)) if !s.is_closed() => Some(Link {
            sender: s.clone(),
            generation: slot.generation,
            incarnation,
        }),
        _ => None,
    }
}

/// The endpoint's open connection whose incarnation probe has not been answered yet.
fn unprobed_link<C>(ep: &Ep<C>) -> Option<(FrameSender, u64)> {
    let slot = lock(&ep.conn);
    match (&slot.sender, slot.incarnation) {
        (Some(s), None) if !s.is_closed() => Some((s.clone(), slot.generation)),
        _ => None,
    }
}

/// Keeps a balanced client's endpoint set in line with its resolver's.
async fn follow_endpoints<C: Channel>(
    inner: Weak<Inner<C>>,
    mut endpoints: tokio::sync::watch::Receiver<Vec<Endpoint>>,
    connect: impl Fn(&Endpoint) -> Option<C> + Send + Sync + 'static,
) {
    while endpoints.changed().await.is_ok() {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let set = endpoints.borrow_and_update().clone();
        inner.apply_endpoints(&set, &connect);
    }
}

impl<C> Inner<C> {
    /// The current endpoints.
    fn snapshot(&self) -> Vec<Arc<Ep<C>>> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the endpoint set: kept endpoints keep their connection and health, new
    /// ones are created with `connect`, vanished ones get no new calls (calls in flight
    /// on them finish).
    fn apply_endpoints(&self, set: &[Endpoint], connect: &impl Fn(&Endpoint) -> Option<C>) {
        let mut eps = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Arc<Ep<C>>> = Vec::with_capacity(set.len());
        for endpoint in set {
            if let Some(existing) = eps.iter().find(|ep| ep.endpoint.as_ref() == Some(endpoint)) {
                next.push(existing.clone());
            } else if let Some(channel) = connect(endpoint) {
                let id = self.next_ep.fetch_add(1, Ordering::Relaxed);
                next.push(Arc::new(Ep::new(
                    id,
                    Some(endpoint.clone()),
                    channel,
                    &self.config,
                )));
            } else {
                tracing::debug!(%endpoint, "no channel for this endpoint; skipped");
            }
        }
        tracing::debug!(endpoints = next.len(), "endpoint set updated");
        *eps = next;
    }

    fn next_random(&self) -> u64 {
        // xorshift64, advanced atomically so concurrent picks draw different values.
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prev = self
            .rng
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        step(prev)
    }

    /// Chooses the endpoint for an attempt: among usable endpoints (up, or down with
    /// their probe time come), avoiding `avoid` when there is another choice.
    fn pick(&self, avoid: Option<u64>) -> Result<Arc<Ep<C>>, RpcError> {
        let eps = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        if eps.len() == 1 {
            // A single endpoint is always tried (its own reconnect backoff applies).
            return Ok(eps[0].clone());
        }
        let now = Instant::now();
        let usable: Vec<&Arc<Ep<C>>> = eps.iter().filter(|ep| ep.usable(now)).collect();
        let preferred: Vec<&Arc<Ep<C>>> = usable
            .iter()
            .copied()
            .filter(|ep| Some(ep.id) != avoid)
            .collect();
        let choices = if preferred.is_empty() {
            usable
        } else {
            preferred
        };
        if choices.is_empty() {
            return Err(RpcError::Unreachable(TransportError::Io(Arc::new(
                std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    if eps.is_empty() {
                        "the resolver knows no endpoints"
                    } else {
                        "every endpoint is marked down"
                    },
                ),
            ))));
        }
        let chosen = match self.config.balance {
            Balance::RoundRobin => choices[self.rr.fetch_add(1, Ordering::Relaxed) % choices.len()],
            Balance::LeastOutstanding if choices.len() >= 2 => {
                // Power of two choices: the less busy of two *different* random endpoints.
                let n = choices.len() as u64;
                let i = self.next_random() % n;
                let j = (i + 1 + self.next_random() % (n - 1)) % n;
                let (a, b) = (choices[i as usize], choices[j as usize]);
                if b.outstanding.load(Ordering::Relaxed) < a.outstanding.load(Ordering::Relaxed) {
                    b
                } else {
                    a
                }
            }
            Balance::LeastOutstanding => choices[0],
        };
        // A down endpoint whose probe time has come is probed by this call alone: the
        // next probe waits another backoff (an answer marks it up before that).
        {
            let mut h = lock(&chosen.health);
            if h.down_until.is_some_and(|t| t <= now) {
                h.down_until = Some(now + crate::id::jitter(h.probe_backoff));
            }
        }
        Ok(chosen.clone())
    }

    /// Fails every call waiting on connection `generation` of endpoint `ep`.
    fn fail_generation(&self, ep: u64, generation: u64, error: TransportError) {
        let failed: Vec<Pending> = lock(&self.pending).fail(ep, generation);
        for p in failed {
            let _ = p.tx.send(Err(RpcError::Transport(error.clone())));
        }
    }
}

/// Removes a call's pending entry however its attempt ends. If the caller stops
/// waiting while the request is out (`cancel_via` set: the future was dropped or the
/// call's deadline passed), it also sends the server a best-effort Cancel.
struct PendingGuard<'a, C> {
    inner: &'a Inner<C>,
    call_id: u64,
    header: FrameHeader,
    cancel_via: Option<FrameSender>,
}

impl<C> Drop for PendingGuard<'_, C> {
    fn drop(&mut self) {
        lock(&self.inner.pending).calls.remove(&self.call_id);
        if let Some(sender) = self.cancel_via.take() {
            let mut cancel = self.header;
            cancel.kind = FrameKind::Cancel;
            cancel.flags &= flags::SEMANTICS_MASK;
            // Best effort: a full queue or a dead connection just means no cancel.
            if let Ok(true) = sender.try_send(Frame::new(cancel, Bytes::new())) {
                self.inner
                    .stats
                    .cancels_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn decode_status(payload: &Bytes) -> RpcError {
    match crate::xdr::from_bytes::<Status>(payload) {
        Ok(status) => status.into(),
        Err(e) => RpcError::Protocol(format!("undecodable status payload: {e}")),
    }
}

/// The reply reader of one connection: hands each reply to the call waiting for it.
async fn read_replies<C: Send + Sync + 'static, R: FrameReceiver>(
    inner: Weak<Inner<C>>,
    ep: Weak<Ep<C>>,
    mut receiver: R,
    generation: u64,
) {
    let error = loop {
        let frame = match receiver.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break TransportError::Closed,
            Err(e) => break e,
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match frame.header.kind {
            FrameKind::Reply | FrameKind::Status if frame.header.client_id == inner.client_id => {
                let waiting = lock(&inner.pending).calls.remove(&frame.header.call_id);
                match waiting {
                    Some(p) => {
                        let _ = p.tx.send(Ok(frame));
                    }
                    None => {
                        inner
                            .stats
                            .unmatched_replies
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            call_id = frame.header.call_id,
                            "reply for no pending call"
                        );
                    }
                }
            }
            FrameKind::Reply | FrameKind::Status => {
                inner
                    .stats
                    .unmatched_replies
                    .fetch_add(1, Ordering::Relaxed);
            }
            FrameKind::Call | FrameKind::Cancel => {
                tracing::warn!(kind = ?frame.header.kind, "server sent a client-only frame; closing");
                break TransportError::Closed;
            }
        }
    };
    let Some(inner) = inner.upgrade() else {
        return;
    };
    tracing::debug!(generation, %error, "connection lost");
    let Some(ep) = ep.upgrade() else {
        return;
    };
    {
        let mut slot = lock(&ep.conn);
        if slot.generation == generation {
            slot.sender = None;
        }
    }
    // A connection that died (rather than closed cleanly) counts against its endpoint's
    // health even when no call was on it: the transport's keepalives found it dead.
    if !matches!(error, TransportError::Closed) {
        ep.record_failure(&inner.config);
    }
    inner.fail_generation(ep.id, generation, error);
}

/// The pause before another attempt, if one is allowed and could start before the
/// deadline (advancing the doubling backoff); `None`: give up.
fn retry_pause(
    policy: &RetryPolicy,
    attempt: u32,
    backoff: &mut Duration,
    deadline: Instant,
) -> Option<Duration> {
    if attempt >= policy.max_attempts {
        return None;
    }
    let pause = crate::id::jitter(*backoff);
    if Instant::now() + pause >= deadline {
        return None;
    }
    *backoff = (*backoff * 2).min(policy.max_backoff);
    Some(pause)
}

/// Whether a transport error says the peer refused the connection (TCP `ECONNREFUSED`,
/// ICMP port unreachable over UDP, a UDP handshake refused).
fn refused(e: &TransportError) -> bool {
    matches!(e, TransportError::Connect { source, .. }
        if source.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// Whether an error is a connection attempt that timed out.
fn timed_out_connecting(e: &RpcError) -> bool {
    matches!(e, RpcError::Unreachable(TransportError::Connect { source, .. })
        if source.kind() == std::io::ErrorKind::TimedOut)
}

/// The error of a connection attempt (or incarnation probe) cut short by its deadline.
fn connect_timed_out<C: Channel>(channel: &C) -> TransportError {
    TransportError::Connect {
        addr: channel.remote(),
        source: Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connecting (or the incarnation probe) timed out",
        )),
    }
}

/// The `XdrDecode` of a reply with no value (`void` procedures).
pub fn decode_void(_r: &mut XdrReader<'_>) -> Result<(), XdrError> {
    Ok(())
}

/// Decodes a reply with the type's own [`XdrDecode`] impl.
pub fn decode_with<T: XdrDecode>(r: &mut XdrReader<'_>) -> Result<T, XdrError> {
    T::decode(r)
}
