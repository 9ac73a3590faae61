//! The fuzz targets' shared code: each module holds the body of one target (in
//! `fuzz_targets/`) with its oracle, so that the regression tests and a plain
//! replay runner can call the same functions.

pub mod frame;
pub mod idl;
pub mod tcp;
pub mod udp;
pub mod xdr;

/// Reads little pieces of fuzzer input as choices.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices drawn from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data }
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        let v = u16::from_be_bytes([self.byte(), self.byte()]) as usize;
        v % n.max(1)
    }

    /// Up to `max` bytes of the input.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}
