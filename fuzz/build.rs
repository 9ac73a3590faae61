//! Generates Rust for every IDL file the project has (`proto/*.idl` and the compiler's
//! test fixtures) and a dispatcher that decodes any of their types by index, for the
//! `xdr_types` target.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn idl_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "idl"));
    files.sort();
    files
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let dirs = [
        ("proto", manifest.join("../proto")),
        ("fixture", manifest.join("../rpc-codegen/tests/fixtures")),
    ];
    let mut modules = String::new();
    let mut types: Vec<String> = Vec::new();
    for (prefix, dir) in &dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
        for file in idl_files(dir) {
            println!("cargo:rerun-if-changed={}", file.display());
            let stem = file
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .replace('-', "_");
            let module = format!("{prefix}_{stem}");
            let source = std::fs::read_to_string(&file).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let rust = match rpc_codegen::generate_source(&name, &source) {
                Ok(rust) => rust,
                Err(e) => panic!("{e}"),
            };
            std::fs::write(out.join(format!("{module}.rs")), &rust).unwrap();
            writeln!(
                modules,
                "#[allow(missing_docs, dead_code, clippy::all)]\npub mod {module} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{module}.rs\")); }}"
            )
            .unwrap();
            // Every type with its own XDR impls (structs, unions, enums).
            for line in rust.lines() {
                if let Some(rest) = line.strip_prefix("impl ::rpc_core::xdr::XdrDecode for ") {
                    let ty = rest.trim_end_matches(" {").trim();
                    types.push(format!("{module}::{ty}"));
                }
            }
        }
    }
    // Each type as itself, as an optional and as an unbounded array (`T *`, `T<>`).
    let shapes: Vec<String> = types
        .iter()
        .flat_map(|t| [t.clone(), format!("Option<{t}>"), format!("Vec<{t}>")])
        .collect();
    let mut dispatch = String::from(
        "/// Decodes `data` as type number `index % TYPES.len()` and checks that\n\
         /// re-encoding what decoded gives the input back.\n\
         pub fn decode_as(index: usize, data: &::bytes::Bytes) {\n    match index % TYPES.len() {\n",
    );
    for (i, ty) in shapes.iter().enumerate() {
        writeln!(dispatch, "        {i} => check::<{ty}>(data),").unwrap();
    }
    dispatch.push_str("        _ => {}\n    }\n}\n");
    let names: Vec<String> = shapes.iter().map(|t| format!("{t:?}")).collect();
    writeln!(
        dispatch,
        "/// The types, by index.\npub const TYPES: &[&str] = &[{}];",
        names.join(", ")
    )
    .unwrap();
    std::fs::write(out.join("modules.rs"), modules).unwrap();
    std::fs::write(out.join("dispatch.rs"), dispatch).unwrap();
}
