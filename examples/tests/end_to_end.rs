//! End-to-end acceptance tests of the runtime over BOTH transports, from the same test
//! code: every scenario is a generic `async fn` over a [`Transport`] and runs once over
//! TCP and once over reliable UDP (modules `tcp` and `udp` at the bottom). The services
//! are the calculator from the build script (`proto/calc.idl`) and a test interface from
//! the proc-macro (`idl!`). Transport-specific bad input (a byte stream of garbage for
//! TCP, stray datagrams for UDP) is behind the trait too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::calc::{CalcClient, CalcServer};
use examples::calc_service::CalcService;
use rpc_core::client::RetryPolicy;
use rpc_core::frame::{Frame, FrameHeader, FrameKind, HEADER_LEN};
use rpc_core::server::ServerHandle;
use rpc_core::transport::{Channel, FrameReceiver, Listener};
use rpc_core::{CallContext, CallOptions, Client, RpcError, Server, Status, TransportError};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::{UdpChannel, UdpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// What a scenario needs from a transport.
trait Transport: 'static {
    type L: Listener;
    type C: Channel;
    /// A listener on `addr`.
    async fn try_listen(addr: SocketAddr) -> Result<Self::L, TransportError>;
    /// A listener on `addr`, which must be free.
    async fn listen(addr: SocketAddr) -> Self::L {
        Self::try_listen(addr).await.expect("listen")
    }
    /// A channel to `addr`.
    fn channel(addr: SocketAddr) -> Self::C;
    /// Sends this transport's kinds of garbage to the server from fresh sockets and
    /// checks each is refused; returns how many bad inputs were sent.
    async fn send_garbage(addr: SocketAddr) -> u64;
}

struct Tcp;
struct Udp;

impl Transport for Tcp {
    type L = TcpListener;
    type C = TcpChannel;

    async fn try_listen(addr: SocketAddr) -> Result<TcpListener, TransportError> {
        TcpListener::bind(addr).await
    }

    fn channel(addr: SocketAddr) -> TcpChannel {
        TcpChannel::new(addr)
    }

    async fn send_garbage(addr: SocketAddr) -> u64 {
        // Garbage: not our protocol at all.
        assert!(server_closes_after(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await);
        // A valid header announcing a 1 GiB payload (over the 16 MiB limit): refused
        // before any payload is read or allocated.
        let header = FrameHeader::call(1, 1, 0x2000_0001, 1, 1);
        let mut oversized = [0u8; HEADER_LEN];
        header.emit(&[], &mut oversized).unwrap();
        oversized[48..52].copy_from_slice(&(1u32 << 30).to_be_bytes());
        assert!(server_closes_after(addr, &oversized, false).await);
        // A truncated frame followed by EOF.
        let frame = add_frame(2).to_bytes().unwrap();
        assert!(server_closes_after(addr, &frame[..frame.len() - 3], true).await);
        // A frame with a bad CRC.
        let mut corrupt = frame.to_vec();
        corrupt[60] ^= 0xff;
        assert!(server_closes_after(addr, &corrupt, false).await);
        4
    }
}

impl Transport for Udp {
    type L = UdpListener;
    type C = UdpChannel;

    async fn try_listen(addr: SocketAddr) -> Result<UdpListener, TransportError> {
        UdpListener::bind(addr).await
    }

    fn channel(addr: SocketAddr) -> UdpChannel {
        UdpChannel::new(addr)
    }

    async fn send_garbage(addr: SocketAddr) -> u64 {
        // Stray datagrams: not our protocol, a truncated header, and one of our own
        // frames sent raw (no reliable-UDP header: its "CRC" cannot match).
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let frame = add_frame(2).to_bytes().unwrap();
        for datagram in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0x52, 0x55, 1], &frame[..]] {
            socket.send_to(datagram, addr).await.unwrap();
        }
        // A well-formed connection that then breaks the RPC protocol (a Reply frame
        // sent to a server): that connection is closed.
        let conn = Udp::channel(addr).connect().await.unwrap();
        let mut rx = conn.receiver;
        let reply = FrameHeader::answer(&add_frame(3).header, FrameKind::Reply, 0);
        conn.sender
            .send(Frame::new(reply, bytes::Bytes::new()))
            .await
            .unwrap();
        let ended = bounded("server closes the bad connection", rx.recv()).await;
        assert!(
            !matches!(ended, Ok(Some(_))),
            "no answer to a protocol violation: {ended:?}"
        );
        1
    }
}

