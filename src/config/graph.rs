//! Graph checks: resolving each stage's inputs into edges, refusing cycles,
//! and checking that every edge carries a payload the stage it feeds accepts.
//! Drawing a checked graph is [`crate::graph`]'s job.

use super::diag::{Diagnostic, Loc};
use crate::item::{PayloadType, Types};
use crate::stage::KindSpec;
use crate::suggest::did_you_mean;

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

/// The resolved edges: for each stage, the stages it reads from and where
/// each of those edges was written (to point errors at it).
struct Edges {
    inputs: Vec<Vec<usize>>,
    locs: Vec<Vec<Loc>>,
}

impl Edges {
    fn add(&mut self, to: usize, from: usize, loc: Loc) {
        self.inputs[to].push(from);
        self.locs[to].push(loc);
    }
}

/// Resolve inputs and check the graph, pushing every problem into `diags`.
/// Returns `None` when the graph can't be used.
pub fn check(nodes: &[Node<'_>], diags: &mut Vec<Diagnostic>) -> Option<Checked> {
    let names: Vec<&str> = nodes.iter().map(|n| n.name).collect();
    let mut edges = Edges {
        inputs: vec![Vec::new(); nodes.len()],
        locs: vec![Vec::new(); nodes.len()],
    };
    let mut ok = true;
    for (i, node) in nodes.iter().enumerate() {
        // `&=`, not `&&`: every stage is resolved, so every error is found.
        ok &= resolve_inputs(i, node, &names, &mut edges, diags);
    }
    let order = topological_order(&edges.inputs);
    if order.len() < nodes.len() {
        report_cycles(nodes, &names, &edges, &order, diags);
        return None;
    }
    let (input_types, output_types) = payload_types(nodes, &edges, &order, &mut ok, diags);
    ok.then_some(Checked {
        inputs: edges.inputs,
        input_types,
        output_types,
        order,
    })
}

/// Resolve stage `i`'s inputs into `edges`; false when they are wrong.
fn resolve_inputs(
    i: usize,
    node: &Node<'_>,
    names: &[&str],
    edges: &mut Edges,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let is_source = node.kind.is_some_and(KindSpec::is_source);
    match &node.input {
        Some(list) if is_source => {
            let loc = list
                .first()
                .and_then(|(_, l)| l.clone())
                .or_else(|| Some(node.loc.clone()));
            diags.push(Diagnostic::error(
                format!(
                    "stage `{}` is a source (kind `{}`) and reads no input",
                    node.name,
                    kind_name(node)
                ),
                loc,
            ));
            false
        }
        Some(list) => resolve_named(i, node, list, names, edges, diags),
        None if is_source => true,
        None if i == 0 => {
            if node.kind.is_some() {
                diags.push(first_needs_input(node));
            }
            false
        }
        None => {
            let loc = node.kind_loc.clone().unwrap_or_else(|| node.loc.clone());
            edges.add(i, i - 1, loc);
            true
        }
    }
}

fn kind_name<'a>(node: &Node<'a>) -> &'a str {
    node.kind.map_or("?", |k| k.name)
}

fn first_needs_input(node: &Node<'_>) -> Diagnostic {
    Diagnostic::error(
        format!(
            "stage `{}` is the first stage but kind `{}` needs an input",
            node.name,
            kind_name(node)
        ),
        node.kind_loc.clone().or_else(|| Some(node.loc.clone())),
    )
    .help(Some(
        "start the pipeline with a source such as `scan`".into(),
    ))
}

/// Resolve the inputs a stage names (`input` or `inputs`).
fn resolve_named(
    i: usize,
    node: &Node<'_>,
    list: &[(String, Option<Loc>)],
    names: &[&str],
    edges: &mut Edges,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    if list.is_empty() {
        diags.push(Diagnostic::error(
            format!("stage `{}` has an empty `inputs` list", node.name),
            Some(node.loc.clone()),
        ));
        ok = false;
    }
    for (name, loc) in list {
        let loc = loc.clone().unwrap_or_else(|| node.loc.clone());
        match names.iter().position(|n| n == name) {
            Some(j) if edges.inputs[i].contains(&j) => {
                diags.push(Diagnostic::error(
                    format!("stage `{}` names input `{name}` twice", node.name),
                    Some(loc),
                ));
                ok = false;
            }
            Some(j) => edges.add(i, j, loc),
            None => {
                diags.push(
                    Diagnostic::error(
                        format!(
                            "stage `{}` reads from `{name}`, but no stage has that name",
                            node.name
                        ),
                        Some(loc),
                    )
                    .label("no such stage")
                    .help(did_you_mean(name, names.iter().copied())),
                );
                ok = false;
            }
        }
    }
    ok
}

