//! The latency tool's core in a quick mode, so the tool cannot rot: real sockets, our
//! transports and RPC stack, the table, the JSON and the SVG.

use std::path::PathBuf;
use std::sync::Mutex;

use benches::harness::{format_table, write_svg, Kind, Layout, Report, Transport};
use benches::latency::{cases, run, Args};

/// The tests spin and use both vCPUs: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Every check on a finished report: counts, percentiles, throughput, JSON, SVG.
fn check_report(report: &Report, iterations: u64, expected_cases: usize, dir: &std::path::Path) {
    assert_eq!(report.results.len(), expected_cases);
    for r in &report.results {
        let label = r.case.label();
        assert_eq!(r.calls, iterations, "{label}: recorded calls");
        assert!(r.percentiles_monotone(), "{label}: percentiles {r:?}");
        assert!(r.p50_us > 0.0, "{label}: p50");
        assert!(r.calls_per_sec > 0.0, "{label}: calls/s");
        assert!(r.window_s > 0.0, "{label}: window");
        assert!(
            r.cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
            "{label}: CDF ascending"
        );
        assert_eq!(
            r.cdf.last().map(|p| p.1),
            Some(1.0),
            "{label}: CDF ends at 1"
        );
    }

    let table = format_table(&report.results);
    assert_eq!(
        table.lines().count(),
        2 + report.results.len() + table.lines().filter(|l| l.starts_with('[')).count(),
        "{table}"
    );
    for r in &report.results {
        assert!(table.contains(&r.case.name), "{table}");
    }

    let json = dir.join("latency.json");
    report.write_json(&json).expect("JSON written");
    let back = Report::read_json(&json).expect("JSON read");
    // Exact, floats included (serde_json's float_roundtrip).
    assert!(&back == report, "JSON round trip changed the report");

    let svg = dir.join("latency.svg");
    write_svg(&svg, "test", &report.results).expect("SVG written");
    let text = std::fs::read_to_string(&svg).expect("SVG readable");
    assert!(text.starts_with("<svg"), "an SVG document");
    let lines = text
        .match_indices("<polyline")
        .filter(|(i, _)| {
            let end = text[*i..].find("/>").map_or(text.len(), |e| i + e);
            text[*i..end].contains("stroke-width=\"2\"")
        })
        .count();
    assert_eq!(lines, report.results.len(), "one CDF line per case");
}

#[test]
fn quick_raw_and_rpc_over_udp_and_tcp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let args = Args::parse_args([
        "--quick",
        "--sizes",
        "32",
        "--inflight",
        "1,4",
        "--only",
        "raw,rpc",
        "--busy-poll",
        "off",
        "--iterations",
        "200",
        "--warmup",
        "20",
        "--duration-ms",
        "0",
        "--silent",
    ])
    .expect("valid arguments");
    let selected = cases(&args);
    // raw UDP, raw TCP, rpc UDP, rpc TCP at 1 and 4 in flight.
    assert_eq!(selected.len(), 8);
    for kind in [Kind::Raw, Kind::Rpc] {
        for transport in [Transport::Udp, Transport::Tcp] {
            for n in [1, 4] {
                assert!(selected.iter().any(|c| c.kind == kind
                    && c.transport == transport
                    && c.in_flight == n
                    && c.payload == 32
                    && c.layout == Layout::Shared { workers: 2 }));
            }
        }
    }

    let report = run(&args).expect("latency run");
    check_report(&report, 200, 8, &out_dir("latency_quick_shared"));
    let table = format_table(&report.results);
    // Every rpc row is divided by its floor; UDP rows by their TCP counterpart.
    let rpc_udp = table
        .lines()
        .find(|l| l.starts_with("rpc call over UDP"))
        .expect("rpc UDP row");
    assert_eq!(rpc_udp.matches('x').count(), 2, "{table}");
}

