//! Protobuf payloads (prost): a method's request message is the whole call payload, its
//! response message the whole reply payload.

use proc_macro2::{Ident as RIdent, TokenStream};
use quote::quote;

use super::codec::Wire;

/// How a protobuf method's request (the one parameter, named `names[0]`, of Rust type
/// `request`) and response travel.
pub(super) fn wire(names: &[RIdent], request: &str, response: &str) -> Wire {
    let input = rust_type(request);
    let output = rust_type(response);
    let fallback;
    let name = match names.first() {
        Some(n) => n,
        None => {
            fallback = crate::naming::ident("request");
            &fallback
        }
    };
    let to_xdr_error = quote!(|e| ::rpc_core::xdr::XdrError::foreign("protobuf", e));
    Wire {
        params: vec![quote!(#name: #input)],
        ret: output.clone(),
        encode: quote!(|w| ::prost::Message::encode(&#name, w.buf_mut()).map_err(#to_xdr_error)),
        decode: quote!(|r| <#output as ::prost::Message>::decode(r.take_rest()).map_err(#to_xdr_error)),
        decode_args: quote!(|r| <#input as ::prost::Message>::decode(r.take_rest()).map_err(#to_xdr_error)),
        unpack: quote!(let #name = decoded?;),
        encode_ret: Some(
            quote!(::prost::Message::encode(&ret, w.buf_mut()).map_err(#to_xdr_error)?;),
        ),
    }
}

/// A Rust type path as prost-build wrote it (`HelloRequest`, `super::common::Point`,
/// `::prost_types::Empty`).
fn rust_type(path: &str) -> TokenStream {
    path.parse().unwrap_or_else(|_| {
        let message = format!("rpc-codegen: `{path}` is not a Rust type path");
        quote!(::core::compile_error!(#message))
    })
}
