//! The IDL compiler: lexer, parser, semantic checker (and, for build scripts, the Rust
//! code generator).
//!
//! An IDL file (docs/IDL.md) goes through [`lexer`] → [`parser`] → [`check`], producing
//! a checked [`model::Spec`]; the generator turns that model into Rust. This crate is
//! not a runtime: the generated code talks to `rpc-core`.
//!
//! Errors are [`diagnostics::Diagnostics`], rendered like rustc's:
//!
//! ```
//! let spec = rpc_codegen::parse_and_check(
//!     "proto/seed.idl",
//!     "interface {\n  int func1(int arg1);\n  int func2(int arg1, int arg2);\n};\n",
//! )
//! .unwrap();
//! assert_eq!(spec.interfaces[0].name.name, "Seed");
//! assert_eq!(spec.interfaces[0].procedures[1].resolved_number, Some(2));
//!
//! let err = rpc_codegen::parse_and_check("proto/calc.idl", "interface Calc {\n  void ping()\n};\n")
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "error: expected `;` after procedure declaration, found `}`
//!  --> proto/calc.idl:2:14
//!   |
//! 2 |   void ping()
//!   |              ^ expected `;`"
//! );
//! ```

pub mod check;
pub mod diagnostics;
pub mod lexer;
pub mod model;
pub mod parser;

/// Parses an IDL file without checking it: values stay unresolved. `file_name` is used
/// in error messages and names an anonymous `interface { ... }`.
pub fn parse(file_name: &str, source: &str) -> Result<model::Spec, diagnostics::Diagnostics> {
    parser::parse(file_name, source)
}

/// Parses and checks an IDL file: on success every value, procedure number and
/// interface id is resolved and the spec is ready for the generator.
pub fn parse_and_check(
    file_name: &str,
    source: &str,
) -> Result<model::Spec, diagnostics::Diagnostics> {
    let mut spec = parser::parse(file_name, source)?;
    check::check(&mut spec)?;
    Ok(spec)
}

// generator: added by the lead
