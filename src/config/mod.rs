//! Pipeline files: from TOML text (plus command-line overrides) to a checked
//! [`Pipeline`], collecting every problem with its place before anything runs.
//!
//! The steps are separate types: [`raw::RawDoc`] (located TOML values),
//! then [`Pipeline`] (typed, validated, with a checked stage graph). The
//! executor builds its running graph from a `Pipeline`.

pub mod diag;
pub mod raw;
mod safety;
pub mod units;

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use diag::{Diagnostic, Diagnostics, Loc, Severity, SourceFile, Sources, Style};
use raw::{RawDoc, RawEntry, RawTable, RawValue};

use crate::graph;
use crate::item::Types;
use crate::stage::{KindSpec, OptionError, StageOptions, check_options};
use crate::stages::Registry;

/// How a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// On the stage's own single thread, items in order.
    Inline,
    /// On `workers` threads.
    #[default]
    Threads,
    /// In `workers` child processes, isolated from crashes.
    Processes,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::Threads => "threads",
            Mode::Processes => "processes",
        }
    }
}

/// What a failed item does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Record the item as failed and go on.
    #[default]
    Skip,
    /// Stop the run at the first failure.
    Fail,
}

/// Keys of the `[pipeline]` table.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineKeys {
    /// Name of the pipeline; default: the file's stem.
    pub name: Option<String>,
    pub on_error: OnError,
    /// Default number of retries per item, for every stage, 0 to 100.
    #[schemars(range(min = 0, max = MAX_RETRIES))]
    pub retries: u32,
    /// Capacity, in items, of each queue between stages, 1 to 10000
    /// (default 64; queues that carry decoded images default to twice the
    /// job count, as each image may weigh megabytes).
    #[schemars(range(min = 1, max = 10_000))]
    pub queue: Option<usize>,
}

impl Default for PipelineKeys {
    fn default() -> Self {
        PipelineKeys {
            name: None,
            on_error: OnError::Skip,
            retries: 0,
            queue: None,
        }
    }
}

/// The most retries an item may be given.
pub const MAX_RETRIES: u32 = 100;

/// The most workers a stage may have, and the largest `--jobs`: far more
/// than any machine has cores, and few enough that their stacks and queues
/// fit in memory.
pub const MAX_WORKERS: usize = 1024;

/// Bounds of `[pipeline]` keys are declared on the fields (schema ranges,
/// enforced by `check_options`).
impl StageOptions for PipelineKeys {}

/// `workers`: a count, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Workers {
    Count(usize),
    #[serde(serialize_with = "auto_word")]
    Auto,
}

fn auto_word<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("auto")
}

