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
    /// The first connection registered on (inline: most calls never use another).
    first: Option<Arc<ConnCalls>>,
    more: Vec<Arc<ConnCalls>>,
    /// The first connection delivered the answer, which removed the registration there.
    answered_on_first: bool,
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
            first: None,
            more: Vec::new(),
            answered_on_first: false,
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
        match &self.first {
            None => self.first = Some(calls.clone()),
            Some(first) if Arc::ptr_eq(first, calls) => {}
            Some(_) => {
                if !self.more.iter().any(|c| Arc::ptr_eq(c, calls)) {
                    self.more.push(calls.clone());
                }
            }
        }
        Ok(())
    }

    /// Notes that an answer arrived from connection `serial` (whose reader removed the
    /// registration there already).
    pub(super) fn answered_on(&mut self, serial: u64) {
        if self.first.as_ref().is_some_and(|c| c.serial == serial) {
            self.answered_on_first = true;
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(first) = &self.first {
            if !self.answered_on_first {
                first.deregister(self.call_id);
            }
        }
        for calls in &self.more {
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
