//! The client runtime. Generated `FooClient`s are thin wrappers over [`Client`].
//!
//! One [`Client`] multiplexes any number of concurrent calls over one connection per
//! endpoint. The code is split by mechanism:
//!
//! | module | what it holds |
//! |---|---|
//! | `state` | the semantics: `CallState` and the pure transition function `next` that decides every retry and every error |
//! | `inflight` | call ids and the low-water mark, each connection's table of waiting calls, a call's inbox |
//! | `connection` | the reply reader, and a call's registrations (cancel on drop) |
//! | `endpoint` | one endpoint: connecting with its own reconnect backoff, the incarnation probe, health |
//! | `balance` | following the resolver's endpoint set, and choosing an endpoint per attempt |
//! | `stats` | counters and their snapshots |
//! | `options` | [`ClientConfig`], [`CallOptions`], [`RetryPolicy`] |
//!
//! The call loop here only executes what `state::next` says: choose an endpoint,
//! connect, send, wait, pause, return. A call listens for its reply for the whole of its
//! life: every attempt carries the same call id and registers the call's one inbox on
//! its connection, so a reply to any attempt ends the call, also during a retry pause.
//!
//! A client over one [`Channel`] ([`Client::new`]) has one endpoint. A balanced client
//! ([`Client::balanced`]) follows a resolver's set of endpoints and spreads calls over
//! them ([`Balance`]): round robin, or the least outstanding of two random choices. Each
//! endpoint has a health state: `failures_to_down` consecutive failures (connection
//! refused or lost, timeouts) mark it down; a down endpoint is tried again (probed by the
//! next call) after a backoff that doubles up to a limit, and is up again when it
//! answers.

mod balance;
mod blocking;
mod connection;
mod credentials;
mod endpoint;
mod handle;
mod inflight;
mod layer;
mod options;
mod state;
mod stats;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use tracing::Instrument;

pub use blocking::BlockingRuntime;
pub use credentials::{Credentials, CredentialsProvider};
pub use handle::{BlockingCallHandle, CallHandle};
pub use layer::{error_from_layer, ClientCall, ClientStack, Direct};
pub use options::{Balance, CallOptions, ClientConfig, RetryPolicy};
pub use stats::{ClientStats, EndpointStats};

use crate::error::{RpcError, Status, TransportError};
use crate::frame::{flags, Frame, FrameHeader, FrameKind, Semantics, MAX_CREDENTIALS};
use crate::interface::{CallTarget, InterfaceInfo, ProcedureInfo};
use crate::naming::Endpoint;
use crate::transport::Channel;
use crate::xdr::{XdrDecode, XdrError, XdrReader, XdrWriter};

use connection::Registration;
use endpoint::Ep;
use inflight::{CallIds, Delivery, InFlight, Inbox, LiveId};
use state::{CallState, Context, Outcome, Step};
use stats::Counters;

