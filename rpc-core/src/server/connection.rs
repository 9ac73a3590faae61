//! One connection's loop: reads frames and dispatches them, applies the per-connection
//! limits — reading pauses while the connection has `max_calls_per_connection` calls
//! in flight or `max_queued_reply_bytes` of replies unwritten; a connection whose
//! replies do not move for `write_timeout` is aborted; one idle for `idle_timeout` is
//! closed — and, once reading ends, lets the replies still due drain (or aborts).
//!
//! ```text
//!           ┌────────────── room again ◀──────────────┐
//!           ▼                                          │
//!  ──▶ Reading ──too many calls / bytes unwritten──▶ Paused ──no progress for write_timeout──▶ abort
//!        │  │                                                       
//!        │  └─ peer EOF / bad frame / shutdown / evicted / idle ──▶ Flushing ──clean──▶ closed
//!        │                                                          (calls answered,  └─stalled / grace over─▶ abort
//!        └─ frame incomplete past the transport's frame timeout ──▶ abort  replies written)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::connections::ConnState;
use super::state::{Phase, Shared};
use super::stats::bump;
use super::status_frame;
use crate::error::{Status, TransportError};
use crate::frame::{Frame, FrameError, FrameHeader, PROTOCOL_VERSION};
use crate::transport::{Connection, FrameReceiver, FrameSender, TrySendError};

/// How often a paused or flushing connection looks at its state again, besides being
/// woken by its calls and its transport (which covers the wakeups raced away).
const RECHECK: Duration = Duration::from_millis(10);

/// Why a connection stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The peer closed its side: answer what is in flight, then close.
    PeerClosed,
    /// A bad frame or a read error: answer what is in flight, then close.
    Failed,
    /// A frame did not arrive in time: abort.
    SlowFrame,
    /// No frame and no call for `idle_timeout`.
    Idle,
    /// Closed by the server from outside the loop: to make room for another
    /// connection, or at the end of a shutdown's grace period.
    ClosedByServer,
    /// Replies did not drain for `write_timeout`: abort.
    WriteTimeout,
    /// The server is shutting down: flush until the deadline.
    Closing(Instant),
}

/// Serves one admitted connection until it closes.
pub(super) async fn serve<R: FrameReceiver>(
    shared: Arc<Shared>,
    conn: Connection<R>,
    state: Arc<ConnState>,
) {
    // The principal (if any) is in `state.scope`, taken at admission.
    let Connection {
        sender,
        mut receiver,
        peer_addr,
        principal: _,
    } = conn;
    tracing::debug!(peer = %peer_addr, scope = %state.scope, "connection opened");
    let end = read_loop(&shared, &state, &sender, &mut receiver).await;
    drop(receiver);
    close(&shared, &state, &sender, end).await;
    shared.connections.remove(&state);
    tracing::debug!(peer = %peer_addr, ?end, "connection closed");
}

/// Resolves with the shutdown's deadline once the server is closing.
async fn server_closing(mut phase: tokio::sync::watch::Receiver<Phase>) -> Instant {
    loop {
        if let Phase::Closing { deadline } = *phase.borrow_and_update() {
            return deadline;
        }
        if phase.changed().await.is_err() {
            return Instant::now();
        }
    }
}

