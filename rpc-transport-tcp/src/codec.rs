//! Splitting a TCP byte stream into [`Frame`]s.
//!
//! [`FrameDecoder`] follows the shape of tokio-util's `Decoder` (without depending on
//! it): it is fed the connection's read buffer, returns `Ok(None)` while a frame is
//! incomplete, and takes a complete frame off the front of the buffer. The header is
//! validated as soon as its 56 bytes are in, so a peer announcing an oversized payload
//! is rejected before a single byte is reserved for it.
//!
//! A payload's room is reserved as its bytes arrive, not when its header announces it:
//! each step reserves at most as much as has already arrived of the frame (at least
//! [`RESERVE_STEP`]), so a peer that announces 16 MiB and sends one byte holds 64 KiB,
//! and the buffer of a frame that does arrive grows by doubling (at most twice what was
//! received).

use bytes::{Buf, Bytes, BytesMut};
use rpc_core::frame::{verify_crc, Frame, FrameError, FrameHeader, HEADER_LEN, MAGIC};

/// The least room reserved at a time for a payload still arriving (64 KiB).
pub const RESERVE_STEP: usize = 64 << 10;

/// Decodes frames from a stream's read buffer.
///
/// Every error is fatal for the connection: a byte stream cannot be resynchronised after
/// a bad frame, so callers stop decoding (and close the connection) after the first one.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_payload: u32,
    /// The validated header of the frame at the front of the buffer, once its 56 bytes
    /// have arrived; kept so the header is parsed once however many reads the payload
    /// takes. The raw header bytes stay in the buffer until the frame is complete.
    pending: Option<FrameHeader>,
}

impl FrameDecoder {
    /// A decoder that rejects payloads longer than `max_payload` bytes.
    pub fn new(max_payload: u32) -> Self {
        FrameDecoder {
            max_payload,
            pending: None,
        }
    }

