//! Diagnostics: config errors and warnings with their place in a source (a
//! pipeline file or a command-line override), rendered like a compiler does.

use std::fmt::Write as _;
use std::ops::Range;

/// A text that diagnostics point into.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// What to call it: a path, or `--set` / `--mode` for overrides.
    pub name: String,
    pub text: String,
    /// A file is shown as `name:line:col`; a command-line argument as itself.
    pub is_file: bool,
}

/// All sources of one load, indexed by `Loc::source`.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
}

impl Sources {
    pub fn add(&mut self, file: SourceFile) -> usize {
        self.files.push(file);
        self.files.len() - 1
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, loc: &Loc) -> (usize, usize) {
        let Some(file) = self.files.get(loc.source) else {
            return (1, 1);
        };
        let text = &file.text;
        let offset = floor_char_boundary(text, loc.span.start.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// `file:line:col` for a file, or the argument for a command-line source.
    pub fn position(&self, loc: &Loc) -> String {
        let Some(file) = self.files.get(loc.source) else {
            return "?".into();
        };
        let (line, col) = self.line_col(loc);
        if file.is_file {
            format!("{}:{line}:{col}", file.name)
        } else {
            format!("{} {}", file.name, file.text)
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A place in a source: byte offsets into `Sources::files[source]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub source: usize,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Self-contained: names the stage and key concerned.
    pub message: String,
    pub loc: Option<Loc>,
    /// Short text under the caret.
    pub label: Option<String>,
    /// A suggestion, e.g. "did you mean `width`?".
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>, loc: Option<Loc>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            loc,
            label: None,
            help: None,
        }
    }

    pub fn warning(message: impl Into<String>, loc: Option<Loc>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message, loc)
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Colours for a terminal; empty strings otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub error: &'static str,
    pub warning: &'static str,
    pub accent: &'static str,
    pub bold: &'static str,
    pub reset: &'static str,
}

impl Style {
    pub const PLAIN: Style = Style {
        error: "",
        warning: "",
        accent: "",
        bold: "",
        reset: "",
    };
    pub const COLOR: Style = Style {
        error: "\x1b[1;31m",
        warning: "\x1b[1;33m",
        accent: "\x1b[1;34m",
        bold: "\x1b[1m",
        reset: "\x1b[0m",
    };
}

/// Render one diagnostic: the message, the position, the source line with a
/// caret under the offending text, and the help line.
pub fn render(d: &Diagnostic, sources: &Sources, style: Style) -> String {
    let mut out = String::new();
    let (word, colour) = match d.severity {
        Severity::Error => ("error", style.error),
        Severity::Warning => ("warning", style.warning),
    };
    let _ = writeln!(
        out,
        "{colour}{word}{}: {}{}{}",
        style.reset, style.bold, d.message, style.reset
    );
    if let Some(loc) = &d.loc
        && let Some(file) = sources.files.get(loc.source)
    {
        let (line, col) = sources.line_col(loc);
        let text = &file.text;
        let line_text = text.lines().nth(line - 1).unwrap_or("");
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(
            out,
            "{pad}{}-->{} {}",
            style.accent,
            style.reset,
            sources.position(loc)
        );
        let _ = writeln!(out, "{pad} {}|{}", style.accent, style.reset);
        let _ = writeln!(out, "{}{line} |{} {line_text}", style.accent, style.reset);
        // The caret covers the span, clipped to the end of its line.
        let line_chars = line_text.chars().count();
        let start = floor_char_boundary(text, loc.span.start.min(text.len()));
        let end = floor_char_boundary(text, loc.span.end.min(text.len()).max(start));
        let width = text[start..end]
            .lines()
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0);
        let width = width.clamp(1, line_chars.saturating_sub(col - 1).max(1));
        let label = d
            .label
            .as_deref()
            .map(|l| format!(" {l}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{pad} {}|{} {}{colour}{}{label}{}",
            style.accent,
            style.reset,
            " ".repeat(col - 1),
            "^".repeat(width),
            style.reset
        );
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "  = {}help{}: {help}", style.bold, style.reset);
    }
    out
}

/// Every diagnostic of a load, errors and warnings, with the sources they
/// point into.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub sources: Sources,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    pub fn render(&self, style: Style) -> String {
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&render(d, &self.sources, style));
            out.push('\n');
        }
        let n = self.errors().count();
        if n > 0 {
            let _ = writeln!(
                out,
                "{}error{}: {n} error{} in the pipeline; nothing was run",
                style.error,
                style.reset,
                if n == 1 { "" } else { "s" }
            );
        }
        out
    }

    /// Put diagnostics in source order, so a reader meets them top to bottom.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| {
            d.loc
                .as_ref()
                .map(|l| (l.source, l.span.start))
                .unwrap_or((usize::MAX, 0))
        });
    }
}
