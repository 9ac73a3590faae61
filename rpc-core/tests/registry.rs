//! The name registry (`rpc_core::naming::registry`), served by its own generated stubs
//! over the in-process transport: registration, heartbeats, expiry, deregistration,
//! caps, long polls, the resolver, and `RegisterOnServe` (a server hook).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use rpc_core::naming::registry::proto::{self, MetadataEntry, RegistryClient, RegistryServer};
use rpc_core::naming::registry::{
    codes, RegisterOnServe, Registration, RegistryConfig, RegistryResolver, RegistryService,
};
use rpc_core::naming::{Endpoint, Resolver};
use rpc_core::server::ServerHandle;
use rpc_core::transport::memory::{self, MemoryChannel};
use rpc_core::{RpcError, Server};
use tokio::sync::watch;

struct Registry {
    service: RegistryService,
    channel: MemoryChannel,
    server: ServerHandle,
}

impl Registry {
    fn start(config: RegistryConfig) -> Registry {
        let service = RegistryService::with_config(config);
        let (channel, listener) = memory::endpoint(1024);
        let server = Server::builder()
            .workers(service.config().recommended_workers())
            .add_service(RegistryServer::new(service.clone()))
            .serve(listener)
            .unwrap();
        Registry {
            service,
            channel,
            server,
        }
    }

    fn client(&self) -> RegistryClient<MemoryChannel> {
        RegistryClient::new(self.channel.clone())
    }

    async fn stop(self) {
        self.service.shutdown();
        self.server.shutdown().await;
    }
}

/// Short TTLs allowed, and a fast sweeper.
fn fast_config() -> RegistryConfig {
    let mut config = RegistryConfig::default();
    config.min_ttl = Duration::from_millis(50);
    config.sweep_interval = Duration::from_millis(50);
    config
}

fn ep(url: &str) -> Endpoint {
    url.parse().unwrap()
}

fn registration(name: &str, url: &str, ttl_ms: u32) -> proto::Registration {
    proto::Registration {
        name: name.to_owned(),
        service_version: 1,
        endpoint: url.to_owned(),
        metadata: Vec::new(),
        ttl_ms,
    }
}

/// Waits until the receiver's value satisfies `pred`; returns how long that took.
async fn wait_until(
    rx: &mut watch::Receiver<Vec<Endpoint>>,
    within: Duration,
    pred: impl Fn(&[Endpoint]) -> bool,
) -> Duration {
    let start = Instant::now();
    let seen = tokio::time::timeout(within, rx.wait_for(|set| pred(set)))
        .await
        .unwrap_or_else(|_| panic!("condition not met within {within:?}"));
    drop(seen.unwrap());
    start.elapsed()
}

async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

