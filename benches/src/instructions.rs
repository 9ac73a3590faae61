//! The instruction-count benchmark's logic (`cargo run --release -p benches --bin
//! instructions`): user-space instructions per round trip of a 32-byte call with one in
//! flight, for the latency tool's own cases, counted by valgrind's callgrind instead of
//! timed, so the number does not move with the machine's load or clock.
//!
//! For each case the latency tool (the `latency` binary of the same build) runs under
//! `valgrind --tool=callgrind` twice, making `low` and then `high` calls after the same
//! number of warm-up calls (`--duration-ms 0`: the calls are counted, never cut short by
//! a time limit; `--busy-poll off`: no spinning, whose instruction count is only a
//! measure of time). Startup, connection set-up, warm-up and shutdown cost the same in
//! both runs, so
//!
//! ```text
//! instructions per round trip = (total(high) − total(low)) / (high − low)
//! ```
//!
//! counts exactly the calls in between: both sides of the round trip (client and server
//! run in the one process), all threads, user space only (the kernel's share of every
//! system call is not counted). Each case is divided by the raw tokio floor of its
//! transport measured the same way.
//!
//! Each run's JSON report is read back: it must hold exactly the one case asked for with
//! exactly the calls asked for, or the count is refused.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::harness::{Kind, Report, Transport};
use crate::latency::case_name;

/// Payload bytes per call of every counted case.
pub const PAYLOAD: usize = 32;

/// The cases counted, in order: the floors first, then frames only, then RPC calls.
pub const CASES: [(Kind, Transport); 6] = [
    (Kind::Raw, Transport::Udp),
    (Kind::Raw, Transport::Tcp),
    (Kind::Frames, Transport::Udp),
    (Kind::Frames, Transport::Tcp),
    (Kind::Rpc, Transport::Udp),
    (Kind::Rpc, Transport::Tcp),
];

/// Count user-space instructions per round trip (32 B, 1 in flight) of the latency
/// tool's cases under valgrind's callgrind, and print a table (and optionally JSON).
#[derive(Debug, Clone, Parser)]
#[command(name = "instructions", about)]
pub struct Args {
    /// Calls of the two runs per case, LOW,HIGH [default: 2000,6000; --quick: 300,900].
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub calls: Option<Vec<u64>>,
    /// Warm-up calls of every run, the same in both [default: 200; --quick: 50].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Count only the cases whose name contains one of these (comma-separated,
    /// case-insensitive), e.g. "raw tokio UDP" or "rpc,raw". A case's ratio to its floor
    /// is shown only when that floor was counted too.
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// CI mode: 300 and 900 calls, 50 warm-up calls. Explicit flags override.
    #[arg(long)]
    pub quick: bool,
    /// The latency binary to run [default: `latency` next to this executable].
    #[arg(long)]
    pub latency: Option<PathBuf>,
    /// The valgrind executable.
    #[arg(long, default_value = "valgrind")]
    pub valgrind: PathBuf,
    /// Where callgrind's output files and the runs' reports go [default: a fresh
    /// directory under the system's temporary directory, removed afterwards].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Do not print progress to stderr.
    #[arg(long)]
    pub silent: bool,
    /// The rpc rows' call semantics, passed on to the latency tool (`--semantics`):
    /// at-most-once and exactly-once calls go through the server's reply cache.
    #[arg(long, value_enum, default_value_t = crate::latency::CallSemantics::AtLeastOnce)]
    pub semantics: crate::latency::CallSemantics,
    /// The rpc rows' handler runs on the server's worker pool (latency `--pooled`).
    #[arg(long)]
    pub pooled: bool,
}

