//! The preprocessor: the part of the C preprocessor that `.x` files rely on, run on the
//! lexer's tokens before the parser.
//!
//! rpcgen runs every `.x` file through `cpp`; real files use that for conditional
//! sections, `#include` of other `.x` files and simple macros. This pass handles:
//!
//! - `#include "file"` and `#include <dir/file>`: a quoted name is looked up next to the
//!   including file, then in the include directories ([`Options::include_dirs`]); an
//!   angle-bracket name only in the include directories. An included IDL file joins
//!   the including file's namespace (its definitions are generated with the file's own);
//!   a file already included is not included again. A `.h` include is ignored: in
//!   rpcgen it only matters to the C compiler.
//! - `#if`, `#ifdef`, `#ifndef`, `#elif`, `#else`, `#endif`, with `defined(NAME)`, integer
//!   literals and C's integer operators in conditions (an unknown name is 0, as in C).
//!   `RPC_HDR` is defined (to 1), `RPC_XDR`, `RPC_SVC` and `RPC_CLNT` are not: the view
//!   rpcgen has of a file when it writes the header, where every type and constant is
//!   declared (see docs/IDL.md).
//! - `#define NAME body` (substituted where `NAME` appears as a word; a function-like
//!   `#define NAME(...)` only counts as defined) and `#undef NAME`.
//! - `#error text` is an error; `#pragma`, `#ident`, `#line` and line markers
//!   (`# 1 "calc.x"`) are ignored.
//!
//! `%` lines stay [`TokenKind::Passthrough`] tokens; a `%#define NAME body` line is also
//! collected as a [`CDefine`], which the checker may turn into a constant.
//!
//! Bounds: includes nest at most [`MAX_INCLUDE_DEPTH`] deep, at most [`MAX_FILES`]
//! files make up one spec, and only regular files of at most [`MAX_FILE_BYTES`] are
//! read; macros are substituted once (their bodies are not rescanned), to at most
//! [`MAX_EXPANDED_TOKENS`] tokens in all, so no input makes this pass loop, recurse or
//! grow without bound.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::diagnostics::Diagnostic;
use crate::lexer::{tokenize, Token, TokenKind};
use crate::model::{CDefine, Ident, SourceFile, Span};

/// How deeply `#include`s may nest.
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// How many files (the main file, includes and preludes) one spec may be made of.
pub const MAX_FILES: usize = 256;

/// At most this many tokens come from `#define` substitutions in one spec: a macro
/// used many times cannot blow a small file up without bound.
pub const MAX_EXPANDED_TOKENS: usize = 1 << 20;

/// The largest file `#include` reads (bytes): only regular files are read, and none
/// larger than this.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The macros defined before the first line, as rpcgen defines them when it writes the
/// header: `RPC_HDR` only.
pub const PREDEFINED: &[(&str, &str)] = &[("RPC_HDR", "1")];

/// What the preprocessor needs besides the file itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where `#include <...>` (and, after the including file's directory,
    /// `#include "..."`) looks for files, in order.
    pub include_dirs: Vec<PathBuf>,
    /// Macros defined in addition to [`PREDEFINED`] (`-D NAME=value`); an empty value
    /// defines the name only.
    pub defines: Vec<(String, String)>,
    /// Files read before the main file, as if it started with `#include` of each:
    /// their definitions join its namespace (a file that uses another file's types
    /// without including it, such as `nis_callback.x`).
    pub prelude: Vec<PathBuf>,
}

/// The preprocessed token stream of a file and everything it included.
#[derive(Debug, Default)]
pub struct Unit {
    /// The tokens the parser sees, with spans into `source`.
    pub tokens: Vec<Token>,
    /// The main file's text, then every other file's, each followed by a line break.
    pub source: String,
    /// The files making up `source`, the main file first.
    pub files: Vec<SourceFile>,
    /// The `%#define` lines that define a name (not a function-like macro).
    pub c_defines: Vec<CDefine>,
}

struct Macro {
    body: Vec<TokenKind>,
}

