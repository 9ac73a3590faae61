//! Identifier naming: every rule that turns an IDL (or protobuf) name into a Rust one
//! (the rules are listed in the generator's docs, "Naming").
//!
//! The emitters name the generated items with these functions, and the checker reports
//! IDL names that two of them would turn into the same Rust name with the very same
//! functions, so the two cannot drift apart:
//!
//! * types, enum variants and interfaces: [`upper_camel`]; constants: [`screaming`];
//!   fields: [`snake`]; procedures: [`proc_name`]; arguments: [`arg_name`];
//! * keyword escaping: [`ident`], which every generated identifier goes through;
//! * an interface's items are its base name ([`interface_names`]) with a suffix:
//!   [`client_name`], [`blocking_client_name`], [`server_name`], [`interface_static`],
//!   [`procedures_static`]; the client method starting a call is [`start_name`];
//! * anonymous interfaces and program versions are named by [`upper_camel_case`].

use std::collections::HashMap;

use proc_macro2::{Ident as RIdent, Span as RSpan};
use quote::format_ident;

use crate::model::Interface;

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// An identifier, escaped if it is a Rust keyword.
pub(crate) fn ident(name: &str) -> RIdent {
    let name = if name.is_empty() { "_x" } else { name };
    // The case conversions never start a name with a digit; a name composed from one
    // (`{base}Client`) cannot either. Checked again here because an invalid identifier
    // would panic inside `proc_macro2`.
    let owned;
    let name = if name.starts_with(|c: char| c.is_ascii_digit()) {
        owned = format!("_{name}");
        owned.as_str()
    } else {
        name
    };
    match name {
        "self" | "Self" | "super" | "crate" | "_" => format_ident!("{}_", name),
        n if KEYWORDS.contains(&n) => RIdent::new_raw(n, RSpan::call_site()),
        n => RIdent::new(n, RSpan::call_site()),
    }
}

/// A converted name that starts with a digit gets a leading underscore back: `_1`
/// splits into the word `1`, which is no identifier. `_1` is valid in every case
/// convention rustc checks (it ignores leading underscores).
fn no_leading_digit(name: String) -> String {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// Splits an identifier into words at underscores and case changes.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let chars: Vec<char> = part.chars().collect();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if i > 0 && c.is_uppercase() {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                if prev.is_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_uppercase() && next_lower)
                {
                    out.push(std::mem::take(&mut word));
                }
            }
            word.push(c);
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// `UpperCamelCase`; names that already are camel case (start upper, no underscore,
/// not all upper case) are kept as written.
pub(crate) fn upper_camel(name: &str) -> String {
    let starts_upper = name.chars().next().is_some_and(|c| c.is_uppercase());
    let has_lower = name.chars().any(|c| c.is_lowercase());
    if starts_upper && has_lower && !name.contains('_') {
        return name.to_owned();
    }
    let s: String = words(name)
        .iter()
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f
                    .to_uppercase()
                    .chain(cs.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect();
    if s.is_empty() {
        "X".to_owned()
    } else {
        no_leading_digit(s)
    }
}

/// `snake_case`; names already in snake case are kept as written.
pub(crate) fn snake(name: &str) -> String {
    if !name.chars().any(|c| c.is_uppercase()) {
        return name.to_owned();
    }
    no_leading_digit(
        words(name)
            .iter()
            .map(|w| w.to_lowercase())
            .collect::<Vec<_>>()
            .join("_"),
    )
}

/// `SCREAMING_SNAKE_CASE`; names already in that case are kept as written.
pub(crate) fn screaming(name: &str) -> String {
    if !name.chars().any(|c| c.is_lowercase()) {
        return name.to_owned();
    }
    no_leading_digit(
        words(name)
            .iter()
            .map(|w| w.to_uppercase())
            .collect::<Vec<_>>()
            .join("_"),
    )
}

/// The Rust base names of the interfaces (`Calc` → `CalcClient`, `CALC_INTERFACE`, ...):
/// the camel-case name, with `V<version>` appended when two interfaces share a name.
pub(crate) fn interface_names(interfaces: &[Interface]) -> Vec<String> {
    let camel: Vec<String> = interfaces
        .iter()
        .map(|i| upper_camel(&i.name.name))
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for c in &camel {
        *count.entry(c.as_str()).or_default() += 1;
    }
    camel
        .iter()
        .zip(interfaces)
        .map(|(c, i)| {
            if count.get(c.as_str()).copied().unwrap_or(0) > 1 {
                format!("{c}V{}", crate::model::value_of(&i.version))
            } else {
                c.clone()
            }
        })
        .collect()
}

/// The Rust name of a procedure's argument number `index` (from 0): the written name in
/// snake_case, or `arg1`, `arg2`, ... for an unnamed one; a name the generated code uses
/// for a local of its own gets a trailing underscore. Escape it with [`ident`].
pub(crate) fn arg_name(written: Option<&str>, index: usize) -> String {
    const LOCALS: &[&str] = &[
        "w",
        "r",
        "ctx",
        "args",
        "inner",
        "ret",
        "options",
        "procedure",
        "decoded",
        "status",
        "this",
    ];
    let name = match written {
        Some(n) => snake(n),
        None => format!("arg{}", index + 1),
    };
    if LOCALS.contains(&name.as_str()) {
        format!("{name}_")
    } else {
        name
    }
}

/// The name of the client method that starts a call of a procedure and returns its
/// handle: `start_` and the procedure's name in snake_case.
pub(crate) fn start_name(name: &str) -> String {
    // `start__13` would not be snake case: leading underscores go.
    format!("start_{}", snake(name).trim_start_matches('_'))
}

/// The Rust method name of a procedure.
pub(crate) fn proc_name(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "new",
        "from_client",
        "client",
        "with_options",
        "with_runtime",
        "async_client",
        "clone",
        "fmt",
        "get_ref",
        "from_arc",
    ];
    let s = snake(name);
    if RESERVED.contains(&s.as_str()) {
        format!("{s}_")
    } else {
        s
    }
}

