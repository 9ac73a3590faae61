//! Generates Rust for every IDL file the project has (`proto/*.idl` and the compiler's
//! test fixtures) and a dispatcher that decodes any of their types by index, for the
//! `xdr_types` target; and, for the `procedures` target, every procedure's argument and
//! result decoders, taken verbatim from the generated server and client (see
//! [`procedures`]).

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
    let mut procedure_fns: Vec<String> = Vec::new();
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
            let (procs, names) = procedures(&module, &rust);
            std::fs::write(out.join(format!("{module}_procs.rs")), procs).unwrap();
            procedure_fns.extend(names);
            writeln!(
                modules,
                "#[allow(missing_docs, dead_code, clippy::all)]\npub mod {module} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{module}.rs\"));\n\
                 #[allow(unused_imports, unused_variables, clippy::all)] pub mod procs {{ use super::*; include!(concat!(env!(\"OUT_DIR\"), \"/{module}_procs.rs\")); }} }}"
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
    assert!(
        procedure_fns.len() >= 20,
        "found only {} procedure decoders in the generated code: has its shape changed?",
        procedure_fns.len()
    );
    let entries: Vec<String> = procedure_fns
        .iter()
        .map(|f| format!("({f:?}, {f} as fn(&::bytes::Bytes))"))
        .collect();
    writeln!(
        dispatch,
        "/// Every procedure's argument and result round trip, by name.\npub const PROCEDURES: &[(&str, fn(&::bytes::Bytes))] = &[{}];",
        entries.join(", ")
    )
    .unwrap();
    std::fs::write(out.join("modules.rs"), modules).unwrap();
    std::fs::write(out.join("dispatch.rs"), dispatch).unwrap();
}

/// One procedure's decoders and encoders as the generated code has them.
#[derive(Default)]
struct Procedure {
    /// The server's argument decoder (`decode_args(&args, DEC)`).
    decode_args: Option<String>,
    /// The pattern the server binds the decoded arguments to (`let PAT = decoded?;`).
    pattern: Option<String>,
    /// The server's result encoder (`encode_result(ENC)`, over `ret`).
    encode_result: Option<String>,
    /// The client's argument encoder (over the method's parameters).
    encode_args: Option<String>,
    /// The client's result decoder.
    decode_result: Option<String>,
}

