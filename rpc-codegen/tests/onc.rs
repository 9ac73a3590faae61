//! rpcgen's language as real `.x` files use it (`tests/fixtures/onc`): the
//! preprocessor (`#include`, `#if`/`#ifdef`/`#else`, `#define`, `%#define` constants),
//! C type names and the `<rpc/rpc.h>` types, string constants, enum aliases,
//! `typedef struct X X;`, program names as constants, strings as bytes, prelude files,
//! and the errors of each.

use std::path::{Path, PathBuf};

use rpc_codegen::model::{Definition, Type};
use rpc_codegen::Builder;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onc")
        .join(name)
}

fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("onc-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Rust the builder writes for `file`.
fn generate(builder: Builder, file: &Path, tag: &str) -> String {
    let out = scratch(tag);
    builder
        .out_dir(&out)
        .emit_rerun_if_changed(false)
        .compile(&[file])
        .unwrap_or_else(|e| panic!("{} does not compile:\n{e}", file.display()));
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let code = std::fs::read_to_string(out.join(format!("{stem}.rs"))).unwrap();
    if let Err(e) = syn::parse_file(&code) {
        panic!("generated code is not valid Rust: {e}");
    }
    code
}

fn check(file: &Path) -> rpc_codegen::model::Spec {
    let source = std::fs::read_to_string(file).unwrap();
    Builder::new()
        .check_source(&file.display().to_string(), &source)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The errors of `source`, written to `dir/name`, rendered with paths relative to `dir`.
fn errors_of(tag: &str, files: &[(&str, &str)]) -> String {
    let dir = scratch(tag);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let main = dir.join(files[0].0);
    let source = std::fs::read_to_string(&main).unwrap();
    let err = Builder::new()
        .check_source(&main.display().to_string(), &source)
        .expect_err("the file has errors");
    err.to_string().replace(&format!("{}/", dir.display()), "")
}

#[test]
fn main_fixture_snapshot() {
    insta::assert_snapshot!(generate(Builder::new(), &fixture("main.x"), "snapshot"));
}

/// One small fixture per construct, each with its snapshot.
macro_rules! construct_snapshots {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let file = fixture(concat!(stringify!($name), ".x"));
            insta::assert_snapshot!(generate(Builder::new(), &file, stringify!($name)));
        }
    )*};
}

construct_snapshots!(
    string_const,
    enum_alias,
    c_types,
    rpc_types,
    program_consts,
    c_define,
    conditionals,
    typedef_struct,
);

#[test]
fn preprocessor_sections_includes_and_defines() {
    let spec = check(&fixture("main.x"));
    let names: Vec<&str> = spec
        .definitions
        .iter()
        .map(|d| d.name().name.as_str())
        .collect();
    // `#ifdef RPC_XDR` is skipped, its `#elif` taken, the `#else` skipped.
    assert!(names.contains(&"HDR_ONLY"), "{names:?}");
    assert!(!names.contains(&"NEVER"), "{names:?}");
    assert!(names.contains(&"NOT_STUPID"), "{names:?}");
    // The included file's definitions join the namespace, ahead of the file's own.
    assert!(names.contains(&"shared_t") && names.contains(&"SHARED_MAX"));
    assert_eq!(spec.files.len(), 3, "{:?}", spec.files); // main.x, common.x, <rpc/rpc.h>
    assert!(spec.files[1].name.ends_with("common.x"));
    assert_eq!(spec.files[2].name, "<rpc/rpc.h>");
    // `#define LOCAL_MAX 16` is substituted.
    let node = spec
        .definitions
        .iter()
        .find_map(|d| match d {
            Definition::Struct(s) if s.name.name == "node" => Some(s),
            _ => None,
        })
        .unwrap();
    let name = node.fields.iter().find(|f| f.name.name == "name").unwrap();
    let Type::String { max: Some(max) } = &name.ty else {
        panic!("{:?}", name.ty)
    };
    assert_eq!(max.get(), 16);
    // `%#define`s with integer bodies are constants; the others are left to C.
    let consts: Vec<(&str, i64)> = spec
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Const(c) => Some((c.name.name.as_str(), c.value.get())),
            _ => None,
        })
        .collect();
    for want in [
        ("PASSED_TO_C", 1),
        ("FLAG_A", 1),
        ("FLAG_B", 2),
        ("FLAGS", 3),
        ("BIG_RIGHTS", 3 << 16),
        ("ONC_PROG", 0x2000_0100),
        ("ONC_VERS", 1),
        ("ONC_NULL", 0),
        ("ONC_GET", 1),
        ("GET_NUMBER", 1),
    ] {
        assert!(consts.contains(&want), "{want:?} not in {consts:?}");
    }
    assert!(!names.contains(&"NOT_A_NUMBER") && !names.contains(&"TWICE"));
}

