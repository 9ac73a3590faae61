//! The parser: tokens to a [`Spec`], by recursive descent.
//!
//! The grammar is in docs/IDL.md. The parser stops at the first syntax error (lexical
//! errors are all reported together first); it checks nothing the grammar does not
//! require: names, values and types are validated by [`crate::check`].
//!
//! RFC 5531 `program` blocks are lowered here into one [`Interface`] per `version`
//! block, named after the program in UpperCamelCase (`CALC_PROG` becomes `CalcProg`),
//! with a `V<n>` suffix when the program has several versions.

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::lexer::{Keyword, Punct, Token, TokenKind};
use crate::model::*;
use crate::preprocess::{preprocess, Options, Unit};

/// How deeply type expressions (`Vec<Option<...>>`) may nest: a bound on the parser's
/// (and checker's) recursion, so no input can overflow the stack.
const MAX_TYPE_DEPTH: usize = 64;

/// Parses `source` (named `file_name` in messages; an anonymous interface is named
/// after the file's stem). Values are left unresolved: run [`crate::check::check`] next.
pub fn parse(file_name: &str, source: &str) -> Result<Spec, Diagnostics> {
    parse_with(file_name, source, &Options::default())
}

/// [`parse`] with preprocessor options: include directories, extra macros and
/// prelude files (see [`crate::preprocess`]).
pub fn parse_with(file_name: &str, source: &str, options: &Options) -> Result<Spec, Diagnostics> {
    let unit = match preprocess(file_name, source, options) {
        Ok(unit) => unit,
        Err((unit, errors)) => {
            return Err(Diagnostics::new(file_name, unit.source, errors).with_files(unit.files))
        }
    };
    let Unit {
        tokens,
        source,
        files,
        c_defines,
    } = unit;
    let mut passthrough = Vec::new();
    let tokens: Vec<Token> = tokens
        .into_iter()
        .filter_map(|t| match t.kind {
            TokenKind::Passthrough(line) => {
                passthrough.push(line);
                None
            }
            _ => Some(t),
        })
        .collect();
    let mut parser = Parser {
        source: &source,
        file_name,
        tokens,
        pos: 0,
        prev_end: 0,
        depth: 0,
        spec: Spec {
            file_name: file_name.to_string(),
            source: String::new(),
            package: None,
            definitions: Vec::new(),
            interfaces: Vec::new(),
            passthrough,
            files: Vec::new(),
            c_defines,
        },
    };
    let result = parser.spec();
    let mut spec = parser.spec;
    match result {
        Ok(()) => {
            spec.source = source;
            spec.files = files;
            Ok(spec)
        }
        Err(diag) => Err(Diagnostics::new(file_name, source, vec![diag]).with_files(files)),
    }
}

pub use crate::naming::upper_camel_case;

/// The interface name for an anonymous `interface { ... }` in `file_name`: the file's
/// stem in UpperCamelCase (`proto/my_calc.idl` → `MyCalc`). `None` if that is not an
/// identifier (empty, or starting with a digit).
pub fn interface_name_from_file(file_name: &str) -> Option<String> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let stem = match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    };
    let name = upper_camel_case(stem);
    match name.chars().next() {
        Some(c) if c.is_ascii_alphabetic() => Some(name),
        _ => None,
    }
}

type PResult<T> = Result<T, Diagnostic>;

/// A type being built from a declaration: `string` and `opaque` mean different things
/// depending on the decoration that follows (`<N>`, `[N]` or none).
enum Partial {
    String,
    Opaque,
    Ty(Type),
}

impl Partial {
    fn finish(self) -> Type {
        match self {
            Partial::String => Type::String { max: None },
            Partial::Opaque => Type::VarOpaque { max: None },
            Partial::Ty(t) => t,
        }
    }

    fn var(self, max: Option<Value>) -> Type {
        match self {
            Partial::String => Type::String { max },
            Partial::Opaque => Type::VarOpaque { max },
            Partial::Ty(t) => Type::VarArray {
                elem: Box::new(t),
                max,
            },
        }
    }
}

struct Parser<'a> {
    source: &'a str,
    file_name: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// End of the last consumed token: "expected `;`" points just after it.
    prev_end: usize,
    depth: usize,
    spec: Spec,
}

