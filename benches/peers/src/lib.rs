//! The latency tool's echo (bytes in, the same bytes out) through two other Rust RPC
//! frameworks, measured with the same harness ([`benches::harness`]) and reported in the
//! same table and JSON format, next to the raw tokio TCP floor of the same run:
//!
//! * [`grpc`]: tonic 0.14 (gRPC over HTTP/2, prost messages with `bytes::Bytes` fields),
//!   one HTTP/2 connection shared by the callers, `TCP_NODELAY` on both sides;
//! * [`tarpc_echo`]: tarpc 0.38 with its serde transport (bincode, length-delimited
//!   frames) over one TCP connection with `TCP_NODELAY`, each request served on its own
//!   task — the setup of tarpc's own examples.
//!
//! Both run on the latency tool's default layout: client and server share one
//! multi-thread tokio runtime with 2 workers; N tasks make sequential calls through
//! clones of one client.

use std::io;

use benches::harness::{
    run_concurrent, run_on_layout, Case, Kind, Layout, Measurement, Plan, Transport,
};

pub mod grpc;
pub mod tarpc_echo;

/// The peer frameworks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// tonic (gRPC).
    Tonic,
    /// tarpc (bincode over TCP).
    Tarpc,
}

impl Peer {
    /// The case name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Tonic => "tonic (gRPC, HTTP/2)",
            Peer::Tarpc => "tarpc (bincode, TCP)",
        }
    }

    /// The case of this peer at `payload` bytes with `in_flight` calls in flight.
    pub fn case(self, payload: usize, in_flight: usize, workers: usize) -> Case {
        Case {
            name: self.name().to_owned(),
            kind: Kind::Peer,
            transport: Transport::Tcp,
            payload,
            message_bytes: None,
            in_flight: in_flight.max(1),
            busy_poll_us: None,
            layout: Layout::Shared {
                workers: workers.max(1),
            },
            note: None,
            pin: None,
        }
    }
}

/// Measures one peer case (blocks; call from outside a runtime).
pub fn run_peer(peer: Peer, case: &Case, plan: &Plan) -> io::Result<Measurement> {
    let plan = *plan;
    let n = case.in_flight;
    let payload = case.payload;
    match peer {
        Peer::Tonic => run_on_layout(case.layout, grpc::serve, move |addr| async move {
            let callers = grpc::callers(addr, n, payload).await?;
            run_concurrent(&plan, callers).await
        }),
        Peer::Tarpc => run_on_layout(case.layout, tarpc_echo::serve, move |addr| async move {
            let callers = tarpc_echo::callers(addr, n, payload).await?;
            run_concurrent(&plan, callers).await
        }),
    }
}
