//! Exact timer deadlines under a virtual clock: every test asserts the precise instant a
//! timer is due (and that nothing happens one nanosecond before), never "eventually".

mod sim;

use sim::Event;

use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::packet::{Body, Packet};
use rpc_transport_udp::proto::{close_code, CloseReason, Config, ConnectionHandle, Endpoint};
use sim::{drain, events, ms, us, Pair};

const NS: Duration = Duration::from_nanos(1);

/// RFC 6298 section 2, computed independently of the crate (exact when the samples are
/// multiples of 8 ns, which every sample here is).
struct Rfc6298 {
    srtt: Option<Duration>,
    rttvar: Duration,
    min: Duration,
    max: Duration,
    g: Duration,
}

impl Rfc6298 {
    fn new(cfg: &Config) -> Self {
        Rfc6298 {
            srtt: None,
            rttvar: Duration::ZERO,
            min: cfg.rtt.min_rto,
            max: cfg.rtt.max_rto,
            g: cfg.rtt.granularity,
        }
    }

    fn sample(&mut self, r: Duration) {
        let r = r.as_nanos() as f64;
        match self.srtt {
            None => {
                self.srtt = Some(Duration::from_nanos(r as u64));
                self.rttvar = Duration::from_nanos((r / 2.0) as u64);
            }
            Some(srtt) => {
                let (s, v) = (srtt.as_nanos() as f64, self.rttvar.as_nanos() as f64);
                // RTTVAR first (it uses the old SRTT), then SRTT.
                self.rttvar = Duration::from_nanos((0.75 * v + 0.25 * (s - r).abs()) as u64);
                self.srtt = Some(Duration::from_nanos((0.875 * s + 0.125 * r) as u64));
            }
        }
    }

    fn rto(&self) -> Duration {
        let srtt = self.srtt.expect("a sample");
        (srtt + self.g.max(4 * self.rttvar)).clamp(self.min, self.max)
    }
}

fn no_keepalive(cfg: Config) -> Config {
    cfg.keepalive_interval(Duration::from_secs(3600))
}

/// Sends one single-fragment message from the client at `now`; returns its datagrams.
fn send_one(p: &mut Pair, h: ConnectionHandle, now: Instant, len: usize) -> Vec<Packet> {
    p.client.send(h, Bytes::from(vec![7u8; len])).unwrap();
    drain(&mut p.client, now)
        .into_iter()
        .map(|(_, pkt)| pkt)
        .collect()
}

fn data_seq(p: &Packet) -> Option<u64> {
    match p.body {
        Body::Data { seq, .. } => Some(seq),
        _ => None,
    }
}

/// (a) An unanswered Init: first deadline at t0 + initial RTO, then doubling backoff up
/// to max_rto, and the handshake gives up exactly at t0 + peer_timeout.
#[test]
fn handshake_rto_backoff_exact_deadlines() {
    let cfg = Config::default();
    assert_eq!(cfg.rtt.initial_rto, ms(50));
    let t0 = Instant::now();
    let mut c = Endpoint::new(cfg.clone(), 1, false);
    let h = c.connect(sim::addr(2000), t0);
    let first = drain(&mut c, t0);
    assert!(matches!(
        first[..],
        [(
            _,
            Packet {
                body: Body::Init { .. },
                ..
            }
        )]
    ));
    assert_eq!(c.poll_timeout(), Some(t0 + ms(50)));

    let mut deadline = t0 + ms(50);
    let mut rto = ms(50);
    let mut resent = Vec::new();
    // 50, 100, 200, 400, 800, 1600 ms, then capped at max_rto (2 s): the retransmissions
    // happen at 50, 150, 350, 750, 1550, 3150, 5150, 7150, 9150 ms.
    while deadline < t0 + cfg.peer_timeout {
        c.handle_timeout(deadline - NS);
        assert!(
            drain(&mut c, deadline - NS).is_empty(),
            "early at {deadline:?}"
        );
        c.handle_timeout(deadline);
        let out = drain(&mut c, deadline);
        assert!(
            matches!(
                out[..],
                [(
                    _,
                    Packet {
                        body: Body::Init {
                            client_incarnation: 1,
                            ..
                        },
                        ..
                    }
                )]
            ),
            "{out:?}"
        );
        resent.push(deadline - t0);
        rto = (rto * 2).min(cfg.rtt.max_rto);
        deadline += rto;
        assert_eq!(
            c.poll_timeout(),
            Some(deadline.min(t0 + cfg.peer_timeout)),
            "after {} retransmissions",
            resent.len()
        );
    }
    let expected: Vec<Duration> = [50, 150, 350, 750, 1550, 3150, 5150, 7150, 9150]
        .into_iter()
        .map(ms)
        .collect();
    assert_eq!(resent, expected);
    // The next retransmission (11.15 s) is after the peer timeout: the handshake fails
    // exactly at t0 + 10 s.
    let end = t0 + cfg.peer_timeout;
    c.handle_timeout(end - NS);
    assert!(events(&mut c).is_empty());
    c.handle_timeout(end);
    assert_eq!(
        events(&mut c),
        vec![(h, Event::Closed(CloseReason::Unreachable))]
    );
    assert!(drain(&mut c, end).is_empty(), "Unreachable sends no Close");
    assert_eq!(c.connection_count(), 0);
}

