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

/// Deadlines indexed by [`Timer`], with the earliest kept at hand (it is asked for
/// after every datagram; the table changes less often than that).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 6],
    /// The minimum of `deadlines`.
    earliest: Option<Instant>,
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        let old = self.deadlines[timer as usize].replace(at);
        if self.earliest.is_none_or(|e| at <= e) {
            self.earliest = Some(at);
        } else if old == self.earliest {
            // The earliest timer moved later: another may be first now.
            self.earliest = self.min();
        }
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        let old = self.deadlines[timer as usize].take();
        if old.is_some() && old == self.earliest {
            self.earliest = self.min();
        }
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
        self.earliest
    }

    fn min(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; 6];
        self.earliest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ALL: [Timer; 6] = [
        Timer::Retransmit,
        Timer::Ack,
        Timer::Keepalive,
        Timer::PeerTimeout,
        Timer::Idle,
        Timer::Reassembly,
    ];

    /// The kept minimum matches a scan after every change of a pseudo-random sequence
    /// of sets and stops.
    #[test]
    fn earliest_is_the_minimum_after_any_change() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let timer = ALL[(x % 6) as usize];
            if (x >> 8) % 4 == 0 {
                table.stop(timer);
            } else {
                table.set(timer, t0 + Duration::from_micros((x >> 16) % 64));
            }
            assert_eq!(table.next(), table.min());
        }
        table.stop_all();
        assert_eq!(table.next(), None);
    }
}
