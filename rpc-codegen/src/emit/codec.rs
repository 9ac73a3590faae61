//! The one place the payload code is chosen by a method's [`Codec`]: everything else the
//! emitters write is the same for an XDR and a protobuf method.

use proc_macro2::{Ident as RIdent, TokenStream};

use super::{protobuf, xdr::Xdr};
use crate::ir::{Codec, Method, Types};
use crate::naming::ident;

/// How one method's arguments and result travel: the Rust types and the code that
/// encodes and decodes them, for the clients and the server adapter.
pub(super) struct Wire {
    /// The parameters after `&self` (and the server's `ctx`): `a: i32`.
    pub(super) params: Vec<TokenStream>,
    /// The Rust result type.
    pub(super) ret: TokenStream,
    /// Client: a closure writing the arguments (bound to the parameters' names) with an
    /// `&mut XdrWriter`.
    pub(super) encode: TokenStream,
    /// Client: a closure reading the result from an `&mut XdrReader`.
    pub(super) decode: TokenStream,
    /// Server: the closure given to `rpc_core::server::decode_args`.
    pub(super) decode_args: TokenStream,
    /// Server: a statement binding the parameters' names from `decoded` (the `Result`
    /// that `decode_args` returned).
    pub(super) unpack: TokenStream,
    /// Server: statements writing the handler's result `ret` with `w`; `None` when the
    /// result is `void`.
    pub(super) encode_ret: Option<TokenStream>,
}

/// The parameters' Rust identifiers.
pub(super) fn param_idents(method: &Method) -> Vec<RIdent> {
    method.params.iter().map(|p| ident(p)).collect()
}

/// The payload code of `method`; `types` resolves an XDR method's named types.
pub(super) fn wire(method: &Method, types: &Types) -> Wire {
    let names = param_idents(method);
    match &method.codec {
        Codec::Xdr { args, ret } => Xdr::new(types).wire(&names, args, ret),
        Codec::Protobuf { request, response } => protobuf::wire(&names, request, response),
    }
}
