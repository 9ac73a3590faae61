//! The build-script front end: compiles IDL files into Rust files in `OUT_DIR`.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::diagnostics::Diagnostics;
use crate::preprocess::Options;

/// Why [`Builder::compile`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Reading an IDL file or writing a generated file failed, or no output directory
    /// was set and `OUT_DIR` is not set either (not running in a build script).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or directory) involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The IDL file has errors; `Display` renders them like rustc does.
    #[error("{0}")]
    Idl(Diagnostics),
}

/// Compiles IDL files into Rust modules, from a build script.
///
/// Each file `proto/calc.idl` becomes `$OUT_DIR/<name>.rs`, where `<name>` is the file's
/// `package` or, without one, its stem (`calc`); include it with
/// `rpc_core::include_idl!("calc")`. A file is only rewritten when its content changes,
/// so unchanged IDL does not trigger rebuilds, and each input is reported to Cargo with
/// `cargo:rerun-if-changed`.
///
/// In `build.rs` (and `rpc-codegen` under `[build-dependencies]`):
///
/// ```no_run
/// // On an error: prints the diagnostic (rustc-style: file:line:column, the line, a
/// // caret) and exits the build script with status 1, without a panic's backtrace.
/// rpc_codegen::Builder::new().compile_or_exit(&["proto/calc.idl"]);
/// ```
///
/// or, to handle the error yourself:
///
/// ```no_run
/// if let Err(e) = rpc_codegen::Builder::new().compile(&["proto/calc.idl"]) {
///     eprintln!("{e}");
///     std::process::exit(1);
/// }
/// ```
///
/// and in the crate:
///
/// ```ignore
/// mod calc {
///     rpc_core::include_idl!("calc");
/// }
/// ```
///
/// Real `.x` files (rpcgen's language, docs/IDL.md §6) may need include directories,
/// prelude files and, for ONC protocols that carry names as bytes, `string` as bytes:
///
/// ```no_run
/// rpc_codegen::Builder::new()
///     .include_dir("idl")                      // where <rpcsvc/nis.x> is found
///     .prelude_file("idl/rpcsvc/nis.x")        // nis_callback.x uses its types
///     .strings_as_bytes(true)
///     .compile_or_exit(&["idl/rpcsvc/nis_callback.x"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    /// Leave out the `cargo:rerun-if-changed` lines (not in a build script).
    no_cargo_lines: bool,
    /// Map `string` to bytes.
    strings_as_bytes: bool,
    /// Include directories, macros and prelude files.
    pre: Options,
}

impl Builder {
    /// A builder writing to `OUT_DIR`.
    pub fn new() -> Self {
        Builder::default()
    }

    /// Writes the generated files to `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Whether to print `cargo:rerun-if-changed=<file>` for each input (default: yes,
    /// as a build script should; the `rpc-idl` command line turns it off).
    pub fn emit_rerun_if_changed(mut self, emit: bool) -> Self {
        self.no_cargo_lines = !emit;
        self
    }

    /// Whether XDR `string`s become bytes ([`Bytes`](https://docs.rs/bytes), the type
    /// `opaque<>` gets) instead of `String` (default: no). ONC protocols carry names as
    /// bytes in whatever encoding the peer uses (NFS file names need not be UTF-8): with
    /// `String`, decoding such a name fails. The wire format is the same either way.
    pub fn strings_as_bytes(mut self, bytes: bool) -> Self {
        self.strings_as_bytes = bytes;
        self
    }

