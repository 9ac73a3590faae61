//! Two endpoints joined by a perfect in-memory link exchange messages.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_transport_udp::proto::{Config, Endpoint, Event};

#[test]
fn request_reply_over_a_perfect_link() {
    let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    let mut client = Endpoint::new(Config::default(), 11, false);
    let mut server = Endpoint::new(Config::default(), 22, true);
    let mut now = Instant::now();
    let h = client.connect(b, now);
    let mut buf = Vec::new();
    let mut got_server = Vec::new();
    let mut got_client = Vec::new();
    let big = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let mut sent = false;
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(to) = client.poll_transmit(now, &mut buf) {
            assert_eq!(to, b);
            server.handle_datagram(now, a, Bytes::copy_from_slice(&buf));
            moved = true;
        }
        while let Some(to) = server.poll_transmit(now, &mut buf) {
            assert_eq!(to, a);
            client.handle_datagram(now, b, Bytes::copy_from_slice(&buf));
            moved = true;
        }
        while let Some((ch, e)) = client.poll_event() {
            match e {
                Event::Connected { server_incarnation } => {
                    assert_eq!(server_incarnation, 22);
                    client.send(ch, Bytes::from_static(b"hello")).unwrap();
                    client.send(ch, big.clone()).unwrap();
                    sent = true;
                }
                Event::Readable => {
                    got_client.extend(std::iter::from_fn(|| client.poll_message(ch)))
                }
                other => panic!("client event {other:?}"),
            }
        }
        while let Some((sh, e)) = server.poll_event() {
            match e {
                Event::Accepted { .. } => {}
                Event::Readable => {
                    while let Some(m) = server.poll_message(sh) {
                        server.send(sh, m.clone()).unwrap();
                        got_server.push(m);
                    }
                }
                other => panic!("server event {other:?}"),
            }
        }
        if got_client.len() == 2 {
            break;
        }
        if !moved {
            now = client
                .poll_timeout()
                .into_iter()
                .chain(server.poll_timeout())
                .min()
                .unwrap_or(now + Duration::from_millis(1))
                .max(now);
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
    }
    assert!(sent);
    assert_eq!(got_server, vec![Bytes::from_static(b"hello"), big.clone()]);
    assert_eq!(got_client.len(), 2);
    assert!(got_client.contains(&big));
    let stats = client.connection_stats(h).unwrap();
    assert_eq!(stats.retransmits, 0);
    assert!(stats.srtt_us < 1_000_000);
}
