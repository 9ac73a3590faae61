//! Marshaling cost: arguments → XDR payload → frame (header + CRC), and back, for
//! 32 B, 4 KiB and 64 KiB arguments.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rpc_core::frame::{Frame, FrameHeader, HEADER_LEN};
use rpc_core::xdr::{XdrReader, XdrWriter};

const SIZES: [(&str, usize); 3] = [("32B", 32), ("4KiB", 4096), ("64KiB", 65536)];

fn encode_call(blob: &[u8]) -> (Frame, [u8; HEADER_LEN]) {
    let mut w = XdrWriter::with_capacity(blob.len() + 8);
    w.put_opaque(blob, u32::MAX).unwrap();
    let frame = Frame::new(FrameHeader::call(1, 2, 3, 1, 1), w.into_bytes());
    let header = frame.header_bytes().unwrap();
    (frame, header)
}

fn marshal(c: &mut Criterion) {
    let mut group = c.benchmark_group("marshal");
    for (name, size) in SIZES {
        let blob = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encode", name), &blob, |b, blob| {
            b.iter(|| encode_call(std::hint::black_box(blob)))
        });
        let (frame, header) = encode_call(&blob);
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

criterion_group!(benches, marshal);
criterion_main!(benches);
