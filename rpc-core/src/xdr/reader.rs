use bytes::Bytes;

use super::{padding, XdrDecode, XdrError};

/// How deeply values may nest by default while decoding (see [`XdrReader::with_max_depth`]).
pub const DEFAULT_MAX_DEPTH: u32 = 256;

/// Reads XDR items from a [`Bytes`] buffer.
///
/// Every read checks the remaining length first; nothing panics on any input. Variable
/// opaques are returned as zero-copy slices of the buffer.
///
/// # Nesting limit
///
/// Decoding a recursive type (`struct Node { Node *next; }`) recurses once per level, so
/// a peer could otherwise overflow the stack with a few hundred kilobytes of nested
/// optionals. Every optional and every array being decoded counts one level
/// ([`XdrReader::nested`]); past the reader's limit ([`DEFAULT_MAX_DEPTH`] unless set
/// with [`XdrReader::with_max_depth`]) decoding stops with
/// [`XdrError::DepthExceeded`]. Structs and unions do not count: a type can only
/// contain itself through an optional or an array, so those two bound every recursion,
/// and a linked list (`struct Node { T item; Node *next; }`, the XDR idiom for a list)
/// of up to the limit's length decodes. The limit bounds the stack, not the size: a
/// list of a million elements in an array is one level.
///
/// # Allocation
///
/// A length prefix is checked against the declared bound and the bytes left before
/// anything is allocated, and arrays reserve at most as many bytes of memory as remain
/// in the input (then grow as elements actually decode), so decoding never reserves
/// more than a small constant times the input's length.
#[derive(Debug)]
pub struct XdrReader<'a> {
    buf: &'a Bytes,
    pos: usize,
    depth: u32,
    max_depth: u32,
    /// Bytes that arrays may still reserve ahead of decoding (starts at the input's
    /// length; see [`XdrReader::capacity_for`]).
    reserve_budget: usize,
}

impl<'a> XdrReader<'a> {
    /// A reader over the whole of `buf`, with the default nesting limit.
    pub fn new(buf: &'a Bytes) -> Self {
        XdrReader::with_max_depth(buf, DEFAULT_MAX_DEPTH)
    }

    /// A reader over the whole of `buf` that refuses values nested more than
    /// `max_depth` levels deep (optionals and arrays each count one).
    ///
    /// ```
    /// use rpc_core::xdr::{XdrError, XdrReader};
    /// // Three nested `int **` levels: present, present, absent.
    /// let bytes = bytes::Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    /// let mut r = XdrReader::with_max_depth(&bytes, 1);
    /// let e = r.get::<Option<Option<Option<i32>>>>().unwrap_err();
    /// assert_eq!(e, XdrError::DepthExceeded { limit: 1 });
    /// ```
    pub fn with_max_depth(buf: &'a Bytes, max_depth: u32) -> Self {
        XdrReader {
            buf,
            pos: 0,
            depth: 0,
            max_depth,
            reserve_budget: buf.len(),
        }
    }

    /// The nesting limit.
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// How many levels deep the reader is now.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Runs `decode` one nesting level deeper: [`XdrError::DepthExceeded`] if that is
    /// past the limit. Optionals and arrays use it themselves; a hand-written decoder
    /// that recurses by another route should wrap each level in it.
    #[inline]
    pub fn nested<T>(
        &mut self,
        decode: impl FnOnce(&mut Self) -> Result<T, XdrError>,
    ) -> Result<T, XdrError> {
        if self.depth >= self.max_depth {
            return Err(XdrError::DepthExceeded {
                limit: self.max_depth,
            });
        }
        self.depth += 1;
        let out = decode(self);
        self.depth -= 1;
        out
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes every byte not yet read, as a zero-copy slice of the input: for a payload
    /// in another encoding than XDR (the protobuf messages of `.proto` services). The
    /// reader is then at the end, so [`XdrReader::finish`] succeeds.
    ///
    /// ```
    /// let bytes = bytes::Bytes::from_static(&[0, 0, 0, 7, 0x0a, 0x01, b'x']);
    /// let mut r = rpc_core::xdr::XdrReader::new(&bytes);
    /// assert_eq!(r.get_u32().unwrap(), 7);
    /// assert_eq!(&r.take_rest()[..], &[0x0a, 0x01, b'x']);
    /// r.finish().unwrap();
    /// ```
    pub fn take_rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        rest
    }

