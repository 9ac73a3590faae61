//! An IDL error after escapes in a plain string literal is still pinned at its real
//! line and column in this file.
rpc_macros::idl!("esc", "const A = 1;\n\tconst B = \u{e9};\n");

fn main() {}
