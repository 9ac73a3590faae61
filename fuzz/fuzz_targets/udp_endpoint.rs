//! The sans-IO UDP endpoint driven by a program of datagrams, time steps and losses.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::udp::endpoint(data));
