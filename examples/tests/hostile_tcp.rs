//! Hostile clients against a real `Server` over TCP on loopback, each attack while an
//! honest client keeps calling. Attackers connect from 127.0.0.2–127.0.0.9 (Linux
//! routes all of 127.0.0.0/8 to loopback), the honest client from 127.0.0.1, so
//! per-address limits tell them apart as they would on a network.
//!
//! Each test asserts that the honest client's calls all succeed within a generous
//! bound, that the server's own accounting (and, where it matters, the process's RSS)
//! stays under a stated bound, and that the attacker's connection is closed and counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rpc_core::frame::{Frame, FrameHeader, FrameKind, Semantics, HEADER_LEN};
use rpc_core::server::{ServerHandle, ServerStats};
use rpc_core::transport::Listener;
use rpc_core::xdr::XdrWriter;
use rpc_core::{CallContext, CallOptions, Server, Status};
use rpc_transport_tcp::{FrameDecoder, TcpChannel, TcpConfig, TcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

mod target {
    rpc_macros::idl!(
        "target",
        r#"
        /// What the attacks aim at.
        interface Target version 1 {
            /// A reply of `n` bytes.
            opaque big(unsigned int n);
            /// Echoes `x`.
            int echo(int x);
            /// Counts an execution; returns its serial number.
            unsigned hyper put(opaque data<>);
            /// Counts an execution, waits for the gate, returns its serial number.
            unsigned hyper gated();
        };
        "#
    );
}

use target::{Target, TargetClient, TargetServer, TARGET_INTERFACE};

const BIG: u32 = 1;
const PUT: u32 = 3;
const GATED: u32 = 4;

/// The service, with its execution counter and gate.
struct Svc {
    executions: AtomicU64,
    gate: Semaphore,
}

impl Target for Arc<Svc> {
    async fn big(&self, _ctx: &CallContext, n: u32) -> Result<Bytes, Status> {
        Ok(Bytes::from(vec![0xAB; n.min(1 << 20) as usize]))
    }
    async fn echo(&self, _ctx: &CallContext, x: i32) -> Result<i32, Status> {
        Ok(x)
    }
    async fn put(&self, _ctx: &CallContext, _data: Bytes) -> Result<u64, Status> {
        Ok(self.executions.fetch_add(1, Ordering::SeqCst) + 1)
    }
    async fn gated(&self, _ctx: &CallContext) -> Result<u64, Status> {
        let serial = self.executions.fetch_add(1, Ordering::SeqCst) + 1;
        let _permit = self.gate.acquire().await.map_err(|_| Status::Overloaded)?;
        Ok(serial)
    }
}

struct Harness {
    server: Option<ServerHandle>,
    addr: SocketAddr,
    svc: Arc<Svc>,
}

impl Harness {
    async fn start(builder: rpc_core::server::ServerBuilder, tcp: TcpConfig) -> Harness {
        let svc = Arc::new(Svc {
            executions: AtomicU64::new(0),
            gate: Semaphore::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .with_config(tcp);
        let addr = listener.local_addr();
        let server = builder
            .add_service(TargetServer::new(svc.clone()))
            .serve(listener)
            .expect("serve");
        Harness {
            server: Some(server),
            addr,
            svc,
        }
    }

    fn stats(&self) -> ServerStats {
        self.server.as_ref().expect("running").stats()
    }

    /// An honest client from 127.0.0.1.
    fn honest(&self) -> TargetClient<TcpChannel> {
        TargetClient::new(TcpChannel::new(self.addr))
    }

    /// Waits (bounded) until `cond` holds on the server's stats.
    async fn until(&self, what: &str, cond: impl Fn(&ServerStats) -> bool) -> ServerStats {
        let start = Instant::now();
        loop {
            let s = self.stats();
            if cond(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `n` honest echo calls, each of which must succeed within 5 s.
async fn honest_calls(client: &TargetClient<TcpChannel>, n: i32) {
    let quick = client.with_options(CallOptions::new().timeout(Duration::from_secs(5)));
    for i in 0..n {
        let got = quick
            .echo(i)
            .await
            .unwrap_or_else(|e| panic!("honest call {i}: {e}"));
        assert_eq!(got, i);
    }
}

/// A connection from `127.0.0.<host>`.
async fn connect_from(host: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, host], 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// The bytes of a call frame.
fn call(client: u64, call: u64, procedure: u32, args: Bytes, semantics: Semantics) -> Vec<u8> {
    let mut header = FrameHeader::call(client, call, TARGET_INTERFACE.id, 1, procedure);
    header.set_semantics(semantics);
    Frame::new(header, args)
        .to_bytes()
        .expect("encodable")
        .to_vec()
}

fn u32_arg(n: u32) -> Bytes {
    let mut w = XdrWriter::new();
    w.put_u32(n);
    w.into_bytes()
}

fn opaque_arg(data: &[u8]) -> Bytes {
    let mut w = XdrWriter::new();
    w.put_opaque(data, u32::MAX).expect("small");
    w.into_bytes()
}

/// Reads frames from a raw connection until `n` arrived or `wait` passed.
async fn read_frames(stream: &mut TcpStream, n: usize, wait: Duration) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new(16 << 20);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while frames.len() < n {
        while let Some(frame) = decoder.decode(&mut buf).expect("valid frames") {
            frames.push(frame);
        }
        if frames.len() >= n {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
    frames
}

/// Whether the server closed `stream` (EOF or reset) within `wait`, reading and
/// discarding whatever it still sends.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut sink = vec![0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The result of a `put`/`gated` reply: the serial number.
fn serial(frame: &Frame) -> u64 {
    assert_eq!(frame.header.kind, FrameKind::Reply, "{frame:?}");
    u64::from_be_bytes(frame.payload[..8].try_into().expect("8 bytes"))
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_hurts_only_itself() {
    const QUEUED: usize = 1 << 20;
    const CALLS: usize = 16;
    let h = Harness::start(
        Server::builder()
            .max_queued_reply_bytes(QUEUED)
            .max_calls_per_connection(CALLS)
            .write_timeout(Duration::from_millis(500)),
        TcpConfig::default().send_buffer_size(Some(64 << 10)),
    )
    .await;
    let rss_before = rss();
    // 2,000 calls for 64 KiB replies, never read (the kernel buffers fill first).
    let mut attacker = connect_from(2, h.addr).await;
    let mut flood = Vec::new();
    for id in 1..=2_000u64 {
        flood.extend_from_slice(&call(9, id, BIG, u32_arg(64 << 10), Semantics::AtLeastOnce));
    }
    let writer = tokio::spawn(async move {
        let _ = attacker.write_all(&flood).await;
        attacker
    });
    // Meanwhile an honest client is served throughout.
    let honest = h.honest();
    let mut peak = 0;
    for _ in 0..20 {
        honest_calls(&honest, 10).await;
        peak = peak.max(h.stats().queued_reply_bytes);
    }
    let s = h
        .until("the attacker aborted", |s| s.write_timeouts >= 1)
        .await;
    assert!(s.reads_paused >= 1, "{s:?}");
    assert_eq!(s.overloaded, 0, "nobody was refused: {s:?}");
    // At most the byte bound plus what the calls admitted before the pause produce.
    let bound = (QUEUED + CALLS * ((64 << 10) + 128)) as u64;
    assert!(peak <= bound, "peak {peak} > {bound}");
    // The attacker's own writes got nowhere past the pause: most calls never ran.
    assert!(s.calls_completed < 1_000, "{s:?}");
    let mut attacker = writer.await.expect("writer task");
    assert!(closed_within(&mut attacker, Duration::from_secs(10)).await);
    let s = h
        .until("the attacker gone", |s| s.connections_open <= 1)
        .await;
    assert_eq!(s.queued_reply_bytes, 0, "{s:?}");
    if let (Some(before), Some(after)) = (rss_before, rss()) {
        assert!(
            after.saturating_sub(before) < 64 << 20,
            "RSS grew by {} bytes",
            after - before
        );
    }
    honest_calls(&honest, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_non_reading_client_returns_within_the_grace_period() {
    let h = Harness::start(
        Server::builder()
            .shutdown_grace(Duration::from_millis(500))
            // Longer than the test: only the grace period can end it.
            .write_timeout(Duration::from_secs(600)),
        TcpConfig::default().send_buffer_size(Some(64 << 10)),
    )
    .await;
    let mut attacker = connect_from(2, h.addr).await;
    let mut flood = Vec::new();
    for id in 1..=400u64 {
        flood.extend_from_slice(&call(9, id, BIG, u32_arg(64 << 10), Semantics::AtLeastOnce));
    }
    attacker.write_all(&flood).await.expect("write");
    h.until("replies piling up", |s| s.reads_paused >= 1).await;
    let mut h = h;
    let server = h.server.take().expect("running");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown returned");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(closed_within(&mut attacker, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_the_cap_do_not_lock_new_clients_out() {
    let h = Harness::start(
        Server::builder()
            .max_connections(64)
            .max_connections_per_ip(16),
        TcpConfig::default(),
    )
    .await;
    // 8 addresses x 8 idle connections: the cap.
    let mut idle = Vec::new();
    for host in 2..=9 {
        for _ in 0..8 {
            idle.push(connect_from(host, h.addr).await);
        }
    }
    h.until("the cap", |s| s.connections_open == 64).await;
    honest_calls(&h.honest(), 20).await;
    // A stranger piling up more idle connections from one address displaces only its
    // own (the per-address cap), never the honest client's.
    let honest = h.honest();
    honest_calls(&honest, 1).await;
    for _ in 0..40 {
        idle.push(connect_from(2, h.addr).await);
    }
    let s = h.until("evictions", |s| s.connections_evicted >= 40).await;
    assert_eq!(s.connections_rejected, 0, "{s:?}");
    assert!(s.connections_open <= 64, "{s:?}");
    honest_calls(&honest, 20).await;
    assert_eq!(h.stats().connection_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_by_the_idle_timeout() {
    let h = Harness::start(
        Server::builder().idle_timeout(Some(Duration::from_millis(300))),
        TcpConfig::default(),
    )
    .await;
    let mut idle = connect_from(2, h.addr).await;
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await);
    let s = h.until("idle close counted", |s| s.idle_closed >= 1).await;
    assert_eq!(s.connections_open, 0, "{s:?}");
    // A client that keeps calling is not idle.
    let honest = h.honest();
    for _ in 0..5 {
        honest_calls(&honest, 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_frames_are_timed_out() {
    let h = Harness::start(
        Server::builder(),
        TcpConfig::default().frame_timeout(Some(Duration::from_millis(500))),
    )
    .await;
    let frame = call(9, 1, PUT, opaque_arg(&[7; 4000]), Semantics::AtLeastOnce);
    let mut slow = connect_from(2, h.addr).await;
    let trickle = tokio::spawn(async move {
        for byte in frame {
            if slow.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        slow
    });
    let honest = h.honest();
    honest_calls(&honest, 50).await;
    let s = h
        .until("the slow frame timed out", |s| s.slow_frames >= 1)
        .await;
    assert_eq!(s.calls_completed, 50, "the trickled call never ran: {s:?}");
    let mut slow = trickle.await.expect("trickle");
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_but_unsent_payloads_hold_no_memory() {
    const CONNECTIONS: usize = 48;
    let h = Harness::start(
        Server::builder(),
        TcpConfig::default().frame_timeout(Some(Duration::from_secs(2))),
    )
    .await;
    let before = rss();
    // Each announces a 16 MiB payload (just under the limit) and sends one byte of it.
    let mut header = FrameHeader::call(9, 1, TARGET_INTERFACE.id, 1, PUT);
    header.payload_len = (16 << 20) - 64;
    let mut raw = [0u8; HEADER_LEN];
    header.emit(&[], &mut raw).expect("encodable");
    raw[48..52].copy_from_slice(&header.payload_len.to_be_bytes());
    let mut held = Vec::new();
    for i in 0..CONNECTIONS {
        let mut c = connect_from(2 + (i % 8) as u8, h.addr).await;
        c.write_all(&raw).await.expect("header");
        c.write_all(&[0]).await.expect("a byte");
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let (Some(before), Some(after)) = (before, rss()) {
        // Reserving every announced payload would be 768 MiB.
        let grown = after.saturating_sub(before);
        assert!(grown < 64 << 20, "RSS grew by {grown} bytes");
    }
    honest_calls(&h.honest(), 20).await;
    let s = h
        .until("all timed out", |s| {
            s.slow_frames + s.bad_frames >= CONNECTIONS as u64
        })
        .await;
    assert_eq!(s.slow_frames, CONNECTIONS as u64, "{s:?}");
    for c in &mut held {
        assert!(closed_within(c, Duration::from_secs(5)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_of_a_running_call_are_bounded() {
    let h = Harness::start(Server::builder(), TcpConfig::default()).await;
    let mut dup = connect_from(2, h.addr).await;
    let one = call(9, 1, GATED, Bytes::new(), Semantics::ExactlyOnce);
    let mut flood = Vec::new();
    for _ in 0..10_000 {
        flood.extend_from_slice(&one);
    }
    dup.write_all(&flood).await.expect("write");
    // Every duplicate is looked at before the gate opens: each joined (8 at most) or
    // was dropped. (Waiting for fewer let late duplicates find the finished reply.)
    let s = h
        .until("every duplicate joined or dropped", |s| {
            s.reply_cache.waiters_dropped + s.reply_cache.dedup_hits >= 9_999
        })
        .await;
    assert!(s.reply_cache.dedup_hits <= 8, "{s:?}");
    honest_calls(&h.honest(), 20).await;
    h.svc.gate.add_permits(1);
    // The execution's reply goes to the caller and the 8 duplicates that could wait.
    let replies = read_frames(&mut dup, 10_000, Duration::from_secs(2)).await;
    assert!(
        (1..=9).contains(&replies.len()),
        "{} replies",
        replies.len()
    );
    assert!(replies.iter().all(|f| serial(f) == 1));
    assert_eq!(h.svc.executions.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_churn_cannot_make_an_exactly_once_call_run_twice() {
    let h = Harness::start(Server::builder(), TcpConfig::default()).await;
    // The victim: an exactly-once put from 127.0.0.1 with a known client id.
    const VICTIM: u64 = 0x5EED;
    let mut victim = connect_from(1, h.addr).await;
    let put = call(VICTIM, 1, PUT, opaque_arg(b"once"), Semantics::ExactlyOnce);
    victim.write_all(&put).await.expect("write");
    let first = read_frames(&mut victim, 1, Duration::from_secs(5)).await;
    assert_eq!(serial(&first[0]), 1);
    // 30,000 fresh exactly-once client ids from eight other addresses.
    let mut attackers = Vec::new();
    for host in 2..=9u8 {
        let mut c = connect_from(host, h.addr).await;
        let mut flood = Vec::new();
        for i in 0..3_750u64 {
            let id = (u64::from(host) << 32) | i;
            flood.extend_from_slice(&call(id, 1, PUT, opaque_arg(b"x"), Semantics::ExactlyOnce));
        }
        attackers.push(tokio::spawn(async move {
            c.write_all(&flood).await.expect("write");
            read_frames(&mut c, 3_750, Duration::from_secs(20))
                .await
                .len()
        }));
    }
    let mut answered = 0;
    for a in attackers {
        answered += a.await.expect("attacker");
    }
    assert_eq!(
        answered, 30_000,
        "each got an answer (a reply or Overloaded)"
    );
    let s = h.stats();
    assert!(s.reply_cache.clients_refused > 0, "{s:?}");
    assert!(s.reply_cache.clients <= 20_000, "{s:?}");
    // The victim's retransmission is answered from the cache: the put never runs again.
    let executions = h.svc.executions.load(Ordering::SeqCst);
    victim.write_all(&put).await.expect("write");
    let again = read_frames(&mut victim, 1, Duration::from_secs(5)).await;
    assert_eq!(serial(&again[0]), 1);
    assert_eq!(h.svc.executions.load(Ordering::SeqCst), executions);
    honest_calls(&h.honest(), 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_with_the_same_client_id_cannot_interfere() {
    let h = Harness::start(Server::builder(), TcpConfig::default()).await;
    const VICTIM: u64 = 0xC0FFEE;
    let mut victim = connect_from(1, h.addr).await;
    let mut stranger = connect_from(2, h.addr).await;
    // The victim's call 1 finishes; its reply is cached.
    let put1 = call(VICTIM, 1, PUT, opaque_arg(b"a"), Semantics::ExactlyOnce);
    victim.write_all(&put1).await.expect("write");
    let r = read_frames(&mut victim, 1, Duration::from_secs(5)).await;
    let victims_serial = serial(&r[0]);

    // 1. Reading the cached reply: the stranger's "duplicate" is a call of its own.
    stranger.write_all(&put1).await.expect("write");
    let r = read_frames(&mut stranger, 1, Duration::from_secs(5)).await;
    assert_ne!(
        serial(&r[0]),
        victims_serial,
        "the stranger read the victim's reply"
    );

    // 2. Pre-answering: the stranger sends the victim's next call id first.
    let put2 = call(VICTIM, 2, PUT, opaque_arg(b"b"), Semantics::ExactlyOnce);
    stranger.write_all(&put2).await.expect("write");
    let pre = serial(&read_frames(&mut stranger, 1, Duration::from_secs(5)).await[0]);
    victim.write_all(&put2).await.expect("write");
    let own = serial(&read_frames(&mut victim, 1, Duration::from_secs(5)).await[0]);
    assert_ne!(own, pre, "the victim got the stranger's answer");

    // 3. Raising the low-water mark: the victim's retransmission of call 2 is still
    //    answered from the cache, not refused as evicted.
    let mut header = FrameHeader::call(VICTIM, 1_000, TARGET_INTERFACE.id, 1, PUT);
    header.set_semantics(Semantics::ExactlyOnce);
    header.aux = u64::MAX;
    let raise = Frame::new(header, opaque_arg(b"c"))
        .to_bytes()
        .expect("encodable");
    stranger.write_all(&raise).await.expect("write");
    let _ = read_frames(&mut stranger, 1, Duration::from_secs(5)).await;
    victim.write_all(&put2).await.expect("write");
    let again = read_frames(&mut victim, 1, Duration::from_secs(5)).await;
    assert_eq!(serial(&again[0]), own, "{again:?}");

    // 4. Cancelling: the victim's gated call survives the stranger's Cancel.
    let gated = call(VICTIM, 3, GATED, Bytes::new(), Semantics::ExactlyOnce);
    victim.write_all(&gated).await.expect("write");
    let start = Instant::now();
    while h.svc.executions.load(Ordering::SeqCst) < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "gated call never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut cancel = FrameHeader::call(VICTIM, 3, TARGET_INTERFACE.id, 1, GATED);
    cancel.kind = FrameKind::Cancel;
    let cancel = Frame::new(cancel, Bytes::new())
        .to_bytes()
        .expect("encodable");
    stranger.write_all(&cancel).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.stats().cancels_received, 1);
    h.svc.gate.add_permits(1);
    let done = read_frames(&mut victim, 1, Duration::from_secs(5)).await;
    assert_eq!(serial(&done[0]), 5, "the victim's call completed normally");
    honest_calls(&h.honest(), 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_id_reused_with_other_arguments_is_refused_not_answered_from_the_cache() {
    let h = Harness::start(Server::builder(), TcpConfig::default()).await;
    let mut c = connect_from(1, h.addr).await;
    let original = call(0xA1, 1, PUT, opaque_arg(b"first"), Semantics::ExactlyOnce);
    c.write_all(&original).await.expect("write");
    assert_eq!(
        serial(&read_frames(&mut c, 1, Duration::from_secs(5)).await[0]),
        1
    );
    // The same ids with other arguments: not the cached reply of a different request.
    let other = call(0xA1, 1, PUT, opaque_arg(b"second"), Semantics::ExactlyOnce);
    c.write_all(&other).await.expect("write");
    let answer = read_frames(&mut c, 1, Duration::from_secs(5)).await;
    assert_eq!(answer[0].header.kind, FrameKind::Status, "{answer:?}");
    let status: Status = rpc_core::xdr::from_bytes(&answer[0].payload).expect("a Status");
    assert!(
        matches!(&status, Status::BadArguments { message } if message.contains("other arguments")),
        "{status:?}"
    );
    // Another procedure under the same ids is refused too.
    let echo = call(0xA1, 1, 2, u32_arg(7), Semantics::ExactlyOnce);
    c.write_all(&echo).await.expect("write");
    let answer = read_frames(&mut c, 1, Duration::from_secs(5)).await;
    assert_eq!(answer[0].header.kind, FrameKind::Status, "{answer:?}");
    // The true retransmission still gets the original's reply, and nothing ran again.
    c.write_all(&original).await.expect("write");
    assert_eq!(
        serial(&read_frames(&mut c, 1, Duration::from_secs(5)).await[0]),
        1
    );
    assert_eq!(h.svc.executions.load(Ordering::SeqCst), 1);
    assert_eq!(h.stats().reply_cache.mismatched, 2);
}
