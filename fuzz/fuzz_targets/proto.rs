//! The `.proto` path: never a panic; generated Rust parses.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::idl::proto(data));
