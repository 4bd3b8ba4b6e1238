//! `conveyor advise`: which `mode` and how many `workers` each stage should
//! have, on this machine, for this pipeline, found by measuring rather than
//! by rule of thumb. The pipeline runs on copies of a sample of its inputs,
//! into a temporary folder, once per mode (as child `conveyor run`s, so a
//! stage that crashes its process only ends that run), and stages that
//! mostly wait run again with more workers. The rules that turn the
//! measurements into advice are plain functions of them ([`advise_stage`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Pipeline;
use crate::stage::StagePaths;

/// A child run that takes longer than this is stopped (a stage that hangs).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Below this share of CPU time over busy time, a stage mostly waits, and
/// more workers than cores pay. Low, because a busy machine lowers the
/// share of stages that compute too (40% was seen for thumbnails while
/// other work ran); a stage that waits on a command or a network disk is
/// far below it.
const WAITS_BELOW: f64 = 0.25;

/// Up to this much slower in processes than in threads, the isolation of
/// processes is nearly free.
const CHEAP_ISOLATION: f64 = 0.10;

/// From this many bytes per item, what crosses to a worker is pixels, and
/// their copying is what processes cost.
const PIXELS_ACROSS: f64 = 64.0 * 1024.0;

/// What a child run measured, from its report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    pub wall_s: f64,
    pub items: u64,
    pub ok: u64,
    pub failed: u64,
    /// The run ended badly (a crash of conveyor itself, or the time limit).
    pub broken: Option<String>,
    /// CPU seconds of the whole run (conveyor, its workers, commands).
    pub cpu_s: f64,
    /// The largest resident size of one process of the run (conveyor or
    /// one of its workers), in MB.
    pub peak_mb: f64,
    pub stages: BTreeMap<String, StageStats>,
}

/// One stage over one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageStats {
    /// Items that reached the stage.
    pub items: u64,
    /// Wall time on them, summed, in milliseconds.
    pub ms: f64,
    /// CPU time on them, summed, in milliseconds.
    pub cpu_ms: f64,
    /// Items whose worker process crashed in this stage.
    pub crashed: u64,
    /// A crash's reason, for the advice.
    pub crash: Option<String>,
    /// Processes mode, summed over items: bytes carried to a worker and
    /// back, under the first stage of the worker's chain.
    pub crossed_bytes: u64,
    /// Processes mode: workers started, and the milliseconds items waited
    /// for them, summed.
    pub worker_starts: u64,
    pub worker_start_ms: f64,
    /// Processes mode: the largest worker, in MB.
    pub worker_peak_mb: f64,
}

impl StageStats {
    pub fn ms_per_item(&self) -> f64 {
        if self.items == 0 {
            0.0
        } else {
            self.ms / self.items as f64
        }
    }

    /// Bytes crossing the process boundary per item.
    pub fn crossed_per_item(&self) -> f64 {
        if self.items == 0 {
            0.0
        } else {
            self.crossed_bytes as f64 / self.items as f64
        }
    }

    /// How long a worker took to start, on average.
    pub fn start_ms(&self) -> Option<f64> {
        (self.worker_starts > 0).then(|| self.worker_start_ms / self.worker_starts as f64)
    }

    /// CPU time over wall time: near 1 computes, near 0 waits.
    pub fn cpu_share(&self) -> f64 {
        if self.ms <= 0.0 {
            1.0
        } else {
            (self.cpu_ms / self.ms).min(4.0)
        }
    }
}

/// Whether a failure's reason says the worker process died.
fn is_crash(reason: &str) -> bool {
    [
        "worker killed by signal",
        "worker panicked",
        "worker exited with code",
        "worker ended",
        "worker vanished",
    ]
    .iter()
    .any(|w| reason.contains(w))
}

/// The per-stage numbers of a run's JSON report.
pub fn stats_of(lines: &[serde_json::Value], wall: Duration) -> RunStats {
    let mut run = RunStats {
        wall_s: wall.as_secs_f64(),
        ..RunStats::default()
    };
    for line in lines {
        run.items += 1;
        match line["status"].as_str() {
            Some("ok") | Some("filtered") | Some("up_to_date") => run.ok += 1,
            _ => run.failed += 1,
        }
        if let Some(ms) = line["ms"].as_object() {
            for (stage, v) in ms {
                let s = run.stages.entry(stage.clone()).or_default();
                s.items += 1;
                s.ms += v.as_f64().unwrap_or(0.0);
                s.cpu_ms += line["cpu_ms"][stage].as_f64().unwrap_or(0.0);
            }
        }
        for (stage, v) in line["crossed_bytes"].as_object().into_iter().flatten() {
            let s = run.stages.entry(stage.clone()).or_default();
            s.crossed_bytes += v.as_u64().unwrap_or(0);
        }
        for (stage, v) in line["worker_start_ms"].as_object().into_iter().flatten() {
            let s = run.stages.entry(stage.clone()).or_default();
            s.worker_starts += 1;
            s.worker_start_ms += v.as_f64().unwrap_or(0.0);
        }
        for (stage, v) in line["worker_peak_mb"].as_object().into_iter().flatten() {
            let s = run.stages.entry(stage.clone()).or_default();
            s.worker_peak_mb = s.worker_peak_mb.max(v.as_f64().unwrap_or(0.0));
        }
        if let (Some(stage), Some(reason)) = (line["stage"].as_str(), line["reason"].as_str())
            && is_crash(reason)
        {
            let s = run.stages.entry(stage.to_string()).or_default();
            s.crashed += 1;
            s.crash.get_or_insert_with(|| reason.to_string());
        }
    }
    run
}

