//! What rpcgen knows without the file saying it: C type names, the XDR types of
//! `<rpc/rpc.h>`, and program, version and procedure names as constants.
//!
//! Run by the checker before anything else ([`complete`]):
//!
//! - A type name from [`C_TYPES`] that the file does not define itself becomes the XDR
//!   type rpcgen gives it (`u_int` is `unsigned int`, `char` is `int`: rpcgen encodes
//!   every C integer type but `hyper`s in 4 bytes).
//! - A name from the `<rpc/rpc.h>` prelude ([`PRELUDE`]: `netobj`, `des_block`,
//!   `rpcprog_t` ..., `netbuf`, `MAX_NETOBJ_SZ`, `MAXNETNAMELEN`) that the file uses and
//!   does not define is added to the file's definitions, with what it needs.
//! - The program, version and procedure names of every RFC 5531 `program` become
//!   constants (rpcgen `#define`s them), unless the file defines the name otherwise.

use std::collections::HashSet;

use crate::model::*;

/// rpcgen's C type names and the XDR types they are: C's integer types are 4 bytes
/// on the wire (`long` included), the fixed-width 64-bit ones are `hyper`s.
pub const C_TYPES: &[(&str, Type)] = &[
    ("char", Type::Int),
    ("u_char", Type::UnsignedInt),
    ("short", Type::Int),
    ("u_short", Type::UnsignedInt),
    ("long", Type::Int),
    ("u_long", Type::UnsignedInt),
    ("u_int", Type::UnsignedInt),
    ("int32_t", Type::Int),
    ("uint32_t", Type::UnsignedInt),
    ("u_int32_t", Type::UnsignedInt),
    ("int64_t", Type::Hyper),
    ("uint64_t", Type::UnsignedHyper),
    ("u_int64_t", Type::UnsignedHyper),
    ("quad_t", Type::Hyper),
    ("u_quad_t", Type::UnsignedHyper),
    ("bool_t", Type::Bool),
    ("enum_t", Type::Int),
];

/// C type names rpcgen does not know either: an unknown type with one of these names
/// gets a hint saying which XDR type to write.
pub const OTHER_C_TYPES: &[&str] = &[
    "int8_t",
    "uint8_t",
    "u_int8_t",
    "int16_t",
    "uint16_t",
    "u_int16_t",
    "size_t",
    "ssize_t",
    "off_t",
    "time_t",
    "caddr_t",
    "uintptr_t",
    "intptr_t",
    "signed",
    "wchar_t",
];

/// The XDR definitions of `<rpc/rpc.h>` (and libtirpc's `<rpc/types.h>`) that `.x`
/// files use without defining, as IDL text. Only the ones a file uses are added.
pub const PRELUDE: &str = "\
/// The largest `netobj` (`<rpc/xdr.h>`).
const MAX_NETOBJ_SZ = 1024;
/// The longest network name (`<rpc/auth_des.h>`).
const MAXNETNAMELEN = 255;
/// An opaque network object, such as a file handle or a lock owner (`<rpc/xdr.h>`).
typedef opaque netobj<MAX_NETOBJ_SZ>;
/// An 8-byte DES block (`<rpc/auth.h>`).
typedef opaque des_block[8];
/// A program number (`<rpc/types.h>`).
typedef unsigned int rpcprog_t;
/// A version number (`<rpc/types.h>`).
typedef unsigned int rpcvers_t;
/// A procedure number (`<rpc/types.h>`).
typedef unsigned int rpcproc_t;
/// A protocol number (`<rpc/types.h>`).
typedef unsigned int rpcprot_t;
/// A port number (`<rpc/types.h>`).
typedef unsigned int rpcport_t;
/// A network address as libtirpc's `xdr_netbuf` encodes it: the buffer's capacity,
/// then its bytes.
struct netbuf {
    unsigned int maxlen;
    opaque buf<>;
};
";

/// The name shown for the prelude in diagnostics.
pub const PRELUDE_NAME: &str = "<rpc/rpc.h>";

/// The XDR type a C type name stands for, if rpcgen knows it.
pub fn c_type(name: &str) -> Option<&'static Type> {
    C_TYPES.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
}

/// Applies the three rules in the module docs to `spec`.
pub fn complete(spec: &mut Spec) {
    let mut defined: HashSet<String> = spec
        .definitions
        .iter()
        .map(|d| d.name().name.clone())
        .collect();
    for def in &spec.definitions {
        if let Definition::Enum(e) = def {
            defined.extend(e.variants.iter().map(|v| v.name.name.clone()));
        }
    }
    map_c_types(spec, &defined);
    add_prelude(spec, &mut defined);
    program_constants(spec, &mut defined);
}

