//! What conveyor knows about a kind ([`KindSpec`]): its options, payload
//! types, the paths its options name, and how to build a stage of it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::{KindError, OptionError, Source, Stage};
use crate::item::{PayloadType, Types};

/// A constructed stage, ready to run.
pub enum Built {
    Source(Arc<dyn Source>),
    Stage(Arc<dyn Stage>),
}

/// What a kind gives downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Fixed(PayloadType),
    /// Passes items through with whatever payload they came with.
    SameAsInput,
}

/// Facts about the stage being built that are not among its kind's options.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The stage's name.
    pub stage: String,
    /// The stage's per-item `timeout`, for kinds that enforce it themselves
    /// (e.g. `exec` ends its command) in every mode.
    pub timeout: Option<std::time::Duration>,
    /// The run's output guard: every stage that writes files places them
    /// through it (it knows the run's inputs and every claimed output).
    pub output: crate::output::Guard,
    /// True when the stage is built inside a worker process (fault
    /// injection refuses to harm conveyor's own process).
    pub in_worker: bool,
}

/// Everything conveyor knows about one stage kind.
#[derive(Clone)]
pub struct KindSpec {
    pub name: &'static str,
    /// One line for `conveyor stages`.
    pub summary: &'static str,
    /// Payloads it takes; empty for a source.
    pub accepts: Types,
    pub output: Output,
    /// JSON Schema of its options (names, types, defaults, docs).
    pub schema: fn() -> schemars::Schema,
    /// Per-key and whole-table checks of its options.
    pub check: fn(&toml::Table) -> Vec<OptionError>,
    /// What its options mean for its output: the parsed options with every
    /// default filled in (so writing a default out changes nothing), leaving
    /// out options that only decide which files are in scope. Resume
    /// fingerprints are made of it.
    pub meaning: fn(&toml::Table) -> serde_json::Value,
    /// Bumped when the kind's output bytes change for the same options (a
    /// new algorithm), so resume redoes what it must, and only that.
    pub revision: u32,
    /// Construct it from checked options.
    pub build: fn(&toml::Table, &BuildContext) -> Result<Built, KindError>,
    /// The paths its options name, for the checks made before any work
    /// (a writer into a scanned folder, two writers on one file ...).
    pub paths: fn(&toml::Table) -> StagePaths,
}

/// The files a stage's options name: what the checker needs to keep
/// writers off a run's inputs before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagePaths {
    /// Neither reads nor writes files of its own.
    None,
    /// Reads the files its scopes select (a scan: its root, or each path
    /// it was given).
    Reads(Vec<crate::inputs::ScopeSpec>),
    /// Writes files under `dir`, named by the template `filename`.
    Writes { dir: PathBuf, filename: String },
    /// Writes one file at the end of the run.
    Gathers(PathBuf),
    /// Reads a file its option `key` names (a watermark image), which must
    /// exist before the run starts.
    Needs { key: &'static str, file: PathBuf },
}

/// For kinds whose options name no files.
pub fn no_paths(_: &toml::Table) -> StagePaths {
    StagePaths::None
}

impl KindSpec {
    pub fn is_source(&self) -> bool {
        self.accepts.is_empty()
    }

    /// What this kind gives when fed `input`.
    pub fn output_types(&self, input: Types) -> Types {
        match self.output {
            Output::Fixed(t) => Types::of(&[t]),
            Output::SameAsInput => input,
        }
    }
}

impl fmt::Debug for KindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindSpec")
            .field("name", &self.name)
            .finish()
    }
}