#[test]
fn c_type_names_and_rpc_types() {
    let spec = check(&fixture("main.x"));
    let node = spec
        .definitions
        .iter()
        .find_map(|d| match d {
            Definition::Struct(s) if s.name.name == "node" => Some(s),
            _ => None,
        })
        .unwrap();
    let ty = |name: &str| &node.fields.iter().find(|f| f.name.name == name).unwrap().ty;
    for (field, want) in [
        ("id", Type::UnsignedInt),
        ("tag", Type::UnsignedInt),
        ("c", Type::Int),
        ("s", Type::Int),
        ("us", Type::UnsignedInt),
        ("l", Type::Int),
        ("ul", Type::UnsignedInt),
        ("uc", Type::UnsignedInt),
        ("ulong_", Type::UnsignedInt),
        ("i32_", Type::Int),
        ("u32_", Type::UnsignedInt),
        ("u32b", Type::UnsignedInt),
        ("i64_", Type::Hyper),
        ("u64_", Type::UnsignedHyper),
        ("u64b", Type::UnsignedHyper),
        ("q", Type::Hyper),
        ("uq", Type::UnsignedHyper),
        ("ok", Type::Bool),
        ("e", Type::Int),
    ] {
        assert_eq!(ty(field), &want, "{field}");
    }
    let code = generate(Builder::new(), &fixture("main.x"), "types");
    assert!(
        code.contains("pub type Netobj = ::rpc_core::Bytes;"),
        "{code}"
    );
    assert!(code.contains("pub const MAX_NETOBJ_SZ: u32 = 1024;"));
    assert!(code.contains("pub type DesBlock = [u8; 8];"));
    assert!(code.contains("pub type RpcprogT = u32;"));
    assert!(code.contains("pub struct Netbuf {"));
    // Only what the file uses is added.
    assert!(!code.contains("RpcportT") && !code.contains("MAXNETNAMELEN"));
}

