//! Non-recursive `Drop` for recursive types.
//!
//! A type that contains itself (`struct Node { int v; Node *next; }`, or a tree through
//! `Tree children<>`, or two types through each other) drops by recursion under Rust's
//! drop glue: a value a million levels deep overflows the stack. Decoding is bounded by
//! the reader's nesting limit, but a value built locally, or one assembled from many
//! decoded pieces, is not.
//!
//! For every set of mutually recursive types (a strongly connected component of the
//! "contains" graph) the generator emits:
//!
//! * a private enum with one variant per member type (`__DeepDropNode::Node(Node)`),
//! * on each member, a private `__take_nested` method that moves every member value it
//!   directly holds (through optionals, boxes and arrays, and through member values it
//!   embeds by value) into a work list, leaving `None` or an empty `Vec` behind,
//! * on each member, a `Drop` impl that empties itself into the work list and then pops
//!   and empties the list's values one at a time; each popped value is dropped with
//!   nothing recursive left in it, so its own `Drop` finds nothing to do.
//!
//! The stack depth of dropping is then constant; the work list holds at most the
//! number of nested values that were pending at once (one per level for a list).

use std::collections::{HashMap, HashSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::Generator;
use crate::model::{Definition, Type};

/// The struct and union names of the spec grouped into recursive components, each in
/// definition order; types that do not contain themselves are in none.
pub(super) fn recursive_components(generator: &Generator<'_>) -> Vec<Vec<String>> {
    let names: Vec<&str> = generator
        .spec
        .definitions
        .iter()
        .filter(|d| matches!(d, Definition::Struct(_) | Definition::Union(_)))
        .map(|d| d.name().name.as_str())
        .collect();
    let edges: HashMap<&str, HashSet<String>> = names
        .iter()
        .map(|n| (*n, generator.direct_named(n)))
        .collect();
    let reach: HashMap<&str, HashSet<String>> =
        names.iter().map(|n| (*n, reachable(n, &edges))).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for n in &names {
        if placed.contains(*n) || !reach[n].contains(*n) {
            continue;
        }
        let members: Vec<String> = names
            .iter()
            .filter(|m| reach[n].contains(**m) && reach[**m].contains(*n))
            .map(|m| (*m).to_owned())
            .collect();
        placed.extend(members.iter().cloned());
        out.push(members);
    }
    out
}

/// Every struct/union name reachable from `start` by one or more edges.
fn reachable(start: &str, edges: &HashMap<&str, HashSet<String>>) -> HashSet<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack: Vec<&str> = edges
        .get(start)
        .map(|e| e.iter().map(String::as_str).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if seen.insert(n.to_owned()) {
            if let Some(next) = edges.get(n) {
                stack.extend(next.iter().map(String::as_str));
            }
        }
    }
    seen
}

