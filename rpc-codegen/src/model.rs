//! The IDL's syntax tree, shared by the parser, the checker and the generator.
//!
//! The parser builds a [`Spec`] with every [`Value`] unresolved and every
//! [`Type::Optional`] unboxed; the checker ([`crate::check`]) validates it and fills in
//! the resolved parts in place (`Value::resolved`, `Type::Optional::boxed`,
//! `Procedure::resolved_number`, `Interface::resolved_id`). The generator only ever sees a
//! checked spec, whose interfaces it lowers into its own typed model before emitting
//! them.
//!
//! RFC 5531 `program` blocks are lowered by the parser into one [`Interface`] per
//! `version` block ([`InterfaceOrigin::Program`]), so the rest of the compiler handles
//! one shape.

/// A byte range in the source text (`start..end`, byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// An identifier with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The identifier as written.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// Doc comments (`///` lines or `/** */` blocks) attached to the item that follows them,
/// one entry per line, with the comment markers and one leading space removed.
pub type Docs = Vec<String>;

/// A whole IDL file.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The file name used in diagnostics (e.g. `proto/calc.idl`).
    pub file_name: String,
    /// The full source text.
    pub source: String,
    /// `package name;` if present.
    pub package: Option<Ident>,
    /// Constants and types, in source order.
    pub definitions: Vec<Definition>,
    /// Interfaces (and lowered `program` versions), in source order.
    pub interfaces: Vec<Interface>,
    /// `%` pass-through lines (RFC 5531), without the `%`, kept for rpcgen compatibility.
    pub passthrough: Vec<String>,
    /// The files `source` is made of: the main file first (at offset 0), then every
    /// file brought in by `#include` (or as a prelude), each appended to `source`.
    /// Spans are offsets into `source`; [`SourceFile`] says which file one falls in.
    pub files: Vec<SourceFile>,
    /// The `%#define NAME body` lines (without function-like macros), for the checker,
    /// which turns those whose body is an integer expression into constants.
    pub c_defines: Vec<CDefine>,
}

/// One file of a [`Spec`]'s source: its name and where its text lies in `Spec::source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The file name shown in diagnostics.
    pub name: String,
    /// Its first byte in `Spec::source`.
    pub start: usize,
    /// One past its last byte in `Spec::source`.
    pub end: usize,
}

/// A `%#define NAME body` line: C text rpcgen copies into its header. The checker
/// makes it a constant when `body` is an integer expression of known constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CDefine {
    /// The macro's name.
    pub name: Ident,
    /// The macro's body, trimmed (comments removed).
    pub body: String,
}

/// A named constant or type definition.
// A file holds a handful of definitions: boxing the large variants would only make
// every match on them noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Definition {
    /// `const NAME = value;`
    Const(ConstDef),
    /// `const NAME = "text";`
    StringConst(StringConstDef),
    /// `typedef declaration;`
    Typedef(TypedefDef),
    /// `enum Name { ... };`
    Enum(EnumDef),
    /// `struct Name { ... };`
    Struct(StructDef),
    /// `union Name switch (...) { ... };`
    Union(UnionDef),
}

impl Definition {
    /// The defined name.
    pub fn name(&self) -> &Ident {
        match self {
            Definition::Const(d) => &d.name,
            Definition::StringConst(d) => &d.name,
            Definition::Typedef(d) => &d.decl.name,
            Definition::Enum(d) => &d.name,
            Definition::Struct(d) => &d.name,
            Definition::Union(d) => &d.name,
        }
    }
}

/// `const NAME = value;`
#[derive(Debug, Clone, PartialEq)]
pub struct ConstDef {
    /// Doc comments.
    pub docs: Docs,
    /// The constant's name.
    pub name: Ident,
    /// Its value (a literal or another constant's name).
    pub value: Value,
}

/// `const NAME = "text";`: a string constant (rpcgen copies it into C as a
/// `#define`; the generator makes it a `&str` constant).
#[derive(Debug, Clone, PartialEq)]
pub struct StringConstDef {
    /// Doc comments.
    pub docs: Docs,
    /// The constant's name.
    pub name: Ident,
    /// The text between the quotes, escapes as written.
    pub value: String,
    /// Where the literal was written.
    pub span: Span,
}

