//! Byte-layout test vectors written out by hand from RFC 4506's rules and from
//! docs/PROTOCOL.md's frame header layout.
//!
//! Every vector is checked in both directions: the value encodes to exactly these bytes,
//! and these bytes decode to exactly this value (consuming all of them). Frame header CRCs
//! are computed here with `crc32fast` over the bytes written in the test, so the expected
//! bytes never come from `emit()` itself.

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{
    flags, verify_crc, Frame, FrameHeader, FrameKind, Semantics, HEADER_LEN, NO_DEADLINE,
};
use rpc_core::xdr::{self, XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};
use rpc_core::Status;

/// Parses `"00 0a ff"`-style hex (whitespace and `|` separators ignored).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| b.is_ascii_hexdigit())
        .map(|b| (b as char).to_digit(16).unwrap() as u8)
        .collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits in {s:?}");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// Checks `value` <-> `expected` in both directions through the trait impls.
fn vector<T>(value: T, expected: &str)
where
    T: XdrEncode + XdrDecode + PartialEq + Debug,
{
    let expected = hex(expected);
    assert_eq!(
        expected.len() % 4,
        0,
        "vector for {value:?} is not 4-aligned"
    );
    let encoded = xdr::to_bytes(&value).unwrap();
    assert_eq!(&encoded[..], &expected[..], "encoding of {value:?}");
    let decoded: T = xdr::from_bytes(&Bytes::from(expected)).unwrap();
    assert_eq!(decoded, value);
}

/// Like [`vector`] for items written with explicit reader/writer calls (bounds, fixed
/// lengths).
fn vector_with<T, E, D>(value: T, expected: &str, enc: E, dec: D)
where
    T: PartialEq + Debug,
    E: FnOnce(&mut XdrWriter, &T) -> Result<(), XdrError>,
    D: FnOnce(&mut XdrReader<'_>) -> Result<T, XdrError>,
{
    let expected = Bytes::from(hex(expected));
    assert_eq!(
        expected.len() % 4,
        0,
        "vector for {value:?} is not 4-aligned"
    );
    let mut w = XdrWriter::new();
    enc(&mut w, &value).unwrap();
    assert_eq!(w.as_slice(), &expected[..], "encoding of {value:?}");
    let mut r = XdrReader::new(&expected);
    assert_eq!(dec(&mut r).unwrap(), value);
    r.finish().unwrap();
}

// ---------------------------------------------------------------------------------------
// Hand-written types (as generated code writes them).
// ---------------------------------------------------------------------------------------

/// `enum Op { ADD = 1, SUB = 2, NEG = -1 };`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add = 1,
    Sub = 2,
    Neg = -1,
}

impl XdrEncode for Op {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_i32(*self as i32);
        Ok(())
    }
}

impl XdrDecode for Op {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match r.get_i32()? {
            1 => Ok(Op::Add),
            2 => Ok(Op::Sub),
            -1 => Ok(Op::Neg),
            value => Err(XdrError::InvalidEnum { name: "Op", value }),
        }
    }
}

/// `struct Named { string name<8>; Point *centre; Op op; };` with `Point = { int x; int y; }`
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    name: String,
    centre: Option<(i32, i32)>,
    op: Op,
}

impl XdrEncode for Named {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_string(&self.name, 8)?;
        w.put_optional_with(self.centre.as_ref(), |w, p| p.encode(w))?;
        self.op.encode(w)
    }
}

impl XdrDecode for Named {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Named {
            name: r.get_string(8)?,
            centre: r.get_optional_with(<(i32, i32)>::decode)?,
            op: Op::decode(r)?,
        })
    }
}

/// `union Result switch (int status) { case 0: double value; default: string error<>; };`
#[derive(Debug, Clone, PartialEq)]
enum CalcResult {
    Value(f64),
    Error { status: i32, error: String },
}

impl XdrEncode for CalcResult {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        match self {
            CalcResult::Value(v) => {
                w.put_i32(0);
                w.put_f64(*v);
            }
            CalcResult::Error { status, error } => {
                w.put_i32(*status);
                w.put_string(error, u32::MAX)?;
            }
        }
        Ok(())
    }
}

