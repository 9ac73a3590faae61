//! The fixed 56-byte frame header that precedes every message, on every transport.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +---------------+---------------+---------------+---------------+
//! |                     magic  0x58 52 50 43 ("XRPC")             |  0
//! +---------------+---------------+-------------------------------+
//! |   version=1   |     kind      |             flags             |  4
//! +---------------+---------------+-------------------------------+
//! |                          client id (u64)                      |  8
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                           call id (u64)                       | 16
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                        interface id (u32)                     | 24
//! +---------------------------------------------------------------+
//! |                     interface version (u32)                   | 28
//! +---------------------------------------------------------------+
//! |                        procedure (u32)                        | 32
//! +---------------------------------------------------------------+
//! |              deadline budget, microseconds (u32)              | 36
//! +---------------------------------------------------------------+
//! |   aux (u64): Call/Cancel = lowest call id still awaited;      | 40
//! |              Reply/Status = server incarnation                |
//! +---------------------------------------------------------------+
//! |                      payload length (u32)                     | 48
//! +---------------------------------------------------------------+
//! |          CRC-32 (IEEE) of bytes 0..52 then the payload        | 52
//! +---------------------------------------------------------------+
//! ```
//!
//! All fields are big-endian. `docs/PROTOCOL.md` is the normative description, including
//! what a receiver does with each bad value; [`FrameHeader::parse`] implements those rules.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 56;
/// The first four bytes of every frame: `XRPC`.
pub const MAGIC: u32 = 0x5852_5043;
/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Deadline budget value meaning "no deadline".
pub const NO_DEADLINE: u32 = u32::MAX;
/// The default maximum payload size a receiver accepts: 16 MiB (PROTOCOL.md section 4).
pub const DEFAULT_MAX_PAYLOAD: u32 = 16 << 20;
/// Bytes covered by the CRC before the payload (everything up to the CRC field).
const CRC_OFFSET: usize = 52;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A request: the payload is the XDR-encoded arguments.
    Call = 1,
    /// A successful result: the payload is the XDR-encoded return value.
    Reply = 2,
    /// A call failed: the payload is an XDR-encoded [`crate::Status`].
    Status = 3,
    /// Best-effort cancellation of an earlier call (same client id and call id); no payload.
    Cancel = 4,
}

impl FrameKind {
    /// Decodes the kind byte.
    pub fn from_u8(v: u8) -> Option<FrameKind> {
        match v {
            1 => Some(FrameKind::Call),
            2 => Some(FrameKind::Reply),
            3 => Some(FrameKind::Status),
            4 => Some(FrameKind::Cancel),
            _ => None,
        }
    }
}

/// The delivery guarantee a call asks for (flags bits 0–1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Semantics {
    /// Never re-sent; the server executes a given (client id, call id) at most once.
    #[default]
    AtMostOnce = 0,
    /// Re-sent until a reply arrives; the server may execute it more than once.
    AtLeastOnce = 1,
    /// Re-sent with the same call id; the server's reply cache executes it once.
    ExactlyOnce = 2,
}

impl Semantics {
    /// Decodes flag bits 0–1 (3 is invalid).
    pub fn from_bits(v: u16) -> Option<Semantics> {
        match v & 0b11 {
            0 => Some(Semantics::AtMostOnce),
            1 => Some(Semantics::AtLeastOnce),
            2 => Some(Semantics::ExactlyOnce),
            _ => None,
        }
    }
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Semantics::AtMostOnce => "at-most-once",
            Semantics::AtLeastOnce => "at-least-once",
            Semantics::ExactlyOnce => "exactly-once",
        })
    }
}

/// Header flag bits.
pub mod flags {
    /// Bits 0–1: [`super::Semantics`].
    pub const SEMANTICS_MASK: u16 = 0b0000_0011;
    /// Bit 2: the call expects no reply.
    pub const ONEWAY: u16 = 0b0000_0100;
    /// Bit 3: this call frame is a retransmission of an earlier one (same call id).
    pub const RETRY: u16 = 0b0000_1000;
    /// Bit 4 (Call frames only): the payload starts with the caller's credentials, an
    /// XDR `opaque<MAX_CREDENTIALS>`, before the arguments (see [`super::split_credentials`]).
    pub const CREDENTIALS: u16 = 0b0001_0000;
    /// Bits that must be zero in this protocol version.
    pub const RESERVED: u16 = !(SEMANTICS_MASK | ONEWAY | RETRY | CREDENTIALS);
}

