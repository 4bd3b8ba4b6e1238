//! Seeing what happens: progress, the per-item report, the trace, the
//! schema, dry runs, logs, and plain output when stderr is not a terminal.

use std::collections::BTreeMap;

use super::*;

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The rows of the summary table, split into columns: stage kind mode [xN]
/// in out failed busy cpu cores items/s.
fn table_rows(stderr: &str) -> Vec<Vec<&str>> {
    stderr
        .lines()
        .skip_while(|l| !l.starts_with("stage "))
        .skip(1)
        .take_while(|l| !l.contains(" items in "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 8)
        .collect()
}

/// Per-stage (in, out) from the summary table.
fn table(stderr: &str) -> BTreeMap<String, (String, String)> {
    table_rows(stderr)
        .into_iter()
        .map(|cols| {
            let n = cols.len();
            (
                cols[0].to_string(),
                (cols[n - 7].to_string(), cols[n - 6].to_string()),
            )
        })
        .collect()
}

fn mixed_with_filter(ws: &Workspace) {
    for s in ["meadow.jpg", "tower.jpg", "tiny.jpg", "trips/hills.png"] {
        ws.sample(s, &format!("in/{s}"));
    }
    ws.write("in/broken.jpg", b"nope")
        .write("in/notes.txt", b"text");
    ws.write(
        "p.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"keep\"\nkind = \"filter\"\nextensions = [\"jpg\", \"png\"]\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"thumb\"\nkind = \"resize\"\nwidth = 64\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
}

#[test]
fn json_progress_lines_parse_and_only_grow() {
    let ws = Workspace::new();
    ws.many_tiny("many", 400);
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=many",
            "--mode",
            "inline",
            "--progress",
            "json",
        ])
        .run();
    done.code(0);
    let lines = json_lines(&done.stderr());
    assert!(!lines.is_empty(), "no progress lines: {}", done.stderr());
    let mut last: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let mut ticks = 0;
    for l in &lines {
        let stage = l["stage"].as_str().expect("stage").to_string();
        let doneness = l["done"].as_u64().expect("done");
        let elapsed = l["elapsed"].as_f64().expect("elapsed");
        assert!(l["failed"].is_u64() && l["in_flight"].is_i64());
        if let Some((d, e)) = last.get(&stage) {
            assert!(doneness >= *d && elapsed >= *e, "{stage} went back: {l}");
        }
        if stage == "scan" {
            ticks += 1;
        }
        last.insert(stage, (doneness, elapsed));
    }
    assert_eq!(
        last.keys().collect::<Vec<_>>(),
        vec!["jpeg", "load", "save", "scan", "thumb"]
    );
    // At most a few updates a second.
    let elapsed = last["scan"].1;
    assert!(
        f64::from(ticks) <= elapsed * 5.0 + 1.0,
        "{ticks} updates in {elapsed:.2}s"
    );
}

#[test]
fn the_report_adds_up_to_the_summary() {
    let ws = Workspace::new();
    mixed_with_filter(&ws);
    for (round, mode) in ["threads", "processes"].iter().enumerate() {
        let report = format!("report{round}.jsonl");
        let done = ws
            .conveyor()
            .args(&["run", "p.toml", "--report", &report, "--mode", mode])
            .run();
        let stderr = done.stderr();
        let lines = json_lines(&std::fs::read_to_string(ws.path(&report)).expect("report"));
        let (scanned, ok, failed, filtered, up) = summary_counts(&stderr);
        assert_eq!(lines.len() as u64, scanned, "{stderr}");
        assert_eq!(scanned, 6);
        let count = |s: &str| lines.iter().filter(|l| l["status"] == s).count() as u64;
        assert_eq!(
            (
                count("ok"),
                count("failed"),
                count("filtered"),
                count("up_to_date")
            ),
            (ok, failed, filtered, up),
            "{mode}: {stderr}"
        );
        // The second round finds the first round's outputs up to date.
        if round == 0 {
            assert_eq!((ok, failed, filtered, up), (4, 1, 1, 0));
        } else {
            assert_eq!((ok, failed, filtered, up), (0, 1, 1, 4));
        }
        let broken = lines
            .iter()
            .find(|l| l["path"] == "in/broken.jpg")
            .expect("broken line");
        assert_eq!(broken["status"], "failed");
        assert_eq!(broken["stage"], "load");
        assert_eq!(broken["reason"], UNRECOGNISED);
        let notes = lines
            .iter()
            .find(|l| l["path"] == "in/notes.txt")
            .expect("notes line");
        assert_eq!(
            (notes["status"].as_str(), notes["stage"].as_str()),
            (Some("filtered"), Some("keep"))
        );
        let meadow = lines
            .iter()
            .find(|l| l["path"] == "in/meadow.jpg")
            .expect("meadow line");
        assert_eq!(meadow["outputs"], serde_json::json!(["out/meadow.jpg"]));
        if round == 0 {
            for stage in ["keep", "load", "thumb", "jpeg", "save"] {
                assert!(
                    meadow["ms"][stage].as_f64().is_some_and(|ms| ms >= 0.0),
                    "{stage}: {meadow}"
                );
            }
        }
    }
}

