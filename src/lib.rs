//! conveyor runs batch pipelines described in TOML files: a graph of stages
//! (scan a folder, decode, resize, encode, write ...) where each stage runs
//! `inline`, on `threads` or in child `processes`, chosen per stage in
//! the file or on the command line.
//!
//! The path from a file to a run goes through separate types:
//! [`config::raw::RawDoc`] (located TOML values) -> [`config::Pipeline`]
//! (checked, with a typed stage graph) -> the running graph built by
//! [`exec::run`] from the [`stages::Registry`].
//!
//! ```no_run
//! use conveyor::{config, exec, stages::Registry};
//! let registry = Registry::builtin();
//! let loaded = config::load("pipelines/thumbnails.toml".as_ref(), &[], &registry)
//!     .map_err(|d| d.render(config::Style::PLAIN))?;
//! let summary = exec::run(&loaded.pipeline, &exec::RunOptions::default())?;
//! println!("{} ok, {} failed", summary.ok, summary.failed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod advise;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod cores;
pub mod cputime;
pub mod describe;
pub mod exec;
pub mod graph;
pub mod inputs;
pub mod item;
pub mod output;
pub mod panics;
pub mod pixels;
pub mod report;
pub mod schema;
pub mod stage;
pub mod stages;
pub mod suggest;
pub mod units;
