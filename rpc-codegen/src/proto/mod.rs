//! `.proto` services through prost-build: protobuf messages from prost, plus our client
//! and server stubs for every `service`, in the same shape as an IDL interface's
//! (docs/PROTO.md).
//!
//! A `service` becomes what an IDL `interface` becomes: `FooClient<C>` (async, with
//! `start_*` methods returning call handles), `FooBlockingClient<C>`, a server trait `Foo`
//! whose `async fn`s take a `&CallContext`, the adapter `FooServer<T>` that
//! `Server::builder().add_service(..)` hosts, and the `FOO_INTERFACE` / `FOO_PROCEDURES`
//! statics. Each method takes its request message and returns its response message;
//! both travel as protobuf bytes (prost), the whole frame payload.
//!
//! * **Interface id**: [`interface_id`] of the fully qualified name `package.Service`
//!   (docs/PROTOCOL.md, section 5.4); version 1.
//! * **Procedure numbers**: a method's 1-based position in its `service` block.
//! * **Semantics**: `option idempotency_level = IDEMPOTENT` (or `NO_SIDE_EFFECTS`) makes a
//!   method `[idempotent]`, so its calls are at-least-once by default.
//! * **Streaming** methods are not supported: by default they are an error naming the
//!   method and its file ([`ProtoError::Streaming`]); [`Builder::skip_streaming`] leaves
//!   them out instead.
//! * **protoc** comes from the `protoc-bin-vendored` crate (and so do the well-known
//!   types' `.proto` files): no system `protoc` is needed.
//!
//! In `build.rs` (with `rpc-codegen` under `[build-dependencies]`, and `prost` and
//! `rpc-core` under `[dependencies]`):
//!
//! ```no_run
//! if let Err(e) = rpc_codegen::proto::compile(&["proto/helloworld.proto"], &["proto"]) {
//!     eprintln!("{e}");
//!     std::process::exit(1);
//! }
//! ```
//!
//! and in the crate (the file is named after the protobuf package):
//!
//! ```ignore
//! pub mod helloworld {
//!     rpc_core::include_idl!("helloworld");
//! }
//! ```

mod service;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use service::ServiceGenerator;

/// The interface id of a `.proto` service: the FNV-1a 32-bit hash of the bytes of
/// `proto:` followed by its fully qualified name (`package.Service`, or `Service`
/// without a package), with the top bit set.
///
/// The top bit keeps it clear of the reserved id 0 and in the range RFC 5531 leaves to
/// dynamically assigned programs, like an IDL interface's default id; the `proto:` prefix
/// keeps it apart from the id of an IDL interface of the same qualified name, whose
/// payloads are XDR: a client of the one calling a server of the other is told
/// `UnknownInterface` instead of getting undecodable payloads.
///
/// ```
/// assert_eq!(rpc_codegen::proto::interface_id("helloworld.Greeter"), 0x9420_1c31);
/// ```
pub fn interface_id(full_name: &str) -> u32 {
    crate::check::default_interface_id(None, &format!("proto:{full_name}"))
}

/// Compiles `.proto` files into `OUT_DIR`, from a build script: prost's message types and
/// our stubs for every service, one file per protobuf package. `includes` are the
/// directories imports are searched in (each file of `protos` must be in one of them).
/// Streaming methods are an error; see [`Builder`] for the options.
pub fn compile(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> Result<(), ProtoError> {
    Builder::new().compile(protos, includes)
}

/// Why compiling `.proto` files failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// `protoc` could not run, or rejected the files: the message is protoc's own
    /// (`file:line:column: what is wrong`).
    #[error("error: {message}")]
    Protoc {
        /// What protoc (or starting it) said.
        message: String,
    },
    /// Some services have streaming methods, which are not supported (only unary); see
    /// [`Builder::skip_streaming`].
    #[error(
        "{}\n  = help: `rpc_codegen::proto::Builder::skip_streaming(true)` generates the \
         services without their streaming methods",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    )]
    Streaming(Vec<StreamingMethod>),
    /// prost-build failed on the files (it panicked; the message is its own). Not
    /// expected for files protoc accepts: report it with the `.proto` file.
    #[error("error: prost-build could not generate code: {message}")]
    Generator {
        /// prost-build's panic message.
        message: String,
    },
    /// Writing a generated file failed, or no output directory was set and `OUT_DIR` is
    /// not set either (not running in a build script).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or directory) involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A streaming method found in a `.proto` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingMethod {
    /// The file, as given to [`Builder::compile`] (or, for an imported file, as imported).
    pub file: String,
    /// The method's fully qualified name: `package.Service.Method`.
    pub method: String,
    /// Which side streams.
    pub kind: StreamingKind,
}

