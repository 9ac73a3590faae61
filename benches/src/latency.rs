//! The latency tool's logic (`cargo run --release -p benches --bin latency`): every case
//! of the matrix {raw tokio UDP, raw tokio TCP, our UDP transport (frames only), our TCP
//! transport (frames only), RPC over UDP, RPC over TCP} × payload × calls in flight ×
//! busy-poll, measured in one process with the [`crate::harness`].
//!
//! What each case measures and where it runs:
//!
//! | case | client side | server side |
//! |---|---|---|
//! | raw tokio UDP/TCP ping-pong | one socket/connection (4 MiB buffers); one task keeps N messages outstanding (sends N, then one more per echo received) | one UDP socket echoing every datagram / one task per TCP connection echoing bytes as they arrive |
//! | raw UDP/TCP, both sides spinning | same, receiving with `try_recv`/`try_read` in a loop (yielding to the runtime in between) for up to the busy-poll budget before parking | same, spinning the same way |
//! | UDP/TCP transport, frames only | one connection of our transport; one task keeps N frames outstanding | our listener; each frame is echoed back as a reply frame by a plain task |
//! | rpc call over UDP/TCP | N tasks sharing one [`rpc_core::Client`], each making sequential [`crate::echo::echo`] calls | [`rpc_core::Server`] with [`crate::echo::EchoService`] |
//! | rpc call over TLS (`--tls`) | the same over TCP with TLS 1.3 (a throwaway CA) | the same, TLS listener |
//! | rpc call over sealed UDP (`--sealed`) | the same over UDP with every datagram sealed (Noise IK, throwaway keys) | the same, sealed listener |
//!
//! Raw messages weigh what the equivalent RPC frame weighs (header + XDR opaque); a raw
//! UDP datagram carries at most 65,507 bytes, so the raw UDP floor of the 64 KiB rows is
//! measured with 65,507-byte datagrams and says so in a note.
//!
//! Layout ([`Layout`]): without busy-polling both sides share one multi-thread runtime
//! (`--threads` workers, 2 by default); with busy-polling server and client each get a
//! current-thread runtime on an OS thread of their own (a spinning side needs a core).
//!
//! Pinning (`--pin`, [`crate::harness::Pin`]): `--pin 0` pins every thread of both
//! sides to CPU 0 (the shared runtime's workers and blocking pool and the thread
//! blocking on it; on the split layout both OS threads and their runtimes' threads);
//! `--pin 0,1` pins the server's threads to CPU 0 and the client's to CPU 1, and since
//! one runtime cannot be split across two CPUs, the rows without busy-polling then run
//! on the split layout too. The `pin` column of the table and each case's `pin` in the
//! JSON say how a row ran.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use rpc_core::frame::{Frame, FrameHeader, FrameKind, HEADER_LEN};
use rpc_core::transport::{Channel, Connection, FrameReceiver, FrameSender, Listener};
use rpc_core::{CallOptions, Client, Semantics, Server};
use rpc_transport_tcp::{TcpChannel, TcpConfig, TcpListener, TlsClient, TlsServer};
use rpc_transport_udp::{proto, Security, StaticKeypair, UdpChannel, UdpConfig, UdpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::echo::{EchoService, ECHO, ECHO_INTERFACE};
use crate::harness::{
    run_concurrent, run_on_layout_pinned, run_pipelined, Case, CaseResult, Kind, Layout,
    Measurement, Pin, Pipeline, Plan, Report, RoundTrip, ServerCtl, Transport,
};

/// The largest payload of one UDP datagram over IPv4 (65,535 − 8 − 20).
pub const MAX_UDP_DATAGRAM: usize = 65_507;

/// Socket buffer size of the raw UDP sockets (what our UDP transport asks for too).
const RAW_UDP_BUFFER: usize = 4 << 20;

/// Socket buffer size of the raw TCP sockets.
const RAW_TCP_BUFFER: u32 = 4 << 20;

/// How long a raw UDP caller waits for its echo before sending the datagram again.
const RAW_UDP_RESEND: Duration = Duration::from_millis(200);

/// Busy-poll rows to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BusyPoll {
    /// Only rows without busy-polling.
    Off,
    /// Only busy-polling rows.
    On,
    /// Both.
    Both,
}

