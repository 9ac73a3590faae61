//! The peer comparison tool: the latency tool's echo through tonic and tarpc, with the
//! raw tokio TCP floor of the same run, in the latency tool's table and JSON format.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- --json target/peers.json
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use benches::harness::{format_table, write_svg, CaseResult, Kind, Plan, Report, Transport};
use benches::latency::{make_case, run_case, StackOptions};
use clap::Parser;
use peers::{run_peer, Peer};

/// Measure tonic and tarpc echo calls (and the raw TCP floor) like the latency tool.
#[derive(Debug, Parser)]
#[command(name = "peers", about)]
struct Args {
    /// Payload sizes in bytes [default: 32,4096,65536; --quick: 32].
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Calls in flight [default: 1,32; --quick: 1,4].
    #[arg(long, value_delimiter = ',')]
    inflight: Option<Vec<usize>>,
    /// Only the cases whose name contains one of these ("tonic", "tarpc", "raw").
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Measured calls per case [default: 20000; --quick: 100].
    #[arg(long)]
    iterations: Option<u64>,
    /// Warm-up calls per case [default: iterations / 10].
    #[arg(long)]
    warmup: Option<u64>,
    /// Longest measured window per case in ms (0 = no limit).
    #[arg(long, default_value_t = 3000)]
    duration_ms: u64,
    /// Worker threads of the shared runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Few calls, 32 B only.
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the CDF plot here.
    #[arg(long, default_value = "target/peers.svg")]
    svg: PathBuf,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let sizes = args.sizes.clone().unwrap_or_else(|| {
        if args.quick {
            vec![32]
        } else {
            vec![32, 4096, 65_536]
        }
    });
    let inflight =
        args.inflight
            .clone()
            .unwrap_or_else(|| if args.quick { vec![1, 4] } else { vec![1, 32] });
    let iterations = args
        .iterations
        .unwrap_or(if args.quick { 100 } else { 20_000 })
        .max(1);
    let plan = Plan {
        warmup: args.warmup.unwrap_or(iterations / 10),
        iterations,
        max_duration: (args.duration_ms > 0).then(|| Duration::from_millis(args.duration_ms)),
    };
    let wants = |name: &str| {
        let name = name.to_lowercase();
        args.only.as_ref().is_none_or(|o| {
            o.iter()
                .any(|o| !o.is_empty() && name.contains(&o.to_lowercase()))
        })
    };
    let mut results = Vec::new();
    for &size in &sizes {
        for &n in &inflight {
            let raw = make_case(Kind::Raw, Transport::Tcp, size, n, None, args.threads);
            let mut todo: Vec<(Option<Peer>, benches::harness::Case)> = Vec::new();
            if wants(&raw.name) {
                todo.push((None, raw));
            }
            for peer in [Peer::Tonic, Peer::Tarpc] {
                if wants(peer.name()) {
                    todo.push((Some(peer), peer.case(size, n, args.threads)));
                }
            }
            for (peer, case) in todo {
                eprint!("[{:>2}] {} ... ", results.len() + 1, case.label());
                let started = Instant::now();
                let m = match peer {
                    Some(p) => run_peer(p, &case, &plan),
                    None => run_case(&case, &plan, StackOptions::default()),
                }
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", case.label())))?;
                let r = CaseResult::new(case, &m);
                eprintln!(
                    "p50 {:.1} µs, {:.0} calls/s ({:.1} s)",
                    r.p50_us,
                    r.calls_per_sec,
                    started.elapsed().as_secs_f64()
                );
                results.push(r);
            }
        }
    }
    let report = Report::new("peers", results);
    println!(
        "\nround trips on loopback, client and server in one process (one multi-thread runtime, {} workers); \
         {} calls per case after {} warm-up calls (at most {} ms each)\n",
        args.threads, plan.iterations, plan.warmup, args.duration_ms
    );
    print!("{}", format_table(&report.results));
    write_svg(&args.svg, "round-trip latency CDF (peers)", &report.results)?;
    println!("\nCDF plot: {}", args.svg.display());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("JSON: {}", path.display());
    }
    Ok(())
}