fn for_each_type(spec: &mut Spec, f: &mut dyn FnMut(&mut Type)) {
    fn walk(ty: &mut Type, f: &mut dyn FnMut(&mut Type)) {
        f(ty);
        match ty {
            Type::FixedArray { elem, .. }
            | Type::VarArray { elem, .. }
            | Type::Optional { elem, .. } => walk(elem, f),
            _ => {}
        }
    }
    for def in &mut spec.definitions {
        match def {
            Definition::Typedef(t) => walk(&mut t.decl.ty, f),
            Definition::Struct(s) => s.fields.iter_mut().for_each(|d| walk(&mut d.ty, f)),
            Definition::Union(u) => {
                walk(&mut u.discriminant.ty, f);
                u.cases.iter_mut().for_each(|c| walk(&mut c.arm.ty, f));
                if let Some(d) = &mut u.default {
                    walk(&mut d.ty, f);
                }
            }
            Definition::Const(_) | Definition::StringConst(_) | Definition::Enum(_) => {}
        }
    }
    for iface in &mut spec.interfaces {
        for proc in &mut iface.procedures {
            walk(&mut proc.ret, f);
            proc.args.iter_mut().for_each(|a| walk(&mut a.ty, f));
        }
    }
}

/// Makes every `string` an `opaque` of the same bound: the same bytes on the wire,
/// but no UTF-8 requirement (ONC protocols such as NFS carry names as bytes). What
/// [`crate::Builder::strings_as_bytes`] does before generating.
pub fn strings_as_bytes(spec: &mut Spec) {
    for_each_type(spec, &mut |ty| {
        if let Type::String { max } = ty {
            *ty = Type::VarOpaque { max: max.take() };
        }
    });
}

fn map_c_types(spec: &mut Spec, defined: &HashSet<String>) {
    for_each_type(spec, &mut |ty| {
        if let Type::Named(name) = ty {
            if !defined.contains(&name.name) {
                if let Some(t) = c_type(&name.name) {
                    *ty = t.clone();
                }
            }
        }
    });
}

/// Every name `spec` uses, as a type or as a value.
fn used_names(spec: &mut Spec) -> HashSet<String> {
    fn value(v: &Value, out: &mut HashSet<String>) {
        if let ValueKind::Named(n) = &v.kind {
            out.insert(n.name.clone());
        }
    }
    let mut out = HashSet::new();
    for_each_type(spec, &mut |ty| match ty {
        Type::Named(n) => {
            out.insert(n.name.clone());
        }
        Type::String { max: Some(v) }
        | Type::VarOpaque { max: Some(v) }
        | Type::VarArray { max: Some(v), .. }
        | Type::FixedOpaque { len: v }
        | Type::FixedArray { len: v, .. } => value(v, &mut out),
        _ => {}
    });
    for def in &spec.definitions {
        match def {
            Definition::Const(c) => value(&c.value, &mut out),
            Definition::Enum(e) => e
                .variants
                .iter()
                .filter_map(|v| v.value.as_ref())
                .for_each(|v| value(v, &mut out)),
            Definition::Union(u) => u
                .cases
                .iter()
                .flat_map(|c| &c.values)
                .for_each(|v| value(v, &mut out)),
            _ => {}
        }
    }
    for iface in &spec.interfaces {
        value(&iface.version, &mut out);
        if let Some(id) = &iface.id {
            value(id, &mut out);
        }
        for v in iface.procedures.iter().filter_map(|p| p.number.as_ref()) {
            value(v, &mut out);
        }
    }
    out
}

/// Adds the prelude's definitions the file uses and does not define (and what they
/// use), placed after the file's text so their spans point into the prelude.
fn add_prelude(spec: &mut Spec, defined: &mut HashSet<String>) {
    let Ok(prelude) = crate::parser::parse(PRELUDE_NAME, PRELUDE) else {
        return; // the prelude is fixed text that parses: a test makes sure
    };
    use crate::naming::{interface_static, procedures_static, screaming, upper_camel};
    let base = spec.source.len();
    let shift = |s: &mut Span| *s = Span::new(s.start + base, s.end + base);
    // A prelude definition is only added when nothing of the file's stands in its way,
    // so every error stays in the file: not its name, not its Rust name, and none of
    // the names it uses (which must come from the prelude too).
    let user_defined = defined.clone();
    let mut rust_names: HashSet<String> = HashSet::new();
    for def in &spec.definitions {
        rust_names.insert(match def {
            Definition::Const(_) | Definition::StringConst(_) => screaming(&def.name().name),
            _ => upper_camel(&def.name().name),
        });
    }
    for base in crate::naming::interface_names(&spec.interfaces) {
        rust_names.insert(crate::naming::client_name(&base));
        rust_names.insert(crate::naming::blocking_client_name(&base));
        rust_names.insert(crate::naming::server_name(&base));
        rust_names.insert(interface_static(&base));
        rust_names.insert(procedures_static(&base));
        rust_names.insert(base);
    }
    let eligible = |d: &Definition| {
        let rust = match d {
            Definition::Const(_) => screaming(&d.name().name),
            _ => upper_camel(&d.name().name),
        };
        let mut alone = Spec {
            definitions: vec![d.clone()],
            interfaces: Vec::new(),
            ..prelude.clone()
        };
        !user_defined.contains(&d.name().name)
            && !rust_names.contains(&rust)
            && used_names(&mut alone)
                .iter()
                .all(|n| !user_defined.contains(n))
    };
    let mut wanted = Vec::new();
    for _ in 0..prelude.definitions.len() {
        let used = used_names(spec);
        let new: Vec<Definition> = prelude
            .definitions
            .iter()
            .filter(|d| {
                used.contains(&d.name().name) && !defined.contains(&d.name().name) && eligible(d)
            })
            .cloned()
            .collect();
        if new.is_empty() {
            break;
        }
        for mut def in new {
            defined.insert(def.name().name.clone());
            shift_spans(&mut def, &shift);
            wanted.push(def.name().name.clone());
            // Prelude types go first: they are what the file's own types build on.
            spec.definitions.insert(0, def);
        }
    }
    if wanted.is_empty() {
        return;
    }
    // Keep them in prelude order, ahead of the file's definitions.
    let n = wanted.len();
    let mut head: Vec<Definition> = spec.definitions.drain(..n).collect();
    head.sort_by_key(|d| {
        prelude
            .definitions
            .iter()
            .position(|p| p.name().name == d.name().name)
    });
    spec.definitions.splice(0..0, head);
    spec.source.push_str(PRELUDE);
    spec.source.push('\n');
    if spec.files.is_empty() {
        spec.files.push(SourceFile {
            name: spec.file_name.clone(),
            start: 0,
            end: base,
        });
    }
    spec.files.push(SourceFile {
        name: PRELUDE_NAME.to_string(),
        start: base,
        end: base + PRELUDE.len(),
    });
}

