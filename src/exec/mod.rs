//! Running a checked pipeline: every stage gets a bounded input queue and its
//! workers (one thread inline, N threads in threads mode, N supervised child
//! processes in processes mode); items stream from the sources through the
//! graph, so memory stays bounded by the queues whatever the number of files.

pub mod cleanup;
pub mod observe;
pub mod protocol;
pub mod resume;
pub mod shard;
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
    /// Only plan: say what would be read and written, touch nothing.
    pub dry_run: bool,
    /// How many items auto stages may process at once, all together
    /// (default: the CPU count).
    pub jobs: Option<usize>,
    /// Called with each item's outcome as it ends.
    pub on_item_end: Option<ItemEndFn>,
    /// Added to journal names, so runs that must not share resume state
    /// (shards of one job) keep their own.
    pub state_tag: String,
    /// Process only this slice of the input.
    pub shard: Option<shard::Shard>,
    /// Write a JSON line per item here.
    pub report: Option<PathBuf>,
    /// Write a Chrome trace (Perfetto) here.
    pub trace: Option<PathBuf>,
    /// Called every `progress_every` with each stage's numbers and how many
    /// items have finished.
    pub on_progress: Option<ProgressFn>,
    pub progress_every: Duration,
}

/// Called with each item's outcome as it ends.
pub type ItemEndFn = Arc<dyn Fn(&observe::Line) + Send + Sync>;

/// A progress callback: each stage's numbers, and items finished so far.
pub type ProgressFn = Box<dyn Fn(&[observe::StageProgress], u64) + Send + Sync>;

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            interrupt: Arc::new(AtomicBool::new(false)),
            on_failure: Box::new(|_| {}),
            force: false,
            dry_run: false,
            jobs: None,
            on_item_end: None,
            state_tag: String::new(),
            shard: None,
            report: None,
            trace: None,
            on_progress: None,
            progress_every: Duration::from_millis(250),
        }
    }
}

