//! Admission to the worker pool: at most `workers` handlers run at once and at most
//! `queue_depth` calls wait for one (FIFO). A call beyond `workers + queue_depth` is
//! answered `Overloaded` at once.
//!
//! The pool is `workers` long-lived worker tasks, started as calls need them, taking
//! admitted calls off one queue: a pooled call costs a queue push and a wakeup, not a
//! task spawn (whose allocation, registration and copy of a large future cost more than
//! the rest of a small call). A worker is started when a call is queued and fewer
//! workers are idle than calls wait, so a handler that waits on another call of the same
//! server never waits behind itself while the pool has room.
//!
//! A call counts here from admission until its handler returns; the wait for its
//! reply to be handed to a slow connection happens after, holding neither a worker nor
//! an admission slot, so one connection that does not read cannot take the pool from
//! the others (its own budget, `max_calls_per_connection`, bounds it instead).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use super::call::Job;

/// The worker pool's admission state.
pub(super) struct Admission {
    /// Most handlers running at once (and worker tasks started).
    workers: usize,
    /// Worker tasks running (started and not yet ended).
    started: AtomicUsize,
    /// Worker tasks waiting for a call.
    idle: AtomicUsize,
    /// Admitted calls waiting for a worker, oldest first (at most `capacity`).
    queue: Mutex<VecDeque<Job>>,
    /// Wakes a waiting worker when a call is queued.
    queued: Notify,
    /// Most calls queued or running at once: workers + queue depth.
    capacity: usize,
    /// Calls queued or running (inline calls included, which need no admission).
    in_flight: AtomicUsize,
    /// Woken when `in_flight` falls to zero.
    drained: Notify,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("workers", &self.workers)
            .field("started", &self.started)
            .field("idle", &self.idle)
            .field("queued", &self.queue().len())
            .field("capacity", &self.capacity)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Admission {
    pub(super) fn new(workers: usize, queue_depth: usize) -> Self {
        let workers = workers.max(1);
        Admission {
            workers,
            started: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
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

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an admitted call for the pool. Returns whether the caller must start a
    /// worker task (it then runs [`Admission::next_job`] in a loop, holding a
    /// [`WorkerGuard`]).
    pub(super) fn push(&self, job: Job) -> bool {
        let waiting = {
            let mut queue = self.queue();
            queue.push_back(job);
            queue.len()
        };
        self.queued.notify_one();
        waiting > self.idle.load(Ordering::SeqCst)
            && self
                .started
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < self.workers).then_some(n + 1)
                })
                .is_ok()
    }

    /// The oldest queued call, waiting for one if none is queued (a worker's loop).
    pub(super) async fn next_job(&self) -> Job {
        loop {
            if let Some(job) = self.queue().pop_front() {
                return job;
            }
            let queued = self.queued.notified();
            tokio::pin!(queued);
            // Registered before the second look: a call queued after it wakes us.
            queued.as_mut().enable();
            if let Some(job) = self.queue().pop_front() {
                return job;
            }
            self.idle.fetch_add(1, Ordering::SeqCst);
            let _idle = Decrement(&self.idle);
            queued.await;
        }
    }

    /// Drops every queued call (the server is closing: their handlers will not run);
    /// each leaves the admission count.
    pub(super) fn abandon_queued(&self) {
        let abandoned: Vec<Job> = self.queue().drain(..).collect();
        for job in abandoned {
            drop(job);
            self.finish();
        }
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

/// Held by a worker task for its life: however it ends (a panic included), the pool may
/// start another in its place.
pub(super) struct WorkerGuard<'a>(pub(super) &'a Admission);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        self.0.started.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes one off a count when dropped.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