/// One open `#if` group.
struct Cond {
    /// Whether the lines of the current branch are kept.
    active: bool,
    /// Whether some branch of the group was taken already.
    taken: bool,
    /// Whether the group's enclosing lines are kept.
    outer: bool,
    /// Whether `#else` was seen.
    in_else: bool,
    /// The `#if` line.
    span: Span,
}

struct Pre<'o> {
    options: &'o Options,
    /// Tokens produced by macro substitution so far.
    expanded: usize,
    unit: Unit,
    macros: HashMap<String, Macro>,
    included: HashSet<PathBuf>,
    errors: Vec<Diagnostic>,
}

/// Runs the preprocessor on `source` (the text of `file_name`). Errors have spans into
/// [`Unit::source`], which is returned with them so they can be rendered.
pub fn preprocess(
    file_name: &str,
    source: &str,
    options: &Options,
) -> Result<Unit, (Unit, Vec<Diagnostic>)> {
    let mut pre = Pre {
        options,
        expanded: 0,
        unit: Unit::default(),
        macros: HashMap::new(),
        included: HashSet::new(),
        errors: Vec::new(),
    };
    for (name, value) in PREDEFINED
        .iter()
        .map(|&(n, v)| (n.to_string(), v.to_string()))
        .chain(options.defines.iter().cloned())
    {
        let (body, _) = tokenize(&value);
        pre.macros.insert(
            name,
            Macro {
                body: body.into_iter().map(|t| t.kind).collect(),
            },
        );
    }
    // The main file comes first so that its spans are offsets into its own text.
    let main_start = pre.add_file(file_name, source);
    let main_path = Path::new(file_name);
    if let Ok(canonical) = main_path.canonicalize() {
        pre.included.insert(canonical);
    }
    let main_tokens = pre.lex(source, main_start);
    for prelude in &options.prelude {
        pre.include_path(prelude, None, 0);
    }
    if let Some(tokens) = main_tokens {
        pre.process(main_path, tokens, 0);
    }
    if pre.errors.is_empty() {
        Ok(pre.unit)
    } else {
        Err((pre.unit, pre.errors))
    }
}

/// Removes C comments from a directive's text.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                out.push(' ');
                match rest[b + 2..].find("*/") {
                    Some(e) => rest = &rest[b + 2 + e + 2..],
                    None => return out,
                }
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                return out;
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

