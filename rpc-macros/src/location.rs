//! Where the IDL text of an `idl!` literal sits in the user's Rust file, so that IDL
//! errors are reported at the real `file:line:column` and drawn over the real source
//! line, as rustc draws its own errors.
//!
//! The literal's start comes from `proc_macro::Span::{line, column, local_file}`. The
//! literal's own text (quotes, `r#`, escapes) is then walked to map each byte of the
//! string's value to the byte of the Rust source it came from. When anything does not
//! line up (a literal made by another macro, a file changed since), there is no
//! mapping and errors are reported against the IDL text alone.

use std::path::PathBuf;

use rpc_codegen::diagnostics::Diagnostics;

/// The Rust source holding a literal, and where each byte of the literal's value is in it.
pub(crate) struct SourceMap {
    /// How the file is named in messages (as rustc names it).
    file: String,
    /// The whole Rust source file.
    source: String,
    /// For each byte of the literal's value, its offset in `source`; one more entry for
    /// the end of the value.
    offsets: Vec<usize>,
}

impl SourceMap {
    /// The map for `lit`, if its text can be found where its span says.
    pub(crate) fn of(lit: &syn::LitStr, span: proc_macro::Span) -> Option<SourceMap> {
        let path: PathBuf = span.local_file()?;
        let source = std::fs::read_to_string(&path).ok()?;
        let start = offset_of(&source, span.line(), span.column())?;
        let token = lit.token().to_string();
        if !source[start..].starts_with(&token) {
            return None;
        }
        let mut offsets = value_offsets(&token)?;
        if offsets.len() != lit.value().len() + 1 {
            return None;
        }
        for o in &mut offsets {
            *o += start;
        }
        Some(SourceMap {
            file: span.file(),
            source,
            offsets,
        })
    }

    /// `errors` (spans into the literal's value) re-based onto the Rust source.
    pub(crate) fn remap(&self, errors: &Diagnostics) -> Diagnostics {
        let at = |o: usize| self.offsets[o.min(self.offsets.len() - 1)];
        let list = errors
            .iter()
            .cloned()
            .map(|mut d| {
                d.span.start = at(d.span.start);
                d.span.end = at(d.span.end).max(d.span.start);
                for (s, _) in &mut d.secondary {
                    s.start = at(s.start);
                    s.end = at(s.end).max(s.start);
                }
                d
            })
            .collect();
        Diagnostics::new(self.file.clone(), self.source.clone(), list)
    }
}

/// The byte offset of 1-based `line` and `column` (counted in characters) in `source`.
fn offset_of(source: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line <= 1 {
        0
    } else {
        source
            .match_indices('\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)?
    };
    let rest = &source[line_start..];
    let within = match rest.char_indices().nth(column.checked_sub(1)?) {
        Some((i, _)) => i,
        None => rest.len(),
    };
    Some(line_start + within)
}

/// For a string literal's source text (`"..."`, `r#"..."#`), the offset in that text of
/// each byte of its value, plus the offset of its end. `None` for what is not a plain
/// or raw string literal.
fn value_offsets(token: &str) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(token.len());
    if let Some(raw) = token.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let open = 1 + hashes + 1;
        let close = 1 + hashes;
        let body_end = token.len().checked_sub(close)?;
        if body_end < open {
            return None;
        }
        out.extend(open..=body_end);
        return Some(out);
    }
    let body = token.strip_prefix('"')?.strip_suffix('"')?;
    let base = 1;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(base + i);
            i += 1;
            continue;
        }
        let esc = base + i;
        match bytes.get(i + 1)? {
            b'n' | b'r' | b't' | b'\\' | b'0' | b'\'' | b'"' => {
                out.push(esc);
                i += 2;
            }
            b'x' => {
                out.push(esc);
                i += 4;
            }
            b'u' => {
                let close = body[i..].find('}')? + i;
                let code = u32::from_str_radix(&body[i + 3..close], 16).ok()?;
                let len = char::from_u32(code)?.len_utf8();
                out.extend(std::iter::repeat_n(esc, len));
                i = close + 1;
            }
            b'\n' | b'\r' => {
                // A line continuation: the newline and the next line's leading
                // whitespace are not part of the value.
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
            _ => return None,
        }
    }
    out.push(base + bytes.len());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_strings_map_one_to_one() {
        let offsets = value_offsets("r#\"ab\ncd\"#").unwrap();
        assert_eq!(offsets, vec![3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn escapes_map_to_their_backslash() {
        // value: a \n b é c
        let token = r#""a\nb\u{e9}c""#;
        let offsets = value_offsets(token).unwrap();
        assert_eq!(offsets, vec![1, 2, 4, 5, 5, 11, 12]);
    }

    #[test]
    fn line_continuations_are_skipped() {
        let token = "\"a\\\n    b\"";
        assert_eq!(value_offsets(token).unwrap(), vec![1, 8, 9]);
    }

    #[test]
    fn offsets_of_lines_and_columns() {
        let src = "ab\ncdé\nf";
        assert_eq!(offset_of(src, 1, 1), Some(0));
        assert_eq!(offset_of(src, 2, 3), Some(5));
        assert_eq!(offset_of(src, 3, 1), Some(8));
        assert_eq!(offset_of(src, 9, 1), None);
    }
}
