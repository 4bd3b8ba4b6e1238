//! Integration tests: the real `conveyor` binary on real files, checking what
//! lands on disk (files decoded, counted, compared), not only exit codes.
//! One test binary; this file holds the fluent builder and the core tests,
//! `stages.rs` the golden tests of each stage kind.

mod cluster;
mod limits;
mod observe;
mod reliability;
mod stages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_conveyor");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A scratch folder where pipelines run, with `samples/` and `pipelines/`
/// linked in so the example files run unchanged, as from the repository.
struct Workspace {
    dir: tempfile::TempDir,
    _turn: Turn,
}

/// Tests share the machine; a measuring test takes it alone.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

enum Turn {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

impl Workspace {
    fn new() -> Workspace {
        Workspace::with(Turn::Shared(
            MACHINE.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// For tests that measure (memory, descriptors): no other test runs
    /// while this workspace lives.
    fn alone() -> Workspace {
        Workspace::with(Turn::Alone(
            MACHINE.write().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    fn with(turn: Turn) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["samples", "pipelines"] {
            std::os::unix::fs::symlink(Path::new(REPO).join(name), dir.path().join(name))
                .expect("symlink");
        }
        Workspace { dir, _turn: turn }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> &Workspace {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
        self
    }

    /// Copy a sample image into the workspace.
    fn sample(&self, sample: &str, rel: &str) -> &Workspace {
        let bytes =
            std::fs::read(Path::new(REPO).join("samples/photos").join(sample)).expect("sample");
        self.write(rel, &bytes)
    }

    /// Worker processes still running with this workspace as their folder.
    fn leftover_workers(&self) -> Vec<u32> {
        let here = self.dir.path().canonicalize().expect("canonical");
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
            if String::from_utf8_lossy(&cmdline).contains("__conveyor-worker")
                && cwd.as_deref() == Some(&here)
            {
                out.push(pid);
            }
        }
        out
    }

    /// Start conveyor in the background with its stderr captured, for tests
    /// that signal or watch a run while it goes.
    /// Its scratch folder goes to `.tmp` in the workspace, so tests can see
    /// it is removed.
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        let tmp = self.path(".tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir .tmp");
        Command::new(BIN)
            .current_dir(self.path(""))
            .args(args)
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .env("TMPDIR", &tmp)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn conveyor")
    }

    /// `n` copies of the tiny sample under `dir`, a hundred per folder.
    fn many_tiny(&self, dir: &str, n: usize) {
        let tiny = std::fs::read(Path::new(REPO).join("samples/photos/tiny.jpg")).expect("sample");
        for i in 0..n {
            self.write(&format!("{dir}/{:02}/{i:04}.jpg", i / 100), &tiny);
        }
    }

    fn conveyor(&self) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .env_remove("PHOTOS")
            .env_remove("OUT");
        Run { cmd }
    }

    /// How many files are below `rel` now (safe while a run writes there).
    fn count(&self, rel: &str) -> usize {
        walkdir::WalkDir::new(self.path(rel))
            .into_iter()
            .filter_entry(|e| e.file_name() != ".conveyor-state")
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .count()
    }

    /// Every file below `rel`, relative to it, with its bytes.
    fn files(&self, rel: &str) -> BTreeMap<String, Vec<u8>> {
        let root = self.path(rel);
        let mut out = BTreeMap::new();
        if !root.exists() {
            return out;
        }
        // Resume journals are conveyor's bookkeeping, not outputs.
        let walk = walkdir::WalkDir::new(&root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.file_name() != ".conveyor-state");
        for e in walk {
            let e = e.expect("walk");
            if e.file_type().is_file() {
                let name = e
                    .path()
                    .strip_prefix(&root)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                out.insert(name, std::fs::read(e.path()).expect("read"));
            }
        }
        out
    }
}

/// A command being built, then run.
struct Run {
    cmd: Command,
}

impl Run {
    fn args(mut self, args: &[&str]) -> Run {
        self.cmd.args(args);
        self
    }

    fn env(mut self, k: &str, v: &str) -> Run {
        self.cmd.env(k, v);
        self
    }

    fn run(mut self) -> Done {
        let out = self.cmd.output().expect("running conveyor");
        Done { out }
    }
}

/// A finished command, with fluent checks.
struct Done {
    out: Output,
}

impl Done {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    fn code(&self, expected: i32) -> &Done {
        assert_eq!(
            self.out.status.code(),
            Some(expected),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    fn stderr_has(&self, needle: &str) -> &Done {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr()
        );
        self
    }

    fn stdout_has(&self, needle: &str) -> &Done {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout()
        );
        self
    }
}

/// Scanned, ok, failed, filtered and up-to-date counts of a run summary.
fn summary_counts(stderr: &str) -> (u64, u64, u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" items in "))
        .unwrap_or_default()
        .replace(": ", ", ");
    let num = |label: &str| -> u64 {
        line.split(", ")
            .find_map(|part| {
                part.trim()
                    .strip_suffix(label)
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let scanned = line
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (
        scanned,
        num(" ok"),
        num(" failed"),
        num(" filtered"),
        num(" up to date"),
    )
}

/// Ok and up-to-date counts of a finished run.
fn counts(done: &Done) -> (u64, u64) {
    let (_, ok, _, _, up) = summary_counts(&done.stderr());
    (ok, up)
}

/// Send signal `sig` (`-INT`, `-KILL` ...) to process `pid` with kill(1);
/// whether kill succeeded.
fn signal(pid: impl std::fmt::Display, sig: &str) -> bool {
    Command::new("kill")
        .args([sig.to_string(), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// The thumbnails pipeline with `on_error = "fail"`, as `fail.toml`.
fn write_fail_fast_thumbnails(ws: &Workspace) {
    let text = std::fs::read_to_string(Path::new(REPO).join("pipelines/thumbnails.toml"))
        .expect("pipeline")
        .replace("on_error = \"skip\"", "on_error = \"fail\"");
    ws.write("fail.toml", text.as_bytes());
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("output decodes");
    (img.width(), img.height())
}

/// The samples the example pipelines take, with their displayed sizes.
fn sample_sizes(exts: &[&str]) -> BTreeMap<String, (u32, u32)> {
    let root = Path::new(REPO).join("samples/photos");
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(&root) {
        let e = e.expect("walk");
        let ext = e
            .path()
            .extension()
            .map(|x| x.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if e.file_type().is_file() && exts.contains(&ext.as_str()) {
            let rel = e
                .path()
                .strip_prefix(&root)
                .expect("prefix")
                .with_extension("");
            let img = image::open(e.path()).expect("sample decodes");
            let (w, h) = (img.width(), img.height());
            // rotated.jpg carries EXIF orientation 6: shown portrait.
            let size = if rel.ends_with("rotated") {
                (h, w)
            } else {
                (w, h)
            };
            out.insert(rel.to_string_lossy().into_owned(), size);
        }
    }
    out
}

/// The size `contain` gives for a source, never upscaling.
fn contain(src: (u32, u32), bw: Option<u32>, bh: Option<u32>) -> (u32, u32) {
    let sx = bw.map_or(f64::INFINITY, |w| f64::from(w) / f64::from(src.0));
    let sy = bh.map_or(f64::INFINITY, |h| f64::from(h) / f64::from(src.1));
    let s = sx.min(sy).min(1.0);
    (
        ((f64::from(src.0) * s).round() as u32).max(1),
        ((f64::from(src.1) * s).round() as u32).max(1),
    )
}

const ALL_FORMATS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

#[test]
fn every_example_pipeline_runs_on_the_samples() {
    let mut ran = 0;
    for entry in std::fs::read_dir(Path::new(REPO).join("pipelines")).expect("pipelines/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let ws = Workspace::new();
        let rel = format!(
            "pipelines/{}",
            path.file_name().expect("name").to_string_lossy()
        );
        ws.conveyor().args(&["check", &rel]).run().code(0);
        ws.conveyor().args(&["run", &rel]).run().code(0);
        let files = ws.files("out");
        assert!(!files.is_empty(), "{rel} wrote nothing");
        for (name, bytes) in &files {
            if name.ends_with(".csv") || name.ends_with(".jsonl") {
                assert!(!bytes.is_empty(), "{rel}: {name} is empty");
                continue;
            }
            let (w, h) = dims(bytes);
            assert!(w > 0 && h > 0, "{rel}: {name} is empty");
        }
        ran += 1;
    }
    assert!(ran >= 7, "expected the example pipelines, found {ran}");
}

#[test]
fn thumbnails_have_the_expected_sizes() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml"])
        .run()
        .code(0)
        .stderr_has("12 ok, 0 failed");
    let files = ws.files("out/thumbs");
    let samples = sample_sizes(&ALL_FORMATS);
    assert_eq!(files.len(), samples.len());
    for (rel, size) in samples {
        let bytes = files
            .get(&format!("{rel}.jpg"))
            .unwrap_or_else(|| panic!("no thumbnail for {rel}"));
        assert_eq!(&bytes[..2], &[0xFF, 0xD8], "{rel} is not a JPEG");
        assert_eq!(dims(bytes), contain(size, Some(256), Some(256)), "{rel}");
    }
    // EXIF orientation was applied: the 480x320 stored image is portrait.
    let (w, h) = dims(&files["rotated.jpg"]);
    assert!(h > w, "rotated.jpg is {w}x{h}");
}

#[test]
fn web_sizes_fan_out_to_three_folders() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&["run", "pipelines/web-sizes.toml"])
        .run()
        .code(0);
    let samples = sample_sizes(&["jpg", "jpeg", "png"]);
    let n = samples.len();
    let mut total = 0;
    for width in [320, 800, 1600] {
        let files = ws.files(&format!("out/web/{width}"));
        assert_eq!(files.len(), n, "folder {width}");
        for (rel, size) in &samples {
            let bytes = &files[&format!("{rel}.jpg")];
            assert_eq!(
                dims(bytes),
                contain(*size, Some(width), None),
                "{rel} at {width}"
            );
        }
        total += files.len();
    }
    assert_eq!(total, 3 * n);
}

#[test]
fn inline_and_threads_write_identical_files() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--mode",
            "inline",
            "--set",
            "save.dir=out/inline",
        ])
        .run()
        .code(0)
        .stderr_has("inline x1");
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--mode",
            "threads",
            "--set",
            "load.workers=3",
            "--set",
            "save.dir=out/threads",
        ])
        .run()
        .code(0)
        .stderr_has("threads x3");
    let inline = ws.files("out/inline");
    let threads = ws.files("out/threads");
    assert_eq!(inline.len(), 12);
    assert_eq!(inline, threads);
}

/// A folder with good photos and broken files among them.
fn mixed_folder(ws: &Workspace) {
    ws.sample("meadow.jpg", "in/meadow.jpg")
        .sample("tower.jpg", "in/sub/tower.jpg")
        .sample("trips/hills.png", "in/hills.png")
        .write("in/zero.jpg", b"")
        .write(
            "in/noise.png",
            &(0..4000u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .write("in/notes.jpg", b"this is text, not a JPEG");
    let good = std::fs::read(Path::new(REPO).join("samples/photos/dusk.jpg")).expect("sample");
    ws.write("in/sub/truncated.jpg", &good[..good.len() / 3]);
}

#[test]
fn corrupt_files_fail_alone() {
    let ws = Workspace::new();
    mixed_folder(&ws);
    let done = ws
        .conveyor()
        .args(&["run", "pipelines/thumbnails.toml", "--set", "scan.root=in"])
        .run();
    done.code(1)
        .stderr_has("in/zero.jpg: empty file (stage `load`)")
        .stderr_has("in/notes.jpg: not a recognised image format (stage `load`)")
        .stderr_has("in/noise.png: not a recognised image format (stage `load`)")
        .stderr_has("in/sub/truncated.jpg: truncated JPEG: the data ends before the image does (stage `load`)")
        .stderr_has("7 items in")
        .stderr_has("3 ok, 4 failed");
    assert!(!done.stderr().contains("panicked"), "{}", done.stderr());
    let files = ws.files("out/thumbs");
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["hills.jpg", "meadow.jpg", "sub/tower.jpg"]);
    for bytes in files.values() {
        dims(bytes);
    }
}

#[test]
fn on_error_fail_stops_the_run() {
    let ws = Workspace::new();
    for i in 0..40 {
        ws.sample("tiny.jpg", &format!("in/{i:02}.jpg"));
    }
    ws.write("in/00-bad.jpg", b"garbage");
    write_fail_fast_thumbnails(&ws);
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "fail.toml",
            "--set",
            "scan.root=in",
            "--mode",
            "inline",
        ])
        .run();
    done.code(1)
        .stderr_has("in/00-bad.jpg: not a recognised image format")
        .stderr_has("stopped at the first failure");
    let written = ws.files("out/thumbs").len();
    assert!(
        written < 40,
        "the run went on after the failure: {written} written"
    );
}

