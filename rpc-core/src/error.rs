//! Errors: [`RpcError`] (what a caller sees), [`Status`] (what a server answers instead of
//! a result) and [`TransportError`] (what a transport reports).

use std::io;
use std::sync::Arc;

use thiserror::Error;

use crate::frame::FrameError;
use crate::xdr::{XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};

/// Everything that can go wrong with a remote call, as the caller sees it.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The call's own deadline passed (seen by the client, or by the server before it
    /// ran the call). Attempt timeouts are not this: see [`TransportError::NoAnswer`].
    #[error("call timed out")]
    Timeout,
    /// The server could not be reached (connection refused, no route, peer silent).
    #[error("server unreachable: {0}")]
    Unreachable(TransportError),
    /// The transport failed while the call was in flight; whether the server executed
    /// the call is unknown.
    #[error("transport error: {0}")]
    Transport(TransportError),
    /// The arguments could not be encoded (a value breaks a bound of its declaration).
    #[error("could not encode the arguments: {0}")]
    Encode(XdrError),
    /// The server's reply could not be decoded.
    #[error("could not decode the reply: {0}")]
    Decode(XdrError),
    /// The peer broke the protocol (e.g. answered with an unknown status code).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server hosts no interface with this id.
    #[error("server has no interface {id:#010x}")]
    UnknownInterface {
        /// The interface id the call named.
        id: u32,
    },
    /// The server hosts the interface, but not this version.
    #[error("interface version not supported: server has versions {low}..={high}")]
    VersionMismatch {
        /// Lowest version the server hosts.
        low: u32,
        /// Highest version the server hosts.
        high: u32,
    },
    /// The interface has no procedure with this number.
    #[error("interface has no procedure {procedure}")]
    UnknownProcedure {
        /// The procedure number the call named.
        procedure: u32,
    },
    /// The server could not decode the arguments.
    #[error("server could not decode the arguments: {message}")]
    BadArguments {
        /// The server's description of the problem.
        message: String,
    },
    /// The server's work queue was full; the call was not executed.
    #[error("server overloaded; call not executed")]
    Overloaded,
    /// The server restarted while the call was in doubt.
    #[error("server restarted while the call was in doubt")]
    ServerRestarted,
    /// The handler returned an application error.
    #[error("application error {code}: {message}")]
    Application {
        /// Application-defined code.
        code: i32,
        /// Application-defined message.
        message: String,
    },
    /// The server dropped the call because its deadline passed before it ran.
    #[error("deadline exceeded before the server ran the call")]
    DeadlineExceeded,
    /// The call was cancelled.
    #[error("call cancelled")]
    Cancelled,
    /// The server is shutting down and refused the call; it was not executed.
    #[error("server is shutting down; call not executed")]
    ShuttingDown,
    /// The handler failed unexpectedly (it panicked).
    #[error("server internal error: {message}")]
    Internal {
        /// The server's description.
        message: String,
    },
    /// The server does not speak our protocol version.
    #[error("protocol version not supported: server speaks {low}..={high}")]
    ProtocolVersion {
        /// Lowest version the server speaks.
        low: u32,
        /// Highest version the server speaks.
        high: u32,
    },
    /// The call was sent, then the connection failed (or the attempt timed out,
    /// [`TransportError::NoAnswer`]) before an answer came, and its semantics
    /// (at-most-once) forbid sending it again: the server may or may not have executed it.
    #[error("outcome unknown: no answer after the call was sent ({0})")]
    OutcomeUnknown(TransportError),
    /// A duplicate of a call whose cached reply the server had already evicted (or its
    /// client acknowledged): it was refused, not executed again.
    #[error("the server no longer holds this call's reply; the duplicate was refused")]
    ReplyEvicted,
    /// The server's authorizer refused the call: this caller may not make it. It was not
    /// executed.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// The server's reason.
        message: String,
    },
    /// The server's authorizer refused the call for want of valid credentials (see
    /// [`crate::client::ClientConfig::credentials`]). It was not executed.
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// The server's reason.
        message: String,
    },
    /// A blocking call was made from inside a tokio runtime and the thread it needs
    /// there (driving a runtime from inside another panics) could not be started, or
    /// ended abnormally; see [`crate::client::BlockingRuntime::call`].
    #[error(
        "blocking call made from inside a tokio runtime could not be run on a thread of its own"
    )]
    BlockingInRuntime,
    /// A client layer (see [`crate::client::ClientCall`]) failed the call with an error
    /// of its own, neither an [`RpcError`] nor one of tower's that maps to one (a
    /// timeout layer's elapsed deadline is [`RpcError::Timeout`], a load-shed layer's
    /// refusal [`RpcError::Overloaded`]).
    #[error("client layer failed the call: {0}")]
    Layer(Arc<dyn std::error::Error + Send + Sync>),
}

