//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: the runtime records,
//! the application chooses the exporter (e.g. `metrics-exporter-prometheus`, as the
//! examples' `calc-server --metrics-addr` does). With no recorder installed every
//! handle is a no-op.
//!
//! Handles are registered once and kept (per server when it starts, per procedure the
//! first time a client calls it), so recording a call is a few atomic operations and
//! allocates nothing. A consequence: **install the global recorder before building
//! servers and making calls**; what registered before it records nowhere.
//!
//! Every name is listed in `docs/OBSERVABILITY.md` (one table, with labels and meaning);
//! the constants below are the call-level ones, and the server's event counters are
//! `rpc_server_<field>_total` for each counter field of [`crate::server::ServerStats`].

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::error::{RpcError, Status};
use crate::interface::{InterfaceInfo, ProcedureInfo};

/// Calls a server finished or refused after finding the procedure, by `interface`,
/// `procedure` and `outcome` (`ok` or a [`Status`] name).
pub const SERVER_CALLS: &str = "rpc_server_calls_total";
/// Seconds from a call frame's arrival to its reply being ready, by `interface` and
/// `procedure` (calls that ran a handler, interceptor or layer).
pub const SERVER_CALL_DURATION: &str = "rpc_server_call_duration_seconds";
/// Connections open right now at a server (gauge).
pub const SERVER_CONNECTIONS_OPEN: &str = "rpc_server_connections_open";
/// Calls a client finished, by `interface`, `procedure` and `outcome` (`ok` or an
/// [`RpcError`] variant name).
pub const CLIENT_CALLS: &str = "rpc_client_calls_total";
/// Seconds a client call took, from `Client::call` to its result, by `interface` and
/// `procedure`.
pub const CLIENT_CALL_DURATION: &str = "rpc_client_call_duration_seconds";
/// Attempts after a call's first (resends and retries).
pub const CLIENT_RETRIES: &str = "rpc_client_retries_total";
/// Connections a client established.
pub const CLIENT_CONNECTS: &str = "rpc_client_connects_total";
/// Connection attempts of a client that failed.
pub const CLIENT_CONNECT_FAILURES: &str = "rpc_client_connect_failures_total";
/// Replies a client could match to no pending call.
pub const CLIENT_UNMATCHED_REPLIES: &str = "rpc_client_unmatched_replies_total";
/// Procedures whose client handles are cached (process-wide); calls to procedures
/// beyond it are recorded without a cached handle (slower, still counted).
pub const CLIENT_PROCEDURE_CACHE_LIMIT: usize = 4096;

/// A server call's outcome label: `ok` (index 0) or a status by its wire code.
const SERVER_OUTCOMES: [&str; 16] = [
    "ok",
    "UnknownInterface",
    "VersionMismatch",
    "UnknownProcedure",
    "BadArguments",
    "Overloaded",
    "ServerRestarted",
    "Application",
    "DeadlineExceeded",
    "Cancelled",
    "ShuttingDown",
    "Internal",
    "ProtocolVersion",
    "ReplyEvicted",
    "PermissionDenied",
    "Unauthenticated",
];

/// Where a result's outcome counter sits in a [`ProcedureMetrics`] table.
pub(crate) fn server_outcome<T>(result: &Result<T, Status>) -> usize {
    match result {
        Ok(_) => 0,
        Err(status) => (status.code() as usize).min(SERVER_OUTCOMES.len() - 1),
    }
}

/// A client call's outcome: its index in `CLIENT_OUTCOMES` (`ok` or the error's
/// variant name).
fn client_outcome<T>(result: &Result<T, RpcError>) -> usize {
    let Err(e) = result else { return 0 };
    match e {
        RpcError::Timeout => 1,
        RpcError::Unreachable(_) => 2,
        RpcError::Transport(_) => 3,
        RpcError::Encode(_) => 4,
        RpcError::Decode(_) => 5,
        RpcError::Protocol(_) => 6,
        RpcError::UnknownInterface { .. } => 7,
        RpcError::VersionMismatch { .. } => 8,
        RpcError::UnknownProcedure { .. } => 9,
        RpcError::BadArguments { .. } => 10,
        RpcError::Overloaded => 11,
        RpcError::ServerRestarted => 12,
        RpcError::Application { .. } => 13,
        RpcError::DeadlineExceeded => 14,
        RpcError::Cancelled => 15,
        RpcError::ShuttingDown => 16,
        RpcError::Internal { .. } => 17,
        RpcError::ProtocolVersion { .. } => 18,
        RpcError::OutcomeUnknown(_) => 19,
        RpcError::ReplyEvicted => 20,
        RpcError::BlockingInRuntime => 21,
        RpcError::Layer(_) => 22,
        RpcError::PermissionDenied { .. } => 23,
        RpcError::Unauthenticated { .. } => 24,
    }
}

