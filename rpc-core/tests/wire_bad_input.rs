//! Bad input on the wire: every test feeds a malformed XDR item or frame and asserts the
//! exact error (variant and values). Nothing may panic and nothing may allocate what the
//! input cannot justify.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use rpc_core::frame::{flags, verify_crc, Frame, FrameError, FrameHeader, FrameKind, HEADER_LEN};
use rpc_core::xdr::{self, XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};
use rpc_core::Status;

/// The default maximum payload a receiver accepts (16 MiB).
const MAX_PAYLOAD: u32 = 16 << 20;

fn b(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

/// Decodes `T` from exactly `bytes`.
fn decode<T: XdrDecode>(bytes: &[u8]) -> Result<T, XdrError> {
    xdr::from_bytes(&b(bytes))
}

/// Runs `f` on a reader over `bytes`.
fn read<T>(
    bytes: &[u8],
    f: impl FnOnce(&mut XdrReader<'_>) -> Result<T, XdrError>,
) -> Result<T, XdrError> {
    let bytes = b(bytes);
    let mut r = XdrReader::new(&bytes);
    f(&mut r)
}

// ---------------------------------------------------------------------------------------
// Hand-written types, as generated code writes them.
// ---------------------------------------------------------------------------------------

/// `enum Color { RED = 0, GREEN = 1, BLUE = 2 };`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Color {
    Red = 0,
    Green = 1,
    Blue = 2,
}

impl XdrEncode for Color {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_i32(*self as i32);
        Ok(())
    }
}

impl XdrDecode for Color {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match r.get_i32()? {
            0 => Ok(Color::Red),
            1 => Ok(Color::Green),
            2 => Ok(Color::Blue),
            value => Err(XdrError::InvalidEnum {
                name: "Color",
                value,
            }),
        }
    }
}

/// `union Msg switch (unsigned int kind) { case 1: int n; case 2: string s<8>; };`
/// (no default arm).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    N(i32),
    S(String),
}

impl XdrEncode for Msg {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        match self {
            Msg::N(n) => {
                w.put_u32(1);
                w.put_i32(*n);
            }
            Msg::S(s) => {
                w.put_u32(2);
                w.put_string(s, 8)?;
            }
        }
        Ok(())
    }
}

impl XdrDecode for Msg {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match r.get_u32()? {
            1 => Ok(Msg::N(r.get_i32()?)),
            2 => Ok(Msg::S(r.get_string(8)?)),
            value => Err(XdrError::InvalidDiscriminant {
                name: "Msg",
                value: value as i64,
            }),
        }
    }
}

/// `struct Rec { string name<16>; int vals<>; Color *c; Msg m; opaque tag[3]; hyper h; };`
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    name: String,
    vals: Vec<i32>,
    c: Option<Color>,
    m: Msg,
    tag: [u8; 3],
    h: i64,
}

impl XdrEncode for Rec {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_string(&self.name, 16)?;
        w.put_var_array(&self.vals, u32::MAX)?;
        self.c.encode(w)?;
        self.m.encode(w)?;
        w.put_opaque_fixed(&self.tag, 3)?;
        w.put_i64(self.h);
        Ok(())
    }
}

impl XdrDecode for Rec {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Rec {
            name: r.get_string(16)?,
            vals: r.get_var_array(u32::MAX)?,
            c: Option::<Color>::decode(r)?,
            m: Msg::decode(r)?,
            tag: r.get_opaque_fixed::<3>()?,
            h: r.get_i64()?,
        })
    }
}

fn sample_rec() -> Rec {
    Rec {
        name: "hello".to_owned(),
        vals: vec![1, -2, 3],
        c: Some(Color::Blue),
        m: Msg::S("xyz".to_owned()),
        tag: [7, 8, 9],
        h: -5,
    }
}

// ---------------------------------------------------------------------------------------
// XDR: truncation.
// ---------------------------------------------------------------------------------------

/// A composite of fixed-size items: every cut gives `UnexpectedEof` naming the item it
/// fell in and what was left of it.
#[test]
fn xdr_truncated_fixed_composite_at_every_byte() {
    type T = (i32, u64, Option<u32>, [i32; 2], bool);
    let value: T = (-1, 0x0102_0304_0506_0708, Some(9), [4, 5], true);
    let full = xdr::to_bytes(&value).unwrap();
    // (start, size) of each read in order. The option is a 4-byte flag then 4 bytes; the
    // fixed array is checked as a whole (8 bytes) before its elements are read.
    let reads = [(0, 4), (4, 8), (12, 4), (16, 4), (20, 8), (28, 4)];
    assert_eq!(full.len(), 32);
    for cut in 0..full.len() {
        let (start, size) = *reads.iter().find(|(s, z)| cut < s + z).unwrap();
        assert_eq!(
            decode::<T>(&full[..cut]),
            Err(XdrError::UnexpectedEof {
                needed: size,
                remaining: cut - start
            }),
            "cut at {cut}"
        );
    }
    assert_eq!(decode::<T>(&full), Ok(value));
}

