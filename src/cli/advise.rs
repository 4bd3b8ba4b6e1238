//! `conveyor advise`: the sample chosen, copied into a temporary folder,
//! measured through [`crate::advise`], the advice printed (text or JSON)
//! and, with `--apply FILE`, written into a copy of the pipeline. The
//! temporary folder is removed at the end, also after Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::args::AdviseArgs;
use super::signals;
use super::style::{error_line, print_stdout, stderr_style};
use super::{Exit, load_with};
use crate::advise::{self, Setup};
use crate::config::Override;
use crate::exec::{self, RunOptions};
use crate::stages::Registry;

/// The temporary folder, removed when dropped (or by a second Ctrl-C, or
/// by the next advise if this one was killed outright).
struct Scratch(PathBuf);

const SCRATCH_PREFIX: &str = "conveyor-advise";

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    /// A new folder `conveyor-advise-PID-NANOS` in the temp folder.
    fn create() -> Result<Scratch, String> {
        crate::exec::cleanup::new_scratch(SCRATCH_PREFIX).map(Scratch)
    }
}

pub(super) fn advise(args: &AdviseArgs, registry: &Registry) -> Exit {
    let style = stderr_style();
    let fail = |msg: &dyn std::fmt::Display| {
        eprintln!("{}", error_line(style, msg));
        Exit::Invalid
    };
    let paths: Vec<String> = match args
        .paths
        .iter()
        .map(|p| p.to_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
    {
        Some(p) => p,
        None => return fail(&"a path given is not valid UTF-8; give its folder instead"),
    };
    let extra: Vec<Override> = (!paths.is_empty())
        .then(|| Override::Paths(paths.clone()))
        .into_iter()
        .collect();
    let loaded = match load_with(&args.pipeline, extra, registry) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let pipeline = &loaded.pipeline;
    let scans = pipeline
        .stages
        .iter()
        .filter(|s| s.kind.name == "scan")
        .count();
    if scans != 1 {
        return fail(&format!(
            "advise runs the pipeline on a sample through its one `scan` stage; this pipeline has {scans}"
        ));
    }
    // The files the pipeline would read: a dry run lists them.
    let found = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&found);
    let listing = RunOptions {
        dry_run: true,
        partial: !paths.is_empty(),
        on_item_end: Some(Arc::new(move |line: &exec::observe::Line| {
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.path.clone());
        })),
        ..RunOptions::default()
    };
    if let Err(e) = exec::run(pipeline, &listing) {
        return fail(&e);
    }
    let files: Vec<(PathBuf, u64)> =
        std::mem::take(&mut *found.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .filter_map(|p| {
                std::fs::metadata(&p)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| (p, m.len()))
            })
            .collect();
    if files.is_empty() {
        return fail(&"the pipeline finds no files to measure on");
    }
    let sample = advise::choose_sample(files, args.sample as usize);
    let root = scan_root(pipeline);
    // Two files named alike (from two folders given) get a copy each.
    let mut taken = std::collections::HashSet::new();
    let named: Vec<(PathBuf, PathBuf)> = sample
        .iter()
        .map(|p| {
            let rel = rel_name(p, root.as_deref());
            let mut unique = rel.clone();
            let mut n = 1;
            while !taken.insert(unique.clone()) {
                n += 1;
                unique = PathBuf::from(n.to_string()).join(&rel);
            }
            (p.clone(), unique)
        })
        .collect();
    // Signals are heard from here on: a Ctrl-C while the sample is copied
    // must still remove the copies.
    let stop = signals::listen(None);
    let scratch = match Scratch::create() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Err(e) = advise::copy_sample(&named, &scratch.0, &stop.flag) {
        if stop.flag.load(std::sync::atomic::Ordering::SeqCst) {
            return stop.exit();
        }
        return fail(&format!(
            "cannot copy the sample into {}: {}",
            scratch.0.display(),
            crate::output::plain_io_reason(&e)
        ));
    }
    // `--apply`'s file is checked now, not after minutes of measuring.
    if let Some(file) = &args.apply
        && let Err(e) = apply_guard(file, pipeline, &scratch.0).and_then(|(g, dir, name)| {
            g.plan(&request(&dir, &name))
                .map(|_| ())
                .map_err(|e| format!("--apply: {e}"))
        })
    {
        return fail(&e);
    }
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |j| j as usize,
    );
    let mut flags = Vec::new();
    for ov in args.pipeline.overrides() {
        match ov {
            Override::Set(t) => flags.extend(["--set".to_string(), t]),
            Override::Mode(t) => flags.extend(["--mode".to_string(), t]),
            Override::Paths(_) => {}
        }
    }
    let setup = Setup {
        exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("conveyor")),
        pipeline_file: &args.pipeline.pipeline,
        pipeline,
        flags,
        dir: scratch.0.clone(),
        jobs,
        sample: named.clone(),
        stop: Arc::clone(&stop.flag),
    };
    let quiet = args.format == AdviseFormat::Json;
    let report = advise::run(&setup, named.len(), |label| {
        if stop.flag.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if !quiet {
            eprintln!("measuring: {label}");
        }
    });
    if stop.flag.load(std::sync::atomic::Ordering::SeqCst) {
        return stop.exit();
    }
    match args.format {
        AdviseFormat::Text => print_stdout(&advise::render(&report)),
        AdviseFormat::Json => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            print_stdout(&format!("{text}\n"));
        }
    }
    if let Some(file) = &args.apply {
        if let Err(e) = apply(
            &args.pipeline.pipeline,
            file,
            &report.advice,
            pipeline,
            &scratch.0,
        ) {
            return fail(&e);
        }
        if !quiet {
            eprintln!("wrote {} with the advice", file.display());
        }
    }
    Exit::Ok
}