impl fmt::Display for StreamingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error: {}: method `{}` is {}; streaming methods are not supported (only unary)",
            self.file, self.method, self.kind
        )
    }
}

/// Which side of a method streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingKind {
    /// `rpc M(Req) returns (stream Resp)`.
    Server,
    /// `rpc M(stream Req) returns (Resp)`.
    Client,
    /// `rpc M(stream Req) returns (stream Resp)`.
    Bidirectional,
}

impl StreamingKind {
    /// The kind of a method with these flags, `None` for a unary one.
    pub fn of(client_streaming: bool, server_streaming: bool) -> Option<StreamingKind> {
        match (client_streaming, server_streaming) {
            (false, false) => None,
            (false, true) => Some(StreamingKind::Server),
            (true, false) => Some(StreamingKind::Client),
            (true, true) => Some(StreamingKind::Bidirectional),
        }
    }
}

impl fmt::Display for StreamingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamingKind::Server => "server-streaming",
            StreamingKind::Client => "client-streaming",
            StreamingKind::Bidirectional => "bidirectional-streaming",
        })
    }
}

/// One generated Rust file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// The file's name: the protobuf package and `.rs` (`helloworld.rs`,
    /// `grpc.health.v1.rs`; `_.rs` for files without a package).
    pub name: String,
    /// The Rust source, headed `// @generated by rpc-codegen ...`.
    pub content: String,
}

/// Compiles `.proto` files into Rust, from a build script: prost's messages plus our
/// stubs for each service (see the [module docs](self)).
///
/// ```no_run
/// rpc_codegen::proto::Builder::new()
///     // route_guide.proto has streaming methods: generate its unary ones only.
///     .skip_streaming(true)
///     .compile(&["proto/route_guide.proto"], &["proto"])
///     .unwrap_or_else(|e| panic!("{e}"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    skip_streaming: bool,
}

impl Builder {
    /// A builder writing to `OUT_DIR` that refuses streaming methods.
    pub fn new() -> Self {
        Builder::default()
    }

    /// Writes the generated files to `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// With `true`, streaming methods are left out of the stubs (the service's docs list
    /// them) instead of being an error; the unary methods keep their procedure numbers
    /// (their position among all the service's methods).
    pub fn skip_streaming(mut self, skip: bool) -> Self {
        self.skip_streaming = skip;
        self
    }

