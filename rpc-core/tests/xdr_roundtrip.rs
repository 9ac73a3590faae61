//! Round-trip property tests for every XDR type (RFC 4506) the framework encodes.
//!
//! Every property checks three things for its value `x`:
//! * `decode(encode(x)) == x` and the decoder consumed every byte;
//! * the encoding is a whole number of 4-byte XDR units;
//! * `encode(decode(bytes)) == bytes`: re-emitting what was parsed gives the same bytes.
//!
//! The struct, enum and union types below are written field by field, the way
//! `rpc-codegen` emits them, so these tests pin the building blocks generated code uses.

use std::fmt::Debug;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use rpc_core::frame::{flags, Frame, FrameHeader, FrameKind, HEADER_LEN};
use rpc_core::xdr::{self, XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};
use rpc_core::Status;

// ---------------------------------------------------------------------------------------
// Hand-written types, as generated code would write them.
// ---------------------------------------------------------------------------------------

/// `enum Op { ADD = 1, SUB = 2, MUL = 3, NEG = -1 };`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
enum Op {
    Add = 1,
    Sub = 2,
    Mul = 3,
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
            3 => Ok(Op::Mul),
            -1 => Ok(Op::Neg),
            value => Err(XdrError::InvalidEnum { name: "Op", value }),
        }
    }
}

/// `struct Point { int x; int y; };`
#[derive(Debug, Clone, PartialEq, Eq)]
struct Point {
    x: i32,
    y: i32,
}

impl XdrEncode for Point {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_i32(self.x);
        w.put_i32(self.y);
        Ok(())
    }
}

impl XdrDecode for Point {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Point {
            x: r.get_i32()?,
            y: r.get_i32()?,
        })
    }
}

const MAX_NAME: u32 = 16;

/// ```text
/// struct Shape {
///   string name<MAX_NAME>; Point points<>; Point *centre; Op op;
///   opaque digest[5]; string tags<4>... (each string<8>); bool flag; hyper id;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    name: String,
    points: Vec<Point>,
    centre: Option<Point>,
    op: Op,
    digest: [u8; 5],
    tags: Vec<String>,
    flag: bool,
    id: i64,
}

impl XdrEncode for Shape {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_string(&self.name, MAX_NAME)?;
        w.put_var_array(&self.points, u32::MAX)?;
        w.put_optional_with(self.centre.as_ref(), |w, p| p.encode(w))?;
        self.op.encode(w)?;
        w.put_opaque_fixed(&self.digest, 5)?;
        w.put_var_array_with(&self.tags, 4, |w, t| w.put_string(t, 8))?;
        w.put_bool(self.flag);
        w.put_i64(self.id);
        Ok(())
    }
}

impl XdrDecode for Shape {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Shape {
            name: r.get_string(MAX_NAME)?,
            points: r.get_var_array(u32::MAX)?,
            centre: r.get_optional_with(Point::decode)?,
            op: Op::decode(r)?,
            digest: r.get_opaque_fixed::<5>()?,
            tags: r.get_var_array_with(4, |r| r.get_string(8))?,
            flag: r.get_bool()?,
            id: r.get_i64()?,
        })
    }
}

/// ```text
/// union Outcome switch (int status) {
///   case 0: hyper value;
///   case 1: case 2: string error<32>;
///   case 3: void;
///   default: unsigned int other;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Value(i64),
    Error { status: i32, message: String },
    Nothing,
    Default { status: i32, other: u32 },
}

impl XdrEncode for Outcome {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        match self {
            Outcome::Value(v) => {
                w.put_i32(0);
                w.put_i64(*v);
            }
            Outcome::Error { status, message } => {
                w.put_i32(*status);
                w.put_string(message, 32)?;
            }
            Outcome::Nothing => w.put_i32(3),
            Outcome::Default { status, other } => {
                w.put_i32(*status);
                w.put_u32(*other);
            }
        }
        Ok(())
    }
}

impl XdrDecode for Outcome {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(match r.get_i32()? {
            0 => Outcome::Value(r.get_i64()?),
            status @ (1 | 2) => Outcome::Error {
                status,
                message: r.get_string(32)?,
            },
            3 => Outcome::Nothing,
            status => Outcome::Default {
                status,
                other: r.get_u32()?,
            },
        })
    }
}

/// `union Pick switch (Op op) { case ADD: int sum; case SUB: void; };` (no default: MUL
/// and NEG select no arm).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    Add(i32),
    Sub,
}

