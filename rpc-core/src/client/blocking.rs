use std::future::Future;
use std::io;
use std::sync::Arc;

use crate::error::RpcError;

/// A small tokio runtime owned by blocking clients, so synchronous code can make calls.
///
/// One background worker thread runs the connections' reader and writer tasks; each
/// blocking call runs its future on the calling thread with [`BlockingRuntime::block_on`].
/// Clones share the runtime. A blocking call made from inside a tokio runtime (an async
/// task) would block that runtime's thread; [`BlockingRuntime::call`] detects it and
/// returns [`RpcError::BlockingInRuntime`] instead of blocking or panicking.
#[derive(Debug, Clone)]
pub struct BlockingRuntime {
    rt: Arc<tokio::runtime::Runtime>,
}

impl BlockingRuntime {
    /// Starts a runtime with one worker thread.
    pub fn new() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rpc-blocking-client")
            .enable_all()
            .build()?;
        Ok(BlockingRuntime { rt: Arc::new(rt) })
    }

    /// Runs the call `fut` to completion on the calling thread, or returns
    /// [`RpcError::BlockingInRuntime`] (without running it) when the calling thread is
    /// inside a tokio runtime, where blocking would stall it (and tokio would panic).
    /// Generated blocking clients call this.
    pub fn call<T>(&self, fut: impl Future<Output = Result<T, RpcError>>) -> Result<T, RpcError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(RpcError::BlockingInRuntime);
        }
        self.rt.block_on(fut)
    }

    /// Runs `fut` to completion on the calling thread. Panics (tokio's panic) when
    /// called from inside a tokio runtime; [`BlockingRuntime::call`] returns an error
    /// instead.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// The runtime's handle (to spawn background work on it).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }
}
