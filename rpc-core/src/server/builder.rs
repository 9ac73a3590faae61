//! [`ServerBuilder`]: a server's configuration, and `serve`, which starts it.

use std::sync::Arc;

use std::time::{Duration, Instant};
use tracing::Instrument;

use tokio::sync::watch;

use super::admission::Admission;
use super::authorize::{Authorizer, Authorizers};
use super::connections::ConnectionTable;
use super::handle::ServerHandle;
use super::hook::{ServeHook, Serving};
use super::interfaces::InterfaceTable;
use super::layer::{self, BoxError, Interceptor, ServerCall, ServerStack, Wrap};
use super::limits::ServerLimits;
use super::reply_cache::{ReplyCacheConfig, ReplyCacheShards};
use super::state::{Phase, Shared};
use super::stats::Counters;
use super::CallContext;
use super::{accept, ServerError, Service, DEFAULT_QUEUE_DEPTH, DEFAULT_WORKERS};
use crate::error::Status;
use crate::interface::{CallTarget, InterfaceInfo};
use crate::transport::Listener;

/// Configures and starts a server.
///
/// ```no_run
/// # async fn doc<L: rpc_core::transport::Listener>(listener: L, svc: impl rpc_core::server::Service) {
/// use std::time::Duration;
/// use rpc_core::server::Server;
/// let handle = Server::builder()
///     .workers(8)
///     .queue_depth(1024)
///     .max_calls_per_connection(128)
///     .idle_timeout(Some(Duration::from_secs(60)))
///     .add_service(svc)
///     .serve(listener)
///     .unwrap();
/// handle.shutdown().await;
/// # }
/// ```
pub struct ServerBuilder {
    workers: usize,
    queue_depth: usize,
    limits: ServerLimits,
    reply_cache: Option<ReplyCacheConfig>,
    run_inline: bool,
    share_threshold: Option<usize>,
    services: Vec<Arc<dyn Service>>,
    hooks: Vec<Box<dyn ServeHook>>,
    layers: Vec<Wrap>,
    interceptors: Vec<Interceptor>,
    authorizers: Authorizers,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("workers", &self.workers)
            .field("queue_depth", &self.queue_depth)
            .field("limits", &self.limits)
            .field("run_inline", &self.run_inline)
            .field("hooks", &self.hooks.len())
            .field("layers", &self.layers.len())
            .field("interceptors", &self.interceptors.len())
            .field("authorizers", &self.authorizers.len())
            .field(
                "services",
                &self
                    .services
                    .iter()
                    .map(|s| s.info().name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            workers: DEFAULT_WORKERS,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            limits: ServerLimits::default(),
            reply_cache: Some(ReplyCacheConfig::default()),
            run_inline: true,
            share_threshold: Some(crate::xdr::DEFAULT_SHARE_THRESHOLD),
            services: Vec::new(),
            hooks: Vec::new(),
            layers: Vec::new(),
            interceptors: Vec::new(),
            authorizers: Authorizers::default(),
        }
    }
}

impl ServerBuilder {
    /// Whether procedures declared `[inline]` (cheap, synchronous handlers) run on the
    /// connection's dispatch loop, with no hand-off to a worker. Default `true`.
    ///
    /// Running a tiny handler inline saves a task, a boxed future and a reply buffer per
    /// call, and the wakeup of a worker (on a 2-core VM a hand-off to the other core
    /// costs more than a cheap handler). The price: while an inline handler runs, that
    /// connection reads nothing else, so inline handlers must be short and must not
    /// block. With `false`, every call goes to the worker pool, inline or not: the
    /// dispatch loop then never runs user code.
    pub fn run_inline(mut self, on: bool) -> Self {
        self.run_inline = on;
        self
    }

    /// Shared descriptors in inline handlers' replies: an `opaque` result of at least
    /// this many bytes is sent by reference to its buffer (e.g. a slice of the request
    /// it echoes) instead of being copied into the reply; `None` copies everything.
    /// Default `Some(`[`crate::xdr::DEFAULT_SHARE_THRESHOLD`]`)`. (Pooled handlers'
    /// results are encoded into one buffer.)
    pub fn share_threshold(mut self, threshold: Option<usize>) -> Self {
        self.share_threshold = threshold;
        self
    }

