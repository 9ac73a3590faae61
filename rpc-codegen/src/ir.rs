//! The typed intermediate model the emitters work from: services, their methods, and
//! how each method's payloads travel (its [`Codec`]).
//!
//! Both front ends lower into it:
//!
//! * the IDL front end ([`lower`]) takes a checked [`Spec`]: one [`Service`] per
//!   interface (an RFC 5531 `program` has one per `version` block, with
//!   [`Origin::Program`]), every method with [`Codec::Xdr`] and its argument and result
//!   types as resolved [`Type`]s, plus the file's typedefs ([`Types`]), which the XDR
//!   encoders follow;
//! * the `.proto` front end (`proto::service`) builds a [`Service`] per protobuf
//!   `service` straight from prost-build's description, every method with
//!   [`Codec::Protobuf`] and its one parameter, `request`.
//!
//! Everything here is resolved: numbers are numbers, names are the Rust names the
//! generated code uses (before keyword escaping, see [`crate::naming::ident`]), and no
//! source spans or unresolved values remain. The emitters (`emit`) produce the same
//! items for every service (its `InterfaceInfo` and procedure table, the clients, the
//! server trait and adapter) and choose the payload code in one place, by the method's
//! codec. The envelope a call travels in (ours or ONC RPC) is the runtime's choice, not
//! the model's: a service's id and version are the program and version numbers ONC RPC
//! sends.
//!
//! The definitions' own Rust items (structs, enums, unions, constants) are generated
//! from the checked [`Spec`] directly; their field types go through [`lower_type`] so
//! that one XDR encoder serves both.

use std::collections::HashMap;

use crate::model::{self, value_of, Definition, Docs, InterfaceOrigin, Spec, ValueKind};
use crate::naming;

/// A whole IDL file's services and the typedefs their types refer to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Module {
    /// The file's typedefs, which the XDR encoders resolve named types through.
    pub(crate) types: Types,
    /// One service per interface (or program version), in source order.
    pub(crate) services: Vec<Service>,
}

/// The typedefs of a file, by IDL name: what [`Type::Named`] resolves through.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Types {
    typedefs: HashMap<String, Type>,
}

/// How deep typedef chains are followed before giving up (a checked spec has no cycles;
/// this only keeps a malformed one from looping forever).
const MAX_TYPEDEF_DEPTH: usize = 64;

impl Types {
    /// Follows typedefs until a type that is not one.
    pub(crate) fn resolve<'t>(&'t self, ty: &'t Type) -> &'t Type {
        let mut ty = ty;
        for _ in 0..MAX_TYPEDEF_DEPTH {
            match ty {
                Type::Named(n) => match self.typedefs.get(n) {
                    Some(t) => ty = t,
                    None => return ty,
                },
                _ => return ty,
            }
        }
        ty
    }
}

/// One interface (or `.proto` service) at one version.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Service {
    /// The name `InterfaceInfo` carries: the IDL name, or `package.Service`.
    pub(crate) name: String,
    /// The Rust base name of its items (`Calc` → `CalcClient`, `CALC_INTERFACE`, ...).
    pub(crate) rust_base: String,
    /// Doc lines.
    pub(crate) docs: Docs,
    /// The interface id (an ONC program's program number).
    pub(crate) id: u32,
    /// The version (an ONC program's version number).
    pub(crate) version: u32,
    /// The interface's default delivery semantics, if it sets one.
    pub(crate) default_semantics: Option<Semantics>,
    /// What it was written as.
    pub(crate) origin: Origin,
    /// The methods, in declaration order.
    pub(crate) methods: Vec<Method>,
}

/// What a [`Service`] was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An IDL `interface` (named or anonymous).
    Interface,
    /// One `version` block of an RFC 5531 `program`; the service's id and version are
    /// the program and version numbers.
    Program {
        /// The program's name as written (`NFS_PROGRAM`).
        program: String,
        /// The version block's name as written (`NFS_V3`).
        version: String,
    },
    /// A protobuf `service`.
    Proto,
}