/// A client of one server, over one [`Channel`]. Cheap to clone (clones share the
/// connections and the calls in flight).
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
    /// Serial numbers of connections (their tables of waiting calls).
    next_conn: AtomicU64,
    /// Round-robin position, and the state of the random choices.
    rr: AtomicUsize,
    rng: AtomicU64,
    /// Whether this is a balanced client (for `remote()` and failing over).
    balanced: bool,
    client_id: u64,
    /// Call ids, and the low-water mark each call carries to the server's reply cache.
    ids: CallIds,
    in_flight: InFlight,
    stats: Counters,
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
        tokio::spawn(balance::follow_endpoints(
            Arc::downgrade(&client.inner),
            endpoints,
            connect,
        ));
        client
    }

    fn from_parts(endpoints: Vec<Arc<Ep<C>>>, config: ClientConfig, balanced: bool) -> Self {
        let client_id = crate::id::random_u64();
        Client {
            inner: Arc::new(Inner {
                next_ep: AtomicU64::new(endpoints.len() as u64),
                next_conn: AtomicU64::new(1),
                endpoints: RwLock::new(endpoints),
                rr: AtomicUsize::new(0),
                rng: AtomicU64::new(client_id | 1),
                balanced,
                client_id,
                ids: CallIds::default(),
                in_flight: InFlight::new(config.max_in_flight),
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
            .map(|ep| ep.stats(now))
            .collect()
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> ClientStats {
        let in_flight = self.inner.in_flight.used();
        self.inner.stats.snapshot(in_flight as u64)
    }

    /// Connects now (to one endpoint) instead of on the first call.
    pub async fn connect(&self) -> Result<(), RpcError> {
        let deadline = Instant::now() + self.inner.config.default_timeout;
        let ep = self.inner.pick(None).map_err(RpcError::Unreachable)?;
        match self
            .inner
            .link(&ep, deadline, deadline, &self.inner.config.retry)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.deadline_passed => Err(RpcError::Timeout),
            Err(e) => Err(RpcError::Unreachable(e.error)),
        }
    }

    /// Closes the current connections (calls in flight on them fail with a transport
    /// error); the next call reconnects.
    pub fn disconnect(&self) {
        for ep in self.inner.snapshot() {
            ep.disconnect();
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
        let stats = &self.inner.stats;
        Counters::bump(&stats.calls);
        let result = self
            .call_inner(interface, procedure, options, semantics, encode, decode)
            .instrument(span)
            .await;
        if let Err(e) = &result {
            Counters::bump(&stats.failures);
            match e {
                RpcError::Timeout => Counters::bump(&stats.timeouts),
                RpcError::OutcomeUnknown(_) => Counters::bump(&stats.outcome_unknown),
                RpcError::ServerRestarted => Counters::bump(&stats.server_restarted),
                _ => {}
            }
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

    /// Whether a failed connection attempt ends the call at once: the endpoint refused
    /// (or is backing off after refusing) and has never answered, so nothing listens
    /// there; waiting would only delay the error (unless the policy says to wait for
    /// the server). A balanced client fails over instead.
    fn fail_fast(&self, ep: &Ep<C>, e: &TransportError, policy: &RetryPolicy) -> bool {
        !self.inner.balanced && !policy.wait_for_server && !ep.ever_connected() && e.is_refused()
    }

    /// The call loop: executes the steps [`state::next`] decides.
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
        let inner = &self.inner;
        let deadline = self.deadline_for(options);
        let policy = options.retry.unwrap_or(inner.config.retry);

        let mut w = XdrWriter::with_capacity(64).sharing(inner.config.share_threshold);
        // Credentials first: the server splits them off before it looks at the call.
        let credentials = options.credentials.clone().or_else(|| {
            let target = CallTarget {
                interface,
                procedure,
            };
            inner.config.credentials.as_ref()?.for_call(target)
        });
        if let Some(credentials) = &credentials {
            w.put_opaque(credentials, MAX_CREDENTIALS)
                .map_err(RpcError::Encode)?;
        }
        encode(&mut w).map_err(RpcError::Encode)?;
        // Large opaques the stub passed with `put_opaque_shared` stay references to the
        // caller's buffers (the shared-descriptor send path): every attempt's frame
        // points at them, and the transport gathers them into its writes.
        let (payload, tail) = w.split_payload();

        // A free slot is taken at once (no timer armed); only a call that finds the
        // limit reached waits, until its deadline.
        let _slot = match inner.in_flight.try_acquire() {
            Some(slot) => slot,
            None => match tokio::time::timeout_at(deadline.into(), inner.in_flight.acquire()).await
            {
                Ok(slot) => slot,
                Err(_) => return Err(RpcError::Timeout),
            },
        };
        // One call id for every attempt: it is what the server deduplicates by.
        let live = LiveId::new(&inner.ids);
        let call_id = live.id;
        tracing::Span::current().record("call_id", call_id);

        let mut header = FrameHeader::call(
            inner.client_id,
            call_id,
            interface.id,
            interface.version,
            procedure.number,
        );
        header.set_semantics(semantics);
        if procedure.oneway {
            header.flags |= flags::ONEWAY;
        }
        if credentials.is_some() {
            header.flags |= flags::CREDENTIALS;
        }
        let inbox = Arc::new(Inbox::default());
        let mut registration =
            Registration::new(call_id, header).counting_cancels(&inner.stats.cancels_sent);
        let mut state = CallState::new(&policy);
        let decide = |state: &mut CallState, outcome: Outcome| {
            let cx = Context {
                semantics,
                policy: &policy,
                deadline,
                jitter: inner.jitter_sample(),
            };
            let (next, step) = state::next(*state, outcome, &cx);
            *state = next;
            step
        };
        // The endpoint of the request that is out (an in-doubt exactly-once call stays
        // with it).
        let mut sent_to: Option<Arc<Ep<C>>> = None;
        let mut avoid: Option<u64> = None;
        let mut answer: Option<Frame> = None;

        let result = 'call: loop {
            let mut outcome = 'attempt: {
                let ep = match (state.pinned(semantics), &sent_to) {
                    (Some(_), Some(ep)) => ep.clone(),
                    _ => match inner.pick(avoid) {
                        Ok(ep) => ep,
                        Err(e) => break 'attempt Outcome::NoEndpoint(e),
                    },
                };
                // Connecting (and the incarnation probe) is bounded like an attempt, so
                // a lost probe on a lossy path is retried instead of stalling the call.
                let attempt_deadline = match policy.attempt_timeout {
                    Some(t) => deadline.min(Instant::now() + t),
                    None => deadline,
                };
                let link = match inner.link(&ep, attempt_deadline, deadline, &policy).await {
                    Ok(link) => link,
                    Err(e) if e.deadline_passed => break 'attempt Outcome::DeadlinePassed,
                    Err(e) => {
                        ep.record_failure(&inner.config);
                        break 'attempt Outcome::ConnectFailed {
                            endpoint: ep.id,
                            fail_fast: self.fail_fast(&ep, &e.error, &policy),
                            error: e.error,
                        };
                    }
                };
                match decide(
                    &mut state,
                    Outcome::Connected {
                        incarnation: link.incarnation,
                    },
                ) {
                    Step::Send => {}
                    Step::Return(r) => break 'call r,
                    step => unreachable!("connected, then {step:?}"),
                }

                let _outstanding = ep.start_attempt();
                let mut attempt_header = header;
                attempt_header.aux = inner.ids.low_water();
                if state.attempt > 1 {
                    attempt_header.flags |= flags::RETRY;
                }
                attempt_header.deadline_us = FrameHeader::budget_from(Some(
                    deadline.saturating_duration_since(Instant::now()),
                ));
                let frame = Frame {
                    header: attempt_header,
                    payload: payload.clone(),
                    tail: tail.clone(),
                };
                if procedure.oneway {
                    // No reply will come: the call is done once the transport has it.
                    match link.sender.send(frame).await {
                        Ok(()) => break 'call Ok(()),
                        Err(error) => {
                            break 'attempt Outcome::SendFailed {
                                endpoint: ep.id,
                                error,
                            }
                        }
                    }
                }
                // Registered before the send, so the answer cannot outrun it.
                if let Err(error) = registration.register(&link.calls, &inbox) {
                    break 'attempt Outcome::SendFailed {
                        endpoint: ep.id,
                        error,
                    };
                }
                if let Err(error) = link.sender.send(frame).await {
                    break 'attempt Outcome::SendFailed {
                        endpoint: ep.id,
                        error,
                    };
                }
                registration.set_header(attempt_header);
                registration.cancel_via = Some(link.sender.clone());
                sent_to = Some(ep.clone());
                let step = decide(
                    &mut state,
                    Outcome::Sent {
                        endpoint: ep.id,
                        incarnation: link.incarnation,
                    },
                );
                debug_assert!(matches!(step, Step::Wait));
                tracing::trace!(attempt = state.attempt, "call sent");

                match tokio::time::timeout_at(attempt_deadline.into(), inbox.wait()).await {
                    Ok(Delivery::Answer(frame, serial)) => {
                        registration.cancel_via = None;
                        registration.answered_on(serial);
                        ep.record_success(&inner.config);
                        answer_outcome(frame, &mut answer)
                    }
                    Ok(Delivery::Lost(e)) => {
                        registration.cancel_via = None;
                        ep.record_failure(&inner.config);
                        Outcome::Lost(e)
                    }
                    Err(_) => {
                        ep.record_failure(&inner.config);
                        if Instant::now() >= deadline {
                            // The caller stops waiting: the server may skip the call.
                            Outcome::DeadlinePassed
                        } else {
                            Outcome::AttemptTimedOut
                        }
                    }
                }
            };
            // Decide; during a retry pause a request that is out keeps listening, and an
            // answer arriving then is decided on in turn.
            loop {
                match decide(&mut state, outcome) {
                    Step::Return(r) => break 'call r,
                    Step::Retry { after, avoid: a } => {
                        avoid = a;
                        // The same call goes out again: the server must not skip it.
                        registration.cancel_via = None;
                        if state.in_doubt() {
                            match tokio::time::timeout(after, inbox.wait()).await {
                                Ok(Delivery::Answer(frame, serial)) => {
                                    registration.answered_on(serial);
                                    outcome = answer_outcome(frame, &mut answer);
                                    continue;
                                }
                                // Its connection failed during the pause: the next
                                // attempt is about to go out anyway.
                                Ok(Delivery::Lost(_)) | Err(_) => {}
                            }
                        } else {
                            tokio::time::sleep(after).await;
                        }
                        Counters::bump(&inner.stats.retries);
                        crate::metrics::bump(crate::metrics::CLIENT_RETRIES);
                        continue 'call;
                    }
                    step => unreachable!("{step:?} after an attempt ended"),
                }
            }
        };
        drop(registration);
        result?;
        let decode_from = answer.map(|frame| frame.payload).unwrap_or_default();
        let mut r = XdrReader::new(&decode_from);
        let value = decode(&mut r).map_err(RpcError::Decode)?;
        r.finish().map_err(RpcError::Decode)?;
        Ok(value)
    }
}

/// The outcome an answer frame makes (a reply is kept for decoding).
fn answer_outcome(frame: Frame, answer: &mut Option<Frame>) -> Outcome {
    match frame.header.kind {
        FrameKind::Reply => {
            *answer = Some(frame);
            Outcome::Replied
        }
        FrameKind::Status => Outcome::Status(decode_status(&frame.payload)),
        // The reader only delivers Reply and Status frames.
        FrameKind::Call | FrameKind::Cancel => Outcome::Status(RpcError::Protocol(
            "server answered with a call frame".into(),
        )),
    }
}

fn decode_status(payload: &Bytes) -> RpcError {
    match crate::xdr::from_bytes::<Status>(payload) {
        Ok(status) => status.into(),
        Err(e) => RpcError::Protocol(format!("undecodable status payload: {e}")),
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
