//! Running a checked pipeline: every stage gets a bounded input queue and its
//! workers (one thread inline, N threads in threads mode, N supervised child
//! processes in processes mode); items stream from the sources through the
//! graph, so memory stays bounded by the queues whatever the number of files.

pub mod protocol;
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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            interrupt: Arc::new(AtomicBool::new(false)),
            on_failure: Box::new(|_| {}),
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

/// Run one item through a stage in this process, a panic becoming the item's
/// failure.
fn call_in_thread(stage: &dyn Stage, item: Item) -> Result<Option<Item>, CallError> {
    IN_STAGE.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| stage.process(item)));
    IN_STAGE.with(|f| f.set(false));
    match result {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(StageError(e))) => Err(CallError::Item(e)),
        Err(payload) => Err(CallError::Item(format!("panicked: {}", panic_message(payload.as_ref())))),
    }
}

/// Run one item through `call`, retrying up to `retries` times when it fails.
fn process_item(
    call: &mut dyn FnMut(Item) -> Result<Option<Item>, CallError>,
    mut item: Item,
    retries: u32,
) -> Result<Option<Item>, CallError> {
    item.attempt = 0;
    loop {
        // A copy is kept only when a retry may need it.
        let spare = (item.attempt < retries).then(|| item.clone());
        let attempt = item.attempt;
        match call(item) {
            Ok(out) => return Ok(out),
            Err(CallError::Item(msg)) => match spare {
                Some(mut copy) => {
                    copy.attempt += 1;
                    item = copy;
                }
                None if attempt > 0 => {
                    return Err(CallError::Item(format!("{msg} (after {} attempts)", attempt + 1)));
                }
                None => return Err(CallError::Item(msg)),
            },
            Err(other) => return Err(other),
        }
    }
}

fn worker_loop(
    shared: &Shared<'_>,
    idx: usize,
    call: &mut dyn FnMut(Item) -> Result<Option<Item>, CallError>,
    rx: Receiver<Item>,
    outs: Vec<Sender<Item>>,
) {
    let def = &shared.pipeline.stages[idx];
    let stats = &shared.stats[idx];
    while let Ok(item) = rx.recv() {
        if shared.stopping() {
            // Keep draining so that upstream never blocks on a full queue.
            shared.mark(item.id, ItemStatus::Cancelled);
            continue;
        }
        stats.items_in.fetch_add(1, Ordering::Relaxed);
        let (id, path) = (item.id, item.path.clone());
        let started = Instant::now();
        let result = process_item(call, item, def.retries);
        stats.add_busy(started.elapsed());
        match result {
            Ok(Some(out)) => {
                stats.items_out.fetch_add(1, Ordering::Relaxed);
                shared.forward(out, &outs);
            }
            Ok(None) => {
                stats.filtered.fetch_add(1, Ordering::Relaxed);
                shared.mark(id, ItemStatus::Filtered);
            }
            Err(CallError::Item(e)) => shared.fail(idx, id, path, e),
            Err(CallError::Cancelled) => shared.mark(id, ItemStatus::Cancelled),
            Err(CallError::Fatal(e)) => {
                let first = {
                    let mut errors = shared.stage_errors.lock().unwrap_or_else(|e| e.into_inner());
                    errors.push(e.clone());
                    errors.len() == 1
                };
                shared.stop.store(true, Ordering::Relaxed);
                if first {
                    shared.fail(idx, id, path, e);
                } else {
                    shared.mark(id, ItemStatus::Cancelled);
                }
            }
        }
    }
}

/// Run a pipeline to the end (or until stopped) and summarise it.
pub fn run(pipeline: &Pipeline, opts: &RunOptions) -> Result<RunSummary, BuildError> {
    install_panic_hook();
    let n = pipeline.stages.len();
    let mut built = Vec::with_capacity(n);
    for def in &pipeline.stages {
        let b = (def.kind.build)(&def.options).map_err(|message| BuildError {
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

    let mut txs: Vec<Option<Sender<Item>>> = Vec::with_capacity(n);
    let mut rxs: Vec<Option<Receiver<Item>>> = Vec::with_capacity(n);
    for b in &built {
        if matches!(b, Built::Stage(_)) {
            let (tx, rx) = bounded(pipeline.queue);
            txs.push(Some(tx));
            rxs.push(Some(rx));
        } else {
            txs.push(None);
            rxs.push(None);
        }
    }
    let outs: Vec<Vec<Sender<Item>>> = (0..n)
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
        opts,
    };
    let exe = supervisor::worker_exe();
    let processes: Vec<Option<supervisor::StageProcesses>> = pipeline
        .stages
        .iter()
        .map(|def| (def.mode == Mode::Processes).then(|| supervisor::StageProcesses::new(def, exe.clone())))
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (i, (b, out)) in built.iter().zip(outs).enumerate() {
            let shared = &shared;
            match b {
                Built::Source(src) => {
                    let ctx = ctx.clone();
                    let src = Arc::clone(src);
                    let spawned = std::thread::Builder::new()
                        .name(format!("{}/source", pipeline.stages[i].name))
                        .spawn_scoped(scope, move || {
                            run_source(shared, i, src.as_ref(), &ctx, out)
                        });
                    if let Err(e) = spawned {
                        shared.fail(
                            i,
                            u64::MAX,
                            PathBuf::from(&pipeline.stages[i].name),
                            format!("cannot start a thread: {e}"),
                        );
                    }
                }
                Built::Stage(stage) => {
                    let Some(rx) = rxs[i].take() else { continue };
                    let def = &pipeline.stages[i];
                    for w in 0..def.workers {
                        let (rx, out, stage) = (rx.clone(), out.clone(), Arc::clone(stage));
                        let spawned = if def.mode == Mode::Processes {
                            let procs = &processes[i];
                            std::thread::Builder::new()
                                .name(format!("{}/process-{w}", def.name))
                                .spawn_scoped(scope, move || {
                                    let Some(procs) = procs else { return };
                                    let mut slot = supervisor::Slot::new(procs, &opts.interrupt);
                                    worker_loop(shared, i, &mut |item| slot.call(item), rx, out);
                                })
                        } else {
                            std::thread::Builder::new()
                                .name(format!("{}/thread-{w}", def.name))
                                .spawn_scoped(scope, move || {
                                    worker_loop(shared, i, &mut |item| call_in_thread(stage.as_ref(), item), rx, out)
                                })
                        };
                        if let Err(e) = spawned {
                            // Without its workers the stage can't run: stop
                            // the run rather than leave upstream waiting.
                            shared.stop.store(true, Ordering::Relaxed);
                            shared.fail(i, u64::MAX, PathBuf::from(&def.name), format!("cannot start a thread: {e}"));
                        }
                    }
                }
            }
        }
    });
    let elapsed = started.elapsed();
    Ok(summarise(shared, elapsed))
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
                shared.forward(item, &outs);
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
    RunSummary {
        pipeline: shared.pipeline.name.clone(),
        stages: shared.stats.iter().map(StageStats::snapshot).collect(),
        scanned,
        ok: scanned.saturating_sub(failed + filtered + cancelled),
        failed,
        filtered,
        cancelled,
        interrupted: shared.interrupt.load(Ordering::Relaxed),
        stopped_on_error: shared.stop.load(Ordering::Relaxed),
        failures: shared
            .failures
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        stage_errors: shared.stage_errors.into_inner().unwrap_or_else(|e| e.into_inner()),
        elapsed,
    }
}

#[cfg(test)]
mod tests;
