use bytes::{BufMut, Bytes, BytesMut};

use super::{padding, XdrEncode, XdrError};

/// Appends XDR items to a growable buffer.
///
/// Writes of primitives cannot fail; writes of bounded items return
/// [`XdrError::LengthExceedsBound`] (or [`XdrError::FixedLengthMismatch`]) and leave the
/// buffer as it was before the call.
///
/// # Shared descriptors
///
/// A writer made with [`XdrWriter::sharing`] does not copy a large `opaque` written with
/// [`XdrWriter::put_opaque_shared`]: it records a reference to the caller's [`Bytes`]
/// (a "shared descriptor") between the copied small items, and [`XdrWriter::finish`]
/// returns the payload as chunks for a vectored write. The encoding on the wire is the
/// same; only the number of copies differs. The default writer copies everything (the
/// reference path).
#[derive(Debug, Default)]
pub struct XdrWriter {
    buf: BytesMut,
    /// Chunks finished before `buf` (only with sharing): copied runs and shared opaques.
    chunks: Vec<Bytes>,
    /// Opaques at least this long are shared rather than copied; `None` copies all.
    share_threshold: Option<usize>,
}

/// The default [`XdrWriter::sharing`] threshold: an `opaque` of at least 1 KiB is sent
/// by reference. Below it, copying costs less than another gather entry.
pub const DEFAULT_SHARE_THRESHOLD: usize = 1024;

impl XdrWriter {
    /// An empty writer.
    pub fn new() -> Self {
        XdrWriter::from_buf(BytesMut::new())
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        XdrWriter::from_buf(BytesMut::with_capacity(capacity))
    }

    /// A writer that appends to `buf` (which may already hold a header).
    pub fn from_buf(buf: BytesMut) -> Self {
        XdrWriter {
            buf,
            chunks: Vec::new(),
            share_threshold: None,
        }
    }

    /// Shares (does not copy) opaques of at least `threshold` bytes written with
    /// [`XdrWriter::put_opaque_shared`]; `None` copies everything.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use rpc_core::xdr::XdrWriter;
    /// let blob = Bytes::from(vec![7u8; 4096]);
    /// let mut w = XdrWriter::with_capacity(64).sharing(Some(1024));
    /// w.put_u32(1);
    /// w.put_opaque_shared(&blob, u32::MAX).unwrap();
    /// w.put_u32(2);
    /// let chunks = w.finish();
    /// // [1, len], the caller's blob itself, [2]
    /// assert_eq!(chunks.len(), 3);
    /// assert_eq!(chunks[1].as_ptr(), blob.as_ptr());
    /// assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 8 + 4096 + 4);
    /// ```
    pub fn sharing(mut self, threshold: Option<usize>) -> Self {
        self.share_threshold = threshold;
        self
    }

    /// Bytes written so far (shared chunks included).
    pub fn len(&self) -> usize {
        self.buf.len() + self.chunks.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some of the payload is held by reference (it is then in several chunks).
    pub fn is_shared(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// The bytes written since the last shared opaque (all of them if none was shared).
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The underlying buffer (the bytes written since the last shared opaque).
    pub fn into_inner(self) -> BytesMut {
        self.buf
    }

    /// The written bytes as one buffer: free for a copying writer, a copy of every chunk
    /// if some opaques were shared (use [`XdrWriter::finish`] to avoid it).
    pub fn into_bytes(self) -> Bytes {
        if self.chunks.is_empty() {
            return self.buf.freeze();
        }
        let mut out = BytesMut::with_capacity(self.len());
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&self.buf);
        out.freeze()
    }

    /// The written bytes as chunks in order, nothing copied: one chunk for a copying
    /// writer (or when nothing was shared), more when opaques were shared. Empty
    /// chunks are left out; an empty payload is one empty chunk.
    pub fn finish(mut self) -> Vec<Bytes> {
        if !self.buf.is_empty() || self.chunks.is_empty() {
            self.chunks.push(self.buf.freeze());
        }
        self.chunks
    }

    /// Takes what was written as a payload: its first chunk and the rest (empty unless
    /// opaques were shared), leaving the writer empty with its buffer's spare capacity,
    /// so it can be reused (see [`XdrWriter::into_inner`]). Allocates nothing when
    /// nothing was shared.
    pub fn split_payload(&mut self) -> (Bytes, Vec<Bytes>) {
        if self.chunks.is_empty() {
            return (self.buf.split().freeze(), Vec::new());
        }
        if !self.buf.is_empty() {
            let last = self.buf.split().freeze();
            self.chunks.push(last);
        }
        let mut chunks = std::mem::take(&mut self.chunks);
        let first = chunks.remove(0);
        (first, chunks)
    }

    /// Writes a variable-length opaque (`opaque<max>`), sharing `data` instead of
    /// copying it when this writer shares and `data` is at least the threshold long.
    pub fn put_opaque_shared(&mut self, data: &Bytes, max: u32) -> Result<(), XdrError> {
        let len = Self::check_bound(data.len(), max)?;
        match self.share_threshold {
            Some(threshold) if data.len() >= threshold => {
                self.put_u32(len);
                if !self.buf.is_empty() {
                    let head = self.buf.split().freeze();
                    self.chunks.push(head);
                }
                self.chunks.push(data.clone());
                self.buf.put_bytes(0, super::padding(data.len()));
                Ok(())
            }
            _ => self.put_opaque(data, max),
        }
    }

    /// The buffer itself, for appending a payload in another encoding than XDR: the
    /// stubs of `.proto` services (`rpc_codegen::proto`) encode their protobuf request
    /// straight into it. What is appended this way is not aligned to 4 bytes, so it
    /// should be the whole payload (or its last item).
    ///
    /// ```
    /// use bytes::BufMut;
    /// let mut w = rpc_core::xdr::XdrWriter::new();
    /// w.buf_mut().put_slice(&[0x0a, 0x01, b'x']);
    /// assert_eq!(w.as_slice(), &[0x0a, 0x01, b'x']);
    /// ```
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
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

    /// Writes a `string<max>` it owns, sharing its bytes instead of copying them when
    /// this writer shares and the string is at least the threshold long (see
    /// [`XdrWriter::put_opaque_shared`]); generated stubs pass their `String` arguments
    /// this way.
    pub fn put_string_shared(&mut self, s: String, max: u32) -> Result<(), XdrError> {
        match self.share_threshold {
            Some(threshold) if s.len() >= threshold => self.put_opaque_shared(&Bytes::from(s), max),
            _ => self.put_string(&s, max),
        }
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