#[test]
fn set_and_mode_change_the_run() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "thumb.width=64",
            "--set",
            "thumb.height=64",
            "--set",
            "jpeg.format=\"png\"",
            "--mode",
            "thumb=inline",
        ])
        .run()
        .code(0)
        .stderr_has("thumb  resize  inline x1");
    let files = ws.files("out/thumbs");
    assert_eq!(files.len(), 12);
    for (name, bytes) in &files {
        assert!(name.ends_with(".png"), "{name}");
        let (w, h) = dims(bytes);
        assert!(w.max(h) <= 64, "{name} is {w}x{h}");
    }
}

#[test]
fn environment_variables_choose_folders() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "mine/a.jpg");
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml"])
        .env("PHOTOS", "mine")
        .env("OUT", "elsewhere")
        .run()
        .code(0);
    assert_eq!(
        ws.files("elsewhere/thumbs").keys().collect::<Vec<_>>(),
        vec!["a.jpg"]
    );
}

#[test]
fn bad_pipeline_is_rejected_before_any_work() {
    let ws = Workspace::new();
    ws.write(
        "bad.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nworkers = 0\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out/x\"\n",
    );
    for cmd in ["check", "run"] {
        ws.conveyor()
            .args(&[cmd, "bad.toml"])
            .run()
            .code(2)
            .stderr_has("bad.toml:9:11")
            .stderr_has("stage `load`: `workers` must be at least 1")
            .stderr_has("bad.toml:13:8")
            .stderr_has("payload type mismatch")
            .stderr_has("2 errors in the pipeline; nothing was run");
    }
    assert!(
        !ws.path("out").exists(),
        "a rejected pipeline wrote something"
    );
}