    /// Compiles `protos` (imports are searched in `includes`, then in the well-known
    /// types bundled with the vendored protoc) and writes one file per protobuf package,
    /// only if its content changed. Reports the inputs to Cargo with
    /// `cargo:rerun-if-changed`.
    pub fn compile(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), ProtoError> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => match std::env::var_os("OUT_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => {
                    return Err(ProtoError::Io {
                        path: PathBuf::from("$OUT_DIR"),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "OUT_DIR is not set (not running in a build script?) and no out_dir was given",
                        ),
                    })
                }
            },
        };
        let (files, inputs) = self.run(protos, includes)?;
        for input in inputs {
            println!("cargo:rerun-if-changed={}", input.display());
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ProtoError::Io { path, source }
        };
        std::fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
        for file in files {
            let path = out_dir.join(&file.name);
            if std::fs::read_to_string(&path).is_ok_and(|old| old == file.content) {
                continue;
            }
            std::fs::write(&path, &file.content).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Like [`Builder::compile`], but returns the files instead of writing them (sorted
    /// by name).
    pub fn generate(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<Vec<GeneratedFile>, ProtoError> {
        self.run(protos, includes).map(|(files, _)| files)
    }

    /// Runs protoc and prost-build: the generated files and the input files found on disk.
    fn run(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(Vec<GeneratedFile>, Vec<PathBuf>), ProtoError> {
        let protoc_error = |message: String| ProtoError::Protoc {
            message: message.trim_end().to_owned(),
        };
        let mut config = prost_build::Config::new();
        let mut includes: Vec<PathBuf> = includes.iter().map(|i| i.as_ref().to_owned()).collect();
        // The vendored protoc where the crate has one for this platform; elsewhere
        // prost-build's own choice ($PROTOC, else `protoc` on the PATH).
        if let Ok(protoc) = protoc_bin_vendored::protoc_bin_path() {
            config.protoc_executable(protoc);
        }
        if let Ok(well_known) = protoc_bin_vendored::include_path() {
            includes.push(well_known);
        }
        let mut fds = config
            .load_fds(protos, &includes)
            .map_err(|e| protoc_error(e.to_string()))?;
        normalize_comment_line_ends(&mut fds);

        // Where each descriptor's file is: as the caller named it, or in an include dir.
        let display_name = |name: &str| -> String {
            protos
                .iter()
                .map(AsRef::as_ref)
                .find(|p| p.ends_with(name))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| name.to_owned())
        };
        let mut inputs: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_owned()).collect();
        for file in &fds.file {
            let name = file.name();
            if !protos.iter().any(|p| p.as_ref().ends_with(name)) {
                if let Some(path) = includes.iter().map(|i| i.join(name)).find(|p| p.exists()) {
                    inputs.push(path);
                }
            }
        }

        let mut streaming = Vec::new();
        for file in &fds.file {
            for svc in &file.service {
                for method in &svc.method {
                    let kind =
                        StreamingKind::of(method.client_streaming(), method.server_streaming());
                    if let (Some(kind), false) = (kind, self.skip_streaming) {
                        streaming.push(StreamingMethod {
                            file: display_name(file.name()),
                            method: format!(
                                "{}.{}",
                                service::full_name(file.package(), svc.name()),
                                method.name()
                            ),
                            kind,
                        });
                    }
                }
            }
        }
        if !streaming.is_empty() {
            return Err(ProtoError::Streaming(streaming));
        }

        // The `.proto` files each package's module was generated from, for the header.
        let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let requests = fds
            .file
            .into_iter()
            .map(|file| {
                let module = prost_build::Module::from_protobuf_package_name(file.package());
                let file_name = Path::new(file.name())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                sources
                    .entry(module.to_file_name_or(DEFAULT_FILE))
                    .or_default()
                    .push(file_name);
                (module, file)
            })
            .collect();
        config.service_generator(Box::new(
            ServiceGenerator::new().skip_streaming(self.skip_streaming),
        ));
        // prost-build panics on some inputs it cannot render (it unwraps its own parse
        // of the code it wrote); a build script should get an error it can print.
        let generated =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.generate(requests)));
        let modules = match generated {
            Ok(result) => result.map_err(|e| protoc_error(e.to_string()))?,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "no message".to_owned());
                return Err(ProtoError::Generator { message });
            }
        };
        let mut files: Vec<GeneratedFile> = modules
            .into_iter()
            .map(|(module, content)| {
                let name = module.to_file_name_or(DEFAULT_FILE);
                let from = sources.get(&name).map(|s| s.join(", ")).unwrap_or_default();
                let body = content
                    .strip_prefix(PROST_HEADER)
                    .unwrap_or(&content)
                    .to_owned();
                let content = format!(
                    "// @generated by rpc-codegen (prost-build) from {from}. Do not edit.\n{body}"
                );
                GeneratedFile { name, content }
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((files, inputs))
    }
}

/// Turns every bare carriage return in the files' comments into a line break (and
/// `\r\n` into `\n`), as the IDL compiler does: the comments become doc comments, and
/// Rust rejects a bare `\r` in one (prost-build then panics on its own output).
fn normalize_comment_line_ends(fds: &mut prost_types::FileDescriptorSet) {
    let fix = |text: &mut String| {
        if text.contains('\r') {
            *text = text.replace("\r\n", "\n").replace('\r', "\n");
        }
    };
    for file in &mut fds.file {
        let Some(info) = file.source_code_info.as_mut() else {
            continue;
        };
        for location in &mut info.location {
            let comments = location.leading_comments.iter_mut();
            comments
                .chain(location.trailing_comments.iter_mut())
                .chain(location.leading_detached_comments.iter_mut())
                .for_each(fix);
        }
    }
}

/// prost-build's name for the module of files without a `package`.
const DEFAULT_FILE: &str = "_";

/// The first line prost-build gives every file; ours replaces it.
const PROST_HEADER: &str = "// This file is @generated by prost-build.\n";
