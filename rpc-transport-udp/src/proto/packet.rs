//! The datagram format: one [`Packet`] per UDP datagram.
//!
//! Every datagram starts with a 28-byte common header (all fields big-endian):
//!
//! ```text
//!  0      2    3    4          8          12          16                  24      26      28
//!  +------+----+----+----------+----------+-----------+-------------------+-------+-------+
//!  |magic |ver |type|  crc32   | conn_id  | ack_delay |      cum_ack      | sacks | rsvd  |
//!  +------+----+----+----------+----------+-----------+-------------------+-------+-------+
//! ```
//!
//! * `magic` is `0x5255` ("RU"), `ver` is [`VERSION`].
//! * `crc32` is the CRC-32 (IEEE) of the whole datagram computed with these four bytes
//!   set to zero. It is checked before anything else is trusted.
//! * `cum_ack` is the highest seq `N` such that every seq `1..=N` from the peer arrived
//!   (0 = none); `ack_delay` the microseconds the sender held back that acknowledgement.
//! * `sacks` selective-ack ranges of 8 bytes follow: `(start_offset u32, len u32)`,
//!   covering the absolute seqs `cum_ack + start_offset ..= cum_ack + start_offset + len - 1`.
//!   `start_offset >= 2` (seq `cum_ack + 1` is missing by definition), `len >= 1`, and
//!   ranges are strictly increasing and never adjacent.
//!
//! Then the type-specific body (see [`Body`]). A receiver drops any datagram that fails
//! [`Packet::parse`]; the error says why.

use std::ops::Range;

use bytes::Bytes;

/// The magic number every datagram starts with ("RU").
pub const MAGIC: u16 = 0x5255;
/// The protocol version this module speaks.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const HEADER_LEN: usize = 28;
/// Length of one encoded selective-ack range.
pub const SACK_RANGE_LEN: usize = 8;
/// Length of the fixed part of a Data body (before the fragment payload).
pub const DATA_HEADER_LEN: usize = 20;
/// Most SACK ranges any datagram may carry (parse rejects more with TooManyRanges).
pub const MAX_SACK_RANGES: usize = 64;
/// Most SACK ranges a Data datagram carries, so fragment sizes can be fixed up front.
pub const DATA_SACK_RANGES: usize = 8;

const CRC_OFFSET: usize = 4;
const INIT_BODY_LEN: usize = 16;
const ACCEPT_BODY_LEN: usize = 24;
const CLOSE_BODY_LEN: usize = 4;
/// A Hello's handshake length (u16) and reserved (u16) fields.
const HELLO_HANDSHAKE_HEAD: usize = 4;
/// Longest handshake field of a Hello or a Welcome.
pub const MAX_HANDSHAKE_LEN: usize = 512;
/// Length of an address-validation cookie on the wire (issue time u64 + tag).
pub const COOKIE_LEN: usize = 8 + COOKIE_TAG_LEN;
/// Length of a cookie's MAC tag (a whole HMAC-SHA256 tag).
pub const COOKIE_TAG_LEN: usize = 32;

/// The datagram type, byte 3 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// Client's connection request.
    Init = 1,
    /// Server's answer to an Init.
    Accept = 2,
    /// One fragment of a message.
    Data = 3,
    /// Acknowledgement only.
    Ack = 4,
    /// Keepalive / liveness probe (acknowledged like data).
    Ping = 5,
    /// Orderly close, with a reason code.
    Close = 6,
    /// "I know nothing about this connection."
    Reset = 7,
    /// Server's stateless answer to an Init: repeat it with this cookie.
    Retry = 8,
    /// A client's connection request with a Noise handshake (sealed endpoints, 9.10).
    Hello = 9,
    /// The server's answer to a Hello: the Noise answer carrying the Accept body.
    Welcome = 10,
}

impl PacketType {
    /// The type with wire value `v`, if there is one.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Init,
            2 => Self::Accept,
            3 => Self::Data,
            4 => Self::Ack,
            5 => Self::Ping,
            6 => Self::Close,
            7 => Self::Reset,
            8 => Self::Retry,
            9 => Self::Hello,
            10 => Self::Welcome,
            _ => return None,
        })
    }
}

/// One selective-ack range of absolute seqs, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SackRange {
    /// First seq in the range.
    pub start: u64,
    /// Last seq in the range (inclusive).
    pub end: u64,
}

/// Up to MAX_SACK_RANGES ranges without allocating.
#[derive(Clone)]
pub struct SackRanges {
    items: [SackRange; MAX_SACK_RANGES],
    len: usize,
}

impl SackRanges {
    /// An empty set of ranges.
    pub fn new() -> Self {
        Self {
            items: [SackRange { start: 0, end: 0 }; MAX_SACK_RANGES],
            len: 0,
        }
    }