/// Longest credentials block a Call may carry ([`flags::CREDENTIALS`]), in bytes.
pub const MAX_CREDENTIALS: u32 = 4096;

/// Splits a Call payload that carries [`flags::CREDENTIALS`] into the credentials and
/// the arguments, both slices of `payload` (nothing is copied). Fails if the payload
/// does not start with a well-formed XDR `opaque<MAX_CREDENTIALS>` (length, bytes,
/// zero padding).
pub fn split_credentials(payload: &Bytes) -> Result<(Bytes, Bytes), crate::xdr::XdrError> {
    let mut r = crate::xdr::XdrReader::new(payload);
    let credentials = r.get_opaque(MAX_CREDENTIALS)?;
    let consumed = payload.len() - r.remaining();
    Ok((credentials, payload.slice(consumed..)))
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame carries.
    pub kind: FrameKind,
    /// Flag bits (see [`flags`]); reserved bits are always zero in a parsed header.
    pub flags: u16,
    /// The calling client's identity (random per client instance).
    pub client_id: u64,
    /// The call's id, unique per client.
    pub call_id: u64,
    /// The target interface.
    pub interface_id: u32,
    /// The target interface version.
    pub interface_version: u32,
    /// The procedure number within the interface.
    pub procedure: u32,
    /// Remaining time budget in microseconds; [`NO_DEADLINE`] means none.
    pub deadline_us: u32,
    /// Call/Cancel: lowest call id the client still awaits; Reply/Status: server incarnation.
    pub aux: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
}

impl FrameHeader {
    /// A call header with no deadline, at-most-once, and `aux` = 0.
    pub fn call(
        client_id: u64,
        call_id: u64,
        interface_id: u32,
        version: u32,
        procedure: u32,
    ) -> Self {
        FrameHeader {
            kind: FrameKind::Call,
            flags: 0,
            client_id,
            call_id,
            interface_id,
            interface_version: version,
            procedure,
            deadline_us: NO_DEADLINE,
            aux: 0,
            payload_len: 0,
        }
    }

    /// The header of a reply or status answering `call`.
    pub fn answer(call: &FrameHeader, kind: FrameKind, incarnation: u64) -> Self {
        FrameHeader {
            kind,
            flags: call.flags & flags::SEMANTICS_MASK,
            aux: incarnation,
            deadline_us: NO_DEADLINE,
            payload_len: 0,
            ..*call
        }
    }

    /// The call's semantics (flags bits 0–1; always valid in a parsed header).
    pub fn semantics(&self) -> Semantics {
        Semantics::from_bits(self.flags).unwrap_or_default()
    }

    /// Sets the semantics bits.
    pub fn set_semantics(&mut self, s: Semantics) {
        self.flags = (self.flags & !flags::SEMANTICS_MASK) | s as u16;
    }

    /// Whether the ONEWAY flag is set.
    pub fn is_oneway(&self) -> bool {
        self.flags & flags::ONEWAY != 0
    }

    /// The deadline budget as a duration (`None` for no deadline).
    pub fn deadline_budget(&self) -> Option<Duration> {
        (self.deadline_us != NO_DEADLINE).then(|| Duration::from_micros(self.deadline_us as u64))
    }

    /// Encodes a remaining budget: saturates below [`NO_DEADLINE`] (about 71.6 minutes).
    pub fn budget_from(remaining: Option<Duration>) -> u32 {
        match remaining {
            None => NO_DEADLINE,
            Some(d) => u32::try_from(d.as_micros())
                .unwrap_or(NO_DEADLINE - 1)
                .min(NO_DEADLINE - 1),
        }
    }

