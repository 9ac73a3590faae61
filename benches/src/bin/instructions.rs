//! The instruction-count benchmark: user-space instructions per round trip (32 B, one
//! call in flight) of raw tokio UDP and TCP (the floors), our UDP and TCP transports
//! (frames only) and RPC calls over both, counted by valgrind's callgrind (see
//! [`benches::instructions`] for how, and docs/PERFORMANCE.md for results).
//!
//! It runs the `latency` binary next to itself, so build both first:
//!
//! ```text
//! cargo build --release -p benches --bins
//! cargo run --release -p benches --bin instructions                    # 2000 and 6000 calls
//! cargo run --release -p benches --bin instructions -- --quick --json target/instructions-quick.json
//! ```
//!
//! (`--profile bench` instead of `--release` works the same: both build into
//! `target/release/`.) Needs valgrind on `PATH` (or `--valgrind`); fails with a message
//! saying so if not.

use benches::instructions::{format_table, run, Args};
use clap::Parser;

fn main() {
    let args = Args::parse();
    let report = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("instructions: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "\nuser-space instructions per round trip ({} B, 1 in flight, busy-poll off, client and server in one \
         process, all threads), counted by callgrind: (total of {} calls − total of {} calls) / {}, \
         {} warm-up calls in both; {}\n",
        report.payload,
        report.calls_high,
        report.calls_low,
        report.calls_high - report.calls_low,
        report.warmup,
        report.valgrind
    );
    print!("{}", format_table(&report));
    if let Some(path) = &args.json {
        if let Err(e) = report.write_json(path) {
            eprintln!("instructions: writing {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("JSON: {}", path.display());
    }
}