impl XdrEncode for Pick {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        match self {
            Pick::Add(sum) => {
                Op::Add.encode(w)?;
                w.put_i32(*sum);
            }
            Pick::Sub => Op::Sub.encode(w)?,
        }
        Ok(())
    }
}

impl XdrDecode for Pick {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match Op::decode(r)? {
            Op::Add => Ok(Pick::Add(r.get_i32()?)),
            Op::Sub => Ok(Pick::Sub),
            other => Err(XdrError::InvalidDiscriminant {
                name: "Pick",
                value: other as i64,
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checkers.
// ---------------------------------------------------------------------------------------

/// Encodes `value` with `enc`, decodes it with `dec`, and checks the round trip, the
/// 4-byte alignment and the byte-exact re-encoding. Returns the encoding.
fn check_with<T, E, D>(value: &T, enc: E, dec: D) -> Result<Bytes, TestCaseError>
where
    T: PartialEq + Debug,
    E: Fn(&mut XdrWriter, &T) -> Result<(), XdrError>,
    D: Fn(&mut XdrReader<'_>) -> Result<T, XdrError>,
{
    let mut w = XdrWriter::new();
    let res = enc(&mut w, value);
    prop_assert_eq!(res, Ok(()), "encoding {:?}", value);
    let bytes = w.into_bytes();
    prop_assert_eq!(
        bytes.len() % 4,
        0,
        "encoding of {:?} is not 4-aligned",
        value
    );

    let mut r = XdrReader::new(&bytes);
    let back = dec(&mut r);
    prop_assert_eq!(r.finish(), Ok(()), "decoder left bytes of {:?}", value);
    let back = match back {
        Ok(v) => v,
        Err(e) => return Err(TestCaseError::fail(format!("decoding {value:?}: {e}"))),
    };
    prop_assert_eq!(&back, value);

    let mut again = XdrWriter::new();
    prop_assert_eq!(enc(&mut again, &back), Ok(()));
    prop_assert_eq!(again.as_slice(), &bytes[..], "re-encoding differs");
    Ok(bytes)
}

/// [`check_with`] through the `XdrEncode`/`XdrDecode` impls and `to_bytes`/`from_bytes`.
fn check<T>(value: &T) -> Result<Bytes, TestCaseError>
where
    T: XdrEncode + XdrDecode + PartialEq + Debug,
{
    let bytes = check_with(value, |w, v| v.encode(w), T::decode)?;
    let encoded = xdr::to_bytes(value);
    prop_assert_eq!(encoded.as_ref(), Ok(&bytes));
    let decoded = xdr::from_bytes::<T>(&bytes);
    prop_assert_eq!(decoded.as_ref(), Ok(value));
    Ok(bytes)
}

/// Length of a variable-length opaque/string of `n` bytes on the wire.
fn var_len(n: usize) -> usize {
    4 + n + xdr::padding(n)
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Add), Just(Op::Sub), Just(Op::Mul), Just(Op::Neg)]
}

fn point() -> impl Strategy<Value = Point> {
    (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Point { x, y })
}

/// A string of at most `max_bytes` UTF-8 bytes (any Unicode).
fn string_within(max_bytes: usize) -> impl Strategy<Value = String> {
    any::<String>().prop_map(move |s| {
        let mut end = s.len().min(max_bytes);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    })
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        string_within(MAX_NAME as usize),
        vec(point(), 0..6),
        proptest::option::of(point()),
        op(),
        any::<[u8; 5]>(),
        vec(string_within(8), 0..=4),
        any::<bool>(),
        any::<i64>(),
    )
        .prop_map(|(name, points, centre, op, digest, tags, flag, id)| Shape {
            name,
            points,
            centre,
            op,
            digest,
            tags,
            flag,
            id,
        })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        any::<i64>().prop_map(Outcome::Value),
        (1..=2i32, string_within(32))
            .prop_map(|(status, message)| Outcome::Error { status, message }),
        Just(Outcome::Nothing),
        (
            any::<i32>().prop_filter("not a case label", |s| !(0..=3).contains(s)),
            any::<u32>()
        )
            .prop_map(|(status, other)| Outcome::Default { status, other }),
    ]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![any::<i32>().prop_map(Pick::Add), Just(Pick::Sub)]
}

fn message() -> impl Strategy<Value = String> {
    prop_oneof![string_within(64), string_within(4096)]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        any::<u32>().prop_map(|id| Status::UnknownInterface { id }),
        (any::<u32>(), any::<u32>()).prop_map(|(low, high)| Status::VersionMismatch { low, high }),
        any::<u32>().prop_map(|procedure| Status::UnknownProcedure { procedure }),
        message().prop_map(|message| Status::BadArguments { message }),
        Just(Status::Overloaded),
        Just(Status::ServerRestarted),
        (any::<i32>(), message()).prop_map(|(code, message)| Status::Application { code, message }),
        Just(Status::DeadlineExceeded),
        Just(Status::Cancelled),
        Just(Status::ShuttingDown),
        message().prop_map(|message| Status::Internal { message }),
        (any::<u32>(), any::<u32>()).prop_map(|(low, high)| Status::ProtocolVersion { low, high }),
        Just(Status::ReplyEvicted),
    ]
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

macro_rules! opaque_fixed_props {
    ($($name:ident: $n:literal),* $(,)?) => {$(
        proptest! {
        #[test]
        fn $name(data in any::<[u8; $n]>()) {
            let bytes = check_with(
                &data,
                |w, d| w.put_opaque_fixed(d, $n),
                |r| r.get_opaque_fixed::<$n>(),
            )?;
            prop_assert_eq!(bytes.len(), $n + xdr::padding($n));
            prop_assert_eq!(&bytes[..$n], &data[..]);
            // The zero-copy form reads the same bytes.
            let mut r = XdrReader::new(&bytes);
            let zero_copy = r.get_opaque_fixed_bytes($n);
            prop_assert_eq!(zero_copy.as_deref(), Ok(&data[..]));
            prop_assert_eq!(r.finish(), Ok(()));
        }
        }
    )*};
}

proptest! {
    #[test]
    fn bool_roundtrip(v in any::<bool>()) {
        prop_assert_eq!(check(&v)?.len(), 4);
    }

    #[test]
    fn int_roundtrip(v in any::<i32>()) {
        prop_assert_eq!(check(&v)?.len(), 4);
    }

    #[test]
    fn unsigned_int_roundtrip(v in any::<u32>()) {
        prop_assert_eq!(check(&v)?.len(), 4);
    }

    #[test]
    fn hyper_roundtrip(v in any::<i64>()) {
        prop_assert_eq!(check(&v)?.len(), 8);
    }

    #[test]
    fn unsigned_hyper_roundtrip(v in any::<u64>()) {
        prop_assert_eq!(check(&v)?.len(), 8);
    }

    /// Every bit pattern, NaNs with payloads included, survives bit-exactly.
    #[test]
    fn float_roundtrip(bits in any::<u32>()) {
        let bytes = check_with(
            &bits,
            |w, b| { w.put_f32(f32::from_bits(*b)); Ok(()) },
            |r| r.get_f32().map(f32::to_bits),
        )?;
        prop_assert_eq!(&bytes[..], &bits.to_be_bytes()[..]);
        // The trait impls agree with the reader/writer methods.
        let via_trait = xdr::from_bytes::<f32>(&bytes).map(f32::to_bits);
        prop_assert_eq!(via_trait, Ok(bits));
    }

    #[test]
    fn double_roundtrip(bits in any::<u64>()) {
        let bytes = check_with(
            &bits,
            |w, b| { w.put_f64(f64::from_bits(*b)); Ok(()) },
            |r| r.get_f64().map(f64::to_bits),
        )?;
        prop_assert_eq!(&bytes[..], &bits.to_be_bytes()[..]);
        let via_trait = xdr::from_bytes::<f64>(&bytes).map(f64::to_bits);
        prop_assert_eq!(via_trait, Ok(bits));
    }

    #[test]
    fn finite_float_values_roundtrip(v in proptest::num::f32::ANY, d in proptest::num::f64::ANY) {
        let back = xdr::from_bytes::<f32>(&xdr::to_bytes(&v).unwrap()).unwrap();
        prop_assert_eq!(back.to_bits(), v.to_bits());
        let back = xdr::from_bytes::<f64>(&xdr::to_bytes(&d).unwrap()).unwrap();
        prop_assert_eq!(back.to_bits(), d.to_bits());
    }
}

opaque_fixed_props! {
        opaque_fixed_0: 0,
        opaque_fixed_1: 1,
        opaque_fixed_2: 2,
        opaque_fixed_3: 3,
        opaque_fixed_4: 4,
        opaque_fixed_5: 5,
        opaque_fixed_8: 8,
        opaque_fixed_13: 13,
    opaque_fixed_32: 32,
}

proptest! {
    #[test]
    fn opaque_unbounded_roundtrip(data in vec(any::<u8>(), 0..200)) {
        let data = Bytes::from(data);
        let bytes = check(&data)?;
        prop_assert_eq!(bytes.len(), var_len(data.len()));
        prop_assert_eq!(&bytes[..4], &(data.len() as u32).to_be_bytes()[..]);
    }

    #[test]
    fn opaque_bounded_roundtrip(data in vec(any::<u8>(), 0..64), slack in 0u32..4) {
        let max = data.len() as u32 + slack; // includes max == len exactly
        let bytes = check_with(&data, |w, d| w.put_opaque(d, max), |r| r.get_opaque(max).map(|b| b.to_vec()))?;
        prop_assert_eq!(bytes.len(), var_len(data.len()));
    }

    /// Decoded opaques are slices of the input buffer (zero-copy).
    #[test]
    fn opaque_decodes_zero_copy(data in vec(any::<u8>(), 1..64)) {
        let bytes = xdr::to_bytes(&Bytes::from(data)).unwrap();
        let decoded: Bytes = xdr::from_bytes(&bytes).unwrap();
        prop_assert_eq!(decoded.as_ptr(), bytes[4..].as_ptr());
    }

    #[test]
    fn string_unbounded_roundtrip(s in any::<String>()) {
        let bytes = check(&s)?;
        prop_assert_eq!(bytes.len(), var_len(s.len()));
        // `str` encodes exactly like `String`.
        prop_assert_eq!(xdr::to_bytes(s.as_str()), Ok(bytes));
    }

    #[test]
    fn string_bounded_roundtrip(s in string_within(40), slack in 0u32..4) {
        let max = s.len() as u32 + slack;
        let bytes = check_with(&s, |w, s| w.put_string(s, max), |r| r.get_string(max))?;
        prop_assert_eq!(bytes.len(), var_len(s.len()));
    }

    #[test]
    fn string_unicode_roundtrip(s in "[\\u{80}-\\u{7ff}\\u{800}-\\u{ffff}\\u{10000}-\\u{10ffff}a-z]{0,20}") {
        let bytes = check(&s)?;
        // The length prefix counts bytes, not characters.
        prop_assert_eq!(&bytes[..4], &(s.len() as u32).to_be_bytes()[..]);
        prop_assert_eq!(&bytes[4..4 + s.len()], s.as_bytes());
    }

    #[test]
    fn fixed_array_ints_roundtrip(v in any::<[i32; 4]>()) {
        prop_assert_eq!(check(&v)?.len(), 16);
    }

    #[test]
    fn fixed_array_hypers_roundtrip(v in any::<[u64; 3]>()) {
        prop_assert_eq!(check(&v)?.len(), 24);
    }

    #[test]
    fn fixed_array_structs_roundtrip(a in point(), b in point()) {
        prop_assert_eq!(check(&[a, b])?.len(), 16);
    }

    #[test]
    fn fixed_array_empty_roundtrip(_x in Just(())) {
        prop_assert_eq!(check(&[0i32; 0])?.len(), 0);
    }

    #[test]
    fn fixed_array_with_bounded_strings_roundtrip(
        v in [string_within(8), string_within(8), string_within(8)],
    ) {
        let bytes = check_with(
            &v,
            |w, v| w.put_fixed_array_with(v, 3, |w, s| w.put_string(s, 8)),
            |r| r.get_fixed_array_with::<_, 3>(|r| r.get_string(8)),
        )?;
        prop_assert_eq!(bytes.len(), v.iter().map(|s| var_len(s.len())).sum::<usize>());
    }

    #[test]
    fn var_array_unbounded_roundtrip(v in vec(any::<i32>(), 0..50)) {
        let bytes = check(&v)?;
        prop_assert_eq!(bytes.len(), 4 + 4 * v.len());
    }

    #[test]
    fn var_array_bounded_roundtrip(v in vec(any::<u64>(), 0..20), slack in 0u32..3) {
        let max = v.len() as u32 + slack;
        let bytes = check_with(&v, |w, v| w.put_var_array(v, max), |r| r.get_var_array(max))?;
        prop_assert_eq!(bytes.len(), 4 + 8 * v.len());
    }

    #[test]
    fn var_array_with_bounded_elements_roundtrip(v in vec(string_within(8), 0..=5)) {
        check_with(
            &v,
            |w, v| w.put_var_array_with(v, 5, |w, s| w.put_string(s, 8)),
            |r| r.get_var_array_with(5, |r| r.get_string(8)),
        )?;
    }

    #[test]
    fn var_array_nested_roundtrip(v in vec(vec(any::<i32>(), 0..8), 0..8)) {
        let bytes = check(&v)?;
        prop_assert_eq!(bytes.len(), 4 + v.iter().map(|i| 4 + 4 * i.len()).sum::<usize>());
    }

    #[test]
    fn var_array_of_strings_roundtrip(v in vec(any::<String>(), 0..8)) {
        check(&v)?;
    }

    #[test]
    fn optional_roundtrip(v in proptest::option::of(any::<i32>())) {
        let bytes = check(&v)?;
        prop_assert_eq!(bytes.len(), if v.is_some() { 8 } else { 4 });
    }

    #[test]
    fn optional_nested_roundtrip(v in proptest::option::of(proptest::option::of(any::<u64>()))) {
        check(&v)?;
    }

    #[test]
    fn optional_string_roundtrip(v in proptest::option::of(any::<String>())) {
        check(&v)?;
    }

    #[test]
    fn optional_with_bounded_roundtrip(v in proptest::option::of(string_within(10))) {
        check_with(
            &v,
            |w, v| w.put_optional_with(v.as_ref(), |w, s| w.put_string(s, 10)),
            |r| r.get_optional_with(|r| r.get_string(10)),
        )?;
    }

    #[test]
    fn boxed_roundtrip(v in any::<i64>()) {
        check(&Box::new(v))?;
    }

    #[test]
    fn struct_roundtrip(s in shape()) {
        check(&s)?;
    }

    #[test]
    fn struct_array_roundtrip(v in vec(shape(), 0..4)) {
        check(&v)?;
    }

    #[test]
    fn enum_roundtrip(o in op()) {
        let bytes = check(&o)?;
        prop_assert_eq!(&bytes[..], &(o as i32).to_be_bytes()[..]);
    }

    #[test]
    fn union_with_default_roundtrip(u in outcome()) {
        check(&u)?;
    }

    #[test]
    fn union_without_default_roundtrip(u in pick()) {
        check(&u)?;
    }

    #[test]
    fn void_roundtrip(_x in Just(())) {
        prop_assert_eq!(check(&())?.len(), 0);
    }

    #[test]
    fn tuple_roundtrip(
        t in (any::<i32>(), any::<String>(), any::<bool>(), vec(any::<u32>(), 0..4), any::<u64>()),
    ) {
        let bytes = check(&t)?;
        // A tuple (an argument list) is the plain concatenation of its elements.
        let mut concat = Vec::new();
        concat.extend_from_slice(&xdr::to_bytes(&t.0).unwrap());
        concat.extend_from_slice(&xdr::to_bytes(&t.1).unwrap());
        concat.extend_from_slice(&xdr::to_bytes(&t.2).unwrap());
        concat.extend_from_slice(&xdr::to_bytes(&t.3).unwrap());
        concat.extend_from_slice(&xdr::to_bytes(&t.4).unwrap());
        prop_assert_eq!(&bytes[..], &concat[..]);
    }

    #[test]
    fn tuple_of_eight_roundtrip(
        t in (any::<i32>(), any::<u32>(), any::<i64>(), any::<u64>(), any::<bool>(),
              op(), point(), proptest::option::of(any::<i32>())),
    ) {
        check(&t)?;
    }

    #[test]
    fn single_element_tuple_roundtrip(v in any::<String>()) {
        let bytes = check(&(v.clone(),))?;
        prop_assert_eq!(bytes, xdr::to_bytes(&v).unwrap());
    }

    #[test]
    fn status_roundtrip(s in status()) {
        let bytes = check(&s)?;
        prop_assert_eq!(&bytes[..4], &s.code().to_be_bytes()[..]);
    }

    /// Frames: `emit(parse(x)) == x` and `parse(emit(h)) == h`.
    #[test]
    fn frame_roundtrip(
        kind in prop_oneof![
            Just(FrameKind::Call), Just(FrameKind::Reply),
            Just(FrameKind::Status), Just(FrameKind::Cancel),
        ],
        semantics in 0u16..3,
        oneway in any::<bool>(),
        retry in any::<bool>(),
        ids in (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()),
        deadline_us in any::<u32>(),
        aux in any::<u64>(),
        payload in vec(any::<u8>(), 0..100),
    ) {
        let mut f = semantics;
        if oneway { f |= flags::ONEWAY; }
        if retry { f |= flags::RETRY; }
        let header = FrameHeader {
            kind,
            flags: f,
            client_id: ids.0,
            call_id: ids.1,
            interface_id: ids.2,
            interface_version: ids.3,
            procedure: ids.4,
            deadline_us,
            aux,
            payload_len: payload.len() as u32,
        };
        let frame = Frame::new(header, Bytes::from(payload));
        let bytes = frame.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), HEADER_LEN + frame.payload.len());
        let parsed = Frame::parse(&bytes, u32::MAX);
        prop_assert_eq!(parsed.as_ref(), Ok(&frame));
        prop_assert_eq!(parsed.unwrap().to_bytes(), Ok(bytes.clone()));
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&bytes[..HEADER_LEN]);
        prop_assert_eq!(FrameHeader::parse(&raw, u32::MAX), Ok(header));
    }
}

