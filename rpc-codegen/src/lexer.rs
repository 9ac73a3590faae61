//! The lexer: source text to [`Token`]s with byte spans.
//!
//! Comments (`//`, `/* */`) and whitespace are skipped; doc comments (`///` lines and
//! `/** */` blocks) become [`TokenKind::Doc`] tokens, one per line, which the parser
//! attaches to the next item; a line whose first non-blank character is `%` becomes a
//! [`TokenKind::Passthrough`] token (RFC 5531); a line whose first non-blank character
//! is `#` becomes a [`TokenKind::Directive`] token, which the preprocessor
//! ([`crate::preprocess`]) interprets. Both kinds of line continue onto the next line
//! when they end with `\`, as after C's line splicing. `"..."` is a string literal
//! ([`TokenKind::Str`]), used by string constants.
//!
//! The lexer never stops at an error: it reports it, skips the offending text and goes
//! on, so one run finds every lexical error.

use crate::diagnostics::Diagnostic;
use crate::model::Span;

/// A reserved word of the XDR / RPC language (RFC 4506 §6.3, RFC 5531 §12.2).
///
/// The words this IDL adds (`interface`, `package`, `oneway`) and the Rust type
/// spellings (`i32`, `Vec`, ...) are contextual: they lex as identifiers, so existing
/// `.x` files that use them as names still compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the keyword of the same name
pub enum Keyword {
    Bool,
    Case,
    Const,
    Default,
    Double,
    Enum,
    Float,
    Hyper,
    Int,
    Opaque,
    Program,
    Quadruple,
    String,
    Struct,
    Switch,
    Typedef,
    Union,
    Unsigned,
    Version,
    Void,
}

impl Keyword {
    const ALL: [Keyword; 20] = [
        Keyword::Bool,
        Keyword::Case,
        Keyword::Const,
        Keyword::Default,
        Keyword::Double,
        Keyword::Enum,
        Keyword::Float,
        Keyword::Hyper,
        Keyword::Int,
        Keyword::Opaque,
        Keyword::Program,
        Keyword::Quadruple,
        Keyword::String,
        Keyword::Struct,
        Keyword::Switch,
        Keyword::Typedef,
        Keyword::Union,
        Keyword::Unsigned,
        Keyword::Version,
        Keyword::Void,
    ];

    /// The keyword as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Bool => "bool",
            Keyword::Case => "case",
            Keyword::Const => "const",
            Keyword::Default => "default",
            Keyword::Double => "double",
            Keyword::Enum => "enum",
            Keyword::Float => "float",
            Keyword::Hyper => "hyper",
            Keyword::Int => "int",
            Keyword::Opaque => "opaque",
            Keyword::Program => "program",
            Keyword::Quadruple => "quadruple",
            Keyword::String => "string",
            Keyword::Struct => "struct",
            Keyword::Switch => "switch",
            Keyword::Typedef => "typedef",
            Keyword::Union => "union",
            Keyword::Unsigned => "unsigned",
            Keyword::Version => "version",
            Keyword::Void => "void",
        }
    }

    /// The keyword spelled `word`, if it is one.
    pub fn from_word(word: &str) -> Option<Keyword> {
        Keyword::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// A punctuation character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // named after the character
pub enum Punct {
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Lt,
    Gt,
    Semi,
    Comma,
    Eq,
    Star,
    Colon,
}

impl Punct {
    /// The character.
    pub fn as_char(self) -> char {
        match self {
            Punct::LBrace => '{',
            Punct::RBrace => '}',
            Punct::LParen => '(',
            Punct::RParen => ')',
            Punct::LBracket => '[',
            Punct::RBracket => ']',
            Punct::Lt => '<',
            Punct::Gt => '>',
            Punct::Semi => ';',
            Punct::Comma => ',',
            Punct::Eq => '=',
            Punct::Star => '*',
            Punct::Colon => ':',
        }
    }

    fn from_char(c: char) -> Option<Punct> {
        Some(match c {
            '{' => Punct::LBrace,
            '}' => Punct::RBrace,
            '(' => Punct::LParen,
            ')' => Punct::RParen,
            '[' => Punct::LBracket,
            ']' => Punct::RBracket,
            '<' => Punct::Lt,
            '>' => Punct::Gt,
            ';' => Punct::Semi,
            ',' => Punct::Comma,
            '=' => Punct::Eq,
            '*' => Punct::Star,
            ':' => Punct::Colon,
            _ => return None,
        })
    }
}

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// An identifier (including contextual words such as `interface` or `Vec`).
    Ident(String),
    /// A reserved word.
    Keyword(Keyword),
    /// An integer literal (decimal, `0x` hex or leading-`0` octal, optional `-`).
    Int(i64),
    /// A punctuation character.
    Punct(Punct),
    /// One line of a doc comment, markers and one leading space removed.
    Doc(String),
    /// A `%` line, without the `%` and the line break (`\` continuations joined).
    Passthrough(String),
    /// A `#` line, without the `#` and the line break (`\` continuations joined):
    /// a preprocessor directive such as `ifdef RPC_HDR` or `include "a.x"`.
    Directive(String),
    /// A string literal, without the quotes (escapes kept as written).
    Str(String),
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Its bytes in the source.
    pub span: Span,
}