/// A composite with variable-length parts: every cut fails with `UnexpectedEof` (a fixed
/// item or padding cut short) or `LengthExceedsInput` (a length prefix promising more
/// than is left) — never a panic, never success.
#[test]
fn xdr_truncated_variable_composite_at_every_byte() {
    let full = xdr::to_bytes(&sample_rec()).unwrap();
    // name: 4 + 8 (0..12), vals: 4 + 12 (12..28), c: 8 (28..36),
    // m: 4 + 4 + 4 (36..48), tag: 4 (48..52), h: 8 (52..60).
    assert_eq!(full.len(), 60);
    for cut in 0..full.len() {
        let err = decode::<Rec>(&full[..cut]).unwrap_err();
        let expected = match cut {
            // Cut inside a length prefix, a flag, a discriminant or a fixed item.
            0..=3 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: cut,
            },
            // "hello" needs 5 data bytes; with 5..7 left only the padding is short.
            4..=8 => XdrError::LengthExceedsInput {
                len: 5,
                needed: 5,
                remaining: cut - 4,
            },
            9..=11 => XdrError::UnexpectedEof {
                needed: 8,
                remaining: cut - 4,
            },
            12..=15 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: cut - 12,
            },
            16..=27 => XdrError::LengthExceedsInput {
                len: 3,
                needed: 12,
                remaining: cut - 16,
            },
            28..=31 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: cut - 28,
            },
            32..=35 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: cut - 32,
            },
            36..=39 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: cut - 36,
            },
            40..=43 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: cut - 40,
            },
            44..=46 => XdrError::LengthExceedsInput {
                len: 3,
                needed: 3,
                remaining: cut - 44,
            },
            47 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: 3,
            },
            48..=51 => XdrError::UnexpectedEof {
                needed: 4,
                remaining: cut - 48,
            },
            _ => XdrError::UnexpectedEof {
                needed: 8,
                remaining: cut - 52,
            },
        };
        assert_eq!(err, expected, "cut at {cut}");
    }
    assert_eq!(decode::<Rec>(&full), Ok(sample_rec()));
}

#[test]
fn xdr_opaque_missing_padding_is_eof() {
    // Length 1, the data byte, but none of its 3 pad bytes.
    assert_eq!(
        decode::<Bytes>(&[0, 0, 0, 1, 0xaa]),
        Err(XdrError::UnexpectedEof {
            needed: 4,
            remaining: 1
        })
    );
    // Fixed opaque[5] with only the 5 data bytes.
    assert_eq!(
        read(&[1, 2, 3, 4, 5], |r| r.get_opaque_fixed::<5>()),
        Err(XdrError::UnexpectedEof {
            needed: 8,
            remaining: 5
        })
    );
}

/// A fixed length near `usize::MAX` (from the caller, not the input) is an error, not
/// an arithmetic overflow.
#[test]
fn xdr_fixed_opaque_length_near_usize_max() {
    assert_eq!(
        read(&[0; 8], |r| r.get_opaque_fixed_bytes(usize::MAX)),
        Err(XdrError::UnexpectedEof {
            needed: usize::MAX,
            remaining: 8
        })
    );
    assert_eq!(
        read(&[0; 8], |r| r.get_opaque_fixed_bytes(usize::MAX - 2)),
        Err(XdrError::UnexpectedEof {
            needed: usize::MAX,
            remaining: 8
        })
    );
}

#[test]
fn xdr_fixed_array_too_short_is_eof_before_decoding_elements() {
    // [i32; 3] needs 12 bytes; 8 are there.
    assert_eq!(
        decode::<[i32; 3]>(&[0; 8]),
        Err(XdrError::UnexpectedEof {
            needed: 12,
            remaining: 8
        })
    );
    // A huge declared N fails on the size check (4 bytes per element at least), before
    // the element loop. (Zero-sized elements keep the result type itself small.)
    assert_eq!(
        read(&[0; 4], |r| r
            .get_fixed_array_with::<(), 1_000_000_000>(|_| Ok(()))),
        Err(XdrError::UnexpectedEof {
            needed: 4_000_000_000,
            remaining: 4
        })
    );
}

// ---------------------------------------------------------------------------------------
// XDR: lengths.
// ---------------------------------------------------------------------------------------

const HUGE: [u8; 4] = [0xff, 0xff, 0xff, 0xff];

#[test]
fn xdr_huge_opaque_length_exceeds_input() {
    assert_eq!(
        decode::<Bytes>(&HUGE),
        Err(XdrError::LengthExceedsInput {
            len: u32::MAX,
            needed: u32::MAX as u64,
            remaining: 0
        })
    );
    let mut input = HUGE.to_vec();
    input.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(
        decode::<Bytes>(&input),
        Err(XdrError::LengthExceedsInput {
            len: u32::MAX,
            needed: u32::MAX as u64,
            remaining: 4
        })
    );
}