#[test]
fn bad_overrides_exit_2() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "thumb.widht=10",
        ])
        .run()
        .code(2)
        .stderr_has("unknown key `widht` in stage `thumb`")
        .stderr_has("did you mean `width`?");
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml", "--mode", "lod=inline"])
        .run()
        .code(2)
        .stderr_has("did you mean `load`?");
    assert!(!ws.path("out").exists());
}

#[test]
fn pixel_limit_refuses_big_images() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "load.max_pixels=50000",
        ])
        .run()
        .code(1)
        .stderr_has("meadow.jpg: image is 640x427 (273280 pixels), over the limit of 50000 pixels")
        .stderr_has("3 ok, 9 failed");
    // Only the three images under 50,000 pixels were written.
    assert_eq!(
        ws.files("out/thumbs").keys().collect::<Vec<_>>(),
        vec!["formats/anim.jpg", "formats/paint.jpg", "tiny.jpg"]
    );
}

#[test]
fn outputs_inside_the_scanned_tree_are_not_read_back() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "pics/a.jpg")
        .sample("tower.jpg", "pics/b.jpg");
    for _ in 0..2 {
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                "scan.root=pics",
                "--set",
                "save.dir=pics/thumbs",
            ])
            .run()
            .code(0)
            .stderr_has("2 items in");
    }
    let names: Vec<String> = ws.files("pics").into_keys().collect();
    assert_eq!(
        names,
        vec!["a.jpg", "b.jpg", "thumbs/a.jpg", "thumbs/b.jpg"]
    );
}

