//! Call semantics over reliable UDP with real kernel packet loss: iptables drops 30 %
//! of all UDP datagrams on the loopback of a private network namespace.
//!
//! `udp_loss_30_percent_all_semantics` creates the namespace (`ip netns add`), turns its
//! loopback on, adds `iptables -A INPUT -i lo -p udp -m statistic --mode random
//! --probability 0.3 -j DROP`, re-runs this test binary inside it to execute
//! `udp_loss_inner` (ignored otherwise), checks the rule really dropped datagrams, and
//! deletes the namespace whatever happened. Without root, `ip` or `iptables` it prints
//! why and does nothing. Inside, 10,000 increments from 4 concurrent clients run per
//! semantics; the reliable-UDP layer absorbs the loss, so even at-most-once calls all
//! succeed, and exactly-once still ends at exactly 10,000 — also with every datagram
//! sealed (PROTOCOL.md 9.10: static keys, one Noise handshake per client).

mod support;

use std::time::Duration;

use rpc_core::client::RetryPolicy;
use rpc_core::transport::Listener;
use rpc_core::{Semantics, Server};
use rpc_transport_udp::testing::LossyNamespace;
use rpc_transport_udp::{Security, StaticKeypair, UdpChannel, UdpConfig, UdpListener};
use support::{
    bounded, check_semantics, counter_client, run_increments, CounterServer, CounterState, CLIENTS,
    TOTAL,
};

#[test]
fn udp_loss_30_percent_all_semantics() {
    if let Some(why) = LossyNamespace::unavailable() {
        eprintln!("SKIPPED udp_loss_30_percent_all_semantics: {why}");
        return;
    }
    let ns = LossyNamespace::create("rpcsem", 0.3).expect("create the lossy namespace");
    let out = ns
        .run_test("udp_loss_inner")
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let dropped = ns.dropped().expect("read the rule's counter");
    eprintln!("iptables dropped {dropped} datagrams");
    assert!(
        dropped > 1_000,
        "the kernel should have dropped datagrams, dropped {dropped}"
    );
}

/// The configurations of a sealed server and of its clients (static keys).
fn sealed_configs() -> (UdpConfig, UdpConfig) {
    let server_key = StaticKeypair::generate().unwrap();
    let client_key = StaticKeypair::generate().unwrap();
    (
        UdpConfig::default().security(Security::server(server_key.clone())),
        UdpConfig::default().security(Security::client_static(client_key, server_key.public())),
    )
}

async fn over_lossy_udp(semantics: Semantics, sealed: bool) {
    let (server_cfg, client_cfg) = if sealed {
        sealed_configs()
    } else {
        (UdpConfig::default(), UdpConfig::default())
    };
    let state = CounterState::new();
    let listener = UdpListener::bind_with("127.0.0.1:0", server_cfg)
        .await
        .unwrap();
    let addr = listener.local_addr();
    let server = Server::builder()
        .add_service(CounterServer::new(state.clone()))
        .serve(listener)
        .unwrap();
    // The reliable layer recovers lost datagrams; the RPC layer only retries if a
    // connection fails.
    let retry = RetryPolicy::default()
        .max_attempts(20)
        .backoff(Duration::from_millis(1), Duration::from_millis(20));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            counter_client(
                UdpChannel::new(addr).with_config(client_cfg.clone()),
                semantics,
                retry,
                Duration::from_secs(60),
            )
        })
        .collect();
    let tally = run_increments(clients, TOTAL / CLIENTS as u64).await;
    let what = if sealed {
        "sealed udp with 30 % kernel loss"
    } else {
        "udp with 30 % kernel loss"
    };
    check_semantics(what, semantics, &tally, &state);
    if semantics != Semantics::AtLeastOnce {
        assert_eq!(tally.ok, TOTAL, "the reliable layer absorbed the loss");
    }
    drop(server);
}

#[test]
#[ignore = "runs inside the lossy network namespace that udp_loss_30_percent_all_semantics creates"]
fn udp_loss_inner() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for semantics in [
            Semantics::ExactlyOnce,
            Semantics::AtLeastOnce,
            Semantics::AtMostOnce,
        ] {
            bounded(
                "10,000 increments over lossy UDP",
                Duration::from_secs(120),
                over_lossy_udp(semantics, false),
            )
            .await;
        }
        bounded(
            "10,000 exactly-once increments over lossy sealed UDP",
            Duration::from_secs(120),
            over_lossy_udp(Semantics::ExactlyOnce, true),
        )
        .await;
    });
}