impl Pre<'_> {
    /// Appends a file's text to the unit's source; returns where it starts.
    fn add_file(&mut self, name: &str, text: &str) -> usize {
        let start = self.unit.source.len();
        self.unit.source.push_str(text);
        self.unit.files.push(SourceFile {
            name: name.to_string(),
            start,
            end: start + text.len(),
        });
        self.unit.source.push('\n');
        start
    }

    /// The tokens of `text`, which starts at `base` in the unit's source; `None` (and
    /// the errors recorded) if it has lexical errors.
    fn lex(&mut self, text: &str, base: usize) -> Option<Vec<Token>> {
        let shift = |s: Span| Span::new(s.start + base, s.end + base);
        let (mut tokens, errors) = tokenize(text);
        if !errors.is_empty() {
            self.errors.extend(errors.into_iter().map(|mut e| {
                e.span = shift(e.span);
                e.secondary = e
                    .secondary
                    .into_iter()
                    .map(|(s, l)| (shift(s), l))
                    .collect();
                e
            }));
            return None;
        }
        for t in &mut tokens {
            t.span = shift(t.span);
        }
        Some(tokens)
    }

    fn process(&mut self, path: &Path, tokens: Vec<Token>, depth: usize) {
        let mut conds: Vec<Cond> = Vec::new();
        for token in tokens {
            let active = conds.last().is_none_or(|c| c.active);
            match token.kind {
                TokenKind::Directive(text) => {
                    self.directive(path, &strip_comments(&text), token.span, &mut conds, depth)
                }
                _ if !active => {}
                TokenKind::Passthrough(text) => {
                    self.c_define(&text, token.span);
                    self.unit.tokens.push(Token {
                        kind: TokenKind::Passthrough(text),
                        span: token.span,
                    });
                }
                TokenKind::Ident(name) => match self.macros.get(&name) {
                    Some(m) if !m.body.is_empty() && self.expanded <= MAX_EXPANDED_TOKENS => {
                        self.expanded += m.body.len();
                        if self.expanded > MAX_EXPANDED_TOKENS {
                            self.errors.push(Diagnostic::error(
                                "macros expand to too many tokens",
                                token.span,
                                format!(
                                    "more than {MAX_EXPANDED_TOKENS} tokens from `#define`s by here"
                                ),
                            ));
                            continue;
                        }
                        let span = token.span;
                        let body: Vec<Token> = m
                            .body
                            .iter()
                            .map(|kind| Token {
                                kind: kind.clone(),
                                span,
                            })
                            .collect();
                        self.unit.tokens.extend(body);
                    }
                    _ => self.unit.tokens.push(Token {
                        kind: TokenKind::Ident(name),
                        span: token.span,
                    }),
                },
                kind => self.unit.tokens.push(Token {
                    kind,
                    span: token.span,
                }),
            }
        }
        for cond in conds {
            self.errors.push(
                Diagnostic::error(
                    "unterminated conditional directive",
                    cond.span,
                    "this `#if` has no `#endif`",
                )
                .with_note("help: add `#endif` to close the group before the end of the file"),
            );
        }
    }

    /// Records `%#define NAME body` (not `NAME(args)`).
    fn c_define(&mut self, text: &str, span: Span) {
        let Some(rest) = text.trim_start().strip_prefix('#') else {
            return;
        };
        let Some(rest) = rest.trim_start().strip_prefix("define") else {
            return;
        };
        if !rest.starts_with([' ', '\t']) {
            return;
        }
        let rest = rest.trim_start();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..len];
        if name.is_empty() || rest[len..].starts_with('(') {
            return;
        }
        // Point at the name: `rest` is a suffix of `text`, which follows the `%`.
        let at = span.start + 1 + (text.len() - rest.len());
        self.unit.c_defines.push(CDefine {
            name: Ident {
                name: name.to_string(),
                span: Span::new(at, at + name.len()),
            },
            body: strip_comments(&rest[len..]).trim().to_string(),
        });
    }

    fn directive(
        &mut self,
        path: &Path,
        text: &str,
        span: Span,
        conds: &mut Vec<Cond>,
        depth: usize,
    ) {
        let text = text.trim();
        let len = text
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(text.len());
        let (word, rest) = (&text[..len], text[len..].trim());
        let active = conds.last().is_none_or(|c| c.active);
        match word {
            "if" | "ifdef" | "ifndef" => {
                let value = if !active {
                    false
                } else {
                    match word {
                        "ifdef" => self.macros.contains_key(first_word(rest)),
                        "ifndef" => !self.macros.contains_key(first_word(rest)),
                        _ => self.condition(rest, span),
                    }
                };
                conds.push(Cond {
                    active: active && value,
                    taken: value,
                    outer: active,
                    in_else: false,
                    span,
                });
            }
            "elif" | "else" => {
                let Some(cond) = conds.last_mut() else {
                    self.errors.push(Diagnostic::error(
                        format!("`#{word}` without `#if`"),
                        span,
                        "no `#if` is open here",
                    ));
                    return;
                };
                if cond.in_else {
                    self.errors.push(
                        Diagnostic::error(
                            format!("`#{word}` after `#else`"),
                            span,
                            "the group already had its `#else`",
                        )
                        .with_secondary(cond.span, "the group starts here"),
                    );
                    return;
                }
                let (outer, taken) = (cond.outer, cond.taken);
                let value = if word == "else" {
                    true
                } else if outer && !taken {
                    self.condition(rest, span)
                } else {
                    false
                };
                let Some(cond) = conds.last_mut() else { return };
                cond.in_else = word == "else";
                cond.active = outer && !taken && value;
                cond.taken = taken || value;
            }
            "endif" => {
                if conds.pop().is_none() {
                    self.errors.push(Diagnostic::error(
                        "`#endif` without `#if`",
                        span,
                        "no `#if` is open here",
                    ));
                }
            }
            _ if !active => {}
            "include" => self.include(path, rest, span, depth),
            "define" => {
                let name_len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..name_len];
                if name.is_empty() {
                    self.errors.push(Diagnostic::error(
                        "`#define` without a name",
                        span,
                        "expected a macro name",
                    ));
                    return;
                }
                let body = if rest[name_len..].starts_with('(') {
                    // Function-like: defined, never substituted.
                    Vec::new()
                } else {
                    let (tokens, errors) = tokenize(&rest[name_len..]);
                    if !errors.is_empty() {
                        Vec::new()
                    } else {
                        tokens.into_iter().map(|t| t.kind).collect()
                    }
                };
                self.macros.insert(name.to_string(), Macro { body });
            }
            "undef" => {
                self.macros.remove(first_word(rest));
            }
            "error" => self.errors.push(Diagnostic::error(
                format!("#error {rest}"),
                span,
                "`#error` directive",
            )),
            "pragma" | "ident" | "line" | "warning" | "" => {}
            _ if word.starts_with(|c: char| c.is_ascii_digit()) => {} // `# 1 "a.x"`
            _ => self.errors.push(
                Diagnostic::error(
                    format!("unknown preprocessor directive `#{word}`"),
                    span,
                    "not a directive",
                )
                .with_note("the directives are `#include`, `#if`, `#ifdef`, `#ifndef`, `#elif`, `#else`, `#endif`, `#define`, `#undef`, `#error` and `#pragma`"),
            ),
        }
    }

    fn condition(&mut self, text: &str, span: Span) -> bool {
        let macros = &self.macros;
        let defined = |name: &str| macros.contains_key(name);
        let value = |name: &str| {
            let Some(m) = macros.get(name) else {
                return Some(0);
            };
            match m.body.as_slice() {
                [] => Some(0),
                [TokenKind::Int(v)] => Some(*v),
                _ => None,
            }
        };
        match eval(text, &value, Some(&defined)) {
            Ok(v) => v != 0,
            Err(why) => {
                self.errors.push(Diagnostic::error(
                    format!("invalid `#if` condition: {why}"),
                    span,
                    "in this condition",
                ));
                false
            }
        }
    }

    fn include(&mut self, path: &Path, rest: &str, span: Span, depth: usize) {
        let (name, quoted) = if let Some(q) = rest.strip_prefix('"') {
            (q.split('"').next().unwrap_or(""), true)
        } else if let Some(a) = rest.strip_prefix('<') {
            (a.split('>').next().unwrap_or(""), false)
        } else {
            self.errors.push(
                Diagnostic::error(
                    "`#include` expects \"FILE\" or <FILE>",
                    span,
                    "no file name",
                )
                .with_note("help: write `#include \"other.x\"` or `#include <rpcsvc/other.x>`"),
            );
            return;
        };
        if name.ends_with(".h") {
            return; // C only: rpcgen leaves it to the C compiler.
        }
        let mut candidates = Vec::new();
        if quoted {
            let dir = path.parent().unwrap_or(Path::new(""));
            candidates.push(dir.join(name));
        }
        candidates.extend(self.options.include_dirs.iter().map(|d| d.join(name)));
        let Some(found) = candidates.iter().find(|c| c.is_file()) else {
            let searched: Vec<String> = candidates
                .iter()
                .map(|c| format!("`{}`", c.display()))
                .collect();
            let mut diag = Diagnostic::error(
                format!("cannot find include file `{name}`"),
                span,
                "not found",
            );
            diag = if searched.is_empty() {
                diag.with_note("no include directories are set")
            } else {
                diag.with_note(format!("looked for {}", searched.join(", ")))
            };
            self.errors.push(diag.with_note(
                "help: add the directory holding it to the include directories (`Builder::include_dir`, `rpc-idl -I DIR`)",
            ));
            return;
        };
        let found = found.clone();
        self.include_path(&found, Some(span), depth + 1);
    }

    /// Reads and processes `path` as an included file (`at`: the `#include` line).
    fn include_path(&mut self, path: &Path, at: Option<Span>, depth: usize) {
        let span = at.unwrap_or_default();
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.included.contains(&canonical) {
            return;
        }
        if depth > MAX_INCLUDE_DEPTH || self.unit.files.len() >= MAX_FILES {
            self.errors.push(Diagnostic::error(
                "includes nest too deeply",
                span,
                format!("more than {MAX_INCLUDE_DEPTH} levels of `#include` or {MAX_FILES} files"),
            ));
            return;
        }
        let too_big = || {
            Diagnostic::error(
                format!(
                    "`{}` is not a regular file of at most {MAX_FILE_BYTES} bytes",
                    path.display()
                ),
                span,
                "included here",
            )
        };
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() || m.len() > MAX_FILE_BYTES) {
            self.errors.push(too_big());
            return;
        }
        // Read at most one byte more than allowed: a file whose size the metadata
        // does not tell (a `/proc` file) stays bounded too.
        let mut bytes = Vec::new();
        let read = std::fs::File::open(path).and_then(|f| {
            use std::io::Read;
            f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)
        });
        if let Err(e) = read {
            self.errors.push(Diagnostic::error(
                format!("cannot read `{}`: {e}", path.display()),
                span,
                "included here",
            ));
            return;
        }
        if bytes.len() as u64 > MAX_FILE_BYTES {
            self.errors.push(too_big());
            return;
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.included.insert(canonical);
        let start = self.add_file(&path.display().to_string(), &text);
        if let Some(tokens) = self.lex(&text, start) {
            self.process(path, tokens, depth);
        }
    }
}