impl XdrDecode for CalcResult {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(match r.get_i32()? {
            0 => CalcResult::Value(r.get_f64()?),
            status => CalcResult::Error {
                status,
                error: r.get_string(u32::MAX)?,
            },
        })
    }
}

// ---------------------------------------------------------------------------------------
// XDR vectors (RFC 4506 section numbers in the names).
// ---------------------------------------------------------------------------------------

#[test]
fn v01_int_4_1() {
    vector(0i32, "00 00 00 00");
    vector(1i32, "00 00 00 01");
    vector(-1i32, "ff ff ff ff");
    vector(0x1234_5678i32, "12 34 56 78");
    vector(i32::MIN, "80 00 00 00");
    vector(i32::MAX, "7f ff ff ff");
}

#[test]
fn v02_unsigned_int_4_2() {
    vector(0xdead_beefu32, "de ad be ef");
    vector(u32::MAX, "ff ff ff ff");
    vector(7u32, "00 00 00 07");
}

#[test]
fn v03_enum_4_3() {
    vector(Op::Add, "00 00 00 01");
    vector(Op::Sub, "00 00 00 02");
    vector(Op::Neg, "ff ff ff ff");
}

#[test]
fn v04_bool_4_4() {
    vector(false, "00 00 00 00");
    vector(true, "00 00 00 01");
}

#[test]
fn v05_hyper_4_5() {
    vector(-2i64, "ff ff ff ff ff ff ff fe");
    vector(0x0102_0304_0506_0708i64, "01 02 03 04 05 06 07 08");
    vector(i64::MIN, "80 00 00 00 00 00 00 00");
    vector(u64::MAX, "ff ff ff ff ff ff ff ff");
    vector(0x8000_0000_0000_0001u64, "80 00 00 00 00 00 00 01");
}

#[test]
fn v06_float_4_6() {
    vector(1.0f32, "3f 80 00 00");
    vector(-2.5f32, "c0 20 00 00");
    vector(0.0f32, "00 00 00 00");
    vector(f32::INFINITY, "7f 80 00 00");
    // -0.0 == 0.0 for PartialEq, so check the bits of the encoding explicitly.
    assert_eq!(
        &xdr::to_bytes(&-0.0f32).unwrap()[..],
        &hex("80 00 00 00")[..]
    );
    // A quiet NaN keeps its exact bit pattern.
    let nan = xdr::from_bytes::<f32>(&Bytes::from(hex("7f c0 00 01"))).unwrap();
    assert_eq!(nan.to_bits(), 0x7fc0_0001);
}

#[test]
fn v07_double_4_7() {
    vector(1.0f64, "3f f0 00 00 00 00 00 00");
    vector(-2.0f64, "c0 00 00 00 00 00 00 00");
    vector(0.1f64, "3f b9 99 99 99 99 99 9a");
    vector(f64::NEG_INFINITY, "ff f0 00 00 00 00 00 00");
    assert_eq!(
        &xdr::to_bytes(&-0.0f64).unwrap()[..],
        &hex("80 00 00 00 00 00 00 00")[..]
    );
}

#[test]
fn v08_fixed_opaque_4_9() {
    // 5 bytes of data, 3 zero pad bytes, no length.
    vector_with(
        [1u8, 2, 3, 4, 5],
        "01 02 03 04 05 00 00 00",
        |w, d| w.put_opaque_fixed(d, 5),
        |r| r.get_opaque_fixed::<5>(),
    );
    // A multiple of 4: no padding.
    vector_with(
        [0xaau8; 4],
        "aa aa aa aa",
        |w, d| w.put_opaque_fixed(d, 4),
        |r| r.get_opaque_fixed::<4>(),
    );
    vector_with(
        [0xffu8],
        "ff 00 00 00",
        |w, d| w.put_opaque_fixed(d, 1),
        |r| r.get_opaque_fixed::<1>(),
    );
}