/// `typedef declaration;`: `decl.name` is the new type's name.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedefDef {
    /// Doc comments.
    pub docs: Docs,
    /// The declaration; its name is the alias.
    pub decl: Declaration,
}

/// `enum Name { A = 1, B = 2 };`
#[derive(Debug, Clone, PartialEq)]
pub struct EnumDef {
    /// Doc comments.
    pub docs: Docs,
    /// The enum's name.
    pub name: Ident,
    /// Its variants, in source order.
    pub variants: Vec<EnumVariant>,
}

/// One enum variant.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumVariant {
    /// Doc comments.
    pub docs: Docs,
    /// The variant's name.
    pub name: Ident,
    /// `= value` if written; otherwise the previous variant's value + 1 (0 for the first),
    /// which the checker stores in `resolved`.
    pub value: Option<Value>,
    /// The variant's value, set by the checker.
    pub resolved: Option<i64>,
}

/// `struct Name { declarations };`
#[derive(Debug, Clone, PartialEq)]
pub struct StructDef {
    /// Doc comments.
    pub docs: Docs,
    /// The struct's name.
    pub name: Ident,
    /// Its fields, in source (and wire) order. Never empty after checking.
    pub fields: Vec<Declaration>,
}

/// `union Name switch (discriminant) { case ...: arm; ... default: arm; };`
#[derive(Debug, Clone, PartialEq)]
pub struct UnionDef {
    /// Doc comments.
    pub docs: Docs,
    /// The union's name.
    pub name: Ident,
    /// The discriminant declaration (`int`, `unsigned int`, `bool` or an enum type).
    pub discriminant: Declaration,
    /// The `case` arms, in source order.
    pub cases: Vec<UnionCase>,
    /// The `default:` arm, if any.
    pub default: Option<Declaration>,
}

/// One or more `case V:` labels sharing one arm.
#[derive(Debug, Clone, PartialEq)]
pub struct UnionCase {
    /// The case labels (literals, constants or enum variant names).
    pub values: Vec<Value>,
    /// The arm (its type may be [`Type::Void`]).
    pub arm: Declaration,
}

/// `type name` with array/optional decorations folded into [`Type`].
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// Doc comments.
    pub docs: Docs,
    /// The declared name. For `void` arms the parser uses the name `void` and the span
    /// of the keyword.
    pub name: Ident,
    /// The declared type.
    pub ty: Type,
}

/// A type as used in a declaration, a procedure argument or a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `void`
    Void,
    /// `bool`
    Bool,
    /// `int`, `i32`
    Int,
    /// `unsigned int`, `unsigned`, `u32`
    UnsignedInt,
    /// `hyper`, `i64`
    Hyper,
    /// `unsigned hyper`, `u64`
    UnsignedHyper,
    /// `float`, `f32`
    Float,
    /// `double`, `f64`
    Double,
    /// `string<N>` / `string<>` / `String`
    String {
        /// The bound, if any.
        max: Option<Value>,
    },
    /// `opaque name[N]`
    FixedOpaque {
        /// The exact length in bytes.
        len: Value,
    },
    /// `opaque name<N>` / `opaque name<>` / `Bytes`
    VarOpaque {
        /// The bound, if any.
        max: Option<Value>,
    },
    /// `T name[N]`
    FixedArray {
        /// Element type.
        elem: Box<Type>,
        /// Exact number of elements.
        len: Value,
    },
    /// `T name<N>` / `T name<>` / `Vec<T>`
    VarArray {
        /// Element type.
        elem: Box<Type>,
        /// The bound, if any.
        max: Option<Value>,
    },
    /// `T *name` / `Option<T>`
    Optional {
        /// The optional value's type.
        elem: Box<Type>,
        /// Set by the checker when the type is recursive through this optional, so the
        /// generated Rust type needs a `Box`.
        boxed: bool,
    },
    /// A typedef, enum, struct or union defined in the file.
    Named(Ident),
}

/// A constant expression: a literal or the name of a constant or enum variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What was written.
    pub kind: ValueKind,
    /// Where it was written.
    pub span: Span,
    /// Its numeric value, set by the checker.
    pub resolved: Option<i64>,
}

