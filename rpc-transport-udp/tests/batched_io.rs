//! Batched UDP I/O over real sockets on loopback: segmentation offload (GSO) on send,
//! `recvmmsg`/GRO on receive, the `UdpConfig::gso` switch, and the counters that show
//! which path was taken. Every test is bounded in time; none measures time.

use std::future::Future;
use std::net::UdpSocket as StdUdpSocket;
use std::time::Duration;

use bytes::Bytes;
use quinn_udp::{UdpSockRef, UdpSocketState};
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::transport::{Channel, Connection, FrameReceiver, Listener};
use rpc_transport_udp::proto::Config;
use rpc_transport_udp::{
    PreSharedKey, Security, UdpChannel, UdpConfig, UdpFrameReceiver, UdpListener, UdpStats,
};

/// Fails the test if `fut` takes longer than 30 s.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Whether the kernel offers UDP segmentation offload on a loopback socket of this
/// address family (what the driver's sockets will see).
fn gso_available(addr: &str) -> bool {
    let socket = StdUdpSocket::bind(addr).expect("bind a probe socket");
    let state = UdpSocketState::new(UdpSockRef::from(&socket)).expect("socket options");
    state.max_gso_segments() > 1
}

fn call_frame(call_id: u64, payload: Bytes) -> Frame {
    let mut header = FrameHeader::call(7, call_id, 0x2000_0001, 1, 3);
    header.payload_len = payload.len() as u32;
    Frame::new(header, payload)
}

fn pattern(len: usize, seed: u32) -> Bytes {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31) ^ seed ^ (i / 977)) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// 500-byte datagrams everywhere (loopback's 65,000 switched off): Data payloads stay
/// under the gather threshold, so every fragment is copied whole into the driver's
/// buffer, the case GSO batches.
fn small_datagrams() -> UdpConfig {
    UdpConfig::default().protocol(
        Config::default()
            .max_datagram(500)
            .loopback_max_datagram(None),
    )
}

async fn pair(
    bind: &str,
    config: UdpConfig,
) -> (
    UdpListener,
    UdpChannel,
    Connection<UdpFrameReceiver>,
    Connection<UdpFrameReceiver>,
) {
    let mut listener = UdpListener::bind_with(bind, config.clone()).await.unwrap();
    let channel = UdpChannel::new(listener.local_addr()).with_config(config);
    let client = bounded("connect", channel.connect()).await.unwrap();
    let server = bounded("accept", listener.accept()).await.unwrap();
    (listener, channel, client, server)
}

