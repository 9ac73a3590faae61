//! A corrupted datagram is never delivered: every single-byte (and single-bit) change of
//! a valid datagram is caught by the CRC and counted; under a heavily corrupting network
//! every delivered message is intact.

mod sim;

use sim::Event;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::{Config, Endpoint};
use sim::{addr, events, ms, App, Client, FakePeer, Limits, LinkConfig, Rng, Server, Sim};

fn corrupted_variants(valid: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..valid.len() {
        // Every byte inverted, and every single bit of it flipped.
        for mask in std::iter::once(0xFFu8).chain((0..8).map(|b| 1 << b)) {
            let mut v = valid.to_vec();
            v[i] ^= mask;
            out.push(v);
        }
    }
    out
}

#[test]
fn every_corrupted_byte_of_a_data_datagram_is_rejected() {
    let t0 = Instant::now();
    let mut s = Endpoint::new(Config::default(), 9, true);
    let peer = FakePeer::connect(&mut s, addr(1000), 0xABCD, 5, t0);
    let msg: Vec<u8> = (0..300u32).map(|i| (i * 31) as u8).collect();
    let valid = peer.single(1, &msg);
    let variants = corrupted_variants(&valid);
    assert_eq!(variants.len(), valid.len() * 9);
    let before = s.stats();
    for (n, v) in variants.iter().enumerate() {
        s.handle_datagram(t0 + ms(1), peer.addr, Bytes::copy_from_slice(v));
        assert!(events(&mut s).is_empty(), "variant {n} produced an event");
        assert_eq!(
            s.stats().checksum_failures,
            before.checksum_failures + n as u64 + 1,
            "variant {n}"
        );
    }
    let st = s.connection_stats(peer.handle).unwrap();
    assert_eq!((st.messages_received, st.datagrams_received), (0, 0));
    assert_eq!(s.stats().malformed, 0);
    // Control: the valid datagram is delivered (so the loop above could have failed).
    s.handle_datagram(t0 + ms(2), peer.addr, valid);
    assert_eq!(
        events(&mut s),
        vec![(peer.handle, Event::Message(Bytes::from(msg)))]
    );
}

#[test]
fn every_corrupted_byte_of_a_fragment_is_rejected() {
    // The middle fragment of a three-fragment message: corruption must not complete or
    // poison the message.
    let t0 = Instant::now();
    let mut s = Endpoint::new(Config::default(), 9, true);
    let peer = FakePeer::connect(&mut s, addr(1000), 0xABCD, 5, t0);
    let msg: Vec<u8> = (0..900u32).map(|i| (i * 13) as u8).collect();
    s.handle_datagram(t0, peer.addr, peer.fragment(1, &msg, 3, 0));
    s.handle_datagram(t0, peer.addr, peer.fragment(3, &msg, 3, 2));
    let valid = peer.fragment(2, &msg, 3, 1);
    for v in corrupted_variants(&valid) {
        s.handle_datagram(t0 + ms(1), peer.addr, Bytes::from(v));
    }
    assert!(events(&mut s).is_empty());
    assert_eq!(s.stats().checksum_failures, valid.len() as u64 * 9);
    s.handle_datagram(t0 + ms(2), peer.addr, valid);
    assert_eq!(
        events(&mut s),
        vec![(peer.handle, Event::Message(Bytes::from(msg)))]
    );
}

#[test]
fn corrupted_handshake_datagrams_are_rejected() {
    let t0 = Instant::now();
    let mut s = Endpoint::new(Config::default(), 9, true);
    let init = FakePeer::init(0x77, 5);
    for v in corrupted_variants(&init) {
        s.handle_datagram(t0, addr(1000), Bytes::from(v));
    }
    assert!(
        events(&mut s).is_empty(),
        "no connection from a corrupted Init"
    );
    assert_eq!(s.connection_count(), 0);
    assert!(sim::drain(&mut s, t0).is_empty(), "not even a Reset");
    assert_eq!(s.stats().checksum_failures, init.len() as u64 * 9);
}

/// 25 % of the datagrams get a bit flipped (no loss): every corrupted datagram is
/// caught, every message arrives exactly once and intact, in both directions.
#[test]
fn heavy_corruption_never_delivers_a_damaged_message() {
    let mut caught = 0;
    let mut corrupted = 0;
    for seed in 0..40u64 {
        let link = LinkConfig {
            corrupt: 0.25,
            ..LinkConfig::lan()
        };
        let mut sim = Sim::new(seed, link);
        let cfg = Config::default()
            .peer_timeout(Duration::from_secs(600))
            .max_retransmits(10_000);
        let (ca, sa) = (addr(1000), addr(2000));
        let c = sim.add(ca, Endpoint::new(cfg.clone(), seed + 100, false));
        let s = sim.add(sa, Endpoint::new(cfg, seed + 200, true));
        let mut rng = Rng::new(seed);
        let msgs = Client::random_messages(&mut rng, 6, 20_000, 1088, 1);
        let mut client = Client::new(sa, msgs, true);
        let now = sim.now();
        client.start(sim.ep(c), now);
        let mut server = Server {
            echo: true,
            expect: 6,
            ..Server::default()
        };
        {
            let mut apps: [&mut dyn App; 2] = [&mut client, &mut server];
            sim.run(&mut apps, Limits::default(), |_| true)
                .unwrap_or_else(|e| panic!("{e}"));
            // Let every corrupted copy still on the wire arrive.
            let until = sim.elapsed + ms(50);
            sim.run_to(&mut apps, until).unwrap();
        }
        server
            .received
            .check_exactly_once(&client.sent, "server")
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        client
            .echoes
            .check_exactly_once(&client.sent, "client")
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(sim.net.in_transit(), 0);
        let failures = sim.ep(c).stats().checksum_failures + sim.ep(s).stats().checksum_failures;
        // Every corrupted datagram was delivered (no loss) and every one was caught.
        assert_eq!(failures, sim.net.stats.corrupted, "seed {seed}");
        caught += failures;
        corrupted += sim.net.stats.corrupted;
    }
    eprintln!("corruption: {corrupted} datagrams corrupted, {caught} caught by the CRC");
    assert!(caught > 500, "the network really corrupted ({caught})");
}
