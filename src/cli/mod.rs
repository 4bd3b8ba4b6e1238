//! The command line: clap types and value parsers ([`args`], [`parse`]), the
//! code behind each subcommand, and what goes to the terminal (progress
//! bars, colours, the summary). Flags are parsed first, then each command
//! works out what depends on several of them, so handlers stay short.
//! `main` only maps the result to an exit code.

mod advise;
pub mod args;
mod commands;
mod init;
pub mod parse;
mod progress;
mod run;
mod signals;
mod slurm;
mod style;
mod summary;
mod watch;

pub use args::{Cli, Command, PipelineArgs, ProgressMode, RunArgs, RunFlags, SlurmArgs, WatchArgs};

use crate::config;
use crate::stages::Registry;
use style::stderr_style;

/// How a command ended; the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every item succeeded.
    Ok = 0,
    /// The run finished but some items failed.
    ItemsFailed = 1,
    /// The pipeline file or the command line is invalid; nothing ran.
    Invalid = 2,
    /// Interrupted by Ctrl-C (SIGINT).
    Interrupted = 130,
    /// Asked to stop by SIGTERM (a supervisor, `kill`, a scheduler).
    Terminated = 143,
    /// The terminal went away (SIGHUP).
    HungUp = 129,
}

/// Load and check the pipeline, printing its warnings, or its errors.
fn load(args: &PipelineArgs, registry: &Registry) -> Result<config::Loaded, Exit> {
    load_with(args, Vec::new(), registry)
}

/// [`load`], with changes beyond `--set` and `--mode` (the paths of `run`).
fn load_with(
    args: &PipelineArgs,
    extra: Vec<config::Override>,
    registry: &Registry,
) -> Result<config::Loaded, Exit> {
    let mut overrides = args.overrides();
    overrides.extend(extra);
    match config::load(&args.pipeline, &overrides, registry) {
        Ok(loaded) => {
            if !loaded.warnings.items.is_empty() {
                eprint!("{}", loaded.warnings.render(stderr_style()));
            }
            Ok(loaded)
        }
        Err(diags) => {
            eprint!("{}", diags.render(stderr_style()));
            Err(Exit::Invalid)
        }
    }
}

/// Parse the command line and run it with the built-in stage kinds.
pub fn main() -> Exit {
    main_with(Registry::builtin())
}

/// `-v` logs the engine's events, `-vv` more of them, on stderr.
fn init_logging(verbose: u8) {
    if verbose == 0 {
        return;
    }
    let level = if verbose == 1 {
        tracing::Level::INFO
    } else {
        tracing::Level::DEBUG
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(style::stderr_colours())
        .with_target(false)
        .try_init();
}

/// Like [`main`], with a registry that may hold extra stage kinds.
///
/// This also serves as a worker process for `mode = "processes"` when the
/// executable is started as one, so extra kinds work in workers too.
pub fn main_with(registry: Registry) -> Exit {
    crate::exec::worker::run_if_worker(&registry);
    // clap's own messages (a bad flag, `--help`) follow `--color` too, so
    // it is found before the rest is parsed.
    let clap_color = match style::color_in_args(std::env::args_os()) {
        Some(style::ColorChoice::Always) => clap::ColorChoice::Always,
        Some(style::ColorChoice::Never) => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    };
    let parsed = <Cli as clap::CommandFactory>::command()
        .color(clap_color)
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` come here too, on stdout.
            let code = if e.use_stderr() {
                Exit::Invalid
            } else {
                Exit::Ok
            };
            let _ = e.print();
            return code;
        }
    };
    style::choose(cli.color);
    init_logging(cli.verbose);
    match cli.command {
        Command::Run(args) => run::run(&args, &registry),
        Command::Watch(args) => watch::watch(&args, &registry),
        Command::Check(args) => commands::check(&args, &registry),
        Command::Advise(args) => advise::advise(&args, &registry),
        Command::Graph { pipeline, format } => commands::graph(&pipeline, format, &registry),
        Command::Slurm(args) => slurm::slurm(&args, &registry),
        Command::MergeReports { files } => commands::merge_reports(&files),
        Command::Schema => commands::schema(&registry),
        Command::Stages { kind } => commands::stages(kind.as_deref(), &registry),
        Command::Init { template } => init::init(template.as_deref()),
        Command::Completions { shell } => init::completions(shell),
        Command::Man => init::man(),
    }
}
