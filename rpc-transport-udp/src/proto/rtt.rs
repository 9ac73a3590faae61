//! Retransmission timeout estimation (RFC 6298) with exponential backoff.
//!
//! All arithmetic is on whole nanoseconds through [`Duration`] operations, so the
//! results are exact and reproducible; every operation saturates instead of panicking.

use std::time::Duration;

/// The backoff exponent never grows past this (2^31 × any non-zero base exceeds any cap).
const MAX_BACKOFF: u32 = 31;

/// Parameters of the [`RttEstimator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttConfig {
    /// RTO used before the first RTT sample.
    pub initial_rto: Duration,
    /// Lower bound of the base RTO.
    pub min_rto: Duration,
    /// Upper bound of the RTO, backoff included.
    pub max_rto: Duration,
    /// Clock granularity G: the smallest variance term added to SRTT.
    pub granularity: Duration,
}

impl Default for RttConfig {
    /// initial 50 ms, min 5 ms, max 2 s, granularity 1 ms.
    fn default() -> Self {
        Self {
            initial_rto: Duration::from_millis(50),
            min_rto: Duration::from_millis(5),
            max_rto: Duration::from_secs(2),
            granularity: Duration::from_millis(1),
        }
    }
}

/// Smoothed RTT, RTT variance and the retransmission timeout derived from them.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    cfg: RttConfig,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// RTO before backoff; `initial_rto` until the first sample.
    base_rto: Duration,
    backoff: u32,
}

impl RttEstimator {
    /// An estimator with no samples yet: RTO = `cfg.initial_rto` (capped at `max_rto`).
    pub fn new(cfg: RttConfig) -> Self {
        Self {
            cfg,
            srtt: None,
            rttvar: Duration::ZERO,
            base_rto: cfg.initial_rto,
            backoff: 0,
        }
    }

    /// A new RTT measurement R (callers apply Karn's rule: never from retransmitted datagrams).
    /// First: SRTT = R, RTTVAR = R/2. Later: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, then SRTT = 7/8 SRTT + 1/8 R.
    /// Base RTO = SRTT + max(G, 4*RTTVAR), clamped to [min_rto, max_rto]. Resets the backoff.
    pub fn on_sample(&mut self, r: Duration) {
        let srtt = match self.srtt {
            None => {
                self.rttvar = r / 2;
                r
            }
            Some(srtt) => {
                // Duration::abs_diff needs Rust 1.81; the workspace supports 1.80.
                let diff = srtt.max(r) - srtt.min(r);
                self.rttvar = (self.rttvar.saturating_mul(3) / 4).saturating_add(diff / 4);
                (srtt.saturating_mul(7) / 8).saturating_add(r / 8)
            }
        };
        self.srtt = Some(srtt);
        let var_term = self.cfg.granularity.max(self.rttvar.saturating_mul(4));
        // Not Ord::clamp: that panics when a config has min_rto > max_rto.
        self.base_rto = srtt
            .saturating_add(var_term)
            .max(self.cfg.min_rto)
            .min(self.cfg.max_rto);
        self.backoff = 0;
    }

    /// A retransmission timeout fired: doubles the current RTO (backoff exponent += 1) until it reaches max_rto.
    pub fn on_timeout(&mut self) {
        if self.rto() < self.cfg.max_rto && self.backoff < MAX_BACKOFF {
            self.backoff += 1;
        }
    }

    /// Current RTO: base (or initial_rto before any sample) × 2^backoff, capped at max_rto.
    pub fn rto(&self) -> Duration {
        1u32.checked_shl(self.backoff)
            .and_then(|factor| self.base_rto.checked_mul(factor))
            .unwrap_or(Duration::MAX)
            .min(self.cfg.max_rto)
    }

    /// Smoothed RTT, once there has been a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// RTT variance (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// How many times the RTO has been doubled since the last sample or reset.
    pub fn backoff(&self) -> u32 {
        self.backoff
    }

