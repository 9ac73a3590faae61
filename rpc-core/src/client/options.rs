use bytes::Bytes;
use std::time::{Duration, Instant};

use super::credentials::Credentials;
use crate::frame::Semantics;

/// Per-call options. Anything left `None` falls back to the client's [`ClientConfig`]
/// (or, for semantics, to the procedure's default: at-least-once for `[idempotent]`
/// procedures, otherwise the client's default).
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{client::CallOptions, Semantics};
/// let opts = CallOptions::new()
///     .timeout(Duration::from_millis(200))
///     .semantics(Semantics::AtMostOnce);
/// assert_eq!(opts.timeout, Some(Duration::from_millis(200)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// Time allowed from the start of the call; ignored when `deadline` is set.
    pub timeout: Option<Duration>,
    /// An absolute deadline (wins over `timeout`).
    pub deadline: Option<Instant>,
    /// The delivery guarantee.
    pub semantics: Option<Semantics>,
    /// How to retry (falls back to the client's [`ClientConfig::retry`]).
    pub retry: Option<RetryPolicy>,
    /// Credentials for this call, instead of what the client's
    /// [`ClientConfig::credentials`] provider gives.
    pub credentials: Option<Bytes>,
}

impl CallOptions {
    /// Options with every field unset.
    pub fn new() -> Self {
        CallOptions::default()
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets an absolute deadline.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the semantics.
    pub fn semantics(mut self, semantics: Semantics) -> Self {
        self.semantics = Some(semantics);
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sends `credentials` with this call (instead of the client's provider's).
    pub fn credentials(mut self, credentials: impl Into<Bytes>) -> Self {
        self.credentials = Some(credentials.into());
        self
    }

    /// Fills every unset field of `self` from `defaults`.
    pub fn or(&self, defaults: &CallOptions) -> CallOptions {
        CallOptions {
            timeout: self.timeout.or(defaults.timeout),
            deadline: self.deadline.or(defaults.deadline),
            semantics: self.semantics.or(defaults.semantics),
            retry: self.retry.or(defaults.retry),
            credentials: self
                .credentials
                .clone()
                .or_else(|| defaults.credentials.clone()),
        }
    }
}

/// Client-wide settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Timeout of calls that set neither a timeout nor a deadline. Default 30 s.
    pub default_timeout: Duration,
    /// Semantics of calls that do not choose. Default at-most-once.
    pub default_semantics: Semantics,
    /// First delay before reconnecting after a failed connect. Default 20 ms.
    pub reconnect_backoff_min: Duration,
    /// Largest delay between reconnect attempts. Default 2 s.
    pub reconnect_backoff_max: Duration,
    /// Most calls awaiting a reply at once; further calls wait for a slot (bounded by
    /// their deadline). Default 65,536.
    pub max_in_flight: usize,
    /// Shared descriptors: `opaque` arguments of at least this many bytes are sent by
    /// reference to the caller's [`bytes::Bytes`] (gathered by the transport's vectored
    /// write) instead of being copied into the request; `None` copies every argument
    /// (the reference path). Default `Some(`[`crate::xdr::DEFAULT_SHARE_THRESHOLD`]`)`.
    pub share_threshold: Option<usize>,
    /// How calls are retried when they do not choose.
    pub retry: RetryPolicy,
    /// How a balanced client chooses an endpoint. Default round robin.
    pub balance: Balance,
    /// Consecutive failures that mark an endpoint down. Default 2.
    pub failures_to_down: u32,
    /// First wait before a down endpoint is tried again. Default 50 ms.
    pub probe_backoff_min: Duration,
    /// Longest wait before a down endpoint is tried again (the wait doubles after each
    /// failed probe). Default 2 s.
    pub probe_backoff_max: Duration,
    /// What each call sends for the server's authorizers to check (`None`: nothing).
    /// Default `None`.
    pub credentials: Option<Credentials>,
}

/// How a balanced client spreads calls over its endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The one with fewer calls outstanding of two chosen at random (power of two
    /// choices): a slow endpoint accumulates outstanding calls and gets fewer new ones.
    LeastOutstanding,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            default_timeout: Duration::from_secs(30),
            default_semantics: Semantics::AtMostOnce,
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_secs(2),
            max_in_flight: 65_536,
            share_threshold: Some(crate::xdr::DEFAULT_SHARE_THRESHOLD),
            retry: RetryPolicy::default(),
            balance: Balance::RoundRobin,
            failures_to_down: 2,
            probe_backoff_min: Duration::from_millis(50),
            probe_backoff_max: Duration::from_secs(2),
            credentials: None,
        }
    }
}

