//! The code generated for every IDL file the project ships, included and entirely
//! unused, compiles with warnings denied (and, in CI, clippy's warnings too): a crate
//! that calls only part of its generated code gets no warnings from it.
#![deny(
    warnings,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

include!(concat!(env!("OUT_DIR"), "/unused/mods.rs"));

/// The modules are there: the build script found every shipped IDL file.
#[test]
fn every_shipped_idl_file_is_included() {
    let mods = include_str!(concat!(env!("OUT_DIR"), "/unused/mods.rs"));
    for name in [
        "proto_calc",
        "proto_kv",
        "proto_naming",
        "proto_seed",
        "fixture_calc",
        "fixture_inline",
        "fixture_list",
        "fixture_seed",
        "fixture_semantics",
    ] {
        assert!(mods.contains(&format!("mod {name} {{")), "{name} missing");
    }
}
