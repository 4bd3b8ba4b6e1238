//! Shards and the Slurm array script, run here the way Slurm would run it.

use super::*;

#[test]
fn shards_together_process_every_file_once() {
    let ws = Workspace::new();
    let mut total = 0;
    for i in 0..3 {
        let done = ws
            .conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--shard",
                &format!("{i}/3"),
                "--report",
                &format!("r{i}.jsonl"),
            ])
            .run();
        done.code(0);
        let t = Tally::of(&read_report(&ws.path(&format!("r{i}.jsonl"))));
        assert_eq!(t.scanned, t.ok);
        let scanned = t.scanned;
        total += scanned;
    }
    assert_eq!(total, 12);
    assert_eq!(ws.files("out/thumbs").len(), 12);
    // Each shard keeps its own resume journal.
    let journals: Vec<String> = std::fs::read_dir(ws.path("out/thumbs/.conveyor-state"))
        .expect("journals")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(journals.len(), 3, "{journals:?}");
    // The reports merge into one account of all twelve.
    let merged = ws
        .conveyor()
        .args(&["merge-reports", "r0.jsonl", "r1.jsonl", "r2.jsonl"])
        .run();
    merged.code(0).stderr_has("12 items: 12 ok, 0 failed");
    assert_eq!(merged.stdout().lines().count(), 12);
}

#[test]
fn shard_auto_reads_the_scheduler() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml", "--shard", "auto"])
        .run()
        .code(2)
        .stderr_has("--shard auto needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT");
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml", "--shard", "5/4"])
        .run()
        .code(2)
        .stderr_has("shard index 5 must be below the count 4");
    let mut counted = 0;
    for i in 0..2 {
        let done = ws
            .conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--shard",
                "auto",
                "--shards",
                "2",
            ])
            .env("JOB_COMPLETION_INDEX", &i.to_string())
            .run();
        done.code(0);
        counted += done.tally().scanned;
    }
    assert_eq!(counted, 12);
}

#[test]
fn the_slurm_script_runs_every_shard() {
    let ws = Workspace::new();
    let done = ws
        .conveyor()
        .args(&[
            "slurm",
            "pipelines/thumbnails.toml",
            "--shards",
            "4",
            "--jobs",
            "1",
            "--set",
            "thumb.width=128",
        ])
        .run();
    done.code(0);
    let script = done.stdout();
    assert!(script.contains("#SBATCH --array=0-3"), "{script}");
    assert!(script.contains("#SBATCH --cpus-per-task=1"), "{script}");
    assert!(script.contains("--shard auto"), "{script}");
    assert!(script.contains("'--set' 'thumb.width=128'"), "{script}");
    ws.write("job.sbatch", script.as_bytes());
    // What Slurm does: run the script once per array index.
    std::fs::create_dir_all(ws.path("conveyor-slurm/reports")).expect("mkdir");
    for i in 0..4 {
        let status = Command::new("bash")
            .arg(ws.path("job.sbatch"))
            .current_dir(ws.path(""))
            .env("SLURM_ARRAY_TASK_ID", i.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "4")
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .status()
            .expect("bash");
        assert!(status.success(), "task {i}");
    }
    let files = ws.files("out/thumbs");
    assert_eq!(files.len(), 12);
    for bytes in files.values() {
        assert!(dims(bytes).0 <= 128);
    }
    let reports: Vec<String> = (0..4)
        .map(|i| format!("conveyor-slurm/reports/thumbnails-shard-{i}.jsonl"))
        .collect();
    let args: Vec<&str> = std::iter::once("merge-reports")
        .chain(reports.iter().map(String::as_str))
        .collect();
    let merged = ws.conveyor().args(&args).run();
    merged.code(0).stderr_has("12 items: 12 ok, 0 failed");
    // Every input exactly once across the shards.
    let mut paths: Vec<String> = merged
        .stdout()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["path"].as_str().expect("path").to_string()
        })
        .collect();
    paths.sort();
    let n = paths.len();
    paths.dedup();
    assert_eq!((n, paths.len()), (12, 12));
}

/// A one-node Slurm started by `scripts/slurm-local.sh`, stopped on drop.
struct Slurm {
    dir: tempfile::TempDir,
    conf: String,
}

impl Slurm {
    fn start() -> Result<Slurm, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("bash")
            .arg(Path::new(REPO).join("scripts/slurm-local.sh"))
            .arg("start")
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let conf = text
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .map(str::to_string)
            .ok_or_else(|| format!("{}{}", text, String::from_utf8_lossy(&out.stderr)))?;
        Ok(Slurm { dir, conf })
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(REPO).join("scripts/slurm-local.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_real_slurm_runs_the_shards() {
    if std::env::var_os("CONVEYOR_TEST_SLURM").is_none() {
        eprintln!(
            "skipped: set CONVEYOR_TEST_SLURM=1 to run against a one-node Slurm on loopback \
             (needs root; installs Debian's slurm-wlm; .ci/run does this)"
        );
        return;
    }
    let slurm = match Slurm::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: could not start a local Slurm here: {e}");
            return;
        }
    };
    let ws = Workspace::new();
    let done = ws
        .conveyor()
        .args(&[
            "slurm",
            "pipelines/thumbnails.toml",
            "--shards",
            "4",
            "--jobs",
            "1",
            "--submit",
            "--wait",
        ])
        .env("SLURM_CONF", &slurm.conf)
        .run();
    done.code(0)
        .stderr_has("4 of 4 shard reports")
        .stderr_has("12 items: 12 ok, 0 failed, 0 filtered, 0 up to date, 0 not processed");
    // Every input processed exactly once, by one of the four tasks.
    assert_eq!(ws.files("out/thumbs").len(), 12);
    let mut seen = Vec::new();
    for i in 0..4 {
        let report = std::fs::read_to_string(ws.path(&format!(
            "conveyor-slurm/reports/thumbnails-shard-{i}.jsonl"
        )))
        .expect("a report per task");
        for line in report.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            seen.push(v["path"].as_str().expect("path").to_string());
        }
    }
    seen.sort();
    let n = seen.len();
    seen.dedup();
    assert_eq!((n, seen.len()), (12, 12));
}
