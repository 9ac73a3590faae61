rpc_macros::idl!("calc");

fn main() {}