impl Workers {
    pub fn count(self) -> Option<usize> {
        match self {
            Workers::Count(n) => Some(n),
            Workers::Auto => None,
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Workers, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Workers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of workers or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Workers, E> {
                usize::try_from(v)
                    .map(Workers::Count)
                    .map_err(|_| E::custom("too many workers"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Workers, E> {
                usize::try_from(v)
                    .map(Workers::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Workers, E> {
                if v == "auto" {
                    Ok(Workers::Auto)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Workers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Workers".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A number of workers, or \"auto\".",
            "oneOf": [{"type": "integer", "minimum": 1, "maximum": MAX_WORKERS}, {"const": "auto"}]
        })
    }
}

/// Keys every stage has, whatever its kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CommonKeys {
    /// Unique name of the stage, `[a-z0-9_-]+`.
    pub name: Option<String>,
    /// Stage kind (see `conveyor stages`).
    pub kind: Option<String>,
    /// The stage this one reads from; default: the stage above it.
    pub input: Option<String>,
    /// Several stages this one reads from (fan-in).
    pub inputs: Option<Vec<String>>,
    /// inline | threads | processes.
    pub mode: Option<Mode>,
    /// Worker threads or processes (1 to 1024), or "auto" (the default;
    /// inline: 1): the stage shares the run's `--jobs` budget with the
    /// other auto stages, so the cores go wherever the work is.
    pub workers: Option<Workers>,
    /// Retries per failed item, 0 to 100; default: the pipeline's
    /// `retries`.
    #[schemars(range(min = 0, max = MAX_RETRIES))]
    pub retries: Option<u32>,
    /// Per-item time limit (processes mode), e.g. "30s", "2m"; at most
    /// "7d".
    pub timeout: Option<String>,
    /// Per-worker memory limit (processes mode), e.g. "1GiB"; at most
    /// "1PiB".
    pub memory_limit: Option<String>,
    /// Replace a worker after this many items (processes mode), 1 to
    /// 1000000000.
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub max_items_per_worker: Option<u64>,
}

impl StageOptions for CommonKeys {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name
            && (name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
        {
            errors.push(OptionError::at(
                "name",
                format!("stage name `{name}` may only use a-z, 0-9, `_` and `-`"),
            ));
        }
        match self.workers {
            Some(Workers::Count(0)) => {
                errors.push(OptionError::at("workers", "`workers` must be at least 1"));
            }
            Some(Workers::Count(n)) if n > MAX_WORKERS => errors.push(OptionError::at(
                "workers",
                format!("`workers` must be from 1 to {MAX_WORKERS} (or \"auto\"), not {n}"),
            )),
            _ => {}
        }
        if let Some(t) = &self.timeout
            && let Err(e) = units::parse_duration(t)
        {
            errors.push(OptionError::at("timeout", e));
        }
        if let Some(m) = &self.memory_limit
            && let Err(e) = units::parse_size(m)
        {
            errors.push(OptionError::at("memory_limit", e));
        }
        if self.input.is_some() && self.inputs.is_some() {
            errors.push(OptionError::at(
                "inputs",
                "give either `input` or `inputs`, not both",
            ));
        }
        errors
    }
}

/// A checked stage.
#[derive(Debug, Clone)]
pub struct StageDef {
    pub name: String,
    pub kind: KindSpec,
    /// Indices (into `Pipeline::stages`) of the stages this one reads from.
    pub inputs: Vec<usize>,
    pub mode: Mode,
    /// Worker count; for `auto` stages, the CPU count until the run sets
    /// it to its `--jobs` budget.
    pub workers: usize,
    /// `workers = "auto"`: shares the run's job budget with other such stages.
    pub auto: bool,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub memory_limit: Option<u64>,
    pub max_items_per_worker: Option<u64>,
    /// The kind's own options, checked against its options struct.
    pub options: toml::Table,
    /// Payload types arriving on the stage's input edges.
    pub input_types: Types,
    /// Payload types the stage gives downstream.
    pub output_types: Types,
}

/// A checked pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub on_error: OnError,
    pub retries: u32,
    /// Queue capacity set in the file, if any.
    pub queue: Option<usize>,
    pub stages: Vec<StageDef>,
}

impl Pipeline {
    /// Indices of the stages that read from stage `i`.
    pub fn consumers(&self, i: usize) -> Vec<usize> {
        (0..self.stages.len())
            .filter(|&j| self.stages[j].inputs.contains(&i))
            .collect()
    }
}

/// A command-line change to the pipeline: `--set STAGE.KEY=VALUE` or
/// `--mode STAGE=MODE` (or `--mode MODE` for every stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    Set(String),
    Mode(String),
}

/// A loaded pipeline and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub pipeline: Pipeline,
    pub warnings: Diagnostics,
}

/// The closest candidate to `word`, if one is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= limit && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// Load and check a pipeline file with overrides.
pub fn load(
    path: &Path,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Loaded, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&path.display().to_string(), &text, overrides, registry),
        Err(e) => Err(Diagnostics {
            sources: Sources::default(),
            items: vec![Diagnostic::error(
                format!("cannot read pipeline file {}: {e}", path.display()),
                None,
            )],
        }),
    }
}

/// Load and check pipeline text; `name` is the file name shown in messages.
pub fn load_str(
    name: &str,
    text: &str,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Loaded, Diagnostics> {
    let mut sources = Sources::default();
    let file = sources.add(SourceFile {
        name: name.to_string(),
        text: text.to_string(),
        is_file: true,
    });
    let mut diags = Vec::new();
    let raw = raw::parse(text, file, &mut diags);
    let result = raw.and_then(|mut raw| {
        apply_overrides(&mut raw, overrides, registry, &mut sources, &mut diags);
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into());
        validate(&raw, &stem, registry, &sources, &mut diags)
    });
    let mut all = Diagnostics {
        sources,
        items: diags,
    };
    all.sort();
    match result {
        Some(pipeline) if !all.has_errors() => Ok(Loaded {
            pipeline,
            warnings: all,
        }),
        _ => Err(all),
    }
}