#[test]
fn write_never_overwrites_its_source() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "pics/a.jpg");
    ws.write(
        "copy.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"pics\"\nexclude = [\"skip/**\"]\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"pics\"\n",
    );
    let before = std::fs::read(ws.path("pics/a.jpg")).expect("read");
    ws.conveyor()
        .args(&["run", "copy.toml"])
        .run()
        .code(1)
        .stderr_has("refusing to overwrite the source file");
    assert_eq!(std::fs::read(ws.path("pics/a.jpg")).expect("read"), before);
}

#[test]
fn scan_filters_by_glob_depth_and_hidden() {
    let ws = Workspace::new();
    ws.write("t/a.jpg", b"1")
        .write("t/B.JPG", b"2")
        .write("t/c.png", b"3")
        .write("t/.hidden.jpg", b"4")
        .write("t/deep/d.jpg", b"5")
        .write("t/deep/skip/e.jpg", b"6");
    ws.write(
        "copy.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"t\"\ninclude = [\"**/*.jpg\"]\nexclude = [\"**/skip\"]\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"copied\"\n",
    );
    ws.conveyor().args(&["run", "copy.toml"]).run().code(0);
    let names: Vec<String> = ws.files("copied").into_keys().collect();
    assert_eq!(names, vec!["B.JPG", "a.jpg", "deep/d.jpg"]);
    ws.conveyor()
        .args(&[
            "run",
            "copy.toml",
            "--set",
            "scan.max_depth=1",
            "--set",
            "save.dir=shallow",
        ])
        .run()
        .code(0);
    let names: Vec<String> = ws.files("shallow").into_keys().collect();
    assert_eq!(names, vec!["B.JPG", "a.jpg"]);
    ws.conveyor()
        .args(&[
            "run",
            "copy.toml",
            "--set",
            "scan.hidden=true",
            "--set",
            "save.dir=all",
        ])
        .run()
        .code(0);
    assert!(ws.files("all").contains_key(".hidden.jpg"));
}

#[test]
fn filename_template_and_formats() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "save.filename={rel_dir}/{stem}_small.{ext}",
            "--set",
            "jpeg.format=webp",
        ])
        .run()
        .code(0);
    let files = ws.files("out/thumbs");
    assert!(
        files.contains_key("trips/coast_small.webp"),
        "{:?}",
        files.keys()
    );
    assert_eq!(dims(&files["trips/coast_small.webp"]), (256, 144));
}

#[test]
fn missing_scan_root_is_a_failure_with_its_path() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=nowhere",
        ])
        .run()
        .code(1)
        .stderr_has("nowhere: no such folder (stage `scan`)");
}

#[test]
fn graph_in_three_formats() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&["graph", "pipelines/web-sizes.toml"])
        .run()
        .code(0)
        .stdout_has("small (resize, threads x")
        .stdout_has("<- load [image]");
    ws.conveyor()
        .args(&["graph", "pipelines/web-sizes.toml", "--format", "dot"])
        .run()
        .code(0)
        .stdout_has("\"load\" -> \"small\" [label=\"image\"];");
    ws.conveyor()
        .args(&[
            "graph",
            "pipelines/thumbnails.toml",
            "--format",
            "mermaid",
            "--mode",
            "jpeg=inline",
        ])
        .run()
        .code(0)
        .stdout_has("flowchart LR")
        .stdout_has("s_jpeg[\"jpeg<br/>encode, inline x1\"]")
        .stdout_has("s_jpeg -->|bytes| s_save");
}

