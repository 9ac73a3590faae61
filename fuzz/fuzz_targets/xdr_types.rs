//! XDR decoding of every type generated from `proto/*.idl` and the compiler's fixtures
//! (as itself, `T *` and `T<>`): what decodes re-encodes to the input.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::xdr::decode_round_trip(data));