    /// The payload limit.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Takes the next complete frame off the front of `buf`.
    ///
    /// * `Ok(None)`: more bytes are needed. `buf` has then been given room for more of
    ///   the current frame: its header, or once the header is in, the rest of the frame
    ///   but never more than what has arrived of it so far (at least [`RESERVE_STEP`]).
    /// * `Ok(Some(frame))`: the frame's bytes have been removed from `buf`; its payload
    ///   is a zero-copy slice of the buffer.
    /// * `Err(_)`: the frame is bad ([`FrameHeader::parse`]'s checks, then the CRC).
    ///   An oversized payload length is reported as soon as the header is in, without
    ///   reserving anything for the payload.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let header = match self.pending {
            Some(header) => header,
            None => {
                if buf.len() < HEADER_LEN {
                    // Reject a peer speaking another protocol (an HTTP request, a TLS
                    // hello) as soon as its first four bytes are in, instead of waiting
                    // for 56 bytes that a short request may never send.
                    if let Some(&[a, b, c, d]) = buf.get(..4) {
                        let magic = u32::from_be_bytes([a, b, c, d]);
                        if magic != MAGIC {
                            return Err(FrameError::BadMagic(magic));
                        }
                    }
                    buf.reserve(HEADER_LEN - buf.len());
                    return Ok(None);
                }
                let header = FrameHeader::parse(&buf[..HEADER_LEN], self.max_payload)?;
                self.pending = Some(header);
                header
            }
        };

        // `payload_len <= max_payload <= u32::MAX`, so this cannot overflow a usize on
        // the 32- and 64-bit targets tokio supports.
        let frame_len = HEADER_LEN + header.payload_len as usize;
        if buf.len() < frame_len {
            let missing = frame_len - buf.len();
            let room = buf.capacity() - buf.len();
            if room < missing {
                buf.reserve(missing.min(buf.len().max(RESERVE_STEP)));
            }
            return Ok(None);
        }

        let raw: &[u8; HEADER_LEN] = buf[..HEADER_LEN]
            .try_into()
            .map_err(|_| FrameError::Truncated { len: buf.len() })?;
        verify_crc(raw, &buf[HEADER_LEN..frame_len])?;

        self.pending = None;
        buf.advance(HEADER_LEN);
        let payload = if header.payload_len == 0 {
            Bytes::new()
        } else {
            buf.split_to(header.payload_len as usize).freeze()
        };
        Ok(Some(Frame::new(header, payload)))
    }

    /// Whether no frame is partly decoded: together with an empty buffer, this is a
    /// frame boundary, where an end of stream is clean.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpc_core::frame::FrameKind;

    fn frame(call_id: u64, payload_len: usize) -> Frame {
        let mut header = FrameHeader::call(7, call_id, 0x2000_0001, 1, 3);
        header.payload_len = payload_len as u32;
        let payload: Vec<u8> = (0..payload_len)
            .map(|i| (i as u64 ^ call_id) as u8)
            .collect();
        Frame::new(header, payload.into())
    }

    fn frames() -> Vec<Frame> {
        let mut reply = frame(4, 3);
        reply.header.kind = FrameKind::Reply;
        reply.header.aux = 99;
        vec![
            frame(1, 0),
            frame(2, 1),
            frame(3, 300),
            reply,
            frame(5, 57),
            frame(6, 0),
        ]
    }

    fn stream(frames: &[Frame]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| f.to_bytes().expect("encodable").to_vec())
            .collect()
    }

    /// Feeds `chunks` one after another, decoding after each, and returns every frame.
    fn decode_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        max_payload: u32,
    ) -> (Vec<Frame>, FrameDecoder, BytesMut) {
        let mut decoder = FrameDecoder::new(max_payload);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = decoder.decode(&mut buf).expect("valid stream") {
                out.push(f);
            }
        }
        (out, decoder, buf)
    }

    #[test]
    fn whole_stream_at_once() {
        let expected = frames();
        let bytes = stream(&expected);
        let (got, decoder, buf) = decode_chunks([&bytes[..]], 1024);
        assert_eq!(got, expected);
        assert!(decoder.is_idle());
        assert!(buf.is_empty());
    }

    #[test]
    fn split_at_every_byte_position() {
        let expected = frames();
        let bytes = stream(&expected);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let (got, decoder, buf) = decode_chunks([a, b], 1024);
            assert_eq!(got, expected, "split at {at}");
            assert!(decoder.is_idle() && buf.is_empty(), "split at {at}");
        }
    }

    #[test]
    fn split_at_every_pair_of_positions() {
        let expected = frames();
        let bytes = stream(&expected);
        for i in 0..=bytes.len() {
            for j in (i..=bytes.len()).step_by(7) {
                let (got, _, _) = decode_chunks([&bytes[..i], &bytes[i..j], &bytes[j..]], 1024);
                assert_eq!(got, expected, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let expected = frames();
        let bytes = stream(&expected);
        let (got, decoder, buf) = decode_chunks(bytes.chunks(1), 1024);
        assert_eq!(got, expected);
        assert!(decoder.is_idle() && buf.is_empty());
    }

    #[test]
    fn announced_payload_is_not_reserved_before_it_arrives() {
        let bytes = stream(&[frame(1, 4 << 20)]);
        let mut decoder = FrameDecoder::new(16 << 20);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&bytes[..HEADER_LEN + 1]);
        assert!(decoder.decode(&mut buf).expect("a valid header").is_none());
        assert!(buf.capacity() <= 2 * RESERVE_STEP, "{}", buf.capacity());
        // As bytes arrive the room grows with them: never more than twice the received.
        let mut at = HEADER_LEN + 1;
        let frame = loop {
            let room = (buf.capacity() - buf.len()).max(1);
            let end = (at + room).min(bytes.len());
            buf.extend_from_slice(&bytes[at..end]);
            at = end;
            match decoder.decode(&mut buf).expect("valid") {
                Some(frame) => break frame,
                None => assert!(
                    buf.capacity() <= 2 * buf.len() + RESERVE_STEP,
                    "{} for {}",
                    buf.capacity(),
                    buf.len()
                ),
            }
        };
        assert_eq!(frame.payload.len(), 4 << 20);
    }

    #[test]
    fn partial_frame_is_not_idle() {
        let bytes = stream(&[frame(1, 10)]);
        let (got, decoder, buf) = decode_chunks([&bytes[..HEADER_LEN + 3]], 1024);
        assert!(got.is_empty());
        assert!(!decoder.is_idle());
        assert_eq!(buf.len(), HEADER_LEN + 3);
        let (_, decoder, buf) = decode_chunks([&bytes[..5]], 1024);
        assert!(decoder.is_idle() && !buf.is_empty());
    }

    #[test]
    fn reserves_room_for_the_rest_of_a_small_frame() {
        let bytes = stream(&[frame(1, 40_000)]);
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&bytes[..HEADER_LEN + 10]);
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        // Under one reserve step: the whole rest fits at once.
        assert!(buf.capacity() >= bytes.len());
        let before = buf.capacity();
        buf.extend_from_slice(&bytes[HEADER_LEN + 10..]);
        assert_eq!(
            buf.capacity(),
            before,
            "the rest of the frame fit without growing"
        );
        let f = decoder.decode(&mut buf).unwrap().expect("complete");
        assert_eq!(f.payload.len(), 40_000);
    }

    #[test]
    fn payload_is_a_slice_of_the_read_buffer() {
        let bytes = stream(&[frame(1, 64)]);
        let mut buf = BytesMut::from(&bytes[..]);
        let start = buf.as_ptr() as usize;
        let f = FrameDecoder::new(1024).decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.payload.as_ptr() as usize, start + HEADER_LEN);
    }

    #[test]
    fn oversized_length_fails_before_the_payload_arrives() {
        let big = frame(1, 5000);
        let header = big.header_bytes().unwrap();
        let mut decoder = FrameDecoder::new(4096);
        let mut buf = BytesMut::new();
        // A header that is not yet complete is not judged.
        buf.extend_from_slice(&header[..HEADER_LEN - 1]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&header[HEADER_LEN - 1..]);
        let cap = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::PayloadTooLarge {
                len: 5000,
                max: 4096
            })
        );
        assert_eq!(buf.capacity(), cap, "nothing reserved for the payload");
    }

    #[test]
    fn huge_length_never_allocates() {
        let mut header = frame(1, 0).header_bytes().unwrap();
        header[48..52].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut buf = BytesMut::from(&header[..]);
        let cap = buf.capacity();
        let err = FrameDecoder::new(16 << 20).decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            FrameError::PayloadTooLarge {
                len: u32::MAX as u64,
                max: 16 << 20
            }
        );
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn garbage_is_bad_magic() {
        let request =
            b"GET / HTTP/1.1\r\nHost: example.invalid\r\nAccept: */*\r\nUser-Agent: x\r\n\r\n";
        assert!(request.len() >= HEADER_LEN);
        let mut buf = BytesMut::from(&request[..]);
        let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert_eq!(err, FrameError::BadMagic(u32::from_be_bytes(*b"GET ")));
    }

    #[test]
    fn bad_magic_is_reported_after_four_bytes() {
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        for (i, b) in b"GET ".iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let result = decoder.decode(&mut buf);
            if i < 3 {
                assert_eq!(result, Ok(None));
            } else {
                assert_eq!(
                    result,
                    Err(FrameError::BadMagic(u32::from_be_bytes(*b"GET ")))
                );
            }
        }
    }

    #[test]
    fn other_header_checks_come_from_parse() {
        let good = frame(1, 0).header_bytes().unwrap();
        let mut bad_version = good;
        bad_version[4] = 9;
        let mut bad_kind = good;
        bad_kind[5] = 0;
        let mut bad_flags = good;
        bad_flags[6] = 0x80;
        for (bytes, want) in [
            (bad_version, FrameError::UnsupportedVersion(9)),
            (bad_kind, FrameError::UnknownKind(0)),
            (bad_flags, FrameError::InvalidFlags(0x8000)),
        ] {
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(FrameDecoder::new(1024).decode(&mut buf), Err(want));
        }
    }

    #[test]
    fn corrupted_payload_is_bad_checksum() {
        let mut bytes = stream(&[frame(1, 40)]);
        bytes[HEADER_LEN + 20] ^= 0x01;
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        // Byte at a time: the checksum is only judged once the whole frame is in.
        let (last, rest) = bytes.split_last().unwrap();
        for b in rest {
            buf.extend_from_slice(&[*b]);
            assert_eq!(decoder.decode(&mut buf), Ok(None));
        }
        buf.extend_from_slice(&[*last]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(FrameError::BadChecksum { .. })
        ));
    }

    #[test]
    fn corrupted_header_field_is_bad_checksum() {
        let mut bytes = stream(&[frame(1, 0)]);
        bytes[20] ^= 0x40; // call id: parse accepts any value, the CRC does not
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            FrameDecoder::new(1024).decode(&mut buf),
            Err(FrameError::BadChecksum { .. })
        ));
    }
}
