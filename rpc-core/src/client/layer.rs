//! Middleware around [`Client::call`]: tower layers added with [`Client::layer`], and
//! the call-level metrics every call records.
//!
//! A client layer wraps a [`tower::Service`] whose request is a [`ClientCall`] (the
//! [`CallTarget`], the [`CallOptions`] and the XDR-encoded arguments) and whose response
//! is the reply's XDR bytes, with an [`RpcError`] as the error. The innermost service,
//! [`Direct`], is the client's own call path (call ids, retries, deadlines, reconnects);
//! so a layer sees one logical call, however many attempts it takes underneath. tower's
//! layers work unchanged: a `TimeoutLayer`'s elapsed error is [`RpcError::Timeout`], a
//! `LoadShedLayer`'s refusal [`RpcError::Overloaded`] ([`error_from_layer`]).
//!
//! Without layers a call takes the direct path as before: no request is built, nothing
//! extra is encoded or copied.

use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut, Bytes};
use futures_util::future::BoxFuture;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use super::{CallOptions, Client};
use crate::error::RpcError;
use crate::interface::{CallTarget, InterfaceInfo, ProcedureInfo};
use crate::server::BoxError;
use crate::transport::Channel;
use crate::xdr::{XdrError, XdrReader, XdrWriter};

/// The request a client layer sees: one call, its arguments already encoded.
#[derive(Debug, Clone)]
pub struct ClientCall {
    /// Which procedure it calls.
    pub target: CallTarget,
    /// The call's options (a layer may change them: a deadline, a retry policy).
    pub options: CallOptions,
    /// The XDR-encoded arguments.
    pub args: Bytes,
}

/// The service a client layer wraps: the client's direct call path, or the layers
/// added before it.
pub type ClientStack = BoxCloneSyncService<ClientCall, Bytes, RpcError>;

/// The innermost service of a client's stack: the client's own call path, with no
/// layers (it is always ready).
pub struct Direct<C: Channel> {
    client: Client<C>,
}

impl<C: Channel> Clone for Direct<C> {
    fn clone(&self) -> Self {
        Direct {
            client: self.client.clone(),
        }
    }
}

impl<C: Channel> std::fmt::Debug for Direct<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("client", &self.client)
            .finish()
    }
}

impl<C: Channel> tower::Service<ClientCall> for Direct<C> {
    type Response = Bytes;
    type Error = RpcError;
    type Future = BoxFuture<'static, Result<Bytes, RpcError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ClientCall) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let ClientCall {
                target,
                options,
                args,
            } = call;
            client
                .call_direct(
                    target.interface,
                    target.procedure,
                    &options,
                    |w| {
                        w.buf_mut().put_slice(&args);
                        Ok(())
                    },
                    |r| Ok(r.take_rest()),
                )
                .await
        })
    }
}

/// The error a call ends with when a layer fails it: an [`RpcError`] as it is; tower's
/// timeout elapsed as [`RpcError::Timeout`]; tower's load-shed refusal as
/// [`RpcError::Overloaded`]; anything else as [`RpcError::Layer`].
pub fn error_from_layer(e: impl Into<BoxError>) -> RpcError {
    let e = e.into();
    let e = match e.downcast::<RpcError>() {
        Ok(e) => return *e,
        Err(e) => e,
    };
    if e.is::<tower::timeout::error::Elapsed>() {
        return RpcError::Timeout;
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return RpcError::Overloaded;
    }
    RpcError::Layer(e.into())
}

impl<C: Channel> Client<C> {
    /// This client with `layer` around every call (clones of the result share the
    /// layer's state, e.g. a concurrency limit; the original client is unchanged).
    /// The layer wraps the client's current stack, so the last layer added is the
    /// outermost. See [`ClientCall`] for what a layer sees.
    ///
    /// ```
    /// # use rpc_core::{transport::memory, Client};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (channel, _listener) = memory::endpoint(8);
    /// let client = Client::new(channel)
    ///     .layer(tower::limit::ConcurrencyLimitLayer::new(32))
    ///     .layer(tower::timeout::TimeoutLayer::new(std::time::Duration::from_secs(2)));
    /// # drop(client);
    /// # }
    /// ```
    pub fn layer<L>(&self, layer: L) -> Client<C>
    where
        L: Layer<ClientStack>,
        L::Service: tower::Service<ClientCall, Response = Bytes> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<ClientCall>>::Error: Into<BoxError>,
        <L::Service as tower::Service<ClientCall>>::Future: Send + 'static,
    {
        let base = self.layers.clone().unwrap_or_else(|| {
            ClientStack::new(Direct {
                client: Client {
                    inner: self.inner.clone(),
                    layers: None,
                },
            })
        });
        Client {
            inner: self.inner.clone(),
            layers: Some(ClientStack::new(
                layer.layer(base).map_err(error_from_layer),
            )),
        }
    }

    /// Makes one call: encodes the arguments with `encode`, waits for the answer, and
    /// decodes a reply with `decode` (which must consume the whole payload). With
    /// layers set ([`Client::layer`]) the call goes through them.
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
        let started = Instant::now();
        let result = match &self.layers {
            None => {
                self.call_direct(interface, procedure, options, encode, decode)
                    .await
            }
            Some(stack) => {
                let target = CallTarget {
                    interface,
                    procedure,
                };
                call_layered(stack, target, options, encode, decode).await
            }
        };
        crate::metrics::client_call(interface, procedure, &result, started.elapsed());
        result
    }
}

/// Encodes the arguments, runs the call through `stack`, decodes the reply.
async fn call_layered<T>(
    stack: &ClientStack,
    target: CallTarget,
    options: &CallOptions,
    encode: impl FnOnce(&mut XdrWriter) -> Result<(), XdrError>,
    decode: impl FnOnce(&mut XdrReader<'_>) -> Result<T, XdrError>,
) -> Result<T, RpcError> {
    let mut w = XdrWriter::with_capacity(64);
    encode(&mut w).map_err(RpcError::Encode)?;
    let call = ClientCall {
        target,
        options: options.clone(),
        args: w.into_bytes(),
    };
    let reply = stack.clone().oneshot(call).await?;
    let mut r = XdrReader::new(&reply);
    let value = decode(&mut r).map_err(RpcError::Decode)?;
    r.finish().map_err(RpcError::Decode)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_errors_become_rpc_errors() {
        assert!(matches!(
            error_from_layer(RpcError::Cancelled),
            RpcError::Cancelled
        ));
        assert!(matches!(
            error_from_layer(tower::timeout::error::Elapsed::new()),
            RpcError::Timeout
        ));
        assert!(matches!(
            error_from_layer(tower::load_shed::error::Overloaded::new()),
            RpcError::Overloaded
        ));
        let other: BoxError = "budget spent".into();
        assert!(matches!(
            error_from_layer(other),
            RpcError::Layer(e) if e.to_string() == "budget spent"
        ));
    }
}
