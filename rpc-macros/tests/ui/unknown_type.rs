rpc_macros::idl!("shapes", "struct Shape { Point centre; };\ninterface { Shape get(); };\n");

fn main() {}
