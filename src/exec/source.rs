//! A source's thread: walk it, and hand each item it finds to the chains
//! reading it, or count it as up to date.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::call;
use super::observe;
use super::state::Shared;
use crate::item::Item;
use crate::report::ItemStatus;
use crate::stage::{Found, Source, SourceContext};

/// Walk a source, handing each item it finds to the chains reading it (or
/// counting it as up to date).
pub(super) fn run_source(
    shared: &Shared<'_>,
    idx: usize,
    src: &dyn Source,
    ctx: &SourceContext,
    outs: Vec<Sender<Item>>,
) {
    let stats = &shared.stats[idx];
    let started = Instant::now();
    // Time spent waiting for room in a full queue is not the source's work.
    let mut blocked = Duration::ZERO;
    let mut emit = |found: Found| -> bool {
        if shared.stopping() {
            return false;
        }
        // Another shard's file: not this run's business at all.
        if let Some(shard) = &shared.opts.shard {
            let rel = match &found {
                Found::Item(item) => item.rel_str(),
                Found::Error { path, .. } => path.to_string_lossy().into_owned(),
            };
            if !shard.takes(&rel) {
                return true;
            }
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared.scanned.fetch_add(1, Ordering::Relaxed);
        match found {
            Found::Item(mut item) => {
                item.id = id;
                stats.items_out.fetch_add(1, Ordering::Relaxed);
                let sending = Instant::now();
                admit(shared, idx, *item, &outs);
                blocked += sending.elapsed();
            }
            Found::Error { path, reason } => shared.fail(idx, id, path, reason),
        }
        !shared.stopping()
    };
    if let Err(call::Panicked(message)) = call::guarded(|| src.produce(ctx, &mut emit)) {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let root = PathBuf::from(&shared.pipeline.stages[idx].name);
        shared.fail(idx, id, root, format!("source panicked: {message}"));
    }
    stats.add_busy(started.elapsed().saturating_sub(blocked));
    shared.sources_left.fetch_sub(1, Ordering::Relaxed);
}

/// An item a source found: counted as up to date, or sent on.
fn admit(shared: &Shared<'_>, source: usize, item: Item, outs: &[Sender<Item>]) {
    match shared.resume.up_to_date(source, &item) {
        Some(outputs) => {
            shared.up_to_date.fetch_add(1, Ordering::Relaxed);
            shared.stats[source]
                .up_to_date
                .fetch_add(1, Ordering::Relaxed);
            shared.report.single(observe::Line {
                path: item.path.clone(),
                status: ItemStatus::UpToDate,
                stage: None,
                reason: None,
                outputs: outputs.clone(),
                ms: Default::default(),
            });
            if let Some(list) = &shared.up_to_date_items {
                list.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((item.path, outputs));
            }
        }
        None => {
            shared.report.started(item.id, &item.path);
            shared.forward(item, outs);
        }
    }
}
