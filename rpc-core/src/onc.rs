//! ONC RPC (RFC 5531) messages, TCP record marking, and the translation between ONC
//! messages and this framework's [`Frame`]s.
//!
//! Sans-IO: pure functions and a byte-level record decoder, no sockets. The transport
//! adapters (`rpc-transport-tcp`'s and `rpc-transport-udp`'s `onc` modules) move bytes
//! and call the four translation functions; every rule about what maps to what lives
//! here:
//!
//! * [`server_inbound`]: an ONC message received by a server → a Call [`Frame`] for the
//!   runtime, or an answer the adapter sends itself (`rpcvers` ≠ 2), or a drop.
//! * [`server_outbound`]: the runtime's Reply/Status frame → the ONC reply.
//! * [`client_outbound`]: the client runtime's Call frame → an ONC CALL.
//! * [`client_inbound`]: an ONC REPLY → the Reply/Status frame the client runtime expects.
//!
//! # What maps to what
//!
//! A CALL becomes a Call frame with interface id = `prog`, version = `vers`,
//! procedure = `proc`, call id = `xid` (extended to 64 bits across wrap-around by an
//! [`XidExtender`]), the adapter's client id for the connection (TCP)
//! or peer address (UDP), no deadline, and exactly-once semantics, so the server's reply
//! cache is the duplicate-request cache, keyed by (peer, client id, xid) and bounded by
//! [`crate::server::ReplyCacheConfig`]. A credential other than `AUTH_NONE` is carried
//! as the frame's credentials block ([`crate::frame::flags::CREDENTIALS`]): the XDR
//! `opaque_auth` (flavor, then body), which handlers read with
//! [`crate::CallContext::credentials`] and [`AuthSys::parse`].
//!
//! | our answer                         | ONC reply                                  |
//! |------------------------------------|--------------------------------------------|
//! | Reply                              | `MSG_ACCEPTED` `SUCCESS`, payload = results |
//! | `UnknownInterface`                 | `PROG_UNAVAIL`                             |
//! | `VersionMismatch{low, high}`       | `PROG_MISMATCH{low, high}`                 |
//! | `UnknownProcedure`, procedure 0    | `SUCCESS`, empty results (the NULL procedure) |
//! | `UnknownProcedure`, other          | `PROC_UNAVAIL`                             |
//! | `BadArguments`                     | `GARBAGE_ARGS`                             |
//! | `Unauthenticated`                  | `MSG_DENIED` `AUTH_ERROR` `AUTH_BADCRED`   |
//! | `PermissionDenied`                 | `MSG_DENIED` `AUTH_ERROR` `AUTH_TOOWEAK`   |
//! | any other status                   | `SYSTEM_ERR`                               |
//!
//! The client direction is the reverse: `PROG_UNAVAIL` → `UnknownInterface`,
//! `PROG_MISMATCH` → `VersionMismatch`, `PROC_UNAVAIL` → `UnknownProcedure`,
//! `GARBAGE_ARGS` → `BadArguments`, `SYSTEM_ERR` → `Internal`, `AUTH_ERROR` →
//! `Unauthenticated`, `RPC_MISMATCH{low, high}` → `ProtocolVersion{low, high}`.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::error::Status;
use crate::frame::{
    flags, split_credentials, Frame, FrameHeader, FrameKind, Semantics, DEFAULT_MAX_PAYLOAD,
};
use crate::xdr::{XdrDecode, XdrError, XdrReader, XdrWriter};

/// The RPC protocol version of RFC 5531 (`rpcvers`).
pub const RPC_VERSION: u32 = 2;
/// Longest `opaque_auth` body (RFC 5531 §8.2).
pub const MAX_AUTH_BODY: u32 = 400;
/// Auth flavor `AUTH_NONE`.
pub const AUTH_NONE: u32 = 0;
/// Auth flavor `AUTH_SYS` (also called `AUTH_UNIX`).
pub const AUTH_SYS: u32 = 1;
/// `auth_stat` `AUTH_BADCRED`: bad credential (seal broken).
pub const AUTH_BADCRED: u32 = 1;
/// `auth_stat` `AUTH_TOOWEAK`: rejected for security reasons.
pub const AUTH_TOOWEAK: u32 = 5;
/// Longest `machinename` in an `AUTH_SYS` body.
pub const MAX_MACHINE_NAME: u32 = 255;
/// Most supplementary group ids in an `AUTH_SYS` body.
pub const MAX_GIDS: u32 = 16;
/// Room for the RPC header (xid, message type, call or reply header with two
/// `opaque_auth` of at most [`MAX_AUTH_BODY`] bytes) on top of the payload.
pub const HEADER_ROOM: usize = 4096;
/// Default limit of one record (all fragments together): our maximum payload
/// ([`DEFAULT_MAX_PAYLOAD`], 16 MiB) plus [`HEADER_ROOM`].
pub const DEFAULT_MAX_RECORD: usize = DEFAULT_MAX_PAYLOAD as usize + HEADER_ROOM;
/// Default limit of fragments in one record: 1,024 (each fragment also costs its 4-byte
/// mark against the record's size limit, so empty fragments cannot go on forever).
pub const DEFAULT_MAX_FRAGMENTS: usize = 1024;
/// Bit of a record mark that flags the record's last fragment.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Largest fragment a record mark can describe.
pub const MAX_FRAGMENT: usize = 0x7fff_ffff;

/// Why an ONC message or record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OncError {
    /// The message did not decode (truncated, bad lengths, bad padding).
    #[error("malformed ONC RPC message: {0}")]
    Xdr(#[from] XdrError),
    /// `msg_type` is neither CALL (0) nor REPLY (1).
    #[error("unknown msg_type {0}")]
    MessageType(u32),
    /// A discriminant (`reply_stat`, `accept_stat`, `reject_stat`) has no arm.
    #[error("unknown {name} {value}")]
    Discriminant {
        /// Which union.
        name: &'static str,
        /// The value found.
        value: u32,
    },
    /// Bytes after a message that has no trailing part.
    #[error("{0} bytes after the message")]
    TrailingBytes(usize),
    /// An `AUTH_SYS` credential was asked for and the flavor is another.
    #[error("credential flavor {0} is not AUTH_SYS")]
    NotAuthSys(u32),
    /// A record (all its fragments) is larger than the limit.
    #[error("record of at least {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Bytes the record claims so far (fragments and marks).
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A record has more fragments than the limit.
    #[error("record has more than {0} fragments")]
    TooManyFragments(usize),
    /// The stream ended inside a record.
    #[error("stream ended inside a record")]
    TruncatedRecord,
    /// A frame of the wrong kind for this direction.
    #[error("frame kind {0:?} cannot be sent in this direction")]
    WrongKind(FrameKind),
}

/// An `opaque_auth`: a flavor and an opaque body of at most [`MAX_AUTH_BODY`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpaqueAuth {
    /// The auth flavor ([`AUTH_NONE`], [`AUTH_SYS`], ...).
    pub flavor: u32,
    /// The flavor's body.
    pub body: Bytes,
}