impl RpcError {
    /// Whether the server certainly did not execute the call (so resending is safe
    /// whatever its semantics).
    pub fn not_executed(&self) -> bool {
        matches!(
            self,
            RpcError::Unreachable(_)
                | RpcError::Encode(_)
                | RpcError::UnknownInterface { .. }
                | RpcError::VersionMismatch { .. }
                | RpcError::UnknownProcedure { .. }
                | RpcError::BadArguments { .. }
                | RpcError::Overloaded
                | RpcError::DeadlineExceeded
                | RpcError::ShuttingDown
                | RpcError::ProtocolVersion { .. }
                | RpcError::PermissionDenied { .. }
                | RpcError::Unauthenticated { .. }
        )
    }

    /// Why the server could not be reached, for an [`RpcError::Unreachable`] (`None` for
    /// every other error).
    pub fn unreachable_cause(&self) -> Option<UnreachableCause> {
        match self {
            RpcError::Unreachable(e) => Some(e.unreachable_cause()),
            _ => None,
        }
    }

    /// Whether the server may or may not have executed the call (the caller cannot
    /// tell): a timeout, a transport failure in flight, or an explicit unknown outcome.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            RpcError::Timeout | RpcError::Transport(_) | RpcError::OutcomeUnknown(_)
        )
    }
}

/// What a server answers instead of a result: the payload of a `Status` frame.
///
/// Handlers return `Err(Status::application(code, message))` for application errors;
/// the runtime produces the other variants.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Status {
    /// Code 1: no interface with this id.
    #[error("unknown interface {id:#010x}")]
    UnknownInterface {
        /// The id the call named.
        id: u32,
    },
    /// Code 2: the interface exists, but not in this version.
    #[error("version mismatch: hosted versions {low}..={high}")]
    VersionMismatch {
        /// Lowest hosted version.
        low: u32,
        /// Highest hosted version.
        high: u32,
    },
    /// Code 3: no procedure with this number.
    #[error("unknown procedure {procedure}")]
    UnknownProcedure {
        /// The procedure number the call named.
        procedure: u32,
    },
    /// Code 4: the arguments did not decode.
    #[error("bad arguments: {message}")]
    BadArguments {
        /// What was wrong.
        message: String,
    },
    /// Code 5: the work queue is full.
    #[error("overloaded")]
    Overloaded,
    /// Code 6: the server restarted while the call was in doubt.
    #[error("server restarted")]
    ServerRestarted,
    /// Code 7: an application error from the handler.
    #[error("application error {code}: {message}")]
    Application {
        /// Application-defined code.
        code: i32,
        /// Application-defined message.
        message: String,
    },
    /// Code 8: the call's deadline passed before a worker took it.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Code 9: the call was cancelled before it ran.
    #[error("cancelled")]
    Cancelled,
    /// Code 10: the server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// Code 11: the handler panicked or failed unexpectedly.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
    /// Code 12: the frame's protocol version is not spoken here.
    #[error("protocol version mismatch: supported {low}..={high}")]
    ProtocolVersion {
        /// Lowest version spoken.
        low: u32,
        /// Highest version spoken.
        high: u32,
    },
    /// Code 13: a duplicate of a call the reply cache no longer remembers (evicted, or
    /// acknowledged by its client); refused rather than executed again.
    #[error("reply evicted; duplicate refused")]
    ReplyEvicted,
    /// Code 14: the caller is known (or anonymous) and may not make this call; refused
    /// by the server's authorizer before the arguments were decoded.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// Why (safe to show the caller).
        message: String,
    },
    /// Code 15: the call carries no credentials, or credentials the server could not
    /// verify; refused by the server's authorizer before the arguments were decoded.
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// Why (safe to show the caller).
        message: String,
    },
}

