//! IDL-only users do not pay for protobuf: a fresh crate depending on `rpc-codegen`
//! with default features off resolves without prost-build or any vendored protoc.

use std::path::Path;
use std::process::Command;

fn lock_file_of(dir: &Path, dependency: &str) -> String {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let codegen = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fresh\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [workspace]\n\n[build-dependencies]\nrpc-codegen = {{ path = {:?}{dependency} }}\n",
            codegen.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    let _ = std::fs::remove_file(dir.join("Cargo.lock"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["generate-lockfile", "--offline"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("Cargo.lock")).unwrap()
}

#[test]
fn without_the_proto_feature_no_protoc_is_resolved() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let idl_only = lock_file_of(&tmp.join("fresh-idl-only"), ", default-features = false");
    assert!(idl_only.contains("name = \"rpc-codegen\""));
    for absent in ["protoc-bin-vendored", "prost-build", "prost-types"] {
        assert!(
            !idl_only.contains(absent),
            "{absent} in an IDL-only lock file"
        );
    }
    // The check can fail: with the default features the same crate resolves them.
    let default = lock_file_of(&tmp.join("fresh-default"), "");
    assert!(default.contains("name = \"protoc-bin-vendored-linux-x86_64\""));
    assert!(default.contains("name = \"prost-build\""));
}
