//! The end state of a run is exact: the last `--progress json` lines add
//! up, the summary after Ctrl-C counts what is on disk and in the journal,
//! and no progress bar is left on the screen after one or two Ctrl-C.

use super::*;

/// Scan, decode, encode, write, then a manifest after the writer: the
/// writer is not the last stage, so an interrupt finds items written and
/// journalled but not yet through.
const AFTER_THE_WRITER: &str = r#"
[pipeline]
name = "ends"
on_error = "skip"

[[stage]]
name = "scan"
kind = "scan"
root = "many"

[[stage]]
name = "load"
kind = "decode"
mode = "threads"

[[stage]]
name = "jpeg"
kind = "encode"
format = "jpeg"
mode = "threads"

[[stage]]
name = "save"
kind = "write"
dir = "out/thumbs"
filename = "{rel_dir}/{stem}.{ext}"

[[stage]]
name = "index"
kind = "manifest"
path = "out/manifest.csv"
"#;

/// The last JSON line of each stage.
fn last_lines(stderr: &str) -> BTreeMap<String, serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["stage"].as_str()?.to_string(), v)))
        .collect()
}

fn adds_up(line: &serde_json::Value) -> bool {
    let n = |k: &str| line[k].as_u64().unwrap_or(u64::MAX / 8);
    n("done") + n("failed") + n("filtered") + n("up_to_date") == n("total")
        && line["total_known"] == serde_json::json!(true)
}

#[test]
fn json_progress_ends_with_an_exact_line_per_stage() {
    let ws = Workspace::new();
    ws.many_tiny("many", 300);
    ws.write("many/broken.jpg", b"not a jpeg");
    ws.write("ends.toml", AFTER_THE_WRITER.as_bytes());
    for (round, fresh) in [(0, 301), (1, 1)] {
        let done = ws
            .conveyor()
            .args(&["run", "ends.toml", "--progress", "json"])
            .run();
        done.code(1);
        let last = last_lines(&done.stderr());
        assert_eq!(last.len(), 5, "round {round}: {}", done.stderr());
        for (stage, line) in &last {
            assert!(adds_up(line), "round {round}, {stage}: {line}");
        }
        assert_eq!(last["scan"]["total"], fresh + 300 * round, "{round}");
        assert_eq!(last["scan"]["up_to_date"], 300 * round, "{round}");
        assert_eq!(last["load"]["failed"], 1, "{round}");
        assert_eq!(last["save"]["done"], 300 - 300 * round, "{round}");
    }
}

/// Two writers, both feeding one manifest.
const TWO_WRITERS: &str = r#"
[pipeline]
name = "two"

[[stage]]
name = "scan"
kind = "scan"
root = "many"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "jpeg"
kind = "encode"
format = "jpeg"

[[stage]]
name = "save-a"
kind = "write"
dir = "out/a"

[[stage]]
name = "save-b"
kind = "write"
dir = "out/b"
inputs = ["jpeg"]

[[stage]]
name = "index"
kind = "manifest"
path = "out/manifest.csv"
inputs = ["save-a", "save-b"]
"#;

#[test]
fn a_stage_fed_by_two_branches_counts_items_not_visits() {
    let ws = Workspace::new();
    ws.many_tiny("many", 40);
    ws.write("two.toml", TWO_WRITERS.as_bytes());
    let done = ws
        .conveyor()
        .args(&["run", "two.toml", "--progress", "json"])
        .run();
    done.code(0);
    let last = last_lines(&done.stderr());
    for (stage, line) in &last {
        assert!(adds_up(line), "{stage}: {line}");
    }
    assert_eq!(last["index"]["done"], 40, "{}", last["index"]);
    assert_eq!(last["index"]["total"], 40, "{}", last["index"]);
}

#[test]
fn the_summary_after_ctrl_c_counts_what_was_written_and_journalled() {
    interrupt_and_compare(AFTER_THE_WRITER, 3000, 40, &[]);
}

