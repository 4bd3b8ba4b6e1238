//! A run from start to end: build the stages and the output guard, plan the
//! chains and queues, start the sources and the workers of every chain,
//! let items stream through, then let gathering stages write their files and
//! summarise.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::call;
use super::lane::{Lane, worker_loop};
use super::plan::{self, Queues, RunDir, chains};
use super::source::run_source;
use super::state::Shared;
use super::{BuildError, RunOptions, cleanup, monitor, observe, resume, supervisor};
use crate::config::{Mode, Pipeline, StageDef};
use crate::item::Item;
use crate::output::{Guard, plain_io_reason};
use crate::report::{Failure, RunSummary, StageMode, StageStats};
use crate::stage::{Built, Source, SourceContext, Stage};

/// Run a pipeline to the end (or until stopped) and summarise it.
pub fn run(pipeline: &Pipeline, opts: &RunOptions) -> Result<RunSummary, BuildError> {
    call::install_panic_hook();
    let jobs = opts.jobs_or_cpus();
    let run_dir = RunDir::create()?;
    let (built, ctx, guard) = build(pipeline, opts, &run_dir)?;
    let built = if opts.dry_run {
        plan::planning(built)
    } else {
        built
    };
    cleanup::watch_dirs(&ctx.skip_dirs);
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
    if !opts.dry_run {
        // An output an earlier run made for a photo that is still as it was
        // stays that photo's: another source of this run (a path named
        // from outside the root, another root writing into the same
        // folder) that would take its name fails instead of replacing it,
        // so the next run never finds a wrong file "up to date".
        for (writer, source, outputs) in resume.made_before() {
            for out in outputs {
                guard.claim_earlier(out, &pipeline.stages[writer].name, &source);
            }
        }
    }
    // Gathering and journaling stages must hand their output to this
    // process, so a shared worker chain ends with them.
    let ends_chain: Vec<bool> = (0..built.len())
        .map(|i| collects[i] || resume.records(i))
        .collect();
    let chains = chains(pipeline, &ends_chain);
    let queues = Queues::new(pipeline, &chains, jobs);
    let started = Instant::now();
    let shared = shared_state(pipeline, opts, jobs, &resume, &built, &collects, started)?;
    let processes = chain_processes(pipeline, opts, &chains, &built, &run_dir, jobs);
    let graph = Graph {
        built: &built,
        collects: &collects,
        chains: &chains,
        processes: &processes,
        jobs,
    };
    execute(&shared, &graph, &ctx, queues);
    shared.report.finish();
    if let Some(t) = &shared.trace {
        t.finish();
    }
    finish_gathering(&shared, &graph);
    // Workers killed mid-write (timeouts, crashes, interrupts) leave temp
    // files; every worker is gone now, so they can go too.
    if !opts.dry_run {
        cleanup::sweep();
    }
    let mut summary = shared.into_summary(started.elapsed());
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

/// The parts of a planned run that its threads read.
struct Graph<'a> {
    built: &'a [Built],
    collects: &'a [bool],
    chains: &'a [Vec<usize>],
    processes: &'a [Option<supervisor::ChainProcesses>],
    jobs: usize,
}

fn scratch_error(run_dir: &RunDir, e: &std::io::Error) -> BuildError {
    BuildError::Setup {
        message: format!(
            "cannot write in the scratch folder {}: {}",
            run_dir.path().display(),
            plain_io_reason(e)
        ),
    }
}

