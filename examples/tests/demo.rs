//! The demo binary runs to completion and every call in it behaves as expected.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn demo_runs_to_completion() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("demo starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("demo did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "demo failed:\n{out}");
    assert!(out.contains("every call behaved as expected"), "{out}");
    assert!(out.contains("add(2, 3)"), "{out}");
    assert!(out.contains("server stopped"), "{out}");
    // The guarded server refuses the anonymous call and the wrong token, then serves.
    assert!(
        out.contains("add(1, 2) without credentials") && out.contains("unauthenticated:"),
        "{out}"
    );
    assert!(out.contains("permission denied:"), "{out}");
    assert!(
        out.contains("refused before their arguments were decoded: 2"),
        "{out}"
    );
}
