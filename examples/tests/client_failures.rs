//! How the client fails, over real loopback sockets: a reply that arrives in the pause
//! between two attempts ends the call (it is not thrown away and the call does not run
//! twice); a dead server is reported at once, with the same error over TCP and UDP;
//! connection attempts cut short by the attempt timeout are counted; a blocking call
//! made inside a tokio runtime runs instead of panicking.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rpc_core::client::{BlockingRuntime, ClientConfig, RetryPolicy};
use rpc_core::transport::{Channel, Listener};
use rpc_core::{CallOptions, Client, RpcError, Semantics, Server, UnreachableCause};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::UdpChannel;
use support::{bounded, eventually, CounterClient, CounterServer, CounterState};

const LIMIT: Duration = Duration::from_secs(20);

/// The bound asserted for a dead server's error. The target on loopback is under 50 ms
/// (a refused connect takes well under a millisecond over both transports); the
/// assertion is generous so a loaded test machine does not make it flaky. That UDP sees
/// the refusal on the first Init's ICMP error, without waiting for a retransmission, is
/// pinned by counting datagrams in rpc-transport-udp's driver tests.
const DEAD_SERVER_BOUND: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_arriving_in_the_retry_pause_ends_the_call_and_runs_it_once() {
    bounded("scenario", LIMIT, async {
        let state = CounterState::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let server = Server::builder()
            .workers(2)
            .add_service(CounterServer::new(state.clone()))
            .serve(listener)
            .unwrap();
        // Attempts time out after 40 ms; the pause before the second attempt is at least
        // 300 ms (a 600 ms backoff jittered to 50–100 %). The reply comes at ~120 ms:
        // after the first attempt timed out, before the second is sent.
        let retry = RetryPolicy::default()
            .attempt_timeout(Some(Duration::from_millis(40)))
            .backoff(Duration::from_millis(600), Duration::from_secs(1));
        let client = CounterClient::from_client(Client::with_config(
            TcpChannel::new(addr),
            ClientConfig::default().retry(retry),
        ));
        client.client().connect().await.unwrap();
        let call = client.with_options(
            CallOptions::new()
                .semantics(Semantics::AtLeastOnce)
                .timeout(Duration::from_secs(10)),
        );
        let gate = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(120)).await;
            gate.open_gate(1);
        });
        let value = call
            .gated_increment()
            .await
            .expect("the first reply ends the call");
        assert_eq!(value, 1);
        assert_eq!(state.executions(), 1, "the server ran the call once");
        let stats = client.client().stats();
        assert_eq!(stats.retries, 0, "no second attempt was sent: {stats:?}");
        assert_eq!(
            stats.unmatched_replies, 0,
            "no reply thrown away: {stats:?}"
        );
        server.shutdown().await;
    })
    .await;
}

/// A loopback port with nothing listening on it (for `udp`, no UDP socket; else TCP).
fn dead_port(udp: bool) -> SocketAddr {
    if udp {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    } else {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    }
}

/// Calls a dead server with default options, twice (the second call finds the endpoint
/// in its reconnect backoff); returns the errors and the longest time one took.
async fn call_dead<C: Channel>(channel: C) -> (Vec<RpcError>, Duration) {
    let client = CounterClient::new(channel);
    let mut errors = Vec::new();
    let mut longest = Duration::ZERO;
    for _ in 0..2 {
        let start = Instant::now();
        let result = client.increment().await;
        longest = longest.max(start.elapsed());
        errors.push(result.expect_err("nothing listens there"));
    }
    // A clone with its own options does not sleep through the backoff either.
    let never = client.with_options(CallOptions::new().retry(RetryPolicy::never()));
    let start = Instant::now();
    errors.push(never.increment().await.expect_err("nothing listens there"));
    longest = longest.max(start.elapsed());
    let stats = client.client().stats();
    assert!(stats.connect_failures >= 1, "{stats:?}");
    assert_eq!(stats.connects, 0, "{stats:?}");
    (errors, longest)
}