/// `emit(parse(x)) == x` on arbitrary input: whatever a decoder accepts, it accepted in
/// its one canonical encoding (XDR has exactly one encoding per value).
fn reemit_if_parsed<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: XdrEncode + XdrDecode + Debug,
{
    let bytes = Bytes::copy_from_slice(bytes);
    if let Ok(v) = xdr::from_bytes::<T>(&bytes) {
        prop_assert_eq!(
            xdr::to_bytes(&v),
            Ok(bytes),
            "{:?} re-encodes differently",
            v
        );
    }
    Ok(())
}

/// Mostly-small u32 words, so that length prefixes, flags and discriminants often make
/// sense and the decoders get deep.
fn xdr_words() -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![0u32..6, Just(u32::MAX), any::<u32>()], 0..24)
        .prop_map(|ws| ws.into_iter().flat_map(u32::to_be_bytes).collect())
}

proptest! {
    #[test]
    fn parse_then_emit_is_identity(bytes in prop_oneof![xdr_words(), vec(any::<u8>(), 0..64)]) {
        reemit_if_parsed::<bool>(&bytes)?;
        reemit_if_parsed::<u32>(&bytes)?;
        reemit_if_parsed::<Option<Option<i32>>>(&bytes)?;
        reemit_if_parsed::<Vec<Vec<i32>>>(&bytes)?;
        reemit_if_parsed::<Bytes>(&bytes)?;
        reemit_if_parsed::<Vec<String>>(&bytes)?;
        reemit_if_parsed::<Shape>(&bytes)?;
        reemit_if_parsed::<Outcome>(&bytes)?;
        reemit_if_parsed::<Pick>(&bytes)?;
        reemit_if_parsed::<Status>(&bytes)?;
        reemit_if_parsed::<(Op, Option<Point>, [u32; 2])>(&bytes)?;
    }
}