/// (a') The handshake also gives up after max_retransmits transmissions of the Init.
#[test]
fn handshake_gives_up_after_max_retransmits() {
    let cfg = Config::default().max_retransmits(3);
    let t0 = Instant::now();
    let mut c = Endpoint::new(cfg, 1, false);
    let h = c.connect(sim::addr(2000), t0);
    let mut sent = vec![];
    let mut now = t0;
    loop {
        sent.extend(drain(&mut c, now).into_iter().map(|_| now - t0));
        if let Some((_, ev)) = c.poll_event() {
            assert_eq!(
                ev,
                rpc_transport_udp::proto::Event::Closed(CloseReason::Unreachable)
            );
            break;
        }
        now = c.poll_timeout().expect("a deadline");
        c.handle_timeout(now);
    }
    let _ = h;
    // Init at 0, 50, 150 ms (3 transmissions); the third times out at 150 + 200 ms.
    assert_eq!(sent, vec![ms(0), ms(50), ms(150)]);
    assert_eq!(now - t0, ms(350));
}

/// (b) The RTO after RTT samples is SRTT + max(G, 4·RTTVAR) (RFC 6298), with the peer's
/// reported ack delay subtracted from each sample.
#[test]
fn rto_after_samples_follows_rfc6298() {
    let cfg = no_keepalive(Config::default());
    let d = ms(4);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, _) = p.establish(d);
    let mut model = Rfc6298::new(&cfg);
    // Handshake sample: Init at t0, Accept back at t0 + 2d.
    model.sample(2 * d);
    let stats = p.client.connection_stats(ch).unwrap();
    assert_eq!(stats.srtt_us, 8_000);
    assert_eq!(model.rto(), ms(24)); // 8 + 4 * 4
    assert_eq!(stats.rto_us, 24_000);

    // One datagram of data at t1: its retransmission deadline is t1 + RTO.
    let t1 = p.t(2 * d);
    let out = send_one(&mut p, ch, t1, 100);
    assert_eq!(out.iter().filter_map(data_seq).collect::<Vec<_>>(), vec![1]);
    assert_eq!(p.client.poll_timeout(), Some(t1 + ms(24)));

    // It reaches the server after 6 ms; the server holds the ack for ack_delay (1 ms)
    // and says so in the ack; the ack takes 5 ms back. RTT sample = 12 - 1 = 11 ms.
    let arrive = t1 + ms(6);
    for pkt in &out {
        p.server.handle_datagram(arrive, p.ca, sim::emit(pkt));
    }
    let ack_at = arrive + cfg.ack_delay;
    assert_eq!(p.server.poll_timeout(), Some(ack_at));
    p.server.handle_timeout(ack_at);
    let t2 = ack_at + ms(5);
    let acks = p.server_to_client(ack_at, t2);
    assert!(
        matches!(
            acks[..],
            [Packet {
                body: Body::Ack,
                ..
            }]
        ),
        "{acks:?}"
    );
    assert_eq!(acks[0].ack.delay_us, 1_000);
    assert_eq!(acks[0].ack.cumulative, 1);
    model.sample(ms(11));
    let stats = p.client.connection_stats(ch).unwrap();
    assert_eq!(stats.in_flight, 0);
    // RTTVAR = 3/4·4 + 1/4·|8 − 11| = 3.75 ms; SRTT = 7/8·8 + 1/8·11 = 8.375 ms;
    // RTO = 8.375 + 4·3.75 = 23.375 ms.
    assert_eq!(model.rto(), us(23_375));
    assert_eq!(stats.srtt_us, 8_375);
    assert_eq!(stats.rto_us, 23_375);

    // The next data datagram's retransmission deadline.
    let out = send_one(&mut p, ch, t2, 100);
    assert_eq!(out.iter().filter_map(data_seq).collect::<Vec<_>>(), vec![2]);
    assert_eq!(p.client.poll_timeout(), Some(t2 + model.rto()));
    p.client.handle_timeout(t2 + model.rto() - NS);
    assert!(drain(&mut p.client, t2 + model.rto() - NS).is_empty());
    p.client.handle_timeout(t2 + model.rto());
    let re = drain(&mut p.client, t2 + model.rto());
    assert_eq!(
        re.iter()
            .filter_map(|(_, p)| data_seq(p))
            .collect::<Vec<_>>(),
        vec![2]
    );
}

