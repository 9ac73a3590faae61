//! The TCP frame decoder fed a stream split at fuzzer-chosen points: the same frames
//! (and the same first error) as decoding the stream whole.

use bytes::BytesMut;
use rpc_core::frame::{Frame, FrameError};
use rpc_transport_tcp::FrameDecoder;

const MAX_PAYLOAD: u32 = 1 << 16;

/// Decodes everything in `chunks` fed in that order: the frames, then the error that
/// ended the stream (if any).
fn decode(chunks: &[&[u8]]) -> (Vec<Frame>, Option<FrameError>) {
    let mut decoder = FrameDecoder::new(MAX_PAYLOAD);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// The target: the first byte seeds the split points; the rest is the stream.
pub fn split_stream(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = decode(&[stream]);
    let mut chunks = Vec::new();
    let mut rest = stream;
    let mut x = seed as u32 | 1;
    while !rest.is_empty() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((x >> 16) as usize % 64 + 1).min(rest.len());
        let (head, tail) = rest.split_at(n);
        chunks.push(head);
        rest = tail;
    }
    let split = decode(&chunks);
    assert_eq!(whole.0, split.0, "different frames when split");
    // A magic number is rejected after 4 bytes when split, after 56 when whole: both
    // must fail, with the same error kind.
    assert_eq!(
        whole.1.as_ref().map(std::mem::discriminant),
        split.1.as_ref().map(std::mem::discriminant),
        "whole: {:?}, split: {:?}",
        whole.1,
        split.1
    );
}