#[test]
fn the_trace_has_a_span_per_item_per_stage() {
    for mode in ["threads", "processes"] {
        let ws = Workspace::new();
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--trace",
                "trace.json",
                "--mode",
                mode,
            ])
            .run()
            .code(0);
        let events: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(ws.path("trace.json")).expect("trace"))
                .expect("trace is JSON");
        let tracks: BTreeMap<u64, String> = events
            .iter()
            .filter(|e| e["ph"] == "M")
            .map(|e| {
                (
                    e["tid"].as_u64().expect("tid"),
                    e["args"]["name"].as_str().expect("name").to_string(),
                )
            })
            .collect();
        let spans: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        for stage in ["load", "thumb", "jpeg", "save"] {
            let mut items: Vec<&str> = spans
                .iter()
                .filter(|e| e["cat"] == stage)
                .map(|e| e["name"].as_str().expect("name"))
                .collect();
            items.sort();
            items.dedup();
            let n = spans.iter().filter(|e| e["cat"] == stage).count();
            assert_eq!((items.len(), n), (12, 12), "{mode}: {stage}");
        }
        for e in &spans {
            assert!(e["ts"].as_f64().is_some() && e["dur"].as_f64().is_some_and(|d| d >= 0.0));
            let track = &tracks[&e["tid"].as_u64().expect("tid")];
            let expected = if mode == "processes" {
                "/pid-"
            } else {
                "/thread-"
            };
            assert!(track.contains(expected), "{mode}: track {track}");
            // The four stages share their workers (auto threads, or one
            // processes chain), so each item passes them on one track.
            assert!(
                track.starts_with("load+thumb+jpeg+save/"),
                "{mode}: track {track}"
            );
        }
        let mut by_item: BTreeMap<&str, Vec<(f64, u64, &str)>> = BTreeMap::new();
        for e in &spans {
            by_item
                .entry(e["name"].as_str().expect("name"))
                .or_default()
                .push((
                    e["ts"].as_f64().expect("ts"),
                    e["tid"].as_u64().expect("tid"),
                    e["cat"].as_str().expect("cat"),
                ));
        }
        for (item, mut s) in by_item {
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            let stages: Vec<&str> = s.iter().map(|x| x.2).collect();
            assert_eq!(stages, ["load", "thumb", "jpeg", "save"], "{mode}: {item}");
            assert!(
                s.iter().all(|x| x.1 == s[0].1),
                "{mode}: {item} moved tracks"
            );
        }
        assert!(
            events
                .iter()
                .any(|e| e["ph"] == "C" && e["name"] == "queue depth"),
            "{mode}: no queue counters"
        );
    }
}

