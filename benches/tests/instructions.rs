//! The instruction-count benchmark on one case in its quick mode (when valgrind is on
//! `PATH`; otherwise the test says SKIPPED), and its failures when valgrind or the
//! latency binary is missing.

use std::process::Command;

use benches::harness::{Kind, Transport};
use benches::instructions::{format_table, latency_binary, run, Args};

fn valgrind_on_path() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Raw tokio UDP, 300 and 900 calls under callgrind: a positive, plausible count of
/// user-space instructions per round trip (a release round trip of both sides is about
/// 9,000; an unoptimised build several times that).
#[test]
fn quick_counts_raw_udp_round_trips() {
    if !valgrind_on_path() {
        eprintln!("SKIPPED: valgrind is not on PATH");
        return;
    }
    let args = Args::parse_args([
        "--quick",
        "--only",
        "raw tokio UDP",
        "--latency",
        env!("CARGO_BIN_EXE_latency"),
        "--silent",
    ])
    .expect("valid arguments");
    let report = run(&args).expect("instruction count");
    assert_eq!((report.calls_low, report.calls_high), (300, 900));
    assert_eq!(report.rows.len(), 1, "{report:?}");
    let row = &report.rows[0];
    eprintln!(
        "raw tokio UDP: {:.0} instructions per round trip",
        row.per_call
    );
    assert_eq!(
        (row.case.as_str(), row.kind, row.transport),
        ("raw tokio UDP ping-pong", Kind::Raw, Transport::Udp)
    );
    assert!(row.total_high > row.total_low, "{row:?}");
    assert!(
        (1_000.0..200_000.0).contains(&row.per_call),
        "implausible instructions per round trip: {row:?}"
    );
    let expected = (row.total_high - row.total_low) as f64 / 600.0;
    assert!((row.per_call - expected).abs() < 1e-6, "{row:?}");
    assert_eq!(row.ratio_to_floor, Some(1.0));
    let table = format_table(&report);
    assert!(
        table
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("raw tokio UDP ping-pong")
                && l.contains(&format!("{:.0}", row.per_call))
                && l.ends_with("floor")),
        "{table}"
    );
}

#[test]
fn missing_valgrind_is_a_clear_error() {
    let args = Args::parse_args([
        "--quick",
        "--valgrind",
        "/nonexistent/valgrind",
        "--latency",
        env!("CARGO_BIN_EXE_latency"),
    ])
    .expect("valid arguments");
    let err = run(&args).expect_err("no valgrind");
    let msg = err.to_string();
    assert!(
        msg.contains("valgrind is needed") && msg.contains("apt-get install valgrind"),
        "{msg}"
    );
}

#[test]
fn missing_latency_binary_says_how_to_build_it() {
    let args = Args::parse_args(["--latency", "/nonexistent/latency"]).expect("valid arguments");
    let msg = latency_binary(&args).expect_err("no binary").to_string();
    assert!(
        msg.contains("cargo build --release -p benches --bins"),
        "{msg}"
    );
}
