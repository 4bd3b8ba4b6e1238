//! Running a checked pipeline: every stage gets a bounded input queue and its
//! workers (one thread inline, N threads in threads mode, N supervised child
//! processes in processes mode); items stream from the sources through the
//! graph, so memory stays bounded by the queues whatever the number of files.

pub mod cleanup;
pub mod protocol;
pub mod resume;
pub mod supervisor;
pub mod worker;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::config::{Mode, OnError, Pipeline};
use crate::item::Item;
use crate::report::{Failure, ItemStatus, RunSummary, StageStats};
use crate::stages::{Built, Found, SourceContext, Stage, StageError};

/// How to run, beyond what the pipeline file says.
pub struct RunOptions {
    /// Set from outside (Ctrl-C, SIGTERM) to stop the run: no new items are
    /// taken, items in a stage finish, queued ones are dropped.
    pub interrupt: Arc<AtomicBool>,
    /// Called once per failed item, as it happens.
    pub on_failure: Box<dyn Fn(&Failure) + Send + Sync>,
    /// Redo every item, even those whose outputs are up to date.
    pub force: bool,
    /// Added to journal names, so runs that must not share resume state
    /// (shards of one job) keep their own.
    pub state_tag: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            interrupt: Arc::new(AtomicBool::new(false)),
            on_failure: Box::new(|_| {}),
            force: false,
            state_tag: String::new(),
        }
    }
}

/// A run that could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub stage: String,
    pub message: String,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage `{}` cannot start: {}", self.stage, self.message)
    }
}

impl std::error::Error for BuildError {}

/// An item skipped as up to date: its source and the files it has.
type UpToDate = (PathBuf, Vec<PathBuf>);

/// State shared by every thread of a run.
struct Shared<'a> {
    pipeline: &'a Pipeline,
    stats: Vec<StageStats>,
    /// Items that did not end `ok`; an item absent from the map is fine.
    status: Mutex<HashMap<u64, ItemStatus>>,
    failures: Mutex<Vec<Failure>>,
    stop: AtomicBool,
    interrupt: &'a AtomicBool,
    next_id: AtomicU64,
    scanned: AtomicU64,
    /// Stages that stopped for good (e.g. their workers keep crashing).
    stage_errors: Mutex<Vec<String>>,
    /// Files written by gathering sinks at the end, with their stage.
    written: Mutex<Vec<(String, PathBuf)>>,
    resume: &'a resume::Resume,
    up_to_date: AtomicU64,
    /// Up-to-date items with their files, kept only for gathering stages.
    up_to_date_items: Option<Mutex<Vec<UpToDate>>>,
    opts: &'a RunOptions,
}

impl Shared<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.interrupt.load(Ordering::Relaxed)
    }

    fn mark(&self, id: u64, status: ItemStatus) {
        let mut map = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(id).or_insert(status);
        if status.rank() > entry.rank() {
            *entry = status;
        }
    }

    fn fail(&self, stage: usize, id: u64, path: PathBuf, reason: String) {
        self.stats[stage].failed.fetch_add(1, Ordering::Relaxed);
        self.mark(id, ItemStatus::Failed);
        let failure = Failure {
            path,
            stage: self.pipeline.stages[stage].name.clone(),
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
    fn forward(&self, item: Item, outs: &[Sender<Item>]) {
        if let Some((last, rest)) = outs.split_last() {
            for tx in rest {
                let _ = tx.send(item.clone());
            }
            let _ = last.send(item);
        }
    }
}

thread_local! {
    static IN_STAGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic inside a stage is reported as that item's failure; the default
/// hook's message on stderr would only repeat it, so it is silenced there.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_STAGE.with(|f| f.get()) {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// How one attempt at an item went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The item failed; the run goes on.
    Item(String),
    /// The stage can't go on (its workers can't start, or keep crashing).
    Fatal(String),
    /// The run is stopping and the item was abandoned.
    Cancelled,
}

/// Where and how one attempt at an item through a chain of stages ended.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Option<Item>, CallError>,
    /// Index (in the chain) of the stage where the item ended: the last one
    /// when it went through, else the one that failed or dropped it.
    pub at: usize,
    /// Time spent in each stage of the chain.
    pub busy: Vec<Duration>,
}

/// Run one item through a stage in this process, a panic becoming the item's
/// failure.
fn call_in_thread(stage: &dyn Stage, item: Item) -> Outcome {
    let started = Instant::now();
    IN_STAGE.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| stage.process(item)));
    IN_STAGE.with(|f| f.set(false));
    let result = match result {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(StageError(e))) => Err(CallError::Item(e)),
        Err(payload) => Err(CallError::Item(format!(
            "panicked: {}",
            panic_message(payload.as_ref())
        ))),
    };
    Outcome {
        result,
        at: 0,
        busy: vec![started.elapsed()],
    }
}

