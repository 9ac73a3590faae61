//! The fuzz targets' shared code: each module holds the body of one target (in
//! `fuzz_targets/`) with its oracle, so that the regression tests and a plain
//! replay runner can call the same functions.

pub mod frame;
pub mod grammar;
pub mod idl;
pub mod tcp;
pub mod udp;
pub mod xdr;

pub use grammar::Choices;