impl Args {
    /// Arguments as if given on the command line (`args` without the program name).
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Args::try_parse_from(
            std::iter::once("instructions".into()).chain(args.into_iter().map(Into::into)),
        )
    }

    /// The two call counts, `(low, high)`, `low < high`.
    pub fn calls(&self) -> io::Result<(u64, u64)> {
        match self.calls.as_deref() {
            None if self.quick => Ok((300, 900)),
            None => Ok((2000, 6000)),
            Some(&[low, high]) if 0 < low && low < high => Ok((low, high)),
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--calls takes LOW,HIGH with 0 < LOW < HIGH, not {other:?}"),
            )),
        }
    }

    /// Warm-up calls of every run.
    pub fn warmup(&self) -> u64 {
        self.warmup.unwrap_or(if self.quick { 50 } else { 200 })
    }

    /// The cases selected, as `(kind, transport, name)`.
    pub fn cases(&self) -> Vec<(Kind, Transport, String)> {
        CASES
            .iter()
            .map(|&(k, t)| (k, t, case_name(k, t, false)))
            .filter(|(_, _, name)| {
                let name = name.to_lowercase();
                self.only.as_ref().is_none_or(|only| {
                    only.iter()
                        .any(|o| !o.trim().is_empty() && name.contains(&o.trim().to_lowercase()))
                })
            })
            .collect()
    }
}

/// One case's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The latency tool's case name, e.g. `"rpc call over UDP"`.
    pub case: String,
    /// What is measured.
    pub kind: Kind,
    /// The transport.
    pub transport: Transport,
    /// Total instructions of the run with the fewer calls.
    pub total_low: u64,
    /// Total instructions of the run with the more calls.
    pub total_high: u64,
    /// Instructions per round trip: `(total_high − total_low) / (high − low)`.
    pub per_call: f64,
    /// `per_call` divided by the raw floor's of the same transport, when it was counted
    /// (1 for the floor itself).
    pub ratio_to_floor: Option<f64>,
}

/// The results of one run of the instruction-count benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionsReport {
    /// `"instructions"`.
    pub tool: String,
    /// The command line.
    pub command: String,
    /// When the run ended, seconds since the Unix epoch.
    pub unix_time: u64,
    /// `valgrind --version`.
    pub valgrind: String,
    /// Payload bytes per call.
    pub payload: usize,
    /// Calls in flight.
    pub in_flight: usize,
    /// Calls of the first run of every case.
    pub calls_low: u64,
    /// Calls of the second run of every case.
    pub calls_high: u64,
    /// Warm-up calls of every run.
    pub warmup: u64,
    /// One row per counted case.
    pub rows: Vec<Row>,
}

impl InstructionsReport {
    /// The row of `kind` over `transport`.
    pub fn find(&self, kind: Kind, transport: Transport) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.kind == kind && r.transport == transport)
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(path, json + "\n")
    }
}

/// The total of callgrind's `Ir` event (instructions executed) in the text of a
/// callgrind output file: the `summary:` line (or, failing that, the `totals:` line),
/// at the position of `Ir` on the `events:` line (the first event if there is none).
pub fn parse_callgrind_total(text: &str) -> Result<u64, String> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let index = match field("events:") {
        Some(events) => events
            .split_whitespace()
            .position(|e| e == "Ir")
            .ok_or_else(|| format!("no Ir event on the events line: {events:?}"))?,
        None => 0,
    };
    let line = field("summary:")
        .or_else(|| field("totals:"))
        .ok_or("no summary: or totals: line (not a callgrind output file?)")?;
    let value = line
        .split_whitespace()
        .nth(index)
        .ok_or_else(|| format!("summary line {line:?} has no event #{index}"))?;
    value
        .parse()
        .map_err(|_| format!("summary value {value:?} is not a count"))
}

/// `valgrind --version` of `valgrind`, or an error saying that it is missing.
pub fn valgrind_version(valgrind: &Path) -> io::Result<String> {
    let missing = |e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "valgrind is needed to count instructions (callgrind) and `{}` cannot be run: {e}; \
                 install it (e.g. `apt-get install valgrind`)",
                valgrind.display()
            ),
        )
    };
    let out = Command::new(valgrind)
        .arg("--version")
        .output()
        .map_err(|e| missing(&e))?;
    if !out.status.success() {
        return Err(missing(&format!("`--version` exited with {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The latency binary: `args.latency`, else `latency` in this executable's directory.
pub fn latency_binary(args: &Args) -> io::Result<PathBuf> {
    let path = match &args.latency {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| io::Error::other("this executable has no directory"))?
            .join(format!("latency{}", std::env::consts::EXE_SUFFIX)),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the latency binary {} does not exist: build both first \
                 (`cargo build --release -p benches --bins`) or pass --latency",
                path.display()
            ),
        ))
    }
}

