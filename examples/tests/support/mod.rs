//! Shared helpers of the `semantics_*` acceptance tests: the counter service, a seeded
//! random generator, the 10,000-increment load runner and its per-semantics checks, a
//! fault-injecting in-process network ([`sim`]) and a TCP proxy that kills its
//! connections ([`proxy`]).
#![allow(dead_code)]

pub(crate) mod proxy;
pub(crate) mod sim;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_core::client::{ClientConfig, RetryPolicy};
use rpc_core::transport::Channel;
use rpc_core::{CallContext, CallOptions, Client, RpcError, Semantics, Status};
use tokio::sync::Semaphore;

/// The counter interface, compiled from inline IDL.
pub(crate) mod counter {
    rpc_macros::idl!(
        "counter",
        r#"
        /// A counter whose server records every execution.
        interface Counter version 1 {
            /// Adds one and returns the new value.
            unsigned hyper increment();
            /// Records the execution at once, waits for a permit of the gate, then adds
            /// one and returns the new value.
            unsigned hyper gated_increment();
            /// The current value.
            unsigned hyper current();
        };
        "#
    );
}

#[allow(unused_imports)]
pub(crate) use counter::{CounterClient, CounterServer, COUNTER_INTERFACE};

/// The counter's state, shared by the test and the server.
pub(crate) struct CounterState {
    /// The counter.
    pub(crate) value: AtomicU64,
    /// Handler executions (of `increment` and `gated_increment`), counted separately.
    pub(crate) executions: AtomicU64,
    /// How often each (client id, call id) was executed.
    seen: Mutex<HashMap<(u64, u64), u32>>,
    /// Permits for `gated_increment` (none at first: its handlers wait).
    pub(crate) gate: Semaphore,
}

impl CounterState {
    /// A fresh counter behind an `Arc`.
    pub(crate) fn new() -> Arc<CounterState> {
        Arc::new(CounterState {
            value: AtomicU64::new(0),
            executions: AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
            gate: Semaphore::new(0),
        })
    }

    fn record(&self, ctx: &CallContext) {
        self.executions.fetch_add(1, Ordering::SeqCst);
        *lock(&self.seen)
            .entry((ctx.client_id(), ctx.call_id()))
            .or_default() += 1;
    }

    /// The counter's value.
    pub(crate) fn value(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }

    /// Handler executions so far.
    pub(crate) fn executions(&self) -> u64 {
        self.executions.load(Ordering::SeqCst)
    }

    /// The (client id, call id) pairs executed more than once, with their counts.
    pub(crate) fn executed_twice(&self) -> Vec<((u64, u64), u32)> {
        lock(&self.seen)
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (*k, *n))
            .collect()
    }

    /// Every (client id, call id) executed at least once.
    pub(crate) fn executed(&self) -> std::collections::HashSet<(u64, u64)> {
        lock(&self.seen).keys().copied().collect()
    }

    /// Opens the gate for `n` more `gated_increment` calls.
    pub(crate) fn open_gate(&self, n: usize) {
        self.gate.add_permits(n);
    }
}

impl counter::Counter for Arc<CounterState> {
    async fn increment(&self, ctx: &CallContext) -> Result<u64, Status> {
        self.record(ctx);
        Ok(self.value.fetch_add(1, Ordering::SeqCst) + 1)
    }

    async fn gated_increment(&self, ctx: &CallContext) -> Result<u64, Status> {
        self.record(ctx);
        self.gate
            .acquire()
            .await
            .map_err(|_| Status::Cancelled)?
            .forget();
        Ok(self.value.fetch_add(1, Ordering::SeqCst) + 1)
    }