fn first_word(text: &str) -> &str {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
}

/// Evaluates a C integer constant expression: literals (decimal, hex, octal, with `u`
/// and `l` suffixes), names (through `value`; `None` makes the whole expression fail),
/// parentheses, `defined NAME` / `defined(NAME)` when `defined` is given, the unary
/// `- + ~ !` and the binary `* / % + - << >> < <= > >= == != & ^ | && ||` with C's
/// precedence. Arithmetic overflow, division by zero and anything else fail.
pub fn eval(
    text: &str,
    value: &dyn Fn(&str) -> Option<i64>,
    defined: Option<&dyn Fn(&str) -> bool>,
) -> Result<i64, String> {
    let tokens = expr_tokens(text)?;
    let mut e = Eval {
        tokens,
        pos: 0,
        value,
        defined,
        depth: 0,
    };
    let v = e.binary(0)?;
    match e.tokens.get(e.pos) {
        None => Ok(v),
        Some(t) => Err(format!("unexpected `{}`", t.text())),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ETok {
    Num(i64),
    Name(String),
    Op(&'static str),
}

impl ETok {
    fn text(&self) -> String {
        match self {
            ETok::Num(n) => n.to_string(),
            ETok::Name(n) => n.clone(),
            ETok::Op(o) => (*o).to_string(),
        }
    }
}

const OPS: &[&str] = &[
    "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "(", ")", "+", "-", "*", "/", "%", "<", ">",
    "&", "^", "|", "~", "!",
];

fn expr_tokens(text: &str) -> Result<Vec<ETok>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() {
            let len = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let lit = rest[..len].trim_end_matches(['u', 'U', 'l', 'L']);
            let parsed = if let Some(hex) = lit.strip_prefix("0x").or(lit.strip_prefix("0X")) {
                i64::from_str_radix(hex, 16)
            } else if lit.len() > 1 && lit.starts_with('0') {
                i64::from_str_radix(&lit[1..], 8)
            } else {
                lit.parse()
            };
            out.push(ETok::Num(
                parsed.map_err(|_| format!("`{}` is not an integer", &rest[..len]))?,
            ));
            rest = &rest[len..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(ETok::Name(rest[..len].to_string()));
            rest = &rest[len..];
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(ETok::Op(op));
            rest = &rest[op.len()..];
        } else {
            return Err(format!("unexpected `{c}`"));
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

struct Eval<'a> {
    tokens: Vec<ETok>,
    pos: usize,
    value: &'a dyn Fn(&str) -> Option<i64>,
    defined: Option<&'a dyn Fn(&str) -> bool>,
    depth: usize,
}

/// Binary operators by precedence level (lowest first).
const LEVELS: &[&[&str]] = &[
    &["||"],
    &["&&"],
    &["|"],
    &["^"],
    &["&"],
    &["==", "!="],
    &["<", "<=", ">", ">="],
    &["<<", ">>"],
    &["+", "-"],
    &["*", "/", "%"],
];

impl Eval<'_> {
    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(ETok::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn binary(&mut self, level: usize) -> Result<i64, String> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self.peek_op().filter(|op| LEVELS[level].contains(op)) {
            self.pos += 1;
            let right = self.binary(level + 1)?;
            let overflow = || format!("`{op}` overflows");
            left = match op {
                "||" => i64::from(left != 0 || right != 0),
                "&&" => i64::from(left != 0 && right != 0),
                "|" => left | right,
                "^" => left ^ right,
                "&" => left & right,
                "==" => i64::from(left == right),
                "!=" => i64::from(left != right),
                "<" => i64::from(left < right),
                "<=" => i64::from(left <= right),
                ">" => i64::from(left > right),
                ">=" => i64::from(left >= right),
                "<<" => u32::try_from(right)
                    .ok()
                    .filter(|&r| r < 63)
                    .and_then(|r| left.checked_shl(r))
                    .filter(|v| v >> right == left)
                    .ok_or_else(overflow)?,
                ">>" => u32::try_from(right)
                    .ok()
                    .and_then(|r| left.checked_shr(r))
                    .ok_or_else(overflow)?,
                "+" => left.checked_add(right).ok_or_else(overflow)?,
                "-" => left.checked_sub(right).ok_or_else(overflow)?,
                "*" => left.checked_mul(right).ok_or_else(overflow)?,
                "/" => left.checked_div(right).ok_or("division by zero")?,
                _ => left.checked_rem(right).ok_or("division by zero")?,
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<i64, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("the expression nests too deeply".into());
        }
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        let v = match token {
            None => return Err("the expression ends too early".into()),
            Some(ETok::Num(n)) => n,
            Some(ETok::Name(name)) if name == "defined" && self.defined.is_some() => {
                let paren = self.peek_op() == Some("(");
                if paren {
                    self.pos += 1;
                }
                let Some(ETok::Name(target)) = self.tokens.get(self.pos).cloned() else {
                    return Err("`defined` needs a name".into());
                };
                self.pos += 1;
                if paren {
                    if self.peek_op() != Some(")") {
                        return Err("expected `)` after `defined(NAME`".into());
                    }
                    self.pos += 1;
                }
                i64::from(self.defined.is_some_and(|d| d(&target)))
            }
            Some(ETok::Name(name)) => {
                (self.value)(&name).ok_or_else(|| format!("`{name}` is not a known integer"))?
            }
            Some(ETok::Op("(")) => {
                let v = self.binary(0)?;
                if self.peek_op() != Some(")") {
                    return Err("expected `)`".into());
                }
                self.pos += 1;
                v
            }
            Some(ETok::Op("-")) => self.unary()?.checked_neg().ok_or("`-` overflows")?,
            Some(ETok::Op("+")) => self.unary()?,
            Some(ETok::Op("~")) => !self.unary()?,
            Some(ETok::Op("!")) => i64::from(self.unary()? == 0),
            Some(t) => return Err(format!("unexpected `{}`", t.text())),
        };
        self.depth -= 1;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calc(text: &str) -> Result<i64, String> {
        let value = |name: &str| (name == "A").then_some(4);
        eval(text, &value, None)
    }

    #[test]
    fn expressions() {
        assert_eq!(calc("1 + 2 * 3"), Ok(7));
        assert_eq!(calc("(A << 8) | 1"), Ok(1025));
        assert_eq!(calc("((A +\t A) << 16)"), Ok(8 << 16));
        assert_eq!(calc("0x10 - 010 - 1u"), Ok(7));
        assert_eq!(calc("-A + ~0 + !0"), Ok(-4));
        assert_eq!(calc("A == 4 && 3 > 2 || 0"), Ok(1));
        assert!(calc("B + 1").is_err());
        assert!(calc("1 / 0").is_err());
        assert!(calc("1 << 70").is_err());
        assert!(calc("x.y").is_err());
        assert!(calc("\"s\"").is_err());
        assert!(calc("(1").is_err());
        assert!(calc(&"(".repeat(10_000)).is_err());
    }

    #[test]
    fn comments_are_stripped() {
        assert_eq!(strip_comments("endif /* x */ // y"), "endif   ");
        assert_eq!(strip_comments("a /* b"), "a  ");
    }
}