/// Status messages over [`rpc_core::error::MAX_STATUS_MESSAGE`] bytes are cut (at a char
/// boundary) when encoded, so they decode to the cut message, which then round-trips.
#[test]
fn status_long_message_is_truncated_at_char_boundary() {
    use rpc_core::error::MAX_STATUS_MESSAGE;
    let long = "€".repeat(2000); // 3 bytes each: 6000 bytes
    let s = Status::Internal {
        message: long.clone(),
    };
    let bytes = xdr::to_bytes(&s).unwrap();
    // 4096 is not a multiple of 3: the cut falls back to 4095 bytes (1365 chars).
    let cut = 1365 * 3;
    assert!(cut <= MAX_STATUS_MESSAGE as usize);
    assert_eq!(bytes.len(), 4 + var_len(cut));
    let back: Status = xdr::from_bytes(&bytes).unwrap();
    assert_eq!(
        back,
        Status::Internal {
            message: long[..cut].to_owned()
        }
    );
    assert_eq!(xdr::to_bytes(&back).unwrap(), bytes);

    let exact = "a".repeat(MAX_STATUS_MESSAGE as usize + 10);
    let s = Status::application(-3, exact.clone());
    let back: Status = xdr::from_bytes(&xdr::to_bytes(&s).unwrap()).unwrap();
    assert_eq!(
        back,
        Status::application(-3, &exact[..MAX_STATUS_MESSAGE as usize])
    );
}
