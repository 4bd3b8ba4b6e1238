//! Pipeline files: from TOML text (plus command-line overrides) to a checked
//! [`Pipeline`], collecting every problem with its place before anything runs.
//!
//! The steps are separate types: [`raw::RawDoc`] (located TOML values),
//! then [`Pipeline`] (typed, validated, with a checked stage graph). The
//! executor builds its running graph from a `Pipeline`.
//!
//! The files, in the order a pipeline goes through them: `raw` (TOML with
//! places), `overrides` (`--set`, `--mode`), `keys` (the keys that are not a
//! kind's own), `validate` (the checks, in order), `graph` (inputs, cycles,
//! payload types), `safety` (files read and written); `diag` words and
//! places every problem.

pub mod diag;
pub mod graph;
mod keys;
mod overrides;
mod preflight;
pub mod raw;
mod safety;
mod validate;

use std::path::Path;
use std::time::Duration;

pub use diag::{Diagnostic, Diagnostics, Loc, Severity, SourceFile, Sources, Style};
pub use keys::{CommonKeys, MAX_RETRIES, MAX_WORKERS, Mode, OnError, PipelineKeys, Workers};
pub use overrides::Override;

use crate::item::Types;
use crate::stage::KindSpec;
use crate::stages::Registry;

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

/// A loaded pipeline and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub pipeline: Pipeline,
    pub warnings: Diagnostics,
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
        overrides::apply_overrides(&mut raw, overrides, registry, &mut sources, &mut diags);
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into());
        validate::validate(&raw, &stem, registry, &sources, &mut diags)
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

/// The property names of an options struct's JSON Schema: the keys an
/// options table may have. The one place they are read from a schema, for
/// `[pipeline]`, the common stage keys and every kind's options.
pub fn property_names(schema: &schemars::Schema) -> Vec<String> {
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