    /// Number of workers: the most handlers that run at once. Default 16.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Calls that may wait for a worker; a call beyond it is answered `Overloaded`.
    /// Default 1024.
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n.max(1);
        self
    }

    /// Sets every per-connection and lifecycle limit at once (see [`ServerLimits`]).
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Most connections at once ([`ServerLimits::max_connections`], default 1024); at
    /// the cap an idle connection is closed to admit a new one.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n.max(1);
        self
    }

    /// Most connections at once from one IP address
    /// ([`ServerLimits::max_connections_per_ip`], default 256).
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.limits.max_connections_per_ip = n.max(1);
        self
    }

    /// Closes a connection that has sent no frame for `timeout` and has no call in
    /// flight ([`ServerLimits::idle_timeout`], default 5 minutes; `None`: never).
    /// Clients reconnect transparently, but a call sent at the very moment the server
    /// closes the connection fails with a transport error, so choose a timeout well
    /// above the clients' idle periods.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.limits.idle_timeout = timeout.filter(|d| !d.is_zero());
        self
    }

    /// Calls one connection may have in flight before the server stops reading it
    /// ([`ServerLimits::max_calls_per_connection`], default 256).
    pub fn max_calls_per_connection(mut self, n: usize) -> Self {
        self.limits.max_calls_per_connection = n.max(1);
        self
    }

    /// Unwritten reply bytes one connection may hold before the server stops reading
    /// it ([`ServerLimits::max_queued_reply_bytes`], default 8 MiB).
    pub fn max_queued_reply_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_queued_reply_bytes = bytes.max(1);
        self
    }

    /// How long a connection's replies may stay unwritten before it is aborted
    /// ([`ServerLimits::write_timeout`], default 30 s).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.limits.write_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for calls to finish and replies to be
    /// written before it aborts what is left ([`ServerLimits::shutdown_grace`],
    /// default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.limits.shutdown_grace = grace;
        self
    }

    /// Sets the reply cache's limits (`None` turns it off: exactly-once and at-most-once
    /// calls are then executed as often as they arrive). Default: on, with
    /// [`ReplyCacheConfig::default`].
    pub fn reply_cache(mut self, config: Option<ReplyCacheConfig>) -> Self {
        self.reply_cache = config;
        self
    }

    /// Hosts a service (one interface version). Several interfaces, and several versions
    /// of one interface, can share a server.
    pub fn add_service(mut self, service: impl Service) -> Self {
        self.services.push(Arc::new(service));
        self
    }

    /// Hosts an already shared service.
    pub fn add_shared_service(mut self, service: Arc<dyn Service>) -> Self {
        self.services.push(service);
        self
    }

    /// Runs `hook` beside the server: started by `serve` with the listener's address
    /// and the hosted interfaces ([`Serving`]), stopped first thing in
    /// [`ServerHandle::shutdown`]. Registering with a name registry is one
    /// (`crate::naming::registry::RegisterOnServe`), registering ONC RPC programs with
    /// rpcbind another (`rpc_transport_tcp::rpcbind::RegisterWithRpcbind`).
    pub fn hook(mut self, hook: impl ServeHook) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Wraps every handler call in `layer`, a [`tower::Layer`] over a service from
    /// [`ServerCall`] to the encoded reply (see [`ServerStack`]): tower's timeout,
    /// concurrency-limit, rate-limit and load-shed layers work as they are. The first
    /// layer added is the outermost. With any layer set, `[inline]` procedures run on
    /// the worker pool through the layers too (see the `layer` module docs).
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::server::Server;
    /// let builder = Server::builder()
    ///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(1)))
    ///     .layer(tower::limit::ConcurrencyLimitLayer::new(64));
    /// # drop(builder);
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<ServerStack> + Send + 'static,
        L::Service:
            tower::Service<ServerCall, Response = bytes::Bytes> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<ServerCall>>::Error: Into<BoxError>,
        <L::Service as tower::Service<ServerCall>>::Future: Send + 'static,
    {
        self.layers.push(layer::wrap(layer));
        self
    }

    /// Runs `check` before every call's handler, in the order added: it sees the
    /// call's context and target, and a `Err(status)` answers the call with that status
    /// instead of running it. Interceptors are synchronous and cheap: they run on the
    /// inline path too, which stays inline and allocation-free.
    ///
    /// ```
    /// use rpc_core::{server::Server, Status};
    /// let builder = Server::builder().intercept(|ctx, target| {
    ///     match ctx.peer_addr().ip().is_loopback() || target.procedure.name == "ping" {
    ///         true => Ok(()),
    ///         false => Err(Status::application(403, "loopback only")),
    ///     }
    /// });
    /// # drop(builder);
    /// ```
    pub fn intercept(
        mut self,
        check: impl Fn(&CallContext, CallTarget) -> Result<(), Status> + Send + Sync + 'static,
    ) -> Self {
        self.interceptors.push(Interceptor(Arc::new(check)));
        self
    }

    /// Adds an [`Authorizer`] for every call: it sees the peer, the target and the
    /// call's credentials, and refuses a call with a status (normally
    /// `PermissionDenied` or `Unauthenticated`) before the reply cache, admission and
    /// argument decoding. Authorizers run in the order added (those for every call
    /// first, then the interface's); the first refusal wins.
    ///
    /// ```
    /// use rpc_core::server::{BearerTokens, Server};
    /// let builder = Server::builder().authorize(BearerTokens::new(["s3cret"]));
    /// # drop(builder);
    /// ```
    pub fn authorize(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizers.add(Arc::new(authorizer));
        self
    }

    /// Adds an [`Authorizer`] for the calls to one interface (every version of
    /// `interface.id`); see [`ServerBuilder::authorize`]. Per-procedure rules go inside
    /// it: the request names the procedure.
    ///
    /// ```
    /// use rpc_core::server::{AuthRequest, Server};
    /// use rpc_core::{InterfaceInfo, Status};
    /// # static INFO: InterfaceInfo = InterfaceInfo { name: "Admin", id: 9, version: 1,
    /// #     procedures: &[], default_semantics: None };
    /// let builder = Server::builder().authorize_interface(&INFO, |req: &AuthRequest<'_>| {
    ///     match req.peer_addr().ip().is_loopback() {
    ///         true => Ok(()),
    ///         false => Err(Status::permission_denied("admin calls only from loopback")),
    ///     }
    /// });
    /// # drop(builder);
    /// ```
    pub fn authorize_interface(
        mut self,
        interface: &InterfaceInfo,
        authorizer: impl Authorizer,
    ) -> Self {
        self.authorizers.add_for(interface.id, Arc::new(authorizer));
        self
    }

    /// Starts accepting on `listener`, with the accept loop, one dispatch loop per
    /// connection, and the calls' tasks spawned on the current tokio runtime.
    pub fn serve<L: Listener>(self, listener: L) -> Result<ServerHandle, ServerError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ServerError::NoRuntime)?;
        let hosted: Vec<&'static InterfaceInfo> = self.services.iter().map(|s| s.info()).collect();
        let interfaces = InterfaceTable::new(self.services)?;
        let (phase, _) = watch::channel(Phase::Running);
        let local_addr = listener.local_addr();
        let shared = Arc::new(Shared {
            interfaces,
            admission: Admission::new(self.workers, self.queue_depth),
            connections: ConnectionTable::default(),
            limits: self.limits,
            incarnation: crate::id::random_u64(),
            phase,
            stage: std::sync::atomic::AtomicU8::new(Phase::Running.stage()),
            epoch: Instant::now(),
            run_inline: self.run_inline,
            share_threshold: self.share_threshold,
            cache: self.reply_cache.map(ReplyCacheShards::new),
            counters: Counters::new(),
            stack: layer::build(self.layers),
            interceptors: self.interceptors.into_boxed_slice(),
            authorizers: self.authorizers,
        });
        let accept = runtime.spawn(
            accept::accept_loop(shared.clone(), listener)
                .instrument(tracing::debug_span!(parent: None, "rpc.accept", %local_addr)),
        );
        if shared.cache.is_some() {
            runtime.spawn(super::call::housekeeping(Arc::downgrade(&shared)));
        }
        tracing::info!(%local_addr, workers = self.workers, queue_depth = self.queue_depth, "server started");
        let hooks = {
            let _enter = runtime.enter();
            let serving = Serving::new(local_addr, hosted);
            self.hooks
                .into_iter()
                .map(|hook| hook.start(&serving))
                .collect()
        };
        Ok(ServerHandle::new(shared, local_addr, accept, hooks))
    }
}
