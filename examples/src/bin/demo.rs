//! The demo: starts a calculator server in this process (TCP on 127.0.0.1), makes a
//! few calls of each kind with the generated stubs, and prints what happened.
//!
//! ```text
//! cargo run -p examples --bin demo
//! ```

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use examples::calc::{CalcBlockingClient, CalcClient, CalcServer, Op, Point, Shape, Step};
use examples::calc_service::{CalcService, SeedService};
use examples::seed::{SeedClient, SeedServer};
use rpc_core::client::{BlockingRuntime, ClientConfig, Credentials};
use rpc_core::server::BearerTokens;
use rpc_core::{CallOptions, Client, RpcError, Semantics, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::{UdpChannel, UdpListener};

/// Prints one call and its outcome; counts failures that were not expected.
struct Report {
    unexpected: usize,
}

impl Report {
    fn ok<T: std::fmt::Debug>(&mut self, call: &str, result: Result<T, RpcError>) {
        match result {
            Ok(v) => println!("  {call:<44} -> {v:?}"),
            Err(e) => {
                self.unexpected += 1;
                println!("  {call:<44} -> UNEXPECTED ERROR: {e}");
            }
        }
    }

    fn err<T: std::fmt::Debug>(&mut self, call: &str, result: Result<T, RpcError>) {
        match result {
            Ok(v) => {
                self.unexpected += 1;
                println!("  {call:<44} -> UNEXPECTED SUCCESS: {v:?}");
            }
            Err(e) => println!("  {call:<44} -> error (as expected): {e}"),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(0) => {
            println!("\ndemo finished: every call behaved as expected");
            ExitCode::SUCCESS
        }
        Ok(n) => {
            println!("\ndemo finished with {n} unexpected result(s)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<usize, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = Server::builder()
        .workers(4)
        .add_service(CalcServer::new(CalcService::new()))
        .add_service(SeedServer::new(SeedService))
        .serve(listener)?;
    let addr = server.local_addr();
    println!("server listening on {addr} (TCP), hosting Calc v1 and Seed v1\n");

    let mut report = Report { unexpected: 0 };
    let calc = CalcClient::new(TcpChannel::new(addr));

    println!("plain calls (async client):");
    report.ok("add(2, 3)", calc.add(2, 3).await);
    report.ok("apply(MUL, 6, 7)", calc.apply(Op::Mul, 6.0, 7.0).await);
    report.ok(
        "apply(DIV, 1, 0)  [union default arm]",
        calc.apply(Op::Div, 1.0, 0.0).await,
    );
    report.ok(
        "mean([1, 2, 3.5])  [idempotent]",
        calc.mean(vec![1.0, 2.0, 3.5]).await,
    );
    let steps = vec![
        Step {
            op: Op::Add,
            operand: 4.0,
        },
        Step {
            op: Op::Mul,
            operand: 10.0,
        },
    ];
    report.ok("run(1, [+4, *10])", calc.run(1.0, steps).await);
    report.ok(
        "echo(\"héllo, wörld\")",
        calc.echo("héllo, wörld".to_owned()).await,
    );
    report.ok(
        "put(64 KiB blob)  [opaque, CRC-32]",
        calc.put(Bytes::from(vec![7u8; 65536])).await,
    );
    report.ok(
        "format_ip([192, 168, 0, 1])  [opaque[4]]",
        calc.format_ip([192, 168, 0, 1]).await,
    );
    let triangle = Shape {
        name: "triangle".to_owned(),
        points: vec![
            Point { x: 0, y: 0 },
            Point { x: 4, y: 0 },
            Point { x: 0, y: 3 },
        ],
        centre: Some(Point { x: 1, y: 1 }),
        op: Op::Add,
    };
    report.ok(
        "scale(triangle, 2.5)  [struct, optional]",
        calc.scale(triangle, 2.5).await,
    );
    let points = vec![Point { x: 5, y: 5 }, Point { x: -1, y: 2 }];
    report.ok("nearest([(5,5), (-1,2)])", calc.nearest(points).await);
    report.ok("nearest([])  [optional absent]", calc.nearest(vec![]).await);
    report.ok("ping()", calc.ping().await);
    report.ok(
        "log(\"hello from the demo\")  [oneway]",
        calc.log("hello from the demo".to_owned()).await,
    );

    println!("\nthe seed interface (anonymous `interface {{ ... }}`, named after seed.idl):");
    let seed = SeedClient::new(TcpChannel::new(addr));
    report.ok("func1(41)", seed.func1(41).await);
    report.ok("func2(6, 7)", seed.func2(6, 7).await);

    println!("\nerrors:");
    report.err(
        "add(i32::MAX, 1)  [application error]",
        calc.add(i32::MAX, 1).await,
    );
    report.err("mean([])  [application error]", calc.mean(vec![]).await);
    let long_name = Shape {
        name: "x".repeat(65),
        points: vec![],
        centre: None,
        op: Op::Add,
    };
    report.err(
        "scale(name of 65 bytes)  [bound is 64]",
        calc.scale(long_name, 1.0).await,
    );
    let unreachable = CalcClient::new(TcpChannel::new("127.0.0.1:1"));
    report.err("add(1, 1) on a closed port", unreachable.add(1, 1).await);

    println!("\nper-call options:");
    let careful = calc.with_options(
        CallOptions::new()
            .timeout(Duration::from_millis(500))
            .semantics(Semantics::AtMostOnce),
    );
    report.ok(
        "add(40, 2) with a 500 ms deadline",
        careful.add(40, 2).await,
    );

    println!("\nconcurrency: 1,000 calls in flight on one connection:");
    let calls = (0..1000).map(|i| {
        let calc = calc.clone();
        tokio::spawn(async move { calc.add(i, i).await.map(|v| v == 2 * i) })
    });
    let mut right = 0;
    for call in calls {
        if let Ok(Ok(true)) = call.await {
            right += 1;
        }
    }
    report.ok(
        "1,000 x add(i, i) == 2i",
        if right == 1000 {
            Ok(right)
        } else {
            Err(RpcError::Protocol(format!("only {right} right")))
        },
    );

    println!("\nthe blocking client (from a plain thread):");
    let blocking = tokio::task::spawn_blocking(move || -> Result<i32, RpcError> {
        let rt = BlockingRuntime::new().map_err(|e| RpcError::Protocol(e.to_string()))?;
        let client = CalcBlockingClient::with_runtime(TcpChannel::new(addr), rt);
        client.add(100, 23)
    })
    .await?;
    report.ok("add(100, 23)", blocking);

    println!("\nthe same service over our reliable UDP transport:");
    let udp_listener = UdpListener::bind("127.0.0.1:0").await?;
    let udp_stats = udp_listener.stats_handle();
    let udp_server = Server::builder()
        .add_service(CalcServer::new(CalcService::new()))
        .serve(udp_listener)?;
    let udp = CalcClient::new(UdpChannel::new(udp_server.local_addr()));
    report.ok("add(2, 3) over UDP", udp.add(2, 3).await);
    report.ok(
        "put(1 MiB blob) over UDP  [fragmented]",
        udp.put(Bytes::from(vec![7u8; 1 << 20])).await,
    );
    let exactly_once = udp.with_options(CallOptions::new().semantics(Semantics::ExactlyOnce));
    report.ok(
        "add(20, 22) exactly-once over UDP",
        exactly_once.add(20, 22).await,
    );
    let s = udp_stats.snapshot();
    println!(
        "  UDP server socket: {} datagrams received, {} sent, {} retransmits, {} checksum failures",
        s.datagrams_received, s.datagrams_sent, s.retransmits, s.checksum_failures
    );
    tokio::time::timeout(Duration::from_secs(10), udp_server.shutdown()).await?;

    println!("\ncredentials and authorization (a server that wants a bearer token):");
    let guarded = Server::builder()
        .authorize(BearerTokens::new(["demo-token"]))
        .add_service(CalcServer::new(CalcService::new()))
        .serve(TcpListener::bind("127.0.0.1:0").await?)?;
    let anonymous = CalcClient::new(TcpChannel::new(guarded.local_addr()));
    report.err("add(1, 2) without credentials", anonymous.add(1, 2).await);
    let wrong = CalcClient::from_client(Client::with_config(
        TcpChannel::new(guarded.local_addr()),
        ClientConfig::default().credentials(Credentials::bearer("guess")),
    ));
    report.err("add(1, 2) with a wrong token", wrong.add(1, 2).await);
    let authorized = CalcClient::from_client(Client::with_config(
        TcpChannel::new(guarded.local_addr()),
        ClientConfig::default().credentials(Credentials::bearer("demo-token")),
    ));
    report.ok("add(1, 2) with the token", authorized.add(1, 2).await);
    println!(
        "  refused before their arguments were decoded: {}",
        guarded.stats().unauthorized
    );
    tokio::time::timeout(Duration::from_secs(10), guarded.shutdown()).await?;

    let stats = server.stats();
    println!(
        "\nserver stats: {} calls received, {} completed, {} connections accepted, {} overloaded",
        stats.calls_received, stats.calls_completed, stats.connections_accepted, stats.overloaded
    );
    println!("shutting down gracefully...");
    tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await?;
    println!("server stopped");
    Ok(report.unexpected)
}