/// (b') On a LAN the computed RTO is below min_rto and is clamped to it exactly.
#[test]
fn rto_is_clamped_to_min_rto() {
    let cfg = no_keepalive(Config::default());
    let d = us(50);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, _) = p.establish(d);
    // 100 µs + max(1 ms, 4 · 50 µs) = 1.1 ms < 5 ms.
    assert_eq!(p.client.connection_stats(ch).unwrap().rto_us, 5_000);
    let t1 = p.t(2 * d) + us(10);
    send_one(&mut p, ch, t1, 10);
    assert_eq!(p.client.poll_timeout(), Some(t1 + cfg.rtt.min_rto));
}

/// (c) Data retransmission timeouts double (exact deadlines) and stop growing at max_rto.
#[test]
fn data_rto_backoff_doubles_up_to_max_rto() {
    let cfg = no_keepalive(Config::default()).peer_timeout(Duration::from_secs(3600));
    let d = ms(4);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, _) = p.establish(d);
    let t1 = p.t(2 * d);
    send_one(&mut p, ch, t1, 100); // lost
    let mut rto = ms(24);
    let mut deadline = t1 + rto;
    let mut times = vec![];
    for i in 0..12 {
        assert_eq!(p.client.poll_timeout(), Some(deadline), "timeout #{i}");
        p.client.handle_timeout(deadline - NS);
        assert!(drain(&mut p.client, deadline - NS).is_empty());
        p.client.handle_timeout(deadline);
        let out = drain(&mut p.client, deadline);
        assert_eq!(
            out.iter()
                .filter_map(|(_, p)| data_seq(p))
                .collect::<Vec<_>>(),
            vec![1],
            "timeout #{i}"
        );
        times.push(deadline - t1);
        rto = (rto * 2).min(cfg.rtt.max_rto);
        assert_eq!(
            p.client.connection_stats(ch).unwrap().rto_us,
            rto.as_micros() as u64
        );
        deadline += rto;
    }
    // 24 · (1, 2, 4, ... 64) ms, then 2 s each.
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    assert_eq!(
        gaps,
        vec![48, 96, 192, 384, 768, 1536, 2000, 2000, 2000, 2000, 2000]
    );
    let stats = p.client.connection_stats(ch).unwrap();
    assert_eq!((stats.retransmits, stats.rto_timeouts), (12, 12));
}

