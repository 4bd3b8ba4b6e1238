//! `conveyor slurm`: print the array job's script, or submit it (through
//! [`crate::cluster`]) and, with `--wait`, summarise the shards' reports.

use super::args::SlurmArgs;
use super::style::print_stdout;
use super::{Exit, load};
use crate::cluster::{self, Submitted};
use crate::config::Override;
use crate::stages::Registry;

/// The `--mode` and `--set` flags again, for each task's command line.
fn override_flags(args: &SlurmArgs) -> Vec<String> {
    let mut flags = Vec::new();
    for ov in args.pipeline.overrides() {
        match ov {
            Override::Mode(t) => flags.extend(["--mode".to_string(), t]),
            Override::Set(t) => flags.extend(["--set".to_string(), t]),
            // `slurm` takes no paths: each task scans the pipeline's root.
            Override::Paths(_) => {}
        }
    }
    flags
}

pub(super) fn slurm(args: &SlurmArgs, registry: &Registry) -> Exit {
    let loaded = match load(&args.pipeline, registry) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let jobs = args.jobs.map(|j| j as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let p = &loaded.pipeline;
    let script = cluster::sbatch_script(
        p,
        &args.pipeline.pipeline,
        args.shards,
        jobs,
        &args.dir,
        &override_flags(args),
    );
    if !args.submit {
        print_stdout(&script);
        return Exit::Ok;
    }
    let submitted = match cluster::submit(&p.name, &script, &args.dir, args.wait) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Invalid;
        }
    };
    if !args.wait {
        println!("{}", submitted.job);
        eprintln!(
            "submitted array job {}: {} tasks, script {}",
            submitted.job,
            args.shards,
            submitted.script.display()
        );
        return Exit::Ok;
    }
    waited(args, &submitted)
}

/// After `--submit --wait`: merge the shards' reports and say how it went.
fn waited(args: &SlurmArgs, submitted: &Submitted) -> Exit {
    let files = cluster::shard_reports(&args.dir);
    let merged = match cluster::merge_reports(&files, None) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::ItemsFailed;
        }
    };
    eprintln!(
        "array job {}: {} of {} shard reports",
        submitted.job,
        files.len(),
        args.shards
    );
    eprintln!("{}", merged.line());
    if files.len() as u32 != args.shards || !submitted.succeeded {
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