#[test]
fn quick_busy_poll_and_frames_rows() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let args = Args::parse_args([
        "--sizes",
        "32",
        "--inflight",
        "2",
        "--busy-poll",
        "on",
        "--iterations",
        "100",
        "--warmup",
        "10",
        "--duration-ms",
        "0",
        "--silent",
    ])
    .expect("valid arguments");
    let report = run(&args).expect("latency run");
    // Every kind over both transports, each on the split layout.
    assert_eq!(report.results.len(), 6);
    assert!(report
        .results
        .iter()
        .all(|r| r.case.layout == Layout::Split && r.case.busy_poll_us == Some(50)));
    assert!(report
        .results
        .iter()
        .any(|r| r.case.name == "raw UDP, both sides spinning"));
    check_report(&report, 100, 6, &out_dir("latency_quick_busy"));
}

#[test]
fn quick_mode_selects_every_kind_and_caps_raw_udp() {
    let args = Args::parse_args(["--quick"]).expect("valid arguments");
    let all = cases(&args);
    for kind in [Kind::Raw, Kind::Frames, Kind::Rpc] {
        for transport in [Transport::Udp, Transport::Tcp] {
            for busy in [false, true] {
                assert!(all
                    .iter()
                    .any(|c| c.kind == kind && c.transport == transport && c.busy() == busy));
            }
        }
    }
    let big_udp = all
        .iter()
        .find(|c| c.kind == Kind::Raw && c.transport == Transport::Udp && c.payload == 65_536)
        .expect("64 KiB raw UDP row");
    assert_eq!(big_udp.message_bytes, Some(65_507));
    assert!(big_udp.note.as_deref().unwrap_or("").contains("65507"));
}

#[test]
fn tls_rows_measure_rpc_over_tls_against_plain_tcp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let args = Args::parse_args([
        "--sizes",
        "32",
        "--inflight",
        "1",
        "--only",
        "rpc call over t",
        "--tls",
        "--busy-poll",
        "off",
        "--iterations",
        "100",
        "--warmup",
        "10",
        "--duration-ms",
        "0",
        "--silent",
    ])
    .expect("valid arguments");
    let report = run(&args).expect("latency run");
    let names: Vec<&str> = report
        .results
        .iter()
        .map(|r| r.case.name.as_str())
        .collect();
    assert_eq!(names, ["rpc call over TCP", "rpc call over TLS"]);
    assert!(report.results.iter().all(|r| r.calls == 100));
    let table = format_table(&report.results);
    let tls = table
        .lines()
        .find(|l| l.starts_with("rpc call over TLS"))
        .expect("TLS row");
    // No raw floor was run; the TLS row is divided by its plain-TCP counterpart.
    assert_eq!(tls.matches('x').count(), 1, "{table}");
}

#[test]
fn sealed_rows_measure_rpc_over_sealed_udp_against_plain_udp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let args = Args::parse_args([
        "--sizes",
        "32",
        "--inflight",
        "1",
        "--only",
        "rpc call over",
        "--sealed",
        "--busy-poll",
        "off",
        "--iterations",
        "100",
        "--warmup",
        "10",
        "--duration-ms",
        "0",
        "--silent",
    ])
    .expect("valid arguments");
    let report = run(&args).expect("latency run");
    let names: Vec<&str> = report
        .results
        .iter()
        .map(|r| r.case.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "rpc call over UDP",
            "rpc call over TCP",
            "rpc call over sealed UDP"
        ]
    );
    assert!(report.results.iter().all(|r| r.calls == 100));
    let table = format_table(&report.results);
    let sealed = table
        .lines()
        .find(|l| l.starts_with("rpc call over sealed UDP"))
        .expect("sealed row");
    // No raw floor was run; the sealed row is divided by its plain-UDP counterpart.
    assert_eq!(sealed.matches('x').count(), 1, "{table}");
}

