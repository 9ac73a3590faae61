//! The receiver's sequence-window rules, observed through a server endpoint fed
//! hand-crafted datagrams: duplicates, in-order advance over a buffered run, gaps,
//! the window limit, and messages completing independently of each other.

mod sim;

use sim::Event;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::packet::{Body, Packet};
use rpc_transport_udp::proto::{Config, Endpoint};
use sim::{addr, drain, events, ms, sacks, FakePeer};

const CONN: u32 = 0xC0FF_EE00;

fn setup(cfg: Config) -> (Endpoint, FakePeer, Instant) {
    let t0 = Instant::now();
    let mut server = Endpoint::new(cfg, 9, true);
    let peer = FakePeer::connect(&mut server, addr(1000), CONN, 77, t0);
    (server, peer, t0)
}

/// The one Ack the server sends right now (panics if it sends anything else).
fn immediate_ack(server: &mut Endpoint, now: Instant) -> Packet {
    let out = drain(server, now);
    match &out[..] {
        [(
            _,
            p @ Packet {
                body: Body::Ack, ..
            },
        )] => p.clone(),
        other => panic!("expected exactly one Ack now, got {other:?}"),
    }
}

/// The next ack the server sends, immediate or delayed (at most ack_delay later).
fn next_ack(server: &mut Endpoint, now: Instant) -> (Duration, Packet) {
    let out = drain(server, now);
    if !out.is_empty() {
        assert_eq!(out.len(), 1, "{out:?}");
        return (Duration::ZERO, out[0].1.clone());
    }
    let at = server.poll_timeout().expect("an ack timer");
    assert!(at <= now + ms(1), "no ack within ack_delay");
    server.handle_timeout(at);
    (at - now, immediate_ack(server, at))
}

fn messages(server: &mut Endpoint) -> Vec<Bytes> {
    events(server)
        .into_iter()
        .map(|(_, e)| match e {
            Event::Message(m) => m,
            other => panic!("unexpected event {other:?}"),
        })
        .collect()
}

#[test]
fn duplicate_below_cumulative_is_dropped_counted_and_acked_at_once() {
    let (mut s, peer, t0) = setup(Config::default());
    let t = t0 + ms(1);
    peer.send(&mut s, t, peer.single(1, b"first"));
    assert_eq!(messages(&mut s), vec![Bytes::from_static(b"first")]);
    let (after, ack) = next_ack(&mut s, t);
    assert_eq!((after, ack.ack.cumulative), (ms(1), 1));

    // Seq 1 again (our ack was "lost"): not delivered, counted, acked immediately.
    let t = t + ms(10);
    peer.send(&mut s, t, peer.single(1, b"first"));
    assert!(messages(&mut s).is_empty());
    let ack = immediate_ack(&mut s, t);
    assert_eq!(ack.ack.cumulative, 1);
    let st = s.connection_stats(peer.handle).unwrap();
    assert_eq!((st.duplicates, st.messages_received), (1, 1));
}

#[test]
fn duplicate_above_cumulative_is_dropped_counted_and_acked_at_once() {
    let (mut s, peer, t0) = setup(Config::default());
    let t = t0 + ms(1);
    // A gap: seq 3 before 1 and 2. Accepted (delivered: its message is complete),
    // recorded, and acked at once with a SACK range.
    peer.send(&mut s, t, peer.single(3, b"three"));
    assert_eq!(messages(&mut s), vec![Bytes::from_static(b"three")]);
    let ack = immediate_ack(&mut s, t);
    assert_eq!((ack.ack.cumulative, sacks(&ack)), (0, vec![(3, 3)]));
    // Seq 3 again.
    peer.send(&mut s, t + ms(2), peer.single(3, b"three"));
    assert!(messages(&mut s).is_empty());
    let ack = immediate_ack(&mut s, t + ms(2));
    assert_eq!((ack.ack.cumulative, sacks(&ack)), (0, vec![(3, 3)]));
    assert_eq!(s.connection_stats(peer.handle).unwrap().duplicates, 1);
}

#[test]
fn gaps_are_recorded_in_sack_ranges() {
    let (mut s, peer, t0) = setup(Config::default());
    let t = t0 + ms(1);
    let mut last = None;
    for seq in [4u64, 9, 5, 12, 11] {
        peer.send(&mut s, t, peer.single(seq, &seq.to_be_bytes()));
        last = Some(immediate_ack(&mut s, t));
    }
    let ack = last.unwrap();
    assert_eq!(ack.ack.cumulative, 0);
    assert_eq!(sacks(&ack), vec![(4, 5), (9, 9), (11, 12)]);
    assert_eq!(messages(&mut s).len(), 5);
    let st = s.connection_stats(peer.handle).unwrap();
    assert_eq!((st.duplicates, st.beyond_window), (0, 0));
}

