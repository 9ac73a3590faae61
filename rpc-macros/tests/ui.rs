//! Compile tests of `idl!`: IDL errors are compile errors with the full rustc-style
//! message, pointing at the IDL literal; valid IDL compiles into a usable module; and a
//! sample of the fuzzer's grammar-generated IDL files that pass the checker compiles
//! warning-free.

use std::fmt::Write as _;
use std::path::PathBuf;

#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/src/grammar.rs"]
mod grammar;

/// How many checked grammar outputs are compiled.
const SAMPLES: usize = 48;
/// The most inputs tried to find them.
const TRIES: u64 = 20_000;

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/bad_idl.rs");
    t.compile_fail("tests/ui/bad_input.rs");
    t.compile_fail("tests/ui/unknown_type.rs");
    t.compile_fail("tests/ui/bad_escaped.rs");
    t.pass("tests/ui/pass_interface.rs");
    t.pass(grammar_samples());
}

/// Deterministic pseudo-random input bytes for seed `seed` (xorshift64*).
fn input(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 64 + (seed % 400) as usize;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Writes one crate root holding [`SAMPLES`] grammar outputs that pass the checker, each
/// in its own module through `idl!`, with warnings denied; returns its path. (trybuild
/// allows `dead_code` itself; `examples/tests/generated_unused.rs` checks that lint on
/// code left unused.)
fn grammar_samples() -> PathBuf {
    let mut file = String::from(
        "//! Grammar-generated IDL files that passed the checker (see tests/ui.rs).\n\
         #![deny(warnings)]\n\n",
    );
    let mut found = 0;
    let mut with_interface = 0;
    for seed in 0..TRIES {
        if found == SAMPLES {
            break;
        }
        let idl = grammar::grammar(&input(seed));
        if idl.trim().is_empty() || rpc_codegen::parse_and_check("g.idl", &idl).is_err() {
            continue;
        }
        with_interface += usize::from(idl.contains("interface "));
        writeln!(file, "/// Seed {seed}.\npub mod seed_{seed} {{").unwrap();
        writeln!(file, "    rpc_macros::idl!(\"g{seed}\", {idl:?});\n}}\n").unwrap();
        found += 1;
    }
    assert_eq!(found, SAMPLES, "the grammar produced too few checked files");
    assert!(
        with_interface >= SAMPLES / 8,
        "too few samples with an interface: {with_interface}"
    );
    file.push_str("fn main() {}\n");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("grammar-samples");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grammar_samples.rs");
    std::fs::write(&path, file).unwrap();
    path
}