#[test]
fn xdr_huge_string_length_exceeds_bound_or_input() {
    assert_eq!(
        decode::<String>(&HUGE),
        Err(XdrError::LengthExceedsInput {
            len: u32::MAX,
            needed: u32::MAX as u64,
            remaining: 0
        })
    );
    // With a bound, the bound is checked first.
    assert_eq!(
        read(&HUGE, |r| r.get_string(64)),
        Err(XdrError::LengthExceedsBound {
            len: u32::MAX as u64,
            max: 64
        })
    );
}

/// A 4-byte input that claims 2^32 - 1 elements fails on the length check, before any
/// `Vec::with_capacity` (which would abort the process on such a size).
#[test]
fn xdr_huge_array_length_fails_fast_without_allocating() {
    let needed = 4 * u32::MAX as u64;
    let err = XdrError::LengthExceedsInput {
        len: u32::MAX,
        needed,
        remaining: 0,
    };
    assert_eq!(decode::<Vec<i32>>(&HUGE), Err(err.clone()));
    assert_eq!(decode::<Vec<u64>>(&HUGE), Err(err.clone()));
    assert_eq!(decode::<Vec<Vec<i32>>>(&HUGE), Err(err.clone()));
    assert_eq!(decode::<Vec<String>>(&HUGE), Err(err.clone()));
    // Nested: an outer array of 1 whose inner array claims 2^32 - 1.
    assert_eq!(
        decode::<Vec<Vec<i32>>>(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
        Err(err)
    );
    assert_eq!(
        read(&HUGE, |r| r.get_var_array::<i32>(100)),
        Err(XdrError::LengthExceedsBound {
            len: u32::MAX as u64,
            max: 100
        })
    );
}

#[test]
fn xdr_array_length_just_over_input() {
    // 3 ints claimed, 8 bytes left.
    assert_eq!(
        decode::<Vec<i32>>(&[0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2]),
        Err(XdrError::LengthExceedsInput {
            len: 3,
            needed: 12,
            remaining: 8
        })
    );
}

#[test]
fn xdr_bound_exceeded_on_decode() {
    // opaque<4> holding 5 bytes.
    assert_eq!(
        read(&[0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0], |r| r.get_opaque(4)),
        Err(XdrError::LengthExceedsBound { len: 5, max: 4 })
    );
    // string<2> holding "abc".
    assert_eq!(
        read(&[0, 0, 0, 3, b'a', b'b', b'c', 0], |r| r.get_string(2)),
        Err(XdrError::LengthExceedsBound { len: 3, max: 2 })
    );
    // int<1> holding two ints.
    assert_eq!(
        read(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2], |r| r
            .get_var_array::<i32>(1)),
        Err(XdrError::LengthExceedsBound { len: 2, max: 1 })
    );
    // string<0> holding one byte.
    assert_eq!(
        read(&[0, 0, 0, 1, b'a', 0, 0, 0], |r| r.get_string(0)),
        Err(XdrError::LengthExceedsBound { len: 1, max: 0 })
    );
}

#[test]
fn xdr_bound_exceeded_on_encode_leaves_buffer_unchanged() {
    let mut w = XdrWriter::new();
    w.put_u32(0xdead_beef);
    assert_eq!(
        w.put_string("abcd", 3),
        Err(XdrError::LengthExceedsBound { len: 4, max: 3 })
    );
    assert_eq!(
        w.put_opaque(&[0; 9], 8),
        Err(XdrError::LengthExceedsBound { len: 9, max: 8 })
    );
    assert_eq!(
        w.put_var_array(&[1i32, 2, 3], 2),
        Err(XdrError::LengthExceedsBound { len: 3, max: 2 })
    );
    // An element's bound failing inside an array rolls back the whole array.
    assert_eq!(
        w.put_var_array_with(&["ok", "too long"], 5, |w, s| w.put_string(s, 4)),
        Err(XdrError::LengthExceedsBound { len: 8, max: 4 })
    );
    assert_eq!(
        w.put_fixed_array_with(&["ok", "too long"], 2, |w, s| w.put_string(s, 4)),
        Err(XdrError::LengthExceedsBound { len: 8, max: 4 })
    );
    assert_eq!(
        w.put_optional_with(Some(&"toolong"), |w, s| w.put_string(s, 3)),
        Err(XdrError::LengthExceedsBound { len: 7, max: 3 })
    );
    assert_eq!(w.as_slice(), &[0xde, 0xad, 0xbe, 0xef]);
}