/// One callgrind run of one case: its total instruction count.
fn count(
    args: &Args,
    latency: &Path,
    dir: &Path,
    name: &str,
    calls: u64,
    warmup: u64,
) -> io::Result<u64> {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let out = dir.join(format!("callgrind.{slug}.{calls}.out"));
    let json = dir.join(format!("latency.{slug}.{calls}.json"));
    let svg = dir.join(format!("latency.{slug}.{calls}.svg"));
    // `--only` splits at commas: the part of the name before the first one selects the
    // case (the report is checked to hold exactly it).
    let only = name.split(',').next().unwrap_or(name);
    let mut cmd = Command::new(&args.valgrind);
    cmd.arg("--tool=callgrind")
        .arg("--quiet")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(latency)
        .args(["--sizes", &PAYLOAD.to_string(), "--inflight", "1"])
        .args(["--busy-poll", "off", "--duration-ms", "0", "--silent"])
        .args(["--only", only])
        .args(["--iterations", &calls.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .args(["--semantics", semantics_arg(args.semantics)])
        .args(args.pooled.then_some("--pooled"))
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg);
    let output = cmd.output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(io::Error::other(format!(
            "{name}, {calls} calls: latency under callgrind exited with {}:\n{}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let report = Report::read_json(&json)?;
    match report.results.as_slice() {
        [r] if r.case.name == name && r.calls == calls => {}
        other => {
            return Err(io::Error::other(format!(
                "{name}, {calls} calls: the latency run reported {:?}, not exactly this case with these calls",
                other
                    .iter()
                    .map(|r| (r.case.name.as_str(), r.calls))
                    .collect::<Vec<_>>()
            )))
        }
    }
    let text = std::fs::read_to_string(&out).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{name}, {calls} calls: reading callgrind's {}: {e}",
                out.display()
            ),
        )
    })?;
    parse_callgrind_total(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", out.display()),
        )
    })
}

/// Counts every selected case (progress on stderr unless `--silent`).
pub fn run(args: &Args) -> io::Result<InstructionsReport> {
    let valgrind = valgrind_version(&args.valgrind)?;
    let latency = latency_binary(args)?;
    let (low, high) = args.calls()?;
    let warmup = args.warmup();
    let cases = args.cases();
    if cases.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--only selects no case",
        ));
    }
    let (dir, temporary) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let d = std::env::temp_dir()
                .join(format!("rpc-instructions-{}-{nanos}", std::process::id()));
            (d, true)
        }
    };
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let mut rows: Vec<Row> = Vec::with_capacity(cases.len());
        for (i, (kind, transport, name)) in cases.iter().enumerate() {
            if !args.silent {
                eprint!(
                    "[{}/{}] {name}: {low} and {high} calls ... ",
                    i + 1,
                    cases.len()
                );
            }
            let started = std::time::Instant::now();
            let total_low = count(args, &latency, &dir, name, low, warmup)?;
            let total_high = count(args, &latency, &dir, name, high, warmup)?;
            if total_high <= total_low {
                return Err(io::Error::other(format!(
                    "{name}: {high} calls counted {total_high} instructions, {low} calls {total_low}: \
                     the count did not grow with the calls"
                )));
            }
            let per_call = (total_high - total_low) as f64 / (high - low) as f64;
            if !args.silent {
                eprintln!(
                    "{per_call:.0} instructions per call ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            rows.push(Row {
                case: name.clone(),
                kind: *kind,
                transport: *transport,
                total_low,
                total_high,
                per_call,
                ratio_to_floor: None,
            });
        }
        let floors: Vec<(Transport, f64)> = rows
            .iter()
            .filter(|r| r.kind == Kind::Raw)
            .map(|r| (r.transport, r.per_call))
            .collect();
        for row in &mut rows {
            row.ratio_to_floor = floors
                .iter()
                .find(|(t, _)| *t == row.transport.floor())
                .map(|(_, f)| row.per_call / f);
        }
        Ok(rows)
    })();
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(InstructionsReport {
        tool: "instructions".to_owned(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        valgrind,
        payload: PAYLOAD,
        in_flight: 1,
        calls_low: low,
        calls_high: high,
        warmup,
        rows: result?,
    })
}

