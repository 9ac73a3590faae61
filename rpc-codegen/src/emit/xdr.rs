//! XDR (RFC 4506) code for resolved types: the Rust type of a resolved [`Type`], and the
//! expressions that write it with an `XdrWriter` `w` and read it with an `XdrReader`
//! `r`. The type definitions' impls and the XDR methods' payloads both use it.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::codec::Wire;
use crate::ir::{Bound, Type, Types};
use crate::naming::{ident, upper_camel};

/// Where a value to encode lives.
#[derive(Clone)]
pub(crate) enum Place {
    /// A place expression of the value's type (`self.x`, `ret`, `a`).
    Owned(TokenStream),
    /// An identifier bound to a reference to the value (`item`, `value`).
    Ref(TokenStream),
}

impl Place {
    /// An expression of type `&T`.
    fn by_ref(&self) -> TokenStream {
        match self {
            Place::Owned(p) => quote!(&#p),
            Place::Ref(r) => r.clone(),
        }
    }

    /// An expression of type `T` (for `Copy` types).
    fn by_copy(&self) -> TokenStream {
        match self {
            Place::Owned(p) => p.clone(),
            Place::Ref(r) => quote!(*#r),
        }
    }

    /// The place itself, for method calls (`self.x.as_ref()`, `item.as_ref()`).
    fn expr(&self) -> TokenStream {
        match self {
            Place::Owned(p) | Place::Ref(p) => p.clone(),
        }
    }
}

/// A primitive XDR type: its writer and reader methods.
fn primitive(ty: &Type) -> Option<(&'static str, &'static str)> {
    Some(match ty {
        Type::Bool => ("put_bool", "get_bool"),
        Type::Int => ("put_i32", "get_i32"),
        Type::UnsignedInt => ("put_u32", "get_u32"),
        Type::Hyper => ("put_i64", "get_i64"),
        Type::UnsignedHyper => ("put_u64", "get_u64"),
        Type::Float => ("put_f32", "get_f32"),
        Type::Double => ("put_f64", "get_f64"),
        _ => return None,
    })
}

/// A length as a `usize` literal.
fn len_lit(len: usize) -> Literal {
    Literal::usize_unsuffixed(len)
}

/// The XDR code generator over one file's typedefs.
#[derive(Clone, Copy)]
pub(crate) struct Xdr<'t> {
    types: &'t Types,
}

impl<'t> Xdr<'t> {
    /// XDR code for types that resolve through `types`.
    pub(crate) fn new(types: &'t Types) -> Self {
        Xdr { types }
    }

