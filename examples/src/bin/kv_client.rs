//! Calls the key-value store through a balanced client: the instances come from a static
//! list or from the name registry.
//!
//! ```text
//! cargo run -p examples --bin kv-client -- --endpoints udp://127.0.0.1:7001,udp://127.0.0.1:7002 put a hello
//! cargo run -p examples --bin kv-client -- --registry udp://127.0.0.1:7700 get a
//! cargo run -p examples --bin kv-client -- --registry udp://127.0.0.1:7700 --repeat 6 whoami
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use examples::kv::{KvClient, Value};
use examples::kv_service::{follow_instances, AnyChannel, Discovery};
use rpc_core::client::ClientConfig;
use rpc_core::naming::Endpoint;
use rpc_core::{CallOptions, Client, RpcError};

/// Call the key-value store.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The instances, comma separated (`udp://host:port`, `tcp://host:port`).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "registry",
        conflicts_with = "registry"
    )]
    endpoints: Vec<Endpoint>,
    /// Find the instances (`kv` version 1) in the name registry at this endpoint.
    #[arg(long)]
    registry: Option<Endpoint>,
    /// Call timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Make the call this many times (to watch the balancing).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// The call to make.
    #[command(subcommand)]
    call: Call,
}

#[derive(Debug, Subcommand)]
enum Call {
    /// The value stored under a key.
    Get {
        /// The key.
        key: String,
    },
    /// Store a value (a UTF-8 string) under a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Which instance answers.
    Whoami,
}

fn show(value: Option<Value>) -> String {
    match value {
        None => "(none)".to_owned(),
        Some(v) => match std::str::from_utf8(&v) {
            Ok(s) => format!("{s:?}"),
            Err(_) => format!("{} bytes", v.len()),
        },
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let discovery = match &args.registry {
        Some(registry) => Discovery::Registry(registry.clone()),
        None => Discovery::Static(args.endpoints.clone()),
    };
    let endpoints = match follow_instances(&discovery).await {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("cannot resolve kv: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let client = Client::balanced(
        endpoints,
        AnyChannel::connect,
        ClientConfig::default().default_timeout(timeout),
    );
    let kv = KvClient::from_client(client).with_options(CallOptions::new().timeout(timeout));
    let mut failed = false;
    for _ in 0..args.repeat {
        let result: Result<String, RpcError> = match &args.call {
            Call::Get { key } => kv.get(key.clone()).await.map(show),
            Call::Put { key, value } => kv
                .put(key.clone(), Value::from(value.clone().into_bytes()))
                .await
                .map(|old| format!("ok (previous: {})", show(old))),
            Call::Delete { key } => kv
                .delete(key.clone())
                .await
                .map(|existed| if existed { "deleted" } else { "no such key" }.to_owned()),
            Call::Whoami => kv.whoami().await,
        };
        match result {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    for s in kv.client().endpoint_stats() {
        if let Some(ep) = &s.endpoint {
            eprintln!(
                "  {ep}: {} calls, {} failures, {}",
                s.calls,
                s.failures,
                if s.up { "up" } else { "down" }
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
