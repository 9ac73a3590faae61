//! The `rpc-idl` command line: `check` prints rustc-style diagnostics and fails on a
//! broken file, `gen` writes exactly what the build script's `Builder` writes, and
//! `--emit` prints the parsed and checked spec.

use std::path::{Path, PathBuf};
use std::process::Command;

fn rpc_idl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rpc-idl"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_accepts_good_files() {
    let out = rpc_idl()
        .arg("check")
        .arg(fixtures().join("calc.idl"))
        .arg(fixtures().join("list.idl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn check_reports_a_broken_file_rustc_style_and_fails() {
    let dir = scratch("broken");
    let bad = dir.join("bad.idl");
    std::fs::write(
        &bad,
        "interface Calc {\n  int add(int a, int b);\n  void ping()\n};\n",
    )
    .unwrap();
    let out = rpc_idl().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: expected `;`"), "{stderr}");
    assert!(
        stderr.contains(&format!("--> {}:3:14", bad.display())),
        "{stderr}"
    );
    assert!(stderr.contains("  void ping()"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
}

#[test]
fn gen_writes_what_the_builder_writes() {
    let files = [
        "calc.idl",
        "list.idl",
        "semantics.idl",
        "seed.idl",
        "inline.idl",
    ]
    .map(|f| fixtures().join(f));
    let by_cli = scratch("gen-cli");
    let by_builder = scratch("gen-builder");
    let out = rpc_idl()
        .arg("gen")
        .args(&files)
        .arg("-o")
        .arg(&by_cli)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no cargo: lines on the command line");
    rpc_codegen::Builder::new()
        .out_dir(&by_builder)
        .emit_rerun_if_changed(false)
        .compile(&files)
        .unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&by_builder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), files.len());
    for name in names {
        let a = std::fs::read_to_string(by_builder.join(&name)).unwrap();
        let b = std::fs::read_to_string(by_cli.join(&name))
            .unwrap_or_else(|_| panic!("{name:?} not written by rpc-idl gen"));
        assert_eq!(a, b, "{name:?} differs");
    }
}

#[test]
fn gen_fails_on_a_broken_file_and_bad_usage_is_status_2() {
    let dir = scratch("gen-broken");
    let bad = dir.join("bad.idl");
    std::fs::write(&bad, "struct S { Missing m; };\n").unwrap();
    let out = rpc_idl()
        .arg("gen")
        .arg(&bad)
        .arg("-o")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot find type `Missing`"));

    let usage = rpc_idl().arg("gen").arg(&bad).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("usage: rpc-idl"));
    let unknown = rpc_idl().arg("frobnicate").output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn emit_prints_the_ast_and_the_checked_model() {
    let file = fixtures().join("seed.idl");
    let ast = rpc_idl()
        .args(["--emit", "ast"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(ast.status.success());
    let ast = String::from_utf8(ast.stdout).unwrap();
    assert!(
        ast.contains("Spec {") && ast.contains("resolved: None"),
        "{ast}"
    );
    let model = rpc_idl()
        .args(["--emit", "model"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(model.status.success());
    let model = String::from_utf8(model.stdout).unwrap();
    assert!(model.contains("resolved: Some("), "{model}");
}

#[test]
fn preprocessor_and_mapping_options() {
    let onc = fixtures().join("onc");
    // `uses_common.x` needs `common.x` read first.
    let alone = rpc_idl()
        .arg("check")
        .arg(onc.join("uses_common.x"))
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(1));
    let with = rpc_idl()
        .arg("check")
        .arg("--prelude")
        .arg(onc.join("common.x"))
        .arg(onc.join("uses_common.x"))
        .output()
        .unwrap();
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );

    // `-I DIR` for `<...>` includes, `-D NAME` for `#ifdef`.
    let dir = scratch("options");
    std::fs::create_dir_all(dir.join("inc/rpcsvc")).unwrap();
    std::fs::write(
        dir.join("inc/rpcsvc/dep.x"),
        "struct dep { string name<>; };\n",
    )
    .unwrap();
    let main = dir.join("main.x");
    std::fs::write(
        &main,
        "#include <rpcsvc/dep.x>\n#ifndef WITH_DEP\nconst BROKEN = MISSING;\n#endif\n",
    )
    .unwrap();
    let no_dir = rpc_idl().arg("check").arg(&main).output().unwrap();
    assert_eq!(no_dir.status.code(), Some(1));
    let out = dir.join("out");
    let ok = rpc_idl()
        .arg("gen")
        .args(["-I"])
        .arg(dir.join("inc"))
        .args(["-D", "WITH_DEP", "--strings-as-bytes"])
        .arg(&main)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let code = std::fs::read_to_string(out.join("main.rs")).unwrap();
    assert!(code.contains("pub name: ::rpc_core::Bytes,"), "{code}");
}