impl OpaqueAuth {
    /// `AUTH_NONE` with an empty body.
    pub fn none() -> Self {
        OpaqueAuth::default()
    }

    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(OpaqueAuth {
            flavor: r.get_u32()?,
            body: r.get_opaque(MAX_AUTH_BODY)?,
        })
    }

    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_u32(self.flavor);
        w.put_opaque(&self.body, MAX_AUTH_BODY)
    }

    /// The XDR encoding (flavor, then body): what a Call frame carries as its
    /// credentials block.
    pub fn to_bytes(&self) -> Result<Bytes, XdrError> {
        let mut w = XdrWriter::new();
        self.encode(&mut w)?;
        Ok(w.into_bytes())
    }

    /// Decodes exactly one XDR `opaque_auth` from `bytes`.
    pub fn from_bytes(bytes: &Bytes) -> Result<Self, OncError> {
        let mut r = XdrReader::new(bytes);
        let auth = OpaqueAuth::decode(&mut r)?;
        finish(&r)?;
        Ok(auth)
    }
}

/// An `AUTH_SYS` credential body (RFC 5531 appendix A).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSys {
    /// Arbitrary id the caller's machine generates.
    pub stamp: u32,
    /// The caller's machine name (at most [`MAX_MACHINE_NAME`] bytes).
    pub machinename: String,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary group ids (at most [`MAX_GIDS`]).
    pub gids: Vec<u32>,
}

impl AuthSys {
    /// Parses a credentials block as the ONC adapters carry it (an XDR `opaque_auth`:
    /// flavor, then body, see [`crate::CallContext::credentials`]); fails unless the
    /// flavor is [`AUTH_SYS`] and the body is well formed.
    pub fn parse(credentials: &[u8]) -> Result<AuthSys, OncError> {
        let auth = OpaqueAuth::from_bytes(&Bytes::copy_from_slice(credentials))?;
        if auth.flavor != AUTH_SYS {
            return Err(OncError::NotAuthSys(auth.flavor));
        }
        AuthSys::parse_body(&auth.body)
    }

    /// Parses the body of an `AUTH_SYS` `opaque_auth`.
    pub fn parse_body(body: &Bytes) -> Result<AuthSys, OncError> {
        let mut r = XdrReader::new(body);
        let stamp = r.get_u32()?;
        let machinename = r.get_string(MAX_MACHINE_NAME)?;
        let uid = r.get_u32()?;
        let gid = r.get_u32()?;
        let gids = r.get_var_array_with(MAX_GIDS, |r| r.get_u32())?;
        finish(&r)?;
        Ok(AuthSys {
            stamp,
            machinename,
            uid,
            gid,
            gids,
        })
    }

    /// This credential as an `opaque_auth` of flavor [`AUTH_SYS`].
    pub fn to_auth(&self) -> Result<OpaqueAuth, XdrError> {
        let mut w = XdrWriter::new();
        w.put_u32(self.stamp);
        w.put_string(&self.machinename, MAX_MACHINE_NAME)?;
        w.put_u32(self.uid);
        w.put_u32(self.gid);
        w.put_var_array_with(&self.gids, MAX_GIDS, |w, g| {
            w.put_u32(*g);
            Ok(())
        })?;
        Ok(OpaqueAuth {
            flavor: AUTH_SYS,
            body: w.into_bytes(),
        })
    }

    /// The credentials block to give a client (see
    /// [`crate::client::ClientConfig::credentials`]) so that its calls over an ONC
    /// channel carry this `AUTH_SYS` credential.
    pub fn to_credentials(&self) -> Result<Bytes, XdrError> {
        self.to_auth()?.to_bytes()
    }
}

/// A CALL message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OncCall {
    /// Transaction id.
    pub xid: u32,
    /// RPC protocol version (must be [`RPC_VERSION`]).
    pub rpcvers: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_: u32,
    /// The caller's credential.
    pub cred: OpaqueAuth,
    /// The caller's verifier.
    pub verf: OpaqueAuth,
    /// The XDR-encoded arguments.
    pub args: Bytes,
}

/// `accept_stat` of an accepted reply, with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptStat {
    /// 0: executed; the XDR-encoded results.
    Success(Bytes),
    /// 1: the program is not hosted.
    ProgUnavail,
    /// 2: the program is hosted, not in this version.
    ProgMismatch {
        /// Lowest version hosted.
        low: u32,
        /// Highest version hosted.
        high: u32,
    },
    /// 3: no such procedure.
    ProcUnavail,
    /// 4: the arguments did not decode.
    GarbageArgs,
    /// 5: other server error.
    SystemErr,
}

/// Why a call was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectStat {
    /// 0: `rpcvers` not spoken.
    RpcMismatch {
        /// Lowest version spoken.
        low: u32,
        /// Highest version spoken.
        high: u32,
    },
    /// 1: authentication failed, with the `auth_stat`.
    AuthError(u32),
}

/// The body of a REPLY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    /// `MSG_ACCEPTED`.
    Accepted {
        /// The server's verifier.
        verf: OpaqueAuth,
        /// The outcome.
        stat: AcceptStat,
    },
    /// `MSG_DENIED`.
    Denied(RejectStat),
}

/// A REPLY message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OncReply {
    /// The transaction id of the call answered.
    pub xid: u32,
    /// What the reply says.
    pub body: ReplyBody,
}

impl OncReply {
    /// An accepted reply with an `AUTH_NONE` verifier.
    pub fn accepted(xid: u32, stat: AcceptStat) -> Self {
        OncReply {
            xid,
            body: ReplyBody::Accepted {
                verf: OpaqueAuth::none(),
                stat,
            },
        }
    }

    /// A denied reply.
    pub fn denied(xid: u32, stat: RejectStat) -> Self {
        OncReply {
            xid,
            body: ReplyBody::Denied(stat),
        }
    }
}

/// A decoded ONC RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OncMessage {
    /// A CALL. If its `rpcvers` is not [`RPC_VERSION`], everything after `rpcvers` is
    /// left undecoded (zero and empty here): the call is only answered `RPC_MISMATCH`.
    Call(OncCall),
    /// A REPLY.
    Reply(OncReply),
}

const CALL: u32 = 0;
const REPLY: u32 = 1;

fn finish(r: &XdrReader<'_>) -> Result<(), OncError> {
    match r.remaining() {
        0 => Ok(()),
        n => Err(OncError::TrailingBytes(n)),
    }
}

