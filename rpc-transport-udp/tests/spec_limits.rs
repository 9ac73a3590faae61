//! docs/PROTOCOL.md 9.7, the table of limits and timers, against the code's defaults:
//! each row's default column must show the value `Config::default()` has.

use std::time::Duration;

use rpc_transport_udp::proto::config::{AMPLIFICATION_FACTOR, MAX_DATAGRAM};
use rpc_transport_udp::proto::connection::MAX_RETRIES_FOLLOWED;
use rpc_transport_udp::proto::Config;

/// The default column of the 9.7 row named `name`.
fn default_of(name: &str) -> String {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let table = doc
        .split("\n### 9.7 Limits and timers\n")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("PROTOCOL.md has 9.7");
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row `{name}` in PROTOCOL.md 9.7"));
    row.split('|').nth(2).unwrap().trim().to_owned()
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn s(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_limits_table_shows_the_code_s_defaults() {
    let c = Config::default();
    let rows: Vec<(&str, Vec<String>)> = vec![
        (
            "max datagram",
            vec![
                format!("{} bytes", c.max_datagram),
                format!(
                    "{} toward a loopback peer",
                    thousands(c.loopback_max_datagram.unwrap())
                ),
            ],
        ),
        ("send window", vec![format!("{} datagrams", c.send_window)]),
        (
            "receive window",
            vec![format!("{} sequence numbers", c.recv_window)],
        ),
        ("send buffer", vec![format!("{} MiB", c.send_buffer >> 20)]),
        ("delayed ack", vec![ms(c.ack_delay)]),
        ("ack every", vec![format!("{} datagrams", c.ack_every)]),
        ("reorder threshold", vec![c.reorder_threshold.to_string()]),
        (
            "RTO initial / min / max / G",
            vec![format!(
                "{} / {} / {} / {}",
                ms(c.rtt.initial_rto),
                ms(c.rtt.min_rto),
                s(c.rtt.max_rto),
                ms(c.rtt.granularity)
            )],
        ),
        (
            "max message",
            vec![format!("{} MiB", c.reassembly.max_message >> 20)],
        ),
        (
            "reassembly budget",
            vec![format!(
                "{} MiB per connection, {} MiB per endpoint",
                c.reassembly.per_peer_budget >> 20,
                c.global_reassembly_budget >> 20
            )],
        ),
        ("reassembly timeout", vec![s(c.reassembly.timeout)]),
        (
            "undelivered messages",
            vec![format!("{} per connection", c.max_undelivered)],
        ),
        ("keepalive", vec![s(c.keepalive_interval)]),
        ("peer timeout", vec![s(c.peer_timeout)]),
        ("max retransmits", vec![c.max_retransmits.to_string()]),
        ("idle timeout", vec![s(c.idle_timeout)]),
        (
            "connection limit",
            vec![format!("{} per endpoint", thousands(c.max_connections))],
        ),
        (
            "connections per IP",
            vec![format!(
                "{} per client IP address",
                c.max_connections_per_ip
            )],
        ),
        ("cookie lifetime", vec![s(c.cookie_lifetime)]),
        (
            "replay quarantine",
            vec![format!("{} closed connections", c.max_quarantined)],
        ),
        (
            "amplification factor",
            vec![AMPLIFICATION_FACTOR.to_string()],
        ),
        (
            "never-acked bound",
            vec![format!(
                "{} RTOs or {}",
                c.never_acked_retransmits,
                s(c.never_acked_timeout)
            )],
        ),
        (
            "Retries followed",
            vec![format!("{MAX_RETRIES_FOLLOWED} per connection")],
        ),
        (
            "endpoint transmits",
            vec![format!("{} datagrams", c.max_endpoint_transmits)],
        ),
    ];
    for (name, shown) in rows {
        let cell = default_of(name);
        for expected in shown {
            assert!(
                cell.contains(&expected),
                "9.7 `{name}`: `{cell}` should show `{expected}`"
            );
        }
    }
    assert!(MAX_DATAGRAM == 65_507 && include_str!("../../docs/PROTOCOL.md").contains("65,507"));
}