    /// Succeeds only if every byte was read.
    pub fn finish(&self) -> Result<(), XdrError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError::TrailingBytes(n)),
        }
    }

    /// Reads any decodable value.
    #[inline]
    pub fn get<T: XdrDecode>(&mut self) -> Result<T, XdrError> {
        T::decode(self)
    }

    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let remaining = self.remaining();
        if remaining < N {
            return Err(XdrError::UnexpectedEof {
                needed: N,
                remaining,
            });
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    /// `unsigned int`.
    #[inline]
    pub fn get_u32(&mut self) -> Result<u32, XdrError> {
        self.take::<4>().map(u32::from_be_bytes)
    }

    /// `int`.
    #[inline]
    pub fn get_i32(&mut self) -> Result<i32, XdrError> {
        self.take::<4>().map(i32::from_be_bytes)
    }

    /// `unsigned hyper`.
    #[inline]
    pub fn get_u64(&mut self) -> Result<u64, XdrError> {
        self.take::<8>().map(u64::from_be_bytes)
    }

    /// `hyper`.
    #[inline]
    pub fn get_i64(&mut self) -> Result<i64, XdrError> {
        self.take::<8>().map(i64::from_be_bytes)
    }

    /// `float`.
    #[inline]
    pub fn get_f32(&mut self) -> Result<f32, XdrError> {
        self.take::<4>().map(f32::from_be_bytes)
    }

    /// `double`.
    #[inline]
    pub fn get_f64(&mut self) -> Result<f64, XdrError> {
        self.take::<8>().map(f64::from_be_bytes)
    }

    /// `bool`: anything but 0 or 1 is [`XdrError::InvalidBool`].
    #[inline]
    pub fn get_bool(&mut self) -> Result<bool, XdrError> {
        match self.get_u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::InvalidBool(v)),
        }
    }

    /// Takes `len` data bytes plus their padding, checking the padding is zero.
    fn take_padded(&mut self, len: usize) -> Result<Bytes, XdrError> {
        let pad = padding(len);
        let remaining = self.remaining();
        // Saturating: `len` comes from the caller (`get_opaque_fixed_bytes`) and may be
        // near `usize::MAX`; once checked against `remaining`, the sums below cannot wrap.
        let needed = len.saturating_add(pad);
        if remaining < needed {
            return Err(XdrError::UnexpectedEof { needed, remaining });
        }
        let data = self.buf.slice(self.pos..self.pos + len);
        if self.buf[self.pos + len..self.pos + len + pad]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(XdrError::NonZeroPadding);
        }
        self.pos += len + pad;
        Ok(data)
    }

    /// Reads a length prefix and checks it against `max` and against the input left,
    /// assuming each element takes at least `min_elem_size` bytes.
    fn get_len(&mut self, max: u32, min_elem_size: u64) -> Result<usize, XdrError> {
        let len = self.get_u32()?;
        if len > max {
            return Err(XdrError::LengthExceedsBound {
                len: len as u64,
                max,
            });
        }
        let needed = len as u64 * min_elem_size;
        if needed > self.remaining() as u64 {
            return Err(XdrError::LengthExceedsInput {
                len,
                needed,
                remaining: self.remaining(),
            });
        }
        Ok(len as usize)
    }

    /// `opaque name[N]` into a fixed array.
    pub fn get_opaque_fixed<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let data = self.take_padded(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&data);
        Ok(out)
    }

    /// `opaque name[len]` as a zero-copy slice.
    pub fn get_opaque_fixed_bytes(&mut self, len: usize) -> Result<Bytes, XdrError> {
        self.take_padded(len)
    }

    /// `opaque name<max>` as a zero-copy slice of the input.
    pub fn get_opaque(&mut self, max: u32) -> Result<Bytes, XdrError> {
        let len = self.get_len(max, 1)?;
        self.take_padded(len)
    }

    /// `string name<max>`; must be valid UTF-8.
    pub fn get_string(&mut self, max: u32) -> Result<String, XdrError> {
        let data = self.get_opaque(max)?;
        String::from_utf8(data.to_vec()).map_err(|_| XdrError::InvalidUtf8)
    }

    /// `T name<max>` with a custom element decoder.
    pub fn get_var_array_with<T>(
        &mut self,
        max: u32,
        mut each: impl FnMut(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Vec<T>, XdrError> {
        // Every XDR item is at least 4 bytes, so `len * 4` bytes must remain.
        let len = self.get_len(max, 4)?;
        self.nested(|r| {
            let mut out = Vec::with_capacity(r.capacity_for::<T>(len));
            for _ in 0..len {
                out.push(each(r)?);
            }
            Ok(out)
        })
    }

    /// How many `T`s to reserve for `len` announced elements.
    ///
    /// An element can be far larger in memory than its 4-byte minimum on the wire
    /// (`hyper a[64]` is 512 bytes), so trusting `len` would reserve up to
    /// `size_of::<T>() / 4` times the input, and arrays nested in arrays would each do
    /// it again. So all the reservations made for one input together stay within the
    /// input's length (a budget the reader keeps); past its reservation a vector grows
    /// as elements actually decode, each of which consumed input. A flat array of
    /// primitives still gets its whole capacity at once.
    fn capacity_for<T>(&mut self, len: usize) -> usize {
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return 0;
        }
        let n = len.min(self.reserve_budget / size);
        self.reserve_budget -= n * size;
        n
    }

    /// `T name<max>` for elements that decode themselves.
    pub fn get_var_array<T: XdrDecode>(&mut self, max: u32) -> Result<Vec<T>, XdrError> {
        self.get_var_array_with(max, T::decode)
    }

    /// `T name[N]` with a custom element decoder.
    pub fn get_fixed_array_with<T, const N: usize>(
        &mut self,
        mut each: impl FnMut(&mut Self) -> Result<T, XdrError>,
    ) -> Result<[T; N], XdrError> {
        let needed = N.saturating_mul(4);
        if needed > self.remaining() {
            return Err(XdrError::UnexpectedEof {
                needed,
                remaining: self.remaining(),
            });
        }
        self.nested(|r| {
            // `N * 4` bytes remain, so `N` elements cost at most `size_of::<T>() / 4`
            // times the input; the same cap as variable arrays keeps it to the input.
            let mut out = Vec::with_capacity(r.capacity_for::<T>(N));
            for _ in 0..N {
                out.push(each(r)?);
            }
            // The loop pushed exactly N elements.
            out.try_into()
                .map_err(|v: Vec<T>| XdrError::FixedLengthMismatch {
                    expected: N,
                    actual: v.len(),
                })
        })
    }

    /// `T *name` with a custom decoder for the present value.
    pub fn get_optional_with<T>(
        &mut self,
        each: impl FnOnce(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Option<T>, XdrError> {
        if self.get_bool()? {
            self.nested(|r| each(r).map(Some))
        } else {
            Ok(None)
        }
    }
}
