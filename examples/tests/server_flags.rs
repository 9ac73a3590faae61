//! The example servers expose every server limit as a flag, with its default.

use std::process::Command;

fn help(bin: &str) -> String {
    let out = Command::new(bin).arg("--help").output().expect("runs");
    assert!(out.status.success(), "{bin} --help failed");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn calc_server_and_kv_server_show_the_limits_and_their_defaults() {
    let expected = [
        ("--max-connections", "1024"),
        ("--max-connections-per-ip", "256"),
        ("--idle-timeout", "300"),
        ("--max-calls-per-connection", "256"),
        ("--max-queued-reply-bytes", "8388608"),
        ("--write-timeout", "30"),
        ("--shutdown-grace", "10"),
        ("--frame-timeout", "30"),
    ];
    for bin in [
        env!("CARGO_BIN_EXE_calc-server"),
        env!("CARGO_BIN_EXE_kv-server"),
    ] {
        let text = help(bin);
        for (flag, default) in expected {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("{flag} ")))
                .unwrap_or_else(|| panic!("{bin}: no {flag} in\n{text}"));
            // The default is shown on the flag's line or its description below.
            let shown = text
                .lines()
                .skip(line)
                .take(4)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                shown.contains(&format!("[default: {default}]")),
                "{bin}: {flag} should show default {default}: {shown}"
            );
        }
    }
}
