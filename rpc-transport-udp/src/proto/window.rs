//! The receiver's sequence window: which seqs arrived, as a cumulative point plus a
//! ring bitmap of the seqs recorded above it.
//!
//! The bitmap holds one bit per seq in `N+1 ..= N+window`, where `N` is the cumulative
//! point; seq `s` lives at bit `s mod capacity` (capacity = the bitmap's bits, a multiple of
//! 64 and at least `window`). Bits are cleared as `N` passes them, so a set bit always
//! belongs to exactly one seq of the current window.

use super::packet::{SackRange, SackRanges};

/// Largest window [`RecvWindow::new`] accepts (larger values are clamped): a 2 MiB bitmap.
pub const MAX_WINDOW: u32 = 1 << 24;

/// How a seq relates to what has already been received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Already received (or 0, which is never a valid seq).
    Duplicate,
    /// The next seq expected: N + 1.
    InOrder,
    /// Above N + 1 but within the window.
    OutOfOrder,
    /// Too far ahead to record.
    BeyondWindow,
}

/// The receiver's record of which seqs arrived.
#[derive(Clone)]
pub struct RecvWindow {
    cumulative: u64,
    window: u32,
    bits: Vec<u64>,
    recorded: usize,
}

impl RecvWindow {
    /// A window that records up to `window` seqs above the cumulative point (window >= 1, clamp).
    ///
    /// Values above [`MAX_WINDOW`] are clamped to it.
    pub fn new(window: u32) -> Self {
        let window = window.clamp(1, MAX_WINDOW);
        let words = (window as usize).div_ceil(64);
        Self {
            cumulative: 0,
            window,
            bits: vec![0; words],
            recorded: 0,
        }
    }

    /// Bits in the ring.
    fn capacity(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    /// (word index, bit index) of `seq` in the ring.
    fn slot(&self, seq: u64) -> (usize, u32) {
        let pos = seq % self.capacity().max(64);
        ((pos / 64) as usize, (pos % 64) as u32)
    }

    fn is_set(&self, seq: u64) -> bool {
        let (w, b) = self.slot(seq);
        self.bits.get(w).is_some_and(|word| word >> b & 1 == 1)
    }

    /// Highest seq the window can record right now.
    fn limit(&self) -> u64 {
        self.cumulative.saturating_add(u64::from(self.window))
    }

    /// Classifies `seq` without recording it: seq == 0 or seq <= N or already recorded → Duplicate; seq == N+1 → InOrder;
    /// N+1 < seq <= N+window → OutOfOrder; seq > N+window → BeyondWindow.
    pub fn check(&self, seq: u64) -> Seen {
        if seq <= self.cumulative {
            // Also covers seq == 0.
            Seen::Duplicate
        } else if seq > self.limit() {
            Seen::BeyondWindow
        } else if self.is_set(seq) {
            Seen::Duplicate
        } else if seq == self.cumulative + 1 {
            Seen::InOrder
        } else {
            Seen::OutOfOrder
        }
    }

    /// Records `seq` (after check said InOrder/OutOfOrder); on InOrder N advances over any recorded run. Returns the same classification as check (and does nothing for Duplicate/BeyondWindow).
    pub fn record(&mut self, seq: u64) -> Seen {
        let seen = self.check(seq);
        match seen {
            Seen::InOrder => {
                self.cumulative = seq;
                self.advance();
            }
            Seen::OutOfOrder => {
                let (w, b) = self.slot(seq);
                if let Some(word) = self.bits.get_mut(w) {
                    *word |= 1 << b;
                    self.recorded += 1;
                }
            }
            Seen::Duplicate | Seen::BeyondWindow => {}
        }
        seen
    }

    /// Moves N over the run of recorded seqs starting at N + 1, a word at a time.
    fn advance(&mut self) {
        while self.recorded > 0 {
            let (w, b) = self.slot(self.cumulative.saturating_add(1));
            let Some(word) = self.bits.get_mut(w) else {
                return;
            };
            let run = (*word >> b).trailing_ones();
            if run == 0 {
                return;
            }
            // run <= 64 - b; clear bits b .. b + run.
            let mask = if run == 64 {
                u64::MAX
            } else {
                ((1u64 << run) - 1) << b
            };
            *word &= !mask;
            self.cumulative = self.cumulative.saturating_add(u64::from(run));
            self.recorded = self.recorded.saturating_sub(run as usize);
            if run < 64 - b {
                return;
            }
        }
    }

    /// Lowest seq in `from ..= limit` whose bit equals `set`, if any.
    fn find(&self, from: u64, limit: u64, set: bool) -> Option<u64> {
        let mut seq = from;
        while seq <= limit {
            let (w, b) = self.slot(seq);
            let word = *self.bits.get(w)?;
            let word = if set { word } else { !word };
            let masked = word >> b;
            if masked != 0 {
                let found = seq.checked_add(u64::from(masked.trailing_zeros()))?;
                return (found <= limit).then_some(found);
            }
            seq = seq.checked_add(u64::from(64 - b))?;
        }
        None
    }

    /// The cumulative point N: every seq 1..=N has been received.
    pub fn cumulative(&self) -> u64 {
        self.cumulative
    }

    /// How many seqs above N can be recorded.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Ranges of recorded seqs above N, lowest first, at most `max` of them, appended into `out` (cleared first).
    pub fn sack_ranges(&self, max: usize, out: &mut SackRanges) {
        out.clear();
        let limit = self.limit();
        let mut from = self.cumulative.saturating_add(1);
        let mut left = self.recorded;
        while left > 0 && out.len() < max {
            let Some(start) = self.find(from, limit, true) else {
                return;
            };
            let end = match self.find(start, limit, false) {
                Some(clear) => clear - 1,
                None => limit,
            };
            if !out.push(SackRange { start, end }) {
                return;
            }
            left = left.saturating_sub((end - start + 1) as usize);
            match end.checked_add(2) {
                Some(next) => from = next,
                None => return,
            }
        }
    }

    /// Number of recorded seqs above N.
    pub fn recorded_above(&self) -> usize {
        self.recorded
    }
}

impl std::fmt::Debug for RecvWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvWindow")
            .field("cumulative", &self.cumulative)
            .field("window", &self.window)
            .field("recorded_above", &self.recorded)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packet::MAX_SACK_RANGES;
    use std::collections::BTreeSet;

