//! Which endpoint an attempt goes to: following the resolver's set, and choosing among
//! the usable endpoints (round robin, or the less busy of two random choices).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::error::TransportError;
use crate::naming::Endpoint;
use crate::transport::Channel;

use super::endpoint::Ep;
use super::{Balance, Inner};

/// Keeps a balanced client's endpoint set in line with its resolver's.
pub(super) async fn follow_endpoints<C: Channel>(
    inner: Weak<Inner<C>>,
    mut endpoints: tokio::sync::watch::Receiver<Vec<Endpoint>>,
    connect: impl Fn(&Endpoint) -> Option<C> + Send + Sync + 'static,
) {
    while endpoints.changed().await.is_ok() {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let set = endpoints.borrow_and_update().clone();
        inner.apply_endpoints(&set, &connect);
    }
}

impl<C> Inner<C> {
    /// The current endpoints.
    pub(super) fn snapshot(&self) -> Vec<Arc<Ep<C>>> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the endpoint set: kept endpoints keep their connection and health, new
    /// ones are created with `connect`, vanished ones get no new calls (calls in flight
    /// on them finish).
    pub(super) fn apply_endpoints(
        &self,
        set: &[Endpoint],
        connect: &impl Fn(&Endpoint) -> Option<C>,
    ) {
        let mut eps = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Arc<Ep<C>>> = Vec::with_capacity(set.len());
        for endpoint in set {
            if let Some(existing) = eps.iter().find(|ep| ep.endpoint.as_ref() == Some(endpoint)) {
                next.push(existing.clone());
            } else if let Some(channel) = connect(endpoint) {
                let id = self.next_ep.fetch_add(1, Ordering::Relaxed);
                next.push(Arc::new(Ep::new(
                    id,
                    Some(endpoint.clone()),
                    channel,
                    &self.config,
                )));
            } else {
                tracing::debug!(%endpoint, "no channel for this endpoint; skipped");
            }
        }
        tracing::debug!(endpoints = next.len(), "endpoint set updated");
        *eps = next;
    }

    fn next_random(&self) -> u64 {
        // xorshift64, advanced atomically so concurrent picks draw different values.
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prev = self
            .rng
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        step(prev)
    }

    /// A random sample for a retry pause's jitter.
    pub(super) fn jitter_sample(&self) -> u32 {
        (self.next_random() >> 32) as u32
    }

    /// Chooses the endpoint for an attempt: among usable endpoints (up, or down with
    /// their probe time come), avoiding `avoid` when there is another choice.
    pub(super) fn pick(&self, avoid: Option<u64>) -> Result<Arc<Ep<C>>, TransportError> {
        let eps = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        if eps.len() == 1 {
            // A single endpoint is always tried (its own reconnect backoff applies).
            return Ok(eps[0].clone());
        }
        if eps.is_empty() {
            return Err(TransportError::NoEndpoints);
        }
        let now = Instant::now();
        let usable: Vec<&Arc<Ep<C>>> = eps.iter().filter(|ep| ep.usable(now)).collect();
        let preferred: Vec<&Arc<Ep<C>>> = usable
            .iter()
            .copied()
            .filter(|ep| Some(ep.id) != avoid)
            .collect();
        let choices = if preferred.is_empty() {
            usable
        } else {
            preferred
        };
        if choices.is_empty() {
            return Err(TransportError::AllEndpointsDown);
        }
        let chosen = match self.config.balance {
            Balance::RoundRobin => choices[self.rr.fetch_add(1, Ordering::Relaxed) % choices.len()],
            Balance::LeastOutstanding if choices.len() >= 2 => {
                // Power of two choices: the less busy of two *different* random endpoints.
                let n = choices.len() as u64;
                let i = self.next_random() % n;
                let j = (i + 1 + self.next_random() % (n - 1)) % n;
                let (a, b) = (choices[i as usize], choices[j as usize]);
                if b.outstanding.load(Ordering::Relaxed) < a.outstanding.load(Ordering::Relaxed) {
                    b
                } else {
                    a
                }
            }
            Balance::LeastOutstanding => choices[0],
        };
        chosen.claim_probe(now);
        Ok(chosen.clone())
    }
}
