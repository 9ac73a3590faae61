//! The server side of a service: the trait `{Base}` an implementation provides, and the
//! adapter `{Base}Server<T>` that decodes calls, runs the handlers and encodes their
//! results (`[inline]` handlers synchronously, on the dispatch loop).

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{doc, interface_doc, Proc, Service};

/// The server trait and adapter of `service`.
pub(super) fn items(service: &Service<'_>) -> TokenStream {
    let mut out = trait_items(service);
    out.extend(adapter(service));
    out
}

/// The server trait: one method per procedure (`async` unless `[inline]`).
fn trait_items(service: &Service<'_>) -> TokenStream {
    let Service {
        svc,
        trait_name,
        server_name,
        id_text,
        procs,
        ..
    } = service;
    let (iname, version) = (&svc.name, svc.version);
    let server_name_str = server_name.to_string();
    let trait_methods = procs.iter().map(|p| {
            let Proc {
                handler_docs,
                name,
                params,
                ret,
                ..
            } = p;
            let allow = p.allow_many();
            if p.inline {
                let note = doc(
                    "`[inline]`: a cheap, synchronous handler that a server may run on the \
                     connection's dispatch loop; it must not block.",
                );
                return quote! {
                    #handler_docs
                    #[doc = ""]
                    #note
                    #allow
                    fn #name(&self, ctx: &::rpc_core::CallContext, #(#params),*)
                        -> ::core::result::Result<#ret, ::rpc_core::Status>;
                };
            }
            quote! {
                #handler_docs
                #allow
                fn #name(&self, ctx: &::rpc_core::CallContext, #(#params),*)
                    -> impl ::core::future::Future<Output = ::core::result::Result<#ret, ::rpc_core::Status>> + ::core::marker::Send;
            }
        });
    let trait_doc = interface_doc(
        &svc.docs,
        &format!(
            "Server side of the `{iname}` interface (id `{id_text}`, version {version}): \
                 implement it (with `async fn`s) and serve it with [`{server_name_str}`]."
        ),
    );
    quote! {
        #trait_doc
        pub trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#trait_methods)*
        }
    }
}