    /// Appends `r`; returns false (and stores nothing) when already full.
    pub fn push(&mut self, r: SackRange) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = r;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The ranges held, in the order pushed.
    pub fn as_slice(&self) -> &[SackRange] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Number of ranges held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no range is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the first `n` ranges (no-op if fewer are held).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Removes every range.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Default for SackRanges {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for SackRanges {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackRanges {}

impl std::fmt::Debug for SackRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The acknowledgement every datagram carries in its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckInfo {
    /// Highest seq N such that every seq 1..=N from the peer was received (0 = none).
    pub cumulative: u64,
    /// Microseconds the sender held back its newest acknowledgement.
    pub delay_us: u32,
    /// Received seqs above `cumulative`, as absolute inclusive ranges, lowest first.
    pub ranges: SackRanges,
}

/// An address-validation cookie (PROTOCOL.md 9.3): issued by a server in Retry, echoed
/// by the client in its next Init. Opaque to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cookie {
    /// When the server issued it, in microseconds on the server's own clock.
    pub issued_us: u64,
    /// The server's MAC over the client address, connection id and `issued_us`.
    pub tag: [u8; COOKIE_TAG_LEN],
}

/// The type-specific part of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Client's connection request.
    Init {
        /// Identifies this client process instance (a restart picks a new one).
        client_incarnation: u64,
        /// Datagrams the client can hold above its cumulative point.
        recv_window: u32,
        /// Largest datagram the client accepts.
        max_datagram: u32,
        /// The cookie of the server's last Retry, if it sent one.
        cookie: Option<Cookie>,
    },
    /// Server's answer to an Init.
    Accept {
        /// Echo of the Init's client incarnation.
        client_incarnation: u64,
        /// Identifies this server process instance.
        server_incarnation: u64,
        /// Datagrams the server can hold above its cumulative point.
        recv_window: u32,
        /// Largest datagram the server accepts.
        max_datagram: u32,
    },
    /// One fragment of a message.
    Data {
        /// Sequence number of this datagram (>= 1).
        seq: u64,
        /// Which fragment of the message this is (< frag_count).
        frag_index: u32,
        /// How many fragments the message was cut into (>= 1).
        frag_count: u32,
        /// Length of the whole message.
        msg_len: u32,
        /// This fragment's bytes: `fragment_range(msg_len, frag_count, frag_index)` of the message.
        payload: Bytes,
    },
    /// Acknowledgement only.
    Ack,
    /// Keepalive / liveness probe.
    Ping,
    /// Orderly close.
    Close {
        /// Application-defined reason code.
        reason: u32,
    },
    /// The receiver knows nothing of this connection.
    Reset,
    /// Server: prove your address by sending Init again with this cookie.
    Retry {
        /// The cookie to echo.
        cookie: Cookie,
    },
    /// Client's connection request on a sealed endpoint: an Init's fields and the first
    /// handshake message (PROTOCOL.md 9.10).
    Hello {
        /// Identifies this client process instance (a restart picks a new one).
        client_incarnation: u64,
        /// Datagrams the client can hold above its cumulative point.
        recv_window: u32,
        /// Largest datagram the client accepts.
        max_datagram: u32,
        /// The handshake field: mode, PSK id, Noise message (1..=[`MAX_HANDSHAKE_LEN`] bytes).
        handshake: Bytes,
        /// The cookie of the server's last Retry, if it sent one.
        cookie: Option<Cookie>,
    },
    /// Server's answer to a Hello: the Noise answer, whose encrypted payload is the
    /// Accept body (1..=[`MAX_HANDSHAKE_LEN`] bytes).
    Welcome {
        /// The Noise message.
        handshake: Bytes,
    },
}

impl Body {
    fn encoded_len(&self) -> usize {
        match self {
            Body::Init { cookie, .. } => {
                INIT_BODY_LEN + if cookie.is_some() { COOKIE_LEN } else { 0 }
            }
            Body::Retry { .. } => COOKIE_LEN,
            Body::Accept { .. } => ACCEPT_BODY_LEN,
            Body::Data { payload, .. } => DATA_HEADER_LEN + payload.len(),
            Body::Ack | Body::Ping | Body::Reset => 0,
            Body::Close { .. } => CLOSE_BODY_LEN,
            Body::Hello {
                handshake, cookie, ..
            } => {
                INIT_BODY_LEN
                    + HELLO_HANDSHAKE_HEAD
                    + handshake.len()
                    + if cookie.is_some() { COOKIE_LEN } else { 0 }
            }
            Body::Welcome { handshake } => handshake.len(),
        }
    }

    /// The fields of an Init or a Hello: (client incarnation, cookie).
    pub fn init_fields(&self) -> Option<(u64, Option<&Cookie>)> {
        match self {
            Body::Init {
                client_incarnation,
                cookie,
                ..
            }
            | Body::Hello {
                client_incarnation,
                cookie,
                ..
            } => Some((*client_incarnation, cookie.as_ref())),
            _ => None,
        }
    }
}

/// One datagram: connection id, acknowledgement and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Connection id chosen by the client in Init; echoed in every datagram.
    pub conn_id: u32,
    /// The acknowledgement carried in the header.
    pub ack: AckInfo,
    /// The type-specific body.
    pub body: Body,
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The datagram ended before a field it must contain.
    #[error("datagram truncated ({len} bytes)")]
    Truncated {
        /// Length of the datagram.
        len: usize,
    },
    /// The first two bytes are not [`MAGIC`].
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// The version byte is not [`VERSION`].
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The type byte names no [`PacketType`].
    #[error("unknown datagram type {0}")]
    UnknownType(u8),
    /// The CRC does not match the contents (corruption, or not our protocol).
    #[error("bad checksum: computed {expected:#010x}, datagram says {actual:#010x}")]
    BadChecksum {
        /// CRC computed over the datagram as received.
        expected: u32,
        /// CRC stored in the datagram's header.
        actual: u32,
    },
    /// The reserved header field is not zero.
    #[error("reserved field is {0:#06x}, must be 0")]
    ReservedNotZero(u16),
    /// More than [`MAX_SACK_RANGES`] selective-ack ranges.
    #[error("{0} sack ranges (at most {MAX_SACK_RANGES} allowed)")]
    TooManyRanges(u16),
    /// A selective-ack range breaks the encoding rules.
    #[error("malformed selective-ack range")]
    BadAckRange,
    /// A Data body's seq, fragment fields or payload length are inconsistent.
    #[error("malformed data fragment")]
    BadFragment,
    /// A Hello's or Welcome's handshake field is empty or longer than
    /// [`MAX_HANDSHAKE_LEN`].
    #[error("handshake field empty or longer than {MAX_HANDSHAKE_LEN} bytes")]
    BadHandshake,
    /// Bytes left over after a fixed-size body.
    #[error("{extra} trailing bytes after the body")]
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
}

/// Bounds-checked big-endian reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], PacketError> {
        let truncated = PacketError::Truncated {
            len: self.buf.len(),
        };
        let end = self.pos.checked_add(N).ok_or(truncated.clone())?;
        let bytes = self.buf.get(self.pos..end).ok_or(truncated)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, PacketError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, PacketError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, PacketError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn cookie(&mut self) -> Result<Cookie, PacketError> {
        Ok(Cookie {
            issued_us: self.u64()?,
            tag: self.take()?,
        })
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn finish(&self) -> Result<(), PacketError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(PacketError::TrailingBytes { extra }),
        }
    }
}