/// Decodes one whole ONC RPC message (a UDP datagram, or one TCP record).
pub fn decode_message(bytes: &Bytes) -> Result<OncMessage, OncError> {
    let mut r = XdrReader::new(bytes);
    let xid = r.get_u32()?;
    match r.get_u32()? {
        CALL => {
            let rpcvers = r.get_u32()?;
            if rpcvers != RPC_VERSION {
                return Ok(OncMessage::Call(OncCall {
                    xid,
                    rpcvers,
                    prog: 0,
                    vers: 0,
                    proc_: 0,
                    cred: OpaqueAuth::none(),
                    verf: OpaqueAuth::none(),
                    args: Bytes::new(),
                }));
            }
            let prog = r.get_u32()?;
            let vers = r.get_u32()?;
            let proc_ = r.get_u32()?;
            let cred = OpaqueAuth::decode(&mut r)?;
            let verf = OpaqueAuth::decode(&mut r)?;
            let args = r.take_rest();
            Ok(OncMessage::Call(OncCall {
                xid,
                rpcvers,
                prog,
                vers,
                proc_,
                cred,
                verf,
                args,
            }))
        }
        REPLY => {
            let body = match r.get_u32()? {
                0 => {
                    let verf = OpaqueAuth::decode(&mut r)?;
                    let stat = match r.get_u32()? {
                        0 => AcceptStat::Success(r.take_rest()),
                        1 => AcceptStat::ProgUnavail,
                        2 => AcceptStat::ProgMismatch {
                            low: r.get_u32()?,
                            high: r.get_u32()?,
                        },
                        3 => AcceptStat::ProcUnavail,
                        4 => AcceptStat::GarbageArgs,
                        5 => AcceptStat::SystemErr,
                        value => {
                            return Err(OncError::Discriminant {
                                name: "accept_stat",
                                value,
                            })
                        }
                    };
                    ReplyBody::Accepted { verf, stat }
                }
                1 => ReplyBody::Denied(match r.get_u32()? {
                    0 => RejectStat::RpcMismatch {
                        low: r.get_u32()?,
                        high: r.get_u32()?,
                    },
                    1 => RejectStat::AuthError(r.get_u32()?),
                    value => {
                        return Err(OncError::Discriminant {
                            name: "reject_stat",
                            value,
                        })
                    }
                }),
                value => {
                    return Err(OncError::Discriminant {
                        name: "reply_stat",
                        value,
                    })
                }
            };
            finish(&r)?;
            Ok(OncMessage::Reply(OncReply { xid, body }))
        }
        other => Err(OncError::MessageType(other)),
    }
}

/// Encodes a CALL.
pub fn encode_call(call: &OncCall) -> Result<Bytes, XdrError> {
    let mut w = XdrWriter::with_capacity(40 + call.args.len());
    w.put_u32(call.xid);
    w.put_u32(CALL);
    w.put_u32(call.rpcvers);
    w.put_u32(call.prog);
    w.put_u32(call.vers);
    w.put_u32(call.proc_);
    call.cred.encode(&mut w)?;
    call.verf.encode(&mut w)?;
    w.buf_mut().extend_from_slice(&call.args);
    Ok(w.into_bytes())
}

/// Encodes a REPLY.
pub fn encode_reply(reply: &OncReply) -> Result<Bytes, XdrError> {
    let mut w = XdrWriter::with_capacity(32);
    w.put_u32(reply.xid);
    w.put_u32(REPLY);
    match &reply.body {
        ReplyBody::Accepted { verf, stat } => {
            w.put_u32(0);
            verf.encode(&mut w)?;
            match stat {
                AcceptStat::Success(results) => {
                    w.put_u32(0);
                    w.buf_mut().extend_from_slice(results);
                }
                AcceptStat::ProgUnavail => w.put_u32(1),
                AcceptStat::ProgMismatch { low, high } => {
                    w.put_u32(2);
                    w.put_u32(*low);
                    w.put_u32(*high);
                }
                AcceptStat::ProcUnavail => w.put_u32(3),
                AcceptStat::GarbageArgs => w.put_u32(4),
                AcceptStat::SystemErr => w.put_u32(5),
            }
        }
        ReplyBody::Denied(stat) => {
            w.put_u32(1);
            match stat {
                RejectStat::RpcMismatch { low, high } => {
                    w.put_u32(0);
                    w.put_u32(*low);
                    w.put_u32(*high);
                }
                RejectStat::AuthError(s) => {
                    w.put_u32(1);
                    w.put_u32(*s);
                }
            }
        }
    }
    Ok(w.into_bytes())
}

// ---------------------------------------------------------------------------------------
// Record marking (RFC 5531 §11)
// ---------------------------------------------------------------------------------------

/// A random non-zero u64 for an adapter: the first client id a listener hands out, or a
/// channel's stand-in server incarnation (ONC servers have none).
pub fn random_id() -> u64 {
    crate::id::random_u64()
}

