//! Acceptance tests of the balanced client: several `KvService` instances behind one
//! name (a `StaticResolver`), over TCP and over reliable UDP from the same generic
//! scenarios (modules `tcp` and `udp` at the bottom).
//!
//! * failover: 3,000 at-least-once calls from 4 clients while one instance is killed
//!   and later restarted on the same address;
//! * round robin spreads calls evenly;
//! * least-outstanding sends fewer calls to a slow instance;
//! * failover respects each call's semantics when a call is in doubt on a killed server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::kv::{Key, Kv, KvClient, KvServer, Value};
use examples::kv_service::KvService;
use rpc_core::client::{Balance, ClientConfig, EndpointStats, RetryPolicy};
use rpc_core::naming::{Endpoint, Resolver, Scheme, StaticResolver};
use rpc_core::server::ServerHandle;
use rpc_core::transport::{Channel, Listener};
use rpc_core::TransportError;
use rpc_core::{CallContext, CallOptions, Client, RpcError, Semantics, Server, Status};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::{UdpChannel, UdpListener};
use tokio::sync::Semaphore;

/// What a scenario needs from a transport.
trait Transport: 'static {
    type L: Listener;
    type C: Channel;
    const SCHEME: Scheme;
    async fn try_listen(addr: SocketAddr) -> Result<Self::L, TransportError>;
    fn channel(addr: SocketAddr) -> Self::C;
}

struct Tcp;
struct Udp;

impl Transport for Tcp {
    type L = TcpListener;
    type C = TcpChannel;
    const SCHEME: Scheme = Scheme::Tcp;

    async fn try_listen(addr: SocketAddr) -> Result<TcpListener, TransportError> {
        TcpListener::bind(addr).await
    }

    fn channel(addr: SocketAddr) -> TcpChannel {
        TcpChannel::new(addr)
    }
}

impl Transport for Udp {
    type L = UdpListener;
    type C = UdpChannel;
    const SCHEME: Scheme = Scheme::Udp;

    async fn try_listen(addr: SocketAddr) -> Result<UdpListener, TransportError> {
        UdpListener::bind(addr).await
    }

    fn channel(addr: SocketAddr) -> UdpChannel {
        UdpChannel::new(addr)
    }
}

/// Upper bound on any one wait in these tests.
const LIMIT: Duration = Duration::from_secs(15);

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A listener on `addr`, retrying while the old socket on that address goes away.
async fn listen<T: Transport>(addr: SocketAddr) -> T::L {
    bounded("bind", async {
        loop {
            match T::try_listen(addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    })
    .await
}

fn serve<T: Transport, K: Kv>(listener: T::L, svc: Arc<K>) -> ServerHandle {
    Server::builder()
        .workers(16)
        .queue_depth(1024)
        .add_service(KvServer::from_arc(svc))
        .serve(listener)
        .unwrap()
}

/// Starts one instance of `svc` on a free port of 127.0.0.1.
async fn start<T: Transport, K: Kv>(svc: Arc<K>) -> (ServerHandle, Endpoint) {
    let listener = listen::<T>("127.0.0.1:0".parse().unwrap()).await;
    let addr = listener.local_addr();
    (
        serve::<T, K>(listener, svc),
        Endpoint::from_addr(T::SCHEME, addr),
    )
}

/// A balanced client over `endpoints` (through a `StaticResolver`).
async fn balanced<T: Transport>(endpoints: &[Endpoint], config: ClientConfig) -> KvClient<T::C> {
    let rx = StaticResolver::new(endpoints.iter().cloned())
        .watch("kv", 1)
        .await
        .unwrap();
    let client = Client::balanced(
        rx,
        |ep: &Endpoint| Some(T::channel(ep.socket_addr()?)),
        config,
    );
    KvClient::from_client(client)
}

fn stats_of<'a>(stats: &'a [EndpointStats], ep: &Endpoint) -> &'a EndpointStats {
    stats
        .iter()
        .find(|s| s.endpoint.as_ref() == Some(ep))
        .unwrap_or_else(|| panic!("no stats for {ep}: {stats:?}"))
}