    fn ranges(w: &RecvWindow, max: usize) -> Vec<(u64, u64)> {
        let mut out = SackRanges::new();
        out.push(SackRange { start: 1, end: 1 }); // must be cleared
        w.sack_ranges(max, &mut out);
        out.as_slice().iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn new_clamps_window() {
        assert_eq!(RecvWindow::new(0).window(), 1);
        assert_eq!(RecvWindow::new(100).window(), 100);
        assert_eq!(RecvWindow::new(u32::MAX).window(), MAX_WINDOW);
        let w = RecvWindow::new(5);
        assert_eq!(w.cumulative(), 0);
        assert_eq!(w.recorded_above(), 0);
    }

    #[test]
    fn seq_zero_is_duplicate() {
        let mut w = RecvWindow::new(8);
        assert_eq!(w.check(0), Seen::Duplicate);
        assert_eq!(w.record(0), Seen::Duplicate);
        assert_eq!(w.cumulative(), 0);
    }

    #[test]
    fn in_order_advances() {
        let mut w = RecvWindow::new(8);
        for seq in 1..=100 {
            assert_eq!(w.check(seq), Seen::InOrder);
            assert_eq!(w.record(seq), Seen::InOrder);
            assert_eq!(w.cumulative(), seq);
        }
        assert_eq!(w.recorded_above(), 0);
    }

    #[test]
    fn duplicate_below_cumulative() {
        let mut w = RecvWindow::new(8);
        for seq in 1..=5 {
            w.record(seq);
        }
        for seq in 1..=5 {
            assert_eq!(w.check(seq), Seen::Duplicate);
            assert_eq!(w.record(seq), Seen::Duplicate);
        }
        assert_eq!(w.cumulative(), 5);
    }

    #[test]
    fn duplicate_already_recorded() {
        let mut w = RecvWindow::new(8);
        assert_eq!(w.record(3), Seen::OutOfOrder);
        assert_eq!(w.check(3), Seen::Duplicate);
        assert_eq!(w.record(3), Seen::Duplicate);
        assert_eq!(w.recorded_above(), 1);
        assert_eq!(w.cumulative(), 0);
    }

    #[test]
    fn check_does_not_record() {
        let w = RecvWindow::new(8);
        assert_eq!(w.check(3), Seen::OutOfOrder);
        assert_eq!(w.check(3), Seen::OutOfOrder);
        assert_eq!(w.recorded_above(), 0);
    }

    #[test]
    fn gap_then_fill_advances_over_run() {
        let mut w = RecvWindow::new(300);
        for seq in 2..=250 {
            assert_eq!(w.record(seq), Seen::OutOfOrder);
        }
        assert_eq!(w.record(252), Seen::OutOfOrder);
        assert_eq!(w.cumulative(), 0);
        assert_eq!(w.recorded_above(), 250);
        assert_eq!(w.record(1), Seen::InOrder);
        assert_eq!(w.cumulative(), 250);
        assert_eq!(w.recorded_above(), 1);
        assert_eq!(w.check(251), Seen::InOrder);
        assert_eq!(w.record(251), Seen::InOrder);
        assert_eq!(w.cumulative(), 252);
        assert_eq!(w.recorded_above(), 0);
    }

    #[test]
    fn beyond_window() {
        let mut w = RecvWindow::new(10);
        assert_eq!(w.check(12), Seen::BeyondWindow);
        assert_eq!(w.record(12), Seen::BeyondWindow);
        assert_eq!(w.recorded_above(), 0);
        w.record(1);
        w.record(2);
        // N = 2: the window now reaches 12.
        assert_eq!(w.check(12), Seen::OutOfOrder);
        assert_eq!(w.check(13), Seen::BeyondWindow);
        assert_eq!(w.check(u64::MAX), Seen::BeyondWindow);
    }

    #[test]
    fn window_edge_exactly_accepted() {
        for window in [1u32, 63, 64, 65, 128, 1000] {
            let mut w = RecvWindow::new(window);
            let edge = u64::from(window);
            assert_eq!(w.record(edge + 1), Seen::BeyondWindow, "window {window}");
            let expected = if window == 1 {
                Seen::InOrder
            } else {
                Seen::OutOfOrder
            };
            assert_eq!(w.record(edge), expected, "window {window}");
            if window > 1 {
                // Filling the gap advances over everything, edge included.
                for seq in 1..edge {
                    w.record(seq);
                }
            }
            assert_eq!(w.cumulative(), edge, "window {window}");
            assert_eq!(w.recorded_above(), 0);
        }
    }

    #[test]
    fn ring_wraps_without_aliasing() {
        // Capacity 128 > window 100: seqs that share a bit position must not collide.
        let mut w = RecvWindow::new(100);
        for base in (130..3000u64).step_by(130) {
            while w.cumulative() < base {
                let next = w.cumulative() + 1;
                w.record(next);
            }
            assert_eq!(w.record(base + 100), Seen::OutOfOrder);
            assert_eq!(w.check(base + 100 - 128), Seen::Duplicate);
            assert_eq!(w.check(base + 100 + 128), Seen::BeyondWindow);
            assert_eq!(ranges(&w, 8), vec![(base + 100, base + 100)]);
            let gap_seq = base + 2;
            assert_eq!(w.check(gap_seq), Seen::OutOfOrder);
        }
    }

    #[test]
    fn sack_ranges_output() {
        let mut w = RecvWindow::new(500);
        assert_eq!(ranges(&w, 8), vec![]);
        for seq in [3, 4, 5, 7, 60, 61, 62, 63, 64, 65, 66, 67, 200, 500] {
            w.record(seq);
        }
        assert_eq!(
            ranges(&w, 8),
            vec![(3, 5), (7, 7), (60, 67), (200, 200), (500, 500)]
        );
        assert_eq!(ranges(&w, 2), vec![(3, 5), (7, 7)]);
        assert_eq!(ranges(&w, 0), vec![]);
        w.record(1);
        assert_eq!(
            ranges(&w, 8),
            vec![(3, 5), (7, 7), (60, 67), (200, 200), (500, 500)]
        );
        w.record(2);
        assert_eq!(w.cumulative(), 5);
        assert_eq!(
            ranges(&w, 8),
            vec![(7, 7), (60, 67), (200, 200), (500, 500)]
        );
    }

    #[test]
    fn sack_ranges_capped_by_container() {
        let mut w = RecvWindow::new(1000);
        for seq in (3..1000).step_by(2) {
            w.record(seq);
        }
        let got = ranges(&w, usize::MAX);
        assert_eq!(got.len(), MAX_SACK_RANGES);
        assert_eq!(got[0], (3, 3));
        assert_eq!(got[63], (129, 129));
    }

    #[test]
    fn sack_range_reaching_window_end() {
        let mut w = RecvWindow::new(64);
        for seq in 10..=64 {
            w.record(seq);
        }
        assert_eq!(ranges(&w, 8), vec![(10, 64)]);
    }

    #[test]
    fn long_run_advance() {
        let window = 1 << 20;
        let mut w = RecvWindow::new(window);
        for seq in 2..=u64::from(window) {
            w.record(seq);
        }
        assert_eq!(ranges(&w, 8), vec![(2, u64::from(window))]);
        assert_eq!(w.record(1), Seen::InOrder);
        assert_eq!(w.cumulative(), u64::from(window));
        assert_eq!(w.recorded_above(), 0);
        assert!(w.bits.iter().all(|&word| word == 0));
    }

    /// xorshift64*: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    struct Model {
        cum: u64,
        above: BTreeSet<u64>,
        window: u64,
    }