/// A run that could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// A stage could not be built.
    Stage { stage: String, message: String },
    /// The run itself could not be set up (its scratch folder, `--report`,
    /// `--trace`).
    Setup { message: String },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Stage { stage, message } => {
                write!(f, "stage `{stage}` cannot start: {message}")
            }
            BuildError::Setup { message } => write!(f, "cannot start: {message}"),
        }
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
    report: observe::Report,
    trace: Option<observe::Trace>,
    /// The job budget shared by auto stages, as tokens in a channel.
    permits: Option<(Sender<()>, Receiver<()>)>,
    /// Sources still scanning; the total is known when it reaches 0.
    sources_left: std::sync::atomic::AtomicUsize,
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

    /// The run is stopping and the item was dropped at `stage`.
    fn cancel(&self, id: u64, stage: usize) {
        self.mark(id, ItemStatus::Cancelled);
        let name = &self.pipeline.stages[stage].name;
        self.report
            .ended(id, observe::Status::Cancelled, Some(name), None, &[]);
    }

    fn fail(&self, stage: usize, id: u64, path: PathBuf, reason: String) {
        self.stats[stage].failed.fetch_add(1, Ordering::Relaxed);
        self.mark(id, ItemStatus::Failed);
        let name = &self.pipeline.stages[stage].name;
        if !self
            .report
            .ended(id, observe::Status::Failed, Some(name), Some(&reason), &[])
        {
            self.report.single(observe::Line {
                path: path.clone(),
                status: observe::Status::Failed,
                stage: Some(name.clone()),
                reason: Some(reason.clone()),
                outputs: Vec::new(),
                ms: Default::default(),
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
    fn forward(&self, item: Item, outs: &[Sender<Item>]) {
        if outs.is_empty() {
            let outputs = &item.meta.outputs;
            self.report
                .ended(item.id, observe::Status::Ok, None, None, outputs);
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
fn call_in_thread(stage: &dyn Stage, item: Item, dry_run: bool) -> Outcome {
    let started = Instant::now();
    IN_STAGE.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| {
        if dry_run {
            stage.plan(item)
        } else {
            stage.process(item)
        }
    }));
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

/// Run one item through consecutive stages in this process, stopping where
/// it fails or is dropped.
fn call_chain_in_thread(stages: &[Arc<dyn Stage>], item: Item, dry_run: bool) -> Outcome {
    let mut busy = Vec::with_capacity(stages.len());
    let mut item = item;
    for (at, stage) in stages.iter().enumerate() {
        let outcome = call_in_thread(stage.as_ref(), item, dry_run);
        busy.extend(outcome.busy);
        match outcome.result {
            Ok(Some(next)) if at + 1 < stages.len() => item = next,
            result => return Outcome { result, at, busy },
        }
    }
    Outcome {
        result: Ok(None),
        at: stages.len().saturating_sub(1),
        busy,
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
            (Err(CallError::Item(msg)), Some(mut copy)) => {
                copy.attempt += 1;
                tracing::debug!(item = %copy.rel_str(), attempt = copy.attempt + 1, "retrying after: {msg}");
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
    track: &dyn Fn() -> String,
    rx: Receiver<Item>,
    outs: Vec<Sender<Item>>,
) {
    let retries = shared.pipeline.stages[chain[0]].retries;
    let head = &shared.stats[chain[0]];
    while let Ok(item) = rx.recv() {
        if shared.stopping() {
            // Keep draining so that upstream never blocks on a full queue.
            shared.cancel(item.id, chain[0]);
            continue;
        }
        let (id, path) = (item.id, item.path.clone());
        let rel = shared.trace.as_ref().map(|_| item.rel_str());
        // Auto stages share the run's jobs: a permit per item being
        // processed, returned before the result is passed on, so a worker
        // never holds one while it waits on a full queue.
        let permit = shared
            .permits
            .as_ref()
            .filter(|_| shared.pipeline.stages[chain[0]].auto);
        if let Some((_, take)) = permit {
            let _ = take.recv();
        }
        let started = Instant::now();
        head.in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = process_item(call, item, retries);
        head.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some((give, _)) = permit {
            let _ = give.send(());
        }
        let at = outcome.at.min(chain.len() - 1);
        let mut span_start = started;
        for (k, &stage) in chain.iter().enumerate().take(at + 1) {
            let stats = &shared.stats[stage];
            let busy = outcome.busy.get(k).copied().unwrap_or_default();
            stats.items_in.fetch_add(1, Ordering::Relaxed);
            stats.add_busy(busy);
            if k < at {
                stats.items_out.fetch_add(1, Ordering::Relaxed);
            }
            let name = &shared.pipeline.stages[stage].name;
            shared.report.timed(id, name, busy);
            if let (Some(trace), Some(rel)) = (&shared.trace, &rel) {
                trace.span(&track(), rel, name, span_start, busy);
            }
            span_start += busy;
        }
        let stage = chain[at];
        let name = &shared.pipeline.stages[stage].name;
        match outcome.result {
            Ok(Some(mut out)) => {
                shared.stats[stage]
                    .items_out
                    .fetch_add(1, Ordering::Relaxed);
                if shared.resume.records(stage) && !shared.opts.dry_run {
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
                shared
                    .report
                    .ended(id, observe::Status::Filtered, Some(name), None, &[]);
            }
            Err(CallError::Item(e)) => shared.fail(stage, id, path, e),
            Err(CallError::Cancelled) => shared.cancel(id, stage),
            Err(CallError::Fatal(e)) => {
                let first = {
                    let mut errors = shared
                        .stage_errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let first = errors.is_empty();
                    if !errors.contains(&e) {
                        errors.push(e.clone());
                    }
                    first
                };
                shared.stop.store(true, Ordering::Relaxed);
                if first {
                    shared.fail(stage, id, path, e);
                } else {
                    shared.cancel(id, stage);
                }
            }
        }
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
fn chains(pipeline: &Pipeline, ends_chain: &[bool]) -> Vec<Vec<usize>> {
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

/// A temp folder private to one run, removed when the run ends (or by the
/// next run, if this one was killed outright).
struct RunDir(PathBuf);

const RUN_DIR_PREFIX: &str = "conveyor-run";

impl RunDir {
    /// Without it, claims and the inputs shared with workers can't be kept:
    /// an unusable temp folder stops the run rather than turning checks off.
    fn create() -> Result<RunDir, BuildError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = std::env::temp_dir();
        cleanup::sweep_stale_scratch(&tmp, RUN_DIR_PREFIX);
        let dir = tmp.join(format!("{RUN_DIR_PREFIX}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::Setup {
            message: format!(
                "cannot create a scratch folder in {} (set TMPDIR to a folder you can write): {}",
                tmp.display(),
                crate::output::plain_io_reason(&e)
            ),
        })?;
        cleanup::watch_scratch(&dir);
        Ok(RunDir(dir))
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

/// Run a pipeline to the end (or until stopped) and summarise it.
pub fn run(pipeline: &Pipeline, opts: &RunOptions) -> Result<RunSummary, BuildError> {
    install_panic_hook();
    let jobs = opts
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let run_dir = RunDir::create()?;
    // The guard is shared with workers through the run's folder only when
    // workers write too.
    let workers = pipeline.stages.iter().any(|s| s.mode == Mode::Processes) && !opts.dry_run;
    let guard = if workers {
        crate::output::Guard::shared(run_dir.path()).map_err(|e| BuildError::Setup {
            message: format!(
                "cannot write in the scratch folder {}: {}",
                run_dir.path().display(),
                crate::output::plain_io_reason(&e)
            ),
        })?
    } else {
        crate::output::Guard::local(run_dir.path())
    };
    let n = pipeline.stages.len();
    let mut built = Vec::with_capacity(n);
    for def in &pipeline.stages {
        let ctx = crate::stages::BuildContext {
            stage: def.name.clone(),
            timeout: def.timeout,
            output: guard.clone(),
        };
        let b = (def.kind.build)(&def.options, &ctx).map_err(|message| BuildError::Stage {
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
        inputs: guard.inputs().clone(),
    };
    let scopes = built
        .iter()
        .filter_map(|b| match b {
            Built::Source(s) => s.scope().map(|sc| sc.skipping(&ctx.skip_dirs)),
            Built::Stage(_) => None,
        })
        .collect();
    guard.set_scopes(scopes).map_err(|e| BuildError::Setup {
        message: format!(
            "cannot write in the scratch folder {}: {}",
            run_dir.path().display(),
            crate::output::plain_io_reason(&e)
        ),
    })?;

    cleanup::watch_dirs(&ctx.skip_dirs);
    // One queue in front of each chain; sources and chain ends feed them.
    let collects: Vec<bool> = built
        .iter()
        .map(|b| matches!(b, Built::Stage(s) if s.collects()))
        .collect();
    let tag = format!(
        "{}{}",
        opts.state_tag,
        opts.shard.map(|s| s.tag()).unwrap_or_default()
    );
    let resume = resume::Resume::new(pipeline, &built, opts.force, &tag);
    // Gathering and journaling stages must hand their output to this
    // process, so a shared worker chain ends with them.
    let ends_chain: Vec<bool> = (0..n).map(|i| collects[i] || resume.records(i)).collect();
    let chains = chains(pipeline, &ends_chain);
    let mut txs: Vec<Option<Sender<Item>>> = vec![None; n];
    let mut rxs: Vec<Option<Receiver<Item>>> = vec![None; n];
    for chain in &chains {
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

    let started = Instant::now();
    let on_end = opts.on_item_end.as_ref().map(|f| {
        let f = Arc::clone(f);
        Box::new(move |l: &observe::Line| f(l)) as observe::ItemEndFn
    });
    let report =
        observe::Report::new(opts.report.as_deref(), on_end).map_err(|e| BuildError::Setup {
            message: format!("cannot write the report (--report): {e}"),
        })?;
    let trace = match &opts.trace {
        Some(path) => {
            Some(
                observe::Trace::create(path, started).map_err(|e| BuildError::Setup {
                    message: format!("cannot write the trace (--trace): {e}"),
                })?,
            )
        }
        None => None,
    };
    let shared = Shared {
        pipeline,
        stats: pipeline
            .stages
            .iter()
            .map(|d| {
                let mut s = StageStats::new(d);
                if d.auto {
                    s.workers = jobs;
                    s.mode = format!("{} auto", s.mode);
                }
                s
            })
            .collect(),
        permits: {
            let (give, take) = bounded(jobs);
            for _ in 0..jobs {
                let _ = give.send(());
            }
            Some((give, take))
        },
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
        report,
        trace,
        sources_left: std::sync::atomic::AtomicUsize::new(
            built
                .iter()
                .filter(|b| matches!(b, Built::Source(_)))
                .count(),
        ),
        opts,
    };
    let exe = supervisor::worker_exe();
    let processes: Vec<Option<supervisor::ChainProcesses>> = chains
        .iter()
        .map(|chain| {
            let defs: Vec<&crate::config::StageDef> =
                chain.iter().map(|&i| &pipeline.stages[i]).collect();
            // A dry run touches nothing: every stage plans in this process.
            (defs[0].mode == Mode::Processes && !opts.dry_run).then(|| {
                supervisor::ChainProcesses::new(
                    &defs,
                    exe.clone(),
                    Some(run_dir.path().to_path_buf()),
                )
            })
        })
        .collect();
    let all_done = AtomicBool::new(false);
    let heads: Vec<(String, Receiver<Item>)> = chains
        .iter()
        .filter_map(|c| {
            rxs[c[0]]
                .clone()
                .map(|rx| (pipeline.stages[c[0]].name.clone(), rx))
        })
        .collect();
    std::thread::scope(|outer| {
        let shared = &shared;
        let all_done = &all_done;
        // Progress, queue depths in the trace, and stalled queues in the log.
        outer.spawn(move || watch(shared, &heads, all_done));
        std::thread::scope(|scope| {
            for (i, b) in built.iter().enumerate() {
                if let Built::Source(src) = b {
                    let (ctx, src, out) =
                        (ctx.clone(), Arc::clone(src), std::mem::take(&mut outs[i]));
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
                let label: String = chain
                    .iter()
                    .map(|&i| pipeline.stages[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join("+");
                let collector: Option<&dyn Stage> = match &built[tail] {
                    Built::Stage(s) if collects[tail] => Some(s.as_ref()),
                    _ => None,
                };
                let workers = if def.auto { jobs } else { def.workers };
                for w in 0..workers {
                    let (rx, out, label) = (rx.clone(), out.clone(), label.clone());
                    let spawned = match (&processes[c], &built[head]) {
                        (Some(procs), _) => std::thread::Builder::new()
                            .name(format!("{}/process-{w}", def.name))
                            .spawn_scoped(scope, move || {
                                let mut slot = supervisor::Slot::new(procs, &opts.interrupt);
                                let pid = slot.pid_handle();
                                let track =
                                    || format!("{label}/pid-{}", pid.load(Ordering::Relaxed));
                                worker_loop(
                                    shared,
                                    chain,
                                    &mut |item| slot.call(item),
                                    collector,
                                    &track,
                                    rx,
                                    out,
                                );
                            }),
                        (None, Built::Stage(_)) => {
                            let stages: Vec<Arc<dyn Stage>> = chain
                                .iter()
                                .filter_map(|&i| match &built[i] {
                                    Built::Stage(s) => Some(Arc::clone(s)),
                                    Built::Source(_) => None,
                                })
                                .collect();
                            std::thread::Builder::new()
                                .name(format!("{}/thread-{w}", def.name))
                                .spawn_scoped(scope, move || {
                                    let track = || format!("{label}/thread-{w}");
                                    let dry = opts.dry_run;
                                    let mut call = |item| call_chain_in_thread(&stages, item, dry);
                                    worker_loop(
                                        shared, chain, &mut call, collector, &track, rx, out,
                                    )
                                })
                        }
                        (None, Built::Source(_)) => continue,
                    };
                    if let Err(e) = spawned {
                        // Without its workers the stage can't run: stop the
                        // run rather than leave upstream waiting.
                        shared.stop.store(true, Ordering::Relaxed);
                        let name = PathBuf::from(&def.name);
                        shared.fail(head, u64::MAX, name, format!("cannot start a thread: {e}"));
                    }
                }
            }
        });
        all_done.store(true, Ordering::Relaxed);
    });
    shared.report.finish();
    if let Some(t) = &shared.trace {
        t.finish();
    }
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
        let finished = if opts.dry_run {
            stage.plan_finish()
        } else {
            stage.finish(&run)
        };
        match finished {
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
    if !opts.dry_run {
        cleanup::sweep();
    }
    let elapsed = started.elapsed();
    let mut summary = summarise(shared, elapsed);
    summary.dry_run = opts.dry_run;
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

/// The run's observer thread: every `progress_every`, report progress,
/// record queue depths in the trace, and log queues that stay full.
fn watch(shared: &Shared<'_>, heads: &[(String, Receiver<Item>)], done: &AtomicBool) {
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
        let total = shared.scanned.load(Ordering::Relaxed);
        let known = shared.sources_left.load(Ordering::Relaxed) == 0;
        if let Some(progress) = &shared.opts.on_progress {
            let snapshot: Vec<observe::StageProgress> = shared
                .stats
                .iter()
                .map(|s| observe::StageProgress {
                    stage: s.name.clone(),
                    done: s.items_out.load(Ordering::Relaxed)
                        + s.failed.load(Ordering::Relaxed)
                        + s.filtered.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                    in_flight: s.in_flight.load(Ordering::Relaxed),
                    total,
                    total_known: known,
                    elapsed: start.elapsed().as_secs_f64(),
                })
                .collect();
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
                match shared.resume.up_to_date(idx, &item) {
                    Some(outputs) => {
                        shared.up_to_date.fetch_add(1, Ordering::Relaxed);
                        shared.report.single(observe::Line {
                            path: item.path.clone(),
                            status: observe::Status::UpToDate,
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
                        shared.report.started(id, &item.path);
                        let sending = Instant::now();
                        shared.forward(*item, &outs);
                        blocked += sending.elapsed();
                    }
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
    stats.add_busy(started.elapsed().saturating_sub(blocked));
    shared.sources_left.fetch_sub(1, Ordering::Relaxed);
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
        dry_run: false,
        written: shared
            .written
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        elapsed,
    }
}

#[cfg(test)]
mod tests;
