//! Makes one call to a running `calc-server`, with the blocking client.
//!
//! ```text
//! cargo run -p examples --bin calc-client -- --addr 127.0.0.1:7000 add 2 3
//! cargo run -p examples --bin calc-client -- --transport udp add 2 3
//! cargo run -p examples --bin calc-client -- --addr udp://127.0.0.1:7000 ping
//! cargo run -p examples --bin calc-client -- mean 1 2 3.5
//! cargo run -p examples --bin calc-client -- apply div 1 0
//! cargo run -p examples --bin calc-client -- --tls-ca ca.pem [--cert c.pem --key c.key] add 2 3
//! cargo run -p examples --bin calc-client -- --transport udp --psk billing:KEY add 2 3
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use examples::calc::{CalcBlockingClient, Op};
use examples::kv_service::AnyChannel;
use examples::seed::SeedBlockingClient;
use rpc_core::client::BlockingRuntime;
use rpc_core::CallOptions;
use rpc_transport_tcp::{TcpChannel, TlsClient};
use rpc_transport_udp::{PreSharedKey, Security, UdpChannel, UdpConfig};

/// Which transport to call over, when the address has no `udp://` or `tcp://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// Reliable UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Call the calculator.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server address: `host:port`, `udp://host:port` or `tcp://host:port`.
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: String,
    /// Transport for an address without a scheme.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Call timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Call over TLS (TCP only), trusting the CA certificates in this PEM file.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Mutual TLS: the client certificate chain (PEM) to present; needs `--key`.
    #[arg(long, requires = "key", requires = "tls_ca")]
    cert: Option<PathBuf>,
    /// The private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Verify the server as this name instead of the address's host.
    #[arg(long, requires = "tls_ca")]
    tls_name: Option<String>,
    /// Seal UDP with this pre-shared key (`ID:KEY`, KEY 64 hex digits), as the server's
    /// `--psk`; needs UDP.
    #[arg(long, value_parser = examples::udp_security::parse_psk)]
    psk: Option<PreSharedKey>,
    /// The call to make.
    #[command(subcommand)]
    call: Call,
}

#[derive(Debug, Subcommand)]
enum Call {
    /// a + b
    Add {
        /// First operand.
        a: i32,
        /// Second operand.
        b: i32,
    },
    /// One arithmetic operation.
    Apply {
        /// The operation.
        op: OpArg,
        /// First operand.
        a: f64,
        /// Second operand.
        b: f64,
    },
    /// The mean of some numbers.
    Mean {
        /// The numbers.
        xs: Vec<f64>,
    },
    /// Echo a string.
    Echo {
        /// The string.
        s: String,
    },
    /// Round trip with no arguments.
    Ping,
    /// Send a line to the server's log (oneway).
    Log {
        /// The line.
        line: String,
    },
    /// The seed interface's func1(x).
    Func1 {
        /// The argument.
        x: i32,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OpArg {
    Add,
    Sub,
    Mul,
    Div,
}

impl From<OpArg> for Op {
    fn from(op: OpArg) -> Op {
        match op {
            OpArg::Add => Op::Add,
            OpArg::Sub => Op::Sub,
            OpArg::Mul => Op::Mul,
            OpArg::Div => Op::Div,
        }
    }
}

/// The TLS configuration the flags ask for (`None`: plain TCP).
fn client_tls(args: &Args) -> Result<Option<TlsClient>, Box<dyn std::error::Error>> {
    let Some(ca) = &args.tls_ca else {
        return Ok(None);
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut builder = TlsClient::builder().ca_certificates(&read(ca)?)?;
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        builder = builder.identity(&read(cert)?, &read(key)?)?;
    }
    if let Some(name) = &args.tls_name {
        builder = builder.server_name(name.clone());
    }
    Ok(Some(builder.build()?))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match BlockingRuntime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = CallOptions::new().timeout(Duration::from_millis(args.timeout_ms));
    let (transport, addr) = if let Some(a) = args.addr.strip_prefix("udp://") {
        (Transport::Udp, a.to_owned())
    } else if let Some(a) = args.addr.strip_prefix("tcp://") {
        (Transport::Tcp, a.to_owned())
    } else {
        (args.transport, args.addr.clone())
    };
    let tls = match client_tls(&args) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("TLS configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    if tls.is_some() && transport != Transport::Tcp {
        eprintln!("TLS applies to TCP: drop --transport udp or the udp:// scheme");
        return ExitCode::FAILURE;
    }
    if args.psk.is_some() && transport != Transport::Udp {
        eprintln!("--psk seals UDP: use --transport udp or the udp:// scheme");
        return ExitCode::FAILURE;
    }
    let udp_config = match &args.psk {
        Some(psk) => UdpConfig::default().security(Security::client_psk(psk.clone())),
        None => UdpConfig::default(),
    };
    let channel = || match transport {
        Transport::Udp => {
            AnyChannel::Udp(UdpChannel::new(addr.as_str()).with_config(udp_config.clone()))
        }
        Transport::Tcp => {
            let tcp = TcpChannel::new(addr.clone());
            AnyChannel::Tcp(match &tls {
                Some(tls) => tcp.with_tls(tls.clone()),
                None => tcp,
            })
        }
    };
    let calc =
        CalcBlockingClient::with_runtime(channel(), runtime.clone()).with_options(options.clone());
    let result: Result<String, rpc_core::RpcError> = match args.call {
        Call::Add { a, b } => calc.add(a, b).map(|v| v.to_string()),
        Call::Apply { op, a, b } => calc.apply(op.into(), a, b).map(|v| format!("{v:?}")),
        Call::Mean { xs } => calc.mean(xs).map(|v| v.to_string()),
        Call::Echo { s } => calc.echo(s),
        Call::Ping => calc.ping().map(|()| "pong".to_owned()),
        // A oneway call returns once the frame is queued; the ping that follows on the
        // same connection makes sure it left before this process exits.
        Call::Log { line } => calc
            .log(line)
            .and_then(|()| calc.ping())
            .map(|()| "sent".to_owned()),
        Call::Func1 { x } => SeedBlockingClient::with_runtime(channel(), runtime)
            .with_options(options)
            .func1(x)
            .map(|v| v.to_string()),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
