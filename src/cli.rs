//! The command line: clap types (doc comments are the help text) and the
//! code behind each subcommand. `main` only maps the result to an exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::{Parser, Subcommand};

use crate::config::{self, Override, Style};
use crate::exec::observe::{Bars, ProgressMode};
use crate::exec::{self, RunOptions};
use crate::graph::{self, GraphFormat};
use crate::stages::Registry;

/// Run batch pipelines (scan, decode, resize, encode, write ...) described
/// in TOML files.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version, about, propagate_version = true)]
pub struct Cli {
    /// Log the engine's own events on stderr: -v worker starts and losses,
    /// -vv also retries and full queues.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline; failures as they happen and a summary on stderr.
    Run(RunArgs),
    /// Check a pipeline without running it; report every error.
    Check(PipelineArgs),
    /// Show the stage graph of a pipeline.
    Graph {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = clap::builder::TypedValueParser::try_map(clap::builder::PossibleValuesParser::new(GraphFormat::NAMES), |s| s.parse::<GraphFormat>()))]
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
}

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Override a stage option: STAGE.KEY=VALUE (VALUE in TOML syntax; text
    /// that is not TOML is taken as a string). Repeatable.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    pub set: Vec<String>,
    /// Run a stage as inline, threads or processes: STAGE=MODE, or MODE for
    /// every stage. Repeatable.
    #[arg(long = "mode", value_name = "STAGE=MODE")]
    pub mode: Vec<String>,
}

impl PipelineArgs {
    fn overrides(&self) -> Vec<Override> {
        // --mode first, so an explicit --set STAGE.mode wins.
        let mut v: Vec<Override> = self.mode.iter().cloned().map(Override::Mode).collect();
        v.extend(self.set.iter().cloned().map(Override::Set));
        v
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Print only failures, no summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Redo every item, even those whose outputs are up to date.
    #[arg(long)]
    pub force: bool,
    /// Write a JSON line per item to FILE: path, status, failing stage and
    /// reason, outputs, milliseconds per stage.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a Chrome trace to FILE (open it in ui.perfetto.dev).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Process only slice I of N of the input (0-based), chosen by a stable
    /// hash of each file's path; `auto` reads Slurm's SLURM_ARRAY_TASK_ID and
    /// SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with --shards.
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<String>,
    /// The shard count for `--shard auto` in a Kubernetes indexed job.
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// How many items stages with `workers = "auto"` may process at once,
    /// all together, 1 to 1024 (default: the CPU count).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Plan only: list what each stage would see and which files would be
    /// written or are up to date, without decoding or writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress on stderr: bars on a terminal (auto), none, or JSON lines.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
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

/// How a command ended; the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every item succeeded.
    Ok = 0,
    /// The run finished but some items failed.
    ItemsFailed = 1,
    /// The pipeline file or the command line is invalid; nothing ran.
    Invalid = 2,
    /// Interrupted by Ctrl-C or SIGTERM.
    Interrupted = 130,
}

fn stderr_style() -> Style {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Style::COLOR
    } else {
        Style::PLAIN
    }
}

