//! From a raw document to a checked [`Pipeline`]: a short list of checks,
//! each pushing its problems into one list, so every error is found in one
//! pass. Stages are checked one by one first (keys, kind, options), then
//! together (names, graph, files), then built.

use super::diag::{Diagnostic, Sources};
use super::graph::{self, Checked};
use super::keys::{CommonKeys, Mode, PipelineKeys, Workers, check_common};
use super::raw::{RawDoc, RawTable};
use super::{Pipeline, StageDef, preflight, property_names, safety};
use crate::stage::{KindSpec, OptionError, StagePaths, check_options, parse_options};
use crate::stages::Registry;
use crate::suggest::did_you_mean;

/// A stage as far as it could be checked before the graph.
struct Partial<'a> {
    name: String,
    table: &'a RawTable,
    kind: Option<KindSpec>,
    common: CommonKeys,
    options: toml::Table,
}

/// Check `raw` (after overrides); `stem` names a pipeline without a `name`.
pub(super) fn validate(
    raw: &RawDoc,
    stem: &str,
    registry: &Registry,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<Pipeline> {
    let keys = raw
        .pipeline
        .as_ref()
        .map(|t| pipeline_keys(t, diags))
        .unwrap_or_default();
    if raw.stages.is_empty() {
        diags.push(
            Diagnostic::error("the pipeline has no stages", None).help(Some(
                "add `[[stage]]` sections; `conveyor stages` lists the kinds".into(),
            )),
        );
        return None;
    }
    let common_names = property_names(&schemars::schema_for!(CommonKeys));
    let partials: Vec<Partial<'_>> = (raw.stages.iter().enumerate())
        .map(|(idx, table)| check_stage(idx, table, &common_names, registry, diags))
        .collect();
    duplicate_names(&partials, sources, diags);
    let checked = check_graph(&partials, diags);
    if has_errors(diags) {
        return None;
    }
    let checked = checked?;
    check_files(&partials, &checked, sources, diags);
    if has_errors(diags) {
        return None;
    }
    Some(Pipeline {
        name: keys.name.unwrap_or_else(|| stem.to_string()),
        on_error: keys.on_error,
        retries: keys.retries,
        queue: keys.queue,
        stages: build_stages(partials, &checked, keys.retries, diags)?,
    })
}

fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// The `[pipeline]` table: unknown keys, then the known ones.
fn pipeline_keys(table: &RawTable, diags: &mut Vec<Diagnostic>) -> PipelineKeys {
    let known = property_names(&schemars::schema_for!(PipelineKeys));
    for e in &table.entries {
        if !known.iter().any(|k| k == &e.key) {
            diags.push(
                Diagnostic::error(
                    format!("unknown key `{}` in [pipeline]", e.key),
                    Some(e.key_loc.clone()),
                )
                .label("unknown key")
                .help(did_you_mean(&e.key, known.iter().map(String::as_str))),
            );
        }
    }
    let t = sub_table(table, |k| known.iter().any(|n| n == k));
    let errors = check_options::<PipelineKeys>(&t);
    let keys = if errors.is_empty() {
        parse_options(&t).unwrap_or_default()
    } else {
        PipelineKeys::default()
    };
    diags.extend(
        errors
            .into_iter()
            .map(|e| option_diag(table, "[pipeline]", e)),
    );
    keys
}

/// One `[[stage]]` table on its own: common keys, name, kind, options.
fn check_stage<'a>(
    idx: usize,
    table: &'a RawTable,
    common_names: &[String],
    registry: &Registry,
    diags: &mut Vec<Diagnostic>,
) -> Partial<'a> {
    let common_t = sub_table(table, |k| common_names.iter().any(|n| n == k));
    let label = table
        .str_of("name")
        .map_or_else(|| format!("stage #{}", idx + 1), |n| format!("stage `{n}`"));
    let (common, errors) = check_common(&common_t);
    diags.extend(errors.into_iter().map(|e| option_diag(table, &label, e)));
    let name = match &common.name {
        Some(n) => n.clone(),
        None => {
            diags.push(Diagnostic::error(
                format!("{label} has no `name`"),
                Some(table.loc.clone()),
            ));
            format!("#{}", idx + 1)
        }
    };
    let label = format!("stage `{name}`");
    let kind = find_kind(common.kind.as_deref(), table, &label, registry, diags);
    let options = kind.as_ref().map_or_else(toml::Table::new, |spec| {
        kind_options(spec, table, common_names, &label, diags)
    });
    Partial {
        name,
        table,
        kind,
        common,
        options,
    }
}

