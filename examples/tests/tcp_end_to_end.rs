//! End-to-end acceptance tests over TCP on 127.0.0.1 with the generated stubs: the
//! calculator from the build script (`proto/calc.idl`) and a test interface from the
//! proc-macro (`idl!`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::calc::{CalcClient, CalcServer};
use examples::calc_service::CalcService;
use rpc_core::frame::{FrameHeader, HEADER_LEN};
use rpc_core::server::ServerHandle;
use rpc_core::{CallContext, CallOptions, Client, RpcError, Server, Status};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

mod gate {
    rpc_macros::idl!(
        "gate",
        r#"
        /// A service whose calls wait for the test to open a gate.
        interface Gate version 1 {
            /// Waits for a permit, then returns `id`.
            int pass(int id);
            /// Returns at once.
            int quick(int id);
        };
        "#
    );
}

use gate::{GateClient, GateServer};

struct GateService {
    permits: Semaphore,
    started: AtomicU64,
}

impl gate::Gate for Arc<GateService> {
    async fn pass(&self, _ctx: &CallContext, id: i32) -> Result<i32, Status> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.permits
            .acquire()
            .await
            .map_err(|_| Status::Cancelled)?
            .forget();
        Ok(id)
    }

    async fn quick(&self, _ctx: &CallContext, id: i32) -> Result<i32, Status> {
        Ok(id)
    }
}

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn calc_server() -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Server::builder()
        .workers(8)
        .queue_depth(4096)
        .add_service(CalcServer::new(CalcService::new()))
        .serve(listener)
        .unwrap()
}