fn at_least_once() -> CallOptions {
    CallOptions::new()
        .semantics(Semantics::AtLeastOnce)
        .timeout(Duration::from_secs(10))
}

/// Three instances behind one name, four balanced clients making 3,000 at-least-once
/// calls in parallel; one instance is killed after 1,000 calls and restarted (on the
/// same address) after the 3,000.
async fn kill_and_restart_one_of_three<T: Transport>() {
    const CLIENTS: usize = 4;
    const TASKS_PER_CLIENT: usize = 2;
    const CALLS: u64 = 3_000;
    const KILL_AFTER: u64 = 1_000;

    let services: Vec<Arc<KvService>> = (0..3)
        .map(|i| Arc::new(KvService::new(format!("kv-{i}"))))
        .collect();
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for svc in &services {
        let (handle, ep) = start::<T, KvService>(svc.clone()).await;
        servers.push(Some(handle));
        endpoints.push(ep);
    }
    let config = ClientConfig::default()
        .balance(Balance::RoundRobin)
        .health(2, Duration::from_millis(20), Duration::from_millis(100))
        // With the default reconnect backoff (up to 2 s) a call that probes the dead
        // endpoint waits out that backoff inside the client before failing over: see
        // `bug_probe_of_a_down_endpoint_waits_the_reconnect_backoff` below.
        .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(10))
        .retry(RetryPolicy::default().backoff(Duration::from_millis(1), Duration::from_millis(20)));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(
            balanced::<T>(&endpoints, config.clone())
                .await
                .with_options(at_least_once()),
        );
    }

    // The workload: tickets up to `limit`, each one call (put or whoami).
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(AtomicU64::new(CALLS));
    let slowest_us = Arc::new(AtomicU64::new(0));
    let run = || {
        let mut tasks = Vec::new();
        for (c, client) in clients.iter().enumerate() {
            for _ in 0..TASKS_PER_CLIENT {
                let (client, issued, done, limit) =
                    (client.clone(), issued.clone(), done.clone(), limit.clone());
                let slowest_us = slowest_us.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let n = issued.fetch_add(1, Ordering::Relaxed);
                        if n >= limit.load(Ordering::Relaxed) {
                            return;
                        }
                        let t0 = Instant::now();
                        let result = if n % 2 == 0 {
                            client
                                .put(format!("k{c}-{n}"), Value::from(n.to_be_bytes().to_vec()))
                                .await
                                .map(|_| ())
                        } else {
                            client.whoami().await.map(|_| ())
                        };
                        if let Err(e) = result {
                            panic!("call {n} failed: {e}");
                        }
                        slowest_us.fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        tasks
    };

    let tasks = run();
    eventually("1,000 calls done", || {
        done.load(Ordering::Relaxed) >= KILL_AFTER
    })
    .await;
    let dead = endpoints[0].clone();
    drop(servers[0].take()); // abrupt: no graceful shutdown
    let killed_at = Instant::now();
    let dead_at_kill = services[0].executions();
    println!(
        "[{:?}] killed {dead} after {} calls",
        T::SCHEME,
        done.load(Ordering::Relaxed)
    );

    // Every client marks the dead endpoint down.
    eventually("the dead endpoint marked down on every client", || {
        clients
            .iter()
            .all(|c| !stats_of(&c.client().endpoint_stats(), &dead).up)
    })
    .await;
    let marked_down_after = killed_at.elapsed();
    let calls_when_down: Vec<u64> = clients
        .iter()
        .map(|c| stats_of(&c.client().endpoint_stats(), &dead).calls)
        .collect();
    let dead_when_down = services[0].executions();
    let done_when_down = done.load(Ordering::Relaxed);

    for t in tasks {
        bounded("workload", t).await.unwrap();
    }
    assert_eq!(
        done.load(Ordering::Relaxed),
        CALLS,
        "every call completed Ok"
    );
    let phase1 = killed_at.elapsed();
    println!(
        "[{:?}] phase 1: {phase1:?} after the kill, slowest call {} µs",
        T::SCHEME,
        slowest_us.load(Ordering::Relaxed)
    );

    // The dead instance ran nothing after it was marked down, and at most the calls
    // already in flight at the kill in between.
    let dead_final = services[0].executions();
    assert_eq!(dead_final, dead_when_down, "the dead instance ran calls");
    assert!(
        dead_final - dead_at_kill <= (CLIENTS * TASKS_PER_CLIENT) as u64,
        "calls ran on the killed instance after the kill: {} -> {dead_final}",
        dead_at_kill
    );
    // Its endpoint got (almost) no attempts after it was marked down: only probes, at
    // most one per client task per probe window (the windows start at 20 ms).
    let probe_bound = TASKS_PER_CLIENT as u64 * (phase1.as_millis() as u64 / 20 + 2);
    for (c, before) in clients.iter().zip(&calls_when_down) {
        let after = stats_of(&c.client().endpoint_stats(), &dead).calls;
        assert!(
            after - before <= probe_bound,
            "{} attempts on the dead endpoint after it was marked down (bound {probe_bound})",
            after - before
        );
    }
    let probes: u64 = clients
        .iter()
        .zip(&calls_when_down)
        .map(|(c, b)| stats_of(&c.client().endpoint_stats(), &dead).calls - b)
        .sum();
    let counts: Vec<u64> = services.iter().map(|s| s.executions()).collect();
    println!(
        "[{:?}] marked down on all clients {marked_down_after:?} after the kill ({} calls done \
         then); executions per instance {counts:?}; dead instance: {dead_at_kill} at the kill, \
         {dead_final} at the end; attempts on the dead endpoint after down: {probes}",
        T::SCHEME,
        done_when_down
    );

    // Restart an instance on the same address: it gets calls again, and every client
    // sees the endpoint up.
    let reborn = Arc::new(KvService::new("kv-0-restarted"));
    let listener = listen::<T>(dead.socket_addr().unwrap()).await;
    servers[0] = Some(serve::<T, KvService>(listener, reborn.clone()));
    let restarted_at = Instant::now();
    issued.store(0, Ordering::Relaxed);
    done.store(0, Ordering::Relaxed);
    limit.store(u64::MAX, Ordering::Relaxed);
    let tasks = run();
    eventually(
        "the restarted instance receives calls on every client",
        || {
            reborn.executions() > 0
                && clients
                    .iter()
                    .all(|c| stats_of(&c.client().endpoint_stats(), &dead).up)
        },
    )
    .await;
    let back_after = restarted_at.elapsed();
    limit.store(0, Ordering::Relaxed); // stop the workload
    for t in tasks {
        bounded("workload", t).await.unwrap();
    }
    println!(
        "[{:?}] restarted instance: {} executions, up on every client {back_after:?} after \
         the restart ({} more calls, all Ok)",
        T::SCHEME,
        reborn.executions(),
        done.load(Ordering::Relaxed)
    );
    assert!(reborn.executions() > 0);
}

/// Round robin over three healthy instances: 3,000 sequential calls, ~1,000 each.
async fn round_robin_is_even<T: Transport>() {
    let services: Vec<Arc<KvService>> = (0..3)
        .map(|i| Arc::new(KvService::new(format!("kv-{i}"))))
        .collect();
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for svc in &services {
        let (handle, ep) = start::<T, KvService>(svc.clone()).await;
        servers.push(handle);
        endpoints.push(ep);
    }
    let client = balanced::<T>(
        &endpoints,
        ClientConfig::default().balance(Balance::RoundRobin),
    )
    .await;
    let mut by_name = std::collections::BTreeMap::<String, u64>::new();
    bounded("3,000 calls", async {
        for _ in 0..3_000 {
            *by_name.entry(client.whoami().await.unwrap()).or_default() += 1;
        }
    })
    .await;
    let counts: Vec<u64> = services.iter().map(|s| s.stats().whoami).collect();
    println!("[{:?}] round robin: {by_name:?}", T::SCHEME);
    assert_eq!(by_name.len(), 3, "{by_name:?}");
    for (name, n) in &by_name {
        assert!(
            (900..=1100).contains(n),
            "{name}: {n} calls (want 1,000 ± 10 %)"
        );
    }
    assert_eq!(counts.iter().sum::<u64>(), 3_000);
    let per_endpoint: Vec<u64> = client
        .client()
        .endpoint_stats()
        .iter()
        .map(|s| s.calls)
        .collect();
    assert!(
        per_endpoint.iter().all(|n| (900..=1100).contains(n)),
        "{per_endpoint:?}"
    );
    drop(servers);
}

/// Least outstanding: one instance answers after 20 ms, two at once; 600 calls, 32 at
/// a time. The slow one gets clearly fewer calls than an even share (200).
async fn least_outstanding_avoids_slow<T: Transport>() {
    const CALLS: u64 = 600;
    const CONCURRENCY: usize = 32;
    let slow = Arc::new(KvService::new("slow").with_delay(Duration::from_millis(20)));
    let fast: Vec<Arc<KvService>> = (0..2)
        .map(|i| Arc::new(KvService::new(format!("fast-{i}"))))
        .collect();
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for svc in std::iter::once(&slow).chain(&fast) {
        let (handle, ep) = start::<T, KvService>(svc.clone()).await;
        servers.push(handle);
        endpoints.push(ep);
    }
    let client = balanced::<T>(
        &endpoints,
        ClientConfig::default().balance(Balance::LeastOutstanding),
    )
    .await;
    client.client().connect().await.unwrap();
    let issued = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, issued) = (client.clone(), issued.clone());
            tokio::spawn(async move {
                while issued.fetch_add(1, Ordering::Relaxed) < CALLS {
                    client.whoami().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        bounded("600 calls", t).await.unwrap();
    }
    let slow_n = slow.executions();
    let fast_n: Vec<u64> = fast.iter().map(|s| s.executions()).collect();
    println!(
        "[{:?}] least outstanding, 600 calls × 32 concurrent: slow {slow_n}, fast {fast_n:?}",
        T::SCHEME
    );
    assert_eq!(slow_n + fast_n.iter().sum::<u64>(), CALLS);
    // An even share is 200. Power-of-two-choices as implemented draws both choices
    // with replacement, so with three endpoints the slow one is picked whenever both
    // draws hit it: ~1/9 of the calls (~67) whatever its load. Anything clearly below
    // an even share shows the policy works: observed 62-88 over 12 runs; the bound is 60 %
    // of an even share (see `bug_least_outstanding_keeps_feeding_a_stuck_endpoint`).
    assert!(
        slow_n < CALLS / 3 * 6 / 10,
        "the slow instance got {slow_n} of {CALLS} calls"
    );
    for n in &fast_n {
        assert!(*n > slow_n * 2, "fast {fast_n:?} vs slow {slow_n}");
    }
}

/// A kv store whose `put` waits at a gate (the test opens it), to hold calls in doubt.
struct Gated {
    inner: KvService,
    gate: Semaphore,
    entered: AtomicU64,
}

impl Gated {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(Gated {
            inner: KvService::new(name),
            gate: Semaphore::new(0),
            entered: AtomicU64::new(0),
        })
    }

    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

impl Kv for Gated {
    async fn get(&self, ctx: &CallContext, key: Key) -> Result<Option<Value>, Status> {
        self.inner.get(ctx, key).await
    }

    async fn put(
        &self,
        ctx: &CallContext,
        key: Key,
        value: Value,
    ) -> Result<Option<Value>, Status> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.gate
            .acquire()
            .await
            .map_err(|_| Status::Cancelled)?
            .forget();
        self.inner.put(ctx, key, value).await
    }

    async fn delete(&self, ctx: &CallContext, key: Key) -> Result<bool, Status> {
        self.inner.delete(ctx, key).await
    }

    async fn whoami(&self, ctx: &CallContext) -> Result<String, Status> {
        self.inner.whoami(ctx).await
    }
}

/// One `put` with `semantics`, held at the gate of whichever instance it reached; that
/// instance is killed, the others' gates open. Returns the call's result, which
/// instance was killed, and every instance's executed `put`s.
async fn in_doubt_put<T: Transport>(
    semantics: Semantics,
) -> (Result<Option<Value>, RpcError>, usize, Vec<u64>) {
    let services: Vec<Arc<Gated>> = (0..3).map(|i| Gated::new(&format!("kv-{i}"))).collect();
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for svc in &services {
        let (handle, ep) = start::<T, Gated>(svc.clone()).await;
        servers.push(Some(handle));
        endpoints.push(ep);
    }
    let config = ClientConfig::default()
        .health(1, Duration::from_millis(20), Duration::from_millis(100))
        .retry(
            RetryPolicy::default()
                .max_attempts(4)
                .backoff(Duration::from_millis(1), Duration::from_millis(10)),
        );
    let client = balanced::<T>(&endpoints, config).await;
    let options = CallOptions::new()
        .semantics(semantics)
        .timeout(Duration::from_secs(5));
    let call = client.with_options(options);
    let call = tokio::spawn(async move { call.put("key".into(), Value::from_static(b"v")).await });
    eventually("the put waits at a gate", || {
        services
            .iter()
            .any(|s| s.entered.load(Ordering::SeqCst) == 1)
    })
    .await;
    let victim = services
        .iter()
        .position(|s| s.entered.load(Ordering::SeqCst) == 1)
        .unwrap();
    drop(servers[victim].take());
    for (i, s) in services.iter().enumerate() {
        if i != victim {
            s.open();
        }
    }
    let result = bounded("the in-doubt call ends", call).await.unwrap();
    let puts = services
        .iter()
        .map(|s| s.entered.load(Ordering::SeqCst))
        .collect();
    // The killed instance's handler is still parked at its gate: end it.
    services[victim].gate.close();
    (result, victim, puts)
}

async fn failover_respects_semantics<T: Transport>() {
    // At-least-once: resent to another instance, succeeds there.
    let (result, victim, puts) = in_doubt_put::<T>(Semantics::AtLeastOnce).await;
    println!(
        "[{:?}] at-least-once in doubt on kv-{victim}: {result:?}, puts {puts:?}",
        T::SCHEME
    );
    assert_eq!(result.unwrap(), None);
    assert_eq!(
        puts.iter().sum::<u64>(),
        2,
        "ran on the victim and once elsewhere: {puts:?}"
    );

    // Exactly-once: pinned to the instance whose reply cache may hold it; never run on
    // another, it fails once the retries on its own endpoint run out.
    let (result, victim, puts) = in_doubt_put::<T>(Semantics::ExactlyOnce).await;
    println!(
        "[{:?}] exactly-once in doubt on kv-{victim}: {result:?}, puts {puts:?}",
        T::SCHEME
    );
    assert!(
        matches!(
            result,
            Err(RpcError::Transport(_) | RpcError::OutcomeUnknown(_))
        ),
        "{result:?}"
    );
    assert_eq!(
        puts.iter().sum::<u64>(),
        1,
        "not re-run elsewhere: {puts:?}"
    );

    // At-most-once: never resent; the outcome is unknown.
    let (result, victim, puts) = in_doubt_put::<T>(Semantics::AtMostOnce).await;
    println!(
        "[{:?}] at-most-once in doubt on kv-{victim}: {result:?}, puts {puts:?}",
        T::SCHEME
    );
    assert!(
        matches!(result, Err(RpcError::OutcomeUnknown(_))),
        "{result:?}"
    );
    assert_eq!(
        puts.iter().sum::<u64>(),
        1,
        "not re-run elsewhere: {puts:?}"
    );
}

/// Regression test: `Balance::LeastOutstanding` must draw two *distinct* choices.
/// Drawn with replacement, an endpoint that never answers still got ~1/n² of new calls
/// (both draws hit it: 1/9 with three endpoints) however many it already held; with
/// two distinct choices it gets at most a handful.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_starves_a_stuck_endpoint() {
    bounded("scenario", async {
        let services: Vec<Arc<Gated>> = (0..3).map(|i| Gated::new(&format!("kv-{i}"))).collect();
        services[1].open();
        services[2].open();
        let mut servers = Vec::new();
        let mut endpoints = Vec::new();
        for svc in &services {
            let (handle, ep) = start::<Tcp, Gated>(svc.clone()).await;
            servers.push(handle);
            endpoints.push(ep);
        }
        let config = ClientConfig::default().balance(Balance::LeastOutstanding);
        let client = balanced::<Tcp>(&endpoints, config).await;
        let stuck_sent = || stats_of(&client.client().endpoint_stats(), &endpoints[0]).calls;
        let mut stuck_calls = Vec::new();
        for i in 0..300 {
            let before = stuck_sent();
            let c = client.clone();
            let call = tokio::spawn(async move { c.put(format!("k{i}"), Value::new()).await });
            // Wait until it is answered, or sent to the stuck instance.
            eventually("the call is answered or stuck", || {
                call.is_finished() || stuck_sent() > before
            })
            .await;
            if !call.is_finished() {
                stuck_calls.push(call);
            }
        }
        let stuck = stuck_sent();
        println!(
            "least outstanding: {stuck} of 300 calls went to the endpoint that never answers \
             (holding {} at once)",
            stats_of(&client.client().endpoint_stats(), &endpoints[0]).outstanding
        );
        services[0].gate.close();
        assert!(
            stuck <= 5,
            "{stuck} of 300 calls sent to an endpoint holding them all"
        );
    })
    .await
}

