//! What a run did: per-stage counters updated by the workers, failures, and
//! the summary table printed at the end. Paths are shown in conveyor's one
//! escaped form (`crate::item::escape_path`), so a name that is not UTF-8
//! reads as `x\xff.png`, never as a lookalike of another.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::StageDef;

/// How an item ended, when it did not end well. Higher ranks win when copies
/// of one item (fan-out) end differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    Filtered,
    Cancelled,
    Failed,
}

impl ItemStatus {
    pub fn rank(self) -> u8 {
        match self {
            ItemStatus::Filtered => 0,
            ItemStatus::Cancelled => 1,
            ItemStatus::Failed => 2,
        }
    }
}

pub use crate::stage::Failure;

/// Live counters of one stage.
#[derive(Debug)]
pub struct StageStats {
    pub name: String,
    pub kind: &'static str,
    pub mode: String,
    pub workers: usize,
    pub items_in: AtomicU64,
    pub items_out: AtomicU64,
    pub failed: AtomicU64,
    pub filtered: AtomicU64,
    pub busy_nanos: AtomicU64,
    /// Items being processed right now (on a chain's first stage).
    pub in_flight: std::sync::atomic::AtomicI64,
}

impl StageStats {
    pub fn new(def: &StageDef) -> StageStats {
        StageStats {
            name: def.name.clone(),
            kind: def.kind.name,
            mode: if def.kind.is_source() {
                "source".into()
            } else {
                def.mode.name().into()
            },
            workers: def.workers,
            items_in: AtomicU64::new(0),
            items_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            in_flight: std::sync::atomic::AtomicI64::new(0),
        }
    }

    pub fn add_busy(&self, d: Duration) {
        self.busy_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> StageSummary {
        StageSummary {
            name: self.name.clone(),
            kind: self.kind,
            mode: self.mode.clone(),
            workers: self.workers,
            items_in: self.items_in.load(Ordering::Relaxed),
            items_out: self.items_out.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Final counters of one stage.
#[derive(Debug, Clone)]
pub struct StageSummary {
    pub name: String,
    pub kind: &'static str,
    pub mode: String,
    pub workers: usize,
    pub items_in: u64,
    pub items_out: u64,
    pub failed: u64,
    pub filtered: u64,
    /// Time spent processing items, summed over workers.
    pub busy: Duration,
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

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl RunSummary {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let wall = self.elapsed.as_secs_f64();
        let mut rows: Vec<[String; 9]> = vec![[
            "stage".into(),
            "kind".into(),
            "mode".into(),
            "in".into(),
            "out".into(),
            "failed".into(),
            "busy".into(),
            "cores".into(),
            "items/s".into(),
        ]];
        for s in &self.stages {
            let mode = if s.mode == "source" {
                s.mode.clone()
            } else if let Some(m) = s.mode.strip_suffix(" auto") {
                format!("{m} auto/{}", s.workers)
            } else {
                format!("{} x{}", s.mode, s.workers)
            };
            let items_in = if s.mode == "source" {
                "-".into()
            } else {
                s.items_in.to_string()
            };
            rows.push([
                s.name.clone(),
                s.kind.to_string(),
                mode,
                items_in,
                s.items_out.to_string(),
                s.failed.to_string(),
                secs(s.busy),
                // How many workers were busy on average: where the cores went.
                if wall > 0.0 {
                    format!("{:.2}", s.busy.as_secs_f64() / wall)
                } else {
                    "-".into()
                },
                s.rate().map_or("-".into(), |r| format!("{r:.1}")),
            ]);
        }
        let mut widths = [0usize; 9];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (c, (cell, w)) in row.iter().zip(widths).enumerate() {
                if c < 3 {
                    let _ = write!(line, "{cell:<w$}  ");
                } else {
                    let _ = write!(line, "{cell:>w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let rate = if wall > 0.0 {
            self.scanned as f64 / wall
        } else {
            0.0
        };
        let _ = write!(
            out,
            "{} items in {} ({rate:.1} items/s): {} ok, {} failed",
            self.scanned,
            secs(self.elapsed),
            self.ok,
            self.failed
        );
        if self.up_to_date > 0 {
            let _ = write!(out, ", {} up to date", self.up_to_date);
        }
        if self.filtered > 0 {
            let _ = write!(out, ", {} filtered", self.filtered);
        }
        if self.cancelled > 0 {
            let _ = write!(out, ", {} not processed", self.cancelled);
        }
        out.push('\n');
        for (names, started) in &self.process_chains {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let shared = if names.len() > 1 {
                " (sharing workers)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "processes: {}{shared}: {started} worker{} started",
                names.join(", "),
                if *started == 1 { "" } else { "s" }
            );
        }
        let verb = if self.dry_run { "would write" } else { "wrote" };
        for (stage, path) in &self.written {
            let _ = writeln!(out, "{stage}: {verb} {}", crate::item::escape_path(path));
        }
        if self.dry_run {
            out.push_str("dry run: no pixel was decoded and no file written\n");
        }
        for e in &self.stage_errors {
            let _ = writeln!(out, "stage stopped: {e}");
        }
        if self.interrupted {
            out.push_str("interrupted: the run stopped before every item was processed\n");
        } else if self.stopped_on_error {
            out.push_str("stopped at the first failure (on_error = \"fail\")\n");
        }
        out
    }
}
