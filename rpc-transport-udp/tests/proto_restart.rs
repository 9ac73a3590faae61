//! Restarts: a server replaced by a new incarnation resets its old connections; a
//! client that restarts with the same address and connection id replaces its old
//! connection on the server.

mod sim;

use sim::Event;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::packet::{Body, Packet};
use rpc_transport_udp::proto::{CloseReason, Config, Endpoint};
use sim::{addr, drain, events, ms, FakePeer, LinkConfig, Sim};

fn log_events(sim: &Sim, node: usize) -> Vec<Event> {
    sim.nodes[node]
        .log
        .iter()
        .map(|(_, _, e)| e.clone())
        .collect()
}

#[test]
fn server_restart_resets_client_and_reconnect_sees_new_incarnation() {
    let cfg = Config::default();
    let mut sim = Sim::new(1, LinkConfig::fixed(ms(1)));
    let (ca, sa) = (addr(1000), addr(2000));
    let c = sim.add(ca, Endpoint::new(cfg.clone(), 1, false));
    let s = sim.add(sa, Endpoint::new(cfg.clone(), 0xA, true));
    let now = sim.now();
    let h = sim.ep(c).connect(sa, now);
    sim.run_to(&mut [], ms(5)).unwrap();
    sim.ep(c).send(h, Bytes::from_static(b"before")).unwrap();
    sim.run_to(&mut [], ms(20)).unwrap();
    assert_eq!(
        log_events(&sim, c),
        vec![Event::Connected {
            server_incarnation: 0xA
        }]
    );
    assert!(matches!(
        log_events(&sim, s)[..],
        [Event::Accepted { .. }, Event::Message(_)]
    ));

    // Server A is replaced by B (new incarnation) at the same address.
    sim.nodes[s].ep = Endpoint::new(cfg.clone(), 0xB, true);
    sim.nodes[s].log.clear();
    sim.ep(c).send(h, Bytes::from_static(b"after")).unwrap();
    let sent_at = sim.elapsed;
    sim.run_to(&mut [], ms(40)).unwrap();
    // The data reaches B, which knows no such connection: Reset, 1 ms each way.
    assert_eq!(sim.ep(s).stats().resets_sent, 1);
    assert!(
        log_events(&sim, s).is_empty(),
        "B accepts nothing from stray data"
    );
    let (at, ch, ev) = sim.nodes[c].log.last().unwrap().clone();
    assert_eq!((ch, ev), (h, Event::Closed(CloseReason::Reset)));
    assert_eq!(at, sent_at + ms(2));
    assert_eq!(sim.ep(c).connection_count(), 0);

    // A new connection reaches B.
    sim.nodes[c].log.clear();
    let now = sim.now();
    let h2 = sim.ep(c).connect(sa, now);
    sim.run_to(&mut [], ms(50)).unwrap();
    assert_eq!(
        sim.nodes[c]
            .log
            .iter()
            .map(|(_, h, e)| (*h, e.clone()))
            .collect::<Vec<_>>(),
        vec![(
            h2,
            Event::Connected {
                server_incarnation: 0xB
            }
        )]
    );
    sim.ep(c).send(h2, Bytes::from_static(b"again")).unwrap();
    sim.run_to(&mut [], ms(60)).unwrap();
    assert!(log_events(&sim, s).contains(&Event::Message(Bytes::from_static(b"again"))));
}

#[test]
fn client_restart_with_same_conn_id_replaces_the_old_connection() {
    let cfg = Config::default();
    let t0 = Instant::now();
    let (ca, sa) = (addr(1000), addr(2000));
    let mut client = Endpoint::new(cfg.clone(), 1, false);
    let mut server = Endpoint::new(cfg.clone(), 2, true);
    client.connect(sa, t0);
    let init = drain(&mut client, t0);
    let conn_id = init[0].1.conn_id;
    // Address validation first: the server answers with a Retry and keeps nothing.
    server.handle_datagram(t0, ca, sim::emit(&init[0].1));
    assert!(events(&mut server).is_empty());
    assert_eq!(server.connection_count(), 0);
    for (_, p) in drain(&mut server, t0) {
        client.handle_datagram(t0, sa, sim::emit(&p));
    }
    let init = drain(&mut client, t0);
    assert!(matches!(
        init[0].1.body,
        Body::Init {
            cookie: Some(_),
            ..
        }
    ));
    server.handle_datagram(t0, ca, sim::emit(&init[0].1));
    let old = match events(&mut server)[..] {
        [(
            h,
            Event::Accepted {
                client_incarnation: 1,
                ..
            },
        )] => h,
        ref other => panic!("{other:?}"),
    };
    drain(&mut server, t0);
    // Some data on the old connection, left half-reassembled.
    let fake_old = FakePeer {
        addr: ca,
        conn_id,
        incarnation: 1,
        handle: old,
    };
    server.handle_datagram(t0 + ms(1), ca, fake_old.fragment(1, &[9u8; 3000], 3, 0));
    assert!(server.reassembly_bytes() > 0);

    // A retransmitted Init of the same incarnation changes nothing (Accept resent).
    server.handle_datagram(t0 + ms(2), ca, FakePeer::init(conn_id, 1));
    assert!(events(&mut server).is_empty());
    let out = drain(&mut server, t0 + ms(2));
    assert!(matches!(
        out[..],
        [(
            _,
            Packet {
                body: Body::Accept {
                    client_incarnation: 1,
                    ..
                },
                ..
            }
        )]
    ));

    // The client process restarts: same address, same conn id, new incarnation. Its
    // cookie-less Init gets a Retry and changes nothing (a spoofed one cannot kill the
    // connection); the Init with the cookie replaces the old connection.
    let t1 = t0 + Duration::from_secs(1);
    let cookie = FakePeer::fetch_cookie(&mut server, ca, conn_id, 3, t1);
    assert!(events(&mut server).is_empty());
    assert_eq!(server.connection_count(), 1);
    server.handle_datagram(t1, ca, FakePeer::init_with(conn_id, 3, Some(cookie)));
    let evs = events(&mut server);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(evs[0], (old, Event::Closed(CloseReason::PeerRestarted)));
    let new = match evs[1] {
        (
            h,
            Event::Accepted {
                peer,
                client_incarnation: 3,
            },
        ) if peer == ca => h,
        ref other => panic!("{other:?}"),
    };
    assert_ne!(new, old);
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.connection_stats(old), None, "old connection freed");
    assert_eq!(server.reassembly_bytes(), 0, "its reassembly memory too");
    let out = drain(&mut server, t1);
    assert!(
        matches!(
            out[..],
            [(to, Packet { conn_id: id, body: Body::Accept { client_incarnation: 3, server_incarnation: 2, .. }, .. })]
                if to == ca && id == conn_id
        ),
        "{out:?}"
    );
    // The new connection starts from sequence number 1.
    let fake_new = FakePeer {
        incarnation: 3,
        handle: new,
        ..fake_old
    };
    server.handle_datagram(t1 + ms(1), ca, fake_new.single(1, b"fresh"));
    assert_eq!(
        events(&mut server),
        vec![(new, Event::Message(Bytes::from_static(b"fresh")))]
    );
}
