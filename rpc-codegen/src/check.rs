//! The semantic checker: validates a parsed [`Spec`] and fills in its resolved parts.
//!
//! On success every [`Value::resolved`] and [`EnumVariant::resolved`] is set,
//! [`Type::Optional::boxed`] marks the optionals through which a type contains itself,
//! every [`Procedure::resolved_number`] and [`Interface::resolved_id`] is set. Every
//! rule, with an example of its message, is listed in docs/IDL.md ("Checks").
//!
//! The checker reports every error it finds, in source order, not just the first.
//!
//! Decisions worth knowing:
//! - Implicit procedure numbers start at 1 and continue from the highest number so far
//!   plus one (`a; b = 5; c;` numbers 1, 5, 6).
//! - Number 0 is reserved for RFC 5531's NULL procedure: only `void name(void) = 0;`,
//!   written explicitly, may use it.
//! - An interface without `= id` gets the FNV-1a 32-bit hash of `package.Name` (or
//!   `Name` without a package) with the top bit set, so it never collides with
//!   rpcgen program numbers (which are below `0x8000_0000`).
//! - Bounds (`<N>`) must be in `1..=u32::MAX`; fixed lengths (`[N]`) in `1..=65536`.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::model::*;
use crate::naming::{
    arg_name, blocking_client_name, client_name, ident, interface_names, interface_static,
    proc_name, procedures_static, screaming, server_name, snake, start_name, upper_camel,
};

/// The largest fixed length (`opaque x[N]`, `T x[N]`): such types become inline Rust
/// arrays, and a huge one would blow the stack of whoever holds it.
pub const MAX_FIXED_LEN: i64 = 65_536;

/// The attributes a procedure may carry.
const ATTRIBUTES: &[&str] = &["idempotent", "inline"];

/// The attributes an interface may carry: its default delivery semantics (at most one).
const INTERFACE_ATTRIBUTES: &[&str] = SEMANTICS_ATTRIBUTES;

/// Names that spell built-in types and so cannot be defined.
const BUILTIN_TYPES: &[&str] = &[
    "i32", "u32", "i64", "u64", "f32", "f64", "String", "Bytes", "Vec", "Option",
];

/// Constants every file has (RFC 4506: `bool` is `enum { FALSE = 0, TRUE = 1 }`).
const BUILTIN_CONSTS: &[(&str, i64)] = &[("FALSE", 0), ("TRUE", 1)];

/// How many times `%#define`s are scanned for the ones that became evaluable (a
/// define using a later define needs one more pass).
const MAX_DEFINE_PASSES: usize = 32;

/// How deep constants may be defined through one another (`const A = B;` ...).
const MAX_CONST_DEPTH: usize = 200;

/// Checks `spec` and resolves it in place. On error the spec may be partly resolved
/// and must not be handed to the generator.
pub fn check(spec: &mut Spec) -> Result<(), Diagnostics> {
    crate::onc::complete(spec);
    let mut checker = Checker::default();
    checker.declare_all(spec);
    checker.resolve_symbols(spec);
    checker.c_defines(spec);
    checker.resolve_in_place(spec);
    let plan = checker.structure(spec);
    checker.apply(spec, plan);
    if checker.errors.is_empty() {
        return Ok(());
    }
    let mut errors = checker.errors;
    errors.sort_by_key(|e| e.span.start);
    Err(
        Diagnostics::new(spec.file_name.clone(), spec.source.clone(), errors)
            .with_files(spec.files.clone()),
    )
}

/// The FNV-1a 32-bit hash of `package.name` (or `name`) with the top bit set: the id of
/// an interface written without `= id`.
pub fn default_interface_id(package: Option<&str>, name: &str) -> u32 {
    let key = match package {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    };
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash | 0x8000_0000
}

/// What a name in the file's single namespace refers to (indices into
/// `Spec::definitions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    Const(usize),
    StringConst(usize),
    Typedef(usize),
    Enum(usize),
    Struct(usize),
    Union(usize),
    Variant(usize, usize),
}

impl Sym {
    fn type_index(self) -> Option<usize> {
        match self {
            Sym::Typedef(i) | Sym::Enum(i) | Sym::Struct(i) | Sym::Union(i) => Some(i),
            Sym::Const(_) | Sym::StringConst(_) | Sym::Variant(..) => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Sym::Const(_) => "a constant",
            Sym::StringConst(_) => "a string constant",
            Sym::Typedef(_) => "a typedef",
            Sym::Enum(_) => "an enum",
            Sym::Struct(_) => "a struct",
            Sym::Union(_) => "a union",
            Sym::Variant(..) => "an enum variant",
        }
    }
}

/// A name in the generated Rust code and the IDL item it comes from.
struct RustName<'s> {
    /// The Rust identifier as generated (`FooBar`, `r#type`, `self_`).
    rust: String,
    /// The IDL name, if the item has one (identical IDL names are reported elsewhere).
    idl: Option<&'s str>,
    /// The IDL item for messages (`` `foo_bar` ``, `unnamed argument 2`).
    shown: String,
    span: Span,
    /// How the item gets the Rust name ("becomes `FooBar`", "generates the server `CalcServer`").
    how: String,
    /// Which IDL item this is: items that collide are reported once per pair.
    item: usize,
    /// Whether the item is an interface.
    interface: bool,
}