/// Sends a call of each size from the client and the same payload back as the reply;
/// checks every byte. Returns the client's and the server's counters.
async fn round_trips(bind: &str, config: UdpConfig, sizes: &[usize]) -> (UdpStats, UdpStats) {
    let (listener, channel, client, mut server) = pair(bind, config).await;
    let mut client_rx = client.receiver;
    for (i, &size) in sizes.iter().enumerate() {
        let payload = pattern(size, i as u32);
        client
            .sender
            .send(call_frame(i as u64 + 1, payload.clone()))
            .await
            .unwrap();
        let call = bounded("call", server.receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(call.header.call_id, i as u64 + 1);
        assert!(call.payload == payload, "call of {size} bytes corrupted");
        let reply = FrameHeader::answer(&call.header, FrameKind::Reply, 1);
        server
            .sender
            .send(Frame::new(reply, payload.clone()))
            .await
            .unwrap();
        let back = bounded("reply", client_rx.recv()).await.unwrap().unwrap();
        assert_eq!(back.header.call_id, i as u64 + 1);
        assert!(back.payload == payload, "reply of {size} bytes corrupted");
    }
    (
        channel.stats_handle().snapshot(),
        listener.stats_handle().snapshot(),
    )
}

const SIZES: [usize; 2] = [64 << 10, 1 << 20];

/// The datagrams a message of `size` bytes needs at least with 500-byte datagrams.
fn min_fragments(size: usize) -> u64 {
    (size / 500) as u64
}

/// The checks on one side's counters after [`SIZES`] went both ways.
fn check_side(side: &str, s: &UdpStats, gso: bool) {
    eprintln!("{side}: {s:?}");
    let fragments: u64 = SIZES.iter().map(|&n| min_fragments(n)).sum();
    assert!(s.datagrams_sent > fragments, "{side}: {s:?}");
    assert!(s.datagrams_received > fragments, "{side}: {s:?}");
    // Only the fragments where a frame's header meets its payload (two chunks).
    assert!(
        s.datagrams_gathered <= 2 * SIZES.len() as u64,
        "{side}: whole datagrams are not gathered: {s:?}"
    );
    assert_eq!(s.send_errors, 0, "{side}: {s:?}");
    assert_eq!(s.recv_errors, 0, "{side}: {s:?}");
    assert!(s.recv_calls > 0, "{side}: {s:?}");
    assert!(
        s.recv_calls <= s.datagrams_received,
        "{side}: every receive call returned a datagram: {s:?}"
    );
    if gso {
        assert!(s.gso_sends > 0, "{side}: GSO available but unused: {s:?}");
        // Runs of up to 64 datagrams leave in one call: far fewer calls than datagrams.
        assert!(
            s.gso_sends < s.datagrams_sent,
            "{side}: {} GSO sends for {} datagrams",
            s.gso_sends,
            s.datagrams_sent
        );
        // What arrives in whole runs is read many datagrams per call (recvmmsg, GRO).
        assert!(
            s.recv_calls < s.datagrams_received,
            "{side}: one receive call per datagram despite GSO: {s:?}"
        );
    } else {
        assert_eq!(s.gso_sends, 0, "{side}: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_leave_in_gso_batches_where_the_kernel_offers_it() {
    let gso = gso_available("127.0.0.1:0");
    if !gso {
        eprintln!("UDP_SEGMENT not offered here: checking the fallback path instead");
    }
    let (client, server) = round_trips("127.0.0.1:0", small_datagrams(), &SIZES).await;
    check_side("client", &client, gso);
    check_side("server", &server, gso);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gso_switched_off_sends_one_datagram_per_call_with_the_same_delivery() {
    let (client, server) = round_trips("127.0.0.1:0", small_datagrams().gso(false), &SIZES).await;
    check_side("client", &client, false);
    check_side("server", &server, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_batches_too() {
    if StdUdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; nothing to check");
        return;
    }
    let gso = gso_available("[::1]:0");
    let (client, server) = round_trips("[::1]:0", small_datagrams(), &SIZES).await;
    check_side("client", &client, gso);
    check_side("server", &server, gso);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_fragments_are_contiguous_and_batch_at_the_default_datagram_size() {
    let gso = gso_available("127.0.0.1:0");
    let psk = PreSharedKey::new("batched", [9; 32]).unwrap();
    // 1200-byte datagrams (loopback's 65,000 switched off): sealing copies each
    // fragment whole, so even large payloads are not gathered.
    let protocol = Config::default().loopback_max_datagram(None);
    let server_config = UdpConfig::default()
        .protocol(protocol.clone())
        .security(Security::server_psk([psk.clone()]));
    let client_config = UdpConfig::default()
        .protocol(protocol)
        .security(Security::client_psk(psk));
    let mut listener = UdpListener::bind_with("127.0.0.1:0", server_config)
        .await
        .unwrap();
    let channel = UdpChannel::new(listener.local_addr()).with_config(client_config);
    let client = bounded("connect", channel.connect()).await.unwrap();
    let mut server = bounded("accept", listener.accept()).await.unwrap();
    let payload = pattern(1 << 20, 5);
    client
        .sender
        .send(call_frame(1, payload.clone()))
        .await
        .unwrap();
    let call = bounded("sealed call", server.receiver.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(call.payload == payload, "sealed call corrupted");
    let s = channel.stats_handle().snapshot();
    assert_eq!(s.datagrams_gathered, 0, "{s:?}");
    assert!(s.datagrams_sent > (1 << 20) / 1200, "{s:?}");
    if gso {
        assert!(s.gso_sends > 0, "GSO available but unused: {s:?}");
    } else {
        assert_eq!(s.gso_sends, 0, "{s:?}");
    }
    let l = listener.stats_handle().snapshot();
    assert_eq!(l.forged_dropped, 0, "{l:?}");
}

/// The default to a loopback peer (65,000-byte datagrams, too large for two to share a
/// GSO send; large Data fragments gathered) still goes through the batched receive path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_loopback_datagrams_still_round_trip() {
    let (client, server) = round_trips("127.0.0.1:0", UdpConfig::default(), &SIZES).await;
    for (side, s) in [("client", &client), ("server", &server)] {
        assert!(s.datagrams_gathered > 0, "{side}: {s:?}");
        assert!(s.recv_calls > 0, "{side}: {s:?}");
        assert_eq!(s.send_errors + s.recv_errors, 0, "{side}: {s:?}");
    }
}
