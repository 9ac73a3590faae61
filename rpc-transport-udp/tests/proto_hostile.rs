//! Hostile peers against the sans-IO core, on a virtual clock: address validation
//! (cookies valid, expired, for another address, forged), the anti-amplification budget
//! to the byte, clamped and refused handshake parameters, reassembly fairness, an Init
//! flood, per-IP slots, bounded retransmission to a peer that never acknowledges, and a
//! replayed exchange after Close.

mod sim;

use sim::Event;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::config::{AddressValidation, MAX_WINDOW};
use rpc_transport_udp::proto::packet::{fragment_range, Body, Cookie, Packet};
use rpc_transport_udp::proto::reassembly::ReassemblyConfig;
use rpc_transport_udp::proto::{close_code, CloseReason, Config, Endpoint};
use sim::{
    ack_info, addr, drain, drain_raw, events, ms, packet, App, Client, FakePeer, Limits,
    LinkConfig, Rng, Server, Sim,
};

const CONN: u32 = 0xC0FFEE;

fn server(cfg: Config) -> Endpoint {
    let mut s = Endpoint::new(cfg, 2, true);
    s.set_cookie_secret(&[42; 32]);
    s
}

fn init(conn_id: u32, cookie: Option<Cookie>, window: u32, max_datagram: u32) -> Bytes {
    packet(
        conn_id,
        ack_info(0, &[]),
        Body::Init {
            client_incarnation: 7,
            recv_window: window,
            max_datagram,
            cookie,
        },
    )
}

fn only_retry(out: &[(SocketAddr, Packet)], to: SocketAddr) -> Cookie {
    match out {
        [(
            a,
            Packet {
                body: Body::Retry { cookie },
                ..
            },
        )] if *a == to => *cookie,
        other => panic!("expected one Retry to {to}, got {other:?}"),
    }
}

fn accepted(s: &mut Endpoint) -> Vec<SocketAddr> {
    events(s)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::Accepted { peer, .. } => Some(peer),
            _ => None,
        })
        .collect()
}

#[test]
fn cookie_exchange_valid() {
    let mut s = server(Config::default());
    let (a, t0) = (addr(1000), Instant::now());
    s.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    // Stateless: nothing was created, one Retry went out.
    assert_eq!(s.connection_count(), 0);
    assert!(events(&mut s).is_empty());
    let cookie = only_retry(&drain(&mut s, t0), a);
    assert_eq!(s.stats().retries_sent, 1);
    // The repeated Init with the cookie opens the connection.
    s.handle_datagram(t0 + ms(1), a, init(CONN, Some(cookie), 4096, 1200));
    assert_eq!(accepted(&mut s), vec![a]);
    let out = drain(&mut s, t0 + ms(1));
    assert!(
        matches!(
            out[..],
            [(
                _,
                Packet {
                    body: Body::Accept { .. },
                    ..
                }
            )]
        ),
        "{out:?}"
    );
    assert_eq!(s.stats().connections_accepted, 1);
}

#[test]
fn a_real_client_follows_the_retry() {
    let mut p = sim::Pair::new(Config::default(), Config::default());
    let (ch, sh) = p.establish(ms(1));
    p.client.send(ch, Bytes::from_static(b"hi")).unwrap();
    let t = p.t(ms(2));
    p.client_to_server(t, t + ms(1));
    assert_eq!(
        events(&mut p.server),
        vec![(sh, Event::Message(Bytes::from_static(b"hi")))]
    );
    assert_eq!(p.client.connection_stats(ch).unwrap().retries_followed, 1);
}

#[test]
fn cookie_expired() {
    let lifetime = Duration::from_secs(5);
    let mut s = server(Config::default().cookie_lifetime(lifetime));
    let (a, t0) = (addr(1000), Instant::now());
    s.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    let cookie = only_retry(&drain(&mut s, t0), a);
    // One millisecond too late: a fresh Retry, no connection.
    let late = t0 + lifetime + ms(1);
    s.handle_datagram(late, a, init(CONN, Some(cookie), 4096, 1200));
    assert_eq!(s.connection_count(), 0);
    let fresh = only_retry(&drain(&mut s, late), a);
    assert_ne!(fresh, cookie);
    assert_eq!(s.stats().cookies_expired, 1);
    // Exactly at the lifetime it is still good.
    let mut s = server(Config::default().cookie_lifetime(lifetime));
    s.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    let cookie = only_retry(&drain(&mut s, t0), a);
    s.handle_datagram(t0 + lifetime, a, init(CONN, Some(cookie), 4096, 1200));
    assert_eq!(accepted(&mut s), vec![a]);
}

