//! The client and server runtimes end to end over the in-process transport, with a
//! hand-written service shaped like generated code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::client::{CallOptions, ClientConfig, RetryPolicy};
use rpc_core::server::{bad_arguments, encode_result, Service, ServiceFuture};
use rpc_core::transport::memory::{self, MemoryChannel};
use rpc_core::xdr::XdrReader;
use rpc_core::{CallContext, Client, InterfaceInfo, ProcedureInfo, RpcError, Server, Status};
use tokio::sync::Semaphore;

const fn proc(name: &'static str, number: u32, oneway: bool) -> ProcedureInfo {
    ProcedureInfo {
        name,
        number,
        oneway,
        idempotent: false,
    }
}

static ADD: ProcedureInfo = proc("add", 1, false);
static WAIT: ProcedureInfo = proc("wait", 2, false);
static BOOM: ProcedureInfo = proc("boom", 3, false);
static LOG: ProcedureInfo = proc("log", 4, true);
static RELAY: ProcedureInfo = proc("relay", 5, false);
static MISSING: ProcedureInfo = proc("missing", 99, false);
static PROCS: [ProcedureInfo; 5] = [ADD, WAIT, BOOM, LOG, RELAY];
static TEST_V1: InterfaceInfo = InterfaceInfo {
    name: "Test",
    id: 0x2000_0001,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};
