//! Prints the IDL the grammar target builds from an input file.
fn main() {
    let path = std::env::args().nth(1).expect("input file");
    let data = std::fs::read(path).expect("readable");
    print!("{}", rpc_fuzz::idl::grammar(&data));
}