#[test]
fn cookie_for_another_address_or_id_is_refused() {
    let mut s = server(Config::default());
    let (a, b, t0) = (addr(1000), addr(1001), Instant::now());
    s.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    let cookie = only_retry(&drain(&mut s, t0), a);
    // Another port, another IP, another connection id.
    let other_ip = SocketAddr::from(([10, 0, 0, 2], 1000));
    s.handle_datagram(t0, b, init(CONN, Some(cookie), 4096, 1200));
    only_retry(&drain(&mut s, t0), b);
    s.handle_datagram(t0, other_ip, init(CONN, Some(cookie), 4096, 1200));
    only_retry(&drain(&mut s, t0), other_ip);
    s.handle_datagram(t0, a, init(CONN + 1, Some(cookie), 4096, 1200));
    only_retry(&drain(&mut s, t0), a);
    assert_eq!(s.connection_count(), 0);
    assert_eq!(s.stats().cookies_invalid, 3);
}

#[test]
fn forged_cookies_are_refused() {
    let mut s = server(Config::default());
    let (a, t0) = (addr(1000), Instant::now());
    s.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    drain(&mut s, t0);
    // A second later (so that a timestamp one lower is still in the past).
    let t0 = t0 + Duration::from_secs(1);
    s.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    let real = only_retry(&drain(&mut s, t0), a);
    assert_eq!(real.issued_us, 1_000_000);
    let mut rng = Rng::new(5);
    let mut forged = Vec::new();
    // Random tags, a flipped bit, a moved timestamp, another server's cookie.
    for _ in 0..100 {
        let mut tag = [0u8; 32];
        rng.fill(&mut tag);
        forged.push(Cookie {
            issued_us: real.issued_us,
            tag,
        });
    }
    let mut flipped = real;
    flipped.tag[31] ^= 0x80;
    forged.push(flipped);
    let mut moved = real;
    moved.issued_us = moved.issued_us.wrapping_sub(1);
    forged.push(moved);
    let mut other = Endpoint::new(Config::default(), 3, true);
    other.set_cookie_secret(&[43; 32]);
    forged.push(other.issue_cookie(t0, a, CONN));
    for c in &forged {
        s.handle_datagram(t0, a, init(CONN, Some(*c), 4096, 1200));
        only_retry(&drain(&mut s, t0), a);
    }
    assert_eq!(s.connection_count(), 0);
    assert_eq!(s.stats().cookies_invalid, forged.len() as u64);
    // A cookie from the future (not issued by us yet) is not accepted either.
    let mut s2 = server(Config::default());
    s2.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    drain(&mut s2, t0);
    let future = s2.issue_cookie(t0 + ms(100), a, CONN);
    let mut s3 = server(Config::default());
    s3.handle_datagram(t0, a, init(CONN + 9, None, 4096, 1200));
    drain(&mut s3, t0);
    s3.handle_datagram(t0 + ms(50), a, init(CONN, Some(future), 4096, 1200));
    assert_eq!(s3.connection_count(), 0);
    assert_eq!(s3.stats().cookies_expired, 1);
}

/// Bytes of everything in `out`.
fn bytes_of(out: &[(SocketAddr, Bytes)]) -> usize {
    out.iter().map(|(_, b)| b.len()).sum()
}

