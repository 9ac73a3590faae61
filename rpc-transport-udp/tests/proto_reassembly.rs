//! Reassembly under stress: a 16 MiB message over a lossy link, a flood of fragments
//! that never complete (bounded per peer, without starving other peers), and the
//! timeout of an incomplete message.

mod sim;

use sim::Event;

use std::mem::size_of;
use std::time::Duration;

use bytes::Bytes;
use rpc_transport_udp::proto::packet::{fragment_range, Body};
use rpc_transport_udp::proto::reassembly::ReassemblyConfig;
use rpc_transport_udp::proto::{close_code, CloseReason, Config, Endpoint};
use sim::{
    addr, check_message, make_message, ms, App, Client, Limits, LinkConfig, Rng, Server, Sim,
};

/// Give-up limits raised far above what a 30 %-loss run needs (see sim_delivery.rs).
fn patient(cfg: Config) -> Config {
    let mut cfg = cfg
        .peer_timeout(Duration::from_secs(3_600))
        .idle_timeout(Duration::from_secs(7_200))
        .max_retransmits(100_000);
    cfg.reassembly.timeout = Duration::from_secs(3_600);
    cfg
}

/// The largest message (16 MiB, the default max_message) crosses a link losing 30 % of
/// the datagrams each way (with duplication, reordering and corruption too) intact.
/// 60,000-byte datagrams keep it at ~280 fragments so it runs quickly in debug builds.
#[test]
fn sixteen_mib_message_over_30_percent_loss() {
    let cfg = patient(Config::default().max_datagram(60_000));
    let len = cfg.reassembly.max_message as usize;
    assert_eq!(len, 16 << 20);
    for seed in [1u64, 2] {
        let mut sim = Sim::new(seed, LinkConfig::hostile(0.30));
        let (ca, sa) = (addr(1000), addr(2000));
        let c = sim.add(ca, Endpoint::new(cfg.clone(), 10 + seed, false));
        let s = sim.add(sa, Endpoint::new(cfg.clone(), 20 + seed, true));
        let mut rng = Rng::new(seed);
        let (id, big) = make_message(42, len, &mut rng);
        let mut client = Client::new(sa, vec![(id, big.clone())], false);
        let now = sim.now();
        client.start(sim.ep(c), now);
        let mut server = Server {
            expect: 1,
            ..Server::default()
        };
        {
            let mut apps: [&mut dyn App; 2] = [&mut client, &mut server];
            sim.run(&mut apps, Limits::default(), |_| true)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        server
            .received
            .check_exactly_once(&client.sent, "server")
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let cs = sim.ep(c).stats();
        let ss = sim.ep(s).stats();
        eprintln!(
            "seed {seed}: 16 MiB in {:?} virtual; net {:?}; retransmits {}, checksum failures {}",
            sim.elapsed,
            sim.net.stats,
            cs.retransmits,
            cs.checksum_failures + ss.checksum_failures
        );
        assert!(cs.retransmits > 0, "the link really lost fragments");
        assert_eq!(sim.ep(s).reassembly_bytes(), 0);
    }
}

/// A message with its bytes compared, not only its checksum (the check above relies on
/// `check_message`; this pins that a flipped byte fails it).
#[test]
fn message_checksum_catches_a_flipped_byte() {
    let mut rng = Rng::new(3);
    let (id, m) = make_message(7, 5000, &mut rng);
    assert_eq!(check_message(&m), Some(id));
    for i in [0, 8, 16, 4999] {
        let mut v = m.to_vec();
        v[i] ^= 0x10;
        assert_eq!(check_message(&v), None, "byte {i}");
    }
}

const FLOOD_MESSAGES: u64 = 100;
const FLOOD_LEN: u32 = 1 << 20;
const FLOOD_FRAGS: u32 = 1024;

/// A peer sending fragment 0 of many large messages, never the rest, is held to its
/// per-peer budget; the excess is counted as over_budget and not acknowledged; a second
/// peer of the same server endpoint still gets its (multi-fragment) messages through.
#[test]
fn fragment_flood_is_bounded_per_peer() {
    let per_peer = 1 << 20;
    let cfg = Config::default()
        .reassembly(ReassemblyConfig {
            per_peer_budget: per_peer,
            ..ReassemblyConfig::default()
        })
        .global_reassembly_budget(8 << 20);
    let mut sim = Sim::new(1, LinkConfig::fixed(ms(1)));
    let (sa, ca, fa) = (addr(2000), addr(1000), addr(3000));
    let s = sim.add(sa, Endpoint::new(cfg.clone(), 2, true));
    let c = sim.add(ca, Endpoint::new(cfg.clone(), 1, false));

    // The flooding peer: a hand-crafted Init, then fragment 0 of each message.
    let conn = 0xF100D;
    // (It passed address validation: it holds a cookie for its own address.)
    let now = sim.now();
    let cookie = sim.ep(s).issue_cookie(now, fa, conn);
    sim.inject(
        Duration::ZERO,
        fa,
        sa,
        sim::FakePeer::init_with(conn, 99, Some(cookie)),
    );
    sim.run_to(&mut [], ms(1)).unwrap();
    let flood_h = match sim.nodes[s].log[..] {
        [(_, h, Event::Accepted { peer, .. })] if peer == fa => h,
        ref other => panic!("{other:?}"),
    };
    let frag0 = vec![0x5A; fragment_range(FLOOD_LEN, FLOOD_FRAGS, 0).len()];
    for seq in 1..=FLOOD_MESSAGES {
        let d = sim::packet(
            conn,
            sim::ack_info(0, &[]),
            Body::Data {
                seq,
                frag_index: 0,
                frag_count: FLOOD_FRAGS,
                msg_len: FLOOD_LEN,
                payload: Bytes::from(frag0.clone()),
            },
        );
        sim.inject(ms(2), fa, sa, d);
    }
    sim.run_to(&mut [], ms(10)).unwrap();

    // Documented charge: the fragment table (frag_count slots) plus the payload.
    let cost = FLOOD_FRAGS as usize * size_of::<Option<Bytes>>() + frag0.len();
    let fit = (per_peer / cost) as u64;
    assert!((1..FLOOD_MESSAGES).contains(&fit), "test sizing: {fit}");
    let held = sim.ep(s).connection_reassembly_bytes(flood_h);
    assert!(held <= per_peer, "{held} > {per_peer}");
    assert_eq!(held, fit as usize * cost);
    assert_eq!(sim.ep(s).reassembly_bytes(), held);
    let st = sim.ep(s).connection_stats(flood_h).unwrap();
    assert_eq!(st.over_budget, FLOOD_MESSAGES - fit);
    assert_eq!(sim.ep(s).stats().over_budget, FLOOD_MESSAGES - fit);
    // Only the stored fragments were acknowledged.
    let last_ack = sim
        .unrouted
        .iter()
        .map(|(_, d)| sim::parse(&d.bytes))
        .filter(|p| p.conn_id == conn)
        .last()
        .expect("the flood was acknowledged");
    assert_eq!(last_ack.ack.cumulative, fit);
    assert!(last_ack.ack.ranges.is_empty());

    // The honest peer: several multi-fragment messages, all delivered intact.
    let mut rng = Rng::new(5);
    let msgs: Vec<_> = (0..4u64)
        .map(|i| make_message(i, 100_000 + i as usize * 7_777, &mut rng))
        .collect();
    let mut client = Client::new(sa, msgs, false);
    let now = sim.now();
    client.start(sim.ep(c), now);
    let mut server = Server {
        expect: 4,
        ..Server::default()
    };
    // The server's app sees only events from now on; the flood peer's connection is
    // already accepted.
    let mut apps: [&mut dyn App; 2] = [&mut server, &mut client];
    sim.run(&mut apps, Limits::default(), |_| true)
        .unwrap_or_else(|e| panic!("{e}"));
    server
        .received
        .check_exactly_once(&client.sent, "server")
        .unwrap();
    // The flood is still held, still within budget.
    assert_eq!(sim.ep(s).connection_reassembly_bytes(flood_h), held);
    assert_eq!(sim.ep(s).reassembly_bytes(), held);
    assert_eq!(
        sim.ep(s).connection_stats(flood_h).unwrap().over_budget,
        FLOOD_MESSAGES - fit
    );
}

/// An incomplete message times out exactly `reassembly.timeout` after its first fragment
/// arrived: the connection closes with ReassemblyTimeout, its memory is freed, and the
/// peer is told.
#[test]
fn incomplete_message_times_out_and_frees_memory() {
    let mut cfg = Config::default();
    cfg.reassembly.timeout = Duration::from_secs(5);
    let mut sim = Sim::new(1, LinkConfig::fixed(ms(1)));
    let (ca, sa) = (addr(1000), addr(2000));
    let c = sim.add(ca, Endpoint::new(cfg.clone(), 1, false));
    let s = sim.add(sa, Endpoint::new(cfg.clone(), 2, true));
    // Fragment 1 of the message never gets through, however often it is resent.
    sim.net.filter = Some(Box::new(|_, d| {
        matches!(sim::parse(&d.bytes).body, Body::Data { frag_index: 1, .. })
    }));
    sim.net.tracing = true;
    let now = sim.now();
    let h = sim.ep(c).connect(sa, now);
    sim.run_to(&mut [], ms(10)).unwrap();
    sim.ep(c).send(h, Bytes::from(vec![3u8; 3000])).unwrap();
    let sent_at = sim.elapsed;
    sim.run_to(&mut [], Duration::from_secs(6)).unwrap();

    let first_arrival = sent_at + ms(1);
    let server_log: Vec<_> = sim.nodes[s]
        .log
        .iter()
        .map(|(t, _, e)| (*t, e.clone()))
        .collect();
    let sh = sim.nodes[s].log[0].1;
    assert!(matches!(server_log[0].1, Event::Accepted { .. }));
    assert_eq!(
        server_log[1..],
        [(
            first_arrival + Duration::from_secs(5),
            Event::Closed(CloseReason::ReassemblyTimeout)
        )]
    );
    assert_eq!(sim.ep(s).reassembly_bytes(), 0);
    assert_eq!(sim.ep(s).connection_reassembly_bytes(sh), 0);
    assert_eq!(
        sim.ep(s).connection_count(),
        0,
        "freed after the Close went out"
    );
    let client_log: Vec<_> = sim.nodes[c]
        .log
        .iter()
        .map(|(t, _, e)| (*t, e.clone()))
        .collect();
    assert_eq!(
        client_log.last().unwrap(),
        &(
            first_arrival + Duration::from_secs(5) + ms(1),
            Event::Closed(CloseReason::PeerClosed {
                code: close_code::REASSEMBLY_TIMEOUT
            })
        )
    );
}