#[test]
fn in_order_datagram_advances_cumulative_over_buffered_run() {
    let (mut s, peer, t0) = setup(Config::default());
    let t = t0 + ms(1);
    for seq in [2u64, 3, 4, 7] {
        peer.send(&mut s, t, peer.single(seq, b"x"));
        immediate_ack(&mut s, t);
    }
    // Seq 1 fills the gap: N goes from 0 over the buffered run 2..=4 to 4.
    peer.send(&mut s, t + ms(1), peer.single(1, b"x"));
    let (_, ack) = next_ack(&mut s, t + ms(1));
    assert_eq!(ack.ack.cumulative, 4);
    assert_eq!(sacks(&ack), vec![(7, 7)]);
    // Seqs 5, 6: N moves over 7 as well.
    peer.send(&mut s, t + ms(3), peer.single(5, b"x"));
    peer.send(&mut s, t + ms(3), peer.single(6, b"x"));
    let (_, ack) = next_ack(&mut s, t + ms(3));
    assert_eq!((ack.ack.cumulative, sacks(&ack)), (7, vec![]));
    assert_eq!(messages(&mut s).len(), 7);
}

#[test]
fn beyond_window_is_dropped_and_counted() {
    let cfg = Config::default().recv_window(64);
    let t0 = Instant::now();
    let mut s = Endpoint::new(cfg, 9, true);
    let cookie = FakePeer::fetch_cookie(&mut s, addr(1000), CONN, 77, t0);
    s.handle_datagram(t0, addr(1000), FakePeer::init_with(CONN, 77, Some(cookie)));
    let h = match events(&mut s)[..] {
        [(h, Event::Accepted { .. })] => h,
        ref other => panic!("{other:?}"),
    };
    let accept = drain(&mut s, t0);
    assert!(matches!(
        accept[0].1.body,
        Body::Accept {
            recv_window: 64,
            ..
        }
    ));
    let peer = FakePeer {
        addr: addr(1000),
        conn_id: CONN,
        incarnation: 77,
        handle: h,
    };
    let t = t0 + ms(1);
    // N = 0: seq 64 is the last one the window holds; 65 is beyond.
    peer.send(&mut s, t, peer.single(64, b"edge"));
    assert_eq!(messages(&mut s), vec![Bytes::from_static(b"edge")]);
    assert_eq!(sacks(&immediate_ack(&mut s, t)), vec![(64, 64)]);
    peer.send(&mut s, t, peer.single(65, b"beyond"));
    assert!(messages(&mut s).is_empty());
    let st = s.connection_stats(h).unwrap();
    assert_eq!((st.beyond_window, st.duplicates), (1, 0));
    // Not recorded: nothing to acknowledge, and later acks do not cover it.
    assert!(drain(&mut s, t).is_empty());
    peer.send(&mut s, t, peer.single(1, b"one"));
    let (_, ack) = next_ack(&mut s, t);
    assert_eq!((ack.ack.cumulative, sacks(&ack)), (1, vec![(64, 64)]));
    // With N = 1 the window reaches 65: the resend is accepted.
    peer.send(&mut s, t + ms(5), peer.single(65, b"beyond"));
    assert_eq!(
        messages(&mut s),
        vec![Bytes::from_static(b"one"), Bytes::from_static(b"beyond")]
    );
    assert_eq!(s.connection_stats(h).unwrap().beyond_window, 1);
}

/// No head-of-line blocking: B, complete, is delivered while A still misses a fragment.
#[test]
fn messages_complete_independently() {
    let (mut s, peer, t0) = setup(Config::default());
    let a: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let t = t0 + ms(1);
    // A = seqs 1..=3 (fragments 0..=2); fragment 1 (seq 2) is missing.
    peer.send(&mut s, t, peer.fragment(1, &a, 3, 0));
    peer.send(&mut s, t, peer.fragment(3, &a, 3, 2));
    assert!(messages(&mut s).is_empty());
    // B = seq 4, a whole message.
    peer.send(&mut s, t, peer.single(4, b"B"));
    assert_eq!(messages(&mut s), vec![Bytes::from_static(b"B")]);
    assert!(s.connection_reassembly_bytes(peer.handle) > 0);
    // A's missing fragment completes A.
    peer.send(&mut s, t + ms(1), peer.fragment(2, &a, 3, 1));
    assert_eq!(messages(&mut s), vec![Bytes::from(a)]);
    assert_eq!(s.connection_reassembly_bytes(peer.handle), 0);
}