/// (d) Karn's rule: the ack of a retransmitted datagram gives no RTT sample (and keeps
/// the backed-off RTO); the ack of a datagram sent once does.
#[test]
fn karn_rule_no_sample_from_retransmitted_datagram() {
    let cfg = no_keepalive(Config::default());
    let d = ms(4);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, _) = p.establish(d);
    let srtt0 = p.client.connection_stats(ch).unwrap().srtt_us;
    assert_eq!(srtt0, 8_000);

    // Sent at t1, lost; resent at t1 + 24 ms; the resend arrives and is acked (after a
    // long 20 ms return trip, so any sample taken would move SRTT).
    let t1 = p.t(2 * d);
    send_one(&mut p, ch, t1, 100);
    let t_re = t1 + ms(24);
    assert_eq!(p.client.poll_timeout(), Some(t_re));
    p.client.handle_timeout(t_re);
    let arrive = t_re + d;
    let re = p.client_to_server(t_re, arrive);
    assert_eq!(re.iter().filter_map(data_seq).collect::<Vec<_>>(), vec![1]);
    let ack_at = arrive + cfg.ack_delay;
    p.server.handle_timeout(ack_at);
    let back = ack_at + ms(20);
    assert_eq!(p.server_to_client(ack_at, back).len(), 1);
    let s = p.client.connection_stats(ch).unwrap();
    assert_eq!(s.in_flight, 0, "the ack was processed");
    assert_eq!(
        s.srtt_us, srtt0,
        "Karn: no sample from a retransmitted datagram"
    );
    assert_eq!(
        s.rto_us, 48_000,
        "the backed-off RTO stays until a valid sample"
    );

    // A datagram sent once: its ack gives a sample of 4 + 12 = 16 ms.
    let t2 = back;
    let out = send_one(&mut p, ch, t2, 100);
    assert_eq!(out.iter().filter_map(data_seq).collect::<Vec<_>>(), vec![2]);
    assert_eq!(p.client.poll_timeout(), Some(t2 + ms(48)));
    let arrive = t2 + d;
    p.server.handle_datagram(arrive, p.ca, sim::emit(&out[0]));
    let ack_at = arrive + cfg.ack_delay;
    p.server.handle_timeout(ack_at);
    let acks = p.server_to_client(ack_at, ack_at + ms(12));
    assert_eq!(acks.len(), 1);
    let mut model = Rfc6298::new(&cfg);
    model.sample(ms(8));
    model.sample(ms(16));
    let s = p.client.connection_stats(ch).unwrap();
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.srtt_us, model.srtt.unwrap().as_micros() as u64);
    assert_eq!(s.srtt_us, 9_000);
    assert_eq!(s.rto_us, model.rto().as_micros() as u64);
}

