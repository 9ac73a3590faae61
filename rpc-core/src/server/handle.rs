//! [`ServerHandle`]: a running server, its graceful shutdown (bounded by a grace
//! period) and its abrupt one (drop).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::hook::RunningHook;
use super::state::{Phase, Shared};
use super::stats::ServerStats;

/// A running server. [`ServerHandle::shutdown`] stops it gracefully; dropping the handle
/// closes it at once: connections are aborted, and queued calls and running handlers
/// are dropped at their next await point.
pub struct ServerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    hooks: Vec<Box<dyn RunningHook>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl ServerHandle {
    pub(super) fn new(
        shared: Arc<Shared>,
        local_addr: SocketAddr,
        accept: JoinHandle<()>,
        hooks: Vec<Box<dyn RunningHook>>,
    ) -> Self {
        ServerHandle {
            shared,
            local_addr,
            accept: Some(accept),
            hooks,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This server instance's incarnation number (sent in every reply).
    pub fn incarnation(&self) -> u64 {
        self.shared.incarnation
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// Graceful shutdown, bounded by the grace period
    /// (`ServerBuilder::shutdown_grace`, default 10 s):
    ///
    /// 1. stops the hooks (e.g. deregisters from the name registry);
    /// 2. stops accepting connections and refuses new calls with `ShuttingDown`;
    /// 3. waits until every call already queued or running has finished, or the grace
    ///    period is over (handlers still running are then abandoned);
    /// 4. lets each connection write the replies it has queued until the grace period
    ///    is over, then aborts the connections that still hold some (a client that does
    ///    not read cannot keep the server alive), and returns once every connection is
    ///    closed.
    pub async fn shutdown(mut self) {
        let hooks = std::mem::take(&mut self.hooks);
        futures_util::future::join_all(hooks.into_iter().map(|h| h.stop())).await;
        let shared = self.shared.clone();
        let deadline = Instant::now() + shared.limits.shutdown_grace;
        shared.set_phase(Phase::Draining);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        let drained = tokio::time::timeout_at(deadline.into(), shared.admission.wait_drained());
        if drained.await.is_err() {
            tracing::warn!(
                in_flight = shared.admission.in_flight(),
                "shutdown grace period over; abandoning calls still running"
            );
        }
        shared.set_phase(Phase::Closing { deadline });
        let flushed =
            tokio::time::timeout_at(deadline.into(), shared.connections.wait_all_closed());
        if flushed.await.is_err() {
            // Connections stuck handing a reply to a peer that does not read.
            shared.connections.close_all();
            shared.connections.wait_all_closed().await;
        }
        tracing::info!(local_addr = %self.local_addr, "server stopped");
    }

    /// Runs until `signal` resolves, then shuts down gracefully
    /// ([`ServerHandle::shutdown`], bounded by the grace period).
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.shared.phase().is_closing() {
            self.shared.set_phase(Phase::Closing {
                deadline: Instant::now(),
            });
        }
        self.shared.connections.close_all();
        if let Some(accept) = &self.accept {
            accept.abort();
        }
    }
}