async fn gate_server(workers: usize, depth: usize) -> (ServerHandle, Arc<GateService>) {
    let svc = Arc::new(GateService {
        permits: Semaphore::new(0),
        started: AtomicU64::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::builder()
        .workers(workers)
        .queue_depth(depth)
        .add_service(GateServer::new(svc.clone()))
        .serve(listener)
        .unwrap();
    (server, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_over_one_tcp_connection() {
    let server = calc_server().await;
    let calc = CalcClient::new(TcpChannel::new(server.local_addr()));
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let calc = calc.clone();
            tokio::spawn(async move { (i, calc.add(i, 7 * i).await) })
        })
        .collect();
    for call in calls {
        let (i, r) = bounded("call", call).await.unwrap();
        assert_eq!(r.unwrap(), 8 * i);
    }
    assert_eq!(calc.client().stats().connects, 1);
    assert_eq!(server.stats().connections_accepted, 1);
    assert_eq!(server.stats().calls_completed, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_times_a_thousand_calls() {
    let server = calc_server().await;
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let calc = CalcClient::new(TcpChannel::new(server.local_addr()));
            tokio::spawn(async move {
                let calls: Vec<_> = (0..1000)
                    .map(|i| {
                        let calc = calc.clone();
                        tokio::spawn(async move { calc.add(c, i).await.map(|v| v == c + i) })
                    })
                    .collect();
                let mut right = 0;
                for call in calls {
                    if call.await.unwrap().unwrap() {
                        right += 1;
                    }
                }
                right
            })
        })
        .collect();
    for client in clients {
        assert_eq!(bounded("client", client).await.unwrap(), 1000);
    }
    let stats = server.stats();
    assert_eq!(
        (stats.connections_accepted, stats.calls_completed),
        (8, 8000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_promptly_with_bounded_memory_then_recovers() {
    let (workers, depth) = (2usize, 8usize);
    let (server, svc) = gate_server(workers, depth).await;
    let client = GateClient::new(TcpChannel::new(server.local_addr()));
    let mut blocked = Vec::new();
    for i in 0..(workers + depth) as i32 {
        let c = client.clone();
        blocked.push(tokio::spawn(async move { c.pass(i).await }));
        let expected = i as u64 + 1;
        eventually("call queued", || server.stats().in_flight == expected).await;
    }
    eventually("workers busy", || {
        svc.started.load(Ordering::SeqCst) == workers as u64
    })
    .await;

    // Workers blocked and queue full: every further call is refused at once, and what
    // the server holds does not grow with the number of refused calls.
    let opts = CallOptions::new().timeout(Duration::from_secs(5));
    for round in 0..3 {
        let refused: Vec<_> = (0..200)
            .map(|i| {
                let c = client.with_options(opts.clone());
                tokio::spawn(async move { c.quick(i).await })
            })
            .collect();
        for r in refused {
            match bounded("refused call", r).await.unwrap() {
                Err(RpcError::Overloaded) => {}
                other => panic!("expected Overloaded, got {other:?}"),
            }
        }
        let stats = server.stats();
        assert_eq!(stats.overloaded, 200 * (round + 1));
        assert_eq!(
            stats.in_flight,
            (workers + depth) as u64,
            "queue stays at its bound"
        );
    }
    svc.permits.add_permits(workers + depth);
    for (i, b) in blocked.into_iter().enumerate() {
        assert_eq!(bounded("queued call", b).await.unwrap().unwrap(), i as i32);
    }
    assert_eq!(
        client.quick(5).await.unwrap(),
        5,
        "served again once workers free up"
    );
    assert_eq!(client.client().stats().connects, 1);
}

/// Writes `bytes` on a fresh raw connection and reports whether the server closed it.
async fn server_closes_after(addr: std::net::SocketAddr, bytes: &[u8], then_eof: bool) -> bool {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if then_eof {
        s.shutdown().await.unwrap();
    }
    let mut buf = [0u8; 256];
    loop {
        match bounded("server closes", s.read(&mut buf)).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_own_connection() {
    let server = calc_server().await;
    let addr = server.local_addr();
    let calc = CalcClient::new(TcpChannel::new(addr));
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);

    // Garbage.
    assert!(server_closes_after(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await);
    assert_eq!(calc.add(2, 2).await.unwrap(), 4);

    // A valid header announcing a 1 GiB payload (over the 16 MiB limit): refused before
    // any payload is read or allocated.
    let mut header = FrameHeader::call(1, 1, 0x2000_0001, 1, 1);
    header.payload_len = 0;
    let mut oversized = [0u8; HEADER_LEN];
    header.emit(&[], &mut oversized).unwrap();
    oversized[48..52].copy_from_slice(&(1u32 << 30).to_be_bytes());
    assert!(server_closes_after(addr, &oversized, false).await);
    assert_eq!(calc.add(3, 2).await.unwrap(), 5);

    // A truncated frame followed by EOF.
    let frame = rpc_core::frame::Frame::new(
        FrameHeader::call(1, 1, examples::calc::CALC_INTERFACE.id, 1, 1),
        bytes::Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2]),
    )
    .to_bytes()
    .unwrap();
    assert!(server_closes_after(addr, &frame[..frame.len() - 3], true).await);

    // A frame with a bad CRC.
    let mut corrupt = frame.to_vec();
    corrupt[60] ^= 0xff;
    assert!(server_closes_after(addr, &corrupt, false).await);

    // The well-behaved client was never disturbed: same connection, still served.
    assert_eq!(calc.add(4, 2).await.unwrap(), 6);
    assert_eq!(calc.client().stats().connects, 1);
    eventually("bad frames counted", || {
        let s = server.stats();
        (s.bad_frames, s.connection_errors) == (3, 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_version_is_refused_with_a_status() {
    let server = calc_server().await;
    let frame = rpc_core::frame::Frame::new(
        FrameHeader::call(9, 9, examples::calc::CALC_INTERFACE.id, 1, 1),
        bytes::Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2]),
    );
    let mut wire = frame.to_bytes().unwrap().to_vec();
    wire[4] = 2;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(&wire).await.unwrap();
    let mut reply = Vec::new();
    bounded("server answers and closes", s.read_to_end(&mut reply))
        .await
        .unwrap();
    let reply = bytes::Bytes::from(reply);
    let answer = rpc_core::frame::Frame::parse(&reply, 1 << 20).unwrap();
    assert_eq!(answer.header.kind, rpc_core::frame::FrameKind::Status);
    let status: Status = rpc_core::xdr::from_bytes(&answer.payload).unwrap();
    assert_eq!(status, Status::ProtocolVersion { low: 1, high: 1 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_over_tcp() {
    let (server, svc) = gate_server(4, 64).await;
    let addr = server.local_addr();
    let client = GateClient::new(TcpChannel::new(addr));
    let in_flight: Vec<_> = (0..6)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.pass(i).await })
        })
        .collect();
    eventually("calls in flight", || server.stats().in_flight == 6).await;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!shutdown.is_finished());
    match client.quick(1).await {
        Err(RpcError::ShuttingDown) => {}
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    // New connections are no longer accepted.
    let late = GateClient::new(TcpChannel::new(addr));
    assert!(late
        .with_options(CallOptions::new().timeout(Duration::from_secs(2)))
        .quick(1)
        .await
        .is_err());
    svc.permits.add_permits(6);
    for (i, call) in in_flight.into_iter().enumerate() {
        assert_eq!(
            bounded("in-flight call", call).await.unwrap().unwrap(),
            i as i32
        );
    }
    bounded("shutdown", shutdown).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_the_server_restarts() {
    let (server, svc) = gate_server(2, 16).await;
    let addr = server.local_addr();
    let client = GateClient::new(TcpChannel::new(addr));
    assert_eq!(client.quick(1).await.unwrap(), 1);
    let c = client.clone();
    let stuck = tokio::spawn(async move { c.pass(2).await });
    eventually("call running", || svc.started.load(Ordering::SeqCst) == 1).await;
    drop(server); // abrupt stop: the connection drops with the call in flight
    match bounded("in-flight call fails", stuck).await.unwrap() {
        Err(RpcError::Transport(_)) => {}
        other => panic!("expected a transport error, got {other:?}"),
    }
    // Restart on the same port; the next call reconnects.
    let listener = bounded("rebind", async {
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    let svc2 = Arc::new(GateService {
        permits: Semaphore::new(0),
        started: AtomicU64::new(0),
    });
    let _server2 = Server::builder()
        .add_service(GateServer::new(svc2))
        .serve(listener)
        .unwrap();
    let value = bounded("reconnect", async {
        loop {
            match client.quick(3).await {
                Ok(v) => break v,
                Err(RpcError::Unreachable(_)) | Err(RpcError::Transport(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    })
    .await;
    assert_eq!(value, 3);
    assert!(client.client().stats().connects >= 2);
}

#[test]
fn blocking_client_makes_real_calls() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(calc_server());
    let client =
        examples::calc::CalcBlockingClient::new(TcpChannel::new(server.local_addr())).unwrap();
    assert_eq!(client.add(20, 22).unwrap(), 42);
    assert_eq!(client.echo("blocking".into()).unwrap(), "blocking");
    match client.mean(vec![]) {
        Err(RpcError::Application { code, .. }) => assert_eq!(code, 2),
        other => panic!("expected an application error, got {other:?}"),
    }
    drop(client);
    rt.block_on(server.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_reaches_generated_server() {
    // The runtime client can address any procedure by its static description: the
    // generated server decodes what a hand-written encoder sends.
    let server = calc_server().await;
    let client = Client::new(TcpChannel::new(server.local_addr()));
    let iface = &examples::calc::CALC_INTERFACE;
    let add = iface.procedures.iter().find(|p| p.name == "add").unwrap();
    let sum = client
        .call(
            iface,
            add,
            &CallOptions::new(),
            |w| {
                w.put_i32(40);
                w.put_i32(2);
                Ok(())
            },
            |r| r.get_i32(),
        )
        .await
        .unwrap();
    assert_eq!(sum, 42);
}