/// (e) Delayed ack: one datagram is acked exactly ack_delay after it arrived; a second
/// datagram (ack_every = 2) makes the ack go out at once; data going the other way
/// carries the ack instead.
#[test]
fn delayed_ack_exact() {
    let cfg = no_keepalive(Config::default());
    assert_eq!((cfg.ack_delay, cfg.ack_every), (ms(1), 2));
    let d = ms(2);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, sh) = p.establish(d);

    // One datagram.
    let t1 = p.t(2 * d);
    let ta = t1 + d;
    p.client.send(ch, Bytes::from_static(b"one")).unwrap();
    p.client_to_server(t1, ta);
    assert!(matches!(
        events(&mut p.server)[..],
        [(_, Event::Message(_))]
    ));
    assert!(drain(&mut p.server, ta).is_empty(), "no immediate ack");
    assert_eq!(p.server.poll_timeout(), Some(ta + ms(1)));
    p.server.handle_timeout(ta + ms(1) - NS);
    assert!(drain(&mut p.server, ta + ms(1) - NS).is_empty());
    p.server.handle_timeout(ta + ms(1));
    let acks = drain(&mut p.server, ta + ms(1));
    assert_eq!(acks.len(), 1);
    let ack = &acks[0].1;
    assert_eq!(ack.body, Body::Ack);
    assert_eq!((ack.ack.cumulative, ack.ack.delay_us), (1, 1_000));
    assert_ne!(
        p.server.poll_timeout(),
        Some(ta + ms(1)),
        "ack timer stopped"
    );

    // Two datagrams arriving together: acked at once, with no delay.
    let t2 = ta + ms(5);
    let tb = t2 + d;
    p.client.send(ch, Bytes::from_static(b"two")).unwrap();
    p.client.send(ch, Bytes::from_static(b"three")).unwrap();
    let out = drain(&mut p.client, t2);
    assert_eq!(out.len(), 2);
    p.server.handle_datagram(tb, p.ca, sim::emit(&out[0].1));
    assert!(drain(&mut p.server, tb).is_empty());
    p.server.handle_datagram(tb, p.ca, sim::emit(&out[1].1));
    let acks = drain(&mut p.server, tb);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].1.body, Body::Ack);
    assert_eq!((acks[0].1.ack.cumulative, acks[0].1.ack.delay_us), (3, 0));
    let next = p.server.poll_timeout().unwrap();
    assert!(next > tb + ms(1), "no ack timer left: {:?}", next - tb);

    // A reply within ack_delay carries the ack: no separate Ack datagram.
    let t3 = tb + ms(5);
    let tc = t3 + d;
    p.client.send(ch, Bytes::from_static(b"four")).unwrap();
    p.client_to_server(t3, tc);
    p.server.send(sh, Bytes::from_static(b"reply")).unwrap();
    let out = drain(&mut p.server, tc + us(300));
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].1.body, Body::Data { seq: 1, .. }));
    assert_eq!((out[0].1.ack.cumulative, out[0].1.ack.delay_us), (4, 300));
    p.server.handle_timeout(tc + ms(1));
    assert!(drain(&mut p.server, tc + ms(1)).is_empty());
}

/// (f) An idle client sends a keepalive exactly keepalive_interval after it last sent
/// anything; the server acknowledges it at once.
#[test]
fn keepalive_after_idle_interval() {
    let cfg = Config::default();
    let d = ms(3);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, _) = p.establish(d);
    // The client last sent at t0 (the Init).
    let k1 = p.t(Duration::ZERO) + cfg.keepalive_interval;
    assert_eq!(p.client.poll_timeout(), Some(k1));
    p.client.handle_timeout(k1 - NS);
    assert!(drain(&mut p.client, k1 - NS).is_empty());
    p.client.handle_timeout(k1);
    let ping = p.client_to_server(k1, k1 + d);
    assert!(
        matches!(
            ping[..],
            [Packet {
                body: Body::Ping,
                ..
            }]
        ),
        "{ping:?}"
    );
    let pong = p.server_to_client(k1 + d, k1 + 2 * d);
    assert!(
        matches!(
            pong[..],
            [Packet {
                body: Body::Ack,
                ..
            }]
        ),
        "{pong:?}"
    );
    assert_eq!(p.client.poll_timeout(), Some(k1 + cfg.keepalive_interval));

    // Sending data pushes the keepalive back: it is due an interval after the last send.
    let t = k1 + ms(500);
    p.client.send(ch, Bytes::from_static(b"x")).unwrap();
    p.client_to_server(t, t + d);
    p.server.handle_timeout(t + d + ms(1));
    p.server_to_client(t + d + ms(1), t + 2 * d + ms(1));
    assert_eq!(p.client.connection_stats(ch).unwrap().in_flight, 0);
    assert_eq!(p.client.poll_timeout(), Some(t + cfg.keepalive_interval));
    assert!(events(&mut p.client).is_empty());
}