    /// Resets the backoff without a sample (e.g. an ack of new data arrived after retransmissions).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn est() -> RttEstimator {
        RttEstimator::new(RttConfig::default())
    }

    #[test]
    fn default_config() {
        let c = RttConfig::default();
        assert_eq!(c.initial_rto, ms(50));
        assert_eq!(c.min_rto, ms(5));
        assert_eq!(c.max_rto, ms(2000));
        assert_eq!(c.granularity, ms(1));
    }

    #[test]
    fn initial_rto_before_samples() {
        let e = est();
        assert_eq!(e.rto(), ms(50));
        assert_eq!(e.srtt(), None);
        assert_eq!(e.rttvar(), Duration::ZERO);
        assert_eq!(e.backoff(), 0);
    }

    #[test]
    fn first_sample() {
        let mut e = est();
        e.on_sample(ms(10));
        assert_eq!(e.srtt(), Some(ms(10)));
        assert_eq!(e.rttvar(), ms(5));
        assert_eq!(e.rto(), ms(30));
    }

    #[test]
    fn second_sample() {
        let mut e = est();
        e.on_sample(ms(10));
        e.on_sample(ms(18));
        // RTTVAR = 3/4 * 5 + 1/4 * |10 - 18| = 3.75 + 2 = 5.75 ms
        assert_eq!(e.rttvar(), Duration::from_micros(5750));
        // SRTT = 7/8 * 10 + 1/8 * 18 = 8.75 + 2.25 = 11 ms
        assert_eq!(e.srtt(), Some(ms(11)));
        // RTO = 11 + 4 * 5.75 = 34 ms
        assert_eq!(e.rto(), ms(34));
    }

    #[test]
    fn sample_below_srtt_uses_absolute_difference() {
        let mut e = est();
        e.on_sample(ms(16));
        e.on_sample(ms(8));
        // RTTVAR = 3/4 * 8 + 1/4 * 8 = 8; SRTT = 14 + 1 = 15; RTO = 15 + 32 = 47
        assert_eq!(e.rttvar(), ms(8));
        assert_eq!(e.srtt(), Some(ms(15)));
        assert_eq!(e.rto(), ms(47));
    }

    #[test]
    fn granularity_floor_on_variance_term() {
        let cfg = RttConfig {
            min_rto: Duration::ZERO,
            granularity: ms(3),
            ..RttConfig::default()
        };
        let mut e = RttEstimator::new(cfg);
        e.on_sample(Duration::from_micros(200));
        // 4 * RTTVAR = 400 us < G = 3 ms
        assert_eq!(e.rto(), Duration::from_micros(3200));
    }

    #[test]
    fn min_clamp() {
        let mut e = est();
        e.on_sample(Duration::from_micros(500));
        // 0.5 + max(1, 1) = 1.5 ms, below min 5 ms
        assert_eq!(e.srtt(), Some(Duration::from_micros(500)));
        assert_eq!(e.rto(), ms(5));
    }

    #[test]
    fn max_clamp() {
        let mut e = est();
        e.on_sample(ms(1500));
        // 1500 + 4 * 750 = 4500 ms, above max 2 s
        assert_eq!(e.rto(), ms(2000));
        e.on_sample(Duration::MAX);
        assert_eq!(e.rto(), ms(2000));
    }

    #[test]
    fn backoff_doubles_until_cap() {
        let mut e = est();
        let mut seen = vec![e.rto()];
        for _ in 0..10 {
            e.on_timeout();
            seen.push(e.rto());
        }
        let expected: Vec<Duration> = [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(e.backoff(), 6);
    }

    #[test]
    fn sample_resets_backoff() {
        let mut e = est();
        e.on_timeout();
        e.on_timeout();
        assert_eq!(e.backoff(), 2);
        assert_eq!(e.rto(), ms(200));
        e.on_sample(ms(10));
        assert_eq!(e.backoff(), 0);
        assert_eq!(e.rto(), ms(30));
        e.on_timeout();
        assert_eq!(e.rto(), ms(60));
    }

    #[test]
    fn reset_backoff_keeps_estimate() {
        let mut e = est();
        e.on_sample(ms(10));
        e.on_timeout();
        e.on_timeout();
        assert_eq!(e.rto(), ms(120));
        e.reset_backoff();
        assert_eq!(e.backoff(), 0);
        assert_eq!(e.rto(), ms(30));
        assert_eq!(e.srtt(), Some(ms(10)));
    }

    #[test]
    fn degenerate_configs_do_not_panic() {
        let cfg = RttConfig {
            initial_rto: Duration::ZERO,
            min_rto: ms(10),
            max_rto: ms(1),
            granularity: Duration::ZERO,
        };
        let mut e = RttEstimator::new(cfg);
        for _ in 0..100 {
            e.on_timeout();
        }
        assert_eq!(e.rto(), Duration::ZERO);
        assert!(e.backoff() <= MAX_BACKOFF);
        e.on_sample(Duration::ZERO);
        assert_eq!(e.rto(), ms(1));
        e.on_sample(Duration::MAX);
        e.on_sample(Duration::MAX);
        assert_eq!(e.rto(), ms(1));

        let mut e = RttEstimator::new(RttConfig {
            max_rto: Duration::MAX,
            ..RttConfig::default()
        });
        for _ in 0..100 {
            e.on_timeout();
        }
        assert_eq!(e.backoff(), MAX_BACKOFF);
        assert_eq!(e.rto(), ms(50) * (1 << 31));
    }
}
