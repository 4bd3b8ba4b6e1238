//! The README's promise that its examples run as shown: every command line
//! in its `sh` blocks runs here, with `cargo run --release --` and
//! `conveyor` both meaning the binary under test, in a workspace with the
//! samples, a home folder of its own (`~/Pictures` holds a few samples) and
//! `/tmp/` paths kept inside it. `conveyor watch` runs in the background
//! while the lines after it drop files in. Lines that can't run in a test
//! say why.

use super::*;

/// Why a README line does not run here, if it doesn't.
fn skip_reason(line: &str) -> Option<&'static str> {
    let reasons: [(&str, &str); 6] = [
        ("cargo test", "it is this very suite"),
        ("sudo ", "installs system packages"),
        (
            "bench/",
            "a benchmark, minutes long (BENCHMARKS.md has its figures)",
        ),
        (
            "--submit",
            "needs a Slurm cluster (tests/cli/cluster.rs starts one where it can)",
        ),
        (
            "cargo install",
            "builds a second release binary (.ci/run checks its size)",
        ),
        ("--features", "needs an optional system library"),
    ];
    reasons
        .iter()
        .find(|(pat, _)| line.contains(pat))
        .map(|(_, why)| *why)
}

/// The lines of the README's `sh` code blocks.
fn sh_lines(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```sh" && !inside;
            continue;
        }
        if inside && !line.trim().is_empty() {
            out.push(line.to_string());
        }
    }
    out
}

#[test]
fn every_command_line_in_the_readme_runs_as_shown() {
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).expect("README");
    let ws = Workspace::new();
    let bin = ws.path("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::os::unix::fs::symlink(BIN, bin.join("conveyor")).expect("symlink");
    ws.sample("tiny.jpg", "Pictures/a.jpg")
        .sample("trips/coast.jpg", "Pictures/2024/b.jpg");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    let mut watching: Option<std::process::Child> = None;
    let sh = |cmd: &str| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(ws.path(""))
            .env("PATH", &path)
            .env("HOME", ws.path(""))
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .env_remove("NO_COLOR");
        c
    };
    for line in sh_lines(&readme) {
        if let Some(why) = skip_reason(&line) {
            skipped.push(format!("{line}\n    skipped: {why}"));
            continue;
        }
        let cmd = line
            .replace("cargo run --release -- ", "conveyor ")
            .replace("/tmp/", "tmp/");
        if cmd.contains("conveyor watch ") {
            // Runs until stopped: in the background, while the next lines
            // drop files in; Ctrl-C below.
            let child = sh(&cmd)
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("sh");
            wait_for("the watch to start", 30, || ws.path("incoming").is_dir());
            std::thread::sleep(std::time::Duration::from_millis(1500));
            watching = Some(child);
            ran.push(line);
            continue;
        }
        let out = sh(&cmd).output().expect("sh");
        assert!(
            out.status.success(),
            "README line failed ({:?}):\n{line}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push(line);
    }
    // The watch example made thumbnails of what was copied in, and stops
    // on Ctrl-C with 130.
    let mut watch = watching.expect("the README shows `conveyor watch`");
    wait_for("the watch's thumbnails", 60, || {
        ws.count("out/incoming/thumbs") >= 5
    });
    // Ctrl-C reaches conveyor (the shell running the line passes on its
    // exit code).
    let conveyor = children_of(watch.id());
    assert_eq!(conveyor.len(), 1, "{conveyor:?}");
    assert!(signal(conveyor[0], "-INT"));
    let code = watch.wait().expect("wait").code();
    assert_eq!(code, Some(130), "the watch ended with {code:?}");
    for bytes in ws.files("out/incoming/thumbs").values() {
        dims(bytes);
    }
    eprintln!(
        "ran {} README lines; skipped:\n{}",
        ran.len(),
        skipped.join("\n")
    );
    assert!(ran.len() >= 12, "only {} lines ran: {ran:#?}", ran.len());
    // What the lines made is real: thumbnails that decode, at their size.
    let thumbs = ws.files("out/thumbs");
    assert!(thumbs.len() >= 12, "{:?}", thumbs.keys());
    for bytes in thumbs.values() {
        let (w, h) = dims(bytes);
        assert!(w <= 256 && h <= 256);
    }
    let pics = ws.files("tmp/pics/thumbs");
    assert_eq!(pics.len(), 2, "{:?}", pics.keys());
    let man = std::fs::read_to_string(ws.path(".local/share/man/man1/conveyor.1")).expect("man");
    assert!(man.contains(".TH conveyor 1"));
    assert!(ws.path(".config/fish/completions/conveyor.fish").is_file());
    assert!(
        std::fs::read_to_string(ws.path("thumbnails.toml"))
            .expect("init")
            .contains("kind = \"thumbnail\"")
    );
    let schema = std::fs::read_to_string(ws.path("conveyor.schema.json")).expect("schema");
    serde_json::from_str::<serde_json::Value>(&schema).expect("schema is JSON");
}
