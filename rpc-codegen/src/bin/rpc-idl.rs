//! `rpc-idl`: the IDL compiler on the command line, for rpcgen users and for looking at
//! what the build script does.
//!
//! ```text
//! rpc-idl check [OPTIONS] FILE...  diagnostics only; exit status 1 on any error
//! rpc-idl gen [OPTIONS] FILE... -o DIR
//!                                  write the Rust the build script writes, into DIR
//! rpc-idl --emit ast|model FILE    print the parsed (ast) or checked (model) spec
//! ```

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: rpc-idl check [OPTIONS] FILE...
       rpc-idl gen [OPTIONS] FILE... -o DIR
       rpc-idl --emit ast|model FILE

  check           parse and check each file; print rustc-style diagnostics;
                  exit status 1 if any file has errors
  gen             generate the Rust module of each file into DIR (the same file
                  rpc_codegen::Builder writes to OUT_DIR in a build script)
  -I DIR          look for #include files in DIR too (check, gen)
  -D NAME[=VALUE] define a preprocessor macro (check, gen)
  --prelude FILE  read FILE ahead of each file, in its namespace (check, gen)
  --strings-as-bytes
                  generate XDR strings as bytes, not String (gen)
  --emit ast      print the parsed file (values unresolved)
  --emit model    print the checked model the generator works from
  -h, --help      this text
  -V, --version   the version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("rpc-idl: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let Some(first) = args.first() else {
        return Err("no command given".into());
    };
    match first.as_str() {
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        "-V" | "--version" => {
            println!("rpc-idl {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        "check" => {
            let (builder, rest) = options(&args[1..])?;
            let files = files(&rest)?;
            let mut failed = false;
            for file in files {
                match read(&file) {
                    Ok(source) => {
                        let name = file.display().to_string();
                        if let Err(errors) = builder.check_source(&name, &source) {
                            print_errors(&errors);
                            failed = true;
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        "gen" => {
            let mut out = None;
            let (builder, args) = options(&args[1..])?;
            let mut rest = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "-o" | "--out-dir" => {
                        out = Some(PathBuf::from(it.next().ok_or("-o needs a directory")?));
                    }
                    _ => rest.push(a.clone()),
                }
            }
            let out = out.ok_or("gen needs -o DIR")?;
            let files = files(&rest)?;
            match builder
                .out_dir(&out)
                .emit_rerun_if_changed(false)
                .compile(&files)
            {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(rpc_codegen::BuildError::Idl(errors)) => {
                    print_errors(&errors);
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        "--emit" => {
            let what = args.get(1).ok_or("--emit needs ast or model")?;
            let [file] = &files(&args[2..])?[..] else {
                return Err("--emit takes one file".into());
            };
            let source = read(file).map_err(|e| e.to_string())?;
            let name = file.display().to_string();
            let spec = match what.as_str() {
                "ast" => rpc_codegen::parse(&name, &source),
                "model" => rpc_codegen::parse_and_check(&name, &source),
                other => return Err(format!("unknown --emit kind `{other}` (ast or model)")),
            };
            match spec {
                Ok(spec) => {
                    println!("{spec:#?}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    print_errors(&errors);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

/// Takes the preprocessor and mapping options out of `args`.
fn options(args: &[String]) -> Result<(rpc_codegen::Builder, Vec<String>), String> {
    let mut builder = rpc_codegen::Builder::new();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-I" => builder = builder.include_dir(it.next().ok_or("-I needs a directory")?),
            "-D" => {
                let def = it.next().ok_or("-D needs NAME or NAME=VALUE")?;
                let (name, value) = def.split_once('=').unwrap_or((def, ""));
                builder = builder.define(name, value);
            }
            "--prelude" => {
                builder = builder.prelude_file(it.next().ok_or("--prelude needs a file")?)
            }
            "--strings-as-bytes" => builder = builder.strings_as_bytes(true),
            _ if a.starts_with("-I") && a.len() > 2 => builder = builder.include_dir(&a[2..]),
            _ => rest.push(a.clone()),
        }
    }
    Ok((builder, rest))
}

fn files(args: &[String]) -> Result<Vec<PathBuf>, String> {
    if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
        return Err(format!("unknown option `{flag}`"));
    }
    if args.is_empty() {
        return Err("no input files".into());
    }
    Ok(args.iter().map(PathBuf::from).collect())
}

fn read(file: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))
}

fn print_errors(errors: &rpc_codegen::diagnostics::Diagnostics) {
    if std::io::stderr().is_terminal() {
        eprintln!("{}", errors.render_styled());
    } else {
        eprintln!("{errors}");
    }
}
