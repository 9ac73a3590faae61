//! Serves one instance of the key-value store (`proto/kv.idl`) until Ctrl-C, optionally
//! registered with the name registry under `kv` version 1.
//!
//! ```text
//! cargo run -p examples --bin rpc-registry -- --addr 127.0.0.1:7700
//! cargo run -p examples --bin kv-server -- --addr 127.0.0.1:7001 --name a --registry udp://127.0.0.1:7700
//! cargo run -p examples --bin kv-server -- --addr 127.0.0.1:7002 --name b --registry udp://127.0.0.1:7700
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use examples::kv::KvServer;
use examples::kv_service::{AnyChannel, KvService, SERVICE_NAME, SERVICE_VERSION};
use rpc_core::naming::registry::proto::RegistryClient;
use rpc_core::naming::registry::RegisterOnServe;
use rpc_core::naming::{Endpoint, Scheme};
use rpc_core::transport::Listener;
use rpc_core::Server;
use rpc_transport_tcp::TcpListener;
use rpc_transport_udp::UdpListener;

/// The transport to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// The framework's reliable UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Serve one key-value store instance.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: SocketAddr,
    /// Transport to listen on.
    #[arg(long, value_enum, default_value_t = Transport::Udp)]
    transport: Transport,
    /// This instance's name (what `whoami` answers); default `kv@<addr>`.
    #[arg(long)]
    name: Option<String>,
    /// Register with the name registry at this endpoint (`udp://host:port` or
    /// `tcp://host:port`) as `kv` version 1.
    #[arg(long)]
    registry: Option<Endpoint>,
    /// Host to advertise to the registry (default: the listening address's IP).
    #[arg(long)]
    advertise_host: Option<String>,
    /// Most keys held.
    #[arg(long, default_value_t = examples::kv_service::DEFAULT_MAX_KEYS)]
    max_keys: usize,
    /// Largest value, in bytes.
    #[arg(long, default_value_t = examples::kv_service::DEFAULT_MAX_VALUE)]
    max_value: usize,
    #[command(flatten)]
    limits: examples::server_limits::LimitArgs,
    /// Delay every answer by this many milliseconds (a deliberately slow instance).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    match args.transport {
        Transport::Udp => serve(UdpListener::bind(args.addr).await?, Scheme::Udp, &args).await,
        Transport::Tcp => {
            let listener = TcpListener::bind(args.addr)
                .await?
                .with_config(args.limits.tcp_config());
            serve(listener, Scheme::Tcp, &args).await
        }
    }
}

async fn serve(
    listener: impl Listener,
    scheme: Scheme,
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let local = listener.local_addr();
    let name = args.name.clone().unwrap_or_else(|| format!("kv@{local}"));
    let service = KvService::new(name.clone())
        .with_limits(args.max_keys, args.max_value)
        .with_delay(Duration::from_millis(args.delay_ms));
    let mut builder = args
        .limits
        .apply(Server::builder())
        .add_service(KvServer::new(service));
    let advertised = {
        let host = match &args.advertise_host {
            Some(h) => h.clone(),
            None if local.ip().is_unspecified() => "127.0.0.1".to_owned(),
            None => local.ip().to_string(),
        };
        Endpoint::new(scheme, host, local.port())
    };
    if let Some(registry) = &args.registry {
        let channel = AnyChannel::for_endpoint(registry)
            .ok_or("the registry is reached over udp:// or tcp://")?;
        builder = builder.hook(RegisterOnServe::new(
            RegistryClient::new(channel),
            SERVICE_NAME,
            SERVICE_VERSION,
            advertised.clone(),
        ));
    }
    let server = builder.serve(listener)?;
    println!("kv-server {name:?} listening on {advertised} (Ctrl-C to stop)");
    if let Some(registry) = &args.registry {
        println!(
            "registering as {SERVICE_NAME} v{SERVICE_VERSION} with the registry at {registry}"
        );
    }
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    println!("kv-server {name:?} stopped");
    Ok(())
}
