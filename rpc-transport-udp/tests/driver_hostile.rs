//! Hostile peers against the tokio driver on loopback. "Spoofed" sources are sockets on
//! 127.0.0.2–127.0.0.9 that send handshakes and requests but never answer anything: to
//! the server they are indistinguishable from a victim whose address an attacker forged,
//! and what they receive is exactly what the server would reflect onto that victim.
//! Every test is bounded in time.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::transport::{Channel, FrameReceiver, Listener};
use rpc_transport_udp::proto::config::AddressValidation;
use rpc_transport_udp::proto::packet::{AckInfo, Body, Packet, SackRanges};
use rpc_transport_udp::proto::Config;
use rpc_transport_udp::{UdpChannel, UdpConfig, UdpListener};
use tokio::net::UdpSocket;

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn datagram(conn_id: u32, body: Body) -> Vec<u8> {
    let mut out = Vec::new();
    Packet {
        conn_id,
        ack: AckInfo {
            cumulative: 0,
            delay_us: 0,
            ranges: SackRanges::new(),
        },
        body,
    }
    .emit(&mut out);
    out
}

fn init(conn_id: u32, max_datagram: u32) -> Vec<u8> {
    datagram(
        conn_id,
        Body::Init {
            client_incarnation: 0xBAD,
            recv_window: 4096,
            max_datagram,
            cookie: None,
        },
    )
}

/// A whole RPC call frame (header + payload) as one Data datagram (seq 1).
fn request(conn_id: u32, call_id: u64, payload: Bytes) -> Vec<u8> {
    let mut header = FrameHeader::call(7, call_id, 0x2000_0001, 1, 3);
    header.payload_len = payload.len() as u32;
    let frame = Frame::new(header, payload).to_bytes().unwrap();
    datagram(
        conn_id,
        Body::Data {
            seq: 1,
            frag_index: 0,
            frag_count: 1,
            msg_len: frame.len() as u32,
            payload: frame,
        },
    )
}

/// A socket on 127.0.0.`n`.
async fn spoofed(n: u8) -> UdpSocket {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, n));
    UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap()
}

/// Bytes `sock` receives until it has heard nothing for `quiet` (at most `max` in all).
async fn received_bytes(sock: &UdpSocket, quiet: Duration, max: Duration) -> usize {
    let mut buf = vec![0u8; 70_000];
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + max;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return total;
        }
        match tokio::time::timeout(quiet.min(left), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => total += n,
            Ok(Err(_)) | Err(_) => return total,
        }
    }
}