impl<'s> RustName<'s> {
    /// The Rust name an IDL name becomes.
    fn plain(name: &'s Ident, rust: String, item: usize) -> Self {
        RustName {
            how: format!("becomes `{rust}`"),
            rust,
            idl: Some(&name.name),
            shown: format!("`{}`", name.name),
            span: name.span,
            item,
            interface: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    InProgress,
    Done(Option<i64>),
}

/// Where `void` may appear.
#[derive(Debug, Clone, Copy)]
enum VoidRule {
    Allowed,
    /// Not allowed; the text completes "`void` is not allowed ...".
    Forbidden(&'static str),
}

/// Decisions made on the immutable spec, applied in [`Checker::apply`].
#[derive(Default)]
struct Plan {
    /// Per definition, for each outermost inline optional in traversal order: box it?
    boxed: HashMap<usize, Vec<bool>>,
    /// Per interface: its id and its procedures' numbers.
    ids: Vec<Option<u32>>,
    numbers: Vec<Vec<Option<u32>>>,
}

#[derive(Default)]
struct Checker {
    names: HashMap<String, (Sym, Span)>,
    consts: HashMap<usize, State>,
    variants: HashMap<(usize, usize), State>,
    errors: Vec<Diagnostic>,
}

impl Checker {
    // ---- names --------------------------------------------------------------------

    fn declare_all(&mut self, spec: &Spec) {
        for (i, def) in spec.definitions.iter().enumerate() {
            let sym = match def {
                Definition::Const(_) => Sym::Const(i),
                Definition::StringConst(_) => Sym::StringConst(i),
                Definition::Typedef(_) => Sym::Typedef(i),
                Definition::Enum(_) => Sym::Enum(i),
                Definition::Struct(_) => Sym::Struct(i),
                Definition::Union(_) => Sym::Union(i),
            };
            self.declare(def.name(), sym);
            if let Definition::Enum(e) = def {
                for (v, variant) in e.variants.iter().enumerate() {
                    self.declare(&variant.name, Sym::Variant(i, v));
                }
            }
        }
    }

    fn declare(&mut self, ident: &Ident, sym: Sym) {
        let name = &ident.name;
        if BUILTIN_TYPES.contains(&name.as_str()) {
            self.errors.push(Diagnostic::error(
                format!("`{name}` is a built-in type and cannot be redefined"),
                ident.span,
                "built-in name",
            ));
            return;
        }
        if BUILTIN_CONSTS.iter().any(|(n, _)| n == name) {
            self.errors.push(Diagnostic::error(
                format!("`{name}` is a built-in constant and cannot be redefined"),
                ident.span,
                "built-in name",
            ));
            return;
        }
        match self.names.get(name) {
            Some(&(prev, prev_span)) => {
                let mut diag = Diagnostic::error(
                    format!("the name `{name}` is defined more than once"),
                    ident.span,
                    format!("`{name}` redefined here"),
                )
                .with_secondary(prev_span, format!("previous definition of `{name}` here"));
                if matches!(prev, Sym::Variant(..)) || matches!(sym, Sym::Variant(..)) {
                    diag = diag.with_note(
                        "enum variants share one namespace with types and constants, as in XDR",
                    );
                }
                self.errors.push(diag);
            }
            None => {
                self.names.insert(name.clone(), (sym, ident.span));
            }
        }
    }

    fn suggestion(&self, name: &str, want_type: bool) -> Option<String> {
        let max = (name.len() / 3).max(1);
        self.names
            .iter()
            .filter(|(_, (sym, _))| sym.type_index().is_some() == want_type)
            .map(|(candidate, _)| (edit_distance(name, candidate), candidate))
            .filter(|&(d, _)| d <= max)
            .min()
            .map(|(_, candidate)| {
                let kind = if want_type { "type" } else { "constant" };
                format!("help: a {kind} with a similar name exists: `{candidate}`")
            })
    }

    fn undefined_constant(&mut self, ident: &Ident) {
        let mut diag = Diagnostic::error(
            format!("cannot find constant `{}` in this file", ident.name),
            ident.span,
            "not defined",
        );
        if let Some(help) = self.suggestion(&ident.name, false) {
            diag = diag.with_note(help);
        }
        self.errors.push(diag);
    }

    fn type_as_value(&mut self, ident: &Ident, sym: Sym, def_span: Span) {
        if let Sym::StringConst(_) = sym {
            self.errors.push(
                Diagnostic::error(
                    format!(
                        "expected an integer constant, found string constant `{}`",
                        ident.name
                    ),
                    ident.span,
                    "not an integer",
                )
                .with_secondary(def_span, format!("`{}` is defined here", ident.name)),
            );
            return;
        }
        self.errors.push(
            Diagnostic::error(
                format!("expected a constant, found type `{}`", ident.name),
                ident.span,
                "not a constant",
            )
            .with_secondary(
                def_span,
                format!("`{}` is defined here as {}", ident.name, sym.describe()),
            ),
        );
    }

    // ---- constants and enum variants ----------------------------------------------

    fn resolve_symbols(&mut self, spec: &Spec) {
        for (i, def) in spec.definitions.iter().enumerate() {
            match def {
                Definition::Const(_) => {
                    self.resolve_const(spec, i, 0);
                }
                Definition::Enum(e) => {
                    for v in 0..e.variants.len() {
                        self.resolve_variant(spec, i, v, 0);
                    }
                }
                _ => {}
            }
        }
    }

    /// Turns each `%#define NAME body` whose body is an integer expression of known
    /// constants (and of earlier such defines) into a constant, unless `NAME` is
    /// defined otherwise. Other bodies are C's business and are ignored.
    fn c_defines(&mut self, spec: &mut Spec) {
        // Rust names already taken among the constants (a define whose name differs
        // from a constant's only in case would collide with it in Rust).
        let mut taken: HashSet<String> = spec
            .definitions
            .iter()
            .filter(|d| matches!(d, Definition::Const(_) | Definition::StringConst(_)))
            .map(|d| screaming(&d.name().name))
            .collect();
        for base in interface_names(&spec.interfaces) {
            taken.insert(interface_static(&base));
            taken.insert(procedures_static(&base));
        }
        let mut pending: Vec<&CDefine> = spec.c_defines.iter().collect();
        let mut added: Vec<(Ident, i64)> = Vec::new();
        // Each pass takes the defines whose names are known by then, in order: a define
        // may use later ones through at most `MAX_DEFINE_PASSES` steps, which keeps a
        // long chain written backwards linear in time.
        for _ in 0..MAX_DEFINE_PASSES {
            let before = pending.len();
            pending.retain(|d| {
                if self.names.contains_key(&d.name.name)
                    || BUILTIN_CONSTS.iter().any(|(n, _)| *n == d.name.name)
                    || BUILTIN_TYPES.contains(&d.name.name.as_str())
                    || taken.contains(&screaming(&d.name.name))
                {
                    return false;
                }
                let lookup = |name: &str| -> Option<i64> {
                    if let Some((_, v)) = BUILTIN_CONSTS.iter().find(|(n, _)| *n == name) {
                        return Some(*v);
                    }
                    match self.names.get(name)? {
                        (Sym::Const(i), _) => match self.consts.get(i) {
                            Some(State::Done(v)) => *v,
                            _ => None,
                        },
                        (Sym::Variant(e, v), _) => match self.variants.get(&(*e, *v)) {
                            Some(State::Done(v)) => *v,
                            _ => None,
                        },
                        _ => None,
                    }
                };
                match crate::preprocess::eval(&d.body, &lookup, None) {
                    Ok(v) => {
                        taken.insert(screaming(&d.name.name));
                        let i = spec.definitions.len() + added.len();
                        self.names
                            .insert(d.name.name.clone(), (Sym::Const(i), d.name.span));
                        self.consts.insert(i, State::Done(Some(v)));
                        added.push((d.name.clone(), v));
                        false
                    }
                    Err(_) => true,
                }
            });
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        for (name, v) in added {
            spec.definitions.push(Definition::Const(ConstDef {
                docs: vec![format!("`{}` from a `%#define` in the IDL.", name.name)],
                value: Value {
                    kind: ValueKind::Literal(v),
                    span: name.span,
                    resolved: Some(v),
                },
                name,
            }));
        }
    }

    /// Resolves a name used inside a constant or enum definition.
    fn resolve_name(&mut self, spec: &Spec, ident: &Ident, depth: usize) -> Option<i64> {
        if let Some((_, v)) = BUILTIN_CONSTS.iter().find(|(n, _)| *n == ident.name) {
            return Some(*v);
        }
        match self.names.get(&ident.name).copied() {
            Some((Sym::Const(i), _)) => self.resolve_const(spec, i, depth + 1),
            Some((Sym::Variant(e, v), _)) => self.resolve_variant(spec, e, v, depth + 1),
            Some((sym, span)) => {
                self.type_as_value(ident, sym, span);
                None
            }
            None => {
                self.undefined_constant(ident);
                None
            }
        }
    }

    fn resolve_value(&mut self, spec: &Spec, value: &Value, depth: usize) -> Option<i64> {
        match &value.kind {
            ValueKind::Literal(v) => Some(*v),
            ValueKind::Named(ident) => self.resolve_name(spec, ident, depth),
        }
    }

    fn resolve_const(&mut self, spec: &Spec, i: usize, depth: usize) -> Option<i64> {
        let Some(Definition::Const(def)) = spec.definitions.get(i) else {
            return None;
        };
        match self.consts.get(&i) {
            Some(State::Done(v)) => return *v,
            Some(State::InProgress) => {
                self.errors.push(Diagnostic::error(
                    format!("constant `{}` is defined in terms of itself", def.name.name),
                    def.name.span,
                    "cyclic definition",
                ));
                return None;
            }
            None => {}
        }
        if depth > MAX_CONST_DEPTH {
            self.errors.push(Diagnostic::error(
                "constants are defined through each other too deeply",
                def.value.span,
                format!("more than {MAX_CONST_DEPTH} levels"),
            ));
            self.consts.insert(i, State::Done(None));
            return None;
        }
        self.consts.insert(i, State::InProgress);
        let v = self.resolve_value(spec, &def.value, depth);
        self.consts.insert(i, State::Done(v));
        v
    }

    fn resolve_variant(&mut self, spec: &Spec, e: usize, v: usize, depth: usize) -> Option<i64> {
        let Some(Definition::Enum(def)) = spec.definitions.get(e) else {
            return None;
        };
        match self.variants.get(&(e, v)) {
            Some(State::Done(value)) => return *value,
            Some(State::InProgress) => {
                let name = &def.variants[v].name;
                self.errors.push(Diagnostic::error(
                    format!("enum variant `{}` is defined in terms of itself", name.name),
                    name.span,
                    "cyclic definition",
                ));
                return None;
            }
            None => {}
        }
        if depth > MAX_CONST_DEPTH {
            self.errors.push(Diagnostic::error(
                "constants are defined through each other too deeply",
                def.variants[v].name.span,
                format!("more than {MAX_CONST_DEPTH} levels"),
            ));
            self.variants.insert((e, v), State::Done(None));
            return None;
        }
        // Implicit values depend on the previous variant: resolve the unresolved run
        // before `v` in order, iteratively, so long enums cannot overflow the stack.
        let mut first = v;
        while first > 0
            && def.variants[first].value.is_none()
            && !self.variants.contains_key(&(e, first - 1))
        {
            first -= 1;
        }
        let mut result = None;
        for k in first..=v {
            self.variants.insert((e, k), State::InProgress);
            let value = match &def.variants[k].value {
                Some(value) => self.resolve_value(spec, value, depth),
                None if k == 0 => Some(0),
                None => match self.variants.get(&(e, k - 1)) {
                    Some(State::Done(prev)) => prev.and_then(|p| p.checked_add(1)),
                    _ => {
                        let prev = &def.variants[k - 1].name;
                        self.errors.push(Diagnostic::error(
                            format!("enum variant `{}` is defined in terms of itself", prev.name),
                            prev.span,
                            "cyclic definition",
                        ));
                        None
                    }
                },
            };
            self.variants.insert((e, k), State::Done(value));
            result = value;
        }
        result
    }

    /// Looks up a name used as a value outside constant and enum definitions (all
    /// constants are resolved by then).
    fn lookup_value(&mut self, ident: &Ident) -> Option<i64> {
        if let Some((_, v)) = BUILTIN_CONSTS.iter().find(|(n, _)| *n == ident.name) {
            return Some(*v);
        }
        match self.names.get(&ident.name).copied() {
            Some((Sym::Const(i), _)) => match self.consts.get(&i) {
                Some(State::Done(v)) => *v,
                _ => None,
            },
            Some((Sym::Variant(e, v), _)) => match self.variants.get(&(e, v)) {
                Some(State::Done(v)) => *v,
                _ => None,
            },
            Some((sym, span)) => {
                self.type_as_value(ident, sym, span);
                None
            }
            None => {
                self.undefined_constant(ident);
                None
            }
        }
    }

    /// Resolves `value` in place and checks it lies in `range` (described by `what`,
    /// e.g. "bound"). Returns it only if it is valid.
    fn value_in(
        &mut self,
        value: &mut Value,
        range: std::ops::RangeInclusive<i64>,
        what: &str,
        note: fn(i64) -> Option<&'static str>,
    ) -> Option<i64> {
        let v = match &value.kind {
            ValueKind::Literal(v) => Some(*v),
            ValueKind::Named(ident) => {
                let ident = ident.clone();
                self.lookup_value(&ident)
            }
        };
        value.resolved = v;
        let v = v?;
        if range.contains(&v) {
            return Some(v);
        }
        let mut diag = Diagnostic::error(
            format!(
                "{what} must be between {} and {}, found {v}",
                range.start(),
                range.end()
            ),
            value.span,
            format!("invalid {what}"),
        );
        if let Some(note) = note(v) {
            diag = diag.with_note(note);
        }
        self.errors.push(diag);
        None
    }

    // ---- resolving the spec in place ----------------------------------------------

    fn resolve_in_place(&mut self, spec: &mut Spec) {
        for (i, def) in spec.definitions.iter_mut().enumerate() {
            match def {
                Definition::Const(c) => {
                    c.value.resolved = match self.consts.get(&i) {
                        Some(State::Done(v)) => *v,
                        _ => None,
                    };
                }
                Definition::StringConst(_) => {}
                Definition::Typedef(t) => {
                    let span = t.decl.name.span;
                    self.check_type(&mut t.decl.ty, VoidRule::Forbidden("in a typedef"), span);
                }
                Definition::Enum(e) => self.resolve_enum(i, e),
                Definition::Struct(s) => {
                    for field in &mut s.fields {
                        let span = field.name.span;
                        self.check_type(
                            &mut field.ty,
                            VoidRule::Forbidden("as a struct field"),
                            span,
                        );
                    }
                }
                Definition::Union(u) => {
                    let span = u.discriminant.name.span;
                    // A `void` discriminant is reported by the discriminant check.
                    self.check_type(&mut u.discriminant.ty, VoidRule::Allowed, span);
                    for case in &mut u.cases {
                        for value in &mut case.values {
                            // Ranges depend on the discriminant: checked in `union_cases`.
                            self.value_in(value, i64::MIN..=i64::MAX, "case value", |_| None);
                        }
                        let span = case.arm.name.span;
                        self.check_type(&mut case.arm.ty, VoidRule::Allowed, span);
                    }
                    if let Some(arm) = &mut u.default {
                        let span = arm.name.span;
                        self.check_type(&mut arm.ty, VoidRule::Allowed, span);
                    }
                }
            }
        }
        let u32_range = 0..=i64::from(u32::MAX);
        for iface in &mut spec.interfaces {
            self.value_in(
                &mut iface.version,
                u32_range.clone(),
                "interface version",
                |_| None,
            );
            if let Some(id) = &mut iface.id {
                self.value_in(id, u32_range.clone(), "interface id", |_| None);
            }
            for proc in &mut iface.procedures {
                let span = proc.name.span;
                self.check_type(&mut proc.ret, VoidRule::Allowed, span);
                for arg in &mut proc.args {
                    self.check_type(
                        &mut arg.ty,
                        VoidRule::Forbidden("as a named argument or next to other arguments"),
                        arg.span,
                    );
                }
                if let Some(number) = &mut proc.number {
                    self.value_in(number, u32_range.clone(), "procedure number", |_| None);
                }
            }
        }
    }

    fn resolve_enum(&mut self, i: usize, e: &mut EnumDef) {
        for (v, variant) in e.variants.iter_mut().enumerate() {
            let value = match self.variants.get(&(i, v)) {
                Some(State::Done(value)) => *value,
                _ => None,
            };
            variant.resolved = value;
            if let Some(explicit) = &mut variant.value {
                explicit.resolved = value;
            }
            let Some(value) = value else { continue };
            let span = variant.value.as_ref().map_or(variant.name.span, |v| v.span);
            if i32::try_from(value).is_err() {
                self.errors.push(
                    Diagnostic::error(
                        format!("enum value {value} is out of range"),
                        span,
                        "does not fit in a 32-bit signed integer",
                    )
                    .with_note(format!(
                        "enum values must be between {} and {}",
                        i32::MIN,
                        i32::MAX
                    )),
                );
            }
        }
        // Two names with one value are allowed (rpcgen takes them, as C does): the
        // generator makes the later names aliases of the first.
    }

    /// Resolves the values in `ty` and checks its names, bounds and `void`s. `span` is
    /// where to point for parts of the type that carry no span of their own.
    fn check_type(&mut self, ty: &mut Type, void: VoidRule, span: Span) {
        const VOID_NOTE: &str =
            "`void` can only be a union arm, a procedure's result, or a procedure's only (unnamed) argument";
        fn bound_note(v: i64) -> Option<&'static str> {
            (v == 0).then_some("a bound of 0 only allows empty values; write `<>` for no bound")
        }
        fn fixed_note(v: i64) -> Option<&'static str> {
            if v == 0 {
                Some("a fixed length of 0 encodes nothing")
            } else if v > MAX_FIXED_LEN {
                Some("help: fixed-length types become inline Rust arrays; use a variable-length array `<N>` instead")
            } else {
                None
            }
        }
        let bound = 1..=i64::from(u32::MAX);
        let fixed = 1..=MAX_FIXED_LEN;
        let nested = VoidRule::Forbidden("inside another type");
        match ty {
            Type::Void => {
                if let VoidRule::Forbidden(context) = void {
                    self.errors.push(
                        Diagnostic::error(
                            format!("`void` is not allowed {context}"),
                            span,
                            "`void` used here",
                        )
                        .with_note(VOID_NOTE),
                    );
                }
            }
            Type::Bool
            | Type::Int
            | Type::UnsignedInt
            | Type::Hyper
            | Type::UnsignedHyper
            | Type::Float
            | Type::Double => {}
            Type::String { max } | Type::VarOpaque { max } => {
                if let Some(max) = max {
                    self.value_in(max, bound, "bound", bound_note);
                }
            }
            Type::FixedOpaque { len } => {
                self.value_in(len, fixed, "fixed length", fixed_note);
            }
            Type::FixedArray { elem, len } => {
                self.check_type(elem, nested, span);
                self.value_in(len, fixed, "fixed length", fixed_note);
            }
            Type::VarArray { elem, max } => {
                self.check_type(elem, nested, span);
                if let Some(max) = max {
                    self.value_in(max, bound, "bound", bound_note);
                }
            }
            Type::Optional { elem, .. } => self.check_type(elem, nested, span),
            Type::Named(ident) => {
                let found = self.names.get(&ident.name).copied();
                match found {
                    Some((sym, _)) if sym.type_index().is_some() => {}
                    Some((sym, def_span)) => self.errors.push(
                        Diagnostic::error(
                            format!("expected a type, found constant `{}`", ident.name),
                            ident.span,
                            "not a type",
                        )
                        .with_secondary(
                            def_span,
                            format!("`{}` is defined here as {}", ident.name, sym.describe()),
                        ),
                    ),
                    None if BUILTIN_CONSTS.iter().any(|(n, _)| *n == ident.name) => {
                        self.errors.push(Diagnostic::error(
                            format!("expected a type, found constant `{}`", ident.name),
                            ident.span,
                            "not a type",
                        ))
                    }
                    None => {
                        let mut diag = Diagnostic::error(
                            format!("cannot find type `{}` in this file", ident.name),
                            ident.span,
                            "not defined",
                        );
                        if crate::onc::OTHER_C_TYPES.contains(&ident.name.as_str()) {
                            diag = diag.with_note(format!(
                                "`{}` is a C type rpcgen does not know either; XDR's integer types are `int` and `unsigned int` (4 bytes on the wire) and `hyper` and `unsigned hyper` (8 bytes)",
                                ident.name
                            ));
                        } else if let Some(help) = self.suggestion(&ident.name, true) {
                            diag = diag.with_note(help);
                        }
                        self.errors.push(diag);
                    }
                }
            }
        }
    }

    // ---- structural checks (immutable) --------------------------------------------

    fn structure(&mut self, spec: &Spec) -> Plan {
        for def in &spec.definitions {
            match def {
                Definition::Struct(s) => self.struct_rules(s),
                Definition::Union(u) => self.union_rules(spec, u),
                _ => {}
            }
        }
        self.rust_names(spec);
        let mut plan = Plan {
            boxed: self.recursion(spec),
            ..Plan::default()
        };
        self.interfaces(spec, &mut plan);
        plan
    }

    // ---- generated Rust names -----------------------------------------------------

    /// Reports distinct IDL names that the generator would turn into the same Rust name
    /// in the same Rust namespace (`foo_bar` and `FooBar` both become `FooBar`). The
    /// names come from the generator's own conversions ([`crate::naming`]), so the two cannot drift apart.
    /// Identical IDL names are reported by the duplicate-name rules instead, and union
    /// variants need no rule: the generator appends case labels until they are unique.
    fn rust_names(&mut self, spec: &Spec) {
        const TYPE_NOTE: &str =
            "structs, enums, unions and typedefs become Rust types named in UpperCamelCase, in one Rust namespace";
        const INTERFACE_TYPE_NOTE: &str =
            "an interface `Name` becomes the trait `Name` and the types `NameClient`, `NameBlockingClient` and `NameServer` (with `V<version>` after `Name` when two interfaces share a name), in one Rust namespace with the file's types";
        const VALUE_NOTE: &str = "constants become Rust constants named in SCREAMING_SNAKE_CASE";
        const INTERFACE_VALUE_NOTE: &str =
            "an interface `Name` defines the statics `NAME_INTERFACE` and `NAME_PROCEDURES`, in one Rust namespace with the constants (named in SCREAMING_SNAKE_CASE)";

        // Items are the definitions' indices, then `definitions.len() + interface index`.
        let mut types = Vec::new();
        let mut values = Vec::new();
        for (i, def) in spec.definitions.iter().enumerate() {
            let name = def.name();
            let (rust, out) = match def {
                Definition::Const(_) | Definition::StringConst(_) => {
                    (ident(&screaming(&name.name)), &mut values)
                }
                _ => (ident(&upper_camel(&name.name)), &mut types),
            };
            out.push(RustName::plain(name, rust.to_string(), i));
        }
        let bases = interface_names(&spec.interfaces);
        for (k, (iface, base)) in spec.interfaces.iter().zip(bases).enumerate() {
            let item = spec.definitions.len() + k;
            let made = |rust: String, what: &str| RustName {
                how: format!("generates the {what} `{rust}`"),
                rust,
                idl: Some(&iface.name.name),
                shown: format!("`{}`", iface.name.name),
                span: iface.name.span,
                item,
                interface: true,
            };
            // The same names as `Generator::interface` gives its items.
            let mut named = RustName::plain(&iface.name, ident(&base).to_string(), item);
            named.how = format!("becomes the trait `{}`", named.rust);
            named.interface = true;
            types.push(named);
            types.push(made(client_name(&base), "async client"));
            types.push(made(blocking_client_name(&base), "blocking client"));
            types.push(made(server_name(&base), "server"));
            values.push(made(interface_static(&base), "static"));
            values.push(made(procedures_static(&base), "static"));
        }
        let mut reported = HashSet::new();
        self.rust_collisions(types, &mut reported, |a, b| {
            if a.interface || b.interface {
                INTERFACE_TYPE_NOTE
            } else {
                TYPE_NOTE
            }
        });
        self.rust_collisions(values, &mut reported, |a, b| {
            if a.interface || b.interface {
                INTERFACE_VALUE_NOTE
            } else {
                VALUE_NOTE
            }
        });

        for def in &spec.definitions {
            match def {
                Definition::Struct(s) => {
                    let fields = s
                        .fields
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.ty != Type::Void) // already reported
                        .map(|(i, f)| {
                            RustName::plain(&f.name, ident(&snake(&f.name.name)).to_string(), i)
                        })
                        .collect();
                    self.rust_collisions(fields, &mut HashSet::new(), |_, _| {
                        "struct fields become Rust fields named in snake_case"
                    });
                }
                Definition::Enum(e) => {
                    let variants = e
                        .variants
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            RustName::plain(
                                &v.name,
                                ident(&upper_camel(&v.name.name)).to_string(),
                                i,
                            )
                        })
                        .collect();
                    self.rust_collisions(variants, &mut HashSet::new(), |_, _| {
                        "enum variants become Rust variants named in UpperCamelCase"
                    });
                }
                _ => {}
            }
        }