/// The outcome labels a client records, indexed by `client_outcome`.
const CLIENT_OUTCOMES: [&str; 25] = [
    "ok",
    "Timeout",
    "Unreachable",
    "Transport",
    "Encode",
    "Decode",
    "Protocol",
    "UnknownInterface",
    "VersionMismatch",
    "UnknownProcedure",
    "BadArguments",
    "Overloaded",
    "ServerRestarted",
    "Application",
    "DeadlineExceeded",
    "Cancelled",
    "ShuttingDown",
    "Internal",
    "ProtocolVersion",
    "OutcomeUnknown",
    "ReplyEvicted",
    "BlockingInRuntime",
    "Layer",
    "PermissionDenied",
    "Unauthenticated",
];

/// One procedure's call counters (one per outcome, registered on first use so only
/// outcomes that happened show) and its latency histogram.
pub(crate) struct ProcedureMetrics {
    calls: &'static str,
    interface: &'static str,
    procedure: &'static str,
    outcomes: Box<[OnceLock<Counter>]>,
    labels: &'static [&'static str],
    duration: Histogram,
}

impl std::fmt::Debug for ProcedureMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcedureMetrics")
            .field("interface", &self.interface)
            .field("procedure", &self.procedure)
            .finish_non_exhaustive()
    }
}

impl ProcedureMetrics {
    fn new(
        calls: &'static str,
        duration: &'static str,
        labels: &'static [&'static str],
        interface: &'static InterfaceInfo,
        procedure: &'static ProcedureInfo,
    ) -> Self {
        ProcedureMetrics {
            calls,
            interface: interface.name,
            procedure: procedure.name,
            outcomes: labels.iter().map(|_| OnceLock::new()).collect(),
            labels,
            duration: metrics::histogram!(
                duration,
                "interface" => interface.name,
                "procedure" => procedure.name
            ),
        }
    }

    /// A server's handles for one hosted procedure.
    pub(crate) fn server(
        interface: &'static InterfaceInfo,
        procedure: &'static ProcedureInfo,
    ) -> Self {
        ProcedureMetrics::new(
            SERVER_CALLS,
            SERVER_CALL_DURATION,
            &SERVER_OUTCOMES,
            interface,
            procedure,
        )
    }

    /// Counts one call with outcome number `outcome` (an index into the label table).
    pub(crate) fn count(&self, outcome: usize) {
        let Some(slot) = self.outcomes.get(outcome) else {
            return;
        };
        slot.get_or_init(|| {
            metrics::counter!(
                self.calls,
                "interface" => self.interface,
                "procedure" => self.procedure,
                "outcome" => self.labels[outcome]
            )
        })
        .increment(1);
    }

    /// Counts one call and records how long it took.
    pub(crate) fn record(&self, outcome: usize, elapsed: Duration) {
        self.count(outcome);
        self.duration.record(elapsed.as_secs_f64());
    }
}

type ProcedureKey = (usize, usize);

