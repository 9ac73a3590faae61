//! [`Chain`]: a message held as one or more [`Bytes`] chunks, so the shared-descriptor
//! send path can hand a frame's header and its payload chunks to the protocol without
//! joining them, and each fragment can be sent as a gather list (`sendmsg`).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// A byte string made of chunks, sliced without copying. One chunk (the common case)
/// needs no allocation beyond the chunk itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    first: Bytes,
    rest: Vec<Bytes>,
}

impl Chain {
    /// The concatenation of `chunks` (empty chunks are dropped; nothing is copied).
    pub fn from_chunks(chunks: impl IntoIterator<Item = Bytes>) -> Chain {
        let mut it = chunks.into_iter().filter(|c| !c.is_empty());
        let first = it.next().unwrap_or_default();
        Chain {
            first,
            rest: it.collect(),
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.first.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty() && self.rest.is_empty()
    }

    /// Whether it is one chunk (or empty).
    pub fn is_contiguous(&self) -> bool {
        self.rest.is_empty()
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> + '_ {
        std::iter::once(&self.first)
            .filter(|c| !c.is_empty())
            .chain(self.rest.iter())
    }

    /// The bytes in `range`, sharing the chunks (no copy). An out-of-range end is
    /// clamped to the length.
    pub fn slice(&self, range: Range<usize>) -> Chain {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        if self.rest.is_empty() {
            return Chain::from(self.first.slice(start..end));
        }
        let mut out = Vec::new();
        let mut offset = 0;
        for chunk in self.chunks() {
            let (lo, hi) = (offset, offset + chunk.len());
            offset = hi;
            if hi <= start || lo >= end {
                continue;
            }
            out.push(chunk.slice(start.max(lo) - lo..end.min(hi) - lo));
        }
        Chain::from_chunks(out)
    }

    /// The bytes as one buffer: free for one chunk, a copy otherwise.
    pub fn to_bytes(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.first.clone();
        }
        let mut out = BytesMut::with_capacity(self.len());
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
        out.freeze()
    }
}

impl From<Bytes> for Chain {
    fn from(first: Bytes) -> Chain {
        Chain {
            first,
            rest: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_across_chunks_without_copying() {
        let a = Bytes::from_static(b"hello ");
        let b = Bytes::from(b"big wide ".to_vec());
        let c = Bytes::from_static(b"world");
        let chain = Chain::from_chunks([a.clone(), Bytes::new(), b.clone(), c.clone()]);
        assert_eq!(chain.len(), 20);
        assert_eq!(&chain.to_bytes()[..], b"hello big wide world");
        let mid = chain.slice(4..17);
        assert_eq!(&mid.to_bytes()[..], b"o big wide wo");
        let parts: Vec<&Bytes> = mid.chunks().collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[1].as_ptr(),
            b.as_ptr(),
            "middle chunk shared, not copied"
        );
        // Every split point gives back the whole.
        for cut in 0..=20 {
            let mut joined = chain.slice(0..cut).to_bytes().to_vec();
            joined.extend_from_slice(&chain.slice(cut..20).to_bytes());
            assert_eq!(&joined[..], b"hello big wide world", "cut at {cut}");
        }
        assert!(chain.slice(25..30).is_empty());
        assert_eq!(chain.slice(18..99).to_bytes(), Bytes::from_static(b"ld"));
    }

    #[test]
    fn one_chunk_stays_one_chunk() {
        let chain = Chain::from(Bytes::from_static(b"abcdef"));
        assert!(chain.is_contiguous());
        let s = chain.slice(1..4);
        assert!(s.is_contiguous());
        assert_eq!(&s.to_bytes()[..], b"bcd");
        assert_eq!(Chain::from_chunks([]).len(), 0);
    }
}
