//! The command line's face: files and folders as arguments (and on stdin),
//! `init` templates, shell completions, the man page, `--color`.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use super::*;

/// A pipeline scanning `photos` for JPEGs only, thumbnails into `out`.
const THUMBS: &str = r#"[pipeline]
name = "t"

[[stage]]
name = "scan"
kind = "scan"
root = "photos"
include = ["**/*.jpg"]

[[stage]]
name = "thumb"
kind = "thumbnail"
width = 64

[[stage]]
name = "jpeg"
kind = "encode"

[[stage]]
name = "save"
kind = "write"
dir = "out"
filename = "{rel_dir}/{stem}.jpg"
"#;

fn photos(ws: &Workspace) -> BTreeMap<String, Vec<u8>> {
    ws.sample("tiny.jpg", "photos/a.jpg")
        .sample("tower.jpg", "photos/sub/b.jpg")
        .sample("meadow.jpg", "photos/sub/deep/c.jpg")
        .sample("trips/badge.png", "photos/sub/d.png")
        .sample("dusk.jpg", "elsewhere/e.jpg")
        .sample("trips/hills.png", "elsewhere/f.png")
        .sample("trips/coast.jpg", "elsewhere/g/h.jpg")
        .write("t.toml", THUMBS.as_bytes());
    let mut all = ws.files("photos");
    for (k, v) in ws.files("elsewhere") {
        all.insert(format!("elsewhere/{k}"), v);
    }
    all
}

fn unchanged(ws: &Workspace, before: &BTreeMap<String, Vec<u8>>) {
    let mut now = ws.files("photos");
    for (k, v) in ws.files("elsewhere") {
        now.insert(format!("elsewhere/{k}"), v);
    }
    assert_eq!(&now, before, "an input changed");
}

/// The outputs, each decoded: name -> width.
fn outputs(ws: &Workspace) -> BTreeMap<String, u32> {
    ws.files("out")
        .into_iter()
        .map(|(k, v)| {
            let (w, _) = dims(&v);
            (k, w)
        })
        .collect()
}

#[test]
fn paths_inside_the_root_are_named_as_a_full_run_names_them() {
    let ws = Workspace::new();
    let before = photos(&ws);
    // A file and a folder inside the root, one written the long way round.
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "t.toml",
            "./photos/../photos/a.jpg",
            "photos/sub/deep",
        ])
        .run();
    done.code(0);
    assert_eq!(done.tally().ok, 2, "{}", done.stderr());
    let names: Vec<String> = outputs(&ws).into_keys().collect();
    assert_eq!(names, ["a.jpg", "sub/deep/c.jpg"]);
    assert!(outputs(&ws).values().all(|&w| w == 64));
    // The full run finds those two up to date and makes the rest.
    let full = ws.conveyor().args(&["run", "t.toml"]).run();
    full.code(0);
    let t = full.tally();
    assert_eq!((t.ok, t.up_to_date), (1, 2), "{}", full.stderr());
    unchanged(&ws, &before);
}

#[test]
fn a_folder_outside_the_root_is_walked_with_the_globs_and_a_named_file_taken_as_named() {
    let ws = Workspace::new();
    let before = photos(&ws);
    // `elsewhere` holds e.jpg, f.png and g/h.jpg: the globs take the JPEGs.
    // f.png named by itself is taken although the globs want JPEGs.
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "t.toml",
            "elsewhere",
            "elsewhere/f.png",
            "photos/sub/d.png",
        ])
        .run();
    done.code(0);
    let got = outputs(&ws);
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["e.jpg", "f.jpg", "g/h.jpg", "sub/d.jpg"],
        "{}",
        done.stderr()
    );
    assert_eq!(done.tally().ok, 4);
    unchanged(&ws, &before);
}