/// The same through a real sender over the simulated network: A's second fragment is
/// lost once; B, sent after A, is delivered before A.
#[test]
fn lost_fragment_delays_only_its_own_message() {
    use sim::{LinkConfig, Sim};
    let mut sim = Sim::new(1, LinkConfig::fixed(ms(1)));
    let (ca, sa) = (addr(1000), addr(2000));
    let c = sim.add(ca, Endpoint::new(Config::default(), 5, false));
    let s = sim.add(sa, Endpoint::new(Config::default(), 6, true));
    let mut dropped = false;
    sim.net.filter = Some(Box::new(move |_, d| {
        let p = sim::parse(&d.bytes);
        let hit = matches!(p.body, Body::Data { seq: 2, .. }) && !dropped;
        dropped |= hit;
        hit
    }));
    let now = sim.now();
    let h = sim.ep(c).connect(sa, now);
    sim.run(&mut [], Default::default(), |sim| {
        sim.nodes[0]
            .log
            .iter()
            .any(|(_, _, e)| matches!(e, Event::Connected { .. }))
    })
    .unwrap();
    let a = Bytes::from(vec![0xAA; 3000]);
    sim.ep(c).send(h, a.clone()).unwrap();
    sim.ep(c).send(h, Bytes::from_static(b"B")).unwrap();
    sim.run(&mut [], Default::default(), |sim| {
        sim.nodes[1]
            .log
            .iter()
            .filter(|(_, _, e)| matches!(e, Event::Message(_)))
            .count()
            == 2
    })
    .unwrap();
    let got: Vec<_> = sim.nodes[s]
        .log
        .iter()
        .filter_map(|(at, _, e)| match e {
            Event::Message(m) => Some((*at, m.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(got[0].1, Bytes::from_static(b"B"));
    assert_eq!(got[1].1, a);
    // B arrived one one-way delay after it was sent; A waited for a retransmission.
    assert!(got[1].0 > got[0].0 + ms(2), "{got:?}");
    assert_eq!(sim.ep(c).connection_stats(h).unwrap().retransmits, 1);
}

/// BUG (see the report): the sender limits the number of unacknowledged datagrams to
/// the peer's receive window, but not the *span* of sequence numbers above the peer's
/// cumulative point. Once later datagrams are selectively acked, it sends seqs beyond
/// `cumulative + recv_window`, which the receiver drops (beyond_window) without
/// acknowledging; they come back only through the RTO. With recv_window 64 the echo
/// simulation drops hundreds of datagrams this way even without loss.
#[test]
fn sender_never_sends_beyond_the_peers_window() {
    let t0 = Instant::now();
    let sa = addr(2000);
    let mut c = Endpoint::new(Config::default(), 1, false);
    let h = c.connect(sa, t0);
    let conn = drain(&mut c, t0)[0].1.conn_id;
    let accept = sim::packet(
        conn,
        sim::ack_info(0, &[]),
        Body::Accept {
            client_incarnation: 1,
            server_incarnation: 2,
            recv_window: 4,
            max_datagram: 1200,
        },
    );
    c.handle_datagram(t0 + ms(1), sa, accept);
    for _ in 0..8 {
        c.send(h, Bytes::from_static(b"m")).unwrap();
    }
    let seqs = |out: Vec<(std::net::SocketAddr, Packet)>| -> Vec<u64> {
        out.into_iter()
            .filter_map(|(_, p)| match p.body {
                Body::Data { seq, .. } => Some(seq),
                _ => None,
            })
            .collect()
    };
    assert_eq!(seqs(drain(&mut c, t0 + ms(1))), vec![1, 2, 3, 4]);
    // Seq 1 is missing at the receiver; 2..=4 arrived. Its window still ends at 0 + 4.
    let ack = sim::packet(conn, sim::ack_info(0, &[(2, 4)]), Body::Ack);
    c.handle_datagram(t0 + ms(2), sa, ack);
    let sent = seqs(drain(&mut c, t0 + ms(2)));
    assert!(
        sent.iter().all(|&s| s <= 4),
        "sent {sent:?} beyond the receiver's window (cumulative 0 + 4)"
    );
}
