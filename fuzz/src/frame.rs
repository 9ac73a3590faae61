//! The frame header and `Frame` parse: never panics; a header that parses re-emits
//! byte-identical (with the CRC fixed up front so mutations get past it).

use rpc_core::frame::{verify_crc, FrameHeader, HEADER_LEN};

/// The target. The first byte says whether to fix the CRC before parsing (so most
/// inputs reach everything after the CRC check) or to parse as given.
pub fn parse_emit(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= HEADER_LEN {
        let crc = frame_crc(&bytes[..52], &bytes[HEADER_LEN..]);
        bytes[52..56].copy_from_slice(&crc.to_be_bytes());
    }
    let max_payload = if mode & 2 == 2 { u32::MAX } else { 1 << 16 };
    let Ok(header) = FrameHeader::parse(&bytes, max_payload) else {
        return;
    };
    assert!(header.payload_len <= max_payload);
    let raw: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().expect("56 bytes");
    let payload = &bytes[HEADER_LEN..];
    let end = (header.payload_len as usize).min(payload.len());
    let crc_ok = verify_crc(&raw, &payload[..end]).is_ok();
    if crc_ok && end == header.payload_len as usize {
        let mut out = [0u8; HEADER_LEN];
        header.emit(&[&payload[..end]], &mut out).expect("emits");
        assert_eq!(out, raw, "re-emitted header differs");
        // A whole frame through `Frame`: to_bytes gives header and payload back.
        let frame =
            rpc_core::frame::Frame::new(header, bytes::Bytes::copy_from_slice(&payload[..end]));
        let whole = frame.to_bytes().expect("encodes");
        assert_eq!(&whole[..], &bytes[..HEADER_LEN + end]);
    }
}

fn frame_crc(head: &[u8], payload: &[u8]) -> u32 {
    // The frame CRC covers the header before the CRC field, then the payload, as far
    // as the header's length field says (the rest of the input is ignored).
    let len = u32::from_be_bytes([head[48], head[49], head[50], head[51]]) as usize;
    let payload = &payload[..len.min(payload.len())];
    let mut frame = Vec::with_capacity(head.len() + payload.len());
    frame.extend_from_slice(head);
    frame.extend_from_slice(payload);
    crc32(&frame)
}

/// CRC-32 (IEEE), bitwise: the fuzz crate needs no dependency for it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
