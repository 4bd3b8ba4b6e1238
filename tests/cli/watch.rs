//! `conveyor watch`: files that land in the scan folder are processed once,
//! whole, as they land; temp names are left alone; gathering stages follow;
//! Ctrl-C and SIGTERM stop it with nothing left behind.

use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// Thumbnails of `in/` (JPEG, 64 px) into `out/thumbs`, with a manifest.
const PIPELINE: &str = r#"
[pipeline]
name = "watched"

[[stage]]
name = "scan"
kind = "scan"
root = "in"
INCLUDE

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "thumb"
kind = "resize"
width = 64
height = 64
fit = "contain"

[[stage]]
name = "jpeg"
kind = "encode"
format = "jpeg"

[[stage]]
name = "save"
kind = "write"
dir = "out/thumbs"

[[stage]]
name = "index"
kind = "manifest"
path = "out/manifest.csv"
"#;

/// The pipeline as `watch.toml`, with `include` as given (`None`: every
/// file); `in/` made.
fn pipeline(ws: &Workspace, include: Option<&str>) {
    let include = include.map_or(String::new(), |g| format!("include = [\"{g}\"]"));
    ws.write(
        "watch.toml",
        PIPELINE.replace("INCLUDE", &include).as_bytes(),
    );
    std::fs::create_dir_all(ws.path("in")).expect("mkdir in");
}

