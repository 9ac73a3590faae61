//! Handles of calls started now and collected later.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use super::BlockingRuntime;
use crate::error::RpcError;

/// A call running in the background: await it for the result, poll
/// [`CallHandle::is_finished`], [`CallHandle::cancel`] it, or drop it (which cancels
/// it). Cancelling a call whose request is out sends the server a best-effort Cancel,
/// which makes it skip the call if it is still queued and lets a running handler see it
/// through [`crate::CallContext::is_cancelled`].
#[derive(Debug)]
#[must_use = "dropping a CallHandle cancels the call"]
pub struct CallHandle<T> {
    task: JoinHandle<Result<T, RpcError>>,
}

impl<T: Send + 'static> CallHandle<T> {
    /// Starts `call` on the current tokio runtime.
    pub fn spawn(call: impl Future<Output = Result<T, RpcError>> + Send + 'static) -> Self {
        CallHandle {
            task: tokio::spawn(call),
        }
    }

    /// Starts `call` on `runtime`.
    pub fn spawn_on(
        runtime: &tokio::runtime::Handle,
        call: impl Future<Output = Result<T, RpcError>> + Send + 'static,
    ) -> Self {
        CallHandle {
            task: runtime.spawn(call),
        }
    }
}

impl<T> CallHandle<T> {
    /// Whether the call has finished (awaiting it then returns at once).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Cancels the call; awaiting the handle then gives [`RpcError::Cancelled`] (unless
    /// the call had already finished).
    pub fn cancel(&self) {
        self.task.abort();
    }
}

impl<T> Future for CallHandle<T> {
    type Output = Result<T, RpcError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) if e.is_cancelled() => Err(RpcError::Cancelled),
                Err(_) => Err(RpcError::Internal {
                    message: "the call's task panicked".to_owned(),
                }),
            })
    }
}

impl<T> Drop for CallHandle<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// [`CallHandle`] for blocking callers: start now, [`BlockingCallHandle::wait`] later.
#[derive(Debug)]
#[must_use = "dropping a BlockingCallHandle cancels the call"]
pub struct BlockingCallHandle<T> {
    handle: CallHandle<T>,
    runtime: BlockingRuntime,
}

impl<T: Send + 'static> BlockingCallHandle<T> {
    /// Starts `call` on `runtime`.
    pub fn spawn(
        runtime: &BlockingRuntime,
        call: impl Future<Output = Result<T, RpcError>> + Send + 'static,
    ) -> Self {
        BlockingCallHandle {
            handle: CallHandle::spawn_on(runtime.handle(), call),
            runtime: runtime.clone(),
        }
    }

    /// Blocks until the call finishes; [`RpcError::BlockingInRuntime`] (and the call
    /// is cancelled) if called from inside a tokio runtime.
    pub fn wait(self) -> Result<T, RpcError> {
        let BlockingCallHandle { handle, runtime } = self;
        runtime.call(handle)
    }

    /// Whether the call has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Cancels the call.
    pub fn cancel(&self) {
        self.handle.cancel();
    }
}