#[test]
fn xdr_fixed_length_mismatch_on_encode() {
    let mut w = XdrWriter::new();
    assert_eq!(
        w.put_opaque_fixed(&[1, 2, 3], 4),
        Err(XdrError::FixedLengthMismatch {
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        w.put_opaque_fixed(&[1, 2, 3, 4, 5], 4),
        Err(XdrError::FixedLengthMismatch {
            expected: 4,
            actual: 5
        })
    );
    assert_eq!(
        w.put_fixed_array_with(&[1i32, 2], 3, |w, v| v.encode(w)),
        Err(XdrError::FixedLengthMismatch {
            expected: 3,
            actual: 2
        })
    );
    assert!(w.is_empty());
}

// ---------------------------------------------------------------------------------------
// XDR: bad values.
// ---------------------------------------------------------------------------------------

/// Each of the 1..=3 padding bytes of a variable opaque, made non-zero one at a time.
#[test]
fn xdr_nonzero_padding_variable_opaque() {
    for len in 1..=3usize {
        let pad = xdr::padding(len);
        let good = xdr::to_bytes(&Bytes::from(vec![0x55; len])).unwrap();
        assert_eq!(good.len(), 4 + len + pad);
        for i in 0..pad {
            let mut bad = good.to_vec();
            bad[4 + len + i] = 1;
            assert_eq!(
                decode::<Bytes>(&bad),
                Err(XdrError::NonZeroPadding),
                "len {len} pad byte {i}"
            );
            assert_eq!(
                decode::<String>(&bad),
                Err(XdrError::NonZeroPadding),
                "len {len} pad byte {i}"
            );
        }
    }
}

#[test]
fn xdr_nonzero_padding_fixed_opaque() {
    for (i, pad_byte) in [5usize, 6, 7].into_iter().enumerate() {
        let mut bad = vec![1, 2, 3, 4, 5, 0, 0, 0];
        bad[pad_byte] = 0x80;
        assert_eq!(
            read(&bad, |r| r.get_opaque_fixed::<5>()),
            Err(XdrError::NonZeroPadding),
            "5 bytes, pad byte {i}"
        );
    }
    assert_eq!(
        read(&[9, 0, 0, 1], |r| r.get_opaque_fixed::<1>()),
        Err(XdrError::NonZeroPadding)
    );
    assert_eq!(
        read(&[9, 9, 1, 0], |r| r.get_opaque_fixed_bytes(2)),
        Err(XdrError::NonZeroPadding)
    );
}

#[test]
fn xdr_bool_value_2() {
    assert_eq!(decode::<bool>(&[0, 0, 0, 2]), Err(XdrError::InvalidBool(2)));
}

#[test]
fn xdr_bool_value_all_ones() {
    assert_eq!(
        decode::<bool>(&HUGE),
        Err(XdrError::InvalidBool(0xffff_ffff))
    );
    // A bool whose non-zero byte is not the last one.
    assert_eq!(
        decode::<bool>(&[1, 0, 0, 0]),
        Err(XdrError::InvalidBool(0x0100_0000))
    );
}

#[test]
fn xdr_optional_flag_2() {
    assert_eq!(
        decode::<Option<i32>>(&[0, 0, 0, 2, 0, 0, 0, 7]),
        Err(XdrError::InvalidBool(2))
    );
    assert_eq!(
        read(&[0, 0, 0, 2], |r| r.get_optional_with(|r| r.get_string(4))),
        Err(XdrError::InvalidBool(2))
    );
}

#[test]
fn xdr_unknown_enum_value() {
    assert_eq!(
        decode::<Color>(&[0, 0, 0, 3]),
        Err(XdrError::InvalidEnum {
            name: "Color",
            value: 3
        })
    );
    assert_eq!(
        decode::<Color>(&HUGE),
        Err(XdrError::InvalidEnum {
            name: "Color",
            value: -1
        })
    );
}

#[test]
fn xdr_unknown_union_arm() {
    assert_eq!(
        decode::<Msg>(&[0, 0, 0, 3, 0, 0, 0, 0]),
        Err(XdrError::InvalidDiscriminant {
            name: "Msg",
            value: 3
        })
    );
    assert_eq!(
        decode::<Msg>(&HUGE),
        Err(XdrError::InvalidDiscriminant {
            name: "Msg",
            value: 0xffff_ffff
        })
    );
}

#[test]
fn xdr_invalid_utf8_string() {
    let cases: [&[u8]; 5] = [
        &[0xff],             // never valid
        &[0x80],             // lone continuation byte
        &[0xc0, 0xaf],       // overlong "/"
        &[0xed, 0xa0, 0x80], // UTF-16 surrogate
        &[b'a', 0xe2, 0x82], // truncated 3-byte sequence
    ];
    for data in cases {
        let mut w = XdrWriter::new();
        w.put_opaque(data, u32::MAX).unwrap();
        assert_eq!(
            decode::<String>(&w.into_bytes()),
            Err(XdrError::InvalidUtf8),
            "{data:02x?}"
        );
    }
}

#[test]
fn xdr_trailing_bytes_with_from_bytes() {
    assert_eq!(
        decode::<i32>(&[0, 0, 0, 1, 0, 0, 0, 0]),
        Err(XdrError::TrailingBytes(4))
    );
    assert_eq!(decode::<()>(&[0]), Err(XdrError::TrailingBytes(1)));
    assert_eq!(
        decode::<String>(&[0, 0, 0, 0, 0, 0]),
        Err(XdrError::TrailingBytes(2))
    );
    // The reader itself is happy to stop early; finish() is what rejects the rest.
    let bytes = b(&[0, 0, 0, 1, 9]);
    let mut r = XdrReader::new(&bytes);
    assert_eq!(r.get_u32(), Ok(1));
    assert_eq!(r.finish(), Err(XdrError::TrailingBytes(1)));
}

#[test]
fn xdr_unknown_status_code() {
    for code in [0u32, 16, 0x8000_0000, u32::MAX] {
        assert_eq!(
            decode::<Status>(&code.to_be_bytes()),
            Err(XdrError::InvalidDiscriminant {
                name: "Status",
                value: code as i64
            }),
            "code {code}"
        );
    }
}

#[test]
fn xdr_status_message_over_limit_and_truncated_fields() {
    // Code 4 (BadArguments) with a 4097-byte message: over MAX_STATUS_MESSAGE.
    let mut w = XdrWriter::new();
    w.put_u32(4);
    w.put_string(&"m".repeat(4097), u32::MAX).unwrap();
    assert_eq!(
        decode::<Status>(&w.into_bytes()),
        Err(XdrError::LengthExceedsBound {
            len: 4097,
            max: 4096
        })
    );
    // Code 2 (VersionMismatch) missing its `high`.
    assert_eq!(
        decode::<Status>(&[0, 0, 0, 2, 0, 0, 0, 1]),
        Err(XdrError::UnexpectedEof {
            needed: 4,
            remaining: 0
        })
    );
}

// ---------------------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------------------

/// A valid frame: a Call with a 12-byte payload.
fn good_frame() -> Vec<u8> {
    let mut h = FrameHeader::call(0x0102_0304_0506_0708, 42, 0x2000_0001, 1, 3);
    h.deadline_us = 5_000;
    h.aux = 40;
    let frame = Frame::new(h, Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]));
    frame.to_bytes().unwrap().to_vec()
}