fn app_code(e: &RpcError) -> i32 {
    match e {
        RpcError::Application { code, .. } => *code,
        other => panic!("expected an application error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_lookup() {
    let registry = Registry::start(RegistryConfig::default());
    let client = registry.client();
    let mut endpoint = ep("udp://127.0.0.1:7000");
    endpoint.metadata.insert("zone".into(), "a".into());
    let reg = Registration::start(client.clone(), "calc", 1, endpoint.clone(), Duration::ZERO)
        .await
        .unwrap();
    assert!(reg.lease().is_some());
    assert_eq!(reg.ttl(), Duration::from_secs(10), "the default TTL");

    let set = client.lookup("calc".into(), 1).await.unwrap();
    assert_ne!(set.revision, 0);
    assert_eq!(set.endpoints.len(), 1);
    assert_eq!(set.endpoints[0].endpoint, "udp://127.0.0.1:7000");
    assert_eq!(
        set.endpoints[0].metadata,
        [MetadataEntry {
            key: "zone".into(),
            value: "a".into()
        }]
    );
    // Other versions and names are separate.
    let other = client.lookup("calc".into(), 2).await.unwrap();
    assert!(other.endpoints.is_empty());
    assert_eq!(other.revision, 0);

    let resolved = RegistryResolver::new(client.clone())
        .watch("calc", 1)
        .await
        .unwrap();
    assert_eq!(*resolved.borrow(), [endpoint]);

    // TTLs are clamped to the configured range.
    let lease = client
        .register(registration("calc", "tcp://127.0.0.1:7001", 1))
        .await
        .unwrap();
    assert_eq!(lease.ttl_ms, 500);
    let lease = client
        .register(registration("calc", "tcp://127.0.0.1:7002", u32::MAX))
        .await
        .unwrap();
    assert_eq!(lease.ttl_ms, 3_600_000);

    // Malformed registrations are refused with a clear error.
    for (bad, what) in [
        (registration("", "udp://127.0.0.1:1", 0), "empty name"),
        (registration("calc", "http://x:1", 0), "scheme"),
        (registration("calc", "udp://127.0.0.1:0", 0), "port 0"),
        (
            proto::Registration {
                metadata: vec![
                    MetadataEntry {
                        key: "k".into(),
                        value: "1".into(),
                    },
                    MetadataEntry {
                        key: "k".into(),
                        value: "2".into(),
                    },
                ],
                ..registration("calc", "udp://127.0.0.1:9", 0)
            },
            "duplicate",
        ),
    ] {
        let err = client.register(bad).await.unwrap_err();
        assert_eq!(app_code(&err), codes::INVALID, "{what}: {err}");
    }
    let stats = registry.service.stats();
    assert_eq!((stats.names, stats.entries), (1, 3));
    assert_eq!((stats.registrations, stats.refused_invalid), (3, 4));

    reg.deregister().await.unwrap();
    assert_eq!(registry.service.stats().entries, 2);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_entry_alive_past_its_ttl() {
    let registry = Registry::start(fast_config());
    let client = registry.client();
    let reg = Registration::start(
        client.clone(),
        "kv",
        1,
        ep("tcp://127.0.0.1:7100"),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(reg.ttl(), Duration::from_millis(300));
    let lease = reg.lease();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let set = client.lookup("kv".into(), 1).await.unwrap();
    assert_eq!(set.endpoints.len(), 1, "still registered after 3+ TTLs");
    assert_eq!(reg.lease(), lease, "renewed, not re-registered");
    let stats = registry.service.stats();
    assert!(stats.renewals >= 5, "{stats:?}");
    assert_eq!(stats.expirations, 0);
    drop(reg);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_registration_expires_within_ttl_plus_one_sweep() {
    const TTL: Duration = Duration::from_millis(300);
    let registry = Registry::start(fast_config());
    let sweep = registry.service.config().sweep_interval;
    let client = registry.client();
    let stays = Registration::start(client.clone(), "kv", 1, ep("tcp://127.0.0.1:1"), TTL)
        .await
        .unwrap();
    let goes = Registration::start(client.clone(), "kv", 1, ep("tcp://127.0.0.1:2"), TTL)
        .await
        .unwrap();
    let mut rx = RegistryResolver::new(client.clone())
        .watch("kv", 1)
        .await
        .unwrap();
    assert_eq!(rx.borrow_and_update().len(), 2);

    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(goes);
    let gone = wait_until(&mut rx, TTL * 3, |set| set.len() == 1).await;
    // The last renewal was at most TTL/3 before the drop (or just after it, if one
    // was in flight): the entry lives at least 2/3 TTL more, and at most TTL plus one
    // sweep period (plus scheduling slack).
    assert!(
        gone >= TTL * 2 / 3 - Duration::from_millis(20),
        "expired too early: {gone:?}"
    );
    assert!(
        gone <= TTL + sweep + Duration::from_millis(150),
        "expired too late: {gone:?}"
    );
    assert_eq!(*rx.borrow(), [ep("tcp://127.0.0.1:1")]);
    let stats = registry.service.stats();
    assert_eq!((stats.expirations, stats.entries), (1, 1));

    // An expired lease is unknown: a heartbeat says so.
    let lease = client
        .register(registration("x", "tcp://127.0.0.1:3", 100))
        .await
        .unwrap();
    assert!(client.heartbeat(lease.id).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100) + sweep * 2).await;
    assert!(!client.heartbeat(lease.id).await.unwrap());
    drop(stays);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_removes_at_once_and_wakes_watchers() {
    let registry = Registry::start(RegistryConfig::default());
    let client = registry.client();
    let reg = Registration::start(
        client.clone(),
        "calc",
        1,
        ep("udp://10.0.0.1:7000"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    // A long wait: only a wake-up can deliver the change in time.
    let mut rx = RegistryResolver::new(client.clone())
        .wait(Duration::from_secs(20))
        .watch("calc", 1)
        .await
        .unwrap();
    assert_eq!(rx.borrow_and_update().len(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ((), took) = timed(async { reg.deregister().await.unwrap() }).await;
    assert!(took < Duration::from_millis(500), "{took:?}");
    let seen = wait_until(&mut rx, Duration::from_secs(1), |set| set.is_empty()).await;
    assert!(seen < Duration::from_millis(300), "{seen:?}");
    let stats = registry.service.stats();
    assert_eq!(
        (stats.deregistrations, stats.entries, stats.names),
        (1, 0, 0)
    );
    // Deregistering an unknown lease is harmless.
    client.deregister(12345).await.unwrap();
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_registrations_stays_within_the_caps() {
    let registry = Registry::start(RegistryConfig::default());
    let config = registry.service.config().clone();
    let client = registry.client();

    async fn flood(
        client: &RegistryClient<MemoryChannel>,
        regs: Vec<proto::Registration>,
    ) -> (usize, Vec<RpcError>) {
        let mut ok = 0;
        let mut errors = Vec::new();
        for chunk in regs.chunks(500) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|r| client.start_register(r.clone()))
                .collect();
            for h in handles {
                match h.await {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e),
                }
            }
        }
        (ok, errors)
    }

    // 5,000 instances of one service: 1,000 fit.
    let big: Vec<_> = (0..5_000u32)
        .map(|i| {
            registration(
                "big",
                &format!("tcp://10.{}.{}.1:{}", i / 256, i % 256, 1 + i),
                0,
            )
        })
        .collect();
    let (ok, errors) = flood(&client, big).await;
    assert_eq!(ok, config.max_entries_per_name);
    assert_eq!(errors.len(), 4_000);
    assert!(errors.iter().all(|e| app_code(e) == codes::NAME_FULL));
    assert!(
        errors[0].to_string().contains("max_entries_per_name"),
        "{}",
        errors[0]
    );

    // 20,000 services: 10,000 names fit ("big" is one of them).
    let many: Vec<_> = (0..20_000u32)
        .map(|i| registration(&format!("svc-{i}"), "udp://127.0.0.1:9000", 0))
        .collect();
    let (ok, errors) = flood(&client, many).await;
    assert_eq!(ok, config.max_names - 1);
    assert_eq!(errors.len(), 20_000 - (config.max_names - 1));
    assert!(errors.iter().all(|e| app_code(e) == codes::REGISTRY_FULL));
    assert!(errors[0].to_string().contains("max_names"), "{}", errors[0]);

    let stats = registry.service.stats();
    assert_eq!(stats.names, config.max_names as u64);
    assert_eq!(
        stats.entries,
        (config.max_entries_per_name + config.max_names - 1) as u64
    );
    assert_eq!(stats.refused_name_full, 4_000);
    assert_eq!(stats.refused_registry_full, 10_001);
    assert_eq!(stats.refused, 14_001);
    let set = client.lookup("big".into(), 1).await.unwrap();
    assert_eq!(set.endpoints.len(), config.max_entries_per_name);
    registry.stop().await;

    // The total-entry cap.
    let mut small = RegistryConfig::default();
    small.max_total_entries = 10;
    let registry = Registry::start(small);
    let client = registry.client();
    let regs: Vec<_> = (0..15u32)
        .map(|i| registration("s", &format!("tcp://127.0.0.1:{}", 100 + i), 0))
        .collect();
    let (ok, errors) = flood(&client, regs).await;
    assert_eq!((ok, errors.len()), (10, 5));
    assert!(errors.iter().all(|e| app_code(e) == codes::REGISTRY_FULL));
    assert!(errors[0].to_string().contains("max_total_entries"));
    // Re-registering an endpoint already there replaces it (no new entry needed). The
    // calls ran concurrently, so which ten got in is not known: take one that did.
    let set = client.lookup("s".into(), 1).await.unwrap();
    assert_eq!(set.endpoints.len(), 10);
    client
        .register(registration("s", &set.endpoints[0].endpoint, 0))
        .await
        .unwrap();
    assert_eq!(registry.service.stats().entries, 10);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_long_polls() {
    let registry = Registry::start(RegistryConfig::default());
    let client = registry.client();
    client
        .register(registration("w", "tcp://127.0.0.1:1", 0))
        .await
        .unwrap();
    let rev = client.lookup("w".into(), 1).await.unwrap().revision;

    // A stale revision answers at once.
    let (set, took) = timed(client.watch("w".into(), 1, rev + 1000, 5_000)).await;
    assert_eq!(set.unwrap().revision, rev);
    assert!(took < Duration::from_millis(200), "{took:?}");

    // No change: answers after wait_ms with the same revision.
    let (set, took) = timed(client.watch("w".into(), 1, rev, 300)).await;
    let set = set.unwrap();
    assert_eq!((set.revision, set.endpoints.len()), (rev, 1));
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(800), "{took:?}");

    // A change answers promptly.
    let poll = client.start_watch("w".into(), 1, rev, 10_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished());
    let changed_at = Instant::now();
    client
        .register(registration("w", "tcp://127.0.0.1:2", 0))
        .await
        .unwrap();
    let set = poll.await.unwrap();
    assert!(changed_at.elapsed() < Duration::from_millis(200));
    assert_ne!(set.revision, rev);
    assert_eq!(set.endpoints.len(), 2);
    let w_rev = set.revision;

    // A name nobody registered yet can be watched too.
    let poll = client.start_watch("later".into(), 1, 0, 10_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .register(registration("later", "tcp://127.0.0.1:3", 0))
        .await
        .unwrap();
    let set = tokio::time::timeout(Duration::from_secs(1), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(set.endpoints.len(), 1);

    // Shutdown answers every waiting poll at once.
    let poll = client.start_watch("w".into(), 1, w_rev, 10_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(registry.service.stats().watchers, 1);
    let (_, took) = timed(registry.stop()).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(poll.await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_bounded() {
    let mut config = RegistryConfig::default();
    config.max_watchers = 2;
    let registry = Registry::start(config);
    let client = registry.client();
    let a = client.start_watch("x".into(), 1, 0, 10_000);
    let b = client.start_watch("x".into(), 1, 0, 10_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(registry.service.stats().watchers, 2);
    let (set, took) = timed(client.watch("x".into(), 1, 0, 10_000)).await;
    assert_eq!(set.unwrap().revision, 0);
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert_eq!(registry.service.stats().watches_refused, 1);
    // Cancelled polls free their slots.
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(registry.service.stats().watchers, 0);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_follows_additions_and_removals() {
    let registry = Registry::start(RegistryConfig::default());
    let client = registry.client();
    let mut rx = RegistryResolver::new(client.clone())
        .watch("calc", 1)
        .await
        .unwrap();
    assert!(rx.borrow_and_update().is_empty(), "nothing registered yet");

    let a = Registration::start(
        client.clone(),
        "calc",
        1,
        ep("udp://127.0.0.1:7001"),
        Duration::ZERO,
    )
    .await
    .unwrap();
    wait_until(&mut rx, Duration::from_secs(1), |s| s.len() == 1).await;
    let mut b_endpoint = ep("tcp://127.0.0.1:7002");
    b_endpoint.metadata = BTreeMap::from([("weight".to_owned(), "2".to_owned())]);
    let b = Registration::start(
        client.clone(),
        "calc",
        1,
        b_endpoint.clone(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    wait_until(&mut rx, Duration::from_secs(1), |s| s.len() == 2).await;
    let mut expected = vec![ep("udp://127.0.0.1:7001"), b_endpoint.clone()];
    expected.sort();
    assert_eq!(*rx.borrow(), expected);

    a.deregister().await.unwrap();
    wait_until(&mut rx, Duration::from_secs(1), |s| s.len() == 1).await;
    assert_eq!(*rx.borrow(), [b_endpoint]);
    b.deregister().await.unwrap();
    wait_until(&mut rx, Duration::from_secs(1), |s| s.is_empty()).await;

    // Dropping the receiver stops the resolver's task and frees its long poll.
    drop(rx);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(registry.service.stats().watchers, 0);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_keeps_the_last_set_while_the_registry_is_down() {
    let registry = Registry::start(RegistryConfig::default());
    let client = registry.client();
    client
        .register(registration("calc", "tcp://127.0.0.1:1", 0))
        .await
        .unwrap();
    let rx = RegistryResolver::new(client.clone())
        .wait(Duration::from_millis(200))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .watch("calc", 1)
        .await
        .unwrap();
    registry.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*rx.borrow(), [ep("tcp://127.0.0.1:1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_registered_again() {
    let registry = Registry::start(fast_config());
    let client = registry.client();
    let reg = Registration::start(
        client.clone(),
        "kv",
        1,
        ep("tcp://127.0.0.1:5"),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let first = reg.lease().unwrap();
    // Someone (an operator, a registry restart) drops the lease.
    client.deregister(first).await.unwrap();
    assert!(client
        .lookup("kv".into(), 1)
        .await
        .unwrap()
        .endpoints
        .is_empty());
    // The next heartbeat (within TTL/3) learns it and registers again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = reg.lease().unwrap();
    assert_ne!(again, first);
    assert_eq!(
        client.lookup("kv".into(), 1).await.unwrap().endpoints.len(),
        1
    );
    reg.deregister().await.unwrap();
    assert!(client
        .lookup("kv".into(), 1)
        .await
        .unwrap()
        .endpoints
        .is_empty());
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_register_on_serve_and_deregister_on_shutdown() {
    let registry = Registry::start(RegistryConfig::default());
    let client = registry.client();
    let mut rx = RegistryResolver::new(client.clone())
        .watch("echo", 1)
        .await
        .unwrap();

    // A second server (it happens to host a registry too: any service will do).
    let advertised = ep("tcp://127.0.0.1:7300");
    let (_channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .add_service(RegistryServer::new(RegistryService::new()))
        .hook(RegisterOnServe::new(
            client.clone(),
            "echo",
            1,
            advertised.clone(),
        ))
        .serve(listener)
        .unwrap();
    wait_until(&mut rx, Duration::from_secs(1), |s| s.len() == 1).await;
    assert_eq!(*rx.borrow(), [advertised]);

    // Graceful shutdown deregisters at once (the TTL is 10 s).
    let ((), took) = timed(server.shutdown()).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    wait_until(&mut rx, Duration::from_millis(500), |s| s.is_empty()).await;
    assert_eq!(registry.service.stats().deregistrations, 1);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeps_serving_and_retrying_while_registration_fails() {
    let mut config = RegistryConfig::default();
    config.max_total_entries = 1;
    let registry = Registry::start(config);
    let client = registry.client();
    let blocker = client
        .register(registration("other", "tcp://127.0.0.1:1", 0))
        .await
        .unwrap();

    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .add_service(RegistryServer::new(RegistryService::new()))
        .hook(RegisterOnServe::new(
            client.clone(),
            "echo",
            1,
            ep("tcp://127.0.0.1:7400"),
        ))
        .serve(listener)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(registry.service.stats().refused_registry_full >= 1);
    // It serves all the same.
    let own = RegistryClient::new(channel);
    assert_eq!(own.lookup("x".into(), 1).await.unwrap().revision, 0);

    // Room appears: the background registration gets in (backoff is at most 2 s).
    client.deregister(blocker.id).await.unwrap();
    let mut rx = RegistryResolver::new(client.clone())
        .watch("echo", 1)
        .await
        .unwrap();
    wait_until(&mut rx, Duration::from_secs(3), |s| s.len() == 1).await;
    server.shutdown().await;
    wait_until(&mut rx, Duration::from_millis(500), |s| s.is_empty()).await;
    registry.stop().await;
}