/// Writes the checksum of a datagram whose header is in place (what `emit` does last):
/// for tests and fuzzers that build or mutate datagrams by hand. Datagrams shorter than
/// the header are left alone.
pub fn seal_checksum(datagram: &mut [u8]) {
    if datagram.len() < HEADER_LEN {
        return;
    }
    let crc = checksum(datagram);
    datagram[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// CRC-32 of `datagram` with the checksum field treated as zero.
fn checksum(datagram: &[u8]) -> u32 {
    let mut h = rpc_core::frame::crc32_hasher();
    h.update(datagram.get(..CRC_OFFSET).unwrap_or(datagram));
    h.update(&[0u8; 4]);
    h.update(datagram.get(CRC_OFFSET + 4..).unwrap_or(&[]));
    h.finalize()
}

impl Packet {
    /// The type this packet's body encodes as.
    pub fn packet_type(&self) -> PacketType {
        match self.body {
            Body::Init { .. } => PacketType::Init,
            Body::Accept { .. } => PacketType::Accept,
            Body::Data { .. } => PacketType::Data,
            Body::Ack => PacketType::Ack,
            Body::Ping => PacketType::Ping,
            Body::Close { .. } => PacketType::Close,
            Body::Reset => PacketType::Reset,
            Body::Retry { .. } => PacketType::Retry,
            Body::Hello { .. } => PacketType::Hello,
            Body::Welcome { .. } => PacketType::Welcome,
        }
    }

    /// Parses and validates one datagram (CRC first, then everything else). Data payloads are zero-copy slices of `datagram`.
    ///
    /// The only check made before the CRC is that the datagram holds a whole header.
    pub fn parse(datagram: &Bytes) -> Result<Packet, PacketError> {
        let buf: &[u8] = datagram;
        if buf.len() < HEADER_LEN {
            return Err(PacketError::Truncated { len: buf.len() });
        }
        let mut r = Reader::new(buf, CRC_OFFSET);
        let stored = r.u32()?;
        let computed = checksum(buf);
        if stored != computed {
            return Err(PacketError::BadChecksum {
                expected: computed,
                actual: stored,
            });
        }

        let mut r = Reader::new(buf, 0);
        let magic = r.u16()?;
        if magic != MAGIC {
            return Err(PacketError::BadMagic(magic));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(PacketError::UnsupportedVersion(version));
        }
        let type_byte = r.u8()?;
        let ptype = PacketType::from_u8(type_byte).ok_or(PacketError::UnknownType(type_byte))?;
        let _crc = r.u32()?;
        let conn_id = r.u32()?;
        let delay_us = r.u32()?;
        let cumulative = r.u64()?;
        let sack_count = r.u16()?;
        let reserved = r.u16()?;
        if reserved != 0 {
            return Err(PacketError::ReservedNotZero(reserved));
        }
        if usize::from(sack_count) > MAX_SACK_RANGES {
            return Err(PacketError::TooManyRanges(sack_count));
        }

        let mut ranges = SackRanges::new();
        // The lowest seq the next range may start at: cum + 2 for the first, then
        // prev.end + 2 (strictly increasing and non-adjacent). None = nothing fits.
        let mut min_start = cumulative.checked_add(2);
        for _ in 0..sack_count {
            let offset = r.u32()?;
            let len = r.u32()?;
            if offset < 2 || len == 0 {
                return Err(PacketError::BadAckRange);
            }
            let start = cumulative
                .checked_add(u64::from(offset))
                .ok_or(PacketError::BadAckRange)?;
            let end = start
                .checked_add(u64::from(len) - 1)
                .ok_or(PacketError::BadAckRange)?;
            match min_start {
                Some(min) if start >= min => {}
                _ => return Err(PacketError::BadAckRange),
            }
            min_start = end.checked_add(2);
            // Cannot fail: sack_count <= MAX_SACK_RANGES was checked above.
            let _ = ranges.push(SackRange { start, end });
        }
        let ack = AckInfo {
            cumulative,
            delay_us,
            ranges,
        };

        let body = match ptype {
            PacketType::Init => {
                let client_incarnation = r.u64()?;
                let recv_window = r.u32()?;
                let max_datagram = r.u32()?;
                // The cookie is there or not; nothing else may follow.
                let cookie = match r.remaining() {
                    n if n < COOKIE_LEN => None,
                    _ => Some(r.cookie()?),
                };
                r.finish()?;
                Body::Init {
                    client_incarnation,
                    recv_window,
                    max_datagram,
                    cookie,
                }
            }
            PacketType::Retry => {
                let cookie = r.cookie()?;
                r.finish()?;
                Body::Retry { cookie }
            }
            PacketType::Accept => {
                let body = Body::Accept {
                    client_incarnation: r.u64()?,
                    server_incarnation: r.u64()?,
                    recv_window: r.u32()?,
                    max_datagram: r.u32()?,
                };
                r.finish()?;
                body
            }
            PacketType::Data => {
                let seq = r.u64()?;
                let frag_index = r.u32()?;
                let frag_count = r.u32()?;
                let msg_len = r.u32()?;
                if seq == 0
                    || frag_count == 0
                    || frag_index >= frag_count
                    || frag_count > msg_len.max(1)
                {
                    return Err(PacketError::BadFragment);
                }
                let payload_len = r.remaining();
                if payload_len != fragment_range(msg_len, frag_count, frag_index).len() {
                    return Err(PacketError::BadFragment);
                }
                Body::Data {
                    seq,
                    frag_index,
                    frag_count,
                    msg_len,
                    payload: datagram.slice(r.pos..),
                }
            }
            PacketType::Ack => {
                r.finish()?;
                Body::Ack
            }
            PacketType::Ping => {
                r.finish()?;
                Body::Ping
            }
            PacketType::Close => {
                let reason = r.u32()?;
                r.finish()?;
                Body::Close { reason }
            }
            PacketType::Reset => {
                r.finish()?;
                Body::Reset
            }
            PacketType::Hello => {
                let client_incarnation = r.u64()?;
                let recv_window = r.u32()?;
                let max_datagram = r.u32()?;
                let len = usize::from(r.u16()?);
                let reserved = r.u16()?;
                if reserved != 0 {
                    return Err(PacketError::ReservedNotZero(reserved));
                }
                if len == 0 || len > MAX_HANDSHAKE_LEN {
                    return Err(PacketError::BadHandshake);
                }
                if r.remaining() < len {
                    return Err(PacketError::Truncated { len: buf.len() });
                }
                let handshake = datagram.slice(r.pos..r.pos + len);
                r.pos += len;
                // The cookie is there or not; nothing else may follow.
                let cookie = match r.remaining() {
                    n if n < COOKIE_LEN => None,
                    _ => Some(r.cookie()?),
                };
                r.finish()?;
                Body::Hello {
                    client_incarnation,
                    recv_window,
                    max_datagram,
                    handshake,
                    cookie,
                }
            }
            PacketType::Welcome => {
                let len = r.remaining();
                if len == 0 || len > MAX_HANDSHAKE_LEN {
                    return Err(PacketError::BadHandshake);
                }
                Body::Welcome {
                    handshake: datagram.slice(r.pos..),
                }
            }
        };
        Ok(Packet { conn_id, ack, body })
    }

    /// Appends the encoded datagram (CRC filled in) to `out`.
    ///
    /// Emits the fields as they are: ranges that break the rules in the module docs (or
    /// whose offsets do not fit in 32 bits) produce a datagram the peer rejects.
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.emit_gather(out, &[]);
    }

    /// Appends the datagram's first part to `out`; the datagram is that part followed
    /// by `gather` (more Data payload, sent with a vectored `sendmsg`), and the CRC
    /// written into `out` covers all of it.
    pub fn emit_gather(&self, out: &mut Vec<u8>, gather: &[Bytes]) {
        let base = out.len();
        out.reserve(self.encoded_len());
        let ack = &self.ack;
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(VERSION);
        out.push(self.packet_type() as u8);
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&self.conn_id.to_be_bytes());
        out.extend_from_slice(&ack.delay_us.to_be_bytes());
        out.extend_from_slice(&ack.cumulative.to_be_bytes());
        // At most MAX_SACK_RANGES (64), so the cast is lossless.
        out.extend_from_slice(&(ack.ranges.len() as u16).to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        for range in ack.ranges.as_slice() {
            // Truncating casts on purpose: invalid ranges must not panic here.
            let offset = range.start.wrapping_sub(ack.cumulative) as u32;
            let len = range.end.wrapping_sub(range.start).wrapping_add(1) as u32;
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
        match &self.body {
            Body::Init {
                client_incarnation,
                recv_window,
                max_datagram,
                cookie,
            } => {
                out.extend_from_slice(&client_incarnation.to_be_bytes());
                out.extend_from_slice(&recv_window.to_be_bytes());
                out.extend_from_slice(&max_datagram.to_be_bytes());
                if let Some(c) = cookie {
                    out.extend_from_slice(&c.issued_us.to_be_bytes());
                    out.extend_from_slice(&c.tag);
                }
            }
            Body::Retry { cookie } => {
                out.extend_from_slice(&cookie.issued_us.to_be_bytes());
                out.extend_from_slice(&cookie.tag);
            }
            Body::Accept {
                client_incarnation,
                server_incarnation,
                recv_window,
                max_datagram,
            } => {
                out.extend_from_slice(&client_incarnation.to_be_bytes());
                out.extend_from_slice(&server_incarnation.to_be_bytes());
                out.extend_from_slice(&recv_window.to_be_bytes());
                out.extend_from_slice(&max_datagram.to_be_bytes());
            }
            Body::Data {
                seq,
                frag_index,
                frag_count,
                msg_len,
                payload,
            } => {
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&frag_index.to_be_bytes());
                out.extend_from_slice(&frag_count.to_be_bytes());
                out.extend_from_slice(&msg_len.to_be_bytes());
                out.extend_from_slice(payload);
            }
            Body::Ack | Body::Ping | Body::Reset => {}
            Body::Close { reason } => out.extend_from_slice(&reason.to_be_bytes()),
            Body::Hello {
                client_incarnation,
                recv_window,
                max_datagram,
                handshake,
                cookie,
            } => {
                out.extend_from_slice(&client_incarnation.to_be_bytes());
                out.extend_from_slice(&recv_window.to_be_bytes());
                out.extend_from_slice(&max_datagram.to_be_bytes());
                // Truncating cast on purpose: an oversized field makes a datagram the
                // peer rejects, never a panic here.
                out.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
                out.extend_from_slice(&0u16.to_be_bytes());
                out.extend_from_slice(handshake);
                if let Some(c) = cookie {
                    out.extend_from_slice(&c.issued_us.to_be_bytes());
                    out.extend_from_slice(&c.tag);
                }
            }
            Body::Welcome { handshake } => out.extend_from_slice(handshake),
        }
        let crc = if gather.is_empty() {
            checksum(out.get(base..).unwrap_or(&[]))
        } else {
            let head = out.get(base..).unwrap_or(&[]);
            let mut h = rpc_core::frame::crc32_hasher();
            h.update(head.get(..CRC_OFFSET).unwrap_or(head));
            h.update(&[0u8; 4]);
            h.update(head.get(CRC_OFFSET + 4..).unwrap_or(&[]));
            for chunk in gather {
                h.update(chunk);
            }
            h.finalize()
        };
        if let Some(field) = out.get_mut(base + CRC_OFFSET..base + CRC_OFFSET + 4) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
    }

    /// Length of the datagram [`emit`](Self::emit) produces.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.ack.ranges.len() * SACK_RANGE_LEN + self.body.encoded_len()
    }
}