        for iface in &spec.interfaces {
            // Each procedure `p` is the method `p` and, on the clients, `start_p`.
            let procs = iface
                .procedures
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    let start = ident(&start_name(&p.name.name)).to_string();
                    let mut started = RustName::plain(&p.name, start, i);
                    started.how = format!("generates the client method `{}`", started.rust);
                    [
                        RustName::plain(&p.name, ident(&proc_name(&p.name.name)).to_string(), i),
                        started,
                    ]
                })
                .collect();
            self.rust_collisions(procs, &mut HashSet::new(), |a, b| {
                if a.how.starts_with("generates") || b.how.starts_with("generates") {
                    "the clients have a method `start_p` for every procedure `p`, which starts the call and returns a handle to it"
                } else {
                    "procedures become methods of the generated clients and server trait, named in snake_case; names the clients use themselves (`new`, `client`, `with_options`, ...) get a trailing `_`"
                }
            });
            for proc in &iface.procedures {
                let args = proc
                    .args
                    .iter()
                    .enumerate()
                    .map(|(i, arg)| {
                        let rust = ident(&arg_name(arg.name.as_ref().map(|n| n.name.as_str()), i));
                        (i, (arg, rust))
                    })
                    .map(|(i, (arg, rust))| match &arg.name {
                        Some(name) => RustName::plain(name, rust.to_string(), i),
                        None => {
                            let rust = rust.to_string();
                            RustName {
                                how: format!("becomes `{rust}`"),
                                rust,
                                idl: None,
                                shown: format!("unnamed argument {}", i + 1),
                                span: arg.span,
                                item: i,
                                interface: false,
                            }
                        }
                    })
                    .collect();
                self.rust_collisions(args, &mut HashSet::new(), |_, _| {
                    "arguments become Rust parameters named in snake_case; unnamed ones are `arg1`, `arg2`, ..., and names the generated code uses itself (`ctx`, `args`, `w`, ...) get a trailing `_`"
                });
            }
        }
    }

    /// Reports each pair of items (in source order) whose Rust names in `names` (one
    /// namespace) are equal, once per pair across calls sharing `reported`.
    fn rust_collisions(
        &mut self,
        mut names: Vec<RustName<'_>>,
        reported: &mut HashSet<(usize, usize)>,
        note: impl Fn(&RustName<'_>, &RustName<'_>) -> &'static str,
    ) {
        names.sort_by_key(|n| n.span.start);
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (k, second) in names.iter().enumerate() {
            let Some(&f) = first.get(second.rust.as_str()) else {
                first.insert(&second.rust, k);
                continue;
            };
            let first = &names[f];
            let same_idl_name = first.idl.is_some() && first.idl == second.idl;
            if same_idl_name || !reported.insert((first.item, second.item)) {
                continue;
            }
            self.errors.push(
                Diagnostic::error(
                    format!(
                        "{} and {} both become the Rust name `{}`",
                        first.shown, second.shown, second.rust
                    ),
                    second.span,
                    format!("also {}", second.how),
                )
                .with_secondary(first.span, first.how.clone())
                .with_note(note(first, second)),
            );
        }
    }

    fn struct_rules(&mut self, s: &StructDef) {
        if s.fields.is_empty() {
            self.errors.push(
                Diagnostic::error(
                    format!("struct `{}` has no fields", s.name.name),
                    s.name.span,
                    "empty struct",
                )
                .with_note("XDR structs need at least one field (RFC 4506 §6.3)"),
            );
        }
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for field in &s.fields {
            if field.ty == Type::Void {
                continue; // already reported
            }
            if let Some(first) = seen.insert(&field.name.name, field.name.span) {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "field `{}` is declared more than once in struct `{}`",
                            field.name.name, s.name.name
                        ),
                        field.name.span,
                        "field already declared",
                    )
                    .with_secondary(first, "first declared here"),
                );
                seen.insert(&field.name.name, first);
            }
        }
    }

    /// Follows typedefs from `ty` (bounded, so typedef cycles cannot loop).
    fn unalias<'s>(&self, spec: &'s Spec, mut ty: &'s Type) -> &'s Type {
        for _ in 0..=spec.definitions.len() {
            let Type::Named(ident) = ty else { break };
            match self.names.get(&ident.name) {
                Some((Sym::Typedef(i), _)) => match &spec.definitions[*i] {
                    Definition::Typedef(t) => ty = &t.decl.ty,
                    _ => break,
                },
                _ => break,
            }
        }
        ty
    }

    fn union_rules(&mut self, spec: &Spec, u: &UnionDef) {
        enum Disc<'s> {
            Int,
            Unsigned,
            Bool,
            Enum(usize, &'s EnumDef),
        }
        let disc_ty = self.unalias(spec, &u.discriminant.ty);
        let disc = match disc_ty {
            Type::Int => Some(Disc::Int),
            Type::UnsignedInt => Some(Disc::Unsigned),
            Type::Bool => Some(Disc::Bool),
            Type::Named(ident) => match self.names.get(&ident.name) {
                Some((Sym::Enum(e), _)) => match &spec.definitions[*e] {
                    Definition::Enum(def) => Some(Disc::Enum(*e, def)),
                    _ => None,
                },
                Some((sym, _)) if sym.type_index().is_some() => {
                    self.errors.push(Diagnostic::error(
                        format!(
                            "union discriminant must be `int`, `unsigned int`, `bool` or an enum, found {} `{}`",
                            &sym.describe()[sym.describe().find(' ').map_or(0, |i| i + 1)..],
                            ident.name
                        ),
                        u.discriminant.name.span,
                        "not an integer type",
                    ));
                    None
                }
                _ => None, // undefined or a constant: already reported
            },
            other => {
                self.errors.push(Diagnostic::error(
                    format!(
                        "union discriminant must be `int`, `unsigned int`, `bool` or an enum, found `{}`",
                        describe(other)
                    ),
                    u.discriminant.name.span,
                    "not an integer type",
                ));
                None
            }
        };
        if u.cases.is_empty() && u.default.is_none() {
            self.errors.push(Diagnostic::error(
                format!("union `{}` has no arms", u.name.name),
                u.name.span,
                "empty union",
            ));
        }
        let mut seen_values: HashMap<i64, Span> = HashMap::new();
        let mut seen_arms: HashMap<&str, Span> = HashMap::new();
        let arms = u.cases.iter().map(|c| &c.arm).chain(u.default.as_ref());
        for arm in arms {
            if arm.ty == Type::Void {
                continue;
            }
            if let Some(first) = seen_arms.get(arm.name.name.as_str()) {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "arm `{}` is declared more than once in union `{}`",
                            arm.name.name, u.name.name
                        ),
                        arm.name.span,
                        "arm already declared",
                    )
                    .with_secondary(*first, "first declared here"),
                );
            } else {
                seen_arms.insert(&arm.name.name, arm.name.span);
            }
        }
        for value in u.cases.iter().flat_map(|c| &c.values) {
            let Some(v) = value.resolved else { continue };
            if let Some(first) = seen_values.get(&v) {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "case value {v} is used more than once in union `{}`",
                            u.name.name
                        ),
                        value.span,
                        "duplicate case",
                    )
                    .with_secondary(*first, "first used here"),
                );
                continue;
            }
            seen_values.insert(v, value.span);
            let out_of = |ty: &str| {
                Diagnostic::error(
                    format!("case value {v} does not fit the discriminant type `{ty}`"),
                    value.span,
                    format!("out of range for `{ty}`"),
                )
            };
            match &disc {
                None => {}
                Some(Disc::Int) if i32::try_from(v).is_err() => self.errors.push(out_of("int")),
                Some(Disc::Unsigned) if u32::try_from(v).is_err() => {
                    self.errors.push(out_of("unsigned int"))
                }
                Some(Disc::Bool) if !(0..=1).contains(&v) => {
                    self.errors.push(out_of("bool").with_note(
                        "a `bool` discriminant has the cases 0 (`FALSE`) and 1 (`TRUE`)",
                    ))
                }
                Some(Disc::Enum(e, def)) => {
                    let other_enum = match &value.kind {
                        ValueKind::Named(ident) => match self.names.get(&ident.name) {
                            Some((Sym::Variant(e2, _), _)) if e2 != e => Some((ident, *e2)),
                            _ => None,
                        },
                        ValueKind::Literal(_) => None,
                    };
                    if let Some((ident, e2)) = other_enum {
                        self.errors.push(
                            Diagnostic::error(
                                format!(
                                    "`{}` is not a variant of enum `{}`",
                                    ident.name, def.name.name
                                ),
                                value.span,
                                format!("not a variant of `{}`", def.name.name),
                            )
                            .with_note(format!(
                                "`{}` is a variant of enum `{}`",
                                ident.name,
                                spec.definitions[e2].name().name
                            )),
                        );
                    } else if !def.variants.iter().any(|x| x.resolved == Some(v)) {
                        self.errors.push(Diagnostic::error(
                            format!(
                                "case value {v} is not a variant of enum `{}`",
                                def.name.name
                            ),
                            value.span,
                            format!("no variant of `{}` has this value", def.name.name),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Finds types that contain themselves without indirection (an error), and the
    /// optionals through which a type contains itself (boxed in Rust).
    fn recursion(&mut self, spec: &Spec) -> HashMap<usize, Vec<bool>> {
        let n = spec.definitions.len();
        // edges[d]: (target, strict?, span of the reference, name of the field)
        let mut edges: Vec<Vec<(usize, bool, Span, String)>> = vec![Vec::new(); n];
        for (d, def) in spec.definitions.iter().enumerate() {
            for (ty, field) in def_types(def) {
                self.collect_edges(ty, true, &field.name.name, &mut edges[d]);
            }
        }
        let reach = |from: usize, strict_only: bool| -> HashSet<usize> {
            let mut seen = HashSet::new();
            let mut queue = VecDeque::from([from]);
            while let Some(x) = queue.pop_front() {
                for (t, strict, _, _) in &edges[x] {
                    if (*strict || !strict_only) && seen.insert(*t) {
                        queue.push_back(*t);
                    }
                }
            }
            seen
        };

        let mut reported = HashSet::new();
        let mut strict_reach = Vec::with_capacity(n);
        for d in 0..n {
            strict_reach.push(reach(d, true));
        }
        for d in 0..n {
            if reported.contains(&d) || !strict_reach[d].contains(&d) {
                continue;
            }
            let members: Vec<usize> = (0..n)
                .filter(|&x| {
                    x == d || (strict_reach[d].contains(&x) && strict_reach[x].contains(&d))
                })
                .collect();
            reported.extend(members.iter().copied());
            let Some((target, _, span, field)) = edges[d]
                .iter()
                .find(|(t, strict, _, _)| *strict && members.contains(t))
            else {
                continue;
            };
            let name = &spec.definitions[d].name().name;
            let target_name = &spec.definitions[*target].name().name;
            let mut diag = Diagnostic::error(
                format!("recursive type `{name}` has infinite size"),
                *span,
                "recursive without indirection",
            )
            .with_note(format!(
                "help: insert indirection: make it optional (`{target_name} *{field}`) or a variable-length array (`{target_name} {field}<>`)"
            ));
            if members.len() > 1 {
                let list: Vec<String> = members
                    .iter()
                    .map(|&m| format!("`{}`", spec.definitions[m].name().name))
                    .collect();
                diag = diag.with_note(format!("the cycle goes through {}", list.join(", ")));
            }
            self.errors.push(diag);
        }

        // A typedef that reaches itself through typedefs alone (`typedef a *a;`, or
        // `typedef b x<>; typedef x *b;`) would be a recursive Rust type alias, which
        // does not exist. A type alias names its whole type, so every reference counts
        // here, variable-length arrays included. Found by fuzzing (the generator looped
        // on both).
        let is_typedef = |x: usize| matches!(spec.definitions[x], Definition::Typedef(_));
        let mut alias_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (d, def) in spec.definitions.iter().enumerate() {
            if let Definition::Typedef(_) = def {
                for (ty, _) in def_types(def) {
                    self.named_anywhere(ty, &mut alias_edges[d]);
                }
            }
        }
        let typedefs: Vec<usize> = (0..n)
            .filter(|&d| is_typedef(d) && !reported.contains(&d))
            .collect();
        for d in typedefs {
            let mut seen = HashSet::new();
            let mut queue = VecDeque::from([d]);
            while let Some(x) = queue.pop_front() {
                for &t in &alias_edges[x] {
                    if is_typedef(t) && seen.insert(t) {
                        queue.push_back(t);
                    }
                }
            }
            if seen.contains(&d) {
                let def = spec.definitions[d].name();
                self.errors.push(
                    Diagnostic::error(
                        format!("typedef `{}` is defined in terms of itself", def.name),
                        def.span,
                        "a type alias cannot contain itself",
                    )
                    .with_note("help: make it a struct with the optional or array as a field"),
                );
                reported.insert(d);
            }
        }

        let mut boxed = HashMap::new();
        for (d, def) in spec.definitions.iter().enumerate() {
            let mut decisions = Vec::new();
            for (ty, _) in def_types(def) {
                let mut optionals = Vec::new();
                inline_optionals(ty, &mut optionals);
                for elem in optionals {
                    let mut targets = Vec::new();
                    self.collect_edges(elem, false, "", &mut targets);
                    let recursive = targets
                        .iter()
                        .any(|(t, _, _, _)| *t == d || reach(*t, false).contains(&d));
                    decisions.push(recursive);
                }
            }
            if decisions.iter().any(|&b| b) {
                boxed.insert(d, decisions);
            }
        }
        boxed
    }

    /// The definition a type name refers to, if it names a type of this file.
    fn type_def(&self, ident: &Ident) -> Option<usize> {
        self.names
            .get(&ident.name)
            .and_then(|(s, _)| s.type_index())
    }

    /// Every named type `ty` mentions, through any type constructor.
    fn named_anywhere(&self, ty: &Type, out: &mut Vec<usize>) {
        match ty {
            Type::Named(ident) => out.extend(self.type_def(ident)),
            Type::FixedArray { elem, .. }
            | Type::VarArray { elem, .. }
            | Type::Optional { elem, .. } => self.named_anywhere(elem, out),
            _ => {}
        }
    }

    /// The named types `ty` holds inline (not through a variable-length array), each
    /// with whether it is held strictly (not through an optional either).
    fn collect_edges(
        &self,
        ty: &Type,
        strict: bool,
        field: &str,
        out: &mut Vec<(usize, bool, Span, String)>,
    ) {
        match ty {
            Type::Named(ident) => {
                if let Some(i) = self.type_def(ident) {
                    out.push((i, strict, ident.span, field.to_string()));
                }
            }
            Type::FixedArray { elem, .. } => self.collect_edges(elem, strict, field, out),
            Type::Optional { elem, .. } => self.collect_edges(elem, false, field, out),
            _ => {}
        }
    }

    fn interfaces(&mut self, spec: &Spec, plan: &mut Plan) {
        let package = spec.package.as_ref().map(|p| p.name.as_str());
        let mut versions: HashMap<(&str, Option<i64>), Span> = HashMap::new();
        let mut ids: HashMap<(u32, Option<i64>), &Ident> = HashMap::new();
        // The versions of one `program` share its attributes: report each problem once.
        let mut attributes_checked = HashSet::new();
        for iface in &spec.interfaces {
            let name = &iface.name;
            if iface
                .attributes
                .first()
                .is_none_or(|a| attributes_checked.insert(a.span))
            {
                self.interface_attributes(iface);
            }
            if let Some(&(sym, span)) = self.names.get(&name.name) {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "the name `{}` is used by both an interface and {}",
                            name.name,
                            sym.describe()
                        ),
                        name.span,
                        "interface name",
                    )
                    .with_secondary(span, format!("`{}` is also defined here", name.name)),
                );
            }
            let version = iface.version.resolved;
            let id = match &iface.id {
                Some(value) => value.resolved.and_then(|v| u32::try_from(v).ok()),
                None => Some(default_interface_id(package, &name.name)),
            };
            plan.ids.push(id);
            if let Some(first) = versions.get(&(name.name.as_str(), version)) {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "interface `{}` version {} is defined more than once",
                            name.name,
                            version.unwrap_or_default()
                        ),
                        name.span,
                        "defined again here",
                    )
                    .with_secondary(*first, "first defined here"),
                );
            } else {
                versions.insert((&name.name, version), name.span);
                if let Some(id) = id {
                    if let Some(other) = ids.get(&(id, version)) {
                        self.errors.push(
                            Diagnostic::error(
                                format!(
                                    "interfaces `{}` and `{}` have the same id {id:#010x} and version {}",
                                    other.name,
                                    name.name,
                                    version.unwrap_or_default()
                                ),
                                name.span,
                                "same id and version",
                            )
                            .with_secondary(other.span, "first interface with this id")
                            .with_note("help: give one of them a distinct explicit id: `interface Name version N = 0x20000001 { ... }`"),
                        );
                    } else {
                        ids.insert((id, version), name);
                    }
                }
            }
            let numbers = self.procedures(iface);
            plan.numbers.push(numbers);
        }
    }

    fn procedures(&mut self, iface: &Interface) -> Vec<Option<u32>> {
        let mut names: HashMap<&str, Span> = HashMap::new();
        let mut numbers: HashMap<u32, &Ident> = HashMap::new();
        let mut highest: u64 = 0;
        let mut result = Vec::new();
        for proc in &iface.procedures {
            if let Some(first) = names.get(proc.name.name.as_str()) {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "procedure `{}` is defined more than once in interface `{}`",
                            proc.name.name, iface.name.name
                        ),
                        proc.name.span,
                        "defined again here",
                    )
                    .with_secondary(*first, "first defined here"),
                );
            } else {
                names.insert(&proc.name.name, proc.name.span);
            }
            self.procedure_rules(proc);

            // Numbering: explicit, or one past the highest number so far.
            let number = match &proc.number {
                Some(value) => match value.resolved.and_then(|v| u32::try_from(v).ok()) {
                    Some(n) => {
                        highest = highest.max(u64::from(n));
                        if n == 0 && !(proc.ret == Type::Void && proc.args.is_empty()) {
                            self.errors.push(
                                Diagnostic::error(
                                    "procedure number 0 is reserved for the null procedure",
                                    value.span,
                                    "reserved number",
                                )
                                .with_note("only `void name(void) = 0;` (RFC 5531's NULL procedure) may use number 0"),
                            );
                        }
                        Some(n)
                    }
                    None => None,
                },
                None => {
                    highest += 1;
                    match u32::try_from(highest) {
                        Ok(n) => Some(n),
                        Err(_) => {
                            self.errors.push(Diagnostic::error(
                                "procedure number overflows",
                                proc.name.span,
                                "the previous procedure has the highest possible number",
                            ));
                            None
                        }
                    }
                }
            };
            if let Some(n) = number {
                if let Some(first) = numbers.get(&n) {
                    let (span, label) = match &proc.number {
                        Some(value) => (value.span, "duplicate number".to_string()),
                        None => (proc.name.span, format!("implicitly numbered {n}")),
                    };
                    let mut diag = Diagnostic::error(
                        format!(
                            "procedure number {n} is used more than once in interface `{}`",
                            iface.name.name
                        ),
                        span,
                        label,
                    )
                    .with_secondary(first.span, format!("first used by `{}`", first.name));
                    if proc.number.is_none() {
                        diag = diag.with_note(
                            "a procedure without `= N` is numbered one past the highest number before it",
                        );
                    }
                    self.errors.push(diag);
                } else {
                    numbers.insert(n, &proc.name);
                }
            }
            result.push(number);
        }
        result
    }

    /// `[exactly_once] interface ...`: known attributes, each once, at most one semantics.
    fn interface_attributes(&mut self, iface: &Interface) {
        let mut attributes: HashMap<&str, Span> = HashMap::new();
        let mut semantics: Option<&Ident> = None;
        let what = match &iface.origin {
            InterfaceOrigin::Program { program, .. } => format!("program `{}`", program.name),
            _ => format!("interface `{}`", iface.name.name),
        };
        for attr in &iface.attributes {
            if !INTERFACE_ATTRIBUTES.contains(&attr.name.as_str()) {
                let mut diag = Diagnostic::error(
                    format!("unknown attribute `{}`", attr.name),
                    attr.span,
                    "unknown attribute",
                )
                .with_note(
                    "an interface's attributes are `at_most_once`, `at_least_once` and `exactly_once`",
                );
                if ATTRIBUTES.contains(&attr.name.as_str()) {
                    diag = diag.with_note(format!(
                        "help: `{}` belongs on a procedure: `[{}] int name(...);`",
                        attr.name, attr.name
                    ));
                }
                self.errors.push(diag);
            } else if let Some(first) = attributes.insert(&attr.name, attr.span) {
                self.errors.push(repeated_attribute(attr, first));
            } else if let Some(first) = semantics {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "{what} is given two delivery semantics, `{}` and `{}`",
                            first.name, attr.name
                        ),
                        attr.span,
                        "second semantics",
                    )
                    .with_secondary(first.span, "first semantics")
                    .with_note(
                        "an interface takes at most one of `at_most_once`, `at_least_once` and `exactly_once`",
                    ),
                );
            } else {
                semantics = Some(attr);
            }
        }
    }

    fn procedure_rules(&mut self, proc: &Procedure) {
        let mut attributes: HashMap<&str, Span> = HashMap::new();
        for attr in &proc.attributes {
            if !ATTRIBUTES.contains(&attr.name.as_str()) {
                let mut diag = Diagnostic::error(
                    format!("unknown attribute `{}`", attr.name),
                    attr.span,
                    "unknown attribute",
                )
                .with_note("a procedure's attributes are `idempotent` and `inline`");
                if INTERFACE_ATTRIBUTES.contains(&attr.name.as_str()) {
                    diag = diag.with_note(format!(
                        "help: `{}` sets the default semantics of a whole interface: write `[{}] interface Name ...`",
                        attr.name, attr.name
                    ));
                }
                self.errors.push(diag);
            } else if let Some(first) = attributes.insert(&attr.name, attr.span) {
                self.errors.push(repeated_attribute(attr, first));
            }
        }
        if proc.oneway && proc.ret != Type::Void {
            self.errors.push(
                Diagnostic::error(
                    format!(
                        "a `oneway` procedure must return `void`, found `{}`",
                        describe(&proc.ret)
                    ),
                    proc.name.span,
                    "oneway procedure with a result",
                )
                .with_note(
                    "no reply is sent for a oneway call, so there is nothing to carry a result",
                ),
            );
        }
        let mut args: HashMap<&str, Span> = HashMap::new();
        for arg in &proc.args {
            let Some(name) = &arg.name else { continue };
            if let Some(first) = args.get(name.name.as_str()) {
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "argument `{}` is declared more than once in procedure `{}`",
                            name.name, proc.name.name
                        ),
                        name.span,
                        "argument already declared",
                    )
                    .with_secondary(*first, "first declared here"),
                );
            } else {
                args.insert(&name.name, name.span);
            }
        }
    }

    // ---- applying decisions -------------------------------------------------------

    fn apply(&mut self, spec: &mut Spec, plan: Plan) {
        for (d, def) in spec.definitions.iter_mut().enumerate() {
            let Some(decisions) = plan.boxed.get(&d) else {
                continue;
            };
            let mut decisions = decisions.iter().copied();
            for ty in def_types_mut(def) {
                mark_inline_optionals(ty, &mut decisions);
            }
        }
        for (i, iface) in spec.interfaces.iter_mut().enumerate() {
            iface.resolved_id = plan.ids.get(i).copied().flatten();
            let numbers = plan.numbers.get(i);
            for (p, proc) in iface.procedures.iter_mut().enumerate() {
                proc.resolved_number = numbers.and_then(|n| n.get(p).copied().flatten());
            }
        }
    }
}

