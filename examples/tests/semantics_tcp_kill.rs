//! Call semantics over TCP when the connection is killed every 500 calls: a proxy
//! (`support::proxy`) between the clients and the server resets each connection (both
//! sockets, RST) after 500 Call frames went through it, so every client loses its
//! connection with up to 64 calls in flight, several times per run. 10,000 increments
//! from 4 concurrent clients per semantics:
//!
//! * exactly-once: value 10,000 after exactly 10,000 executions, nothing ran twice;
//! * at-least-once: every call succeeds, executions ≥ 10,000 and equal to the value;
//! * at-most-once: nothing ran twice; successes + unknown outcomes = 10,000.

mod support;

use std::time::Duration;

use rpc_core::client::RetryPolicy;
use rpc_core::{Semantics, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use support::proxy::KillProxy;
use support::{
    bounded, check_semantics, counter_client, run_increments, CounterServer, CounterState, CLIENTS,
    TOTAL,
};

const KILL_EVERY: u64 = 500;

async fn killed_connections(semantics: Semantics) {
    let state = CounterState::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::builder()
        .add_service(CounterServer::new(state.clone()))
        .serve(listener)
        .unwrap();
    let proxy = KillProxy::start(server.local_addr(), KILL_EVERY).await;
    // TCP is reliable: no attempt timeout, a call is only in doubt when its connection
    // dies.
    let retry = RetryPolicy::default()
        .max_attempts(20)
        .backoff(Duration::from_millis(1), Duration::from_millis(20));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            counter_client(
                TcpChannel::new(proxy.addr),
                semantics,
                retry,
                // Well below the test bound: a call stranded on a dead connection (see
                // the report on the pending-table race) fails the test in 10 s.
                Duration::from_secs(10),
            )
        })
        .collect();
    let tally = run_increments(clients, TOTAL / CLIENTS as u64).await;
    let s = server.stats();
    eprintln!(
        "proxy: {} calls relayed, {} connections, {} killed; server: {} calls received, \
         {} connections, dedup hits {}, connection errors {}",
        proxy.calls(),
        proxy.connections(),
        proxy.kills(),
        s.calls_received,
        s.connections_accepted,
        s.reply_cache.dedup_hits,
        s.connection_errors,
    );
    assert!(
        // Each client's connections carry at least 500 calls (a kill can land in the
        // middle of a larger read) and a client's last connection may carry fewer.
        proxy.kills() >= TOTAL / KILL_EVERY / 2,
        "the proxy killed a connection every {KILL_EVERY} calls"
    );
    check_semantics("tcp killed every 500 calls", semantics, &tally, &state);
    if semantics == Semantics::AtMostOnce {
        assert!(
            tally.outcome_unknown > 0,
            "killing connections with calls in flight leaves some outcomes unknown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_kill_exactly_once_10000_increments_exactly_10000() {
    bounded(
        "exactly-once run",
        Duration::from_secs(60),
        killed_connections(Semantics::ExactlyOnce),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_kill_at_least_once_10000_increments_all_succeed() {
    bounded(
        "at-least-once run",
        Duration::from_secs(60),
        killed_connections(Semantics::AtLeastOnce),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_kill_at_most_once_10000_increments_never_twice() {
    bounded(
        "at-most-once run",
        Duration::from_secs(60),
        killed_connections(Semantics::AtMostOnce),
    )
    .await
}
