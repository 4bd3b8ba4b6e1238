//! The command line as clap parses it (the "low" arguments): doc comments
//! are the help text. Values are typed by the parsers in [`super::parse`];
//! what depends on several flags or on the environment is worked out later,
//! by each command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::parse::{self, ShardArg};
pub use super::style::ColorChoice;
use crate::config::Override;
use crate::graph::GraphFormat;

/// The exit codes, for `--help` and the man page.
const EXIT_CODES: &str = "Exit status:
  0    every item succeeded (or was up to date)
  1    the run finished but some items failed
  2    the pipeline file or the command line is invalid, or a check before work failed: nothing ran
  130  interrupted by Ctrl-C (SIGINT); 143 SIGTERM; 129 SIGHUP: the items in progress finish first";

/// Run batch pipelines (scan, decode, resize, encode, write ...) described
/// in TOML files.
#[derive(Debug, Parser)]
#[command(
    name = "conveyor",
    version,
    about,
    propagate_version = true,
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Log the engine's own events on stderr: -v worker starts and losses,
    /// -vv also retries and full queues.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Colours in messages on stderr: auto (on a terminal, unless NO_COLOR
    /// is set), always, never.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        default_value = "auto",
        global = true
    )]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline; failures as they happen and a summary on stderr.
    Run(RunArgs),
    /// Run a pipeline, then keep watching its scan folders and process
    /// each new or changed file once it is completely written.
    Watch(WatchArgs),
    /// Measure each stage in each mode on a sample of the inputs and
    /// recommend `mode` and `workers`; nothing outside a temporary folder
    /// is written (but the `--apply` file).
    Advise(AdviseArgs),
    /// Check a pipeline without running it; report every error.
    Check(PipelineArgs),
    /// Show the stage graph of a pipeline.
    Graph {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Output format.
        #[arg(long, value_parser = parse::graph_format(), default_value = "text")]
        format: GraphFormat,
    },
    /// Print a JSON Schema of pipeline files, for editors (Taplo).
    Schema,
    /// Run a pipeline as a Slurm array job, one task per shard: print the
    /// sbatch script, or submit it.
    Slurm(SlurmArgs),
    /// Combine the JSON-lines reports of several shards; print the merged
    /// lines on stdout and the counts on stderr.
    MergeReports {
        /// Report files (`run --report`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List stage kinds, or show one kind's options.
    Stages {
        /// A kind to describe in full.
        kind: Option<String>,
    },
    /// Print a commented starter pipeline, or list them.
    Init {
        /// thumbnails, web-sizes, gallery, archive or webp; none: the list.
        template: Option<String>,
    },
    /// Print shell completions: `conveyor completions bash > ~/.local/share/bash-completion/completions/conveyor`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `conveyor man > ~/.local/share/man/man1/conveyor.1`.
    Man,
}

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Override a stage option: STAGE.KEY=VALUE (VALUE in TOML syntax; text
    /// that is not TOML is taken as a string). Repeatable.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE", value_parser = parse::set)]
    pub set: Vec<Override>,
    /// Run a stage as inline, threads or processes: STAGE=MODE, or MODE for
    /// every stage. Repeatable.
    #[arg(long = "mode", value_name = "STAGE=MODE", value_parser = parse::mode)]
    pub mode: Vec<Override>,
}

impl PipelineArgs {
    /// The changes to the pipeline, in the order they apply.
    pub fn overrides(&self) -> Vec<Override> {
        // --mode first, so an explicit --set STAGE.mode wins.
        self.mode.iter().chain(&self.set).cloned().collect()
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// Files and folders to process instead of the scan's root (the
    /// pipeline's one `scan` stage); `-` reads them from stdin, one per
    /// line. A folder is walked with the scan's rules; a file is taken as
    /// named.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// With `-`: the paths on stdin end with NUL, not newline (`find
    /// -print0`).
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Process only slice I of N of the input (0-based), chosen by a stable
    /// hash of each file's path; `auto` reads Slurm's SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shards.
    #[arg(long, value_name = "I/N|auto", value_parser = parse::shard)]
    pub shard: Option<ShardArg>,
    /// The shard count for `--shard auto` in a Kubernetes indexed job.
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Plan only: list what each stage would see and which files would be
    /// written or are up to date, without decoding or writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// `run`'s own flags sit beside the shared ones, which read as its own
/// (`args.quiet`), as they did before `watch` shared them.
impl std::ops::Deref for RunArgs {
    type Target = RunFlags;

    fn deref(&self) -> &RunFlags {
        &self.flags
    }
}

/// The flags `run` and `watch` share.
#[derive(Debug, clap::Args)]
pub struct RunFlags {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Print only failures, no summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Redo every item, even those whose outputs are up to date (`watch`:
    /// in its first run only).
    #[arg(long)]
    pub force: bool,
    /// Write a JSON line per item to FILE: path, status, failing stage and
    /// reason, outputs, milliseconds per stage (`watch`: one file for the
    /// whole watch, each batch's lines added).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a Chrome trace to FILE (open it in ui.perfetto.dev; `watch`:
    /// of its first run only).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// How many items stages with `workers = "auto"` may process at once,
    /// all together, 1 to 1024 (default: the CPU count).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Bytes of decoded images in flight at once (e.g. 2GiB; default: half
    /// the machine's memory), counted from each image's header before it
    /// is decoded; an image bigger than the whole budget runs alone.
    #[arg(long, value_name = "SIZE", value_parser = parse::memory)]
    pub memory: Option<u64>,
    /// Progress on stderr: bars on a terminal (auto), none, or JSON lines.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub flags: RunFlags,
    /// How long a new file's size and modification time must stay the same
    /// before it is taken, when no event said it was closed or moved in
    /// (e.g. 500ms, 2s).
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse::duration)]
    pub settle: std::time::Duration,
    /// When a source file is deleted, remove the files made of it (those
    /// its writers' journals record) and their journal lines; without it
    /// they stay.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, clap::Args)]
pub struct AdviseArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Files and folders to sample from instead of the scan's root.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// How many files to measure on, 1 to 10000: a deterministic choice
    /// spread over formats and sizes.
    #[arg(long, value_name = "N", default_value = "30", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sample: u32,
    /// Output: text for people, or JSON for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub format: AdviseFormat,
    /// Write a copy of the pipeline with the advice in it (a new file:
    /// an existing one is never replaced).
    #[arg(long, value_name = "FILE")]
    pub apply: Option<PathBuf>,
    /// The core budget to advise for, 1 to 1024 (default: the CPU count).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
}

/// `advise --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AdviseFormat {
    #[default]
    Text,
    Json,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, nothing otherwise.
    #[default]
    Auto,
    Never,
    /// One JSON object per stage per update on stderr.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Number of shards (array tasks).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: u32,
    /// CPUs per task, and the `--jobs` of each run, 1 to 1024 (default:
    /// this machine's CPU count).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Folder for the script, the tasks' logs and their reports.
    #[arg(long, value_name = "DIR", default_value = "conveyor-slurm")]
    pub dir: PathBuf,
    /// Submit the script with sbatch instead of printing it.
    #[arg(long)]
    pub submit: bool,
    /// With --submit: wait for every task, then print the merged summary and
    /// exit as `run` would.
    #[arg(long, requires = "submit")]
    pub wait: bool,
}