/// The CPUs the calling thread may run on, from `/proc/thread-self/status`.
fn allowed_cpus() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("thread status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list line")
        .trim()
        .to_owned()
}

/// `--pin 0`: every row says it ran pinned to CPU 0 and measures; the threads that run
/// the server and the client really are pinned (checked from inside the tasks, on both
/// layouts, with the harness's own runner); a pin to two CPUs moves the shared-layout
/// rows to the split layout. Skipped (with a message) where `sched_setaffinity` fails.
#[test]
fn pin_runs_every_thread_on_the_given_cpu() {
    use benches::harness::{new_histogram, run_on_layout_pinned, Measurement, Pin};

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = Pin::one(0).check() {
        eprintln!("SKIPPED: cannot pin a thread to CPU 0 here ({e})");
        return;
    }
    let before = allowed_cpus();

    // Where the server's and the client's code runs, seen from inside.
    for layout in [Layout::Shared { workers: 2 }, Layout::Split] {
        let (tx, rx) = std::sync::mpsc::channel();
        let client_tx = tx.clone();
        run_on_layout_pinned(
            layout,
            Some(Pin::one(0)),
            move |mut ctl| async move {
                let cpus = tokio::task::spawn_blocking(allowed_cpus)
                    .await
                    .expect("blocking task");
                tx.send(("server", allowed_cpus(), cpus)).expect("send");
                ctl.ready("127.0.0.1:9".parse().expect("address"));
                ctl.stopped().await;
                Ok(())
            },
            move |_addr| async move {
                let blocking = tokio::task::spawn_blocking(allowed_cpus).await?;
                client_tx
                    .send(("client", allowed_cpus(), blocking))
                    .map_err(std::io::Error::other)?;
                Ok(Measurement {
                    histogram: new_histogram(),
                    window: std::time::Duration::from_millis(1),
                    resent: 0,
                })
            },
        )
        .expect("pinned run");
        let mut seen: Vec<_> = rx.try_iter().collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("client", "0".into(), "0".into()),
                ("server", "0".into(), "0".into())
            ],
            "{layout:?}: (side, task's thread, blocking-pool thread) CPUs"
        );
    }
    assert_eq!(allowed_cpus(), before, "the caller's affinity is untouched");

    let args = Args::parse_args([
        "--pin",
        "0",
        "--sizes",
        "32",
        "--inflight",
        "1",
        "--only",
        "raw tokio UDP,rpc call over UDP,raw UDP",
        "--busy-poll",
        "both",
        "--iterations",
        "100",
        "--warmup",
        "10",
        "--duration-ms",
        "0",
        "--silent",
    ])
    .expect("valid arguments");
    let report = run(&args).expect("pinned latency run");
    assert_eq!(
        report.results.len(),
        4,
        "raw and rpc UDP, busy-poll off and on"
    );
    for r in &report.results {
        assert_eq!(r.case.pin, Some(Pin::one(0)), "{}", r.case.label());
        assert_eq!(r.calls, 100, "{}", r.case.label());
        assert!(r.p50_us > 0.0);
    }
    let table = format_table(&report.results);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("pin")),
        "{table}"
    );
    assert_eq!(table.matches("cpu 0").count(), 4, "{table}");
    let json = serde_json::to_string(&report).expect("JSON");
    assert!(
        json.contains("\"pin\":{\"server\":0,\"client\":0}"),
        "{json}"
    );

    // Two CPUs: the server on one, the client on the other, on the split layout.
    let two = Args::parse_args(["--pin", "0,1", "--sizes", "32", "--inflight", "1"])
        .expect("valid arguments");
    assert_eq!(
        two.pin,
        Some(Pin {
            server: 0,
            client: 1
        })
    );
    assert!(cases(&two).iter().all(|c| c.layout == Layout::Split));
    assert!(Args::parse_args(["--pin", "0,1,2"]).is_err());
    assert!(Args::parse_args(["--pin", "zero"]).is_err());
}
