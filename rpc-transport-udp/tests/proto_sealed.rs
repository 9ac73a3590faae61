//! Sealed datagrams (PROTOCOL.md 9.10) against the sans-IO core: both handshakes, no
//! plaintext on the wire, and every hostile datagram — tampered, replayed, sealed for
//! another connection, unsealed, or a handshake with the wrong key — dropped and counted,
//! with each message still delivered exactly once.

mod sim;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::Principal;
use rpc_transport_udp::proto::config::AddressValidation;
use rpc_transport_udp::proto::packet::{Body, Packet};
use rpc_transport_udp::proto::seal::{is_sealed, SEALED_HEADER_LEN};
use rpc_transport_udp::proto::{
    close_code, CloseReason, Config, ConnectionHandle, Endpoint, Event, PreSharedKey, Security,
    StaticKeypair,
};
use sim::{ack_info, addr, drain_raw, packet};

const MARKER: &[u8] = b"attack at dawn, bring the secret sauce";

struct Net {
    t: Instant,
    client: Endpoint,
    server: Endpoint,
    ca: SocketAddr,
    sa: SocketAddr,
    /// Every datagram that crossed, client to server.
    up: Vec<Bytes>,
    /// Every datagram that crossed, server to client.
    down: Vec<Bytes>,
}

impl Net {
    fn new(client: Security, server: Security) -> Self {
        Net::with(
            Some(client),
            Some(server),
            Config::default(),
            Config::default(),
        )
    }

    fn with(client: Option<Security>, server: Option<Security>, cc: Config, sc: Config) -> Self {
        let cc = match client {
            Some(s) => cc.security(s),
            None => cc,
        };
        let sc = match server {
            Some(s) => sc.security(s),
            None => sc,
        };
        let mut server = Endpoint::new(sc, 2, true);
        server.set_cookie_secret(&[42; 32]);
        Net {
            t: Instant::now(),
            client: Endpoint::new(cc, 1, false),
            server,
            ca: addr(1000),
            sa: addr(2000),
            up: Vec::new(),
            down: Vec::new(),
        }
    }

    /// Moves datagrams both ways (1 ms per hop) until neither side has anything to send.
    fn pump(&mut self) {
        for _ in 0..100 {
            self.t += Duration::from_millis(1);
            self.client.handle_timeout(self.t);
            self.server.handle_timeout(self.t);
            let up = drain_raw(&mut self.client, self.t);
            let down = drain_raw(&mut self.server, self.t);
            if up.is_empty() && down.is_empty() {
                return;
            }
            for (to, d) in up {
                assert_eq!(to, self.sa);
                self.up.push(d.clone());
                self.server.handle_datagram(self.t, self.ca, d);
            }
            for (to, d) in down {
                assert_eq!(to, self.ca);
                self.down.push(d.clone());
                self.client.handle_datagram(self.t, self.sa, d);
            }
        }
    }

    fn events(ep: &mut Endpoint) -> Vec<(ConnectionHandle, Event)> {
        std::iter::from_fn(|| ep.poll_event()).collect()
    }

    /// Connects and returns (client handle, server handle).
    fn establish(&mut self) -> (ConnectionHandle, ConnectionHandle) {
        let ch = self.client.connect(self.sa, self.t);
        self.pump();
        let connected = Net::events(&mut self.client)
            .iter()
            .any(|(h, e)| *h == ch && matches!(e, Event::Connected { .. }));
        assert!(connected, "client not connected: {:?}", self.client.stats());
        let sh = Net::events(&mut self.server)
            .into_iter()
            .find_map(|(h, e)| matches!(e, Event::Accepted { .. }).then_some(h))
            .expect("server accepted");
        (ch, sh)
    }

    fn messages(ep: &mut Endpoint, h: ConnectionHandle) -> Vec<Bytes> {
        std::iter::from_fn(|| ep.poll_message(h)).collect()
    }
}

fn static_pair() -> (StaticKeypair, StaticKeypair) {
    (
        StaticKeypair::generate().expect("key"),
        StaticKeypair::generate().expect("key"),
    )
}

