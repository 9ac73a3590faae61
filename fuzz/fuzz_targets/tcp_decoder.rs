//! The TCP frame decoder on a stream split at fuzzer-chosen points.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::tcp::split_stream(data));
