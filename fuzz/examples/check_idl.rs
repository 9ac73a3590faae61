//! Runs only the checker on an IDL file, then the generator, saying how far it got.
fn main() {
    let path = std::env::args().nth(1).expect("input file");
    let source = std::fs::read_to_string(path).expect("readable");
    let checked = rpc_codegen::parse_and_check("in.idl", &source);
    eprintln!("checked: {}", checked.is_ok());
    if let Ok(spec) = checked {
        let rust = rpc_codegen::generate::generate(&spec);
        eprintln!("generated {} bytes", rust.len());
    }
}
