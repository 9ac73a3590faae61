//! Hooks that live beside a server: started once it serves, stopped first thing in a
//! graceful shutdown. The server knows nothing of what they do (registering with a name
//! registry is one: `crate::naming::registry::RegisterOnServe`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// A boxed future, as [`RunningHook::stop`] returns it.
pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Something to start when a server starts serving (see `ServerBuilder::hook`).
pub trait ServeHook: Send + 'static {
    /// Starts it; `local_addr` is the listener's address (e.g. to learn the port chosen
    /// for port 0). Must not block: spawn background work on the current runtime.
    fn start(self: Box<Self>, local_addr: SocketAddr) -> Box<dyn RunningHook>;
}

/// A started [`ServeHook`]. A graceful shutdown awaits [`stop`](Self::stop) on every
/// running hook (concurrently) before it stops accepting; dropping the server's handle
/// drops the hooks instead.
pub trait RunningHook: Send + 'static {
    /// Stops it. The future should bound its own wait (the shutdown awaits it).
    fn stop(self: Box<Self>) -> HookFuture;
}