/// Measure round-trip latency and throughput of raw tokio sockets, our transports and
/// RPC calls over UDP and TCP, and print a table (and optionally JSON and an SVG CDF).
#[derive(Debug, Clone, Parser)]
#[command(name = "latency", about)]
pub struct Args {
    /// Payload sizes in bytes, comma-separated [default: 32,4096,65536; --quick: 32,65536].
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    /// Calls in flight, comma-separated [default: 1,32; --quick: 1,4].
    #[arg(long, value_delimiter = ',')]
    pub inflight: Option<Vec<usize>>,
    /// Run only the cases whose name contains one of these (comma-separated,
    /// case-insensitive; e.g. "raw,rpc", "UDP", "frames"). Names: "raw tokio UDP
    /// ping-pong", "raw UDP, both sides spinning" (and TCP), "UDP transport, frames
    /// only" (and TCP), "rpc call over UDP" (and TCP).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Busy-poll rows: off, on or both.
    #[arg(long, value_enum, default_value_t = BusyPoll::Both)]
    pub busy_poll: BusyPoll,
    /// Busy-poll budget in µs: how long a receiver spins before parking.
    #[arg(long, default_value_t = 50)]
    pub busy_poll_us: u64,
    /// Measured calls per case [default: 20000; --quick: 100].
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Warm-up calls per case, not measured [default: iterations / 10].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Longest measured window per case in ms (a case stops early when reached; 0 = no
    /// limit) [default: 3000].
    #[arg(long)]
    pub duration_ms: Option<u64>,
    /// Worker threads of the shared runtime (rows without busy-polling).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Pin every thread of both sides: `--pin 0` runs server and client (every runtime
    /// thread, and the OS threads of the busy-poll layout) on CPU 0; `--pin 0,1` runs
    /// the server on CPU 0 and the client on CPU 1 (then the rows without busy-polling
    /// run on the split layout too: one runtime cannot be split across two CPUs).
    #[arg(long, value_name = "CPU[,CPU]", value_parser = Pin::parse)]
    pub pin: Option<Pin>,
    /// Largest datagram of our UDP transport (default: the transport's default).
    #[arg(long)]
    pub udp_max_datagram: Option<usize>,
    /// Also measure RPC calls over TCP with TLS 1.3 ("rpc call over TLS" rows; their
    /// UDP/TCP column shows TLS / plain TCP).
    #[arg(long)]
    pub tls: bool,
    /// Also measure RPC calls over sealed UDP ("rpc call over sealed UDP" rows; their
    /// UDP/TCP column shows sealed / plain UDP).
    #[arg(long)]
    pub sealed: bool,
    /// CI mode: few calls, sizes 32 and 65536, 1 and 4 in flight; every kind of case
    /// still runs. Explicit flags override.
    #[arg(long)]
    pub quick: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write the CDF plot here.
    #[arg(long, default_value = "target/latency.svg")]
    pub svg: std::path::PathBuf,
    /// Do not print progress to stderr.
    #[arg(long)]
    pub silent: bool,
    /// Install the Prometheus recorder (`metrics-exporter-prometheus`, no HTTP listener)
    /// before measuring: what recording the runtime's metrics costs. Without it no
    /// recorder is installed and every metric handle is a no-op.
    #[arg(long)]
    pub prometheus: bool,
    /// The semantics of the rpc rows' calls: at-least-once (the echo procedure is
    /// `[idempotent]`: no reply cache), at-most-once or exactly-once (both go through
    /// the server's reply cache).
    #[arg(long, value_enum, default_value_t = CallSemantics::AtLeastOnce)]
    pub semantics: CallSemantics,
    /// Run the rpc rows' handler on the server's worker pool instead of inline on the
    /// connection loop (`Server::builder().run_inline(false)`).
    #[arg(long)]
    pub pooled: bool,
    /// Measure nothing: print the table of, and plot, a report written by `--json`.
    #[arg(long, value_name = "JSON")]
    pub replot: Option<std::path::PathBuf>,
}

impl Args {
    /// Arguments as if given on the command line (`args` without the program name).
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Args::try_parse_from(
            std::iter::once("latency".into()).chain(args.into_iter().map(Into::into)),
        )
    }

