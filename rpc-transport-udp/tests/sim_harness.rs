//! The simulator itself: runs are reproducible from the seed, the faults happen at the
//! configured rates, and a run that cannot finish fails with its seed instead of hanging.

mod sim;

use std::time::Duration;

use rpc_transport_udp::proto::{Config, Endpoint};
use sim::{addr, describe, ms, App, Client, Limits, LinkConfig, Rng, Server, Sim};

fn echo_run(seed: u64) -> (Vec<String>, Duration) {
    let mut sim = Sim::new(seed, LinkConfig::hostile(0.2));
    sim.net.tracing = true;
    let cfg = Config::default().peer_timeout(Duration::from_secs(600));
    sim.add(addr(1), Endpoint::new(cfg.clone(), 5, false));
    sim.add(addr(2), Endpoint::new(cfg, 6, true));
    let mut rng = Rng::new(seed);
    let msgs = Client::random_messages(&mut rng, 5, 10_000, 1088, 1);
    let mut client = Client::new(addr(2), msgs, true);
    let now = sim.now();
    client.start(sim.ep(0), now);
    let mut server = Server {
        echo: true,
        expect: 5,
        ..Server::default()
    };
    let mut apps: [&mut dyn App; 2] = [&mut client, &mut server];
    sim.run(&mut apps, Limits::default(), |_| true).unwrap();
    let trace = sim
        .net
        .trace
        .iter()
        .map(|t| format!("{:?} {}->{} {}", t.at, t.from, t.to, describe(&t.packet)))
        .collect();
    (trace, sim.elapsed)
}

#[test]
fn same_seed_same_run() {
    let a = echo_run(7);
    let b = echo_run(7);
    assert!(a.0.len() > 20);
    assert_eq!(a, b);
    assert_ne!(a.0, echo_run(8).0);
}

#[test]
fn fault_rates_match_the_configuration() {
    let link = LinkConfig {
        loss: 0.3,
        duplicate: 0.1,
        reorder: 0.2,
        reorder_extra: ms(1),
        corrupt: 0.05,
        ..LinkConfig::lan()
    };
    let mut net = sim::Net::new(3, link);
    let n = 20_000;
    for _ in 0..n {
        net.send(
            Duration::ZERO,
            sim::Datagram {
                from: addr(1),
                to: addr(2),
                bytes: bytes::Bytes::from_static(&[0u8; 64]),
            },
        );
    }
    let s = net.stats;
    let rate = |x: u64, base: u64| x as f64 / base as f64;
    assert!((rate(s.lost, n) - 0.3).abs() < 0.02, "{s:?}");
    let kept = n - s.lost;
    assert!((rate(s.duplicated, kept) - 0.1).abs() < 0.02, "{s:?}");
    let copies = kept + s.duplicated;
    assert!((rate(s.reordered, copies) - 0.2).abs() < 0.02, "{s:?}");
    assert!((rate(s.corrupted, copies) - 0.05).abs() < 0.01, "{s:?}");
    assert_eq!(net.in_transit() as u64, copies);
    // Delays stay within delay ± jitter (+ reorder_extra).
    let mut last = Duration::ZERO;
    while let Some(t) = net.next_arrival() {
        assert!(
            t >= Duration::from_micros(20) && t <= Duration::from_micros(1080),
            "{t:?}"
        );
        last = last.max(t);
        net.pop_due_for_test(t);
    }
    assert!(
        last > Duration::from_micros(80),
        "some datagrams were held back"
    );
}

#[test]
fn livelock_is_reported_with_the_seed() {
    // A server that never answers and a done condition that never holds: the run must
    // stop at the virtual-time cap and name the seed.
    let mut sim = Sim::new(4242, LinkConfig::lan());
    sim.add(addr(1), Endpoint::new(Config::default(), 1, false));
    let now = sim.now();
    sim.ep(0).connect(addr(2), now);
    let limits = Limits {
        max_iterations: 1_000_000,
        max_time: Duration::from_secs(5),
    };
    let err = sim.run(&mut [], limits, |_| false).unwrap_err();
    assert!(err.contains("seed 4242"), "{err}");
    assert!(err.contains("virtual time cap"), "{err}");
    // And with an iteration cap.
    let mut sim = Sim::new(99, LinkConfig::lan());
    sim.add(addr(1), Endpoint::new(Config::default(), 1, false));
    let now = sim.now();
    sim.ep(0).connect(addr(2), now);
    let limits = Limits {
        max_iterations: 3,
        max_time: Duration::from_secs(5),
    };
    let err = sim.run(&mut [], limits, |_| false).unwrap_err();
    assert!(
        err.contains("seed 99") && err.contains("3 iterations"),
        "{err}"
    );
}
