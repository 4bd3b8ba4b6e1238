//! The run's observer thread: progress callbacks, queue depths in the
//! trace, and queues that stay full (the bottleneck) in the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::observe;
use super::state::Shared;
use crate::item::Item;

/// The run's observer thread: every `progress_every`, report progress,
/// record queue depths in the trace, and log queues that stay full.
pub(super) fn watch(shared: &Shared<'_>, heads: &[(String, Receiver<Item>)], done: &AtomicBool) {
    let every = shared.opts.progress_every.max(Duration::from_millis(20));
    let wants = shared.opts.on_progress.is_some()
        || shared.trace.is_some()
        || tracing::enabled!(tracing::Level::DEBUG);
    let start = Instant::now();
    let mut full_since: Vec<Option<Instant>> = vec![None; heads.len()];
    let mut last = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        if !wants || last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        if let Some(progress) = &shared.opts.on_progress {
            let snapshot = snapshot(shared, start, false);
            let total = shared.scanned.load(Ordering::Relaxed);
            let finished = shared.report.finished() + shared.up_to_date.load(Ordering::Relaxed);
            progress(&snapshot, finished.min(total));
        }
        let depths: Vec<(String, usize)> =
            heads.iter().map(|(n, rx)| (n.clone(), rx.len())).collect();
        if let Some(trace) = &shared.trace {
            trace.queues(Instant::now(), &depths);
        }
        for ((name, rx), since) in heads.iter().zip(full_since.iter_mut()) {
            if rx.is_full() {
                let at = *since.get_or_insert_with(Instant::now);
                if at.elapsed() >= Duration::from_secs(1) {
                    tracing::debug!(stage = %name, "queue full for {:.1}s: the stage is the bottleneck", at.elapsed().as_secs_f64());
                    *since = Some(Instant::now());
                }
            } else {
                *since = None;
            }
        }
    }
    // The end state, exact: every stage's count of what it saw.
    if let Some(progress) = &shared.opts.on_progress {
        let snapshot = snapshot(shared, start, true);
        let finished = shared.report.finished() + shared.up_to_date.load(Ordering::Relaxed);
        progress(&snapshot, finished);
    }
}

/// Every stage's numbers now. While the run goes, `total` is what the
/// sources found so far; at the `end`, it is what the stage saw.
fn snapshot(shared: &Shared<'_>, start: Instant, end: bool) -> Vec<observe::StageProgress> {
    let scanned = shared.scanned.load(Ordering::Relaxed);
    let known = end || shared.sources_left.load(Ordering::Relaxed) == 0;
    shared
        .stats
        .iter()
        .zip(&shared.pipeline.stages)
        .map(|(s, def)| {
            // Up-to-date items are counted by the source that found them.
            let up_to_date = s.up_to_date.load(Ordering::Relaxed);
            let failed = s.failed.load(Ordering::Relaxed);
            let filtered = s.filtered.load(Ordering::Relaxed);
            let mut done = s
                .items_out
                .load(Ordering::Relaxed)
                .saturating_sub(up_to_date);
            // Fed by several branches, a stage sees copies of one item:
            // count the items.
            if def.inputs.len() > 1 {
                let items = shared.report.items_at(&s.name);
                done = done.min(items.saturating_sub(failed + filtered));
            }
            let seen = done + failed + filtered + up_to_date;
            observe::StageProgress {
                stage: s.name.clone(),
                done,
                failed,
                filtered,
                up_to_date,
                in_flight: if end {
                    0
                } else {
                    s.in_flight.load(Ordering::Relaxed)
                },
                total: if end { seen } else { scanned.max(seen) },
                total_known: known,
                elapsed: start.elapsed().as_secs_f64(),
            }
        })
        .collect()
}