    impl Model {
        fn check(&self, seq: u64) -> Seen {
            if seq <= self.cum || self.above.contains(&seq) {
                Seen::Duplicate
            } else if seq > self.cum + self.window {
                Seen::BeyondWindow
            } else if seq == self.cum + 1 {
                Seen::InOrder
            } else {
                Seen::OutOfOrder
            }
        }
        fn record(&mut self, seq: u64) -> Seen {
            let s = self.check(seq);
            match s {
                Seen::InOrder => {
                    self.cum = seq;
                    while self.above.remove(&(self.cum + 1)) {
                        self.cum += 1;
                    }
                }
                Seen::OutOfOrder => {
                    self.above.insert(seq);
                }
                _ => {}
            }
            s
        }
        fn ranges(&self) -> Vec<(u64, u64)> {
            let mut out: Vec<(u64, u64)> = Vec::new();
            for &s in &self.above {
                match out.last_mut() {
                    Some(last) if last.1 + 1 == s => last.1 = s,
                    _ => out.push((s, s)),
                }
            }
            out
        }
    }

    #[test]
    fn randomized_against_btreeset_model() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let window = [1u32, 7, 64, 100, 130, 256][(seed % 6) as usize];
            let mut w = RecvWindow::new(window);
            let mut m = Model {
                cum: 0,
                above: BTreeSet::new(),
                window: u64::from(window),
            };
            for _ in 0..3000 {
                // Mostly near the cumulative point, sometimes anywhere around the window.
                let spread = u64::from(window) + 20;
                let seq = (m.cum + rng.next() % spread).saturating_sub(10);
                let op = rng.next() % 4;
                if op == 0 {
                    assert_eq!(w.check(seq), m.check(seq), "seed {seed} check {seq}");
                } else {
                    assert_eq!(w.record(seq), m.record(seq), "seed {seed} record {seq}");
                }
                assert_eq!(w.cumulative(), m.cum, "seed {seed}");
                assert_eq!(w.recorded_above(), m.above.len(), "seed {seed}");
                if rng.next() & 15 == 0 {
                    let mut want = m.ranges();
                    want.truncate(MAX_SACK_RANGES);
                    assert_eq!(ranges(&w, usize::MAX), want, "seed {seed}");
                    let max = (rng.next() % 5) as usize;
                    want.truncate(max);
                    assert_eq!(ranges(&w, max), want, "seed {seed}");
                }
            }
            assert!(m.cum > 0, "seed {seed} made no progress");
        }
    }

    #[test]
    fn near_u64_max_does_not_panic() {
        let mut w = RecvWindow::new(64);
        w.cumulative = u64::MAX - 3;
        assert_eq!(w.record(u64::MAX), Seen::OutOfOrder);
        assert_eq!(w.record(u64::MAX - 1), Seen::OutOfOrder);
        assert_eq!(ranges(&w, 8), vec![(u64::MAX - 1, u64::MAX)]);
        assert_eq!(w.record(u64::MAX - 2), Seen::InOrder);
        assert_eq!(w.cumulative(), u64::MAX);
        assert_eq!(w.check(u64::MAX), Seen::Duplicate);
        assert_eq!(ranges(&w, 8), vec![]);
    }
}