/// Prefixes `message` with record marks: one fragment (several only beyond
/// [`MAX_FRAGMENT`] bytes), the last flagged.
pub fn encode_record(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 4);
    let mut chunks = message.chunks(MAX_FRAGMENT).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&LAST_FRAGMENT.to_be_bytes());
    }
    while let Some(chunk) = chunks.next() {
        // `chunk.len() <= MAX_FRAGMENT`, which fits in 31 bits.
        let mut mark = chunk.len() as u32;
        if chunks.peek().is_none() {
            mark |= LAST_FRAGMENT;
        }
        out.extend_from_slice(&mark.to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.freeze()
}

/// Reassembles records from a byte stream: each record is one or more fragments, each
/// with a 4-byte mark (last-fragment bit, 31-bit length).
///
/// Bounded: a record may hold at most `max_record` bytes counting every fragment's data
/// and its 4-byte mark, and at most `max_fragments` fragments. A mark whose length would
/// break the limit is rejected as soon as the mark is read, before any of its data
/// arrives; a mark that promises more data than ever comes leaves the record incomplete
/// (the transport bounds that with a timeout, and [`RecordDecoder::finish`] reports it
/// at the end of the stream).
#[derive(Debug)]
pub struct RecordDecoder {
    max_record: usize,
    max_fragments: usize,
    /// Data of the fragments of the current record taken so far.
    record: BytesMut,
    /// Bytes charged to the current record (data and marks).
    charged: usize,
    /// Fragments of the current record taken so far.
    fragments: usize,
}

impl Default for RecordDecoder {
    fn default() -> Self {
        RecordDecoder::new(DEFAULT_MAX_RECORD, DEFAULT_MAX_FRAGMENTS)
    }
}

impl RecordDecoder {
    /// A decoder with these limits (see [`DEFAULT_MAX_RECORD`], [`DEFAULT_MAX_FRAGMENTS`]).
    pub fn new(max_record: usize, max_fragments: usize) -> Self {
        RecordDecoder {
            max_record,
            max_fragments: max_fragments.max(1),
            record: BytesMut::new(),
            charged: 0,
            fragments: 0,
        }
    }

    /// Takes whatever complete fragments `src` holds (consuming them) and returns the
    /// next complete record, if one is complete. An error is fatal for the stream.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, OncError> {
        loop {
            if src.len() < 4 {
                return Ok(None);
            }
            let mark = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            let last = mark & LAST_FRAGMENT != 0;
            let len = (mark & !LAST_FRAGMENT) as usize;
            let charged = self.charged as u64 + 4 + len as u64;
            if charged > self.max_record as u64 {
                return Err(OncError::RecordTooLarge {
                    len: charged,
                    max: self.max_record,
                });
            }
            if self.fragments >= self.max_fragments {
                return Err(OncError::TooManyFragments(self.max_fragments));
            }
            if src.len() < 4 + len {
                return Ok(None);
            }
            src.advance(4);
            let data = src.split_to(len);
            self.charged += 4 + len;
            self.fragments += 1;
            if last {
                let record = if self.record.is_empty() {
                    data.freeze()
                } else {
                    self.record.extend_from_slice(&data);
                    std::mem::take(&mut self.record).freeze()
                };
                self.charged = 0;
                self.fragments = 0;
                return Ok(Some(record));
            }
            self.record.extend_from_slice(&data);
        }
    }

    /// Whether a record is under way (fragments taken, or bytes in `src` not yet a
    /// record): the transport then applies its incomplete-record timeout.
    pub fn in_record(&self, src: &BytesMut) -> bool {
        self.fragments > 0 || !src.is_empty()
    }

    /// At the end of the stream: fails if a record was left incomplete.
    pub fn finish(&self, src: &BytesMut) -> Result<(), OncError> {
        if self.in_record(src) {
            return Err(OncError::TruncatedRecord);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Translation
// ---------------------------------------------------------------------------------------

/// What a server-side adapter does with a received ONC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInbound {
    /// Hand this Call frame to the runtime.
    Call(Frame),
    /// Send this reply back at once, without the runtime (`rpcvers` ≠ 2).
    Answer(OncReply),
    /// Not a call this server can answer (truncated, malformed, or a REPLY): drop it
    /// (UDP) or close the connection (TCP).
    Malformed(OncError),
}

/// Turns a peer's 32-bit xids into 64-bit call ids that keep increasing when the xids
/// wrap around (serial-number arithmetic as in RFC 1982: an xid within 2^31 after the
/// highest seen is newer, one within 2^31 before it older). The server's reply cache
/// refuses call ids below a client's low-water mark, so without this a client whose
/// xids wrap (libtirpc starts them at a random value) would be refused after the wrap.
/// The low 32 bits of the call id are the xid. One per connection (TCP) or peer (UDP).
#[derive(Debug, Clone, Default)]
pub struct XidExtender {
    high: Option<u64>,
}

impl XidExtender {
    /// A fresh extender (no xid seen yet).
    pub fn new() -> Self {
        XidExtender::default()
    }

    /// The call id for `xid`.
    pub fn extend(&mut self, xid: u32) -> u64 {
        const WRAP: u64 = 1 << 32;
        const HALF: u64 = 1 << 31;
        // Ids start in the second 2^32 window, so an xid older than the first one
        // still has a window below it.
        let high = *self.high.get_or_insert(WRAP | u64::from(xid));
        let mut id = (high & !(WRAP - 1)) | u64::from(xid);
        if id < high && high - id > HALF {
            id += WRAP;
        } else if id > high && id - high > HALF && id >= WRAP {
            id -= WRAP;
        }
        self.high = Some(high.max(id));
        id
    }
}

/// Translates a received ONC message for a server: see [`ServerInbound`]. `client_id` is
/// the adapter's id for the connection (TCP) or peer address (UDP), `xids` its
/// [`XidExtender`].
pub fn server_inbound(message: &Bytes, client_id: u64, xids: &mut XidExtender) -> ServerInbound {
    let call = match decode_message(message) {
        Ok(OncMessage::Call(call)) => call,
        Ok(OncMessage::Reply(_)) => {
            return ServerInbound::Malformed(OncError::MessageType(REPLY));
        }
        Err(e) => return ServerInbound::Malformed(e),
    };
    if call.rpcvers != RPC_VERSION {
        return ServerInbound::Answer(OncReply::denied(
            call.xid,
            RejectStat::RpcMismatch {
                low: RPC_VERSION,
                high: RPC_VERSION,
            },
        ));
    }
    let call_id = xids.extend(call.xid);
    ServerInbound::Call(call_to_frame(&call, client_id, call_id))
}

/// The Call frame for an ONC CALL (see the module docs for the mapping); `call_id`'s
/// low 32 bits must be the xid (see [`XidExtender`]).
pub fn call_to_frame(call: &OncCall, client_id: u64, call_id: u64) -> Frame {
    let mut header = FrameHeader::call(client_id, call_id, call.prog, call.vers, call.proc_);
    header.set_semantics(Semantics::ExactlyOnce);
    if call.cred.flavor == AUTH_NONE {
        return Frame::new(header, call.args.clone());
    }
    header.flags |= flags::CREDENTIALS;
    let mut w = XdrWriter::with_capacity(16 + call.cred.body.len());
    // The body is at most MAX_AUTH_BODY bytes (it was decoded with that bound), so the
    // credentials block always fits MAX_CREDENTIALS.
    let block_len = 8 + call.cred.body.len().div_ceil(4) * 4;
    w.put_u32(block_len as u32);
    w.put_u32(call.cred.flavor);
    w.put_u32(call.cred.body.len() as u32);
    w.buf_mut().extend_from_slice(&call.cred.body);
    let pad = (4 - call.cred.body.len() % 4) % 4;
    w.buf_mut().extend_from_slice(&[0u8; 3][..pad]);
    Frame::from_chunks(header, vec![w.into_bytes(), call.args.clone()])
}

/// The ONC reply for the runtime's answer to a call (`None` for a frame that is no
/// answer: a Call or Cancel). The xid is the low 32 bits of the frame's call id.
pub fn server_outbound(frame: &Frame) -> Option<OncReply> {
    let header = &frame.header;
    let xid = header.call_id as u32;
    let stat = match header.kind {
        FrameKind::Reply => {
            let mut results = Vec::with_capacity(frame.payload_len());
            for chunk in frame.chunks() {
                results.extend_from_slice(chunk);
            }
            AcceptStat::Success(results.into())
        }
        FrameKind::Status => {
            let payload = frame.clone().into_contiguous().payload;
            let mut r = XdrReader::new(&payload);
            match Status::decode(&mut r) {
                Ok(Status::UnknownInterface { .. }) => AcceptStat::ProgUnavail,
                Ok(Status::VersionMismatch { low, high }) => AcceptStat::ProgMismatch { low, high },
                Ok(Status::UnknownProcedure { .. }) if header.procedure == 0 => {
                    AcceptStat::Success(Bytes::new())
                }
                Ok(Status::UnknownProcedure { .. }) => AcceptStat::ProcUnavail,
                Ok(Status::BadArguments { .. }) => AcceptStat::GarbageArgs,
                Ok(Status::Unauthenticated { .. }) => {
                    return Some(OncReply::denied(xid, RejectStat::AuthError(AUTH_BADCRED)))
                }
                Ok(Status::PermissionDenied { .. }) => {
                    return Some(OncReply::denied(xid, RejectStat::AuthError(AUTH_TOOWEAK)))
                }
                _ => AcceptStat::SystemErr,
            }
        }
        FrameKind::Call | FrameKind::Cancel => return None,
    };
    Some(OncReply::accepted(xid, stat))
}

/// The ONC CALL for the client runtime's Call frame: xid = low 32 bits of the call id;
/// the credential is the frame's credentials block when that block is an `AUTH_SYS`
/// `opaque_auth` (see [`AuthSys::to_credentials`]), else `AUTH_NONE`.
pub fn client_outbound(frame: &Frame) -> Result<OncCall, OncError> {
    let header = &frame.header;
    if header.kind != FrameKind::Call {
        return Err(OncError::WrongKind(header.kind));
    }
    let payload = frame.clone().into_contiguous().payload;
    let (cred, args) = if header.flags & flags::CREDENTIALS != 0 {
        let (block, args) = split_credentials(&payload)?;
        let cred = match OpaqueAuth::from_bytes(&block) {
            Ok(auth) if auth.flavor == AUTH_SYS && AuthSys::parse_body(&auth.body).is_ok() => auth,
            _ => OpaqueAuth::none(),
        };
        (cred, args)
    } else {
        (OpaqueAuth::none(), payload)
    };
    Ok(OncCall {
        xid: header.call_id as u32,
        rpcvers: RPC_VERSION,
        prog: header.interface_id,
        vers: header.interface_version,
        proc_: header.procedure,
        cred,
        verf: OpaqueAuth::none(),
        args,
    })
}

/// The answer frame the client runtime expects for `call` (the header of the Call frame
/// the reply answers), from the ONC reply; `incarnation` goes in its aux field (ONC
/// servers have none: a channel reports a constant of its own).
pub fn client_inbound(reply: &OncReply, call: &FrameHeader, incarnation: u64) -> Frame {
    let status = match &reply.body {
        ReplyBody::Accepted { stat, .. } => match stat {
            AcceptStat::Success(results) => {
                return Frame::new(
                    FrameHeader::answer(call, FrameKind::Reply, incarnation),
                    results.clone(),
                )
            }
            AcceptStat::ProgUnavail => Status::UnknownInterface {
                id: call.interface_id,
            },
            AcceptStat::ProgMismatch { low, high } => Status::VersionMismatch {
                low: *low,
                high: *high,
            },
            AcceptStat::ProcUnavail => Status::UnknownProcedure {
                procedure: call.procedure,
            },
            AcceptStat::GarbageArgs => Status::BadArguments {
                message: "GARBAGE_ARGS".into(),
            },
            AcceptStat::SystemErr => Status::Internal {
                message: "SYSTEM_ERR".into(),
            },
        },
        ReplyBody::Denied(RejectStat::AuthError(stat)) => Status::Unauthenticated {
            message: format!("AUTH_ERROR {stat}"),
        },
        ReplyBody::Denied(RejectStat::RpcMismatch { low, high }) => Status::ProtocolVersion {
            low: *low,
            high: *high,
        },
    };
    status_frame(call, incarnation, &status)
}

/// What a client-side adapter does with a frame from the client runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Send `message` (the encoded CALL for `header`, whose xid is `xid`), and await
    /// its reply unless the call is one-way.
    Send {
        /// The CALL's xid.
        xid: u32,
        /// The encoded CALL.
        message: Bytes,
        /// The Call frame's header (to build the answer with [`client_inbound`]).
        header: FrameHeader,
    },
    /// Hand this answer to the runtime at once, sending nothing: the answer to the
    /// runtime's incarnation probe (interface 0, procedure 0), or `Internal` for a call
    /// that cannot be sent as ONC RPC.
    Answer(Frame),
    /// Stop awaiting this xid (the runtime cancelled the call; ONC has no cancel).
    Forget(u32),
    /// Nothing to do (a Reply or Status frame has no meaning from a client).
    Ignore,
}

/// Decides what a client-side adapter does with `frame` (see [`ClientAction`]);
/// `incarnation` is the channel's constant (ONC servers report none).
pub fn client_action(frame: &Frame, incarnation: u64) -> ClientAction {
    let header = frame.header;
    match header.kind {
        FrameKind::Call => {}
        FrameKind::Cancel => return ClientAction::Forget(header.call_id as u32),
        FrameKind::Reply | FrameKind::Status => return ClientAction::Ignore,
    }
    if header.interface_id == crate::server::PING_INTERFACE && header.procedure == 0 {
        return ClientAction::Answer(Frame::new(
            FrameHeader::answer(&header, FrameKind::Reply, incarnation),
            Bytes::new(),
        ));
    }
    let encoded = client_outbound(frame).and_then(|call| {
        let message = encode_call(&call)?;
        Ok((call.xid, message))
    });
    match encoded {
        Ok((xid, message)) => ClientAction::Send {
            xid,
            message,
            header,
        },
        Err(e) => ClientAction::Answer(answer_frame(
            &header,
            incarnation,
            &Status::Internal {
                message: format!("cannot send as ONC RPC: {e}"),
            },
        )),
    }
}

/// A Status frame answering `call` with `status`, for answers an adapter gives itself
/// (for example `Overloaded` when it awaits too many calls).
pub fn answer_frame(call: &FrameHeader, incarnation: u64, status: &Status) -> Frame {
    status_frame(call, incarnation, status)
}

fn status_frame(call: &FrameHeader, incarnation: u64, status: &Status) -> Frame {
    let header = FrameHeader::answer(call, FrameKind::Status, incarnation);
    // Every status built above encodes (its messages are short).
    let payload = crate::xdr::to_bytes(status).unwrap_or_default();
    Frame::new(header, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::to_bytes;

    fn call(xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> OncCall {
        OncCall {
            xid,
            rpcvers: RPC_VERSION,
            prog,
            vers,
            proc_,
            cred: OpaqueAuth::none(),
            verf: OpaqueAuth::none(),
            args: Bytes::copy_from_slice(args),
        }
    }

    fn auth_sys() -> AuthSys {
        AuthSys {
            stamp: 7,
            machinename: "host1".into(),
            uid: 1000,
            gid: 100,
            gids: vec![4, 24, 27],
        }
    }

    fn status_answer(call: &FrameHeader, status: Status) -> Frame {
        Frame::new(
            FrameHeader::answer(call, FrameKind::Status, 9),
            to_bytes(&status).unwrap(),
        )
    }

    #[test]
    fn call_bytes_match_rfc_layout() {
        let c = call(0x0102_0304, 100_000, 2, 3, &[0, 0, 0, 9]);
        let bytes = encode_call(&c).unwrap();
        let expected: Vec<u8> = [0x0102_0304u32, 0, 2, 100_000, 2, 3, 0, 0, 0, 0, 9]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(&bytes[..], &expected[..]);
        assert_eq!(decode_message(&bytes).unwrap(), OncMessage::Call(c));
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = [
            OncReply::accepted(1, AcceptStat::Success(Bytes::from_static(&[0, 0, 0, 1]))),
            OncReply::accepted(2, AcceptStat::ProgUnavail),
            OncReply::accepted(3, AcceptStat::ProgMismatch { low: 1, high: 4 }),
            OncReply::accepted(4, AcceptStat::ProcUnavail),
            OncReply::accepted(5, AcceptStat::GarbageArgs),
            OncReply::accepted(6, AcceptStat::SystemErr),
            OncReply::denied(7, RejectStat::RpcMismatch { low: 2, high: 2 }),
            OncReply::denied(8, RejectStat::AuthError(AUTH_TOOWEAK)),
        ];
        for reply in replies {
            let bytes = encode_reply(&reply).unwrap();
            assert_eq!(decode_message(&bytes).unwrap(), OncMessage::Reply(reply));
        }
        // PROG_MISMATCH on the wire: xid, REPLY, MSG_ACCEPTED, AUTH_NONE verf, 2, low, high.
        let bytes = encode_reply(&OncReply::accepted(
            3,
            AcceptStat::ProgMismatch { low: 1, high: 4 },
        ))
        .unwrap();
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, [3, 1, 0, 0, 0, 2, 1, 4]);
        let denied = encode_reply(&OncReply::denied(8, RejectStat::AuthError(1))).unwrap();
        assert_eq!(
            &denied[..],
            &[0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
        );
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        let good = encode_call(&call(1, 2, 3, 4, &[])).unwrap();
        for cut in 0..good.len() {
            let truncated = good.slice(..cut);
            assert!(decode_message(&truncated).is_err(), "cut at {cut}");
            assert!(matches!(
                server_inbound(&truncated, 1, &mut XidExtender::new()),
                ServerInbound::Malformed(_)
            ));
        }
        let mut bad_type = good.to_vec();
        bad_type[7] = 2;
        assert_eq!(
            decode_message(&Bytes::from(bad_type)),
            Err(OncError::MessageType(2))
        );
        // A credential body longer than 400 bytes.
        let mut w = XdrWriter::new();
        for v in [1u32, 0, 2, 1, 1, 1, AUTH_SYS, 404] {
            w.put_u32(v);
        }
        w.buf_mut().extend_from_slice(&[0; 404]);
        assert!(decode_message(&w.into_bytes()).is_err());
        // Unknown accept_stat; trailing bytes after a PROC_UNAVAIL.
        let mut r = encode_reply(&OncReply::accepted(1, AcceptStat::SystemErr))
            .unwrap()
            .to_vec();
        r[23] = 6;
        assert!(matches!(
            decode_message(&Bytes::from(r.clone())),
            Err(OncError::Discriminant { .. })
        ));
        r[23] = 3;
        r.extend_from_slice(&[0; 4]);
        assert_eq!(
            decode_message(&Bytes::from(r)),
            Err(OncError::TrailingBytes(4))
        );
        // A REPLY sent to a server.
        let reply = encode_reply(&OncReply::accepted(1, AcceptStat::ProgUnavail)).unwrap();
        assert!(matches!(
            server_inbound(&reply, 1, &mut XidExtender::new()),
            ServerInbound::Malformed(_)
        ));
    }

    #[test]
    fn auth_sys_round_trips_and_rejects_bad_bodies() {
        let a = auth_sys();
        let creds = a.to_credentials().unwrap();
        assert_eq!(AuthSys::parse(&creds).unwrap(), a);
        let none = OpaqueAuth::none().to_bytes().unwrap();
        assert_eq!(AuthSys::parse(&none), Err(OncError::NotAuthSys(AUTH_NONE)));
        // 17 gids.
        let mut too_many = a.clone();
        too_many.gids = vec![1; 17];
        assert!(too_many.to_auth().is_err());
        let mut w = XdrWriter::new();
        w.put_u32(1);
        w.put_string("h", 255).unwrap();
        w.put_u32(0);
        w.put_u32(0);
        w.put_u32(17);
        for _ in 0..17 {
            w.put_u32(0);
        }
        assert!(AuthSys::parse_body(&w.into_bytes()).is_err());
        // Truncated body.
        let body = a.to_auth().unwrap().body;
        assert!(AuthSys::parse_body(&body.slice(..body.len() - 4)).is_err());
        assert!(AuthSys::parse(&creds[..creds.len() - 1]).is_err());
    }

    #[test]
    fn record_marks() {
        let rec = encode_record(b"hello");
        assert_eq!(&rec[..4], &(LAST_FRAGMENT | 5).to_be_bytes());
        let mut d = RecordDecoder::default();
        // Byte by byte.
        let mut src = BytesMut::new();
        let mut out = None;
        for b in rec.iter() {
            assert!(out.is_none());
            src.extend_from_slice(&[*b]);
            out = d.decode(&mut src).unwrap();
        }
        assert_eq!(out.unwrap(), Bytes::from_static(b"hello"));
        assert!(!d.in_record(&src));
        d.finish(&src).unwrap();
        assert_eq!(&encode_record(b"")[..], &LAST_FRAGMENT.to_be_bytes());

        // Three fragments (one empty), then a second record in the same buffer.
        let mut src = BytesMut::new();
        src.extend_from_slice(&3u32.to_be_bytes());
        src.extend_from_slice(b"abc");
        src.extend_from_slice(&0u32.to_be_bytes());
        src.extend_from_slice(&(LAST_FRAGMENT | 2).to_be_bytes());
        src.extend_from_slice(b"de");
        src.extend_from_slice(&encode_record(b"xy"));
        assert_eq!(
            d.decode(&mut src).unwrap().unwrap(),
            Bytes::from_static(b"abcde")
        );
        assert_eq!(
            d.decode(&mut src).unwrap().unwrap(),
            Bytes::from_static(b"xy")
        );
        assert_eq!(d.decode(&mut src).unwrap(), None);
    }

    #[test]
    fn lying_and_oversize_record_marks_are_bounded() {
        // A mark promising more than the limit: rejected on the mark alone.
        let mut d = RecordDecoder::new(1000, 16);
        let mut src = BytesMut::from(&(LAST_FRAGMENT | 2000).to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut src),
            Err(OncError::RecordTooLarge { .. })
        ));
        // Within the limit but beyond the data: incomplete, and truncated at EOF.
        let mut d = RecordDecoder::new(1000, 16);
        let mut src = BytesMut::from(&(LAST_FRAGMENT | 500).to_be_bytes()[..]);
        src.extend_from_slice(&[0; 10]);
        assert_eq!(d.decode(&mut src).unwrap(), None);
        assert!(d.in_record(&src));
        assert_eq!(d.finish(&src), Err(OncError::TruncatedRecord));
        // Fragments that add up beyond the limit.
        let mut d = RecordDecoder::new(1000, 1000);
        let mut src = BytesMut::new();
        for _ in 0..3 {
            src.extend_from_slice(&400u32.to_be_bytes());
            src.extend_from_slice(&[1; 400]);
        }
        assert!(matches!(
            d.decode(&mut src),
            Err(OncError::RecordTooLarge { .. })
        ));
        // Zero-length non-last fragments forever: the fragment limit ends it.
        let mut d = RecordDecoder::new(DEFAULT_MAX_RECORD, DEFAULT_MAX_FRAGMENTS);
        let mut src = BytesMut::new();
        for _ in 0..=DEFAULT_MAX_FRAGMENTS {
            src.extend_from_slice(&0u32.to_be_bytes());
        }
        assert_eq!(
            d.decode(&mut src),
            Err(OncError::TooManyFragments(DEFAULT_MAX_FRAGMENTS))
        );
        // And their marks count against the size limit.
        let mut d = RecordDecoder::new(64, 1_000_000);
        let mut src = BytesMut::new();
        for _ in 0..17 {
            src.extend_from_slice(&0u32.to_be_bytes());
        }
        assert!(matches!(
            d.decode(&mut src),
            Err(OncError::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn server_inbound_maps_call_to_frame() {
        let mut c = call(0xdead_beef, 0x2000_0101, 1, 7, &[0, 0, 0, 42]);
        let bytes = encode_call(&c).unwrap();
        let ServerInbound::Call(frame) = server_inbound(&bytes, 77, &mut XidExtender::new()) else {
            panic!("not a call");
        };
        let h = frame.header;
        assert_eq!(h.kind, FrameKind::Call);
        assert_eq!(
            (
                h.client_id,
                h.call_id,
                h.interface_id,
                h.interface_version,
                h.procedure
            ),
            (77, 0x1_dead_beef, 0x2000_0101, 1, 7)
        );
        assert_eq!(h.semantics(), Semantics::ExactlyOnce);
        assert_eq!(h.flags & flags::CREDENTIALS, 0);
        assert_eq!(h.deadline_us, crate::frame::NO_DEADLINE);
        assert_eq!(&frame.payload[..], &[0, 0, 0, 42]);

        // AUTH_SYS: the credentials block is the opaque_auth, the arguments follow.
        c.cred = auth_sys().to_auth().unwrap();
        let ServerInbound::Call(frame) =
            server_inbound(&encode_call(&c).unwrap(), 77, &mut XidExtender::new())
        else {
            panic!("not a call");
        };
        assert_ne!(frame.header.flags & flags::CREDENTIALS, 0);
        let frame = frame.into_contiguous();
        let (creds, args) = split_credentials(&frame.payload).unwrap();
        assert_eq!(AuthSys::parse(&creds).unwrap(), auth_sys());
        assert_eq!(&args[..], &[0, 0, 0, 42]);
        // It parses as a frame the server accepts (flags valid).
        let wire = frame.to_bytes().unwrap();
        Frame::parse(&wire, DEFAULT_MAX_PAYLOAD).unwrap();

        // Another flavor with a body that needs padding: carried as it came.
        c.cred = OpaqueAuth {
            flavor: 390_003,
            body: Bytes::from_static(b"abcde"),
        };
        let ServerInbound::Call(frame) =
            server_inbound(&encode_call(&c).unwrap(), 77, &mut XidExtender::new())
        else {
            panic!("not a call");
        };
        let frame = frame.into_contiguous();
        let (creds, args) = split_credentials(&frame.payload).unwrap();
        assert_eq!(OpaqueAuth::from_bytes(&creds).unwrap(), c.cred);
        assert_eq!(AuthSys::parse(&creds), Err(OncError::NotAuthSys(390_003)));
        assert_eq!(&args[..], &[0, 0, 0, 42]);
    }

    #[test]
    fn xids_extend_across_wrap_around() {
        let mut x = XidExtender::new();
        let first = x.extend(0xffff_fffe);
        assert_eq!(first as u32, 0xffff_fffe);
        let next = x.extend(0xffff_ffff);
        let wrapped = x.extend(0);
        let later = x.extend(5);
        assert!(
            first < next && next < wrapped && wrapped < later,
            "{first:#x} {next:#x} {wrapped:#x} {later:#x}"
        );
        assert_eq!((wrapped as u32, later as u32), (0, 5));
        // A retransmission from before the wrap keeps its id.
        assert_eq!(x.extend(0xffff_ffff), next);
        assert_eq!(x.extend(5), later);
        // An xid older than the first one seen still gets a smaller id.
        let mut y = XidExtender::new();
        let a = y.extend(10);
        assert!(y.extend(3) < a);
        assert_eq!(y.extend(10), a);
    }

    #[test]
    fn wrong_rpcvers_is_answered_rpc_mismatch() {
        let mut c = call(5, 1, 1, 1, &[]);
        c.rpcvers = 3;
        // Only xid, msg_type and rpcvers are needed to answer.
        let bytes = encode_call(&c).unwrap().slice(..12);
        assert_eq!(
            server_inbound(&bytes, 1, &mut XidExtender::new()),
            ServerInbound::Answer(OncReply::denied(
                5,
                RejectStat::RpcMismatch { low: 2, high: 2 }
            ))
        );
    }

    #[test]
    fn server_outbound_maps_every_answer() {
        let call_h = |proc_| {
            let mut h = FrameHeader::call(1, 0x1_0000_0042, 0x2000_0101, 1, proc_);
            h.set_semantics(Semantics::ExactlyOnce);
            h
        };
        let h = call_h(3);
        let ok = Frame::new(
            FrameHeader::answer(&h, FrameKind::Reply, 9),
            Bytes::from_static(&[0, 0, 0, 1]),
        );
        assert_eq!(
            server_outbound(&ok),
            Some(OncReply::accepted(
                0x42,
                AcceptStat::Success(Bytes::from_static(&[0, 0, 0, 1]))
            ))
        );
        let cases: Vec<(Status, ReplyBody)> = vec![
            (
                Status::UnknownInterface { id: 1 },
                accepted(AcceptStat::ProgUnavail),
            ),
            (
                Status::VersionMismatch { low: 1, high: 3 },
                accepted(AcceptStat::ProgMismatch { low: 1, high: 3 }),
            ),
            (
                Status::UnknownProcedure { procedure: 3 },
                accepted(AcceptStat::ProcUnavail),
            ),
            (
                Status::BadArguments {
                    message: "x".into(),
                },
                accepted(AcceptStat::GarbageArgs),
            ),
            (
                Status::Internal {
                    message: "x".into(),
                },
                accepted(AcceptStat::SystemErr),
            ),
            (Status::Overloaded, accepted(AcceptStat::SystemErr)),
            (
                Status::application(3, "no"),
                accepted(AcceptStat::SystemErr),
            ),
            (
                Status::unauthenticated("who"),
                ReplyBody::Denied(RejectStat::AuthError(AUTH_BADCRED)),
            ),
            (
                Status::permission_denied("no"),
                ReplyBody::Denied(RejectStat::AuthError(AUTH_TOOWEAK)),
            ),
        ];
        for (status, body) in cases {
            let reply = server_outbound(&status_answer(&h, status.clone())).unwrap();
            assert_eq!(reply.xid, 0x42);
            assert_eq!(reply.body, body, "{status:?}");
        }
        // The NULL procedure of a hosted interface: an empty SUCCESS.
        let null = status_answer(&call_h(0), Status::UnknownProcedure { procedure: 0 });
        assert_eq!(
            server_outbound(&null).unwrap().body,
            accepted(AcceptStat::Success(Bytes::new()))
        );
        // A status payload that does not decode: SYSTEM_ERR.
        let garbage = Frame::new(
            FrameHeader::answer(&h, FrameKind::Status, 9),
            Bytes::from_static(&[0, 0, 0, 99]),
        );
        assert_eq!(
            server_outbound(&garbage).unwrap().body,
            accepted(AcceptStat::SystemErr)
        );
        assert_eq!(server_outbound(&Frame::new(h, Bytes::new())), None);
    }

    fn accepted(stat: AcceptStat) -> ReplyBody {
        ReplyBody::Accepted {
            verf: OpaqueAuth::none(),
            stat,
        }
    }

    #[test]
    fn client_outbound_builds_calls() {
        let mut h = FrameHeader::call(5, 0x7_0000_0010, 0x2000_0101, 2, 4);
        let c = client_outbound(&Frame::new(h, Bytes::from_static(&[0, 0, 0, 1]))).unwrap();
        assert_eq!(
            c,
            OncCall {
                xid: 0x10,
                ..call(0, 0x2000_0101, 2, 4, &[0, 0, 0, 1])
            }
        );
        // With an AUTH_SYS credentials block.
        h.flags |= flags::CREDENTIALS;
        let mut w = XdrWriter::new();
        w.put_opaque(&auth_sys().to_credentials().unwrap(), 4096)
            .unwrap();
        w.put_u32(1);
        let c = client_outbound(&Frame::new(h, w.into_bytes())).unwrap();
        assert_eq!(c.cred, auth_sys().to_auth().unwrap());
        assert_eq!(&c.args[..], &[0, 0, 0, 1]);
        // A credentials block of another form: AUTH_NONE, arguments kept.
        let mut w = XdrWriter::new();
        w.put_opaque(b"token", 4096).unwrap();
        w.put_u32(2);
        let c = client_outbound(&Frame::new(h, w.into_bytes())).unwrap();
        assert_eq!(c.cred, OpaqueAuth::none());
        assert_eq!(&c.args[..], &[0, 0, 0, 2]);
        // Malformed block; wrong kind.
        assert!(client_outbound(&Frame::new(h, Bytes::from_static(&[0, 0, 1]))).is_err());
        let reply = FrameHeader::answer(&h, FrameKind::Reply, 0);
        assert!(client_outbound(&Frame::new(reply, Bytes::new())).is_err());
    }

    #[test]
    fn client_actions() {
        let h = FrameHeader::call(5, 0x1_0000_0010, 0x2000_0101, 2, 4);
        match client_action(&Frame::new(h, Bytes::from_static(&[0, 0, 0, 1])), 3) {
            ClientAction::Send {
                xid,
                message,
                header,
            } => {
                assert_eq!((xid, header), (0x10, h));
                let OncMessage::Call(c) = decode_message(&message).unwrap() else {
                    panic!("not a call");
                };
                assert_eq!(
                    (c.prog, c.vers, c.proc_, &c.args[..]),
                    (0x2000_0101, 2, 4, &[0, 0, 0, 1][..])
                );
            }
            other => panic!("{other:?}"),
        }
        let probe = FrameHeader::call(5, 1, crate::server::PING_INTERFACE, 0, 0);
        let ClientAction::Answer(pong) = client_action(&Frame::new(probe, Bytes::new()), 3) else {
            panic!("the probe is answered locally");
        };
        assert_eq!((pong.header.kind, pong.header.aux), (FrameKind::Reply, 3));
        let mut cancel = h;
        cancel.kind = FrameKind::Cancel;
        assert_eq!(
            client_action(&Frame::new(cancel, Bytes::new()), 3),
            ClientAction::Forget(0x10)
        );
        let mut bad = h;
        bad.flags |= flags::CREDENTIALS;
        let ClientAction::Answer(f) =
            client_action(&Frame::new(bad, Bytes::from_static(&[0, 0, 1])), 3)
        else {
            panic!("an unsendable call is answered locally");
        };
        assert_eq!(f.header.kind, FrameKind::Status);
        let reply = FrameHeader::answer(&h, FrameKind::Reply, 0);
        assert_eq!(
            client_action(&Frame::new(reply, Bytes::new()), 3),
            ClientAction::Ignore
        );
    }

    #[test]
    fn client_inbound_maps_every_reply() {
        let h = FrameHeader::call(5, 0x10, 0x2000_0101, 2, 4);
        let ok = client_inbound(
            &OncReply::accepted(0x10, AcceptStat::Success(Bytes::from_static(&[1, 2, 3, 4]))),
            &h,
            11,
        );
        assert_eq!(ok.header.kind, FrameKind::Reply);
        assert_eq!((ok.header.call_id, ok.header.aux), (0x10, 11));
        assert_eq!(&ok.payload[..], &[1, 2, 3, 4]);
        let cases = [
            (
                accepted(AcceptStat::ProgUnavail),
                Status::UnknownInterface { id: 0x2000_0101 },
            ),
            (
                accepted(AcceptStat::ProgMismatch { low: 1, high: 1 }),
                Status::VersionMismatch { low: 1, high: 1 },
            ),
            (
                accepted(AcceptStat::ProcUnavail),
                Status::UnknownProcedure { procedure: 4 },
            ),
            (
                accepted(AcceptStat::GarbageArgs),
                Status::BadArguments {
                    message: "GARBAGE_ARGS".into(),
                },
            ),
            (
                accepted(AcceptStat::SystemErr),
                Status::Internal {
                    message: "SYSTEM_ERR".into(),
                },
            ),
            (
                ReplyBody::Denied(RejectStat::AuthError(5)),
                Status::unauthenticated("AUTH_ERROR 5"),
            ),
            (
                ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 }),
                Status::ProtocolVersion { low: 2, high: 2 },
            ),
        ];
        for (body, status) in cases {
            let f = client_inbound(&OncReply { xid: 0x10, body }, &h, 11);
            assert_eq!(f.header.kind, FrameKind::Status);
            assert_eq!(
                crate::xdr::from_bytes::<Status>(&f.payload).unwrap(),
                status
            );
        }
    }
}