/// Write to stdout; a closed pipe (`conveyor stages | head`) is not an error.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn load(args: &PipelineArgs, registry: &Registry) -> Result<config::Loaded, Exit> {
    match config::load(&args.pipeline, &args.overrides(), registry) {
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

/// Like [`main`], with a registry that may hold extra stage kinds.
///
/// This also serves as a worker process for `mode = "processes"` when the
/// executable is started as one, so extra kinds work in workers too.
pub fn main_with(registry: Registry) -> Exit {
    crate::exec::worker::run_if_worker(&registry);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Invalid
            } else {
                Exit::Ok
            };
            let _ = e.print();
            return code;
        }
    };
    if cli.verbose > 0 {
        let level = if cli.verbose == 1 {
            tracing::Level::INFO
        } else {
            tracing::Level::DEBUG
        };
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(level)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_target(false)
            .try_init();
    }
    match cli.command {
        Command::Run(args) => run(&args, &registry),
        Command::Check(args) => match load(&args, &registry) {
            Ok(loaded) => {
                let p = &loaded.pipeline;
                eprintln!(
                    "{}: ok ({} stages)",
                    args.pipeline.display(),
                    p.stages.len()
                );
                Exit::Ok
            }
            Err(code) => code,
        },
        Command::Graph { pipeline, format } => match load(&pipeline, &registry) {
            Ok(loaded) => {
                print_stdout(&graph::render(&loaded.pipeline, format));
                Exit::Ok
            }
            Err(code) => code,
        },
        Command::Slurm(args) => slurm(&args, &registry),
        Command::MergeReports { files } => {
            let mut out = std::io::stdout().lock();
            match crate::cluster::merge_reports(&files, Some(&mut out)) {
                Ok(m) => {
                    eprintln!("{}", m.line());
                    if m.failed > 0 {
                        Exit::ItemsFailed
                    } else {
                        Exit::Ok
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::Invalid
                }
            }
        }
        Command::Schema => {
            let schema = crate::schema::pipeline_schema(&registry);
            let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
            print_stdout(&format!("{text}\n"));
            Exit::Ok
        }
        Command::Stages { kind } => match kind {
            None => {
                print_stdout(&crate::describe::list(&registry));
                Exit::Ok
            }
            Some(k) => match registry.get(&k) {
                Some(spec) => {
                    print_stdout(&crate::describe::kind(spec));
                    Exit::Ok
                }
                None => {
                    let hint = crate::suggest::suggest(&k, registry.names())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    eprintln!("error: no stage kind `{k}`{hint}; `conveyor stages` lists them");
                    Exit::Invalid
                }
            },
        },
    }
}

fn run(args: &RunArgs, registry: &Registry) -> Exit {
    let shard = match args.shard.as_deref() {
        None => None,
        Some("auto") => {
            match exec::shard::Shard::from_env(|k| std::env::var(k).ok(), args.shards) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::Invalid;
                }
            }
        }
        Some(text) => match exec::shard::Shard::parse(text) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: --shard {e}");
                return Exit::Invalid;
            }
        },
    };
    let loaded = match load(&args.pipeline, registry) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupt);
        let count = AtomicUsize::new(0);
        // Fails only if a handler is already set (embedding programs).
        let _ = ctrlc::set_handler(move || {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                flag.store(true, Ordering::SeqCst);
                eprintln!("\ninterrupted: finishing the items in progress (again to stop at once)");
            } else {
                crate::exec::cleanup::exit_now(Exit::Interrupted as i32);
            }
        });
    }
    let style = stderr_style();
    let bars =
        (args.progress == ProgressMode::Auto && !args.quiet && std::io::stderr().is_terminal())
            .then(|| {
                let names: Vec<String> = loaded
                    .pipeline
                    .stages
                    .iter()
                    .map(|s| s.name.clone())
                    .collect();
                Arc::new(Bars::new(&names))
            });
    let on_failure: Box<dyn Fn(&crate::report::Failure) + Send + Sync> = match &bars {
        Some(b) => {
            let b = Arc::clone(b);
            Box::new(move |f| b.println(&format!("{}error{}: {f}", style.error, style.reset)))
        }
        None => Box::new(move |f| eprintln!("{}error{}: {f}", style.error, style.reset)),
    };
    let (on_progress, every): (Option<exec::ProgressFn>, _) = match (&bars, args.progress) {
        (Some(b), _) => {
            let b = Arc::clone(b);
            (
                Some(Box::new(move |s, finished| b.update(s, finished))),
                100,
            )
        }
        (None, ProgressMode::Json) => (
            Some(Box::new(|stages: &[exec::observe::StageProgress], _| {
                let mut err = std::io::stderr().lock();
                for s in stages {
                    if let Ok(line) = serde_json::to_string(s) {
                        let _ = writeln!(err, "{line}");
                    }
                }
            })),
            250,
        ),
        _ => (None, 250),
    };
    let on_item_end: Option<exec::ItemEndFn> = args.dry_run.then(|| {
        Arc::new(|line: &exec::observe::Line| {
            use exec::observe::Status;
            let mut text = String::new();
            match line.status {
                Status::Ok if line.outputs.is_empty() => {
                    text = format!("process     {}\n", crate::item::escape_path(&line.path));
                }
                Status::Ok => {
                    for o in &line.outputs {
                        text.push_str(&format!("write       {}\n", crate::item::escape_path(o)));
                    }
                }
                Status::UpToDate => {
                    for o in &line.outputs {
                        text.push_str(&format!("up to date  {}\n", crate::item::escape_path(o)));
                    }
                }
                Status::Filtered => {
                    text = format!("filtered    {}\n", crate::item::escape_path(&line.path))
                }
                Status::Failed | Status::Cancelled => {}
            }
            print_stdout(&text);
        }) as exec::ItemEndFn
    });
    let opts = RunOptions {
        dry_run: args.dry_run,
        shard,
        jobs: args.jobs.map(|j| j as usize),
        on_item_end,
        force: args.force,
        state_tag: String::new(),
        report: args.report.clone(),
        trace: args.trace.clone(),
        on_progress,
        progress_every: std::time::Duration::from_millis(every),
        interrupt,
        on_failure,
    };
    let summary = match exec::run(&loaded.pipeline, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}error{}: {e}", style.error, style.reset);
            return Exit::Invalid;
        }
    };
    if let Some(b) = &bars {
        b.finish();
    }
    if !args.quiet {
        eprint!("{}", summary.table());
    }
    if summary.interrupted {
        Exit::Interrupted
    } else if summary.failed > 0 || summary.cancelled > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Ok
    }
}