/// `workers` as advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(untagged)]
pub enum Workers {
    /// `"auto"`: the stage shares `--jobs` with the others.
    #[serde(serialize_with = "auto")]
    #[default]
    Auto,
    Fixed(usize),
}

fn auto<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("auto")
}

impl std::fmt::Display for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// What was measured of one stage, the input of the rules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    pub stage: String,
    pub kind: String,
    /// A gathering stage (manifest, contact sheet): it writes one file at
    /// the end, in conveyor itself, and starts no workers.
    pub gathers: bool,
    /// The stage's `mode` and `workers` in the pipeline as it is.
    pub current_mode: &'static str,
    pub current_workers: Workers,
    pub threads: Option<StageStats>,
    pub processes: Option<StageStats>,
    pub inline: Option<StageStats>,
    /// The stage alone in processes, its neighbours in threads: what
    /// crosses the boundary when the pixels must.
    pub alone: Option<StageStats>,
    /// Whole-run wall seconds with this stage at N workers (stages that
    /// wait only).
    pub scaling: Vec<(usize, f64)>,
    /// Every stage in threads at 1, 2 ... jobs up to `--jobs`.
    pub by_jobs: Vec<JobsPoint>,
}

/// One run of the sample at a `--jobs` count.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct JobsPoint {
    pub jobs: usize,
    /// The whole run's wall seconds.
    pub wall_s: f64,
    /// The stage's milliseconds per item.
    pub ms_per_item: f64,
}

/// The advice for one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub stage: String,
    pub mode: &'static str,
    pub workers: Workers,
    pub reason: String,
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// The rules. In order: a stage that crashed its worker goes to processes
/// (only there does a crash fail just that item); a stage that mostly
/// waits gets the worker count that ran fastest; a CPU-bound stage gets
/// threads sharing the cores (`auto`), with what processes would cost.
pub fn advise_stage(o: &Observed, cores: usize) -> Advice {
    let advice = |mode, workers, reason: String| Advice {
        stage: o.stage.clone(),
        mode,
        workers,
        reason,
    };
    if o.gathers {
        return advice(
            o.current_mode,
            o.current_workers,
            "gathers every item into one file at the end, in conveyor itself: its mode changes nothing, as it starts no workers".into(),
        );
    }
    if let Some(p) = o.processes.as_ref().filter(|p| p.crashed > 0) {
        let why = p.crash.as_deref().unwrap_or("its worker died");
        return advice(
            "processes",
            Workers::Auto,
            format!(
                "crashed its worker on {} of {} items ({why}): in processes a crash fails only that item, in threads it ends the run",
                p.crashed,
                p.items.max(p.crashed)
            ),
        );
    }
    let Some(t) = o.threads.as_ref().or(o.inline.as_ref()) else {
        return advice(
            "threads",
            Workers::Auto,
            "not measured (no item reached it)".into(),
        );
    };
    let share = t.cpu_share();
    // A low CPU share on a busy machine can be preemption rather than
    // waiting: only more workers than cores running faster proves it.
    let waits = share < WAITS_BELOW;
    if waits {
        // The fewest workers within 5% of the fastest run.
        let best = o
            .scaling
            .iter()
            .map(|&(_, s)| s)
            .fold(f64::INFINITY, f64::min);
        let workers = o
            .scaling
            .iter()
            .filter(|&&(_, s)| s <= best * 1.05)
            .map(|&(w, _)| w)
            .min()
            .unwrap_or(cores * 4);
        return advice(
            "threads",
            Workers::Fixed(workers),
            format!(
                "waits {} of the time (CPU {} of {:.1} ms per item, on a command or the disk): {workers} workers on {cores} cores ran fastest",
                pct(1.0 - share),
                pct(share),
                t.ms_per_item()
            ),
        );
    }
    let head = format!(
        "CPU-bound ({} CPU, {:.1} ms per item{})",
        pct(share.min(1.0)),
        t.ms_per_item(),
        speedup(&o.by_jobs)
    );
    let cost_of = |p: &StageStats| {
        (t.ms_per_item() > 0.0 && p.items > 0).then(|| p.ms_per_item() / t.ms_per_item() - 1.0)
    };
    let alone = o.alone.as_ref().and_then(|p| cost_of(p).map(|c| (p, c)));
    let chain = o.processes.as_ref().and_then(cost_of);
    let reason = match (alone, chain) {
        (Some((p, c)), _) if c <= CHEAP_ISOLATION => format!(
            "{head}: threads sharing the cores; processes cost {} here ({} per item cross), so choose processes if the inputs are untrusted",
            pct(c.max(0.0)),
            per_item(p)
        ),
        (Some((p, c)), Some(ch)) if ch <= CHEAP_ISOLATION => format!(
            "{head}: threads sharing the cores; alone in processes it costs {} here, {}, but {} with its neighbours in processes too, as the {} stay inside the worker chain",
            pct(c),
            why_costly(p),
            pct(ch.max(0.0)),
            if p.crossed_per_item() >= PIXELS_ACROSS {
                "pixels"
            } else {
                "items"
            }
        ),
        (Some((p, c)), _) => format!(
            "{head}: threads sharing the cores; processes cost {} here, {}",
            pct(c),
            why_costly(p)
        ),
        (None, Some(c)) if c <= CHEAP_ISOLATION => format!(
            "{head}: threads sharing the cores; processes cost {} here, so choose processes if the inputs are untrusted",
            pct(c.max(0.0))
        ),
        (None, Some(c)) => format!(
            "{head}: threads sharing the cores; processes cost {} here, as what it takes and gives crosses the process boundary",
            pct(c)
        ),
        (None, None) => format!("{head}: threads sharing the cores"),
    };
    advice("threads", Workers::Auto, reason)
}