#[test]
fn v09_variable_opaque_4_10() {
    vector(Bytes::new(), "00 00 00 00");
    vector(
        Bytes::from_static(&[1, 2, 3, 4, 5]),
        "00 00 00 05 01 02 03 04 05 00 00 00",
    );
    vector(Bytes::from_static(&[9, 8, 7, 6]), "00 00 00 04 09 08 07 06");
    vector_with(
        vec![0xde, 0xad],
        "00 00 00 02 de ad 00 00",
        |w, d| w.put_opaque(d, 2),
        |r| r.get_opaque(2).map(|b| b.to_vec()),
    );
}

#[test]
fn v10_string_4_11() {
    vector("abc".to_owned(), "00 00 00 03 61 62 63 00");
    vector(String::new(), "00 00 00 00");
    vector("abcd".to_owned(), "00 00 00 04 61 62 63 64");
    vector("hello".to_owned(), "00 00 00 05 68 65 6c 6c 6f 00 00 00");
    // The length counts UTF-8 bytes: "é" is c3 a9.
    vector("é".to_owned(), "00 00 00 02 c3 a9 00 00");
    // U+1F600 is 4 bytes.
    vector("\u{1F600}".to_owned(), "00 00 00 04 f0 9f 98 80");
    vector_with(
        "sillyprog".to_owned(), // RFC 4506 §7's example
        "00 00 00 09 73 69 6c 6c 79 70 72 6f 67 00 00 00",
        |w, s| w.put_string(s, 255),
        |r| r.get_string(255),
    );
}

#[test]
fn v11_fixed_array_4_12() {
    vector([1i32, -1, 2], "00 00 00 01 ff ff ff ff 00 00 00 02");
    vector(
        ["a".to_owned(), "bcdef".to_owned()],
        "00 00 00 01 61 00 00 00 00 00 00 05 62 63 64 65 66 00 00 00",
    );
    vector_with(
        ["xy".to_owned(), String::new()],
        "00 00 00 02 78 79 00 00 00 00 00 00",
        |w, v| w.put_fixed_array_with(v, 2, |w, s| w.put_string(s, 4)),
        |r| r.get_fixed_array_with::<_, 2>(|r| r.get_string(4)),
    );
}

#[test]
fn v12_variable_array_4_13() {
    vector(Vec::<i32>::new(), "00 00 00 00");
    vector(vec![7i32, 8], "00 00 00 02 00 00 00 07 00 00 00 08");
    vector(
        vec![true, false, true],
        "00 00 00 03 00 00 00 01 00 00 00 00 00 00 00 01",
    );
    vector(
        vec![vec![1i32], vec![], vec![2, 3]],
        "00 00 00 03 \
         00 00 00 01 00 00 00 01 \
         00 00 00 00 \
         00 00 00 02 00 00 00 02 00 00 00 03",
    );
    vector_with(
        vec![5u64],
        "00 00 00 01 00 00 00 00 00 00 00 05",
        |w, v| w.put_var_array(v, 1),
        |r| r.get_var_array(1),
    );
}

#[test]
fn v13_struct_4_14() {
    vector(
        Named {
            name: "pt".to_owned(),
            centre: Some((3, -4)),
            op: Op::Sub,
        },
        "00 00 00 02 70 74 00 00 | 00 00 00 01 00 00 00 03 ff ff ff fc | 00 00 00 02",
    );
}

#[test]
fn v14_union_4_15() {
    vector(
        CalcResult::Value(1.0),
        "00 00 00 00 3f f0 00 00 00 00 00 00",
    );
    // The default arm keeps the discriminant.
    vector(
        CalcResult::Error {
            status: 7,
            error: "div0".to_owned(),
        },
        "00 00 00 07 00 00 00 04 64 69 76 30",
    );
    vector(
        CalcResult::Error {
            status: -1,
            error: "x".to_owned(),
        },
        "ff ff ff ff 00 00 00 01 78 00 00 00",
    );
}

#[test]
fn v15_void_4_16() {
    vector((), "");
}