fn closed_with(ep: &mut Endpoint) -> Vec<CloseReason> {
    Net::events(ep)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn static_keys_seal_every_datagram_after_the_handshake_and_name_the_client() {
    let (ck, sk) = static_pair();
    let mut net = Net::new(
        Security::client_static(ck.clone(), sk.public()),
        Security::server(sk),
    );
    let (ch, sh) = net.establish();
    assert_eq!(
        net.server.principal(sh),
        Some(&Principal::StaticKey(ck.public()))
    );
    assert_eq!(
        net.client.principal(ch),
        None,
        "the client knows whom it called"
    );

    // A message of several fragments each way.
    let big: Vec<u8> = MARKER.iter().copied().cycle().take(5000).collect();
    net.client.send(ch, Bytes::from(big.clone())).expect("send");
    net.pump();
    assert_eq!(
        Net::messages(&mut net.server, sh),
        vec![Bytes::from(big.clone())]
    );
    net.server
        .send(sh, Bytes::from_static(MARKER))
        .expect("reply");
    net.pump();
    assert_eq!(
        Net::messages(&mut net.client, ch),
        vec![Bytes::from_static(MARKER)]
    );

    // Only Hello, Retry and Welcome travel in clear; nothing carries the plaintext.
    for d in net.up.iter().chain(&net.down) {
        assert!(
            !d.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext on the wire"
        );
        if !is_sealed(d) {
            let p = Packet::parse(d).expect("clear datagrams parse");
            assert!(
                matches!(
                    p.body,
                    Body::Hello { .. } | Body::Retry { .. } | Body::Welcome { .. }
                ),
                "{p:?} in clear"
            );
        }
    }
    assert!(net.up.iter().filter(|d| is_sealed(d)).count() >= 5);
    let (c, s) = (net.client.stats(), net.server.stats());
    assert_eq!((c.handshakes_completed, s.handshakes_completed), (1, 1));
    assert_eq!(s.forged_dropped + s.replays_dropped + s.unsealed_dropped, 0);
}

#[test]
fn tampered_replayed_foreign_and_unsealed_datagrams_are_dropped_and_counted() {
    let psk = || PreSharedKey::new("svc", [7; 32]).expect("id");
    let mut net = Net::new(Security::client_psk(psk()), Security::server_psk([psk()]));
    let (ch, sh) = net.establish();
    assert_eq!(
        net.server.principal(sh),
        Some(&Principal::PreSharedKey("svc".into()))
    );

    // Capture one sealed Data datagram without delivering it.
    net.client
        .send(ch, Bytes::from_static(MARKER))
        .expect("send");
    let mut out = drain_raw(&mut net.client, net.t);
    assert_eq!(out.len(), 1);
    let (_, data) = out.remove(0);
    assert!(is_sealed(&data));

    // Tampered: any flipped bit, in the clear header's packet number or the ciphertext.
    for i in [SEALED_HEADER_LEN - 1, SEALED_HEADER_LEN + 3, data.len() - 1] {
        let mut bad = data.to_vec();
        bad[i] ^= 0x40;
        net.server.handle_datagram(net.t, net.ca, Bytes::from(bad));
    }
    assert_eq!(net.server.stats().forged_dropped, 3);
    assert!(Net::messages(&mut net.server, sh).is_empty());

    // The genuine one, then its replays.
    for _ in 0..3 {
        net.server.handle_datagram(net.t, net.ca, data.clone());
    }
    assert_eq!(net.server.stats().replays_dropped, 2);
    assert_eq!(
        Net::messages(&mut net.server, sh),
        vec![Bytes::from_static(MARKER)]
    );

    // Plaintext Data, Ack and Close for the sealed connection, as an attacker would send.
    let conn_id = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    for body in [
        Body::Data {
            seq: 2,
            frag_index: 0,
            frag_count: 1,
            msg_len: 4,
            payload: Bytes::from_static(b"evil"),
        },
        Body::Ack,
        Body::Close { reason: 0 },
        Body::Reset,
    ] {
        net.server
            .handle_datagram(net.t, net.ca, packet(conn_id, ack_info(0, &[]), body));
    }
    assert_eq!(net.server.stats().unsealed_dropped, 4);
    assert!(Net::messages(&mut net.server, sh).is_empty());

    // A second connection's sealed datagram, relabelled with the first one's id.
    // (Its packet numbers are taken past the first connection's, so the window lets it
    // through to the decryption; an older one is dropped by the window already.)
    let ch2 = net.client.connect(net.sa, net.t);
    net.pump();
    for _ in 0..30 {
        net.client
            .send(ch2, Bytes::from_static(b"warm up"))
            .expect("send");
        net.pump();
    }
    let (replays, forged) = {
        let s = net.server.stats();
        (s.replays_dropped, s.forged_dropped)
    };
    assert_eq!((replays, forged), (2, 3));
    net.client
        .send(ch2, Bytes::from_static(b"second"))
        .expect("send");
    let out = drain_raw(&mut net.client, net.t);
    let other = out
        .iter()
        .map(|(_, d)| d)
        .find(|d| is_sealed(d) && d[4..8] != conn_id.to_be_bytes())
        .unwrap_or_else(|| panic!("no datagram of the second connection in {out:?}"));
    let mut relabelled = other.to_vec();
    relabelled[4..8].copy_from_slice(&conn_id.to_be_bytes());
    net.server
        .handle_datagram(net.t, net.ca, Bytes::from(relabelled));
    assert_eq!(net.server.stats().forged_dropped, 4);
    assert!(Net::messages(&mut net.server, sh).is_empty());

    // The connection is unharmed: it still carries messages both ways.
    net.pump();
    net.server
        .send(sh, Bytes::from_static(b"still here"))
        .expect("send");
    net.pump();
    assert_eq!(
        Net::messages(&mut net.client, ch),
        vec![Bytes::from_static(b"still here")]
    );
    assert!(closed_with(&mut net.server).is_empty());
}

#[test]
fn handshakes_with_the_wrong_key_are_refused_with_close_6_and_counted() {
    let (ck, sk) = static_pair();
    let (_, other) = static_pair();

    // The wrong server key: the server cannot open the Hello.
    let mut net = Net::new(
        Security::client_static(ck.clone(), other.public()),
        Security::server(sk.clone()),
    );
    net.client.connect(net.sa, net.t);
    net.pump();
    assert_eq!(net.server.stats().handshakes_failed, 1);
    assert_eq!(net.server.connection_count(), 0);
    assert_eq!(
        closed_with(&mut net.client),
        vec![CloseReason::PeerClosed {
            code: close_code::SECURITY
        }]
    );

    // A client key the server does not allow.
    let mut net = Net::new(
        Security::client_static(ck.clone(), sk.public()),
        Security::server(sk.clone()).allow_client_keys([other.public()]),
    );
    net.client.connect(net.sa, net.t);
    net.pump();
    assert_eq!(net.server.stats().handshakes_refused, 1);
    assert_eq!(net.server.connection_count(), 0);

    // The wrong pre-shared key under a known id.
    let mut net = Net::new(
        Security::client_psk(PreSharedKey::new("svc", [1; 32]).expect("id")),
        Security::server_psk([PreSharedKey::new("svc", [2; 32]).expect("id")]),
    );
    net.client.connect(net.sa, net.t);
    net.pump();
    assert_eq!(net.server.stats().handshakes_failed, 1);
    assert_eq!(closed_with(&mut net.client).len(), 1);

    // A plain client of a sealed server, and a sealing client of a plain server.
    for (client, server) in [
        (None, Some(Security::server(sk.clone()))),
        (Some(Security::client_static(ck.clone(), sk.public())), None),
    ] {
        let mut net = Net::with(client, server, Config::default(), Config::default());
        net.client.connect(net.sa, net.t);
        net.pump();
        assert_eq!(net.server.stats().security_mismatch, 1);
        assert_eq!(
            closed_with(&mut net.client),
            vec![CloseReason::PeerClosed {
                code: close_code::SECURITY
            }]
        );
    }
}

#[test]
fn a_forged_welcome_fails_the_handshake_instead_of_connecting() {
    let (ck, sk) = static_pair();
    let mut net = Net::new(
        Security::client_static(ck, sk.public()),
        Security::server(sk),
    );
    let ch = net.client.connect(net.sa, net.t);
    // Retry, then the Hello with the cookie; the real Welcome is replaced by a forgery.
    for _ in 0..2 {
        for (_, d) in drain_raw(&mut net.client, net.t) {
            net.server.handle_datagram(net.t, net.ca, d);
        }
        for (_, d) in drain_raw(&mut net.server, net.t) {
            let p = Packet::parse(&d).expect("clear");
            let d = match p.body {
                Body::Welcome { handshake } => {
                    let mut forged = handshake.to_vec();
                    forged[40] ^= 1;
                    packet(
                        p.conn_id,
                        ack_info(0, &[]),
                        Body::Welcome {
                            handshake: Bytes::from(forged),
                        },
                    )
                }
                _ => d,
            };
            net.client.handle_datagram(net.t, net.sa, d);
        }
    }
    assert_eq!(net.client.stats().handshakes_failed, 1);
    let events = Net::events(&mut net.client);
    assert!(
        events
            .iter()
            .any(|(h, e)| *h == ch && *e == Event::Closed(CloseReason::HandshakeFailed)),
        "{events:?}"
    );
    assert!(!events
        .iter()
        .any(|(_, e)| matches!(e, Event::Connected { .. })));
}

#[test]
fn no_diffie_hellman_before_the_cookie_even_under_load_mode() {
    let (ck, sk) = static_pair();
    let sc =
        Config::default().address_validation(AddressValidation::UnderLoad { connections: 100 });
    let mut net = Net::with(
        Some(Security::client_static(ck, sk.public())),
        Some(Security::server(sk)),
        Config::default(),
        sc,
    );
    net.client.connect(net.sa, net.t);
    let hello = drain_raw(&mut net.client, net.t);
    assert_eq!(hello.len(), 1);
    net.server
        .handle_datagram(net.t, net.ca, hello[0].1.clone());
    let answer = drain_raw(&mut net.server, net.t);
    assert!(
        matches!(
            answer
                .iter()
                .map(|(_, d)| Packet::parse(d).map(|p| p.body))
                .collect::<Vec<_>>()[..],
            [Ok(Body::Retry { .. })]
        ),
        "a Hello without a cookie gets a Retry and nothing else"
    );
    let s = net.server.stats();
    assert_eq!((s.handshakes_completed, s.handshakes_failed), (0, 0));
    assert_eq!(net.server.connection_count(), 0);
    // The Retry is smaller than the Hello it answers: no amplification.
    assert!(answer[0].1.len() < hello[0].1.len());
}
