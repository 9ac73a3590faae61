//! The clients of a service: the async `{Base}Client<C>`, with a `start_*` method per
//! procedure returning a call handle, and `{Base}BlockingClient<C>`, which runs the
//! async one on a runtime of its own.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{doc, interface_doc, Proc, Service};

/// The async and blocking clients of `service`.
pub(super) fn items(service: &Service<'_>) -> TokenStream {
    let Service {
        svc,
        info_name,
        procs_name,
        client_name,
        blocking_name,
        id_text,
        procs,
        ..
    } = service;
    let (iname, version) = (&svc.name, svc.version);
    let mut out = TokenStream::new();
    let mut client_methods = Vec::new();
    let mut blocking_methods = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let wire = &p.wire;
        let Proc {
            docs,
            name,
            params,
            arg_names,
            ret,
            ..
        } = p;
        let allow = p.allow_many();
        let index = Literal::usize_unsuffixed(i);
        let (encode, decode) = (&wire.encode, &wire.decode);
        let start = &p.start;
        let shown = name.to_string();
        let shown = shown.trim_start_matches("r#");
        let start_doc = doc(&format!(
            "Starts `{shown}` now; await the handle later, poll it, cancel it, or drop it to \
                 cancel. Must be called within a tokio runtime."
        ));
        let blocking_start_doc = doc(&format!(
            "Starts `{shown}` now on the client's runtime; wait for the handle later, poll it, \
                 cancel it, or drop it to cancel."
        ));
        client_methods.push(quote! {
                #docs
                #allow
                pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#ret, ::rpc_core::RpcError> {
                    self.client
                        .call(&#info_name, &#procs_name[#index], &self.options, #encode, #decode)
                        .await
                }

                #start_doc
                #allow
                pub fn #start(&self, #(#params),*) -> ::rpc_core::client::CallHandle<#ret> {
                    let this = self.clone();
                    ::rpc_core::client::CallHandle::spawn(async move { this.#name(#(#arg_names),*).await })
                }
            });
        blocking_methods.push(quote! {
                #docs
                #allow
                pub fn #name(&self, #(#params),*) -> ::core::result::Result<#ret, ::rpc_core::RpcError> {
                    self.runtime.call(self.inner.#name(#(#arg_names),*))
                }

                #blocking_start_doc
                #allow
                pub fn #start(&self, #(#params),*) -> ::rpc_core::client::BlockingCallHandle<#ret> {
                    let this = self.inner.clone();
                    ::rpc_core::client::BlockingCallHandle::spawn(
                        &self.runtime,
                        async move { this.#name(#(#arg_names),*).await },
                    )
                }
            });
    }
    let client_doc = interface_doc(
        &svc.docs,
        &format!("Async client of the `{iname}` interface (id `{id_text}`, version {version})."),
    );
    let blocking_doc = interface_doc(
        &svc.docs,
        &format!(
            "Blocking client of the `{iname}` interface (id `{id_text}`, version {version}): \
                 each call blocks the calling thread on a runtime the client owns."
        ),
    );
    let client_name_str = client_name.to_string();
    let blocking_name_str = blocking_name.to_string();
    out.extend(quote! {
        #client_doc
        pub struct #client_name<C: ::rpc_core::transport::Channel> {
            client: ::rpc_core::Client<C>,
            options: ::rpc_core::CallOptions,
        }

        impl<C: ::rpc_core::transport::Channel> #client_name<C> {
            /// A client over `channel` with the default configuration; it connects on the first call.
            pub fn new(channel: C) -> Self {
                Self::from_client(::rpc_core::Client::new(channel))
            }

            /// A client using an existing runtime client (which may be shared with other stubs).
            pub fn from_client(client: ::rpc_core::Client<C>) -> Self {
                Self {
                    client,
                    options: ::rpc_core::CallOptions::default(),
                }
            }

            /// The runtime client underneath.
            pub fn client(&self) -> &::rpc_core::Client<C> {
                &self.client
            }

            /// A cheap copy of this client whose calls use `options`.
            pub fn with_options(&self, options: ::rpc_core::CallOptions) -> Self {
                Self {
                    client: self.client.clone(),
                    options,
                }
            }

            #(#client_methods)*
        }

        impl<C: ::rpc_core::transport::Channel> ::core::clone::Clone for #client_name<C> {
            fn clone(&self) -> Self {
                Self {
                    client: self.client.clone(),
                    options: self.options.clone(),
                }
            }
        }

        impl<C: ::rpc_core::transport::Channel> ::core::fmt::Debug for #client_name<C> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#client_name_str)
                    .field("client", &self.client)
                    .field("options", &self.options)
                    .finish()
            }
        }

        #blocking_doc
        pub struct #blocking_name<C: ::rpc_core::transport::Channel> {
            inner: #client_name<C>,
            runtime: ::rpc_core::client::BlockingRuntime,
        }

        impl<C: ::rpc_core::transport::Channel> #blocking_name<C> {
            /// A blocking client over `channel`, with a runtime of its own.
            pub fn new(channel: C) -> ::std::io::Result<Self> {
                Ok(Self::with_runtime(channel, ::rpc_core::client::BlockingRuntime::new()?))
            }

            /// A blocking client over `channel` that runs its calls on `runtime`.
            pub fn with_runtime(channel: C, runtime: ::rpc_core::client::BlockingRuntime) -> Self {
                Self {
                    inner: #client_name::new(channel),
                    runtime,
                }
            }

            /// A cheap copy of this client whose calls use `options`.
            pub fn with_options(&self, options: ::rpc_core::CallOptions) -> Self {
                Self {
                    inner: self.inner.with_options(options),
                    runtime: self.runtime.clone(),
                }
            }

            /// The async client underneath.
            pub fn async_client(&self) -> &#client_name<C> {
                &self.inner
            }

            #(#blocking_methods)*
        }

        impl<C: ::rpc_core::transport::Channel> ::core::clone::Clone for #blocking_name<C> {
            fn clone(&self) -> Self {
                Self {
                    inner: self.inner.clone(),
                    runtime: self.runtime.clone(),
                }
            }
        }

        impl<C: ::rpc_core::transport::Channel> ::core::fmt::Debug for #blocking_name<C> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#blocking_name_str)
                    .field("inner", &self.inner)
                    .field("runtime", &self.runtime)
                    .finish()
            }
        }
    });
    out
}
