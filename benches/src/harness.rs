//! The measurement harness shared by the latency tool (`src/bin/latency.rs`, logic in
//! [`crate::latency`]) and the peer comparison (`benches/peers`, tonic and tarpc).
//!
//! * [`Case`] describes one measured row: what is measured ([`Kind`], a display name),
//!   over which [`Transport`], the payload size, how many calls are in flight, whether
//!   busy-polling is on, and where client and server run ([`Layout`]).
//! * [`run_concurrent`] (N tokio tasks, each making sequential round trips through a
//!   [`RoundTrip`]) and [`run_pipelined`] (one task keeping N requests outstanding
//!   through a [`Pipeline`]) record every measured call's latency in an HDR histogram
//!   and time the measured window: a [`Measurement`].
//! * [`run_on_layout`] starts a server and a measuring client on the runtimes a
//!   [`Layout`] prescribes.
//! * [`CaseResult`] (percentiles, calls/s, a CDF) and [`Report`] (all results of a run,
//!   with the command that produced them) are what the tools print ([`format_table`]),
//!   save and load as JSON ([`Report::write_json`], [`Report::read_json`]) and plot
//!   ([`write_svg`]: the latency CDF of every case, log-scale µs axis).
//!
//! Numbers are only comparable within one run on one machine: every report carries the
//! raw-socket floor of the same transport, size and concurrency next to the rows that
//! sit on top of it, and the table divides by it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The transport a case runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    /// UDP (raw datagrams, or our reliable-UDP transport).
    #[serde(rename = "UDP")]
    Udp,
    /// TCP (raw streams, our TCP transport, or a peer framework over TCP/HTTP-2).
    #[serde(rename = "TCP")]
    Tcp,
    /// Our TCP transport with TLS 1.3 (RPC rows only; their floor is raw TCP).
    #[serde(rename = "TLS")]
    Tls,
    /// Our UDP transport with every datagram sealed (PROTOCOL.md 9.10; RPC rows only;
    /// their floor is raw UDP).
    #[serde(rename = "sealed UDP")]
    SealedUdp,
}

impl Transport {
    /// The transport whose raw ping-pong is this one's floor.
    pub fn floor(self) -> Transport {
        match self {
            Transport::Tls => Transport::Tcp,
            Transport::SealedUdp => Transport::Udp,
            t => t,
        }
    }

    /// The transport a row is compared with in the UDP/TCP column: plain TCP for UDP and
    /// TLS rows, plain UDP for sealed-UDP rows; none for TCP.
    pub fn counterpart(self) -> Option<Transport> {
        match self {
            Transport::Tcp => None,
            Transport::SealedUdp => Some(Transport::Udp),
            Transport::Udp | Transport::Tls => Some(Transport::Tcp),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tls => "TLS",
            Transport::SealedUdp => "sealed UDP",
            Transport::Tcp => "TCP",
        })
    }
}

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Raw tokio sockets echoing fixed-size messages: the floor every other row of the
    /// same transport, size, concurrency and busy-poll setting is divided by.
    Raw,
    /// Our transport's frames echoed with no RPC runtime on either side.
    Frames,
    /// Calls through our RPC client and server.
    Rpc,
    /// Calls through another RPC framework (the `benches/peers` crate).
    Peer,
}

/// Where the client and the server of a case run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One multi-thread tokio runtime with `workers` worker threads runs both sides; the
    /// measuring code is a task spawned on it, like any caller. The default layout.
    Shared {
        /// Worker threads of the runtime.
        workers: usize,
    },
    /// Server and client each on its own current-thread runtime on its own OS thread:
    /// a side that spins (busy-polls) needs a core of its own.
    Split,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::Shared { workers } => write!(f, "1 rt/{workers}w"),
            Layout::Split => f.write_str("2 rt/1t"),
        }
    }
}

/// The CPUs a case's threads are pinned to (the latency tool's `--pin CPU[,CPU]`): every
/// thread of the server's runtime (workers, blocking pool, and the OS thread a
/// current-thread runtime runs on) is pinned to `server`, every thread of the client's
/// to `client`. On [`Layout::Shared`] one runtime runs both sides, so both must be the
/// same CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pin {
    /// CPU of the server's threads.
    pub server: usize,
    /// CPU of the client's threads.
    pub client: usize,
}

impl Pin {
    /// Server and client on one CPU.
    pub fn one(cpu: usize) -> Self {
        Pin {
            server: cpu,
            client: cpu,
        }
    }

    /// Whether server and client share one CPU.
    pub fn is_one_cpu(&self) -> bool {
        self.server == self.client
    }

