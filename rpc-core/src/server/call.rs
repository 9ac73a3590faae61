//! Running a call: a pooled call's task (wait for a worker, check deadline and
//! cancellation, run the handler, hand the reply over), an inline call on the
//! connection loop, and what finishing or refusing a call means for the reply cache.
//!
//! A pooled call holds an admission slot and then a worker only while it waits and its
//! handler runs; handing its reply to a connection that does not read happens after,
//! holding only that connection's call slot.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tracing::Instrument;

use super::admission::{Finish, WorkerGuard};
use super::connection::{deliver, Delivery};
use super::connections::{CallSlot, ConnState};
use super::interfaces::Hosted;
use super::layer::{self, intercept, ServerCall};
use super::scope::ClientScope;
use super::state::Shared;
use super::stats::bump;
use super::{status_frame, CallContext, CallControl};
use crate::error::Status;
use crate::frame::{Frame, FrameHeader, FrameKind};
use crate::interface::CallTarget;
use crate::metrics::server_outcome;
use crate::transport::{FrameSender, TrySendError};
use crate::xdr::XdrWriter;

/// An inline reply is encoded into the connection's buffer; when less than this is
/// left, the buffer is reserved again (reclaimed in place once earlier replies are gone).
const INLINE_REPLY_RESERVE: usize = 256;
/// What the connection's reply buffer grows by.
const INLINE_REPLY_BUFFER: usize = 8 << 10;

/// A call admitted to the worker pool: the work, and where its reply goes.
pub(super) struct Job {
    pub(super) work: Work,
    pub(super) sender: FrameSender,
    /// Counts the call against its connection until the reply is handed over.
    pub(super) slot: CallSlot,
}

/// What the handler part of a call needs (dropped before the reply is handed over).
pub(super) struct Work {
    pub(super) hosted: Arc<Hosted>,
    /// The procedure's index in `hosted` (`Hosted::find`).
    pub(super) procedure: u32,
    /// Whether the reply cache tracks this call.
    pub(super) cached: bool,
    pub(super) control: Arc<CallControl>,
    pub(super) header: FrameHeader,
    /// The arguments (the credentials block, if any, already split off).
    pub(super) payload: Bytes,
    /// The credentials the call carried.
    pub(super) credentials: Option<Bytes>,
    pub(super) conn: Arc<ConnState>,
    pub(super) received: Instant,
    /// The call's `rpc.serve` span (disabled when nothing listens).
    pub(super) span: tracing::Span,
}

impl Shared {
    /// Spawns an admitted call's task.
    pub(super) fn spawn_call(self: &Arc<Self>, job: Job) {
        if self.admission.push(job) {
            let shared = self.clone();
            // Its own root span: a worker outlives the call that started it.
            let span = tracing::debug_span!(parent: None, "rpc.worker");
            tokio::spawn(async move { shared.work().await }.instrument(span));
        }
    }

    /// A worker task of the pool: runs queued calls one at a time until the server
    /// closes, then drops the calls still queued.
    async fn work(self: &Arc<Self>) {
        let _worker = WorkerGuard(&self.admission);
        let mut phase = self.phase.subscribe();
        loop {
            let job = tokio::select! {
                biased;
                job = self.admission.next_job() => job,
                _ = phase.wait_for(|p| p.is_closing()) => break,
            };
            if !self.run_job(job, &mut phase).await {
                break;
            }
        }
        self.admission.abandon_queued();
    }