    /// Payload sizes to run.
    pub fn sizes(&self) -> Vec<usize> {
        self.sizes.clone().unwrap_or_else(|| {
            if self.quick {
                vec![32, 65_536]
            } else {
                vec![32, 4096, 65_536]
            }
        })
    }

    /// Calls in flight to run.
    pub fn inflight(&self) -> Vec<usize> {
        self.inflight
            .clone()
            .unwrap_or_else(|| if self.quick { vec![1, 4] } else { vec![1, 32] })
    }

    /// Calls per case.
    pub fn plan(&self) -> Plan {
        let iterations = self
            .iterations
            .unwrap_or(if self.quick { 100 } else { 20_000 })
            .max(1);
        Plan {
            warmup: self.warmup.unwrap_or(iterations / 10),
            iterations,
            max_duration: match self.duration_ms.unwrap_or(3000) {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
        }
    }

    fn wants(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        self.only.as_ref().is_none_or(|only| {
            only.iter()
                .any(|o| !o.is_empty() && name.contains(&o.to_lowercase()))
        })
    }
}

/// The size of the RPC frame carrying a `payload`-byte echo argument (header, XDR
/// opaque length and padding): what the raw rows send.
pub fn frame_bytes(payload: usize) -> usize {
    HEADER_LEN + 4 + payload.div_ceil(4) * 4
}

/// The display name of a case of `kind` over `transport`.
pub fn case_name(kind: Kind, transport: Transport, busy: bool) -> String {
    match (kind, busy) {
        (Kind::Raw, false) => format!("raw tokio {transport} ping-pong"),
        (Kind::Raw, true) => format!("raw {transport}, both sides spinning"),
        (Kind::Frames, _) => format!("{transport} transport, frames only"),
        (Kind::Rpc, _) | (Kind::Peer, _) => format!("rpc call over {transport}"),
    }
}

/// A case of the matrix (`busy_poll_us` `None` for off).
pub fn make_case(
    kind: Kind,
    transport: Transport,
    payload: usize,
    in_flight: usize,
    busy_poll_us: Option<u64>,
    threads: usize,
) -> Case {
    let busy = busy_poll_us.is_some();
    let (message_bytes, note) = match kind {
        Kind::Raw => {
            let frame = frame_bytes(payload);
            if transport == Transport::Udp && frame > MAX_UDP_DATAGRAM {
                (
                    Some(MAX_UDP_DATAGRAM),
                    Some(format!(
                        "raw UDP cannot send the {frame}-byte frame of a {payload}-byte call in one datagram: \
                         measured with {MAX_UDP_DATAGRAM}-byte datagrams (the largest UDP payload)"
                    )),
                )
            } else {
                (Some(frame), None)
            }
        }
        _ => (None, None),
    };
    Case {
        name: case_name(kind, transport, busy),
        kind,
        transport,
        payload,
        message_bytes,
        in_flight: in_flight.max(1),
        busy_poll_us,
        layout: if busy {
            Layout::Split
        } else {
            Layout::Shared {
                workers: threads.max(1),
            }
        },
        note,
        pin: None,
    }
}

/// The cases `args` selects, in run order (by size, then calls in flight, then busy-poll,
/// then kind and transport), pinned as `--pin` says.
pub fn cases(args: &Args) -> Vec<Case> {
    let busy: Vec<Option<u64>> = match args.busy_poll {
        BusyPoll::Off => vec![None],
        BusyPoll::On => vec![Some(args.busy_poll_us)],
        BusyPoll::Both => vec![None, Some(args.busy_poll_us)],
    };
    let mut out = Vec::new();
    for &size in &args.sizes() {
        for &n in &args.inflight() {
            for &b in &busy {
                for kind in [Kind::Raw, Kind::Frames, Kind::Rpc] {
                    let tls = (args.tls && kind == Kind::Rpc).then_some(Transport::Tls);
                    let sealed = (args.sealed && kind == Kind::Rpc).then_some(Transport::SealedUdp);
                    let transports = [Transport::Udp, Transport::Tcp]
                        .into_iter()
                        .chain(tls)
                        .chain(sealed);
                    for transport in transports {
                        let mut case = make_case(kind, transport, size, n, b, args.threads);
                        if let Some(pin) = args.pin {
                            case.pin = Some(pin);
                            if !pin.is_one_cpu() {
                                case.layout = Layout::Split;
                            }
                        }
                        if args.wants(&case.name) {
                            out.push(case);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The semantics the rpc rows' calls ask for (`--semantics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CallSemantics {
    /// The echo procedure's own (it is `[idempotent]`): no reply cache.
    #[default]
    AtLeastOnce,
    /// Deduplicated by the server's reply cache, never re-sent.
    AtMostOnce,
    /// Deduplicated by the server's reply cache, re-sent until answered.
    ExactlyOnce,
}

impl CallSemantics {
    fn options(self) -> CallOptions {
        let options = CallOptions::new();
        match self {
            CallSemantics::AtLeastOnce => options,
            CallSemantics::AtMostOnce => options.semantics(Semantics::AtMostOnce),
            CallSemantics::ExactlyOnce => options.semantics(Semantics::ExactlyOnce),
        }
    }
}

/// Options of our transports and of the rpc rows that are not part of a [`Case`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackOptions {
    /// Largest datagram of our UDP transport (`None`: its default).
    pub udp_max_datagram: Option<usize>,
    /// The rpc rows' call semantics.
    pub semantics: CallSemantics,
    /// The rpc rows' server runs the handler on its worker pool.
    pub pooled: bool,
}

/// Runs every case `args` selects and returns the report (progress goes to stderr unless
/// `--silent`). Blocks; call it from outside any tokio runtime.
pub fn run(args: &Args) -> io::Result<Report> {
    let plan = args.plan();
    let opts = StackOptions {
        udp_max_datagram: args.udp_max_datagram,
        semantics: args.semantics,
        pooled: args.pooled,
    };
    let cases = cases(args);
    if let Some(pin) = args.pin {
        pin.check().map_err(|e| {
            io::Error::new(e.kind(), format!("--pin: cannot pin a thread ({pin}): {e}"))
        })?;
    }
    let mut results = Vec::with_capacity(cases.len());
    for (i, case) in cases.into_iter().enumerate() {
        if !args.silent {
            eprint!("[{:>2}] {} ... ", i + 1, case.label());
        }
        let started = Instant::now();
        let m = run_case(&case, &plan, opts)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", case.label())))?;
        let r = CaseResult::new(case, &m);
        if !args.silent {
            eprintln!(
                "p50 {:.1} µs, {:.0} calls/s ({:.1} s)",
                r.p50_us,
                r.calls_per_sec,
                started.elapsed().as_secs_f64()
            );
        }
        results.push(r);
    }
    Ok(Report::new("latency", results))
}

/// Measures one case. Blocks; call it from outside any tokio runtime.
pub fn run_case(case: &Case, plan: &Plan, opts: StackOptions) -> io::Result<Measurement> {
    let case = case.clone();
    let plan = *plan;
    let spin = case.busy_poll();
    let n = case.in_flight;
    match (case.kind, case.transport) {
        (Kind::Raw, Transport::Udp) => {
            let size = case.message_bytes.unwrap_or(case.payload);
            run_on_layout_pinned(
                case.layout,
                case.pin,
                move |ctl| raw_udp_server(ctl, spin),
                move |addr| async move {
                    let mut pipeline = RawUdpPipeline::connect(addr, size, spin).await?;
                    let mut m = run_pipelined(&plan, n, &mut pipeline).await?;
                    m.resent = pipeline.resent;
                    Ok(m)
                },
            )
        }
        (Kind::Raw, Transport::Tcp) => {
            let size = case.message_bytes.unwrap_or(case.payload);
            run_on_layout_pinned(
                case.layout,
                case.pin,
                move |ctl| raw_tcp_server(ctl, spin),
                move |addr| async move {
                    let mut pipeline = RawTcpPipeline::connect(addr, size, spin).await?;
                    run_pipelined(&plan, n, &mut pipeline).await
                },
            )
        }
        (
            kind @ (Kind::Frames | Kind::Rpc),
            transport @ (Transport::Udp | Transport::SealedUdp),
        ) => {
            let config = udp_config(spin, opts);
            let (config, client_config) = if transport == Transport::SealedUdp {
                let (server, client) = test_keys()?;
                (config.clone().security(server), config.security(client))
            } else {
                (config.clone(), config)
            };
            run_on_layout_pinned(
                case.layout,
                case.pin,
                move |ctl| async move {
                    let listener = UdpListener::bind_with("127.0.0.1:0", config)
                        .await
                        .map_err(io::Error::other)?;
                    serve(kind, ctl, listener, opts).await
                },
                move |addr| async move {
                    let channel = UdpChannel::new(addr).with_config(client_config);
                    measure(kind, &plan, n, case.payload, channel, opts).await
                },
            )
        }
        (kind @ (Kind::Frames | Kind::Rpc), transport @ (Transport::Tcp | Transport::Tls)) => {
            let config = tcp_config(spin);
            let client_config = config.clone();
            let (server_tls, client_tls) = match transport {
                Transport::Tls => {
                    let (server, client) = test_tls()?;
                    (Some(server), Some(client))
                }
                _ => (None, None),
            };
            run_on_layout_pinned(
                case.layout,
                case.pin,
                move |ctl| async move {
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .map_err(io::Error::other)?
                        .with_config(config);
                    match server_tls {
                        Some(tls) => serve(kind, ctl, listener.with_tls(tls), opts).await,
                        None => serve(kind, ctl, listener, opts).await,
                    }
                },
                move |addr| async move {
                    let channel = TcpChannel::new(addr).with_config(client_config);
                    let channel = match client_tls {
                        Some(tls) => channel.with_tls(tls),
                        None => channel,
                    };
                    measure(kind, &plan, n, case.payload, channel, opts).await
                },
            )
        }
        (Kind::Raw, Transport::Tls | Transport::SealedUdp) => Err(io::Error::other(
            "no raw TLS or sealed floor: those rows are divided by raw TCP's or UDP's",
        )),
        (Kind::Peer, _) => Err(io::Error::other(
            "peer cases are measured by the benches/peers crate",
        )),
    }
}

/// The server side of a frames-only or an RPC case.
async fn serve<L: Listener>(
    kind: Kind,
    ctl: ServerCtl,
    listener: L,
    opts: StackOptions,
) -> io::Result<()> {
    match kind {
        Kind::Frames => frames_server(ctl, listener).await,
        _ => rpc_server(ctl, listener, opts).await,
    }
}

/// The client side of a frames-only or an RPC case.
async fn measure<C: Channel>(
    kind: Kind,
    plan: &Plan,
    n: usize,
    payload: usize,
    channel: C,
    opts: StackOptions,
) -> io::Result<Measurement> {
    match kind {
        Kind::Frames => frames_client(plan, n, payload, channel).await,
        _ => rpc_client(plan, n, payload, channel, opts).await,
    }
}

fn udp_config(spin: Option<Duration>, opts: StackOptions) -> UdpConfig {
    let mut config = UdpConfig::default().busy_poll(spin);
    if let Some(d) = opts.udp_max_datagram {
        // The size asked for, on loopback too (not the larger loopback default).
        let protocol = proto::Config::default()
            .max_datagram(d)
            .loopback_max_datagram(None);
        config = config.protocol(protocol);
    }
    config
}

/// Throwaway static keys, as the sealed server's and client's security.
fn test_keys() -> io::Result<(Security, Security)> {
    let server = StaticKeypair::generate().map_err(io::Error::other)?;
    let client = StaticKeypair::generate().map_err(io::Error::other)?;
    let public = server.public();
    Ok((
        Security::server(server),
        Security::client_static(client, public),
    ))
}

/// A throwaway CA and a certificate for 127.0.0.1, as the server's and the client's TLS
/// configuration.
fn test_tls() -> io::Result<(TlsServer, TlsClient)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(io::Error::other)?)
        .map_err(io::Error::other)?;
    let key = KeyPair::generate().map_err(io::Error::other)?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .map_err(io::Error::other)?
        .signed_by(&key, &ca)
        .map_err(io::Error::other)?;
    let server = TlsServer::builder(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .and_then(|b| b.build())
        .map_err(io::Error::other)?;
    let client = TlsClient::builder()
        .ca_certificates(ca.pem().as_bytes())
        .and_then(|b| b.build())
        .map_err(io::Error::other)?;
    Ok((server, client))
}

fn tcp_config(spin: Option<Duration>) -> TcpConfig {
    TcpConfig::default().busy_poll(spin)
}

/// Waits until `ready` returns something, trying it in a loop and yielding to the
/// runtime between attempts for up to `spin` (if any), then parking on `park` (which
/// waits for readiness) between attempts.
async fn spin_then_park<T, Try, Park, PF>(
    spin: Option<Duration>,
    mut ready: Try,
    mut park: Park,
) -> io::Result<T>
where
    Try: FnMut() -> io::Result<Option<T>>,
    Park: FnMut() -> PF,
    PF: std::future::Future<Output = io::Result<()>>,
{
    if let Some(budget) = spin {
        let start = Instant::now();
        loop {
            if let Some(v) = ready()? {
                return Ok(v);
            }
            if start.elapsed() >= budget {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    loop {
        if let Some(v) = ready()? {
            return Ok(v);
        }
        park().await?;
    }
}

fn would_block<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

fn raw_udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    sock.set_send_buffer_size(RAW_UDP_BUFFER)?;
    sock.set_recv_buffer_size(RAW_UDP_BUFFER)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// One UDP socket echoing every datagram to its sender.
async fn raw_udp_server(mut ctl: ServerCtl, spin: Option<Duration>) -> io::Result<()> {
    let socket = raw_udp_socket("127.0.0.1:0".parse().expect("literal address"))?;
    ctl.ready(socket.local_addr()?);
    let echo = tokio::spawn(raw_udp_echo(socket, spin));
    ctl.stopped().await;
    echo.abort();
    Ok(())
}

async fn raw_udp_echo(socket: UdpSocket, spin: Option<Duration>) -> io::Result<()> {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = spin_then_park(
            spin,
            || would_block(socket.try_recv_from(&mut buf[..])),
            || socket.readable(),
        )
        .await?;
        socket.send_to(&buf[..n], from).await?;
    }
}

/// The client of the raw UDP rows: one connected socket, one task keeping N datagrams
/// outstanding; each carries its request id in its first 8 bytes. A datagram not
/// echoed within [`RAW_UDP_RESEND`] is sent again (and counted).
struct RawUdpPipeline {
    socket: UdpSocket,
    out: Vec<u8>,
    buf: Vec<u8>,
    spin: Option<Duration>,
    outstanding: Vec<u64>,
    resent: u64,
}

impl RawUdpPipeline {
    async fn connect(addr: SocketAddr, size: usize, spin: Option<Duration>) -> io::Result<Self> {
        let socket = raw_udp_socket("127.0.0.1:0".parse().expect("literal address"))?;
        socket.connect(addr).await?;
        Ok(RawUdpPipeline {
            socket,
            out: vec![0x5a; size.max(8)],
            buf: vec![0; 65_536],
            spin,
            outstanding: Vec::new(),
            resent: 0,
        })
    }

    async fn send_id(&mut self, id: u64) -> io::Result<()> {
        self.out[..8].copy_from_slice(&id.to_be_bytes());
        self.socket.send(&self.out).await?;
        Ok(())
    }
}

impl Pipeline for RawUdpPipeline {
    async fn send(&mut self, id: u64) -> io::Result<()> {
        self.outstanding.push(id);
        self.send_id(id).await
    }

    async fn recv(&mut self) -> io::Result<u64> {
        let mut spin = self.spin;
        loop {
            let socket = &self.socket;
            let buf = &mut self.buf;
            let got = tokio::time::timeout(
                RAW_UDP_RESEND,
                spin_then_park(
                    spin,
                    || would_block(socket.try_recv(&mut buf[..])),
                    || socket.readable(),
                ),
            )
            .await;
            match got {
                Ok(n) => {
                    if n? < 8 {
                        continue;
                    }
                    let id = u64::from_be_bytes(self.buf[..8].try_into().expect("8 bytes"));
                    if let Some(i) = self.outstanding.iter().position(|&o| o == id) {
                        self.outstanding.swap_remove(i);
                        return Ok(id);
                    }
                    // A late echo of a datagram sent twice: already answered.
                }
                Err(_) => {
                    if self.resent > 1000 {
                        return Err(io::Error::other("raw UDP: over 1000 datagrams lost"));
                    }
                    for id in self.outstanding.clone() {
                        self.resent += 1;
                        self.send_id(id).await?;
                    }
                    spin = None;
                }
            }
        }
    }
}

/// A loopback TCP socket with 4 MiB send and receive buffers (set before connecting or
/// listening): a pipelined burst of N messages always fits in flight, whatever
/// autotuning would do.
fn raw_tcp_socket() -> io::Result<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_send_buffer_size(RAW_TCP_BUFFER)?;
    socket.set_recv_buffer_size(RAW_TCP_BUFFER)?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// A TCP listener echoing every byte on every connection, as it arrives.
async fn raw_tcp_server(mut ctl: ServerCtl, spin: Option<Duration>) -> io::Result<()> {
    let socket = raw_tcp_socket()?;
    socket.bind("127.0.0.1:0".parse().expect("literal address"))?;
    let listener = socket.listen(1024)?;
    ctl.ready(listener.local_addr()?);
    let accept = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true)?;
            conns.spawn(raw_tcp_echo(stream, spin));
        }
        Ok::<(), io::Error>(())
    });
    ctl.stopped().await;
    accept.abort();
    Ok(())
}

async fn raw_tcp_echo(mut stream: TcpStream, spin: Option<Duration>) -> io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match spin {
            None => stream.read(&mut buf).await?,
            Some(_) => {
                let s = &stream;
                let buf = &mut buf;
                spin_then_park(
                    spin,
                    || would_block(s.try_read(&mut buf[..])),
                    || s.readable(),
                )
                .await?
            }
        };
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Reads exactly `buf.len()` bytes, spinning on `try_read` for up to `spin` first.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut [u8],
    spin: Option<Duration>,
) -> io::Result<()> {
    let Some(_) = spin else {
        stream.read_exact(buf).await?;
        return Ok(());
    };
    let mut filled = 0;
    while filled < buf.len() {
        let s: &TcpStream = stream;
        let n = spin_then_park(
            spin,
            || would_block(s.try_read(&mut buf[filled..])),
            || s.readable(),
        )
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    Ok(())
}

/// The client of the raw TCP rows: one connection, one task keeping N fixed-size
/// messages outstanding; each carries its request id in its first 8 bytes.
struct RawTcpPipeline {
    stream: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
    spin: Option<Duration>,
}

impl RawTcpPipeline {
    async fn connect(addr: SocketAddr, size: usize, spin: Option<Duration>) -> io::Result<Self> {
        let stream = raw_tcp_socket()?.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawTcpPipeline {
            stream,
            out: vec![0x5a; size.max(8)],
            buf: vec![0; size.max(8)],
            spin,
        })
    }
}

impl Pipeline for RawTcpPipeline {
    async fn send(&mut self, id: u64) -> io::Result<()> {
        self.out[..8].copy_from_slice(&id.to_be_bytes());
        self.stream.write_all(&self.out).await
    }

    async fn recv(&mut self) -> io::Result<u64> {
        read_message(&mut self.stream, &mut self.buf, self.spin).await?;
        Ok(u64::from_be_bytes(
            self.buf[..8].try_into().expect("8 bytes"),
        ))
    }
}

/// Accepts connections of our transport and echoes each frame back as a reply.
async fn frames_server<L: Listener>(mut ctl: ServerCtl, mut listener: L) -> io::Result<()> {
    ctl.ready(listener.local_addr());
    let accept = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok(mut conn) = listener.accept().await {
            conns.spawn(async move {
                while let Ok(Some(frame)) = conn.receiver.recv().await {
                    let reply = FrameHeader::answer(&frame.header, FrameKind::Reply, 1);
                    if conn
                        .sender
                        .send(Frame::new(reply, frame.payload))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    ctl.stopped().await;
    accept.abort();
    Ok(())
}

/// One connection of our transport, N frames outstanding.
struct FramesPipeline<R> {
    sender: FrameSender,
    receiver: R,
    payload: Bytes,
}

impl<R: FrameReceiver> Pipeline for FramesPipeline<R> {
    async fn send(&mut self, id: u64) -> io::Result<()> {
        let header = FrameHeader::call(1, id + 1, 1, 1, 1);
        self.sender
            .send(Frame::new(header, self.payload.clone()))
            .await
            .map_err(io::Error::other)
    }

    async fn recv(&mut self) -> io::Result<u64> {
        match self.receiver.recv().await.map_err(io::Error::other)? {
            Some(frame) => Ok(frame.header.call_id - 1),
            None => Err(io::Error::other("connection closed")),
        }
    }
}

async fn frames_client<C: Channel>(
    plan: &Plan,
    n: usize,
    payload: usize,
    channel: C,
) -> io::Result<Measurement> {
    let Connection {
        sender, receiver, ..
    } = channel.connect().await.map_err(io::Error::other)?;
    // The payload an echo call's argument would have: XDR opaque (length + padded bytes).
    let payload = Bytes::from(vec![0x5a; 4 + payload.div_ceil(4) * 4]);
    let mut pipeline = FramesPipeline {
        sender,
        receiver,
        payload,
    };
    run_pipelined(plan, n, &mut pipeline).await
}

async fn rpc_server<L: Listener>(
    mut ctl: ServerCtl,
    listener: L,
    opts: StackOptions,
) -> io::Result<()> {
    let addr = listener.local_addr();
    let server = Server::builder()
        .add_service(EchoService)
        .run_inline(!opts.pooled)
        .serve(listener)
        .map_err(io::Error::other)?;
    ctl.ready(addr);
    ctl.stopped().await;
    server.shutdown().await;
    Ok(())
}

/// One task's echo calls through a shared client.
struct RpcCaller<C: Channel> {
    client: Client<C>,
    blob: Arc<[u8]>,
    options: CallOptions,
}

impl<C: Channel> RoundTrip for RpcCaller<C> {
    async fn round_trip(&mut self) -> io::Result<()> {
        let reply = self
            .client
            .call(
                &ECHO_INTERFACE,
                &ECHO,
                &self.options,
                |w| w.put_opaque(&self.blob, u32::MAX),
                |r| r.get_opaque(u32::MAX),
            )
            .await
            .map_err(io::Error::other)?;
        if reply.len() != self.blob.len() {
            return Err(io::Error::other(format!(
                "echo returned {} bytes, sent {}",
                reply.len(),
                self.blob.len()
            )));
        }
        Ok(())
    }
}

async fn rpc_client<C: Channel>(
    plan: &Plan,
    n: usize,
    payload: usize,
    channel: C,
    opts: StackOptions,
) -> io::Result<Measurement> {
    let client = Client::new(channel);
    client.connect().await.map_err(io::Error::other)?;
    let blob: Arc<[u8]> = vec![0x5a; payload].into();
    let callers = (0..n)
        .map(|_| RpcCaller {
            client: client.clone(),
            blob: blob.clone(),
            options: opts.semantics.options(),
        })
        .collect();
    let m = run_concurrent(plan, callers).await;
    client.disconnect();
    m
}

/// The text printed after the table: how the targets fare in `report` (only
/// those whose rows are present).
pub fn targets_summary(report: &Report) -> String {
    let find = |kind: Kind, t: Transport, busy: bool| {
        report.find(|c| {
            c.kind == kind
                && c.transport == t
                && c.payload == 32
                && c.in_flight == 1
                && c.busy() == busy
        })
    };
    let mut out = String::new();
    for t in [Transport::Udp, Transport::Tcp] {
        if let (Some(rpc), Some(raw)) = (find(Kind::Rpc, t, false), find(Kind::Raw, t, false)) {
            let r = rpc.p50_us / raw.p50_us;
            out.push_str(&format!(
                "target rpc over {t} p50 (32 B, 1 in flight) <= 1.2x raw tokio {t}: {:.1} / {:.1} µs = {r:.2}x {}\n",
                rpc.p50_us,
                raw.p50_us,
                if r <= 1.2 { "(met)" } else { "(NOT met)" }
            ));
        }
    }
    if let Some(spin) = find(Kind::Raw, Transport::Udp, true) {
        for t in [Transport::Udp, Transport::Tcp] {
            if let Some(rpc) = find(Kind::Rpc, t, true) {
                let r = rpc.p50_us / spin.p50_us;
                out.push_str(&format!(
                    "target busy-poll rpc over {t} p50 <= 2x raw UDP both sides spinning: {:.1} / {:.1} µs = {r:.2}x {}\n",
                    rpc.p50_us,
                    spin.p50_us,
                    if r <= 2.0 { "(met)" } else { "(NOT met)" }
                ));
            }
        }
    }
    out
}
