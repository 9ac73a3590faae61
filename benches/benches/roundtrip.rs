//! Call round trips on loopback over UDP and over TCP, next to the raw tokio ping-pong
//! floors, all in one run.
//!
//! * `roundtrip_32B`: one call in flight, a 32-byte `opaque<>` each way: raw tokio UDP and
//!   TCP ping-pong (the floors), each transport alone (frames echoed, no RPC runtime), RPC
//!   calls over UDP and TCP with the handler inline (the default for an `[inline]`
//!   procedure) and on the worker pool, and the in-process transport (the runtime's own
//!   cost, no sockets).
//! * `echo_64KiB`: a 64 KiB `opaque<>` echoed, the copying path (the argument is copied
//!   into the request, the result into the reply) against the shared-descriptor path
//!   (the client's argument and the server's result, a slice of the request, are
//!   gathered by the transport's vectored write: `writev` on TCP, `sendmsg` per datagram
//!   on UDP), over TCP and UDP. Throughput is reported in bytes echoed per second.
//!
//! Client and server share one multi-thread runtime with 2 workers (this machine has 2
//! vCPUs); each measurement loop runs as a task on that runtime, like a real caller.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::echo::{echo, echo_shared, EchoService};
use benches::{raw_tcp_echo_server, RawTcpPinger};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rpc_core::client::ClientConfig;
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::server::ServerHandle;
use rpc_core::transport::{memory, Channel, FrameReceiver, FrameSender, Listener};
use rpc_core::{Client, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::{UdpChannel, UdpListener};
use tokio::net::UdpSocket;
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

const SIZE: usize = 32;

/// Runs `iters` calls of `call` as one task on the runtime and returns the elapsed time.
fn time_calls<C, F, Fut>(rt: &Runtime, client: &Client<C>, iters: u64, call: F) -> Duration
where
    C: Channel,
    F: Fn(Client<C>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let client = client.clone();
    rt.block_on(rt.spawn(async move {
        let start = Instant::now();
        for _ in 0..iters {
            call(client.clone()).await;
        }
        start.elapsed()
    }))
    .unwrap()
}

async fn echo32<C: Channel>(client: Client<C>) {
    echo(&client, &[0x5a; SIZE]).await.unwrap();
}

/// A server for the echo service (inline or pooled) and a connected client.
fn rpc_pair<L: Listener, C: Channel>(
    rt: &Runtime,
    listener: L,
    channel: impl FnOnce(std::net::SocketAddr) -> C,
    inline: bool,
    config: ClientConfig,
) -> (Client<C>, ServerHandle) {
    rt.block_on(async {
        let addr = listener.local_addr();
        let server = Server::builder()
            .run_inline(inline)
            .share_threshold(config.share_threshold)
            .add_service(EchoService)
            .serve(listener)
            .unwrap();
        let client = Client::with_config(channel(addr), config);
        client.connect().await.unwrap();
        (client, server)
    })
}

/// Frames echoed by a task on the accepted connection, with no RPC runtime.
fn frame_echo<L: Listener, C: Channel>(
    rt: &Runtime,
    mut listener: L,
    channel: C,
) -> (FrameSender, Arc<Mutex<C::Receiver>>) {
    rt.block_on(async {
        let client = channel.connect().await.unwrap();
        let mut server = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let _listener = listener;
            while let Ok(Some(frame)) = server.receiver.recv().await {
                let reply = FrameHeader::answer(&frame.header, FrameKind::Reply, 1);
                if server
                    .sender
                    .send(Frame::new(reply, frame.payload))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        (client.sender, Arc::new(Mutex::new(client.receiver)))
    })
}

fn time_frames<R: FrameReceiver>(
    rt: &Runtime,
    tx: &FrameSender,
    rx: &Arc<Mutex<R>>,
    iters: u64,
) -> Duration {
    let (tx, rx) = (tx.clone(), rx.clone());
    rt.block_on(rt.spawn(async move {
        let mut rx = rx.lock().await;
        let payload = Bytes::from_static(&[0x5a; SIZE + 4]);
        let start = Instant::now();
        for i in 0..iters {
            let header = FrameHeader::call(1, i, 1, 1, 1);
            tx.send(Frame::new(header, payload.clone())).await.unwrap();
            rx.recv().await.unwrap().unwrap();
        }
        start.elapsed()
    }))
    .unwrap()
}

fn roundtrip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("roundtrip_32B");
    group.measurement_time(Duration::from_secs(5));
    let frame_size = rpc_core::frame::HEADER_LEN + 4 + SIZE;

    // The floors: raw tokio ping-pong of the same size as our frame (header + XDR).
    let udp = rt.block_on(async {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(&buf[..n], from).await;
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(addr).await.unwrap();
        Arc::new(client)
    });
    group.bench_function("raw_tokio_udp_pingpong", |b| {
        b.iter_custom(|iters| {
            let udp = udp.clone();
            rt.block_on(rt.spawn(async move {
                let out = vec![0x5au8; frame_size];
                let mut buf = vec![0u8; 2048];
                let start = Instant::now();
                for _ in 0..iters {
                    udp.send(&out).await.unwrap();
                    udp.recv(&mut buf).await.unwrap();
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });
    let pinger = rt.block_on(async {
        let addr = raw_tcp_echo_server(frame_size).await.unwrap();
        RawTcpPinger::connect(addr, frame_size).await.unwrap()
    });
    let pinger = Arc::new(Mutex::new(pinger));
    group.bench_function("raw_tokio_tcp_pingpong", |b| {
        b.iter_custom(|iters| {
            let pinger = pinger.clone();
            rt.block_on(rt.spawn(async move {
                let mut p = pinger.lock().await;
                let start = Instant::now();
                for _ in 0..iters {
                    p.ping().await.unwrap();
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });

    // The transports alone.
    let (utx, urx) = {
        let listener = rt.block_on(UdpListener::bind("127.0.0.1:0")).unwrap();
        let channel = UdpChannel::new(listener.local_addr());
        frame_echo(&rt, listener, channel)
    };
    group.bench_function("udp_transport_frame_echo", |b| {
        b.iter_custom(|iters| time_frames(&rt, &utx, &urx, iters))
    });
    let (ttx, trx) = {
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let channel = TcpChannel::new(listener.local_addr());
        frame_echo(&rt, listener, channel)
    };
    group.bench_function("tcp_transport_frame_echo", |b| {
        b.iter_custom(|iters| time_frames(&rt, &ttx, &trx, iters))
    });

    // RPC calls, inline and pooled, over both transports and in process.
    let mut servers = Vec::new();
    for (name, inline) in [("inline", true), ("pooled", false)] {
        let listener = rt.block_on(UdpListener::bind("127.0.0.1:0")).unwrap();
        let (client, server) = rpc_pair(
            &rt,
            listener,
            UdpChannel::new,
            inline,
            ClientConfig::default(),
        );
        servers.push(server);
        group.bench_function(format!("rpc_udp_call_{name}"), |b| {
            b.iter_custom(|iters| time_calls(&rt, &client, iters, echo32))
        });
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let (client, server) = rpc_pair(
            &rt,
            listener,
            TcpChannel::new,
            inline,
            ClientConfig::default(),
        );
        servers.push(server);
        group.bench_function(format!("rpc_tcp_call_{name}"), |b| {
            b.iter_custom(|iters| time_calls(&rt, &client, iters, echo32))
        });
    }
    let (channel, listener) = memory::endpoint(1024);
    let (mem_client, server) = rpc_pair(&rt, listener, |_| channel, true, ClientConfig::default());
    servers.push(server);
    group.bench_function("rpc_memory_call_inline", |b| {
        b.iter_custom(|iters| time_calls(&rt, &mem_client, iters, echo32))
    });
    group.finish();

    // 64 KiB echo: copying vs shared descriptors.
    let mut group = c.benchmark_group("echo_64KiB");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(64 << 10));
    for (name, threshold) in [
        ("copy", None),
        ("descriptor", Some(rpc_core::xdr::DEFAULT_SHARE_THRESHOLD)),
    ] {
        let config = ClientConfig::default().share_threshold(threshold);
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let (client, server) = rpc_pair(&rt, listener, TcpChannel::new, true, config.clone());
        servers.push(server);
        group.bench_function(format!("tcp_{name}"), |b| {
            b.iter_custom(|iters| time_calls(&rt, &client, iters, echo64k))
        });
        let listener = rt.block_on(UdpListener::bind("127.0.0.1:0")).unwrap();
        let (client, server) = rpc_pair(&rt, listener, UdpChannel::new, true, config);
        servers.push(server);
        group.bench_function(format!("udp_{name}"), |b| {
            b.iter_custom(|iters| time_calls(&rt, &client, iters, echo64k))
        });
    }
    group.finish();
    rt.block_on(async {
        for server in servers {
            server.shutdown().await;
        }
    });
}

static BLOB_64K: std::sync::LazyLock<Bytes> =
    std::sync::LazyLock::new(|| Bytes::from(vec![0xa5u8; 64 << 10]));

async fn echo64k<C: Channel>(client: Client<C>) {
    let back = echo_shared(&client, &BLOB_64K).await.unwrap();
    debug_assert_eq!(back.len(), 64 << 10);
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
