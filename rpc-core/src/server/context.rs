use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::frame::{FrameHeader, Semantics};

/// What a handler knows about the call it is serving.
#[derive(Debug, Clone)]
pub struct CallContext {
    peer: SocketAddr,
    deadline: Option<Instant>,
    header: FrameHeader,
}

impl CallContext {
    /// A context for a call with `header` from `peer`, received at `received`.
    pub fn new(peer: SocketAddr, header: FrameHeader, received: Instant) -> Self {
        CallContext {
            peer,
            deadline: header.deadline_budget().map(|b| received + b),
            header,
        }
    }

    /// The calling peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// When the caller stops waiting (`None`: no deadline). Derived from the budget in
    /// the call header and the time the frame was received.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (`None`: no deadline; zero: already passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The call's id (unique per client).
    pub fn call_id(&self) -> u64 {
        self.header.call_id
    }

    /// The calling client's id.
    pub fn client_id(&self) -> u64 {
        self.header.client_id
    }

    /// The semantics the caller asked for.
    pub fn semantics(&self) -> Semantics {
        self.header.semantics()
    }

    /// The procedure number being called.
    pub fn procedure(&self) -> u32 {
        self.header.procedure
    }

    /// The interface id and version being called.
    pub fn interface(&self) -> (u32, u32) {
        (self.header.interface_id, self.header.interface_version)
    }
}
