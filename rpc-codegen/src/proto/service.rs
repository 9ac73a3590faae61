//! The `.proto` front end of the generator: prost-build's [`prost_build::ServiceGenerator`]
//! lowering each `service` into the same model an IDL interface has, and emitting it with
//! the same code as the IDL path ([`crate::generate::interface_items`]); only the
//! payload encoding differs (protobuf messages instead of XDR arguments).

use proc_macro2::TokenStream;
use quote::quote;

use crate::generate::{interface_items, ProcWire};
use crate::model::{
    Argument, Docs, Ident, Interface, InterfaceOrigin, Procedure, Span, Type, Value, ValueKind,
};
use crate::naming::{ident, upper_camel};

use super::{interface_id, StreamingKind};

/// Generates our client and server stubs for every `service` of the `.proto` files that
/// prost-build compiles, next to prost's message types (in the same module).
///
/// [`super::Builder`] plugs it in for you; use it directly only with a
/// [`prost_build::Config`] of your own:
///
/// ```no_run
/// let mut config = prost_build::Config::new();
/// config.service_generator(Box::new(rpc_codegen::proto::ServiceGenerator::new()));
/// config.compile_protos(&["proto/helloworld.proto"], &["proto"]).unwrap();
/// ```
///
/// prost-build gives a service generator no way to fail, so a streaming method met here
/// (when [`ServiceGenerator::skip_streaming`] is off) becomes a `compile_error!` naming
/// the method in the generated code; [`super::Builder`] checks for streaming methods
/// before generating and reports them with their file instead.
#[derive(Debug, Clone, Default)]
pub struct ServiceGenerator {
    skip_streaming: bool,
}

impl ServiceGenerator {
    /// A generator that refuses streaming methods.
    pub fn new() -> Self {
        ServiceGenerator::default()
    }

    /// With `true`, streaming methods are left out of the generated stubs (and listed in
    /// the service's docs); the other methods keep their procedure numbers.
    pub fn skip_streaming(mut self, skip: bool) -> Self {
        self.skip_streaming = skip;
        self
    }
}

impl prost_build::ServiceGenerator for ServiceGenerator {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        buf.push_str(&service_source(&service, self.skip_streaming));
    }
}

/// The fully qualified protobuf name of a service: `package.Service` (or `Service`
/// without a package).
pub(crate) fn full_name(package: &str, service: &str) -> String {
    if package.is_empty() {
        service.to_owned()
    } else {
        format!("{package}.{service}")
    }
}

/// The Rust source of one service's stubs, pretty-printed.
pub(crate) fn service_source(service: &prost_build::Service, skip_streaming: bool) -> String {
    let tokens = service_tokens(service, skip_streaming);
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        // The emitter only produces valid items; should it ever not, rustc shows why.
        Err(_) => tokens.to_string(),
    }
}

fn service_tokens(service: &prost_build::Service, skip_streaming: bool) -> TokenStream {
    let full = full_name(&service.package, &service.proto_name);
    let mut refused = TokenStream::new();
    let mut skipped = Vec::new();
    let mut procedures = Vec::new();
    let mut wires = Vec::new();
    for (index, method) in service.methods.iter().enumerate() {
        if let Some(kind) = StreamingKind::of(method.client_streaming, method.server_streaming) {
            if skip_streaming {
                skipped.push(format!("`{}` ({kind})", method.proto_name));
            } else {
                let message = format!(
                    "method `{full}.{}` is {kind}; streaming methods are not supported (only unary)",
                    method.proto_name
                );
                refused.extend(quote!(::core::compile_error!(#message);));
            }
            continue;
        }
        let (procedure, wire) = lower_method(method, index);
        procedures.push(procedure);
        wires.push(wire);
    }
    let mut docs = comment_docs(&service.comments);
    if !skipped.is_empty() {
        if !docs.is_empty() {
            docs.push(String::new());
        }
        docs.push(format!(
            "Not generated (streaming methods are not supported): {}.",
            skipped.join(", ")
        ));
    }
    let iface = Interface {
        docs,
        attributes: Vec::new(),
        name: name_ident(&full),
        id: None,
        version: literal(1),
        procedures,
        origin: InterfaceOrigin::Interface,
        resolved_id: Some(interface_id(&full)),
    };
    let mut out = refused;
    out.extend(interface_items(
        &iface,
        &upper_camel(&service.proto_name),
        &wires,
    ));
    out
}

/// One unary method as a procedure taking one argument, `request`. Its number is its
/// 1-based position among all the service's methods, so leaving out streaming methods
/// does not renumber the others.
fn lower_method(method: &prost_build::Method, index: usize) -> (Procedure, ProcWire) {
    use prost_types::method_options::IdempotencyLevel;

    let idempotent = matches!(
        method.options.idempotency_level(),
        IdempotencyLevel::NoSideEffects | IdempotencyLevel::Idempotent
    );
    let procedure = Procedure {
        docs: comment_docs(&method.comments),
        attributes: if idempotent {
            vec![name_ident("idempotent")]
        } else {
            Vec::new()
        },
        oneway: false,
        ret: Type::Named(name_ident(&method.output_type)),
        name: name_ident(&method.proto_name),
        args: vec![Argument {
            name: Some(name_ident("request")),
            ty: Type::Named(name_ident(&method.input_type)),
            span: Span::default(),
        }],
        number: None,
        resolved_number: Some(u32::try_from(index + 1).unwrap_or(u32::MAX)),
    };
    let input = rust_type(&method.input_type);
    let output = rust_type(&method.output_type);
    let request = ident("request");
    let to_xdr_error = quote!(|e| ::rpc_core::xdr::XdrError::foreign("protobuf", e));
    let wire = ProcWire {
        params: vec![quote!(#request: #input)],
        arg_names: vec![request.clone()],
        ret: output.clone(),
        encode: quote!(|w| ::prost::Message::encode(&#request, w.buf_mut()).map_err(#to_xdr_error)),
        decode: quote!(|r| <#output as ::prost::Message>::decode(r.take_rest()).map_err(#to_xdr_error)),
        decode_args: quote!(|r| <#input as ::prost::Message>::decode(r.take_rest()).map_err(#to_xdr_error)),
        unpack: quote!(let #request = decoded?;),
        encode_ret: Some(
            quote!(::prost::Message::encode(&ret, w.buf_mut()).map_err(#to_xdr_error)?;),
        ),
    };
    (procedure, wire)
}

/// A Rust type path as prost-build wrote it (`HelloRequest`, `super::common::Point`,
/// `::prost_types::Empty`).
fn rust_type(path: &str) -> TokenStream {
    path.parse().unwrap_or_else(|_| {
        let message = format!("rpc-codegen: `{path}` is not a Rust type path");
        quote!(::core::compile_error!(#message))
    })
}

/// A protobuf item's leading and trailing comments as doc lines, sanitized for rustdoc
/// the way prost-build sanitizes the messages' comments (URLs and brackets escaped).
fn comment_docs(comments: &prost_build::Comments) -> Docs {
    let comments = prost_build::Comments {
        leading_detached: Vec::new(),
        ..comments.clone()
    };
    let mut text = String::new();
    comments.append_with_indent(0, &mut text);
    text.lines()
        .filter_map(|line| line.strip_prefix("///"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line).to_owned())
        .collect()
}

fn name_ident(name: &str) -> Ident {
    Ident {
        name: name.to_owned(),
        span: Span::default(),
    }
}

fn literal(n: i64) -> Value {
    Value {
        kind: ValueKind::Literal(n),
        span: Span::default(),
        resolved: Some(n),
    }
}
