//! Round-trip latency of the driver next to the raw-socket floor, all in one process on
//! 127.0.0.1. Ignored by default (numbers, not assertions); run with
//! `cargo test --release -p rpc-transport-udp --test driver_latency -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::server::{bad_arguments, encode_result, Service, ServiceFuture};
use rpc_core::transport::{Channel, FrameReceiver, Listener};
use rpc_core::xdr::XdrReader;
use rpc_core::{CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, Server};
use rpc_transport_udp::{UdpChannel, UdpListener};
use tokio::net::UdpSocket;

const ITERATIONS: usize = 20_000;
const SIZE: usize = 32;

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "{name:<40} p50 {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs",
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

async fn raw_udp() -> Vec<Duration> {
    let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = server.recv_from(&mut buf).await {
            let _ = server.send_to(&buf[..n], from).await;
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(addr).await.unwrap();
    let msg = [0x5au8; SIZE];
    let mut buf = [0u8; 2048];
    let mut out = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS + 1000 {
        let start = Instant::now();
        client.send(&msg).await.unwrap();
        client.recv(&mut buf).await.unwrap();
        if i >= 1000 {
            out.push(start.elapsed());
        }
    }
    out
}

async fn frames() -> Vec<Duration> {
    let mut listener = UdpListener::bind("127.0.0.1:0").await.unwrap();
    let channel = UdpChannel::new(listener.local_addr());
    let client = channel.connect().await.unwrap();
    let mut server = listener.accept().await.unwrap();
    tokio::spawn(async move {
        while let Ok(Some(f)) = server.receiver.recv().await {
            let reply = FrameHeader::answer(&f.header, FrameKind::Reply, 1);
            if server
                .sender
                .send(Frame::new(reply, f.payload))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut rx = client.receiver;
    let payload = Bytes::from(vec![0x5au8; SIZE]);
    let mut out = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS + 1000 {
        let mut h = FrameHeader::call(1, i as u64, 1, 1, 1);
        h.payload_len = SIZE as u32;
        let start = Instant::now();
        client
            .sender
            .send(Frame::new(h, payload.clone()))
            .await
            .unwrap();
        rx.recv().await.unwrap().unwrap();
        if i >= 1000 {
            out.push(start.elapsed());
        }
    }
    out
}

static ECHO: ProcedureInfo = ProcedureInfo {
    name: "echo",
    number: 1,
    oneway: false,
    idempotent: true,
};
static ECHO_INTERFACE: InterfaceInfo = InterfaceInfo {
    name: "Echo",
    id: 0x2000_0e42,
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

async fn rpc() -> Vec<Duration> {
    let listener = UdpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let server = Server::builder()
        .add_service(EchoService)
        .serve(listener)
        .unwrap();
    let client = Client::new(UdpChannel::new(addr));
    let blob = vec![0x5au8; SIZE];
    let opts = CallOptions::new();
    let mut out = Vec::with_capacity(ITERATIONS);
    for i in 0..ITERATIONS + 1000 {
        let start = Instant::now();
        client
            .call(
                &ECHO_INTERFACE,
                &ECHO,
                &opts,
                |w| w.put_opaque(&blob, u32::MAX),
                |r| r.get_opaque(u32::MAX),
            )
            .await
            .unwrap();
        if i >= 1000 {
            out.push(start.elapsed());
        }
    }
    server.shutdown().await;
    out
}

#[test]
#[ignore = "a measurement, not a check"]
fn latency() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("{SIZE} B round trips, {ITERATIONS} iterations, 2 worker threads, one process");
        report("raw tokio UDP ping-pong", raw_udp().await);
        report("UdpChannel/UdpListener frame ping-pong", frames().await);
        report("rpc call over UDP", rpc().await);
    });
}