/// Run one item through `call`, retrying up to `retries` times when it fails.
fn process_item(call: &mut dyn FnMut(Item) -> Outcome, mut item: Item, retries: u32) -> Outcome {
    item.attempt = 0;
    let mut busy: Vec<Duration> = Vec::new();
    loop {
        // A copy is kept only when a retry may need it.
        let spare = (item.attempt < retries).then(|| item.clone());
        let attempt = item.attempt;
        let mut outcome = call(item);
        // Failed attempts cost time too.
        if busy.len() < outcome.busy.len() {
            busy.resize(outcome.busy.len(), Duration::ZERO);
        }
        for (total, b) in busy.iter_mut().zip(&outcome.busy) {
            *total += *b;
        }
        match (outcome.result, spare) {
            (Err(CallError::Item(_)), Some(mut copy)) => {
                copy.attempt += 1;
                item = copy;
            }
            (Err(CallError::Item(msg)), None) if attempt > 0 => {
                outcome.result = Err(CallError::Item(format!(
                    "{msg} (after {} attempts)",
                    attempt + 1
                )));
                outcome.busy = busy;
                return outcome;
            }
            (result, _) => {
                outcome.result = result;
                outcome.busy = busy;
                return outcome;
            }
        }
    }
}

/// Take items from a chain's queue (a chain is one stage, or consecutive
/// processes-mode stages sharing workers) and pass results to the consumers
/// of its last stage.
fn worker_loop(
    shared: &Shared<'_>,
    chain: &[usize],
    call: &mut dyn FnMut(Item) -> Outcome,
    collector: Option<&dyn Stage>,
    rx: Receiver<Item>,
    outs: Vec<Sender<Item>>,
) {
    let retries = shared.pipeline.stages[chain[0]].retries;
    while let Ok(item) = rx.recv() {
        if shared.stopping() {
            // Keep draining so that upstream never blocks on a full queue.
            shared.mark(item.id, ItemStatus::Cancelled);
            continue;
        }
        let (id, path) = (item.id, item.path.clone());
        let outcome = process_item(call, item, retries);
        let at = outcome.at.min(chain.len() - 1);
        for (k, &stage) in chain.iter().enumerate().take(at + 1) {
            let stats = &shared.stats[stage];
            stats.items_in.fetch_add(1, Ordering::Relaxed);
            stats.add_busy(outcome.busy.get(k).copied().unwrap_or_default());
            if k < at {
                stats.items_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        let stage = chain[at];
        match outcome.result {
            Ok(Some(mut out)) => {
                shared.stats[stage]
                    .items_out
                    .fetch_add(1, Ordering::Relaxed);
                if shared.resume.records(stage) {
                    shared.resume.record(stage, &out);
                }
                if let Some(c) = collector {
                    c.collect(&mut out);
                }
                shared.forward(out, &outs);
            }
            Ok(None) => {
                shared.stats[stage].filtered.fetch_add(1, Ordering::Relaxed);
                shared.mark(id, ItemStatus::Filtered);
            }
            Err(CallError::Item(e)) => shared.fail(stage, id, path, e),
            Err(CallError::Cancelled) => shared.mark(id, ItemStatus::Cancelled),
            Err(CallError::Fatal(e)) => {
                let first = {
                    let mut errors = shared
                        .stage_errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    errors.push(e.clone());
                    errors.len() == 1
                };
                shared.stop.store(true, Ordering::Relaxed);
                if first {
                    shared.fail(stage, id, path, e);
                } else {
                    shared.mark(id, ItemStatus::Cancelled);
                }
            }
        }
    }
}

/// Split the stages into chains that run together: consecutive stages in
/// processes mode with the same worker settings, where each reads only from
/// the one before and is its only reader, share their workers; every other
/// stage is a chain of one. Sharing keeps decoded pixels inside the worker
/// instead of copying them across the process boundary between stages.
fn chains(pipeline: &Pipeline, ends_chain: &[bool]) -> Vec<Vec<usize>> {
    let stages = &pipeline.stages;
    let same_workers = |a: &crate::config::StageDef, b: &crate::config::StageDef| {
        a.mode == Mode::Processes
            && b.mode == Mode::Processes
            && a.workers == b.workers
            && a.retries == b.retries
            && a.memory_limit == b.memory_limit
            && a.max_items_per_worker == b.max_items_per_worker
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

/// Run a pipeline to the end (or until stopped) and summarise it.
/// A temp folder private to one run, removed when the run ends.
struct RunDir(PathBuf);

impl RunDir {
    fn create() -> Option<RunDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("conveyor-run-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).ok().map(|_| RunDir(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(pipeline: &Pipeline, opts: &RunOptions) -> Result<RunSummary, BuildError> {
    install_panic_hook();
    let run_dir = RunDir::create();
    let n = pipeline.stages.len();
    let mut built = Vec::with_capacity(n);
    for def in &pipeline.stages {
        let ctx = crate::stages::BuildContext {
            stage: def.name.clone(),
            timeout: def.timeout,
            run_dir: run_dir.as_ref().map(|d| d.path().to_path_buf()),
        };
        let b = (def.kind.build)(&def.options, &ctx).map_err(|message| BuildError {
            stage: def.name.clone(),
            message,
        })?;
        built.push(b);
    }
    let ctx = SourceContext {
        skip_dirs: built
            .iter()
            .filter_map(|b| match b {
                Built::Stage(s) => s.output_dir().map(PathBuf::from),
                Built::Source(_) => None,
            })
            .collect(),
    };

    cleanup::watch_dirs(&ctx.skip_dirs);
    // One queue in front of each chain; sources and chain ends feed them.
    let collects: Vec<bool> = built
        .iter()
        .map(|b| matches!(b, Built::Stage(s) if s.collects()))
        .collect();
    let resume = resume::Resume::new(pipeline, &built, opts.force, &opts.state_tag);
    // Gathering and journaling stages must hand their output to this
    // process, so a shared worker chain ends with them.
    let ends_chain: Vec<bool> = (0..n).map(|i| collects[i] || resume.records(i)).collect();
    let chains = chains(pipeline, &ends_chain);
    let mut txs: Vec<Option<Sender<Item>>> = vec![None; n];
    let mut rxs: Vec<Option<Receiver<Item>>> = vec![None; n];
    for chain in &chains {
        let (tx, rx) = bounded(pipeline.queue);
        txs[chain[0]] = Some(tx);
        rxs[chain[0]] = Some(rx);
    }
    // Senders live only in the threads that send, so that each queue closes
    // when everything upstream of it is done.
    let mut outs: Vec<Vec<Sender<Item>>> = (0..n)
        .map(|i| {
            pipeline
                .consumers(i)
                .into_iter()
                .filter_map(|j| txs[j].clone())
                .collect()
        })
        .collect();
    drop(txs);

    let shared = Shared {
        pipeline,
        stats: pipeline.stages.iter().map(StageStats::new).collect(),
        status: Mutex::new(HashMap::new()),
        failures: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        interrupt: &opts.interrupt,
        next_id: AtomicU64::new(0),
        scanned: AtomicU64::new(0),
        stage_errors: Mutex::new(Vec::new()),
        written: Mutex::new(Vec::new()),
        resume: &resume,
        up_to_date: AtomicU64::new(0),
        up_to_date_items: collects.iter().any(|&c| c).then(|| Mutex::new(Vec::new())),
        opts,
    };
    let exe = supervisor::worker_exe();
    let processes: Vec<Option<supervisor::ChainProcesses>> = chains
        .iter()
        .map(|chain| {
            let defs: Vec<&crate::config::StageDef> =
                chain.iter().map(|&i| &pipeline.stages[i]).collect();
            (defs[0].mode == Mode::Processes).then(|| {
                supervisor::ChainProcesses::new(
                    &defs,
                    exe.clone(),
                    run_dir.as_ref().map(|d| d.path().to_path_buf()),
                )
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let shared = &shared;
        for (i, b) in built.iter().enumerate() {
            if let Built::Source(src) = b {
                let (ctx, src, out) = (ctx.clone(), Arc::clone(src), std::mem::take(&mut outs[i]));
                let spawned = std::thread::Builder::new()
                    .name(format!("{}/source", pipeline.stages[i].name))
                    .spawn_scoped(scope, move || {
                        run_source(shared, i, src.as_ref(), &ctx, out)
                    });
                if let Err(e) = spawned {
                    let name = PathBuf::from(&pipeline.stages[i].name);
                    shared.fail(i, u64::MAX, name, format!("cannot start a thread: {e}"));
                }
            }
        }
        for (c, chain) in chains.iter().enumerate() {
            let (head, tail) = (chain[0], chain[chain.len() - 1]);
            let Some(rx) = rxs[head].take() else { continue };
            let out = std::mem::take(&mut outs[tail]);
            let def = &pipeline.stages[head];
            let collector: Option<&dyn Stage> = match &built[tail] {
                Built::Stage(s) if collects[tail] => Some(s.as_ref()),
                _ => None,
            };
            for w in 0..def.workers {
                let (rx, out) = (rx.clone(), out.clone());
                let spawned = match (&processes[c], &built[head]) {
                    (Some(procs), _) => std::thread::Builder::new()
                        .name(format!("{}/process-{w}", def.name))
                        .spawn_scoped(scope, move || {
                            let mut slot = supervisor::Slot::new(procs, &opts.interrupt);
                            worker_loop(
                                shared,
                                chain,
                                &mut |item| slot.call(item),
                                collector,
                                rx,
                                out,
                            );
                        }),
                    (None, Built::Stage(stage)) => {
                        let stage = Arc::clone(stage);
                        std::thread::Builder::new()
                            .name(format!("{}/thread-{w}", def.name))
                            .spawn_scoped(scope, move || {
                                worker_loop(
                                    shared,
                                    chain,
                                    &mut |item| call_in_thread(stage.as_ref(), item),
                                    collector,
                                    rx,
                                    out,
                                )
                            })
                    }
                    (None, Built::Source(_)) => continue,
                };
                if let Err(e) = spawned {
                    // Without its workers the stage can't run: stop the run
                    // rather than leave upstream waiting.
                    shared.stop.store(true, Ordering::Relaxed);
                    shared.fail(
                        head,
                        u64::MAX,
                        PathBuf::from(&def.name),
                        format!("cannot start a thread: {e}"),
                    );
                }
            }
        }
    });
    // Gathering sinks write their results once everything is through.
    for (i, b) in built.iter().enumerate() {
        let Built::Stage(stage) = b else { continue };
        if !collects[i] {
            continue;
        }
        let failures = shared
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let up_to_date = shared
            .up_to_date_items
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        let run = crate::stages::Finish {
            failures: &failures,
            up_to_date: &up_to_date,
        };
        match stage.finish(&run) {
            Ok(files) => shared
                .written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(
                    files
                        .into_iter()
                        .map(|f| (pipeline.stages[i].name.clone(), f)),
                ),
            Err(e) => {
                let msg = format!(
                    "stage `{}` could not write its result: {e}",
                    pipeline.stages[i].name
                );
                (opts.on_failure)(&Failure {
                    path: PathBuf::from(&pipeline.stages[i].name),
                    stage: pipeline.stages[i].name.clone(),
                    reason: msg.clone(),
                });
                shared
                    .stage_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(msg);
            }
        }
    }
    // Workers killed mid-write (timeouts, crashes, interrupts) leave temp
    // files; every worker is gone now, so they can go too.
    cleanup::sweep();
    let elapsed = started.elapsed();
    let mut summary = summarise(shared, elapsed);
    summary.process_chains = processes
        .iter()
        .flatten()
        .map(|p| {
            (
                p.names.clone(),
                u64::from(p.started.load(Ordering::Relaxed)),
            )
        })
        .collect();
    Ok(summary)
}

fn run_source(
    shared: &Shared<'_>,
    idx: usize,
    src: &dyn crate::stages::Source,
    ctx: &SourceContext,
    outs: Vec<Sender<Item>>,
) {
    let stats = &shared.stats[idx];
    let started = Instant::now();
    let mut emit = |found: Found| -> bool {
        if shared.stopping() {
            return false;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        shared.scanned.fetch_add(1, Ordering::Relaxed);
        match found {
            Found::Item(mut item) => {
                item.id = id;
                stats.items_out.fetch_add(1, Ordering::Relaxed);
                match shared.resume.up_to_date(idx, &item) {
                    Some(outputs) => {
                        shared.up_to_date.fetch_add(1, Ordering::Relaxed);
                        if let Some(list) = &shared.up_to_date_items {
                            list.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((item.path, outputs));
                        }
                    }
                    None => shared.forward(*item, &outs),
                }
            }
            Found::Error { path, reason } => shared.fail(idx, id, path, reason),
        }
        !shared.stopping()
    };
    IN_STAGE.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| src.produce(ctx, &mut emit)));
    IN_STAGE.with(|f| f.set(false));
    if let Err(payload) = result {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let root = PathBuf::from(&shared.pipeline.stages[idx].name);
        shared.fail(
            idx,
            id,
            root,
            format!("source panicked: {}", panic_message(payload.as_ref())),
        );
    }
    stats.add_busy(started.elapsed());
}

fn summarise(shared: Shared<'_>, elapsed: Duration) -> RunSummary {
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
        stopped_on_error: shared.stop.load(Ordering::Relaxed),
        failures: shared
            .failures
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        stage_errors: shared
            .stage_errors
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        process_chains: Vec::new(),
        written: shared
            .written
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        elapsed,
    }
}

#[cfg(test)]
mod tests;
