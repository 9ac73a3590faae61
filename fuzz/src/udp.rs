//! The reliable-UDP core: the packet parser (parse, then emit gives the datagram back)
//! and the sans-IO endpoint driven by a fuzzer-chosen program of datagrams, time steps,
//! losses and duplicates from honest and attacker addresses, checking the endpoint's
//! own accounting.
//!
//! Written against the current public API of `rpc_transport_udp::proto`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::packet::Packet;
use rpc_transport_udp::proto::{Config, Endpoint, Event, PreSharedKey, Security};

use crate::Choices;

fn fix_crc(datagram: &mut [u8]) {
    rpc_transport_udp::proto::packet::seal_checksum(datagram);
}

/// The packet-parser target: the first byte says whether to fix the CRC first.
pub fn packet(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut datagram = rest.to_vec();
    if mode & 1 == 1 {
        fix_crc(&mut datagram);
    }
    let datagram = Bytes::from(datagram);
    if let Ok(packet) = Packet::parse(&datagram) {
        let mut out = Vec::new();
        packet.emit(&mut out);
        assert_eq!(out.len(), packet.encoded_len());
        assert_eq!(&out[..], &datagram[..], "emit(parse(x)) != x");
    }
}

/// Datagrams in flight one way, bounded like a real link's queue.
struct Link {
    queue: VecDeque<(SocketAddr, Bytes)>,
}

impl Link {
    const MAX: usize = 256;

    fn push(&mut self, from: SocketAddr, d: Bytes) {
        if self.queue.len() < Self::MAX {
            self.queue.push_back((from, d));
        }
    }
}

fn drain(ep: &mut Endpoint, now: Instant, link: &mut Link, from: SocketAddr) {
    let mut out = Vec::new();
    for _ in 0..1024 {
        out.clear();
        match ep.poll_transmit(now, &mut out) {
            Some(_to) => link.push(from, Bytes::copy_from_slice(&out)),
            None => break,
        }
    }
    take_events(ep);
}

/// The application side: takes every event and every delivered message (the core's
/// queue is bounded; a reader that never reads would only pause the peer).
fn take_events(ep: &mut Endpoint) {
    while let Some((h, e)) = ep.poll_event() {
        if matches!(e, Event::Readable) {
            while ep.poll_message(h).is_some() {}
        }
    }
}

fn check(ep: &mut Endpoint, cfg: &Config, now: Instant) {
    assert!(ep.reassembly_bytes() <= cfg.global_reassembly_budget);
    assert!(ep.connection_count() <= cfg.max_connections);
    if let Some(t) = ep.poll_timeout() {
        // A deadline in the past would be a timer that never makes progress once
        // handled; handle_timeout(now) must have consumed it.
        assert!(t + Duration::from_secs(3600) > now);
    }
}

/// The endpoint target: a client and a server endpoint, an attacker, and a program.
pub fn endpoint(data: &[u8]) {
    let mut c = Choices::new(data);
    let mut cfg = Config::default();
    cfg.max_connections = 8;
    cfg.global_reassembly_budget = 256 << 10;
    let client_addr: SocketAddr = "127.0.0.1:1000".parse().unwrap();
    let server_addr: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    let attackers: [SocketAddr; 3] = [
        "127.0.0.2:1".parse().unwrap(),
        "127.0.0.3:2".parse().unwrap(),
        client_addr,
    ];
    let start = Instant::now();
    let mut now = start;
    // The first byte's low bit seals both endpoints (PROTOCOL.md 9.10).
    let (client_cfg, server_cfg) = if c.byte() % 2 == 1 {
        let psk = PreSharedKey::new("fuzz", [3; 32]).expect("a valid id");
        (
            cfg.clone().security(Security::client_psk(psk.clone())),
            cfg.clone().security(Security::server_psk([psk])),
        )
    } else {
        (cfg.clone(), cfg.clone())
    };
    let mut server = Endpoint::new(server_cfg, 7, true);
    let mut client = Endpoint::new(client_cfg, 9, false);
    // The last datagram the client sent, for replays and bit flips.
    let mut captured: Option<(SocketAddr, Bytes)> = None;
    let conn = client.connect(server_addr, now);
    let mut to_server = Link {
        queue: VecDeque::new(),
    };
    let mut to_client = Link {
        queue: VecDeque::new(),
    };
    let mut steps = 0;
    while !c.is_empty() && steps < 2000 {
        steps += 1;
        match c.byte() % 8 {
            0 => {
                let len = c.below(20_000);
                let _ = client.send(conn, Bytes::from(vec![c.byte(); len]));
            }
            1 => {
                now += Duration::from_millis(c.below(3000) as u64);
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
            2 | 3 => {
                // Deliver (2) or lose (3) the next datagram to the server.
                if let Some((from, d)) = to_server.queue.pop_front() {
                    captured = Some((from, d.clone()));
                    if c.byte() % 2 == 0 {
                        server.handle_datagram(now, from, d);
                    }
                }
            }
            4 => {
                // Duplicate the next datagram to the client, delivering both.
                if let Some((from, d)) = to_client.queue.pop_front() {
                    client.handle_datagram(now, from, d.clone());
                    client.handle_datagram(now, from, d);
                }
            }
            5 => {
                if let Some((from, d)) = to_client.queue.pop_front() {
                    client.handle_datagram(now, from, d);
                }
            }
            6 if c.byte() % 2 == 0 => {
                // A captured datagram again: replayed as is, or with one bit flipped.
                if let Some((from, d)) = &captured {
                    let mut d = d.to_vec();
                    if !d.is_empty() && c.byte() % 2 == 0 {
                        let i = c.below(d.len());
                        d[i] ^= 1 << (c.byte() % 8);
                    }
                    server.handle_datagram(now, *from, Bytes::from(d));
                }
            }
            6 => {
                // An attacker's datagram (valid CRC) to the server.
                let from = attackers[c.below(attackers.len())];
                let mut d = c.bytes(1500).to_vec();
                fix_crc(&mut d);
                server.handle_datagram(now, from, Bytes::from(d));
            }
            _ => {
                // An attacker spoofing the server to the client.
                let mut d = c.bytes(1500).to_vec();
                fix_crc(&mut d);
                client.handle_datagram(now, server_addr, Bytes::from(d));
            }
        }
        drain(&mut client, now, &mut to_server, client_addr);
        drain(&mut server, now, &mut to_client, server_addr);
        check(&mut client, &cfg, now);
        check(&mut server, &cfg, now);
    }
    if let Some(stats) = client.connection_stats(conn) {
        assert!(stats.in_flight <= u64::from(cfg.send_window), "{stats:?}");
    }
    // Silence: after the timeouts everything is freed on both sides.
    for _ in 0..200 {
        now += Duration::from_secs(5);
        client.handle_timeout(now);
        server.handle_timeout(now);
        let mut out = Vec::new();
        while client.poll_transmit(now, &mut out).is_some() {
            out.clear();
        }
        while server.poll_transmit(now, &mut out).is_some() {
            out.clear();
        }
        take_events(&mut client);
        take_events(&mut server);
        if client.connection_count() == 0 && server.connection_count() == 0 {
            break;
        }
    }
    assert_eq!(server.connection_count(), 0, "server kept a connection");
    assert_eq!(client.connection_count(), 0, "client kept a connection");
    assert_eq!(server.reassembly_bytes(), 0);
    assert_eq!(client.reassembly_bytes(), 0);
}
