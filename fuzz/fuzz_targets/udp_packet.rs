//! The UDP packet parser: parse, then emit gives the datagram back.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::udp::packet(data));
