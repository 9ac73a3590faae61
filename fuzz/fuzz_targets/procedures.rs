//! Every procedure's arguments and result, decoded and re-encoded with the generated
//! server's and client's own closures: what decodes re-encodes to the input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::xdr::procedure_round_trip(data));
