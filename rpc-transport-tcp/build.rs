//! Compiles `proto/rpcbind.x` (the portmapper and rpcbind protocols, RFC 1833) into
//! `OUT_DIR/rpcbind.rs`, the generated half of the `rpcbind` module.

fn main() {
    // On an error: the rustc-style diagnostic on standard error, and exit status 1.
    rpc_codegen::Builder::new().compile_or_exit(&["../proto/rpcbind.x"]);
}
