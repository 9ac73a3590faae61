//! Compiles the framework's own IDL (`proto/naming.idl`, the name registry) into
//! `OUT_DIR`; `naming::registry` includes the result.

use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let idl = manifest.join("..").join("proto").join("naming.idl");
    // `Builder::compile` also prints `rerun-if-changed` for the file; saying it here
    // too keeps the build script from rerunning on every change in the crate.
    println!("cargo:rerun-if-changed={}", idl.display());
    println!("cargo:rerun-if-changed=build.rs");
    if let Err(e) = rpc_codegen::Builder::new().compile(&[&idl]) {
        // The error is a rustc-style diagnostic (file:line:column, the line, a caret).
        eprintln!("{e}");
        std::process::exit(1);
    }
}
