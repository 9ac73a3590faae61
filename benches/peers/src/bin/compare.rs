//! Reads the JSON of a latency-tool run (ours) and of a peers run (theirs) and prints
//! the issue's ratios: our p50 over tonic's and tarpc's (32 B, 1 call in flight, no
//! busy-polling), and our calls/s over tarpc's (32 B, 32 in flight), each as measured
//! and normalized by the raw tokio TCP floor of its own run (the two runs are separate
//! processes, so the floors show how much the machine drifted between them).
//!
//! ```text
//! compare target/ours.json target/peers.json [--svg target/compare.svg]
//! ```

use std::path::PathBuf;

use benches::harness::{write_svg, Case, CaseResult, Kind, Report, Transport};
use clap::Parser;

/// Print our-vs-peer ratios from two JSON reports.
#[derive(Debug, Parser)]
#[command(name = "compare", about)]
struct Args {
    /// JSON written by `latency --json`.
    ours: PathBuf,
    /// JSON written by `peers --json`.
    theirs: PathBuf,
    /// Calls in flight of the throughput comparison.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Also plot ours and theirs (32 B rows, no busy-polling) into one SVG.
    #[arg(long)]
    svg: Option<PathBuf>,
}

fn pick<'a>(
    report: &'a Report,
    kind: Kind,
    transport: Transport,
    name: Option<&str>,
    n: usize,
) -> Option<&'a CaseResult> {
    report.find(|c: &Case| {
        c.kind == kind
            && c.transport == transport
            && name.is_none_or(|s| c.name.contains(s))
            && c.payload == 32
            && c.in_flight == n
            && !c.busy()
    })
}

fn floor(report: &Report, n: usize) -> Option<&CaseResult> {
    pick(report, Kind::Raw, Transport::Tcp, None, n)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let ours = Report::read_json(&args.ours)?;
    let theirs = Report::read_json(&args.theirs)?;
    let n = args.inflight;

    println!("ours:   {} ({})", args.ours.display(), ours.command);
    println!("theirs: {} ({})", args.theirs.display(), theirs.command);
    for (label, k) in [("1 in flight", 1), (&*format!("{n} in flight"), n)] {
        if let (Some(a), Some(b)) = (floor(&ours, k), floor(&theirs, k)) {
            println!(
                "raw tokio TCP floor, 32 B, {label}: ours {:.1} µs / {:.0} calls/s, theirs {:.1} µs / {:.0} calls/s (drift between the runs: {:.2}x)",
                a.p50_us, a.calls_per_sec, b.p50_us, b.calls_per_sec, a.p50_us / b.p50_us
            );
        }
    }
    println!();
    println!(
        "{:<44} {:>9} {:>9} {:>8} {:>12}  target",
        "32 B, 1 in flight, p50", "ours µs", "theirs µs", "ratio", "floor-norm."
    );
    let (of1, tf1) = (floor(&ours, 1), floor(&theirs, 1));
    for peer in ["tonic", "tarpc"] {
        let Some(t) = pick(&theirs, Kind::Peer, Transport::Tcp, Some(peer), 1) else {
            continue;
        };
        for transport in [Transport::Tcp, Transport::Udp] {
            let Some(o) = pick(&ours, Kind::Rpc, transport, None, 1) else {
                continue;
            };
            let ratio = o.p50_us / t.p50_us;
            let norm = match (of1, tf1) {
                (Some(of), Some(tf)) => {
                    format!("{:.2}x", (o.p50_us / of.p50_us) / (t.p50_us / tf.p50_us))
                }
                _ => "n/a".into(),
            };
            let (target, ok) = if peer == "tonic" {
                ("<= 0.5x", ratio <= 0.5)
            } else {
                ("< 1x", ratio < 1.0)
            };
            println!(
                "{:<44} {:>9.1} {:>9.1} {:>7.2}x {:>12}  {target}: {}",
                format!("our rpc over {transport} / {peer}"),
                o.p50_us,
                t.p50_us,
                ratio,
                norm,
                verdict(ok)
            );
        }
    }
    println!();
    println!(
        "{:<44} {:>9} {:>9} {:>8} {:>12}  target",
        format!("32 B, {n} in flight, calls/s"),
        "ours",
        "theirs",
        "ratio",
        "floor-norm."
    );
    let (ofn, tfn) = (floor(&ours, n), floor(&theirs, n));
    for peer in ["tarpc", "tonic"] {
        let Some(t) = pick(&theirs, Kind::Peer, Transport::Tcp, Some(peer), n) else {
            continue;
        };
        for transport in [Transport::Tcp, Transport::Udp] {
            let Some(o) = pick(&ours, Kind::Rpc, transport, None, n) else {
                continue;
            };
            let ratio = o.calls_per_sec / t.calls_per_sec;
            let norm = match (ofn, tfn) {
                (Some(of), Some(tf)) => format!(
                    "{:.2}x",
                    (o.calls_per_sec / of.calls_per_sec) / (t.calls_per_sec / tf.calls_per_sec)
                ),
                _ => "n/a".into(),
            };
            let target = if peer == "tarpc" {
                format!(">= 1.2x: {}", verdict(ratio >= 1.2))
            } else {
                "-".to_owned()
            };
            println!(
                "{:<44} {:>9.0} {:>9.0} {:>7.2}x {:>12}  {target}",
                format!("our rpc over {transport} / {peer}"),
                o.calls_per_sec,
                t.calls_per_sec,
                ratio,
                norm
            );
        }
    }
    if let Some(path) = &args.svg {
        let rows: Vec<CaseResult> = ours
            .results
            .iter()
            .filter(|r| r.case.kind == Kind::Rpc || r.case.kind == Kind::Raw)
            .chain(theirs.results.iter().filter(|r| r.case.kind == Kind::Peer))
            .filter(|r| r.case.payload == 32 && !r.case.busy())
            .cloned()
            .collect();
        write_svg(path, "ours vs tonic and tarpc, 32 B", &rows)?;
        println!("\nCDF plot: {}", path.display());
    }
    Ok(())
}
