use thiserror::Error;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum XdrError {
    /// The input ended before the value did.
    #[error("truncated input: needed {needed} more bytes, {remaining} left")]
    UnexpectedEof {
        /// Bytes the next item needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length (prefix or value) is larger than the declaration's bound `<max>`.
    #[error("length {len} exceeds the declared bound {max}")]
    LengthExceedsBound {
        /// The length found.
        len: u64,
        /// The declared bound.
        max: u32,
    },
    /// A length prefix claims more data than the input holds.
    #[error("length prefix {len} needs at least {needed} bytes, only {remaining} left")]
    LengthExceedsInput {
        /// The length prefix.
        len: u32,
        /// The minimum bytes that many items take.
        needed: u64,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A fixed-length item (`opaque[N]`, `T[N]`) had the wrong length when encoding.
    #[error("fixed-length item has {actual} elements, the declaration says {expected}")]
    FixedLengthMismatch {
        /// The declared length.
        expected: usize,
        /// The value's length.
        actual: usize,
    },
    /// Padding bytes after opaque or string data were not zero.
    #[error("non-zero padding byte")]
    NonZeroPadding,
    /// A `bool` (or optional flag) was neither 0 nor 1.
    #[error("invalid bool value {0}")]
    InvalidBool(u32),
    /// An enum value that the enum does not define.
    #[error("invalid value {value} for enum {name}")]
    InvalidEnum {
        /// The enum type's name.
        name: &'static str,
        /// The value found.
        value: i32,
    },
    /// A union discriminant that selects no arm (and the union has no default).
    #[error("invalid discriminant {value} for union {name}")]
    InvalidDiscriminant {
        /// The union type's name.
        name: &'static str,
        /// The discriminant found.
        value: i64,
    },
    /// A string that is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// Values were nested deeper than the reader's limit (optionals and arrays each
    /// count one level; see [`XdrReader::with_max_depth`](super::XdrReader::with_max_depth)).
    #[error("values nested deeper than the limit of {limit} levels")]
    DepthExceeded {
        /// The reader's nesting limit.
        limit: u32,
    },
    /// Bytes were left after the last value.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// A payload in another encoding than XDR (e.g. the protobuf message of a `.proto`
    /// service) could not be encoded or decoded.
    #[error("invalid {encoding} payload: {message}")]
    Foreign {
        /// The encoding (`"protobuf"`).
        encoding: &'static str,
        /// That encoding's description of the problem.
        message: String,
    },
}

impl XdrError {
    /// A [`XdrError::Foreign`] error from another encoding's error.
    ///
    /// ```
    /// let e = rpc_core::xdr::XdrError::foreign("protobuf", "buffer underflow");
    /// assert_eq!(e.to_string(), "invalid protobuf payload: buffer underflow");
    /// ```
    pub fn foreign(encoding: &'static str, error: impl std::fmt::Display) -> Self {
        XdrError::Foreign {
            encoding,
            message: error.to_string(),
        }
    }
}