/// The types a definition holds, in a fixed order, each with the declaration it is in.
fn def_types(def: &Definition) -> Vec<(&Type, &Declaration)> {
    match def {
        Definition::Const(_) | Definition::StringConst(_) | Definition::Enum(_) => Vec::new(),
        Definition::Typedef(t) => vec![(&t.decl.ty, &t.decl)],
        Definition::Struct(s) => s.fields.iter().map(|f| (&f.ty, f)).collect(),
        Definition::Union(u) => std::iter::once(&u.discriminant)
            .chain(u.cases.iter().map(|c| &c.arm))
            .chain(u.default.as_ref())
            .map(|d| (&d.ty, d))
            .collect(),
    }
}

/// [`def_types`], mutably, in the same order.
fn def_types_mut(def: &mut Definition) -> Vec<&mut Type> {
    match def {
        Definition::Const(_) | Definition::StringConst(_) | Definition::Enum(_) => Vec::new(),
        Definition::Typedef(t) => vec![&mut t.decl.ty],
        Definition::Struct(s) => s.fields.iter_mut().map(|f| &mut f.ty).collect(),
        Definition::Union(u) => std::iter::once(&mut u.discriminant)
            .chain(u.cases.iter_mut().map(|c| &mut c.arm))
            .chain(u.default.as_mut())
            .map(|d| &mut d.ty)
            .collect(),
    }
}