    /// Adds a directory where `#include <...>` and `#include "..."` look for files
    /// (after the including file's own directory, for `"..."`), such as the directory
    /// holding `rpcsvc/`.
    pub fn include_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pre.include_dirs.push(dir.into());
        self
    }

    /// Defines a preprocessor macro, as `-D NAME=value` does for rpcgen (`value` may
    /// be empty). `RPC_HDR` is always defined.
    pub fn define(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.pre.defines.push((name.into(), value.into()));
        self
    }

    /// Reads `file` ahead of every compiled file, as if each started with
    /// `#include` of it: its definitions join the compiled file's namespace and are
    /// generated with it. For a file that uses another file's types without including
    /// it (`nis_callback.x` uses `nis.x`'s).
    pub fn prelude_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.pre.prelude.push(file.into());
        self
    }

    /// [`compile`](Self::compile), and on an error print it to standard error and exit
    /// with status 1: what a build script wants (Cargo shows the diagnostic as it is,
    /// with no panic message or backtrace around it).
    pub fn compile_or_exit(&self, files: &[impl AsRef<Path>]) {
        if let Err(e) = self.compile(files) {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }

    /// Compiles every file in `files`, stopping at the first error.
    pub fn compile(&self, files: &[impl AsRef<Path>]) -> Result<(), BuildError> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => match std::env::var_os("OUT_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => {
                    return Err(BuildError::Io {
                        path: PathBuf::from("$OUT_DIR"),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "OUT_DIR is not set (not running in a build script?) and no out_dir was given",
                        ),
                    })
                }
            },
        };
        for file in files {
            self.compile_one(file.as_ref(), &out_dir)?;
        }
        Ok(())
    }

    /// Parses and checks `source` (the text of `file_name`) with this builder's
    /// include directories, macros and preludes, without generating anything: what
    /// `rpc-idl check` does.
    pub fn check_source(
        &self,
        file_name: &str,
        source: &str,
    ) -> Result<crate::model::Spec, Diagnostics> {
        let mut spec = crate::parser::parse_with(file_name, source, &self.pre)?;
        crate::check::check(&mut spec)?;
        Ok(spec)
    }

    fn compile_one(&self, path: &Path, out_dir: &Path) -> Result<(), BuildError> {
        if !self.no_cargo_lines {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { path, source }
        };
        let source = std::fs::read_to_string(path).map_err(io_err(path))?;
        let file_name = path.to_string_lossy();
        let mut spec = self
            .check_source(&file_name, &source)
            .map_err(BuildError::Idl)?;
        if !self.no_cargo_lines {
            for file in spec.files.iter().skip(1) {
                if Path::new(&file.name).is_file() {
                    println!("cargo:rerun-if-changed={}", file.name);
                }
            }
        }
        if self.strings_as_bytes {
            crate::onc::strings_as_bytes(&mut spec);
        }
        let code = crate::generate::generate(&spec);
        let name = match &spec.package {
            Some(package) => package.name.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "idl".to_owned()),
        };
        let out = out_dir.join(format!("{name}.rs"));
        if std::fs::read_to_string(&out).is_ok_and(|old| old == code) {
            return Ok(());
        }
        std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
        std::fs::write(&out, code).map_err(io_err(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rpc-codegen-builder-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_file_named_after_stem_or_package() {
        let dir = temp_dir("names");
        let seed = dir.join("seed.idl");
        std::fs::write(&seed, "interface {\n  int func1(int arg1);\n};\n").unwrap();
        let pkg = dir.join("other.idl");
        std::fs::write(
            &pkg,
            "package calc;\ninterface Calc {\n  void ping();\n};\n",
        )
        .unwrap();
        let out = dir.join("out");
        Builder::new()
            .out_dir(&out)
            .compile(&[&seed, &pkg])
            .unwrap();
        let code = std::fs::read_to_string(out.join("seed.rs")).unwrap();
        assert!(code.starts_with("// @generated by rpc-codegen from seed.idl. Do not edit.\n"));
        assert!(code.contains("pub struct SeedClient"));
        assert!(out.join("calc.rs").exists());

        // Unchanged content is not rewritten.
        let before = std::fs::metadata(out.join("seed.rs"))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        Builder::new().out_dir(&out).compile(&[&seed]).unwrap();
        let after = std::fs::metadata(out.join("seed.rs"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_render_diagnostics_and_paths() {
        let dir = temp_dir("errors");
        let bad = dir.join("bad.idl");
        std::fs::write(&bad, "interface Calc {\n  void ping()\n};\n").unwrap();
        let err = Builder::new().out_dir(&dir).compile(&[&bad]).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BuildError::Idl(_)));
        assert!(text.contains("bad.idl:2:14"), "{text}");
        assert!(text.contains("^"), "{text}");

        let missing = dir.join("missing.idl");
        let err = Builder::new()
            .out_dir(&dir)
            .compile(&[&missing])
            .unwrap_err();
        assert!(matches!(err, BuildError::Io { .. }));
        assert!(err.to_string().contains("missing.idl"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
