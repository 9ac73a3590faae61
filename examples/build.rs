//! Compiles the IDL and `.proto` files the examples use into `OUT_DIR`.

fn main() {
    // On an error: the rustc-style diagnostic (file:line:column, the line, a caret) on
    // standard error, and exit status 1.
    rpc_codegen::Builder::new().compile_or_exit(&[
        "../proto/calc.idl",
        "../proto/seed.idl",
        "../proto/kv.idl",
    ]);

    // Every IDL file the project ships, for `tests/generated_unused.rs`: included and
    // left unused, it must compile warning-free.
    if let Err(e) = unused_fixtures() {
        eprintln!("{e}");
        std::process::exit(1);
    }

    // gRPC's public protos through prost-build (docs/PROTO.md). health.proto's `Watch`
    // and route_guide.proto's three streaming methods are left out: only unary methods
    // are supported. protoc is the vendored one: no system protoc needed.
    if let Err(e) = rpc_codegen::proto::Builder::new()
        .skip_streaming(true)
        .compile(
            &[
                "../proto/helloworld.proto",
                "../proto/health.proto",
                "../proto/route_guide.proto",
            ],
            &["../proto"],
        )
    {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// Compiles `proto/*.idl` and the compiler's fixtures each into its own folder under
/// `OUT_DIR/unused/` and writes `OUT_DIR/unused/mods.rs`, one module per file.
fn unused_fixtures() -> Result<(), Box<dyn std::error::Error>> {
    use std::fmt::Write as _;
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR unset")?)
        .join("unused");
    let mut mods = String::new();
    for dir in ["../proto", "../rpc-codegen/tests/fixtures"] {
        println!("cargo:rerun-if-changed={dir}");
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "idl"))
            .collect();
        files.sort();
        for file in files {
            let stem = file.file_stem().ok_or("no file name")?.to_string_lossy();
            let kind = if dir.ends_with("proto") {
                "proto"
            } else {
                "fixture"
            };
            let module = format!("{kind}_{}", stem.replace('-', "_"));
            let target = out.join(&module);
            std::fs::create_dir_all(&target)?;
            rpc_codegen::Builder::new()
                .out_dir(&target)
                .compile(&[&file])?;
            for generated in std::fs::read_dir(&target)? {
                let generated = generated?.path();
                writeln!(
                    mods,
                    "/// Generated from `{}`.\nmod {module} {{\n    include!({:?});\n}}",
                    file.display(),
                    generated.display().to_string()
                )?;
            }
        }
    }
    std::fs::write(out.join("mods.rs"), mods)?;
    Ok(())
}
