//! The type definitions' items: constants, typedefs, enums, structs and unions with
//! their `XdrEncode`/`XdrDecode` impls (naming and union rules in [`crate::generate`]).

use std::collections::{HashMap, HashSet};

mod deep_drop;

use proc_macro2::{Ident as RIdent, Literal, TokenStream};
use quote::quote;

use super::docs_or;
use super::xdr::{Place, Xdr};
use crate::ir;
use crate::naming::{ident, screaming, snake, upper_camel};

use crate::model::{
    value_of, ConstDef, Declaration, Definition, EnumDef, Spec, StructDef, Type, TypedefDef,
    UnionDef, Value, ValueKind,
};

/// How deep typedef chains are followed before giving up (a checked spec has no cycles;
/// this only keeps a malformed one from recursing forever).
const MAX_TYPEDEF_DEPTH: usize = 64;

/// One variant of a union's Rust enum: a (label, arm) pair and its name.
struct Variant<'d> {
    name: String,
    label: i64,
    label_name: String,
    arm: &'d Declaration,
}

/// The kind of discriminant a union switches on.
enum Disc<'a> {
    Int,
    Unsigned,
    Bool,
    Enum(&'a EnumDef),
}

pub(super) struct Generator<'a> {
    spec: &'a Spec,
    defs: ir::Defs<'a>,
    /// The typedefs the XDR code resolves through.
    types: &'a ir::Types,
}

impl<'a> Generator<'a> {
    pub(super) fn new(spec: &'a Spec, types: &'a ir::Types) -> Self {
        Generator {
            spec,
            defs: ir::defs(spec),
            types,
        }
    }

    /// The items of every definition (and the `Drop` impls of recursive types).
    pub(super) fn items(&self) -> TokenStream {
        let mut items = TokenStream::new();
        for def in &self.spec.definitions {
            items.extend(match def {
                Definition::Const(c) => self.constant(c),
                Definition::StringConst(c) => string_constant(c),
                Definition::Typedef(t) => self.typedef(t),
                Definition::Enum(e) => self.enumeration(e),
                Definition::Struct(s) => self.structure(s),
                Definition::Union(u) => self.union(u),
            });
        }
        for members in deep_drop::recursive_components(self) {
            items.extend(self.deep_drop(&members));
        }
        items
    }

    // ----- names and types -------------------------------------------------------------

    /// The Rust name of a type defined in the file.
    fn type_ident(&self, name: &str) -> RIdent {
        ident(&upper_camel(name))
    }

    /// Follows typedefs until a non-typedef type.
    fn resolve<'t>(&'t self, ty: &'t Type) -> &'t Type {
        let mut ty = ty;
        for _ in 0..MAX_TYPEDEF_DEPTH {
            match ty {
                Type::Named(n) => match self.defs.get(n.name.as_str()) {
                    Some(Definition::Typedef(t)) => ty = &t.decl.ty,
                    _ => return ty,
                },
                _ => return ty,
            }
        }
        ty
    }

    /// A checked type, resolved.
    fn lower(&self, ty: &Type) -> ir::Type {
        ir::lower_type(&self.defs, ty)
    }

