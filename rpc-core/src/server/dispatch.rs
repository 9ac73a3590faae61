//! The dispatch step: what the connection loop does with each frame it reads. It never
//! runs pooled user code: it validates the frame kind, answers the incarnation probe,
//! finds the interface and procedure, asks the authorizers, checks the deadline and the
//! reply cache, then
//! runs an `[inline]` procedure in place or admits the call to the worker pool — or
//! answers a [`Status`] at once.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::admission::Finish;
use super::authorize::AuthRequest;
use super::call::{Job, Work};
use super::connection::{deliver, Delivery, End};
use super::connections::ConnState;
use super::interfaces::Placement;
use super::reply_cache::{self, Lookup};
use super::state::Shared;
use super::stats::bump;
use super::{status_frame, CallControl, PING_INTERFACE};
use crate::error::Status;
use crate::frame::{flags, split_credentials, Frame, FrameHeader, FrameKind, Semantics};
use crate::interface::CallTarget;
use crate::metrics::server_outcome;

impl Shared {
    /// Handles one frame from `conn`. `Err` ends the connection.
    pub(super) async fn dispatch(
        self: &Arc<Self>,
        frame: Frame,
        sender: &crate::transport::FrameSender,
        conn: &Arc<ConnState>,
        received: Instant,
        reply_buf: &mut BytesMut,
    ) -> Result<(), End> {
        let header = frame.header;
        match header.kind {
            FrameKind::Call => {}
            FrameKind::Cancel => {
                bump(&self.counters.cancels_received);
                // Only calls from the same scope (principal, else address): a peer who
                // learns a client id cannot cancel its calls. Unknown ones are ignored,
                // as the protocol says.
                let control = conn.control(header.client_id, header.call_id).or_else(|| {
                    self.connections
                        .find_control(conn, header.client_id, header.call_id)
                });
                if let Some(control) = control {
                    control.cancel();
                }
                return Ok(());
            }
            FrameKind::Reply | FrameKind::Status => {
                tracing::debug!(peer = %conn.peer, kind = ?header.kind, "client sent a server-only frame; closing");
                bump(&self.counters.bad_frames);
                return Err(End::Failed);
            }
        }
        if header.interface_id == PING_INTERFACE && header.procedure == 0 {
            let pong = Frame::new(
                FrameHeader::answer(&header, FrameKind::Reply, self.incarnation),
                Bytes::new(),
            );
            return self.send_now(conn, sender, pong).await;
        }
        // One span per call, from here to its answer (events below are refusals and
        // duplicates; the outcome and the handler's time are recorded on it).
        let span = call_span(&header, conn.peer);
        bump(&self.counters.calls_received);
        if !self.is_running() {
            bump(&self.counters.refused_shutting_down);
            return self
                .answer(conn, sender, &header, &span, Status::ShuttingDown)
                .await;
        }
        let hosted = match self
            .interfaces
            .lookup(header.interface_id, header.interface_version)
        {
            Ok(h) => h,
            Err(status) => {
                match status {
                    Status::VersionMismatch { .. } => bump(&self.counters.version_mismatch),
                    _ => bump(&self.counters.unknown_interface),
                }
                return self.answer(conn, sender, &header, &span, status).await;
            }
        };
        span.record("interface", hosted.info.name);
        let Some(index) = hosted.find(header.procedure) else {
            bump(&self.counters.unknown_procedure);
            let status = Status::UnknownProcedure {
                procedure: header.procedure,
            };
            return self.answer(conn, sender, &header, &span, status).await;
        };
        let procedure = hosted.procedure(index);
        // Refusals from here on are counted under the procedure's outcomes.
        let counted = |status: Status| {
            procedure
                .metrics
                .count(server_outcome::<()>(&Err(status.clone())));
            status
        };
        // The credentials block comes off first: everything below sees the arguments.
        let (credentials, args) = if header.flags & flags::CREDENTIALS != 0 {
            match split_credentials(&frame.payload) {
                Ok((credentials, args)) => (Some(credentials), args),
                Err(e) => {
                    bump(&self.counters.bad_credentials);
                    let status = counted(Status::BadArguments {
                        message: format!("malformed credentials block: {e}"),
                    });
                    return self.answer(conn, sender, &header, &span, status).await;
                }
            }
        } else {
            (None, frame.payload)
        };
        // Authorization before anything else looks at the call: a refused call never
        // reads or fills the reply cache, takes no worker and decodes nothing.
        if !self.authorizers.is_empty() {
            let target = CallTarget {
                interface: hosted.info,
                procedure: procedure.info,
            };
            let request = AuthRequest::new(conn.peer, &header, target, credentials.as_ref())
                .with_principal(conn.scope.principal());
            if let Err(status) = self.authorizers.check(&request) {
                bump(&self.counters.unauthorized);
                let status = counted(status);
                return self.answer(conn, sender, &header, &span, status).await;
            }
        }
        if header.deadline_us == 0 {
            bump(&self.counters.deadline_expired);
            let status = counted(Status::DeadlineExceeded);
            return self.answer(conn, sender, &header, &span, status).await;
        }
        let cached = self.cache.is_some() && header.semantics() != Semantics::AtLeastOnce;
        if let Some(cache) = self.cache.as_ref().filter(|_| cached) {
            let fingerprint = reply_cache::fingerprint(&header, &args);
            let lookup = cache.begin(
                &conn.scope,
                &header,
                fingerprint,
                header.aux,
                sender,
                received,
            );
            match lookup {
                Lookup::Run => {}
                // A duplicate of a running call: it gets that execution's reply.
                Lookup::Joined => {
                    tracing::debug!(parent: &span, "duplicate joined the running call");
                    span.record("outcome", "joined");
                    return Ok(());
                }
                // Too many duplicates already wait for it: this one is dropped.
                Lookup::Dropped => {
                    tracing::debug!(parent: &span, "duplicate dropped: too many waiting");
                    span.record("outcome", "dropped");
                    return Ok(());
                }
                Lookup::Cached(reply) => {
                    tracing::debug!(parent: &span, "duplicate answered from the reply cache");
                    span.record("outcome", "cached");
                    if header.is_oneway() {
                        return Ok(());
                    }
                    return self.send_now(conn, sender, reply).await;
                }
                Lookup::Forgotten => {
                    let status = counted(Status::ReplyEvicted);
                    return self.answer(conn, sender, &header, &span, status).await;
                }
                Lookup::Mismatch => {
                    let status = counted(Status::BadArguments {
                        message: format!(
                            "call id {} of this client was already used for a call with other arguments",
                            header.call_id
                        ),
                    });
                    return self.answer(conn, sender, &header, &span, status).await;
                }
                Lookup::Refused => {
                    bump(&self.counters.overloaded);
                    let status = counted(Status::Overloaded);
                    return self.answer(conn, sender, &header, &span, status).await;
                }
            }
        }
        // With layers set every call goes through them, on the worker pool.
        if procedure.placement == Placement::Inline && self.run_inline && self.stack.is_none() {
            let reply = {
                self.admission.enter_inline();
                let _done = Finish(&self.admission);
                self.run_inline(
                    hosted,
                    index,
                    header,
                    &args,
                    credentials,
                    cached,
                    conn,
                    received,
                    reply_buf,
                    &span,
                )
            };
            return match reply {
                Some(reply) => self.send_now(conn, sender, reply).await,
                None => Ok(()),
            };
        }
        if !self.admission.try_admit() {
            bump(&self.counters.overloaded);
            let status = counted(Status::Overloaded);
            return match self.refusal(&conn.scope, &header, cached, &span, status) {
                Some(answer) => self.send_now(conn, sender, answer).await,
                None => Ok(()),
            };
        }
        let control = Arc::new(CallControl::default());
        conn.add_control(header.client_id, header.call_id, control.clone());
        let job = Job {
            work: Work {
                hosted: hosted.clone(),
                procedure: index,
                cached,
                control,
                header,
                payload: args,
                credentials,
                conn: conn.clone(),
                received,
                span,
            },
            sender: sender.clone(),
            slot: conn.begin_call(),
        };
        self.spawn_call(job);
        Ok(())
    }

