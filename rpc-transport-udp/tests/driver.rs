//! The tokio driver over real sockets on 127.0.0.1: frames between a `UdpChannel` and a
//! `UdpListener`, fragmentation, garbage, closing, connect failures, backpressure, stats,
//! and the real RPC runtime on top. Every test is bounded in time.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::server::{bad_arguments, encode_result, Service, ServiceFuture};
use rpc_core::transport::{Channel, Connection, FrameReceiver, Listener};
use rpc_core::xdr::XdrReader;
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, Server, TransportError,
};
use rpc_transport_udp::proto::Config;
use rpc_transport_udp::{UdpChannel, UdpConfig, UdpFrameReceiver, UdpListener};
use tokio::net::UdpSocket;

/// Fails the test if `fut` takes longer than 20 s.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn call_frame(call_id: u64, payload: Bytes) -> Frame {
    let mut header = FrameHeader::call(7, call_id, 0x2000_0001, 1, 3);
    header.payload_len = payload.len() as u32;
    Frame::new(header, payload)
}

/// A listener, a channel to it, and one connection from each side.
async fn pair(
    config: UdpConfig,
) -> (
    UdpListener,
    UdpChannel,
    Connection<UdpFrameReceiver>,
    Connection<UdpFrameReceiver>,
) {
    let mut listener = UdpListener::bind_with("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let channel = UdpChannel::new(listener.local_addr()).with_config(config);
    let client = bounded("connect", channel.connect()).await.unwrap();
    let server = bounded("accept", listener.accept()).await.unwrap();
    (listener, channel, client, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_round_trip() {
    let (listener, channel, client, mut server) = pair(UdpConfig::default()).await;
    let client_ip = client_local_addr(&channel, &client).ip();
    assert_eq!(server.peer_addr.ip(), client_ip);
    assert_ne!(server.peer_addr.port(), 0);
    client
        .sender
        .send(call_frame(42, Bytes::from_static(b"hello")))
        .await
        .unwrap();
    let call = bounded("call", server.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.header.call_id, 42);
    assert_eq!(&call.payload[..], b"hello");

    let reply = FrameHeader::answer(&call.header, FrameKind::Reply, 9);
    server
        .sender
        .send(Frame::new(reply, Bytes::from_static(b"world")))
        .await
        .unwrap();
    let mut client_rx = client.receiver;
    let reply = bounded("reply", client_rx.recv()).await.unwrap().unwrap();
    assert_eq!(
        (reply.header.kind, reply.header.call_id),
        (FrameKind::Reply, 42)
    );
    assert_eq!(&reply.payload[..], b"world");
    assert_eq!(channel.remote(), format!("udp://{}", listener.local_addr()));
}

/// The server sees the client's socket: on loopback, bound to 127.0.0.1 and a real port.
fn client_local_addr(channel: &UdpChannel, client: &Connection<UdpFrameReceiver>) -> SocketAddr {
    let stats = channel.stats_handle().snapshot();
    assert_eq!(stats.connections.len(), 1);
    assert_eq!(stats.connections[0].0, client.peer_addr);
    SocketAddr::new(client.peer_addr.ip(), 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_frames_from_concurrent_tasks_arrive_exactly_once() {
    let (_listener, _channel, client, mut server) = pair(UdpConfig::default()).await;
    let tasks: Vec<_> = (0..50u64)
        .map(|t| {
            let sender = client.sender.clone();
            tokio::spawn(async move {
                for i in 0..20u64 {
                    let id = t * 20 + i;
                    let payload = Bytes::from(id.to_be_bytes().repeat(1 + (id % 50) as usize));
                    sender.send(call_frame(id, payload)).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    while seen.len() < 1000 {
        let frame = bounded("frames", server.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        let id = frame.header.call_id;
        assert_eq!(&frame.payload[..8], &id.to_be_bytes());
        assert_eq!(frame.payload.len(), 8 * (1 + (id % 50) as usize));
        assert!(seen.insert(id), "frame {id} delivered twice");
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Nothing more arrives: every frame exactly once.
    let more = tokio::time::timeout(Duration::from_millis(200), server.receiver.recv()).await;
    assert!(more.is_err(), "unexpected extra frame: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mib_frame_arrives_intact() {
    four_mib_frame(1200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_peers_use_large_datagrams() {
    four_mib_frame(65_000).await
}

/// A 4 MiB frame each way with `datagram`-byte datagrams (1200: the loopback size
/// switched off; 65,000: the default for a loopback peer). Checks the datagram counts.
async fn four_mib_frame(datagram: usize) {
    let protocol = match datagram {
        1200 => Config::default().loopback_max_datagram(None),
        _ => Config::default(),
    };
    let config = UdpConfig::default().protocol(protocol);
    let (listener, channel, client, mut server) = pair(config).await;
    let payload: Bytes = (0..4u32 << 20)
        .map(|i| (i * 31 + i / 4099) as u8)
        .collect::<Vec<_>>()
        .into();
    client
        .sender
        .send(call_frame(1, payload.clone()))
        .await
        .unwrap();
    let frame = bounded("4 MiB frame", server.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame.payload.len(), payload.len());
    assert!(frame.payload == payload, "payload corrupted");
    // And back, server to client.
    let reply = FrameHeader::answer(&frame.header, FrameKind::Reply, 1);
    server
        .sender
        .send(Frame::new(reply, payload.clone()))
        .await
        .unwrap();
    let mut client_rx = client.receiver;
    let back = bounded("4 MiB reply", client_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(back.payload == payload, "reply payload corrupted");
    let server_stats = listener.stats_handle().snapshot();
    let client_sent = channel.stats_handle().snapshot().datagrams_sent;
    // 4 MiB in datagrams of this size, plus acks and retransmissions.
    let fragments = (4u64 << 20) / datagram as u64;
    assert!(
        server_stats.datagrams_received > fragments,
        "{server_stats:?}"
    );
    assert!(client_sent > fragments);
    assert!(
        client_sent < 3 * fragments + 64,
        "{client_sent} datagrams sent for {fragments} fragments of {datagram} bytes"
    );
    // Large fragments leave by sendmsg, gathered from the frame's own buffer.
    let gathered = channel.stats_handle().snapshot().datagrams_gathered;
    assert!(
        gathered >= fragments,
        "{gathered} of {fragments} fragments gathered"
    );
    assert!(
        server_stats.datagrams_gathered >= fragments,
        "{server_stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_frames_are_copied_not_gathered() {
    let (_listener, channel, client, mut server) = pair(UdpConfig::default()).await;
    for i in 0..20 {
        let payload = Bytes::from(vec![i as u8; 100]);
        client
            .sender
            .send(call_frame(i + 1, payload.clone()))
            .await
            .unwrap();
        let frame = bounded("small frame", server.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.payload, payload);
    }
    assert_eq!(channel.stats_handle().snapshot().datagrams_gathered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_does_not_disturb_a_connection() {
    let (listener, _channel, client, mut server) = pair(UdpConfig::default()).await;
    let addr = listener.local_addr();
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let frame = call_frame(5, Bytes::from_static(b"raw"))
        .to_bytes()
        .unwrap();
    for datagram in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x52, 0x55, 1][..],
        &frame[..],
        &[0u8; 1500][..],
    ] {
        raw.send_to(datagram, addr).await.unwrap();
    }
    let stats = listener.stats_handle();
    bounded("garbage counted", async {
        loop {
            let s = stats.snapshot();
            if s.malformed + s.checksum_failures >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The connection carries on.
    client
        .sender
        .send(call_frame(6, Bytes::from_static(b"ok")))
        .await
        .unwrap();
    let f = bounded("after garbage", server.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.header.call_id, 6);
    assert_eq!(stats.snapshot().connections.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_connection_closes_the_server_side() {
    let (_listener, _channel, client, mut server) = pair(UdpConfig::default()).await;
    client
        .sender
        .send(call_frame(1, Bytes::new()))
        .await
        .unwrap();
    assert!(bounded("frame", server.receiver.recv())
        .await
        .unwrap()
        .is_some());
    drop(client);
    let end = tokio::time::timeout(Duration::from_secs(2), server.receiver.recv())
        .await
        .expect("the server side ends within 2 s");
    assert!(matches!(end, Ok(None)), "clean close expected: {end:?}");
    assert!(server.sender.is_closed());
    assert!(server
        .sender
        .send(call_frame(2, Bytes::new()))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_only_the_senders_closes_the_connection_too() {
    // As when a Client is dropped or disconnects: its reply reader still holds the
    // receiver, which must see the end instead of keeping the connection alive.
    let (_listener, _channel, client, mut server) = pair(UdpConfig::default()).await;
    let Connection {
        sender,
        receiver: mut client_rx,
        ..
    } = client;
    drop(sender);
    let end = bounded("client receiver ends", client_rx.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    let end = bounded("server receiver ends", server.receiver.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_ends_the_client_and_sends_fail() {
    let (_listener, _channel, client, server) = pair(UdpConfig::default()).await;
    drop(server);
    let mut client_rx = client.receiver;
    let end = bounded("client sees the close", client_rx.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    assert!(client.sender.is_closed());
    let err = client
        .sender
        .send(call_frame(1, Bytes::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Closed), "{err}");
}

fn fast_fail_config() -> UdpConfig {
    UdpConfig::default()
        .protocol(Config::default().peer_timeout(Duration::from_millis(300)))
        .connect_timeout(Duration::from_millis(500))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_closed_port_fails() {
    // A port nothing listens on (bound, then closed).
    let addr = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let channel = UdpChannel::new(addr).with_config(fast_fail_config());
    let start = Instant::now();
    let err = bounded("connect fails", channel.connect())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_refused_on_its_first_icmp_error_without_a_retransmit() {
    // Default settings. The kernel turns the ICMP port unreachable answering the first
    // Init into a pending socket error: the driver must see it then, not when the
    // retransmitted Init fails to send one retransmission timeout later.
    let addr = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let channel = UdpChannel::new(addr);
    let err = bounded("connect fails", channel.connect())
        .await
        .unwrap_err();
    match &err {
        TransportError::Connect { source, .. } => {
            assert_eq!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{source}"
            );
        }
        other => panic!("expected a connect error, got {other}"),
    }
    let stats = channel.stats_handle().snapshot();
    assert_eq!(stats.datagrams_sent, 1, "{stats:?}");
    assert_eq!(stats.retransmits, 0, "{stats:?}");
    assert_eq!(stats.rto_timeouts, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_silent_peer_times_out() {
    // A socket that receives and never answers: only the timeouts end the handshake.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let channel = UdpChannel::new(addr).with_config(fast_fail_config());
    let start = Instant::now();
    let err = bounded("connect times out", channel.connect())
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    match &err {
        TransportError::Connect { addr: a, source } => {
            assert_eq!(a, &addr.to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}");
        }
        other => panic!("expected a connect error, got {other}"),
    }
    assert!(
        elapsed >= Duration::from_millis(250),
        "gave up too soon: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    // The Init was retransmitted into the void a few times.
    let mut buf = [0u8; 2048];
    assert!(silent.try_recv_from(&mut buf).is_ok());
    let stats = channel.stats_handle().snapshot();
    assert_eq!(stats.connections_opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_drop_refuses_new_connections_but_keeps_old_ones() {
    let (listener, channel, client, mut server) = pair(fast_fail_config()).await;
    drop(listener);
    let err = bounded("refused", channel.connect()).await.unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    client
        .sender
        .send(call_frame(3, Bytes::from_static(b"still here")))
        .await
        .unwrap();
    let f = bounded("old connection", server.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.header.call_id, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_send_buffer_makes_senders_wait_not_fail() {
    // 8 KiB of send backlog: 200 frames of 4 KiB must wait for room again and again.
    let config =
        UdpConfig::default().protocol(Config::default().send_buffer(8 << 10).send_window(4));
    let (_listener, _channel, client, mut server) = pair(config).await;
    let sender = client.sender.clone();
    let writer = tokio::spawn(async move {
        for i in 0..200u64 {
            sender
                .send(call_frame(i, Bytes::from(vec![i as u8; 4096])))
                .await
                .unwrap();
        }
    });
    let mut seen = HashSet::new();
    while seen.len() < 200 {
        let f = bounded("frames", server.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(f.payload.iter().all(|b| *b == f.header.call_id as u8));
        assert!(seen.insert(f.header.call_id));
    }
    bounded("writer", writer).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_pauses_the_connection_without_losing_frames() {
    let mut protocol = Config::default();
    protocol.max_undelivered = 8;
    let (_listener, channel, client, mut server) =
        pair(UdpConfig::default().protocol(protocol)).await;
    for i in 0..300u64 {
        client
            .sender
            .send(call_frame(i, Bytes::from(vec![1u8; 100])))
            .await
            .unwrap();
    }
    // Let the server's queue fill up and the connection pause.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut seen = HashSet::new();
    while seen.len() < 300 {
        let f = bounded("frames", server.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(seen.insert(f.header.call_id));
    }
    // Paused data was dropped unacknowledged and sent again.
    assert!(channel.stats_handle().snapshot().retransmits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counters_move() {
    let (listener, channel, client, mut server) = pair(UdpConfig::default()).await;
    for i in 0..10 {
        client
            .sender
            .send(call_frame(i, Bytes::from_static(b"x")))
            .await
            .unwrap();
        let call = bounded("call", server.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        let reply = FrameHeader::answer(&call.header, FrameKind::Reply, 1);
        server
            .sender
            .send(Frame::new(reply, Bytes::new()))
            .await
            .unwrap();
    }
    let mut client_rx = client.receiver;
    for _ in 0..10 {
        bounded("reply", client_rx.recv()).await.unwrap().unwrap();
    }
    let c = channel.stats_handle().snapshot();
    let s = listener.stats_handle().snapshot();
    assert!(
        c.datagrams_sent >= 11 && c.datagrams_received >= 11,
        "{c:?}"
    );
    assert!(
        s.datagrams_sent >= 11 && s.datagrams_received >= 11,
        "{s:?}"
    );
    assert_eq!((c.connections_opened, s.connections_accepted), (1, 1));
    assert_eq!(c.sockets, 1);
    let (peer, srtt_us, rto_us) = c.connections[0];
    assert_eq!(peer, listener.local_addr());
    assert!(
        srtt_us > 0 && rto_us >= 5_000,
        "srtt {srtt_us} rto {rto_us}"
    );
    assert_eq!(s.connections.len(), 1);
    // A closed socket's counters stay in the channel's totals.
    drop(client.sender);
    drop(client_rx);
    bounded("server side ends", server.receiver.recv())
        .await
        .unwrap();
    bounded("client socket retired", async {
        loop {
            let c = channel.stats_handle().snapshot();
            if c.connections.is_empty() && c.connections_closed == 1 {
                assert!(c.datagrams_sent >= 11);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// The real RPC runtime over UDP: a hand-written echo service, as generated code would be.

static ECHO: ProcedureInfo = ProcedureInfo {
    name: "echo",
    number: 1,
    oneway: false,
    idempotent: true,
};
static ECHO_INTERFACE: InterfaceInfo = InterfaceInfo {
    name: "Echo",
    id: 0x2000_0e41,
    version: 1,
    procedures: std::slice::from_ref(&ECHO),
    default_semantics: None,
};

struct EchoService;

impl Service for EchoService {
    fn info(&self) -> &'static InterfaceInfo {
        &ECHO_INTERFACE
    }

    fn call(&self, _procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
        let mut r = XdrReader::new(&args);
        let blob = r.get_opaque(u32::MAX).and_then(|b| r.finish().map(|()| b));
        Box::pin(async move {
            let blob = blob.map_err(bad_arguments)?;
            encode_result(|w| w.put_opaque(&blob, u32::MAX))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_rpc_calls_over_udp() {
    let listener = UdpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let server_stats = listener.stats_handle();
    let server = Server::builder()
        .add_service(EchoService)
        .serve(listener)
        .unwrap();
    let channel = UdpChannel::new(addr);
    let client_stats = channel.stats_handle();
    let client = Client::new(channel);
    let calls: Vec<_> = (0..1000u32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let blob = format!("call {i} {}", "x".repeat((i % 300) as usize)).into_bytes();
                let back = client
                    .call(
                        &ECHO_INTERFACE,
                        &ECHO,
                        &CallOptions::new().timeout(Duration::from_secs(15)),
                        |w| w.put_opaque(&blob, u32::MAX),
                        |r| r.get_opaque(u32::MAX),
                    )
                    .await
                    .unwrap();
                assert_eq!(back[..], blob[..]);
            })
        })
        .collect();
    for call in calls {
        bounded("call", call).await.unwrap();
    }
    // One connection carried them all.
    assert_eq!(client_stats.snapshot().connections_opened, 1);
    assert_eq!(server_stats.snapshot().connections_accepted, 1);
    bounded("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_client_reconnects_after_the_connection_drops() {
    let listener = UdpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let server = Server::builder()
        .add_service(EchoService)
        .serve(listener)
        .unwrap();
    let channel = UdpChannel::new(addr);
    let stats = channel.stats_handle();
    let client = Client::new(channel);
    let echo = |s: &'static [u8]| {
        let client = client.clone();
        async move {
            client
                .call(
                    &ECHO_INTERFACE,
                    &ECHO,
                    &CallOptions::new().timeout(Duration::from_secs(5)),
                    |w| w.put_opaque(s, u32::MAX),
                    |r| r.get_opaque(u32::MAX),
                )
                .await
        }
    };
    assert_eq!(&bounded("first", echo(b"one")).await.unwrap()[..], b"one");
    client.disconnect();
    assert_eq!(&bounded("second", echo(b"two")).await.unwrap()[..], b"two");
    assert_eq!(stats.snapshot().connections_opened, 2);
    // The first connection was closed (not left alive by its reply reader).
    bounded("old socket closed", async {
        while stats.snapshot().connections_closed < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    bounded("shutdown", server.shutdown()).await;
}

/// A name that resolves to several addresses is tried address by address, as over TCP:
/// `localhost` may resolve to `::1` first, where nothing listens (refused at once), and
/// the connection is made to 127.0.0.1.
#[tokio::test]
async fn connects_by_host_name_trying_every_address() {
    let listener = UdpListener::bind("127.0.0.1:0").await.unwrap();
    let name = format!("localhost:{}", listener.local_addr().port());
    let channel = UdpChannel::new(name.as_str());
    assert_eq!(channel.remote(), format!("udp://{name}"));
    let connected = tokio::time::timeout(std::time::Duration::from_secs(10), channel.connect())
        .await
        .expect("bounded");
    assert!(connected.is_ok(), "{:?}", connected.err());
}