impl Status {
    /// A [`Status::PermissionDenied`] with a message.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Status::PermissionDenied {
            message: message.into(),
        }
    }

    /// A [`Status::Unauthenticated`] with a message.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Status::Unauthenticated {
            message: message.into(),
        }
    }

    /// An application error with a code and a message.
    pub fn application(code: i32, message: impl Into<String>) -> Self {
        Status::Application {
            code,
            message: message.into(),
        }
    }

    /// The variant's name (`"Overloaded"`, `"BadArguments"`, ...), as logs and metrics
    /// label it.
    pub fn name(&self) -> &'static str {
        match self {
            Status::UnknownInterface { .. } => "UnknownInterface",
            Status::VersionMismatch { .. } => "VersionMismatch",
            Status::UnknownProcedure { .. } => "UnknownProcedure",
            Status::BadArguments { .. } => "BadArguments",
            Status::Overloaded => "Overloaded",
            Status::ServerRestarted => "ServerRestarted",
            Status::Application { .. } => "Application",
            Status::DeadlineExceeded => "DeadlineExceeded",
            Status::Cancelled => "Cancelled",
            Status::ShuttingDown => "ShuttingDown",
            Status::Internal { .. } => "Internal",
            Status::ProtocolVersion { .. } => "ProtocolVersion",
            Status::ReplyEvicted => "ReplyEvicted",
            Status::PermissionDenied { .. } => "PermissionDenied",
            Status::Unauthenticated { .. } => "Unauthenticated",
        }
    }

    /// The wire code of this status.
    pub fn code(&self) -> u32 {
        match self {
            Status::UnknownInterface { .. } => 1,
            Status::VersionMismatch { .. } => 2,
            Status::UnknownProcedure { .. } => 3,
            Status::BadArguments { .. } => 4,
            Status::Overloaded => 5,
            Status::ServerRestarted => 6,
            Status::Application { .. } => 7,
            Status::DeadlineExceeded => 8,
            Status::Cancelled => 9,
            Status::ShuttingDown => 10,
            Status::Internal { .. } => 11,
            Status::ProtocolVersion { .. } => 12,
            Status::ReplyEvicted => 13,
            Status::PermissionDenied { .. } => 14,
            Status::Unauthenticated { .. } => 15,
        }
    }
}

/// Longest status message the runtime sends or accepts, in bytes.
pub const MAX_STATUS_MESSAGE: u32 = 4096;

fn truncated(message: &str) -> &str {
    if message.len() <= MAX_STATUS_MESSAGE as usize {
        return message;
    }
    let mut end = MAX_STATUS_MESSAGE as usize;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl XdrEncode for Status {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_u32(self.code());
        match self {
            Status::UnknownInterface { id } => w.put_u32(*id),
            Status::VersionMismatch { low, high } | Status::ProtocolVersion { low, high } => {
                w.put_u32(*low);
                w.put_u32(*high);
            }
            Status::UnknownProcedure { procedure } => w.put_u32(*procedure),
            Status::BadArguments { message }
            | Status::Internal { message }
            | Status::PermissionDenied { message }
            | Status::Unauthenticated { message } => {
                w.put_string(truncated(message), MAX_STATUS_MESSAGE)?
            }
            Status::Application { code, message } => {
                w.put_i32(*code);
                w.put_string(truncated(message), MAX_STATUS_MESSAGE)?;
            }
            Status::Overloaded
            | Status::ServerRestarted
            | Status::DeadlineExceeded
            | Status::Cancelled
            | Status::ShuttingDown
            | Status::ReplyEvicted => {}
        }
        Ok(())
    }
}

impl XdrDecode for Status {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        let code = r.get_u32()?;
        Ok(match code {
            1 => Status::UnknownInterface { id: r.get_u32()? },
            2 => Status::VersionMismatch {
                low: r.get_u32()?,
                high: r.get_u32()?,
            },
            3 => Status::UnknownProcedure {
                procedure: r.get_u32()?,
            },
            4 => Status::BadArguments {
                message: r.get_string(MAX_STATUS_MESSAGE)?,
            },
            5 => Status::Overloaded,
            6 => Status::ServerRestarted,
            7 => Status::Application {
                code: r.get_i32()?,
                message: r.get_string(MAX_STATUS_MESSAGE)?,
            },
            8 => Status::DeadlineExceeded,
            9 => Status::Cancelled,
            10 => Status::ShuttingDown,
            11 => Status::Internal {
                message: r.get_string(MAX_STATUS_MESSAGE)?,
            },
            12 => Status::ProtocolVersion {
                low: r.get_u32()?,
                high: r.get_u32()?,
            },
            13 => Status::ReplyEvicted,
            14 => Status::PermissionDenied {
                message: r.get_string(MAX_STATUS_MESSAGE)?,
            },
            15 => Status::Unauthenticated {
                message: r.get_string(MAX_STATUS_MESSAGE)?,
            },
            other => {
                return Err(XdrError::InvalidDiscriminant {
                    name: "Status",
                    value: other as i64,
                })
            }
        })
    }
}