/// Build every stage with the run's output guard, and tell the guard what
/// the sources read.
fn build(
    pipeline: &Pipeline,
    opts: &RunOptions,
    run_dir: &RunDir,
) -> Result<(Vec<Built>, SourceContext, Guard), BuildError> {
    // The guard is shared with workers through the run's folder only when
    // workers write too.
    let workers = pipeline.stages.iter().any(|s| s.mode == Mode::Processes) && !opts.dry_run;
    let guard = if workers {
        Guard::shared(run_dir.path()).map_err(|e| scratch_error(run_dir, &e))?
    } else {
        Guard::local(run_dir.path())
    };
    let mut built = Vec::with_capacity(pipeline.stages.len());
    for def in &pipeline.stages {
        let ctx = crate::stage::BuildContext {
            stage: def.name.clone(),
            timeout: def.timeout,
            output: guard.clone(),
            in_worker: false,
        };
        let b = (def.kind.build)(&def.options, &ctx).map_err(|e| BuildError::Stage {
            stage: def.name.clone(),
            message: e.to_string(),
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
        hold: opts.hold.clone(),
    };
    let scopes = built
        .iter()
        .flat_map(|b| match b {
            Built::Source(s) => s.scopes(),
            Built::Stage(_) => Vec::new(),
        })
        .map(|sc| sc.skipping(&ctx.skip_dirs))
        .collect();
    guard
        .set_scopes(scopes)
        .map_err(|e| scratch_error(run_dir, &e))?;
    Ok((built, ctx, guard))
}

fn shared_state<'a>(
    pipeline: &'a Pipeline,
    opts: &'a RunOptions,
    jobs: usize,
    resume: &'a resume::Resume,
    built: &[Built],
    collects: &[bool],
    started: Instant,
) -> Result<Shared<'a>, BuildError> {
    let on_end = opts.on_item_end.as_ref().map(|f| {
        let f = Arc::clone(f);
        Box::new(move |l: &observe::Line| f(l)) as observe::ItemEndFn
    });
    // Only a pipeline that decodes images has their bytes to budget.
    let decodes = pipeline.stages.iter().any(|d| {
        d.kind.output == crate::stage::Output::Fixed(crate::item::PayloadType::Image)
            && !d.kind.accepts.contains(crate::item::PayloadType::Image)
    });
    let budget = (decodes && !opts.dry_run).then(|| {
        Arc::new(super::budget::Budget::new(
            opts.memory.unwrap_or_else(super::budget::default_limit),
        ))
    });
    let report = observe::Report::new(opts.report.as_deref(), opts.report_mode, on_end)
        .map_err(|e| BuildError::Setup {
            message: format!("cannot write the report (--report): {e}"),
        })?
        .with_budget(budget.clone());
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
    Ok(Shared {
        pipeline,
        stats: pipeline
            .stages
            .iter()
            .map(|d| {
                let (mode, workers) = if d.kind.is_source() {
                    (StageMode::Source, d.workers)
                } else if d.auto {
                    (StageMode::Auto(d.mode.name()), jobs)
                } else {
                    (StageMode::Fixed(d.mode.name()), d.workers)
                };
                StageStats::new(&d.name, d.kind.name, mode, workers)
            })
            .collect(),
        cores: crate::cores::Cores::new(jobs),
        status: Mutex::default(),
        failures: Mutex::default(),
        stop: AtomicBool::new(false),
        interrupt: &opts.interrupt,
        next_id: AtomicU64::new(0),
        scanned: AtomicU64::new(0),
        stage_errors: Mutex::default(),
        written: Mutex::default(),
        resume,
        up_to_date: AtomicU64::new(0),
        up_to_date_items: collects.iter().any(|&c| c).then(Mutex::default),
        made_items: collects.iter().any(|&c| c).then(Mutex::default),
        report,
        budget,
        trace,
        sources_left: AtomicUsize::new(
            built
                .iter()
                .filter(|b| matches!(b, Built::Source(_)))
                .count(),
        ),
        opts,
    })
}

/// The worker processes of each chain in processes mode (none in a dry
/// run: every stage plans in this process, touching nothing).
fn chain_processes(
    pipeline: &Pipeline,
    opts: &RunOptions,
    chains: &[Vec<usize>],
    built: &[Built],
    run_dir: &RunDir,
    jobs: usize,
) -> Vec<Option<supervisor::ChainProcesses>> {
    let exe = supervisor::worker_exe();
    let idle = |i: &usize| matches!(&built[*i], Built::Stage(s) if s.passes_through());
    let mut processes: Vec<Option<supervisor::ChainProcesses>> = chains
        .iter()
        .map(|chain| {
            let defs: Vec<&StageDef> = chain.iter().map(|&i| &pipeline.stages[i]).collect();
            let work = !chain.iter().all(idle);
            // Each worker's share of the cores: auto chains have one
            // worker per job, so a share of one.
            let workers = if defs[0].auto { jobs } else { defs[0].workers };
            let threads = (jobs / workers.max(1)).max(1);
            (defs[0].mode == Mode::Processes && !opts.dry_run && work).then(|| {
                supervisor::ChainProcesses::new(
                    &defs,
                    exe.clone(),
                    Some(run_dir.path().to_path_buf()),
                    threads,
                )
            })
        })
        .collect();
    let in_workers: Vec<bool> = processes.iter().map(Option::is_some).collect();
    let gathers = |i: usize| matches!(&built[i], Built::Stage(s) if s.collects());
    let hands_over = plan::hands_over(pipeline, chains, &in_workers, &gathers);
    for (p, hand_over) in processes.iter_mut().zip(hands_over) {
        if let Some(p) = p {
            p.hand_over = hand_over;
        }
    }
    processes
}

/// Start the sources and every chain's workers; return when all are done.
fn execute(shared: &Shared<'_>, graph: &Graph<'_>, ctx: &SourceContext, mut queues: Queues) {
    let pipeline = shared.pipeline;
    let all_done = AtomicBool::new(false);
    let heads: Vec<(String, Receiver<Item>)> = graph
        .chains
        .iter()
        .filter_map(|c| {
            queues.rxs[c[0]]
                .clone()
                .map(|rx| (pipeline.stages[c[0]].name.clone(), rx))
        })
        .collect();
    std::thread::scope(|outer| {
        let all_done = &all_done;
        // Progress, queue depths in the trace, and stalled queues in the log.
        outer.spawn(move || monitor::watch(shared, &heads, all_done));
        std::thread::scope(|scope| {
            for (i, b) in graph.built.iter().enumerate() {
                if let Built::Source(src) = b {
                    let out = std::mem::take(&mut queues.outs[i]);
                    start_source(scope, shared, i, Arc::clone(src), ctx.clone(), out);
                }
            }
            for (c, chain) in graph.chains.iter().enumerate() {
                let (head, tail) = (chain[0], chain[chain.len() - 1]);
                let Some(rx) = queues.rxs[head].take() else {
                    continue;
                };
                let out = std::mem::take(&mut queues.outs[tail]);
                start_chain(scope, shared, graph, c, rx, out);
            }
        });
        all_done.store(true, Ordering::Relaxed);
    });
}

