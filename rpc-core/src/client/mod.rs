//! The client runtime: call-id allocation, the pending-call table, deadlines, and
//! (re)connection with backoff. Generated `FooClient`s are thin wrappers over [`Client`].
//!
//! One [`Client`] multiplexes any number of concurrent calls over one connection of its
//! [`Channel`]; each call waits on its own slot in the pending table, which the reply
//! reader task fills when the reply (or status) with the call's id arrives. When the
//! connection drops, every call in flight on it fails at once with
//! [`RpcError::Transport`], and the next call reconnects (with exponential backoff after
//! failed attempts).

mod blocking;
mod options;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, Semaphore};
use tracing::Instrument;

pub use blocking::BlockingRuntime;
pub use options::{CallOptions, ClientConfig};

use crate::error::{RpcError, Status, TransportError};
use crate::frame::{flags, Frame, FrameHeader, FrameKind, Semantics};
use crate::interface::{InterfaceInfo, ProcedureInfo};
use crate::transport::{Channel, FrameReceiver, FrameSender};
use crate::xdr::{XdrDecode, XdrError, XdrReader, XdrWriter};

/// A client of one server, over one [`Channel`]. Cheap to clone (clones share the
/// connection and the pending-call table).
pub struct Client<C: Channel> {
    inner: Arc<Inner<C>>,
}

impl<C: Channel> Clone for Client<C> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Channel> std::fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("remote", &self.inner.channel.remote())
            .field("client_id", &self.inner.client_id)
            .finish()
    }
}

struct Inner<C> {
    channel: C,
    config: ClientConfig,
    client_id: u64,
    next_call_id: AtomicU64,
    conn: Mutex<ConnSlot>,
    /// Serialises connection attempts and holds the backoff state.
    connecting: tokio::sync::Mutex<Backoff>,
    pending: Mutex<HashMap<u64, Pending>>,
    in_flight: Semaphore,
    stats: Counters,
}

#[derive(Default)]
struct ConnSlot {
    sender: Option<FrameSender>,
    generation: u64,
}

struct Backoff {
    next_attempt: Option<Instant>,
    delay: Duration,
    last_error: Option<TransportError>,
}

struct Pending {
    tx: oneshot::Sender<Result<Frame, RpcError>>,
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
        let in_flight = Semaphore::new(config.max_in_flight.min(Semaphore::MAX_PERMITS));
        Client {
            inner: Arc::new(Inner {
                channel,
                client_id: crate::id::random_u64(),
                next_call_id: AtomicU64::new(1),
                conn: Mutex::new(ConnSlot::default()),
                connecting: tokio::sync::Mutex::new(Backoff {
                    next_attempt: None,
                    delay: config.reconnect_backoff_min,
                    last_error: None,
                }),
                pending: Mutex::new(HashMap::new()),
                in_flight,
                stats: Counters::default(),
                config,
            }),
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

    /// The server this client talks to.
    pub fn remote(&self) -> String {
        self.inner.channel.remote()
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
            in_flight: lock(&self.inner.pending).len() as u64,
        }
    }

    /// Connects now instead of on the first call.
    pub async fn connect(&self) -> Result<(), RpcError> {
        let deadline = Instant::now() + self.inner.config.default_timeout;
        self.sender(deadline).await.map(|_| ())
    }

    /// Closes the current connection (calls in flight on it fail with a transport error);
    /// the next call reconnects.
    pub fn disconnect(&self) {
        let generation = {
            let mut slot = lock(&self.inner.conn);
            slot.sender = None;
            slot.generation
        };
        self.inner
            .fail_generation(generation, TransportError::Closed);
    }

