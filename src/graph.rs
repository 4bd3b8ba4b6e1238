//! The stage graph: resolving inputs into edges, checking that the graph is a
//! DAG whose edges carry payloads each stage accepts, and drawing it (text,
//! Graphviz dot, Mermaid).

use std::fmt::Write as _;

use crate::config::{Diagnostic, Loc, Pipeline};
use crate::item::Types;
use crate::stage::KindSpec;

/// A stage as the graph checker sees it.
pub struct Node<'a> {
    pub name: &'a str,
    /// `None` when the kind is unknown (already reported).
    pub kind: Option<&'a KindSpec>,
    /// Named inputs with where they were written; `None`: the stage above.
    pub input: Option<Vec<(String, Option<Loc>)>>,
    /// The stage's table, for errors about the stage as a whole.
    pub loc: Loc,
    pub kind_loc: Option<Loc>,
}

/// The result of a successful check.
#[derive(Debug, Clone)]
pub struct Checked {
    pub inputs: Vec<Vec<usize>>,
    pub input_types: Vec<Types>,
    pub output_types: Vec<Types>,
    /// Stages in an order where each comes after its inputs.
    pub order: Vec<usize>,
}

/// Resolve inputs and check the graph, pushing every problem into `diags`.
/// Returns `None` when the graph can't be used.
pub fn check(nodes: &[Node<'_>], diags: &mut Vec<Diagnostic>) -> Option<Checked> {
    let n = nodes.len();
    let names: Vec<&str> = nodes.iter().map(|n| n.name).collect();
    let mut inputs: Vec<Vec<usize>> = vec![Vec::new(); n];
    // Where each edge was written, to point errors at it.
    let mut edge_locs: Vec<Vec<Loc>> = vec![Vec::new(); n];
    let mut ok = true;
    for (i, node) in nodes.iter().enumerate() {
        let is_source = node.kind.is_some_and(KindSpec::is_source);
        match &node.input {
            Some(list) => {
                if is_source {
                    let loc = list
                        .first()
                        .and_then(|(_, l)| l.clone())
                        .or_else(|| Some(node.loc.clone()));
                    diags.push(Diagnostic::error(
                        format!(
                            "stage `{}` is a source (kind `{}`) and reads no input",
                            node.name,
                            node.kind.map_or("?", |k| k.name)
                        ),
                        loc,
                    ));
                    ok = false;
                    continue;
                }
                if list.is_empty() {
                    let loc = Some(node.loc.clone());
                    diags.push(Diagnostic::error(
                        format!("stage `{}` has an empty `inputs` list", node.name),
                        loc,
                    ));
                    ok = false;
                }
                for (name, loc) in list {
                    let loc = loc.clone().unwrap_or_else(|| node.loc.clone());
                    match names.iter().position(|n| n == name) {
                        Some(j) if inputs[i].contains(&j) => {
                            diags.push(Diagnostic::error(
                                format!("stage `{}` names input `{name}` twice", node.name),
                                Some(loc),
                            ));
                            ok = false;
                        }
                        Some(j) => {
                            inputs[i].push(j);
                            edge_locs[i].push(loc);
                        }
                        None => {
                            diags.push(
                                Diagnostic::error(
                                    format!("stage `{}` reads from `{name}`, but no stage has that name", node.name),
                                    Some(loc),
                                )
                                .label("no such stage")
                                .help(crate::config::suggest(name, names.iter().copied()).map(|s| format!("did you mean `{s}`?"))),
                            );
                            ok = false;
                        }
                    }
                }
            }
            None if is_source => {}
            None if i == 0 => {
                if node.kind.is_some() {
                    diags.push(
                        Diagnostic::error(
                            format!(
                                "stage `{}` is the first stage but kind `{}` needs an input",
                                node.name,
                                node.kind.map_or("?", |k| k.name)
                            ),
                            node.kind_loc.clone().or_else(|| Some(node.loc.clone())),
                        )
                        .help(Some(
                            "start the pipeline with a source such as `scan`".into(),
                        )),
                    );
                }
                ok = false;
            }
            None => {
                inputs[i].push(i - 1);
                edge_locs[i].push(node.kind_loc.clone().unwrap_or_else(|| node.loc.clone()));
            }
        }
    }

    // Cycles: Kahn's algorithm; whatever is left over sits on or behind one.
    let mut indegree: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut order = Vec::with_capacity(n);
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(i) = ready.pop() {
        order.push(i);
        for j in 0..n {
            if inputs[j].contains(&i) {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(j);
                }
            }
        }
    }
    if order.len() < n {
        let mut reported = vec![false; n];
        for start in 0..n {
            if reported[start] || order.contains(&start) {
                continue;
            }
            if let Some(cycle) = find_cycle(start, &inputs) {
                if cycle.iter().any(|&c| reported[c]) {
                    continue;
                }
                for &c in &cycle {
                    reported[c] = true;
                }
                // Report at the edge that closes the loop back to `first`.
                let first = cycle[0];
                let last = cycle[cycle.len() - 1];
                let pos = inputs[first].iter().position(|&x| x == last).unwrap_or(0);
                let loc = edge_locs[first]
                    .get(pos)
                    .cloned()
                    .unwrap_or_else(|| nodes[first].loc.clone());
                let mut path: Vec<&str> = cycle.iter().rev().map(|&c| names[c]).collect();
                path.push(names[last]);
                diags.push(Diagnostic::error(
                    format!(
                        "the stages form a cycle: {}",
                        path.iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    ),
                    Some(loc),
                ));
            }
        }
        return None;
    }

    // Payload types along the edges, in topological order.
    let mut input_types = vec![Types::NONE; n];
    let mut output_types = vec![Types::NONE; n];
    for &i in &order {
        let Some(kind) = nodes[i].kind else {
            ok = false;
            continue;
        };
        if kind.is_source() {
            output_types[i] = kind.output_types(Types::NONE);
            continue;
        }
        let mut arriving = Types::NONE;
        for (e, &j) in inputs[i].iter().enumerate() {
            let given = output_types[j];
            if given.is_empty() {
                continue;
            }
            if !given.is_subset(kind.accepts) {
                let from = nodes[j].kind.map_or("?", |k| k.name);
                diags.push(
                    Diagnostic::error(
                        format!(
                            "stage `{}` (kind `{}`) takes {}, but its input `{}` (kind `{from}`) gives {given}",
                            nodes[i].name, kind.name, kind.accepts, nodes[j].name
                        ),
                        edge_locs[i].get(e).cloned(),
                    )
                    .label("payload type mismatch")
                    .help(type_help(kind.accepts, given)),
                );
                ok = false;
            }
            arriving = arriving.union(given);
        }
        // A mismatch is reported once; downstream stages see what this stage
        // would give on good input, so one mistake gives one error.
        let effective = if arriving.is_subset(kind.accepts) {
            arriving
        } else {
            kind.accepts
        };
        input_types[i] = arriving;
        output_types[i] = kind.output_types(effective);
    }
    if !ok {
        return None;
    }
    Some(Checked {
        inputs,
        input_types,
        output_types,
        order,
    })
}

