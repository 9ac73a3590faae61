//! The frame header and `Frame` parse, with and without a fixed-up CRC.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::frame::parse_emit(data));
