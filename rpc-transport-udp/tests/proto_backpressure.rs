//! Backpressure in the core: each connection's queue of complete messages
//! (`Endpoint::poll_message`) is bounded by `max_undelivered`; beyond it data is refused
//! unacknowledged until the application takes the queue down to half; a closed
//! connection keeps its messages until they are taken.

mod sim;

use std::time::Instant;

use bytes::Bytes;
use rpc_transport_udp::proto::packet::Body;
use rpc_transport_udp::proto::{CloseReason, Config, ConnectionHandle, Endpoint, Event};
use sim::{ack_info, addr, drain, packet, FakePeer};

fn raw_events(ep: &mut Endpoint) -> Vec<(ConnectionHandle, Event)> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn setup(max_undelivered: usize) -> (Endpoint, FakePeer, Instant) {
    let mut cfg = Config::default();
    cfg.max_undelivered = max_undelivered;
    let mut s = Endpoint::new(cfg, 2, true);
    let t0 = Instant::now();
    let peer = FakePeer::connect(&mut s, addr(1000), 5, 1, t0);
    (s, peer, t0)
}

#[test]
fn the_queue_is_bounded_and_refused_data_is_not_acknowledged() {
    let (mut s, peer, t0) = setup(4);
    let h = peer.handle;
    for seq in 1..=6u64 {
        peer.send(&mut s, t0, peer.single(seq, &seq.to_be_bytes()));
    }
    // One Readable for the first message; four queued; the 5th and 6th refused.
    assert_eq!(raw_events(&mut s), vec![(h, Event::Readable)]);
    assert_eq!(s.undelivered(h), 4);
    let st = s.connection_stats(h).unwrap();
    assert_eq!(st.paused_drops, 2);
    assert_eq!(st.messages_received, 4);
    let out = drain(&mut s, t0 + std::time::Duration::from_millis(5));
    let acked = out.iter().map(|(_, p)| p.ack.cumulative).max().unwrap();
    assert_eq!(acked, 4, "refused datagrams are not acknowledged");
    // Taking one is not enough (still above half); taking two is.
    assert_eq!(
        s.poll_message(h).unwrap(),
        Bytes::copy_from_slice(&1u64.to_be_bytes())
    );
    peer.send(&mut s, t0, peer.single(5, &5u64.to_be_bytes()));
    assert_eq!(s.undelivered(h), 3);
    assert_eq!(
        s.poll_message(h).unwrap(),
        Bytes::copy_from_slice(&2u64.to_be_bytes())
    );
    peer.send(&mut s, t0, peer.single(5, &5u64.to_be_bytes()));
    peer.send(&mut s, t0, peer.single(6, &6u64.to_be_bytes()));
    assert_eq!(s.undelivered(h), 4);
    let got: Vec<Bytes> = std::iter::from_fn(|| s.poll_message(h)).collect();
    let want: Vec<Bytes> = (3..=6u64)
        .map(|i| Bytes::copy_from_slice(&i.to_be_bytes()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(s.poll_message(h), None);
}

#[test]
fn a_batch_may_overshoot_by_its_length_only() {
    let (mut s, peer, t0) = setup(4);
    let h = peer.handle;
    let mut batch: Vec<_> = (1..=10u64)
        .map(|seq| (peer.addr, peer.single(seq, b"m")))
        .collect();
    s.handle_datagrams(t0, &mut batch);
    assert_eq!(s.undelivered(h), 10);
    // The connection is paused now: the next datagram is refused.
    peer.send(&mut s, t0, peer.single(11, b"m"));
    assert_eq!(s.undelivered(h), 10);
    assert_eq!(s.connection_stats(h).unwrap().paused_drops, 1);
}

#[test]
fn a_closed_connection_keeps_its_messages_until_taken() {
    let (mut s, peer, t0) = setup(16);
    let h = peer.handle;
    peer.send(&mut s, t0, peer.single(1, b"last words"));
    let close = packet(peer.conn_id, ack_info(0, &[]), Body::Close { reason: 0 });
    peer.send(&mut s, t0, close);
    assert_eq!(
        raw_events(&mut s),
        vec![
            (h, Event::Readable),
            (h, Event::Closed(CloseReason::PeerClosed { code: 0 }))
        ]
    );
    assert_eq!(s.connection_count(), 1, "held for its message");
    assert_eq!(
        s.poll_message(h).unwrap(),
        Bytes::from_static(b"last words")
    );
    assert_eq!(s.connection_count(), 0, "freed once taken");
    // Discarding frees it too.
    let (mut s, peer, t0) = setup(16);
    peer.send(&mut s, t0, peer.single(1, b"unread"));
    let close = packet(peer.conn_id, ack_info(0, &[]), Body::Close { reason: 0 });
    peer.send(&mut s, t0, close);
    s.discard_messages(peer.handle);
    assert_eq!(s.connection_count(), 0);
}
