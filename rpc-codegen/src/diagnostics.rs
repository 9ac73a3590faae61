//! Compiler diagnostics, rendered like rustc's.
//!
//! A [`Diagnostic`] is one error: a message, a primary [`Span`] with a label, optional
//! secondary spans ("first defined here") and notes. [`Diagnostics`] is the error type
//! of [`crate::parse`] and [`crate::parse_and_check`]: it owns the file name and source
//! so that its `Display` can draw every error with `annotate-snippets`:
//!
//! ```text
//! error: expected `;` after procedure declaration, found `}`
//!  --> proto/calc.idl:3:32
//!   |
//! 3 |   int func2(int arg1, int arg2)
//!   |                                ^ expected `;`
//! ```
//!
//! Rendering never uses colours through `Display`; [`Diagnostics::render_styled`] gives
//! the ANSI-coloured form for terminals.
//!
//! Rendering takes time linear in the source's length, whatever the input: the line
//! starts are indexed once per file (not rescanned per error), each error only looks at
//! the lines its spans touch, and at most [`MAX_RENDERED`] errors are drawn (a last line
//! counts the rest), so a file of thousands of errors on one long line stays cheap.

use std::fmt;

use annotate_snippets::{Level, Renderer, Snippet};

use crate::model::{SourceFile, Span};

/// At most this many errors are drawn by [`Diagnostics`]'s `Display` and
/// [`Diagnostics::render_styled`]; a last line says how many more there were (all of
/// them stay in [`Diagnostics::as_slice`]).
pub const MAX_RENDERED: usize = 100;

/// One error found in an IDL file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostic {
    /// The headline, e.g. ``expected `;` after procedure declaration, found `}` ``.
    pub message: String,
    /// Where the error is (byte offsets into the source).
    pub span: Span,
    /// The text drawn next to the caret, e.g. ``expected `;` ``.
    pub label: String,
    /// Related places, each with its own label (e.g. "first defined here").
    pub secondary: Vec<(Span, String)>,
    /// Footer lines. A note starting with `help: ` is drawn as `= help: ...`, any other
    /// as `= note: ...`.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            label: label.into(),
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a footer note (prefix it with `help: ` for a suggestion).
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Adds a secondary labelled span.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    /// The primary span as `(start, end)` byte offsets, for callers (such as a
    /// proc-macro) that map the error back onto their own spans.
    pub fn byte_range(&self) -> (usize, usize) {
        (self.span.start, self.span.end)
    }

    /// The 1-based line and 1-based column (in characters) where the primary span
    /// starts in `source`.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }

    /// Renders the diagnostic without colours, as `Display` on [`Diagnostics`] does.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        self.render_with(
            &Renderer::plain(),
            file_name,
            source,
            &LineIndex::new(source),
        )
    }

    fn render_with(
        &self,
        renderer: &Renderer,
        file_name: &str,
        source: &str,
        lines: &LineIndex,
    ) -> String {
        // Only the lines the annotations touch are handed to annotate-snippets, with
        // `line_start` set, so the line numbers stay right and huge files stay cheap.
        // Every span is clamped to its first line: multi-line spans (an unterminated
        // comment) are drawn at their start.
        let primary = clamp_to_line(source, self.span);
        let secondary: Vec<(Span, &str)> = self
            .secondary
            .iter()
            .map(|(s, l)| (clamp_to_line(source, *s), l.as_str()))
            .collect();
        let first = secondary
            .iter()
            .map(|(s, _)| s.start)
            .fold(primary.start, usize::min);
        let last = secondary
            .iter()
            .map(|(s, _)| s.start)
            .fold(primary.start, usize::max);
        let window_start = lines.line_start(first);
        let window_end = line_end(source, last);
        work::add(window_end - window_start);
        // Tabs become spaces (same byte length, one column each): annotate-snippets
        // expands tabs itself, which would misplace the caret. The `\r` of `\r\n`
        // line ends is dropped, and offsets after it shifted to match.
        let text = &source[window_start..window_end];
        let mut window = String::with_capacity(text.len());
        let mut dropped = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '\r' if matches!(text[i + 1..].chars().next(), Some('\n') | None) => {
                    dropped.push(i)
                }
                '\t' | '\r' => window.push(' '),
                // Other control characters and non-ASCII whitespace (a form feed, a
                // NUL, a line separator) become one visible character of the same
                // UTF-8 length, so every byte offset and every column stays:
                // annotate-snippets measures them inconsistently, and as whitespace a
                // caret on one of them sits inside the line's indentation, where its
                // margin arithmetic overflows (found by the idl_text fuzz target).
                c if c != '\n' && (c.is_control() || (c.is_whitespace() && c != ' ')) => window
                    .push(match c.len_utf8() {
                        1 => '?',
                        2 => '\u{bf}',
                        _ => '\u{fffd}',
                    }),
                c => window.push(c),
            }
        }
        if window.is_empty() {
            window.push(' ');
        }
        let first_line = lines.line_number(window_start);
        let map = |offset: usize| {
            let offset = offset - window_start;
            offset - dropped.iter().filter(|&&d| d < offset).count()
        };
        let local = |s: Span| map(s.start)..map(s.end);

        let mut snippet = Snippet::source(&window)
            .line_start(first_line)
            .origin(file_name)
            .fold(true)
            .annotation(Level::Error.span(local(primary)).label(&self.label));
        for (span, label) in &secondary {
            // `Warning` draws `-` markers and, unlike `Info`, no "info:" prefix.
            snippet = snippet.annotation(Level::Warning.span(local(*span)).label(label));
        }
        let mut message = Level::Error.title(&self.message).snippet(snippet);
        for note in &self.notes {
            message = match note.strip_prefix("help: ") {
                Some(help) => message.footer(Level::Help.title(help)),
                None => message.footer(Level::Note.title(note)),
            };
        }
        // A local copy: `render` ties the message's lifetime to the renderer's borrow.
        let renderer = renderer.clone();
        // Should the renderer still panic on some input, the error is reported plainly
        // rather than turned into a panic of the build script or the macro.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            renderer.render(message).to_string()
        })) {
            Ok(text) => text,
            Err(_) => {
                let (line, col) = line_col(source, self.span.start);
                format!(
                    "error: {}\n --> {file_name}:{line}:{col}\n  = {}",
                    self.message, self.label
                )
            }
        }
    }
}