/// Recomputes the CRC of a (modified) frame so that only the field under test is wrong.
fn fix_crc(frame: &mut [u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&frame[..52]);
    h.update(&frame[HEADER_LEN..]);
    let crc = h.finalize();
    frame[52..56].copy_from_slice(&crc.to_be_bytes());
}

fn parse(frame: &[u8]) -> Result<Frame, FrameError> {
    Frame::parse(&b(frame), MAX_PAYLOAD)
}

#[test]
fn frame_good_frame_parses() {
    let f = good_frame();
    let parsed = parse(&f).unwrap();
    assert_eq!(parsed.header.call_id, 42);
    assert_eq!(parsed.payload.len(), 12);
}

#[test]
fn frame_bad_magic() {
    let mut f = good_frame();
    f[0..4].copy_from_slice(b"XRPD");
    fix_crc(&mut f);
    assert_eq!(parse(&f), Err(FrameError::BadMagic(0x5852_5044)));
    // An ONC RPC record mark is not our magic either.
    f[0..4].copy_from_slice(&[0x80, 0, 0, 0x28]);
    assert_eq!(
        FrameHeader::parse(&f, MAX_PAYLOAD),
        Err(FrameError::BadMagic(0x8000_0028))
    );
}

#[test]
fn frame_unsupported_version() {
    for v in [0u8, 2, 255] {
        let mut f = good_frame();
        f[4] = v;
        fix_crc(&mut f);
        assert_eq!(parse(&f), Err(FrameError::UnsupportedVersion(v)));
    }
}

#[test]
fn frame_unknown_kind() {
    for k in [0u8, 5, 255] {
        let mut f = good_frame();
        f[5] = k;
        fix_crc(&mut f);
        assert_eq!(parse(&f), Err(FrameError::UnknownKind(k)));
    }
}

#[test]
fn frame_reserved_flags_set() {
    for bit in 5..16 {
        let flags = 1u16 << bit;
        assert_ne!(flags & flags::RESERVED, 0);
        let mut f = good_frame();
        f[6..8].copy_from_slice(&flags.to_be_bytes());
        fix_crc(&mut f);
        assert_eq!(parse(&f), Err(FrameError::InvalidFlags(flags)), "bit {bit}");
    }
}

