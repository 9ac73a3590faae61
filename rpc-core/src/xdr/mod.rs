//! XDR (RFC 4506) encoding and decoding: the wire format of every argument and result.
//!
//! Everything is big-endian and in 4-byte units: `int`/`unsigned int`/`bool`/enums take
//! 4 bytes, `hyper`s 8, `float`/`double` are IEEE 754; variable-length data carries a
//! `u32` length and is zero-padded to a multiple of 4; an optional is a `bool` followed by
//! the value; a union is its discriminant followed by the selected arm.
//!
//! [`XdrWriter`] appends to a growable buffer; [`XdrReader`] reads from a [`Bytes`](bytes::Bytes)
//! without copying variable-length opaques (they come back as slices of the receive
//! buffer). Decoding untrusted input never panics and never allocates more than the input
//! can justify: a length prefix is checked against the declared bound and against the
//! bytes that remain (every XDR item takes at least 4 bytes) before anything is allocated,
//! an array reserves no more memory than the input has bytes left, and values nest at
//! most [`DEFAULT_MAX_DEPTH`] levels deep (configurable per reader), so recursive types
//! cannot overflow the stack.
//!
//! Bounds (`string<N>`, `opaque<N>`, `T<N>`) belong to declarations, not types, so the
//! generated code passes them explicitly (`put_string(s, 64)`, `get_var_array_with(64, ..)`);
//! the [`XdrEncode`]/[`XdrDecode`] impls for `String`, [`Bytes`](bytes::Bytes) and `Vec<T>` are the
//! unbounded (`<>`) forms.
//!
//! ```
//! use rpc_core::xdr::{XdrReader, XdrWriter};
//! let mut w = XdrWriter::new();
//! w.put_string("abc", u32::MAX).unwrap();
//! let bytes = w.into_bytes();
//! assert_eq!(&bytes[..], &[0, 0, 0, 3, b'a', b'b', b'c', 0]);
//! let mut r = XdrReader::new(&bytes);
//! assert_eq!(r.get_string(u32::MAX).unwrap(), "abc");
//! r.finish().unwrap();
//! ```

mod error;
mod impls;
mod reader;
mod writer;

pub use error::XdrError;
pub use reader::{XdrReader, DEFAULT_MAX_DEPTH};
pub use writer::{XdrWriter, DEFAULT_SHARE_THRESHOLD};

/// A value that can be written in XDR.
pub trait XdrEncode {
    /// Appends the value's XDR encoding to `w`.
    ///
    /// Fails only when the value breaks a rule of its declaration (a bound, a fixed
    /// length), never because of the buffer.
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError>;
}

/// A value that can be read from XDR.
pub trait XdrDecode: Sized {
    /// Reads one value from `r`.
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError>;
}

/// Encodes `value` into a fresh buffer.
pub fn to_bytes<T: XdrEncode + ?Sized>(value: &T) -> Result<bytes::Bytes, XdrError> {
    let mut w = XdrWriter::new();
    value.encode(&mut w)?;
    Ok(w.into_bytes())
}

/// Decodes exactly one `T` from `bytes`; trailing bytes are an error.
pub fn from_bytes<T: XdrDecode>(bytes: &bytes::Bytes) -> Result<T, XdrError> {
    let mut r = XdrReader::new(bytes);
    let v = T::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Number of zero bytes that pad `len` bytes to a multiple of 4.
#[inline]
pub const fn padding(len: usize) -> usize {
    (4 - (len & 3)) & 3
}
