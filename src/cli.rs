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
        #[arg(long, value_enum, default_value = "text")]
        format: GraphFormat,
    },
    /// Print a JSON Schema of pipeline files, for editors (Taplo).
    Schema,
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
    /// How many items stages with `workers = "auto"` may process at once,
    /// all together (default: the CPU count).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Plan only: list what each stage would see and which files would be
    /// written or are up to date, without decoding or writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress on stderr: bars on a terminal (auto), none, or JSON lines.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
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
                    let hint = config::suggest(&k, registry.names())
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
                    text = format!("process     {}\n", line.path.display());
                }
                Status::Ok => {
                    for o in &line.outputs {
                        text.push_str(&format!("write       {}\n", o.display()));
                    }
                }
                Status::UpToDate => {
                    for o in &line.outputs {
                        text.push_str(&format!("up to date  {}\n", o.display()));
                    }
                }
                Status::Filtered => text = format!("filtered    {}\n", line.path.display()),
                Status::Failed | Status::Cancelled => {}
            }
            print_stdout(&text);
        }) as exec::ItemEndFn
    });
    let opts = RunOptions {
        dry_run: args.dry_run,
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
