//! `calc-server` and `calc-client` as processes, over reliable UDP and over TCP: one
//! server listening on both transports, and a UDP-only one.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `calc-server`, killed on drop.
struct ServerProcess {
    child: Child,
    /// What it printed it listens on (`udp://... and tcp://...`).
    listening: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(transport: &str) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_calc-server"))
        .args(["--addr", "127.0.0.1:0", "--transport", transport])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("calc-server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listening = line
        .strip_prefix("calc-server listening on ")
        .and_then(|l| l.strip_suffix(" (Ctrl-C to stop)\n"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    ServerProcess { child, listening }
}

fn port_of(listening: &str, scheme: &str) -> u16 {
    let start = listening
        .find(scheme)
        .unwrap_or_else(|| panic!("no {scheme} in {listening}"));
    let rest = &listening[start + scheme.len()..];
    let authority = rest.split_whitespace().next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

fn client(args: &[&str]) -> (bool, String, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_calc-client"))
        .args(["--timeout-ms", "5000"])
        .args(args)
        .output()
        .expect("calc-client runs");
    assert!(started.elapsed() < Duration::from_secs(30));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[test]
fn one_server_answers_over_udp_and_tcp() {
    let server = start_server("both");
    let udp = port_of(&server.listening, "udp://");
    let tcp = port_of(&server.listening, "tcp://");
    assert_eq!(udp, tcp, "both transports on one port number");
    let addr = format!("127.0.0.1:{udp}");
    for transport in ["udp", "tcp"] {
        let (ok, out, err) = client(&["--transport", transport, "--addr", &addr, "add", "2", "3"]);
        assert!(ok, "{transport}: {err}");
        assert_eq!(out, "5", "{transport}");
        let (ok, out, err) = client(&["--transport", transport, "--addr", &addr, "func1", "41"]);
        assert!(ok, "{transport}: {err}");
        assert!(!out.is_empty());
    }
    // The scheme in the address picks the transport too.
    let (ok, out, err) = client(&["--addr", &format!("udp://{addr}"), "mean", "1", "2", "6"]);
    assert!(ok, "{err}");
    assert_eq!(out, "3");
    let (ok, out, err) = client(&["--addr", &format!("udp://{addr}"), "log", "hello"]);
    assert!(ok, "{err}");
    assert_eq!(out, "sent");
}

#[test]
fn a_udp_only_server_does_not_answer_tcp() {
    let server = start_server("udp");
    assert!(
        server.listening.starts_with("udp://"),
        "{}",
        server.listening
    );
    assert!(!server.listening.contains("tcp://"));
    let port = port_of(&server.listening, "udp://");
    let addr = format!("127.0.0.1:{port}");
    let (ok, out, err) = client(&["--transport", "udp", "--addr", &addr, "add", "2", "3"]);
    assert!(ok, "{err}");
    assert_eq!(out, "5");
    let (ok, _, err) = client(&["--transport", "tcp", "--addr", &addr, "ping"]);
    assert!(!ok, "a TCP call to a UDP-only server fails");
    assert!(!err.is_empty());
}
