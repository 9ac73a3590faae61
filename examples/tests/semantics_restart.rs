//! Exactly-once across a server restart, over TCP: calls in doubt when the server dies
//! (handlers blocked on a gate, or queued behind them) are not re-run on the new
//! server instance, which has a new incarnation and an empty reply cache: the client
//! notices the new incarnation on reconnect and fails them with
//! `RpcError::ServerRestarted`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rpc_core::client::RetryPolicy;
use rpc_core::server::ServerHandle;
use rpc_core::transport::Listener;
use rpc_core::{RpcError, Semantics, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use std::sync::Arc;
use support::{bounded, counter_client, eventually, CounterServer, CounterState};

const LIMIT: Duration = Duration::from_secs(20);

fn serve(listener: TcpListener, state: &Arc<CounterState>) -> ServerHandle {
    Server::builder()
        .workers(4)
        .add_service(CounterServer::new(state.clone()))
        .serve(listener)
        .unwrap()
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    bounded("rebind the same address", LIMIT, async {
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_doubt_exactly_once_calls_end_server_restarted_never_twice() {
    bounded("scenario", Duration::from_secs(30), async {
        let old = CounterState::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let server = serve(listener, &old);
        let old_incarnation = server.incarnation();
        // Retries long enough to outlast the restart.
        let retry = RetryPolicy::default()
            .max_attempts(500)
            .backoff(Duration::from_millis(1), Duration::from_millis(10));
        let client = counter_client(TcpChannel::new(addr), Semantics::ExactlyOnce, retry, LIMIT);
        assert_eq!(client.increment().await.unwrap(), 1);

        // 4 calls run (blocked on the gate), 6 wait in the queue: all 10 are in doubt.
        let in_doubt: Vec<_> = (0..10)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.gated_increment().await })
            })
            .collect();
        eventually("4 running, 6 queued", LIMIT, || {
            old.executions() == 5 && server.stats().in_flight == 10
        })
        .await;
        let ran_on_old = old.executed();

        drop(server); // abrupt: no graceful shutdown, replies lost with the connection
        let listener = rebind(addr).await;
        let new = CounterState::new();
        let server = serve(listener, &new);
        assert_ne!(server.incarnation(), old_incarnation);

        for call in in_doubt {
            match bounded("in-doubt call", LIMIT, call).await.unwrap() {
                Err(RpcError::ServerRestarted) => {}
                other => panic!("expected ServerRestarted, got {other:?}"),
            }
        }
        assert_eq!(client.client().stats().server_restarted, 10);
        // None of them ran on the new server; none ran twice.
        assert_eq!(new.executions(), 0);
        assert!(new.executed().is_disjoint(&ran_on_old));
        assert!(old.executed_twice().is_empty());
        // The client goes on with the new server.
        assert_eq!(client.increment().await.unwrap(), 1);
        assert_eq!(new.executions(), 1);
        assert!(new.executed().is_disjoint(&ran_on_old));
        eprintln!(
            "client: {:?}; new server: {:?}",
            client.client().stats(),
            server.stats().reply_cache
        );
        server.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_at_least_once_calls_are_resent_to_the_new_server() {
    // The contrast: at-least-once may run again, so in-doubt calls are resent to the
    // new incarnation and succeed there.
    bounded("scenario", Duration::from_secs(30), async {
        let old = CounterState::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let server = serve(listener, &old);
        let retry = RetryPolicy::default()
            .max_attempts(500)
            .backoff(Duration::from_millis(1), Duration::from_millis(10));
        let client = counter_client(TcpChannel::new(addr), Semantics::AtLeastOnce, retry, LIMIT);
        let in_doubt: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.gated_increment().await })
            })
            .collect();
        eventually("4 running", LIMIT, || old.executions() == 4).await;
        drop(server);
        let listener = rebind(addr).await;
        let new = CounterState::new();
        new.open_gate(100);
        let server = serve(listener, &new);
        for call in in_doubt {
            bounded("resent call", LIMIT, call).await.unwrap().unwrap();
        }
        assert_eq!(new.executions(), 4, "each ran again on the new server");
        assert_eq!(client.client().stats().server_restarted, 0);
        server.shutdown().await;
    })
    .await
}
