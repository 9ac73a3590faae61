//! Snapshot tests of the generated code for every fixture in `tests/fixtures`.
//!
//! After an intended change to the generator, regenerate with
//! `INSTA_UPDATE=always cargo test -p rpc-codegen --test snapshots` and review the diff.

use std::path::Path;

fn generate(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.idl"));
    let source = std::fs::read_to_string(&path).expect("fixture exists");
    match rpc_codegen::generate_source(&format!("{name}.idl"), &source) {
        Ok(code) => code,
        Err(e) => panic!("fixture {name}.idl does not compile:\n{e}"),
    }
}

#[test]
fn seed() {
    insta::assert_snapshot!(generate("seed"));
}

#[test]
fn calc() {
    insta::assert_snapshot!(generate("calc"));
}

#[test]
fn list() {
    insta::assert_snapshot!(generate("list"));
}

#[test]
fn semantics() {
    insta::assert_snapshot!(generate("semantics"));
}

#[test]
fn inline() {
    insta::assert_snapshot!(generate("inline"));
}

#[test]
fn every_fixture_parses_as_rust() {
    for name in ["seed", "calc", "list", "semantics"] {
        let code = generate(name);
        if let Err(e) = syn::parse_file(&code) {
            panic!("{name}: generated code is not valid Rust: {e}");
        }
    }
}
