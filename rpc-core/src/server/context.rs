use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::frame::{FrameHeader, Semantics};
use crate::Principal;

/// The server's handle on one call in progress: set when the client cancels it.
#[derive(Debug, Default)]
pub struct CallControl {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CallControl {
    /// Marks the call cancelled and wakes whoever waits on [`CallContext::cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// What a handler knows about the call it is serving.
#[derive(Debug, Clone)]
pub struct CallContext {
    peer: SocketAddr,
    deadline: Option<Instant>,
    header: FrameHeader,
    /// `None` for an inline call: it runs to completion without yielding, so nothing
    /// can cancel it midway.
    control: Option<Arc<CallControl>>,
    /// The credentials the call carried (a slice of the received frame).
    credentials: Option<Bytes>,
    /// The connection's authenticated peer (a clone of a cheap handle).
    principal: Option<Principal>,
}

impl CallContext {
    /// A context for a call with `header` from `peer`, received at `received`.
    pub fn new(peer: SocketAddr, header: FrameHeader, received: Instant) -> Self {
        CallContext::with_control(peer, header, received, Arc::default())
    }

    /// A context whose cancellation is driven by `control`.
    pub fn with_control(
        peer: SocketAddr,
        header: FrameHeader,
        received: Instant,
        control: Arc<CallControl>,
    ) -> Self {
        CallContext {
            peer,
            deadline: header.deadline_budget().map(|b| received + b),
            header,
            control: Some(control),
            credentials: None,
            principal: None,
        }
    }

    /// The context of an inline call (see [`crate::server::ServerBuilder::run_inline`]):
    /// never cancelled, and made without allocating.
    pub fn inline(peer: SocketAddr, header: FrameHeader, received: Instant) -> Self {
        CallContext {
            peer,
            deadline: header.deadline_budget().map(|b| received + b),
            header,
            control: None,
            credentials: None,
            principal: None,
        }
    }

    /// This context with the call's credentials (what the client's credentials
    /// provider sent; see [`crate::client::ClientConfig::credentials`]).
    pub fn with_credentials(mut self, credentials: Option<Bytes>) -> Self {
        self.credentials = credentials;
        self
    }

    /// This context with the peer's authenticated identity (what the connection's
    /// transport proved; see [`crate::transport::Connection::principal`]).
    pub fn with_principal(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal;
        self
    }

    /// Who the peer is, as its transport authenticated it: the TLS client
    /// certificate's name, the Noise static key, the pre-shared key's id. `None` when
    /// the connection is not authenticated (then only the address says who called).
    ///
    /// Unlike the client id, which any client may choose, this is an identity: the
    /// server scopes the reply cache, low-water marks and cancels by it.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The credentials the call carried (`None`: none). An authorizer has already
    /// accepted them if the server has one ([`crate::server::ServerBuilder::authorize`]).
    pub fn credentials(&self) -> Option<&[u8]> {
        self.credentials.as_deref()
    }

    /// Whether the client cancelled the call (a best-effort Cancel frame arrived). A
    /// long-running handler can check it and stop early.
    pub fn is_cancelled(&self) -> bool {
        self.control.as_ref().is_some_and(|c| c.is_cancelled())
    }

    /// Resolves when the client cancels the call (never, if it does not).
    pub async fn cancelled(&self) {
        let Some(control) = &self.control else {
            // An inline call cannot be cancelled.
            return std::future::pending().await;
        };
        loop {
            let notified = control.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if control.is_cancelled() {
                return;
            }
            notified.await;
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
