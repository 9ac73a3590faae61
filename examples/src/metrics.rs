//! Serving the runtime's metrics (see `docs/OBSERVABILITY.md`) to Prometheus: installs
//! `metrics-exporter-prometheus` as the global recorder with an HTTP listener, and
//! latency histograms with buckets suited to an RPC on a LAN (10 µs to 10 s).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Bucket bounds (seconds) of every `*_seconds` histogram.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.5, 1.0, 10.0,
];

/// Installs the Prometheus recorder, serving `GET /metrics` (any path, in fact) on
/// `addr`, and returns the address served. Port 0 picks a free port (the port is found
/// by binding it once, then handed to the exporter, which binds it again). Call it
/// before building servers and clients: their metric handles are registered with the
/// recorder installed at that time. Must run inside a tokio runtime.
pub fn serve_prometheus(addr: SocketAddr) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let addr = match addr.port() {
        0 => std::net::TcpListener::bind(addr)?.local_addr()?,
        _ => addr,
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?
        .install()?;
    Ok(addr)
}
