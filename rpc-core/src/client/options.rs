use std::time::{Duration, Instant};

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

    /// Fills every unset field of `self` from `defaults`.
    pub fn or(&self, defaults: &CallOptions) -> CallOptions {
        CallOptions {
            timeout: self.timeout.or(defaults.timeout),
            deadline: self.deadline.or(defaults.deadline),
            semantics: self.semantics.or(defaults.semantics),
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            default_timeout: Duration::from_secs(30),
            default_semantics: Semantics::AtMostOnce,
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_secs(2),
            max_in_flight: 65_536,
        }
    }
}

impl ClientConfig {
    /// Sets the default timeout.
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.default_timeout = d;
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

    /// Sets the in-flight call limit.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }
}
