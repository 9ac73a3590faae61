//! Acceptance: over many seeds and four loss settings, an echo client and server
//! exchange random messages over a hostile simulated network; every message arrives
//! exactly once, intact, in both directions, and every run ends with nothing in flight
//! within the virtual-time cap.
//!
//! `SIM_SEEDS=n` overrides the number of seeds per setting (default 200, the minimum the
//! acceptance asks for; e.g. `SIM_SEEDS=5000 cargo test --release --test sim_delivery`).
//!
//! The `sealed_*` settings run the same with every datagram sealed (PROTOCOL.md 9.10): the
//! network's duplicates then end in the replay window and its corruption in the AEAD,
//! and every message is still delivered exactly once (a quarter of the seeds: each run
//! makes a Noise handshake).

mod sim;

use std::time::Duration;

use rpc_transport_udp::proto::packet::max_fragment_payload;
use rpc_transport_udp::proto::{Config, Endpoint, EndpointStats, PreSharedKey, Security};
use sim::{addr, App, Client, Limits, LinkConfig, NetStats, Rng, Server, Sim};

/// Messages each client sends per seed (each echoed back).
const MESSAGES: usize = 8;
const MAX_MESSAGE: usize = 20_000;

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

#[derive(Default)]
struct Totals {
    runs: u64,
    messages: u64,
    net: NetStats,
    retransmits: u64,
    rto_timeouts: u64,
    duplicates: u64,
    checksum_failures: u64,
    replays_dropped: u64,
    forged_dropped: u64,
    max_time: Duration,
    total_time: Duration,
}

impl Totals {
    fn add_endpoint(&mut self, s: EndpointStats) {
        self.retransmits += s.retransmits;
        self.rto_timeouts += s.rto_timeouts;
        self.duplicates += s.duplicates;
        self.checksum_failures += s.checksum_failures;
        self.replays_dropped += s.replays_dropped;
        self.forged_dropped += s.forged_dropped;
    }
}

fn config(loss: f64) -> Config {
    if loss == 0.0 {
        return Config::default();
    }
    // With 30-50 % loss in each direction a peer can legitimately hear nothing for more
    // than the default 10 s peer timeout (the RTO backs off to 2 s, and a round trip
    // succeeds with probability (1 - loss)^2), and a datagram can need more than the
    // default 64 transmissions; incomplete messages can also wait longer than 30 s. These
    // runs are about delivery, not about giving up, so every give-up limit is raised far
    // above what the runs need (the timer tests check the limits themselves).
    let mut cfg = Config::default()
        .peer_timeout(Duration::from_secs(3_600))
        .idle_timeout(Duration::from_secs(7_200))
        .max_retransmits(100_000);
    cfg.reassembly.timeout = Duration::from_secs(3_600);
    cfg
}

/// One seed: returns the error (with the seed) instead of panicking, so the caller can
/// name the setting too.
fn run_seed(seed: u64, loss: f64, sealed: bool, totals: &mut Totals) -> Result<(), String> {
    let link = if loss == 0.0 {
        LinkConfig::lan()
    } else {
        LinkConfig::hostile(loss)
    };
    let mut sim = Sim::new(seed, link);
    let cfg = config(loss);
    let frag = max_fragment_payload(cfg.max_datagram);
    let (ca, sa) = (addr(1000), addr(2000));
    let (client_cfg, server_cfg) = if sealed {
        let psk = PreSharedKey::new("sim", [seed as u8; 32]).expect("id");
        (
            cfg.clone().security(Security::client_psk(psk.clone())),
            cfg.security(Security::server_psk([psk])),
        )
    } else {
        (cfg.clone(), cfg)
    };
    // Incarnations (and so connection ids) vary with the seed too.
    let c = sim.add(ca, Endpoint::new(client_cfg, seed * 2 + 1, false));
    let s = sim.add(sa, Endpoint::new(server_cfg, seed * 2 + 2, true));
    assert_eq!((c, s), (0, 1));

    let mut rng = Rng::new(seed ^ 0xabcd);
    let messages = Client::random_messages(&mut rng, MESSAGES, MAX_MESSAGE, frag, 1);
    let mut client = Client::new(sa, messages, true);
    let now = sim.now();
    client.start(sim.ep(c), now);
    let mut server = Server {
        echo: true,
        expect: MESSAGES,
        ..Server::default()
    };
    let limits = Limits {
        max_iterations: 1_000_000,
        max_time: Duration::from_secs(3_000),
    };
    let run_time = {
        let mut apps: [&mut dyn App; 2] = [&mut client, &mut server];
        sim.run(&mut apps, limits, |_| true)?;
        let run_time = sim.elapsed;
        // Let stragglers (duplicates, late retransmissions) arrive: none may be
        // delivered again.
        let until = sim.elapsed + Duration::from_millis(50);
        sim.run_to(&mut apps, until)?;
        run_time
    };
    let fail = |what: String| format!("seed {seed}: {what}");
    server
        .received
        .check_exactly_once(&client.sent, "server")
        .map_err(fail)?;
    client
        .echoes
        .check_exactly_once(&client.sent, "client")
        .map_err(fail)?;
    if let Some(ev) = &client.closed {
        return Err(fail(format!("client connection closed: {ev:?}")));
    }
    if let Some(ev) = server.closed.first() {
        return Err(fail(format!("server connection closed: {ev:?}")));
    }
    let h = client.handle.expect("started");
    let cs = sim
        .ep(c)
        .connection_stats(h)
        .ok_or_else(|| fail("client connection freed".into()))?;
    if cs.in_flight != 0 {
        return Err(fail(format!("client in_flight {}", cs.in_flight)));
    }
    if server.accepted.len() != 1 {
        return Err(fail(format!("server accepted {:?}", server.accepted)));
    }
    let ss = sim.ep(s).connection_stats(server.accepted[0].0);
    if ss.is_none_or(|s| s.in_flight != 0) {
        return Err(fail(format!("server connection stats {ss:?}")));
    }

    totals.runs += 1;
    totals.messages += 2 * MESSAGES as u64;
    totals.net += sim.net.stats;
    totals.add_endpoint(sim.ep(c).stats());
    totals.add_endpoint(sim.ep(s).stats());
    totals.max_time = totals.max_time.max(run_time);
    totals.total_time += run_time;
    Ok(())
}

