//! Running on a cluster: the Slurm array job `conveyor slurm` writes (one
//! task per shard), its submission with sbatch and the wait for it, and the
//! merging of the shards' per-item reports into one summary.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use crate::config::Pipeline;
use crate::report::ItemStatus;

/// Quote for a POSIX shell.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The report file of shard `%a` (Slurm's array index) under `dir`.
pub fn report_pattern(dir: &Path, name: &str) -> String {
    dir.join("reports")
        .join(format!("{name}-shard-"))
        .to_string_lossy()
        .into_owned()
}

/// An sbatch script running `pipeline` as `shards` array tasks.
pub fn sbatch_script(
    p: &Pipeline,
    pipeline_file: &Path,
    shards: u32,
    jobs: usize,
    dir: &Path,
    overrides: &[String],
) -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("conveyor"));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let file = std::path::absolute(pipeline_file).unwrap_or_else(|_| pipeline_file.to_path_buf());
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let logs = dir.join("logs").join(format!("{}-%A_%a.log", p.name));
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=conveyor-{}\n", p.name));
    s.push_str(&format!("#SBATCH --array=0-{}\n", shards.saturating_sub(1)));
    s.push_str(&format!("#SBATCH --cpus-per-task={jobs}\n"));
    s.push_str(&format!("#SBATCH --output={}\n", logs.display()));
    s.push_str(&format!("#SBATCH --chdir={}\n", cwd.display()));
    s.push_str("set -euo pipefail\n");
    s.push_str("# Each task takes the files whose path hashes to its index; together the\n");
    s.push_str("# tasks process every file exactly once.\n");
    let mut cmd = vec![
        sh(&exe.to_string_lossy()),
        "run".into(),
        sh(&file.to_string_lossy()),
        "--shard".into(),
        "auto".into(),
        "--jobs".into(),
        jobs.to_string(),
        "--progress".into(),
        "never".into(),
        "--report".into(),
        format!(
            "{}\"$SLURM_ARRAY_TASK_ID\".jsonl",
            sh(&report_pattern(&dir, &p.name))
        ),
    ];
    cmd.extend(overrides.iter().map(|o| sh(o)));
    s.push_str(&format!("exec {}\n", cmd.join(" ")));
    s
}

/// Counts of merged reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Merged {
    pub items: u64,
    pub ok: u64,
    pub failed: u64,
    pub filtered: u64,
    pub up_to_date: u64,
    pub cancelled: u64,
}

impl Merged {
    /// `N items: 3 ok, 1 failed, ...`, every status counted even at 0.
    pub fn line(&self) -> String {
        let counts = [
            (ItemStatus::Ok, self.ok),
            (ItemStatus::Failed, self.failed),
            (ItemStatus::Filtered, self.filtered),
            (ItemStatus::UpToDate, self.up_to_date),
            (ItemStatus::Cancelled, self.cancelled),
        ];
        let parts: Vec<String> = counts
            .iter()
            .map(|(status, n)| format!("{n} {}", status.word()))
            .collect();
        format!("{} items: {}", self.items, parts.join(", "))
    }
}

/// Why reports could not be merged.
#[derive(Debug)]
pub enum MergeError {
    /// A report file could not be opened or read.
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    /// A line of a report is not JSON.
    NotReport {
        file: PathBuf,
        line: usize,
        error: serde_json::Error,
    },
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::Read { file, error } => {
                write!(f, "cannot read {}: {error}", file.display())
            }
            MergeError::NotReport { file, line, error } => {
                write!(f, "{}:{line}: not a report line: {error}", file.display())
            }
        }
    }
}

impl std::error::Error for MergeError {}

/// Combine report files into `out` (if any), counting statuses.
pub fn merge_reports(
    files: &[PathBuf],
    mut out: Option<&mut dyn std::io::Write>,
) -> Result<Merged, MergeError> {
    let mut m = Merged::default();
    for f in files {
        let read = |error| MergeError::Read {
            file: f.clone(),
            error,
        };
        let file = std::fs::File::open(f).map_err(read)?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(read)?;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|error| MergeError::NotReport {
                    file: f.clone(),
                    line: n + 1,
                    error,
                })?;
            m.items += 1;
            // A line without a status a run writes counts as not processed.
            let status = v.get("status").cloned().map(serde_json::from_value);
            match status {
                Some(Ok(ItemStatus::Ok)) => m.ok += 1,
                Some(Ok(ItemStatus::Failed)) => m.failed += 1,
                Some(Ok(ItemStatus::Filtered)) => m.filtered += 1,
                Some(Ok(ItemStatus::UpToDate)) => m.up_to_date += 1,
                _ => m.cancelled += 1,
            }
            if let Some(o) = out.as_mut() {
                let _ = writeln!(o, "{line}");
            }
        }
    }
    Ok(m)
}

/// Why a Slurm job could not be submitted.
#[derive(Debug)]
pub enum SubmitError {
    /// A folder for the script, logs or reports could not be made.
    CreateDir { dir: PathBuf, error: std::io::Error },
    /// The script could not be written.
    WriteScript {
        file: PathBuf,
        error: std::io::Error,
    },
    /// `sbatch` could not be started.
    Sbatch(std::io::Error),
    /// `sbatch` refused the job; its stderr.
    Refused(String),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::CreateDir { dir, error } => {
                write!(f, "cannot create {}: {error}", dir.display())
            }
            SubmitError::WriteScript { file, error } => {
                write!(f, "cannot write {}: {error}", file.display())
            }
            SubmitError::Sbatch(e) => {
                write!(f, "cannot run sbatch: {e} (is Slurm installed here?)")
            }
            SubmitError::Refused(stderr) => write!(f, "sbatch failed: {stderr}"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// A job handed to Slurm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The job id sbatch printed.
    pub job: String,
    /// Where the script was written.
    pub script: PathBuf,
    /// With waiting: whether every task succeeded, as sbatch says.
    pub succeeded: bool,
}

/// Write `script` under `dir` and submit it with sbatch; with `wait`, return
/// when every task has ended. Reports of an earlier submission of the same
/// pipeline are removed first, so they are not merged with this one's.
pub fn submit(name: &str, script: &str, dir: &Path, wait: bool) -> Result<Submitted, SubmitError> {
    let reports = dir.join("reports");
    for d in [dir.join("logs"), reports.clone()] {
        std::fs::create_dir_all(&d).map_err(|error| SubmitError::CreateDir { dir: d, error })?;
    }
    if let Ok(entries) = std::fs::read_dir(&reports) {
        let prefix = format!("{name}-shard-");
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let file = dir.join(format!("{name}.sbatch"));
    std::fs::write(&file, script).map_err(|error| SubmitError::WriteScript {
        file: file.clone(),
        error,
    })?;
    let mut cmd = std::process::Command::new("sbatch");
    cmd.arg("--parsable");
    if wait {
        cmd.arg("--wait");
    }
    let out = cmd.arg(&file).output().map_err(SubmitError::Sbatch)?;
    // Without waiting, a refusal is the whole answer; when waiting, a
    // failed task also makes sbatch fail, and the reports tell the rest.
    if !wait && !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(SubmitError::Refused(stderr));
    }
    Ok(Submitted {
        job: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        script: file,
        succeeded: out.status.success(),
    })
}

/// The shards' report files under `dir`, in name order.
pub fn shard_reports(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("reports"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