#[test]
fn v16_optional_4_19() {
    vector(None::<i32>, "00 00 00 00");
    vector(Some(5i32), "00 00 00 01 00 00 00 05");
    vector(Some(None::<u32>), "00 00 00 01 00 00 00 00");
    vector(Some("a".to_owned()), "00 00 00 01 00 00 00 01 61 00 00 00");
    // RFC 4506 §4.19: a linked list is a chain of optionals.
    vector(
        Some((1i32, Some((2i32, None::<()>)))),
        "00 00 00 01 00 00 00 01 00 00 00 01 00 00 00 02 00 00 00 00",
    );
}

#[test]
fn v17_argument_tuple() {
    // add(int a, int b) with (2, 3): the concatenation of the arguments.
    vector((2i32, 3i32), "00 00 00 02 00 00 00 03");
    vector(
        (true, "ab".to_owned(), 9u64),
        "00 00 00 01 00 00 00 02 61 62 00 00 00 00 00 00 00 00 00 09",
    );
}

#[test]
fn v18_status_payloads() {
    vector(
        Status::UnknownInterface { id: 0x2000_0001 },
        "00 00 00 01 20 00 00 01",
    );
    vector(
        Status::VersionMismatch { low: 1, high: 3 },
        "00 00 00 02 00 00 00 01 00 00 00 03",
    );
    vector(
        Status::UnknownProcedure { procedure: 9 },
        "00 00 00 03 00 00 00 09",
    );
    vector(
        Status::BadArguments {
            message: "eof".to_owned(),
        },
        "00 00 00 04 00 00 00 03 65 6f 66 00",
    );
    vector(Status::Overloaded, "00 00 00 05");
    vector(Status::ServerRestarted, "00 00 00 06");
    vector(
        Status::application(-7, "oops"),
        "00 00 00 07 ff ff ff f9 00 00 00 04 6f 6f 70 73",
    );
    vector(Status::DeadlineExceeded, "00 00 00 08");
    vector(Status::Cancelled, "00 00 00 09");
    vector(Status::ShuttingDown, "00 00 00 0a");
    vector(
        Status::Internal {
            message: "panic".to_owned(),
        },
        "00 00 00 0b 00 00 00 05 70 61 6e 69 63 00 00 00",
    );
    vector(
        Status::ProtocolVersion { low: 1, high: 1 },
        "00 00 00 0c 00 00 00 01 00 00 00 01",
    );
    vector(Status::ReplyEvicted, "00 00 00 0d");
}

// ---------------------------------------------------------------------------------------
// Frame header vectors.
// ---------------------------------------------------------------------------------------

