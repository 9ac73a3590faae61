//! The socket's counters published through the `metrics` facade, as
//! `rpc_udp_<field>_total` for each counter of [`super::UdpStats`] (documented in
//! `docs/OBSERVABILITY.md`).
//!
//! The protocol core keeps plain counters (it knows nothing of metrics); the driver adds
//! what they moved by since the last time to the metric handles, at most every
//! [`PUBLISH_INTERVAL`] while the socket is busy, and once more when the socket closes.
//! Handles are registered when the socket opens: install the recorder before that.

use std::time::{Duration, Instant};

use metrics::Counter;

use super::UdpStats;

/// How often a busy socket publishes its counters' progress.
pub(super) const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

macro_rules! published {
    ($($field:ident),* $(,)?) => {
        /// One socket's metric handles and what they were last told.
        pub(super) struct Published {
            $($field: Counter,)*
            last: UdpStats,
            next: Option<Instant>,
        }

        impl Published {
            pub(super) fn new() -> Self {
                Published {
                    $($field: metrics::counter!(concat!("rpc_udp_", stringify!($field), "_total")),)*
                    last: UdpStats::default(),
                    next: None,
                }
            }

            /// Adds what the counters moved by since the last call.
            pub(super) fn publish(&mut self, now: &UdpStats) {
                $(self.$field.increment(now.$field.saturating_sub(self.last.$field));
                self.last.$field = now.$field;)*
            }
        }
    };
}

published!(
    datagrams_sent,
    datagrams_received,
    retransmits,
    duplicates,
    checksum_failures,
    malformed,
    unknown_connection,
    beyond_window,
    over_budget,
    rto_timeouts,
    connections_opened,
    connections_accepted,
    connections_refused,
    connections_closed,
    send_errors,
    recv_errors,
    pending_out_drops,
    datagrams_gathered,
    gso_sends,
    recv_calls,
    gro_batches,
    accept_overflow,
    bad_frames,
    retries_sent,
    cookies_expired,
    cookies_invalid,
    replays_refused,
    bad_parameters,
    refused_per_ip,
    accepted_unvalidated,
    amplification_blocked,
    never_acked_closes,
    no_progress_closes,
    reassembly_evictions,
    handshakes_completed,
    handshakes_failed,
    handshakes_refused,
    security_mismatch,
    unsealed_dropped,
    replays_dropped,
    forged_dropped,
);

impl Published {
    /// Whether it is time to publish again (and if so, when the next time is).
    pub(super) fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(next) if now < next => false,
            _ => {
                self.next = Some(now + PUBLISH_INTERVAL);
                true
            }
        }
    }
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published").finish_non_exhaustive()
    }
}