/// In processes mode a worker is stopped when the grace after Ctrl-C ends.
/// Here each worker holds on for 3 s after placing a file (a debug-build
/// hook), so the grace always ends between a file being placed and
/// conveyor hearing of it: the file must still be counted and journalled.
#[test]
fn a_worker_stopped_after_placing_a_file_still_counts_it() {
    let pipeline = AFTER_THE_WRITER
        .replace(r#"mode = "threads""#, r#"mode = "processes""#)
        .replace(
            "filename = \"{rel_dir}/{stem}.{ext}\"",
            "filename = \"{rel_dir}/{stem}.{ext}\"\nmode = \"processes\"",
        );
    interrupt_and_compare(&pipeline, 40, 1, &[("CONVEYOR_DEBUG_HOLD_MS", "3000")]);
}

/// Run `pipeline` on `files` tiny images, press Ctrl-C once `first` files
/// are written, and check that the summary, the report and the journal
/// all count the files on disk.
fn interrupt_and_compare(pipeline: &str, files: usize, first: usize, env: &[(&str, &str)]) {
    let ws = Workspace::new();
    ws.many_tiny("many", files);
    ws.write("ends.toml", pipeline.as_bytes());
    let report = ws.path("report.jsonl");
    let report_arg = report.to_string_lossy().into_owned();
    let child = ws.spawn_env(&["run", "ends.toml", "--report", &report_arg], env);
    wait_for("some written files", 60, || ws.count("out/thumbs") >= first);
    assert!(signal(child.id(), "-INT"));
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    // The notice "finishing the items in progress" is no summary line.
    let summary: String = stderr.lines().filter(|l| l.contains(" ok, ")).collect();
    let (_, ok, ..) = summary_counts(&summary);
    let reported = read_report(&report)
        .iter()
        .filter(|l| l["status"] == "ok")
        .count() as u64;
    let journalled: u64 = std::fs::read_dir(ws.path("out/thumbs/.conveyor-state"))
        .expect("journal folder")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).expect("journal");
            text.lines().filter(|l| !l.trim().is_empty()).count() as u64
        })
        .sum();
    let written = ws
        .files("out/thumbs")
        .keys()
        .filter(|k| k.ends_with(".jpg"))
        .count() as u64;
    assert!(
        ok > 0 && written < files as u64,
        "{ok} ok, {written} written: {stderr}"
    );
    // The manifest after the writer has a row for each file made.
    let rows = std::fs::read_to_string(ws.path("out/manifest.csv"))
        .expect("manifest")
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    assert_eq!(
        (ok, reported, journalled, rows),
        (written, written, written, written),
        "summary, report, journal, manifest rows vs files: {stderr}"
    );
}

/// A terminal 80 columns wide (tmux), running conveyor with bars; `ints`
/// Ctrl-C once the run is under way. Returns the screen after the run.
fn screen_after_interrupts(ints: usize) -> String {
    let ws = Workspace::new();
    ws.many_tiny("many", 3000);
    let socket = format!("conveyor-endstate-{}-{ints}", std::process::id());
    let script = format!(
        "cd '{}' && sh -c 'echo $$ > pid; exec {BIN} run pipelines/thumbnails.toml --set scan.root=many --jobs 1'",
        ws.path("").display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux")
    };
    let shell = format!("{script}; sleep 60");
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "80",
        "-y",
        "50",
        "sh",
        "-c",
        &shell,
    ]);
    wait_for("the run to start", 30, || ws.path("pid").exists());
    wait_for("some thumbnails", 60, || ws.count("out/thumbs") >= 30);
    let pid = std::fs::read_to_string(ws.path("pid")).expect("pid");
    let pid: u32 = pid.trim().parse().expect("a pid");
    for _ in 0..ints {
        signal(pid, "-INT");
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    wait_for("the run to end", 30, || !alive(pid));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let screen = tmux(&["capture-pane", "-p", "-S", "-200"]);
    tmux(&["kill-server"]);
    String::from_utf8_lossy(&screen.stdout).into_owned()
}

#[test]
fn no_bar_is_left_on_the_screen_after_one_or_two_ctrl_c() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed (.ci/run installs it)");
        return;
    }
    for ints in [1, 2] {
        let screen = screen_after_interrupts(ints);
        assert!(screen.contains("interrupted"), "{ints}: {screen}");
        let bars: Vec<&str> = screen
            .lines()
            .filter(|l| l.contains('░') || l.contains('█'))
            .collect();
        assert!(bars.is_empty(), "{ints} Ctrl-C left bars:\n{screen}");
    }
}

#[test]
fn two_sources_each_count_their_own_up_to_date_items() {
    let ws = Workspace::new();
    ws.many_tiny("left", 30);
    for i in 0..20 {
        ws.sample("tiny.jpg", &format!("right/r{i}.jpg"));
    }
    ws.write(
        "two.toml",
        b"[[stage]]\nname = \"a\"\nkind = \"scan\"\nroot = \"left\"\n\n[[stage]]\nname = \"b\"\nkind = \"scan\"\nroot = \"right\"\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\ninputs = [\"a\", \"b\"]\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\nfilename = \"{name}\"\n",
    );
    for round in 0..2u64 {
        let done = ws
            .conveyor()
            .args(&["run", "two.toml", "--progress", "json"])
            .run();
        done.code(0);
        let last = last_lines(&done.stderr());
        for (stage, line) in &last {
            assert!(adds_up(line), "round {round}, {stage}: {line}");
        }
        assert_eq!(last["a"]["up_to_date"], 30 * round, "{}", done.stderr());
        assert_eq!(last["b"]["up_to_date"], 20 * round, "{}", done.stderr());
    }
}
