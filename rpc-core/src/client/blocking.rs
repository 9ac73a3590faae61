use std::future::Future;
use std::io;
use std::sync::Arc;

/// A small tokio runtime owned by blocking clients, so synchronous code can make calls.
///
/// One background worker thread runs the connections' reader and writer tasks; each
/// blocking call runs its future on the calling thread with [`BlockingRuntime::block_on`].
/// Clones share the runtime. Like any tokio runtime it must not be driven from inside
/// an async context (tokio panics if `block_on` is called from a runtime thread).
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

    /// Runs `fut` to completion on the calling thread.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// The runtime's handle (to spawn background work on it).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }
}