/// An unvalidated connection (under-load mode) from a peer that never answers: the
/// server's bytes to it never exceed 3 × the bytes it received, and the limit is exact.
#[test]
fn anti_amplification_budget_is_exact_to_the_byte() {
    // A reply of `reply_len` bytes to a request: the Data datagram is 48 + reply_len.
    let run = |reply_len: usize| {
        let cfg = Config::default().address_validation(AddressValidation::UnderLoad {
            connections: usize::MAX,
        });
        let mut s = server(cfg);
        let (a, t0) = (addr(1000), Instant::now());
        let init = init(CONN, None, 4096, 1200);
        let mut received = init.len();
        s.handle_datagram(t0, a, init);
        let h = match events(&mut s)[..] {
            [(h, Event::Accepted { .. })] => h,
            ref other => panic!("{other:?}"),
        };
        let out = drain_raw(&mut s, t0);
        // Accept (52 bytes) and the Retry inviting validation (68 bytes).
        assert_eq!(out.len(), 2);
        let mut sent = bytes_of(&out);
        assert_eq!((received, sent), (44, 120));
        let peer = FakePeer {
            addr: a,
            conn_id: CONN,
            incarnation: 7,
            handle: h,
        };
        let req = peer.single(1, &[1u8; 100]);
        received += req.len();
        s.handle_datagram(t0 + ms(1), a, req);
        assert!(matches!(events(&mut s)[..], [(_, Event::Message(_))]));
        s.send(h, Bytes::from(vec![2u8; reply_len])).unwrap();
        let out = drain_raw(&mut s, t0 + ms(1));
        sent += bytes_of(&out);
        // Let every timer run for a while: retransmissions, acks, pings.
        for _ in 0..200 {
            let Some(t) = s.poll_timeout() else { break };
            s.handle_timeout(t);
            sent += bytes_of(&drain_raw(&mut s, t));
            assert!(sent <= 3 * received, "{sent} > 3 × {received}");
        }
        (received, sent, s.stats())
    };
    // 3 × (44 + 148) = 576 = 120 already sent + a 456-byte reply datagram, exactly.
    let (received, sent, stats) = run(456 - 48);
    assert_eq!((received, sent), (192, 576));
    assert!(
        stats.amplification_blocked > 0,
        "retransmissions were held back"
    );
    // One byte more and the reply cannot go at all.
    // (Only the 28-byte ack of the request fits.)
    let (received, sent, stats) = run(456 - 48 + 1);
    assert_eq!((received, sent), (192, 120 + 28));
    assert!(stats.amplification_blocked > 0);
}

/// Validating the address (echoing the cookie of the Retry that came with the Accept)
/// lifts the limit.
#[test]
fn validation_lifts_the_amplification_limit() {
    let cfg = Config::default().address_validation(AddressValidation::UnderLoad {
        connections: usize::MAX,
    });
    let mut s = server(cfg);
    let (a, t0) = (addr(1000), Instant::now());
    s.handle_datagram(t0, a, init(CONN, None, 4096, 1200));
    let h = match events(&mut s)[..] {
        [(h, Event::Accepted { .. })] => h,
        ref other => panic!("{other:?}"),
    };
    let out = drain(&mut s, t0);
    let cookie = match &out[..] {
        [_, (
            _,
            Packet {
                body: Body::Retry { cookie },
                ..
            },
        )] => *cookie,
        other => panic!("{other:?}"),
    };
    s.send(h, Bytes::from(vec![3u8; 20_000])).unwrap();
    let blocked = drain_raw(&mut s, t0);
    assert!(blocked.is_empty(), "nothing fits in the remaining 12 bytes");
    s.handle_datagram(t0 + ms(1), a, init(CONN, Some(cookie), 4096, 1200));
    let out = drain_raw(&mut s, t0 + ms(1));
    assert!(
        bytes_of(&out) > 20_000,
        "the whole reply goes out once validated"
    );
    assert_eq!(s.stats().accepted_unvalidated, 1);
}

/// A real client against an under-load server: it is accepted at once, follows the
/// Retry while established, and its large message gets through.
#[test]
fn under_load_mode_with_a_real_client() {
    let cfg =
        Config::default().address_validation(AddressValidation::UnderLoad { connections: 1000 });
    let mut sim = Sim::new(3, LinkConfig::fixed(ms(1)));
    let (ca, sa) = (addr(1000), addr(2000));
    let c = sim.add(ca, Endpoint::new(Config::default(), 1, false));
    sim.add(sa, Endpoint::new(cfg, 2, true));
    let mut rng = Rng::new(3);
    let msgs = Client::random_messages(&mut rng, 4, 60_000, 1088, 1);
    let mut client = Client::new(sa, msgs, true);
    let now = sim.now();
    client.start(sim.ep(c), now);
    let mut srv = Server {
        echo: true,
        expect: 4,
        ..Server::default()
    };
    let mut apps: [&mut dyn App; 2] = [&mut client, &mut srv];
    sim.run(&mut apps, Limits::default(), |_| true).unwrap();
    srv.received
        .check_exactly_once(&client.sent, "server")
        .unwrap();
    client
        .echoes
        .check_exactly_once(&client.sent, "client")
        .unwrap();
    let h = client.handle.unwrap();
    assert_eq!(sim.ep(c).connection_stats(h).unwrap().retries_followed, 1);
}