    /// Writes the header for `payload` (whose chunks are concatenated) into `out`,
    /// filling in the payload length and CRC.
    ///
    /// Fails if the payload is longer than `u32::MAX` bytes.
    pub fn emit(&self, payload: &[&[u8]], out: &mut [u8; HEADER_LEN]) -> Result<(), FrameError> {
        let len: usize = payload.iter().map(|c| c.len()).sum();
        let len = u32::try_from(len).map_err(|_| FrameError::PayloadTooLarge {
            len: len as u64,
            max: u32::MAX,
        })?;
        out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        out[4] = PROTOCOL_VERSION;
        out[5] = self.kind as u8;
        out[6..8].copy_from_slice(&self.flags.to_be_bytes());
        out[8..16].copy_from_slice(&self.client_id.to_be_bytes());
        out[16..24].copy_from_slice(&self.call_id.to_be_bytes());
        out[24..28].copy_from_slice(&self.interface_id.to_be_bytes());
        out[28..32].copy_from_slice(&self.interface_version.to_be_bytes());
        out[32..36].copy_from_slice(&self.procedure.to_be_bytes());
        out[36..40].copy_from_slice(&self.deadline_us.to_be_bytes());
        out[40..48].copy_from_slice(&self.aux.to_be_bytes());
        out[48..52].copy_from_slice(&len.to_be_bytes());
        let mut crc = crc32_hasher();
        crc.update(&out[..CRC_OFFSET]);
        for chunk in payload {
            crc.update(chunk);
        }
        out[52..56].copy_from_slice(&crc.finalize().to_be_bytes());
        Ok(())
    }

    /// Parses and validates a header (everything but the CRC, which needs the payload:
    /// see [`verify_crc`]).
    ///
    /// Checks, in this order: magic, version, kind, flags, payload length against
    /// `max_payload`. The first failing check decides the error.
    pub fn parse(bytes: &[u8], max_payload: u32) -> Result<FrameHeader, FrameError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FrameError::Truncated { len: bytes.len() })?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u32_at(i) as u64) << 32 | u32_at(i + 4) as u64;
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[4] != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion(b[4]));
        }
        let kind = FrameKind::from_u8(b[5]).ok_or(FrameError::UnknownKind(b[5]))?;
        let flags = u16::from_be_bytes([b[6], b[7]]);
        if flags & flags::RESERVED != 0
            || Semantics::from_bits(flags).is_none()
            || (flags & flags::CREDENTIALS != 0 && kind != FrameKind::Call)
        {
            return Err(FrameError::InvalidFlags(flags));
        }
        let payload_len = u32_at(48);
        if payload_len > max_payload {
            return Err(FrameError::PayloadTooLarge {
                len: payload_len as u64,
                max: max_payload,
            });
        }
        Ok(FrameHeader {
            kind,
            flags,
            client_id: u64_at(8),
            call_id: u64_at(16),
            interface_id: u32_at(24),
            interface_version: u32_at(28),
            procedure: u32_at(32),
            deadline_us: u32_at(36),
            aux: u64_at(40),
            payload_len,
        })
    }
}

/// A fresh CRC-32 (IEEE) hasher, as `crc32fast::Hasher::new()` makes, without its CPU
/// feature detection on every call: the detected hasher is made once and copied.
pub fn crc32_hasher() -> crc32fast::Hasher {
    static TEMPLATE: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(crc32fast::Hasher::new).clone()
}

/// Checks the CRC field of `header` (the raw 56 bytes) against the header and payload.
pub fn verify_crc(header: &[u8; HEADER_LEN], payload: &[u8]) -> Result<(), FrameError> {
    let mut crc = crc32_hasher();
    crc.update(&header[..CRC_OFFSET]);
    crc.update(payload);
    let actual = crc.finalize();
    let expected = u32::from_be_bytes([header[52], header[53], header[54], header[55]]);
    if actual != expected {
        return Err(FrameError::BadChecksum { expected, actual });
    }
    Ok(())
}

/// A complete frame: header and payload.
///
/// The payload is `payload` followed by the chunks in `tail`. Received frames are always
/// contiguous (`tail` is empty); a frame built by the shared-descriptor send path
/// ([`crate::xdr::XdrWriter::put_opaque_shared`]) keeps large arguments as references to
/// the caller's buffers in `tail`, and the transport gathers header and chunks with one
/// vectored write instead of copying them into one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header (its `payload_len` is recomputed when the frame is emitted).
    pub header: FrameHeader,
    /// The payload (its first chunk, if `tail` is not empty): XDR arguments, result or
    /// status.
    pub payload: Bytes,
    /// Further payload chunks, sent after `payload`, in order. Empty unless the frame
    /// was built with shared descriptors.
    pub tail: Vec<Bytes>,
}

impl Frame {
    /// A frame with `payload`.
    pub fn new(header: FrameHeader, payload: Bytes) -> Self {
        Frame {
            header,
            payload,
            tail: Vec::new(),
        }
    }