#[test]
fn stages_lists_kinds_and_options() {
    let ws = Workspace::new();
    let done = ws.conveyor().args(&["stages"]).run();
    done.code(0);
    for kind in ["scan", "read", "decode", "resize", "encode", "write"] {
        assert!(
            done.stdout().lines().any(|l| l.starts_with(kind)),
            "{kind} missing"
        );
    }
    done.stdout_has("image -> bytes");
    ws.conveyor()
        .args(&["stages", "encode"])
        .run()
        .code(0)
        .stdout_has("quality")
        .stdout_has("85")
        .stdout_has("\"jpeg\" | \"png\" | \"webp\"");
    ws.conveyor()
        .args(&["stages", "resise"])
        .run()
        .code(2)
        .stderr_has("did you mean `resize`?");
}

/// The shared corpus of real photos, when this checkout sits beside it.
fn corpus() -> Option<PathBuf> {
    let dir = Path::new(REPO).join("../shared/corpus/photos");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no corpus at {} (real-photo checks need ../shared/corpus/photos)",
            dir.display()
        );
        None
    }
}

#[test]
fn thumbnails_of_the_real_photo_corpus() {
    let Some(dir) = corpus() else { return };
    let ws = Workspace::new();
    let root = format!("scan.root=\"{}\"", dir.display());
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml", "--set", &root])
        .run()
        .code(0)
        .stderr_has("21 ok, 0 failed");
    let files = ws.files("out/thumbs");
    assert_eq!(files.len(), 21);
    for (name, bytes) in &files {
        let stem = name.trim_end_matches(".jpg");
        let src = std::fs::read_dir(&dir)
            .expect("corpus")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.file_stem().is_some_and(|s| s == stem))
            .unwrap_or_else(|| panic!("no source for {name}"));
        let img = image::open(&src).expect("corpus photo decodes");
        let (sw, sh) = (img.width(), img.height());
        let (w, h) = dims(bytes);
        assert_eq!(w.max(h), 256, "{name} is {w}x{h}");
        // Same aspect ratio, within rounding (none of these carry a rotating
        // EXIF orientation).
        let (a, b) = (f64::from(w) / f64::from(h), f64::from(sw) / f64::from(sh));
        assert!((a - b).abs() / b < 0.01, "{name}: {w}x{h} from {sw}x{sh}");
    }
}

#[test]
fn cover_fills_the_box_without_upscaling() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "thumb.fit=\"cover\"",
            "--set",
            "thumb.height=128",
        ])
        .run()
        .code(0);
    let files = ws.files("out/thumbs");
    assert_eq!(dims(&files["meadow.jpg"]), (256, 128));
    assert_eq!(dims(&files["tower.jpg"]), (256, 128));
    // 120x80 is smaller than the box: cropped to it, never enlarged.
    assert_eq!(dims(&files["tiny.jpg"]), (120, 80));
}

#[test]
fn sigint_stops_the_run_with_130_and_no_partial_files() {
    let ws = Workspace::new();
    ws.many_tiny("many", 3000);
    let child = ws.spawn(&[
        "run",
        "pipelines/thumbnails.toml",
        "--set",
        "scan.root=many",
        "--mode",
        "inline",
    ]);
    // Wait until some thumbnails exist, so the run is under way.
    wait_for("some thumbnails", 30, || ws.count("out/thumbs") >= 20);
    assert!(signal(child.id(), "-INT"));
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let files = ws.files("out/thumbs");
    assert!(files.len() < 3000, "the run was not interrupted");
    for (name, bytes) in &files {
        assert!(!name.contains("conveyor-tmp"), "temp file left: {name}");
        dims(bytes);
    }
}

// ---- processes mode -------------------------------------------------------

/// A pipeline with a `chaos` stage in processes mode between decode and
/// encode; `extra` lines go into the chaos stage.
fn chaos_pipeline(ws: &Workspace, extra: &str) {
    let text = format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\n\n\
         [[stage]]\nname = \"load\"\nkind = \"decode\"\n\n\
         [[stage]]\nname = \"boom\"\nkind = \"chaos\"\nmode = \"processes\"\nworkers = 2\n{extra}\n\n\
         [[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n\
         [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n"
    );
    ws.write("chaos.toml", text.as_bytes());
}