/// A call frame for the calculator's `add(1, 2)`.
fn add_frame(call_id: u64) -> Frame {
    Frame::new(
        FrameHeader::call(1, call_id, examples::calc::CALC_INTERFACE.id, 1, 1),
        bytes::Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2]),
    )
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

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

async fn calc_server<T: Transport>() -> ServerHandle {
    let listener = T::listen(any_port()).await;
    Server::builder()
        .workers(8)
        .queue_depth(4096)
        .add_service(CalcServer::new(CalcService::new()))
        .serve(listener)
        .unwrap()
}

async fn gate_server<T: Transport>(
    workers: usize,
    depth: usize,
) -> (ServerHandle, Arc<GateService>) {
    let svc = Arc::new(GateService {
        permits: Semaphore::new(0),
        started: AtomicU64::new(0),
    });
    let listener = T::listen(any_port()).await;
    let server = Server::builder()
        .workers(workers)
        .queue_depth(depth)
        .add_service(GateServer::new(svc.clone()))
        .serve(listener)
        .unwrap();
    (server, svc)
}

async fn thousand_concurrent_calls_over_one_connection<T: Transport>() {
    let server = calc_server::<T>().await;
    let calc = CalcClient::new(T::channel(server.local_addr()));
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

async fn eight_clients_times_a_thousand_calls<T: Transport>() {
    let server = calc_server::<T>().await;
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let calc = CalcClient::new(T::channel(server.local_addr()));
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

async fn overloaded_promptly_with_bounded_memory_then_recovers<T: Transport>() {
    let (workers, depth) = (2usize, 8usize);
    let (server, svc) = gate_server::<T>(workers, depth).await;
    let client = GateClient::new(T::channel(server.local_addr()));
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
    // No automatic retry of `Overloaded`: the point is that the server refuses at once.
    let opts = CallOptions::new()
        .timeout(Duration::from_secs(5))
        .retry(RetryPolicy::never());
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

async fn bad_input_closes_only_its_own_connection<T: Transport>() {
    let server = calc_server::<T>().await;
    let addr = server.local_addr();
    let calc = CalcClient::new(T::channel(addr));
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);
    let sent = T::send_garbage(addr).await;
    assert!(sent > 0);
    // The well-behaved client was never disturbed: same connection, still served.
    assert_eq!(calc.add(4, 2).await.unwrap(), 6);
    assert_eq!(calc.client().stats().connects, 1);
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let calc = calc.clone();
            tokio::spawn(async move { calc.add(i, i).await })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap().unwrap(), 2 * i as i32);
    }
}

