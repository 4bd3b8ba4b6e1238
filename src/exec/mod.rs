//! Running a checked pipeline: every stage gets a bounded input queue and its
//! workers (one thread inline, N threads in threads mode, N supervised child
//! processes in processes mode); items stream from the sources through the
//! graph, so memory stays bounded by the queues whatever the number of files.

pub mod budget;
mod call;
pub mod cleanup;
pub mod heap;
mod lane;
mod monitor;
pub mod observe;
mod options;
mod plan;
pub mod protocol;
pub mod resume;
mod run;
pub mod shard;
mod source;
mod spawn;
mod state;
pub mod supervisor;
pub mod watch;
pub mod worker;

pub use call::{CallError, Outcome};
pub use options::{BuildError, ItemEndFn, ProgressFn, ReportMode, RunOptions};
pub use run::run;

#[cfg(test)]
mod tests;