/// A server that answers every call: a payload starting with `L` gets a 60 kB reply,
/// anything else is echoed.
async fn serve(config: UdpConfig) -> (SocketAddr, rpc_transport_udp::UdpStatsHandle) {
    let mut listener = UdpListener::bind_with("127.0.0.1:0", config).await.unwrap();
    let addr = listener.local_addr();
    let stats = listener.stats_handle();
    tokio::spawn(async move {
        while let Ok(mut conn) = listener.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(call)) = conn.receiver.recv().await {
                    let payload = if call.payload.first() == Some(&b'L') {
                        Bytes::from(vec![0x42; 60_000])
                    } else {
                        call.payload.clone()
                    };
                    let header = FrameHeader::answer(&call.header, FrameKind::Reply, 1);
                    let mut header = header;
                    header.payload_len = payload.len() as u32;
                    if conn.sender.send(Frame::new(header, payload)).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, stats)
}

/// An honest client's round trip.
async fn honest_call(server: SocketAddr) {
    let channel = UdpChannel::new(server);
    let conn = bounded("honest connect", channel.connect()).await.unwrap();
    let mut header = FrameHeader::call(7, 1, 0x2000_0001, 1, 3);
    header.payload_len = 5;
    conn.sender
        .send(Frame::new(header, Bytes::from_static(b"hello")))
        .await
        .unwrap();
    let mut rx = conn.receiver;
    let reply = bounded("honest reply", rx.recv()).await.unwrap().unwrap();
    assert_eq!(&reply.payload[..], b"hello");
}

/// The three reflection cases of the issue, from spoofed sources, against a server that
/// validates addresses (the default) and one that does so only under load (unvalidated
/// connections capped at 3×): each amplification factor is at most 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplification_factor_of_each_reflection_case_is_at_most_3() {
    let modes = [
        ("always", AddressValidation::Always),
        (
            "under load",
            AddressValidation::UnderLoad { connections: 1_000 },
        ),
    ];
    for (name, mode) in modes {
        let config = UdpConfig::default().protocol(Config::default().address_validation(mode));
        let (server, stats) = serve(config).await;
        // (case, claimed max datagram, request payload)
        let cases: [(&str, u32, Bytes); 3] = [
            ("1 KB calc echo", 65_000, Bytes::from(vec![b'e'; 1024])),
            ("1-byte max datagram", 1, Bytes::from(vec![b'e'; 1024])),
            ("60 kB reply", 65_000, Bytes::from_static(b"L get key")),
        ];
        let mut runs = Vec::new();
        for (i, (case, max, payload)) in cases.into_iter().enumerate() {
            let victim = spoofed(2 + i as u8).await;
            victim.connect(server).await.unwrap();
            let conn_id = 0x5EED_0000 + i as u32;
            let init = init(conn_id, max);
            let req = request(conn_id, 1, payload);
            let sent = init.len() + req.len();
            runs.push(async move {
                victim.send(&init).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                victim.send(&req).await.unwrap();
                let got =
                    received_bytes(&victim, Duration::from_millis(700), Duration::from_secs(8))
                        .await;
                (case, sent, got)
            });
        }
        let results = bounded("reflection cases", futures_join(runs)).await;
        for (case, sent, got) in results {
            let factor = got as f64 / sent as f64;
            eprintln!("[{name}] {case}: {sent} B in, {got} B out, factor {factor:.3}");
            assert!(
                got <= 3 * sent,
                "[{name}] {case}: {got} B out for {sent} B in"
            );
        }
        let s = stats.snapshot();
        eprintln!("[{name}] server stats: {s:?}");
        match mode {
            AddressValidation::Always => {
                assert_eq!(s.connections_accepted, 0);
                assert!(s.retries_sent >= 2);
                assert!(s.bad_parameters >= 1);
            }
            AddressValidation::UnderLoad { .. } => {
                assert!(s.accepted_unvalidated >= 2);
                assert!(s.amplification_blocked >= 1);
            }
        }
        // Honest clients are still served.
        honest_call(server).await;
    }
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F>(futs: Vec<F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Inits with random connection ids from eight addresses that never answer: the server
/// creates nothing, and an honest client connects at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_init_flood_creates_no_state() {
    let config = UdpConfig::default().protocol(Config::default().max_connections(1024));
    let (server, stats) = serve(config).await;
    let mut seed = 0x1234_5678_u32;
    let mut sent = 0u64;
    for n in 2..=9u8 {
        let sock = spoofed(n).await;
        for _ in 0..500 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if sock.send_to(&init(seed, 1200), server).await.is_ok() {
                sent += 1;
            }
        }
    }
    // Let the server read them all.
    bounded("flood handled", async {
        while stats.snapshot().datagrams_received < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let s = stats.snapshot();
    assert_eq!(s.connections_accepted, 0, "{s:?}");
    assert_eq!(s.retries_sent, sent, "{s:?}");
    honest_call(server).await;
    assert_eq!(stats.snapshot().connections_accepted, 1);
}

/// A peer IP address may hold at most `max_connections_per_ip` connections; the next
/// one is refused (Close reason 4, reported as connection refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_refuses_the_extra_connection() {
    let config = UdpConfig::default().protocol(Config::default().max_connections_per_ip(2));
    let (server, stats) = serve(config).await;
    let channel = UdpChannel::new(server);
    let a = bounded("first", channel.connect()).await.unwrap();
    let b = bounded("second", channel.connect()).await.unwrap();
    let Err(err) = bounded("third", channel.connect()).await else {
        panic!("the third connection was not refused");
    };
    assert!(
        err.to_string().contains("refused"),
        "unexpected error: {err}"
    );
    assert_eq!(stats.snapshot().refused_per_ip, 1);
    drop((a, b));
}

/// A hand-written client on its own loopback address: it reads what the server sends.
struct HandClient {
    sock: UdpSocket,
    conn_id: u32,
}

impl HandClient {
    async fn new(ip_last: u8, server: SocketAddr, conn_id: u32) -> HandClient {
        let sock = spoofed(ip_last).await;
        sock.connect(server).await.unwrap();
        HandClient { sock, conn_id }
    }

    async fn send(&self, d: &[u8]) {
        self.sock.send(d).await.unwrap();
    }

    /// The next datagram from the server (within 2 s), parsed.
    async fn recv(&self) -> Option<Packet> {
        let mut buf = vec![0u8; 70_000];
        match tokio::time::timeout(Duration::from_secs(2), self.sock.recv(&mut buf)).await {
            Ok(Ok(n)) => Packet::parse(&Bytes::copy_from_slice(&buf[..n])).ok(),
            _ => None,
        }
    }

    /// The next datagram that is not an Ack.
    async fn recv_non_ack(&self) -> Option<Packet> {
        loop {
            let p = self.recv().await?;
            if p.body != Body::Ack {
                return Some(p);
            }
        }
    }

    fn init(&self, cookie: Option<rpc_transport_udp::proto::packet::Cookie>) -> Vec<u8> {
        datagram(
            self.conn_id,
            Body::Init {
                client_incarnation: 0xC1,
                recv_window: 4096,
                max_datagram: 65_000,
                cookie,
            },
        )
    }

    /// Init, Retry, Init with the cookie, Accept; returns the Init that carried the
    /// cookie.
    async fn handshake(&self) -> Vec<u8> {
        self.send(&self.init(None)).await;
        let cookie = match self.recv().await {
            Some(Packet {
                body: Body::Retry { cookie },
                ..
            }) => cookie,
            other => panic!("expected a Retry, got {other:?}"),
        };
        let init = self.init(Some(cookie));
        self.send(&init).await;
        match self.recv().await {
            Some(Packet {
                body: Body::Accept { .. },
                ..
            }) => {}
            other => panic!("expected an Accept, got {other:?}"),
        }
        init
    }
}

/// Cookies on real sockets: a forged one and an expired one get a Retry and open
/// nothing; the cookie from a Retry opens the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_on_loopback_forged_expired_valid() {
    let lifetime = Duration::from_millis(200);
    let config = UdpConfig::default().protocol(Config::default().cookie_lifetime(lifetime));
    let (server, stats) = serve(config).await;
    let c = HandClient::new(2, server, 0xC00C1E).await;
    // Forged.
    let forged = rpc_transport_udp::proto::packet::Cookie {
        issued_us: 0,
        tag: [7; 32],
    };
    c.send(&c.init(Some(forged))).await;
    assert!(matches!(
        c.recv().await.map(|p| p.body),
        Some(Body::Retry { .. })
    ));
    // Expired.
    c.send(&c.init(None)).await;
    let Some(Body::Retry { cookie }) = c.recv().await.map(|p| p.body) else {
        panic!("no Retry");
    };
    tokio::time::sleep(lifetime + Duration::from_millis(100)).await;
    c.send(&c.init(Some(cookie))).await;
    let Some(Body::Retry { cookie: fresh }) = c.recv().await.map(|p| p.body) else {
        panic!("no Retry for the expired cookie");
    };
    // Someone else's (another address) cookie.
    let other = HandClient::new(3, server, 0xC00C1E).await;
    other.send(&other.init(Some(fresh))).await;
    assert!(matches!(
        other.recv().await.map(|p| p.body),
        Some(Body::Retry { .. })
    ));
    let s = stats.snapshot();
    assert_eq!(s.connections_accepted, 0, "{s:?}");
    assert_eq!((s.cookies_invalid, s.cookies_expired), (2, 1), "{s:?}");
    // Valid.
    c.send(&c.init(Some(fresh))).await;
    assert!(matches!(
        c.recv().await.map(|p| p.body),
        Some(Body::Accept { .. })
    ));
    assert_eq!(stats.snapshot().connections_accepted, 1);
}

