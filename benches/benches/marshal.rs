//! Marshaling cost, all in one run:
//!
//! * `marshal/copy` vs `marshal/descriptor`: an `opaque<>` argument of 32 B, 4 KiB,
//!   64 KiB and 1 MiB → XDR payload → frame header with its CRC. The copying path writes
//!   the argument into the message buffer; the shared-descriptor path records a
//!   reference to the caller's `Bytes` (the transport gathers it with `writev`). Both
//!   compute the CRC over the whole payload.
//! * `marshal/decode`: frame parse + CRC check + XDR decode (the opaque is a zero-copy
//!   slice of the receive buffer).
//! * `header/encode`, `header/decode`: the 56-byte header alone (with its CRC).

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rpc_core::frame::{verify_crc, Frame, FrameHeader, HEADER_LEN};
use rpc_core::xdr::{XdrReader, XdrWriter, DEFAULT_SHARE_THRESHOLD};

const SIZES: [(&str, usize); 4] = [
    ("32B", 32),
    ("4KiB", 4096),
    ("64KiB", 65536),
    ("1MiB", 1 << 20),
];

/// Encodes a call with `blob` as its argument; `share` picks the descriptor path.
fn encode_call(blob: &Bytes, share: bool) -> (Frame, [u8; HEADER_LEN]) {
    let threshold = share.then_some(DEFAULT_SHARE_THRESHOLD);
    let mut w = XdrWriter::with_capacity(64).sharing(threshold);
    w.put_opaque_shared(blob, u32::MAX).unwrap();
    let frame = Frame::from_chunks(FrameHeader::call(1, 2, 3, 1, 1), w.finish());
    let header = frame.header_bytes().unwrap();
    (frame, header)
}

fn marshal(c: &mut Criterion) {
    let mut group = c.benchmark_group("marshal");
    for (name, size) in SIZES {
        let blob = Bytes::from(vec![0xa5u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("copy", name), &blob, |b, blob| {
            b.iter(|| encode_call(std::hint::black_box(blob), false))
        });
        group.bench_with_input(BenchmarkId::new("descriptor", name), &blob, |b, blob| {
            b.iter(|| encode_call(std::hint::black_box(blob), true))
        });
        let (frame, header) = encode_call(&blob, false);
        let wire: Bytes = [&header[..], &frame.payload[..]].concat().into();
        group.bench_with_input(BenchmarkId::new("decode", name), &wire, |b, wire| {
            b.iter(|| {
                let frame = Frame::parse(std::hint::black_box(wire), u32::MAX).unwrap();
                let mut r = XdrReader::new(&frame.payload);
                let blob = r.get_opaque(u32::MAX).unwrap();
                r.finish().unwrap();
                blob
            })
        });
    }
    group.finish();
}

fn header(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    let header = FrameHeader::call(0x0123_4567_89ab_cdef, 42, 0x2000_0001, 1, 7);
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut out = [0u8; HEADER_LEN];
            std::hint::black_box(&header).emit(&[], &mut out).unwrap();
            out
        })
    });
    let mut bytes = [0u8; HEADER_LEN];
    header.emit(&[], &mut bytes).unwrap();
    group.bench_function("decode", |b| {
        b.iter(|| {
            let raw = std::hint::black_box(&bytes);
            let h = FrameHeader::parse(raw, u32::MAX).unwrap();
            verify_crc(raw, &[]).unwrap();
            h
        })
    });
    group.finish();
}

criterion_group!(benches, marshal, header);
criterion_main!(benches);