/// The registered kind a stage names.
fn find_kind(
    kind: Option<&str>,
    table: &RawTable,
    label: &str,
    registry: &Registry,
    diags: &mut Vec<Diagnostic>,
) -> Option<KindSpec> {
    let kinds = || Some(format!("kinds: {}", registry.names().join(", ")));
    let Some(k) = kind else {
        diags.push(
            Diagnostic::error(format!("{label} has no `kind`"), Some(table.loc.clone()))
                .help(kinds()),
        );
        return None;
    };
    if let Some(spec) = registry.get(k) {
        return Some(spec.clone());
    }
    diags.push(
        Diagnostic::error(
            format!("unknown stage kind `{k}` in {label}"),
            table.value_loc("kind"),
        )
        .label("unknown kind")
        .help(did_you_mean(k, registry.names()).or_else(kinds)),
    );
    None
}

/// The kind's own options from a stage table, checked; keys that are
/// neither the kind's nor common are reported.
fn kind_options(
    spec: &KindSpec,
    table: &RawTable,
    common_names: &[String],
    label: &str,
    diags: &mut Vec<Diagnostic>,
) -> toml::Table {
    let own = property_names(&(spec.schema)());
    let mut options = toml::Table::new();
    for e in table
        .entries
        .iter()
        .filter(|e| !common_names.contains(&e.key))
    {
        if own.contains(&e.key) {
            options.insert(e.key.clone(), e.value.value.clone());
            continue;
        }
        let candidates = own.iter().chain(common_names).map(String::as_str);
        diags.push(
            Diagnostic::error(
                format!("unknown key `{}` in {label} (kind `{}`)", e.key, spec.name),
                Some(e.key_loc.clone()),
            )
            .label("unknown key")
            .help(did_you_mean(&e.key, candidates)),
        );
    }
    let errors = (spec.check)(&options);
    diags.extend(errors.into_iter().map(|e| option_diag(table, label, e)));
    options
}