impl Value {
    /// The resolved value. Panics if the spec was not checked (a compiler bug, never a
    /// user error: the generator only runs on checked specs).
    pub fn get(&self) -> i64 {
        self.resolved
            .expect("rpc-codegen bug: value used before the checker resolved it")
    }
}

/// A value's number: the checker's result, or the literal as written (0 for an
/// unresolved name).
pub(crate) fn value_of(v: &Value) -> i64 {
    v.resolved.unwrap_or(match v.kind {
        ValueKind::Literal(n) => n,
        ValueKind::Named(_) => 0,
    })
}

/// What a [`Value`] was written as.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A decimal, hex (`0x`) or octal (leading `0`) literal, possibly negative.
    Literal(i64),
    /// A constant or enum variant name.
    Named(Ident),
}

/// An interface: a versioned set of procedures.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// Doc comments.
    pub docs: Docs,
    /// `[exactly_once]` and any other attributes written before `interface` (or
    /// `program`, whose attributes every lowered version gets), by name.
    pub attributes: Vec<Ident>,
    /// The interface's name (from the file name for the anonymous form).
    pub name: Ident,
    /// `= 0x20000001` if written (or the program number of an RFC 5531 program).
    pub id: Option<Value>,
    /// `version N` (1 if not written).
    pub version: Value,
    /// The procedures, in source order.
    pub procedures: Vec<Procedure>,
    /// How it was written.
    pub origin: InterfaceOrigin,
    /// The interface id, set by the checker: `id` if written, otherwise a stable hash of
    /// the package and interface name (see docs/IDL.md).
    pub resolved_id: Option<u32>,
}

/// The attributes that set an interface's default delivery semantics.
pub const SEMANTICS_ATTRIBUTES: &[&str] = &["at_most_once", "at_least_once", "exactly_once"];

impl Interface {
    /// The first of the interface's attributes that sets its default delivery semantics
    /// (`at_most_once`, `at_least_once` or `exactly_once`), if any. The checker allows
    /// at most one.
    pub fn default_semantics(&self) -> Option<&str> {
        self.attributes
            .iter()
            .map(|a| a.name.as_str())
            .find(|a| SEMANTICS_ATTRIBUTES.contains(a))
    }
}

/// The syntax an interface came from.
#[derive(Debug, Clone, PartialEq)]
pub enum InterfaceOrigin {
    /// `interface Name version N { ... };`
    Interface,
    /// `interface { ... };` (name taken from the file name)
    Anonymous,
    /// `program P { version V { ... } = v; } = p;`
    Program {
        /// The program's name as written.
        program: Ident,
        /// The version block's name as written.
        version: Ident,
    },
}

/// One procedure of an interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Procedure {
    /// Doc comments.
    pub docs: Docs,
    /// `[idempotent]` and any other attributes, by name.
    pub attributes: Vec<Ident>,
    /// `oneway`: no reply is sent; the result type must be `void`.
    pub oneway: bool,
    /// The result type.
    pub ret: Type,
    /// The procedure's name.
    pub name: Ident,
    /// The arguments (a single `void` argument is normalised to none).
    pub args: Vec<Argument>,
    /// `= N` if written.
    pub number: Option<Value>,
    /// The procedure number, set by the checker (dense from 1 in declaration order
    /// unless written).
    pub resolved_number: Option<u32>,
}

impl Procedure {
    /// Whether the procedure carries the `[inline]` attribute: its handler is cheap and
    /// synchronous, and a server may run it on the dispatch loop.
    pub fn is_inline(&self) -> bool {
        self.attributes.iter().any(|a| a.name == "inline")
    }

    /// Whether the procedure carries the `[idempotent]` attribute.
    pub fn is_idempotent(&self) -> bool {
        self.attributes.iter().any(|a| a.name == "idempotent")
    }
}

/// One procedure argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Argument {
    /// The argument's name (RFC 5531 allows unnamed arguments: the generator names them
    /// `arg1`, `arg2`, ...).
    pub name: Option<Ident>,
    /// The argument's type.
    pub ty: Type,
    /// Where the argument was written.
    pub span: Span,
}
