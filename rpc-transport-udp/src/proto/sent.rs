//! The send side's bookkeeping of one connection: every Data datagram sent and not yet
//! acknowledged, in sequence order, with what is needed to retransmit it and to detect
//! its loss (as quinn-proto's `sent_packets`).
//!
//! Sequence numbers are assigned here, from 1. The table is a ring indexed by
//! `seq - base` whose acknowledged entries are `None` until the lowest ones can be
//! dropped; at most `min(send window, peer's window)` entries are in flight (the
//! connection checks [`SentPackets::can_send`] before it sends new data).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::chain::Chain;
use super::packet::AckInfo;

/// A fragment sent and not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) frag_index: u32,
    pub(crate) frag_count: u32,
    pub(crate) msg_len: u32,
    pub(crate) payload: Chain,
    first_sent: Instant,
    last_sent: Instant,
    transmissions: u32,
    /// Queued for retransmission.
    lost: bool,
}

impl Sent {
    /// A fragment about to be sent for the first time at `now`.
    pub(crate) fn new(
        frag_index: u32,
        frag_count: u32,
        msg_len: u32,
        payload: Chain,
        now: Instant,
    ) -> Self {
        Sent {
            frag_index,
            frag_count,
            msg_len,
            payload,
            first_sent: now,
            last_sent: now,
            transmissions: 1,
            lost: false,
        }
    }
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acked {
    /// It acknowledges sequence numbers never sent: ignored as a whole.
    Invalid,
    /// `newly` datagrams are newly acknowledged; `sample` is the RTT sample (before the
    /// peer's ack delay is taken off) when the highest one it covers was newly
    /// acknowledged and had been sent exactly once (Karn's rule).
    Ok {
        newly: usize,
        sample: Option<Duration>,
    },
}

/// A datagram was sent more than the retransmission limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyRetransmits;

/// Every Data datagram of a connection in flight.
#[derive(Debug)]
pub(crate) struct SentPackets {
    next_seq: u64,
    /// In-flight fragments; index = seq - base; `None` once acknowledged.
    table: VecDeque<Option<Sent>>,
    base: u64,
    in_flight: usize,
    /// Sequence numbers queued for retransmission, oldest first (entries may be stale:
    /// acknowledged meanwhile).
    lost: VecDeque<u64>,
    largest_acked: u64,
    /// When the largest acknowledged datagram was (last) sent.
    largest_acked_sent: Option<Instant>,
}

impl Default for SentPackets {
    fn default() -> Self {
        SentPackets {
            next_seq: 1,
            table: VecDeque::new(),
            base: 1,
            in_flight: 0,
            lost: VecDeque::new(),
            largest_acked: 0,
            largest_acked_sent: None,
        }
    }
}

impl SentPackets {
    /// Datagrams in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The sequence number the next new datagram gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether a new datagram may go out: fewer than `window` in flight, and not more
    /// than `peer_window` past the lowest unacknowledged sequence number (the peer
    /// drops anything beyond its window; everything below `base` is acknowledged, so its
    /// cumulative point is at least `base - 1`).
    pub(crate) fn can_send(&self, window: usize, peer_window: u32) -> bool {
        self.in_flight < window && self.next_seq - self.base < u64::from(peer_window)
    }

    /// Records a datagram sent for the first time; returns its sequence number.
    pub(crate) fn push(&mut self, sent: Sent) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.table.push_back(Some(sent));
        self.in_flight += 1;
        seq
    }

    /// Whether datagrams wait for retransmission.
    pub(crate) fn has_lost(&self) -> bool {
        !self.lost.is_empty()
    }

    /// The oldest datagram waiting for retransmission (stale entries are dropped).
    pub(crate) fn peek_lost(&mut self) -> Option<(u64, &Sent)> {
        while let Some(&seq) = self.lost.front() {
            let live = seq
                .checked_sub(self.base)
                .and_then(|i| self.table.get(i as usize))
                .is_some_and(|slot| slot.as_ref().is_some_and(|s| s.lost));
            if live {
                break;
            }
            self.lost.pop_front();
        }
        let &seq = self.lost.front()?;
        let s = self.table.get((seq - self.base) as usize)?.as_ref()?;
        Some((seq, s))
    }

