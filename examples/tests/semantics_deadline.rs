//! Deadlines: a call whose deadline passes while it waits in the server's queue is not
//! executed (counted in `ServerStats::deadline_expired`); one that arrives with no
//! budget left is refused at once.

mod support;

use std::time::Duration;

use bytes::Bytes;
use rpc_core::client::RetryPolicy;
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::transport::{memory, Channel, FrameReceiver};
use rpc_core::{CallOptions, RpcError, Semantics, Server, Status};
use support::{
    bounded, counter_client, eventually, CounterServer, CounterState, COUNTER_INTERFACE,
};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_expired_while_queued_is_not_executed() {
    bounded("scenario", LIMIT, async {
        let state = CounterState::new();
        let (channel, listener) = memory::endpoint(64);
        let server = Server::builder()
            .workers(1)
            .add_service(CounterServer::new(state.clone()))
            .serve(listener)
            .unwrap();
        let client = counter_client(
            channel.clone(),
            Semantics::ExactlyOnce,
            RetryPolicy::default(),
            LIMIT,
        );
        let blocker = {
            let c = client.clone();
            tokio::spawn(async move { c.gated_increment().await })
        };
        eventually("worker blocked", LIMIT, || state.executions() == 1).await;

        // Through the client: 100 ms budget, queued behind the blocked worker.
        let short = client.with_options(
            CallOptions::new()
                .semantics(Semantics::ExactlyOnce)
                .timeout(Duration::from_millis(100)),
        );
        match short.increment().await {
            Err(RpcError::Timeout) => {}
            other => panic!("expected Timeout, got {other:?}"),
        }

        // By hand (no Cancel follows): a 50 ms budget, then the worker frees up later.
        let procedure = COUNTER_INTERFACE
            .procedures
            .iter()
            .find(|p| p.name == "increment")
            .unwrap()
            .number;
        let mut conn = channel.connect().await.unwrap();
        let mut h = FrameHeader::call(
            0x77,
            1,
            COUNTER_INTERFACE.id,
            COUNTER_INTERFACE.version,
            procedure,
        );
        h.set_semantics(Semantics::ExactlyOnce);
        h.deadline_us = 50_000;
        conn.sender.send(Frame::new(h, Bytes::new())).await.unwrap();
        // And one with no budget left at all: refused on arrival.
        let mut late = h;
        late.call_id = 2;
        late.deadline_us = 0;
        conn.sender
            .send(Frame::new(late, Bytes::new()))
            .await
            .unwrap();
        let first = bounded("refusal", LIMIT, conn.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.header.call_id, first.header.kind),
            (2, FrameKind::Status)
        );
        assert_eq!(
            rpc_core::xdr::from_bytes::<Status>(&first.payload).unwrap(),
            Status::DeadlineExceeded
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            state.executions(),
            1,
            "nothing ran behind the blocked worker"
        );

        state.open_gate(10);
        assert_eq!(blocker.await.unwrap().unwrap(), 1);
        let answer = bounded("expired call answered", LIMIT, conn.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (answer.header.call_id, answer.header.kind),
            (1, FrameKind::Status)
        );
        assert_eq!(
            rpc_core::xdr::from_bytes::<Status>(&answer.payload).unwrap(),
            Status::DeadlineExceeded
        );
        eventually("server idle", LIMIT, || server.stats().in_flight == 0).await;
        let s = server.stats();
        eprintln!(
            "deadline_expired {}, cancelled_skipped {}, executions {}",
            s.deadline_expired,
            s.cancelled_skipped,
            state.executions()
        );
        // The client's call (expired in the queue; its Cancel came too, but the deadline
        // is checked first), the hand-sent one, and the one with no budget.
        assert_eq!(s.deadline_expired, 3);
        assert_eq!(state.executions(), 1, "no expired call was executed");
        assert_eq!(state.value(), 1);
        // The expired exactly-once call was forgotten by the reply cache, not cached
        // as done: a retry with the same id would run it (it never ran).
        assert_eq!(
            s.reply_cache.entries, 1,
            "only the blocker's reply is cached"
        );
    })
    .await
}