    /// Parses `CPU` (both sides on it) or `SERVER,CLIENT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cpu = |s: &str| {
            let s = s.trim();
            let cpu: usize = s
                .parse()
                .map_err(|_| format!("not a CPU number: {s:?} (expected CPU or CPU,CPU)"))?;
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(format!(
                    "CPU {cpu} is out of range (at most {})",
                    libc::CPU_SETSIZE - 1
                ));
            }
            Ok(cpu)
        };
        match text.split(',').collect::<Vec<_>>().as_slice() {
            [one] => Ok(Pin::one(cpu(one)?)),
            [server, client] => Ok(Pin {
                server: cpu(server)?,
                client: cpu(client)?,
            }),
            _ => Err(format!(
                "--pin takes CPU or SERVER_CPU,CLIENT_CPU, not {text:?}"
            )),
        }
    }

    /// Checks that this process may run a thread on each CPU of the pin (on a
    /// throwaway thread: the caller's affinity is untouched).
    pub fn check(&self) -> io::Result<()> {
        for cpu in [self.server, self.client] {
            std::thread::scope(|s| {
                s.spawn(|| pin_current_thread(cpu))
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("pinning probe panicked")))
            })?;
        }
        Ok(())
    }
}

impl fmt::Display for Pin {
    /// `cpu 0` (both sides), `srv 0/cli 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_one_cpu() {
            write!(f, "cpu {}", self.server)
        } else {
            write!(f, "srv {}/cli {}", self.server, self.client)
        }
    }
}

/// Pins the calling thread to `cpu` (`sched_setaffinity`); the error names the CPU.
///
/// The workspace denies `unsafe_code`; this function is the one exception in the
/// benches (a libc call with no safe wrapper among the dependencies).
#[allow(unsafe_code)]
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: `set` is a plain bitmask, zero-initialised (an empty set), then one bit
    // set within its size (checked above); sched_setaffinity only reads
    // `size_of::<cpu_set_t>()` bytes of it. Pid 0 is the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(
            e.kind(),
            format!("sched_setaffinity to CPU {cpu}: {e}"),
        ))
    }
}

/// The first pinning failure of a runtime's threads (`on_thread_start` cannot return
/// one), reported when the case ends.
#[derive(Debug, Clone, Default)]
struct PinFailure(Arc<OnceLock<String>>);

impl PinFailure {
    fn pin(&self, cpu: usize) {
        if let Err(e) = pin_current_thread(cpu) {
            let _ = self.0.set(e.to_string());
        }
    }

    fn check(&self) -> io::Result<()> {
        match self.0.get() {
            Some(e) => Err(io::Error::other(e.clone())),
            None => Ok(()),
        }
    }
}

/// One measured row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Display name, e.g. `"rpc call over UDP"`; with the other fields it identifies the
    /// row (the same name appears once per size, concurrency and busy-poll setting).
    pub name: String,
    /// What is measured.
    pub kind: Kind,
    /// The transport.
    pub transport: Transport,
    /// Payload bytes per call (the echoed argument), the nominal size of the row.
    pub payload: usize,
    /// Bytes each message carries on the socket when they differ from `payload` (raw
    /// rows send what an RPC frame of the same call would weigh), else `None`.
    pub message_bytes: Option<usize>,
    /// Calls in flight at once.
    pub in_flight: usize,
    /// Busy-poll budget in µs (spin this long before parking), or `None` when off.
    pub busy_poll_us: Option<u64>,
    /// Where client and server run.
    pub layout: Layout,
    /// Anything the reader of the row must know (e.g. a capped message size).
    pub note: Option<String>,
    /// The CPUs the case's threads were pinned to (`--pin`), or `None` when the
    /// scheduler placed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<Pin>,
}

impl Case {
    /// Whether busy-polling is on.
    pub fn busy(&self) -> bool {
        self.busy_poll_us.is_some()
    }

    /// The busy-poll budget, when on.
    pub fn busy_poll(&self) -> Option<Duration> {
        self.busy_poll_us.map(Duration::from_micros)
    }

    /// A one-line label: name, size, concurrency, busy-poll.
    pub fn label(&self) -> String {
        format!(
            "{}, {}, {} in flight{}",
            self.name,
            size_label(self.payload),
            self.in_flight,
            if self.busy() { ", busy-poll" } else { "" }
        )
    }
}

/// `32 B`, `4 KiB`, `64 KiB`, `1.5 KiB`.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// How many calls a case makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Calls made before measuring starts (not recorded).
    pub warmup: u64,
    /// Calls measured (recorded in the histogram), unless `max_duration` ends the
    /// measured window first.
    pub iterations: u64,
    /// Longest measured window; `None` for no limit (exactly `iterations` calls are
    /// recorded).
    pub max_duration: Option<Duration>,
}

