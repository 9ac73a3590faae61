//! A connection's timers: a small enum indexing a fixed table of deadlines, as in
//! quinn-proto, instead of a heap of callbacks.

use std::time::Instant;

/// One of a connection's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Retransmission timeout (RFC 6298): the oldest unacknowledged datagram (or the
    /// handshake) is overdue.
    Retransmit = 0,
    /// A delayed acknowledgement must go out.
    Ack = 1,
    /// Nothing was sent for a while: send a keepalive.
    Keepalive = 2,
    /// Data is in flight and the peer has been silent too long: unreachable.
    PeerTimeout = 3,
    /// The peer has been silent too long: close and free the connection.
    Idle = 4,
    /// An incomplete message is too old.
    Reassembly = 5,
}

/// Deadlines indexed by [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 6],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline of any timer.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; 6];
    }
}