/// The client's per-procedure handles, process-wide, keyed by the procedure's static
/// descriptions (bounded by [`CLIENT_PROCEDURE_CACHE_LIMIT`]).
fn client_table() -> &'static RwLock<HashMap<ProcedureKey, &'static ProcedureMetrics>> {
    static TABLE: OnceLock<RwLock<HashMap<ProcedureKey, &'static ProcedureMetrics>>> =
        OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

/// Records one finished client call.
pub(crate) fn client_call<T>(
    interface: &'static InterfaceInfo,
    procedure: &'static ProcedureInfo,
    result: &Result<T, RpcError>,
    elapsed: Duration,
) {
    let outcome = client_outcome(result);
    let key = (
        interface as *const InterfaceInfo as usize,
        procedure as *const ProcedureInfo as usize,
    );
    if let Some(handles) = recent_client_handles(key) {
        handles.record(outcome, elapsed);
        return;
    }
    let table = client_table();
    let cached = table
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    let handles = match cached {
        Some(h) => h,
        None => {
            let mut map = table.write().unwrap_or_else(|e| e.into_inner());
            if map.len() >= CLIENT_PROCEDURE_CACHE_LIMIT && !map.contains_key(&key) {
                drop(map);
                metrics::counter!(
                    CLIENT_CALLS,
                    "interface" => interface.name,
                    "procedure" => procedure.name,
                    "outcome" => CLIENT_OUTCOMES[outcome]
                )
                .increment(1);
                metrics::histogram!(
                    CLIENT_CALL_DURATION,
                    "interface" => interface.name,
                    "procedure" => procedure.name
                )
                .record(elapsed.as_secs_f64());
                return;
            }
            // Leaked once per procedure (bounded above): the handles live as long as the
            // static descriptions they describe.
            *map.entry(key).or_insert_with(|| {
                Box::leak(Box::new(ProcedureMetrics::new(
                    CLIENT_CALLS,
                    CLIENT_CALL_DURATION,
                    &CLIENT_OUTCOMES,
                    interface,
                    procedure,
                )))
            })
        }
    };
    remember_client_handles(key, handles);
    handles.record(outcome, elapsed);
}

/// How many procedures' client handles each thread keeps at hand.
const RECENT_PER_THREAD: usize = 8;

thread_local! {
    /// This thread's most recently used client handles, in front of the process-wide
    /// table: a call finds its handles without the table's lock (shared by every core)
    /// or its hash.
    static RECENT_CLIENT: std::cell::RefCell<Vec<(ProcedureKey, &'static ProcedureMetrics)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn recent_client_handles(key: ProcedureKey) -> Option<&'static ProcedureMetrics> {
    RECENT_CLIENT
        .try_with(|recent| {
            let recent = recent.try_borrow().ok()?;
            recent.iter().find(|(k, _)| *k == key).map(|(_, h)| *h)
        })
        .ok()
        .flatten()
}

fn remember_client_handles(key: ProcedureKey, handles: &'static ProcedureMetrics) {
    let _ = RECENT_CLIENT.try_with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut() {
            if recent.len() >= RECENT_PER_THREAD {
                // The oldest makes room (the table still has it).
                recent.remove(0);
            }
            recent.push((key, handles));
        }
    });
}

/// Adds one to a label-less counter (rare events: no cached handle needed).
pub(crate) fn bump(name: &'static str) {
    metrics::counter!(name).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_the_variant_names() {
        let statuses = [
            Status::UnknownInterface { id: 1 },
            Status::VersionMismatch { low: 1, high: 2 },
            Status::UnknownProcedure { procedure: 9 },
            Status::BadArguments {
                message: String::new(),
            },
            Status::Overloaded,
            Status::ServerRestarted,
            Status::application(1, "x"),
            Status::DeadlineExceeded,
            Status::Cancelled,
            Status::ShuttingDown,
            Status::Internal {
                message: String::new(),
            },
            Status::ProtocolVersion { low: 1, high: 1 },
            Status::ReplyEvicted,
            Status::permission_denied("x"),
            Status::unauthenticated("x"),
        ];
        for status in statuses {
            let name = status.name();
            assert_eq!(SERVER_OUTCOMES[server_outcome::<()>(&Err(status))], name);
        }
        assert_eq!(SERVER_OUTCOMES[server_outcome(&Ok(()))], "ok");
        let errors = [
            (RpcError::Timeout, "Timeout"),
            (RpcError::Overloaded, "Overloaded"),
            (
                RpcError::Application {
                    code: 1,
                    message: String::new(),
                },
                "Application",
            ),
            (RpcError::BlockingInRuntime, "BlockingInRuntime"),
            (RpcError::ReplyEvicted, "ReplyEvicted"),
            (
                RpcError::PermissionDenied {
                    message: String::new(),
                },
                "PermissionDenied",
            ),
            (
                RpcError::Unauthenticated {
                    message: String::new(),
                },
                "Unauthenticated",
            ),
        ];
        for (e, name) in errors {
            assert_eq!(CLIENT_OUTCOMES[client_outcome::<()>(&Err(e))], name);
        }
        assert_eq!(
            CLIENT_OUTCOMES[client_outcome(&Ok::<_, RpcError>(()))],
            "ok"
        );
    }
}