impl ClientConfig {
    /// Sets the default timeout.
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.default_timeout = d;
        self
    }

    /// Sets the balancing policy.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Sets the health thresholds: failures that mark an endpoint down, and the probe
    /// backoff range.
    pub fn health(
        mut self,
        failures_to_down: u32,
        probe_min: Duration,
        probe_max: Duration,
    ) -> Self {
        self.failures_to_down = failures_to_down.max(1);
        self.probe_backoff_min = probe_min;
        self.probe_backoff_max = probe_max.max(probe_min);
        self
    }

    /// Sets the default retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the default semantics.
    pub fn default_semantics(mut self, s: Semantics) -> Self {
        self.default_semantics = s;
        self
    }

    /// Sets the reconnect backoff range.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_backoff_min = min;
        self.reconnect_backoff_max = max.max(min);
        self
    }

    /// Sends credentials with every call ([`ClientConfig::credentials`]), e.g.
    /// `Credentials::bearer("token")`; a call's [`CallOptions::credentials`] wins.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets [`ClientConfig::share_threshold`].
    pub fn share_threshold(mut self, threshold: Option<usize>) -> Self {
        self.share_threshold = threshold;
        self
    }

    /// Sets the in-flight call limit.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }
}

/// How a call is retried. What may be retried depends on the call's semantics:
///
/// * an error that proves the call was **not executed** (overloaded, shutting down,
///   the connection could not be made, the request never left) is retried whatever the
///   semantics, if `retry_not_executed` is set;
/// * a call **in doubt** (the connection failed after it was sent, or `attempt_timeout`
///   passed) is resent with the same call id if it is at-least-once or exactly-once (the
///   server's reply cache answers exactly-once duplicates without running them again),
///   and fails with [`crate::RpcError::OutcomeUnknown`] if it is at-most-once.
///
/// Attempts stop at `max_attempts` or when the next one could not start before the
/// call's deadline. Between attempts the client waits a backoff that starts at
/// `initial_backoff`, doubles up to `max_backoff`, and is jittered (a random 50–100 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all (1: never retry). Default 8.
    pub max_attempts: u32,
    /// First backoff. Default 5 ms.
    pub initial_backoff: Duration,
    /// Largest backoff. Default 1 s.
    pub max_backoff: Duration,
    /// Give up on an attempt after this long and retry (if the semantics allow); `None`:
    /// an attempt lasts until the call's deadline or until its connection fails. Default
    /// `None` — the transports are reliable, so a request is only lost with its
    /// connection.
    pub attempt_timeout: Option<Duration>,
    /// Retry errors that prove the call did not run (overloaded, shutting down,
    /// unreachable). Default true.
    pub retry_not_executed: bool,
    /// Wait for a server that is not there yet. By default (`false`) a call to an
    /// endpoint that has never answered fails at once with [`crate::RpcError::Unreachable`]
    /// when its connection is refused (TCP `ECONNREFUSED`, ICMP port unreachable over
    /// UDP) or the endpoint is in its reconnect backoff, instead of retrying until its
    /// deadline: nothing listens there, so waiting only delays the error. Set it to keep
    /// retrying (as for any not-executed error) while the server starts. Endpoints that
    /// have answered once are always retried (a restarting server). A balanced client
    /// fails over to its other endpoints either way.
    pub wait_for_server: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_secs(1),
            attempt_timeout: None,
            retry_not_executed: true,
            wait_for_server: false,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Sets the attempt limit (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the backoff range.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets [`RetryPolicy::wait_for_server`].
    pub fn wait_for_server(mut self, yes: bool) -> Self {
        self.wait_for_server = yes;
        self
    }

    /// Sets whether not-executed errors are retried.
    pub fn retry_not_executed(mut self, yes: bool) -> Self {
        self.retry_not_executed = yes;
        self
    }
}