fn start_source<'s, 'e>(
    scope: &'s std::thread::Scope<'s, 'e>,
    shared: &'s Shared<'e>,
    i: usize,
    src: Arc<dyn Source>,
    ctx: SourceContext,
    out: Vec<Sender<Item>>,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("{}/source", shared.pipeline.stages[i].name))
        .spawn_scoped(scope, move || {
            run_source(shared, i, src.as_ref(), &ctx, out)
        });
    if let Err(e) = spawned {
        let name = PathBuf::from(&shared.pipeline.stages[i].name);
        shared.fail(i, u64::MAX, name, format!("cannot start a thread: {e}"));
    }
}

/// Start the workers of chain `c`: threads that call its stages here, or
/// threads that each drive a worker process.
fn start_chain<'s, 'e>(
    scope: &'s std::thread::Scope<'s, 'e>,
    shared: &'s Shared<'e>,
    graph: &'s Graph<'_>,
    c: usize,
    rx: Receiver<Item>,
    out: Vec<Sender<Item>>,
) {
    let chain = &graph.chains[c];
    let (head, tail) = (chain[0], chain[chain.len() - 1]);
    let def = &shared.pipeline.stages[head];
    if matches!(graph.built[head], Built::Source(_)) {
        return;
    }
    let label: String = chain
        .iter()
        .map(|&i| shared.pipeline.stages[i].name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let collector: Option<&dyn Stage> = match &graph.built[tail] {
        Built::Stage(s) if graph.collects[tail] => Some(s.as_ref()),
        _ => None,
    };
    let stages: Vec<Arc<dyn Stage>> = chain
        .iter()
        .filter_map(|&i| match &graph.built[i] {
            Built::Stage(s) => Some(Arc::clone(s)),
            Built::Source(_) => None,
        })
        .collect();
    let workers = if def.auto { graph.jobs } else { def.workers };
    for w in 0..workers {
        let lane = Lane {
            chain,
            collector,
            rx: rx.clone(),
            outs: out.clone(),
        };
        let (label, stages) = (label.clone(), stages.clone());
        let spawned = match &graph.processes[c] {
            Some(procs) => std::thread::Builder::new()
                .name(format!("{}/process-{w}", def.name))
                .spawn_scoped(scope, move || {
                    let mut slot = supervisor::Slot::new(procs, &shared.opts.interrupt);
                    let pid = slot.pid_handle();
                    let track = || format!("{label}/pid-{}", pid.load(Ordering::Relaxed));
                    worker_loop(shared, &lane, &mut |item| slot.call(item), &track);
                }),
            None => std::thread::Builder::new()
                .name(format!("{}/thread-{w}", def.name))
                .spawn_scoped(scope, move || {
                    crate::cores::enter(Arc::clone(&shared.cores));
                    let track = || format!("{label}/thread-{w}");
                    let mut call = |item| call::call_chain_in_thread(&stages, item);
                    worker_loop(shared, &lane, &mut call, &track)
                }),
        };
        if let Err(e) = spawned {
            // Without its workers the stage can't run: stop the run rather
            // than leave upstream waiting.
            shared.stop.store(true, Ordering::Relaxed);
            let name = PathBuf::from(&def.name);
            shared.fail(head, u64::MAX, name, format!("cannot start a thread: {e}"));
        }
    }
}

/// Gathering stages write their results once everything is through.
fn finish_gathering(shared: &Shared<'_>, graph: &Graph<'_>) {
    if shared.opts.partial {
        return;
    }
    let pipeline = shared.pipeline;
    for (i, b) in graph.built.iter().enumerate() {
        let Built::Stage(stage) = b else { continue };
        if !graph.collects[i] {
            continue;
        }
        let failures = shared
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let up_to_date: Vec<crate::stage::Kept> = shared
            .up_to_date_items
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
            .iter()
            .map(|(path, all)| shared.resume.kept(i, path, all))
            .collect();
        let made = shared
            .made_items
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        let run = crate::stage::Finish {
            failures: &failures,
            up_to_date: &up_to_date,
            made: &made,
        };
        let name = &pipeline.stages[i].name;
        match stage.finish(&run) {
            Ok(files) => shared
                .written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(files.into_iter().map(|f| (name.clone(), f))),
            Err(e) => {
                let msg = format!("stage `{name}` could not write its result: {e}");
                (shared.opts.on_failure)(&Failure {
                    path: PathBuf::from(name),
                    stage: name.clone(),
                    reason: msg.clone(),
                });
                shared.stage_error(&msg);
            }
        }
    }
}