    async fn current(&self, _ctx: &CallContext) -> Result<u64, Status> {
        Ok(CounterState::value(self))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub(crate) async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// Polls `cond` every 2 ms until it holds, failing the test after `limit`.
pub(crate) async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same decisions.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Every increment of the load test: how many calls.
pub(crate) const TOTAL: u64 = 10_000;
/// Concurrent clients of the load test.
pub(crate) const CLIENTS: usize = 4;
/// Calls in flight per client.
pub(crate) const WINDOW: usize = 64;

/// What the calls of one load run returned.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Calls that returned a value.
    pub(crate) ok: u64,
    /// Calls that ended in `RpcError::Timeout` (the call's own deadline passed).
    pub(crate) timeouts: u64,
    /// Calls that ended in `RpcError::OutcomeUnknown`.
    pub(crate) outcome_unknown: u64,
    /// Any other error (the first few, as text) and their count.
    pub(crate) other: Vec<String>,
    /// Number of other errors.
    pub(crate) other_count: u64,
    /// The values the successful calls returned.
    pub(crate) values: Vec<u64>,
    /// Wall time of the run.
    pub(crate) elapsed: Duration,
    /// Client-side retries (attempts after the first), summed over the clients.
    pub(crate) retries: u64,
}

impl Tally {
    fn add(&mut self, r: Result<u64, RpcError>) {
        match r {
            Ok(v) => {
                self.ok += 1;
                self.values.push(v);
            }
            Err(RpcError::Timeout) => self.timeouts += 1,
            Err(RpcError::OutcomeUnknown(_)) => self.outcome_unknown += 1,
            Err(e) => {
                self.other_count += 1;
                if self.other.len() < 5 {
                    self.other.push(e.to_string());
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.timeouts += other.timeouts;
        self.outcome_unknown += other.outcome_unknown;
        self.other_count += other.other_count;
        self.other.extend(other.other);
        self.other.truncate(5);
        self.values.extend(other.values);
        self.retries += other.retries;
    }

    /// Unknown outcomes of either kind.
    pub(crate) fn unknown(&self) -> u64 {
        self.timeouts + self.outcome_unknown
    }
}

/// A counter client over `channel` whose calls use `semantics` and `retry` (calls may
/// take up to `timeout` in all).
pub(crate) fn counter_client<C: Channel>(
    channel: C,
    semantics: Semantics,
    retry: RetryPolicy,
    timeout: Duration,
) -> CounterClient<C> {
    let config = ClientConfig::default()
        .default_timeout(timeout)
        .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .retry(retry);
    CounterClient::from_client(Client::with_config(channel, config)).with_options(
        CallOptions::new()
            .semantics(semantics)
            .timeout(timeout)
            .retry(retry),
    )
}

/// Runs `per_client` increments on each client, at most [`WINDOW`] in flight per client,
/// all clients at once.
pub(crate) async fn run_increments<C: Channel>(
    clients: Vec<CounterClient<C>>,
    per_client: u64,
) -> Tally {
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut running = tokio::task::JoinSet::new();
                for _ in 0..per_client {
                    if running.len() >= WINDOW {
                        let r = running.join_next().await.expect("a call runs");
                        tally.add(r.expect("call task"));
                    }
                    let c = client.clone();
                    running.spawn(async move { c.increment().await });
                }
                while let Some(r) = running.join_next().await {
                    tally.add(r.expect("call task"));
                }
                tally.retries = client.client().stats().retries;
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await.expect("client task"));
    }
    tally.elapsed = start.elapsed();
    tally
}

/// Checks what `semantics` guarantees after [`TOTAL`] increments that gave `tally`.
pub(crate) fn check_semantics(
    label: &str,
    semantics: Semantics,
    tally: &Tally,
    state: &CounterState,
) {
    let executions = state.executions();
    let value = state.value();
    let twice = state.executed_twice();
    eprintln!(
        "{label} {semantics}: {:?}, ok {}, unknown {} (timeout {}, outcome-unknown {}), other {} {:?}, \
         executions {executions}, value {value}, executed twice {}, client retries {}",
        tally.elapsed,
        tally.ok,
        tally.unknown(),
        tally.timeouts,
        tally.outcome_unknown,
        tally.other_count,
        tally.other,
        twice.len(),
        tally.retries,
    );
    assert_eq!(executions, value, "{label}: every execution adds one");
    let mut values = tally.values.clone();
    values.sort_unstable();
    values.dedup();
    assert_eq!(
        values.len() as u64,
        tally.ok,
        "{label}: two calls returned the same value"
    );
    match semantics {
        Semantics::ExactlyOnce => {
            assert_eq!(
                tally.ok, TOTAL,
                "{label}: every exactly-once call succeeds: {tally:?}"
            );
            assert!(twice.is_empty(), "{label}: executed twice: {twice:?}");
            assert_eq!(executions, TOTAL, "{label}: one execution per call");
            assert_eq!(value, TOTAL, "{label}: final value");
            assert_eq!(values, (1..=TOTAL).collect::<Vec<_>>());
        }
        Semantics::AtLeastOnce => {
            assert_eq!(
                tally.ok, TOTAL,
                "{label}: every at-least-once call succeeds: {:?}",
                tally.other
            );
            assert!(
                executions >= TOTAL,
                "{label}: at least one execution per call"
            );
            assert_eq!(value, executions);
        }
        Semantics::AtMostOnce => {
            assert_eq!(
                tally.other_count, 0,
                "{label}: at-most-once calls succeed or report an unknown outcome: {:?}",
                tally.other
            );
            assert_eq!(tally.ok + tally.unknown(), TOTAL);
            assert!(twice.is_empty(), "{label}: executed twice: {twice:?}");
            assert!(
                executions <= TOTAL,
                "{label}: at most one execution per call"
            );
            assert!(
                executions >= tally.ok,
                "{label}: every success was executed"
            );
        }
    }
}
