//! Serves the calculator (and the seed interface) over reliable UDP and TCP until
//! Ctrl-C: one server (one worker pool, one reply cache) on both transports.
//!
//! ```text
//! cargo run -p examples --bin calc-server -- --addr 127.0.0.1:7000                 # both
//! cargo run -p examples --bin calc-server -- --addr 127.0.0.1:7000 --transport udp
//! cargo run -p examples --bin calc-server -- --metrics-addr 127.0.0.1:9100  # + Prometheus
//! cargo run -p examples --bin calc-server -- --transport tcp \
//!     --tls-cert server.pem --tls-key server.key [--client-ca clients-ca.pem]  # TLS, mTLS
//! cargo run -p examples --bin calc-server -- --transport udp \
//!     --psk billing:$(openssl rand -hex 32)                  # sealed UDP, pre-shared key
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use examples::calc::CalcServer;
use examples::calc_service::{CalcService, SeedService};
use examples::seed::SeedServer;
use examples::server_limits::LimitArgs;
use rpc_core::server::ServerBuilder;
use rpc_core::transport::{Both, Listener};
use rpc_core::Server;
use rpc_transport_tcp::{TcpListener, TlsServer};
use rpc_transport_udp::{PreSharedKey, Security, UdpConfig, UdpListener};

/// Which transports to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// Reliable UDP only.
    Udp,
    /// TCP only.
    Tcp,
    /// Both, on the same port number.
    Both,
}

/// Serve the calculator over reliable UDP and TCP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (with `--transport both`, the UDP and the TCP port are the
    /// same; port 0 picks one free for both).
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// Transports to listen on.
    #[arg(long, value_enum, default_value_t = Transport::Both)]
    transport: Transport,
    /// Worker tasks (handlers running at once).
    #[arg(long, default_value_t = rpc_core::server::DEFAULT_WORKERS)]
    workers: usize,
    /// Calls that may wait for a worker before the server answers `Overloaded`.
    #[arg(long, default_value_t = rpc_core::server::DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
    /// Serve Prometheus metrics over HTTP on this address (port 0: a free one; the
    /// address is printed before the listening line).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Serve TCP over TLS 1.3 with this certificate chain (PEM); needs `--tls-key` and
    /// `--transport tcp`.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: require client certificates issued by a CA in this PEM file.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Seal UDP (authenticated encryption, PROTOCOL.md 9.10) and accept clients that
    /// prove this pre-shared key: `ID:KEY`, KEY 64 hex digits. Repeat for several keys;
    /// needs `--transport udp`. The calls' principal is the key's id.
    #[arg(long = "psk", value_parser = examples::udp_security::parse_psk)]
    psks: Vec<PreSharedKey>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    // First: the server registers its metric handles with the recorder installed then.
    if let Some(addr) = args.metrics_addr {
        let served = examples::metrics::serve_prometheus(addr)?;
        println!("calc-server metrics on http://{served}/metrics");
    }
    let builder = args
        .limits
        .apply(Server::builder())
        .workers(args.workers)
        .queue_depth(args.queue_depth)
        .add_service(CalcServer::new(CalcService::new()))
        .add_service(SeedServer::new(SeedService));
    let tls = server_tls(&args)?;
    if tls.is_some() && args.transport != Transport::Tcp {
        return Err("TLS applies to TCP: use --transport tcp with --tls-cert".into());
    }
    if !args.psks.is_empty() && args.transport != Transport::Udp {
        return Err("--psk seals UDP: use --transport udp".into());
    }
    match args.transport {
        Transport::Udp => {
            let (config, sealed) = if args.psks.is_empty() {
                (UdpConfig::default(), "")
            } else {
                let security = Security::server_psk(args.psks.iter().cloned());
                (UdpConfig::default().security(security), " (sealed)")
            };
            let udp = UdpListener::bind_with(args.addr, config).await?;
            let what = format!("udp://{}{sealed}", udp.local_addr());
            run(builder, udp, what).await
        }
        Transport::Tcp => {
            let tcp = tcp_listener(&args, args.addr).await?;
            let what = format!("tcp://{}", tcp.local_addr());
            match tls {
                Some(tls) => {
                    let what = format!("{what} (TLS)");
                    run(builder, tcp.with_tls(tls), what).await
                }
                None => run(builder, tcp, what).await,
            }
        }
        Transport::Both => {
            let tcp = tcp_listener(&args, args.addr).await?;
            let udp = UdpListener::bind(tcp.local_addr()).await?;
            let what = format!("udp://{} and tcp://{}", udp.local_addr(), tcp.local_addr());
            run(builder, Both::new(udp, tcp), what).await
        }
    }
}

/// The TLS configuration the flags ask for (`None`: plain TCP).
fn server_tls(args: &Args) -> Result<Option<TlsServer>, Box<dyn std::error::Error>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut builder = TlsServer::builder(&read(cert)?, &read(key)?)?;
    if let Some(ca) = &args.client_ca {
        builder = builder.client_ca_certificates(&read(ca)?)?;
    }
    Ok(Some(builder.build()?))
}

async fn tcp_listener(
    args: &Args,
    addr: SocketAddr,
) -> Result<TcpListener, Box<dyn std::error::Error>> {
    Ok(TcpListener::bind(addr)
        .await?
        .with_config(args.limits.tcp_config()))
}

async fn run(
    builder: ServerBuilder,
    listener: impl Listener,
    what: String,
) -> Result<(), Box<dyn std::error::Error>> {
    let server = builder.serve(listener)?;
    println!("calc-server listening on {what} (Ctrl-C to stop)");
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    println!("calc-server stopped");
    Ok(())
}
