use std::future::Future;
use std::io;
use std::sync::Arc;

use crate::error::RpcError;

/// A small tokio runtime owned by blocking clients, so synchronous code can make calls.
///
/// One background worker thread runs the connections' reader and writer tasks; each
/// blocking call runs its future on the calling thread with [`BlockingRuntime::block_on`].
/// Clones share the runtime. A blocking call made from inside a tokio runtime is detected
/// by [`BlockingRuntime::call`] and run on a thread of its own instead of panicking.
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

    /// Runs the call `fut` to completion, blocking the calling thread. Generated
    /// blocking clients call this.
    ///
    /// From a plain thread the future runs on the calling thread. From inside a tokio
    /// runtime (an async task, `spawn_blocking`, a `block_on`), where driving another
    /// runtime would panic, it runs on a short-lived thread of its own while the calling
    /// thread waits: the call works, but it blocks that thread (on an async worker this
    /// stalls the worker's other tasks, so prefer the async client there). Never panics;
    /// [`RpcError::BlockingInRuntime`] if that thread cannot be started.
    pub fn call<T: Send>(
        &self,
        fut: impl Future<Output = Result<T, RpcError>> + Send,
    ) -> Result<T, RpcError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(fut);
        }
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("rpc-blocking-call".into())
                .spawn_scoped(scope, || self.rt.block_on(fut))
                .map_err(|_| RpcError::BlockingInRuntime)?;
            thread.join().unwrap_or(Err(RpcError::BlockingInRuntime))
        })
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
