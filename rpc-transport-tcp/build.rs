//! Compiles `proto/rpcbind.x` (the portmapper and rpcbind protocols, RFC 1833) into
//! `OUT_DIR/rpcbind.rs`, the generated half of the `rpcbind` module; and
//! `tests/onc/demo.x` into `OUT_DIR/demo.rs`, the client the interop tests call
//! rpcgen-generated C servers with.

fn main() {
    // On an error: the rustc-style diagnostic on standard error, and exit status 1.
    rpc_codegen::Builder::new().compile_or_exit(&["../proto/rpcbind.x", "tests/onc/demo.x"]);
}
