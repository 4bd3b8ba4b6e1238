//! What a run did: per-stage counters updated by the workers, how each item
//! ended, failures, and the summary of the whole run, all in plain fields
//! (the command line prints them; this module knows no config types). Paths are shown in conveyor's one
//! escaped form (`crate::item::escape_path`), so a name that is not UTF-8
//! reads as `x\xff.png`, never as a lookalike of another.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an item ended: the `status` of its report line (`ok`, `failed`,
/// `filtered`, `up_to_date`, `cancelled`) and the word the summaries use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Ok,
    Failed,
    Filtered,
    UpToDate,
    Cancelled,
}

impl ItemStatus {
    /// When copies of one item (fan-out) end differently, the higher rank
    /// is how the item ended: a failure anywhere is the item's failure.
    pub fn rank(self) -> u8 {
        match self {
            ItemStatus::Ok => 0,
            ItemStatus::UpToDate => 1,
            ItemStatus::Filtered => 2,
            ItemStatus::Cancelled => 3,
            ItemStatus::Failed => 4,
        }
    }

    /// The word summaries count it under.
    pub fn word(self) -> &'static str {
        match self {
            ItemStatus::Ok => "ok",
            ItemStatus::Failed => "failed",
            ItemStatus::Filtered => "filtered",
            ItemStatus::UpToDate => "up to date",
            ItemStatus::Cancelled => "not processed",
        }
    }
}

pub use crate::stage::Failure;

/// How a stage's work was spread, as the summary shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageMode {
    /// A source: it finds items and has no workers of its own.
    Source,
    /// A mode (`inline`, `threads`, `processes`) with a fixed worker count.
    Fixed(&'static str),
    /// A mode with `workers = "auto"`: its workers are the run's job
    /// budget, shared with the other auto stages.
    Auto(&'static str),
}

impl StageMode {
    /// How a stage runs, in the same words wherever it is shown (the
    /// summary, `conveyor graph`): `source`, `threads x4`, `threads auto/8`.
    pub fn describe(self, workers: usize) -> String {
        match self {
            StageMode::Source => "source".into(),
            StageMode::Fixed(m) => format!("{m} x{workers}"),
            StageMode::Auto(m) => format!("{m} auto/{workers}"),
        }
    }
}

/// Live counters of one stage.
#[derive(Debug)]
pub struct StageStats {
    pub name: String,
    pub kind: &'static str,
    pub mode: StageMode,
    pub workers: usize,
    pub items_in: AtomicU64,
    pub items_out: AtomicU64,
    pub failed: AtomicU64,
    pub filtered: AtomicU64,
    /// Items found up to date (on a source).
    pub up_to_date: AtomicU64,
    pub busy_nanos: AtomicU64,
    /// CPU time spent on items (their threads, split work, child commands).
    pub cpu_nanos: AtomicU64,
    /// Items being processed right now (on a chain's first stage).
    pub in_flight: std::sync::atomic::AtomicI64,
}

impl StageStats {
    /// Counters at zero for the stage `name` of kind `kind`.
    pub fn new(name: &str, kind: &'static str, mode: StageMode, workers: usize) -> StageStats {
        StageStats {
            name: name.to_string(),
            kind,
            mode,
            workers,
            items_in: AtomicU64::new(0),
            items_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            up_to_date: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            cpu_nanos: AtomicU64::new(0),
            in_flight: std::sync::atomic::AtomicI64::new(0),
        }
    }

    pub fn add_busy(&self, d: Duration) {
        self.busy_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn add_cpu(&self, d: Duration) {
        self.cpu_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> StageSummary {
        StageSummary {
            name: self.name.clone(),
            kind: self.kind,
            mode: self.mode,
            workers: self.workers,
            items_in: self.items_in.load(Ordering::Relaxed),
            items_out: self.items_out.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
            cpu: Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Final counters of one stage.
#[derive(Debug, Clone)]
pub struct StageSummary {
    pub name: String,
    pub kind: &'static str,
    pub mode: StageMode,
    pub workers: usize,
    pub items_in: u64,
    pub items_out: u64,
    pub failed: u64,
    pub filtered: u64,
    /// Time spent processing items, summed over workers.
    pub busy: Duration,
    /// CPU time those items took; much less than `busy` means the stage
    /// waits (on a command, on the disk) more than it computes.
    pub cpu: Duration,
}

impl StageSummary {
    /// Items per second the stage sustained while busy, over all its workers.
    pub fn rate(&self) -> Option<f64> {
        let busy = self.busy.as_secs_f64();
        (busy > 0.0 && self.items_in > 0).then(|| self.items_in as f64 * self.workers as f64 / busy)
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub pipeline: String,
    pub stages: Vec<StageSummary>,
    /// Entries found by the sources (files, and entries that could not be read).
    pub scanned: u64,
    pub ok: u64,
    /// Items whose outputs were up to date, so nothing was done for them.
    pub up_to_date: u64,
    pub failed: u64,
    pub filtered: u64,
    /// Items dropped because the run was stopping.
    pub cancelled: u64,
    pub interrupted: bool,
    /// `on_error = "fail"` stopped the run.
    pub stopped_on_error: bool,
    pub failures: Vec<Failure>,
    /// Stages that stopped for good, and why.
    pub stage_errors: Vec<String>,
    /// Stages run in worker processes (consecutive ones share workers), with
    /// the number of workers started for them, replacements included.
    pub process_chains: Vec<(Vec<String>, u64)>,
    /// Files written at the end by gathering stages (manifests, sheets).
    pub written: Vec<(String, PathBuf)>,
    /// Nothing was written: the run only planned.
    pub dry_run: bool,
    pub elapsed: Duration,
}
