//! What the ONC interop tests share: finding the peer tools, and building rpcgen C
//! programs from `tests/onc`.

#![allow(dead_code)] // Each test binary uses part of it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the peers must be there (`RPC_REQUIRE_ONC_PEERS=1`, as in CI): a test then
/// fails instead of skipping.
pub(crate) fn require_peers() -> bool {
    std::env::var("RPC_REQUIRE_ONC_PEERS").as_deref() == Ok("1")
}

/// The path of a system tool, looked for in the usual directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Whether rpcgen, gcc and libtirpc's headers are installed.
pub(crate) fn have_rpcgen_toolchain() -> bool {
    find_tool("rpcgen").is_some()
        && find_tool("gcc").is_some()
        && Path::new("/usr/include/tirpc/rpc/rpc.h").exists()
}

/// Runs `cmd`, which must succeed; its standard output.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the C program `exe` in a fresh directory of the test target's: copies
/// `demo.x` and the hand-written `c_files` from `tests/onc`, runs rpcgen once per
/// `(flag, output)` of `rpcgen` (e.g. `("-l", "demo_clnt.c")`), and links the
/// hand-written and generated C files with libtirpc. Returns the program's path.
pub(crate) fn build_demo_program(exe: &str, c_files: &[&str], rpcgen: &[(&str, &str)]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onc");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("onc-{exe}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("build directory");
    for file in std::iter::once(&"demo.x").chain(c_files) {
        std::fs::copy(src.join(file), dir.join(file)).expect("copying a C source");
    }
    let mut sources: Vec<&str> = c_files.to_vec();
    for &(flag, out) in [("-h", "demo.h")].iter().chain(rpcgen) {
        run_ok(
            Command::new("rpcgen")
                .current_dir(&dir)
                .args(flag.split(' '))
                .args(["demo.x", "-o", out]),
        );
        if out.ends_with(".c") {
            sources.push(out);
        }
    }
    run_ok(
        Command::new("gcc")
            .current_dir(&dir)
            .args(["-o", exe])
            .args(&sources)
            .args(["-I/usr/include/tirpc", "-ltirpc"]),
    );
    dir.join(exe)
}
