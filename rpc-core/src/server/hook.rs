//! Hooks that live beside a server: started once it serves, stopped first thing in a
//! graceful shutdown. The server knows nothing of what they do (registering with a name
//! registry is one: `crate::naming::registry::RegisterOnServe`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::interface::InterfaceInfo;

/// A boxed future, as [`RunningHook::stop`] returns it.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a [`ServeHook`] is told when the server starts: where it listens and what it
/// hosts.
#[derive(Debug, Clone)]
pub struct Serving {
    local_addr: SocketAddr,
    interfaces: Vec<&'static InterfaceInfo>,
}

impl Serving {
    /// What a server listening on `local_addr` and hosting `interfaces` tells its hooks
    /// (`serve` builds it; tests of a hook build their own).
    pub fn new(local_addr: SocketAddr, interfaces: Vec<&'static InterfaceInfo>) -> Self {
        Serving {
            local_addr,
            interfaces,
        }
    }

    /// The listener's address (e.g. to learn the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every interface version the server hosts, in the order they were added (for
    /// ONC RPC programs: `id` is the program number, `version` the version).
    pub fn interfaces(&self) -> &[&'static InterfaceInfo] {
        &self.interfaces
    }
}

/// Something to start when a server starts serving (see `ServerBuilder::hook`).
pub trait ServeHook: Send + 'static {
    /// Starts it, told what the server serves and where. Must not block: spawn
    /// background work on the current runtime.
    fn start(self: Box<Self>, serving: &Serving) -> Box<dyn RunningHook>;
}

/// A started [`ServeHook`]. A graceful shutdown awaits [`stop`](Self::stop) on every
/// running hook (concurrently) before it stops accepting; dropping the server's handle
/// drops the hooks instead.
pub trait RunningHook: Send + 'static {
    /// Stops it. The future should bound its own wait (the shutdown awaits it).
    fn stop(self: Box<Self>) -> HookFuture;
}