/// Two stages with one name: the second is the error.
fn duplicate_names(partials: &[Partial<'_>], sources: &Sources, diags: &mut Vec<Diagnostic>) {
    for (i, p) in partials.iter().enumerate() {
        let Some(first) = partials[..i]
            .iter()
            .find(|q| q.name == p.name && p.common.name.is_some())
        else {
            continue;
        };
        let first_line = first
            .table
            .value_loc("name")
            .map(|l| format!(" (first defined at line {})", sources.line_col(&l).0))
            .unwrap_or_default();
        diags.push(Diagnostic::error(
            format!("duplicate stage name `{}`{first_line}", p.name),
            p.table.value_loc("name"),
        ));
    }
}

/// The graph: inputs, cycles, payload types.
fn check_graph(partials: &[Partial<'_>], diags: &mut Vec<Diagnostic>) -> Option<Checked> {
    let nodes: Vec<graph::Node<'_>> = partials
        .iter()
        .map(|p| graph::Node {
            name: &p.name,
            kind: p.kind.as_ref(),
            input: named_inputs(p),
            loc: p.table.loc.clone(),
            kind_loc: p.table.value_loc("kind"),
        })
        .collect();
    graph::check(&nodes, diags)
}

/// The inputs a stage names, each with where it was written.
fn named_inputs(p: &Partial<'_>) -> Option<Vec<(String, Option<super::Loc>)>> {
    if let Some(i) = &p.common.input {
        return Some(vec![(i.clone(), p.table.value_loc("input"))]);
    }
    let list = p.common.inputs.as_ref()?;
    let loc = p.table.value_loc("inputs");
    Some(list.iter().map(|i| (i.clone(), loc.clone())).collect())
}

/// The files the stages read and write, checked before anything runs.
fn check_files(
    partials: &[Partial<'_>],
    checked: &Checked,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let sites: Vec<safety::Site<'_>> = partials
        .iter()
        .map(|p| safety::Site {
            name: &p.name,
            table: p.table,
            paths: p
                .kind
                .as_ref()
                .map_or(StagePaths::None, |k| (k.paths)(&p.options)),
        })
        .collect();
    safety::check(&sites, &checked.inputs, sources, diags);
    preflight::check(&sites, diags);
    dead_ends(&sites, checked, diags);
}

/// A branch whose items (bytes or images) reach no stage that writes
/// them: the work is done and thrown away. A warning, not an error: a
/// pipeline being built up may end that way for a while.
fn dead_ends(sites: &[safety::Site<'_>], checked: &Checked, diags: &mut Vec<Diagnostic>) {
    use crate::item::PayloadType;
    for (i, site) in sites.iter().enumerate() {
        let leaf = !checked.inputs.iter().any(|ins| ins.contains(&i));
        let carries = checked.output_types[i];
        let made = carries.contains(PayloadType::Image) || carries.contains(PayloadType::Bytes);
        if leaf && made && site.paths == StagePaths::None {
            diags.push(
                Diagnostic::warning(
                    format!(
                        "stage `{}` ends a branch, and what it makes reaches no stage that writes it: its items are made and dropped",
                        site.name
                    ),
                    Some(site.table.loc.clone()),
                )
                .help(Some(
                    "add a `write` (after an `encode`), a `manifest` or a `contact_sheet` after it"
                        .into(),
                )),
            );
        }
    }
}

/// `memory_limit` and `timeout` act only on worker processes (and `exec`
/// ends its own command at `timeout`): elsewhere they would be silently
/// ignored.
fn limits_ignored(p: &Partial<'_>, mode: Mode, diags: &mut Vec<Diagnostic>) {
    if mode == Mode::Processes {
        return;
    }
    let enforced_anyway =
        |key: &str| key == "timeout" && p.kind.as_ref().is_some_and(|k| k.name == "exec");
    for key in ["memory_limit", "timeout"] {
        let Some(entry) = p.table.get(key) else {
            continue;
        };
        if enforced_anyway(key) {
            continue;
        }
        diags.push(
            Diagnostic::warning(
                format!(
                    "stage `{}` runs in {} mode, where `{key}` is ignored: it applies to worker processes",
                    p.name,
                    mode.name()
                ),
                Some(entry.value.loc.clone()),
            )
            .help(Some(format!("use mode = \"processes\" to have `{key}` enforced"))),
        );
    }
}

/// The checked stages; `None` if a stage has no kind (already reported).
fn build_stages(
    partials: Vec<Partial<'_>>,
    checked: &Checked,
    retries: u32,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<StageDef>> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut stages = Vec::with_capacity(partials.len());
    for (i, p) in partials.into_iter().enumerate() {
        let mode = p.common.mode.unwrap_or_default();
        let (workers, auto) = workers(&p, mode, cpus, diags);
        limits_ignored(&p, mode, diags);
        let kind = p.kind?;
        // A source runs on one thread whatever it is given.
        let (workers, auto) = if kind.is_source() {
            (1, false)
        } else {
            (workers, auto)
        };
        stages.push(StageDef {
            name: p.name,
            inputs: checked.inputs[i].clone(),
            mode,
            workers,
            auto,
            retries: p.common.retries.unwrap_or(retries),
            timeout: p.common.timeout.map(|t| t.get()),
            memory_limit: p.common.memory_limit.map(|m| m.bytes()),
            max_items_per_worker: p.common.max_items_per_worker,
            options: p.options,
            input_types: checked.input_types[i],
            output_types: checked.output_types[i],
            kind,
        });
    }
    Some(stages)
}

/// `(workers, auto)` of a stage as written: `auto` stages start at the CPU
/// count; inline stages run on one thread, with a warning when the file
/// asks for more.
fn workers(p: &Partial<'_>, mode: Mode, cpus: usize, diags: &mut Vec<Diagnostic>) -> (usize, bool) {
    let auto = mode != Mode::Inline && matches!(p.common.workers, None | Some(Workers::Auto));
    let workers = match (mode, p.common.workers.and_then(Workers::count)) {
        (Mode::Inline, Some(w)) if w > 1 => {
            diags.push(
                Diagnostic::warning(
                    format!(
                        "stage `{}` runs inline, on one thread: `workers = {w}` is ignored",
                        p.name
                    ),
                    p.table.value_loc("workers"),
                )
                .help(Some("use mode = \"threads\" to run it on several".into())),
            );
            1
        }
        (Mode::Inline, _) => 1,
        (_, Some(w)) => w,
        (_, None) => cpus,
    };
    (workers, auto)
}

/// Where an option error points: the key's value, or the table's start.
fn option_diag(table: &RawTable, what: &str, e: OptionError) -> Diagnostic {
    let loc = e
        .key
        .as_deref()
        .and_then(|k| table.value_loc(k))
        .unwrap_or_else(|| table.loc.clone());
    Diagnostic::error(format!("{what}: {}", e.message), Some(loc)).help(e.help)
}

/// The entries of `table` whose keys `keep` accepts, as plain TOML.
fn sub_table(table: &RawTable, keep: impl Fn(&str) -> bool) -> toml::Table {
    table
        .entries
        .iter()
        .filter(|e| keep(&e.key))
        .map(|e| (e.key.clone(), e.value.value.clone()))
        .collect()
}