/// Run chaos `action` on meadow.jpg and tower.jpg: exactly those two fail,
/// with `reason` in their message, and the ten others are written.
fn chaos_fails_exactly_the_matched_items(action: &str, extra: &str, reason: &str) {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        &format!("action = \"{action}\"\nmatch = \"{{meadow,tower}}.jpg\"\n{extra}"),
    );
    let done = ws.conveyor().args(&["run", "chaos.toml"]).run();
    done.code(1).stderr_has("10 ok, 2 failed");
    for name in ["meadow.jpg", "tower.jpg"] {
        done.stderr_has(&format!("samples/photos/{name}: {reason}"));
    }
    assert_eq!(
        done.stderr().matches(reason).count(),
        2,
        "{}",
        done.stderr()
    );
    let files = ws.files("out");
    assert_eq!(files.len(), 10);
    assert!(!files.contains_key("meadow.jpg") && !files.contains_key("tower.jpg"));
    for bytes in files.values() {
        dims(bytes);
    }
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
}

#[test]
fn chaos_panic_in_a_worker() {
    chaos_fails_exactly_the_matched_items("panic", "", "worker panicked: chaos: injected panic on");
}

#[test]
fn chaos_abort_in_a_worker() {
    chaos_fails_exactly_the_matched_items("abort", "", "worker killed by signal 6 (SIGABRT)");
}

#[test]
fn chaos_segfault_in_a_worker() {
    chaos_fails_exactly_the_matched_items("segfault", "", "worker killed by signal 11 (SIGSEGV)");
}

#[test]
fn chaos_error_in_a_worker() {
    chaos_fails_exactly_the_matched_items("error", "", "chaos: injected error on");
}

#[test]
fn timeout_ends_a_hang() {
    chaos_fails_exactly_the_matched_items(
        "hang",
        "timeout = \"1s\"",
        "timed out after 1s (stage `boom`)",
    );
}

#[test]
fn memory_limit_ends_an_oom() {
    chaos_fails_exactly_the_matched_items(
        "oom",
        "memory_limit = \"256MiB\"",
        "memory limit 256MiB exceeded (memory allocation of",
    );
}

#[test]
fn retries_succeed_in_a_fresh_worker() {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        "action = \"segfault\"\nmatch = \"tower.jpg\"\ntimes = 1\nretries = 1",
    );
    ws.conveyor()
        .args(&["run", "chaos.toml"])
        .run()
        .code(0)
        .stderr_has("12 ok, 0 failed")
        // The first worker crashed on tower.jpg and was replaced.
        .stderr_has("processes: `boom`: 3 workers started");
    assert!(ws.files("out").contains_key("tower.jpg"));
    // Without the retry the same item fails.
    ws.conveyor()
        .args(&[
            "run",
            "chaos.toml",
            "--set",
            "boom.retries=0",
            "--set",
            "save.dir=out2",
        ])
        .run()
        .code(1)
        .stderr_has("tower.jpg: worker killed by signal 11 (SIGSEGV)");
}

#[test]
fn a_crash_loop_stops_the_stage() {
    let ws = Workspace::new();
    chaos_pipeline(&ws, "action = \"abort\"");
    let done = ws
        .conveyor()
        .args(&["run", "chaos.toml", "--set", "boom.workers=1"])
        .run();
    done.code(1)
        .stderr_has("workers of stage `boom` crashed 5 times in a row without finishing an item, so the stage stopped")
        .stderr_has("stage stopped: ")
        .stderr_has("5 failed")
        .stderr_has("7 not processed");
    assert!(ws.files("out").is_empty());
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
}

#[test]
fn a_worker_that_dies_before_connecting_stops_the_stage() {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        "action = \"error\"\nmatch = \"nothing\"\nmemory_limit = \"64KiB\"",
    );
    ws.conveyor()
        .args(&["run", "chaos.toml"])
        .run()
        .code(1)
        .stderr_has("stage `boom` cannot start its workers: a worker exited before it connected")
        .stderr_has("is memory_limit too low for a worker to start?");
}

#[test]
fn max_items_per_worker_recycles_workers() {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        "action = \"error\"\nmatch = \"nothing\"\nworkers = 1\nmax_items_per_worker = 3",
    );
    // workers = 1 is set twice otherwise; drop the first.
    let text = std::fs::read_to_string(ws.path("chaos.toml"))
        .expect("read")
        .replacen("workers = 2\n", "", 1);
    ws.write("chaos.toml", text.as_bytes());
    ws.conveyor()
        .args(&["run", "chaos.toml"])
        .run()
        .code(0)
        .stderr_has("processes: `boom`: 4 workers started");
}