/// "; the run 1.9x as fast on 2 jobs as on 1 job": how the whole run grew
/// with jobs.
fn speedup(by_jobs: &[JobsPoint]) -> String {
    match (by_jobs.first(), by_jobs.last()) {
        (Some(a), Some(b)) if b.jobs > a.jobs && b.wall_s > 0.0 => format!(
            "; the run {:.1}x as fast on {} as on {}",
            a.wall_s / b.wall_s,
            plural(b.jobs, "job"),
            plural(a.jobs, "job")
        ),
        _ => String::new(),
    }
}

/// Why a worker process costs a stage: the bytes its items carry, or,
/// when they carry little, the round trip itself.
fn why_costly(p: &StageStats) -> String {
    if p.crossed_per_item() >= PIXELS_ACROSS {
        format!("as {} per item cross the process boundary", per_item(p))
    } else {
        format!(
            "as each item makes a round trip to a worker (with {})",
            per_item(p)
        )
    }
}

/// "1 sample file", "12 sample files".
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What one item carries to a worker and back: "1.2 MiB".
fn per_item(p: &StageStats) -> String {
    crate::units::human_size(p.crossed_per_item() as u64)
}

/// "1.2 MiB cross per item, a worker starts in 9 ms, the largest worker
/// holds 45 MiB": the price of a worker process, as measured.
fn crossing_text(p: &StageStats) -> String {
    let mut parts = vec![format!("{} cross per item", per_item(p))];
    if let Some(ms) = p.start_ms() {
        parts.push(format!("a worker starts in {ms:.0} ms"));
    }
    if p.worker_peak_mb > 0.0 {
        parts.push(format!(
            "the largest worker holds {}",
            crate::units::human_size((p.worker_peak_mb * 1e6) as u64)
        ));
    }
    parts.join(", ")
}

/// How advise runs: the files and the folder it works in.
pub struct Setup<'a> {
    /// The conveyor executable (this one).
    pub exe: PathBuf,
    pub pipeline_file: &'a Path,
    pub pipeline: &'a Pipeline,
    /// The user's own `--set` and `--mode` flags, as given.
    pub flags: Vec<String>,
    /// The temporary folder: sample copies, outputs, reports.
    pub dir: PathBuf,
    pub jobs: usize,
    /// The sample: each file and its path below the scan root.
    pub sample: Vec<(PathBuf, PathBuf)>,
    /// Set by Ctrl-C or SIGTERM: the run in progress is stopped, and no
    /// other starts.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Setup<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A deterministic sample of `n` files spread over formats and sizes:
/// sorted by extension, then size, then name, and taken at even steps.
pub fn choose_sample(mut files: Vec<(PathBuf, u64)>, n: usize) -> Vec<PathBuf> {
    let ext = |p: &Path| {
        p.extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default()
    };
    files.sort_by(|a, b| (ext(&a.0), a.1, &a.0).cmp(&(ext(&b.0), b.1, &b.0)));
    if files.len() <= n {
        return files.into_iter().map(|(p, _)| p).collect();
    }
    (0..n)
        .map(|i| files[i * files.len() / n].0.clone())
        .collect()
}

/// The `--set` flags that send every file the pipeline writes into `out`.
fn redirect(pipeline: &Pipeline, out: &Path) -> Vec<String> {
    let mut flags = Vec::new();
    for s in &pipeline.stages {
        let set = |key: &str, value: PathBuf| {
            vec![
                "--set".to_string(),
                format!(
                    "{}.{key}={}",
                    s.name,
                    toml::Value::String(value.to_string_lossy().into_owned())
                ),
            ]
        };
        match (s.kind.paths)(&s.options) {
            StagePaths::Writes { .. } => flags.extend(set("dir", out.join(&s.name))),
            StagePaths::Gathers(path) => {
                let name = path.file_name().map(PathBuf::from).unwrap_or_default();
                flags.extend(set("path", out.join(&s.name).join(name)));
            }
            _ => {}
        }
    }
    flags
}

/// One child `conveyor run` of the sample with `modes` (STAGE=MODE or
/// STAGE.workers=N settings), measured.
pub fn measure(setup: &Setup<'_>, label: &str, settings: &[String]) -> RunStats {
    measure_at(setup, label, settings, setup.jobs)
}

