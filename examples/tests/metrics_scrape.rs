//! `calc-server --metrics-addr` serves the runtime's metrics to Prometheus: the test
//! starts the server as a process (TCP and metrics on free ports of 127.0.0.1), makes
//! calls, scrapes the endpoint over HTTP twice and checks that the call counters, the
//! latency histogram and the connection gauge moved by what the calls did.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use examples::calc::CalcClient;
use rpc_core::{Client, RpcError};
use rpc_transport_tcp::TcpChannel;
use rpc_transport_udp::UdpChannel;

/// A running `calc-server`, killed on drop.
struct ServerProcess {
    child: Child,
    metrics: SocketAddr,
    udp: SocketAddr,
    tcp: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--transport",
            "both",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("calc-server starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let metrics = line
        .strip_prefix("calc-server metrics on http://")
        .and_then(|l| l.strip_suffix("/metrics\n"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    // "calc-server listening on udp://A and tcp://B (Ctrl-C to stop)"
    let (udp, tcp) = line
        .strip_prefix("calc-server listening on udp://")
        .and_then(|l| l.strip_suffix(" (Ctrl-C to stop)\n"))
        .and_then(|l| l.split_once(" and tcp://"))
        .unwrap_or_else(|| panic!("unexpected second line: {line:?}"));
    let (udp, tcp) = (udp.parse().unwrap(), tcp.parse().unwrap());
    ServerProcess {
        child,
        metrics,
        udp,
        tcp,
    }
}

/// `GET /metrics` over plain HTTP/1.1; the body. Retries briefly while the exporter's
/// listener starts.
fn scrape(addr: SocketAddr) -> String {
    for _ in 0..50 {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "scrape answered {head}");
        return body.to_owned();
    }
    panic!("the metrics endpoint {addr} never answered");
}

/// The value of the sample whose name is `name` and whose labels include every one of
/// `labels` (0 if there is none).
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_shows_calls_latency_and_connections() {
    let server = start_server();
    let client = CalcClient::from_client(Client::new(TcpChannel::new(server.tcp)));
    let add_ok = ["interface=\"Calc\"", "procedure=\"add\"", "outcome=\"ok\""];
    let mean_app = [
        "interface=\"Calc\"",
        "procedure=\"mean\"",
        "outcome=\"Application\"",
    ];
    let add_only = ["interface=\"Calc\"", "procedure=\"add\""];

    for _ in 0..3 {
        assert_eq!(client.add(2, 3).await.unwrap(), 5);
    }
    let before = scrape(server.metrics);
    for _ in 0..5 {
        assert_eq!(client.add(2, 3).await.unwrap(), 5);
    }
    assert!(matches!(
        client.mean(Vec::new()).await,
        Err(RpcError::Application { .. })
    ));
    assert_eq!(client.add_inline(1, 1).await.unwrap(), 2);
    let after = scrape(server.metrics);

    // Calls by interface, procedure and outcome.
    assert_eq!(
        sample(&before, "rpc_server_calls_total", &add_ok),
        3.0,
        "{before}"
    );
    assert_eq!(
        sample(&after, "rpc_server_calls_total", &add_ok),
        8.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "rpc_server_calls_total", &mean_app),
        1.0,
        "{after}"
    );
    let inline_ok = ["procedure=\"add_inline\"", "outcome=\"ok\""];
    assert_eq!(
        sample(&after, "rpc_server_calls_total", &inline_ok),
        1.0,
        "{after}"
    );
    // The latency histogram counted every call of the procedure, in buckets.
    let count = "rpc_server_call_duration_seconds_count";
    assert_eq!(sample(&before, count, &add_only), 3.0, "{before}");
    assert_eq!(sample(&after, count, &add_only), 8.0, "{after}");
    let all_calls = "rpc_server_call_duration_seconds_bucket";
    assert_eq!(
        sample(&after, all_calls, &["procedure=\"add\"", "le=\"+Inf\""]),
        8.0,
        "{after}"
    );
    // Server event counters and the connection gauge.
    assert_eq!(
        sample(&after, "rpc_server_calls_received_total", &[]),
        10.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "rpc_server_calls_inline_total", &[]),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "rpc_server_connections_accepted_total", &[]),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "rpc_server_connections_open", &[]),
        1.0,
        "{after}"
    );

    // The UDP transport's counters: published at most every 250 ms while the socket is
    // busy, so one more call after a pause publishes everything before it.
    let udp = CalcClient::from_client(Client::new(UdpChannel::new(server.udp)));
    for _ in 0..4 {
        assert_eq!(udp.add(1, 2).await.unwrap(), 3);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(udp.add(1, 2).await.unwrap(), 3);
    let udp_seen = scrape(server.metrics);
    let received = sample(&udp_seen, "rpc_udp_datagrams_received_total", &[]);
    // The handshake and four calls, at least one datagram each, before the pause.
    assert!(received >= 5.0, "{received} datagrams\n{udp_seen}");
    assert_eq!(
        sample(&udp_seen, "rpc_udp_checksum_failures_total", &[]),
        0.0
    );
    assert_eq!(
        sample(&udp_seen, "rpc_server_connections_open", &[]),
        2.0,
        "{udp_seen}"
    );
    assert_eq!(
        sample(&udp_seen, "rpc_server_calls_total", &add_ok),
        13.0,
        "{udp_seen}"
    );
}
