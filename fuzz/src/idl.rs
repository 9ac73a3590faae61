//! The IDL compiler: on arbitrary text it never panics, every error has an in-range
//! span and renders with `file:line:col`, and what checks generates Rust that `syn`
//! parses. A grammar-based generator makes inputs that mostly get past the parser, and
//! the `.proto` path is driven the same way.

use crate::Choices;

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
                assert!(start <= end && end <= source.len(), "span {start}..{end} of {}", source.len());
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

const NAMES: &[&str] = &[
    "a", "b", "_1", "__2", "x_1", "Foo", "fooBar", "FOO_BAR", "type", "self", "Self", "new",
    "r", "w", "ctx", "value", "Default", "Node", "List", "Result", "Option", "String", "crate",
    "Client", "FooClient", "A", "a_", "_",
];
const PRIMS: &[&str] = &[
    "int", "unsigned int", "unsigned", "hyper", "unsigned hyper", "bool", "float", "double",
    "string", "opaque", "void", "i32", "u64", "String", "Bytes",
];
const DOCS: &[&str] = &["", "/// doc\n", "/// a\rb\n", "/** block\r\n * more */\n", "/* c */\n"];

/// Builds an IDL file from choices: definitions and interfaces over a small pool of
/// names, so that references resolve and recursion is common.
pub fn grammar(data: &[u8]) -> String {
    let mut c = Choices::new(data);
    let mut out = String::new();
    let name = |c: &mut Choices<'_>| NAMES[c.below(NAMES.len())];
    let ty = |c: &mut Choices<'_>| -> String {
        if c.byte() % 3 == 0 {
            NAMES[c.below(NAMES.len())].to_owned()
        } else {
            PRIMS[c.below(PRIMS.len())].to_owned()
        }
    };
    let decl = |c: &mut Choices<'_>| -> String {
        let t = ty(c);
        let n = NAMES[c.below(NAMES.len())];
        match c.byte() % 6 {
            0 => format!("{t} *{n}"),
            1 => format!("{t} {n}<>"),
            2 => format!("{t} {n}<{}>", c.below(10)),
            3 => format!("{t} {n}[{}]", c.below(4) + 1),
            _ => format!("{t} {n}"),
        }
    };
    for _ in 0..c.below(12) {
        if c.is_empty() {
            break;
        }
        out.push_str(DOCS[c.below(DOCS.len())]);
        match c.byte() % 7 {
            0 => out.push_str(&format!("const {} = {};\n", name(&mut c), c.below(100) as i64 - 10)),
            1 => out.push_str(&format!("typedef {};\n", decl(&mut c))),
            2 => {
                let n = name(&mut c);
                let vs: Vec<String> = (0..c.below(4) + 1)
                    .map(|i| format!("{} = {i}", name(&mut c)))
                    .collect();
                out.push_str(&format!("enum {n} {{ {} }};\n", vs.join(", ")));
            }
            3 | 4 => {
                let n = name(&mut c);
                let fs: Vec<String> = (0..c.below(4) + 1).map(|_| format!("{};", decl(&mut c))).collect();
                out.push_str(&format!("struct {n} {{ {} }};\n", fs.join(" ")));
            }
            5 => {
                let n = name(&mut c);
                let d = ["int", "unsigned int", "bool"][c.below(3)];
                let mut body = String::new();
                for i in 0..c.below(3) + 1 {
                    let arm = if c.byte() % 3 == 0 { "void".to_owned() } else { decl(&mut c) };
                    body.push_str(&format!("case {i}: {arm}; "));
                }
                if c.byte() % 2 == 0 {
                    body.push_str(&format!("default: {}; ", decl(&mut c)));
                }
                out.push_str(&format!("union {n} switch ({d} {}) {{ {body}}};\n", name(&mut c)));
            }
            _ => {
                let n = name(&mut c);
                let procs: Vec<String> = (0..c.below(3) + 1)
                    .map(|_| {
                        let args: Vec<String> = (0..c.below(3)).map(|_| decl(&mut c)).collect();
                        let oneway = if c.byte() % 5 == 0 { "oneway void" } else { "int" };
                        format!("{oneway} {}({});", name(&mut c), args.join(", "))
                    })
                    .collect();
                out.push_str(&format!("interface {n} version 1 {{ {} }};\n", procs.join(" ")));
            }
        }
    }
    out
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
