//! What every task of a server shares: configuration, the interface table, admission,
//! the connection table, the reply cache, the counters and the lifecycle phase.

use std::time::Instant;

use tokio::sync::watch;

use super::admission::Admission;
use super::authorize::Authorizers;
use super::connections::ConnectionTable;
use super::interfaces::InterfaceTable;
use super::layer::{Interceptor, ServerStack};
use super::limits::ServerLimits;
use super::reply_cache::ReplyCacheShards;
use super::stats::{Counters, ServerStats};

/// Where a server is in its life.
///
/// ```text
///  Running ──shutdown()──▶ Draining ──calls done, or grace over──▶ Closing{deadline}
///     │                    (new calls refused)                     (connections flush
///     └──────────────handle dropped──────────────────────────────▶  until deadline, then abort)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    Draining,
    /// Handlers still running are abandoned; each connection writes what it has queued
    /// until `deadline`, then is aborted.
    Closing {
        deadline: Instant,
    },
}

impl Phase {
    pub(super) fn is_closing(&self) -> bool {
        matches!(self, Phase::Closing { .. })
    }
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) interfaces: InterfaceTable,
    pub(super) admission: Admission,
    pub(super) connections: ConnectionTable,
    pub(super) limits: ServerLimits,
    pub(super) incarnation: u64,
    pub(super) phase: watch::Sender<Phase>,
    /// Time zero for the connections' activity clocks.
    pub(super) epoch: Instant,
    /// `ServerBuilder::run_inline`.
    pub(super) run_inline: bool,
    /// `ServerBuilder::share_threshold`.
    pub(super) share_threshold: Option<usize>,
    /// Exactly-once / at-most-once deduplication.
    pub(super) cache: Option<ReplyCacheShards>,
    pub(super) counters: Counters,
    /// `ServerBuilder::layer`s around the handler (`None`: none set).
    pub(super) stack: Option<ServerStack>,
    /// `ServerBuilder::intercept`.
    pub(super) interceptors: Box<[Interceptor]>,
    /// `ServerBuilder::authorize` and `authorize_interface`.
    pub(super) authorizers: Authorizers,
}

impl Shared {
    pub(super) fn stats(&self) -> ServerStats {
        ServerStats {
            connections_open: self.connections.open() as u64,
            reply_cache: self
                .cache
                .as_ref()
                .map(ReplyCacheShards::stats)
                .unwrap_or_default(),
            in_flight: self.admission.in_flight() as u64,
            queued_reply_bytes: self.connections.queued_bytes() as u64,
            ..self.counters.snapshot()
        }
    }

    pub(super) fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}
