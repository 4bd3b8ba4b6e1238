//! Integration tests: the real `conveyor` binary on real files, checking what
//! lands on disk (files decoded, counted, compared), not only exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_conveyor");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A scratch folder where pipelines run, with `samples/` and `pipelines/`
/// linked in so the example files run unchanged, as from the repository.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["samples", "pipelines"] {
            std::os::unix::fs::symlink(Path::new(REPO).join(name), dir.path().join(name))
                .expect("symlink");
        }
        Workspace { dir }
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
        for e in walkdir::WalkDir::new(&root).sort_by_file_name() {
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
            let (w, h) = dims(bytes);
            assert!(w > 0 && h > 0, "{rel}: {name} is empty");
        }
        ran += 1;
    }
    assert!(ran >= 2, "expected the example pipelines, found {ran}");
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
    let text = std::fs::read_to_string(Path::new(REPO).join("pipelines/thumbnails.toml"))
        .expect("pipeline")
        .replace("on_error = \"skip\"", "on_error = \"fail\"");
    ws.write("fail.toml", text.as_bytes());
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
    let tiny = std::fs::read(Path::new(REPO).join("samples/photos/tiny.jpg")).expect("sample");
    for i in 0..3000 {
        ws.write(&format!("many/{:02}/{i:04}.jpg", i / 100), &tiny);
    }
    let child = Command::new(BIN)
        .current_dir(ws.path(""))
        .args([
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=many",
            "--mode",
            "inline",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until some thumbnails exist, so the run is under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ws.count("out/thumbs") < 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
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