impl Parser<'_> {
    // ---- token access -------------------------------------------------------------

    fn next_index(&self) -> Option<usize> {
        (self.pos..self.tokens.len()).find(|&i| !matches!(self.tokens[i].kind, TokenKind::Doc(_)))
    }

    fn peek(&self) -> Option<&TokenKind> {
        self.next_index().map(|i| &self.tokens[i].kind)
    }

    fn peek2(&self) -> Option<&TokenKind> {
        let first = self.next_index()?;
        (first + 1..self.tokens.len())
            .find(|&i| !matches!(self.tokens[i].kind, TokenKind::Doc(_)))
            .map(|i| &self.tokens[i].kind)
    }

    fn bump(&mut self) -> Option<Token> {
        let i = self.next_index()?;
        self.pos = i + 1;
        self.prev_end = self.tokens[i].span.end;
        Some(self.tokens[i].clone())
    }

    /// Doc comment lines immediately ahead (skipped by everything else).
    fn docs(&mut self) -> Docs {
        let mut docs = Vec::new();
        while let Some(Token {
            kind: TokenKind::Doc(text),
            ..
        }) = self.tokens.get(self.pos)
        {
            docs.push(text.clone());
            self.pos += 1;
        }
        docs
    }

    fn at_punct(&self, p: Punct) -> bool {
        self.peek() == Some(&TokenKind::Punct(p))
    }

    fn at_keyword(&self, k: Keyword) -> bool {
        self.peek() == Some(&TokenKind::Keyword(k))
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(TokenKind::Ident(w)) if w == word)
    }

    fn eat_punct(&mut self, p: Punct) -> bool {
        let at = self.at_punct(p);
        if at {
            self.bump();
        }
        at
    }

    /// Consumes the next token if it is one of the identifiers `words`.
    fn eat_punct_word(&mut self, words: &[&str]) -> bool {
        let at = matches!(self.peek(), Some(TokenKind::Ident(w)) if words.contains(&w.as_str()));
        if at {
            self.bump();
        }
        at
    }

    fn eat_keyword(&mut self, k: Keyword) -> Option<Span> {
        if self.at_keyword(k) {
            self.bump().map(|t| t.span)
        } else {
            None
        }
    }

    // ---- errors -------------------------------------------------------------------

    /// How the next token is called in a message: ``found `}` ``.
    fn found(&self) -> String {
        match self.next_index() {
            None => "end of file".to_string(),
            Some(i) => {
                let token = &self.tokens[i];
                match &token.kind {
                    TokenKind::Keyword(k) => format!("keyword `{}`", k.as_str()),
                    TokenKind::Str(_) => "a string literal".to_string(),
                    _ => format!("`{}`", &self.source[token.span.start..token.span.end]),
                }
            }
        }
    }

    /// "expected {what}{context}, found {next}", pointing at the next token (or just
    /// past the previous one when a terminator is missing or the file ended).
    fn expected(&self, what: &str, context: &str) -> Diagnostic {
        let message = format!("expected {what}{context}, found {}", self.found());
        let label = format!("expected {what}");
        match self.next_index() {
            Some(i) if what != "`;`" => Diagnostic::error(message, self.tokens[i].span, label),
            _ => Diagnostic::error(message, Span::new(self.prev_end, self.prev_end), label),
        }
    }

    fn expect_punct(&mut self, p: Punct, context: &str) -> PResult<Span> {
        if self.at_punct(p) {
            Ok(self.bump().map(|t| t.span).unwrap_or_default())
        } else {
            Err(self.expected(&format!("`{}`", p.as_char()), context))
        }
    }

    fn expect_keyword(&mut self, k: Keyword, context: &str) -> PResult<Span> {
        self.eat_keyword(k)
            .ok_or_else(|| self.expected(&format!("`{}`", k.as_str()), context))
    }

    fn expect_ident(&mut self, what: &str, context: &str) -> PResult<Ident> {
        if let Some(TokenKind::Ident(name)) = self.peek() {
            let name = name.clone();
            let span = self.bump().map(|t| t.span).unwrap_or_default();
            return Ok(Ident { name, span });
        }
        let mut diag = self.expected(what, context);
        if let Some(TokenKind::Keyword(k)) = self.peek() {
            diag = diag.with_note(format!(
                "`{}` is a reserved word and cannot be used as a name",
                k.as_str()
            ));
        }
        Err(diag)
    }

    // ---- top level ----------------------------------------------------------------

    fn spec(&mut self) -> PResult<()> {
        loop {
            let docs_start = self.pos;
            let docs = self.docs();
            let Some(kind) = self.peek() else {
                return self.no_docs_here(docs_start, "the end of the file");
            };
            match kind {
                TokenKind::Punct(Punct::Semi) => {
                    self.no_docs_here(docs_start, "a stray `;`")?;
                    self.bump();
                }
                TokenKind::Ident(w) if w == "package" => {
                    self.no_docs_here(docs_start, "`package`")?;
                    self.package()?
                }
                TokenKind::Punct(Punct::LBracket) => {
                    let attributes = self.attributes()?;
                    let docs = [docs, self.docs()].concat();
                    if self.at_word("interface") {
                        let iface = self.interface(docs, attributes)?;
                        self.spec.interfaces.push(iface);
                    } else if self.at_keyword(Keyword::Program) {
                        let ifaces = self.program(docs, attributes)?;
                        self.spec.interfaces.extend(ifaces);
                    } else {
                        return Err(self.expected("`interface` or `program`", " after attributes"));
                    }
                }
                TokenKind::Ident(w) if w == "interface" => {
                    let iface = self.interface(docs, Vec::new())?;
                    self.spec.interfaces.push(iface);
                }
                TokenKind::Keyword(Keyword::Program) => {
                    let ifaces = self.program(docs, Vec::new())?;
                    self.spec.interfaces.extend(ifaces);
                }
                TokenKind::Keyword(Keyword::Const) => {
                    let def = self.constant(docs)?;
                    self.spec.definitions.push(def);
                }
                TokenKind::Keyword(Keyword::Typedef) => {
                    let def = self.typedef(docs)?;
                    if !Self::self_typedef(&def) {
                        self.spec.definitions.push(def);
                    }
                }
                TokenKind::Keyword(Keyword::Enum) => {
                    self.bump();
                    let name = self.expect_ident("an enum name", " after `enum`")?;
                    let def = self.enum_body(docs, name)?;
                    self.eat_punct(Punct::Semi);
                    self.spec.definitions.push(def);
                }
                TokenKind::Keyword(Keyword::Struct) => {
                    self.bump();
                    let name = self.expect_ident("a struct name", " after `struct`")?;
                    let def = self.struct_body(docs, name)?;
                    self.eat_punct(Punct::Semi);
                    self.spec.definitions.push(def);
                }
                TokenKind::Keyword(Keyword::Union) => {
                    self.bump();
                    let name = self.expect_ident("a union name", " after `union`")?;
                    let def = self.union_body(docs, name)?;
                    self.eat_punct(Punct::Semi);
                    self.spec.definitions.push(def);
                }
                _ => {
                    return Err(self.expected(
                        "a definition (`const`, `typedef`, `enum`, `struct`, `union`, `interface` or `program`)",
                        "",
                    ))
                }
            }
        }
    }

    /// An error if doc comments start at token `start` and stop before `what`, which
    /// they cannot document (they would be dropped silently).
    fn no_docs_here(&self, start: usize, what: &str) -> PResult<()> {
        if start == self.pos {
            return Ok(());
        }
        let first = self.tokens[start].span;
        let last = self.tokens[self.pos - 1].span;
        Err(Diagnostic::error(
            format!("doc comment before {what} documents nothing"),
            first.to(last),
            "this doc comment",
        )
        .with_note(
            "help: doc comments (`///`, `/** */`) document the definition, interface or procedure that follows; make this an ordinary comment (`//`) or move it",
        ))
    }

    fn package(&mut self) -> PResult<()> {
        let keyword = self.bump().map(|t| t.span).unwrap_or_default();
        let name = self.expect_ident("a package name", " after `package`")?;
        self.expect_punct(Punct::Semi, " after the package name")?;
        if let Some(first) = &self.spec.package {
            return Err(Diagnostic::error(
                "the package is declared more than once",
                keyword.to(name.span),
                "second `package` declaration",
            )
            .with_secondary(first.span, "first declared here"));
        }
        self.spec.package = Some(name);
        Ok(())
    }

    fn value(&mut self, context: &str) -> PResult<Value> {
        match self.peek() {
            Some(TokenKind::Int(v)) => {
                let v = *v;
                let span = self.bump().map(|t| t.span).unwrap_or_default();
                Ok(Value {
                    kind: ValueKind::Literal(v),
                    span,
                    resolved: None,
                })
            }
            Some(TokenKind::Ident(_)) => {
                let ident = self.expect_ident("a constant", context)?;
                Ok(Value {
                    span: ident.span,
                    kind: ValueKind::Named(ident),
                    resolved: None,
                })
            }
            _ => Err(self.expected("a constant value (an integer or a constant name)", context)),
        }
    }

    fn constant(&mut self, docs: Docs) -> PResult<Definition> {
        self.bump();
        let name = self.expect_ident("a constant name", " after `const`")?;
        self.expect_punct(Punct::Eq, " after the constant name")?;
        if let Some(TokenKind::Str(text)) = self.peek() {
            let value = text.clone();
            let span = self.bump().map(|t| t.span).unwrap_or_default();
            self.expect_punct(Punct::Semi, " after constant definition")?;
            return Ok(Definition::StringConst(StringConstDef {
                docs,
                name,
                value,
                span,
            }));
        }
        let value = self.value(" after `=`")?;
        self.expect_punct(Punct::Semi, " after constant definition")?;
        Ok(Definition::Const(ConstDef { docs, name, value }))
    }

    fn typedef(&mut self, docs: Docs) -> PResult<Definition> {
        self.bump();
        // `typedef struct { ... } name;` (and enum/union): C style, named by the typedef.
        let inline = match (self.peek(), self.peek2()) {
            (Some(TokenKind::Keyword(Keyword::Struct)), Some(TokenKind::Punct(Punct::LBrace)))
            | (Some(TokenKind::Keyword(Keyword::Enum)), Some(TokenKind::Punct(Punct::LBrace)))
            | (
                Some(TokenKind::Keyword(Keyword::Union)),
                Some(TokenKind::Keyword(Keyword::Switch)),
            ) => self.bump().map(|t| t.kind),
            _ => None,
        };
        if let Some(kind) = inline {
            // Parse the body under a placeholder name, then read the real one.
            let placeholder = Ident {
                name: String::new(),
                span: Span::default(),
            };
            let mut def = match kind {
                TokenKind::Keyword(Keyword::Struct) => self.struct_body(docs, placeholder)?,
                TokenKind::Keyword(Keyword::Enum) => self.enum_body(docs, placeholder)?,
                _ => self.union_body(docs, placeholder)?,
            };
            let name = self.expect_ident("the type's name", " after the type definition")?;
            match &mut def {
                Definition::Struct(d) => d.name = name,
                Definition::Enum(d) => d.name = name,
                Definition::Union(d) => d.name = name,
                _ => {}
            }
            self.expect_punct(Punct::Semi, " after typedef")?;
            return Ok(def);
        }
        let decl = self.declaration(Vec::new())?;
        self.expect_punct(Punct::Semi, " after typedef")?;
        Ok(Definition::Typedef(TypedefDef { docs, decl }))
    }

    /// Whether `def` is C's `typedef struct X X;` (or `enum`/`union`): it names a type
    /// after itself, which the struct's own definition already does in XDR.
    fn self_typedef(def: &Definition) -> bool {
        matches!(def, Definition::Typedef(t) if matches!(&t.decl.ty, Type::Named(n) if n.name == t.decl.name.name))
    }

    fn enum_body(&mut self, docs: Docs, name: Ident) -> PResult<Definition> {
        self.expect_punct(Punct::LBrace, " to open the enum body")?;
        let mut variants = Vec::new();
        loop {
            let docs = self.docs();
            if !variants.is_empty() && self.eat_punct(Punct::RBrace) {
                break;
            }
            let name = self.expect_ident("an enum variant name", "")?;
            let value = if self.eat_punct(Punct::Eq) {
                Some(self.value(" after `=`")?)
            } else {
                None
            };
            variants.push(EnumVariant {
                docs,
                name,
                value,
                resolved: None,
            });
            if self.eat_punct(Punct::RBrace) {
                break;
            }
            self.expect_punct(Punct::Comma, " or `}` after enum variant")?;
        }
        Ok(Definition::Enum(EnumDef {
            docs,
            name,
            variants,
        }))
    }

    fn struct_body(&mut self, docs: Docs, name: Ident) -> PResult<Definition> {
        self.expect_punct(Punct::LBrace, " to open the struct body")?;
        let mut fields = Vec::new();
        loop {
            let docs = self.docs();
            if self.eat_punct(Punct::RBrace) {
                break;
            }
            fields.push(self.declaration(docs)?);
            self.expect_punct(Punct::Semi, " after struct field")?;
        }
        Ok(Definition::Struct(StructDef { docs, name, fields }))
    }

    fn union_body(&mut self, docs: Docs, name: Ident) -> PResult<Definition> {
        self.expect_keyword(Keyword::Switch, " after the union name")?;
        self.expect_punct(Punct::LParen, " after `switch`")?;
        let discriminant = self.declaration(Vec::new())?;
        self.expect_punct(Punct::RParen, " after the discriminant")?;
        self.expect_punct(Punct::LBrace, " to open the union body")?;
        let mut cases = Vec::new();
        let mut default: Option<Declaration> = None;
        loop {
            let docs = self.docs();
            if self.eat_punct(Punct::RBrace) {
                break;
            }
            if let Some(span) = self.eat_keyword(Keyword::Default) {
                self.expect_punct(Punct::Colon, " after `default`")?;
                let arm = self.declaration(docs)?;
                self.expect_punct(Punct::Semi, " after union arm")?;
                if default.is_some() {
                    return Err(Diagnostic::error(
                        "union has more than one `default` arm",
                        span,
                        "second `default`",
                    ));
                }
                default = Some(arm);
            } else if self.at_keyword(Keyword::Case) {
                let mut values = Vec::new();
                while self.eat_keyword(Keyword::Case).is_some() {
                    values.push(self.value(" after `case`")?);
                    self.expect_punct(Punct::Colon, " after case value")?;
                }
                let docs = [docs, self.docs()].concat();
                let arm = self.declaration(docs)?;
                self.expect_punct(Punct::Semi, " after union arm")?;
                cases.push(UnionCase { values, arm });
            } else {
                return Err(self.expected("`case`, `default` or `}`", " in union body"));
            }
        }
        Ok(Definition::Union(UnionDef {
            docs,
            name,
            discriminant,
            cases,
            default,
        }))
    }

    // ---- types and declarations ---------------------------------------------------

    /// A base type: a keyword type, a Rust spelling, or a type name.
    fn base_type(&mut self, context: &str) -> PResult<Partial> {
        let Some(kind) = self.peek().cloned() else {
            return Err(self.expected("a type", context));
        };
        let ty = match kind {
            TokenKind::Keyword(k) => {
                let span = self.bump().map(|t| t.span).unwrap_or_default();
                match k {
                    Keyword::Void => Type::Void,
                    Keyword::Bool => Type::Bool,
                    Keyword::Int => Type::Int,
                    Keyword::Hyper => Type::Hyper,
                    Keyword::Float => Type::Float,
                    Keyword::Double => Type::Double,
                    Keyword::String => return Ok(Partial::String),
                    Keyword::Opaque => return Ok(Partial::Opaque),
                    Keyword::Unsigned => {
                        if self.eat_keyword(Keyword::Hyper).is_some() {
                            Type::UnsignedHyper
                        } else {
                            // rpcgen also takes C's `unsigned char`, `short` and `long`
                            // (each 32 bits in XDR).
                            if !self.eat_punct_word(&["char", "short", "long"]) {
                                self.eat_keyword(Keyword::Int);
                            }
                            Type::UnsignedInt
                        }
                    }
                    Keyword::Quadruple => {
                        return Err(Diagnostic::error(
                            "`quadruple` is not supported",
                            span,
                            "128-bit floating point has no Rust equivalent",
                        )
                        .with_note("help: use `double` (64-bit) instead"));
                    }
                    Keyword::Struct | Keyword::Enum | Keyword::Union => {
                        // C-style `struct Name` as a reference to a named type.
                        if self.at_punct(Punct::LBrace) || self.at_keyword(Keyword::Switch) {
                            return Err(Diagnostic::error(
                                format!(
                                    "anonymous `{}` types are only supported in `typedef`",
                                    k.as_str()
                                ),
                                span,
                                "inline type definition",
                            )
                            .with_note("help: define a named type and refer to it by name"));
                        }
                        Type::Named(
                            self.expect_ident("a type name", &format!(" after `{}`", k.as_str()))?,
                        )
                    }
                    _ => {
                        return Err(Diagnostic::error(
                            format!("expected a type{context}, found keyword `{}`", k.as_str()),
                            span,
                            "expected a type",
                        ))
                    }
                }
            }
            TokenKind::Ident(word) => {
                let span = self.bump().map(|t| t.span).unwrap_or_default();
                match word.as_str() {
                    "i32" => Type::Int,
                    "u32" => Type::UnsignedInt,
                    "i64" => Type::Hyper,
                    "u64" => Type::UnsignedHyper,
                    "f32" => Type::Float,
                    "f64" => Type::Double,
                    "String" => Type::String { max: None },
                    "Bytes" => Type::VarOpaque { max: None },
                    "Vec" | "Option" => {
                        let context = format!(" after `{word}`");
                        self.expect_punct(Punct::Lt, &context)?;
                        let elem = Box::new(self.type_expr(" as the type parameter")?);
                        self.expect_punct(Punct::Gt, " to close the type parameter")?;
                        if word == "Vec" {
                            Type::VarArray { elem, max: None }
                        } else {
                            Type::Optional { elem, boxed: false }
                        }
                    }
                    _ => Type::Named(Ident { name: word, span }),
                }
            }
            _ => return Err(self.expected("a type", context)),
        };
        Ok(Partial::Ty(ty))
    }

    /// `<N>`, `<>` or `[N]` after a type or a name, applied to `partial`.
    fn decorate(&mut self, partial: Partial) -> PResult<Partial> {
        if self.eat_punct(Punct::Lt) {
            let max = if self.at_punct(Punct::Gt) {
                None
            } else {
                Some(self.value(" as the bound")?)
            };
            self.expect_punct(Punct::Gt, " to close the bound")?;
            return Ok(Partial::Ty(partial.var(max)));
        }
        if self.at_punct(Punct::LBracket) {
            let open = self.bump().map(|t| t.span).unwrap_or_default();
            let len = self.value(" as the length")?;
            self.expect_punct(Punct::RBracket, " to close the length")?;
            return Ok(Partial::Ty(match partial {
                Partial::String => {
                    return Err(Diagnostic::error(
                        "a string cannot have a fixed length",
                        open.to(Span::new(self.prev_end, self.prev_end)),
                        "fixed length",
                    )
                    .with_note("help: strings are variable-length: write `string name<N>`"))
                }
                Partial::Opaque => Type::FixedOpaque { len },
                Partial::Ty(t) => Type::FixedArray {
                    elem: Box::new(t),
                    len,
                },
            }));
        }
        Ok(partial)
    }

    /// A base type with any `*`, `<N>` and `[N]` written directly after it.
    fn type_partial(&mut self, context: &str) -> PResult<Partial> {
        self.depth += 1;
        if self.depth > MAX_TYPE_DEPTH {
            let span = self
                .next_index()
                .map_or(Span::new(self.prev_end, self.prev_end), |i| {
                    self.tokens[i].span
                });
            return Err(Diagnostic::error(
                "type is nested too deeply",
                span,
                format!("more than {MAX_TYPE_DEPTH} levels of nesting"),
            ));
        }
        let mut partial = self.base_type(context)?;
        loop {
            if self.eat_punct(Punct::Star) {
                partial = Partial::Ty(Type::Optional {
                    elem: Box::new(partial.finish()),
                    boxed: false,
                });
            } else if self.at_punct(Punct::Lt) || self.at_punct(Punct::LBracket) {
                partial = self.decorate(partial)?;
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(partial)
    }

    fn type_expr(&mut self, context: &str) -> PResult<Type> {
        Ok(self.type_partial(context)?.finish())
    }

    /// `type name`, `type name[N]`, `type name<N>`, `type *name`, `void`, ...
    fn declaration(&mut self, docs: Docs) -> PResult<Declaration> {
        if let Some(span) = self.eat_keyword(Keyword::Void) {
            if !matches!(self.peek(), Some(TokenKind::Ident(_))) {
                return Ok(Declaration {
                    docs,
                    name: Ident {
                        name: "void".to_string(),
                        span,
                    },
                    ty: Type::Void,
                });
            }
            let name = self.expect_ident("a name", "")?;
            return Ok(Declaration {
                docs,
                name,
                ty: Type::Void,
            });
        }
        let partial = self.type_partial("")?;
        let name = self.expect_ident("a name", " after the type")?;
        let ty = self.decorate(partial)?.finish();
        Ok(Declaration { docs, name, ty })
    }

    // ---- interfaces ---------------------------------------------------------------

    /// `[attrs] interface [Name] [version N] [= id] { procedures } [;]` (the attributes
    /// already read).
    fn interface(&mut self, docs: Docs, attributes: Vec<Ident>) -> PResult<Interface> {
        let keyword = self.bump().map(|t| t.span).unwrap_or_default();
        let (name, origin) = if let Some(TokenKind::Ident(_)) = self.peek() {
            let name = self.expect_ident("an interface name", "")?;
            (name, InterfaceOrigin::Interface)
        } else if self.at_punct(Punct::LBrace) {
            let Some(name) = interface_name_from_file(self.file_name) else {
                return Err(Diagnostic::error(
                    format!(
                        "cannot name this interface after the file name `{}`",
                        self.file_name
                    ),
                    keyword,
                    "anonymous interface",
                )
                .with_note("help: give the interface a name: `interface Name { ... };`"));
            };
            (
                Ident {
                    name,
                    span: keyword,
                },
                InterfaceOrigin::Anonymous,
            )
        } else {
            return Err(self.expected("an interface name or `{`", " after `interface`"));
        };
        let version = if self.eat_keyword(Keyword::Version).is_some() {
            self.value(" after `version`")?
        } else {
            Value {
                kind: ValueKind::Literal(1),
                span: name.span,
                resolved: None,
            }
        };
        let id = if self.eat_punct(Punct::Eq) {
            Some(self.value(" as the interface id")?)
        } else {
            None
        };
        self.expect_punct(Punct::LBrace, " to open the interface body")?;
        let procedures = self.procedures()?;
        self.eat_punct(Punct::Semi);
        Ok(Interface {
            docs,
            attributes,
            name,
            id,
            version,
            procedures,
            origin,
            resolved_id: None,
        })
    }

    /// Procedures up to and including the closing `}`.
    fn procedures(&mut self) -> PResult<Vec<Procedure>> {
        let mut procedures = Vec::new();
        loop {
            let docs = self.docs();
            if self.eat_punct(Punct::RBrace) {
                return Ok(procedures);
            }
            if self.peek().is_none() {
                return Err(self.expected("a procedure or `}`", ""));
            }
            procedures.push(self.procedure(docs)?);
        }
    }

    /// `[a, b, ...]` if next (nothing otherwise); the checker validates the names.
    fn attributes(&mut self) -> PResult<Vec<Ident>> {
        let mut attributes = Vec::new();
        if self.eat_punct(Punct::LBracket) {
            loop {
                attributes.push(self.expect_ident("an attribute name", "")?);
                if self.eat_punct(Punct::RBracket) {
                    break;
                }
                self.expect_punct(Punct::Comma, " or `]` after attribute")?;
            }
        }
        Ok(attributes)
    }

    /// `[attrs] [oneway] T name(args) [= N];`
    fn procedure(&mut self, docs: Docs) -> PResult<Procedure> {
        let attributes = self.attributes()?;
        let docs = [docs, self.docs()].concat();
        // `oneway` is contextual: `int oneway(...)` is still a procedure named so.
        let oneway =
            self.at_word("oneway") && self.peek2() != Some(&TokenKind::Punct(Punct::LParen));
        if oneway {
            self.bump();
        }
        let ret = self.type_expr(" as the procedure's result")?;
        let name = self.expect_ident("a procedure name", " after the result type")?;
        self.expect_punct(Punct::LParen, " after the procedure name")?;
        let mut args = Vec::new();
        if !self.eat_punct(Punct::RParen) {
            loop {
                args.push(self.argument()?);
                if self.eat_punct(Punct::RParen) {
                    break;
                }
                self.expect_punct(Punct::Comma, " or `)` after argument")?;
            }
        }
        if let [Argument {
            name: None,
            ty: Type::Void,
            ..
        }] = args.as_slice()
        {
            args.clear();
        }
        let number = if self.eat_punct(Punct::Eq) {
            Some(self.value(" as the procedure number")?)
        } else {
            None
        };
        self.expect_punct(Punct::Semi, " after procedure declaration")?;
        Ok(Procedure {
            docs,
            attributes,
            oneway,
            ret,
            name,
            args,
            number,
            resolved_number: None,
        })
    }

    /// `T`, `T name`, `T name<N>`, `T *name`, ...
    fn argument(&mut self) -> PResult<Argument> {
        let start = self
            .next_index()
            .map_or(self.prev_end, |i| self.tokens[i].span.start);
        let partial = self.type_partial(" as an argument")?;
        let (name, ty) = if let Some(TokenKind::Ident(_)) = self.peek() {
            let name = self.expect_ident("an argument name", "")?;
            (Some(name), self.decorate(partial)?.finish())
        } else {
            (None, partial.finish())
        };
        Ok(Argument {
            name,
            ty,
            span: Span::new(start, self.prev_end),
        })
    }

    /// `[attrs] program P { version V { procedures } = v; ... } = p;` (the attributes
    /// already read), lowered to interfaces that each get the attributes.
    fn program(&mut self, docs: Docs, attributes: Vec<Ident>) -> PResult<Vec<Interface>> {
        self.bump();
        let program = self.expect_ident("a program name", " after `program`")?;
        self.expect_punct(Punct::LBrace, " to open the program body")?;
        let mut versions = Vec::new();
        loop {
            let docs = self.docs();
            if !versions.is_empty() && self.eat_punct(Punct::RBrace) {
                break;
            }
            self.expect_keyword(Keyword::Version, " in program body")?;
            let name = self.expect_ident("a version name", " after `version`")?;
            self.expect_punct(Punct::LBrace, " to open the version body")?;
            let procedures = self.procedures()?;
            self.expect_punct(Punct::Eq, " after the version body")?;
            let number = self.value(" as the version number")?;
            self.expect_punct(Punct::Semi, " after version definition")?;
            versions.push((docs, name, procedures, number));
        }
        self.expect_punct(Punct::Eq, " after the program body")?;
        let id = self.value(" as the program number")?;
        self.expect_punct(Punct::Semi, " after program definition")?;

        let base = upper_camel_case(&program.name);
        let several = versions.len() > 1;
        Ok(versions
            .into_iter()
            .map(|(version_docs, version, procedures, number)| {
                let name = if several {
                    match self.literal_value(&number) {
                        Some(n) => format!("{base}V{n}"),
                        None => upper_camel_case(&version.name),
                    }
                } else {
                    base.clone()
                };
                Interface {
                    docs: [docs.clone(), version_docs].concat(),
                    attributes: attributes.clone(),
                    name: Ident {
                        name,
                        span: program.span,
                    },
                    id: Some(id.clone()),
                    version: number,
                    procedures,
                    origin: InterfaceOrigin::Program {
                        program: program.clone(),
                        version,
                    },
                    resolved_id: None,
                }
            })
            .collect())
    }

    /// The value of a literal or of a constant defined earlier with a literal (chased
    /// through constants); used only to name lowered program versions.
    fn literal_value(&self, value: &Value) -> Option<i64> {
        let mut value = value;
        for _ in 0..self.spec.definitions.len() + 1 {
            match &value.kind {
                ValueKind::Literal(v) => return Some(*v),
                ValueKind::Named(name) => {
                    value = self.spec.definitions.iter().find_map(|d| match d {
                        Definition::Const(c) if c.name.name == name.name => Some(&c.value),
                        _ => None,
                    })?;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case() {
        assert_eq!(upper_camel_case("my_calc"), "MyCalc");
        assert_eq!(upper_camel_case("CALC_PROG"), "CalcProg");
        assert_eq!(upper_camel_case("myCalc"), "MyCalc");
        assert_eq!(upper_camel_case("calc2-v"), "Calc2V");
        assert_eq!(
            interface_name_from_file("proto/seed.idl").as_deref(),
            Some("Seed")
        );
        assert_eq!(
            interface_name_from_file("C:\\x\\my_calc.idl").as_deref(),
            Some("MyCalc")
        );
        assert_eq!(interface_name_from_file("1.idl"), None);
    }

    #[test]
    fn declarations_and_aliases() {
        let spec = parse(
            "t.idl",
            "struct S { string a<5>; opaque b[4]; opaque c<>; int d[2]; int e<>; S *f; Vec<Vec<u8x>> g; Option<String> h; unsigned i; unsigned hyper j; };",
        )
        .unwrap();
        let Definition::Struct(s) = &spec.definitions[0] else {
            panic!()
        };
        let tys: Vec<_> = s.fields.iter().map(|f| &f.ty).collect();
        assert!(matches!(tys[0], Type::String { max: Some(_) }));
        assert!(matches!(tys[1], Type::FixedOpaque { .. }));
        assert!(matches!(tys[2], Type::VarOpaque { max: None }));
        assert!(matches!(tys[3], Type::FixedArray { .. }));
        assert!(matches!(tys[4], Type::VarArray { max: None, .. }));
        assert!(matches!(tys[5], Type::Optional { boxed: false, .. }));
        assert!(
            matches!(tys[6], Type::VarArray { elem, .. } if matches!(**elem, Type::VarArray { .. }))
        );
        assert!(
            matches!(tys[7], Type::Optional { elem, .. } if matches!(**elem, Type::String { max: None }))
        );
        assert_eq!(tys[8], &Type::UnsignedInt);
        assert_eq!(tys[9], &Type::UnsignedHyper);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!(
            "typedef {}int{} x;",
            "Vec<".repeat(10_000),
            ">".repeat(10_000)
        );
        let err = parse("t.idl", &src).unwrap_err();
        assert_eq!(err.as_slice()[0].message, "type is nested too deeply");
    }
}
