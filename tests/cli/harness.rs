//! The harness every topic file shares: a scratch workspace with the
//! samples linked in, a builder that runs the real `conveyor` binary, and
//! checks on what it did (its exit code, its messages, its JSON report).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_conveyor");

pub(crate) const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// What a file that is no image fails with, in this build.
pub(crate) const UNRECOGNISED: &str = if cfg!(feature = "heif") {
    "not a recognised image format (conveyor reads JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF and AVIF)"
} else {
    "not a recognised image format (conveyor reads JPEG, PNG, WebP, GIF, BMP and TIFF; HEIC/HEIF and AVIF when built with `--features heif`)"
};

/// A scratch folder where pipelines run, with `samples/` and `pipelines/`
/// linked in so the example files run unchanged, as from the repository.
pub(crate) struct Workspace {
    dir: tempfile::TempDir,
    _turn: Turn,
}

/// Tests share the machine; a measuring test takes it alone.
pub(crate) static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub(crate) enum Turn {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

impl Workspace {
    pub(crate) fn new() -> Workspace {
        Workspace::with(Turn::Shared(
            MACHINE.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// For tests that measure (memory, descriptors): no other test runs
    /// while this workspace lives.
    pub(crate) fn alone() -> Workspace {
        Workspace::with(Turn::Alone(
            MACHINE.write().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    pub(crate) fn with(turn: Turn) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["samples", "pipelines"] {
            std::os::unix::fs::symlink(Path::new(REPO).join(name), dir.path().join(name))
                .expect("symlink");
        }
        Workspace { dir, _turn: turn }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, bytes: &[u8]) -> &Workspace {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
        self
    }

    /// Copy a sample image into the workspace.
    pub(crate) fn sample(&self, sample: &str, rel: &str) -> &Workspace {
        let bytes =
            std::fs::read(Path::new(REPO).join("samples/photos").join(sample)).expect("sample");
        self.write(rel, &bytes)
    }

    /// Worker processes still running with this workspace as their folder.
    pub(crate) fn leftover_workers(&self) -> Vec<u32> {
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
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.spawn_env(args, &[])
    }

    /// `spawn` with extra environment variables.
    pub(crate) fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let tmp = self.path(".tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir .tmp");
        Command::new(BIN)
            .current_dir(self.path(""))
            .args(args)
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .env("TMPDIR", &tmp)
            .envs(env.iter().copied())
            // Not the test runner's: a run left behind by a failed test
            // must not hold its output open.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn conveyor")
    }

    /// Run conveyor to its end with `input` on its stdin (the paths of
    /// `run PIPELINE -`), its output captured.
    pub(crate) fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .current_dir(self.path(""))
            .args(args)
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn conveyor");
        // Written on the side: a child that stops reading (an error at the
        // first path) must not leave this test blocked on a full pipe.
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("wait");
        let _ = writer.join();
        out
    }

    /// `n` copies of the tiny sample under `dir`, a hundred per folder.
    pub(crate) fn many_tiny(&self, dir: &str, n: usize) {
        let tiny = std::fs::read(Path::new(REPO).join("samples/photos/tiny.jpg")).expect("sample");
        for i in 0..n {
            self.write(&format!("{dir}/{:02}/{i:04}.jpg", i / 100), &tiny);
        }
    }

    pub(crate) fn conveyor(&self) -> Run {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .env_remove("PHOTOS")
            .env_remove("OUT");
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let report = std::env::temp_dir().join(format!(
            "conveyor-test-report-{}-{n}.jsonl",
            std::process::id()
        ));
        Run { cmd, report }
    }

    /// How many files are below `rel` now (safe while a run writes there).
    pub(crate) fn count(&self, rel: &str) -> usize {
        walkdir::WalkDir::new(self.path(rel))
            .into_iter()
            .filter_entry(|e| e.file_name() != ".conveyor-state")
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .count()
    }

    /// Every file below `rel`, relative to it, with its bytes.
    pub(crate) fn files(&self, rel: &str) -> BTreeMap<String, Vec<u8>> {
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
pub(crate) struct Run {
    cmd: Command,
    /// Where a `run` writes its JSON report, unless the test names one.
    report: PathBuf,
}

impl Run {
    pub(crate) fn args(mut self, args: &[&str]) -> Run {
        self.cmd.args(args);
        self
    }

    pub(crate) fn env(mut self, k: &str, v: &str) -> Run {
        self.cmd.env(k, v);
        self
    }

    pub(crate) fn run(mut self) -> Done {
        let args: Vec<String> = self
            .cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        // Every `run` reports its items, so tests count them from the JSON
        // report rather than from the human summary; a report the test
        // names itself is read from where it goes.
        let named = args
            .iter()
            .position(|a| a == "--report")
            .and_then(|i| args.get(i + 1))
            .map(|p| match self.cmd.get_current_dir() {
                Some(dir) => dir.join(p),
                None => PathBuf::from(p),
            });
        let ours = args.first().is_some_and(|a| a == "run") && named.is_none();
        if ours {
            let _ = std::fs::remove_file(&self.report);
            self.cmd.arg("--report").arg(&self.report);
        }
        let out = self.cmd.output().expect("running conveyor");
        let report = match (&named, ours) {
            (Some(path), _) => read_report(path),
            (None, true) => {
                let lines = read_report(&self.report);
                let _ = std::fs::remove_file(&self.report);
                lines
            }
            (None, false) => Vec::new(),
        };
        Done { out, report }
    }
}

/// The lines of a JSON report (none if it was not written).
pub(crate) fn read_report(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("report lines are JSON"))
        .collect()
}

/// How a run's items ended, from its report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Every item the sources found (one report line each).
    pub scanned: u64,
    pub ok: u64,
    pub failed: u64,
    pub filtered: u64,
    pub up_to_date: u64,
    pub cancelled: u64,
}

impl Tally {
    pub(crate) fn of(report: &[serde_json::Value]) -> Tally {
        let mut t = Tally::default();
        for line in report {
            t.scanned += 1;
            match line["status"].as_str() {
                Some("ok") => t.ok += 1,
                Some("failed") => t.failed += 1,
                Some("filtered") => t.filtered += 1,
                Some("up_to_date") => t.up_to_date += 1,
                Some("cancelled") => t.cancelled += 1,
                other => panic!("unknown status {other:?} in {line}"),
            }
        }
        t
    }
}

/// A finished command, with fluent checks.
pub(crate) struct Done {
    pub(crate) out: Output,
    /// The run's JSON report, line by line.
    pub(crate) report: Vec<serde_json::Value>,
}

impl Done {
    /// How the items ended, from the report.
    pub(crate) fn tally(&self) -> Tally {
        Tally::of(&self.report)
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub(crate) fn code(&self, expected: i32) -> &Done {
        assert_eq!(
            self.out.status.code(),
            Some(expected),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    pub(crate) fn stderr_has(&self, needle: &str) -> &Done {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr()
        );
        self
    }

    pub(crate) fn stdout_has(&self, needle: &str) -> &Done {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout()
        );
        self
    }
}

/// Scanned, ok, failed, filtered and up-to-date counts of the human summary
/// (for tests of the summary itself, and of runs started in the background).
pub(crate) fn summary_counts(stderr: &str) -> (u64, u64, u64, u64, u64) {
    let line = stderr
        .lines()
        // The summary's line starts with the count: `12 items in 0.30s`
        // (the Ctrl-C notice also says "items in progress").
        .find(|l| {
            l.split_once(" items in ")
                .is_some_and(|(n, _)| n.parse::<u64>().is_ok())
        })
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
pub(crate) fn counts(done: &Done) -> (u64, u64) {
    let t = done.tally();
    (t.ok, t.up_to_date)
}

/// Send signal `sig` (`-INT`, `-KILL` ...) to process `pid` with kill(1);
/// whether kill succeeded.
pub(crate) fn signal(pid: impl std::fmt::Display, sig: &str) -> bool {
    Command::new("kill")
        .args([sig.to_string(), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// The thumbnails pipeline with `on_error = "fail"`, as `fail.toml`.
pub(crate) fn write_fail_fast_thumbnails(ws: &Workspace) {
    let text = std::fs::read_to_string(Path::new(REPO).join("pipelines/thumbnails.toml"))
        .expect("pipeline")
        .replace("on_error = \"skip\"", "on_error = \"fail\"");
    ws.write("fail.toml", text.as_bytes());
}

pub(crate) fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("output decodes");
    (img.width(), img.height())
}

/// The samples the example pipelines take, with their displayed sizes.
pub(crate) fn sample_sizes(exts: &[&str]) -> BTreeMap<String, (u32, u32)> {
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
pub(crate) fn contain(src: (u32, u32), bw: Option<u32>, bh: Option<u32>) -> (u32, u32) {
    let sx = bw.map_or(f64::INFINITY, |w| f64::from(w) / f64::from(src.0));
    let sy = bh.map_or(f64::INFINITY, |h| f64::from(h) / f64::from(src.1));
    let s = sx.min(sy).min(1.0);
    (
        ((f64::from(src.0) * s).round() as u32).max(1),
        ((f64::from(src.1) * s).round() as u32).max(1),
    )
}

pub(crate) const ALL_FORMATS: [&str; 8] =
    ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// The shared corpus of real photos, when this checkout sits beside it.
pub(crate) fn corpus() -> Option<PathBuf> {
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

/// A pipeline with a `chaos` stage in processes mode between decode and
/// encode; `extra` lines go into the chaos stage.
pub(crate) fn chaos_pipeline(ws: &Workspace, extra: &str) {
    let text = format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\n\n\
         [[stage]]\nname = \"load\"\nkind = \"decode\"\n\n\
         [[stage]]\nname = \"boom\"\nkind = \"chaos\"\nmode = \"processes\"\nworkers = 2\n{extra}\n\n\
         [[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n\
         [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n"
    );
    ws.write("chaos.toml", text.as_bytes());
}

/// Processes whose parent is `pid`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
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

pub(crate) fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; only a reaped process is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

pub(crate) fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub(crate) fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// The run scratch folders in the workspace's TMPDIR.
pub(crate) fn scratch_dirs(ws: &Workspace) -> Vec<String> {
    std::fs::read_dir(ws.path(".tmp"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("conveyor-run-"))
                .collect()
        })
        .unwrap_or_default()
}

/// A folder with good photos and broken files among them.
pub(crate) fn mixed_folder(ws: &Workspace) {
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

/// `jpeg` with marker segments (each: marker byte, payload) right after SOI.
pub(crate) fn with_segments(jpeg: &[u8], segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for (marker, payload) in segments {
        out.extend([0xFF, *marker]);
        out.extend(((payload.len() + 2) as u16).to_be_bytes());
        out.extend(payload);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// An EXIF block holding only an orientation.
pub(crate) fn exif_orientation(orientation: u8) -> Vec<u8> {
    let mut app1 = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    app1.extend([0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00, orientation, 0, 0]);
    app1.extend([0, 0, 0, 0]);
    app1
}

/// Run conveyor under GNU time; its exit code, stderr and peak resident
/// memory in MiB.
pub(crate) fn run_rss(ws: &Workspace, args: &[&str]) -> (i32, String, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(time.exists(), "GNU time is needed: apt-get install time");
    let rss_file = ws.path("rss.txt");
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(BIN)
        .args(args)
        .current_dir(ws.path(""))
        .output()
        .expect("run conveyor under time");
    let kib: u64 = std::fs::read_to_string(&rss_file)
        .expect("time's output")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a peak RSS");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        kib / 1024,
    )
}

/// `img` encoded as a PNG file.
pub(crate) fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png encodes");
    out.into_inner()
}