impl Plan {
    /// Exactly `iterations` measured calls after `warmup` calls.
    pub fn new(warmup: u64, iterations: u64) -> Self {
        Plan {
            warmup,
            iterations,
            max_duration: None,
        }
    }
}

/// The raw outcome of a run: every measured call's latency and the measured window.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Latency of every measured call, in nanoseconds.
    pub histogram: Histogram<u64>,
    /// From the start of the first measured call to the end of the last one.
    pub window: Duration,
    /// Requests sent again after a timeout (raw UDP: a lost datagram); 0 elsewhere.
    pub resent: u64,
}

impl Measurement {
    /// Measured calls.
    pub fn calls(&self) -> u64 {
        self.histogram.len()
    }
}

/// A histogram of nanosecond latencies from 1 ns to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn record(hist: &mut Histogram<u64>, start: Instant, end: Instant) {
    let ns = end.duration_since(start).as_nanos().min(u64::MAX as u128) as u64;
    hist.saturating_record(ns.max(1));
}

/// One caller's round trip: send a request, wait for its answer. Each task of
/// [`run_concurrent`] owns one and calls it sequentially (an async closure with state).
pub trait RoundTrip: Send + 'static {
    /// One round trip; an error ends the run.
    fn round_trip(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Adapts a closure returning a `'static` future to a [`RoundTrip`] (see [`from_fn`]).
#[derive(Debug, Clone)]
pub struct FnRoundTrip<F>(F);

/// A [`RoundTrip`] from a closure, e.g.
/// `from_fn(move || { let c = client.clone(); async move { c.ping().await } })`.
pub fn from_fn<F, Fut>(f: F) -> FnRoundTrip<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    FnRoundTrip(f)
}

impl<F, Fut> RoundTrip for FnRoundTrip<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    fn round_trip(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        (self.0)()
    }
}

/// Ticket dispenser shared by the tasks of one run: ticket `t` is call number `t`;
/// tickets below `warmup` are warm-up calls.
struct Tickets {
    next: AtomicU64,
    stop: AtomicBool,
    window_start: OnceLock<Instant>,
    plan: Plan,
}

impl Tickets {
    /// The next call's ticket and whether it is measured, or `None` when the run is over.
    fn take(&self) -> Option<(u64, bool)> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let t = self.next.fetch_add(1, Ordering::Relaxed);
        if t >= self.plan.warmup + self.plan.iterations {
            return None;
        }
        let measured = t >= self.plan.warmup;
        if measured {
            let start = *self.window_start.get_or_init(Instant::now);
            if let Some(max) = self.plan.max_duration {
                if start.elapsed() >= max {
                    self.stop.store(true, Ordering::Relaxed);
                    return None;
                }
            }
        }
        Some((t, measured))
    }
}