/// The element types of the outermost optionals held inline by `ty` (directly or in
/// fixed-length arrays).
fn inline_optionals<'t>(ty: &'t Type, out: &mut Vec<&'t Type>) {
    match ty {
        Type::Optional { elem, .. } => out.push(elem),
        Type::FixedArray { elem, .. } => inline_optionals(elem, out),
        _ => {}
    }
}

/// Sets `boxed` on the optionals [`inline_optionals`] finds, in the same order.
fn mark_inline_optionals(ty: &mut Type, decisions: &mut impl Iterator<Item = bool>) {
    match ty {
        Type::Optional { boxed, .. } => *boxed = decisions.next().unwrap_or(false),
        Type::FixedArray { elem, .. } => mark_inline_optionals(elem, decisions),
        _ => {}
    }
}

/// A type as it would be written in the IDL, for messages.
pub fn describe(ty: &Type) -> String {
    fn value(v: &Value) -> String {
        match &v.kind {
            ValueKind::Literal(n) => n.to_string(),
            ValueKind::Named(i) => i.name.clone(),
        }
    }
    fn bound(max: &Option<Value>) -> String {
        max.as_ref().map(value).unwrap_or_default()
    }
    match ty {
        Type::Void => "void".into(),
        Type::Bool => "bool".into(),
        Type::Int => "int".into(),
        Type::UnsignedInt => "unsigned int".into(),
        Type::Hyper => "hyper".into(),
        Type::UnsignedHyper => "unsigned hyper".into(),
        Type::Float => "float".into(),
        Type::Double => "double".into(),
        Type::String { max } => format!("string<{}>", bound(max)),
        Type::FixedOpaque { len } => format!("opaque[{}]", value(len)),
        Type::VarOpaque { max } => format!("opaque<{}>", bound(max)),
        Type::FixedArray { elem, len } => format!("{}[{}]", describe(elem), value(len)),
        Type::VarArray { elem, max } => format!("{}<{}>", describe(elem), bound(max)),
        Type::Optional { elem, .. } => format!("{} *", describe(elem)),
        Type::Named(i) => i.name.clone(),
    }
}

/// Levenshtein distance, for "a type with a similar name exists" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The diagnostic for an attribute written twice on one item.
fn repeated_attribute(attr: &Ident, first: Span) -> Diagnostic {
    Diagnostic::error(
        format!("attribute `{}` is given more than once", attr.name),
        attr.span,
        "repeated attribute",
    )
    .with_secondary(first, "first given here")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_hash_has_top_bit() {
        // Published FNV-1a 32-bit test vectors (both already have the top bit set).
        assert_eq!(default_interface_id(None, "a"), 0xe40c_292c);
        assert_eq!(default_interface_id(None, "foobar"), 0xbf9c_f968);
        assert_eq!(
            default_interface_id(None, "Calc") & 0x8000_0000,
            0x8000_0000
        );
        assert_ne!(
            default_interface_id(Some("calc"), "Calc"),
            default_interface_id(None, "Calc")
        );
        assert_eq!(default_interface_id(None, ""), 0x811c_9dc5);
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("Pointt", "Point"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
