//! Call round trip over TCP on loopback, next to the raw tokio TCP ping-pong floor and
//! the in-process transport (runtime cost without sockets), all in one run.
//!
//! Client and server share one multi-thread runtime with 2 workers (this machine has
//! 2 vCPUs); each measurement loop runs as a task on that runtime, so the client is a
//! tokio task like any real caller. The message is a 32-byte `opaque<>` each way.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::echo::{echo, EchoService};
use benches::{raw_tcp_echo_server, RawTcpPinger};
use criterion::{criterion_group, criterion_main, Criterion};
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::transport::{memory, Channel, FrameReceiver, Listener};
use rpc_core::{Client, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use tokio::runtime::Runtime;

const SIZE: usize = 32;

/// Runs `iters` calls of our RPC as one task on the runtime and returns the elapsed time.
fn time_calls<C: Channel>(rt: &Runtime, client: &Client<C>, iters: u64) -> Duration {
    let client = client.clone();
    rt.block_on(rt.spawn(async move {
        let blob = [0x5au8; SIZE];
        let start = Instant::now();
        for _ in 0..iters {
            echo(&client, &blob).await.unwrap();
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

    // The floor: raw tokio TCP ping-pong of the same size as our frame (header + XDR).
    let frame_size = rpc_core::frame::HEADER_LEN + 4 + SIZE;
    let pinger = rt.block_on(async {
        let addr = raw_tcp_echo_server(frame_size).await.unwrap();
        RawTcpPinger::connect(addr, frame_size).await.unwrap()
    });
    let pinger = Arc::new(tokio::sync::Mutex::new(pinger));
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

    // The transport alone: frames echoed by a task on the accepted connection, with no
    // RPC runtime on either side (writer tasks and framing included).
    let (frame_tx, frame_rx) = rt.block_on(async {
        let mut listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let channel = TcpChannel::new(listener.local_addr());
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
        (
            client.sender,
            Arc::new(tokio::sync::Mutex::new(client.receiver)),
        )
    });
    group.bench_function("tcp_transport_frame_echo", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = (frame_tx.clone(), frame_rx.clone());
            rt.block_on(rt.spawn(async move {
                let mut rx = rx.lock().await;
                let payload = bytes::Bytes::from_static(&[0x5a; SIZE + 4]);
                let start = Instant::now();
                for i in 0..iters {
                    let header = FrameHeader::call(1, i, 1, 1, 1);
                    tx.send(Frame::new(header, payload.clone())).await.unwrap();
                    rx.recv().await.unwrap().unwrap();
                }
                start.elapsed()
            }))
            .unwrap()
        })
    });

    let (tcp_client, tcp_server) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let server = Server::builder()
            .add_service(EchoService)
            .serve(listener)
            .unwrap();
        let client = Client::new(TcpChannel::new(addr));
        client.connect().await.unwrap();
        (client, server)
    });
    group.bench_function("rpc_tcp_call", |b| {
        b.iter_custom(|iters| time_calls(&rt, &tcp_client, iters))
    });

    let (mem_client, mem_server) = rt.block_on(async {
        let (channel, listener) = memory::endpoint(1024);
        let server = Server::builder()
            .add_service(EchoService)
            .serve(listener)
            .unwrap();
        let client = Client::new(channel);
        client.connect().await.unwrap();
        (client, server)
    });
    group.bench_function("rpc_memory_call", |b| {
        b.iter_custom(|iters| time_calls(&rt, &mem_client, iters))
    });
    group.finish();
    rt.block_on(async {
        tcp_server.shutdown().await;
        mem_server.shutdown().await;
    });
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
