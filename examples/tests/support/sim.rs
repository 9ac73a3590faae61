//! A simulated network: an in-process [`Channel`] whose connections drop, duplicate and
//! delay (so reorder) frames in both directions with seeded probabilities, and nothing
//! underneath that would recover them. Built on `rpc_core::transport::memory`: each
//! connection's two frame queues are cut and re-joined by two forwarding tasks that
//! apply the faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rpc_core::transport::memory::{self, MemoryChannel, MemoryListener};
use rpc_core::transport::{
    frame_queue, Channel, Connection, FrameOutbox, FrameReceiver, FrameSender,
};
use rpc_core::TransportError;

use super::Rng;

/// What the network does to each frame, independently per frame and direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Faults {
    /// Probability that a frame is lost.
    pub(crate) loss: f64,
    /// Probability that a frame that is not lost is delivered twice (the copy is
    /// delayed).
    pub(crate) duplicate: f64,
    /// Probability that a frame is held back (up to `max_delay`), so later frames
    /// overtake it.
    pub(crate) reorder: f64,
    /// Longest extra delay of a held-back or duplicated frame.
    pub(crate) max_delay: Duration,
}

impl Faults {
    /// 30 % loss, 10 % duplication, 20 % reordering by up to 5 ms.
    pub(crate) fn harsh() -> Faults {
        Faults {
            loss: 0.3,
            duplicate: 0.1,
            reorder: 0.2,
            max_delay: Duration::from_millis(5),
        }
    }
}

/// What the network did, summed over both directions and every connection.
#[derive(Debug, Default)]
pub(crate) struct NetStats {
    /// Frames handed to the network.
    pub(crate) sent: AtomicU64,
    /// Frames lost.
    pub(crate) dropped: AtomicU64,
    /// Extra copies delivered.
    pub(crate) duplicated: AtomicU64,
    /// Frames held back.
    pub(crate) delayed: AtomicU64,
}

impl NetStats {
    /// (sent, dropped, duplicated, delayed).
    pub(crate) fn snapshot(&self) -> (u64, u64, u64, u64) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            l(&self.sent),
            l(&self.dropped),
            l(&self.duplicated),
            l(&self.delayed),
        )
    }
}

/// The client side of the simulated network. Every `connect` makes a new connection
/// whose fault decisions come from `seed` and the connection's number.
pub(crate) struct SimChannel {
    inner: MemoryChannel,
    faults: Faults,
    seed: u64,
    connections: AtomicU64,
    stats: Arc<NetStats>,
}

/// A lossy channel and the (plain in-process) listener it reaches.
pub(crate) fn endpoint(
    faults: Faults,
    seed: u64,
    stats: Arc<NetStats>,
) -> (SimChannel, MemoryListener) {
    let (inner, listener) = memory::endpoint(4096);
    (
        SimChannel {
            inner,
            faults,
            seed,
            connections: AtomicU64::new(0),
            stats,
        },
        listener,
    )
}

impl SimChannel {
    /// Another channel to the same listener, with its own seed.
    pub(crate) fn another(&self, seed: u64) -> SimChannel {
        SimChannel {
            inner: self.inner.clone(),
            faults: self.faults,
            seed,
            connections: AtomicU64::new(0),
            stats: self.stats.clone(),
        }
    }
}

impl Channel for SimChannel {
    type Receiver = FrameOutbox;

    async fn connect(&self) -> Result<Connection<FrameOutbox>, TransportError> {
        let conn = self.inner.connect().await?;
        let n = self.connections.fetch_add(1, Ordering::Relaxed);
        let (to_network, from_client) = frame_queue(4096);
        let (to_client, client_inbox) = frame_queue(4096);
        let seed = self.seed ^ n.wrapping_mul(0x1000_0000_01b3);
        tokio::spawn(forward(
            from_client,
            conn.sender,
            Rng::new(seed ^ 0xc0ffee),
            self.faults,
            self.stats.clone(),
        ));
        tokio::spawn(forward(
            conn.receiver,
            to_client,
            Rng::new(seed ^ 0xbeef),
            self.faults,
            self.stats.clone(),
        ));
        Ok(Connection {
            sender: to_network,
            receiver: client_inbox,
            peer_addr: conn.peer_addr,
            principal: conn.principal,
        })
    }

    fn remote(&self) -> String {
        format!("sim(seed {})", self.seed)
    }
}

/// Moves frames from `from` to `to`, losing, duplicating and delaying them.
async fn forward(
    mut from: FrameOutbox,
    to: FrameSender,
    mut rng: Rng,
    faults: Faults,
    stats: Arc<NetStats>,
) {
    let delay = |rng: &mut Rng| {
        let max = faults.max_delay.as_micros().max(1) as u64;
        Duration::from_micros(1 + rng.below(max))
    };
    while let Ok(Some(frame)) = from.recv().await {
        stats.sent.fetch_add(1, Ordering::Relaxed);
        if rng.chance(faults.loss) {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if rng.chance(faults.duplicate) {
            stats.duplicated.fetch_add(1, Ordering::Relaxed);
            let (to, copy, d) = (to.clone(), frame.clone(), delay(&mut rng));
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = to.send(copy).await;
            });
        }
        if rng.chance(faults.reorder) {
            stats.delayed.fetch_add(1, Ordering::Relaxed);
            let (to, d) = (to.clone(), delay(&mut rng));
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = to.send(frame).await;
            });
            continue;
        }
        if to.send(frame).await.is_err() {
            break;
        }
    }
}
