//! The latency tool: round-trip latency and throughput of raw tokio UDP and TCP
//! ping-pong (the floors), our UDP and TCP transports (frames only) and RPC calls over
//! both, at several payload sizes and calls in flight, with and without busy-polling,
//! measured in one run (see [`benches::latency`] for what each case measures and where
//! it runs, and docs/PERFORMANCE.md for results).
//!
//! ```text
//! cargo run --release -p benches --bin latency                      # the full matrix
//! cargo run --release -p benches --bin latency -- --quick           # CI: every kind, few calls
//! cargo run --release -p benches --bin latency -- --sizes 32 --inflight 1 --only rpc \
//!     --busy-poll off --iterations 50000 --json target/ours.json --svg target/ours.svg
//! ```
//!
//! `--pin 0` pins every thread of both sides to CPU 0, `--pin 0,1` the server's to CPU 0
//! and the client's to CPU 1 (the table's `pin` column says so per row).
//!
//! `--replot target/ours.json` prints the table of a saved report and plots it again
//! without measuring.
//!
//! Prints a table (p50/p90/p99/p99.9/max in µs, calls/s, p50 relative to the raw floor
//! of the same transport/size/concurrency/busy-poll, UDP relative to TCP), then how the
//! targets fare; writes the latency CDF of every case as SVG (`--svg`, default
//! `target/latency.svg`) and the results as JSON (`--json`).

use benches::harness::{format_table, write_svg, Report};
use benches::latency::{run, targets_summary, Args};
use clap::Parser;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.replot {
        let report = Report::read_json(path)?;
        println!(
            "{} (unix time {}): {}\n",
            path.display(),
            report.unix_time,
            report.command
        );
        print!("{}", format_table(&report.results));
        write_svg(
            &args.svg,
            "round-trip latency CDF (latency tool)",
            &report.results,
        )?;
        println!("\nCDF plot: {}", args.svg.display());
        return Ok(());
    }
    if args.prometheus {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(std::io::Error::other)?;
    }
    let report: Report = run(&args)?;
    let plan = args.plan();
    println!(
        "\nround trips on loopback, client and server in one process; {} calls per case after {} warm-up calls{}; \
         busy-poll budget {} µs; layouts: \"1 rt/{}w\" = one multi-thread runtime with {} workers for both sides, \
         \"2 rt/1t\" = server and client each on a current-thread runtime on its own thread; {}\n",
        plan.iterations,
        plan.warmup,
        plan.max_duration
            .map_or_else(String::new, |d| format!(" (at most {} ms each)", d.as_millis())),
        args.busy_poll_us,
        args.threads,
        args.threads,
        match args.pin {
            Some(p) if p.is_one_cpu() => format!(
                "pin: every thread of server and client pinned to CPU {} (sched_setaffinity)",
                p.server
            ),
            Some(p) => format!(
                "pin: every server thread pinned to CPU {}, every client thread to CPU {} (sched_setaffinity; \
                 rows without busy-polling run on the split layout)",
                p.server, p.client
            ),
            None => "pin: threads not pinned (the scheduler places them)".to_owned(),
        },
    );
    print!("{}", format_table(&report.results));
    let targets = targets_summary(&report);
    if !targets.is_empty() {
        println!("\n{targets}");
    }
    write_svg(
        &args.svg,
        "round-trip latency CDF (latency tool)",
        &report.results,
    )?;
    println!("CDF plot: {}", args.svg.display());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("JSON: {}", path.display());
    }
    Ok(())
}
