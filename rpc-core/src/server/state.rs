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

/// [`Phase::stage`] of [`Phase::Closing`].
const CLOSING_STAGE: u8 = 2;

impl Phase {
    /// 0 running, 1 draining, 2 closing: phases only move forward.
    pub(super) fn stage(&self) -> u8 {
        match self {
            Phase::Running => 0,
            Phase::Draining => 1,
            Phase::Closing { .. } => CLOSING_STAGE,
        }
    }

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
    /// Changed only through [`Shared::set_phase`], which keeps `stage` in step.
    pub(super) phase: watch::Sender<Phase>,
    /// The phase as a number ([`Phase::stage`]), for the per-call checks: reading it
    /// takes no lock.
    pub(super) stage: std::sync::atomic::AtomicU8,
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

    /// Moves the server to `phase` (watchers of `phase` are woken).
    pub(super) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
        // After the watch: whoever sees the new stage reads the new phase.
        self.stage
            .store(phase.stage(), std::sync::atomic::Ordering::Release);
    }

    /// Whether the server takes new calls (no lock taken).
    pub(super) fn is_running(&self) -> bool {
        self.stage.load(std::sync::atomic::Ordering::Acquire) == Phase::Running.stage()
    }

    /// The shutdown's deadline once the server is closing (a lock is taken only then).
    pub(super) fn closing_deadline(&self) -> Option<Instant> {
        if self.stage.load(std::sync::atomic::Ordering::Acquire) < CLOSING_STAGE {
            return None;
        }
        match self.phase() {
            Phase::Closing { deadline } => Some(deadline),
            _ => None,
        }
    }
}