/// The 1-based line and 1-based column (in characters) of byte `offset` in `source`.
/// Offsets past the end, or inside a character, are clamped.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_boundary(source, offset);
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let start = line_start(source, offset);
    let col = source[start..offset].chars().count() + 1;
    (line, col)
}

/// The byte offsets where the source's lines start, for finding an offset's line in
/// logarithmic time.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(source: &str) -> Self {
        work::add(source.len());
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// The 1-based number of the line holding byte `offset`.
    fn line_number(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).max(1)
    }

    /// The byte offset where the line holding `offset` starts.
    fn line_start(&self, offset: usize) -> usize {
        self.starts[self.line_number(offset) - 1]
    }
}

/// Counts the bytes the renderer looks at, in tests, to show that rendering is linear
/// without timing it.
#[cfg(test)]
mod work {
    use std::cell::Cell;

    thread_local! {
        static BYTES: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn add(n: usize) {
        BYTES.with(|b| b.set(b.get() + n));
    }

    pub(super) fn take() -> usize {
        BYTES.with(|b| b.replace(0))
    }
}

#[cfg(not(test))]
mod work {
    #[inline(always)]
    pub(super) fn add(_n: usize) {}
}

fn floor_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn line_start(source: &str, offset: usize) -> usize {
    source[..offset].rfind('\n').map_or(0, |i| i + 1)
}

fn line_end(source: &str, offset: usize) -> usize {
    work::add(1);
    source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i)
}

fn clamp_to_line(source: &str, span: Span) -> Span {
    let start = floor_boundary(source, span.start);
    let end = floor_boundary(source, span.end.max(start)).min(line_end(source, start));
    Span::new(start, end.max(start))
}

/// Every error found in one IDL file; the error type of [`crate::parse`] and
/// [`crate::parse_and_check`].
///
/// `Display` renders all of them, rustc-style and without colours, separated by blank
/// lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    file_name: String,
    source: String,
    list: Vec<Diagnostic>,
    /// The files `source` is made of, when it is more than one (`#include`).
    files: Vec<SourceFile>,
}

impl Diagnostics {
    /// Errors for `source`, which is called `file_name` in the rendered messages.
    pub fn new(
        file_name: impl Into<String>,
        source: impl Into<String>,
        list: Vec<Diagnostic>,
    ) -> Self {
        Diagnostics {
            file_name: file_name.into(),
            source: source.into(),
            list,
            files: Vec::new(),
        }
    }

    /// Errors for a source made of several files (the main file and what it
    /// includes, see [`crate::model::Spec::files`]): each error is drawn with the name
    /// and lines of the file its span falls in.
    pub fn with_files(mut self, files: Vec<SourceFile>) -> Self {
        self.files = if files.len() > 1 { files } else { Vec::new() };
        self
    }

    /// The file holding byte `offset` of the source, if the source is several files.
    fn file_at(&self, offset: usize) -> Option<&SourceFile> {
        let i = self.files.partition_point(|f| f.start <= offset);
        i.checked_sub(1).map(|i| &self.files[i])
    }

    /// Where byte `offset` is, as `file:line:column`.
    fn location(&self, offset: usize) -> String {
        match self.file_at(offset) {
            Some(f) => {
                let text = &self.source[f.start..f.end.min(self.source.len())];
                let (line, col) = line_col(text, offset.saturating_sub(f.start));
                format!("{}:{line}:{col}", f.name)
            }
            None => {
                let (line, col) = line_col(&self.source, offset);
                format!("{}:{line}:{col}", self.file_name)
            }
        }
    }