/// Runs `callers.len()` tokio tasks (the calls in flight), each making sequential round
/// trips through its own [`RoundTrip`], until `plan.warmup + plan.iterations` calls were
/// made in total (or `plan.max_duration` of measuring passed). Must be called within a
/// tokio runtime; the tasks are spawned on it.
pub async fn run_concurrent<R: RoundTrip>(plan: &Plan, callers: Vec<R>) -> io::Result<Measurement> {
    if callers.is_empty() {
        return Err(io::Error::other("run_concurrent: no callers"));
    }
    let tickets = Arc::new(Tickets {
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        window_start: OnceLock::new(),
        plan: *plan,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for mut caller in callers {
        let tickets = tickets.clone();
        tasks.spawn(async move {
            let mut hist = new_histogram();
            let mut last_end: Option<Instant> = None;
            while let Some((_, measured)) = tickets.take() {
                let start = Instant::now();
                if let Err(e) = caller.round_trip().await {
                    tickets.stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                if measured {
                    let end = Instant::now();
                    record(&mut hist, start, end);
                    last_end = Some(end);
                }
            }
            Ok::<_, io::Error>((hist, last_end))
        });
    }
    let mut hist = new_histogram();
    let mut end: Option<Instant> = None;
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(io::Error::other).and_then(|r| r) {
            Ok((h, last)) => {
                hist.add(&h).map_err(io::Error::other)?;
                end = end.max(last);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let window = match (tickets.window_start.get(), end) {
        (Some(&s), Some(e)) => e.duration_since(s),
        _ => Duration::ZERO,
    };
    Ok(Measurement {
        histogram: hist,
        window,
        resent: 0,
    })
}

/// Requests and answers of one connection, driven by a single task that keeps several
/// requests outstanding ([`run_pipelined`]).
pub trait Pipeline: Send {
    /// Sends request `id` (ids are issued in order from 0).
    fn send(&mut self, id: u64) -> impl Future<Output = io::Result<()>> + Send;
    /// Waits for the next answer and returns the id of the request it answers.
    fn recv(&mut self) -> impl Future<Output = io::Result<u64>> + Send;
}

/// Keeps `in_flight` requests outstanding on `pipeline` from one task: sends that many,
/// then sends a new one whenever an answer arrives, until `plan.warmup +
/// plan.iterations` requests were answered (or `plan.max_duration` of measuring passed).
pub async fn run_pipelined<P: Pipeline>(
    plan: &Plan,
    in_flight: usize,
    pipeline: &mut P,
) -> io::Result<Measurement> {
    let total = plan.warmup + plan.iterations;
    let mut starts: HashMap<u64, Instant> = HashMap::with_capacity(in_flight.max(1) * 2);
    let mut hist = new_histogram();
    let mut window_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    let mut next = 0u64;
    let mut stopped = false;
    loop {
        while !stopped && next < total && starts.len() < in_flight.max(1) {
            let now = Instant::now();
            if next >= plan.warmup {
                let ws = *window_start.get_or_insert(now);
                if plan.max_duration.is_some_and(|max| now - ws >= max) {
                    stopped = true;
                    break;
                }
            }
            starts.insert(next, now);
            pipeline.send(next).await?;
            next += 1;
        }
        if starts.is_empty() {
            break;
        }
        let id = pipeline.recv().await?;
        let end = Instant::now();
        let start = starts
            .remove(&id)
            .ok_or_else(|| io::Error::other(format!("answer to unknown request {id}")))?;
        if id >= plan.warmup {
            record(&mut hist, start, end);
            last_end = Some(end);
        }
    }
    let window = match (window_start, last_end) {
        (Some(s), Some(e)) => e.duration_since(s),
        _ => Duration::ZERO,
    };
    Ok(Measurement {
        histogram: hist,
        window,
        resent: 0,
    })
}

/// The server side's handle in [`run_on_layout`]: report the address once listening,
/// then wait until the measurement is over.
#[derive(Debug)]
pub struct ServerCtl {
    ready: Option<oneshot::Sender<SocketAddr>>,
    stop: oneshot::Receiver<()>,
}

impl ServerCtl {
    /// Tells the client where to connect.
    pub fn ready(&mut self, addr: SocketAddr) {
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(addr);
        }
    }

    /// Resolves when the client is done measuring (or gone); shut the server down then.
    pub async fn stopped(self) {
        let _ = self.stop.await;
    }
}

/// Runs one case on `layout`: `serve` starts the server (on the server's runtime),
/// calls [`ServerCtl::ready`] with its address, awaits [`ServerCtl::stopped`] and shuts
/// down; `measure` (on the client's runtime) connects to that address and measures.
///
/// * [`Layout::Shared`]: one multi-thread runtime runs both, each as a spawned task.
/// * [`Layout::Split`]: two OS threads, each with a current-thread runtime.
///
/// Blocks the calling thread (which must not be a runtime's) until both sides are done.
/// The scheduler places the threads; [`run_on_layout_pinned`] pins them.
pub fn run_on_layout<S, SF, M, MF>(layout: Layout, serve: S, measure: M) -> io::Result<Measurement>
where
    S: FnOnce(ServerCtl) -> SF + Send + 'static,
    SF: Future<Output = io::Result<()>> + Send + 'static,
    M: FnOnce(SocketAddr) -> MF + Send + 'static,
    MF: Future<Output = io::Result<Measurement>> + Send + 'static,
{
    run_on_layout_pinned(layout, None, serve, measure)
}

/// [`run_on_layout`] with every thread pinned as `pin` says (none: the scheduler
/// places them). On [`Layout::Shared`] the runtime (workers and blocking pool) and the
/// thread blocking on it run on a thread of their own pinned to the one CPU; on
/// [`Layout::Split`] the server's OS thread and its runtime's threads are pinned to
/// `pin.server`, the client's to `pin.client`. A thread that cannot be pinned fails the
/// case.
pub fn run_on_layout_pinned<S, SF, M, MF>(
    layout: Layout,
    pin: Option<Pin>,
    serve: S,
    measure: M,
) -> io::Result<Measurement>
where
    S: FnOnce(ServerCtl) -> SF + Send + 'static,
    SF: Future<Output = io::Result<()>> + Send + 'static,
    M: FnOnce(SocketAddr) -> MF + Send + 'static,
    MF: Future<Output = io::Result<Measurement>> + Send + 'static,
{
    if let (Layout::Shared { .. }, Some(p)) = (layout, pin) {
        if !p.is_one_cpu() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the shared layout runs both sides on one runtime: it can be pinned to one CPU, not to {p}"
                ),
            ));
        }
    }
    let failure = PinFailure::default();
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let ctl = ServerCtl {
        ready: Some(ready_tx),
        stop: stop_rx,
    };
    let client = async move {
        let addr = ready_rx.await.ok();
        let result = match addr {
            Some(addr) => Some(measure(addr).await),
            None => None,
        };
        let _ = stop_tx.send(());
        result
    };
    let (server_result, client_result) = match layout {
        Layout::Shared { workers } => {
            let cpu = pin.map(|p| p.server);
            let fail = failure.clone();
            let run = move || {
                if let Some(cpu) = cpu {
                    fail.pin(cpu);
                }
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(workers.max(1)).enable_all();
                if let Some(cpu) = cpu {
                    builder.on_thread_start(move || fail.pin(cpu));
                }
                let rt = builder.build()?;
                Ok::<_, io::Error>(rt.block_on(async {
                    let server = tokio::spawn(serve(ctl));
                    let client = tokio::spawn(client);
                    let c = client.await.map_err(io::Error::other);
                    let s = server.await.map_err(io::Error::other).and_then(|r| r);
                    (s, c)
                }))
            };
            if cpu.is_some() {
                // A thread of its own: the caller's affinity stays as it was.
                std::thread::Builder::new()
                    .name("bench-pinned".into())
                    .spawn(run)?
                    .join()
                    .map_err(|_| io::Error::other("pinned runtime thread panicked"))??
            } else {
                run()?
            }
        }
        Layout::Split => {
            let fail = failure.clone();
            let cpu = pin.map(|p| p.server);
            let server = std::thread::Builder::new()
                .name("bench-server".into())
                .spawn(move || {
                    let rt = current_thread(cpu, &fail)?;
                    rt.block_on(async {
                        tokio::spawn(serve(ctl))
                            .await
                            .map_err(io::Error::other)
                            .and_then(|r| r)
                    })
                })?;
            let fail = failure.clone();
            let cpu = pin.map(|p| p.client);
            let client = std::thread::Builder::new()
                .name("bench-client".into())
                .spawn(move || {
                    // A spawned task, as on the shared layout.
                    let rt = current_thread(cpu, &fail)?;
                    rt.block_on(async { tokio::spawn(client).await.map_err(io::Error::other) })
                })?;
            let c = client
                .join()
                .map_err(|_| io::Error::other("client thread panicked"))
                .and_then(|r| r);
            let s = server
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))
                .and_then(|r| r);
            (s, c)
        }
    };
    failure.check()?;
    match client_result? {
        Some(measured) => {
            server_result?;
            measured
        }
        None => {
            server_result?;
            Err(io::Error::other(
                "the server ended without reporting an address",
            ))
        }
    }
}

