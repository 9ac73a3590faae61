//! Admission to the worker pool: at most `workers` handlers run at once and at most
//! `queue_depth` calls wait for one (a semaphore, FIFO). A call beyond
//! `workers + queue_depth` is answered `Overloaded` at once.
//!
//! A call counts here from admission until its handler returns; the wait for its
//! reply to be handed to a slow connection happens after, holding neither a worker nor
//! an admission slot, so one connection that does not read cannot take the pool from
//! the others (its own budget, `max_calls_per_connection`, bounds it instead).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// The worker pool's admission state.
#[derive(Debug)]
pub(super) struct Admission {
    /// One permit per worker.
    workers: Semaphore,
    /// Most calls queued or running at once: workers + queue depth.
    capacity: usize,
    /// Calls queued or running (inline calls included, which need no admission).
    in_flight: AtomicUsize,
    /// Woken when `in_flight` falls to zero.
    drained: Notify,
}

impl Admission {
    pub(super) fn new(workers: usize, queue_depth: usize) -> Self {
        Admission {
            workers: Semaphore::new(workers.min(Semaphore::MAX_PERMITS)),
            capacity: workers.saturating_add(queue_depth),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
        }
    }

    /// Admits a call to the queue if there is room; the caller must
    /// [`finish`](Self::finish) it (a [`Finish`] guard does).
    pub(super) fn try_admit(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Counts a call that needs no admission (an inline call), so a graceful shutdown
    /// waits for it too.
    pub(super) fn enter_inline(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A call admitted (or entered) is done with its handler.
    pub(super) fn finish(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Waits for a worker.
    pub(super) async fn worker(&self) -> Option<SemaphorePermit<'_>> {
        self.workers.acquire().await.ok()
    }

    /// Calls queued or running.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Waits until no call is queued or running.
    pub(super) async fn wait_drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Calls [`Admission::finish`] when dropped, however the call's handler part ends.
pub(super) struct Finish<'a>(pub(super) &'a Admission);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_capacity() {
        let a = Admission::new(2, 3);
        assert!((0..5).all(|_| a.try_admit()));
        assert!(!a.try_admit());
        a.finish();
        assert!(a.try_admit());
        assert_eq!(a.in_flight(), 5);
    }
}