/// The scan's root, to keep each sample file's path below it.
fn scan_root(pipeline: &crate::config::Pipeline) -> Option<PathBuf> {
    let scan = pipeline.stages.iter().find(|s| s.kind.name == "scan")?;
    scan.options
        .get("root")
        .and_then(|v| v.as_str())
        .map(|r| crate::inputs::resolve(Path::new(r)))
}

/// `path` below `root` when it is there, else its name.
fn rel_name(path: &Path, root: Option<&Path>) -> PathBuf {
    let real = crate::inputs::resolve(path);
    root.and_then(|r| real.strip_prefix(r).ok().map(Path::to_path_buf))
        .filter(|r| !r.as_os_str().is_empty())
        .unwrap_or_else(|| path.file_name().map(PathBuf::from).unwrap_or_default())
}

/// Write the advised pipeline to `file`, through the output guard: never
/// over an existing file (the pipeline itself included) or an input.
fn apply(
    pipeline_file: &Path,
    file: &Path,
    advice: &[advise::Advice],
    pipeline: &crate::config::Pipeline,
    scratch: &Path,
) -> Result<(), String> {
    let text = std::fs::read_to_string(pipeline_file)
        .map_err(|e| format!("cannot read {}: {e}", pipeline_file.display()))?;
    let out = advise::apply(&text, advice)?;
    let (guard, dir, name) = apply_guard(file, pipeline, scratch)?;
    guard
        .place_bytes(&request(&dir, &name), out.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("--apply: {e}"))
}

/// The guard `--apply` writes through (the pipeline's scans as its
/// scopes), and the file's folder and name.
fn apply_guard(
    file: &Path,
    pipeline: &crate::config::Pipeline,
    scratch: &Path,
) -> Result<(crate::output::Guard, PathBuf, PathBuf), String> {
    let guard = crate::output::Guard::local(scratch);
    guard
        .set_scopes(exec::watch::scopes(pipeline))
        .map_err(|e| e.to_string())?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if std::fs::symlink_metadata(file).is_ok() {
        return Err(format!(
            "--apply: {} already exists; advise writes a new file and replaces none",
            file.display()
        ));
    }
    if !dir.is_dir() {
        return Err(format!(
            "--apply: the folder {} does not exist",
            dir.display()
        ));
    }
    Ok((
        guard,
        dir,
        file.file_name().map(PathBuf::from).unwrap_or_default(),
    ))
}

fn request<'a>(dir: &'a Path, name: &'a Path) -> crate::output::Request<'a> {
    crate::output::Request {
        stage: "advise",
        source: None,
        dir,
        rel: name,
        replace: crate::output::Replace::Never,
        claim: false,
    }
}

pub use super::args::AdviseFormat;