async fn read_loop<R: FrameReceiver>(
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    sender: &FrameSender,
    receiver: &mut R,
) -> End {
    let limits = &shared.limits;
    // Long-lived futures, armed once rather than per frame.
    let stop = async {
        tokio::select! {
            deadline = server_closing(shared.phase.subscribe()) => End::Closing(deadline),
            () = state.closing() => End::ClosedByServer,
        }
    };
    tokio::pin!(stop);
    let idle = limits.idle_timeout;
    let idle_timer = tokio::time::sleep(idle.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle_timer);
    let mut last_frame = Instant::now();
    // Where inline handlers encode their replies; reused call after call.
    let mut reply_buf = BytesMut::new();
    loop {
        if limits.must_pause(state.calls(), sender.queued_bytes()) {
            bump(&shared.counters.reads_paused);
            let ready = |calls, queued| !limits.must_pause(calls, queued);
            match wait_until(shared, state, sender, None, ready).await {
                Wait::Ready => {}
                Wait::Stalled => return End::WriteTimeout,
                Wait::Stopped(end) => return end,
            }
        }
        // The stop conditions as flags first: `stop` (two notifications) is polled only
        // when the read would wait, and a peer that keeps frames coming is stopped here.
        if state.is_closing() {
            return End::ClosedByServer;
        }
        if let Some(deadline) = shared.closing_deadline() {
            return End::Closing(deadline);
        }
        let received = tokio::select! {
            biased;
            r = receiver.recv() => r,
            end = &mut stop => return end,
            () = &mut idle_timer, if idle.is_some() => {
                let timeout = idle.unwrap_or(Duration::MAX);
                let now = Instant::now();
                if state.calls() == 0 && now.duration_since(last_frame) >= timeout {
                    bump(&shared.counters.idle_closed);
                    return End::Idle;
                }
                // Re-armed lazily: a frame does not touch the timer, its expiry does.
                let from = if state.calls() == 0 { last_frame } else { now };
                idle_timer.as_mut().reset((from + timeout).into());
                continue;
            }
        };
        match received {
            Ok(Some(frame)) => {
                last_frame = Instant::now();
                state.touch(shared.epoch, last_frame);
                if let Err(end) = shared
                    .dispatch(frame, sender, state, last_frame, &mut reply_buf)
                    .await
                {
                    return end;
                }
            }
            Ok(None) => return End::PeerClosed,
            Err(e) => return read_failed(shared, state, sender, e).await,
        }
    }
}

/// Counts and answers a failed read; says how the connection ends.
async fn read_failed(
    shared: &Shared,
    state: &ConnState,
    sender: &FrameSender,
    e: TransportError,
) -> End {
    let peer = state.peer;
    match e {
        TransportError::BadFrame(FrameError::UnsupportedVersion(v)) => {
            bump(&shared.counters.bad_frames);
            tracing::debug!(%peer, version = v, "unsupported protocol version; closing");
            let header = FrameHeader::call(0, 0, 0, 0, 0);
            let status = Status::ProtocolVersion {
                low: PROTOCOL_VERSION as u32,
                high: PROTOCOL_VERSION as u32,
            };
            let frame = status_frame(&header, &status, shared.incarnation);
            let _ = deliver(state, sender, frame, Some(shared.limits.write_timeout)).await;
            End::Failed
        }
        TransportError::BadFrame(e) => {
            bump(&shared.counters.bad_frames);
            tracing::debug!(%peer, error = %e, "bad frame; closing");
            End::Failed
        }
        TransportError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            bump(&shared.counters.slow_frames);
            tracing::debug!(%peer, error = %e, "frame too slow; aborting");
            End::SlowFrame
        }
        e => {
            bump(&shared.counters.connection_errors);
            tracing::debug!(%peer, error = %e, "connection ended with an error");
            End::Failed
        }
    }
}

/// Ends a connection that stopped reading: lets the calls in flight answer and their
/// replies drain where that is due, aborts where it is not (or no longer) worth it.
async fn close(shared: &Shared, state: &ConnState, sender: &FrameSender, end: End) {
    let idle = |calls: usize, queued: usize| calls == 0 && queued == 0;
    let clean = match end {
        End::SlowFrame => false,
        End::WriteTimeout => {
            bump(&shared.counters.write_timeouts);
            tracing::debug!(peer = %state.peer, "replies not read for the write timeout; aborting");
            false
        }
        // Nothing was sent for the idle timeout: unread replies will not be read.
        End::Idle => sender.queued_bytes() == 0,
        End::ClosedByServer => sender.queued_bytes() == 0,
        End::PeerClosed | End::Failed => {
            match wait_until(shared, state, sender, None, idle).await {
                Wait::Ready => true,
                Wait::Stalled => {
                    bump(&shared.counters.write_timeouts);
                    false
                }
                Wait::Stopped(End::Closing(deadline)) => {
                    flush(shared, state, sender, deadline).await
                }
                Wait::Stopped(_) => sender.queued_bytes() == 0,
            }
        }
        End::Closing(deadline) => flush(shared, state, sender, deadline).await,
    };
    // Replies still waiting for room give up, and the transport stops.
    state.begin_close();
    if !clean {
        sender.abort();
    }
}