    /// The Rust type of a resolved type.
    pub(crate) fn rust_type(&self, ty: &Type) -> TokenStream {
        match ty {
            Type::Void => quote!(()),
            Type::Bool => quote!(bool),
            Type::Int => quote!(i32),
            Type::UnsignedInt => quote!(u32),
            Type::Hyper => quote!(i64),
            Type::UnsignedHyper => quote!(u64),
            Type::Float => quote!(f32),
            Type::Double => quote!(f64),
            Type::String { .. } => quote!(::std::string::String),
            Type::FixedOpaque { len } => {
                let len = len_lit(*len);
                quote!([u8; #len])
            }
            Type::VarOpaque { .. } => quote!(::rpc_core::Bytes),
            Type::FixedArray { elem, len } => {
                let elem = self.rust_type(elem);
                let len = len_lit(*len);
                quote!([#elem; #len])
            }
            Type::VarArray { elem, .. } => {
                let elem = self.rust_type(elem);
                quote!(::std::vec::Vec<#elem>)
            }
            Type::Optional { elem, boxed } => {
                let elem = self.rust_type(elem);
                if *boxed {
                    quote!(::core::option::Option<::std::boxed::Box<#elem>>)
                } else {
                    quote!(::core::option::Option<#elem>)
                }
            }
            Type::Named(n) => {
                let id = ident(&upper_camel(n));
                quote!(#id)
            }
        }
    }

    /// Whether the Rust type's own `XdrEncode`/`XdrDecode` impls produce exactly the
    /// declaration's encoding (no bound to pass, no fixed opaque).
    fn plain(&self, ty: &Type) -> bool {
        match self.types.resolve(ty) {
            Type::String { max } | Type::VarOpaque { max } => max.is_none(),
            Type::FixedOpaque { .. } => false,
            Type::FixedArray { elem, .. } | Type::Optional { elem, .. } => self.plain(elem),
            Type::VarArray { elem, max } => max.is_none() && self.plain(elem),
            _ => true,
        }
    }

    /// A bound as a `u32` expression: the constant's name if it was written as one,
    /// `u32::MAX` for `<>`.
    fn bound(&self, max: &Option<Bound>) -> TokenStream {
        match max {
            None => quote!(u32::MAX),
            Some(Bound {
                constant: Some(c), ..
            }) => {
                let id = ident(c);
                quote!(#id)
            }
            Some(Bound { value, .. }) => {
                let n = Literal::u32_unsuffixed(*value);
                quote!(#n)
            }
        }
    }

    /// A statement writing the value at `place` with writer `w`.
    pub(crate) fn encode_stmt(&self, ty: &Type, place: &Place) -> TokenStream {
        let ty = self.types.resolve(ty);
        if matches!(ty, Type::Void) {
            return TokenStream::new();
        }
        if let Some((put, _)) = primitive(ty) {
            let put = format_ident!("{}", put);
            let v = place.by_copy();
            return quote!(w.#put(#v););
        }
        let e = self.encode_expr(ty, place);
        quote!(#e?;)
    }

    /// An expression of type `Result<(), XdrError>` writing the value at `place`.
    fn encode_expr(&self, ty: &Type, place: &Place) -> TokenStream {
        let ty = self.types.resolve(ty);
        match ty {
            Type::Void => quote!(Ok(())),
            Type::String { max } => {
                let (v, max) = (place.by_ref(), self.bound(max));
                quote!(w.put_string(#v, #max))
            }
            Type::VarOpaque { max } => {
                // A `Bytes`: the shared-descriptor path sends a large one by reference
                // when the writer shares (the client's requests); otherwise it is copied.
                let (v, max) = (place.by_ref(), self.bound(max));
                quote!(w.put_opaque_shared(#v, #max))
            }
            Type::FixedOpaque { len } => {
                let (v, len) = (place.by_ref(), len_lit(*len));
                quote!(w.put_opaque_fixed(#v, #len))
            }
            Type::FixedArray { elem, len } if !self.plain(elem) => {
                let (v, len) = (place.by_ref(), len_lit(*len));
                let each = self.encode_expr(elem, &Place::Ref(quote!(item)));
                quote!(w.put_fixed_array_with(#v, #len, |w, item| #each))
            }
            Type::VarArray { elem, max } => {
                let (v, max) = (place.by_ref(), self.bound(max));
                if self.plain(elem) {
                    quote!(w.put_var_array(#v, #max))
                } else {
                    let each = self.encode_expr(elem, &Place::Ref(quote!(item)));
                    quote!(w.put_var_array_with(#v, #max, |w, item| #each))
                }
            }
            Type::Optional { elem, boxed } if !self.plain(elem) => {
                let p = place.expr();
                let opt = if *boxed {
                    quote!(#p.as_deref())
                } else {
                    quote!(#p.as_ref())
                };
                let each = self.encode_expr(elem, &Place::Ref(quote!(v)));
                quote!(w.put_optional_with(#opt, |w, v| #each))
            }
            _ => {
                let v = place.by_ref();
                quote!(w.put(#v))
            }
        }
    }

    /// An expression of type `Result<T, XdrError>` reading one value with reader `r`.
    pub(crate) fn decode_expr(&self, ty: &Type) -> TokenStream {
        let ty = self.types.resolve(ty);
        if let Some((_, get)) = primitive(ty) {
            let get = format_ident!("{}", get);
            return quote!(r.#get());
        }
        match ty {
            Type::Void => quote!(Ok(())),
            Type::String { max } => {
                let max = self.bound(max);
                quote!(r.get_string(#max))
            }
            Type::VarOpaque { max } => {
                let max = self.bound(max);
                quote!(r.get_opaque(#max))
            }
            Type::FixedOpaque { len } => {
                let len = len_lit(*len);
                quote!(r.get_opaque_fixed::<#len>())
            }
            Type::FixedArray { elem, len } => {
                let len = len_lit(*len);
                let each = self.decode_expr(elem);
                quote!(r.get_fixed_array_with::<_, #len>(|r| #each))
            }
            Type::VarArray { elem, max } => {
                let max = self.bound(max);
                if self.plain(elem) && primitive(self.types.resolve(elem)).is_none() {
                    let elem_ty = self.rust_type(elem);
                    quote!(r.get_var_array::<#elem_ty>(#max))
                } else {
                    let each = self.decode_expr(elem);
                    quote!(r.get_var_array_with(#max, |r| #each))
                }
            }
            Type::Optional { elem, boxed } => {
                let each = self.decode_expr(elem);
                if *boxed {
                    quote!(r.get_optional_with(|r| #each.map(::std::boxed::Box::new)))
                } else {
                    quote!(r.get_optional_with(|r| #each))
                }
            }
            _ => {
                let t = self.rust_type(ty);
                quote!(r.get::<#t>())
            }
        }
    }

    /// How an XDR method's arguments (named `names`, of types `args`) and result travel.
    pub(super) fn wire(&self, names: &[proc_macro2::Ident], args: &[Type], ret: &Type) -> Wire {
        let params = args
            .iter()
            .zip(names)
            .map(|(a, n)| {
                let ty = self.rust_type(a);
                quote!(#n: #ty)
            })
            .collect();
        let encodes: Vec<TokenStream> = args
            .iter()
            .zip(names)
            .map(|(a, n)| match self.types.resolve(a) {
                // An owned `String` argument moves into the writer: a long one is sent by
                // reference to its own buffer (the shared-descriptor path), not copied.
                Type::String { max } => {
                    let max = self.bound(max);
                    quote!(w.put_string_shared(#n, #max)?;)
                }
                _ => self.encode_stmt(a, &Place::Owned(quote!(#n))),
            })
            .collect();
        let encode = if encodes.is_empty() {
            quote!(|_| Ok(()))
        } else {
            quote!(move |w| { #(#encodes)* Ok(()) })
        };
        let (decode, encode_ret) = match self.types.resolve(ret) {
            Type::Void => (quote!(|_| Ok(())), None),
            _ => {
                let d = self.decode_expr(ret);
                let enc = self.encode_stmt(ret, &Place::Owned(quote!(ret)));
                (quote!(|r| #d), Some(enc))
            }
        };
        let (decode_args, unpack) = match (args, names) {
            ([], _) => (quote!(|_| Ok(())), quote!(decoded?;)),
            ([a0], [n0]) => {
                let d = self.decode_expr(a0);
                (quote!(|r| #d), quote!(let #n0 = decoded?;))
            }
            _ => {
                let decodes = args.iter().map(|a| self.decode_expr(a));
                (
                    quote!(|r| Ok((#(#decodes?),*))),
                    quote!(let (#(#names),*) = decoded?;),
                )
            }
        };
        Wire {
            params,
            ret: self.rust_type(ret),
            encode,
            decode,
            decode_args,
            unpack,
            encode_ret,
        }
    }
}
