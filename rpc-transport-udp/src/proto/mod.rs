//! The sans-IO protocol core. Nothing here touches a socket, a clock or a task: time is
//! always an argument, and randomness comes from the endpoint's incarnation, so a run is
//! reproducible from its inputs.
//!
//! [`Endpoint`] is the entry point: it owns the connections of one socket.

pub mod config;
pub mod connection;
pub mod endpoint;
pub mod packet;
pub mod reassembly;
pub mod rtt;
mod timer;
pub mod window;

pub use config::Config;
pub use connection::{close_code, CloseReason, ConnectionStats, Event, SendError, Side};
pub use endpoint::{ConnectionHandle, Endpoint, EndpointStats};
