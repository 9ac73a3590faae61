//! Compiles the IDL files the examples use into `OUT_DIR`.

fn main() {
    if let Err(e) = rpc_codegen::Builder::new().compile(&[
        "../proto/calc.idl",
        "../proto/seed.idl",
        "../proto/kv.idl",
    ]) {
        // The error is a rustc-style diagnostic (file:line:column, the line, a caret).
        eprintln!("{e}");
        std::process::exit(1);
    }
}