static TEST_V3: InterfaceInfo = InterfaceInfo {
    version: 3,
    ..TEST_V1
};
static TEST_V7: InterfaceInfo = InterfaceInfo {
    version: 7,
    ..TEST_V1
};
static OTHER: InterfaceInfo = InterfaceInfo {
    name: "Other",
    id: 0x3000_0000,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

/// A service whose `wait` procedure blocks until the test releases a permit.
struct TestService {
    gate: Semaphore,
    executions: AtomicU64,
    logged: AtomicU64,
    /// `relay` calls `add` on the same server through this client.
    relay_to: std::sync::OnceLock<Client<MemoryChannel>>,
}

impl Default for TestService {
    fn default() -> Self {
        TestService {
            gate: Semaphore::new(0),
            executions: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            relay_to: std::sync::OnceLock::new(),
        }
    }
}

struct Svc(Arc<TestService>, &'static InterfaceInfo);

impl Service for Svc {
    fn info(&self) -> &'static InterfaceInfo {
        self.1
    }

    fn call(&self, procedure: u32, ctx: CallContext, args: Bytes) -> ServiceFuture {
        let svc = self.0.clone();
        let mut r = XdrReader::new(&args);
        match procedure {
            1 => {
                let decoded = (|| {
                    let a = r.get_i32()?;
                    let b = r.get_i32()?;
                    r.finish()?;
                    Ok((a, b))
                })();
                let (a, b) = match decoded {
                    Ok(v) => v,
                    Err(e) => return Box::pin(async move { Err(bad_arguments(e)) }),
                };
                Box::pin(async move {
                    svc.executions.fetch_add(1, Ordering::SeqCst);
                    let _ = ctx.call_id();
                    encode_result(|w| {
                        w.put_i32(a.wrapping_add(b));
                        Ok(())
                    })
                })
            }
            2 => Box::pin(async move {
                svc.executions.fetch_add(1, Ordering::SeqCst);
                let permit = svc.gate.acquire().await.map_err(|_| Status::Cancelled)?;
                permit.forget();
                encode_result(|w| {
                    w.put_u64(ctx.call_id());
                    Ok(())
                })
            }),
            3 => Box::pin(async move {
                if svc.executions.load(Ordering::SeqCst) < u64::MAX {
                    panic!("handler exploded");
                }
                Err(Status::application(1, "unreachable"))
            }),
            4 => Box::pin(async move {
                svc.logged.fetch_add(1, Ordering::SeqCst);
                Ok(Bytes::new())
            }),
            5 => Box::pin(async move {
                let client = svc
                    .relay_to
                    .get()
                    .cloned()
                    .ok_or_else(|| Status::application(2, "no relay client"))?;
                let sum = add(&client, 40, 2)
                    .await
                    .map_err(|e| Status::application(3, e.to_string()))?;
                encode_result(|w| {
                    w.put_i32(sum);
                    Ok(())
                })
            }),
            other => Box::pin(async move { Err(Status::UnknownProcedure { procedure: other }) }),
        }
    }
}

struct Fixture {
    svc: Arc<TestService>,
    channel: MemoryChannel,
    server: rpc_core::server::ServerHandle,
}

fn start(workers: usize, queue_depth: usize) -> Fixture {
    start_with(workers, queue_depth, None)
}

fn start_with(workers: usize, queue_depth: usize, idle: Option<Duration>) -> Fixture {
    let svc = Arc::new(TestService::default());
    let (channel, listener) = memory::endpoint(1024);
    let server = Server::builder()
        .idle_timeout(idle)
        .workers(workers)
        .queue_depth(queue_depth)
        .add_service(Svc(svc.clone(), &TEST_V1))
        .add_service(Svc(svc.clone(), &TEST_V3))
        .serve(listener)
        .expect("server starts");
    Fixture {
        svc,
        channel,
        server,
    }
}

async fn add(client: &Client<MemoryChannel>, a: i32, b: i32) -> Result<i32, RpcError> {
    client
        .call(
            &TEST_V1,
            &ADD,
            &CallOptions::new(),
            |w| {
                w.put_i32(a);
                w.put_i32(b);
                Ok(())
            },
            |r| r.get_i32(),
        )
        .await
}

async fn wait(client: &Client<MemoryChannel>, opts: &CallOptions) -> Result<u64, RpcError> {
    client
        .call(&TEST_V1, &WAIT, opts, |_| Ok(()), |r| r.get_u64())
        .await
}

async fn call_on(
    client: &Client<MemoryChannel>,
    iface: &'static InterfaceInfo,
    p: &'static ProcedureInfo,
) -> Result<(), RpcError> {
    client
        .call(iface, p, &CallOptions::new(), |_| Ok(()), |_| Ok(()))
        .await
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_return_results() {
    let f = start(4, 64);
    let client = Client::new(f.channel.clone());
    assert_eq!(add(&client, 2, 3).await.unwrap(), 5);
    assert_eq!(add(&client, i32::MAX, 1).await.unwrap(), i32::MIN);
    assert_eq!(f.svc.executions.load(Ordering::SeqCst), 2);
    let stats = client.stats();
    assert_eq!((stats.calls, stats.failures, stats.connects), (2, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_on_one_connection() {
    let f = start(8, 2048);
    let client = Client::new(f.channel.clone());
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move { (i, add(&c, i, 1000 * i).await) }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.unwrap(), i + 1000 * i);
    }
    assert_eq!(
        client.stats().connects,
        1,
        "all calls shared one connection"
    );
    assert_eq!(f.server.stats().connections_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_for_unknown_interface_version_and_procedure() {
    let f = start(2, 16);
    let client = Client::new(f.channel.clone());
    match call_on(&client, &OTHER, &ADD).await {
        Err(RpcError::UnknownInterface { id }) => assert_eq!(id, 0x3000_0000),
        other => panic!("expected UnknownInterface, got {other:?}"),
    }
    match call_on(&client, &TEST_V7, &ADD).await {
        Err(RpcError::VersionMismatch { low, high }) => assert_eq!((low, high), (1, 3)),
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    match call_on(&client, &TEST_V1, &MISSING).await {
        Err(RpcError::UnknownProcedure { procedure }) => assert_eq!(procedure, 99),
        other => panic!("expected UnknownProcedure, got {other:?}"),
    }
    // `add` with one argument instead of two: the server cannot decode it.
    let r = client
        .call(
            &TEST_V1,
            &ADD,
            &CallOptions::new(),
            |w| {
                w.put_i32(1);
                Ok(())
            },
            |r| r.get_i32(),
        )
        .await;
    match r {
        Err(RpcError::BadArguments { message }) => {
            assert!(message.contains("truncated"), "{message}")
        }
        other => panic!("expected BadArguments, got {other:?}"),
    }
    let s = f.server.stats();
    assert_eq!(
        (
            s.unknown_interface,
            s.version_mismatch,
            s.unknown_procedure,
            s.bad_arguments
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(f.svc.executions.load(Ordering::SeqCst), 0, "no handler ran");
    // The connection survived all of that.
    assert_eq!(add(&client, 1, 1).await.unwrap(), 2);
    assert_eq!(client.stats().connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_is_an_error_reply_and_the_worker_survives() {
    let f = start(1, 16);
    let client = Client::new(f.channel.clone());
    for _ in 0..3 {
        match call_on(&client, &TEST_V1, &BOOM).await {
            Err(RpcError::Internal { message }) => {
                assert!(message.contains("handler exploded"), "{message}")
            }
            other => panic!("expected Internal, got {other:?}"),
        }
        // The single worker is still alive.
        assert_eq!(add(&client, 20, 22).await.unwrap(), 42);
    }
    assert_eq!(f.server.stats().handler_panics, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_handlers_never_exceed_workers_and_queued_calls_all_run() {
    let (workers, calls) = (3, 12);
    let f = start(workers, 64);
    let client = Client::new(f.channel.clone());
    let mut waiting = Vec::new();
    for _ in 0..calls {
        let c = client.clone();
        waiting.push(tokio::spawn(
            async move { wait(&c, &CallOptions::new()).await },
        ));
    }
    eventually("every call admitted", || {
        f.server.stats().in_flight == calls as u64
    })
    .await;
    eventually("the workers busy", || {
        f.svc.executions.load(Ordering::SeqCst) == workers as u64
    })
    .await;
    // Released one at a time: each release lets exactly one more handler start.
    for started in workers + 1..=calls {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            f.svc.executions.load(Ordering::SeqCst),
            started as u64 - 1,
            "no more than {workers} handlers run at once"
        );
        f.svc.gate.add_permits(1);
        eventually("the next queued call starts", || {
            f.svc.executions.load(Ordering::SeqCst) == started as u64
        })
        .await;
    }
    f.svc.gate.add_permits(workers);
    for t in waiting {
        t.await.unwrap().expect("every queued call completes");
    }
    assert_eq!(f.server.stats().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_calling_its_own_server_gets_a_second_worker() {
    let f = start(2, 16);
    let client = Client::new(f.channel.clone());
    f.svc
        .relay_to
        .set(client.clone())
        .unwrap_or_else(|_| panic!("set once"));
    for _ in 0..5 {
        let sum = tokio::time::timeout(
            Duration::from_secs(10),
            client.call(
                &TEST_V1,
                &RELAY,
                &CallOptions::new(),
                |_| Ok(()),
                |r| r.get_i32(),
            ),
        )
        .await
        .expect("the nested call does not wait behind its caller")
        .expect("relay answers");
        assert_eq!(sum, 42);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_overloaded_then_recovers() {
    let (workers, depth) = (2, 4);
    let f = start(workers, depth);
    // No automatic retries: the point is that the server refuses at once.
    let client = Client::with_config(
        f.channel.clone(),
        ClientConfig::default().retry(RetryPolicy::never()),
    );
    // Occupy both workers and fill the queue.
    let mut blocked = Vec::new();
    for _ in 0..workers + depth {
        let c = client.clone();
        blocked.push(tokio::spawn(
            async move { wait(&c, &CallOptions::new()).await },
        ));
        // Keep the order deterministic: each call is queued before the next is sent.
        let target = blocked.len() as u64;
        eventually("call queued", || f.server.stats().in_flight == target).await;
    }
    eventually("workers busy", || {
        f.svc.executions.load(Ordering::SeqCst) == workers as u64
    })
    .await;
    for _ in 0..50 {
        match add(&client, 1, 2).await {
            Err(RpcError::Overloaded) => {}
            other => panic!("expected Overloaded, got {other:?}"),
        }
    }
    let s = f.server.stats();
    assert_eq!(s.overloaded, 50);
    assert_eq!(
        s.in_flight,
        (workers + depth) as u64,
        "refused calls take no queue space"
    );
    f.svc.gate.add_permits(workers + depth);
    for t in blocked {
        t.await.unwrap().expect("queued call completes");
    }
    assert_eq!(add(&client, 1, 2).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_calls_and_refuses_new_ones() {
    let f = start(2, 16);
    let client = Client::new(f.channel.clone());
    let mut in_flight = Vec::new();
    for _ in 0..5 {
        let c = client.clone();
        in_flight.push(tokio::spawn(
            async move { wait(&c, &CallOptions::new()).await },
        ));
    }
    eventually("calls in flight", || f.server.stats().in_flight == 5).await;
    let svc = f.svc.clone();
    let shutdown = tokio::spawn(f.server.shutdown());
    // Shutdown is waiting for the five calls; a new call is refused.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for in-flight calls"
    );
    match add(&client, 1, 1).await {
        Err(RpcError::ShuttingDown) => {}
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    svc.gate.add_permits(5);
    for t in in_flight {
        t.await
            .unwrap()
            .expect("in-flight call completes during shutdown");
    }
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown finishes")
        .unwrap();
    assert_eq!(svc.executions.load(Ordering::SeqCst), 5);
    // The server is gone: the connection was closed.
    assert!(add(&client, 1, 1).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timeout_and_late_reply() {
    let f = start(2, 16);
    let client = Client::new(f.channel.clone());
    let opts = CallOptions::new().timeout(Duration::from_millis(30));
    match wait(&client, &opts).await {
        Err(RpcError::Timeout) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(
        client.stats().in_flight,
        0,
        "a timed-out call leaves no pending entry"
    );
    f.svc.gate.add_permits(1);
    eventually("late reply discarded", || {
        client.stats().unmatched_replies == 1
    })
    .await;
    assert_eq!(client.stats().timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_deadline_is_not_executed() {
    let f = start(1, 16);
    let client = Client::new(f.channel.clone());
    // One call occupies the only worker; a second one with a short deadline expires in
    // the queue and must not run.
    let c = client.clone();
    let first = tokio::spawn(async move { wait(&c, &CallOptions::new()).await });
    eventually("worker busy", || {
        f.svc.executions.load(Ordering::SeqCst) == 1
    })
    .await;
    let c = client.clone();
    let short = tokio::spawn(async move {
        wait(&c, &CallOptions::new().timeout(Duration::from_millis(20))).await
    });
    eventually("second call queued", || f.server.stats().in_flight == 2).await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    f.svc.gate.add_permits(1);
    first.await.unwrap().unwrap();
    assert!(matches!(short.await.unwrap(), Err(RpcError::Timeout)));
    eventually("deadline counted", || {
        f.server.stats().deadline_expired == 1
    })
    .await;
    assert_eq!(
        f.svc.executions.load(Ordering::SeqCst),
        1,
        "expired call never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_returns_without_a_reply() {
    let f = start(2, 16);
    let client = Client::new(f.channel.clone());
    for _ in 0..10 {
        call_on(&client, &TEST_V1, &LOG).await.unwrap();
    }
    eventually("oneway calls executed", || {
        f.svc.logged.load(Ordering::SeqCst) == 10
    })
    .await;
    assert_eq!(client.stats().in_flight, 0);
    assert_eq!(add(&client, 1, 1).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_and_reconnect() {
    let (channel, listener) = memory::endpoint(16);
    drop(listener);
    let client = Client::with_config(
        channel,
        ClientConfig::default()
            .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(5))
            .retry(RetryPolicy::default().max_attempts(3)),
    );
    match add(&client, 1, 1).await {
        Err(RpcError::Unreachable(_)) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // Unreachable proves the call never ran, so it was retried: three attempts.
    assert_eq!(client.stats().connect_failures, 3);
    assert_eq!(client.stats().retries, 2);

    // A client whose connection drops fails its at-most-once calls in flight with an
    // unknown outcome (never resent), then reconnects for the next call.
    let f = start(2, 16);
    let client = Client::new(f.channel.clone());
    assert_eq!(add(&client, 1, 1).await.unwrap(), 2);
    let c = client.clone();
    let stuck = tokio::spawn(async move { wait(&c, &CallOptions::new()).await });
    eventually("call in flight", || client.stats().in_flight == 1).await;
    client.disconnect();
    assert!(matches!(
        stuck.await.unwrap(),
        Err(RpcError::OutcomeUnknown(_))
    ));
    assert_eq!(client.stats().outcome_unknown, 1);
    assert_eq!(add(&client, 2, 2).await.unwrap(), 4);
    assert_eq!(client.stats().connects, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_busy_ones_are_not() {
    let f = start_with(2, 16, Some(Duration::from_millis(50)));
    let client = Client::new(f.channel.clone());
    // A call that outlives the idle timeout keeps its connection open.
    let c = client.clone();
    let slow = tokio::spawn(async move { wait(&c, &CallOptions::new()).await });
    eventually("call running", || {
        f.svc.executions.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(f.server.stats().idle_closed, 0, "busy connection kept");
    f.svc.gate.add_permits(1);
    slow.await
        .unwrap()
        .expect("slow call answered on the same connection");
    // Once idle, it is closed, and the client reconnects for its next call.
    eventually("idle connection closed", || {
        f.server.stats().idle_closed == 1
    })
    .await;
    eventually("client saw the close", || {
        f.server.stats().connections_open == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(add(&client, 1, 2).await.unwrap(), 3);
    assert_eq!(client.stats().connects, 2);
}