/// A current-thread runtime on the calling thread, which (and whose blocking pool) is
/// pinned to `cpu` if given.
fn current_thread(cpu: Option<usize>, failure: &PinFailure) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if let Some(cpu) = cpu {
        failure.pin(cpu);
        let failure = failure.clone();
        builder.on_thread_start(move || failure.pin(cpu));
    }
    builder.build()
}

/// One row's numbers: latency percentiles (µs), throughput, and the CDF for plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// What was measured.
    pub case: Case,
    /// Measured calls.
    pub calls: u64,
    /// Length of the measured window, in seconds.
    pub window_s: f64,
    /// Measured calls per second of the measured window.
    pub calls_per_sec: f64,
    /// Requests sent again after a timeout ([`Measurement::resent`]).
    #[serde(default)]
    pub resent: u64,
    /// Fastest call, µs.
    pub min_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Slowest call, µs.
    pub max_us: f64,
    /// The latency CDF: `(µs, share of calls done within it)` points, ascending in both.
    pub cdf: Vec<(f64, f64)>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl CaseResult {
    /// Summarizes `m` for `case`.
    pub fn new(case: Case, m: &Measurement) -> Self {
        let h = &m.histogram;
        let window_s = m.window.as_secs_f64();
        let calls = h.len();
        let mut quantiles: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        quantiles.extend((990..1000).map(|i| i as f64 / 1000.0));
        quantiles.extend([0.9995, 0.9999, 1.0]);
        quantiles.sort_by(f64::total_cmp);
        quantiles.dedup();
        let cdf = if calls == 0 {
            Vec::new()
        } else {
            let mut points: Vec<(f64, f64)> = Vec::with_capacity(quantiles.len());
            for q in quantiles {
                let v = us(h.value_at_quantile(q));
                match points.last_mut() {
                    Some(last) if last.0 == v => last.1 = q,
                    _ => points.push((v, q)),
                }
            }
            points
        };
        CaseResult {
            case,
            calls,
            window_s,
            calls_per_sec: if window_s > 0.0 {
                calls as f64 / window_s
            } else {
                0.0
            },
            resent: m.resent,
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            cdf,
        }
    }

    /// Whether `p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max` (and `min ≤ p50`).
    pub fn percentiles_monotone(&self) -> bool {
        self.min_us <= self.p50_us
            && self.p50_us <= self.p90_us
            && self.p90_us <= self.p99_us
            && self.p99_us <= self.p999_us
            && self.p999_us <= self.max_us
    }
}

