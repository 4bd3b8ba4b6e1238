//! Running on a cluster: `conveyor slurm` writes (and can submit and wait
//! for) a Slurm array job with one task per shard, and `merge-reports`
//! combines the shards' per-item reports into one summary.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use crate::config::Pipeline;

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
    pub fn line(&self) -> String {
        format!(
            "{} items: {} ok, {} failed, {} filtered, {} up to date, {} not processed",
            self.items, self.ok, self.failed, self.filtered, self.up_to_date, self.cancelled
        )
    }
}

/// Combine report files into `out` (if any), counting statuses.
pub fn merge_reports(
    files: &[PathBuf],
    mut out: Option<&mut dyn std::io::Write>,
) -> Result<Merged, String> {
    let mut m = Merged::default();
    for f in files {
        let file =
            std::fs::File::open(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| format!("{}:{}: not a report line: {e}", f.display(), n + 1))?;
            m.items += 1;
            match v.get("status").and_then(|s| s.as_str()) {
                Some("ok") => m.ok += 1,
                Some("failed") => m.failed += 1,
                Some("filtered") => m.filtered += 1,
                Some("up_to_date") => m.up_to_date += 1,
                _ => m.cancelled += 1,
            }
            if let Some(o) = out.as_mut() {
                let _ = writeln!(o, "{line}");
            }
        }
    }
    Ok(m)
}