/// Regression test: a balanced client's probe of a down endpoint runs inside a user
/// call; that call must not sleep out the endpoint's *reconnect* backoff (doubling up to
/// `reconnect_backoff_max`, default 2 s) while healthy endpoints are idle — it fails
/// over at once, and only one call at a time probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_a_down_endpoint_does_not_stall_calls() {
    bounded("scenario", async {
        let mut servers = Vec::new();
        let mut endpoints = Vec::new();
        for i in 0..3 {
            let (handle, ep) =
                start::<Udp, KvService>(Arc::new(KvService::new(format!("kv-{i}")))).await;
            servers.push(handle);
            endpoints.push(ep);
        }
        let client = balanced::<Udp>(&endpoints, ClientConfig::default())
            .await
            .with_options(at_least_once());
        client.whoami().await.unwrap();
        drop(servers.remove(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut slowest = Duration::ZERO;
                    while start.elapsed() < Duration::from_secs(3) {
                        let t0 = Instant::now();
                        client.whoami().await.unwrap();
                        slowest = slowest.max(t0.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        for t in tasks {
            slowest = slowest.max(t.await.unwrap());
        }
        println!("slowest call in 3 s after the kill: {slowest:?}");
        assert!(
            slowest < Duration::from_millis(250),
            "a call took {slowest:?}"
        );
    })
    .await
}

macro_rules! scenarios {
    ($t:ty) => {
        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn kill_and_restart_one_of_three() {
            bounded("scenario", super::kill_and_restart_one_of_three::<$t>()).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn round_robin_is_even() {
            bounded("scenario", super::round_robin_is_even::<$t>()).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn least_outstanding_avoids_slow() {
            bounded("scenario", super::least_outstanding_avoids_slow::<$t>()).await
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn failover_respects_semantics() {
            bounded("scenario", super::failover_respects_semantics::<$t>()).await
        }
    };
}

mod tcp {
    scenarios!(Tcp);
}

mod udp {
    scenarios!(Udp);
}
