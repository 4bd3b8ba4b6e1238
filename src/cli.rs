//! The command line: clap types (doc comments are the help text) and the
//! code behind each subcommand. `main` only maps the result to an exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::{Parser, Subcommand};

use crate::config::{self, Override, Style};
use crate::exec::{self, RunOptions};
use crate::graph::{self, GraphFormat};
use crate::stages::Registry;

/// Run batch pipelines (scan, decode, resize, encode, write ...) described
/// in TOML files.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version, about, propagate_version = true)]
pub struct Cli {
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
    let opts = RunOptions {
        force: args.force,
        state_tag: String::new(),
        interrupt,
        on_failure: Box::new(move |f| {
            eprintln!("{}error{}: {f}", style.error, style.reset);
        }),
    };
    let summary = match exec::run(&loaded.pipeline, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}error{}: {e}", style.error, style.reset);
            return Exit::Invalid;
        }
    };
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