/// [`measure`] with `--jobs jobs`.
fn measure_at(setup: &Setup<'_>, label: &str, settings: &[String], jobs: usize) -> RunStats {
    if setup.stopped() {
        return RunStats {
            broken: Some("stopped".into()),
            ..RunStats::default()
        };
    }
    // Each run gets the sample as it was: a stage that moves or changes
    // its inputs (a `copy` with `move`) must not leave the next run none.
    if let Err(e) = copy_sample(&setup.sample, &setup.dir, &setup.stop) {
        return RunStats {
            broken: Some(format!("could not copy the sample again: {e}")),
            ..RunStats::default()
        };
    }
    let out = setup.dir.join("out").join(label);
    let report = setup.dir.join(format!("{label}.jsonl"));
    // The runs' own scratch folders go inside advise's, so that one
    // stopped with SIGKILL (a stage that hangs) leaves nothing behind once
    // advise's folder is removed.
    let scratch = setup.dir.join("tmp");
    let _ = std::fs::create_dir_all(&scratch);
    let mut cmd = Command::new(&setup.exe);
    cmd.env("TMPDIR", &scratch);
    cmd.arg("run")
        .arg(setup.pipeline_file)
        .args(&setup.flags)
        .args(redirect(setup.pipeline, &out))
        .args(settings)
        .arg("--force")
        .arg("--jobs")
        .arg(jobs.to_string())
        .arg("--progress")
        .arg("never")
        .arg("-q")
        .arg("--report")
        .arg(&report)
        .arg(setup.dir.join("sample"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // The run dies with advise, whatever ends it (SIGKILL too), so none is
    // left writing into a folder that is being removed.
    // SAFETY: prctl only sets this child's parent-death signal.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => {
            crate::exec::cleanup::watch_worker(c.id());
            c
        }
        Err(e) => {
            return RunStats {
                broken: Some(format!("could not start conveyor: {e}")),
                ..RunStats::default()
            };
        }
    };
    // stderr read on the side, so a chatty run cannot fill the pipe.
    let reader = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut e, &mut buf);
            buf
        })
    });
    let mut used = crate::cputime::Used::default();
    let status = loop {
        match crate::cputime::reap(&mut child) {
            Ok(Some((s, u))) => {
                used = u;
                break Some(s);
            }
            Ok(None) if started.elapsed() > RUN_LIMIT || setup.stopped() => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let wall = started.elapsed();
    crate::exec::cleanup::forget_worker(child.id());
    let stderr = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut stats = stats_of(&lines, wall);
    stats.cpu_s = used.cpu.as_secs_f64();
    stats.peak_mb = used.max_rss as f64 / 1e6;
    stats.broken = match status {
        None => Some(format!("stopped after {}s", RUN_LIMIT.as_secs())),
        Some(s) if s.code().is_none() => Some(format!(
            "conveyor itself was killed ({s}): a stage crashed it in threads or inline mode; counts are of the items reported before"
        )),
        Some(s) if s.code() == Some(2) => Some(format!(
            "the run did not start: {}",
            String::from_utf8_lossy(&stderr)
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("")
        )),
        Some(_) => None,
    };
    stats
}

/// Copy the sample into `dir/sample`, keeping each file's path below its
/// scan root (or its name), so the pipeline names its outputs as it would.
/// A copy already there with the original's size is kept.
pub fn copy_sample(
    files: &[(PathBuf, PathBuf)],
    dir: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    for (path, rel) in files {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let dest = dir.join("sample").join(rel);
        let size = std::fs::metadata(path)?.len();
        if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size) {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(path, &dest)?;
    }
    Ok(())
}

/// Everything advise measured and concluded, for text or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The `--jobs` the runs were given.
    pub cores: usize,
    /// The cores of this machine.
    pub machine_cores: usize,
    /// Why the pipeline as it is did not run through on the sample, if it
    /// did not: its rate then means nothing.
    pub current_broken: Option<String>,
    pub sample: usize,
    pub stages: Vec<Observed>,
    pub advice: Vec<Advice>,
    /// The pipeline already runs as advised.
    pub unchanged: bool,
    /// Items per second of the sample as the pipeline is, and as advised
    /// (medians of three runs each, taking turns).
    pub current_items_per_s: f64,
    pub advised_items_per_s: f64,
    /// Runs that ended badly, by label.
    pub broken: BTreeMap<String, String>,
    /// The whole sample in each mode: wall and CPU seconds, peak memory.
    pub modes: BTreeMap<String, RunTotals>,
}

/// One whole run of the sample.
#[derive(Debug, Clone, Serialize)]
pub struct RunTotals {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_mb: f64,
}

impl From<&RunStats> for RunTotals {
    fn from(r: &RunStats) -> RunTotals {
        RunTotals {
            wall_s: r.wall_s,
            cpu_s: r.cpu_s,
            peak_mb: r.peak_mb,
        }
    }
}

/// The settings that give `advice`, as `--mode` and `--set` flags.
pub fn settings_of(advice: &[Advice]) -> Vec<String> {
    let mut flags = Vec::new();
    for a in advice {
        flags.push("--mode".into());
        flags.push(format!("{}={}", a.stage, a.mode));
        let workers = match a.workers {
            Workers::Auto => "\"auto\"".to_string(),
            Workers::Fixed(n) => n.to_string(),
        };
        flags.push("--set".into());
        flags.push(format!("{}.workers={workers}", a.stage));
    }
    flags
}