/// The results of one run of a tool, with what produced them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The tool (`"latency"`, `"peers"`).
    pub tool: String,
    /// The command line.
    pub command: String,
    /// When the run ended, seconds since the Unix epoch.
    pub unix_time: u64,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// One result per case, in the order they ran.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// A report of `results` by `tool`, stamped with this process's command line, the
    /// time and the CPU count.
    pub fn new(tool: &str, results: Vec<CaseResult>) -> Self {
        Report {
            tool: tool.to_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            results,
        }
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(path, json + "\n")
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn read_json(path: impl AsRef<Path>) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The first result matching `pred`.
    pub fn find(&self, pred: impl Fn(&Case) -> bool) -> Option<&CaseResult> {
        self.results.iter().find(|r| pred(&r.case))
    }
}

/// The raw floor of `case` in `results`: the [`Kind::Raw`] row with the same transport,
/// payload, calls in flight and busy-poll setting (peers compare with raw TCP).
pub fn floor_of<'a>(results: &'a [CaseResult], case: &Case) -> Option<&'a CaseResult> {
    results.iter().find(|r| {
        r.case.kind == Kind::Raw
            && r.case.transport == case.transport.floor()
            && r.case.payload == case.payload
            && r.case.in_flight == case.in_flight
            && r.case.busy() == case.busy()
    })
}

/// The plain counterpart of a UDP, TLS or sealed-UDP `case` in `results` (same kind,
/// size, calls in flight, busy-poll setting; see [`Transport::counterpart`]), for the
/// UDP/TCP column (which shows TLS/TCP on TLS rows and sealed/plain UDP on sealed rows).
pub fn tcp_counterpart_of<'a>(results: &'a [CaseResult], case: &Case) -> Option<&'a CaseResult> {
    let plain = case.transport.counterpart()?;
    if case.kind == Kind::Peer {
        return None;
    }
    results.iter().find(|r| {
        r.case.transport == plain
            && r.case.kind == case.kind
            && r.case.payload == case.payload
            && r.case.in_flight == case.in_flight
            && r.case.busy() == case.busy()
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".to_owned()
    }
}

/// The results as an aligned text table: per row the payload, calls in flight,
/// busy-poll, layout, the CPUs its threads were pinned to (`-`: not pinned), measured
/// calls, p50/p90/p99/p99.9/max in µs, calls/s, the p50
/// relative to the raw floor of the same transport/size/concurrency/busy-poll
/// ([`floor_of`]), and for UDP rows the p50 relative to the same row over TCP.
/// Notes follow the table, marked `[n]` after the row's name.
pub fn format_table(results: &[CaseResult]) -> String {
    let headers = [
        "case",
        "payload",
        "N",
        "busy",
        "layout",
        "pin",
        "calls",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "calls/s",
        "p50/floor",
        "UDP/TCP",
    ];
    let mut notes: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in results {
        let c = &r.case;
        let mut name = c.name.clone();
        let resent = (r.resent > 0).then(|| {
            format!(
                "{}: {} datagrams lost and re-sent after a timeout (those calls' latency includes the wait)",
                c.label(),
                r.resent
            )
        });
        for note in c.note.iter().chain(&resent) {
            let n = match notes.iter().position(|x| x == note) {
                Some(i) => i + 1,
                None => {
                    notes.push(note.clone());
                    notes.len()
                }
            };
            name.push_str(&format!(" [{n}]"));
        }
        let floor = if c.kind == Kind::Raw {
            "floor".to_owned()
        } else {
            floor_of(results, c)
                .map(|f| ratio(r.p50_us, f.p50_us))
                .unwrap_or_default()
        };
        let udp_tcp = tcp_counterpart_of(results, c)
            .map(|t| ratio(r.p50_us, t.p50_us))
            .unwrap_or_default();
        rows.push(vec![
            name,
            size_label(c.payload),
            c.in_flight.to_string(),
            c.busy_poll_us
                .map_or_else(|| "off".to_owned(), |b| format!("{b}µs")),
            c.layout.to_string(),
            c.pin.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            r.calls.to_string(),
            format!("{:.1}", r.p50_us),
            format!("{:.1}", r.p90_us),
            format!("{:.1}", r.p99_us),
            format!("{:.1}", r.p999_us),
            format!("{:.1}", r.max_us),
            format!("{:.0}", r.calls_per_sec),
            floor,
            udp_tcp,
        ]);
    }
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([headers[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&headers.map(str::to_owned));
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    for (i, note) in notes.iter().enumerate() {
        out.push_str(&format!("[{}] {note}\n", i + 1));
    }
    out
}

/// Tick values 1, 2, 5 × 10^k between `lo` and `hi` (1 and 3 × 10^k when that gives too
/// many).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = |mantissas: &[f64]| {
        let mut out = Vec::new();
        let mut decade = 10f64.powi(lo.max(1e-3).log10().floor() as i32);
        while decade <= hi {
            for m in mantissas {
                let v = m * decade;
                if v >= lo && v <= hi {
                    out.push(v);
                }
            }
            decade *= 10.0;
        }
        out
    };
    let fine = ticks(&[1.0, 2.0, 5.0]);
    if fine.len() <= 10 {
        fine
    } else {
        ticks(&[1.0, 3.0])
    }
}

