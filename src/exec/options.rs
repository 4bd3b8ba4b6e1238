//! What a caller says about a run beyond the pipeline file (flags,
//! callbacks), and why a run could not start.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{observe, shard};
use crate::report::Failure;

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
    /// Bytes of decoded images allowed in flight (`--memory`; default:
    /// half the machine's memory).
    pub memory: Option<u64>,
    /// Called with each item's outcome as it ends.
    pub on_item_end: Option<ItemEndFn>,
    /// Added to journal names, so runs that must not share resume state
    /// (shards of one job) keep their own.
    pub state_tag: String,
    /// Process only this slice of the input.
    pub shard: Option<shard::Shard>,
    /// The sources take only some of their files (`run PIPELINE PATH...`):
    /// gathering stages keep their files as they are, as a manifest of a
    /// few files would replace the whole library's.
    pub partial: bool,
    /// Write a JSON line per item here.
    pub report: Option<PathBuf>,
    /// Write a Chrome trace (Perfetto) here.
    pub trace: Option<PathBuf>,
    /// Called every `progress_every` with each stage's numbers and how many
    /// items have finished.
    pub on_progress: Option<ProgressFn>,
    pub progress_every: Duration,
    /// Whether the report file starts afresh, or goes on from an earlier
    /// run's (`conveyor watch`).
    pub report_mode: ReportMode,
    /// Files the sources leave for a later run (`conveyor watch`: files not
    /// completely written yet).
    pub hold: Option<crate::stage::Hold>,
}

/// How a run writes its report file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportMode {
    /// Started afresh: a line per item.
    #[default]
    New,
    /// Added to, with lines only for the items that went through: the
    /// batches of `conveyor watch` after the first, whose up-to-date items
    /// were reported when they were made.
    Continue,
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
            memory: None,
            on_item_end: None,
            state_tag: String::new(),
            shard: None,
            partial: false,
            report: None,
            trace: None,
            on_progress: None,
            progress_every: Duration::from_millis(250),
            report_mode: ReportMode::New,
            hold: None,
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

impl RunOptions {
    /// The job budget: `jobs`, or the CPU count.
    pub fn jobs_or_cpus(&self) -> usize {
        self.jobs
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .max(1)
    }
}