/// A default delivery semantics (`[at_most_once]`, ...).
// The names of `rpc_core::Semantics`, which the emitters write.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Semantics {
    /// `[at_most_once]`
    AtMostOnce,
    /// `[at_least_once]`
    AtLeastOnce,
    /// `[exactly_once]`
    ExactlyOnce,
}

/// One procedure (or protobuf method).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Method {
    /// The name `ProcedureInfo` carries: as written.
    pub(crate) name: String,
    /// The Rust method name ([`naming::proc_name`]).
    pub(crate) rust_name: String,
    /// The client method that starts a call ([`naming::start_name`]).
    pub(crate) start_name: String,
    /// The procedure number.
    pub(crate) number: u32,
    /// Doc lines.
    pub(crate) docs: Docs,
    /// `oneway`: no reply is sent.
    pub(crate) oneway: bool,
    /// `[idempotent]` (or protobuf's `idempotency_level`).
    pub(crate) idempotent: bool,
    /// `[inline]`: the handler is synchronous and may run on the dispatch loop.
    pub(crate) inline: bool,
    /// The Rust names of the parameters, in order ([`naming::arg_name`]).
    pub(crate) params: Vec<String>,
    /// How the arguments and the result travel.
    pub(crate) codec: Codec,
}

/// How a method's arguments and result are encoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Codec {
    /// XDR (RFC 4506): each argument in turn, then the result.
    Xdr {
        /// The arguments' types, one per parameter.
        args: Vec<Type>,
        /// The result type ([`Type::Void`] for none).
        ret: Type,
    },
    /// One protobuf message each way, the whole payload (prost).
    Protobuf {
        /// The request message's Rust path, as prost-build wrote it.
        request: String,
        /// The response message's Rust path.
        response: String,
    },
}

/// A resolved XDR type: [`model::Type`] with every length and bound a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Type {
    /// `void`
    Void,
    /// `bool`
    Bool,
    /// `int`
    Int,
    /// `unsigned int`
    UnsignedInt,
    /// `hyper`
    Hyper,
    /// `unsigned hyper`
    UnsignedHyper,
    /// `float`
    Float,
    /// `double`
    Double,
    /// `string<N>`
    String {
        /// The bound (`None`: `<>`).
        max: Option<Bound>,
    },
    /// `opaque x[N]`
    FixedOpaque {
        /// The length in bytes.
        len: usize,
    },
    /// `opaque x<N>`
    VarOpaque {
        /// The bound (`None`: `<>`).
        max: Option<Bound>,
    },
    /// `T x[N]`
    FixedArray {
        /// The element type.
        elem: Box<Type>,
        /// The number of elements.
        len: usize,
    },
    /// `T x<N>`
    VarArray {
        /// The element type.
        elem: Box<Type>,
        /// The bound (`None`: `<>`).
        max: Option<Bound>,
    },
    /// `T *x`
    Optional {
        /// The optional value's type.
        elem: Box<Type>,
        /// Whether the Rust type boxes it (the type is recursive through it).
        boxed: bool,
    },
    /// A typedef, enum, struct or union of the file, by its IDL name.
    Named(String),
}

/// A bound (`<N>`) as the generated code writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Its value.
    pub(crate) value: u32,
    /// The Rust constant it was written as, if it was (`MAX_NAME`), so the generated
    /// code names it.
    pub(crate) constant: Option<String>,
}

/// The definitions of a spec by IDL name, as [`lower_type`] wants them.
pub(crate) type Defs<'s> = HashMap<&'s str, &'s Definition>;

/// The definitions of `spec` by IDL name.
pub(crate) fn defs(spec: &Spec) -> Defs<'_> {
    spec.definitions
        .iter()
        .map(|d| (d.name().name.as_str(), d))
        .collect()
}

/// Lowers a checked spec: its typedefs and one [`Service`] per interface.
pub(crate) fn lower(spec: &Spec) -> Module {
    let defs = defs(spec);
    let typedefs = spec
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Typedef(t) => {
                Some((t.decl.name.name.clone(), lower_type(&defs, &t.decl.ty)))
            }
            _ => None,
        })
        .collect();
    let bases = naming::interface_names(&spec.interfaces);
    let services = spec
        .interfaces
        .iter()
        .zip(bases)
        .map(|(iface, base)| lower_interface(&defs, iface, base))
        .collect();
    Module {
        types: Types { typedefs },
        services,
    }
}