    /// Takes the datagram [`SentPackets::peek_lost`] returned for retransmission at
    /// `now`.
    pub(crate) fn retransmit_next(&mut self, now: Instant) -> Option<(u64, &Sent)> {
        self.peek_lost()?;
        let seq = self.lost.pop_front()?;
        let s = self.table.get_mut((seq - self.base) as usize)?.as_mut()?;
        s.lost = false;
        s.transmissions += 1;
        s.last_sent = now;
        Some((seq, s))
    }

    /// Applies an acknowledgement received at `now`.
    pub(crate) fn on_ack(&mut self, ack: &AckInfo, now: Instant) -> Acked {
        let highest_sent = self.next_seq - 1;
        let top = ack
            .ranges
            .as_slice()
            .last()
            .map_or(ack.cumulative, |r| r.end.max(ack.cumulative));
        if top > highest_sent {
            return Acked::Invalid;
        }
        let mut newly = 0usize;
        let mut sample: Option<Duration> = None;
        let mut top_newly_acked = false;
        let mut ack_one = |this: &mut SentPackets, seq: u64| {
            let Some(slot) = seq
                .checked_sub(this.base)
                .and_then(|i| this.table.get_mut(i as usize))
            else {
                return;
            };
            if let Some(s) = slot.take() {
                newly += 1;
                this.in_flight -= 1;
                // The highest acknowledged datagram and *its* send time go together:
                // fast retransmit compares other datagrams against that one datagram.
                if seq > this.largest_acked {
                    this.largest_acked = seq;
                    this.largest_acked_sent = Some(s.last_sent);
                }
                if seq == top {
                    top_newly_acked = true;
                    // Karn's rule: only datagrams sent exactly once give RTT samples.
                    if s.transmissions == 1 {
                        sample = Some(now.saturating_duration_since(s.first_sent));
                    }
                }
            }
        };
        let cum_end = ack.cumulative.min(highest_sent);
        let mut seq = self.base;
        while seq <= cum_end {
            ack_one(self, seq);
            seq += 1;
        }
        for r in ack.ranges.as_slice() {
            let mut seq = r.start.max(self.base);
            while seq <= r.end {
                ack_one(self, seq);
                seq += 1;
            }
        }
        while let Some(None) = self.table.front() {
            self.table.pop_front();
            self.base += 1;
        }
        Acked::Ok {
            newly,
            sample: sample.filter(|_| top_newly_acked),
        }
    }

    /// Fast retransmit: marks lost every datagram sent before the largest acknowledged
    /// one with a sequence number at least `reorder_threshold` lower. Returns how many
    /// were newly marked.
    pub(crate) fn detect_lost(&mut self, reorder_threshold: u64) -> usize {
        let Some(acked_sent) = self.largest_acked_sent else {
            return 0;
        };
        let limit = self.largest_acked.saturating_sub(reorder_threshold);
        let mut marked = 0;
        let mut seq = self.base;
        while seq <= limit {
            if let Some(Some(s)) = self.table.get_mut((seq - self.base) as usize) {
                if !s.lost && s.last_sent < acked_sent {
                    s.lost = true;
                    self.lost.push_back(seq);
                    marked += 1;
                }
            }
            seq += 1;
        }
        marked
    }