#[test]
fn threads_and_processes_write_identical_files() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/web-sizes.toml",
            "--mode",
            "threads",
            "--set",
            "small-save.dir=out/t",
        ])
        .run()
        .code(0);
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/web-sizes.toml",
            "--mode",
            "processes",
            "--set",
            "small-save.dir=out/p",
        ])
        .run()
        .code(0)
        .stderr_has("processes auto/");
    let t = ws.files("out/t");
    assert_eq!(t.len(), 8);
    assert_eq!(t, ws.files("out/p"));
    // Thumbnails too, every stage in its own worker chain.
    for mode in ["threads", "processes"] {
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--mode",
                mode,
                "--set",
                &format!("save.dir=thumbs/{mode}"),
            ])
            .run()
            .code(0);
    }
    assert_eq!(ws.files("thumbs/threads").len(), 12);
    assert_eq!(ws.files("thumbs/threads"), ws.files("thumbs/processes"));
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces): state ppid ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; only a reaped process is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_worker_killed_from_outside_fails_only_its_item() {
    let ws = Workspace::new();
    chaos_pipeline(&ws, "action = \"hang\"\nmatch = \"tower.jpg\"");
    let child = ws.spawn(&["run", "chaos.toml"]);
    let pid = child.id();
    // Every other item done: the one worker left busy holds tower.jpg.
    wait_for("11 outputs", 60, || ws.count("out") == 11);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let workers = children_of(pid);
    assert!(!workers.is_empty());
    for w in &workers {
        signal(w, "-KILL");
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tower.jpg: worker killed by signal 9 (SIGKILL)"),
        "{stderr}"
    );
    assert!(stderr.contains("11 ok, 1 failed"), "{stderr}");
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
}

#[test]
fn sigint_in_processes_mode_leaves_no_children_and_no_partial_files() {
    let ws = Workspace::new();
    ws.many_tiny("many", 2000);
    let child = ws.spawn(&[
        "run",
        "pipelines/thumbnails.toml",
        "--set",
        "scan.root=many",
        "--mode",
        "processes",
    ]);
    let pid = child.id();
    wait_for("some thumbnails", 60, || ws.count("out/thumbs") >= 20);
    let workers = children_of(pid);
    assert!(!workers.is_empty(), "no workers seen");
    signal(pid, "-INT");
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for w in workers {
        assert!(!alive(w), "worker {w} outlived the run");
    }
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
    let files = ws.files("out/thumbs");
    assert!(files.len() < 2000, "the run was not interrupted");
    for (name, bytes) in &files {
        assert!(!name.contains("conveyor-tmp"), "temp file left: {name}");
        dims(bytes);
    }
}