fn lower_interface(defs: &Defs<'_>, iface: &model::Interface, rust_base: String) -> Service {
    let default_semantics = match iface.default_semantics() {
        Some("at_most_once") => Some(Semantics::AtMostOnce),
        Some("at_least_once") => Some(Semantics::AtLeastOnce),
        Some("exactly_once") => Some(Semantics::ExactlyOnce),
        _ => None,
    };
    let origin = match &iface.origin {
        InterfaceOrigin::Interface | InterfaceOrigin::Anonymous => Origin::Interface,
        InterfaceOrigin::Program { program, version } => Origin::Program {
            program: program.name.clone(),
            version: version.name.clone(),
        },
    };
    let methods = iface
        .procedures
        .iter()
        .enumerate()
        .map(|(i, p)| lower_procedure(defs, p, i))
        .collect();
    Service {
        name: iface.name.name.clone(),
        rust_base,
        docs: iface.docs.clone(),
        id: iface.resolved_id.unwrap_or(0),
        version: u32::try_from(value_of(&iface.version)).unwrap_or(1),
        default_semantics,
        origin,
        methods,
    }
}

fn lower_procedure(defs: &Defs<'_>, p: &model::Procedure, index: usize) -> Method {
    let number = p
        .resolved_number
        .or_else(|| {
            p.number
                .as_ref()
                .and_then(|v| u32::try_from(value_of(v)).ok())
        })
        .unwrap_or(u32::try_from(index + 1).unwrap_or(u32::MAX));
    Method {
        name: p.name.name.clone(),
        rust_name: naming::proc_name(&p.name.name),
        start_name: naming::start_name(&p.name.name),
        number,
        docs: p.docs.clone(),
        oneway: p.oneway,
        idempotent: p.is_idempotent(),
        inline: p.is_inline(),
        params: p
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| naming::arg_name(a.name.as_ref().map(|n| n.name.as_str()), i))
            .collect(),
        codec: Codec::Xdr {
            args: p.args.iter().map(|a| lower_type(defs, &a.ty)).collect(),
            ret: lower_type(defs, &p.ret),
        },
    }
}

/// Lowers a checked type: lengths become numbers and bounds keep the name of the
/// constant they were written as (when it is a `u32` constant).
pub(crate) fn lower_type(defs: &Defs<'_>, ty: &model::Type) -> Type {
    use model::Type as M;
    let len = |v: &model::Value| usize::try_from(value_of(v).max(0)).unwrap_or(0);
    match ty {
        M::Void => Type::Void,
        M::Bool => Type::Bool,
        M::Int => Type::Int,
        M::UnsignedInt => Type::UnsignedInt,
        M::Hyper => Type::Hyper,
        M::UnsignedHyper => Type::UnsignedHyper,
        M::Float => Type::Float,
        M::Double => Type::Double,
        M::String { max } => Type::String {
            max: lower_bound(defs, max),
        },
        M::FixedOpaque { len: l } => Type::FixedOpaque { len: len(l) },
        M::VarOpaque { max } => Type::VarOpaque {
            max: lower_bound(defs, max),
        },
        M::FixedArray { elem, len: l } => Type::FixedArray {
            elem: Box::new(lower_type(defs, elem)),
            len: len(l),
        },
        M::VarArray { elem, max } => Type::VarArray {
            elem: Box::new(lower_type(defs, elem)),
            max: lower_bound(defs, max),
        },
        M::Optional { elem, boxed } => Type::Optional {
            elem: Box::new(lower_type(defs, elem)),
            boxed: *boxed,
        },
        M::Named(n) => Type::Named(n.name.clone()),
    }
}