    /// Runs one queued call and hands its reply over; `false` if the server began
    /// closing meanwhile (the handler is abandoned, past the shutdown's grace period).
    async fn run_job(
        self: &Arc<Self>,
        job: Job,
        phase: &mut tokio::sync::watch::Receiver<super::state::Phase>,
    ) -> bool {
        let Job { work, sender, slot } = job;
        let span = work.span.clone();
        let reply = {
            // Released however the handler part ends, so shutdown never waits for a
            // lost call.
            let _admitted = Finish(&self.admission);
            tokio::select! {
                biased;
                reply = self.run(work).instrument(span.clone()) => reply,
                _ = phase.wait_for(|p| p.is_closing()) => return false,
            }
        };
        let Some(reply) = reply else {
            return true;
        };
        match sender.try_send_frame(reply) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => bump(&self.counters.replies_dropped),
            Err(TrySendError::Full(reply)) => {
                // A connection that does not read waits for room with its reply, in a
                // task of its own: the worker goes on to the next call.
                let shared = self.clone();
                tokio::spawn(
                    async move {
                        if deliver(slot.conn(), &sender, reply, None).await != Delivery::Sent {
                            bump(&shared.counters.replies_dropped);
                        }
                        drop(slot);
                    }
                    .instrument(span),
                );
            }
        }
        true
    }

    /// Runs one call holding a worker; returns the reply to hand over (`None` for a
    /// oneway call).
    async fn run(&self, job: Work) -> Option<Frame> {
        let header = job.header;
        let peer = job.conn.peer;
        let scope = &job.conn.scope;
        // However this call ends, it can no longer be cancelled.
        let _control = ForgetControl(&job.conn, header, &job.control);
        let span = &job.span;
        let procedure = job.hosted.procedure(job.procedure);
        if let Some(budget) = header.deadline_budget() {
            if job.received + budget <= Instant::now() {
                bump(&self.counters.deadline_expired);
                procedure
                    .metrics
                    .count(server_outcome::<()>(&Err(Status::DeadlineExceeded)));
                return self.refusal(scope, &header, job.cached, span, Status::DeadlineExceeded);
            }
        }
        if job.control.is_cancelled() {
            bump(&self.counters.cancelled_skipped);
            procedure
                .metrics
                .count(server_outcome::<()>(&Err(Status::Cancelled)));
            return self.refusal(scope, &header, job.cached, span, Status::Cancelled);
        }
        // Timed only when someone listens: no clock reads otherwise.
        let started = (!span.is_disabled()).then(Instant::now);
        let ctx = CallContext::with_control(peer, header, job.received, job.control.clone())
            .with_credentials(job.credentials)
            .with_principal(scope.principal().cloned());
        let target = CallTarget {
            interface: job.hosted.info,
            procedure: procedure.info,
        };
        let service = &job.hosted.service;
        let payload = job.payload;
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            if let Err(status) = intercept(&self.interceptors, &ctx, target) {
                return Box::pin(std::future::ready(Err(status))) as crate::server::ServiceFuture;
            }
            match &self.stack {
                None => service.call(header.procedure, ctx, payload),
                Some(stack) => layer::call(
                    stack,
                    ServerCall::new(ctx, target, payload, service.clone()),
                ),
            }
        })) {
            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        let result = result.unwrap_or_else(|panic| Err(self.panicked(&panic)));
        if let Some(started) = started {
            span.record("handler_us", started.elapsed().as_micros() as u64);
        }
        bump(&self.counters.calls_completed);
        procedure
            .metrics
            .record(server_outcome(&result), job.received.elapsed());
        let result = result.map(|bytes| (bytes, Vec::new()));
        self.complete(scope, header, result, job.cached, span)
    }

    /// Runs an `[inline]` procedure on the connection loop: no task, no boxed future,
    /// and the reply is encoded into the connection's reusable buffer (`reply_buf`), so
    /// a small call allocates nothing here once the buffer is warm. Returns the reply
    /// to send (`None` for a oneway call).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_inline(
        &self,
        hosted: &Hosted,
        procedure: u32,
        header: FrameHeader,
        args: &Bytes,
        credentials: Option<Bytes>,
        cached: bool,
        conn: &ConnState,
        received: Instant,
        reply_buf: &mut BytesMut,
        span: &tracing::Span,
    ) -> Option<Frame> {
        bump(&self.counters.calls_inline);
        let _entered = span.enter();
        let started = (!span.is_disabled()).then(Instant::now);
        // The principal is a reference-counted handle (or a key): no allocation.
        let ctx = CallContext::inline(conn.peer, header, received)
            .with_credentials(credentials)
            .with_principal(conn.scope.principal().cloned());
        if reply_buf.capacity() - reply_buf.len() < INLINE_REPLY_RESERVE {
            // Reclaims the buffer in place once the replies cut from it are gone.
            reply_buf.reserve(INLINE_REPLY_BUFFER);
        }
        let mut w = XdrWriter::from_buf(std::mem::take(reply_buf)).sharing(self.share_threshold);
        let service = &hosted.service;
        let procedure = hosted.procedure(procedure);
        let target = CallTarget {
            interface: hosted.info,
            procedure: procedure.info,
        };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            intercept(&self.interceptors, &ctx, target)?;
            service.call_inline(header.procedure, &ctx, args, &mut w)
        }));
        // A large opaque in the result (an argument echoed, a slice of a cached buffer)
        // stays a reference: the reply is gathered from it, not copied.
        let result = match result {
            Ok(r) => r.map(|()| w.split_payload()),
            Err(panic) => Err(self.panicked(&panic)),
        };
        let mut buf = w.into_inner();
        buf.clear();
        *reply_buf = buf;
        if let Some(started) = started {
            span.record("handler_us", started.elapsed().as_micros() as u64);
        }
        bump(&self.counters.calls_completed);
        procedure
            .metrics
            .record(server_outcome(&result), received.elapsed());
        self.complete(&conn.scope, header, result, cached, span)
    }

    /// Counts and logs a handler's panic; the status the caller gets.
    fn panicked(&self, panic: &Box<dyn std::any::Any + Send>) -> Status {
        bump(&self.counters.handler_panics);
        let message = panic_message(panic);
        tracing::error!(%message, "handler panicked");
        Status::Internal {
            message: format!("handler panicked: {message}"),
        }
    }

    /// The outcome of a call that ran: recorded in the reply cache (if it tracks the
    /// call) and sent to the duplicates that joined it; returns the caller's reply
    /// (`None` for a oneway call).
    fn complete(
        &self,
        scope: &ClientScope,
        header: FrameHeader,
        result: Result<(Bytes, Vec<Bytes>), Status>,
        cached: bool,
        span: &tracing::Span,
    ) -> Option<Frame> {
        span.record(
            "outcome",
            match &result {
                Ok(_) => "ok",
                Err(status) => status.name(),
            },
        );
        let frame = match result {
            Ok((payload, tail)) => Frame {
                header: FrameHeader::answer(&header, FrameKind::Reply, self.incarnation),
                payload,
                tail,
            },
            Err(status) => {
                if matches!(status, Status::BadArguments { .. }) {
                    bump(&self.counters.bad_arguments);
                }
                status_frame(&header, &status, self.incarnation)
            }
        };
        let joined = match self.cache.as_ref().filter(|_| cached) {
            Some(cache) => cache.finish(scope, header.client_id, header.call_id, &frame),
            None => Vec::new(),
        };
        if header.is_oneway() {
            return None;
        }
        for (dup, to) in joined {
            let mut again = frame.clone();
            again.header.call_id = dup.call_id;
            self.answer_joined(&to, again);
        }
        Some(frame)
    }

    /// A call that will not run after all: forgets it in the reply cache (so a retry
    /// may run it), answers the duplicates that joined it, and returns the caller's
    /// answer (`None` for a oneway call).
    pub(super) fn refusal(
        &self,
        scope: &ClientScope,
        header: &FrameHeader,
        cached: bool,
        span: &tracing::Span,
        status: Status,
    ) -> Option<Frame> {
        super::dispatch::refused(span, &status);
        let joined = match self.cache.as_ref().filter(|_| cached) {
            Some(cache) => cache.abandon(scope, header.client_id, header.call_id),
            None => Vec::new(),
        };
        for (dup, to) in joined {
            self.answer_joined(&to, status_frame(&dup, &status, self.incarnation));
        }
        (!header.is_oneway()).then(|| status_frame(header, &status, self.incarnation))
    }

    /// Answers a duplicate that joined a call, possibly on another connection: only if
    /// that connection has room now (a duplicate's sender retries and gets the cached
    /// reply), so one slow connection never holds up another's call.
    fn answer_joined(&self, to: &FrameSender, frame: Frame) {
        if !matches!(to.try_send(frame), Ok(true)) {
            bump(&self.counters.replies_dropped);
        }
    }
}

/// Removes a call's cancellation handle from its connection when the call ends — only
/// its own: an at-least-once duplicate running at the same time may have replaced it.
struct ForgetControl<'a>(&'a ConnState, FrameHeader, &'a Arc<CallControl>);

impl Drop for ForgetControl<'_> {
    fn drop(&mut self) {
        self.0
            .remove_control(self.1.client_id, self.1.call_id, self.2);
    }
}

/// Expires idle clients from the reply cache every few seconds while the server lives.
pub(super) async fn housekeeping(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.phase().is_closing() {
            return;
        }
        if let Some(cache) = &shared.cache {
            cache.expire(Instant::now());
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
