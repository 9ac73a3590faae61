//! The sans-IO protocol core. Nothing here touches a socket, a clock or a task: time is
//! always an argument, and randomness comes from the endpoint's incarnation, so a run is
//! reproducible from its inputs.
//!
//! [`Endpoint`] is the entry point: it owns the connections of one socket.

pub mod chain;
pub mod config;
pub mod connection;
pub mod cookie;
pub mod endpoint;
pub mod packet;
pub mod reassembly;
pub mod rtt;
pub mod seal;
mod sent;
mod timer;
pub mod window;

pub use chain::Chain;
pub use config::Config;
pub use connection::{close_code, CloseReason, ConnectionStats, Event, SendError, Side};
pub use endpoint::{ConnectionHandle, Endpoint, EndpointStats};
pub use seal::{PreSharedKey, Security, SecurityError, StaticKeypair};

/// A fast hasher for maps keyed by the core's own sequential handles (never by anything
/// a peer chooses, so hash flooding is not a concern there): one multiply per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct HandleHasher(u64);

impl std::hash::Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A `HashMap` keyed by handles, with [`HandleHasher`].
pub type HandleMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<HandleHasher>>;
/// A `HashSet` of handles, with [`HandleHasher`].
pub type HandleSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<HandleHasher>>;