fn apply_overrides(
    raw: &mut RawDoc,
    overrides: &[Override],
    registry: &Registry,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) {
    for ov in overrides {
        let (flag, text) = match ov {
            Override::Set(t) => ("--set", t),
            Override::Mode(t) => ("--mode", t),
        };
        let source = sources.add(SourceFile {
            name: flag.to_string(),
            text: text.clone(),
            is_file: false,
        });
        let loc = |a: usize, b: usize| Loc { source, span: a..b };
        let whole = loc(0, text.len());
        // (stage or None for all, key, key span, value, value span)
        let (stage, key, key_span, value, value_span) = match ov {
            Override::Set(_) => {
                let Some(eq) = text.find('=') else {
                    diags.push(
                        Diagnostic::error(format!("`--set {text}` has no `=`"), Some(whole)).help(
                            Some(
                                "write `--set STAGE.KEY=VALUE`, e.g. `--set thumb.width=320`"
                                    .into(),
                            ),
                        ),
                    );
                    continue;
                };
                let Some(dot) = text[..eq].find('.') else {
                    diags.push(
                        Diagnostic::error(
                            format!("`--set {text}` does not name a stage"),
                            Some(whole),
                        )
                        .help(Some(
                            "write `--set STAGE.KEY=VALUE`, e.g. `--set thumb.width=320`".into(),
                        )),
                    );
                    continue;
                };
                let raw_value = &text[eq + 1..];
                // TOML syntax when it parses (`320`, `true`, `"x"`, `[..]`),
                // else the text as a string, so `--set save.dir=out/x` works.
                let value = raw_value
                    .parse::<toml::Value>()
                    .unwrap_or_else(|_| toml::Value::String(raw_value.to_string()));
                (
                    Some((text[..dot].to_string(), 0..dot)),
                    text[dot + 1..eq].to_string(),
                    dot + 1..eq,
                    value,
                    eq + 1..text.len(),
                )
            }
            Override::Mode(_) => match text.split_once('=') {
                Some((stage, mode)) => (
                    Some((stage.to_string(), 0..stage.len())),
                    "mode".to_string(),
                    0..stage.len(),
                    toml::Value::String(mode.to_string()),
                    stage.len() + 1..text.len(),
                ),
                None => (
                    None,
                    "mode".to_string(),
                    0..0,
                    toml::Value::String(text.clone()),
                    0..text.len(),
                ),
            },
        };
        let entry = RawEntry {
            key: key.clone(),
            key_loc: loc(key_span.start, key_span.end),
            value: RawValue {
                value,
                loc: loc(value_span.start, value_span.end),
            },
        };
        match stage {
            Some((name, span)) => {
                let found = raw
                    .stages
                    .iter_mut()
                    .find(|s| stage_name(s).as_deref() == Some(name.as_str()));
                match found {
                    Some(table) => table.set(entry),
                    None => {
                        let names: Vec<String> = raw.stages.iter().filter_map(stage_name).collect();
                        diags.push(
                            Diagnostic::error(
                                format!("`{flag}` names no stage `{name}`"),
                                Some(loc(span.start, span.end)),
                            )
                            .label("no such stage")
                            .help(did_you_mean(&name, names.iter().map(String::as_str))),
                        );
                    }
                }
            }
            None => {
                for table in &mut raw.stages {
                    let is_source = table
                        .get("kind")
                        .and_then(|k| k.value.value.as_str())
                        .and_then(|k| registry.get(k))
                        .is_some_and(KindSpec::is_source);
                    if !is_source {
                        table.set(entry.clone());
                    }
                }
            }
        }
    }
}

fn stage_name(t: &RawTable) -> Option<String> {
    t.get("name")
        .and_then(|e| e.value.value.as_str())
        .map(str::to_string)
}

