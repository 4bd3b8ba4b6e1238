//! What a run is made of before it starts: its private scratch folder, the
//! chains of stages that share workers, and the queues between them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{BuildError, cleanup};
use crate::config::{Mode, Pipeline};
use crate::item::Item;
use crate::stage::{Built, Finish, Stage, StageError};

/// A temp folder private to one run, removed when the run ends (or by the
/// next run, if this one was killed outright).
pub(super) struct RunDir(PathBuf);

const RUN_DIR_PREFIX: &str = "conveyor-run";

impl RunDir {
    /// Without it, claims and the inputs shared with workers can't be kept:
    /// an unusable temp folder stops the run rather than turning checks off.
    pub(super) fn create() -> Result<RunDir, BuildError> {
        cleanup::new_scratch(RUN_DIR_PREFIX)
            .map(RunDir)
            .map_err(|message| BuildError::Setup { message })
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Split the stages into chains that run together: consecutive stages where
/// each reads only from the one before and is its only reader share their
/// workers when they are in processes mode with the same worker settings,
/// or in threads mode with `workers = "auto"`; every other stage is a chain
/// of one. In a worker process, sharing keeps decoded pixels inside it
/// instead of copying them across the process boundary; on threads, an
/// item goes through its stages on one core while its pixels are still in
/// that core's cache, instead of waiting in a queue for another thread.
pub(super) fn chains(pipeline: &Pipeline, ends_chain: &[bool]) -> Vec<Vec<usize>> {
    let stages = &pipeline.stages;
    let same_workers = |a: &crate::config::StageDef, b: &crate::config::StageDef| {
        a.retries == b.retries
            && match (a.mode, b.mode) {
                (Mode::Processes, Mode::Processes) => {
                    a.workers == b.workers
                        && a.memory_limit == b.memory_limit
                        && a.max_items_per_worker == b.max_items_per_worker
                }
                (Mode::Threads, Mode::Threads) => a.auto && b.auto,
                _ => false,
            }
    };
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in 0..stages.len() {
        if stages[i].kind.is_source() {
            continue;
        }
        let joins = out.last().is_some_and(|chain| {
            let prev = chain[chain.len() - 1];
            stages[i].inputs == [prev]
                && pipeline.consumers(prev) == [i]
                && !ends_chain[prev]
                && same_workers(&stages[prev], &stages[i])
        });
        match out.last_mut() {
            Some(chain) if joins => chain.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

/// For each chain, whether its workers hand large pixels over in shared
/// memory rather than copy them into conveyor: when every chain that reads
/// its items runs in worker processes (`in_workers`, by chain), conveyor
/// only passes the pixels on. Not when its last stage gathers (`gathers`,
/// by stage): gathering is done in conveyor, which may keep the pixels.
pub(super) fn hands_over(
    pipeline: &Pipeline,
    chains: &[Vec<usize>],
    in_workers: &[bool],
    gathers: &dyn Fn(usize) -> bool,
) -> Vec<bool> {
    let reader_in_workers = |stage: usize| {
        chains
            .iter()
            .position(|c| c[0] == stage)
            .is_some_and(|k| in_workers.get(k).copied().unwrap_or(false))
    };
    chains
        .iter()
        .enumerate()
        .map(|(k, chain)| {
            let last = chain[chain.len() - 1];
            let readers = pipeline.consumers(last);
            in_workers.get(k).copied().unwrap_or(false)
                && !readers.is_empty()
                && !gathers(last)
                && readers.into_iter().all(reader_in_workers)
        })
        .collect()
}

/// The queues of a run: one in front of each chain, fed by the sources and
/// by the chains before it.
pub(super) struct Queues {
    /// The receiving end of each chain's queue, by the chain's first stage.
    pub rxs: Vec<Option<Receiver<Item>>>,
    /// For each stage, the queues of the chains that read from it.
    pub outs: Vec<Vec<Sender<Item>>>,
}

impl Queues {
    pub(super) fn new(pipeline: &Pipeline, chains: &[Vec<usize>], jobs: usize) -> Queues {
        let n = pipeline.stages.len();
        let mut txs: Vec<Option<Sender<Item>>> = vec![None; n];
        let mut rxs: Vec<Option<Receiver<Item>>> = vec![None; n];
        for chain in chains {
            // Decoded images are large: unless the file sets `queue`, their
            // queues hold just enough to keep every job busy.
            let carries_images = pipeline.stages[chain[0]]
                .input_types
                .contains(crate::item::PayloadType::Image);
            let capacity = match pipeline.queue {
                Some(q) => q,
                None if carries_images => 2 * jobs,
                None => 64,
            };
            let (tx, rx) = bounded(capacity);
            txs[chain[0]] = Some(tx);
            rxs[chain[0]] = Some(rx);
        }
        // Senders live only in the threads that send, so that each queue
        // closes when everything upstream of it is done.
        let outs = (0..n)
            .map(|i| {
                pipeline
                    .consumers(i)
                    .into_iter()
                    .filter_map(|j| txs[j].clone())
                    .collect()
            })
            .collect();
        Queues { rxs, outs }
    }
}

/// A stage in a dry run: its `process` plans (names what it would write,
/// reads no pixels, writes nothing) and its `finish` names its files. The
/// choice between planning and processing is made here, once, so the rest
/// of the executor runs a dry run like any other.
struct Planning(Arc<dyn Stage>);

impl Stage for Planning {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        self.0.plan(item)
    }

    fn finish(&self, _run: &Finish<'_>) -> Result<Vec<PathBuf>, StageError> {
        self.0.plan_finish()
    }

    fn output_dir(&self) -> Option<&Path> {
        self.0.output_dir()
    }

    fn collects(&self) -> bool {
        self.0.collects()
    }

    fn collect(&self, item: &mut Item) {
        self.0.collect(item)
    }

    fn needs_every_item(&self) -> bool {
        self.0.needs_every_item()
    }

    fn depends_on(&self) -> Vec<PathBuf> {
        self.0.depends_on()
    }
}

/// The stages of a dry run: each one plans instead of processing.
pub(super) fn planning(built: Vec<Built>) -> Vec<Built> {
    built
        .into_iter()
        .map(|b| match b {
            Built::Stage(s) => Built::Stage(Arc::new(Planning(s))),
            source => source,
        })
        .collect()
}
