//! Integration tests: the real `conveyor` binary on real files, checking what
//! lands on disk (files decoded, counted, compared), not only exit codes.
//! One test binary: `harness.rs` holds the workspace, the runner and the
//! report reader; every other file is one topic.

mod advise;
mod checks;
mod cluster;
mod colour;
mod commandline;
mod cores;
mod depth;
mod endstate;
mod formats;
mod generative;
mod harness;
mod heif;
mod interrupts;
mod limits;
mod manifests;
mod memory;
mod names;
mod observe;
mod pipelines;
mod processes;
mod readme;
mod reliability;
mod resume;
mod safety;
mod stages;
mod watch;

pub(crate) use harness::*;
pub(crate) use std::collections::BTreeMap;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::Command;
