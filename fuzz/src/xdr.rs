//! XDR decoding of every generated type: decoding never panics, and what decodes
//! re-encodes to exactly the bytes it came from (XDR has one encoding per value).

use bytes::Bytes;
use rpc_core::xdr::{XdrDecode, XdrEncode};

include!(concat!(env!("OUT_DIR"), "/modules.rs"));
include!(concat!(env!("OUT_DIR"), "/dispatch.rs"));

fn check<T: XdrDecode + XdrEncode>(data: &Bytes) {
    if let Ok(value) = rpc_core::xdr::from_bytes::<T>(data) {
        let again = rpc_core::xdr::to_bytes(&value).expect("a decoded value encodes");
        assert_eq!(&again[..], &data[..], "re-encoding differs from the input");
    }
}

/// The target: the first two bytes choose the type, the rest is its encoding.
pub fn decode_round_trip(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let index = u16::from_be_bytes([data[0], data[1]]) as usize;
    decode_as(index, &Bytes::copy_from_slice(&data[2..]));
}

/// The procedures target: the first two bytes choose a procedure's argument list or
/// result ([`PROCEDURES`]), the rest is its encoding.
pub fn procedure_round_trip(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let index = u16::from_be_bytes([data[0], data[1]]) as usize;
    let (_, check) = PROCEDURES[index % PROCEDURES.len()];
    check(&Bytes::copy_from_slice(&data[2..]));
}