fn slurm(args: &SlurmArgs, registry: &Registry) -> Exit {
    let loaded = match load(&args.pipeline, registry) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let jobs = args.jobs.map(|j| j as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut overrides = Vec::new();
    for m in &args.pipeline.mode {
        overrides.push("--mode".to_string());
        overrides.push(m.clone());
    }
    for s in &args.pipeline.set {
        overrides.push("--set".to_string());
        overrides.push(s.clone());
    }
    let p = &loaded.pipeline;
    let script = crate::cluster::sbatch_script(
        p,
        &args.pipeline.pipeline,
        args.shards,
        jobs,
        &args.dir,
        &overrides,
    );
    if !args.submit {
        print_stdout(&script);
        return Exit::Ok;
    }
    let reports = args.dir.join("reports");
    for d in [args.dir.join("logs"), reports.clone()] {
        if let Err(e) = std::fs::create_dir_all(&d) {
            eprintln!("error: cannot create {}: {e}", d.display());
            return Exit::Invalid;
        }
    }
    // Reports of an earlier submission would be merged with this one's.
    if let Ok(entries) = std::fs::read_dir(&reports) {
        let prefix = format!("{}-shard-", p.name);
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let file = args.dir.join(format!("{}.sbatch", p.name));
    if let Err(e) = std::fs::write(&file, &script) {
        eprintln!("error: cannot write {}: {e}", file.display());
        return Exit::Invalid;
    }
    let mut cmd = std::process::Command::new("sbatch");
    cmd.arg("--parsable");
    if args.wait {
        cmd.arg("--wait");
    }
    let out = match cmd.arg(&file).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot run sbatch: {e} (is Slurm installed here?)");
            return Exit::Invalid;
        }
    };
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !args.wait {
        if !out.status.success() {
            eprintln!(
                "error: sbatch failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Exit::Invalid;
        }
        println!("{job}");
        eprintln!(
            "submitted array job {job}: {} tasks, script {}",
            args.shards,
            file.display()
        );
        return Exit::Ok;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&reports)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let merged = match crate::cluster::merge_reports(&files, None) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::ItemsFailed;
        }
    };
    eprintln!(
        "array job {job}: {} of {} shard reports",
        files.len(),
        args.shards
    );
    eprintln!("{}", merged.line());
    if files.len() as u32 != args.shards || !out.status.success() {
        eprintln!(
            "error: not every task finished well (see {})",
            args.dir.join("logs").display()
        );
        return Exit::ItemsFailed;
    }
    if merged.failed > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Ok
    }
}
