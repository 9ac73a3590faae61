//! Compiles the IDL and `.proto` files the examples use into `OUT_DIR`.

fn main() {
    if let Err(e) = rpc_codegen::Builder::new().compile(&[
        "../proto/calc.idl",
        "../proto/seed.idl",
        "../proto/kv.idl",
    ]) {
        // The error is a rustc-style diagnostic (file:line:column, the line, a caret).
        eprintln!("{e}");
        std::process::exit(1);
    }

    // gRPC's public protos through prost-build (docs/PROTO.md). health.proto's `Watch`
    // and route_guide.proto's three streaming methods are left out: only unary methods
    // are supported. protoc is the vendored one: no system protoc needed.
    if let Err(e) = rpc_codegen::proto::Builder::new()
        .skip_streaming(true)
        .compile(
            &[
                "../proto/helloworld.proto",
                "../proto/health.proto",
                "../proto/route_guide.proto",
            ],
            &["../proto"],
        )
    {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
