use bytes::{BufMut, Bytes, BytesMut};

use super::{padding, XdrEncode, XdrError};

/// Appends XDR items to a growable buffer.
///
/// Writes of primitives cannot fail; writes of bounded items return
/// [`XdrError::LengthExceedsBound`] (or [`XdrError::FixedLengthMismatch`]) and leave the
/// buffer as it was before the call.
#[derive(Debug, Default)]
pub struct XdrWriter {
    buf: BytesMut,
}

impl XdrWriter {
    /// An empty writer.
    pub fn new() -> Self {
        XdrWriter {
            buf: BytesMut::new(),
        }
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        XdrWriter {
            buf: BytesMut::with_capacity(capacity),
        }
    }

    /// A writer that appends to `buf` (which may already hold a header).
    pub fn from_buf(buf: BytesMut) -> Self {
        XdrWriter { buf }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> BytesMut {
        self.buf
    }

    /// The written bytes, frozen.
    pub fn into_bytes(self) -> Bytes {
        self.buf.freeze()
    }

    /// Writes any encodable value.
    #[inline]
    pub fn put<T: XdrEncode + ?Sized>(&mut self, value: &T) -> Result<(), XdrError> {
        value.encode(self)
    }

    /// `unsigned int`.
    #[inline]
    pub fn put_u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    /// `int`.
    #[inline]
    pub fn put_i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    /// `unsigned hyper`.
    #[inline]
    pub fn put_u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    /// `hyper`.
    #[inline]
    pub fn put_i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    /// `float` (IEEE 754 single, big-endian).
    #[inline]
    pub fn put_f32(&mut self, v: f32) {
        self.buf.put_f32(v);
    }

    /// `double` (IEEE 754 double, big-endian).
    #[inline]
    pub fn put_f64(&mut self, v: f64) {
        self.buf.put_f64(v);
    }

    /// `bool`: 0 or 1 as an `int`.
    #[inline]
    pub fn put_bool(&mut self, v: bool) {
        self.buf.put_u32(v as u32);
    }

    fn put_padded(&mut self, data: &[u8]) {
        self.buf.reserve(data.len() + 3);
        self.buf.put_slice(data);
        self.buf.put_bytes(0, padding(data.len()));
    }

    /// `opaque name[N]`: exactly `expected_len` bytes, no length prefix, zero-padded.
    pub fn put_opaque_fixed(&mut self, data: &[u8], expected_len: usize) -> Result<(), XdrError> {
        if data.len() != expected_len {
            return Err(XdrError::FixedLengthMismatch {
                expected: expected_len,
                actual: data.len(),
            });
        }
        self.put_padded(data);
        Ok(())
    }

    fn check_bound(len: usize, max: u32) -> Result<u32, XdrError> {
        match u32::try_from(len) {
            Ok(l) if l <= max => Ok(l),
            _ => Err(XdrError::LengthExceedsBound {
                len: len as u64,
                max,
            }),
        }
    }

    /// `opaque name<max>`: length prefix, bytes, zero padding.
    pub fn put_opaque(&mut self, data: &[u8], max: u32) -> Result<(), XdrError> {
        let len = Self::check_bound(data.len(), max)?;
        self.buf.put_u32(len);
        self.put_padded(data);
        Ok(())
    }

    /// `string name<max>`: like opaque; `max` counts bytes.
    pub fn put_string(&mut self, s: &str, max: u32) -> Result<(), XdrError> {
        self.put_opaque(s.as_bytes(), max)
    }

    /// `T name<max>` with a custom element encoder (used by generated code for elements
    /// that carry bounds of their own).
    pub fn put_var_array_with<T>(
        &mut self,
        items: &[T],
        max: u32,
        mut each: impl FnMut(&mut Self, &T) -> Result<(), XdrError>,
    ) -> Result<(), XdrError> {
        let len = Self::check_bound(items.len(), max)?;
        let start = self.buf.len();
        self.buf.put_u32(len);
        for item in items {
            if let Err(e) = each(self, item) {
                self.buf.truncate(start);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `T name<max>` for elements that encode themselves.
    pub fn put_var_array<T: XdrEncode>(&mut self, items: &[T], max: u32) -> Result<(), XdrError> {
        self.put_var_array_with(items, max, |w, item| item.encode(w))
    }

    /// `T name[N]` with a custom element encoder: exactly `expected_len` elements, no
    /// length prefix.
    pub fn put_fixed_array_with<T>(
        &mut self,
        items: &[T],
        expected_len: usize,
        mut each: impl FnMut(&mut Self, &T) -> Result<(), XdrError>,
    ) -> Result<(), XdrError> {
        if items.len() != expected_len {
            return Err(XdrError::FixedLengthMismatch {
                expected: expected_len,
                actual: items.len(),
            });
        }
        let start = self.buf.len();
        for item in items {
            if let Err(e) = each(self, item) {
                self.buf.truncate(start);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `T *name` with a custom encoder for the present value.
    pub fn put_optional_with<T>(
        &mut self,
        value: Option<&T>,
        each: impl FnOnce(&mut Self, &T) -> Result<(), XdrError>,
    ) -> Result<(), XdrError> {
        match value {
            None => {
                self.put_bool(false);
                Ok(())
            }
            Some(v) => {
                let start = self.buf.len();
                self.put_bool(true);
                each(self, v).inspect_err(|_| self.buf.truncate(start))
            }
        }
    }
}