/// Where an option error points: the key's value, or the table's start.
fn option_diag(table: &RawTable, what: &str, e: OptionError) -> Diagnostic {
    let entry = e.key.as_deref().and_then(|k| table.get(k));
    let loc = entry
        .map(|en| en.value.loc.clone())
        .unwrap_or_else(|| table.loc.clone());
    Diagnostic::error(format!("{what}: {}", e.message), Some(loc)).help(e.help)
}

fn sub_table(table: &RawTable, keep: impl Fn(&str) -> bool) -> toml::Table {
    table
        .entries
        .iter()
        .filter(|e| keep(&e.key))
        .map(|e| (e.key.clone(), e.value.value.clone()))
        .collect()
}

/// A stage as far as it could be checked before the graph.
struct Partial<'a> {
    name: String,
    table: &'a RawTable,
    kind: Option<KindSpec>,
    common: CommonKeys,
    options: toml::Table,
}

fn validate(
    raw: &RawDoc,
    stem: &str,
    registry: &Registry,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<Pipeline> {
    // [pipeline]
    let mut keys = PipelineKeys::default();
    if let Some(table) = &raw.pipeline {
        let known = property_names(schemars::schema_for!(PipelineKeys));
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
        if errors.is_empty() {
            keys = crate::stage::parse_options(&t).unwrap_or_default();
        }
        diags.extend(
            errors
                .into_iter()
                .map(|e| option_diag(table, "[pipeline]", e)),
        );
    }
    if raw.stages.is_empty() {
        diags.push(
            Diagnostic::error("the pipeline has no stages", None).help(Some(
                "add `[[stage]]` sections; `conveyor stages` lists the kinds".into(),
            )),
        );
        return None;
    }

    // [[stage]] tables, each on its own.
    let common_names = property_names(schemars::schema_for!(CommonKeys));
    let mut partials: Vec<Partial<'_>> = Vec::new();
    for (idx, table) in raw.stages.iter().enumerate() {
        let common_t = sub_table(table, |k| common_names.iter().any(|n| n == k));
        let label = stage_name(table)
            .map_or_else(|| format!("stage #{}", idx + 1), |n| format!("stage `{n}`"));
        let errors = check_options::<CommonKeys>(&common_t);
        let common: CommonKeys = if errors.is_empty() {
            crate::stage::parse_options(&common_t).unwrap_or_default()
        } else {
            // Keep the keys that can be read, so that later checks (kind,
            // graph) still run and report their own errors.
            let readable: toml::Table = common_t
                .iter()
                .filter(|(k, _)| !errors.iter().any(|e| e.key.as_deref() == Some(k.as_str())))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            crate::stage::parse_options(&readable).unwrap_or_default()
        };
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
        let kind = match &common.kind {
            None => {
                diags.push(
                    Diagnostic::error(format!("{label} has no `kind`"), Some(table.loc.clone()))
                        .help(Some(format!("kinds: {}", registry.names().join(", ")))),
                );
                None
            }
            Some(k) => match registry.get(k) {
                Some(spec) => Some(spec.clone()),
                None => {
                    let loc = table.get("kind").map(|e| e.value.loc.clone());
                    diags.push(
                        Diagnostic::error(format!("unknown stage kind `{k}` in {label}"), loc)
                            .label("unknown kind")
                            .help(did_you_mean(k, registry.names()).or_else(|| {
                                Some(format!("kinds: {}", registry.names().join(", ")))
                            })),
                    );
                    None
                }
            },
        };
        let mut options = toml::Table::new();
        if let Some(spec) = &kind {
            let own = spec.option_names();
            for e in &table.entries {
                if common_names.contains(&e.key) {
                    continue;
                }
                if own.contains(&e.key) {
                    options.insert(e.key.clone(), e.value.value.clone());
                } else {
                    let candidates = own.iter().chain(common_names.iter()).map(String::as_str);
                    diags.push(
                        Diagnostic::error(
                            format!("unknown key `{}` in {label} (kind `{}`)", e.key, spec.name),
                            Some(e.key_loc.clone()),
                        )
                        .label("unknown key")
                        .help(did_you_mean(&e.key, candidates)),
                    );
                }
            }
            let errors = (spec.check)(&options);
            diags.extend(errors.into_iter().map(|e| option_diag(table, &label, e)));
        }
        partials.push(Partial {
            name,
            table,
            kind,
            common,
            options,
        });
    }

    // Duplicate names.
    for (i, p) in partials.iter().enumerate() {
        if let Some(first) = partials[..i]
            .iter()
            .find(|q| q.name == p.name && p.common.name.is_some())
        {
            let loc = p.table.get("name").map(|e| e.value.loc.clone());
            let first_line = first
                .table
                .get("name")
                .map(|e| e.value.loc.clone())
                .map(|l| format!(" (first defined at line {})", sources.line_col(&l).0))
                .unwrap_or_default();
            diags.push(Diagnostic::error(
                format!("duplicate stage name `{}`{first_line}", p.name),
                loc,
            ));
        }
    }

    // The graph: inputs, cycles, payload types.
    let nodes: Vec<graph::Node<'_>> = partials
        .iter()
        .map(|p| graph::Node {
            name: &p.name,
            kind: p.kind.as_ref(),
            input: p
                .common
                .input
                .as_ref()
                .map(|i| vec![(i.clone(), p.table.get("input").map(|e| e.value.loc.clone()))])
                .or_else(|| {
                    p.common.inputs.as_ref().map(|v| {
                        let loc = p.table.get("inputs").map(|e| e.value.loc.clone());
                        v.iter().map(|i| (i.clone(), loc.clone())).collect()
                    })
                }),
            loc: p.table.loc.clone(),
            kind_loc: p.table.get("kind").map(|e| e.value.loc.clone()),
        })
        .collect();
    let checked = graph::check(&nodes, diags);

    if diags.iter().any(Diagnostic::is_error) {
        return None;
    }
    let checked = checked?;
    let sites: Vec<safety::Site<'_>> = partials
        .iter()
        .map(|p| safety::Site {
            name: &p.name,
            table: p.table,
            paths: p
                .kind
                .as_ref()
                .map_or(crate::stage::StagePaths::None, |k| (k.paths)(&p.options)),
        })
        .collect();
    safety::check(&sites, &checked.inputs, sources, diags);
    drop(sites);
    if diags.iter().any(Diagnostic::is_error) {
        return None;
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut stages = Vec::new();
    for (i, p) in partials.into_iter().enumerate() {
        let kind = p.kind?;
        let mode = p.common.mode.unwrap_or_default();
        let auto = mode != Mode::Inline && matches!(p.common.workers, None | Some(Workers::Auto));
        let workers = match (mode, p.common.workers.and_then(Workers::count)) {
            (Mode::Inline, Some(w)) if w > 1 => {
                let loc = p.table.get("workers").map(|e| e.value.loc.clone());
                diags.push(
                    Diagnostic::warning(
                        format!(
                            "stage `{}` runs inline, on one thread: `workers = {w}` is ignored",
                            p.name
                        ),
                        loc,
                    )
                    .help(Some("use mode = \"threads\" to run it on several".into())),
                );
                1
            }
            (Mode::Inline, _) => 1,
            (_, Some(w)) => w,
            (_, None) => cpus,
        };
        let workers = if kind.is_source() { 1 } else { workers };
        let auto = auto && !kind.is_source();
        stages.push(StageDef {
            name: p.name,
            inputs: checked.inputs[i].clone(),
            mode,
            workers,
            auto,
            retries: p.common.retries.unwrap_or(keys.retries),
            timeout: p
                .common
                .timeout
                .as_deref()
                .and_then(|t| units::parse_duration(t).ok()),
            memory_limit: p
                .common
                .memory_limit
                .as_deref()
                .and_then(|m| units::parse_size(m).ok()),
            max_items_per_worker: p.common.max_items_per_worker,
            options: p.options,
            input_types: checked.input_types[i],
            output_types: checked.output_types[i],
            kind,
        });
    }
    Some(Pipeline {
        name: keys.name.unwrap_or_else(|| stem.to_string()),
        on_error: keys.on_error,
        retries: keys.retries,
        queue: keys.queue,
        stages,
    })
}

/// The property names of an options struct's JSON Schema.
pub fn property_names(schema: schemars::Schema) -> Vec<String> {
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
