//! A worker's loop: take an item from its chain's queue, run it through the
//! chain (with retries, within the shared job budget), count its time in
//! each stage, and pass it on, or record how it ended.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::call::{self, CallError, Outcome};
use super::state::Shared;
use crate::item::Item;
use crate::report::ItemStatus;
use crate::stage::Stage;

/// One worker's place in the graph: the chain it runs, where items come
/// from and go to.
pub(super) struct Lane<'a> {
    pub(super) chain: &'a [usize],
    /// The chain's last stage, when it gathers items.
    pub(super) collector: Option<&'a dyn Stage>,
    pub(super) rx: Receiver<Item>,
    pub(super) outs: Vec<Sender<Item>>,
}

/// Take items from a chain's queue (a chain is one stage, or consecutive
/// stages sharing workers) and pass results to the consumers of its last
/// stage.
pub(super) fn worker_loop(
    shared: &Shared<'_>,
    lane: &Lane<'_>,
    call: &mut dyn FnMut(Item) -> Outcome,
    track: &dyn Fn() -> String,
) {
    let head = lane.chain[0];
    let retries = shared.pipeline.stages[head].retries;
    // Auto stages share the run's jobs: a permit per item being processed,
    // returned before the result is passed on, so a worker never holds one
    // while it waits on a full queue.
    let permit = shared.pipeline.stages[head].auto.then_some(&shared.cores);
    while let Ok(item) = lane.rx.recv() {
        // An item whose files are all written is carried to the end even
        // when the run is stopping: what is left only records it (hash,
        // manifest), and it counts as made.
        if shared.stopping() && !shared.written_before(head) {
            // Keep draining so that upstream never blocks on a full queue.
            shared.cancel(item.id, head);
            continue;
        }
        let (id, path) = (item.id, item.path.clone());
        let rel = shared.trace.as_ref().map(|_| item.rel_str());
        if let Some(cores) = permit {
            cores.acquire();
        }
        let started = Instant::now();
        shared.stats[head].in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = call::process_item(call, item, retries);
        shared.stats[head].in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(cores) = permit {
            cores.release();
        }
        let at = outcome.at.min(lane.chain.len() - 1);
        account(
            shared,
            lane.chain,
            &outcome,
            id,
            rel.as_deref(),
            started,
            track,
        );
        settle(shared, lane, lane.chain[at], id, path, outcome.result);
    }
}

/// Count an item's time and passage in each stage of the chain it went
/// through, in the report and the trace.
fn account(
    shared: &Shared<'_>,
    chain: &[usize],
    outcome: &Outcome,
    id: u64,
    rel: Option<&str>,
    started: Instant,
    track: &dyn Fn() -> String,
) {
    let at = outcome.at.min(chain.len() - 1);
    if let Some(c) = &outcome.crossing {
        shared
            .report
            .crossed(id, &shared.pipeline.stages[chain[0]].name, c);
    }
    let mut span_start = started;
    for (k, &stage) in chain.iter().enumerate().take(at + 1) {
        let stats = &shared.stats[stage];
        let busy = outcome.busy.get(k).copied().unwrap_or_default();
        let cpu = outcome.cpu.get(k).copied();
        stats.items_in.fetch_add(1, Ordering::Relaxed);
        stats.add_busy(busy);
        if let Some(cpu) = cpu {
            stats.add_cpu(cpu);
        }
        if k < at {
            stats.items_out.fetch_add(1, Ordering::Relaxed);
        }
        let name = &shared.pipeline.stages[stage].name;
        shared.report.timed(id, name, busy, cpu);
        if let (Some(trace), Some(rel)) = (&shared.trace, rel) {
            trace.span(&track(), rel, name, span_start, busy);
        }
        span_start += busy;
    }
}

/// What becomes of an item that ended at `stage`.
fn settle(
    shared: &Shared<'_>,
    lane: &Lane<'_>,
    stage: usize,
    id: u64,
    path: PathBuf,
    result: Result<Option<Item>, CallError>,
) {
    let name = &shared.pipeline.stages[stage].name;
    match result {
        Ok(Some(mut out)) => {
            shared.stats[stage]
                .items_out
                .fetch_add(1, Ordering::Relaxed);
            if shared.resume.records(stage) && !shared.opts.dry_run {
                shared.resume.record(stage, &out);
            }
            if let Some(c) = lane.collector {
                c.collect(&mut out);
            }
            shared.forward(out, &lane.outs);
        }
        Ok(None) => {
            shared.stats[stage].filtered.fetch_add(1, Ordering::Relaxed);
            shared.mark(id, ItemStatus::Filtered);
            shared
                .report
                .ended(id, ItemStatus::Filtered, Some(name), None, &[]);
        }
        Err(CallError::Item(e)) => shared.fail(stage, id, path, e),
        Err(CallError::Cancelled) => shared.cancel(id, stage),
        Err(CallError::Fatal(e)) => {
            shared.stop.store(true, Ordering::Relaxed);
            if shared.stage_error(&e) {
                shared.fail(stage, id, path, e);
            } else {
                shared.cancel(id, stage);
            }
        }
    }
}
