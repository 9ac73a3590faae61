//! Real packet loss from the kernel: 2,000 calls over reliable UDP complete correctly
//! while iptables drops 20 % of all UDP datagrams.
//!
//! `kernel_loss_2000_calls` creates a private network namespace, turns its loopback on,
//! adds `iptables -A INPUT -i lo -p udp -m statistic --mode random --probability 0.2 -j
//! DROP` (on INPUT, so the datagram is lost silently rather than `sendto` failing), and
//! re-runs this test binary inside it to execute `calls_inside_lossy_namespace`. It then
//! checks the rule really dropped datagrams, and deletes the namespace whatever happened.
//! It needs root, `ip` and `iptables`; `.ci/run` installs them. Without them it prints why
//! and does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rpc_core::server::{bad_arguments, encode_result, Service, ServiceFuture};
use rpc_core::transport::Listener;
use rpc_core::xdr::XdrReader;
use rpc_core::{CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, Semantics, Server};
use rpc_transport_udp::testing::LossyNamespace;
use rpc_transport_udp::{UdpChannel, UdpListener};

const CALLS: u64 = 2_000;

static ADD: ProcedureInfo = ProcedureInfo {
    name: "add",
    number: 1,
    oneway: false,
    idempotent: true,
};
static ADDER: InterfaceInfo = InterfaceInfo {
    name: "Adder",
    id: 0x2000_0a11,
    version: 1,
    procedures: std::slice::from_ref(&ADD),
    default_semantics: None,
};

#[derive(Default)]
struct Adder {
    executions: AtomicU64,
}

struct AdderService(std::sync::Arc<Adder>);

impl Service for AdderService {
    fn info(&self) -> &'static InterfaceInfo {
        &ADDER
    }

    fn call(&self, _procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
        let mut r = XdrReader::new(&args);
        let decoded = (|| {
            let (a, b) = (r.get_u64()?, r.get_u64()?);
            r.finish()?;
            Ok((a, b))
        })();
        let adder = self.0.clone();
        Box::pin(async move {
            let (a, b) = decoded.map_err(bad_arguments)?;
            adder.executions.fetch_add(1, Ordering::Relaxed);
            encode_result(|w| {
                w.put_u64(a.wrapping_add(b));
                Ok(())
            })
        })
    }
}

#[test]
fn kernel_loss_2000_calls() {
    if let Some(why) = LossyNamespace::unavailable() {
        eprintln!("SKIPPED kernel_loss_2000_calls: {why}");
        return;
    }
    let ns = LossyNamespace::create("rpcloss", 0.2).expect("create the lossy namespace");
    let out = ns
        .run_test("calls_inside_lossy_namespace")
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let dropped = ns.dropped().expect("read the rule's counter");
    eprintln!("iptables dropped {dropped} datagrams");
    assert!(
        dropped > 100,
        "the kernel should have dropped datagrams, dropped {dropped}"
    );
}

#[test]
#[ignore = "runs inside the lossy network namespace that kernel_loss_2000_calls creates"]
fn calls_inside_lossy_namespace() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let adder = std::sync::Arc::new(Adder::default());
        let listener = UdpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr();
        let server = Server::builder()
            .add_service(AdderService(adder.clone()))
            .serve(listener)
            .unwrap();
        let client = Client::new(UdpChannel::new(addr));
        let opts = CallOptions::new()
            .timeout(Duration::from_secs(60))
            .semantics(Semantics::AtMostOnce);
        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let client = client.clone();
                let opts = opts.clone();
                tokio::spawn(async move {
                    let sum = client
                        .call(
                            &ADDER,
                            &ADD,
                            &opts,
                            |w| {
                                w.put_u64(i);
                                w.put_u64(1_000_000 * i);
                                Ok(())
                            },
                            |r| r.get_u64(),
                        )
                        .await;
                    (i, sum)
                })
            })
            .collect();
        for call in calls {
            let (i, sum) = tokio::time::timeout(Duration::from_secs(120), call)
                .await
                .expect("call finishes")
                .unwrap();
            assert_eq!(sum.expect("call succeeds despite loss"), i + 1_000_000 * i);
        }
        // The reliable layer, not retried calls, absorbed the loss: each call ran once.
        assert_eq!(adder.executions.load(Ordering::Relaxed), CALLS);
        eprintln!("client stats: {:?}", client.stats());
        server.shutdown().await;
    });
}