fn shift_spans(def: &mut Definition, shift: &dyn Fn(&mut Span)) {
    fn ty(t: &mut Type, shift: &dyn Fn(&mut Span)) {
        match t {
            Type::Named(n) => shift(&mut n.span),
            Type::String { max: Some(v) }
            | Type::VarOpaque { max: Some(v) }
            | Type::FixedOpaque { len: v } => shift(&mut v.span),
            Type::FixedArray { elem, len } => {
                shift(&mut len.span);
                ty(elem, shift);
            }
            Type::VarArray { elem, max } => {
                if let Some(v) = max {
                    shift(&mut v.span);
                }
                ty(elem, shift);
            }
            Type::Optional { elem, .. } => ty(elem, shift),
            _ => {}
        }
    }
    fn value_kind(v: &mut Value, shift: &dyn Fn(&mut Span)) {
        shift(&mut v.span);
        if let ValueKind::Named(n) = &mut v.kind {
            shift(&mut n.span);
        }
    }
    match def {
        Definition::Const(c) => {
            shift(&mut c.name.span);
            value_kind(&mut c.value, shift);
        }
        Definition::Typedef(t) => {
            shift(&mut t.decl.name.span);
            ty(&mut t.decl.ty, shift);
        }
        Definition::Struct(s) => {
            shift(&mut s.name.span);
            for f in &mut s.fields {
                shift(&mut f.name.span);
                ty(&mut f.ty, shift);
            }
        }
        // The prelude has no others.
        Definition::StringConst(_) | Definition::Enum(_) | Definition::Union(_) => {}
    }
}

/// Adds a constant for each program, version and procedure name not defined otherwise
/// (the first one wins when versions repeat a procedure name). Only names written in
/// SCREAMING_CASE, rpcgen's convention, are added, and none whose Rust name another
/// constant or an interface's statics already have.
fn program_constants(spec: &mut Spec, defined: &mut HashSet<String>) {
    use crate::naming::{interface_static, procedures_static, screaming};
    let mut taken: HashSet<String> = spec
        .definitions
        .iter()
        .filter(|d| matches!(d, Definition::Const(_) | Definition::StringConst(_)))
        .map(|d| screaming(&d.name().name))
        .collect();
    for base in crate::naming::interface_names(&spec.interfaces) {
        taken.insert(interface_static(&base));
        taken.insert(procedures_static(&base));
    }
    let mut consts = Vec::new();
    for iface in &spec.interfaces {
        let InterfaceOrigin::Program { program, version } = &iface.origin else {
            continue;
        };
        let mut add = |name: &Ident, value: &Value, what: String| {
            let rust = screaming(&name.name);
            if rust == name.name && !defined.contains(&name.name) && taken.insert(rust) {
                defined.insert(name.name.clone());
                consts.push(Definition::Const(ConstDef {
                    docs: vec![what],
                    name: name.clone(),
                    value: value.clone(),
                }));
            }
        };
        if let Some(id) = &iface.id {
            add(
                program,
                id,
                format!("The program number of `{}`.", program.name),
            );
        }
        add(
            version,
            &iface.version,
            format!(
                "The version number of `{}` in `{}`.",
                version.name, program.name
            ),
        );
        for proc in &iface.procedures {
            if let Some(number) = &proc.number {
                add(
                    &proc.name,
                    number,
                    format!(
                        "The procedure number of `{}` in `{}`.",
                        proc.name.name, version.name
                    ),
                );
            }
        }
    }
    spec.definitions.extend(consts);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_prelude_parses_and_checks() {
        let mut spec = crate::parser::parse(super::PRELUDE_NAME, super::PRELUDE).unwrap();
        crate::check::check(&mut spec).unwrap();
        assert_eq!(spec.definitions.len(), 10);
    }
}