fn lower_bound(defs: &Defs<'_>, max: &Option<model::Value>) -> Option<Bound> {
    let v = max.as_ref()?;
    let n = value_of(v);
    let constant = match &v.kind {
        ValueKind::Named(name) => match defs.get(name.name.as_str()) {
            Some(Definition::Const(c))
                if u32::try_from(value_of(&c.value)).is_ok() && u32::try_from(n).is_ok() =>
            {
                Some(naming::screaming(&c.name.name))
            }
            _ => None,
        },
        ValueKind::Literal(_) => None,
    };
    Some(Bound {
        value: u32::try_from(n.max(0)).unwrap_or(u32::MAX),
        constant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lowered(source: &str) -> Module {
        match crate::parse_and_check("t.x", source) {
            Ok(spec) => lower(&spec),
            Err(e) => panic!("does not check:\n{e}"),
        }
    }

    #[test]
    fn a_program_lowers_to_one_service_per_version_with_its_numbers() {
        let m = lowered(
            "const MAXNAME = 255;\n\
             typedef string name<MAXNAME>;\n\
             program DIR_PROG {\n\
               version DIR_V1 { void DIR_NULL(void) = 0; name LOOKUP(name, int) = 3; } = 1;\n\
               version DIR_V2 { oneway void PING(void) = 1; } = 2;\n\
             } = 0x20000076;\n",
        );
        assert_eq!(m.services.len(), 2);
        let v1 = &m.services[0];
        assert_eq!((v1.id, v1.version), (0x2000_0076, 1));
        assert_eq!(v1.rust_base, "DirProgV1");
        assert_eq!(
            v1.origin,
            Origin::Program {
                program: "DIR_PROG".into(),
                version: "DIR_V1".into()
            }
        );
        let numbers: Vec<u32> = v1.methods.iter().map(|m| m.number).collect();
        assert_eq!(numbers, [0, 3]);
        let lookup = &v1.methods[1];
        assert_eq!(lookup.rust_name, "lookup");
        assert_eq!(lookup.start_name, "start_lookup");
        assert_eq!(lookup.params, ["arg1", "arg2"]);
        assert_eq!(
            lookup.codec,
            Codec::Xdr {
                args: vec![Type::Named("name".into()), Type::Int],
                ret: Type::Named("name".into()),
            }
        );
        // The typedef resolves to a string whose bound keeps the constant's name.
        let bound = Some(Bound {
            value: 255,
            constant: Some("MAXNAME".into()),
        });
        assert_eq!(
            m.types.resolve(&Type::Named("name".into())),
            &Type::String { max: bound }
        );
        let v2 = &m.services[1];
        assert_eq!(
            (v2.id, v2.version, v2.rust_base.as_str()),
            (0x2000_0076, 2, "DirProgV2")
        );
        assert!(v2.methods[0].oneway);
    }

    #[test]
    fn an_interface_lowers_with_its_id_semantics_and_flags() {
        let m = lowered(
            "[at_least_once] interface Calc version 3 {\n\
               [idempotent] int add(int a, int b);\n\
               [inline] void reset() = 7;\n\
               opaque get(unsigned int ctx, opaque data<16>);\n\
             };\n",
        );
        let calc = &m.services[0];
        assert_eq!(calc.name, "Calc");
        assert_eq!(calc.version, 3);
        assert_eq!(calc.origin, Origin::Interface);
        assert_eq!(calc.default_semantics, Some(Semantics::AtLeastOnce));
        assert_eq!(calc.id, crate::check::default_interface_id(None, "Calc"));
        let add = &calc.methods[0];
        assert!(add.idempotent && !add.inline && add.number == 1);
        let reset = &calc.methods[1];
        assert!(reset.inline && !reset.idempotent && reset.number == 7);
        let get = &calc.methods[2];
        assert_eq!(get.number, 8);
        // `ctx` is a local of the generated code: the parameter gets a `_`.
        assert_eq!(get.params, ["ctx_", "data"]);
        let data = Type::VarOpaque {
            max: Some(Bound {
                value: 16,
                constant: None,
            }),
        };
        assert_eq!(
            get.codec,
            Codec::Xdr {
                args: vec![Type::UnsignedInt, data],
                ret: Type::VarOpaque { max: None },
            }
        );
    }
}
