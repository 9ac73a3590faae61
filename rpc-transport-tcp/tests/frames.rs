//! Frame-level tests of the TCP transport over real sockets on 127.0.0.1, without the
//! RPC runtime.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameError, FrameHeader, FrameKind, HEADER_LEN};
use rpc_core::transport::{Channel, Connection, FrameReceiver, Listener};
use rpc_core::TransportError;
use rpc_transport_tcp::{TcpChannel, TcpConfig, TcpFrameReceiver, TcpListener};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

/// Every test step is bounded: a hang is a failure, not a stuck CI job.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

fn payload_for(call_id: u64, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(131).wrapping_add(call_id) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn frame(call_id: u64, len: usize) -> Frame {
    let mut header = FrameHeader::call(0xC1, call_id, 0x2000_0001, 1, 2);
    header.payload_len = len as u32;
    Frame::new(header, payload_for(call_id, len))
}

fn assert_intact(f: &Frame) {
    assert_eq!(f.header.payload_len as usize, f.payload.len());
    assert_eq!(
        f.payload,
        payload_for(f.header.call_id, f.payload.len()),
        "payload of call {}",
        f.header.call_id
    );
}

async fn pair(
    config: TcpConfig,
) -> (
    TcpListener,
    Connection<TcpFrameReceiver>,
    Connection<TcpFrameReceiver>,
) {
    let mut listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_config(config.clone());
    let channel = TcpChannel::new(listener.local_addr()).with_config(config);
    let (client, server) =
        bounded(async { tokio::join!(channel.connect(), listener.accept()) }).await;
    (listener, client.unwrap(), server.unwrap())
}

/// Checks that a connection carries frames both ways.
async fn assert_works(a: &mut Connection<TcpFrameReceiver>, b: &mut Connection<TcpFrameReceiver>) {
    a.sender.send(frame(1_000_001, 33)).await.unwrap();
    let got = bounded(b.receiver.recv()).await.unwrap().expect("a frame");
    assert_eq!(got, frame(1_000_001, 33));
    b.sender.send(frame(1_000_002, 0)).await.unwrap();
    let got = bounded(a.receiver.recv()).await.unwrap().expect("a frame");
    assert_eq!(got, frame(1_000_002, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_deliver_every_frame_exactly_once() {
    concurrent_senders(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_through_the_writer_queue() {
    concurrent_senders(false).await
}

/// Many tasks send at once, `direct`: written in the senders' tasks when nothing is
/// queued (the default), or always through the writer task's queue.
async fn concurrent_senders(direct: bool) {
    const TASKS: u64 = 25;
    const PER_TASK: u64 = 40;
    let config = TcpConfig::default().send_queue(64).direct_write(direct);
    let (_listener, client, mut server) = pair(config).await;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let sender = client.sender.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let id = t * PER_TASK + i;
                sender
                    .send(frame(id, (id as usize * 97) % 3000))
                    .await
                    .unwrap();
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    // The server echoes each call back as a reply while it counts them.
    let server_task = tokio::spawn(async move {
        let mut seen = HashSet::new();
        while seen.len() < (TASKS * PER_TASK) as usize {
            let f = server
                .receiver
                .recv()
                .await
                .unwrap()
                .expect("frame before EOF");
            assert_intact(&f);
            assert!(
                seen.insert(f.header.call_id),
                "call {} delivered twice",
                f.header.call_id
            );
            let mut reply = FrameHeader::answer(&f.header, FrameKind::Reply, 5);
            reply.payload_len = f.payload.len() as u32;
            server
                .sender
                .send(Frame::new(reply, f.payload))
                .await
                .unwrap();
        }
        seen
    });

    let mut client_rx = client.receiver;
    let mut replies = HashSet::new();
    bounded(async {
        while replies.len() < (TASKS * PER_TASK) as usize {
            let f = client_rx.recv().await.unwrap().expect("reply before EOF");
            assert_eq!(f.header.kind, FrameKind::Reply);
            assert_intact(&f);
            assert!(replies.insert(f.header.call_id));
        }
    })
    .await;
    for t in tasks {
        bounded(t).await.unwrap();
    }
    let seen = bounded(server_task).await.unwrap();
    let all: HashSet<u64> = (0..TASKS * PER_TASK).collect();
    assert_eq!(seen, all);
    assert_eq!(replies, all);
}

#[tokio::test]
async fn queued_frames_arrive_in_order_with_large_payloads() {
    frames_in_order(true).await
}

#[tokio::test]
async fn queued_frames_arrive_in_order_through_the_writer_queue() {
    frames_in_order(false).await
}

/// 1,500 frames of mixed sizes, most queued behind full socket buffers (partial writes),
/// arrive intact and in order; then a clean EOF once the senders are gone.
async fn frames_in_order(direct: bool) {
    const MAX: u32 = 256 << 10;
    let config = TcpConfig::default()
        .max_payload(MAX)
        .write_batch(64)
        .send_queue(1024)
        .direct_write(direct);
    let (_listener, client, mut server) = pair(config).await;

    let sizes: Vec<usize> = (0..1500u64)
        .map(|i| match i % 100 {
            0 => MAX as usize, // exactly at the limit
            50 => 100_000,
            n if n % 3 == 0 => 0,
            n => n as usize * 13,
        })
        .collect();

    // Queue everything before reading anything: the writer sees full batches, and the
    // socket buffers fill up, so writes are partial.
    let sender = client.sender.clone();
    let sizes_tx = sizes.clone();
    let producer = tokio::spawn(async move {
        for (i, len) in sizes_tx.into_iter().enumerate() {
            sender.send(frame(i as u64, len)).await.unwrap();
        }
    });

    bounded(async {
        for (i, len) in sizes.iter().enumerate() {
            let f = server.receiver.recv().await.unwrap().expect("a frame");
            assert_eq!(f.header.call_id, i as u64, "in order");
            assert_eq!(f.payload.len(), *len);
            assert_intact(&f);
        }
    })
    .await;
    bounded(producer).await.unwrap();

    // Every sender gone: the writer drains, shuts down, and the server sees a clean EOF.
    drop(client.sender);
    assert!(bounded(server.receiver.recv()).await.unwrap().is_none());
    assert!(
        bounded(server.receiver.recv()).await.unwrap().is_none(),
        "EOF is sticky"
    );
}

/// Connects a raw socket that misbehaves with `bytes` (then, if `eof`, half-closes),
/// and returns what the listener's receiver for it reports, after checking that a
/// well-behaved connection on the same listener keeps working.
async fn misbehaving_peer(config: TcpConfig, bytes: &[u8], eof: bool) -> TransportError {
    let (mut listener, mut good_client, mut good_server) = pair(config).await;
    assert_works(&mut good_client, &mut good_server).await;

    let mut raw = bounded(TcpStream::connect(listener.local_addr()))
        .await
        .unwrap();
    let mut bad = bounded(listener.accept()).await.unwrap();
    raw.write_all(bytes).await.unwrap();
    if eof {
        raw.shutdown().await.unwrap();
    }
    let err = bounded(bad.receiver.recv())
        .await
        .expect_err("the bad peer is refused");
    assert!(
        matches!(
            bounded(bad.receiver.recv()).await,
            Err(TransportError::Closed)
        ),
        "a failed receiver stays failed"
    );
    drop(bad);

    assert_works(&mut good_client, &mut good_server).await;
    // The well-behaved client can still open new connections too.
    let channel = TcpChannel::new(listener.local_addr());
    let (c, s) = bounded(async { tokio::join!(channel.connect(), listener.accept()) }).await;
    assert_works(&mut c.unwrap(), &mut s.unwrap()).await;
    err
}

#[tokio::test]
async fn garbage_is_bad_magic() {
    let err = misbehaving_peer(TcpConfig::default(), b"GET / HTTP/1.1\r\n\r\n", false).await;
    assert!(
        matches!(err, TransportError::BadFrame(FrameError::BadMagic(m)) if m == u32::from_be_bytes(*b"GET ")),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_header_is_refused_before_its_payload() {
    let big = frame(7, 5000);
    let header = big.header_bytes().unwrap();
    // Only the header is sent and the socket stays open: the refusal cannot have
    // waited for the payload.
    let err = misbehaving_peer(TcpConfig::default().max_payload(4096), &header, false).await;
    assert!(
        matches!(
            err,
            TransportError::BadFrame(FrameError::PayloadTooLarge {
                len: 5000,
                max: 4096
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn corrupted_frame_is_bad_checksum() {
    let mut bytes = frame(7, 100).to_bytes().unwrap().to_vec();
    bytes[HEADER_LEN + 50] ^= 0xFF;
    let err = misbehaving_peer(TcpConfig::default(), &bytes, false).await;
    assert!(
        matches!(
            err,
            TransportError::BadFrame(FrameError::BadChecksum { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn truncated_frame_then_eof_is_unexpected_eof() {
    let bytes = frame(7, 100).to_bytes().unwrap();
    for cut in [1, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 99] {
        let err = misbehaving_peer(TcpConfig::default(), &bytes[..cut], true).await;
        match err {
            TransportError::Io(e) => {
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}")
            }
            other => panic!("cut at {cut}: expected UnexpectedEof, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn peer_close_ends_receive_and_fails_sends() {
    let (_listener, client, server) = pair(TcpConfig::default()).await;
    let Connection {
        sender,
        receiver: mut client_rx,
        ..
    } = client;
    drop(server);

    assert!(
        bounded(client_rx.recv()).await.unwrap().is_none(),
        "clean EOF"
    );

    // The first writes may still be accepted by the local kernel; once the peer's reset
    // comes back the writer fails and the queue closes.
    let err = bounded(async {
        loop {
            match sender.send(frame(1, 1000)).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => return e,
            }
        }
    })
    .await;
    assert!(matches!(err, TransportError::Closed), "{err:?}");
    assert!(sender.is_closed());
    assert!(matches!(
        sender.try_send(frame(2, 0)),
        Err(TransportError::Closed)
    ));
}

#[tokio::test]
async fn client_close_is_a_clean_eof_for_the_server() {
    let (_listener, client, mut server) = pair(TcpConfig::default()).await;
    client.sender.send(frame(3, 10)).await.unwrap();
    drop(client);
    let f = bounded(server.receiver.recv())
        .await
        .unwrap()
        .expect("the queued frame is flushed first");
    assert_eq!(f, frame(3, 10));
    assert!(bounded(server.receiver.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn connect_to_a_closed_port_is_a_connect_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let channel = TcpChannel::new(addr);
    match bounded(channel.connect()).await {
        Err(TransportError::Connect { addr: a, source }) => {
            assert_eq!(a, addr.to_string());
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn connect_timeout_is_a_connect_error() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a dial
    // hangs until the connect timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let config = TcpConfig::default().connect_timeout(Duration::from_millis(200));
    let channel = TcpChannel::new(addr).with_config(config);
    let mut held = Vec::new();
    let err = bounded(async {
        loop {
            match channel.connect().await {
                Ok(conn) => held.push(conn), // still room in the queue
                Err(e) => return e,
            }
        }
    })
    .await;
    match err {
        TransportError::Connect { addr: a, source } => {
            assert_eq!(a, addr.to_string());
            assert_eq!(source.kind(), io::ErrorKind::TimedOut, "{source}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(held.len() < 100, "the accept queue filled up");
}

#[tokio::test]
async fn connects_by_host_name() {
    let mut listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let name = format!("localhost:{}", listener.local_addr().port());
    let channel = TcpChannel::new(name.as_str());
    assert_eq!(channel.remote(), format!("tcp://{name}"));
    // `localhost` may resolve to ::1 first; the dial falls through to 127.0.0.1.
    let (c, s) = bounded(async { tokio::join!(channel.connect(), listener.accept()) }).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.peer_addr, listener.local_addr());
    assert_works(&mut c, &mut s).await;
}

#[tokio::test]
async fn unresolvable_name_is_a_connect_error() {
    let channel = TcpChannel::new("no-such-host.invalid:80")
        .with_config(TcpConfig::default().connect_timeout(Duration::from_secs(5)));
    assert!(matches!(
        bounded(channel.connect()).await,
        Err(TransportError::Connect { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_send_queue_makes_senders_wait_until_the_peer_reads() {
    // The peer does not read: the socket buffers fill, then the 4-frame queue, and the
    // next send waits (bounded memory) until the peer starts reading.
    let config = TcpConfig::default()
        .send_queue(4)
        .max_payload(2 << 20)
        .send_buffer_size(Some(64 << 10))
        .recv_buffer_size(Some(64 << 10));
    let (_listener, client, mut server) = pair(config).await;
    let sender = client.sender.clone();
    let mut sent = 0u64;
    let blocked = loop {
        let send = sender.send(frame(sent, 1 << 20));
        match tokio::time::timeout(Duration::from_millis(300), send).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
                assert!(sent < 64, "sends never waited: the queue is not bounded");
            }
            Err(_) => break sent,
        }
    };
    assert!(blocked >= 4, "only {blocked} frames taken before waiting");
    // Now read: every frame taken arrives intact and in order, and sending resumes.
    let producer = tokio::spawn(async move {
        for id in blocked..blocked + 3 {
            sender.send(frame(id, 1 << 20)).await.unwrap();
        }
    });
    bounded(async {
        for id in 0..blocked + 3 {
            let f = server.receiver.recv().await.unwrap().expect("a frame");
            assert_eq!(f.header.call_id, id);
            assert_intact(&f);
        }
    })
    .await;
    bounded(producer).await.unwrap();
}
