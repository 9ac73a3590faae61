//! The IDL compiler on arbitrary text.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::idl::text(data));
