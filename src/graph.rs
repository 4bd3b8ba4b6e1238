//! Drawing a checked pipeline's stage graph: as text, Graphviz dot or
//! Mermaid. The graph itself (inputs, cycles, payload types) is checked by
//! `config` when the pipeline is loaded; this module only renders it.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::config::Pipeline;

/// Output formats of `conveyor graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

impl GraphFormat {
    /// Every format, in the order the command line lists them.
    pub const ALL: [GraphFormat; 3] = [GraphFormat::Text, GraphFormat::Dot, GraphFormat::Mermaid];

    /// The names the command line accepts, in the order of [`Self::ALL`].
    pub const NAMES: [&'static str; 3] = ["text", "dot", "mermaid"];

    /// The format's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphFormat::Text => "text",
            GraphFormat::Dot => "dot",
            GraphFormat::Mermaid => "mermaid",
        }
    }
}

/// A name that is no [`GraphFormat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown graph format `{}` (use {})",
            self.0,
            GraphFormat::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for GraphFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<GraphFormat, UnknownFormat> {
        GraphFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

fn describe(p: &Pipeline, i: usize) -> String {
    let s = &p.stages[i];
    if s.kind.is_source() {
        s.kind.name.to_string()
    } else {
        let mode = if s.auto {
            crate::report::StageMode::Auto(s.mode.name())
        } else {
            crate::report::StageMode::Fixed(s.mode.name())
        };
        format!("{}, {}", s.kind.name, mode.describe(s.workers))
    }
}

/// Draw the pipeline's graph.
pub fn render(p: &Pipeline, format: GraphFormat) -> String {
    match format {
        GraphFormat::Text => text(p),
        GraphFormat::Dot => dot(p),
        GraphFormat::Mermaid => mermaid(p),
    }
}

/// Every edge, as (from, to) stage indices.
fn edges(p: &Pipeline) -> Vec<(usize, usize)> {
    p.stages
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.inputs.iter().map(move |&j| (j, i)))
        .collect()
}

// Writing into a `String` can't fail, hence the ignored `writeln!` results.

fn text(p: &Pipeline) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "pipeline `{}`", p.name);
    for (i, s) in p.stages.iter().enumerate() {
        let _ = writeln!(out, "  {} ({})", s.name, describe(p, i));
        for &j in &s.inputs {
            let _ = writeln!(
                out,
                "    <- {} [{}]",
                p.stages[j].name, p.stages[j].output_types
            );
        }
        if p.consumers(i).is_empty() {
            let _ = writeln!(out, "    -> (end) [{}]", s.output_types);
        }
    }
    out
}

fn dot(p: &Pipeline) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", p.name.replace('"', "'"));
    let _ = writeln!(out, "  rankdir=LR;\n  node [shape=box, style=rounded];");
    for (i, s) in p.stages.iter().enumerate() {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\"];",
            s.name,
            s.name,
            describe(p, i)
        );
    }
    for (a, b) in edges(p) {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            p.stages[a].name, p.stages[b].name, p.stages[a].output_types
        );
    }
    out.push_str("}\n");
    out
}

fn mermaid(p: &Pipeline) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, s) in p.stages.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}[\"{}<br/>{}\"]",
            mermaid_id(&s.name),
            s.name,
            describe(p, i)
        );
    }
    for (a, b) in edges(p) {
        let _ = writeln!(
            out,
            "  {} -->|{}| {}",
            mermaid_id(&p.stages[a].name),
            p.stages[a].output_types,
            mermaid_id(&p.stages[b].name)
        );
    }
    out
}

fn mermaid_id(name: &str) -> String {
    format!("s_{}", name.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_from_their_names() {
        for (f, name) in GraphFormat::ALL.into_iter().zip(GraphFormat::NAMES) {
            assert_eq!(f.as_str(), name);
            assert_eq!(name.parse::<GraphFormat>(), Ok(f));
        }
        assert_eq!(
            "svg".parse::<GraphFormat>().unwrap_err().to_string(),
            "unknown graph format `svg` (use text, dot, mermaid)"
        );
    }
}
