//! The two traits a kind implements: [`Stage`] (one item in, zero or one
//! out) and [`Source`] (finds items), with what they are told.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StageError;
use crate::item::Item;

/// A stage that transforms one item at a time. Implementations are shared by
/// all workers of the stage, so per-worker scratch lives in thread locals.
pub trait Stage: Send + Sync {
    /// Process one item. `Ok(None)` drops the item on purpose (filtered).
    fn process(&self, item: Item) -> Result<Option<Item>, StageError>;

    /// The folder this stage writes into, if any: scans skip it so that a run
    /// never reads its own outputs back.
    fn output_dir(&self) -> Option<&Path> {
        None
    }

    /// True for sinks that gather every item (a manifest, a contact sheet).
    /// Their `collect` and `finish` run in conveyor's own process whatever
    /// the stage's mode; `process` may run in a worker.
    fn collects(&self) -> bool {
        false
    }

    /// True when `process` only hands the item on (a manifest's rows are
    /// all made by `collect` and `finish`): such a stage never starts worker
    /// processes, whatever its mode, since they would have nothing to do.
    fn passes_through(&self) -> bool {
        false
    }

    /// True when `process` takes an image still in memory a worker process
    /// shared (`Payload::Shared`) and reads its pixels there; other stages
    /// are given a copy in their own process's memory (`Payload::Image`).
    /// Such an item reaches `process` only in a worker, which answers for
    /// it (and so lets the memory be reused) after `process` returns.
    fn reads_shared(&self) -> bool {
        false
    }

    /// Take what is needed from an item that came out of `process`.
    fn collect(&self, _item: &mut Item) {}

    /// Write the gathered result once every item is through. Returns the
    /// files written.
    fn finish(&self, _run: &Finish<'_>) -> Result<Vec<PathBuf>, StageError> {
        Ok(Vec::new())
    }

    /// What `process` would do, without reading pixels or writing files:
    /// for a dry run. Stages that name outputs record them in the item's
    /// `outputs`; the default passes the item on.
    fn plan(&self, item: Item) -> Result<Option<Item>, StageError> {
        Ok(Some(item))
    }

    /// The files `finish` would write, for a dry run.
    fn plan_finish(&self) -> Result<Vec<PathBuf>, StageError> {
        Ok(Vec::new())
    }

    /// True for stages that must see every item on every run (a contact
    /// sheet): items they would get are never skipped as up to date.
    fn needs_every_item(&self) -> bool {
        false
    }

    /// Files the stage's options name and its output depends on (a
    /// watermark's image, a program given as a path). Resume folds their
    /// size and modification time into fingerprints, so replacing one redoes
    /// the items that went through this stage.
    fn depends_on(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// What a gathering stage learns of the whole run when it finishes.
pub struct Finish<'a> {
    /// Items that failed, at any stage.
    pub failures: &'a [Failure],
    /// Items skipped as up to date, with what was known of them when they
    /// were made.
    pub up_to_date: &'a [Kept],
    /// Items that went through this run: each source with the files made of
    /// it on a branch that ended (every writer it reached, whichever branch
    /// the gathering stage is on).
    pub made: &'a [Kept],
}

/// An item skipped as up to date: its source, the files the writers that
/// feed the gathering stage made of it, and the source's facts as the
/// journals kept them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub path: PathBuf,
    pub outputs: Vec<PathBuf>,
    /// `None` when the journals predate facts (an older conveyor wrote them).
    pub facts: Option<SourceFacts>,
}

/// What a manifest says of a source file. Writers keep it in their resume
/// journals, so an item skipped on a later run is described as it was when
/// it was made, not left blank.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFacts {
    /// The path relative to the scan root, `/`-separated.
    #[serde(default)]
    pub rel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `algorithm:hex`, after a `hash` stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl SourceFacts {
    /// The source's facts as an item carries them: the size `scan` found,
    /// the dimensions and format the first decoder saw (never those of a
    /// resized or re-encoded payload).
    pub fn of(item: &Item) -> SourceFacts {
        let m = &item.meta;
        SourceFacts {
            rel: item.rel_str(),
            size: m.size,
            width: m.source_width,
            height: m.source_height,
            format: m.source_format.clone(),
            hash: m
                .hash
                .as_ref()
                .map(|h| format!("{}:{h}", m.hash_algorithm.as_deref().unwrap_or("hash"))),
        }
    }
}

/// An item that failed: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub path: PathBuf,
    pub stage: String,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (stage `{}`)",
            crate::item::escape_path(&self.path),
            self.reason,
            self.stage
        )
    }
}

/// What a source reports for each entry it finds.
pub enum Found {
    Item(Box<Item>),
    /// An entry that could not be read (permission denied, a link loop ...).
    Error {
        path: PathBuf,
        reason: String,
    },
}

/// Facts a source needs from the rest of the graph.
#[derive(Debug, Default, Clone)]
pub struct SourceContext {
    /// Folders written by this run, never to be scanned.
    pub skip_dirs: Vec<PathBuf>,
    /// Where a source records the identity of every file it finds, so that
    /// no writer replaces one of them under another name.
    pub inputs: crate::inputs::InputSet,
    /// Files this run must leave alone for now (`conveyor watch`: files
    /// still being written); none when `None`.
    pub hold: Option<Hold>,
}

impl SourceContext {
    /// Whether the file at `path` (as the source names it), with `meta`,
    /// is left for a later run rather than made an item now.
    pub fn holds(&self, path: &Path, meta: &std::fs::Metadata) -> bool {
        self.hold.as_ref().is_some_and(|h| (h.0)(path, meta))
    }
}

/// A rule that holds files back from a run: true for a file that is not
/// ready yet (still being written). A source asks it before a file becomes
/// an item, so a held file is neither processed, counted nor reported.
#[derive(Clone)]
pub struct Hold(pub std::sync::Arc<HoldFn>);

/// The rule of a [`Hold`]: the file's path (as the source names it) and
/// its metadata in, "not yet" out.
pub type HoldFn = dyn Fn(&Path, &std::fs::Metadata) -> bool + Send + Sync;

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold(..)")
    }
}

/// A stage that produces items (e.g. `scan`).
pub trait Source: Send + Sync {
    /// Find items and hand each to `emit`, in a stable order. Stops early when
    /// `emit` returns false (the run is stopping).
    fn produce(&self, ctx: &SourceContext, emit: &mut dyn FnMut(Found) -> bool);

    /// The files this source reads, as rules the output guard can apply
    /// to any path (so outputs never land on a file it found or will find).
    fn scopes(&self) -> Vec<crate::inputs::Scope> {
        Vec::new()
    }
}