/// (g) With data in flight and a silent peer, the connection is declared unreachable
/// exactly peer_timeout after the last datagram received.
#[test]
fn peer_timeout_exact_with_data_in_flight() {
    let cfg = Config::default();
    let d = ms(2);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, _) = p.establish(d);
    let last_recv = p.t(2 * d);
    let t1 = last_recv + ms(300);
    send_one(&mut p, ch, t1, 1000);
    // Everything from now on is lost; the client retransmits and pings into the void.
    let mut closed_at = None;
    let mut sent = 0;
    while let Some(t) = p.client.poll_timeout() {
        assert!(
            t <= last_recv + cfg.peer_timeout,
            "deadline past the peer timeout"
        );
        p.client.handle_timeout(t);
        sent += drain(&mut p.client, t).len();
        if let Some((h, ev)) = p.client.poll_event() {
            assert_eq!(
                (h, ev),
                (
                    ch,
                    rpc_transport_udp::proto::Event::Closed(CloseReason::Unreachable)
                )
            );
            closed_at = Some(t);
            break;
        }
    }
    assert_eq!(closed_at, Some(last_recv + cfg.peer_timeout));
    assert!(sent > 5, "retransmissions went out meanwhile ({sent})");
    assert_eq!(p.client.connection_count(), 0, "freed");
}

/// (g') Without data in flight the peer timeout does not apply: an unanswered client
/// keeps pinging and closes only at the idle timeout.
#[test]
fn no_peer_timeout_without_data_in_flight() {
    let cfg = Config::default();
    let d = ms(2);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, _) = p.establish(d);
    let last_recv = p.t(2 * d);
    let mut pings = 0;
    let closed_at = loop {
        let t = p.client.poll_timeout().expect("a deadline");
        p.client.handle_timeout(t);
        for (_, pkt) in drain(&mut p.client, t) {
            match pkt.body {
                Body::Ping => pings += 1,
                Body::Close { reason } => assert_eq!(reason, close_code::IDLE),
                other => panic!("{other:?}"),
            }
        }
        if let Some((h, ev)) = p.client.poll_event() {
            assert_eq!(
                (h, ev),
                (
                    ch,
                    rpc_transport_udp::proto::Event::Closed(CloseReason::Idle)
                )
            );
            break t;
        }
    };
    assert_eq!(closed_at, last_recv + cfg.idle_timeout);
    assert_eq!(pings, 30, "one keepalive per second");
    assert_eq!(p.client.connection_count(), 0);
}

/// (h) A server connection whose client went silent is closed at last_recv +
/// idle_timeout, tells the peer (Close with code IDLE), and is freed.
#[test]
fn idle_timeout_frees_server_connection() {
    let cfg = Config::default();
    let d = ms(2);
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    let (ch, sh) = p.establish(d);
    // Some traffic, then the client vanishes.
    let t1 = p.t(2 * d);
    p.client.send(ch, Bytes::from(vec![1u8; 5000])).unwrap();
    let last_recv = t1 + d;
    p.client_to_server(t1, last_recv);
    assert_eq!(events(&mut p.server).len(), 1);
    assert_eq!(p.server.connection_count(), 1);
    let closed_at = loop {
        let t = p.server.poll_timeout().expect("a deadline");
        p.server.handle_timeout(t);
        if let Some((h, ev)) = p.server.poll_event() {
            assert_eq!(
                (h, ev),
                (
                    sh,
                    rpc_transport_udp::proto::Event::Closed(CloseReason::Idle)
                )
            );
            break t;
        }
        drain(&mut p.server, t); // acks, lost
    };
    assert_eq!(closed_at, last_recv + cfg.idle_timeout);
    assert_eq!(
        p.server.connection_count(),
        1,
        "held until the Close is sent"
    );
    let close = drain(&mut p.server, closed_at);
    assert!(
        matches!(
            close[..],
            [(
                _,
                Packet {
                    body: Body::Close {
                        reason: close_code::IDLE
                    },
                    ..
                }
            )]
        ),
        "{close:?}"
    );
    assert_eq!(p.server.connection_count(), 0);
    assert_eq!(p.server.connection_stats(sh), None);
    assert_eq!(p.server.poll_timeout(), None);
    assert_eq!(p.server.reassembly_bytes(), 0);
}
