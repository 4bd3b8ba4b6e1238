//! The state every thread of a run shares: counters per stage, the status
//! of each item, failures, the stop flag, the report and the trace; and the
//! summary made of it at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::{RunOptions, observe, resume};
use crate::config::{OnError, Pipeline};
use crate::item::Item;
use crate::report::{Failure, ItemStatus, RunSummary, StageStats};

/// An item skipped as up to date: its source and the files it has.
pub(super) type UpToDate = (PathBuf, Vec<PathBuf>);

/// State shared by every thread of a run.
pub(super) struct Shared<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) stats: Vec<StageStats>,
    /// Items that did not end `ok`; an item absent from the map is fine.
    pub(super) status: Mutex<HashMap<u64, ItemStatus>>,
    pub(super) failures: Mutex<Vec<Failure>>,
    pub(super) stop: AtomicBool,
    pub(super) interrupt: &'a AtomicBool,
    pub(super) next_id: AtomicU64,
    pub(super) scanned: AtomicU64,
    /// Stages that stopped for good (e.g. their workers keep crashing).
    pub(super) stage_errors: Mutex<Vec<String>>,
    /// Files written by gathering sinks at the end, with their stage.
    pub(super) written: Mutex<Vec<(String, PathBuf)>>,
    pub(super) resume: &'a resume::Resume,
    pub(super) up_to_date: AtomicU64,
    /// Up-to-date items with their files, kept only for gathering stages.
    pub(super) up_to_date_items: Option<Mutex<Vec<UpToDate>>>,
    /// Items that ended with files made of them (source, files), kept only
    /// for gathering stages.
    pub(super) made_items: Option<Mutex<Vec<crate::stage::Kept>>>,
    pub(super) report: observe::Report,
    pub(super) trace: Option<observe::Trace>,
    /// The bytes of decoded images in flight (pipelines that decode).
    pub(super) budget: Option<std::sync::Arc<super::budget::Budget>>,
    /// The job budget shared by auto stages; per-pixel work borrows idle
    /// permits from it.
    pub(super) cores: std::sync::Arc<crate::cores::Cores>,
    /// Sources still scanning; the total is known when it reaches 0.
    pub(super) sources_left: AtomicUsize,
    pub(super) opts: &'a RunOptions,
}

