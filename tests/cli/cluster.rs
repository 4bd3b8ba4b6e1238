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
        let (scanned, ok, ..) = summary_counts(&done.stderr());
        assert_eq!(scanned, ok);
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
        counted += summary_counts(&done.stderr()).0;
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