fn run_setting(name: &str, loss: f64) -> Totals {
    run_settings(name, loss, false, seeds())
}

fn run_sealed(name: &str, loss: f64) -> Totals {
    run_settings(name, loss, true, seeds().div_ceil(4))
}

fn run_settings(name: &str, loss: f64, sealed: bool, n: u64) -> Totals {
    let mut totals = Totals::default();
    for seed in 0..n {
        // Different settings use different seeds so they explore different runs.
        let seed = seed + (loss * 1_000_000.0) as u64;
        if let Err(e) = run_seed(seed, loss, sealed, &mut totals) {
            panic!("[{name}] {e}");
        }
    }
    let t = &totals;
    eprintln!(
        "[{name}] {} seeds, {} messages delivered exactly once | network: {} sent, {} lost, \
         {} duplicated, {} reordered, {} corrupted | endpoints: {} retransmits, {} RTO \
         timeouts, {} duplicates received, {} checksum failures, {} replays and {} forgeries \
         dropped | virtual time: max {:?}, mean {:?}",
        t.runs,
        t.messages,
        t.net.sent,
        t.net.lost,
        t.net.duplicated,
        t.net.reordered,
        t.net.corrupted,
        t.retransmits,
        t.rto_timeouts,
        t.duplicates,
        t.checksum_failures,
        t.replays_dropped,
        t.forged_dropped,
        t.max_time,
        t.total_time / t.runs.max(1) as u32,
    );
    assert_eq!(totals.runs, n);
    totals
}

/// Checks that a lossy setting really was hostile, so it cannot pass vacuously.
fn assert_hostile(t: &Totals) {
    assert!(t.net.lost > 0 && t.retransmits > 0, "no loss/retransmits");
    assert!(t.rto_timeouts > 0, "no retransmission timeout fired");
    assert!(t.net.duplicated > 0 && t.duplicates > 0, "no duplicates");
    assert!(t.net.reordered > 0, "no reordering");
    assert!(
        t.net.corrupted > 0 && t.checksum_failures > 0,
        "no corruption detected"
    );
    // Every corrupted datagram that reached an endpoint was caught by the CRC (some were
    // also lost on a later hop or arrived after the run; none may be accepted).
    assert!(t.checksum_failures <= t.net.corrupted);
}

#[test]
fn delivery_loss_0_percent() {
    let t = run_setting("loss 0%", 0.0);
    // Jitter only: nothing is lost, corrupted or duplicated by the network.
    assert_eq!(t.net.lost + t.net.corrupted + t.net.duplicated, 0);
    assert_eq!(t.checksum_failures, 0);
}

#[test]
fn delivery_loss_10_percent() {
    assert_hostile(&run_setting("loss 10%", 0.10));
}

#[test]
fn delivery_loss_30_percent() {
    assert_hostile(&run_setting("loss 30%", 0.30));
}

#[test]
fn delivery_loss_50_percent() {
    assert_hostile(&run_setting("loss 50%", 0.50));
}

/// As [`assert_hostile`], for sealed runs: duplicates the network made are caught by the
/// replay window before the reliability layer, corruption by the AEAD (or, in the clear
/// handshake, by the CRC).
fn assert_hostile_sealed(t: &Totals) {
    assert!(t.net.lost > 0 && t.retransmits > 0, "no loss/retransmits");
    assert!(t.rto_timeouts > 0, "no retransmission timeout fired");
    assert!(
        t.net.duplicated > 0 && t.replays_dropped > 0,
        "no replays dropped"
    );
    assert!(t.net.reordered > 0, "no reordering");
    assert!(
        t.net.corrupted > 0 && t.forged_dropped > 0,
        "no forgery dropped"
    );
    assert!(t.checksum_failures + t.forged_dropped <= t.net.corrupted);
}

#[test]
fn sealed_delivery_loss_0_percent() {
    let t = run_sealed("sealed, loss 0%", 0.0);
    assert_eq!(t.net.lost + t.net.corrupted + t.net.duplicated, 0);
    assert_eq!(
        t.forged_dropped + t.replays_dropped + t.checksum_failures,
        0
    );
}

#[test]
fn sealed_delivery_loss_10_percent() {
    assert_hostile_sealed(&run_sealed("sealed, loss 10%", 0.10));
}

#[test]
fn sealed_delivery_loss_30_percent() {
    assert_hostile_sealed(&run_sealed("sealed, loss 30%", 0.30));
}
