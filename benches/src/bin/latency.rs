//! The latency tool: round-trip latency of one small call, UDP and TCP side by side, next
//! to the raw-socket floors, measured in one run on one runtime.
//!
//! ```text
//! cargo run --release -p benches --bin latency -- --iterations 20000 --size 32
//! ```
//!
//! Each row makes `iterations` sequential round trips (after a warm-up) from one tokio
//! task and records every one in an HDR histogram; the table gives p50/p99/p99.9/max, the
//! ratio of each row's p50 to its transport's raw floor, and UDP's p50 relative to TCP's.
//! A text plot of the latency distribution (CDF) follows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use benches::echo::{echo, EchoService};
use benches::{raw_tcp_echo_server, RawTcpPinger};
use clap::Parser;
use hdrhistogram::Histogram;
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::transport::{Channel, Connection, FrameReceiver, Listener};
use rpc_core::{Client, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::{UdpChannel, UdpListener};
use tokio::net::UdpSocket;

/// Measure call latency over UDP and TCP.
#[derive(Debug, Clone, Parser)]
#[command(about)]
struct Args {
    /// Round trips per row (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    iterations: u64,
    /// Warm-up round trips per row.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Argument size in bytes (an `opaque<>` echoed back).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run only the rows whose name contains this (e.g. "UDP", "rpc"); all by default.
    #[arg(long)]
    only: Option<String>,
}

impl Args {
    fn wants(&self, row: &str) -> bool {
        self.only.as_deref().is_none_or(|o| row.contains(o))
    }
}

struct Row {
    name: &'static str,
    hist: Histogram<u64>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn record(hist: &mut Histogram<u64>, start: Instant) {
    let ns = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    hist.saturating_record(ns.max(1));
}

async fn raw_udp_echo(size: usize) -> std::io::Result<(Arc<UdpSocket>, SocketAddr)> {
    let server = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = server.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = server.recv_from(&mut buf).await {
            let _ = server.send_to(&buf[..n], from).await;
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").await?;
    client.connect(addr).await?;
    let _ = size;
    Ok((Arc::new(client), addr))
}

/// Frames echoed over a transport with no RPC runtime on either side: the transport's
/// own cost over the raw socket.
async fn transport_rows<L, C>(mut listener: L, channel: C, args: &Args) -> Histogram<u64>
where
    L: Listener,
    C: Channel,
{
    let client = channel.connect().await.expect("transport connects");
    let mut server = listener.accept().await.expect("transport accepts");
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
    let Connection {
        sender,
        mut receiver,
        ..
    } = client;
    let payload = bytes::Bytes::from(vec![0x5au8; args.size + 4]);
    let mut hist = new_histogram();
    for i in 0..args.warmup + args.iterations {
        let start = Instant::now();
        let header = FrameHeader::call(1, i + 1, 1, 1, 1);
        sender
            .send(Frame::new(header, payload.clone()))
            .await
            .expect("frame sent");
        receiver.recv().await.expect("frame echoed").expect("open");
        if i >= args.warmup {
            record(&mut hist, start);
        }
    }
    hist
}

async fn rpc_rows<L, C>(listener: L, channel: C, args: &Args) -> Histogram<u64>
where
    L: Listener,
    C: Channel,
{
    let server = Server::builder()
        .add_service(EchoService)
        .serve(listener)
        .expect("server starts");
    let client = Client::new(channel);
    client.connect().await.expect("client connects");
    let blob = vec![0x5au8; args.size];
    let mut hist = new_histogram();
    for i in 0..args.warmup + args.iterations {
        let start = Instant::now();
        echo(&client, &blob).await.expect("echo call");
        if i >= args.warmup {
            record(&mut hist, start);
        }
    }
    drop(client);
    server.shutdown().await;
    hist
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

async fn run(args: Args) -> std::io::Result<Vec<Row>> {
    let frame_size = rpc_core::frame::HEADER_LEN + 4 + args.size.div_ceil(4) * 4;
    let mut rows = Vec::new();

    if args.wants("raw tokio UDP ping-pong") {
        let (udp, _) = raw_udp_echo(frame_size).await?;
        let payload = vec![0x5au8; frame_size];
        let mut buf = vec![0u8; 65_536];
        let mut hist = new_histogram();
        for i in 0..args.warmup + args.iterations {
            let start = Instant::now();
            udp.send(&payload).await?;
            udp.recv(&mut buf).await?;
            if i >= args.warmup {
                record(&mut hist, start);
            }
        }
        rows.push(Row {
            name: "raw tokio UDP ping-pong",
            hist,
        });
    }
    if args.wants("raw tokio TCP ping-pong") {
        let addr = raw_tcp_echo_server(frame_size).await?;
        let mut pinger = RawTcpPinger::connect(addr, frame_size).await?;
        let mut hist = new_histogram();
        for i in 0..args.warmup + args.iterations {
            let start = Instant::now();
            pinger.ping().await?;
            if i >= args.warmup {
                record(&mut hist, start);
            }
        }
        rows.push(Row {
            name: "raw tokio TCP ping-pong",
            hist,
        });
    }
    if args.wants("UDP transport, frames only") {
        let listener = UdpListener::bind("127.0.0.1:0")
            .await
            .map_err(std::io::Error::other)?;
        let channel = UdpChannel::new(listener.local_addr());
        rows.push(Row {
            name: "UDP transport, frames only",
            hist: transport_rows(listener, channel, &args).await,
        });
    }
    if args.wants("TCP transport, frames only") {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(std::io::Error::other)?;
        let channel = TcpChannel::new(listener.local_addr());
        rows.push(Row {
            name: "TCP transport, frames only",
            hist: transport_rows(listener, channel, &args).await,
        });
    }
    if args.wants("rpc call over UDP") {
        let listener = UdpListener::bind("127.0.0.1:0")
            .await
            .map_err(std::io::Error::other)?;
        let channel = UdpChannel::new(listener.local_addr());
        rows.push(Row {
            name: "rpc call over UDP",
            hist: rpc_rows(listener, channel, &args).await,
        });
    }
    if args.wants("rpc call over TCP") {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(std::io::Error::other)?;
        let channel = TcpChannel::new(listener.local_addr());
        rows.push(Row {
            name: "rpc call over TCP",
            hist: rpc_rows(listener, channel, &args).await,
        });
    }

    Ok(rows)
}

fn print_table(rows: &[Row], args: &Args) {
    println!(
        "round trip of a {} B call, {} iterations per row, {} tokio worker threads, client and server in one process\n",
        args.size, args.iterations, args.threads
    );
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>9}   {:>14}",
        "", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "p50 vs floor"
    );
    let p50 = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(|r| r.hist.value_at_quantile(0.5) as f64)
    };
    for r in rows {
        let floor = if r.name.contains("UDP") {
            p50("raw tokio UDP ping-pong")
        } else {
            p50("raw tokio TCP ping-pong")
        };
        let ratio = floor
            .filter(|_| !r.name.starts_with("raw"))
            .map(|f| format!("{:.2}x", r.hist.value_at_quantile(0.5) as f64 / f))
            .unwrap_or_default();
        println!(
            "{:<26} {:>9.1} {:>9.1} {:>9.1} {:>9.1}   {:>14}",
            r.name,
            us(r.hist.value_at_quantile(0.5)),
            us(r.hist.value_at_quantile(0.99)),
            us(r.hist.value_at_quantile(0.999)),
            us(r.hist.max()),
            ratio
        );
    }
    if let (Some(u), Some(t)) = (p50("rpc call over UDP"), p50("rpc call over TCP")) {
        println!("\nUDP / TCP p50 ratio (rpc calls): {:.2}", u / t);
    }
}

/// A text plot of each row's CDF on a shared logarithmic latency axis.
fn print_plot(rows: &[Row]) {
    const WIDTH: usize = 60;
    let lo = rows.iter().map(|r| r.hist.min()).min().unwrap_or(1).max(1) as f64;
    let hi = rows
        .iter()
        .map(|r| r.hist.value_at_quantile(0.999))
        .max()
        .unwrap_or(2)
        .max(2) as f64;
    let (llo, lhi) = (lo.ln(), hi.ln().max(lo.ln() + 1e-9));
    println!(
        "\nCDF (x: latency, log scale {:.1} µs .. {:.1} µs; each row: share of calls done)",
        us(lo as u64),
        us(hi as u64)
    );
    for r in rows {
        let mut line = String::with_capacity(WIDTH);
        for i in 0..WIDTH {
            let x = (llo + (lhi - llo) * (i as f64 + 0.5) / WIDTH as f64).exp() as u64;
            let done = r.hist.count_between(0, x) as f64 / r.hist.len().max(1) as f64;
            line.push(match done {
                d if d >= 0.999 => '█',
                d if d >= 0.99 => '▓',
                d if d >= 0.5 => '▒',
                d if d >= 0.01 => '░',
                _ => ' ',
            });
        }
        println!("{:<26} |{line}|", r.name);
    }
    println!(
        "{:<26}  legend: ░ ≥1%  ▒ ≥50%  ▓ ≥99%  █ ≥99.9% of calls finished",
        ""
    );
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    // The measurements run as a task on the runtime, like any caller.
    let task_args = args.clone();
    let rows = rt
        .block_on(rt.spawn(run(task_args)))
        .map_err(std::io::Error::other)??;
    print_table(&rows, &args);
    print_plot(&rows);
    Ok(())
}