    /// Draws `d`, whose spans may lie in any of the files.
    fn render_in_file(&self, d: &Diagnostic, renderer: &Renderer, lines: &[LineIndex]) -> String {
        let i = self
            .files
            .partition_point(|f| f.start <= d.span.start)
            .saturating_sub(1);
        let file = &self.files[i];
        let end = file.end.min(self.source.len());
        let text = &self.source[file.start.min(end)..end];
        let local = |s: Span| {
            Span::new(
                s.start.saturating_sub(file.start),
                s.end.saturating_sub(file.start),
            )
        };
        let mut shifted = d.clone();
        shifted.span = local(d.span);
        shifted.secondary = Vec::new();
        for (span, label) in &d.secondary {
            if span.start >= file.start && span.start <= file.end {
                shifted.secondary.push((local(*span), label.clone()));
            } else {
                shifted
                    .notes
                    .insert(0, format!("{label}: {}", self.location(span.start)));
            }
        }
        shifted.render_with(renderer, &file.name, text, &lines[i])
    }

    /// The errors, in source order.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.list
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.list.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The file name used in the messages.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The source text the spans point into.
    pub fn source_text(&self) -> &str {
        &self.source
    }

    /// The errors, by value.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.list
    }

    /// Renders every error with ANSI colours, for a terminal.
    pub fn render_styled(&self) -> String {
        self.render_all(&Renderer::styled())
    }

    fn render_all(&self, renderer: &Renderer) -> String {
        let mut parts: Vec<String> = if self.files.is_empty() {
            let lines = LineIndex::new(&self.source);
            self.list
                .iter()
                .take(MAX_RENDERED)
                .map(|d| d.render_with(renderer, &self.file_name, &self.source, &lines))
                .collect()
        } else {
            let lines: Vec<LineIndex> = self
                .files
                .iter()
                .map(|f| {
                    let end = f.end.min(self.source.len());
                    LineIndex::new(&self.source[f.start.min(end)..end])
                })
                .collect();
            self.list
                .iter()
                .take(MAX_RENDERED)
                .map(|d| self.render_in_file(d, renderer, &lines))
                .collect()
        };
        if let Some(more) = self.list.len().checked_sub(MAX_RENDERED).filter(|&n| n > 0) {
            parts.push(format!(
                "error: {more} more error{} in {} not shown",
                if more == 1 { "" } else { "s" },
                self.file_name
            ));
        }
        parts.join("\n\n")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_all(&Renderer::plain()))
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let src = "ab\néé x\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 3), (2, 1));
        assert_eq!(line_col(src, 8), (2, 4));
        assert_eq!(line_col(src, 1000), (3, 1));
        assert_eq!(line_col(src, 4), (2, 1)); // inside `é`: clamped down
    }

    #[test]
    fn renders_caret_with_tabs_and_out_of_range_spans() {
        let d = Diagnostic::error("boom", Span::new(1, 2), "here");
        let text = d.render("f.idl", "\tx");
        assert!(text.contains(" --> f.idl:1:2"), "{text}");
        assert!(text.contains("1 |  x\n  |  ^ here"), "{text}");
        let d = Diagnostic::error("boom", Span::new(7, 8), "here");
        let text = d.render("f.idl", "a\r\nb\r\ncd\r\n");
        assert!(text.contains(" --> f.idl:3:2"), "{text}");
        assert!(text.contains("3 | cd\n  |  ^ here"), "{text}");
        let d = Diagnostic::error("boom", Span::new(50, 70), "here");
        assert!(d.render("f.idl", "").contains("f.idl:1:1"));
    }

    /// Bytes the renderer looks at to render the errors of `source`, and the output.
    fn render_cost(source: &str) -> (usize, String, usize) {
        let errors = crate::parse_and_check("big.idl", source).unwrap_err();
        work::take();
        let text = errors.to_string();
        (work::take(), text, errors.len())
    }

    #[test]
    fn rendering_is_linear_in_the_input() {
        // Found by fuzzing: 16 KiB of bad characters rendered in quadratic time (each
        // error rescanned the file for its line number, and every error was drawn).
        let shapes: [fn(usize) -> String; 3] = [
            |n| "@".repeat(n),
            |n| "@\n".repeat(n / 2),
            |n| format!("struct S {{ {} int ; }};", "int x;".repeat(n / 6)),
        ];
        for shape in shapes {
            let (small, _, _) = render_cost(&shape(16 << 10));
            let (large, text, count) = render_cost(&shape(64 << 10));
            assert!(small > 0);
            // Four times the input: at most about four times the work (quadratic would
            // be sixteen).
            assert!(
                large <= 5 * small,
                "16 KiB: {small} bytes of work, 64 KiB: {large}"
            );
            if count > MAX_RENDERED {
                assert!(
                    text.contains("more errors in big.idl not shown"),
                    "{text:.200}"
                );
            }
            assert!(text.matches("\n --> big.idl:").count() <= MAX_RENDERED);
        }
    }

    #[test]
    fn line_index_agrees_with_line_col() {
        let src = "a\nbc\n\nd";
        let index = LineIndex::new(src);
        for offset in 0..=src.len() {
            assert_eq!(
                index.line_number(offset),
                line_col(src, offset).0,
                "{offset}"
            );
            assert_eq!(
                index.line_start(offset),
                line_start(src, offset),
                "{offset}"
            );
        }
    }
}
