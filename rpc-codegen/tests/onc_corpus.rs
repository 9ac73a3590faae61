//! The ONC RPC corpus: every `.x` file the system's rpcsvc and libtirpc headers ship
//! (`/usr/include/rpcsvc`, `/usr/include/tirpc`, recursively) compiles unchanged, and
//! the generated Rust builds warning-free against `rpc-core`.
//!
//! Each file is generated twice, with `string` as `String` (the default) and as bytes
//! (`Builder::strings_as_bytes`), into the modules of one throwaway crate under the
//! workspace's `target/`, which `cargo build --offline` then builds with
//! `#![deny(warnings)]` (its own target directory, so it neither waits for nor
//! disturbs the build running this test).
//!
//! Without the directories (packages `rpcsvc-proto`, `libtirpc-dev`, `libnsl-dev` on
//! Debian) the test prints why and passes, unless `RPC_REQUIRE_ONC_CORPUS=1` is set,
//! as in CI, where their absence fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOTS: &[&str] = &["/usr/include/rpcsvc", "/usr/include/tirpc"];

/// Files that use another file's types without including it, and the files (next to
/// them) to read first: rpcgen users pass these to the C compiler together.
const PRELUDES: &[(&str, &[&str])] = &[("nis_callback.x", &["nis.x"])];

fn find_x(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            find_x(&path, out);
        } else if path.extension().is_some_and(|e| e == "x") {
            out.push(path);
        }
    }
}

/// A Rust module name for `path`, unique among `taken`.
fn module_name(path: &Path, taken: &mut Vec<String>) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while taken.contains(&name) {
        name.push('_');
    }
    taken.push(name.clone());
    name
}

#[test]
fn every_system_x_file_compiles_and_builds() {
    let required = std::env::var_os("RPC_REQUIRE_ONC_CORPUS").is_some_and(|v| v == "1");
    let missing: Vec<&str> = ROOTS
        .iter()
        .copied()
        .filter(|r| !Path::new(r).is_dir())
        .collect();
    if !missing.is_empty() {
        let msg =
            format!("{missing:?} missing (install rpcsvc-proto, libtirpc-dev and libnsl-dev)");
        assert!(!required, "RPC_REQUIRE_ONC_CORPUS=1 but {msg}");
        eprintln!("note: {msg}");
    }
    let roots: Vec<&Path> = ROOTS.iter().map(Path::new).filter(|p| p.is_dir()).collect();
    if roots.is_empty() {
        eprintln!("skipped: no .x corpus on this machine");
        return;
    }
    let mut files = Vec::new();
    for root in &roots {
        find_x(root, &mut files);
    }
    assert!(!files.is_empty(), "no .x files under {roots:?}");

    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the crate is in the workspace");
    let krate = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onc-corpus");
    let _ = std::fs::remove_dir_all(&krate);
    let src = krate.join("src");
    std::fs::create_dir_all(&src).unwrap();

    let mut failures = Vec::new();
    let mut modules = Vec::new();
    let mut taken = Vec::new();
    for file in &files {
        let name = module_name(file, &mut taken);
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let base_name = file.file_name().unwrap().to_string_lossy().into_owned();
        for bytes in [false, true] {
            let module = if bytes {
                format!("{name}_bytes")
            } else {
                name.clone()
            };
            let out = src.join(&module);
            let mut builder = rpc_codegen::Builder::new()
                .out_dir(&out)
                .emit_rerun_if_changed(false)
                .strings_as_bytes(bytes)
                .include_dir("/usr/include")
                .include_dir("/usr/include/tirpc");
            for (for_file, preludes) in PRELUDES {
                if *for_file == base_name {
                    for p in *preludes {
                        builder = builder.prelude_file(file.with_file_name(p));
                    }
                }
            }
            match builder.compile(&[file]) {
                Ok(()) => {
                    modules.push(format!("#[path = \"{module}/{stem}.rs\"]\nmod {module};\n"))
                }
                Err(e) => failures.push((
                    file.clone(),
                    format!("{} (bytes: {bytes}):\n{e}", file.display()),
                )),
            }
        }
    }
    let mut failed: Vec<&PathBuf> = failures.iter().map(|(f, _)| f).collect();
    failed.dedup();
    let messages: Vec<&str> = failures.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} files do not compile:\n\n{}",
        failed.len(),
        files.len(),
        messages.join("\n\n")
    );

    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"onc-corpus\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nrpc-core = {{ path = {:?} }}\n\n[workspace]\n",
            workspace.join("rpc-core").display().to_string()
        ),
    )
    .unwrap();
    // The workspace's lock file: the same dependency versions, resolvable offline.
    std::fs::copy(workspace.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        format!(
            "//! Every system `.x` file, generated.\n#![deny(warnings)]\n\n{}",
            modules.concat()
        ),
    )
    .unwrap();

    let target = workspace.join("target").join("onc-corpus");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "the generated Rust of {} files does not build warning-free:\n{}",
        files.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{} .x files compiled and built (twice: strings as String and as bytes)",
        files.len()
    );
    assert_eq!(modules.len(), files.len() * 2);
}