#[test]
fn absurd_parameters_are_refused_with_reason_5() {
    let (a, t0) = (addr(1000), Instant::now());
    for (window, max) in [(4096, 0), (4096, 1), (4096, 127), (0, 1200), (0, 0)] {
        let mut s = server(Config::default());
        // Refused before and after validation, statelessly.
        s.handle_datagram(t0, a, init(CONN, None, window, max));
        let cookie = s.issue_cookie(t0, a, CONN);
        s.handle_datagram(t0, a, init(CONN, Some(cookie), window, max));
        let out = drain(&mut s, t0);
        assert_eq!(out.len(), 2, "{out:?}");
        for (_, p) in &out {
            assert_eq!(
                p.body,
                Body::Close {
                    reason: close_code::BAD_PARAMETERS
                }
            );
        }
        assert_eq!(s.connection_count(), 0);
        assert_eq!(s.stats().bad_parameters, 2);
    }
}

/// Huge advertised values are clamped: datagrams stay within our own maximum, the
/// window within MAX_WINDOW and our send window.
#[test]
fn huge_parameters_are_clamped() {
    let mut s = server(Config::default());
    let (a, t0) = (addr(1000), Instant::now());
    let cookie = s.issue_cookie(t0, a, CONN);
    s.handle_datagram(t0, a, init(CONN, Some(cookie), u32::MAX, u32::MAX));
    let h = match events(&mut s)[..] {
        [(h, Event::Accepted { .. })] => h,
        ref other => panic!("{other:?}"),
    };
    s.send(h, Bytes::from(vec![9u8; 4 << 20])).unwrap();
    let out = drain_raw(&mut s, t0);
    assert!(out.iter().all(|(_, d)| d.len() <= 1200));
    let in_flight = s.connection_stats(h).unwrap().in_flight;
    assert_eq!(in_flight, 1024, "send window, not the advertised 4 billion");
    assert!(in_flight <= u64::from(MAX_WINDOW));
    // 128 bytes, the minimum, is accepted and used: every datagram fits in it.
    let mut s = server(Config::default());
    let cookie = s.issue_cookie(t0, a, CONN);
    s.handle_datagram(t0, a, init(CONN, Some(cookie), 1, 128));
    let h = match events(&mut s)[..] {
        [(h, Event::Accepted { .. })] => h,
        ref other => panic!("{other:?}"),
    };
    s.send(h, Bytes::from(vec![9u8; 1000])).unwrap();
    let out = drain_raw(&mut s, t0);
    assert!(out.iter().all(|(_, d)| d.len() <= 128), "{out:?}");
    // Window 1: one Data datagram in flight.
    assert_eq!(s.connection_stats(h).unwrap().in_flight, 1);
}

/// A client whose server advertises absurd values gives up (protocol error).
#[test]
fn a_client_refuses_an_absurd_accept() {
    let t0 = Instant::now();
    let (ca, sa) = (addr(1000), addr(2000));
    let mut c = Endpoint::new(Config::default(), 1, false);
    let h = c.connect(sa, t0);
    let init = drain(&mut c, t0);
    let accept = packet(
        init[0].1.conn_id,
        ack_info(0, &[]),
        Body::Accept {
            client_incarnation: 1,
            server_incarnation: 2,
            recv_window: 0,
            max_datagram: 1200,
        },
    );
    let _ = ca;
    c.handle_datagram(t0 + ms(1), sa, accept);
    assert_eq!(
        events(&mut c),
        vec![(h, Event::Closed(CloseReason::ProtocolError))]
    );
}

