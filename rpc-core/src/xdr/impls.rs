//! [`XdrEncode`]/[`XdrDecode`] for the Rust types the generator emits.

use bytes::Bytes;

use super::{XdrDecode, XdrEncode, XdrError, XdrReader, XdrWriter};

macro_rules! primitive {
    ($t:ty, $put:ident, $get:ident) => {
        impl XdrEncode for $t {
            #[inline]
            fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
                w.$put(*self);
                Ok(())
            }
        }
        impl XdrDecode for $t {
            #[inline]
            fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
                r.$get()
            }
        }
    };
}

primitive!(bool, put_bool, get_bool);
primitive!(i32, put_i32, get_i32);
primitive!(u32, put_u32, get_u32);
primitive!(i64, put_i64, get_i64);
primitive!(u64, put_u64, get_u64);
primitive!(f32, put_f32, get_f32);
primitive!(f64, put_f64, get_f64);

/// `void`: no bytes.
impl XdrEncode for () {
    #[inline]
    fn encode(&self, _w: &mut XdrWriter) -> Result<(), XdrError> {
        Ok(())
    }
}

impl XdrDecode for () {
    #[inline]
    fn decode(_r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(())
    }
}

/// `string<>`.
impl XdrEncode for String {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_string(self, u32::MAX)
    }
}

/// `string<>`.
impl XdrEncode for str {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_string(self, u32::MAX)
    }
}

impl XdrDecode for String {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_string(u32::MAX)
    }
}

/// `opaque<>`.
impl XdrEncode for Bytes {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_opaque(self, u32::MAX)
    }
}

impl XdrDecode for Bytes {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_opaque(u32::MAX)
    }
}

/// `T<>`.
impl<T: XdrEncode> XdrEncode for Vec<T> {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_var_array(self, u32::MAX)
    }
}

impl<T: XdrDecode> XdrDecode for Vec<T> {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_var_array(u32::MAX)
    }
}

/// `T[N]`.
impl<T: XdrEncode, const N: usize> XdrEncode for [T; N] {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_fixed_array_with(self, N, |w, item| item.encode(w))
    }
}

impl<T: XdrDecode, const N: usize> XdrDecode for [T; N] {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_fixed_array_with(T::decode)
    }
}

/// `T *`.
impl<T: XdrEncode> XdrEncode for Option<T> {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        w.put_optional_with(self.as_ref(), |w, v| v.encode(w))
    }
}

impl<T: XdrDecode> XdrDecode for Option<T> {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_optional_with(T::decode)
    }
}

impl<T: XdrEncode + ?Sized> XdrEncode for Box<T> {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        (**self).encode(w)
    }
}

impl<T: XdrDecode> XdrDecode for Box<T> {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        T::decode(r).map(Box::new)
    }
}

impl<T: XdrEncode + ?Sized> XdrEncode for &T {
    fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
        (**self).encode(w)
    }
}

macro_rules! tuple {
    ($($name:ident),+) => {
        /// Procedure argument lists are encoded as the XDR concatenation of the arguments.
        impl<$($name: XdrEncode),+> XdrEncode for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, w: &mut XdrWriter) -> Result<(), XdrError> {
                let ($($name,)+) = self;
                $($name.encode(w)?;)+
                Ok(())
            }
        }
        impl<$($name: XdrDecode),+> XdrDecode for ($($name,)+) {
            fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
                Ok(($($name::decode(r)?,)+))
            }
        }
    };
}

tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);
tuple!(A, B, C, D, E, F, G);
tuple!(A, B, C, D, E, F, G, H);