/// The stages in an order where each comes after its inputs (Kahn's
/// algorithm). Stages on or behind a cycle are left out.
fn topological_order(inputs: &[Vec<usize>]) -> Vec<usize> {
    let n = inputs.len();
    let mut indegree: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut order = Vec::with_capacity(n);
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(i) = ready.pop() {
        order.push(i);
        for j in (0..n).filter(|&j| inputs[j].contains(&i)) {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(j);
            }
        }
    }
    order
}

/// One error per cycle, at the edge that closes it.
fn report_cycles(
    nodes: &[Node<'_>],
    names: &[&str],
    edges: &Edges,
    order: &[usize],
    diags: &mut Vec<Diagnostic>,
) {
    let n = nodes.len();
    let mut reported = vec![false; n];
    for start in 0..n {
        if reported[start] || order.contains(&start) {
            continue;
        }
        let Some(cycle) = find_cycle(start, &edges.inputs) else {
            continue;
        };
        if cycle.iter().any(|&c| reported[c]) {
            continue;
        }
        for &c in &cycle {
            reported[c] = true;
        }
        diags.push(cycle_error(&cycle, nodes, names, edges));
    }
}

fn cycle_error(cycle: &[usize], nodes: &[Node<'_>], names: &[&str], edges: &Edges) -> Diagnostic {
    // Report at the edge that closes the loop back to `first`.
    let first = cycle[0];
    let last = cycle[cycle.len() - 1];
    let pos = edges.inputs[first]
        .iter()
        .position(|&x| x == last)
        .unwrap_or(0);
    let loc = edges.locs[first]
        .get(pos)
        .cloned()
        .unwrap_or_else(|| nodes[first].loc.clone());
    let mut path: Vec<&str> = cycle.iter().rev().map(|&c| names[c]).collect();
    path.push(names[last]);
    let path: Vec<String> = path.iter().map(|p| format!("`{p}`")).collect();
    Diagnostic::error(
        format!("the stages form a cycle: {}", path.join(" -> ")),
        Some(loc),
    )
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

/// Payload types along the edges, in topological order: `(arriving, given)`
/// per stage. Clears `ok` on a mismatch or an unknown kind.
fn payload_types(
    nodes: &[Node<'_>],
    edges: &Edges,
    order: &[usize],
    ok: &mut bool,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<Types>, Vec<Types>) {
    let n = nodes.len();
    let mut input_types = vec![Types::NONE; n];
    let mut output_types = vec![Types::NONE; n];
    for &i in order {
        let Some(kind) = nodes[i].kind else {
            *ok = false;
            continue;
        };
        if kind.is_source() {
            output_types[i] = kind.output_types(Types::NONE);
            continue;
        }
        let mut arriving = Types::NONE;
        for (e, &j) in edges.inputs[i].iter().enumerate() {
            let given = output_types[j];
            if !given.is_subset(kind.accepts) && !given.is_empty() {
                let loc = edges.locs[i].get(e).cloned();
                diags.push(mismatch(&nodes[i], kind, &nodes[j], given, loc));
                *ok = false;
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
    (input_types, output_types)
}

/// A stage of `kind` can't take what its input `from` gives.
fn mismatch(
    node: &Node<'_>,
    kind: &KindSpec,
    from: &Node<'_>,
    given: Types,
    loc: Option<Loc>,
) -> Diagnostic {
    Diagnostic::error(
        format!(
            "stage `{}` (kind `{}`) takes {}, but its input `{}` (kind `{}`) gives {given}",
            node.name,
            kind.name,
            kind.accepts,
            from.name,
            kind_name(from)
        ),
        loc,
    )
    .label("payload type mismatch")
    .help(type_help(kind.accepts, given))
}

fn type_help(accepts: Types, given: Types) -> Option<String> {
    let wants_image = accepts.contains(PayloadType::Image);
    let wants_bytes = accepts.contains(PayloadType::Bytes);
    if wants_image && !given.contains(PayloadType::Image) {
        Some("put a `decode` stage in between".into())
    } else if wants_bytes && given.contains(PayloadType::Image) {
        Some("put an `encode` stage in between".into())
    } else if wants_bytes && given.contains(PayloadType::Nothing) {
        Some("put a `read` stage (or `decode` + `encode`) in between".into())
    } else {
        None
    }
}
