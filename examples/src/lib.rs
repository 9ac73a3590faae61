//! The examples' shared code: the stubs generated from `proto/calc.idl`,
//! `proto/seed.idl` and `proto/kv.idl` by the build script, and implementations of the
//! calculator and the key-value store; and, from gRPC's public `.proto` files through
//! `rpc_codegen::proto`, the helloworld, health and route guide services.
//!
//! The binaries are `demo` (server and client in one process), `calc-server` and
//! `calc-client`.

/// Stubs generated from `proto/calc.idl` (package `calc`).
pub mod calc {
    rpc_core::include_idl!("calc");
}

/// Stubs generated from the seed's anonymous interface, `proto/seed.idl`.
pub mod seed {
    rpc_core::include_idl!("seed");
}

pub mod calc_service;

/// Stubs generated from `proto/kv.idl` (package `kv`).
pub mod kv {
    rpc_core::include_idl!("kv");
}

pub mod kv_service;
pub mod metrics;
pub mod server_limits;
pub mod udp_security;

// The `.proto` services (rpc_codegen::proto, docs/PROTO.md). prost's message types
// carry only the docs their `.proto` files have, hence `allow(missing_docs)`.

/// Messages and stubs generated from gRPC's `proto/helloworld.proto` (package
/// `helloworld`): `GreeterClient`, `Greeter`, `GreeterServer`, ...
#[allow(missing_docs)]
pub mod helloworld {
    rpc_core::include_idl!("helloworld");
}

/// Messages and stubs generated from gRPC's `proto/health.proto` (package
/// `grpc.health.v1`; unary `Check` only): `HealthClient`, `Health`, `HealthServer`, ...
#[allow(missing_docs)]
pub mod health {
    rpc_core::include_idl!("grpc.health.v1");
}

/// Messages and stubs generated from gRPC's `proto/route_guide.proto` (package
/// `routeguide`; unary `GetFeature` only): `RouteGuideClient`, `RouteGuide`, ...
#[allow(missing_docs)]
pub mod routeguide {
    rpc_core::include_idl!("routeguide");
}

pub mod proto_services;
