//! Serves the calculator (and the seed interface) over TCP until Ctrl-C.
//!
//! ```text
//! cargo run -p examples --bin calc-server -- --addr 127.0.0.1:7000
//! ```

use std::net::SocketAddr;

use clap::Parser;
use examples::calc::CalcServer;
use examples::calc_service::{CalcService, SeedService};
use examples::seed::SeedServer;
use examples::server_limits::LimitArgs;
use rpc_core::Server;
use rpc_transport_tcp::TcpListener;

/// Serve the calculator over TCP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// Worker tasks (handlers running at once).
    #[arg(long, default_value_t = rpc_core::server::DEFAULT_WORKERS)]
    workers: usize,
    /// Calls that may wait for a worker before the server answers `Overloaded`.
    #[arg(long, default_value_t = rpc_core::server::DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
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
    let listener = TcpListener::bind(args.addr)
        .await?
        .with_config(args.limits.tcp_config());
    let server = args
        .limits
        .apply(Server::builder())
        .workers(args.workers)
        .queue_depth(args.queue_depth)
        .add_service(CalcServer::new(CalcService::new()))
        .add_service(SeedServer::new(SeedService))
        .serve(listener)?;
    println!(
        "calc-server listening on {} (Ctrl-C to stop)",
        server.local_addr()
    );
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    println!("calc-server stopped");
    Ok(())
}
