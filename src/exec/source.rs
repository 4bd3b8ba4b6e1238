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
    let mut window = Window::default();
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
                if let Some(item) = up_to_date_or(shared, idx, *item)
                    && let Some(next) = window.push(item)
                {
                    let sending = Instant::now();
                    send(shared, idx, next, &outs);
                    blocked += sending.elapsed();
                }
            }
            Found::Error { path, reason } => shared.fail(idx, id, path, reason),
        }
        !shared.stopping()
    };
    let produced = call::guarded(|| src.produce(ctx, &mut emit));
    if let Err(call::Panicked(message)) = produced {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let root = PathBuf::from(&shared.pipeline.stages[idx].name);
        shared.fail(idx, id, root, format!("source panicked: {message}"));
    }
    while let Some(item) = window.pop() {
        if shared.stopping() {
            hold_back(shared, idx, &item);
            continue;
        }
        let sending = Instant::now();
        send(shared, idx, item, &outs);
        blocked += sending.elapsed();
    }
    stats.add_busy(started.elapsed().saturating_sub(blocked));
    shared.sources_left.fetch_sub(1, Ordering::Relaxed);
}

/// How many found items a source holds back to start the largest first:
/// enough to reorder a folder of photos, few enough that work starts at
/// once and memory stays small (items carry no pixels yet).
pub(super) const LOOK_AHEAD: usize = 32;

/// Items found but not yet sent, the largest first out: a big photo that
/// starts last keeps one core busy while the others idle; started early,
/// the small files fill in around it.
#[derive(Default)]
struct Window {
    held: Vec<Item>,
}

impl Window {
    /// Hold `item`; when the window is full, give back the largest held.
    fn push(&mut self, item: Item) -> Option<Item> {
        self.held.push(item);
        if self.held.len() > LOOK_AHEAD {
            self.pop()
        } else {
            None
        }
    }

    /// The largest item held (by file size; ties in the order found).
    fn pop(&mut self) -> Option<Item> {
        let size = |i: &Item| i.meta.size.unwrap_or(0);
        let mut best: Option<usize> = None;
        for (k, item) in self.held.iter().enumerate() {
            if best.is_none_or(|b| size(item) > size(&self.held[b])) {
                best = Some(k);
            }
        }
        best.map(|k| self.held.remove(k))
    }
}

/// Hand an item on to the chains that read its source, once its decoded
/// image fits in the memory budget.
fn send(shared: &Shared<'_>, source: usize, item: Item, outs: &[Sender<Item>]) {
    if let Some(budget) = &shared.budget {
        let bytes = match &item.payload {
            crate::item::Payload::Nothing => super::budget::image_bytes(&item.path),
            _ => 0,
        };
        if !budget.acquire(item.id, bytes, &|| shared.stopping()) {
            return hold_back(shared, source, &item);
        }
    }
    shared.report.started(item.id, &item.path);
    shared.forward(item, outs);
}

/// The run stopped before a found item was sent on: it is reported, as
/// not processed.
fn hold_back(shared: &Shared<'_>, source: usize, item: &Item) {
    shared.report.started(item.id, &item.path);
    shared.cancel(item.id, source);
}

/// An item a source found: counted as up to date (`None`), or given back to
/// be sent on.
fn up_to_date_or(shared: &Shared<'_>, source: usize, item: Item) -> Option<Item> {
    match shared.resume.up_to_date(source, &item) {
        Some(outputs) => {
            shared.up_to_date.fetch_add(1, Ordering::Relaxed);
            shared.stats[source]
                .up_to_date
                .fetch_add(1, Ordering::Relaxed);
            shared.report.single(observe::Line {
                outputs: outputs.clone(),
                ..observe::Line::new(item.path.clone(), ItemStatus::UpToDate)
            });
            if let Some(list) = &shared.up_to_date_items {
                list.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((item.path, outputs));
            }
            None
        }
        None => Some(item),
    }
}
