//! The keys of a pipeline file that are not a kind's own options: the
//! `[pipeline]` table and the keys every `[[stage]]` has, with their types
//! (`Mode`, `OnError`, `Workers`) and bounds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::stage::{OptionError, StageOptions, check_options, parse_options};
use crate::units;

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
    pub timeout: Option<units::Duration>,
    /// Per-worker memory limit (processes mode), e.g. "1GiB"; at most
    /// "1PiB".
    pub memory_limit: Option<units::Size>,
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
        if self.input.is_some() && self.inputs.is_some() {
            errors.push(OptionError::at(
                "inputs",
                "give either `input` or `inputs`, not both",
            ));
        }
        errors
    }
}

/// The common keys that hold a duration or a size as text.
const UNIT_KEYS: [&str; 2] = ["timeout", "memory_limit"];

/// Check the common keys of one stage (`table` holds only those): the keys
/// that could be read, and the errors of the others. Keys that are wrong
/// are left at their defaults, so that later checks (kind, graph) still run
/// and report their own errors.
pub(super) fn check_common(table: &toml::Table) -> (CommonKeys, Vec<OptionError>) {
    // Durations and sizes written as text are parsed here, once, and a wrong
    // one is reported in the unit's own words; anything else (a number ...)
    // goes to serde, which says a string is expected.
    let (texts, rest): (toml::Table, toml::Table) = table
        .clone()
        .into_iter()
        .partition(|(k, v)| UNIT_KEYS.contains(&k.as_str()) && v.is_str());
    let mut errors = check_options::<CommonKeys>(&rest);
    let readable: toml::Table = rest
        .into_iter()
        .filter(|(k, _)| !errors.iter().any(|e| e.key.as_deref() == Some(k.as_str())))
        .collect();
    let mut common: CommonKeys = parse_options(&readable).unwrap_or_default();
    for (key, value) in &texts {
        let text = value.as_str().unwrap_or_default();
        let parsed = if key == "timeout" {
            text.parse().map(|d| common.timeout = Some(d))
        } else {
            text.parse().map(|s| common.memory_limit = Some(s))
        };
        if let Err(e) = parsed {
            errors.push(OptionError::at(key, e.to_string()));
        }
    }
    (common, errors)
}