/// The report as an aligned text table: per case the instructions per round trip and
/// the ratio to the raw floor of the same transport.
pub fn format_table(report: &InstructionsReport) -> String {
    let headers = ["case", "instructions/call", "vs floor"];
    let rows: Vec<[String; 3]> = report
        .rows
        .iter()
        .map(|r| {
            [
                r.case.clone(),
                format!("{:.0}", r.per_call),
                match (r.kind, r.ratio_to_floor) {
                    (Kind::Raw, _) => "floor".to_owned(),
                    (_, Some(x)) => format!("{x:.2}x"),
                    (_, None) => String::new(),
                },
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([headers[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |cells: [&str; 3]| {
        format!(
            "{:<w0$}  {:>w1$}  {:>w2$}",
            cells[0],
            cells[1],
            cells[2],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
        .trim_end()
        .to_owned()
    };
    let mut out = line(headers);
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 4));
    out.push('\n');
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2]]));
        out.push('\n');
    }
    out
}

/// The latency tool's spelling of `semantics`.
fn semantics_arg(semantics: crate::latency::CallSemantics) -> &'static str {
    use crate::latency::CallSemantics;
    match semantics {
        CallSemantics::AtLeastOnce => "at-least-once",
        CallSemantics::AtMostOnce => "at-most-once",
        CallSemantics::ExactlyOnce => "exactly-once",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head and tail of a real callgrind output file (valgrind 3.19), cut down.
    const SAMPLE: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  target/release/latency --sizes 32 --inflight 1
part: 1

desc: I1 cache:
desc: D1 cache:
desc: LL cache:

desc: Timerange: Basic block 0 - 91276153
desc: Trigger: Program termination

positions: line
events: Ir
summary: 431997606


ob=(1) /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
fl=(1) ???
fn=(1) 0x000000000001d100
0 5

totals: 431997606
";

    #[test]
    fn parses_the_summary_of_a_callgrind_file() {
        assert_eq!(parse_callgrind_total(SAMPLE), Ok(431_997_606));
        // Without a summary line, the totals line.
        let no_summary = SAMPLE.replace("summary: 431997606\n", "");
        assert_eq!(parse_callgrind_total(&no_summary), Ok(431_997_606));
        // Several events: Ir wherever it is.
        let events = SAMPLE
            .replace("events: Ir", "events: Dr Ir Dw")
            .replace("summary: 431997606", "summary: 7 1234 9");
        assert_eq!(parse_callgrind_total(&events), Ok(1234));
        assert!(parse_callgrind_total("events: Dr\nsummary: 5\n").is_err());
        assert!(parse_callgrind_total("not a callgrind file").is_err());
        assert!(parse_callgrind_total("events: Ir\nsummary: lots\n").is_err());
    }

    #[test]
    fn calls_and_cases() {
        let quick = Args::parse_args(["--quick"]).unwrap();
        assert_eq!(quick.calls().unwrap(), (300, 900));
        assert_eq!(quick.cases().len(), 6);
        let full = Args::parse_args(["--only", "raw tokio UDP,rpc"]).unwrap();
        assert_eq!(full.calls().unwrap(), (2000, 6000));
        let names: Vec<String> = full.cases().into_iter().map(|c| c.2).collect();
        assert_eq!(
            names,
            [
                "raw tokio UDP ping-pong",
                "rpc call over UDP",
                "rpc call over TCP"
            ]
        );
        assert!(Args::parse_args(["--calls", "900,300"])
            .unwrap()
            .calls()
            .is_err());
        assert!(Args::parse_args(["--calls", "5"]).unwrap().calls().is_err());
    }
}