/// Splits `source` into tokens. Returns every token it could make and every lexical
/// error; the token list is only meaningful when the error list is empty.
pub fn tokenize(source: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lexer = Lexer {
        src: source,
        pos: 0,
        at_line_start: true,
        tokens: Vec::new(),
        errors: Vec::new(),
    };
    lexer.run();
    (lexer.tokens, lexer.errors)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    /// Only blanks since the last line break: `%` and `#` lines are recognised here.
    at_line_start: bool,
    tokens: Vec<Token>,
    errors: Vec<Diagnostic>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token {
            kind,
            span: Span::new(start, self.pos),
        });
    }

    /// Advances to the end of the line (not past the `\n`), joining lines that end
    /// with `\` (the backslash and the line break are dropped from the text).
    fn spliced_line(&mut self) -> String {
        let mut text = String::new();
        let src = self.src;
        loop {
            let start = self.pos;
            self.skip_line();
            let line = src[start..self.pos].trim_end_matches('\r');
            match line.strip_suffix('\\') {
                Some(head) if self.pos < self.src.len() => {
                    text.push_str(head);
                    text.push(' ');
                    self.pos += 1; // the `\n`
                }
                _ => {
                    text.push_str(line);
                    return text;
                }
            }
        }
    }

    /// Advances to the end of the line (not past the `\n`).
    fn skip_line(&mut self) -> &str {
        let start = self.pos;
        let len = self.rest().find('\n').unwrap_or(self.rest().len());
        self.pos += len;
        &self.src[start..self.pos]
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c == '\n' {
                self.pos += 1;
                self.at_line_start = true;
                continue;
            }
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            let line_start = std::mem::replace(&mut self.at_line_start, false);
            if line_start && c == '%' {
                self.pos += 1;
                let text = self.spliced_line();
                self.push(TokenKind::Passthrough(text), start);
            } else if line_start && c == '#' {
                self.pos += 1;
                let text = self.spliced_line();
                self.push(TokenKind::Directive(text), start);
            } else if c == '"' {
                self.string(start);
            } else if self.rest().starts_with("//") {
                self.line_comment(start);
            } else if self.rest().starts_with("/*") {
                self.block_comment(start);
            } else if c.is_ascii_alphabetic() || c == '_' {
                self.word(start);
            } else if c.is_ascii_digit()
                || (c == '-' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()))
            {
                self.number(start);
            } else if let Some(p) = Punct::from_char(c) {
                self.pos += 1;
                self.push(TokenKind::Punct(p), start);
            } else {
                self.pos += c.len_utf8();
                let (message, label) = if c == '-' {
                    (
                        "unexpected character `-`".to_string(),
                        "expected a digit after `-`",
                    )
                } else {
                    (
                        format!("unexpected character `{}`", c.escape_debug()),
                        "not valid in an IDL file",
                    )
                };
                self.errors.push(Diagnostic::error(
                    message,
                    Span::new(start, self.pos),
                    label,
                ));
            }
        }
    }

    fn line_comment(&mut self, start: usize) {
        let line = self.skip_line();
        // `///` is a doc comment, `////...` an ordinary one (as in Rust).
        if let Some(text) = line.strip_prefix("///") {
            if !text.starts_with('/') {
                // A bare carriage return inside the comment breaks the line, as it would
                // in an editor; Rust forbids it in doc comments, and docs are carried
                // over into the generated code.
                let lines: Vec<String> = text
                    .trim_end_matches('\r')
                    .split('\r')
                    .map(|t| t.strip_prefix(' ').unwrap_or(t).to_string())
                    .collect();
                for text in lines {
                    self.push(TokenKind::Doc(text), start);
                }
            }
        }
    }

    fn block_comment(&mut self, start: usize) {
        let body_start = start + 2;
        let Some(len) = self.src[body_start..].find("*/") else {
            self.pos = self.src.len();
            self.errors.push(Diagnostic::error(
                "unterminated block comment",
                Span::new(start, body_start),
                "this comment is never closed: expected `*/` before the end of the file",
            ));
            return;
        };
        let body = &self.src[body_start..body_start + len];
        self.pos = body_start + len + 2;
        // `/** */` is a doc comment; `/**/` and `/***` are ordinary ones.
        let Some(doc) = body.strip_prefix('*') else {
            return;
        };
        if body.is_empty() || doc.starts_with('*') {
            return;
        }
        // Lines end at `\n`, `\r\n` or a bare `\r` (see `line_comment`).
        let mut lines: Vec<String> = doc
            .split('\n')
            .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
            .map(|line| {
                let line = line.trim_end();
                let trimmed = line.trim_start();
                // Continuation lines are conventionally written ` * text`.
                let line = trimmed.strip_prefix('*').unwrap_or(trimmed);
                line.strip_prefix(' ').unwrap_or(line).to_string()
            })
            .collect();
        while lines.first().is_some_and(|l| l.is_empty()) {
            lines.remove(0);
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let span = Span::new(start, self.pos);
        self.tokens.extend(lines.into_iter().map(|text| Token {
            kind: TokenKind::Doc(text),
            span,
        }));
    }

    /// A `"..."` literal; `\"` and `\\` do not end it. It must end on its line.
    fn string(&mut self, start: usize) {
        let body = start + 1;
        let mut escaped = false;
        let end = self.src[body..].char_indices().find(|&(_, c)| {
            if c == '\n' {
                return true;
            }
            let done = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            done
        });
        match end {
            Some((i, '"')) => {
                self.pos = body + i + 1;
                let text = self.src[body..body + i].to_string();
                self.push(TokenKind::Str(text), start);
            }
            _ => {
                self.pos = body + end.map_or(self.src.len() - body, |(i, _)| i);
                self.errors.push(Diagnostic::error(
                    "unterminated string literal",
                    Span::new(start, body),
                    "this string is never closed: expected `\"` before the end of the line",
                ));
            }
        }
    }

    fn word(&mut self, start: usize) {
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        self.pos += len;
        let word = &self.src[start..self.pos];
        let kind = match Keyword::from_word(word) {
            Some(k) => TokenKind::Keyword(k),
            None => TokenKind::Ident(word.to_string()),
        };
        self.push(kind, start);
    }

    fn number(&mut self, start: usize) {
        let negative = self.peek() == Some('-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        // Take the whole alphanumeric run so `0x1G` or `12ab` is one bad literal.
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        self.pos += len;
        let text = &self.src[digits_start..self.pos];
        let span = Span::new(start, self.pos);
        let (radix, digits, offset, kind, article) =
            if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                (16, hex, 2, "hexadecimal", "a")
            } else if text.len() > 1 && text.starts_with('0') {
                (8, &text[1..], 1, "octal", "an")
            } else {
                (10, text, 0, "decimal", "a")
            };
        if digits.is_empty() {
            self.errors.push(Diagnostic::error(
                "hexadecimal literal has no digits",
                span,
                "expected hexadecimal digits after `0x`",
            ));
            self.push(TokenKind::Int(0), start);
            return;
        }
        let mut magnitude: u128 = 0;
        for (i, c) in digits.char_indices() {
            let Some(d) = c.to_digit(radix) else {
                let at = digits_start + offset + i;
                let mut diag = Diagnostic::error(
                    format!("invalid digit `{c}` in {kind} literal"),
                    Span::new(at, at + c.len_utf8()),
                    format!("not {article} {kind} digit"),
                );
                if radix == 8 && c.is_ascii_digit() {
                    diag = diag.with_note(
                        "a literal with a leading `0` is octal (RFC 4506); remove the leading zero for a decimal literal",
                    );
                }
                self.errors.push(diag);
                self.push(TokenKind::Int(0), start);
                return;
            };
            // Saturate well above i64's range; the range check below reports it.
            magnitude =
                (magnitude * u128::from(radix) + u128::from(d)).min(u128::from(u64::MAX) + 1);
        }
        let value = if negative {
            0i128
                .checked_sub_unsigned(magnitude)
                .and_then(|v| i64::try_from(v).ok())
        } else {
            i64::try_from(magnitude).ok()
        };
        match value {
            Some(v) => self.push(TokenKind::Int(v), start),
            None => {
                self.errors.push(
                    Diagnostic::error(
                        "integer literal is too large",
                        span,
                        "does not fit in a 64-bit signed integer",
                    )
                    .with_note(format!(
                        "integer literals must be between {} and {}",
                        i64::MIN,
                        i64::MAX
                    )),
                );
                self.push(TokenKind::Int(0), start);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let (tokens, errors) = tokenize(src);
        assert!(errors.is_empty(), "{errors:?}");
        tokens.into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn literals() {
        assert_eq!(
            kinds("0 10 -7 0x1F 017 -0x10 9223372036854775807 -9223372036854775808"),
            [0, 10, -7, 31, 15, -16, i64::MAX, i64::MIN].map(TokenKind::Int)
        );
    }

    #[test]
    fn comments_docs_and_lines() {
        let src =
            "%#include <x.h>\n# 1 \"a.x\"\n/// a\n//// no\n/** b\n * c\n */ /**/ x // y\n/* z */";
        assert_eq!(
            kinds(src),
            vec![
                TokenKind::Passthrough("#include <x.h>".into()),
                TokenKind::Directive(" 1 \"a.x\"".into()),
                TokenKind::Doc("a".into()),
                TokenKind::Doc("b".into()),
                TokenKind::Doc("c".into()),
                TokenKind::Ident("x".into()),
            ]
        );
    }

    #[test]
    fn continuations_and_strings() {
        let src = "%#define A (1 +\\\n  2)\n#if X \\\n && Y\nconst S = \"a\\\"b\";";
        assert_eq!(
            kinds(src),
            vec![
                TokenKind::Passthrough("#define A (1 +   2)".into()),
                TokenKind::Directive("if X   && Y".into()),
                TokenKind::Keyword(Keyword::Const),
                TokenKind::Ident("S".into()),
                TokenKind::Punct(Punct::Eq),
                TokenKind::Str("a\\\"b".into()),
                TokenKind::Punct(Punct::Semi),
            ]
        );
        let (_, errors) = tokenize("const S = \"abc\nconst T = 1;");
        assert_eq!(errors[0].message, "unterminated string literal");
    }

    #[test]
    fn errors_do_not_stop_the_lexer() {
        let (_, errors) = tokenize("@ 08 0x 99999999999999999999 - é /*");
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unexpected character `@`",
                "invalid digit `8` in octal literal",
                "hexadecimal literal has no digits",
                "integer literal is too large",
                "unexpected character `-`",
                "unexpected character `é`",
                "unterminated block comment",
            ]
        );
    }
}
