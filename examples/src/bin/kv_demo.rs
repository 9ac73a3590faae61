//! The load-balancing and failover demo: a name registry and three key-value store
//! instances in this process (reliable UDP on 127.0.0.1), and one balanced client that
//! finds them through the registry. It shows the round robin, stops one instance in the
//! middle of a run (calls continue on the others; the dead endpoint is marked down),
//! then restarts it on the same address (it receives calls again).
//!
//! ```text
//! cargo run -p examples --bin kv-demo
//! ```
//!
//! Exits 0 only if everything behaved as expected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::kv::{KvClient, KvServer, Value};
use examples::kv_service::{
    follow_instances, AnyChannel, Discovery, KvService, SERVICE_NAME, SERVICE_VERSION,
};
use rpc_core::client::{Balance, ClientConfig, RetryPolicy};
use rpc_core::naming::registry::proto::{RegistryClient, RegistryServer};
use rpc_core::naming::registry::{RegisterOnServe, RegistryConfig, RegistryService};
use rpc_core::naming::{Endpoint, Scheme};
use rpc_core::server::ServerHandle;
use rpc_core::transport::Listener;
use rpc_core::{CallOptions, Semantics, Server};
use rpc_transport_udp::{UdpChannel, UdpListener};

type Error = Box<dyn std::error::Error>;