    /// Makes one call: encodes the arguments with `encode`, waits for the answer, and
    /// decodes a reply with `decode` (which must consume the whole payload).
    ///
    /// Generated stubs call this; it is public so hand-written stubs can too.
    pub async fn call<T>(
        &self,
        interface: &'static InterfaceInfo,
        procedure: &'static ProcedureInfo,
        options: &CallOptions,
        encode: impl FnOnce(&mut XdrWriter) -> Result<(), XdrError>,
        decode: impl FnOnce(&mut XdrReader<'_>) -> Result<T, XdrError>,
    ) -> Result<T, RpcError> {
        let semantics = self.semantics_for(procedure, options);
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

    fn semantics_for(&self, procedure: &ProcedureInfo, options: &CallOptions) -> Semantics {
        if procedure.oneway {
            return Semantics::AtMostOnce;
        }
        options.semantics.unwrap_or(if procedure.idempotent {
            Semantics::AtLeastOnce
        } else {
            self.inner.config.default_semantics
        })
    }

    fn deadline_for(&self, options: &CallOptions) -> Instant {
        options.deadline.unwrap_or_else(|| {
            Instant::now() + options.timeout.unwrap_or(self.inner.config.default_timeout)
        })
    }

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

        let mut w = XdrWriter::with_capacity(64);
        encode(&mut w).map_err(RpcError::Encode)?;
        let payload = w.into_bytes();

        let _permit =
            match tokio::time::timeout_at(deadline.into(), inner.in_flight.acquire()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(RpcError::Transport(TransportError::Closed)),
                Err(_) => {
                    inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(RpcError::Timeout);
                }
            };
        let (sender, generation) = self.sender(deadline).await?;

        let call_id = inner.next_call_id.fetch_add(1, Ordering::Relaxed);
        tracing::Span::current().record("call_id", call_id);
        let mut header = FrameHeader::call(
            inner.client_id,
            call_id,
            interface.id,
            interface.version,
            procedure.number,
        );
        header.set_semantics(semantics);
        header.deadline_us =
            FrameHeader::budget_from(Some(deadline.saturating_duration_since(Instant::now())));
        if procedure.oneway {
            header.flags |= flags::ONEWAY;
        }
        let frame = Frame::new(header, payload);

        if procedure.oneway {
            // No reply will come: the call is done once the transport has the frame.
            return sender
                .send(frame)
                .await
                .map_err(RpcError::Unreachable)
                .and_then(|()| {
                    decode(&mut XdrReader::new(&Bytes::new())).map_err(RpcError::Decode)
                });
        }

        let (tx, rx) = oneshot::channel();
        lock(&inner.pending).insert(call_id, Pending { tx, generation });
        // Removes the pending entry however this future ends (reply, timeout, drop).
        let _guard = PendingGuard { inner, call_id };
        if let Err(e) = sender.send(frame).await {
            // The frame never reached the transport: the call was not sent.
            return Err(RpcError::Unreachable(e));
        }
        tracing::trace!("call sent");

        let reply = match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(Ok(frame))) => frame,
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(RpcError::Transport(TransportError::Closed)),
            Err(_) => {
                inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(RpcError::Timeout);
            }
        };
        match reply.header.kind {
            FrameKind::Reply => {
                let mut r = XdrReader::new(&reply.payload);
                let value = decode(&mut r).map_err(RpcError::Decode)?;
                r.finish().map_err(RpcError::Decode)?;
                Ok(value)
            }
            FrameKind::Status => Err(decode_status(&reply.payload)),
            // The reader only delivers Reply and Status frames.
            FrameKind::Call | FrameKind::Cancel => Err(RpcError::Protocol(
                "server answered with a call frame".into(),
            )),
        }
    }

    /// The current connection's sender, connecting (with backoff) if there is none.
    async fn sender(&self, deadline: Instant) -> Result<(FrameSender, u64), RpcError> {
        if let Some(found) = self.inner.current_sender() {
            return Ok(found);
        }
        let mut backoff =
            match tokio::time::timeout_at(deadline.into(), self.inner.connecting.lock()).await {
                Ok(guard) => guard,
                Err(_) => return Err(RpcError::Timeout),
            };
        // Someone else may have connected while we waited for the lock.
        if let Some(found) = self.inner.current_sender() {
            return Ok(found);
        }
        if let Some(at) = backoff.next_attempt {
            if at > deadline {
                let err = backoff.last_error.clone().unwrap_or(TransportError::Closed);
                return Err(RpcError::Unreachable(err));
            }
            tokio::time::sleep_until(at.into()).await;
        }
        let attempt = tokio::time::timeout_at(deadline.into(), self.inner.channel.connect()).await;
        match attempt {
            Ok(Ok(conn)) => {
                backoff.next_attempt = None;
                backoff.delay = self.inner.config.reconnect_backoff_min;
                backoff.last_error = None;
                self.inner.stats.connects.fetch_add(1, Ordering::Relaxed);
                let generation = {
                    let mut slot = lock(&self.inner.conn);
                    slot.generation += 1;
                    slot.sender = Some(conn.sender.clone());
                    slot.generation
                };
                tracing::debug!(remote = %self.inner.channel.remote(), generation, "connected");
                tokio::spawn(read_replies(
                    Arc::downgrade(&self.inner),
                    conn.receiver,
                    generation,
                ));
                Ok((conn.sender, generation))
            }
            Ok(Err(e)) => {
                self.inner
                    .stats
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                let delay = backoff.delay;
                backoff.next_attempt = Some(Instant::now() + crate::id::jitter(delay));
                backoff.delay = (delay * 2).min(self.inner.config.reconnect_backoff_max);
                backoff.last_error = Some(e.clone());
                tracing::debug!(remote = %self.inner.channel.remote(), error = %e, "connect failed");
                Err(RpcError::Unreachable(e))
            }
            Err(_) => Err(RpcError::Timeout),
        }
    }
}

impl<C> Inner<C> {
    fn current_sender(&self) -> Option<(FrameSender, u64)> {
        let slot = lock(&self.conn);
        match &slot.sender {
            Some(s) if !s.is_closed() => Some((s.clone(), slot.generation)),
            _ => None,
        }
    }

    /// Fails every call waiting on connection `generation`.
    fn fail_generation(&self, generation: u64, error: TransportError) {
        let failed: Vec<Pending> = {
            let mut pending = lock(&self.pending);
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| p.generation == generation)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for p in failed {
            let _ = p.tx.send(Err(RpcError::Transport(error.clone())));
        }
    }
}

struct PendingGuard<'a, C> {
    inner: &'a Inner<C>,
    call_id: u64,
}

impl<C> Drop for PendingGuard<'_, C> {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.call_id);
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
                let waiting = lock(&inner.pending).remove(&frame.header.call_id);
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
    {
        let mut slot = lock(&inner.conn);
        if slot.generation == generation {
            slot.sender = None;
        }
    }
    inner.fail_generation(generation, error);
}

/// The `XdrDecode` of a reply with no value (`void` procedures).
pub fn decode_void(_r: &mut XdrReader<'_>) -> Result<(), XdrError> {
    Ok(())
}

/// Decodes a reply with the type's own [`XdrDecode`] impl.
pub fn decode_with<T: XdrDecode>(r: &mut XdrReader<'_>) -> Result<T, XdrError> {
    T::decode(r)
}