impl Shared<'_> {
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.interrupt.load(Ordering::Relaxed)
    }

    pub(super) fn mark(&self, id: u64, status: ItemStatus) {
        let mut map = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(id).or_insert(status);
        if status.rank() > entry.rank() {
            *entry = status;
        }
    }

    /// The run is stopping and the item was dropped at `stage`.
    pub(super) fn cancel(&self, id: u64, stage: usize) {
        // Dropped after its last journalled write, an item has its files and
        // its journal lines: it counts as made, as the next run will see it.
        if self.written_before(stage) {
            self.report.ended(id, ItemStatus::Ok, None, None, &[]);
            return;
        }
        self.mark(id, ItemStatus::Cancelled);
        let name = &self.pipeline.stages[stage].name;
        self.report
            .ended(id, ItemStatus::Cancelled, Some(name), None, &[]);
    }

    pub(super) fn fail(&self, stage: usize, id: u64, path: PathBuf, reason: String) {
        self.stats[stage].failed.fetch_add(1, Ordering::Relaxed);
        self.mark(id, ItemStatus::Failed);
        let name = &self.pipeline.stages[stage].name;
        if !self
            .report
            .ended(id, ItemStatus::Failed, Some(name), Some(&reason), &[])
        {
            self.report.single(observe::Line {
                stage: Some(name.clone()),
                reason: Some(reason.clone()),
                ..observe::Line::new(path.clone(), ItemStatus::Failed)
            });
        }
        let failure = Failure {
            path,
            stage: name.clone(),
            reason,
        };
        (self.opts.on_failure)(&failure);
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(failure);
        if self.pipeline.on_error == OnError::Fail {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Hand an item to every consumer: copies for all but the last, which
    /// gets the item itself.
    pub(super) fn forward(&self, item: Item, outs: &[Sender<Item>]) {
        if outs.is_empty() {
            let outputs = &item.meta.outputs;
            self.report
                .ended(item.id, ItemStatus::Ok, None, None, outputs);
            if let Some(made) = self.made_items.as_ref().filter(|_| !outputs.is_empty()) {
                made.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(crate::stage::Kept {
                        path: item.path.clone(),
                        outputs: outputs.clone(),
                        facts: Some(crate::stage::SourceFacts::of(&item)),
                    });
            }
        } else {
            self.report.fanned_out(item.id, outs.len());
        }
        if let Some((last, rest)) = outs.split_last() {
            for tx in rest {
                let _ = tx.send(item.clone());
            }
            let _ = last.send(item);
        }
    }
}

impl Shared<'_> {
    /// Whether an item that reached `stage` was journalled by a writer
    /// upstream and has none left to reach: `stage` and everything below it
    /// journal nothing.
    pub(super) fn written_before(&self, stage: usize) -> bool {
        let writes = |set: &[bool]| (0..set.len()).any(|i| set[i] && self.resume.records(i));
        let mut above = self.linked(stage, true);
        above[stage] = false;
        !self.opts.dry_run && writes(&above) && !writes(&self.linked(stage, false))
    }

    /// `stage` and the stages above it (`up`) or below it. Inputs may name
    /// a stage listed later, so this grows until nothing changes.
    fn linked(&self, stage: usize, up: bool) -> Vec<bool> {
        let stages = &self.pipeline.stages;
        let mut set = vec![false; stages.len()];
        set[stage] = true;
        let mut grew = true;
        while grew {
            grew = false;
            for (j, def) in stages.iter().enumerate() {
                for &i in &def.inputs {
                    let (from, to) = if up { (j, i) } else { (i, j) };
                    if set[from] && !set[to] {
                        set[to] = true;
                        grew = true;
                    }
                }
            }
        }
        set
    }

    /// Record a stage's fatal error; true if it is the run's first.
    pub(super) fn stage_error(&self, e: &str) -> bool {
        let mut errors = self.stage_errors.lock().unwrap_or_else(|e| e.into_inner());
        let first = errors.is_empty();
        if !errors.iter().any(|x| x == e) {
            errors.push(e.to_string());
        }
        first
    }

    /// The summary of a finished run.
    pub(super) fn into_summary(self, elapsed: Duration) -> RunSummary {
        let shared = self;
        let status = shared
            .status
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let count = |s: ItemStatus| status.values().filter(|v| **v == s).count() as u64;
        let scanned = shared.scanned.load(Ordering::Relaxed);
        let (failed, filtered, cancelled) = (
            count(ItemStatus::Failed),
            count(ItemStatus::Filtered),
            count(ItemStatus::Cancelled),
        );
        let up_to_date = shared.up_to_date.load(Ordering::Relaxed);
        RunSummary {
            pipeline: shared.pipeline.name.clone(),
            stages: shared.stats.iter().map(StageStats::snapshot).collect(),
            scanned,
            ok: scanned.saturating_sub(failed + filtered + cancelled + up_to_date),
            up_to_date,
            failed,
            filtered,
            cancelled,
            interrupted: shared.interrupt.load(Ordering::Relaxed),
            // A stage that stops (its workers keep crashing) stops the run
            // whatever `on_error` says; that is told as the stage's error.
            stopped_on_error: shared.stop.load(Ordering::Relaxed)
                && shared.pipeline.on_error == OnError::Fail,
            failures: shared
                .failures
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            stage_errors: shared
                .stage_errors
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            process_chains: Vec::new(),
            dry_run: false,
            written: shared
                .written
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            elapsed,
        }
    }
}