#[test]
fn string_constants_and_enum_aliases() {
    let code = generate(Builder::new(), &fixture("main.x"), "consts");
    assert!(code.contains(r#"pub const GREETING: &str = "hello \"world\"";"#));
    assert!(code.contains(r#"pub const SOCKET_PATH: &str = "/var/run/onc.sock";"#));
    // One discriminant per value; the second names are associated constants.
    assert!(code.contains("KindNone = 0,") && code.contains("KindFile = 1,"));
    assert!(!code.contains("KNone = 0"));
    assert!(code.contains("pub const KNone: Self = Self::KindNone;"));
    assert!(code.contains("pub const KFile: Self = Self::KindFile;"));
    // `typedef struct node node;` adds nothing: `node` is the struct.
    assert!(!code.contains("pub type Node"));
    assert!(code.contains("pub next: ::core::option::Option<::std::boxed::Box<Node>>"));
}

#[test]
fn strings_as_bytes_is_selectable() {
    let default = generate(Builder::new(), &fixture("main.x"), "strings");
    assert!(default.contains("pub name: ::std::string::String,"));
    let bytes = generate(
        Builder::new().strings_as_bytes(true),
        &fixture("main.x"),
        "bytes",
    );
    assert!(bytes.contains("pub name: ::rpc_core::Bytes,"), "{bytes}");
    assert!(!bytes.contains("::std::string::String"));
    // The bound stays.
    assert!(
        bytes.contains("w.put_opaque_shared(&self.name, 16)"),
        "{bytes}"
    );
}

#[test]
fn prelude_files_share_the_namespace() {
    let err = Builder::new()
        .out_dir(scratch("no-prelude"))
        .emit_rerun_if_changed(false)
        .compile(&[fixture("uses_common.x")])
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot find type `shared_t`"),
        "{err}"
    );
    let code = generate(
        Builder::new().prelude_file(fixture("common.x")),
        &fixture("uses_common.x"),
        "prelude",
    );
    assert!(code.contains("pub type SharedT = u32;"));
    assert!(code.contains("pub value: ::std::vec::Vec<SharedT>,"));
}

#[test]
fn angle_includes_use_the_include_dirs() {
    let dir = scratch("angle");
    std::fs::create_dir_all(dir.join("inc/rpcsvc")).unwrap();
    std::fs::write(dir.join("inc/rpcsvc/dep.x"), "const DEP = 7;\n").unwrap();
    let main = dir.join("main.x");
    std::fs::write(&main, "#include <rpcsvc/dep.x>\nconst USE = DEP;\n").unwrap();
    let source = std::fs::read_to_string(&main).unwrap();
    let name = main.display().to_string();
    let err = Builder::new().check_source(&name, &source).unwrap_err();
    assert!(err
        .to_string()
        .contains("cannot find include file `rpcsvc/dep.x`"));
    let spec = Builder::new()
        .include_dir(dir.join("inc"))
        .check_source(&name, &source)
        .unwrap();
    assert_eq!(spec.definitions.len(), 2);
}

#[test]
fn unknown_c_type_gets_a_hint() {
    assert_eq!(
        errors_of("c-type", &[("a.x", "struct s {\n\tsize_t n;\n};\n")]),
        "\
error: cannot find type `size_t` in this file
 --> a.x:2:2
  |
2 |  size_t n;
  |  ^^^^^^ not defined
  |
  = note: `size_t` is a C type rpcgen does not know either; XDR's integer types are `int` and `unsigned int` (4 bytes on the wire) and `hyper` and `unsigned hyper` (8 bytes)"
    );
}

#[test]
fn unterminated_if_is_an_error() {
    assert_eq!(
        errors_of(
            "unterminated",
            &[("b.x", "const A = 1;\n#ifdef RPC_HDR\nconst B = 2;\n")]
        ),
        "\
error: unterminated conditional directive
 --> b.x:2:1
  |
2 | #ifdef RPC_HDR
  | ^^^^^^^^^^^^^^ this `#if` has no `#endif`
  |
  = help: add `#endif` to close the group before the end of the file"
    );
    let stray = errors_of("stray", &[("s.x", "#else\n#endif\n")]);
    assert!(stray.contains("error: `#else` without `#if`"), "{stray}");
    assert!(stray.contains("error: `#endif` without `#if`"), "{stray}");
}

#[test]
fn missing_include_is_an_error() {
    assert_eq!(
        errors_of(
            "missing",
            &[("c.x", "const A = 1;\n#include \"missing.x\"\n")]
        ),
        "\
error: cannot find include file `missing.x`
 --> c.x:2:1
  |
2 | #include \"missing.x\"
  | ^^^^^^^^^^^^^^^^^^^^ not found
  |
  = note: looked for `missing.x`
  = help: add the directory holding it to the include directories (`Builder::include_dir`, `rpc-idl -I DIR`)"
    );
}

#[test]
fn errors_in_included_files_name_that_file() {
    let text = errors_of(
        "in-include",
        &[
            ("d.x", "#include \"d2.x\"\nconst A = 1;\n"),
            ("d2.x", "const B = 1;\nstruct q { foo x; };\n"),
        ],
    );
    assert!(text.contains(" --> d2.x:2:12"), "{text}");
    assert!(text.contains("2 | struct q { foo x; };"), "{text}");
}

#[test]
fn string_constant_used_as_a_number_is_an_error() {
    let text = errors_of(
        "str-num",
        &[("e.x", "const S = \"x\";\ntypedef opaque o<S>;\n")],
    );
    assert!(
        text.contains("error: expected an integer constant, found string constant `S`"),
        "{text}"
    );
}

#[test]
fn include_cycles_nested_groups_and_macros() {
    let dir = scratch("cycles");
    std::fs::write(dir.join("a.x"), "#include \"b.x\"\nconst A = B_VALUE;\n").unwrap();
    // `b.x` includes `a.x` back: a file already included is skipped.
    std::fs::write(
        dir.join("b.x"),
        "#include \"a.x\"\n#define B_VALUE 2\nconst B = B_VALUE;\n",
    )
    .unwrap();
    let main = dir.join("a.x");
    let source = std::fs::read_to_string(&main).unwrap();
    let spec = Builder::new()
        .check_source(&main.display().to_string(), &source)
        .unwrap_or_else(|e| panic!("{e}"));
    let consts: Vec<(&str, i64)> = spec
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Const(c) => Some((c.name.name.as_str(), c.value.get())),
            _ => None,
        })
        .collect();
    assert_eq!(consts, [("B", 2), ("A", 2)]);

    let groups = "\
#define ONE 1
#if 0
#if 1
const SKIPPED_NESTED = 1;
#else
const SKIPPED_ELSE = 1;
#endif
#elif ONE + 1 == 2
const TAKEN_ELIF = 1;
#elif 1
const LATER_ELIF = 1;
#else
const ELSE = 1;
#endif
#undef ONE
#ifdef ONE
const UNDEFINED = 1;
#endif
#if defined RPC_HDR && !defined(RPC_CLNT) && !RPC_SVC
const HEADER_VIEW = 1;
#endif
";
    let spec = Builder::new()
        .define("EXTRA", "5")
        .check_source("groups.x", &format!("{groups}const E = EXTRA;\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = spec
        .definitions
        .iter()
        .map(|d| d.name().name.as_str())
        .collect();
    assert_eq!(names, ["TAKEN_ELIF", "HEADER_VIEW", "E"]);
}

#[test]
fn include_depth_is_bounded() {
    let dir = scratch("depth");
    for i in 0..40 {
        std::fs::write(
            dir.join(format!("f{i}.x")),
            format!("#include \"f{}.x\"\nconst C{i} = {i};\n", i + 1),
        )
        .unwrap();
    }
    std::fs::write(dir.join("f40.x"), "const LAST = 1;\n").unwrap();
    let main = dir.join("f0.x");
    let source = std::fs::read_to_string(&main).unwrap();
    let err = Builder::new()
        .check_source(&main.display().to_string(), &source)
        .unwrap_err();
    assert!(
        err.to_string().contains("includes nest too deeply"),
        "{err}"
    );
}

#[test]
fn c_defines_never_collide_with_the_files_names() {
    // `max_len` would become the Rust constant `MAX_LEN`, which the file has: the
    // define is C's only. A define of a name the file defines is skipped too, and one
    // may use a define that comes later (C expands macros where they are used).
    let source = "\
%#define max_len 4
const MAX_LEN = 5;
%#define MAX_LEN 6
%#define BOTH (FIRST | SECOND)
%#define FIRST 1
%#define SECOND 2
struct s { opaque data<BOTH>; };
";
    let spec = Builder::new()
        .check_source("defines.x", source)
        .unwrap_or_else(|e| panic!("{e}"));
    let consts: Vec<(&str, i64)> = spec
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Const(c) => Some((c.name.name.as_str(), c.value.get())),
            _ => None,
        })
        .collect();
    assert_eq!(
        consts,
        [("MAX_LEN", 5), ("FIRST", 1), ("SECOND", 2), ("BOTH", 3)]
    );
}

#[test]
fn the_rpc_types_never_clash_with_the_files_own() {
    // The file's `Netobj` is `netobj`'s Rust name, and its `MAX_NETOBJ_SZ` is a type:
    // the prelude stays out, and the errors point into the file itself.
    for (source, message) in [
        (
            "struct Netobj { int a; };\nstruct s { netobj n; };\n",
            "cannot find type `netobj`",
        ),
        (
            "struct MAX_NETOBJ_SZ { int a; };\nstruct s { netobj n; };\n",
            "cannot find type `netobj`",
        ),
    ] {
        let err = Builder::new().check_source("t.x", source).unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
        for d in err.iter() {
            assert!(d.span.end <= source.len(), "{err}");
        }
    }
}

#[test]
fn macro_expansion_is_bounded() {
    let body = "1 ".repeat(10_000);
    let uses = "X ".repeat(200);
    let source = format!("#define X {body}\nconst A = {uses};\n");
    let err = Builder::new().check_source("big.x", &source).unwrap_err();
    assert!(
        err.to_string().contains("macros expand to too many tokens"),
        "{}",
        &err.to_string()[..200.min(err.to_string().len())]
    );
}