#[test]
fn the_schema_accepts_every_example_and_rejects_typos() {
    let ws = Workspace::new();
    let done = ws.conveyor().args(&["schema"]).run();
    done.code(0);
    let schema: serde_json::Value = serde_json::from_str(&done.stdout()).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut checked = 0;
    for entry in std::fs::read_dir(Path::new(REPO).join("pipelines")).expect("pipelines") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let doc: serde_json::Value = toml::from_str(&text).expect("TOML");
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 7);
    let typo = std::fs::read_to_string(Path::new(REPO).join("pipelines/thumbnails.toml"))
        .expect("read")
        .replace("width = 256", "widht = 256");
    let doc: serde_json::Value = toml::from_str(&typo).expect("TOML");
    assert!(!validator.is_valid(&doc), "a typo was accepted");
    let bad_value = std::fs::read_to_string(Path::new(REPO).join("pipelines/thumbnails.toml"))
        .expect("read")
        .replace("fit = \"contain\"", "fit = \"stretch\"");
    assert!(!validator.is_valid(&toml::from_str(&bad_value).expect("TOML")));
}

#[test]
fn a_dry_run_touches_nothing_and_predicts_the_run() {
    let ws = Workspace::new();
    mixed_with_filter(&ws);
    let dry = ws.conveyor().args(&["run", "p.toml", "--dry-run"]).run();
    dry.stderr_has("dry run: no pixel was decoded and no file written");
    assert!(!ws.path("out").exists(), "a dry run wrote something");
    let real = ws.conveyor().args(&["run", "p.toml"]).run();
    real.code(1);
    // The same counts: the broken file's header already says it is no
    // image, so the dry run fails it as the real run does.
    let (d, r) = (dry.tally(), real.tally());
    assert_eq!(d, r, "dry run {d:?}, real run {r:?}");
    dry.code(1)
        .stderr_has("in/broken.jpg: not a recognised image format");
    let (dt, rt) = (table(&dry.stderr()), table(&real.stderr()));
    assert_eq!(dt["scan"], rt["scan"]);
    assert_eq!(dt["keep"], rt["keep"]);
    let mut listed: Vec<String> = dry
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("write       ").map(str::to_string))
        .collect();
    listed.sort();
    let written: Vec<String> = ws
        .files("out")
        .into_keys()
        .map(|k| format!("out/{k}"))
        .collect();
    assert_eq!(listed, written);
    // After the run, a dry run finds them up to date.
    let again = ws.conveyor().args(&["run", "p.toml", "--dry-run"]).run();
    let out = again.stdout();
    let up: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("up to date  "))
        .collect();
    assert_eq!(up.len(), 4, "{}", again.stdout());
    again.stderr_has("4 up to date");
}

#[test]
fn output_is_plain_when_stderr_is_not_a_terminal() {
    let ws = Workspace::new();
    mixed_with_filter(&ws);
    let done = ws.conveyor().args(&["run", "p.toml"]).run();
    assert!(
        !done.stderr().contains('\u{1b}'),
        "escape codes in: {:?}",
        done.stderr()
    );
    let bad = ws
        .conveyor()
        .args(&["check", "p.toml", "--set", "thumb.widht=3"])
        .run();
    bad.code(2);
    assert!(!bad.stderr().contains('\u{1b}'));
    bad.stderr_has("^^^^^ unknown key");
}

#[test]
fn verbose_logs_name_worker_starts() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--mode",
            "processes",
            "-v",
        ])
        .run()
        .code(0)
        .stderr_has("worker started")
        .stderr_has("stage=load+thumb+jpeg+save");
}

#[test]
fn auto_workers_share_the_job_budget() {
    for jobs in [1usize, 2] {
        let ws = Workspace::new();
        let done = ws
            .conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--jobs",
                &jobs.to_string(),
                "--trace",
                "t.json",
            ])
            .run();
        done.code(0).stderr_has(&format!("threads auto/{jobs}"));
        let events: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(ws.path("t.json")).expect("trace"))
                .expect("JSON");
        // Whatever the number of threads, no more than `jobs` items are
        // being processed at any moment.
        let mut edges: Vec<(f64, i32)> = Vec::new();
        for e in events.iter().filter(|e| e["ph"] == "X") {
            let ts = e["ts"].as_f64().expect("ts");
            let dur = e["dur"].as_f64().expect("dur");
            // A thread running a chain of stages starts each stage's span
            // where the last one ended; a nanosecond off each end keeps
            // rounding in the microsecond figures from making them overlap.
            edges.push((ts, 1));
            edges.push((ts + dur - 1e-3, -1));
        }
        // Ends sort before starts at the same instant.
        edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut now, mut most) = (0, 0);
        for (_, d) in edges {
            now += d;
            most = most.max(now);
        }
        assert!(
            most as usize <= jobs,
            "{most} items at once with --jobs {jobs}"
        );
        assert_eq!(ws.files("out/thumbs").len(), 12);
    }
}