#[test]
fn frame_credentials_flag_only_on_calls() {
    let mut f = good_frame();
    f[6..8].copy_from_slice(&flags::CREDENTIALS.to_be_bytes());
    fix_crc(&mut f);
    assert!(parse(&f).is_ok(), "a Call may carry credentials");
    for kind in [FrameKind::Reply, FrameKind::Status, FrameKind::Cancel] {
        f[5] = kind as u8;
        fix_crc(&mut f);
        assert_eq!(
            parse(&f),
            Err(FrameError::InvalidFlags(flags::CREDENTIALS)),
            "{kind:?}"
        );
    }
}

#[test]
fn frame_semantics_bits_3() {
    for flags in [0x0003u16, 0x0003 | flags::ONEWAY | flags::RETRY] {
        let mut f = good_frame();
        f[6..8].copy_from_slice(&flags.to_be_bytes());
        fix_crc(&mut f);
        assert_eq!(parse(&f), Err(FrameError::InvalidFlags(flags)));
    }
}

#[test]
fn frame_payload_too_large() {
    let f = good_frame();
    // 12-byte payload against a limit of 11; exactly 12 is fine.
    assert_eq!(
        Frame::parse(&b(&f), 11),
        Err(FrameError::PayloadTooLarge { len: 12, max: 11 })
    );
    assert!(Frame::parse(&b(&f), 12).is_ok());
    // A header announcing 4 GiB - 1 is refused from the header alone.
    let mut g = f.clone();
    g[48..52].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        FrameHeader::parse(&g[..HEADER_LEN], MAX_PAYLOAD),
        Err(FrameError::PayloadTooLarge {
            len: u32::MAX as u64,
            max: MAX_PAYLOAD
        })
    );
}

/// `emit` refuses a payload longer than a u32 can describe. The payload is many views of
/// one buffer, so nothing of that size is allocated.
#[test]
fn frame_emit_payload_over_u32() {
    let chunk = vec![0u8; 1 << 20];
    let chunks: Vec<&[u8]> = std::iter::repeat_n(&chunk[..], 4097).collect();
    let h = FrameHeader::call(1, 1, 1, 1, 1);
    let mut out = [0u8; HEADER_LEN];
    assert_eq!(
        h.emit(&chunks, &mut out),
        Err(FrameError::PayloadTooLarge {
            len: 4097 << 20,
            max: u32::MAX
        })
    );
}

#[test]
fn frame_truncated_header_at_every_length() {
    let f = good_frame();
    for len in 0..HEADER_LEN {
        assert_eq!(
            parse(&f[..len]),
            Err(FrameError::Truncated { len }),
            "len {len}"
        );
        assert_eq!(
            FrameHeader::parse(&f[..len], MAX_PAYLOAD),
            Err(FrameError::Truncated { len })
        );
    }
}

#[test]
fn frame_truncated_payload() {
    let f = good_frame();
    for len in HEADER_LEN..f.len() {
        assert_eq!(
            parse(&f[..len]),
            Err(FrameError::Truncated { len }),
            "len {len}"
        );
    }
    // The header alone parses: a stream reader uses it to learn how much more to read.
    assert!(FrameHeader::parse(&f[..HEADER_LEN], MAX_PAYLOAD).is_ok());
}

#[test]
fn frame_trailing_bytes() {
    let mut f = good_frame();
    f.push(0);
    assert_eq!(parse(&f), Err(FrameError::TrailingBytes { extra: 1 }));
    // A second frame back to back is "trailing" for a one-frame (datagram) parse.
    let mut two = good_frame();
    two.extend_from_slice(&good_frame());
    assert_eq!(parse(&two), Err(FrameError::TrailingBytes { extra: 68 }));
}

#[test]
fn frame_crc_field_corrupted() {
    let good = good_frame();
    let crc = u32::from_be_bytes(good[52..56].try_into().unwrap());
    for wrong in [0u32, crc ^ 1, crc ^ 0x8000_0000, !crc] {
        let mut f = good.clone();
        f[52..56].copy_from_slice(&wrong.to_be_bytes());
        assert_eq!(
            parse(&f),
            Err(FrameError::BadChecksum {
                expected: wrong,
                actual: crc
            })
        );
    }
}