fn is_refused(e: &RpcError) -> bool {
    e.unreachable_cause() == Some(UnreachableCause::Refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_server_is_reported_at_once_and_alike_over_tcp_and_udp() {
    bounded("scenario", LIMIT, async {
        let (tcp, tcp_time) = call_dead(TcpChannel::new(dead_port(false))).await;
        let (udp, udp_time) = call_dead(UdpChannel::new(dead_port(true))).await;
        // Every call (the first, the one in the backoff, the clone that never retries)
        // names the refusal, the same way on both transports.
        for e in tcp.iter().chain(&udp) {
            assert!(is_refused(e), "expected Unreachable(refused), got {e:?}");
        }
        eprintln!("dead server: slowest error over TCP {tcp_time:?}, over UDP {udp_time:?}");
        assert!(tcp_time < DEAD_SERVER_BOUND, "TCP took {tcp_time:?}");
        assert!(udp_time < DEAD_SERVER_BOUND, "UDP took {udp_time:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_server_retries_a_refused_endpoint_until_it_comes() {
    bounded("scenario", LIMIT, async {
        let addr = dead_port(false);
        let retry = RetryPolicy::default()
            .wait_for_server(true)
            .max_attempts(100)
            .backoff(Duration::from_millis(5), Duration::from_millis(20));
        let client = CounterClient::from_client(Client::with_config(
            TcpChannel::new(addr),
            ClientConfig::default()
                .retry(retry)
                .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(10)),
        ));
        let call = {
            let c = client.clone();
            tokio::spawn(async move { c.increment().await })
        };
        eventually("a refused attempt", LIMIT, || {
            client.client().stats().connect_failures >= 1
        })
        .await;
        let state = CounterState::new();
        let server = Server::builder()
            .workers(1)
            .add_service(CounterServer::new(state.clone()))
            .serve(TcpListener::bind(addr).await.unwrap())
            .unwrap();
        assert_eq!(call.await.unwrap().unwrap(), 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_attempts_cut_short_by_the_attempt_timeout_are_counted() {
    bounded("scenario", LIMIT, async {
        // A UDP socket that never answers: every handshake times out.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let retry = RetryPolicy::default()
            .max_attempts(3)
            .attempt_timeout(Some(Duration::from_millis(30)))
            .backoff(Duration::from_millis(1), Duration::from_millis(2));
        let client = CounterClient::from_client(Client::with_config(
            UdpChannel::new(addr),
            ClientConfig::default()
                .retry(retry)
                .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(2)),
        ))
        .with_options(CallOptions::new().timeout(Duration::from_secs(5)));
        let e = client.increment().await.expect_err("nobody answers");
        assert_eq!(
            e.unreachable_cause(),
            Some(UnreachableCause::ConnectTimedOut),
            "expected a timed-out connect, got {e:?}"
        );
        let stats = client.client().stats();
        assert_eq!(stats.connect_failures, 3, "{stats:?}");
        assert_eq!(stats.connects, 0, "{stats:?}");
        assert_eq!(stats.timeouts, 0, "the call's own deadline never passed");
        drop(silent);
    })
    .await;
}

#[test]
fn blocking_call_inside_a_runtime_runs_instead_of_panicking() {
    let blocking = BlockingRuntime::new().unwrap();
    // Inside a runtime's block_on, where tokio would panic on a nested block_on.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inside = rt.block_on(async {
        blocking.call(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, RpcError>(7)
        })
    });
    assert_eq!(inside.unwrap(), 7);
    // And from a plain thread.
    assert_eq!(blocking.call(async { Ok::<_, RpcError>(8) }).unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_backoff_is_per_endpoint_and_visible() {
    bounded("scenario", LIMIT, async {
        let client = CounterClient::from_client(Client::with_config(
            TcpChannel::new(dead_port(false)),
            ClientConfig::default()
                .reconnect_backoff(Duration::from_secs(5), Duration::from_secs(10)),
        ));
        assert_eq!(client.client().endpoint_stats()[0].reconnect_in, None);
        client.increment().await.expect_err("nothing listens there");
        let backoff = client.client().endpoint_stats()[0].reconnect_in;
        assert!(
            backoff.is_some_and(|d| d > Duration::from_secs(1)),
            "{backoff:?}"
        );
        // A clone with other options shares the endpoint, and so its backoff, but does
        // not sleep through it: it fails at once.
        let start = Instant::now();
        let e = client
            .with_options(CallOptions::new().retry(RetryPolicy::never()))
            .increment()
            .await
            .expect_err("still nothing there");
        assert!(is_refused(&e), "{e:?}");
        assert!(start.elapsed() < DEAD_SERVER_BOUND);
        let stats = &client.client().endpoint_stats()[0];
        assert_eq!(
            stats.connect_failures, 1,
            "the clone made no attempt: {stats:?}"
        );
        assert_eq!(
            stats.reconnect_backoff,
            Duration::from_secs(10),
            "{stats:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_went_away_fails_a_call_that_may_not_retry_at_once() {
    bounded("scenario", LIMIT, async {
        let state = CounterState::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let server = Server::builder()
            .add_service(CounterServer::new(state.clone()))
            .serve(listener)
            .unwrap();
        let client = CounterClient::from_client(Client::with_config(
            TcpChannel::new(addr),
            ClientConfig::default()
                .reconnect_backoff(Duration::from_secs(5), Duration::from_secs(10)),
        ));
        assert_eq!(client.increment().await.unwrap(), 1);
        server.shutdown().await;
        // The endpoint answered once, so a call with retries keeps trying within its
        // policy; one that may not retry is not held in the reconnect backoff.
        let never = client.with_options(
            CallOptions::new()
                .retry(RetryPolicy::never())
                .timeout(Duration::from_secs(10)),
        );
        for _ in 0..3 {
            let start = Instant::now();
            let e = never.increment().await.expect_err("the server is gone");
            assert!(
                // (The first call may go out on the connection before its close is seen.)
                matches!(e, RpcError::Unreachable(_) | RpcError::OutcomeUnknown(_)),
                "{e:?}"
            );
            assert!(start.elapsed() < DEAD_SERVER_BOUND, "{:?}", start.elapsed());
        }
        let stats = client.client().stats();
        assert_eq!(stats.timeouts, 0, "{stats:?}");
    })
    .await;
}