impl From<Status> for RpcError {
    fn from(s: Status) -> Self {
        match s {
            Status::UnknownInterface { id } => RpcError::UnknownInterface { id },
            Status::VersionMismatch { low, high } => RpcError::VersionMismatch { low, high },
            Status::UnknownProcedure { procedure } => RpcError::UnknownProcedure { procedure },
            Status::BadArguments { message } => RpcError::BadArguments { message },
            Status::Overloaded => RpcError::Overloaded,
            Status::ServerRestarted => RpcError::ServerRestarted,
            Status::Application { code, message } => RpcError::Application { code, message },
            Status::DeadlineExceeded => RpcError::DeadlineExceeded,
            Status::Cancelled => RpcError::Cancelled,
            Status::ShuttingDown => RpcError::ShuttingDown,
            Status::Internal { message } => RpcError::Internal { message },
            Status::ProtocolVersion { low, high } => RpcError::ProtocolVersion { low, high },
            Status::ReplyEvicted => RpcError::ReplyEvicted,
            Status::PermissionDenied { message } => RpcError::PermissionDenied { message },
            Status::Unauthenticated { message } => RpcError::Unauthenticated { message },
        }
    }
}

/// A transport failure. Cheap to clone, so one failure can be reported to every call
/// that was in flight on the connection.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection was closed (by the peer, by shutdown, or after an error).
    #[error("connection closed")]
    Closed,
    /// Connecting failed.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// An I/O error on an established connection.
    #[error("I/O error: {0}")]
    Io(Arc<io::Error>),
    /// The peer sent a frame that breaks the protocol; the connection was closed.
    #[error("bad frame from peer: {0}")]
    BadFrame(#[from] FrameError),
    /// Connecting (the handshake, or the incarnation probe on the new connection) did
    /// not finish within the attempt's time.
    #[error("connect to {addr} timed out")]
    ConnectTimedOut {
        /// The address dialled.
        addr: String,
    },
    /// A balanced client's resolver knows no endpoint to send the call to.
    #[error("no endpoints: the resolver knows none")]
    NoEndpoints,
    /// Every endpoint of a balanced client is marked down and none is due for a probe.
    #[error("every endpoint is marked down")]
    AllEndpointsDown,
    /// A request went out and no answer came within the attempt's timeout
    /// (`RetryPolicy::attempt_timeout`), though the connection is still up.
    #[error("no answer within the attempt timeout")]
    NoAnswer,
}

/// Why a server could not be reached: the typed cause of an
/// [`RpcError::Unreachable`] (see [`RpcError::unreachable_cause`]). The same situation
/// gives the same cause over every transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnreachableCause {
    /// The peer refused the connection: TCP `ECONNREFUSED`, ICMP port unreachable over
    /// UDP, or a UDP handshake refused (nothing listens there).
    Refused,
    /// Connecting timed out.
    ConnectTimedOut,
    /// There was no endpoint to try (none known, or all marked down).
    NoEndpoints,
    /// The connection closed (or its send path failed) before the request went out.
    Closed,
    /// Another I/O failure while connecting (no route, address unusable, ...).
    Other,
}

impl TransportError {
    /// Classifies this error as the cause of an unreachable server.
    pub fn unreachable_cause(&self) -> UnreachableCause {
        match self {
            TransportError::Connect { source, .. } => match source.kind() {
                io::ErrorKind::ConnectionRefused => UnreachableCause::Refused,
                io::ErrorKind::TimedOut => UnreachableCause::ConnectTimedOut,
                _ => UnreachableCause::Other,
            },
            TransportError::ConnectTimedOut { .. } => UnreachableCause::ConnectTimedOut,
            TransportError::NoEndpoints | TransportError::AllEndpointsDown => {
                UnreachableCause::NoEndpoints
            }
            TransportError::Closed | TransportError::BadFrame(_) | TransportError::NoAnswer => {
                UnreachableCause::Closed
            }
            TransportError::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => UnreachableCause::Refused,
                io::ErrorKind::TimedOut => UnreachableCause::ConnectTimedOut,
                _ => UnreachableCause::Other,
            },
        }
    }

    /// Whether the peer refused the connection (see [`UnreachableCause::Refused`]).
    pub fn is_refused(&self) -> bool {
        self.unreachable_cause() == UnreachableCause::Refused
    }
}

impl From<io::Error> for TransportError {
    fn from(e: io::Error) -> Self {
        TransportError::Io(Arc::new(e))
    }
}