    /// The XDR code of this file's types.
    fn xdr(&self) -> Xdr<'_> {
        Xdr::new(self.types)
    }

    fn rust_type(&self, ty: &Type) -> TokenStream {
        self.xdr().rust_type(&self.lower(ty))
    }

    /// A statement writing the value at `place` with writer `w`.
    fn encode_stmt(&self, ty: &Type, place: &Place) -> TokenStream {
        self.xdr().encode_stmt(&self.lower(ty), place)
    }

    /// An expression of type `Result<T, XdrError>` reading one value with reader `r`.
    fn decode_expr(&self, ty: &Type) -> TokenStream {
        self.xdr().decode_expr(&self.lower(ty))
    }

    // ----- definitions -----------------------------------------------------------------

    fn constant(&self, c: &ConstDef) -> TokenStream {
        let docs = docs_or(&c.docs, || format!("`{}` from the IDL.", c.name.name));
        let name = ident(&screaming(&c.name.name));
        let v = value_of(&c.value);
        if const_is_u32(c) {
            let lit = Literal::u32_unsuffixed(v as u32);
            quote! { #docs pub const #name: u32 = #lit; }
        } else {
            let lit = int_lit(v);
            quote! { #docs pub const #name: i64 = #lit; }
        }
    }

    fn typedef(&self, t: &TypedefDef) -> TokenStream {
        let docs = docs_or(&t.docs, || format!("`{}` from the IDL.", t.decl.name.name));
        let name = self.type_ident(&t.decl.name.name);
        let ty = self.rust_type(&t.decl.ty);
        quote! { #docs pub type #name = #ty; }
    }

    fn enumeration(&self, e: &EnumDef) -> TokenStream {
        let docs = docs_or(&e.docs, || {
            format!("The `{}` enum from the IDL.", e.name.name)
        });
        let name = self.type_ident(&e.name.name);
        let name_str = &e.name.name;
        let mut variants = Vec::new();
        let mut arms = Vec::new();
        let mut aliases = Vec::new();
        let mut seen = HashMap::new();
        for (i, v) in e.variants.iter().enumerate() {
            let vdocs = docs_or(&v.docs, || format!("`{}`.", v.name.name));
            let vname = ident(&upper_camel(&v.name.name));
            let value = enum_value(e, i);
            let lit = int_lit(value);
            // An alias (a second name for a value) is an associated constant: Rust
            // enums cannot have two variants with one discriminant.
            if let Some(first) = seen.get(&value) {
                let vdocs = docs_or(&v.docs, || {
                    format!("`{}`: another name for `{first}`.", v.name.name)
                });
                aliases.push(quote! { #vdocs pub const #vname: Self = Self::#first; });
                continue;
            }
            seen.insert(value, vname.clone());
            variants.push(quote! { #vdocs #vname = #lit });
            arms.push(quote! { #lit => Ok(#name::#vname), });
        }
        let aliases = if aliases.is_empty() {
            TokenStream::new()
        } else {
            quote! {
                #[allow(non_upper_case_globals)]
                impl #name {
                    #(#aliases)*
                }
            }
        };
        quote! {
            #docs
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            #[repr(i32)]
            pub enum #name {
                #(#variants,)*
            }

            #aliases

            impl ::core::convert::TryFrom<i32> for #name {
                type Error = ::rpc_core::xdr::XdrError;

                fn try_from(value: i32) -> ::core::result::Result<Self, ::rpc_core::xdr::XdrError> {
                    match value {
                        #(#arms)*
                        _ => Err(::rpc_core::xdr::XdrError::InvalidEnum {
                            name: #name_str,
                            value,
                        }),
                    }
                }
            }

            impl ::core::convert::From<#name> for i32 {
                fn from(value: #name) -> i32 {
                    value as i32
                }
            }

            impl ::rpc_core::xdr::XdrEncode for #name {
                fn encode(&self, w: &mut ::rpc_core::xdr::XdrWriter) -> ::core::result::Result<(), ::rpc_core::xdr::XdrError> {
                    w.put_i32(*self as i32);
                    Ok(())
                }
            }

            impl ::rpc_core::xdr::XdrDecode for #name {
                fn decode(r: &mut ::rpc_core::xdr::XdrReader<'_>) -> ::core::result::Result<Self, ::rpc_core::xdr::XdrError> {
                    Self::try_from(r.get_i32()?)
                }
            }
        }
    }

    fn structure(&self, s: &StructDef) -> TokenStream {
        let docs = docs_or(&s.docs, || {
            format!("The `{}` struct from the IDL.", s.name.name)
        });
        let name = self.type_ident(&s.name.name);
        let mut fields = Vec::new();
        let mut encodes = Vec::new();
        let mut decodes = Vec::new();
        for f in &s.fields {
            let fdocs = docs_or(&f.docs, || format!("`{}`.", f.name.name));
            let fname = ident(&snake(&f.name.name));
            let ty = self.rust_type(&f.ty);
            fields.push(quote! { #fdocs pub #fname: #ty });
            encodes.push(self.encode_stmt(&f.ty, &Place::Owned(quote!(self.#fname))));
            let d = self.decode_expr(&f.ty);
            decodes.push(quote! { #fname: #d? });
        }
        let (w, r) = if s.fields.is_empty() {
            (quote!(_w), quote!(_r))
        } else {
            (quote!(w), quote!(r))
        };
        quote! {
            #docs
            #[derive(Debug, Clone, PartialEq)]
            pub struct #name {
                #(#fields,)*
            }

            impl ::rpc_core::xdr::XdrEncode for #name {
                fn encode(&self, #w: &mut ::rpc_core::xdr::XdrWriter) -> ::core::result::Result<(), ::rpc_core::xdr::XdrError> {
                    #(#encodes)*
                    Ok(())
                }
            }

            impl ::rpc_core::xdr::XdrDecode for #name {
                fn decode(#r: &mut ::rpc_core::xdr::XdrReader<'_>) -> ::core::result::Result<Self, ::rpc_core::xdr::XdrError> {
                    Ok(Self {
                        #(#decodes,)*
                    })
                }
            }
        }
    }

    fn discriminant_kind(&self, ty: &Type) -> Disc<'a> {
        let mut ty = ty;
        for _ in 0..MAX_TYPEDEF_DEPTH {
            match ty {
                Type::UnsignedInt => return Disc::Unsigned,
                Type::Bool => return Disc::Bool,
                Type::Named(n) => match self.defs.get(n.name.as_str()) {
                    Some(Definition::Enum(e)) => return Disc::Enum(e),
                    Some(Definition::Typedef(t)) => ty = &t.decl.ty,
                    _ => return Disc::Int,
                },
                _ => return Disc::Int,
            }
        }
        Disc::Int
    }

    /// A union's variants: one per (label, arm), named as the module docs say; an arm
    /// with several labels yields several variants.
    fn variants<'u>(&self, u: &'u UnionDef, disc: &Disc<'_>) -> Vec<Variant<'u>> {
        let mut variants: Vec<Variant<'u>> = Vec::new();
        for case in &u.cases {
            let shared = case.values.len() > 1;
            for v in &case.values {
                let label = value_of(v);
                let label_name = self.label_name(disc, v, label);
                let name = if shared || matches!(case.arm.ty, Type::Void) {
                    label_name.clone()
                } else {
                    upper_camel(&case.arm.name.name)
                };
                variants.push(Variant {
                    name,
                    label,
                    label_name,
                    arm: &case.arm,
                });
            }
        }
        let mut taken: HashSet<String> = HashSet::new();
        if u.default.is_some() {
            taken.insert("Default".to_owned());
        }
        for v in &mut variants {
            if !taken.insert(v.name.clone()) {
                let mut candidate = format!("{}{}", v.name, v.label_name);
                let mut n = 2;
                while !taken.insert(candidate.clone()) {
                    candidate = format!("{}{}{n}", v.name, v.label_name);
                    n += 1;
                }
                v.name = candidate;
            }
        }
        variants
    }

    /// The Rust variant names of union `name` with the types they hold (`Default` for
    /// the default arm); `void` arms are left out.
    fn union_variants(&self, name: &str) -> Vec<(String, &'a Type)> {
        let Some(Definition::Union(u)) = self.defs.get(name) else {
            return Vec::new();
        };
        let disc = self.discriminant_kind(&u.discriminant.ty);
        let mut out: Vec<(String, &'a Type)> = self
            .variants(u, &disc)
            .into_iter()
            .filter(|v| !matches!(v.arm.ty, Type::Void))
            .map(|v| (v.name, &v.arm.ty))
            .collect();
        if let Some(arm) = u.default.as_ref().filter(|a| !matches!(a.ty, Type::Void)) {
            out.push(("Default".to_owned(), &arm.ty));
        }
        out
    }

    fn union(&self, u: &UnionDef) -> TokenStream {
        let docs = docs_or(&u.docs, || {
            format!("The `{}` union from the IDL.", u.name.name)
        });
        let name = self.type_ident(&u.name.name);
        let name_str = &u.name.name;
        let disc = self.discriminant_kind(&u.discriminant.ty);
        let disc_ty = match &disc {
            Disc::Int => quote!(i32),
            Disc::Unsigned => quote!(u32),
            Disc::Bool => quote!(bool),
            Disc::Enum(e) => {
                let id = self.type_ident(&e.name.name);
                quote!(#id)
            }
        };

        let variants = self.variants(u, &disc);

        let mut defs = Vec::new();
        let mut encode_arms = Vec::new();
        let mut decode_arms = Vec::new();
        let mut seen_labels = HashSet::new();
        let write_disc = |label: i64| -> TokenStream {
            match &disc {
                Disc::Int => {
                    let l = int_lit(label);
                    quote!(w.put_i32(#l);)
                }
                Disc::Unsigned => {
                    let l = Literal::u32_unsuffixed(label as u32);
                    quote!(w.put_u32(#l);)
                }
                Disc::Bool => {
                    let b = label != 0;
                    quote!(w.put_bool(#b);)
                }
                Disc::Enum(e) => match enum_variant_for(e, label) {
                    Some(vn) => {
                        let (en, vn) = (self.type_ident(&e.name.name), ident(&upper_camel(vn)));
                        quote!(w.put_i32(#en::#vn as i32);)
                    }
                    None => {
                        let l = int_lit(label);
                        quote!(w.put_i32(#l);)
                    }
                },
            }
        };
        for v in &variants {
            let vname = ident(&v.name);
            let vdocs = docs_or(&v.arm.docs, || {
                if matches!(v.arm.ty, Type::Void) {
                    format!("Case `{}` (no value).", self.label_text(&disc, v.label))
                } else {
                    format!(
                        "Case `{}`: `{}`.",
                        self.label_text(&disc, v.label),
                        v.arm.name.name
                    )
                }
            });
            let pattern = self.label_pattern(&disc, v.label);
            let wd = write_disc(v.label);
            let fresh = seen_labels.insert(v.label);
            if matches!(v.arm.ty, Type::Void) {
                defs.push(quote! { #vdocs #vname });
                encode_arms.push(quote! { Self::#vname => { #wd } });
                if fresh {
                    decode_arms.push(quote! { #pattern => Ok(Self::#vname), });
                }
            } else {
                let ty = self.rust_type(&v.arm.ty);
                defs.push(quote! { #vdocs #vname(#ty) });
                let enc = self.encode_stmt(&v.arm.ty, &Place::Ref(quote!(value)));
                encode_arms.push(quote! { Self::#vname(value) => { #wd #enc } });
                let dec = self.decode_expr(&v.arm.ty);
                if fresh {
                    decode_arms.push(quote! { #pattern => Ok(Self::#vname(#dec?)), });
                }
            }
        }

        let all_covered = match &disc {
            Disc::Bool => seen_labels.contains(&0) && seen_labels.contains(&1),
            Disc::Enum(e) => (0..e.variants.len()).all(|i| seen_labels.contains(&enum_value(e, i))),
            Disc::Int | Disc::Unsigned => false,
        };
        let disc_as_i64 = match &disc {
            Disc::Enum(_) => quote!(discriminant as i64),
            _ => quote!(i64::from(discriminant)),
        };
        let put_disc = match &disc {
            Disc::Int => quote!(w.put_i32(*discriminant);),
            Disc::Unsigned => quote!(w.put_u32(*discriminant);),
            Disc::Bool => quote!(w.put_bool(*discriminant);),
            Disc::Enum(_) => quote!(w.put_i32(*discriminant as i32);),
        };
        match &u.default {
            Some(arm) => {
                let ddocs = docs_or(&arm.docs, || "Any other discriminant.".to_owned());
                let disc_doc = quote!(#[doc = " The discriminant."]);
                if matches!(arm.ty, Type::Void) {
                    defs.push(quote! { #ddocs Default { #disc_doc discriminant: #disc_ty } });
                    encode_arms.push(quote! {
                        Self::Default { discriminant } => { #put_disc }
                    });
                    if !all_covered {
                        decode_arms.push(quote! { _ => Ok(Self::Default { discriminant }), });
                    }
                } else {
                    let ty = self.rust_type(&arm.ty);
                    let value_doc = docs_or(&[], || format!("The value (`{}`).", arm.name.name));
                    defs.push(quote! {
                        #ddocs Default { #disc_doc discriminant: #disc_ty, #value_doc value: #ty }
                    });
                    let enc = self.encode_stmt(&arm.ty, &Place::Ref(quote!(value)));
                    encode_arms.push(quote! {
                        Self::Default { discriminant, value } => { #put_disc #enc }
                    });
                    let dec = self.decode_expr(&arm.ty);
                    if !all_covered {
                        decode_arms.push(quote! {
                            _ => Ok(Self::Default { discriminant, value: #dec? }),
                        });
                    }
                }
            }
            None => {
                if !all_covered {
                    decode_arms.push(quote! {
                        _ => Err(::rpc_core::xdr::XdrError::InvalidDiscriminant {
                            name: #name_str,
                            value: #disc_as_i64,
                        }),
                    });
                }
            }
        }
        let read_disc = match &disc {
            Disc::Int => quote!(r.get_i32()?),
            Disc::Unsigned => quote!(r.get_u32()?),
            Disc::Bool => quote!(r.get_bool()?),
            Disc::Enum(e) => {
                let id = self.type_ident(&e.name.name);
                quote!(r.get::<#id>()?)
            }
        };
        let encode_body = if encode_arms.is_empty() {
            quote! { let _ = w; match *self {} }
        } else {
            quote! { match self { #(#encode_arms)* } Ok(()) }
        };
        let decode_body = quote! {
            let discriminant = #read_disc;
            match discriminant {
                #(#decode_arms)*
            }
        };
        quote! {
            #docs
            #[derive(Debug, Clone, PartialEq)]
            pub enum #name {
                #(#defs,)*
            }

            impl ::rpc_core::xdr::XdrEncode for #name {
                fn encode(&self, w: &mut ::rpc_core::xdr::XdrWriter) -> ::core::result::Result<(), ::rpc_core::xdr::XdrError> {
                    #encode_body
                }
            }

            impl ::rpc_core::xdr::XdrDecode for #name {
                fn decode(r: &mut ::rpc_core::xdr::XdrReader<'_>) -> ::core::result::Result<Self, ::rpc_core::xdr::XdrError> {
                    #decode_body
                }
            }
        }
    }

    /// The variant name derived from a case label.
    fn label_name(&self, disc: &Disc<'_>, v: &Value, label: i64) -> String {
        match (&v.kind, disc) {
            (ValueKind::Named(n), _) => upper_camel(&n.name),
            (ValueKind::Literal(_), Disc::Bool) => {
                if label != 0 { "True" } else { "False" }.to_owned()
            }
            (ValueKind::Literal(_), Disc::Enum(e)) => match enum_variant_for(e, label) {
                Some(n) => upper_camel(n),
                None => case_name(label),
            },
            (ValueKind::Literal(_), _) => case_name(label),
        }
    }

    /// A case label as the docs show it.
    fn label_text(&self, disc: &Disc<'_>, label: i64) -> String {
        match disc {
            Disc::Bool => (label != 0).to_string(),
            Disc::Enum(e) => enum_variant_for(e, label)
                .map(str::to_owned)
                .unwrap_or_else(|| label.to_string()),
            _ => label.to_string(),
        }
    }

    /// A case label as a match pattern on the decoded discriminant.
    fn label_pattern(&self, disc: &Disc<'_>, label: i64) -> TokenStream {
        match disc {
            Disc::Int => int_lit(label),
            Disc::Unsigned => {
                let l = Literal::u32_unsuffixed(label as u32);
                quote!(#l)
            }
            Disc::Bool => {
                let b = label != 0;
                quote!(#b)
            }
            Disc::Enum(e) => match enum_variant_for(e, label) {
                Some(vn) => {
                    let (en, vn) = (self.type_ident(&e.name.name), ident(&upper_camel(vn)));
                    quote!(#en::#vn)
                }
                // Not a value of the enum (the checker rejects this): never matches.
                None => quote!(_ if false),
            },
        }
    }
}

// ----- helpers ---------------------------------------------------------------------------

fn const_is_u32(c: &ConstDef) -> bool {
    u32::try_from(value_of(&c.value)).is_ok()
}

/// The value of the `index`th variant of an enum (previous + 1 if unresolved).
fn enum_value(e: &EnumDef, index: usize) -> i64 {
    let mut last = -1i64;
    for v in e.variants.iter().take(index + 1) {
        last = v
            .resolved
            .or_else(|| v.value.as_ref().map(value_of))
            .unwrap_or(last.saturating_add(1));
    }
    last
}

/// The IDL name of the enum variant with value `value`.
fn enum_variant_for(e: &EnumDef, value: i64) -> Option<&str> {
    (0..e.variants.len())
        .find(|&i| enum_value(e, i) == value)
        .map(|i| e.variants[i].name.name.as_str())
}

/// `const NAME = "text";` as a `&str` constant (C's escapes `\\`, `\"`, `\n`, `\t`,
/// `\r`, `\0` understood; any other backslash kept as written).
fn string_constant(c: &crate::model::StringConstDef) -> TokenStream {
    let docs = docs_or(&c.docs, || format!("`{}` from the IDL.", c.name.name));
    let name = ident(&screaming(&c.name.name));
    let mut text = String::new();
    let mut chars = c.value.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            text.push(ch);
            continue;
        }
        match chars.next() {
            Some('n') => text.push('\n'),
            Some('t') => text.push('\t'),
            Some('r') => text.push('\r'),
            Some('0') => text.push('\0'),
            Some(other @ ('\\' | '"' | '\'')) => text.push(other),
            Some(other) => {
                text.push('\\');
                text.push(other);
            }
            None => text.push('\\'),
        }
    }
    let lit = Literal::string(&text);
    quote! { #docs pub const #name: &str = #lit; }
}

fn case_name(label: i64) -> String {
    if label < 0 {
        format!("CaseMinus{}", label.unsigned_abs())
    } else {
        format!("Case{label}")
    }
}

/// An integer literal, with a separate minus sign when negative.
fn int_lit(v: i64) -> TokenStream {
    let abs = Literal::u64_unsuffixed(v.unsigned_abs());
    if v < 0 {
        quote!(-#abs)
    } else {
        quote!(#abs)
    }
}
