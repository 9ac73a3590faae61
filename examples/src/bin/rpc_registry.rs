//! Runs the framework's name registry (`proto/naming.idl`) until Ctrl-C.
//!
//! ```text
//! cargo run -p examples --bin rpc-registry -- --addr 127.0.0.1:7700 --transport udp
//! ```
//!
//! Servers register with a `RegisterOnServe` server hook (or
//! `rpc_core::naming::registry::Registration`), clients resolve names with
//! `rpc_core::naming::registry::RegistryResolver`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rpc_core::naming::registry::proto::RegistryServer;
use rpc_core::naming::registry::{RegistryConfig, RegistryService};
use rpc_core::transport::Listener;
use rpc_core::Server;
use rpc_transport_tcp::TcpListener;
use rpc_transport_udp::UdpListener;

/// The transport the registry listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// The framework's reliable UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Serve the name registry.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: SocketAddr,
    /// Transport to listen on.
    #[arg(long, value_enum, default_value_t = Transport::Udp)]
    transport: Transport,
    /// TTL granted to registrations that ask for none, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    default_ttl_ms: u64,
    /// Most long polls (`watch`) waiting at once.
    #[arg(long, default_value_t = 1_024)]
    max_watchers: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = RegistryConfig::default();
    config.default_ttl = Duration::from_millis(args.default_ttl_ms);
    config.max_watchers = args.max_watchers.max(1);
    let service = RegistryService::with_config(config);
    match args.transport {
        Transport::Udp => serve(UdpListener::bind(args.addr).await?, service, "udp").await?,
        Transport::Tcp => serve(TcpListener::bind(args.addr).await?, service, "tcp").await?,
    }
    Ok(())
}

async fn serve(
    listener: impl Listener,
    service: RegistryService,
    scheme: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    service.spawn_sweeper();
    let config = service.config().clone();
    let server = Server::builder()
        // Every waiting long poll holds a worker.
        .workers(config.recommended_workers())
        .add_service(RegistryServer::new(service.clone()))
        .serve(listener)?;
    println!(
        "rpc-registry listening on {scheme}://{} (default TTL {:?}, TTLs {:?}..={:?}; Ctrl-C to stop)",
        server.local_addr(),
        config.default_ttl,
        config.min_ttl,
        config.max_ttl,
    );
    let _ = tokio::signal::ctrl_c().await;
    // Answer the waiting long polls first, so the drain does not wait them out.
    service.shutdown();
    server.shutdown().await;
    let stats = service.stats();
    println!(
        "rpc-registry stopped ({} names, {} entries, {} registrations, {} refused, {} expired)",
        stats.names, stats.entries, stats.registrations, stats.refused, stats.expirations
    );
    Ok(())
}