/// The async client type of an interface: `{base}Client`.
pub(crate) fn client_name(base: &str) -> String {
    format!("{base}Client")
}

/// The blocking client type of an interface: `{base}BlockingClient`.
pub(crate) fn blocking_client_name(base: &str) -> String {
    format!("{base}BlockingClient")
}

/// The server adapter type of an interface: `{base}Server`.
pub(crate) fn server_name(base: &str) -> String {
    format!("{base}Server")
}

/// The `InterfaceInfo` static of an interface: `{BASE}_INTERFACE`.
pub(crate) fn interface_static(base: &str) -> String {
    format!("{}_INTERFACE", screaming(base))
}

/// The procedure table static of an interface: `{BASE}_PROCEDURES`.
pub(crate) fn procedures_static(base: &str) -> String {
    format!("{}_PROCEDURES", screaming(base))
}

/// Converts a file or program name to UpperCamelCase: `my_calc` → `MyCalc`,
/// `CALC_PROG` → `CalcProg`, `myCalc` → `MyCalc`. Underscores, dashes, dots and other
/// non-alphanumeric characters separate words; an all-uppercase word is lowercased
/// after its first letter. (The parser names anonymous interfaces and program
/// versions with it; the generated Rust items have their own rules.)
pub fn upper_camel_case(name: &str) -> String {
    let mut out = String::new();
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let all_upper = !word.chars().any(|c| c.is_ascii_lowercase());
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            if all_upper {
                out.extend(chars.map(|c| c.to_ascii_lowercase()));
            } else {
                out.extend(chars);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_conversions() {
        assert_eq!(upper_camel("ADD"), "Add");
        assert_eq!(upper_camel("MAX_NAME"), "MaxName");
        assert_eq!(upper_camel("point"), "Point");
        assert_eq!(upper_camel("Point"), "Point");
        assert_eq!(upper_camel("linked_list"), "LinkedList");
        assert_eq!(upper_camel("fooBar"), "FooBar");
        assert_eq!(upper_camel("NFS3_OK"), "Nfs3Ok");
        assert_eq!(snake("func1"), "func1");
        assert_eq!(snake("numItems"), "num_items");
        assert_eq!(snake("NFSPROC_NULL"), "nfsproc_null");
        assert_eq!(snake("getHTTPResponse"), "get_http_response");
        assert_eq!(snake("already_snake"), "already_snake");
        assert_eq!(screaming("maxName"), "MAX_NAME");
        assert_eq!(screaming("MAX_NAME"), "MAX_NAME");
        assert_eq!(screaming("Calc"), "CALC");
        assert_eq!(screaming("KeyValue"), "KEY_VALUE");
    }

    #[test]
    fn underscore_digit_names_stay_identifiers() {
        assert_eq!(upper_camel("_1"), "_1");
        assert_eq!(upper_camel("_1_b"), "_1B");
        assert_eq!(upper_camel("__2x"), "_2x");
        assert_eq!(snake("_1"), "_1");
        assert_eq!(snake("_1A"), "_1_a");
        assert_eq!(screaming("_1"), "_1");
        assert_eq!(screaming("_1a"), "_1A");
        assert_eq!(ident("1Client").to_string(), "_1Client");
    }

    #[test]
    fn generated_names() {
        assert_eq!(arg_name(Some("numItems"), 0), "num_items");
        assert_eq!(arg_name(None, 1), "arg2");
        assert_eq!(arg_name(Some("ctx"), 0), "ctx_");
        assert_eq!(proc_name("New"), "new_");
        assert_eq!(proc_name("ADD"), "add");
        assert_eq!(start_name("_13"), "start_13");
        assert_eq!(client_name("Calc"), "CalcClient");
        assert_eq!(interface_static("KeyValue"), "KEY_VALUE_INTERFACE");
        assert_eq!(procedures_static("Calc"), "CALC_PROCEDURES");
        assert_eq!(upper_camel_case("calc2-v"), "Calc2V");
    }

    #[test]
    fn keywords_are_escaped() {
        assert_eq!(ident("type").to_string(), "r#type");
        assert_eq!(ident("self").to_string(), "self_");
        assert_eq!(ident("Self").to_string(), "Self_");
        assert_eq!(ident("value").to_string(), "value");
    }
}