    /// The retransmission timer fired at `now`: marks lost every datagram sent at least
    /// `rto` ago, and at least the earliest one (RFC 6298 5.4). Fails if one of them was
    /// already sent more than `max_retransmits` times.
    pub(crate) fn on_rto(
        &mut self,
        now: Instant,
        rto: Duration,
        max_retransmits: u32,
    ) -> Result<usize, TooManyRetransmits> {
        let mut marked = 0;
        for (i, slot) in self.table.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            let overdue = s.last_sent + rto <= now;
            if (overdue || marked == 0) && !s.lost {
                if s.transmissions > max_retransmits {
                    return Err(TooManyRetransmits);
                }
                s.lost = true;
                self.lost.push_back(self.base + i as u64);
                marked += 1;
            }
        }
        Ok(marked)
    }

    /// Forgets everything in flight (the connection closed); sequence numbers go on.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.base = self.next_seq;
        self.in_flight = 0;
        self.lost.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packet::{SackRange, SackRanges};
    use bytes::Bytes;

    fn ack(cumulative: u64, ranges: &[(u64, u64)]) -> AckInfo {
        let mut r = SackRanges::new();
        for &(start, end) in ranges {
            assert!(r.push(SackRange { start, end }));
        }
        AckInfo {
            cumulative,
            delay_us: 0,
            ranges: r,
        }
    }

    fn sent(now: Instant) -> Sent {
        Sent::new(0, 1, 1, Chain::from(Bytes::from_static(b"x")), now)
    }

    #[test]
    fn acks_free_the_table_and_give_karn_samples() {
        let t0 = Instant::now();
        let mut s = SentPackets::default();
        for _ in 0..5 {
            s.push(sent(t0));
        }
        assert_eq!((s.in_flight(), s.next_seq()), (5, 6));
        assert_eq!(s.on_ack(&ack(6, &[]), t0), Acked::Invalid);
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!(
            s.on_ack(&ack(2, &[(4, 4)]), t1),
            Acked::Ok {
                newly: 3,
                sample: Some(Duration::from_millis(3))
            }
        );
        assert_eq!(s.in_flight(), 2);
        // Duplicate ack: nothing new.
        assert_eq!(
            s.on_ack(&ack(2, &[(4, 4)]), t1),
            Acked::Ok {
                newly: 0,
                sample: None
            }
        );
        // Seq 3 is lost by fast retransmit only once 3 higher are acked (not yet).
        assert_eq!(s.detect_lost(3), 0);
        // RTO: the earliest (3) at least; retransmitted ones give no sample.
        assert_eq!(s.on_rto(t1, Duration::from_secs(1), 64), Ok(1));
        assert_eq!(s.retransmit_next(t1).map(|(q, _)| q), Some(3));
        assert!(!s.has_lost());
        assert_eq!(
            s.on_ack(&ack(4, &[]), t1),
            Acked::Ok {
                newly: 1,
                sample: None
            }
        );
        s.clear();
        assert_eq!((s.in_flight(), s.next_seq()), (0, 6));
        assert!(s.can_send(1, 1));
    }

    /// The peer's window is a span above the lowest unacknowledged sequence number: after
    /// the first datagram is lost and the rest acknowledged, only 2 are in flight but the
    /// sender may not go beyond seq 1 + window.
    #[test]
    fn the_peer_window_is_a_span_not_a_count() {
        let t0 = Instant::now();
        let mut s = SentPackets::default();
        for _ in 0..4 {
            s.push(sent(t0));
        }
        // Seq 1 lost; 2..=4 selectively acknowledged (cumulative 0).
        assert!(matches!(
            s.on_ack(&ack(0, &[(2, 4)]), t0),
            Acked::Ok { newly: 3, .. }
        ));
        assert_eq!(s.in_flight(), 1);
        // A count rule would allow seq 5 under a window of 4; the span rule does not
        // (1 + 4 = 5 is outside the receiver's window).
        assert!(!s.can_send(1024, 4));
        assert!(s.can_send(1024, 5));
        // Once seq 1 is acknowledged the span moves on.
        assert!(matches!(
            s.on_ack(&ack(4, &[]), t0),
            Acked::Ok { newly: 1, .. }
        ));
        assert!(s.can_send(1024, 4));
    }

    #[test]
    fn rto_gives_up_after_the_limit() {
        let t0 = Instant::now();
        let mut s = SentPackets::default();
        s.push(sent(t0));
        for i in 0..3 {
            assert_eq!(s.on_rto(t0, Duration::ZERO, 3), Ok(1), "round {i}");
            assert!(s.retransmit_next(t0).is_some());
        }
        assert_eq!(s.on_rto(t0, Duration::ZERO, 3), Err(TooManyRetransmits));
    }
}