    /// Refuses `call` with `status` (no answer if it is oneway), from the connection loop.
    async fn answer(
        &self,
        conn: &ConnState,
        sender: &crate::transport::FrameSender,
        call: &FrameHeader,
        span: &tracing::Span,
        status: Status,
    ) -> Result<(), End> {
        refused(span, &status);
        if call.is_oneway() {
            return Ok(());
        }
        let frame = status_frame(call, &status, self.incarnation);
        self.send_now(conn, sender, frame).await
    }

    /// Sends a frame from the connection loop: waits for room at most the write timeout
    /// (the loop reads nothing meanwhile, which only holds up this connection).
    async fn send_now(
        &self,
        conn: &ConnState,
        sender: &crate::transport::FrameSender,
        frame: Frame,
    ) -> Result<(), End> {
        match deliver(conn, sender, frame, Some(self.limits.write_timeout)).await {
            Delivery::Sent => Ok(()),
            Delivery::Closed => {
                bump(&self.counters.replies_dropped);
                Ok(())
            }
            Delivery::Stalled => Err(End::WriteTimeout),
        }
    }
}

/// The span of one call at the server (`rpc.serve`, debug level). With no subscriber
/// interested it is disabled, and every `record` on it does nothing.
fn call_span(header: &FrameHeader, peer: std::net::SocketAddr) -> tracing::Span {
    tracing::debug_span!(
        "rpc.serve",
        interface_id = header.interface_id,
        interface = tracing::field::Empty,
        version = header.interface_version,
        procedure = header.procedure,
        call_id = header.call_id,
        client_id = header.client_id,
        peer = %peer,
        semantics = %header.semantics(),
        outcome = tracing::field::Empty,
        handler_us = tracing::field::Empty,
    )
}

/// Records that the call was refused with `status` before its handler ran.
pub(super) fn refused(span: &tracing::Span, status: &Status) {
    tracing::debug!(parent: span, status = status.name(), "call refused");
    span.record("outcome", status.name());
}