    /// A frame whose payload is the concatenation of `chunks` (nothing is copied).
    pub fn from_chunks(header: FrameHeader, chunks: Vec<Bytes>) -> Self {
        let mut chunks = chunks;
        match chunks.len() {
            0 => Frame::new(header, Bytes::new()),
            1 => Frame::new(header, chunks.pop().unwrap_or_default()),
            _ => {
                let payload = chunks.remove(0);
                Frame {
                    header,
                    payload,
                    tail: chunks,
                }
            }
        }
    }

    /// The payload's length in bytes, all chunks together.
    pub fn payload_len(&self) -> usize {
        self.payload.len() + self.tail.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether the payload is one chunk.
    pub fn is_contiguous(&self) -> bool {
        self.tail.is_empty()
    }

    /// The payload's chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> + '_ {
        std::iter::once(&self.payload).chain(self.tail.iter())
    }

    /// The same frame with a one-chunk payload (copies the chunks if there are several;
    /// free otherwise). For consumers that need the payload as one buffer, such as an
    /// in-process receiver.
    pub fn into_contiguous(self) -> Frame {
        if self.tail.is_empty() {
            return self;
        }
        let mut out = Vec::with_capacity(self.payload_len());
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
        Frame::new(self.header, out.into())
    }

    /// The header bytes for this frame (length and CRC filled in).
    pub fn header_bytes(&self) -> Result<[u8; HEADER_LEN], FrameError> {
        let mut out = [0u8; HEADER_LEN];
        if self.tail.is_empty() {
            self.header.emit(&[&self.payload], &mut out)?;
        } else {
            let chunks: Vec<&[u8]> = self.chunks().map(|c| &c[..]).collect();
            self.header.emit(&chunks, &mut out)?;
        }
        Ok(out)
    }

    /// Header and payload in one contiguous buffer (the copying reference path; transports
    /// normally write the header and payload chunks with one vectored write instead).
    pub fn to_bytes(&self) -> Result<Bytes, FrameError> {
        let header = self.header_bytes()?;
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload_len());
        out.extend_from_slice(&header);
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
        Ok(out.into())
    }

    /// Parses one complete frame from `bytes` (header, payload, CRC), which must hold
    /// exactly one frame.
    pub fn parse(bytes: &Bytes, max_payload: u32) -> Result<Frame, FrameError> {
        let header = FrameHeader::parse(bytes, max_payload)?;
        let total = HEADER_LEN + header.payload_len as usize;
        if bytes.len() < total {
            return Err(FrameError::Truncated { len: bytes.len() });
        }
        if bytes.len() > total {
            return Err(FrameError::TrailingBytes {
                extra: bytes.len() - total,
            });
        }
        let raw: &[u8; HEADER_LEN] = bytes[..HEADER_LEN]
            .try_into()
            .map_err(|_| FrameError::Truncated { len: bytes.len() })?;
        verify_crc(raw, &bytes[HEADER_LEN..])?;
        Ok(Frame::new(header, bytes.slice(HEADER_LEN..)))
    }
}

/// Why a frame was rejected. Every variant is fatal for the frame; on a stream transport
/// it is fatal for the connection (the byte stream cannot be resynchronised).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a header (or than header + payload length) were available.
    #[error("truncated frame: {len} bytes")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// More bytes than header + payload length (datagram transports).
    #[error("{extra} bytes after the frame's payload")]
    TrailingBytes {
        /// Bytes beyond the payload.
        extra: usize,
    },
    /// The first four bytes are not `XRPC`.
    #[error("bad magic {0:#010x} (expected 0x58525043 \"XRPC\")")]
    BadMagic(u32),
    /// The version byte is not one this implementation speaks.
    #[error("unsupported protocol version {0} (this peer speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    /// The kind byte is not a known [`FrameKind`].
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Reserved flag bits are set, or the semantics bits are 3.
    #[error("invalid flags {0:#06x}")]
    InvalidFlags(u16),
    /// The payload length exceeds the receiver's limit.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// The declared length.
        len: u64,
        /// The receiver's limit.
        max: u32,
    },
    /// The CRC field does not match the frame's bytes.
    #[error("checksum mismatch: header says {expected:#010x}, frame hashes to {actual:#010x}")]
    BadChecksum {
        /// The CRC field.
        expected: u32,
        /// The CRC computed over the received bytes.
        actual: u32,
    },
}