/// Measure every stage of the pipeline on the sample and advise.
pub fn run(setup: &Setup<'_>, sample: usize, mut progress: impl FnMut(&str)) -> Report {
    let p = setup.pipeline;
    let stages: Vec<&crate::config::StageDef> =
        p.stages.iter().filter(|s| !s.kind.is_source()).collect();
    let mut broken = BTreeMap::new();
    let cores = setup.jobs;
    let mut measured =
        |label: &str, settings: &[String], jobs: usize, progress: &mut dyn FnMut(&str)| {
            progress(label);
            let stats = measure_at(setup, label, settings, jobs);
            if let Some(b) = &stats.broken {
                broken.insert(label.to_string(), b.clone());
            }
            stats
        };
    // Every stage in `mode`, but those in `keep` (and `alone`) in processes.
    let modes = |mode: &str, keep: &[String], alone: Option<&str>| -> Vec<String> {
        let mut flags = Vec::new();
        for s in &stages {
            let m = if keep.contains(&s.name) || alone == Some(s.name.as_str()) {
                "processes"
            } else {
                mode
            };
            flags.push("--mode".into());
            flags.push(format!("{}={m}", s.name));
        }
        flags
    };
    let every = |mode: &str, keep: &[String]| modes(mode, keep, None);
    // Processes first: the one mode in which a crash cannot end the run.
    let procs = measured("processes", &every("processes", &[]), cores, &mut progress);
    let crashing: Vec<String> = procs
        .stages
        .iter()
        .filter(|(_, s)| s.crashed > 0)
        .map(|(n, _)| n.clone())
        .collect();
    let threads = measured(
        "threads",
        &every("threads", &crashing),
        cores,
        &mut progress,
    );
    let inline = measured("inline", &every("inline", &crashing), cores, &mut progress);
    // Each stage alone in processes, its neighbours in threads: what its
    // items carry across the boundary, and what that costs.
    let mut alone = BTreeMap::new();
    for s in &stages {
        let reached = threads.stages.get(&s.name).is_some_and(|t| t.items > 0);
        if crashing.contains(&s.name) || !reached {
            continue;
        }
        let label = format!("{}-alone", s.name);
        let r = measured(
            &label,
            &modes("threads", &crashing, Some(&s.name)),
            cores,
            &mut progress,
        );
        if let Some(st) = r.stages.get(&s.name) {
            alone.insert(s.name.clone(), st.clone());
        }
    }
    // How the whole run grows with cores: every stage in threads at 1, 2,
    // 4 ... jobs (the run in threads above is the last).
    let mut jobs_runs = Vec::new();
    let mut jobs = 1;
    while jobs < cores {
        let r = measured(
            &format!("jobs-{jobs}"),
            &every("threads", &crashing),
            jobs,
            &mut progress,
        );
        jobs_runs.push((jobs, r));
        jobs *= 2;
    }
    let point = |jobs: usize, r: &RunStats, stage: &str| JobsPoint {
        jobs,
        wall_s: r.wall_s,
        ms_per_item: r.stages.get(stage).map_or(0.0, StageStats::ms_per_item),
    };
    let mut observed: Vec<Observed> = stages
        .iter()
        .map(|s| Observed {
            stage: s.name.clone(),
            kind: s.kind.name.to_string(),
            gathers: matches!((s.kind.paths)(&s.options), StagePaths::Gathers(_)),
            current_mode: s.mode.name(),
            current_workers: if s.auto {
                Workers::Auto
            } else {
                Workers::Fixed(s.workers)
            },
            threads: threads.stages.get(&s.name).cloned(),
            processes: procs.stages.get(&s.name).cloned(),
            inline: inline.stages.get(&s.name).cloned(),
            alone: alone.get(&s.name).cloned(),
            scaling: Vec::new(),
            by_jobs: jobs_runs
                .iter()
                .map(|(j, r)| point(*j, r, &s.name))
                .chain(std::iter::once(point(cores, &threads, &s.name)))
                .filter(|p| p.wall_s > 0.0)
                .collect(),
        })
        .collect();
    // Stages that wait: more workers, until the run stops getting faster.
    for o in observed.iter_mut() {
        let waits = o
            .threads
            .as_ref()
            .is_some_and(|t| t.cpu_share() < WAITS_BELOW && t.items > 0);
        if !waits || crashing.contains(&o.stage) {
            continue;
        }
        let mut best = f64::INFINITY;
        let mut workers = cores.max(1);
        while workers <= sample.clamp(1, 256) {
            let mut flags = every("threads", &crashing);
            flags.push("--set".into());
            flags.push(format!("{}.workers={workers}", o.stage));
            let r = measured(
                &format!("{}-x{workers}", o.stage),
                &flags,
                cores,
                &mut progress,
            );
            o.scaling.push((workers, r.wall_s));
            if r.wall_s > best * 0.9 {
                break;
            }
            best = best.min(r.wall_s);
            workers *= 2;
        }
    }
    let advice: Vec<Advice> = observed.iter().map(|o| advise_stage(o, cores)).collect();
    let unchanged = stages.iter().zip(&advice).all(|(s, a)| {
        let mode = s.mode.name();
        let workers = if s.auto {
            Workers::Auto
        } else {
            Workers::Fixed(s.workers)
        };
        mode == a.mode && (workers == a.workers || s.mode == crate::config::Mode::Inline)
    });
    let rate = |r: &RunStats| {
        if r.wall_s > 0.0 {
            r.items as f64 / r.wall_s
        } else {
            0.0
        }
    };
    // Both configurations three times, taking turns, so a slow moment of
    // the machine hits them alike; the median of each.
    let mut now = Vec::new();
    let mut then = Vec::new();
    for round in 0..3 {
        now.push(rate(&measured(
            &format!("current-{round}"),
            &[],
            cores,
            &mut progress,
        )));
        if !unchanged {
            then.push(rate(&measured(
                &format!("advised-{round}"),
                &settings_of(&advice),
                cores,
                &mut progress,
            )));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let current_broken = (0..3).find_map(|round| broken.get(&format!("current-{round}")).cloned());
    let current_items_per_s = median(now);
    let advised_items_per_s = if unchanged {
        current_items_per_s
    } else {
        median(then)
    };
    let modes = [
        ("inline", &inline),
        ("threads", &threads),
        ("processes", &procs),
    ]
    .into_iter()
    .map(|(m, r)| (m.to_string(), RunTotals::from(r)))
    .collect();
    Report {
        modes,
        cores,
        machine_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        current_broken,
        sample,
        unchanged,
        current_items_per_s,
        advised_items_per_s,
        stages: observed,
        advice,
        broken,
    }
}

/// The pipeline file's text with the advice written in: each stage's
/// `mode` and `workers` set (a line changed in place, or added after its
/// `kind`), each with a comment saying why.
pub fn apply(text: &str, advice: &[Advice]) -> Result<String, String> {
    let mut errors = Vec::new();
    let doc = crate::config::raw::parse(text, 0, &mut errors)
        .ok_or_else(|| "the pipeline file does not parse".to_string())?;
    // Edits as (byte offset, bytes to remove, text to insert), applied from
    // the end so earlier offsets stay right.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i);
    for a in advice {
        let Some(table) = doc
            .stages
            .iter()
            .find(|t| t.str_of("name") == Some(&a.stage))
        else {
            continue;
        };
        let workers = match a.workers {
            Workers::Auto => "\"auto\"".to_string(),
            Workers::Fixed(n) => n.to_string(),
        };
        let comment = format!("  # advise: {}", a.reason.replace('\n', " "));
        let mut new_lines = String::new();
        for (key, value) in [("mode", format!("\"{}\"", a.mode)), ("workers", workers)] {
            match table.get(key) {
                Some(e) => {
                    let span = e.value.loc.span.clone();
                    let end = line_end(span.end);
                    // The value, and any comment after it, are replaced.
                    let reason = if key == "mode" { comment.as_str() } else { "" };
                    edits.push((span.start, end - span.start, format!("{value}{reason}")));
                }
                None => {
                    let reason = if key == "mode" { comment.as_str() } else { "" };
                    new_lines.push_str(&format!("\n{key} = {value}{reason}"));
                }
            }
        }
        if !new_lines.is_empty() {
            let after = table
                .get("kind")
                .or_else(|| table.get("name"))
                .map_or(table.loc.span.end, |e| line_end(e.value.loc.span.end));
            edits.push((after, 0, new_lines));
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (at, len, insert) in edits {
        out.replace_range(at..at + len, &insert);
    }
    Ok(out)
}

/// The advice as text for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "measured on {} with --jobs {} ({} on this machine)",
        plural(report.sample, "sample file"),
        report.cores,
        plural(report.machine_cores, "core")
    );
    for (mode, t) in &report.modes {
        let _ = writeln!(
            out,
            "every stage {mode:<9}: {:.2}s, {:.2}s of CPU, largest process {:.0} MB",
            t.wall_s, t.cpu_s, t.peak_mb
        );
    }
    if let Some(o) = report.stages.first().filter(|o| o.by_jobs.len() > 1) {
        let steps: Vec<String> = o
            .by_jobs
            .iter()
            .map(|p| format!("{:.2}s at {}", p.wall_s, plural(p.jobs, "job")))
            .collect();
        let _ = writeln!(out, "every stage threads by --jobs: {}", steps.join(", "));
    }
    for (o, a) in report.stages.iter().zip(&report.advice) {
        let cell = |s: &StageStats| {
            let ms = s.ms_per_item();
            let rate = if ms > 0.0 {
                format!(" ({:.0} items/s per worker)", 1000.0 / ms)
            } else {
                String::new()
            };
            format!(
                "{ms:.1} ms per item{rate}, {:.0}% CPU",
                100.0 * s.cpu_share().min(1.0)
            )
        };
        let _ = writeln!(out, "\nstage `{}` ({}):", o.stage, o.kind);
        if let Some(s) = &o.inline {
            let _ = writeln!(out, "  inline     {}", cell(s));
        }
        if let Some(s) = &o.threads {
            let by_jobs = if o.by_jobs.len() > 1 {
                let steps: Vec<String> = o
                    .by_jobs
                    .iter()
                    .map(|p| format!("{:.1} ms at {}", p.ms_per_item, plural(p.jobs, "job")))
                    .collect();
                format!("; {}", steps.join(", "))
            } else {
                String::new()
            };
            let _ = writeln!(out, "  threads    {}{by_jobs}", cell(s));
        }
        if let Some(s) = &o.processes {
            let _ = writeln!(
                out,
                "  processes  {:.1} ms per item with its neighbours in processes too",
                s.ms_per_item()
            );
        }
        if let Some(s) = &o.alone {
            let _ = writeln!(
                out,
                "             {:.1} ms per item alone: {}",
                s.ms_per_item(),
                crossing_text(s)
            );
        }
        if !o.scaling.is_empty() {
            let steps: Vec<String> = o
                .scaling
                .iter()
                .map(|(w, s)| format!("{w} workers {s:.2}s"))
                .collect();
            let _ = writeln!(out, "  more workers: {}", steps.join(", "));
        }
        let _ = writeln!(
            out,
            "  advice: mode = \"{}\", workers = {}: {}",
            a.mode,
            match a.workers {
                Workers::Auto => "\"auto\"".to_string(),
                Workers::Fixed(n) => n.to_string(),
            },
            a.reason
        );
    }
    for (label, why) in &report.broken {
        let _ = writeln!(out, "\nrun `{label}`: {why}");
    }
    if let Some(why) = &report.current_broken {
        let advised = if report.unchanged {
            "it runs as advised".to_string()
        } else {
            format!("as advised: {:.1} items/s", report.advised_items_per_s)
        };
        let _ = writeln!(
            out,
            "\nthe sample as the pipeline is did not run through ({why}); {advised}"
        );
        return out;
    }
    if report.unchanged {
        let _ = writeln!(
            out,
            "\nthe pipeline already runs as advised: {:.1} items/s on the sample",
            report.current_items_per_s
        );
        return out;
    }
    let _ = writeln!(
        out,
        "\nthe sample as the pipeline is: {:.1} items/s; as advised: {:.1} items/s ({:.2}x)",
        report.current_items_per_s,
        report.advised_items_per_s,
        if report.current_items_per_s > 0.0 {
            report.advised_items_per_s / report.current_items_per_s
        } else {
            0.0
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(items: u64, ms: f64, cpu_ms: f64) -> StageStats {
        StageStats {
            items,
            ms: ms * items as f64,
            cpu_ms: cpu_ms * items as f64,
            ..StageStats::default()
        }
    }

    fn observed(threads: StageStats, processes: StageStats) -> Observed {
        Observed {
            stage: "s".into(),
            kind: "k".into(),
            threads: Some(threads),
            processes: Some(processes),
            current_mode: "threads",
            ..Observed::default()
        }
    }

    #[test]
    fn a_gathering_stage_is_left_as_it_is() {
        let mut o = observed(stats(30, 0.1, 0.1), stats(30, 0.3, 0.1));
        o.gathers = true;
        o.current_mode = "processes";
        o.current_workers = Workers::Fixed(3);
        let a = advise_stage(&o, 2);
        assert_eq!((a.mode, a.workers), ("processes", Workers::Fixed(3)));
        assert!(a.reason.starts_with("gathers every item"), "{}", a.reason);
    }

    #[test]
    fn a_stage_that_crashed_its_worker_goes_to_processes() {
        let mut p = stats(30, 10.0, 9.0);
        p.crashed = 3;
        p.crash = Some("worker killed by signal 11 (SIGSEGV)".into());
        let a = advise_stage(&observed(stats(27, 10.0, 9.0), p), 2);
        assert_eq!(a.mode, "processes");
        assert!(
            a.reason.contains("crashed its worker on 3 of 30 items"),
            "{}",
            a.reason
        );
        assert!(a.reason.contains("SIGSEGV"), "{}", a.reason);
    }

    #[test]
    fn a_stage_that_waits_gets_the_fewest_workers_that_ran_fastest() {
        let mut o = observed(stats(30, 50.0, 1.0), stats(30, 52.0, 1.0));
        o.scaling = vec![(2, 0.80), (4, 0.41), (8, 0.21), (16, 0.12), (32, 0.118)];
        let a = advise_stage(&o, 2);
        assert_eq!((a.mode, a.workers), ("threads", Workers::Fixed(16)));
        assert!(
            a.reason.starts_with("waits 98% of the time"),
            "{}",
            a.reason
        );
        assert!(a.reason.contains("16 workers on 2 cores"), "{}", a.reason);
    }

    #[test]
    fn a_low_cpu_share_without_gain_from_more_workers_is_not_waiting() {
        // A busy machine preempts: 40% CPU, but 4 and 8 workers are no
        // faster than 2.
        let mut o = observed(stats(30, 20.0, 8.0), stats(30, 21.0, 8.0));
        o.scaling = vec![(2, 0.50), (4, 0.49)];
        let a = advise_stage(&o, 2);
        assert_eq!((a.mode, a.workers), ("threads", Workers::Auto));
        assert!(a.reason.starts_with("CPU-bound"), "{}", a.reason);
    }

    #[test]
    fn a_cpu_bound_stage_gets_threads_and_the_price_of_processes() {
        // Nearly free in processes: the pixels stay in the worker chain.
        let a = advise_stage(&observed(stats(30, 20.0, 19.6), stats(30, 20.4, 19.8)), 2);
        assert_eq!((a.mode, a.workers), ("threads", Workers::Auto));
        assert!(a.reason.starts_with("CPU-bound (98% CPU"), "{}", a.reason);
        assert!(
            a.reason.contains(
                "processes cost 2% here, so choose processes if the inputs are untrusted"
            ),
            "{}",
            a.reason
        );
        // Without a run alone, the chain's cost is the price: a third more.
        let a = advise_stage(&observed(stats(30, 6.0, 5.9), stats(30, 8.0, 6.0)), 2);
        assert_eq!(a.mode, "threads");
        assert!(
            a.reason.contains(
                "processes cost 33% here, as what it takes and gives crosses the process boundary"
            ),
            "{}",
            a.reason
        );
    }

    fn crossing(items: u64, ms: f64, bytes: u64) -> StageStats {
        StageStats {
            crossed_bytes: bytes * items,
            worker_starts: 2,
            worker_start_ms: 18.0,
            worker_peak_mb: 120.0,
            ..stats(items, ms, ms * 0.98)
        }
    }

    #[test]
    fn a_pixel_heavy_stage_is_told_what_crosses_the_boundary_and_what_it_costs() {
        // 12 MB of pixels in and 0.2 MB out per item: 30% slower alone in a
        // worker, 1% when its neighbours share the worker.
        let mut o = observed(stats(30, 20.0, 19.8), stats(30, 20.2, 19.8));
        o.alone = Some(crossing(30, 26.0, 12_200_000));
        o.by_jobs = vec![
            JobsPoint {
                jobs: 1,
                wall_s: 1.9,
                ms_per_item: 19.0,
            },
            JobsPoint {
                jobs: 2,
                wall_s: 1.0,
                ms_per_item: 20.0,
            },
        ];
        let a = advise_stage(&o, 2);
        assert_eq!((a.mode, a.workers), ("threads", Workers::Auto));
        assert!(
            a.reason.starts_with(
                "CPU-bound (99% CPU, 20.0 ms per item; the run 1.9x as fast on 2 jobs as on 1 job)"
            ),
            "{}",
            a.reason
        );
        assert!(
            a.reason.contains(
                "alone in processes it costs 30% here, as 11.6 MiB per item cross the process boundary, but 1% with its neighbours in processes too, as the pixels stay inside the worker chain"
            ),
            "{}",
            a.reason
        );
        // Cheap alone too (a small image crosses): isolation is nearly free.
        o.alone = Some(crossing(30, 20.6, 40_000));
        let a = advise_stage(&o, 2);
        assert!(
            a.reason.contains(
                "processes cost 3% here (39.1 KiB per item cross), so choose processes if the inputs are untrusted"
            ),
            "{}",
            a.reason
        );
        // A tiny stage: the round trip is the cost, whatever the bytes.
        let mut o = observed(stats(30, 0.3, 0.3), stats(30, 0.5, 0.3));
        o.alone = Some(crossing(30, 0.5, 6_000));
        let a = advise_stage(&o, 2);
        assert!(
            a.reason.contains(
                "processes cost 67% here, as each item makes a round trip to a worker (with 5.9 KiB)"
            ),
            "{}",
            a.reason
        );
        // The measurements a person reads: per item and per worker.
        let text = crossing_text(o.alone.as_ref().expect("alone"));
        assert_eq!(
            text,
            "5.9 KiB cross per item, a worker starts in 9 ms, the largest worker holds 114.4 MiB"
        );
    }

    #[test]
    fn reports_are_read_per_stage_with_crashes_blamed() {
        let lines: Vec<serde_json::Value> = [
            r#"{"path":"a","status":"ok","ms":{"x":10.0,"y":2.0},"cpu_ms":{"x":9.0,"y":0.1}}"#,
            r#"{"path":"b","status":"failed","stage":"y","reason":"worker killed by signal 6 (SIGABRT)","ms":{"x":12.0}}"#,
            r#"{"path":"c","status":"ok","ms":{"z":3.0},"crossed_bytes":{"z":1000},"worker_start_ms":{"z":8.0},"worker_peak_mb":{"z":30.5}}"#,
            r#"{"path":"d","status":"ok","ms":{"z":3.0},"crossed_bytes":{"z":3000},"worker_peak_mb":{"z":31.0}}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
        let r = stats_of(&lines, Duration::from_secs(1));
        assert_eq!((r.items, r.ok, r.failed), (4, 3, 1));
        assert_eq!(r.stages["x"].crossed_bytes, 0);
        assert_eq!(r.stages["x"].items, 2);
        assert!((r.stages["x"].ms_per_item() - 11.0).abs() < 1e-9);
        assert_eq!(r.stages["y"].crashed, 1);
        let z = &r.stages["z"];
        assert_eq!((z.crossed_per_item(), z.start_ms()), (2000.0, Some(8.0)));
        assert_eq!(z.worker_peak_mb, 31.0);
    }

    #[test]
    fn the_sample_spreads_over_formats_and_sizes() {
        let files: Vec<(PathBuf, u64)> = (0..100)
            .map(|i| {
                let ext = if i % 4 == 0 { "png" } else { "jpg" };
                (PathBuf::from(format!("f{i:03}.{ext}")), i as u64 * 1000)
            })
            .collect();
        let s = choose_sample(files.clone(), 10);
        assert_eq!(s.len(), 10);
        assert!(s.iter().any(|p| p.extension().is_some_and(|e| e == "png")));
        assert_eq!(s, choose_sample(files, 10), "not deterministic");
    }

    #[test]
    fn applied_advice_changes_lines_in_place_or_adds_them_with_a_reason() {
        let text = "[[stage]]\nname = \"scan\"\nkind = \"scan\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmode = \"inline\"   # old\n\n[[stage]]\nname = \"tool\"\nkind = \"exec\"\ncommand = [\"true\"]\n";
        let advice = [
            Advice {
                stage: "load".into(),
                mode: "threads",
                workers: Workers::Auto,
                reason: "CPU-bound".into(),
            },
            Advice {
                stage: "tool".into(),
                mode: "threads",
                workers: Workers::Fixed(16),
                reason: "waits".into(),
            },
        ];
        let out = apply(text, &advice).expect("applies");
        assert!(
            out.contains("mode = \"threads\"  # advise: CPU-bound\n"),
            "{out}"
        );
        assert!(!out.contains("# old"), "{out}");
        assert!(
            out.contains("kind = \"exec\"\nmode = \"threads\"  # advise: waits\nworkers = 16\n"),
            "{out}"
        );
        // Still a pipeline.
        let mut errors = Vec::new();
        let doc = crate::config::raw::parse(&out, 0, &mut errors).expect("parses");
        assert_eq!(doc.stages.len(), 3);
    }
}