/// 100,000 Inits with random connection ids from one address: no state at all, and a
/// new honest client connects at once.
#[test]
fn init_flood_creates_no_state() {
    let mut s = server(Config::default().max_connections(1024));
    let (attacker, t0) = (addr(6666), Instant::now());
    let mut rng = Rng::new(1);
    let mut retries = 0;
    for i in 0..100_000u32 {
        let id = rng.next_u64() as u32;
        s.handle_datagram(
            t0 + Duration::from_micros(u64::from(i)),
            attacker,
            init(id, None, 4096, 1200),
        );
        if i % 200 == 0 {
            retries += drain_raw(&mut s, t0).len();
        }
    }
    retries += drain_raw(&mut s, t0).len();
    assert_eq!(s.connection_count(), 0);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.quarantine_len(), 0);
    assert_eq!(s.poll_timeout(), None, "no timer either");
    let st = s.stats();
    assert_eq!(st.retries_sent, 100_000);
    assert_eq!(retries as u64 + st.endpoint_transmits_dropped, 100_000);
    // The honest client.
    let t1 = t0 + ms(200);
    let honest = addr(1000);
    let peer = FakePeer::connect(&mut s, honest, 77, 5, t1);
    assert_eq!(s.connection_count(), 1);
    s.handle_datagram(t1, honest, peer.single(1, b"hello"));
    assert!(matches!(events(&mut s)[..], [(_, Event::Message(_))]));
}

/// A peer IP may hold at most `max_connections_per_ip` connections; others may still
/// connect.
#[test]
fn per_ip_connection_limit() {
    let mut s = server(Config::default().max_connections_per_ip(4));
    let t0 = Instant::now();
    for port in 0..4 {
        FakePeer::connect(&mut s, addr(1000 + port), 1, 1, t0);
    }
    let fifth = addr(1004);
    let cookie = FakePeer::fetch_cookie(&mut s, fifth, 1, 1, t0);
    s.handle_datagram(t0, fifth, init(1, Some(cookie), 4096, 1200));
    let out = drain(&mut s, t0);
    assert!(
        matches!(out[..], [(to, Packet { body: Body::Close { reason: close_code::REFUSED }, .. })] if to == fifth),
        "{out:?}"
    );
    assert_eq!(s.stats().refused_per_ip, 1);
    FakePeer::connect(&mut s, SocketAddr::from(([10, 0, 0, 2], 1000)), 1, 1, t0);
    assert_eq!(s.connection_count(), 5);
}

/// A validated peer that never acknowledges anything is given up on within the bound
/// (count and time), and it is counted.
#[test]
fn retransmission_to_a_never_acking_peer_is_bounded() {
    let mut s = server(Config::default());
    let (a, t0) = (addr(1000), Instant::now());
    let peer = FakePeer::connect(&mut s, a, CONN, 7, t0);
    let h = peer.handle;
    // It asks, we answer 60 kB, it never acks but keeps pinging.
    s.handle_datagram(t0, a, peer.single(1, b"get"));
    events(&mut s);
    s.send(h, Bytes::from(vec![5u8; 60_000])).unwrap();
    let mut sent = bytes_of(&drain_raw(&mut s, t0));
    let first = sent;
    let mut t = t0;
    let ping = packet(CONN, ack_info(0, &[]), Body::Ping);
    let mut closed_at = None;
    while t < t0 + Duration::from_secs(60) {
        t += ms(100);
        s.handle_datagram(t, a, ping.clone());
        if s.poll_timeout().is_some_and(|d| d <= t) {
            s.handle_timeout(t);
        }
        sent += bytes_of(&drain_raw(&mut s, t));
        if closed_at.is_none()
            && events(&mut s)
                .iter()
                .any(|(_, e)| *e == Event::Closed(CloseReason::Unreachable))
        {
            closed_at = Some(t);
        }
    }
    let closed_at = closed_at.expect("never-acking peer not given up on");
    assert!(
        closed_at <= t0 + Duration::from_secs(6),
        "{:?}",
        closed_at - t0
    );
    assert_eq!(s.stats().never_acked_closes, 1);
    // Bounded: at most the first flight and eight retransmission rounds of it, plus the
    // acks of its pings.
    assert!(sent <= 9 * first + 600 * 60, "{sent}");
}

