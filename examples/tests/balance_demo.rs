//! The kv-demo binary (three instances behind the registry, one stopped and restarted)
//! runs to completion and reports that everything behaved.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn kv_demo_runs_to_completion() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv-demo"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("kv-demo starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kv-demo did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "kv-demo failed:\n{out}");
    assert!(out.contains("everything behaved as expected"), "{out}");
    assert!(!out.contains("UNEXPECTED"), "{out}");
    assert!(
        out.contains("DOWN"),
        "the dead endpoint is shown down:\n{out}"
    );
    assert!(out.contains("the restarted beta receives calls"), "{out}");
}