/// Color pairs (dark, light), one per series family; busy-polling rows take the light
/// one (ColorBrewer "Paired", plus grays and teals for more families).
type Rgb = (u8, u8, u8);

/// (dark, light) color pairs.
const PAIRS: [(Rgb, Rgb); 8] = [
    ((0x1f, 0x78, 0xb4), (0x8c, 0xc3, 0xe8)),
    ((0x33, 0xa0, 0x2c), (0x9c, 0xd8, 0x6c)),
    ((0xe3, 0x1a, 0x1c), (0xf8, 0x8a, 0x89)),
    ((0xff, 0x7f, 0x00), (0xfd, 0xbf, 0x6f)),
    ((0x6a, 0x3d, 0x9a), (0xb8, 0x9b, 0xd6)),
    ((0xb1, 0x59, 0x28), (0xdf, 0xa8, 0x7a)),
    ((0x20, 0x20, 0x20), (0x90, 0x90, 0x90)),
    ((0x10, 0x8a, 0x94), (0x7f, 0xd3, 0xdb)),
];

/// The family of a case in plots: raw rows of one transport share a family whatever
/// their busy-poll setting (their names differ), other rows by name.
fn family(case: &Case) -> String {
    match case.kind {
        Kind::Raw => format!("raw {}", case.transport),
        _ => case.name.clone(),
    }
}