/// A complete exchange (validated Init, a call), replayed from the same address after
/// Close, opens nothing and gets no answer but a Retry and a Reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_close_on_loopback() {
    let (server, stats) = serve(UdpConfig::default()).await;
    let c = HandClient::new(4, server, 0x4E41A7).await;
    let init = c.handshake().await;
    let call = request(c.conn_id, 1, Bytes::from_static(b"transfer 100"));
    c.send(&call).await;
    let reply = c.recv_non_ack().await.expect("reply");
    assert!(matches!(reply.body, Body::Data { .. }), "{reply:?}");
    c.send(&datagram(c.conn_id, Body::Close { reason: 0 }))
        .await;
    bounded("server frees the connection", async {
        while stats.snapshot().connections_closed < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The replay.
    c.send(&init).await;
    c.send(&call).await;
    let a = c.recv().await.map(|p| p.body);
    let b = c.recv().await.map(|p| p.body);
    assert!(matches!(a, Some(Body::Retry { .. })), "{a:?}");
    assert_eq!(b, Some(Body::Reset));
    let s = stats.snapshot();
    assert_eq!((s.connections_accepted, s.replays_refused), (1, 1), "{s:?}");
}

/// Twelve validated connections from one address fill the server's reassembly budget
/// with never-completed messages; an honest client's 200 KB call still completes (the
/// biggest holder is evicted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_200_kb_call_completes_during_a_reassembly_attack() {
    let mut protocol = Config::default().global_reassembly_budget(8 << 20);
    protocol.reassembly.per_peer_budget = 1 << 20;
    let (server, stats) = serve(UdpConfig::default().protocol(protocol)).await;
    // 1 MB messages in 16 fragments of 62,500 bytes; fragment 15 never comes.
    let (msg_len, frags) = (1_000_000u32, 16u32);
    let mut attackers = Vec::new();
    for k in 0..12u32 {
        let c = HandClient::new(5, server, 0xA7_0000 + k).await;
        c.handshake().await;
        for m in 0..2u64 {
            for i in 0..frags - 1 {
                let range = rpc_transport_udp::proto::packet::fragment_range(msg_len, frags, i);
                let d = datagram(
                    c.conn_id,
                    Body::Data {
                        seq: 1 + m * u64::from(frags) + u64::from(i),
                        frag_index: i,
                        frag_count: frags,
                        msg_len,
                        payload: Bytes::from(vec![0xAA; range.len()]),
                    },
                );
                c.send(&d).await;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        attackers.push(c);
    }
    bounded("attack lands", async {
        while stats.snapshot().over_budget == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The honest call: 200 KB each way.
    let channel = UdpChannel::new(server);
    let conn = bounded("honest connect", channel.connect()).await.unwrap();
    let payload = Bytes::from(vec![b'e'; 200_000]);
    let mut header = FrameHeader::call(7, 1, 0x2000_0001, 1, 3);
    header.payload_len = payload.len() as u32;
    conn.sender
        .send(Frame::new(header, payload.clone()))
        .await
        .unwrap();
    let mut rx = conn.receiver;
    let reply = bounded("honest 200 KB reply", rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.payload, payload);
    let s = stats.snapshot();
    assert!(s.reassembly_evictions >= 1, "{s:?}");
    drop(attackers);
}
