//! The IDL compiler: on arbitrary text it never panics, every error has an in-range
//! span and renders with `file:line:col`, and what checks generates Rust that `syn`
//! parses. A grammar-based generator makes inputs that mostly get past the parser, and
//! the `.proto` path is driven the same way.

use crate::grammar::grammar;

/// Compiles `source`; checks the diagnostics or the generated code.
pub fn compile(source: &str) {
    match rpc_codegen::parse_and_check("fuzz.idl", source) {
        Ok(spec) => {
            let rust = rpc_codegen::generate::generate(&spec);
            if let Err(e) = syn::parse_file(&rust) {
                panic!("generated Rust does not parse: {e}\n--- IDL\n{source}\n--- Rust\n{rust}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for d in errors.iter() {
                let (start, end) = d.byte_range();
                assert!(
                    start <= end && end <= source.len(),
                    "span {start}..{end} of {}",
                    source.len()
                );
                let (line, col) = d.line_col(source);
                let text = d.render("fuzz.idl", source);
                assert!(text.contains(&format!("fuzz.idl:{line}:{col}")), "{text}");
            }
            let _ = errors.to_string();
        }
    }
}

/// The arbitrary-text target.
pub fn text(data: &[u8]) {
    compile(&String::from_utf8_lossy(data));
}

/// The grammar target.
pub fn grammar_target(data: &[u8]) {
    compile(&grammar(data));
}

/// The `.proto` target: the text is written to a file and compiled; never a panic, and
/// generated code parses.
pub fn proto(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("rpc-fuzz-proto-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("fuzz.proto");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let (Some(p), Some(d)) = (path.to_str(), dir.to_str()) else {
        return;
    };
    if let Ok(files) = rpc_codegen::proto::Builder::new()
        .skip_streaming(true)
        .generate(&[p], &[d])
    {
        for f in files {
            if let Err(e) = syn::parse_file(&f.content) {
                panic!("generated Rust does not parse: {e}\n{}", f.content);
            }
        }
    }
}
