//! The IDL compiler on grammar-generated files: what checks must generate Rust that parses.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::idl::grammar_target(data));
