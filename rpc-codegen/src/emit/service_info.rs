//! A service's description for the runtime: the `{BASE}_PROCEDURES` table (name,
//! number and flags of every procedure) and the `{BASE}_INTERFACE` static (name, id,
//! version, default semantics).

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{doc, Service};
use crate::ir::Semantics;

/// The procedure table and the `InterfaceInfo` static of `service`.
pub(super) fn items(service: &Service<'_>) -> TokenStream {
    let Service {
        svc,
        info_name,
        procs_name,
        id_text,
        ..
    } = service;
    let (iname, version) = (&svc.name, svc.version);
    let id_lit = Literal::u32_unsuffixed(svc.id);
    let version_lit = Literal::u32_unsuffixed(version);
    let nprocs_lit = Literal::usize_unsuffixed(svc.methods.len());
    let proc_infos = svc.methods.iter().map(|m| {
        let pname = &m.name;
        let number = Literal::u32_unsuffixed(m.number);
        let (oneway, idempotent) = (m.oneway, m.idempotent);
        quote! {
            ::rpc_core::ProcedureInfo {
                name: #pname,
                number: #number,
                oneway: #oneway,
                idempotent: #idempotent,
            }
        }
    });
    let procs_doc = doc(&format!(
        "The procedures of the `{iname}` interface, in declaration order."
    ));
    let (default_semantics, semantics_text) = match svc.default_semantics {
        Some(Semantics::AtMostOnce) => (
            quote!(::core::option::Option::Some(
                ::rpc_core::Semantics::AtMostOnce
            )),
            ", at-most-once by default",
        ),
        Some(Semantics::AtLeastOnce) => (
            quote!(::core::option::Option::Some(
                ::rpc_core::Semantics::AtLeastOnce
            )),
            ", at-least-once by default",
        ),
        Some(Semantics::ExactlyOnce) => (
            quote!(::core::option::Option::Some(
                ::rpc_core::Semantics::ExactlyOnce
            )),
            ", exactly-once by default",
        ),
        None => (quote!(::core::option::Option::None), ""),
    };
    let info_doc = doc(&format!(
        "The `{iname}` interface: id `{id_text}`, version {version}{semantics_text}."
    ));
    quote! {
        #procs_doc
        pub static #procs_name: [::rpc_core::ProcedureInfo; #nprocs_lit] = [#(#proc_infos),*];

        #info_doc
        pub static #info_name: ::rpc_core::InterfaceInfo = ::rpc_core::InterfaceInfo {
            name: #iname,
            id: #id_lit,
            version: #version_lit,
            procedures: &#procs_name,
            default_semantics: #default_semantics,
        };
    }
}