/// At shutdown: waits for the connection's calls and replies until `deadline`.
async fn flush(
    shared: &Shared,
    state: &ConnState,
    sender: &FrameSender,
    deadline: Instant,
) -> bool {
    let idle = |calls: usize, queued: usize| calls == 0 && queued == 0;
    match wait_until(shared, state, sender, Some(deadline), idle).await {
        Wait::Ready => true,
        Wait::Stalled => {
            bump(&shared.counters.write_timeouts);
            false
        }
        Wait::Stopped(_) => {
            bump(&shared.counters.shutdown_aborted);
            false
        }
    }
}

/// How [`wait_until`] ended.
enum Wait {
    /// The condition holds.
    Ready,
    /// Replies were due and did not move for `write_timeout`.
    Stalled,
    /// The deadline passed, the server began closing, or the connection was evicted.
    Stopped(End),
}

/// Waits until `ready(calls in flight, reply bytes unwritten)` holds. Handlers still
/// running are not a stall; replies that are due (queued, or waiting for room) and do
/// not move for `write_timeout` are.
async fn wait_until(
    shared: &Shared,
    state: &ConnState,
    sender: &FrameSender,
    deadline: Option<Instant>,
    ready: impl Fn(usize, usize) -> bool,
) -> Wait {
    let write_timeout = shared.limits.write_timeout;
    let observe = || {
        (
            state.calls(),
            sender.queued_bytes(),
            state.waiting_for_room(),
        )
    };
    let mut seen = observe();
    let mut moved = Instant::now();
    loop {
        let progress = state.progress();
        tokio::pin!(progress);
        progress.as_mut().enable();
        let now = Instant::now();
        let current = observe();
        if ready(current.0, current.1) {
            return Wait::Ready;
        }
        if current != seen {
            (seen, moved) = (current, now);
        }
        let due = current.1 > 0 || current.2 > 0;
        if due && now.duration_since(moved) >= write_timeout {
            return Wait::Stalled;
        }
        if state.is_closing() {
            return Wait::Stopped(End::ClosedByServer);
        }
        let closing = match shared.phase() {
            Phase::Closing { deadline } => Some(deadline),
            _ => None,
        };
        let until = match (deadline, closing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(until) = until {
            if now >= until {
                return Wait::Stopped(End::Closing(until));
            }
        }
        let wake = (now + RECHECK).min(until.unwrap_or(now + RECHECK));
        tokio::select! {
            () = progress => {}
            () = sender.written(), if current.1 > 0 => {}
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// How [`deliver`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// The transport has the frame.
    Sent,
    /// The connection is gone or being closed; the frame was dropped.
    Closed,
    /// No room for `stall` (only when a stall bound was given).
    Stalled,
}

/// Hands `frame` to the connection: at once if there is room (the common case, no
/// timer, no extra future), otherwise waiting for room until the server closes the
/// connection or, if `stall` is given, for at most that long.
pub(super) async fn deliver(
    state: &ConnState,
    sender: &FrameSender,
    frame: Frame,
    stall: Option<Duration>,
) -> Delivery {
    let frame = match sender.try_send_frame(frame) {
        Ok(()) => return Delivery::Sent,
        Err(TrySendError::Closed(_)) => return Delivery::Closed,
        Err(TrySendError::Full(frame)) => frame,
    };
    let _waiting = state.wait_for_room();
    let stalled = async {
        match stall {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = state.closing() => Delivery::Closed,
        sent = sender.send(frame) => match sent {
            Ok(()) => Delivery::Sent,
            Err(_) => Delivery::Closed,
        },
        () = stalled => Delivery::Stalled,
    }
}