async fn graceful_shutdown<T: Transport>() {
    let (server, svc) = gate_server::<T>(4, 64).await;
    let addr = server.local_addr();
    let client = GateClient::new(T::channel(addr));
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
    let late = GateClient::new(T::channel(addr));
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

async fn client_reconnects_after_the_server_restarts<T: Transport>() {
    let (server, svc) = gate_server::<T>(2, 16).await;
    let addr = server.local_addr();
    let client = GateClient::new(T::channel(addr));
    assert_eq!(client.quick(1).await.unwrap(), 1);
    let c = client.clone();
    let stuck = tokio::spawn(async move { c.pass(2).await });
    eventually("call running", || svc.started.load(Ordering::SeqCst) == 1).await;
    drop(server); // abrupt stop: the connection drops with the call in flight
                  // At-most-once (the default): it was sent, so its outcome is unknown, and it is
                  // not sent again.
    match bounded("in-flight call fails", stuck).await.unwrap() {
        Err(RpcError::OutcomeUnknown(_)) => {}
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    // Restart on the same port; the next call reconnects.
    let listener = bounded("rebind", async {
        loop {
            match T::try_listen(addr).await {
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

fn blocking_client_makes_real_calls<T: Transport>() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(calc_server::<T>());
    let client = examples::calc::CalcBlockingClient::new(T::channel(server.local_addr())).unwrap();
    assert_eq!(client.add(20, 22).unwrap(), 42);
    assert_eq!(client.echo("blocking".into()).unwrap(), "blocking");
    match client.mean(vec![]) {
        Err(RpcError::Application { code, .. }) => assert_eq!(code, 2),
        other => panic!("expected an application error, got {other:?}"),
    }
    drop(client);
    rt.block_on(server.shutdown());
}

async fn raw_client_reaches_generated_server<T: Transport>() {
    // The runtime client can address any procedure by its static description: the
    // generated server decodes what a hand-written encoder sends.
    let server = calc_server::<T>().await;
    let client = Client::new(T::channel(server.local_addr()));
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

async fn unsupported_protocol_version_is_refused_with_a_status() {
    type T = Tcp;
    let server = calc_server::<T>().await;
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

mod fast {
    rpc_macros::idl!(
        "fast",
        r#"
        /// Inline handlers that misbehave, for the dispatch loop's safety net.
        interface Fast version 1 {
            /// Returns `x`, or panics when `x` is negative.
            [inline] int check(int x);
        };
        "#
    );
}

struct FastService;

impl fast::Fast for FastService {
    fn check(&self, _ctx: &CallContext, x: i32) -> Result<i32, Status> {
        assert!(x >= 0, "negative input {x}");
        Ok(x)
    }
}

/// `[inline]` procedures run on the dispatch loop by default and on the worker pool when
/// the server says so, with the same results and errors either way.
async fn inline_procedures_run_on_the_dispatch_loop<T: Transport>() {
    for run_inline in [true, false] {
        let listener = T::listen(any_port()).await;
        let server = Server::builder()
            .run_inline(run_inline)
            .add_service(CalcServer::new(CalcService::new()))
            .serve(listener)
            .unwrap();
        let calc = CalcClient::new(T::channel(server.local_addr()));
        for i in 0..200 {
            assert_eq!(
                bounded("add_inline", calc.add_inline(i, 3 * i))
                    .await
                    .unwrap(),
                4 * i
            );
        }
        // Handler errors travel the same way as from a pooled handler.
        let err = bounded("overflow", calc.add_inline(i32::MAX, 1))
            .await
            .unwrap_err();
        match err {
            RpcError::Application { code, .. } => {
                assert_eq!(code, examples::calc_service::codes::OVERFLOW)
            }
            other => panic!("expected the overflow status, got {other:?}"),
        }
        // Malformed arguments are refused before the handler, also inline.
        let raw = Client::new(T::channel(server.local_addr()));
        let err = bounded(
            "bad args",
            raw.call(
                &examples::calc::CALC_INTERFACE,
                &examples::calc::CALC_PROCEDURES[11],
                &CallOptions::new(),
                |w| {
                    w.put_i32(1);
                    Ok(())
                },
                |r| r.get_i32(),
            ),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RpcError::BadArguments { .. }), "{err:?}");
        let stats = server.stats();
        assert_eq!(stats.calls_inline, if run_inline { 202 } else { 0 });
        assert!(stats.calls_completed >= 202, "{stats:?}");
        assert_eq!(stats.bad_arguments, 1);
        drop((calc, raw));
        server.shutdown().await;
    }
}

/// A panicking inline handler fails its call with `Internal`; the connection and the
/// server carry on.
async fn inline_handler_panic_is_contained<T: Transport>() {
    let listener = T::listen(any_port()).await;
    let server = Server::builder()
        .add_service(fast::FastServer::new(FastService))
        .serve(listener)
        .unwrap();
    let client = fast::FastClient::new(T::channel(server.local_addr()));
    assert_eq!(bounded("check", client.check(7)).await.unwrap(), 7);
    let err = bounded("panicking check", client.check(-1))
        .await
        .unwrap_err();
    match err {
        RpcError::Internal { message } => {
            assert!(message.contains("negative input -1"), "{message}")
        }
        other => panic!("expected Internal, got {other:?}"),
    }
    for i in 0..50 {
        assert_eq!(
            bounded("check after panic", client.check(i)).await.unwrap(),
            i
        );
    }
    let stats = server.stats();
    assert_eq!(stats.handler_panics, 1);
    assert_eq!(stats.calls_inline, 52);
    drop(client);
    server.shutdown().await;
}

/// The shared-descriptor path (large opaques sent by reference) and the copying path
/// carry the same bytes, at every size around the threshold and far beyond.
async fn shared_descriptor_and_copy_paths_agree<T: Transport>() {
    let server = calc_server::<T>().await;
    let shared = CalcClient::from_client(Client::with_config(
        T::channel(server.local_addr()),
        rpc_core::client::ClientConfig::default().share_threshold(Some(1024)),
    ));
    let copying = CalcClient::from_client(Client::with_config(
        T::channel(server.local_addr()),
        rpc_core::client::ClientConfig::default().share_threshold(None),
    ));
    for len in [0usize, 1, 3, 1023, 1024, 1025, 4096, 65_539, 1 << 20] {
        let blob = bytes::Bytes::from(
            (0..len)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
                .collect::<Vec<u8>>(),
        );
        for (mode, calc) in [("shared", &shared), ("copying", &copying)] {
            let back = bounded("echo_blob", calc.echo_blob(blob.clone()))
                .await
                .unwrap();
            assert_eq!(back, blob, "{mode} echo of {len} bytes");
            let crc = bounded("put", calc.put(blob.clone())).await.unwrap();
            assert_eq!(crc, crc32fast::hash(&blob), "{mode} put of {len} bytes");
            // A `String` argument takes the same path (moved into the request).
            let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let back = bounded("echo", calc.echo(text.clone())).await.unwrap();
            assert_eq!(back, text, "{mode} echo of a {len}-byte string");
        }
    }
    drop((shared, copying));
    server.shutdown().await;
}

macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {
        mod tcp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<super::Tcp>().await
                }
            )*

            #[test]
            fn blocking_client_makes_real_calls() {
                super::blocking_client_makes_real_calls::<super::Tcp>()
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unsupported_protocol_version_is_refused_with_a_status() {
                super::unsupported_protocol_version_is_refused_with_a_status().await
            }
        }
        mod udp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<super::Udp>().await
                }
            )*

            #[test]
            fn blocking_client_makes_real_calls() {
                super::blocking_client_makes_real_calls::<super::Udp>()
            }
        }
    };
}

over_both_transports!(
    thousand_concurrent_calls_over_one_connection,
    eight_clients_times_a_thousand_calls,
    overloaded_promptly_with_bounded_memory_then_recovers,
    bad_input_closes_only_its_own_connection,
    graceful_shutdown,
    client_reconnects_after_the_server_restarts,
    raw_client_reaches_generated_server,
    inline_procedures_run_on_the_dispatch_loop,
    inline_handler_panic_is_contained,
    shared_descriptor_and_copy_paths_agree,
);

/// docs/PROTOCOL.md 5.3: the default interface ids of the shipped IDL files, as the
/// document lists them, are what the generated code uses.
#[test]
fn interface_ids_are_the_documented_ones() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    for (name, id) in [
        ("calc.Calc", examples::calc::CALC_INTERFACE.id),
        ("Seed", examples::seed::SEED_INTERFACE.id),
        ("kv.Kv", examples::kv::KV_INTERFACE.id),
        (
            "naming.Registry",
            rpc_core::naming::registry::proto::REGISTRY_INTERFACE.id,
        ),
    ] {
        let row = format!("| `{name}` | `{id:#010x}` |");
        assert!(doc.contains(&row), "PROTOCOL.md lacks {row}");
    }
}