/// The error expected when byte `i` of [`good_frame`] is XORed with `mask` (and the CRC
/// is left as it was), region by region:
///
/// | bytes  | field             | error                                               |
/// |--------|-------------------|-----------------------------------------------------|
/// | 0..4   | magic             | `BadMagic(new magic)`                                |
/// | 4      | version           | `UnsupportedVersion(new byte)` (any change ≠ 1)      |
/// | 5      | kind              | `UnknownKind`, unless it lands on another kind 1..=4 |
/// | 6..8   | flags             | `InvalidFlags` if reserved/3, else `BadChecksum`     |
/// | 8..48  | ids, deadline, aux| `BadChecksum` (CRC-32 catches every error ≤ 32 bits) |
/// | 48..52 | payload length    | `PayloadTooLarge` over the max, else `Truncated` or `TrailingBytes` |
/// | 52..56 | CRC               | `BadChecksum`                                        |
/// | 56..   | payload           | `BadChecksum`                                        |
fn expected_after_flip(good: &[u8], bad: &[u8], i: usize) -> FrameError {
    let crc_field = u32::from_be_bytes(bad[52..56].try_into().unwrap());
    let checksum = || {
        let mut h = crc32fast::Hasher::new();
        h.update(&bad[..52]);
        h.update(&bad[HEADER_LEN..]);
        FrameError::BadChecksum {
            expected: crc_field,
            actual: h.finalize(),
        }
    };
    match i {
        0..=3 => FrameError::BadMagic(u32::from_be_bytes(bad[0..4].try_into().unwrap())),
        4 => FrameError::UnsupportedVersion(bad[4]),
        5 => match bad[5] {
            1..=4 => checksum(),
            k => FrameError::UnknownKind(k),
        },
        6 | 7 => {
            let flags = u16::from_be_bytes([bad[6], bad[7]]);
            if flags & flags::RESERVED != 0 || flags & 3 == 3 {
                FrameError::InvalidFlags(flags)
            } else {
                checksum()
            }
        }
        48..=51 => {
            let len = u32::from_be_bytes(bad[48..52].try_into().unwrap());
            let actual = good.len() - HEADER_LEN;
            if len > MAX_PAYLOAD {
                FrameError::PayloadTooLarge {
                    len: len as u64,
                    max: MAX_PAYLOAD,
                }
            } else if len as usize > actual {
                FrameError::Truncated { len: good.len() }
            } else if (len as usize) < actual {
                FrameError::TrailingBytes {
                    extra: actual - len as usize,
                }
            } else {
                checksum()
            }
        }
        _ => checksum(),
    }
}

#[test]
fn frame_flip_every_byte() {
    let good = good_frame();
    assert!(parse(&good).is_ok());
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        let err = parse(&bad).unwrap_err();
        assert_eq!(err, expected_after_flip(&good, &bad, i), "byte {i} flipped");
        // Spot-check the regions with the literal variants the table promises.
        match i {
            0..=3 => assert!(matches!(err, FrameError::BadMagic(_))),
            4 => assert_eq!(err, FrameError::UnsupportedVersion(0xfe)),
            5 => assert_eq!(err, FrameError::UnknownKind(0xfe)),
            6 => assert_eq!(err, FrameError::InvalidFlags(0xff00)),
            7 => assert_eq!(err, FrameError::InvalidFlags(0x00ff)),
            // 0xff00000c bytes announced: over the 16 MiB limit.
            48 => assert_eq!(
                err,
                FrameError::PayloadTooLarge {
                    len: 0xff00_000c,
                    max: MAX_PAYLOAD
                }
            ),
            // 0x00ff000c, 0x0000ff0c, 0x000000f3 bytes announced (under the limit), 12 present.
            49..=51 => assert_eq!(err, FrameError::Truncated { len: good.len() }),
            _ => assert!(matches!(err, FrameError::BadChecksum { .. })),
        }
    }
}

/// Every single-bit error in a field that has no validity rule of its own is caught by
/// the CRC, and `verify_crc` reports the header's CRC and the recomputed one.
#[test]
fn frame_single_bit_errors_in_unchecked_fields_fail_crc() {
    let good = good_frame();
    let crc = u32::from_be_bytes(good[52..56].try_into().unwrap());
    let regions = (8..48).chain(HEADER_LEN..good.len());
    for i in regions {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let mut h = crc32fast::Hasher::new();
            h.update(&bad[..52]);
            h.update(&bad[HEADER_LEN..]);
            let actual = h.finalize();
            assert_ne!(actual, crc);
            let want = FrameError::BadChecksum {
                expected: crc,
                actual,
            };
            assert_eq!(parse(&bad), Err(want.clone()), "byte {i} bit {bit}");
            let header: [u8; HEADER_LEN] = bad[..HEADER_LEN].try_into().unwrap();
            assert_eq!(verify_crc(&header, &bad[HEADER_LEN..]), Err(want));
        }
    }
}

/// Checks run in the documented order: magic, version, kind, flags, payload length, then
/// total length, then CRC. With everything wrong at once, the magic decides.
#[test]
fn frame_checks_run_in_documented_order() {
    let mut f = good_frame();
    f[56] ^= 1; // CRC now wrong
    f.push(0); // trailing byte
    assert_eq!(parse(&f), Err(FrameError::TrailingBytes { extra: 1 }));
    f[48..52].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(parse(&f), Err(FrameError::PayloadTooLarge { .. })));
    f[7] = 0x03;
    assert_eq!(parse(&f), Err(FrameError::InvalidFlags(3)));
    f[5] = 9;
    assert_eq!(parse(&f), Err(FrameError::UnknownKind(9)));
    f[4] = 2;
    assert_eq!(parse(&f), Err(FrameError::UnsupportedVersion(2)));
    f[0] = 0;
    assert_eq!(parse(&f), Err(FrameError::BadMagic(0x0052_5043)));
}

