//! `conveyor run`: the flags worked out into one run's settings, then the
//! run, with progress, failures and the summary on stderr.

use std::error::Error;
use std::io::IsTerminal;
use std::sync::Arc;

use super::args::{ProgressMode, RunArgs, RunFlags};
use super::parse::ShardArg;
use super::progress::{Progress, Show};
use super::signals::{self, Stop};
use super::style::{error_line, print_stdout, stderr_style};
use super::{Exit, load_with};
use crate::config::Override;
use crate::exec::shard::Shard;
use crate::exec::{self, RunOptions};
use crate::report::RunSummary;
use crate::stages::Registry;
use std::os::unix::ffi::OsStrExt;

/// The settings of a run that depend on more than one flag, or on the
/// environment (the "high" arguments).
struct Settings {
    shard: Option<Shard>,
    show: Show,
    /// The paths given on the command line (stdin's read), for the scan.
    paths: Option<Vec<String>>,
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
        let show = show_of(args);
        if args.null && !args.paths.iter().any(|p| p.as_os_str() == "-") {
            return Err("`-0` reads NUL-separated paths from stdin: give `-` as a path too".into());
        }
        let paths = if args.paths.is_empty() {
            None
        } else {
            Some(paths_given(
                &args.paths,
                args.null,
                &mut std::io::stdin().lock(),
            )?)
        };
        Ok(Settings { shard, show, paths })
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

/// The paths of `run PIPELINE PATH...`, with `-` replaced by those read
/// from `stdin` (lines, or NUL-ended with `-0`; empty ones skipped), as the
/// text a pipeline file can hold.
fn paths_given(
    args: &[std::path::PathBuf],
    null: bool,
    stdin: &mut dyn std::io::BufRead,
) -> Result<Vec<String>, Box<dyn Error + Send + Sync>> {
    let mut out = Vec::new();
    let mut read_stdin = false;
    for arg in args {
        if arg.as_os_str() == "-" {
            if std::mem::replace(&mut read_stdin, true) {
                continue;
            }
            let sep = if null { b'\0' } else { b'\n' };
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = stdin
                    .read_until(sep, &mut buf)
                    .map_err(|e| format!("cannot read paths from stdin: {e}"))?;
                if n == 0 {
                    break;
                }
                if buf.last() == Some(&sep) {
                    buf.pop();
                }
                if !null && buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                if buf.is_empty() {
                    continue;
                }
                out.push(path_text(std::ffi::OsStr::from_bytes(&buf))?);
            }
        } else {
            out.push(path_text(arg.as_os_str())?);
        }
    }
    if out.is_empty() {
        return Err("no paths were read from stdin".into());
    }
    Ok(out)
}

/// A path as text. A pipeline's paths are TOML text, so a name that is not
/// UTF-8 can't be given by itself; its folder can (names inside a walked
/// folder may be any bytes).
fn path_text(path: &std::ffi::OsStr) -> Result<String, Box<dyn Error + Send + Sync>> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        format!(
            "the path {} is not valid UTF-8, so it can't be named on the command line; give its folder instead",
            crate::item::escape_path(std::path::Path::new(path))
        )
        .into()
    })
}

/// With paths given, gathering stages keep their files: say so, once.
fn warn_gathering_kept(pipeline: &crate::config::Pipeline, style: crate::config::Style) {
    for s in &pipeline.stages {
        if let crate::stage::StagePaths::Gathers(path) = (s.kind.paths)(&s.options) {
            eprintln!(
                "{}warning{}: stage `{}` keeps {} as it is: with paths given it would list only them (run without paths to rewrite it)",
                style.warning,
                style.reset,
                s.name,
                crate::item::escape_path(&path)
            );
        }
    }
}

/// How a finished run ends the process.
fn exit_of(summary: &RunSummary, stop: &Stop) -> Exit {
    if summary.interrupted {
        stop.exit()
    } else if summary.failed > 0 || summary.cancelled > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Ok
    }
}

/// What `run` and `watch` both start with: bars for the pipeline's stages
/// (or the progress `show` asks for), signals turned into a stop, and the
/// run options the shared flags give.
pub(super) struct Started {
    pub bars: Option<Arc<super::progress::Bars>>,
    pub stop: Stop,
    pub opts: RunOptions,
}

pub(super) fn start(
    pipeline: &crate::config::Pipeline,
    show: Show,
    style: crate::config::Style,
    flags: &RunFlags,
) -> Started {
    let names: Vec<String> = pipeline.stages.iter().map(|s| s.name.clone()).collect();
    let Progress {
        bars,
        on_failure,
        on_progress,
        every,
    } = Progress::new(show, &names, style);
    let stop = signals::listen(bars.clone());
    if flags.memory.is_some() {
        // A bound was asked for: freed images are reused by every thread,
        // or the peak would follow the threads, not the budget; and none
        // is kept beyond glibc's own rule, which `--memory` can't count.
        crate::exec::heap::share_freed_memory();
    } else {
        crate::exec::heap::keep_freed_memory();
    }
    let opts = RunOptions {
        jobs: flags.jobs.map(|j| j as usize),
        memory: flags.memory,
        force: flags.force,
        report: flags.report.clone(),
        trace: flags.trace.clone(),
        on_progress,
        progress_every: every,
        interrupt: Arc::clone(&stop.flag),
        on_failure,
        ..RunOptions::default()
    };
    Started { bars, stop, opts }
}

pub(super) fn run(args: &RunArgs, registry: &Registry) -> Exit {
    let settings = match Settings::of(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Invalid;
        }
    };
    let extra: Vec<Override> = settings
        .paths
        .clone()
        .map(Override::Paths)
        .into_iter()
        .collect();
    let loaded = match load_with(&args.pipeline, extra, registry) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let style = stderr_style();
    let Started {
        bars,
        stop,
        mut opts,
    } = start(&loaded.pipeline, settings.show, style, args);
    opts.on_item_end = args
        .dry_run
        .then(|| Arc::new(|line: &_| print_stdout(&super::summary::dry_run_lines(line))) as _);
    let partial = settings.paths.is_some();
    if partial {
        warn_gathering_kept(&loaded.pipeline, style);
    }
    opts.partial = partial;
    opts.dry_run = args.dry_run;
    opts.shard = settings.shard;
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
    exit_of(&summary, &stop)
}