/// The adapter `{Base}Server<T>`: decodes a call's arguments, runs the handler and
/// encodes its result, as a `rpc_core::server::Service`.
fn adapter(service: &Service<'_>) -> TokenStream {
    let Service {
        svc,
        info_name,
        trait_name,
        server_name,
        procs,
        ..
    } = service;
    let (iname, base) = (&svc.name, &svc.rust_base);
    let server_name_str = server_name.to_string();
    let call_arms = procs
        .iter()
        .map(|p| {
            let wire = &p.wire;
            let number = Literal::u32_unsuffixed(p.method.number);
            let name = &p.name;
            let names = &p.arg_names;
            let (decode, unpack) = (&wire.decode_args, &wire.unpack);
            if p.inline {
                // Synchronous: runs here, on the worker that called `call`.
                let run = match &wire.encode_ret {
                    None => quote! {
                        self.inner.#name(&ctx, #(#names),*)?;
                        ::rpc_core::server::encode_result(|_| Ok(()))
                    },
                    Some(enc) => quote! {
                        let ret = self.inner.#name(&ctx, #(#names),*)?;
                        ::rpc_core::server::encode_result(|w| {
                            #enc
                            Ok(())
                        })
                    },
                };
                return quote! {
                    #number => {
                        let decoded = ::rpc_core::server::decode_args(&args, #decode);
                        let result = (|| {
                            #unpack
                            #run
                        })();
                        ::std::boxed::Box::pin(::core::future::ready(result))
                    }
                };
            }
            let run = match &wire.encode_ret {
                None => quote! {
                    inner.#name(&ctx, #(#names),*).await?;
                    ::rpc_core::server::encode_result(|_| Ok(()))
                },
                Some(enc) => {
                    quote! {
                        let ret = inner.#name(&ctx, #(#names),*).await?;
                        ::rpc_core::server::encode_result(|w| {
                            #enc
                            Ok(())
                        })
                    }
                }
            };
            quote! {
                #number => {
                    let decoded = ::rpc_core::server::decode_args(&args, #decode);
                    let inner = ::std::sync::Arc::clone(&self.inner);
                    ::std::boxed::Box::pin(async move {
                        #unpack
                        #run
                    })
                }
            }
        })
        .collect::<Vec<_>>();
    let inline_numbers: Vec<Literal> = procs
        .iter()
        .filter(|p| p.inline)
        .map(|p| Literal::u32_unsuffixed(p.method.number))
        .collect();
    let inline_arms = procs
        .iter()
        .filter(|p| p.inline)
        .map(|p| {
            let wire = &p.wire;
            let number = Literal::u32_unsuffixed(p.method.number);
            let name = &p.name;
            let names = &p.arg_names;
            let (decode, unpack) = (&wire.decode_args, &wire.unpack);
            let run = match &wire.encode_ret {
                None => quote! {
                    self.inner.#name(ctx, #(#names),*)?;
                    Ok(())
                },
                Some(enc) => quote! {
                    let ret = self.inner.#name(ctx, #(#names),*)?;
                    ::rpc_core::server::encode_result_into(out, |w| {
                        #enc
                        Ok(())
                    })
                },
            };
            quote! {
                #number => {
                    let decoded = ::rpc_core::server::decode_args(args, #decode);
                    #unpack
                    #run
                }
            }
        })
        .collect::<Vec<_>>();
    let inline_methods = if inline_numbers.is_empty() {
        TokenStream::new()
    } else {
        quote! {
            fn is_inline(&self, procedure: u32) -> bool {
                matches!(procedure, #(#inline_numbers)|*)
            }

            fn call_inline(
                &self,
                procedure: u32,
                ctx: &::rpc_core::CallContext,
                args: &::rpc_core::Bytes,
                out: &mut ::rpc_core::xdr::XdrWriter,
            ) -> ::core::result::Result<(), ::rpc_core::Status> {
                let _ = &out;
                match procedure {
                    #(#inline_arms)*
                    _ => Err(::rpc_core::Status::UnknownProcedure { procedure }),
                }
            }
        }
    };
    let (ctx_param, args_param) = if call_arms.is_empty() {
        (quote!(_ctx), quote!(_args))
    } else {
        (quote!(ctx), quote!(args))
    };
    let server_doc = doc(&format!(
            "Serves an implementation of [`{base}`] (the `{iname}` interface): add it to a server with \
             `Server::builder().add_service({server_name_str}::new(implementation))`."
        ));
    quote! {
        #server_doc
        pub struct #server_name<T: #trait_name> {
            inner: ::std::sync::Arc<T>,
        }

        impl<T: #trait_name> #server_name<T> {
            /// Serves `implementation`.
            pub fn new(implementation: T) -> Self {
                Self::from_arc(::std::sync::Arc::new(implementation))
            }

            /// Serves an implementation that is shared with other code.
            pub fn from_arc(implementation: ::std::sync::Arc<T>) -> Self {
                Self { inner: implementation }
            }

            /// The implementation.
            pub fn get_ref(&self) -> &T {
                &self.inner
            }
        }

        impl<T: #trait_name> ::core::clone::Clone for #server_name<T> {
            fn clone(&self) -> Self {
                Self { inner: ::std::sync::Arc::clone(&self.inner) }
            }
        }

        impl<T: #trait_name> ::core::fmt::Debug for #server_name<T> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#server_name_str)
                    .field("interface", &#info_name.name)
                    .finish_non_exhaustive()
            }
        }

        impl<T: #trait_name> ::rpc_core::server::Service for #server_name<T> {
            fn info(&self) -> &'static ::rpc_core::InterfaceInfo {
                &#info_name
            }

            fn call(
                &self,
                procedure: u32,
                #ctx_param: ::rpc_core::CallContext,
                #args_param: ::rpc_core::Bytes,
            ) -> ::rpc_core::server::ServiceFuture {
                match procedure {
                    #(#call_arms)*
                    _ => ::std::boxed::Box::pin(::core::future::ready(Err(
                        ::rpc_core::Status::UnknownProcedure { procedure },
                    ))),
                }
            }

            #inline_methods
        }
    }
}
