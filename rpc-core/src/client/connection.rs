//! A connection as the client sees it: the reply reader that hands each answer to the
//! call waiting for it, and a call's registrations, which cancel it on the server when
//! the caller stops waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;

use crate::error::TransportError;
use crate::frame::{flags, Frame, FrameHeader, FrameKind};
use crate::transport::{FrameReceiver, FrameSender};

use super::endpoint::Ep;
use super::inflight::{ConnCalls, Inbox};
use super::stats::Counters;
use super::Inner;

/// The reply reader of one connection: hands each reply to the call waiting for it;
/// when the connection ends, fails the calls still waiting on it.
pub(super) async fn read_replies<C: Send + Sync + 'static, R: FrameReceiver>(
    inner: Weak<Inner<C>>,
    ep: Weak<Ep<C>>,
    calls: Arc<ConnCalls>,
    mut receiver: R,
) {
    let error = loop {
        let frame = match receiver.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break TransportError::Closed,
            Err(e) => break e,
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match frame.header.kind {
            FrameKind::Reply | FrameKind::Status => {
                let call_id = frame.header.call_id;
                let ours = frame.header.client_id == inner.client_id;
                if !(ours && calls.deliver(call_id, frame)) {
                    Counters::bump(&inner.stats.unmatched_replies);
                    tracing::debug!(call_id, ours, "reply for no pending call");
                }
            }
            FrameKind::Call | FrameKind::Cancel => {
                tracing::warn!(kind = ?frame.header.kind, "server sent a client-only frame; closing");
                break TransportError::Closed;
            }
        }
    };
    tracing::debug!(serial = calls.serial, %error, "connection lost");
    if let (Some(inner), Some(ep)) = (inner.upgrade(), ep.upgrade()) {
        ep.forget(&calls);
        // A connection that died (rather than closed cleanly) counts against its
        // endpoint's health even when no call was on it: the transport's keepalives
        // found it dead.
        if !matches!(error, TransportError::Closed) {
            ep.record_failure(&inner.config);
        }
    }
    calls.fail(error);
}

/// Where a call is registered: the connections its attempts went out on. Dropping it
/// removes every registration; if the caller stops waiting while a request is out
/// (`cancel_via` set: the future was dropped or the call's deadline passed), it also
/// sends the server a best-effort Cancel.
pub(super) struct Registration<'a> {
    call_id: u64,
    header: FrameHeader,
    conns: Vec<Arc<ConnCalls>>,
    /// The connection of the request that is out, while a cancel should go there.
    pub(super) cancel_via: Option<FrameSender>,
    cancels_sent: Option<&'a AtomicU64>,
}

impl<'a> Registration<'a> {
    /// A call not registered anywhere yet.
    pub(super) fn new(call_id: u64, header: FrameHeader) -> Self {
        Registration {
            call_id,
            header,
            conns: Vec::new(),
            cancel_via: None,
            cancels_sent: None,
        }
    }

    /// Counts the Cancel frames it sends in `counter`.
    pub(super) fn counting_cancels(mut self, counter: &'a AtomicU64) -> Self {
        self.cancels_sent = Some(counter);
        self
    }

    /// The header of the call's latest attempt (what a Cancel copies).
    pub(super) fn set_header(&mut self, header: FrameHeader) {
        self.header = header;
    }

    /// Registers the call on `calls` (kept for the call's whole life).
    pub(super) fn register(
        &mut self,
        calls: &Arc<ConnCalls>,
        inbox: &Arc<Inbox>,
    ) -> Result<(), TransportError> {
        inbox.sending_on(calls.serial);
        calls.register(self.call_id, inbox)?;
        if !self.conns.iter().any(|c| Arc::ptr_eq(c, calls)) {
            self.conns.push(calls.clone());
        }
        Ok(())
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        for calls in &self.conns {
            calls.deregister(self.call_id);
        }
        if let Some(sender) = self.cancel_via.take() {
            let mut cancel = self.header;
            cancel.kind = FrameKind::Cancel;
            cancel.flags &= flags::SEMANTICS_MASK;
            // Best effort: a full queue or a dead connection just means no cancel.
            if let Ok(true) = sender.try_send(Frame::new(cancel, Bytes::new())) {
                if let Some(counter) = self.cancels_sent {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