/// Writes an SVG plot of every result's latency CDF (x: round-trip latency in µs, log
/// scale, up to twice the panel's largest p99.9 — slower calls leave the plot at the
/// right edge; y: share of calls done): one panel per (payload, calls in flight), one
/// line per case, and one legend for all panels (one color per series: dark without
/// busy-polling, light with). Each case is exactly one `<polyline>` of stroke width 2
/// in the file (axes and ticks have width 1; the legend uses rectangles).
pub fn write_svg(path: impl AsRef<Path>, title: &str, results: &[CaseResult]) -> io::Result<()> {
    use plotters::prelude::*;

    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut panels: Vec<(usize, usize)> = results
        .iter()
        .map(|r| (r.case.payload, r.case.in_flight))
        .collect();
    panels.sort_unstable();
    panels.dedup();
    let mut families: Vec<String> = Vec::new();
    let mut series: Vec<(String, RGBColor)> = Vec::new();
    let mut color_of = HashMap::new();
    for r in results {
        let fam = family(&r.case);
        let i = families.iter().position(|f| *f == fam).unwrap_or_else(|| {
            families.push(fam);
            families.len() - 1
        });
        let (dark, light) = PAIRS[i % PAIRS.len()];
        let (cr, cg, cb) = if r.case.busy() { light } else { dark };
        let color = RGBColor(cr, cg, cb);
        let label = format!(
            "{}{}",
            r.case.name,
            r.case
                .busy_poll_us
                .map_or_else(String::new, |b| format!(", busy-poll {b} µs"))
        );
        let key = (r.case.name.clone(), r.case.busy());
        if let std::collections::hash_map::Entry::Vacant(e) = color_of.entry(key) {
            e.insert(color);
            series.push((label, color));
        }
    }
    const LEGEND_W: u32 = 330;
    let cols = if panels.len() > 1 { 2 } else { 1 };
    let rows = panels.len().div_ceil(cols).max(1);
    let panel = (640u32, 420u32);
    let size = (
        panel.0 * cols as u32 + LEGEND_W,
        (40 + panel.1 * rows as u32).max(80 + 20 * series.len() as u32),
    );
    let err = |e: &dyn fmt::Display| io::Error::other(format!("plotting {}: {e}", path.display()));

    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (plots, legend) = root.split_horizontally(panel.0 * cols as u32);
    let areas = plots.split_evenly((rows, cols));
    for (area, &(payload, in_flight)) in areas.iter().zip(&panels) {
        let mine: Vec<&CaseResult> = results
            .iter()
            .filter(|r| (r.case.payload, r.case.in_flight) == (payload, in_flight))
            .collect();
        let lo = mine
            .iter()
            .flat_map(|r| r.cdf.first().map(|p| p.0))
            .fold(f64::INFINITY, f64::min);
        // Up to twice the slowest p99.9: the outliers beyond it would squeeze the rest.
        let hi = mine.iter().map(|r| r.p999_us * 2.0).fold(0.0f64, f64::max);
        let (lo, hi) = if lo.is_finite() && hi > 0.0 {
            ((lo * 0.8).max(0.01), hi.max(lo * 2.0))
        } else {
            (1.0, 1000.0)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{}, {} in flight", size_label(payload), in_flight),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
                0.0f64..1.0f64,
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("round-trip latency, µs (log scale)")
            .y_desc("share of calls done")
            .x_label_formatter(&|v| {
                if *v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            })
            .draw()
            .map_err(|e| err(&e))?;
        for r in mine {
            let color = color_of[&(r.case.name.clone(), r.case.busy())];
            let mut points: Vec<(f64, f64)> = r
                .cdf
                .iter()
                .take_while(|p| p.0 <= hi)
                .map(|&(x, y)| (x.max(lo), y))
                .collect();
            if points.len() < r.cdf.len() {
                // The line leaves the plot at the right edge at the share done by then.
                let y = points.last().map_or(0.0, |p| p.1);
                points.push((hi, y));
            }
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?;
        }
    }
    let font = ("sans-serif", 13).into_font();
    for (i, (label, color)) in series.iter().enumerate() {
        let y = 40 + 20 * i as i32;
        legend
            .draw(&Rectangle::new([(8, y - 5), (30, y + 5)], color.filled()))
            .map_err(|e| err(&e))?;
        legend
            .draw(&Text::new(
                label.clone(),
                (38, y - 7),
                font.clone().color(&BLACK),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(name: &str, kind: Kind, transport: Transport) -> Case {
        Case {
            name: name.into(),
            kind,
            transport,
            payload: 32,
            message_bytes: None,
            in_flight: 1,
            busy_poll_us: None,
            layout: Layout::Shared { workers: 2 },
            note: None,
            pin: None,
        }
    }

    fn result(case: Case, values_ns: &[u64]) -> CaseResult {
        let mut h = new_histogram();
        for &v in values_ns {
            h.record(v).unwrap();
        }
        CaseResult::new(
            case,
            &Measurement {
                histogram: h,
                window: Duration::from_millis(1),
                resent: 0,
            },
        )
    }

    #[test]
    fn table_ratios() {
        let results = vec![
            result(case("raw UDP", Kind::Raw, Transport::Udp), &[10_000; 10]),
            result(case("raw TCP", Kind::Raw, Transport::Tcp), &[20_000; 10]),
            result(case("rpc UDP", Kind::Rpc, Transport::Udp), &[15_000; 10]),
            result(case("rpc TCP", Kind::Rpc, Transport::Tcp), &[30_000; 10]),
        ];
        let table = format_table(&results);
        let rpc_udp = table.lines().find(|l| l.starts_with("rpc UDP")).unwrap();
        assert!(rpc_udp.contains("1.50x"), "{table}");
        assert!(rpc_udp.ends_with("0.50x"), "{table}");
        assert!(results[0].calls_per_sec > 9_999.0);
    }

    #[tokio::test]
    async fn pipelined_and_concurrent_count_exactly() {
        struct Echo(Vec<u64>);
        impl Pipeline for Echo {
            async fn send(&mut self, id: u64) -> io::Result<()> {
                self.0.push(id);
                Ok(())
            }
            async fn recv(&mut self) -> io::Result<u64> {
                tokio::task::yield_now().await;
                Ok(self.0.remove(0))
            }
        }
        let plan = Plan::new(5, 50);
        let m = run_pipelined(&plan, 4, &mut Echo(Vec::new()))
            .await
            .unwrap();
        assert_eq!(m.calls(), 50);
        let callers = (0..3)
            .map(|_| {
                from_fn(|| async {
                    tokio::task::yield_now().await;
                    Ok(())
                })
            })
            .collect();
        let m = run_concurrent(&plan, callers).await.unwrap();
        assert_eq!(m.calls(), 50);
    }
}
