//! `conveyor run`: the flags worked out into one run's settings, then the
//! run, with progress, failures and the summary on stderr.

use std::error::Error;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::args::{ProgressMode, RunArgs, RunFlags};
use super::parse::ShardArg;
use super::progress::{Bars, Progress, Show};
use super::style::{error_line, print_stdout, stderr_style};
use super::{Exit, load};
use crate::exec::shard::Shard;
use crate::exec::{self, ItemEndFn, RunOptions};
use crate::report::RunSummary;
use crate::stages::Registry;

/// The settings of a run that depend on more than one flag, or on the
/// environment (the "high" arguments).
struct Settings {
    shard: Option<Shard>,
    show: Show,
}

impl Settings {
    /// Resolve `--shard auto` from the scheduler's variables (and
    /// `--shards`), and choose how progress is shown.
    fn of(args: &RunArgs) -> Result<Settings, Box<dyn Error + Send + Sync>> {
        let shard = match args.shard {
            None => None,
            Some(ShardArg::Fixed(s)) => Some(s),
            Some(ShardArg::Auto) => {
                let env = |k: &str| std::env::var(k).ok();
                Some(Shard::from_env(env, args.shards)?)
            }
        };
        Ok(Settings {
            shard,
            show: show_of(args),
        })
    }
}

/// How progress is shown, from `--progress`, `--quiet` and whether stderr
/// is a terminal.
pub(super) fn show_of(flags: &RunFlags) -> Show {
    match flags.progress {
        ProgressMode::Auto if !flags.quiet && std::io::stderr().is_terminal() => Show::Bars,
        ProgressMode::Json => Show::Json,
        _ => Show::Nothing,
    }
}

/// Ctrl-C (or SIGTERM) once: finish the items in progress; twice: stop at
/// once. Returns the flag the run watches. The bars are cleared before the
/// process exits, so none is left frozen on the screen; the first notice is
/// printed above them, so they redraw below it rather than over it.
pub(super) fn interrupt_flag(bars: Option<Arc<Bars>>) -> Arc<AtomicBool> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupt);
    let count = AtomicUsize::new(0);
    // Fails only if a handler is already set (embedding programs).
    let _ = ctrlc::set_handler(move || {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            flag.store(true, Ordering::SeqCst);
            let notice = "interrupted: finishing the items in progress (again to stop at once)";
            match &bars {
                Some(b) => b.println(notice),
                None => eprintln!("\n{notice}"),
            }
        } else {
            if let Some(b) = &bars {
                b.finish();
            }
            crate::exec::cleanup::exit_now(Exit::Interrupted as i32);
        }
    });
    interrupt
}

/// How a finished run ends the process.
fn exit_of(summary: &RunSummary) -> Exit {
    if summary.interrupted {
        Exit::Interrupted
    } else if summary.failed > 0 || summary.cancelled > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Ok
    }
}

pub(super) fn run(args: &RunArgs, registry: &Registry) -> Exit {
    let settings = match Settings::of(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Invalid;
        }
    };
    let loaded = match load(&args.pipeline, registry) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let style = stderr_style();
    let names: Vec<String> = loaded
        .pipeline
        .stages
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let Progress {
        bars,
        on_failure,
        on_progress,
        every,
    } = Progress::new(settings.show, &names, style);
    let interrupt = interrupt_flag(bars.clone());
    let on_item_end: Option<ItemEndFn> = args
        .dry_run
        .then(|| Arc::new(|line: &_| print_stdout(&super::summary::dry_run_lines(line))) as _);
    if args.memory.is_some() {
        // A bound was asked for: freed images are reused by every thread,
        // or the peak would follow the threads, not the budget.
        crate::exec::budget::share_freed_memory();
    }
    let opts = RunOptions {
        dry_run: args.dry_run,
        shard: settings.shard,
        jobs: args.jobs.map(|j| j as usize),
        memory: args.memory,
        on_item_end,
        force: args.force,
        state_tag: String::new(),
        report: args.report.clone(),
        trace: args.trace.clone(),
        on_progress,
        progress_every: every,
        interrupt,
        on_failure,
        ..RunOptions::default()
    };
    let summary = match exec::run(&loaded.pipeline, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", error_line(style, &e));
            return Exit::Invalid;
        }
    };
    // Cleared before the summary, so it is not drawn over.
    if let Some(b) = &bars {
        b.finish();
    }
    if !args.quiet {
        eprint!("{}", super::summary::table(&summary));
    }
    exit_of(&summary)
}
