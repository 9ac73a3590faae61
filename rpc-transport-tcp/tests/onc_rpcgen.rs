//! An rpcgen-generated C client (libtirpc) calls our unchanged server over ONC RPC,
//! TCP and UDP. `tests/onc/demo.x` has a struct, a union, a variable-length array,
//! optional data and strings; `tests/onc/demo_client.c` calls its one procedure
//! through the client stub `rpcgen -l` generates. Our side is a hand-written
//! `Service` that decodes the arguments with `rpc_core::xdr`.
//!
//! Needs `rpcgen`, `gcc` and libtirpc's headers; without them the test prints SKIPPED,
//! unless `RPC_REQUIRE_ONC_PEERS=1`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use rpc_core::server::{bad_arguments, encode_result, Service, ServiceFuture};
use rpc_core::transport::Listener;
use rpc_core::xdr::{XdrError, XdrReader};
use rpc_core::{CallContext, InterfaceInfo, ProcedureInfo, Server};
use rpc_transport_tcp::OncTcpListener;
use rpc_transport_udp::OncUdpListener;

static PROCS: [ProcedureInfo; 1] = [ProcedureInfo {
    name: "DESCRIBE",
    number: 1,
    oneway: false,
    idempotent: true,
}];

static DEMO: InterfaceInfo = InterfaceInfo {
    name: "DEMO_PROG",
    id: 0x2000_0102,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

/// `summary DESCRIBE(record)`: the record described in words, and the sum of its values.
struct Demo;

fn describe(args: &Bytes) -> Result<(String, i32), XdrError> {
    let mut r = XdrReader::new(args);
    let name = r.get_string(64)?;
    let values = r.get_var_array_with(16, |r| r.get_i32())?;
    let origin = r.get_optional_with(|r| Ok((r.get_i32()?, r.get_i32()?)))?;
    let shape = match r.get_i32()? {
        0 => format!("center {},{}", r.get_i32()?, r.get_i32()?),
        1 => format!("radius {}", r.get_i32()?),
        kind => format!("kind {kind}"),
    };
    r.finish()?;
    let origin = origin.map_or("none".to_owned(), |(x, y)| format!("{x},{y}"));
    let text = format!("{name} values={values:?} origin={origin} shape={shape}");
    Ok((text, values.iter().sum()))
}

impl Service for Demo {
    fn info(&self) -> &'static InterfaceInfo {
        &DEMO
    }

    fn call(&self, _procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
        let described = describe(&args);
        Box::pin(async move {
            let (text, total) = described.map_err(bad_arguments)?;
            encode_result(|w| {
                w.put_string(&text, 256)?;
                w.put_i32(total);
                Ok(())
            })
        })
    }
}

/// Generates the stubs with rpcgen and builds the C client; returns its path.
fn build_client() -> PathBuf {
    support::build_demo_program(
        "demo_client",
        &["demo_client.c"],
        &[("-c", "demo_xdr.c"), ("-l", "demo_clnt.c")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcgen_c_client_over_tcp_and_udp() {
    if !support::have_rpcgen_toolchain() {
        assert!(
            !support::require_peers(),
            "rpcgen, gcc or libtirpc-dev missing and RPC_REQUIRE_ONC_PEERS=1"
        );
        eprintln!("SKIPPED: rpcgen, gcc or libtirpc-dev (headers) not installed");
        return;
    }
    let client = tokio::task::spawn_blocking(build_client).await.unwrap();

    let tcp = OncTcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = OncUdpListener::bind("127.0.0.1:0").await.unwrap();
    let (tcp_port, udp_port) = (tcp.local_addr().port(), udp.local_addr().port());
    let tcp_server = Server::builder().add_service(Demo).serve(tcp).unwrap();
    let udp_server = Server::builder().add_service(Demo).serve(udp).unwrap();

    let expected = "hello values=[1, 2, 3] origin=5,6 shape=radius 7 total=6\n\
                    empty values=[] origin=none shape=center -1,2 total=0\n\
                    other values=[] origin=none shape=kind 9 total=0\n";
    for (port, proto) in [(tcp_port, "tcp"), (udp_port, "udp")] {
        let client = client.clone();
        let out = tokio::task::spawn_blocking(move || {
            support::run_ok(
                Command::new("timeout")
                    .arg("30")
                    .arg(&client)
                    .args([&port.to_string(), proto]),
            )
        })
        .await
        .unwrap();
        assert_eq!(out, expected, "over {proto}");
    }
    tcp_server.shutdown().await;
    udp_server.shutdown().await;
}