/// A complete exchange replayed after Close is not accepted: within the cookie lifetime
/// the closed (address, id) is quarantined, after it the cookie has expired.
#[test]
fn replay_after_close_is_refused() {
    let lifetime = Duration::from_secs(5);
    let mut s = server(Config::default().cookie_lifetime(lifetime));
    let (a, t0) = (addr(1000), Instant::now());
    // The recorded exchange: Init with cookie, a request.
    let cookie = FakePeer::fetch_cookie(&mut s, a, CONN, 7, t0);
    let rec_init = FakePeer::init_with(CONN, 7, Some(cookie));
    s.handle_datagram(t0 + ms(1), a, rec_init.clone());
    let h = match events(&mut s)[..] {
        [(h, Event::Accepted { .. })] => h,
        ref other => panic!("{other:?}"),
    };
    let peer = FakePeer {
        addr: a,
        conn_id: CONN,
        incarnation: 7,
        handle: h,
    };
    let rec_data = peer.single(1, b"transfer 100");
    s.handle_datagram(t0 + ms(2), a, rec_data.clone());
    assert!(matches!(events(&mut s)[..], [(_, Event::Message(_))]));
    let close = packet(CONN, ack_info(0, &[]), Body::Close { reason: 0 });
    s.handle_datagram(t0 + ms(3), a, close);
    drain(&mut s, t0 + ms(3));
    events(&mut s);
    assert_eq!(s.connection_count(), 0);
    assert_eq!(s.quarantine_len(), 1);

    // Replayed within the lifetime: quarantined.
    let t1 = t0 + ms(500);
    s.handle_datagram(t1, a, rec_init.clone());
    s.handle_datagram(t1, a, rec_data.clone());
    assert!(events(&mut s).is_empty(), "replay accepted");
    let out = drain(&mut s, t1);
    assert!(matches!(out[0].1.body, Body::Retry { .. }), "{out:?}");
    assert!(matches!(out[1].1.body, Body::Reset), "{out:?}");
    assert_eq!(s.stats().replays_refused, 1);

    // Replayed later: the cookie has expired (and the quarantine entry is gone).
    let t2 = t0 + lifetime + ms(10);
    s.handle_datagram(t2, a, rec_init);
    s.handle_datagram(t2, a, rec_data);
    assert!(events(&mut s).is_empty(), "replay accepted");
    assert_eq!(s.stats().cookies_expired, 1);
    assert_eq!(s.quarantine_len(), 0);
    drain(&mut s, t2);

    // The real client, reconnecting with the same id and a fresh cookie, is welcome.
    let peer = FakePeer::connect(&mut s, a, CONN, 8, t2 + ms(1));
    assert_eq!(s.connection_count(), 1);
    let _ = peer;
}

/// One peer (one IP, several connections) fills the endpoint's reassembly budget with
/// never-completed messages; an honest peer's 200 KB message still completes, because
/// the biggest holder is evicted.
#[test]
fn reassembly_fairness_under_a_budget_attack() {
    let per_conn = 1 << 20;
    let cfg = Config::default()
        .reassembly(ReassemblyConfig {
            per_peer_budget: per_conn,
            ..ReassemblyConfig::default()
        })
        .global_reassembly_budget(8 << 20);
    let mut sim = Sim::new(9, LinkConfig::fixed(ms(1)));
    let (sa, ca) = (addr(2000), addr(1000));
    let s = sim.add(sa, Endpoint::new(cfg.clone(), 2, true));
    let c = sim.add(ca, Endpoint::new(cfg, 1, false));

    // The attacker: 12 connections from one IP, each filling its own budget with
    // 100 kB messages whose last fragment never comes.
    let attacker_ip = [10, 0, 0, 66];
    let msg_len: u32 = 100_000;
    let frags = 92; // ceil(100_000 / 1088)
    let t = sim.now();
    for k in 0..12u16 {
        let a = SocketAddr::from((attacker_ip, 5000 + k));
        drain(sim.ep(s), t);
        events(sim.ep(s));
        let peer = FakePeer::connect(sim.ep(s), a, 100 + u32::from(k), 9, t);
        let mut seq = 1;
        for _ in 0..12 {
            for i in 0..frags - 1 {
                let payload = vec![0xAA; fragment_range(msg_len, frags, i).len()];
                let d = packet(
                    peer.conn_id,
                    ack_info(0, &[]),
                    Body::Data {
                        seq: seq + u64::from(i),
                        frag_index: i,
                        frag_count: frags,
                        msg_len,
                        payload: Bytes::from(payload),
                    },
                );
                sim.ep(s).handle_datagram(t, a, d);
            }
            seq += u64::from(frags);
        }
    }
    let _ = drain(sim.ep(s), t);
    events(sim.ep(s));
    assert!(
        sim.ep(s).reassembly_bytes() > 7 << 20,
        "the attack filled the endpoint budget: {}",
        sim.ep(s).reassembly_bytes()
    );
    assert!(sim.ep(s).stats().over_budget > 0);

    // The honest client's 200 KB message.
    let mut rng = Rng::new(4);
    let msg = sim::make_message(1, 200_000, &mut rng);
    let mut client = Client::new(sa, vec![msg], false);
    let now = sim.now();
    client.start(sim.ep(c), now);
    let mut srv = Server {
        expect: 1,
        ..Server::default()
    };
    // Applications in node order: the server is node 0.
    let mut apps: [&mut dyn App; 2] = [&mut srv, &mut client];
    sim.run(&mut apps, Limits::default(), |_| true).unwrap();
    srv.received
        .check_exactly_once(&client.sent, "server")
        .unwrap();
    // Long before the attacker's partial messages would have timed out (10 s).
    assert!(sim.elapsed < Duration::from_secs(2), "{:?}", sim.elapsed);
    let st = sim.ep(s).stats();
    assert!(st.reassembly_evictions >= 1, "{st:?}");
    assert!(sim.ep(s).reassembly_bytes() <= 8 << 20);
}

