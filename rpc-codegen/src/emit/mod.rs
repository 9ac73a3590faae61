//! The emitters: Rust items from the intermediate model ([`crate::ir`]).
//!
//! A [`ir::Service`] becomes, whichever front end it came from:
//!
//! * [`service_info`]: the `{BASE}_PROCEDURES` table and the `{BASE}_INTERFACE` static;
//! * [`client`]: the async and blocking clients;
//! * [`server`]: the server trait and its adapter.
//!
//! The type definitions' items come from the checked spec itself ([`types`]).
//!
//! Only the payload code differs between an XDR and a protobuf method, and it is chosen
//! in one place, [`codec::wire`], by the method's [`ir::Codec`]. [`xdr`] is also what the
//! type definitions' `XdrEncode`/`XdrDecode` impls are made of.

mod client;
mod codec;
mod protobuf;
mod server;
mod service_info;
mod types;
mod xdr;

use proc_macro2::{Ident as RIdent, TokenStream};
use quote::quote;

use crate::ir::{self, Method, Types};
use crate::model::Spec;
use crate::naming::{
    blocking_client_name, client_name, ident, interface_static, procedures_static, server_name,
};
use codec::Wire;

/// The items of a checked spec: its definitions' (from the spec) and its services'
/// (from the spec lowered into the intermediate model).
pub(crate) fn file(spec: &Spec) -> TokenStream {
    let module = ir::lower(spec);
    let mut items = types::Generator::new(spec, &module.types).items();
    for svc in &module.services {
        items.extend(service(svc, &module.types));
    }
    items
}

/// The items of one service: its statics, clients, server trait and adapter. `types`
/// resolves the named types of its XDR methods.
pub(crate) fn service(svc: &ir::Service, types: &Types) -> TokenStream {
    let service = Service::new(svc, types);
    let mut out = service_info::items(&service);
    out.extend(client::items(&service));
    out.extend(server::items(&service));
    out
}

/// A service with the names of its items and its methods' pieces, as every emitter
/// needs them.
struct Service<'s> {
    svc: &'s ir::Service,
    info_name: RIdent,
    procs_name: RIdent,
    trait_name: RIdent,
    client_name: RIdent,
    blocking_name: RIdent,
    server_name: RIdent,
    /// The id as the docs show it (`0x20000001`).
    id_text: String,
    procs: Vec<Proc<'s>>,
}

impl<'s> Service<'s> {
    fn new(svc: &'s ir::Service, types: &Types) -> Self {
        let base = &svc.rust_base;
        Service {
            svc,
            info_name: ident(&interface_static(base)),
            procs_name: ident(&procedures_static(base)),
            trait_name: ident(base),
            client_name: ident(&client_name(base)),
            blocking_name: ident(&blocking_client_name(base)),
            server_name: ident(&server_name(base)),
            id_text: format!("{:#010x}", svc.id),
            procs: svc.methods.iter().map(|m| Proc::new(m, types)).collect(),
        }
    }
}

/// One method's pieces.
struct Proc<'s> {
    method: &'s Method,
    /// The client methods' docs.
    docs: TokenStream,
    /// The server trait method's docs.
    handler_docs: TokenStream,
    name: RIdent,
    start: RIdent,
    params: Vec<TokenStream>,
    arg_names: Vec<RIdent>,
    ret: TokenStream,
    /// `self` + `ctx` + the arguments exceed clippy's limit of 7.
    too_many: bool,
    inline: bool,
    wire: Wire,
}

impl<'s> Proc<'s> {
    fn new(method: &'s Method, types: &Types) -> Self {
        let wire = codec::wire(method, types);
        Proc {
            method,
            docs: docs_or(&method.docs, || format!("Calls `{}`.", method.name)),
            handler_docs: docs_or(&method.docs, || {
                format!("Handles a call of `{}`.", method.name)
            }),
            name: ident(&method.rust_name),
            start: ident(&method.start_name),
            params: wire.params.clone(),
            arg_names: codec::param_idents(method),
            ret: wire.ret.clone(),
            too_many: wire.params.len() + 2 > 7,
            inline: method.inline,
            wire,
        }
    }

    /// `#[allow(clippy::too_many_arguments)]` where needed.
    fn allow_many(&self) -> TokenStream {
        if self.too_many {
            quote!(#[allow(clippy::too_many_arguments)])
        } else {
            TokenStream::new()
        }
    }
}

/// One `#[doc]` line.
fn doc(text: &str) -> TokenStream {
    // The lexer already breaks lines at a bare carriage return; docs from another
    // front end might still hold one, and rustc rejects it in a doc comment.
    let line = format!(" {}", text.replace('\r', " "));
    quote!(#[doc = #line])
}

/// The docs as `#[doc]` attributes, or a generated one-liner when there are none.
fn docs_or(docs: &[String], fallback: impl FnOnce() -> String) -> TokenStream {
    if docs.is_empty() {
        return doc(&fallback());
    }
    docs.iter()
        .map(|l| {
            let line = if l.is_empty() {
                String::new()
            } else {
                format!(" {l}")
            };
            quote!(#[doc = #line])
        })
        .collect()
}

/// A generated summary line followed by the interface's docs.
fn interface_doc(docs: &[String], summary: &str) -> TokenStream {
    let mut out = doc(summary);
    if !docs.is_empty() {
        out.extend(quote!(#[doc = ""]));
        out.extend(docs_or(docs, String::new));
    }
    out
}
