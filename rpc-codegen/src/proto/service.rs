//! The `.proto` front end of the generator: prost-build's [`prost_build::ServiceGenerator`]
//! lowering each `service` into the intermediate model an IDL interface lowers into (an
//! `ir::Service` whose methods have the protobuf codec), emitted by the same emitters as
//! the IDL path; only the payload encoding differs (protobuf messages instead of XDR
//! arguments).

use proc_macro2::TokenStream;
use quote::quote;

use crate::ir::{self, Codec, Method, Origin};
use crate::model::Docs;
use crate::naming::{proc_name, start_name, upper_camel};

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
    let (lowered, refused) = lower(service, skip_streaming);
    let mut out = TokenStream::new();
    for message in refused {
        out.extend(quote!(::core::compile_error!(#message);));
    }
    out.extend(crate::emit::service(&lowered, &ir::Types::default()));
    out
}

/// Lowers a service: its unary methods (protobuf codec), and the messages of the
/// streaming ones it refuses (none with `skip_streaming`, which lists them in the
/// service's docs instead).
fn lower(service: &prost_build::Service, skip_streaming: bool) -> (ir::Service, Vec<String>) {
    let full = full_name(&service.package, &service.proto_name);
    let mut refused = Vec::new();
    let mut skipped = Vec::new();
    let mut methods = Vec::new();
    for (index, method) in service.methods.iter().enumerate() {
        if let Some(kind) = StreamingKind::of(method.client_streaming, method.server_streaming) {
            if skip_streaming {
                skipped.push(format!("`{}` ({kind})", method.proto_name));
            } else {
                refused.push(format!(
                    "method `{full}.{}` is {kind}; streaming methods are not supported (only unary)",
                    method.proto_name
                ));
            }
            continue;
        }
        methods.push(lower_method(method, index));
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
    let lowered = ir::Service {
        id: interface_id(&full),
        name: full,
        rust_base: upper_camel(&service.proto_name),
        docs,
        version: 1,
        default_semantics: None,
        origin: Origin::Proto,
        methods,
    };
    (lowered, refused)
}

/// One unary method as a procedure taking one argument, `request`. Its number is its
/// 1-based position among all the service's methods, so leaving out streaming methods
/// does not renumber the others.
fn lower_method(method: &prost_build::Method, index: usize) -> Method {
    use prost_types::method_options::IdempotencyLevel;

    let idempotent = matches!(
        method.options.idempotency_level(),
        IdempotencyLevel::NoSideEffects | IdempotencyLevel::Idempotent
    );
    Method {
        name: method.proto_name.clone(),
        rust_name: proc_name(&method.proto_name),
        start_name: start_name(&method.proto_name),
        number: u32::try_from(index + 1).unwrap_or(u32::MAX),
        docs: comment_docs(&method.comments),
        oneway: false,
        idempotent,
        inline: false,
        params: vec!["request".to_owned()],
        codec: Codec::Protobuf {
            request: method.input_type.clone(),
            response: method.output_type.clone(),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn method(name: &str, streaming: bool, idempotency: i32) -> prost_build::Method {
        prost_build::Method {
            name: upper_camel(name),
            proto_name: name.to_owned(),
            comments: prost_build::Comments::default(),
            input_type: format!("{name}Request"),
            output_type: format!("super::common::{name}Reply"),
            input_proto_type: format!(".demo.{name}Request"),
            output_proto_type: format!(".common.{name}Reply"),
            options: prost_types::MethodOptions {
                idempotency_level: Some(idempotency),
                ..Default::default()
            },
            client_streaming: false,
            server_streaming: streaming,
        }
    }

    fn service(methods: Vec<prost_build::Method>) -> prost_build::Service {
        prost_build::Service {
            name: "Greeter".to_owned(),
            proto_name: "Greeter".to_owned(),
            package: "demo".to_owned(),
            comments: prost_build::Comments {
                leading: vec![" Says hello.".to_owned()],
                ..Default::default()
            },
            methods,
            options: prost_types::ServiceOptions::default(),
        }
    }

    #[test]
    fn a_service_lowers_with_the_protobuf_codec_and_positional_numbers() {
        use prost_types::method_options::IdempotencyLevel;
        let svc = service(vec![
            method(
                "SayHello",
                false,
                IdempotencyLevel::IdempotencyUnknown as i32,
            ),
            method("Watch", true, IdempotencyLevel::IdempotencyUnknown as i32),
            method("GetName", false, IdempotencyLevel::NoSideEffects as i32),
        ]);
        let (lowered, refused) = lower(&svc, true);
        assert!(refused.is_empty());
        assert_eq!(lowered.name, "demo.Greeter");
        assert_eq!(lowered.rust_base, "Greeter");
        assert_eq!(lowered.id, interface_id("demo.Greeter"));
        assert_eq!(
            (lowered.version, lowered.origin.clone()),
            (1, Origin::Proto)
        );
        assert_eq!(lowered.docs[0], "Says hello.");
        assert!(lowered.docs[2].contains("`Watch` (server-streaming)"));
        // The streaming method is left out without renumbering the one after it.
        let numbers: Vec<u32> = lowered.methods.iter().map(|m| m.number).collect();
        assert_eq!(numbers, [1, 3]);
        let get = &lowered.methods[1];
        assert_eq!(
            (get.rust_name.as_str(), get.start_name.as_str()),
            ("get_name", "start_get_name")
        );
        assert!(get.idempotent && !lowered.methods[0].idempotent);
        assert_eq!(get.params, ["request"]);
        assert_eq!(
            get.codec,
            Codec::Protobuf {
                request: "GetNameRequest".into(),
                response: "super::common::GetNameReply".into(),
            }
        );
    }

    #[test]
    fn streaming_methods_are_refused_unless_skipped() {
        let svc = service(vec![method("Watch", true, 0)]);
        let (lowered, refused) = lower(&svc, false);
        assert!(lowered.methods.is_empty());
        assert_eq!(
            refused,
            ["method `demo.Greeter.Watch` is server-streaming; streaming methods are not supported (only unary)"]
        );
    }
}