/// A peer that acknowledges a little, then only pings (keeping itself "alive") while our
/// reply sits unacknowledged, is given up on after `peer_timeout` without progress
/// (instead of holding the connection's send buffer for minutes).
#[test]
fn a_pinging_peer_that_stops_acknowledging_is_given_up() {
    let mut s = server(Config::default());
    let (a, t0) = (addr(1000), Instant::now());
    let peer = FakePeer::connect(&mut s, a, CONN, 7, t0);
    let h = peer.handle;
    s.handle_datagram(t0, a, peer.single(1, b"get"));
    events(&mut s);
    s.send(h, Bytes::from(vec![5u8; 60_000])).unwrap();
    drain(&mut s, t0);
    // It acknowledges the first five fragments, once.
    let t1 = t0 + ms(1);
    s.handle_datagram(t1, a, packet(CONN, ack_info(5, &[]), Body::Ack));
    let ping = packet(CONN, ack_info(5, &[]), Body::Ping);
    let mut t = t1;
    let mut closed_at = None;
    while t < t0 + Duration::from_secs(60) && closed_at.is_none() {
        t += ms(100);
        s.handle_datagram(t, a, ping.clone());
        if s.poll_timeout().is_some_and(|d| d <= t) {
            s.handle_timeout(t);
        }
        drain(&mut s, t);
        if events(&mut s)
            .iter()
            .any(|(_, e)| *e == Event::Closed(CloseReason::Unreachable))
        {
            closed_at = Some(t);
        }
    }
    let closed_at = closed_at.expect("not given up on");
    let after = closed_at - t1;
    assert!(
        after >= Duration::from_secs(10) && after <= Duration::from_secs(11),
        "{after:?}"
    );
    let st = s.stats();
    assert_eq!((st.no_progress_closes, st.never_acked_closes), (1, 0));
}

/// A connection closed because its peer sent a message that is not a frame tells the
/// peer why: Close code 3 (protocol error), not 0.
#[test]
fn a_protocol_error_close_carries_code_3() {
    let cfg = Config::default();
    let mut p = sim::Pair::new(cfg.clone(), cfg);
    let (ch, sh) = p.establish(std::time::Duration::from_millis(1));
    let now = p.t(std::time::Duration::from_millis(10));
    p.server.close_with(sh, CloseReason::ProtocolError);
    let sent = p.server_to_client(now, now);
    assert!(
        sent.iter()
            .any(|pk| matches!(pk.body, Body::Close { reason: 3 })),
        "{sent:?}"
    );
    let closed: Vec<_> = sim::events(&mut p.client)
        .into_iter()
        .filter(|(h, e)| *h == ch && matches!(e, Event::Closed(_)))
        .collect();
    assert!(
        matches!(
            closed[..],
            [(_, Event::Closed(CloseReason::PeerClosed { code: 3 }))]
        ),
        "{closed:?}"
    );
}