#[test]
fn frame_kind_and_semantics_decoders_reject_unknown_values() {
    assert_eq!(FrameKind::from_u8(0), None);
    assert_eq!(FrameKind::from_u8(5), None);
    assert_eq!(FrameKind::from_u8(4), Some(FrameKind::Cancel));
    assert_eq!(rpc_core::Semantics::from_bits(3), None);
    assert_eq!(
        rpc_core::Semantics::from_bits(2),
        Some(rpc_core::Semantics::ExactlyOnce)
    );
}

// ---------------------------------------------------------------------------------------
// Never panic on arbitrary input.
// ---------------------------------------------------------------------------------------

/// Decodes `bytes` as many types; each must return (Ok or Err), never panic.
fn decode_everything(bytes: &Bytes) {
    let _ = xdr::from_bytes::<bool>(bytes);
    let _ = xdr::from_bytes::<f64>(bytes);
    let _ = xdr::from_bytes::<Bytes>(bytes);
    let _ = xdr::from_bytes::<String>(bytes);
    let _ = xdr::from_bytes::<Vec<Vec<i32>>>(bytes);
    let _ = xdr::from_bytes::<Vec<String>>(bytes);
    let _ = xdr::from_bytes::<Option<Option<u64>>>(bytes);
    let _ = xdr::from_bytes::<[i32; 3]>(bytes);
    let _ = xdr::from_bytes::<(i32, String, Vec<Bytes>)>(bytes);
    let _ = xdr::from_bytes::<Status>(bytes);
    let _ = xdr::from_bytes::<Rec>(bytes);
    let _ = xdr::from_bytes::<Msg>(bytes);
    let mut r = XdrReader::new(bytes);
    let _ = r.get_opaque_fixed::<7>();
    let _ = r.get_opaque_fixed_bytes(5);
    let _ = r.get_string(3);
    let _ = r.get_var_array_with(2, |r| r.get_opaque(6));
    let _ = r.get_fixed_array_with::<_, 2>(|r| r.get_optional_with(|r| r.get_string(1)));
}

/// Mostly-small words, so that length prefixes and flags are often plausible.
fn xdr_words() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![0u32..8, Just(u32::MAX), any::<u32>()], 0..32)
        .prop_map(|ws| ws.into_iter().flat_map(u32::to_be_bytes).collect())
}

proptest! {
    #[test]
    fn xdr_decoders_never_panic(bytes in prop_oneof![xdr_words(), vec(any::<u8>(), 0..128)]) {
        let bytes = Bytes::from(bytes);
        decode_everything(&bytes);
        // Whatever decoded also consumed a consistent number of bytes.
        let mut r = XdrReader::new(&bytes);
        if r.get::<Vec<u32>>().is_ok() {
            prop_assert!(r.position() <= bytes.len());
            prop_assert_eq!(r.position() + r.remaining(), bytes.len());
        }
    }

    #[test]
    fn frame_parse_never_panics(bytes in vec(any::<u8>(), 0..200), max in any::<u32>()) {
        let bytes = Bytes::from(bytes);
        let _ = Frame::parse(&bytes, max);
        let _ = FrameHeader::parse(&bytes, max);
    }

    /// Arbitrary bytes after a plausible header prefix, so parsing gets past the magic.
    #[test]
    fn frame_parse_never_panics_past_magic(
        kind in 0u8..6,
        flags in prop_oneof![0u16..16, any::<u16>()],
        rest in vec(any::<u8>(), 0..120),
        max in prop_oneof![Just(MAX_PAYLOAD), any::<u32>()],
    ) {
        let mut f = vec![0x58, 0x52, 0x50, 0x43, 1, kind];
        f.extend_from_slice(&flags.to_be_bytes());
        f.extend_from_slice(&rest);
        let bytes = Bytes::from(f);
        match Frame::parse(&bytes, max) {
            Ok(frame) => {
                // Anything accepted re-emits to exactly the input.
                prop_assert_eq!(frame.to_bytes(), Ok(bytes));
            }
            Err(FrameError::Truncated { len }) => prop_assert_eq!(len, bytes.len()),
            Err(_) => {}
        }
    }

    /// A valid frame with one byte changed is never accepted.
    #[test]
    fn frame_any_single_byte_change_is_rejected(i in 0usize..68, x in 1u8..=255) {
        let mut f = good_frame();
        prop_assert_eq!(f.len(), 68);
        f[i] ^= x;
        prop_assert!(parse(&f).is_err());
    }
}
