//! The examples' shared code: the stubs generated from `proto/calc.idl` and
//! `proto/seed.idl` by the build script, and an implementation of the calculator.
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