/// The byte range fragment `index` of a `msg_len`-byte message cut into `count` fragments covers:
/// chunk = ceil(msg_len / count) (0 if msg_len == 0); start = min(index*chunk, msg_len); end = min(start+chunk, msg_len).
///
/// A `count` of 0 is treated as 1 (never panics).
pub fn fragment_range(msg_len: u32, count: u32, index: u32) -> Range<usize> {
    let len = u64::from(msg_len);
    let chunk = len.div_ceil(u64::from(count.max(1)));
    // index * chunk <= u32::MAX * u32::MAX fits in a u64.
    let start = (u64::from(index) * chunk).min(len);
    let end = (start + chunk).min(len);
    // Both are <= msg_len, a u32, so they fit in usize on every supported target.
    start as usize..end as usize
}

/// How many fragments a `msg_len`-byte message needs when each carries at most `max_payload` bytes (>= 1; 1 for an empty message).
///
/// A `max_payload` of 0 is treated as 1 (never panics).
pub fn fragment_count(msg_len: u32, max_payload: usize) -> u32 {
    let max = u64::try_from(max_payload).unwrap_or(u64::MAX).max(1);
    let count = u64::from(msg_len).div_ceil(max).max(1);
    // count <= msg_len.max(1), so it fits in a u32.
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Payload bytes a Data datagram can carry within `max_datagram` bytes (header + DATA_SACK_RANGES ranges + data header reserved).
pub fn max_fragment_payload(max_datagram: usize) -> usize {
    max_datagram.saturating_sub(HEADER_LEN + DATA_SACK_RANGES * SACK_RANGE_LEN + DATA_HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ack(cumulative: u64, delay_us: u32, ranges: &[(u64, u64)]) -> AckInfo {
        let mut r = SackRanges::new();
        for &(start, end) in ranges {
            assert!(r.push(SackRange { start, end }));
        }
        AckInfo {
            cumulative,
            delay_us,
            ranges: r,
        }
    }

    fn encode(p: &Packet) -> Vec<u8> {
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(out.len(), p.encoded_len());
        out
    }

    fn parse(bytes: &[u8]) -> Result<Packet, PacketError> {
        Packet::parse(&Bytes::copy_from_slice(bytes))
    }

    /// Rewrites the CRC of a hand-modified datagram so checks after it are reached.
    fn fix_crc(buf: &mut [u8]) {
        let crc = checksum(buf);
        buf[4..8].copy_from_slice(&crc.to_be_bytes());
    }

    fn sample_data() -> Packet {
        Packet {
            conn_id: 7,
            ack: ack(3, 10, &[]),
            body: Body::Data {
                seq: 9,
                frag_index: 0,
                frag_count: 1,
                msg_len: 3,
                payload: Bytes::from_static(b"abc"),
            },
        }
    }

    fn sample_of_each() -> Vec<Packet> {
        let a = ack(100, 250, &[(102, 104), (110, 110)]);
        vec![
            Packet {
                conn_id: 1,
                ack: ack(0, 0, &[]),
                body: Body::Init {
                    client_incarnation: 0x0102_0304_0506_0708,
                    recv_window: 256,
                    max_datagram: 1400,
                    cookie: None,
                },
            },
            Packet {
                conn_id: 1,
                ack: ack(0, 0, &[]),
                body: Body::Init {
                    client_incarnation: 9,
                    recv_window: 256,
                    max_datagram: 1400,
                    cookie: Some(Cookie {
                        issued_us: 0x1122_3344_5566_7788,
                        tag: [7; COOKIE_TAG_LEN],
                    }),
                },
            },
            Packet {
                conn_id: 2,
                ack: a.clone(),
                body: Body::Accept {
                    client_incarnation: 11,
                    server_incarnation: 22,
                    recv_window: 512,
                    max_datagram: 1200,
                },
            },
            Packet {
                conn_id: 3,
                ack: a.clone(),
                body: Body::Data {
                    seq: 5,
                    frag_index: 1,
                    frag_count: 3,
                    msg_len: 10,
                    payload: Bytes::from_static(b"4567"),
                },
            },
            Packet {
                conn_id: 4,
                ack: a.clone(),
                body: Body::Ack,
            },
            Packet {
                conn_id: 5,
                ack: a.clone(),
                body: Body::Ping,
            },
            Packet {
                conn_id: 6,
                ack: a.clone(),
                body: Body::Close { reason: 42 },
            },
            Packet {
                conn_id: 7,
                ack: a,
                body: Body::Reset,
            },
            Packet {
                conn_id: 8,
                ack: ack(0, 0, &[]),
                body: Body::Retry {
                    cookie: Cookie {
                        issued_us: 12_345,
                        tag: [0xA5; COOKIE_TAG_LEN],
                    },
                },
            },
            Packet {
                conn_id: 9,
                ack: ack(0, 0, &[]),
                body: Body::Hello {
                    client_incarnation: 3,
                    recv_window: 64,
                    max_datagram: 1200,
                    handshake: Bytes::from_static(&[1; 97]),
                    cookie: None,
                },
            },
            Packet {
                conn_id: 9,
                ack: ack(0, 0, &[]),
                body: Body::Hello {
                    client_incarnation: 3,
                    recv_window: 64,
                    max_datagram: 1200,
                    handshake: Bytes::from_static(&[2; 40]),
                    cookie: Some(Cookie {
                        issued_us: 1,
                        tag: [7; COOKIE_TAG_LEN],
                    }),
                },
            },
            Packet {
                conn_id: 9,
                ack: ack(0, 0, &[]),
                body: Body::Welcome {
                    handshake: Bytes::from_static(&[3; 72]),
                },
            },
        ]
    }

    #[test]
    fn hello_and_welcome_handshake_fields_are_bounded() {
        let hello = |handshake: Vec<u8>| Packet {
            conn_id: 1,
            ack: ack(0, 0, &[]),
            body: Body::Hello {
                client_incarnation: 1,
                recv_window: 1,
                max_datagram: 1200,
                handshake: Bytes::from(handshake),
                cookie: None,
            },
        };
        assert_eq!(
            parse(&encode(&hello(vec![]))),
            Err(PacketError::BadHandshake)
        );
        let too_long = hello(vec![0; MAX_HANDSHAKE_LEN + 1]);
        assert_eq!(parse(&encode(&too_long)), Err(PacketError::BadHandshake));
        let max = hello(vec![0; MAX_HANDSHAKE_LEN]);
        assert_eq!(parse(&encode(&max)), Ok(max));
        // A declared length beyond the datagram is truncation; a stray tail that is not
        // a whole cookie is malformed.
        let mut short = encode(&hello(vec![5; 10]));
        short.truncate(short.len() - 1);
        fix_crc(&mut short);
        assert!(matches!(parse(&short), Err(PacketError::Truncated { .. })));
        let mut tail = encode(&hello(vec![5; 10]));
        tail.extend_from_slice(&[0; 3]);
        fix_crc(&mut tail);
        assert!(parse(&tail).is_err());
        let welcome = Packet {
            conn_id: 1,
            ack: ack(0, 0, &[]),
            body: Body::Welcome {
                handshake: Bytes::new(),
            },
        };
        assert_eq!(parse(&encode(&welcome)), Err(PacketError::BadHandshake));
    }

    #[test]
    fn round_trip_each_type() {
        let types = [
            PacketType::Init,
            PacketType::Init,
            PacketType::Accept,
            PacketType::Data,
            PacketType::Ack,
            PacketType::Ping,
            PacketType::Close,
            PacketType::Reset,
            PacketType::Retry,
        ];
        for (p, t) in sample_of_each().into_iter().zip(types) {
            assert_eq!(p.packet_type(), t);
            let bytes = encode(&p);
            assert_eq!(bytes[3], t as u8);
            assert_eq!(PacketType::from_u8(t as u8), Some(t));
            let back = parse(&bytes).unwrap();
            assert_eq!(back, p);
            assert_eq!(encode(&back), bytes);
        }
    }

    #[test]
    fn emit_appends_after_existing_bytes() {
        let p = sample_data();
        let mut out = vec![0xAA, 0xBB];
        p.emit(&mut out);
        assert_eq!(&out[..2], &[0xAA, 0xBB]);
        assert_eq!(parse(&out[2..]).unwrap(), p);
    }

    #[test]
    fn data_payload_is_zero_copy() {
        let bytes = Bytes::from(encode(&sample_data()));
        let p = Packet::parse(&bytes).unwrap();
        let Body::Data { payload, .. } = p.body else {
            panic!("not data")
        };
        assert_eq!(&payload[..], b"abc");
        assert_eq!(payload.as_ptr(), bytes[bytes.len() - 3..].as_ptr());
    }

    #[rustfmt::skip]
    const DATA_VECTOR: [u8; 51] = [
        0x52, 0x55, 0x01, 0x03,             // magic, version, type Data
        0x0d, 0x7e, 0x92, 0x25,             // crc32
        0xde, 0xad, 0xbe, 0xef,             // conn_id
        0x00, 0x00, 0x01, 0xf4,             // ack_delay 500 us
        0, 0, 0, 0, 0, 0, 0x01, 0x00,       // cum_ack 256
        0x00, 0x00, 0x00, 0x00,             // sack_count 0, reserved
        0, 0, 0, 0, 0, 0, 0x01, 0x05,       // seq 261
        0x00, 0x00, 0x00, 0x02,             // frag_index 2
        0x00, 0x00, 0x00, 0x03,             // frag_count 3
        0x00, 0x00, 0x00, 0x0b,             // msg_len 11
        b'x', b'y', b'z',                   // payload = bytes 8..11
    ];

    #[test]
    fn data_byte_vector() {
        let expected = Packet {
            conn_id: 0xdead_beef,
            ack: ack(256, 500, &[]),
            body: Body::Data {
                seq: 261,
                frag_index: 2,
                frag_count: 3,
                msg_len: 11,
                payload: Bytes::from_static(b"xyz"),
            },
        };
        assert_eq!(parse(&DATA_VECTOR).unwrap(), expected);
        assert_eq!(encode(&expected), DATA_VECTOR);
    }

    #[rustfmt::skip]
    const ACK_VECTOR: [u8; 44] = [
        0x52, 0x55, 0x01, 0x04,             // magic, version, type Ack
        0x8a, 0x10, 0x16, 0x4e,             // crc32
        0x00, 0x00, 0x00, 0x2a,             // conn_id 42
        0x00, 0x00, 0x00, 0x00,             // ack_delay 0
        0, 0, 0, 0, 0, 0, 0x00, 0x0a,       // cum_ack 10
        0x00, 0x02, 0x00, 0x00,             // sack_count 2, reserved
        0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, // 12..=14
        0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, // 17..=17
    ];

    #[test]
    fn ack_with_ranges_byte_vector() {
        let expected = Packet {
            conn_id: 42,
            ack: ack(10, 0, &[(12, 14), (17, 17)]),
            body: Body::Ack,
        };
        assert_eq!(parse(&ACK_VECTOR).unwrap(), expected);
        assert_eq!(encode(&expected), ACK_VECTOR);
    }

    #[test]
    fn crc_is_ieee_crc32_with_field_zeroed() {
        let mut zeroed = ACK_VECTOR;
        zeroed[4..8].fill(0);
        assert_eq!(
            crc32fast::hash(&zeroed).to_be_bytes(),
            [0x8a, 0x10, 0x16, 0x4e]
        );
    }

    #[test]
    fn error_truncated_header() {
        let bytes = encode(&sample_data());
        for len in 0..HEADER_LEN {
            assert_eq!(parse(&bytes[..len]), Err(PacketError::Truncated { len }));
        }
    }

    #[test]
    fn error_truncated_body() {
        let init = &sample_of_each()[0];
        let mut bytes = encode(init);
        bytes.truncate(bytes.len() - 1);
        fix_crc(&mut bytes);
        let len = bytes.len();
        assert_eq!(parse(&bytes), Err(PacketError::Truncated { len }));
        // A sack range cut short.
        let mut bytes = ACK_VECTOR[..40].to_vec();
        fix_crc(&mut bytes);
        assert_eq!(parse(&bytes), Err(PacketError::Truncated { len: 40 }));
    }

    #[test]
    fn error_bad_magic() {
        let mut bytes = ACK_VECTOR;
        bytes[0] = 0x12;
        fix_crc(&mut bytes);
        assert_eq!(parse(&bytes), Err(PacketError::BadMagic(0x1255)));
    }

    #[test]
    fn error_unsupported_version() {
        let mut bytes = ACK_VECTOR;
        bytes[2] = 2;
        fix_crc(&mut bytes);
        assert_eq!(parse(&bytes), Err(PacketError::UnsupportedVersion(2)));
    }

    #[test]
    fn error_unknown_type() {
        // 11 is a sealed datagram: not a Packet (see `seal`).
        for t in [0u8, 11, 12, 255] {
            let mut bytes = ACK_VECTOR;
            bytes[3] = t;
            fix_crc(&mut bytes);
            assert_eq!(parse(&bytes), Err(PacketError::UnknownType(t)));
        }
    }

    #[test]
    fn error_bad_checksum() {
        let mut bytes = ACK_VECTOR;
        bytes[7] ^= 1;
        assert_eq!(
            parse(&bytes),
            Err(PacketError::BadChecksum {
                expected: 0x8a10_164e,
                actual: 0x8a10_164f
            })
        );
        // Checked before the magic.
        let mut bytes = ACK_VECTOR;
        bytes[0] = 0;
        assert!(matches!(
            parse(&bytes),
            Err(PacketError::BadChecksum { .. })
        ));
    }

    #[test]
    fn error_reserved_not_zero() {
        let mut bytes = ACK_VECTOR;
        bytes[27] = 1;
        fix_crc(&mut bytes);
        assert_eq!(parse(&bytes), Err(PacketError::ReservedNotZero(1)));
    }

    #[test]
    fn error_too_many_ranges() {
        let mut bytes = ACK_VECTOR;
        bytes[24..26].copy_from_slice(&65u16.to_be_bytes());
        fix_crc(&mut bytes);
        assert_eq!(parse(&bytes), Err(PacketError::TooManyRanges(65)));
    }

    #[test]
    fn max_ranges_accepted() {
        let ranges: Vec<(u64, u64)> = (0..MAX_SACK_RANGES as u64)
            .map(|i| (2 + 3 * i, 3 + 3 * i))
            .collect();
        let p = Packet {
            conn_id: 1,
            ack: ack(0, 0, &ranges),
            body: Body::Ping,
        };
        assert_eq!(parse(&encode(&p)).unwrap(), p);
    }

    /// An Ack datagram with cum_ack 10 and the given raw (offset, len) pairs.
    fn raw_ranges(cum: u64, pairs: &[(u32, u32)]) -> Vec<u8> {
        let mut bytes = ACK_VECTOR[..HEADER_LEN].to_vec();
        bytes[16..24].copy_from_slice(&cum.to_be_bytes());
        bytes[24..26].copy_from_slice(&(pairs.len() as u16).to_be_bytes());
        for &(o, l) in pairs {
            bytes.extend_from_slice(&o.to_be_bytes());
            bytes.extend_from_slice(&l.to_be_bytes());
        }
        fix_crc(&mut bytes);
        bytes
    }

    #[test]
    fn error_bad_ack_range() {
        assert!(parse(&raw_ranges(10, &[(2, 1), (4, 1)])).is_ok());
        let bad: &[&[(u32, u32)]] = &[
            &[(1, 1)],         // starts at cum+1
            &[(0, 1)],         // starts at cum
            &[(2, 0)],         // empty
            &[(2, 2), (4, 1)], // adjacent (12..=13, 14)
            &[(5, 1), (3, 1)], // decreasing
            &[(2, 5), (4, 1)], // overlapping
            &[(3, 1), (3, 1)], // repeated
        ];
        for pairs in bad {
            assert_eq!(
                parse(&raw_ranges(10, pairs)),
                Err(PacketError::BadAckRange),
                "{pairs:?}"
            );
        }
        // Overflow of the absolute seqs.
        assert_eq!(
            parse(&raw_ranges(u64::MAX - 2, &[(2, 2)])),
            Err(PacketError::BadAckRange)
        );
        assert_eq!(
            parse(&raw_ranges(u64::MAX - 3, &[(2, 2), (5, 1)])),
            Err(PacketError::BadAckRange)
        );
        assert!(parse(&raw_ranges(u64::MAX - 3, &[(2, 2)])).is_ok());
    }

    fn data_raw(seq: u64, index: u32, count: u32, msg_len: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = DATA_VECTOR[..HEADER_LEN].to_vec();
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&index.to_be_bytes());
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&msg_len.to_be_bytes());
        bytes.extend_from_slice(payload);
        fix_crc(&mut bytes);
        bytes
    }

    #[test]
    fn error_bad_fragment() {
        assert!(parse(&data_raw(1, 0, 2, 3, b"ab")).is_ok());
        assert!(parse(&data_raw(1, 1, 2, 3, b"c")).is_ok());
        assert!(parse(&data_raw(1, 0, 1, 0, b"")).is_ok());
        let bad: &[(u64, u32, u32, u32, &[u8])] = &[
            (0, 0, 1, 1, b"a"),  // seq 0
            (1, 0, 0, 1, b"a"),  // no fragments
            (1, 2, 2, 3, b""),   // index == count
            (1, 0, 4, 3, b"a"),  // more fragments than bytes
            (1, 0, 2, 0, b""),   // empty message in two fragments
            (1, 0, 2, 3, b"a"),  // payload too short
            (1, 1, 2, 3, b"cd"), // payload too long
            (1, 0, 1, 0, b"x"),  // payload for an empty message
        ];
        for &(seq, i, c, l, p) in bad {
            assert_eq!(
                parse(&data_raw(seq, i, c, l, p)),
                Err(PacketError::BadFragment),
                "{seq} {i} {c} {l} {p:?}"
            );
        }
        // A data header cut short is Truncated, not BadFragment.
        let mut bytes = data_raw(1, 0, 1, 0, b"");
        bytes.truncate(bytes.len() - 1);
        fix_crc(&mut bytes);
        assert_eq!(
            parse(&bytes),
            Err(PacketError::Truncated { len: bytes.len() })
        );
    }

    #[test]
    fn error_trailing_bytes() {
        for p in sample_of_each() {
            // Their last field runs to the end of the datagram.
            if matches!(p.packet_type(), PacketType::Data | PacketType::Welcome) {
                continue;
            }
            let mut bytes = encode(&p);
            bytes.extend_from_slice(&[0, 0, 0]);
            fix_crc(&mut bytes);
            assert_eq!(
                parse(&bytes),
                Err(PacketError::TrailingBytes { extra: 3 }),
                "{:?}",
                p.packet_type()
            );
        }
    }

    #[test]
    fn sack_ranges_container() {
        let mut r = SackRanges::default();
        assert!(r.is_empty());
        for i in 0..MAX_SACK_RANGES as u64 {
            assert!(r.push(SackRange { start: i, end: i }));
        }
        assert!(!r.push(SackRange { start: 99, end: 99 }));
        assert_eq!(r.len(), MAX_SACK_RANGES);
        r.truncate(3);
        assert_eq!(r.as_slice().len(), 3);
        assert_eq!(r.as_slice()[2], SackRange { start: 2, end: 2 });
        r.truncate(10);
        assert_eq!(r.len(), 3);
        // Equality ignores stale slots beyond len.
        let mut other = SackRanges::new();
        for i in 0..3 {
            other.push(SackRange { start: i, end: i });
        }
        assert_eq!(r, other);
        assert_eq!(format!("{r:?}").matches("SackRange").count(), 3);
        r.clear();
        assert!(r.is_empty());
        assert_ne!(r, other);
    }

    #[test]
    fn fragment_range_examples() {
        assert_eq!(fragment_range(10, 3, 0), 0..4);
        assert_eq!(fragment_range(10, 3, 1), 4..8);
        assert_eq!(fragment_range(10, 3, 2), 8..10);
        assert_eq!(fragment_range(10, 3, 3), 10..10);
        assert_eq!(fragment_range(0, 1, 0), 0..0);
        assert_eq!(fragment_range(7, 0, 0), 0..7);
        assert_eq!(
            fragment_range(u32::MAX, u32::MAX, u32::MAX),
            u32::MAX as usize..u32::MAX as usize
        );
        assert_eq!(fragment_count(0, 100), 1);
        assert_eq!(fragment_count(100, 100), 1);
        assert_eq!(fragment_count(101, 100), 2);
        assert_eq!(fragment_count(5, 0), 5);
        assert_eq!(fragment_count(u32::MAX, 1), u32::MAX);
        assert_eq!(max_fragment_payload(1200), 1200 - 112);
        assert_eq!(max_fragment_payload(50), 0);
    }

    #[test]
    fn max_payload_fragment_fits_in_datagram() {
        let max_datagram = 1200;
        let max = max_fragment_payload(max_datagram);
        let ranges: Vec<(u64, u64)> = (0..DATA_SACK_RANGES as u64)
            .map(|i| (2 + 3 * i, 3 + 3 * i))
            .collect();
        let p = Packet {
            conn_id: 1,
            ack: ack(0, 0, &ranges),
            body: Body::Data {
                seq: 1,
                frag_index: 0,
                frag_count: 2,
                msg_len: (2 * max) as u32,
                payload: Bytes::from(vec![1u8; max]),
            },
        };
        assert_eq!(p.encoded_len(), max_datagram);
        assert_eq!(parse(&encode(&p)).unwrap(), p);
    }

    fn arb_ack() -> impl Strategy<Value = AckInfo> {
        (
            0u64..u64::MAX / 2,
            any::<u32>(),
            proptest::collection::vec((2u32..1000, 1u32..1000), 0..=MAX_SACK_RANGES),
        )
            .prop_map(|(cumulative, delay_us, gaps)| {
                let mut ranges = SackRanges::new();
                let mut next = cumulative + 2; // lowest legal start
                for (gap, len) in gaps {
                    let start = next + u64::from(gap) - 2;
                    let end = start + u64::from(len) - 1;
                    ranges.push(SackRange { start, end });
                    next = end + 2;
                }
                AckInfo {
                    cumulative,
                    delay_us,
                    ranges,
                }
            })
    }

    fn arb_data() -> impl Strategy<Value = Body> {
        (0u32..3000, 1usize..1500)
            .prop_flat_map(|(msg_len, max)| {
                let count = fragment_count(msg_len, max);
                (Just(msg_len), Just(count), 0..count, 1u64..=u64::MAX)
            })
            .prop_map(|(msg_len, count, index, seq)| {
                let r = fragment_range(msg_len, count, index);
                let payload: Vec<u8> = r.map(|i| i as u8).collect();
                Body::Data {
                    seq,
                    frag_index: index,
                    frag_count: count,
                    msg_len,
                    payload: Bytes::from(payload),
                }
            })
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                proptest::option::of((any::<u64>(), any::<[u8; COOKIE_TAG_LEN]>()))
            )
                .prop_map(|(c, w, m, k)| Body::Init {
                    client_incarnation: c,
                    recv_window: w,
                    max_datagram: m,
                    cookie: k.map(|(issued_us, tag)| Cookie { issued_us, tag }),
                }),
            (any::<u64>(), any::<[u8; COOKIE_TAG_LEN]>()).prop_map(|(issued_us, tag)| {
                Body::Retry {
                    cookie: Cookie { issued_us, tag },
                }
            }),
            (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(c, s, w, m)| {
                Body::Accept {
                    client_incarnation: c,
                    server_incarnation: s,
                    recv_window: w,
                    max_datagram: m,
                }
            }),
            arb_data(),
            Just(Body::Ack),
            Just(Body::Ping),
            any::<u32>().prop_map(|reason| Body::Close { reason }),
            Just(Body::Reset),
        ]
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        (any::<u32>(), arb_ack(), arb_body()).prop_map(|(conn_id, ack, body)| Packet {
            conn_id,
            ack,
            body,
        })
    }

    proptest! {
        #[test]
        fn prop_round_trip(p in arb_packet()) {
            let bytes = encode(&p);
            let back = parse(&bytes).unwrap();
            prop_assert_eq!(&back, &p);
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn prop_parse_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            fix in any::<bool>(),
        ) {
            let mut bytes = bytes;
            if fix && bytes.len() >= HEADER_LEN {
                // Also get past the CRC so later checks see arbitrary input.
                bytes[0..3].copy_from_slice(&[0x52, 0x55, 1]);
                fix_crc(&mut bytes);
            }
            if let Ok(p) = parse(&bytes) {
                // Whatever parses re-encodes to the same bytes.
                prop_assert_eq!(encode(&p), bytes);
            }
        }

        #[test]
        fn prop_single_byte_corruption_detected(
            p in arb_packet(),
            pos in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            let mut bytes = encode(&p);
            let i = pos.index(bytes.len());
            bytes[i] ^= xor;
            let result = parse(&bytes);
            let is_bad_checksum = matches!(result, Err(PacketError::BadChecksum { .. }));
            prop_assert!(is_bad_checksum, "byte {} ^ {:#x}: {:?}", i, xor, result);
        }

        #[test]
        fn prop_fragments_tile_message(msg_len in 0u32..200_000, max in 1usize..5000) {
            let count = fragment_count(msg_len, max);
            prop_assert!(count >= 1);
            prop_assert!(count <= msg_len.max(1));
            let mut next = 0usize;
            for index in 0..count {
                let r = fragment_range(msg_len, count, index);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.len() <= max);
                if msg_len > 0 {
                    prop_assert!(!r.is_empty());
                }
                next = r.end;
            }
            prop_assert_eq!(next, msg_len as usize);
        }

        #[test]
        fn prop_fragment_range_tiles_for_any_count(msg_len in 0u32..100_000, count in 1u32..1000) {
            let mut next = 0usize;
            for index in 0..count {
                let r = fragment_range(msg_len, count, index);
                prop_assert_eq!(r.start, next);
                next = r.end;
            }
            prop_assert_eq!(next, msg_len as usize);
        }
    }
}