impl Generator<'_> {
    /// The struct/union names that `name`'s fields or arms mention, typedefs followed.
    fn direct_named(&self, name: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        match self.defs.get(name) {
            Some(Definition::Struct(s)) => {
                for f in &s.fields {
                    self.named_in(&f.ty, &mut out);
                }
            }
            Some(Definition::Union(u)) => {
                for arm in u.cases.iter().map(|c| &c.arm).chain(u.default.iter()) {
                    self.named_in(&arm.ty, &mut out);
                }
            }
            _ => {}
        }
        out
    }

    fn named_in(&self, ty: &Type, out: &mut HashSet<String>) {
        match self.resolve(ty) {
            Type::FixedArray { elem, .. }
            | Type::VarArray { elem, .. }
            | Type::Optional { elem, .. } => self.named_in(elem, out),
            Type::Named(n) => {
                if matches!(
                    self.defs.get(n.name.as_str()),
                    Some(Definition::Struct(_) | Definition::Union(_))
                ) {
                    out.insert(n.name.clone());
                }
            }
            _ => {}
        }
    }

    /// The work-list enum, the `__take_nested` methods and the `Drop` impls of one
    /// recursive component.
    pub(super) fn deep_drop(&self, members: &[String]) -> TokenStream {
        let Some(first) = members.first() else {
            return TokenStream::new();
        };
        let set: HashSet<&str> = members.iter().map(String::as_str).collect();
        let list = format_ident!("__DeepDrop{}", self.type_ident(first));
        let idents: Vec<_> = members.iter().map(|m| self.type_ident(m)).collect();
        let mut items = quote! {
            /// The pending values of a non-recursive drop (see the types' `Drop` impls).
            enum #list {
                #(#idents(#idents),)*
            }

            impl #list {
                fn take_nested(&mut self, out: &mut ::std::vec::Vec<#list>) {
                    match self {
                        #(Self::#idents(v) => v.__take_nested(out),)*
                    }
                }
            }
        };
        for (member, id) in members.iter().zip(&idents) {
            let body = self.take_body(member, &set, &list);
            items.extend(quote! {
                impl #id {
                    /// Moves every nested value of a recursive type out of `self`.
                    #[allow(unused_variables)]
                    fn __take_nested(&mut self, out: &mut ::std::vec::Vec<#list>) {
                        #body
                    }
                }

                /// Drops without recursion, so that a value of any depth drops in
                /// constant stack.
                impl ::core::ops::Drop for #id {
                    fn drop(&mut self) {
                        let mut out = ::std::vec::Vec::new();
                        self.__take_nested(&mut out);
                        while let ::core::option::Option::Some(mut next) = out.pop() {
                            next.take_nested(&mut out);
                        }
                    }
                }
            });
        }
        items
    }

    fn take_body(&self, name: &str, set: &HashSet<&str>, list: &proc_macro2::Ident) -> TokenStream {
        match self.defs.get(name) {
            Some(Definition::Struct(s)) => s
                .fields
                .iter()
                .map(|f| {
                    let fname = crate::naming::ident(&crate::naming::snake(&f.name.name));
                    self.walk_mut(&f.ty, quote!(&mut self.#fname), set, list)
                })
                .collect(),
            Some(Definition::Union(_)) => {
                let arms = self.union_arm_walks(name, set, list);
                quote! {
                    match self {
                        #(#arms)*
                        #[allow(unreachable_patterns)]
                        _ => {}
                    }
                }
            }
            _ => TokenStream::new(),
        }
    }

    /// `match` arms that walk each union arm holding a nested value.
    fn union_arm_walks(
        &self,
        name: &str,
        set: &HashSet<&str>,
        list: &proc_macro2::Ident,
    ) -> Vec<TokenStream> {
        let mut arms = Vec::new();
        for (variant, ty) in self.union_variants(name) {
            let walk = self.walk_mut(ty, quote!(value), set, list);
            if walk.is_empty() {
                continue;
            }
            let vname = super::ident(&variant);
            if variant == "Default" {
                arms.push(quote! { Self::Default { value, .. } => { #walk } });
            } else {
                arms.push(quote! { Self::#vname(value) => { #walk } });
            }
        }
        arms
    }

    /// Statements moving the nested values out of `place` (an expression of type
    /// `&mut ty`) into `out`.
    fn walk_mut(
        &self,
        ty: &Type,
        place: TokenStream,
        set: &HashSet<&str>,
        list: &proc_macro2::Ident,
    ) -> TokenStream {
        if !self.holds_member(ty, set) {
            return TokenStream::new();
        }
        match self.resolve(ty) {
            Type::Named(n) => {
                let id = self.type_ident(&n.name);
                quote! { #id::__take_nested(#place, out); }
            }
            Type::Optional { elem, boxed } => {
                let inner = self.walk_owned_boxed(elem, *boxed, set, list);
                quote! {
                    if let ::core::option::Option::Some(v) = ::core::option::Option::take(#place) { #inner }
                }
            }
            Type::VarArray { elem, .. } => {
                let inner = self.walk_owned(elem, set, list);
                quote! { for v in ::core::mem::take(#place) { #inner } }
            }
            Type::FixedArray { elem, .. } => {
                let inner = self.walk_mut(elem, quote!(v), set, list);
                quote! { for v in ::core::iter::IntoIterator::into_iter(#place) { #inner } }
            }
            _ => TokenStream::new(),
        }
    }

    /// Statements moving the nested values of `v` (owned, of type `ty`, or `Box<ty>`
    /// when `boxed`) into `out`.
    fn walk_owned_boxed(
        &self,
        ty: &Type,
        boxed: bool,
        set: &HashSet<&str>,
        list: &proc_macro2::Ident,
    ) -> TokenStream {
        let inner = self.walk_owned(ty, set, list);
        if boxed {
            quote! { let v = *v; #inner }
        } else {
            inner
        }
    }

    /// Statements moving the nested values of the owned `v: ty` into `out`.
    fn walk_owned(&self, ty: &Type, set: &HashSet<&str>, list: &proc_macro2::Ident) -> TokenStream {
        if !self.holds_member(ty, set) {
            return TokenStream::new();
        }
        match self.resolve(ty) {
            Type::Named(n) => {
                let id = self.type_ident(&n.name);
                quote! { out.push(#list::#id(v)); }
            }
            Type::Optional { elem, boxed } => {
                let inner = self.walk_owned_boxed(elem, *boxed, set, list);
                quote! { if let ::core::option::Option::Some(v) = v { #inner } }
            }
            Type::VarArray { elem, .. } | Type::FixedArray { elem, .. } => {
                let inner = self.walk_owned(elem, set, list);
                quote! { for v in v { #inner } }
            }
            _ => TokenStream::new(),
        }
    }

    /// Whether a value of `ty` can hold a value of a member type.
    fn holds_member(&self, ty: &Type, set: &HashSet<&str>) -> bool {
        let mut named = HashSet::new();
        self.named_in(ty, &mut named);
        named.iter().any(|n| set.contains(n.as_str()))
    }
}
