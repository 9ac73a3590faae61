//! Middleware around the handler call: tower layers ([`ServerBuilder::layer`]) and
//! interceptors ([`ServerBuilder::intercept`]).
//!
//! A layer wraps a [`tower::Service`] whose request is a [`ServerCall`] (the
//! [`CallContext`], the [`CallTarget`] and the raw XDR argument bytes) and whose
//! response is the encoded reply, with a [`Status`] as the error. The innermost service,
//! [`Handler`], runs the hosted [`Service`]. Because the stack's error is turned into a
//! [`Status`] by [`status_from_error`], tower's own layers work unchanged: a
//! `TimeoutLayer`'s elapsed error answers [`Status::DeadlineExceeded`], a
//! `LoadShedLayer`'s refusal [`Status::Overloaded`], and a `ConcurrencyLimitLayer` or
//! `RateLimitLayer` makes calls wait (holding their worker) until the layer is ready.
//!
//! Layers run on the worker pool, after the deadline and cancellation checks and while
//! the call holds a worker; the first layer added is the outermost. The reply cache
//! records what the stack answers, statuses included, as it records a handler's.
//!
//! # `[inline]` procedures
//! With no layer set, `[inline]` procedures run on the dispatch loop with no allocation.
//! With any layer set, **every** call goes through the layers, so inline procedures then
//! run on the worker pool like the others (a layer may wait or time out, which the
//! dispatch loop must never do; and a layer that checks credentials must not be
//! bypassed). Interceptors are synchronous and allocate nothing, so they run on both
//! paths and leave inline procedures inline.
//!
//! [`ServerBuilder::layer`]: super::ServerBuilder::layer
//! [`ServerBuilder::intercept`]: super::ServerBuilder::intercept

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use super::{CallContext, Service, ServiceFuture};
use crate::error::Status;
use crate::interface::CallTarget;

/// The error type tower layers produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request a server layer sees: one call, before its arguments are decoded.
pub struct ServerCall {
    /// What the handler will know about the call (peer, deadline, ids, cancellation).
    pub ctx: CallContext,
    /// Which procedure it calls.
    pub target: CallTarget,
    /// The XDR-encoded arguments (a layer may inspect or replace them).
    pub args: Bytes,
    service: Arc<dyn Service>,
}

impl ServerCall {
    pub(super) fn new(
        ctx: CallContext,
        target: CallTarget,
        args: Bytes,
        service: Arc<dyn Service>,
    ) -> Self {
        ServerCall {
            ctx,
            target,
            args,
            service,
        }
    }
}

impl std::fmt::Debug for ServerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCall")
            .field("ctx", &self.ctx)
            .field("interface", &self.target.interface.name)
            .field("procedure", &self.target.procedure.name)
            .field("args", &self.args.len())
            .finish()
    }
}

/// The innermost service of a server's stack: runs the hosted service's handler for
/// the call (it is always ready).
#[derive(Debug, Clone, Copy, Default)]
pub struct Handler;

impl tower::Service<ServerCall> for Handler {
    type Response = Bytes;
    type Error = Status;
    type Future = ServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ServerCall) -> ServiceFuture {
        call.service
            .call(call.target.procedure.number, call.ctx, call.args)
    }
}

/// The service a server layer wraps: the handler, or the layers added before it.
pub type ServerStack = BoxCloneSyncService<ServerCall, Bytes, Status>;

/// A layer, kept until the stack is built.
pub(super) type Wrap = Box<dyn FnOnce(ServerStack) -> ServerStack + Send>;

/// Boxes `layer` into a [`Wrap`].
pub(super) fn wrap<L>(layer: L) -> Wrap
where
    L: Layer<ServerStack> + Send + 'static,
    L::Service: tower::Service<ServerCall, Response = Bytes> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<ServerCall>>::Error: Into<BoxError>,
    <L::Service as tower::Service<ServerCall>>::Future: Send + 'static,
{
    Box::new(move |inner| BoxCloneSyncService::new(layer.layer(inner).map_err(status_from_error)))
}

/// Builds the stack (`None` without layers): the first layer added is the outermost.
pub(super) fn build(layers: Vec<Wrap>) -> Option<ServerStack> {
    if layers.is_empty() {
        return None;
    }
    let mut stack = ServerStack::new(Handler);
    for wrap in layers.into_iter().rev() {
        stack = wrap(stack);
    }
    Some(stack)
}

/// Runs one call through the stack.
pub(super) fn call(stack: &ServerStack, call: ServerCall) -> ServiceFuture {
    Box::pin(stack.clone().oneshot(call))
}

/// The status a layer's error answers: a [`Status`] as it is; tower's timeout elapsed
/// as [`Status::DeadlineExceeded`]; tower's load-shed refusal as
/// [`Status::Overloaded`]; anything else as [`Status::Internal`] with its message.
pub fn status_from_error(e: impl Into<BoxError>) -> Status {
    let e = e.into();
    let e = match e.downcast::<Status>() {
        Ok(status) => return *status,
        Err(e) => e,
    };
    if e.is::<tower::timeout::error::Elapsed>() {
        return Status::DeadlineExceeded;
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return Status::Overloaded;
    }
    Status::Internal {
        message: format!("server layer failed: {e}"),
    }
}

/// What an interceptor is: a check of the call's context and target.
type Check = dyn Fn(&CallContext, CallTarget) -> Result<(), Status> + Send + Sync;

/// A synchronous check before the handler (see [`super::ServerBuilder::intercept`]).
#[derive(Clone)]
pub(super) struct Interceptor(pub(super) Arc<Check>);

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interceptor")
    }
}

/// Runs every interceptor in order; the first refusal wins.
#[inline]
pub(super) fn intercept(
    interceptors: &[Interceptor],
    ctx: &CallContext,
    target: CallTarget,
) -> Result<(), Status> {
    interceptors.iter().try_for_each(|i| (i.0)(ctx, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_errors_become_statuses() {
        assert_eq!(status_from_error(Status::Cancelled), Status::Cancelled);
        assert_eq!(
            status_from_error(tower::timeout::error::Elapsed::new()),
            Status::DeadlineExceeded
        );
        assert_eq!(
            status_from_error(tower::load_shed::error::Overloaded::new()),
            Status::Overloaded
        );
        let other: BoxError = "quota gone".into();
        assert!(matches!(
            status_from_error(other),
            Status::Internal { message } if message.contains("quota gone")
        ));
    }
}