#[test]
fn paths_come_from_stdin_by_line_or_by_nul_with_any_name() {
    let ws = Workspace::new();
    let before = photos(&ws);
    // A name with a newline in it can only travel NUL-separated.
    ws.sample("tiny.jpg", "photos/odd\nname.jpg");
    let feed = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(BIN)
            .current_dir(ws.path(""))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    };
    let out = feed(
        &["run", "t.toml", "-"],
        b"photos/a.jpg\r\n\nelsewhere/e.jpg\n",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        outputs(&ws).into_keys().collect::<Vec<_>>(),
        ["a.jpg", "e.jpg"]
    );
    let out = feed(
        &["run", "t.toml", "-0", "-"],
        b"photos/odd\nname.jpg\0photos/sub/b.jpg\0",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = outputs(&ws);
    assert!(
        got.contains_key("odd\nname.jpg") && got.contains_key("sub/b.jpg"),
        "{got:?}"
    );
    // Nothing on stdin: an error, nothing run.
    let out = feed(&["run", "t.toml", "-"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no paths were read from stdin"));
    let mut now = ws.files("photos");
    now.remove("odd\nname.jpg");
    for (k, v) in ws.files("elsewhere") {
        now.insert(format!("elsewhere/{k}"), v);
    }
    assert_eq!(now, before);
}

#[test]
fn bad_paths_are_refused_before_any_work() {
    let ws = Workspace::new();
    let before = photos(&ws);
    // A path that does not exist, among good ones: nothing runs.
    ws.conveyor()
        .args(&["run", "t.toml", "photos/a.jpg", "photos/missing.jpg"])
        .run()
        .code(2)
        .stderr_has("`photos/missing.jpg`")
        .stderr_has("does not exist");
    // A name that is not UTF-8 can't be written into the pipeline.
    let odd = std::ffi::OsStr::from_bytes(b"photos/\xff.jpg");
    let out = Command::new(BIN)
        .current_dir(ws.path(""))
        .arg("run")
        .arg("t.toml")
        .arg(odd)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give its folder instead"));
    // The output folder given as an input: refused, naming both.
    ws.conveyor().args(&["run", "t.toml"]).run().code(0);
    let made = ws.files("out");
    ws.conveyor()
        .args(&["run", "t.toml", "out"])
        .run()
        .code(2)
        .stderr_has("stage `save` writes into `out`, the folder stage `scan` reads");
    assert_eq!(ws.files("out"), made);
    // Two scans: which one would take the paths? Both are named.
    let two = THUMBS.replace(
        "[[stage]]\nname = \"thumb\"",
        "[[stage]]\nname = \"scan2\"\nkind = \"scan\"\nroot = \"elsewhere\"\n\n[[stage]]\nname = \"thumb\"\ninputs = [\"scan\", \"scan2\"]",
    );
    ws.write("two.toml", two.as_bytes());
    ws.conveyor()
        .args(&["run", "two.toml", "photos/a.jpg"])
        .run()
        .code(2)
        .stderr_has("one `scan` stage, but it has 2: `scan` (two.toml:")
        .stderr_has("`scan2` (two.toml:");
    unchanged(&ws, &before);
}

#[test]
fn a_fifo_named_on_the_command_line_fails_alone_without_hanging() {
    let ws = Workspace::new();
    photos(&ws);
    let fifo = ws.path("photos/pipe.jpg");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let done = ws
        .conveyor()
        .args(&["run", "t.toml", "photos/pipe.jpg", "photos/a.jpg"])
        .run();
    done.code(1);
    let t = done.tally();
    assert_eq!((t.ok, t.failed), (1, 1), "{}", done.stderr());
    assert!(
        done.stderr().contains("not a regular file"),
        "{}",
        done.stderr()
    );
}

#[test]
fn every_init_template_passes_check_as_printed_and_runs() {
    let ws = Workspace::new();
    let list = ws.conveyor().args(&["init"]).run();
    list.code(0);
    let names: Vec<String> = list
        .stdout()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(names.len() >= 4, "{}", list.stdout());
    for name in &names {
        // In a folder of photos, as a user would: `init NAME > NAME.toml`.
        let dir = format!("lib-{name}");
        ws.sample("tiny.jpg", &format!("{dir}/a.jpg"))
            .sample("trips/coast.jpg", &format!("{dir}/2024/b.jpg"));
        let text = ws.conveyor().args(&["init", name]).run();
        text.code(0);
        assert!(text.stdout().starts_with('#'), "{name}: not commented");
        ws.write(&format!("{dir}/{name}.toml"), text.stdout().as_bytes());
        let before = ws.files(&dir);
        let check = Command::new(BIN)
            .current_dir(ws.path(&dir))
            .args(["check", &format!("{name}.toml")])
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .output()
            .expect("check");
        assert_eq!(
            check.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let run = Command::new(BIN)
            .current_dir(ws.path(&dir))
            .args(["run", &format!("{name}.toml")])
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .output()
            .expect("run");
        assert_eq!(
            run.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let made = ws.files(&format!("{dir}/conveyor-out"));
        assert!(made.len() >= 2, "{name}: {:?}", made.keys());
        for (k, v) in &made {
            if k.ends_with(".jpg") || k.ends_with(".webp") {
                dims(v);
            }
        }
        let mut after = ws.files(&dir);
        after.retain(|k, _| !k.starts_with("conveyor-out"));
        assert_eq!(after, before, "{name}: an input changed");
    }
    ws.conveyor()
        .args(&["init", "thumbnail"])
        .run()
        .code(2)
        .stderr_has("did you mean `thumbnails`");
}

#[test]
fn completions_and_the_man_page_name_every_command() {
    let ws = Workspace::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = ws.conveyor().args(&["completions", shell]).run();
        out.code(0);
        for cmd in ["run", "watch", "check", "init", "completions"] {
            if cmd == "watch" {
                continue; // added with `conveyor watch`
            }
            assert!(out.stdout().contains(cmd), "{shell} lacks {cmd}");
        }
    }
    ws.conveyor().args(&["completions", "tcsh"]).run().code(2);
    let man = ws.conveyor().args(&["man"]).run();
    man.code(0);
    assert!(man.stdout().contains(".TH conveyor 1"), "not roff");
    for cmd in ["run", "check", "init", "completions", "man"] {
        assert!(man.stdout().contains(cmd), "man page lacks {cmd}");
    }
}

#[test]
fn color_always_never_and_no_color() {
    let ws = Workspace::new();
    let bad = |args: &[&str], env: Option<(&str, &str)>| {
        let mut run = ws.conveyor().args(args);
        if let Some((k, v)) = env {
            run = run.env(k, v);
        }
        run.run().stderr()
    };
    // Not a terminal: plain by default, coloured when asked.
    assert!(!bad(&["check", "missing.toml"], None).contains('\u{1b}'));
    assert!(bad(&["--color", "always", "check", "missing.toml"], None).contains("\u{1b}["));
    assert!(bad(&["check", "missing.toml", "--color=always"], None).contains("\u{1b}["));
    assert!(!bad(&["--color", "never", "check", "missing.toml"], None).contains('\u{1b}'));
    // NO_COLOR keeps `auto` plain; an explicit `always` still wins.
    assert!(!bad(&["check", "missing.toml"], Some(("NO_COLOR", "1"))).contains('\u{1b}'));
    assert!(
        bad(
            &["--color", "always", "check", "missing.toml"],
            Some(("NO_COLOR", "1"))
        )
        .contains("\u{1b}[")
    );
    ws.conveyor()
        .args(&["--color", "sometimes", "check", "x.toml"])
        .run()
        .code(2)
        .stderr_has("auto");
}