/// Per-stage `cores` (average busy workers) from the summary table.
fn cores(stderr: &str) -> BTreeMap<String, f64> {
    table_rows(stderr)
        .into_iter()
        .filter_map(|cols| {
            let cores = cols[cols.len() - 2].parse().ok()?;
            Some((cols[0].to_string(), cores))
        })
        .collect()
}

#[test]
fn the_summary_shows_where_the_cores_went() {
    let ws = Workspace::new();
    for i in 0..24 {
        ws.sample("meadow.jpg", &format!("in/{i:02}.jpg"));
    }
    ws.write(
        "p.toml",
        // A short queue, so the scan has to wait for room.
        b"[pipeline]\nqueue = 2\n\n[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"soft\"\nkind = \"blur\"\nsigma = 12.0\n\n[[stage]]\nname = \"small\"\nkind = \"resize\"\nwidth = 64\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    let done = ws.conveyor().args(&["run", "p.toml", "--jobs", "2"]).run();
    done.code(0).stderr_has("threads auto/2");
    assert_eq!(ws.files("out").len(), 24);
    let stderr = done.stderr();
    let cores = cores(&stderr);
    let of = |s: &str| {
        *cores
            .get(s)
            .unwrap_or_else(|| panic!("no cores figure for {s}:\n{stderr}"))
    };
    // The blur of a full-size image costs far more than encoding a 64 px
    // one, so it got more of the two cores.
    assert!(of("soft") > of("jpeg"), "{stderr}");
    let working: f64 = ["load", "soft", "small", "jpeg", "save"]
        .iter()
        .map(|s| of(s))
        .sum();
    assert!(
        working > 0.0 && working <= 2.05,
        "auto stages used {working} cores of 2:\n{stderr}"
    );
    // The scan waits on a full queue most of the run; waiting is not work.
    assert!(of("scan") < 0.5, "{stderr}");
}

/// A pipeline of two `exec` stages, one that waits and one that computes,
/// and a thumbnail stage, on three photos.
const WAIT_AND_WORK: &str = r#"[[stage]]
name = "scan"
kind = "scan"
root = "in"

[[stage]]
name = "waits"
kind = "exec"
command = ["sleep", "0.3"]

[[stage]]
name = "computes"
kind = "exec"
shell = true
command = ["i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done"]

[[stage]]
name = "thumb"
kind = "thumbnail"
width = 200

[[stage]]
name = "jpeg"
kind = "encode"

[[stage]]
name = "save"
kind = "write"
dir = "out"
"#;

#[test]
fn cpu_time_per_stage_tells_waiting_from_computing_in_every_mode() {
    let ws = Workspace::new();
    for s in ["meadow.jpg", "tower.jpg", "dusk.jpg"] {
        ws.sample(s, &format!("in/{s}"));
    }
    ws.write("p.toml", WAIT_AND_WORK.as_bytes());
    for mode in ["threads", "processes"] {
        let done = ws
            .conveyor()
            .args(&["run", "p.toml", "--force", "--mode", mode])
            .run();
        done.code(0);
        assert_eq!(done.report.len(), 3);
        for line in &done.report {
            let ms = |stage: &str| line["ms"][stage].as_f64().expect("ms");
            let cpu = |stage: &str| line["cpu_ms"][stage].as_f64().expect("cpu_ms");
            // Sleeping is waiting: a few ms of CPU for 300 ms.
            assert!(ms("waits") >= 290.0, "{mode}: {line}");
            assert!(cpu("waits") < 0.2 * ms("waits"), "{mode}: {line}");
            // The shell's loop is the command's own CPU time, counted: tens
            // of ms however busy the machine is (its share of the wall
            // time is not, on a loaded machine).
            assert!(cpu("computes") > 20.0, "{mode}: {line}");
            assert!(cpu("computes") > 5.0 * cpu("waits"), "{mode}: {line}");
            assert!(
                cpu("thumb") > 0.0 && cpu("thumb") <= 1.5 * ms("thumb") + 5.0,
                "{mode}: {line}"
            );
        }
        // The summary's cpu column says the same, as a share of busy time.
        let stderr = done.stderr();
        let rows = table_rows(&stderr);
        let cpu_col = |stage: &str| -> f64 {
            let cols = rows.iter().find(|c| c[0] == stage).expect("row");
            let cell = cols[cols.len() - 3];
            cell.trim_end_matches('%').parse().expect("a percentage")
        };
        assert!(cpu_col("waits") < 5.0, "{mode}: {}", done.stderr());
        assert!(cpu_col("computes") > 15.0, "{mode}: {}", done.stderr());
    }
}

const CROSSING: &str = r#"[[stage]]
name = "scan"
kind = "scan"
root = "in"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "thumb"
kind = "resize"
width = 64
height = 64
workers = 1

[[stage]]
name = "jpeg"
kind = "encode"

[[stage]]
name = "save"
kind = "write"
dir = "out"
"#;

#[test]
fn the_report_tells_what_crosses_into_a_worker_and_what_a_worker_costs() {
    let ws = Workspace::new();
    let photos = ["meadow.jpg", "tower.jpg", "dusk.jpg"];
    for s in photos {
        ws.sample(s, &format!("in/{s}"));
    }
    ws.write("p.toml", CROSSING.as_bytes());
    let pixels = |line: &serde_json::Value| -> u64 {
        let name = line["path"].as_str().expect("path");
        let (w, h) = image::image_dimensions(ws.path(name)).expect("a sample");
        u64::from(w) * u64::from(h) * 3
    };

    // The resize alone in a worker: the decoded pixels go in, the 64 px
    // thumbnail comes back.
    let done = ws
        .conveyor()
        .args(&["run", "p.toml", "--force", "--mode", "thumb=processes"])
        .run();
    done.code(0);
    assert_eq!(done.report.len(), 3);
    for line in &done.report {
        let crossed = line["crossed_bytes"]["thumb"]
            .as_u64()
            .unwrap_or_else(|| panic!("no crossed bytes: {line}"));
        let px = pixels(line);
        assert!(
            crossed >= px + 64 * 43 * 3 && crossed < px + 64 * 64 * 3 + 4096,
            "{crossed} bytes for {px} bytes of pixels: {line}"
        );
        let keys: Vec<&String> = line["crossed_bytes"]
            .as_object()
            .expect("a map")
            .keys()
            .collect();
        assert_eq!(keys, ["thumb"], "only processes stages cross: {line}");
        // The worker held the decoded image at least once.
        let peak = line["worker_peak_mb"]["thumb"].as_f64().expect("peak");
        assert!(peak * 1e6 > px as f64, "{line}");
    }
    // One worker, started once, for the first item; the others found it.
    let starts: Vec<f64> = done
        .report
        .iter()
        .filter_map(|l| l["worker_start_ms"]["thumb"].as_f64())
        .collect();
    assert_eq!(starts.len(), 1, "{:?}", done.report);
    assert!(starts[0] > 0.0 && starts[0] < 10_000.0, "{starts:?}");

    // Every stage in processes with the same settings is one chain in one
    // worker: the pixels stay in it, and only names and the result's record
    // cross, under the chain's first stage.
    let done = ws
        .conveyor()
        .args(&["run", "p.toml", "--force", "--mode", "processes"])
        .args(&["--set", "thumb.workers=\"auto\""])
        .run();
    done.code(0);
    for line in &done.report {
        let crossed = line["crossed_bytes"].as_object().expect("a map");
        assert_eq!(crossed.keys().collect::<Vec<_>>(), ["load"], "{line}");
        let bytes = crossed["load"].as_u64().expect("bytes");
        assert!(bytes < pixels(line) / 10, "{bytes}: {line}");
    }

    // Threads: nothing crosses, and the report says nothing of it.
    let done = ws.conveyor().args(&["run", "p.toml", "--force"]).run();
    done.code(0);
    for line in &done.report {
        for key in ["crossed_bytes", "worker_start_ms", "worker_peak_mb"] {
            assert!(line.get(key).is_none(), "{key}: {line}");
        }
    }
}