fn type_help(accepts: Types, given: Types) -> Option<String> {
    use crate::item::PayloadType as P;
    let wants_image = accepts.contains(P::Image);
    let wants_bytes = accepts.contains(P::Bytes);
    if wants_image && !given.contains(P::Image) {
        Some("put a `decode` stage in between".into())
    } else if wants_bytes && given.contains(P::Image) {
        Some("put an `encode` stage in between".into())
    } else if wants_bytes && given.contains(P::Nothing) {
        Some("put a `read` stage (or `decode` + `encode`) in between".into())
    } else {
        None
    }
}

/// A cycle through `start`, as stage indices following input edges.
fn find_cycle(start: usize, inputs: &[Vec<usize>]) -> Option<Vec<usize>> {
    fn dfs(
        node: usize,
        start: usize,
        inputs: &[Vec<usize>],
        path: &mut Vec<usize>,
        seen: &mut Vec<bool>,
    ) -> bool {
        for &next in &inputs[node] {
            if next == start {
                return true;
            }
            if !seen[next] {
                seen[next] = true;
                path.push(next);
                if dfs(next, start, inputs, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = vec![false; inputs.len()];
    seen[start] = true;
    dfs(start, start, inputs, &mut path, &mut seen).then_some(path)
}

/// Output formats of `conveyor graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

fn describe(p: &Pipeline, i: usize) -> String {
    let s = &p.stages[i];
    if s.kind.is_source() {
        s.kind.name.to_string()
    } else {
        format!("{}, {} x{}", s.kind.name, s.mode.name(), s.workers)
    }
}

/// Draw the pipeline's graph.
pub fn render(p: &Pipeline, format: GraphFormat) -> String {
    let mut out = String::new();
    let edges: Vec<(usize, usize)> = p
        .stages
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.inputs.iter().map(move |&j| (j, i)))
        .collect();
    match format {
        GraphFormat::Text => {
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
                let consumers = p.consumers(i);
                if consumers.is_empty() {
                    let _ = writeln!(out, "    -> (end) [{}]", s.output_types);
                }
            }
        }
        GraphFormat::Dot => {
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
            for (a, b) in edges {
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\" [label=\"{}\"];",
                    p.stages[a].name, p.stages[b].name, p.stages[a].output_types
                );
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, s) in p.stages.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {}[\"{}<br/>{}\"]",
                    mermaid_id(&s.name),
                    s.name,
                    describe(p, i)
                );
            }
            for (a, b) in edges {
                let _ = writeln!(
                    out,
                    "  {} -->|{}| {}",
                    mermaid_id(&p.stages[a].name),
                    p.stages[a].output_types,
                    mermaid_id(&p.stages[b].name)
                );
            }
        }
    }
    out
}

fn mermaid_id(name: &str) -> String {
    format!("s_{}", name.replace('-', "_"))
}