/// Finds each procedure's four closures in the generated Rust, keyed by
/// `(interface, method)`: the server's `Service::call` arm gives the argument decoder,
/// the pattern it binds and the result encoder; the async client's method gives the
/// argument encoder and the result decoder. Put together they make two round trips
/// with the generated code's own closures, so their types need no spelling out here:
/// arguments decode (server) then encode (client) to the same bytes, and results decode
/// (client) then encode (server) to the same bytes.
fn procedures(module: &str, rust: &str) -> (String, Vec<String>) {
    use quote::ToTokens;
    use syn::visit::Visit;

    fn text(t: &impl ToTokens) -> String {
        t.to_token_stream().to_string()
    }
    fn self_name(ty: &syn::Type) -> Option<String> {
        match ty {
            syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
            _ => None,
        }
    }
    fn call_name(e: &syn::ExprCall) -> Option<String> {
        match &*e.func {
            syn::Expr::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
            _ => None,
        }
    }

    /// The server side of one match arm.
    struct Arm<'a>(&'a mut Procedure, Option<String>);
    impl<'ast> Visit<'ast> for Arm<'_> {
        fn visit_expr_call(&mut self, e: &'ast syn::ExprCall) {
            match call_name(e).as_deref() {
                Some("decode_args") if e.args.len() == 2 => {
                    self.0.decode_args = Some(text(&e.args[1]));
                }
                Some("encode_result") if e.args.len() == 1 => {
                    self.0.encode_result = Some(text(&e.args[0]));
                }
                _ => {}
            }
            syn::visit::visit_expr_call(self, e);
        }
        fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
            if let syn::Expr::Path(p) = &*e.receiver {
                if p.path.is_ident("inner") {
                    self.1 = Some(e.method.to_string());
                }
            }
            syn::visit::visit_expr_method_call(self, e);
        }
        fn visit_local(&mut self, l: &'ast syn::Local) {
            if let Some(init) = &l.init {
                if text(&init.expr).replace(' ', "") == "decoded?" {
                    self.0.pattern = Some(text(&l.pat));
                }
            }
            syn::visit::visit_local(self, l);
        }
    }

    let file = syn::parse_file(rust).expect("generated Rust parses");
    let mut found: Vec<((String, String), Procedure)> = Vec::new();
    fn entry(found: &mut Vec<((String, String), Procedure)>, key: (String, String)) -> usize {
        match found.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                found.push((key, Procedure::default()));
                found.len() - 1
            }
        }
    }
    for item in &file.items {
        let syn::Item::Impl(imp) = item else { continue };
        let Some(name) = self_name(&imp.self_ty) else {
            continue;
        };
        let is_service = imp
            .trait_
            .as_ref()
            .is_some_and(|(_, p, _)| p.segments.last().is_some_and(|s| s.ident == "Service"));
        if let (true, Some(iface)) = (is_service, name.strip_suffix("Server")) {
            for f in &imp.items {
                let syn::ImplItem::Fn(f) = f else { continue };
                if f.sig.ident != "call" {
                    continue;
                }
                struct Arms<'a>(&'a mut Vec<syn::Arm>);
                impl<'ast> Visit<'ast> for Arms<'_> {
                    fn visit_arm(&mut self, a: &'ast syn::Arm) {
                        if matches!(a.pat, syn::Pat::Lit(_)) {
                            self.0.push(a.clone());
                        }
                    }
                }
                let mut arms = Vec::new();
                Arms(&mut arms).visit_block(&f.block);
                for arm in arms {
                    let mut p = Procedure::default();
                    let mut v = Arm(&mut p, None);
                    v.visit_arm(&arm);
                    if let Some(method) = v.1 {
                        let i = entry(&mut found, (iface.to_owned(), method));
                        let slot = &mut found[i].1;
                        slot.decode_args = p.decode_args;
                        slot.pattern = p.pattern;
                        slot.encode_result = p.encode_result;
                    }
                }
            }
        } else if let (None, Some(iface)) = (&imp.trait_, name.strip_suffix("Client")) {
            if iface.ends_with("Blocking") {
                continue;
            }
            for f in &imp.items {
                let syn::ImplItem::Fn(f) = f else { continue };
                if f.sig.asyncness.is_none() {
                    continue;
                }
                struct Call(Option<(String, String)>);
                impl<'ast> Visit<'ast> for Call {
                    fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
                        if e.method == "call" && e.args.len() == 5 {
                            self.0 = Some((text(&e.args[3]), text(&e.args[4])));
                        }
                        syn::visit::visit_expr_method_call(self, e);
                    }
                }
                let mut c = Call(None);
                c.visit_block(&f.block);
                if let Some((enc, dec)) = c.0 {
                    let i = entry(&mut found, (iface.to_owned(), f.sig.ident.to_string()));
                    found[i].1.encode_args = Some(enc);
                    found[i].1.decode_result = Some(dec);
                }
            }
        }
    }

    let mut out = String::new();
    let mut names = Vec::new();
    for ((iface, method), p) in found {
        let id = format!("{iface}_{method}").replace("r#", "").to_lowercase();
        if let (Some(dec), Some(enc)) = (&p.decode_args, &p.encode_args) {
            let bind = match &p.pattern {
                Some(pat) => format!("let {pat} = decoded;"),
                None => "let () = decoded;".to_owned(),
            };
            writeln!(
                out,
                "/// `{iface}::{method}`'s arguments: the server's decoder, then the client's encoder.\n\
                 pub fn args_{id}(__input: &::bytes::Bytes) {{\n\
                 let Ok(decoded) = ::rpc_core::server::decode_args(__input, {dec}) else {{ return }};\n\
                 {bind}\n\
                 let __again = ::rpc_core::server::encode_result({enc}).expect(\"decoded arguments encode\");\n\
                 assert_eq!(&__again[..], &__input[..], \"{iface}::{method} arguments re-encode differently\");\n}}"
            )
            .unwrap();
            names.push(format!("{module}::procs::args_{id}"));
        }
        if let (Some(dec), Some(enc)) = (&p.decode_result, &p.encode_result) {
            writeln!(
                out,
                "/// `{iface}::{method}`'s result: the client's decoder, then the server's encoder.\n\
                 pub fn result_{id}(__input: &::bytes::Bytes) {{\n\
                 let Ok(ret) = ::rpc_core::server::decode_args(__input, {dec}) else {{ return }};\n\
                 let __again = ::rpc_core::server::encode_result({enc}).expect(\"a decoded result encodes\");\n\
                 assert_eq!(&__again[..], &__input[..], \"{iface}::{method} result re-encodes differently\");\n}}"
            )
            .unwrap();
            names.push(format!("{module}::procs::result_{id}"));
        }
    }
    (out, names)
}