#[test]
fn workers_exit_when_conveyor_is_killed() {
    let ws = Workspace::new();
    chaos_pipeline(&ws, "action = \"hang\"");
    let mut child = Command::new(BIN)
        .current_dir(ws.path(""))
        .args(["run", "chaos.toml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    wait_for("two hanging workers", 60, || children_of(pid).len() >= 2);
    let workers = children_of(pid);
    // The check used after other runs does see live workers.
    assert_eq!(ws.leftover_workers().len(), workers.len());
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed = std::time::Instant::now();
    wait_for("workers to exit", 5, || workers.iter().all(|&w| !alive(w)));
    assert!(
        killed.elapsed() < std::time::Duration::from_secs(1),
        "workers took {:?} to exit",
        killed.elapsed()
    );
    assert_eq!(ws.leftover_workers(), Vec::<u32>::new());
}

fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

#[test]
fn file_descriptors_stay_flat_over_2000_items() {
    let ws = Workspace::alone();
    for i in 0..2000 {
        ws.write(
            &format!("many/{:02}/{i:04}.txt", i / 100),
            format!("file {i}").as_bytes(),
        );
    }
    ws.write(
        "copy.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"many\"\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\nmode = \"processes\"\nworkers = 2\nmax_items_per_worker = 50\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"copied\"\n",
    );
    let mut child = ws.spawn(&["run", "copy.toml"]);
    let pid = child.id();
    let mut samples = Vec::new();
    while child.try_wait().expect("try_wait").is_none() {
        if let Some(n) = fd_count(pid) {
            samples.push((ws.count("copied"), n));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2000 ok, 0 failed"), "{stderr}");
    assert!(stderr.contains("workers started"), "{stderr}");
    let copied = ws.files("copied");
    assert_eq!(copied.len(), 2000);
    assert_eq!(copied["07/0777.txt"], b"file 777");
    // Compare the early part of the run with the late part: recycling 40
    // workers must not leave descriptors behind.
    let early: Vec<usize> = samples
        .iter()
        .filter(|(done, _)| (100..500).contains(done))
        .map(|s| s.1)
        .collect();
    let late: Vec<usize> = samples
        .iter()
        .filter(|(done, _)| *done >= 1500)
        .map(|s| s.1)
        .collect();
    assert!(
        !early.is_empty() && !late.is_empty(),
        "too few samples: {samples:?}"
    );
    let early_max = early.iter().max().copied().unwrap_or(0);
    let late_max = late.iter().max().copied().unwrap_or(0);
    assert!(
        late_max <= early_max + 4,
        "descriptors grew from {early_max} to {late_max}"
    );
}

#[test]
fn an_embedded_custom_kind_runs_in_worker_processes() {
    // `cargo test` builds the examples next to the binary.
    let exe = Path::new(BIN).parent().expect("dir").join("examples/embed");
    if !exe.exists() {
        eprintln!(
            "skipped: {} not built (run `cargo test`, which builds examples)",
            exe.display()
        );
        return;
    }
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/a.jpg");
    ws.write(
        "inv.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"invert\"\nkind = \"invert\"\nmode = \"processes\"\nworkers = 1\n\n[[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    let out = Command::new(&exe)
        .current_dir(ws.path(""))
        .args(["run", "inv.toml"])
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("processes: `invert`: 1 worker started"),
        "{stderr}"
    );
    let original = image::open(ws.path("in/a.jpg")).expect("decode").to_rgb8();
    let inverted = image::open(ws.path("out/a.png")).expect("decode").to_rgb8();
    assert_eq!(original.dimensions(), inverted.dimensions());
    for (a, b) in original.pixels().zip(inverted.pixels()) {
        for c in 0..3 {
            assert_eq!(a[c], 255 - b[c]);
        }
    }
}

#[test]
fn a_second_interrupt_stops_at_once_and_sigterm_counts_as_one() {
    let ws = Workspace::new();
    // No timeout: only the interrupt ends these hangs.
    chaos_pipeline(&ws, "action = \"hang\"");
    for signals in [&["-INT", "-INT"][..], &["-TERM"][..]] {
        let child = ws.spawn(&["run", "chaos.toml"]);
        let pid = child.id();
        wait_for("two hanging workers", 60, || children_of(pid).len() >= 2);
        let workers = children_of(pid);
        let sent = std::time::Instant::now();
        for sig in signals {
            signal(pid, sig);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("wait");
        let took = sent.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{signals:?}: {stderr}");
        // Twice: at once; once: after the grace period for items in flight.
        let limit = if signals.len() == 2 { 1 } else { 4 };
        assert!(
            took < std::time::Duration::from_secs(limit),
            "{signals:?} took {took:?}"
        );
        wait_for("workers to exit", 2, || workers.iter().all(|&w| !alive(w)));
        assert_eq!(scratch_dirs(&ws), Vec::<String>::new(), "{signals:?}");
    }
    assert!(ws.files("out").is_empty());
    // Killed outright, a run can't clean up; the next run removes its folder.
    let child = ws.spawn(&["run", "chaos.toml"]);
    let pid = child.id();
    wait_for("two hanging workers", 60, || children_of(pid).len() >= 2);
    assert_eq!(scratch_dirs(&ws).len(), 1);
    signal(pid, "-KILL");
    let _ = child.wait_with_output();
    let next = ws.spawn(&["run", "chaos.toml"]);
    wait_for("two hanging workers", 60, || {
        children_of(next.id()).len() >= 2
    });
    let left = scratch_dirs(&ws);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains(&format!("-{}-", next.id())), "{left:?}");
    signal(next.id(), "-INT");
    signal(next.id(), "-INT");
    let _ = next.wait_with_output();
}

/// The run scratch folders in the workspace's TMPDIR.
fn scratch_dirs(ws: &Workspace) -> Vec<String> {
    std::fs::read_dir(ws.path(".tmp"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("conveyor-run-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fan_in_merges_two_sources() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "a/one.jpg")
        .sample("tower.jpg", "a/two.jpg")
        .sample("trips/hills.png", "b/three.png");
    ws.write(
        "merge.toml",
        b"[[stage]]\nname = \"left\"\nkind = \"scan\"\nroot = \"a\"\n\n[[stage]]\nname = \"right\"\nkind = \"scan\"\nroot = \"b\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\ninputs = [\"left\", \"right\"]\n\n[[stage]]\nname = \"small\"\nkind = \"resize\"\nwidth = 50\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    ws.conveyor()
        .args(&["graph", "merge.toml"])
        .run()
        .code(0)
        .stdout_has("<- left [nothing]")
        .stdout_has("<- right [nothing]");
    ws.conveyor()
        .args(&["run", "merge.toml"])
        .run()
        .code(0)
        .stderr_has("3 ok, 0 failed");
    let files = ws.files("out");
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        vec!["one.jpg", "three.jpg", "two.jpg"]
    );
    for bytes in files.values() {
        assert_eq!(dims(bytes).0, 50);
    }
}

#[test]
fn resize_filter_changes_pixels() {
    let ws = Workspace::new();
    for filter in ["lanczos3", "nearest"] {
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                &format!("thumb.filter=\"{filter}\""),
                "--set",
                &format!("save.dir=out/{filter}"),
            ])
            .run()
            .code(0);
    }
    let (a, b) = (ws.files("out/lanczos3"), ws.files("out/nearest"));
    assert_eq!(dims(&a["meadow.jpg"]), dims(&b["meadow.jpg"]));
    assert_ne!(a["meadow.jpg"], b["meadow.jpg"]);
}