/// A watch running in the background, its stderr read as it comes.
struct Watching {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watching {
    /// Start `conveyor watch watch.toml ARGS` with a report in
    /// `report.jsonl`, and wait until it watches.
    fn start(ws: &Workspace, args: &[&str]) -> Watching {
        let mut all = vec!["watch", "watch.toml", "--report", "report.jsonl"];
        all.extend_from_slice(args);
        let mut child = ws.spawn(&all);
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });
        let mut w = Watching {
            child,
            stderr,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !w.stderr().contains("for new files (Ctrl-C to stop)") {
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!(
                    "the watch ended ({status}) before watching:\n{}",
                    w.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the watch to start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `sig`; the exit code, how long it took, and everything on
    /// stderr.
    fn stop(mut self, sig: &str) -> (Option<i32>, Duration, String) {
        let sent = Instant::now();
        assert!(signal(self.pid(), sig));
        let status = self.child.wait().expect("wait");
        let took = sent.elapsed();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.code(), took, self.stderr())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        // A failed assertion must not leave a watch running.
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The report's lines about `rel` (a path below `in/`).
fn lines_of(ws: &Workspace, rel: &str) -> Vec<serde_json::Value> {
    let path = format!("in/{rel}");
    read_report_now(ws)
        .into_iter()
        .filter(|l| l["path"] == path.as_str())
        .collect()
}

/// The report as it is now: whole lines only (one may be being written).
fn read_report_now(ws: &Workspace) -> Vec<serde_json::Value> {
    std::fs::read_to_string(ws.path("report.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn ok_lines(ws: &Workspace, rel: &str) -> usize {
    lines_of(ws, rel)
        .iter()
        .filter(|l| l["status"] == "ok")
        .count()
}

fn sample_bytes(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(REPO).join("samples/photos").join(name)).expect("sample")
}

/// Each input's bytes hashed, by name: compared before and after.
fn hashes(ws: &Workspace) -> BTreeMap<String, blake3::Hash> {
    ws.files("in")
        .into_iter()
        .map(|(name, bytes)| (name, blake3::hash(&bytes)))
        .collect()
}

/// The thumbnail of `stem` decodes, at the size `contain` gives `source`.
fn thumb_is_right(ws: &Workspace, stem: &str, source: &[u8]) {
    let out = std::fs::read(ws.path(&format!("out/thumbs/{stem}.jpg"))).expect("thumbnail");
    assert_eq!(
        dims(&out),
        contain(dims(source), Some(64), Some(64)),
        "{stem}"
    );
}

/// What a stopped watch must leave: no workers, no temp files, no scratch.
fn nothing_left(ws: &Workspace, pid: u32) {
    wait_for("workers to exit", 5, || children_of(pid).is_empty());
    assert_eq!(ws.leftover_workers(), Vec::<u32>::new(), "workers left");
    for name in ws.files("out").keys() {
        assert!(!name.contains("conveyor-tmp"), "temp file left: {name}");
    }
    assert_eq!(scratch_dirs(ws), Vec::<String>::new(), "scratch left");
}

/// Write `bytes` to `rel` in `chunks` writes through one open file, with
/// `pause` between them, as a slow copy does.
fn write_slowly(ws: &Workspace, rel: &str, bytes: &[u8], chunks: usize, pause: Duration) {
    let mut f = std::fs::File::create(ws.path(rel)).expect("create");
    for part in bytes.chunks(bytes.len().div_ceil(chunks)) {
        f.write_all(part).expect("write");
        f.flush().expect("flush");
        std::thread::sleep(pause);
    }
}

#[test]
fn files_copied_in_are_processed_once_and_whole_even_when_written_slowly() {
    let ws = Workspace::new();
    pipeline(&ws, Some("**/*.{jpg,png}"));
    ws.sample("tower.jpg", "in/first.jpg");
    let w = Watching::start(&ws, &["--settle", "1s"]);
    // Taken by the first run, or, written a moment before, once settled.
    wait_for("first.jpg", 30, || ok_lines(&ws, "first.jpg") == 1);
    ws.sample("dusk.jpg", "in/dusk.jpg")
        .sample("trips/hills.png", "in/sub/hills.png");
    // Eight writes 350 ms apart: pauses shorter than the settle time (1 s,
    // for a margin on a busy machine), the whole longer than a batch waits
    // for quiet folders (2 s), so the batch of the two files above runs
    // while this one is half there.
    let meadow = sample_bytes("meadow.jpg");
    write_slowly(&ws, "in/slow.jpg", &meadow, 8, Duration::from_millis(350));
    let all = ["first.jpg", "dusk.jpg", "sub/hills.png", "slow.jpg"];
    wait_for("every thumbnail", 30, || {
        all.iter().all(|f| ok_lines(&ws, f) == 1)
    });
    // Time for a second, wrong, take of any file to show.
    std::thread::sleep(Duration::from_millis(1500));
    let pid = w.pid();
    let (code, _, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    // The inputs are as they were copied in.
    for (rel, sample) in [
        ("first.jpg", "tower.jpg"),
        ("dusk.jpg", "dusk.jpg"),
        ("sub/hills.png", "trips/hills.png"),
        ("slow.jpg", "meadow.jpg"),
    ] {
        assert!(ws.files("in")[rel] == sample_bytes(sample), "{rel} changed");
    }
    thumb_is_right(&ws, "first", &sample_bytes("tower.jpg"));
    thumb_is_right(&ws, "dusk", &sample_bytes("dusk.jpg"));
    thumb_is_right(&ws, "sub/hills", &sample_bytes("trips/hills.png"));
    thumb_is_right(&ws, "slow", &meadow);
    for rel in all {
        let lines = lines_of(&ws, rel);
        let ok = lines.iter().filter(|l| l["status"] == "ok").count();
        assert_eq!(ok, 1, "{rel} processed once: {lines:?}");
        assert!(
            lines.iter().all(|l| l["status"] != "failed"),
            "{rel} never failed: {lines:?}"
        );
    }
    assert_eq!(
        ws.files("out/thumbs").len(),
        4,
        "{:?}",
        ws.files("out/thumbs").keys()
    );
    assert!(stderr.contains("watch: batch"), "{stderr}");
    nothing_left(&ws, pid);
}

#[test]
fn a_file_being_written_is_not_taken_until_it_is_complete() {
    let ws = Workspace::new();
    pipeline(&ws, Some("*.jpg"));
    let w = Watching::start(&ws, &["--settle", "2s"]);
    let dusk = sample_bytes("dusk.jpg");
    let mut half = std::fs::File::create(ws.path("in/half.jpg")).expect("create");
    half.write_all(&dusk[..dusk.len() / 2]).expect("write");
    half.flush().expect("flush");
    // Another file lands and is processed while half.jpg is open and
    // half written: a batch runs with it there, and must leave it.
    ws.sample("tower.jpg", "in/other.jpg");
    wait_for("other.jpg", 30, || ok_lines(&ws, "other.jpg") == 1);
    assert_eq!(lines_of(&ws, "half.jpg"), Vec::<serde_json::Value>::new());
    assert!(!ws.path("out/thumbs/half.jpg").exists());
    half.write_all(&dusk[dusk.len() / 2..]).expect("write");
    drop(half);
    wait_for("half.jpg, complete", 30, || ok_lines(&ws, "half.jpg") == 1);
    let (code, _, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(lines_of(&ws, "half.jpg").len(), 1);
    thumb_is_right(&ws, "half", &dusk);
}

#[test]
fn temp_and_hidden_names_produce_nothing() {
    let ws = Workspace::new();
    // No include: every file is taken, so only the names keep these out.
    pipeline(&ws, None);
    let w = Watching::start(&ws, &[]);
    let tiny = sample_bytes("tiny.jpg");
    for name in [
        "x.jpg.part",
        ".hidden.jpg",
        "x.jpg~",
        "x.jpg.crdownload",
        "x.jpg.tmp",
    ] {
        ws.write(&format!("in/{name}"), &tiny[..tiny.len() / 2]);
    }
    // A download that ends by a rename to its real name is taken then.
    ws.write("in/y.jpg.part", &tiny);
    std::fs::rename(ws.path("in/y.jpg.part"), ws.path("in/y.jpg")).expect("rename");
    wait_for("y.jpg", 30, || ok_lines(&ws, "y.jpg") == 1);
    std::thread::sleep(Duration::from_millis(1000));
    let (code, _, stderr) = w.stop("-TERM");
    // SIGTERM: 128 + 15, as in `run`.
    assert_eq!(code, Some(143), "{stderr}");
    let report = read_report_now(&ws);
    let paths: Vec<&str> = report.iter().filter_map(|l| l["path"].as_str()).collect();
    assert_eq!(paths, ["in/y.jpg"], "{report:?}");
    let outputs: Vec<String> = ws.files("out/thumbs").into_keys().collect();
    assert_eq!(outputs, ["y.jpg"]);
}

#[test]
fn the_manifest_lists_every_file_after_each_batch() {
    let ws = Workspace::new();
    pipeline(&ws, Some("*.jpg"));
    ws.sample("tower.jpg", "in/a.jpg");
    let before = hashes(&ws);
    let w = Watching::start(&ws, &[]);
    let rows = || -> Vec<String> {
        std::fs::read_to_string(ws.path("out/manifest.csv"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(1).map(str::to_string))
            .collect()
    };
    wait_for("a in the manifest", 30, || rows() == ["a.jpg"]);
    // Each batch's line comes once its run, manifest included, is done;
    // c lands while b's time is still recent, and b stays listed.
    ws.sample("dusk.jpg", "in/b.jpg");
    wait_for("b's batch", 30, || {
        w.stderr().contains("processed in/b.jpg")
    });
    assert_eq!(rows(), ["a.jpg", "b.jpg"]);
    ws.sample("tiny.jpg", "in/c.jpg");
    wait_for("c's batch", 30, || {
        w.stderr().contains("processed in/c.jpg")
    });
    assert_eq!(rows(), ["a.jpg", "b.jpg", "c.jpg"]);
    let pid = w.pid();
    let (code, _, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    // Each batch adds to the one report the files it processed: three
    // files, each ok once, and nothing else.
    for f in ["a.jpg", "b.jpg", "c.jpg"] {
        assert_eq!(ok_lines(&ws, f), 1, "{f}");
    }
    assert_eq!(read_report_now(&ws).len(), 3, "{:?}", read_report_now(&ws));
    let mut after = hashes(&ws);
    after.remove("b.jpg");
    after.remove("c.jpg");
    assert_eq!(before, after, "inputs are never modified");
    assert_eq!(
        hashes(&ws)["b.jpg"],
        blake3::hash(&sample_bytes("dusk.jpg"))
    );
    nothing_left(&ws, pid);
}

#[test]
fn a_crashing_file_fails_alone_once_and_the_watch_goes_on() {
    let ws = Workspace::new();
    pipeline(&ws, Some("*.jpg"));
    let text = std::fs::read_to_string(ws.path("watch.toml"))
        .expect("pipeline")
        .replace(
            "[[stage]]\nname = \"jpeg\"",
            "[[stage]]\nname = \"boom\"\nkind = \"chaos\"\nmode = \"processes\"\nworkers = 1\naction = \"segfault\"\nmatch = \"bad*\"\n\n[[stage]]\nname = \"jpeg\"",
        );
    ws.write("watch.toml", text.as_bytes());
    let w = Watching::start(&ws, &[]);
    ws.sample("tiny.jpg", "in/bad.jpg")
        .sample("tower.jpg", "in/good.jpg");
    wait_for("both ended", 30, || {
        ok_lines(&ws, "good.jpg") == 1 && !lines_of(&ws, "bad.jpg").is_empty()
    });
    ws.sample("dusk.jpg", "in/later.jpg");
    wait_for("a later file", 30, || ok_lines(&ws, "later.jpg") == 1);
    let pid = w.pid();
    let (code, _, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    let bad = lines_of(&ws, "bad.jpg");
    assert_eq!(
        bad.len(),
        1,
        "a failed file is not retried until it changes: {bad:?}"
    );
    assert_eq!(bad[0]["status"], "failed");
    thumb_is_right(&ws, "later", &sample_bytes("dusk.jpg"));
    nothing_left(&ws, pid);
}

#[test]
fn sigterm_during_a_batch_finishes_and_leaves_no_worker() {
    let ws = Workspace::new();
    pipeline(&ws, Some("*.jpg"));
    // A worker that hangs on `hang.jpg`: the batch is in flight when the
    // signal comes.
    let text = std::fs::read_to_string(ws.path("watch.toml"))
        .expect("pipeline")
        .replace(
            "[[stage]]\nname = \"jpeg\"",
            "[[stage]]\nname = \"slow\"\nkind = \"chaos\"\nmode = \"processes\"\nworkers = 1\naction = \"hang\"\nmatch = \"hang*\"\n\n[[stage]]\nname = \"jpeg\"",
        );
    ws.write("watch.toml", text.as_bytes());
    let w = Watching::start(&ws, &[]);
    let pid = w.pid();
    ws.sample("tiny.jpg", "in/hang.jpg");
    wait_for("a worker on hang.jpg", 30, || !children_of(pid).is_empty());
    let workers = children_of(pid);
    let (code, took, stderr) = w.stop("-TERM");
    // SIGTERM: 128 + 15, as in `run`.
    assert_eq!(code, Some(143), "{stderr}");
    // The usual grace for an item in flight, on a busy machine.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    wait_for("workers to exit", 2, || workers.iter().all(|&p| !alive(p)));
    nothing_left(&ws, pid);
}

#[test]
fn sigint_between_batches_stops_at_once() {
    let ws = Workspace::new();
    pipeline(&ws, Some("*.jpg"));
    ws.sample("tiny.jpg", "in/a.jpg");
    let w = Watching::start(&ws, &["--mode", "processes"]);
    let pid = w.pid();
    wait_for("a.jpg", 30, || ok_lines(&ws, "a.jpg") == 1);
    let (code, took, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    nothing_left(&ws, pid);
}

#[test]
fn a_deleted_source_keeps_its_outputs_unless_pruned() {
    let ws = Workspace::new();
    pipeline(&ws, Some("*.jpg"));
    for f in ["a.jpg", "b.jpg", "c.jpg"] {
        ws.sample("tiny.jpg", &format!("in/{f}"));
    }
    let rows = || -> Vec<String> {
        std::fs::read_to_string(ws.path("out/manifest.csv"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(1).map(str::to_string))
            .collect()
    };
    let journal = || {
        std::fs::read_to_string(ws.path("out/thumbs/.conveyor-state/watched.save.jsonl"))
            .unwrap_or_default()
    };
    // Without --prune: the manifest forgets the source, its files stay.
    let w = Watching::start(&ws, &[]);
    wait_for("three files", 30, || rows() == ["a.jpg", "b.jpg", "c.jpg"]);
    std::fs::remove_file(ws.path("in/a.jpg")).expect("rm");
    wait_for("a out of the manifest", 30, || rows() == ["b.jpg", "c.jpg"]);
    let (code, _, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        ws.path("out/thumbs/a.jpg").is_file(),
        "kept without --prune"
    );
    assert!(stderr.contains("deleted in/a.jpg"), "{stderr}");
    // With --prune: the files made of a deleted source go, with its
    // journal lines; the others' stay.
    let w = Watching::start(&ws, &["--prune"]);
    std::fs::remove_file(ws.path("in/b.jpg")).expect("rm");
    wait_for("b's thumbnail removed", 30, || {
        !ws.path("out/thumbs/b.jpg").exists()
    });
    wait_for("b out of the manifest", 30, || rows() == ["c.jpg"]);
    let pid = w.pid();
    let (code, _, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("deleted in/b.jpg (1 output removed)"),
        "{stderr}"
    );
    assert!(!journal().contains("in/b.jpg"), "{}", journal());
    assert!(journal().contains("in/c.jpg"));
    assert!(ws.path("out/thumbs/c.jpg").is_file());
    assert_eq!(
        ws.files("in").into_keys().collect::<Vec<_>>(),
        ["c.jpg"],
        "inputs untouched"
    );
    nothing_left(&ws, pid);
    // A file the user put in place of an output is theirs: --prune keeps
    // it, and says why.
    ws.sample("tiny.jpg", "in/d.jpg");
    let w = Watching::start(&ws, &["--prune"]);
    wait_for("d's thumbnail", 30, || {
        ws.path("out/thumbs/d.jpg").is_file()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(ws.path("out/thumbs/d.jpg"), b"the user's own file").expect("write");
    std::fs::remove_file(ws.path("in/d.jpg")).expect("rm");
    wait_for("the deletion seen", 30, || {
        w.stderr().contains("deleted in/d.jpg")
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, _, stderr) = w.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("it changed since conveyor wrote it"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(ws.path("out/thumbs/d.jpg")).expect("kept"),
        b"the user's own file"
    );
}
