//! Async call handles: calls started now and collected later, in any order; and
//! cancellation of queued calls, which then do not run on the server.

mod support;

use std::time::Duration;

use rpc_core::client::{CallHandle, RetryPolicy};
use rpc_core::transport::memory;
use rpc_core::{RpcError, Semantics, Server};
use support::{bounded, counter_client, eventually, CounterServer, CounterState, Rng};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_thousand_calls_awaited_in_random_order() {
    bounded("scenario", LIMIT, async {
        let state = CounterState::new();
        let (channel, listener) = memory::endpoint(1024);
        let _server = Server::builder()
            .add_service(CounterServer::new(state.clone()))
            .serve(listener)
            .unwrap();
        let client = counter_client(
            channel,
            Semantics::ExactlyOnce,
            RetryPolicy::default(),
            LIMIT,
        );
        let mut handles: Vec<CallHandle<u64>> = (0..1_000)
            .map(|_| {
                let c = client.clone();
                CallHandle::spawn(async move { c.increment().await })
            })
            .collect();
        Rng::new(0x0a11_0c01).shuffle(&mut handles);
        let mut values = Vec::new();
        for h in handles {
            values.push(h.await.expect("call succeeds"));
        }
        values.sort_unstable();
        assert_eq!(values, (1..=1_000).collect::<Vec<u64>>());
        assert_eq!(state.executions(), 1_000);
        assert!(state.executed_twice().is_empty());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_cancelled_queued_calls_do_not_execute() {
    bounded("scenario", LIMIT, async {
        const QUEUED: usize = 40;
        let state = CounterState::new();
        let (channel, listener) = memory::endpoint(1024);
        let server = Server::builder()
            .workers(2)
            .add_service(CounterServer::new(state.clone()))
            .serve(listener)
            .unwrap();
        let client = counter_client(
            channel,
            Semantics::ExactlyOnce,
            RetryPolicy::default(),
            LIMIT,
        );
        // Both workers blocked on the gate.
        let blockers: Vec<_> = (0..2)
            .map(|_| {
                let c = client.clone();
                CallHandle::spawn(async move { c.gated_increment().await })
            })
            .collect();
        eventually("workers blocked", LIMIT, || state.executions() == 2).await;
        // 40 calls queue behind them.
        let mut queued: Vec<_> = (0..QUEUED)
            .map(|_| {
                let c = client.clone();
                CallHandle::spawn(async move { c.gated_increment().await })
            })
            .collect();
        eventually("calls queued", LIMIT, || {
            server.stats().in_flight == 2 + QUEUED as u64
        })
        .await;
        // Cancel half: a quarter with cancel(), a quarter by dropping the handle.
        let kept = queued.split_off(QUEUED / 2);
        let (by_cancel, by_drop) = {
            let mut q = queued;
            let dropped = q.split_off(QUEUED / 4);
            (q, dropped)
        };
        for h in &by_cancel {
            h.cancel();
        }
        drop(by_drop);
        eventually("cancels reach the server", LIMIT, || {
            server.stats().cancels_received == QUEUED as u64 / 2
        })
        .await;
        assert_eq!(
            state.executions(),
            2,
            "nothing more ran while the gate was shut"
        );

        state.open_gate(2 + QUEUED);
        for h in blockers {
            h.await.expect("blocker finishes");
        }
        for h in kept {
            h.await.expect("a call that was not cancelled runs");
        }
        for h in by_cancel {
            match h.await {
                Err(RpcError::Cancelled) => {}
                other => panic!("expected Cancelled, got {other:?}"),
            }
        }
        eventually("server idle", LIMIT, || server.stats().in_flight == 0).await;
        let s = server.stats();
        eprintln!(
            "cancelled_skipped {}, cancels_received {}, executions {}, client {:?}",
            s.cancelled_skipped,
            s.cancels_received,
            state.executions(),
            client.client().stats()
        );
        assert_eq!(s.cancelled_skipped, QUEUED as u64 / 2);
        assert_eq!(state.executions(), 2 + QUEUED as u64 / 2);
        assert_eq!(state.value(), 2 + QUEUED as u64 / 2);
        assert_eq!(client.client().stats().cancels_sent, QUEUED as u64 / 2);
    })
    .await
}