/// Counts what did not behave.
struct Checks {
    failed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            println!("  ok: {what}");
        } else {
            self.failed += 1;
            println!("  UNEXPECTED: {what}");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let run = tokio::time::timeout(Duration::from_secs(30), run());
    match run.await {
        Ok(Ok(0)) => {
            println!("\nkv-demo finished: everything behaved as expected");
            ExitCode::SUCCESS
        }
        Ok(Ok(n)) => {
            println!("\nkv-demo finished with {n} unexpected result(s)");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("kv-demo failed: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("kv-demo did not finish within 30 s");
            ExitCode::FAILURE
        }
    }
}

/// One kv instance, registered with the registry at `registry`.
fn start_instance(
    listener: UdpListener,
    service: Arc<KvService>,
    registry: SocketAddr,
) -> Result<ServerHandle, Error> {
    Ok(Server::builder()
        .add_service(KvServer::from_arc(service))
        .hook(RegisterOnServe::new(
            RegistryClient::new(UdpChannel::new(registry)),
            SERVICE_NAME,
            SERVICE_VERSION,
            // Port 0: the listener's port.
            Endpoint::new(Scheme::Udp, "127.0.0.1", 0),
        ))
        .serve(listener)?)
}

fn print_endpoints(client: &KvClient<AnyChannel>, names: &BTreeMap<u16, String>) {
    println!(
        "  {:<26} {:<10} {:>6} {:>9}  state",
        "endpoint", "instance", "calls", "failures"
    );
    for s in client.client().endpoint_stats() {
        let Some(ep) = &s.endpoint else { continue };
        println!(
            "  {:<26} {:<10} {:>6} {:>9}  {}",
            ep.to_string(),
            names.get(&ep.port).map_or("?", String::as_str),
            s.calls,
            s.failures,
            if s.up { "up" } else { "DOWN" }
        );
    }
}

fn endpoint_up(client: &KvClient<AnyChannel>, port: u16) -> Option<bool> {
    client
        .client()
        .endpoint_stats()
        .into_iter()
        .find(|s| s.endpoint.as_ref().is_some_and(|e| e.port == port))
        .map(|s| s.up)
}

async fn run() -> Result<usize, Error> {
    let mut checks = Checks { failed: 0 };

    // The registry.
    let mut config = RegistryConfig::default();
    // Long enough that a killed instance stays listed during the demo: the client's
    // health checks, not the registry, take it out of rotation.
    config.default_ttl = Duration::from_secs(60);
    let registry_service = RegistryService::with_config(config);
    registry_service.spawn_sweeper();
    let registry_listener = UdpListener::bind("127.0.0.1:0").await?;
    let registry_addr = registry_listener.local_addr();
    let registry = Server::builder()
        .workers(64)
        .add_service(RegistryServer::new(registry_service.clone()))
        .serve(registry_listener)?;
    println!("registry listening on udp://{registry_addr}");

    // Three instances.
    let names = ["alpha", "beta", "gamma"];
    let mut servers: Vec<Option<ServerHandle>> = Vec::new();
    let mut services = Vec::new();
    let mut by_port = BTreeMap::new();
    for name in names {
        let listener = UdpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr().port();
        let service = Arc::new(KvService::new(name));
        servers.push(Some(start_instance(
            listener,
            service.clone(),
            registry_addr,
        )?));
        services.push(service);
        by_port.insert(port, name.to_owned());
        println!("kv instance {name:?} on udp://127.0.0.1:{port}");
    }

    // The client: finds `kv` v1 in the registry, round robin over what it finds.
    let registry_endpoint = Endpoint::from_addr(Scheme::Udp, registry_addr);
    let mut endpoints = follow_instances(&Discovery::Registry(registry_endpoint)).await?;
    let waited = Instant::now();
    while endpoints.borrow().len() < 3 {
        tokio::time::timeout(Duration::from_secs(5), endpoints.changed())
            .await
            .map_err(|_| "the three instances did not appear in the registry")??;
    }
    println!(
        "\nthe registry lists {} instances of {SERVICE_NAME} v{SERVICE_VERSION} (after {:?})",
        endpoints.borrow().len(),
        waited.elapsed()
    );
    let config = ClientConfig::default()
        .balance(Balance::RoundRobin)
        .default_timeout(Duration::from_secs(5))
        // Two failures in a row mark an endpoint down; it is probed again after 20 ms,
        // doubling up to 200 ms.
        .health(2, Duration::from_millis(20), Duration::from_millis(200))
        // Reconnects to a dead endpoint back off from 5 ms up to 100 ms (the default
        // 2 s would hold each probing call that long).
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(100))
        .retry(RetryPolicy::default().backoff(Duration::from_millis(2), Duration::from_millis(50)));
    let client = KvClient::from_client(rpc_core::Client::balanced(
        endpoints,
        AnyChannel::connect,
        config,
    ));
    // Every call may be resent to another instance if one dies under it.
    let kv = client.with_options(CallOptions::new().semantics(Semantics::AtLeastOnce));

    // 1. Round robin.
    println!("\n1. nine whoami() calls, round robin:");
    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(kv.whoami().await?);
    }
    println!("  {}", seen.join(" -> "));
    for name in names {
        let n = seen.iter().filter(|s| *s == name).count();
        checks.check(n == 3, &format!("{name} answered {n} of 9"));
    }

    // 2. Stop one instance in the middle of a run.
    println!("\n2. 60 at-least-once put() calls; beta is stopped (abruptly) after 20:");
    let victim = 1;
    let victim_port = *by_port.iter().find(|(_, n)| *n == names[victim]).unwrap().0;
    let mut ok = 0;
    let before: Vec<u64> = services.iter().map(|s| s.stats().put).collect();
    let mut beta_after_kill = 0;
    for i in 0..60 {
        if i == 20 {
            drop(servers[victim].take());
            beta_after_kill = services[victim].stats().put;
            println!("  -- beta stopped after call {i} --");
        }
        match kv
            .put(
                format!("key-{i}"),
                Value::from(format!("value {i}").into_bytes()),
            )
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => println!("  put #{i} failed: {e}"),
        }
    }
    let puts: Vec<u64> = services
        .iter()
        .zip(&before)
        .map(|(s, b)| s.stats().put - b)
        .collect();
    println!(
        "  puts executed: alpha {}, beta {}, gamma {}",
        puts[0], puts[1], puts[2]
    );
    checks.check(ok == 60, &format!("{ok} of 60 calls succeeded"));
    checks.check(
        services[victim].stats().put == beta_after_kill,
        "beta ran nothing after it was stopped",
    );
    checks.check(
        endpoint_up(&client, victim_port) == Some(false),
        "beta's endpoint is marked down",
    );
    print_endpoints(&client, &by_port);

    // 3. Restart it on the same address.
    println!("\n3. beta restarts on the same address:");
    let addr: SocketAddr = ([127, 0, 0, 1], victim_port).into();
    let listener = {
        let start = Instant::now();
        loop {
            match UdpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if start.elapsed() > Duration::from_secs(5) => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let reborn = Arc::new(KvService::new("beta"));
    servers[victim] = Some(start_instance(listener, reborn.clone(), registry_addr)?);
    let restarted = Instant::now();
    let mut calls = 0;
    while (reborn.executions() == 0 || endpoint_up(&client, victim_port) != Some(true))
        && restarted.elapsed() < Duration::from_secs(5)
    {
        kv.whoami().await?;
        calls += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "  the restarted beta answered again after {calls} calls ({:?})",
        restarted.elapsed()
    );
    checks.check(reborn.executions() > 0, "the restarted beta receives calls");
    checks.check(
        endpoint_up(&client, victim_port) == Some(true),
        "beta's endpoint is up again",
    );
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(kv.whoami().await?);
    }
    println!("  six more whoami(): {}", seen.join(" -> "));
    checks.check(
        names.iter().all(|n| seen.iter().any(|s| s == n)),
        "all three instances answer",
    );
    print_endpoints(&client, &by_port);

    // Stop everything gracefully (deregistering from the registry first).
    for server in servers.into_iter().flatten() {
        server.shutdown().await;
    }
    registry_service.shutdown();
    registry.shutdown().await;
    Ok(checks.failed)
}