/// CRC-32/ISO-HDLC over `parts` concatenated, computed independently of `emit()`.
fn crc_of(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Checks that `header` with `payload` emits exactly `expected_52` followed by the CRC
/// of `expected_52 ++ payload`, and that those bytes parse back to `header`.
fn header_vector(header: FrameHeader, payload: &[u8], expected_52: &str) {
    let mut expected = hex(expected_52);
    assert_eq!(
        expected.len(),
        52,
        "a header vector is 52 bytes before the CRC"
    );
    let crc = crc_of(&[&expected, payload]);
    expected.extend_from_slice(&crc.to_be_bytes());

    let mut out = [0u8; HEADER_LEN];
    header.emit(&[payload], &mut out).unwrap();
    assert_eq!(&out[..], &expected[..], "emitted header of {header:?}");

    // Split payloads hash the same as one contiguous payload.
    let (a, b) = payload.split_at(payload.len() / 2);
    let mut split = [0u8; HEADER_LEN];
    header.emit(&[a, &[], b], &mut split).unwrap();
    assert_eq!(split, out);

    assert_eq!(FrameHeader::parse(&expected, u32::MAX), Ok(header));
    assert_eq!(verify_crc(&out, payload), Ok(()));

    let mut whole = expected.clone();
    whole.extend_from_slice(payload);
    let frame = Frame::parse(&Bytes::from(whole.clone()), u32::MAX).unwrap();
    assert_eq!(frame.header, header);
    assert_eq!(&frame.payload[..], payload);
    assert_eq!(&frame.to_bytes().unwrap()[..], &whole[..]);
}

#[test]
fn crc_is_crc32_iso_hdlc() {
    // The standard check value of CRC-32/ISO-HDLC: the definition PROTOCOL.md gives.
    assert_eq!(crc_of(&[b"123456789"]), 0xcbf4_3926);
    assert_eq!(crc_of(&[b""]), 0);
}

#[test]
fn f01_call_header_with_deadline_and_flags() {
    let mut h = FrameHeader::call(0x1122_3344_5566_7788, 0x99, 0x2000_0001, 2, 7);
    h.set_semantics(Semantics::ExactlyOnce);
    h.flags |= flags::RETRY;
    h.deadline_us = FrameHeader::budget_from(Some(Duration::from_millis(1500)));
    h.aux = 0x42;
    h.payload_len = 4;
    header_vector(
        h,
        &[0, 0, 0, 5],
        "58 52 50 43 | 01 | 01 | 00 0a \
         11 22 33 44 55 66 77 88 \
         00 00 00 00 00 00 00 99 \
         20 00 00 01 | 00 00 00 02 | 00 00 00 07 \
         00 16 e3 60 \
         00 00 00 00 00 00 00 42 \
         00 00 00 04",
    );
}

#[test]
fn f02_reply_header() {
    let mut call = FrameHeader::call(0x1122_3344_5566_7788, 0x99, 0x2000_0001, 2, 7);
    call.set_semantics(Semantics::ExactlyOnce);
    call.flags |= flags::RETRY | flags::ONEWAY;
    call.deadline_us = 12;
    // An answer keeps ids and semantics, drops the other flags and the deadline, and
    // carries the server incarnation in aux.
    let mut h = FrameHeader::answer(&call, FrameKind::Reply, 0xcafe_babe_0000_0001);
    h.payload_len = 4;
    header_vector(
        h,
        &[0, 0, 0, 5],
        "58 52 50 43 01 02 00 02 \
         11 22 33 44 55 66 77 88 \
         00 00 00 00 00 00 00 99 \
         20 00 00 01 00 00 00 02 00 00 00 07 \
         ff ff ff ff \
         ca fe ba be 00 00 00 01 \
         00 00 00 04",
    );
}

#[test]
fn f03_status_header_with_status_payload() {
    let call = FrameHeader::call(1, 2, 3, 4, 5);
    let mut h = FrameHeader::answer(&call, FrameKind::Status, 9);
    let payload = xdr::to_bytes(&Status::VersionMismatch { low: 1, high: 3 }).unwrap();
    assert_eq!(
        &payload[..],
        &hex("00 00 00 02 00 00 00 01 00 00 00 03")[..]
    );
    h.payload_len = payload.len() as u32;
    header_vector(
        h,
        &payload,
        "58 52 50 43 01 03 00 00 \
         00 00 00 00 00 00 00 01 \
         00 00 00 00 00 00 00 02 \
         00 00 00 03 00 00 00 04 00 00 00 05 \
         ff ff ff ff \
         00 00 00 00 00 00 00 09 \
         00 00 00 0c",
    );
}

#[test]
fn f04_cancel_header_no_payload() {
    let mut h = FrameHeader::call(0xffff_ffff_ffff_ffff, 0x8000_0000_0000_0000, 0, 0, 0);
    h.kind = FrameKind::Cancel;
    h.aux = 0x7fff_ffff_ffff_ffff;
    header_vector(
        h,
        &[],
        "58 52 50 43 01 04 00 00 \
         ff ff ff ff ff ff ff ff \
         80 00 00 00 00 00 00 00 \
         00 00 00 00 00 00 00 00 00 00 00 00 \
         ff ff ff ff \
         7f ff ff ff ff ff ff ff \
         00 00 00 00",
    );
    // With no payload the CRC covers exactly the first 52 bytes.
    let mut out = [0u8; HEADER_LEN];
    h.emit(&[], &mut out).unwrap();
    assert_eq!(out[52..], crc_of(&[&out[..52]]).to_be_bytes());
}

#[test]
fn f05_oneway_at_least_once_call() {
    let mut h = FrameHeader::call(0xa, 0xb, 0xc, 0xd, 0xe);
    h.set_semantics(Semantics::AtLeastOnce);
    h.flags |= flags::ONEWAY;
    h.deadline_us = 0;
    h.payload_len = 8;
    assert!(h.is_oneway());
    assert_eq!(h.semantics(), Semantics::AtLeastOnce);
    assert_eq!(h.deadline_budget(), Some(Duration::ZERO));
    header_vector(
        h,
        b"logline\0",
        "58 52 50 43 01 01 00 05 \
         00 00 00 00 00 00 00 0a \
         00 00 00 00 00 00 00 0b \
         00 00 00 0c 00 00 00 0d 00 00 00 0e \
         00 00 00 00 \
         00 00 00 00 00 00 00 00 \
         00 00 00 08",
    );
}

#[test]
fn f06_deadline_budget_encoding() {
    assert_eq!(FrameHeader::budget_from(None), NO_DEADLINE);
    assert_eq!(NO_DEADLINE, 0xffff_ffff);
    assert_eq!(FrameHeader::budget_from(Some(Duration::ZERO)), 0);
    // Sub-microsecond remainders are truncated.
    assert_eq!(
        FrameHeader::budget_from(Some(Duration::from_nanos(1_999))),
        1
    );
    assert_eq!(
        FrameHeader::budget_from(Some(Duration::from_millis(1500))),
        0x0016_e360
    );
    // Saturation: the largest budget is 0xfffffffe, never the "none" value.
    assert_eq!(
        FrameHeader::budget_from(Some(Duration::from_micros(0xffff_fffe))),
        0xffff_fffe
    );
    assert_eq!(
        FrameHeader::budget_from(Some(Duration::from_micros(0xffff_ffff))),
        0xffff_fffe
    );
    assert_eq!(
        FrameHeader::budget_from(Some(Duration::from_secs(3 * 3600))),
        0xffff_fffe
    );
    assert_eq!(FrameHeader::budget_from(Some(Duration::MAX)), 0xffff_fffe);

    let mut h = FrameHeader::call(0, 0, 0, 0, 0);
    assert_eq!(h.deadline_budget(), None);
    h.deadline_us = 250;
    assert_eq!(h.deadline_budget(), Some(Duration::from_micros(250)));
}

// ---------------------------------------------------------------------------------------
// The worked example of docs/PROTOCOL.md.
// ---------------------------------------------------------------------------------------

/// The exact frame docs/PROTOCOL.md shows for `add(2, 3)`.
const ADD_FRAME_HEX: &str = "\
    58 52 50 43 01 01 00 00 01 02 03 04 05 06 07 08 \
    00 00 00 00 00 00 00 01 e7 df f0 cb 00 00 00 01 \
    00 00 00 01 ff ff ff ff 00 00 00 00 00 00 00 00 \
    00 00 00 08 5c 55 e4 d5 00 00 00 02 00 00 00 03";

/// The CRC field of that frame.
const ADD_FRAME_CRC: u32 = 0x5c55_e4d5;

/// The dump format used in docs/PROTOCOL.md: offset, then 16 bytes split 8 + 8.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:04x} ", i * 16));
        for (j, b) in line.iter().enumerate() {
            if j == 8 {
                out.push(' ');
            }
            out.push_str(&format!(" {b:02x}"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn protocol_md_worked_example_add_2_3() {
    // proto/calc.idl's `calc.Calc`, default id (PROTOCOL.md 5.3).
    let header = FrameHeader::call(0x0102_0304_0506_0708, 1, 0xe7df_f0cb, 1, 1);
    assert_eq!(header.semantics(), Semantics::AtMostOnce);
    assert_eq!(header.deadline_us, NO_DEADLINE);
    let payload = xdr::to_bytes(&(2i32, 3i32)).unwrap();
    let frame = Frame::new(header, payload);
    let bytes = frame.to_bytes().unwrap();

    // The CRC, independently: bytes 0..52, then the payload.
    assert_eq!(crc_of(&[&bytes[..52], &bytes[56..]]), ADD_FRAME_CRC);
    assert_eq!(&bytes[52..56], &ADD_FRAME_CRC.to_be_bytes()[..]);
    assert_eq!(&bytes[..], &hex(ADD_FRAME_HEX)[..]);

    // The document shows exactly this dump and this CRC.
    let doc = include_str!("../../docs/PROTOCOL.md");
    let dump = hex_dump(&bytes);
    assert!(
        doc.contains(&dump),
        "docs/PROTOCOL.md does not contain the dump:\n{dump}"
    );
    let crc_text = format!("0x{ADD_FRAME_CRC:08x}");
    assert!(
        doc.contains(&crc_text),
        "docs/PROTOCOL.md does not name the CRC {crc_text}"
    );
}

/// docs/PROTOCOL.md section 10: every constant row matches the code, and every constant
/// the code holds is documented.
#[test]
fn protocol_md_constants_are_the_code_s() {
    use rpc_core::frame::{
        flags, DEFAULT_MAX_PAYLOAD, HEADER_LEN, MAGIC, NO_DEADLINE, PROTOCOL_VERSION,
    };
    let doc = include_str!("../../docs/PROTOCOL.md");
    let section = doc
        .split("\n## 10. Constants\n")
        .nth(1)
        .expect("PROTOCOL.md has section 10");
    let code: &[(&str, u64)] = &[
        ("rpc_core::frame::MAGIC", MAGIC.into()),
        ("rpc_core::frame::PROTOCOL_VERSION", PROTOCOL_VERSION.into()),
        ("rpc_core::frame::HEADER_LEN", HEADER_LEN as u64),
        ("rpc_core::frame::NO_DEADLINE", NO_DEADLINE.into()),
        (
            "rpc_core::frame::DEFAULT_MAX_PAYLOAD",
            DEFAULT_MAX_PAYLOAD.into(),
        ),
        (
            "rpc_core::frame::flags::SEMANTICS_MASK",
            flags::SEMANTICS_MASK.into(),
        ),
        ("rpc_core::frame::flags::ONEWAY", flags::ONEWAY.into()),
        ("rpc_core::frame::flags::RETRY", flags::RETRY.into()),
        (
            "rpc_core::frame::flags::CREDENTIALS",
            flags::CREDENTIALS.into(),
        ),
        (
            "rpc_core::frame::MAX_CREDENTIALS",
            rpc_core::frame::MAX_CREDENTIALS.into(),
        ),
        ("rpc_core::frame::flags::RESERVED", flags::RESERVED.into()),
        (
            "rpc_core::error::MAX_STATUS_MESSAGE",
            rpc_core::error::MAX_STATUS_MESSAGE.into(),
        ),
        (
            "rpc_core::Status::Unauthenticated",
            u64::from(status_code(&Status::unauthenticated(""))),
        ),
    ];
    let mut seen = 0;
    for row in section
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("`rpc_core::"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let value = cells[2].trim_matches('`');
        let path = cells[3].trim_matches('`');
        let documented = match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .unwrap_or_else(|e| panic!("{row}: {e}"));
        let (_, actual) = code
            .iter()
            .find(|(p, _)| *p == path)
            .unwrap_or_else(|| panic!("{row}: no such constant known to the test"));
        assert_eq!(documented, *actual, "{row}");
        seen += 1;
    }
    assert_eq!(seen, code.len(), "every constant is documented once");
    // Nothing above code 13 decodes.
    let mut w = rpc_core::xdr::XdrWriter::new();
    w.put_u32(14);
    assert!(rpc_core::xdr::from_bytes::<Status>(&w.into_bytes()).is_err());
}

/// The Status code a value encodes with.
fn status_code(status: &Status) -> u32 {
    let bytes = rpc_core::xdr::to_bytes(status).unwrap();
    u32::from_be_bytes(bytes[..4].try_into().unwrap())
}
