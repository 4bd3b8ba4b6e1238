//! The command line's face: files and folders as arguments (and on stdin),
//! `init` templates, shell completions, the man page, `--color`.

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
    let feed = |args: &[&str], input: &[u8]| ws.run_with_stdin(args, input);
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
fn overlapping_paths_and_two_spellings_give_each_file_once() {
    let ws = Workspace::new();
    let before = photos(&ws);
    let abs = ws.path("elsewhere/e.jpg").display().to_string();
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "t.toml",
            "photos",
            "photos/sub",
            "photos/a.jpg",
            "./photos/sub/b.jpg",
        ])
        .args(&["elsewhere", "./elsewhere/", "elsewhere/e.jpg", &abs])
        .run();
    done.code(0);
    let paths: Vec<&str> = done
        .report
        .iter()
        .filter_map(|l| l["path"].as_str())
        .collect();
    // photos: a.jpg, sub/b.jpg, sub/deep/c.jpg; elsewhere: e.jpg, g/h.jpg.
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert_eq!(done.tally().ok, 5);
    let names: Vec<String> = outputs(&ws).into_keys().collect();
    assert_eq!(
        names,
        ["a.jpg", "e.jpg", "g/h.jpg", "sub/b.jpg", "sub/deep/c.jpg"]
    );
    unchanged(&ws, &before);
}

#[test]
fn a_folder_the_scan_leaves_out_is_not_walked_when_named() {
    let ws = Workspace::new();
    let before = photos(&ws);
    ws.sample("tiny.jpg", "photos/.hidden/x.jpg")
        .sample("tiny.jpg", "photos/skip/y.jpg");
    let text = THUMBS
        .replace(
            "include = [\"**/*.jpg\"]",
            "include = [\"**/*.jpg\"]\nexclude = [\"skip\"]",
        )
        .replace("dir = \"out\"", "dir = \"photos/out\"");
    ws.write("t.toml", text.as_bytes());
    ws.conveyor().args(&["run", "t.toml"]).run().code(0);
    let made = ws.files("photos/out");
    assert_eq!(made.len(), 3, "{:?}", made.keys());
    // The output folder, a hidden and an excluded folder, each named: not
    // walked, said so, and nothing made of them.
    for folder in ["photos/out", "photos/.hidden", "photos/skip"] {
        let done = ws.conveyor().args(&["run", "t.toml", folder]).run();
        done.code(1)
            .stderr_has("not walked: the scan's rules leave this folder out");
        assert_eq!(done.tally().ok, 0, "{folder}");
        assert_eq!(ws.files("photos/out"), made, "{folder}");
    }
    let mut now = ws.files("photos");
    now.retain(|k, _| {
        !k.starts_with("out/") && !k.starts_with(".hidden/") && !k.starts_with("skip/")
    });
    for (k, v) in ws.files("elsewhere") {
        now.insert(format!("elsewhere/{k}"), v);
    }
    assert_eq!(now, before);
}

#[test]
fn a_file_named_from_outside_never_takes_another_photos_output() {
    let ws = Workspace::new();
    photos(&ws);
    ws.conveyor().args(&["run", "t.toml"]).run().code(0);
    let a_thumb = ws.files("out")["a.jpg"].clone();
    // Another photo, also called a.jpg, outside the root.
    ws.sample("tower.jpg", "ext2/a.jpg");
    let done = ws.conveyor().args(&["run", "t.toml", "ext2/a.jpg"]).run();
    done.code(1)
        .stderr_has("is also the output of photos/a.jpg");
    assert_eq!(ws.files("out")["a.jpg"], a_thumb, "replaced");
    // The library's own run still finds everything up to date, rightly.
    let full = ws.conveyor().args(&["run", "t.toml"]).run();
    full.code(0);
    assert_eq!(full.tally().up_to_date, 3);
    assert_eq!(ws.files("out")["a.jpg"], a_thumb);
    // The same file named again is its own output's owner: up to date.
    ws.conveyor()
        .args(&["run", "t.toml", "photos/a.jpg"])
        .run()
        .code(0);
    // Another root writing into the same folder is held to the same rule.
    ws.sample("tower.jpg", "photos2/a.jpg");
    ws.conveyor()
        .args(&["run", "t.toml", "--set", "scan.root=photos2"])
        .run()
        .code(1)
        .stderr_has("is also the output of photos/a.jpg");
    assert_eq!(ws.files("out")["a.jpg"], a_thumb);
    // Once photos/a.jpg is gone, its old thumbnail is nobody's: replaced.
    std::fs::remove_file(ws.path("photos/a.jpg")).expect("rm");
    ws.conveyor()
        .args(&["run", "t.toml", "--set", "scan.root=photos2"])
        .run()
        .code(0);
    assert_ne!(ws.files("out")["a.jpg"], a_thumb);
}

#[test]
fn with_paths_a_manifest_keeps_the_whole_librarys_rows() {
    let ws = Workspace::new();
    photos(&ws);
    let text = format!(
        "{THUMBS}\n[[stage]]\nname = \"index\"\nkind = \"manifest\"\ninput = \"save\"\npath = \"list.csv\"\n"
    );
    ws.write("t.toml", text.as_bytes());
    ws.conveyor().args(&["run", "t.toml"]).run().code(0);
    let list = std::fs::read(ws.path("list.csv")).expect("manifest");
    let rows = String::from_utf8_lossy(&list).lines().count();
    assert_eq!(rows, 4, "a header and three photos");
    ws.conveyor()
        .args(&["run", "t.toml", "--force", "photos/a.jpg"])
        .run()
        .code(0)
        .stderr_has("stage `index` keeps list.csv as it is");
    assert_eq!(std::fs::read(ws.path("list.csv")).expect("manifest"), list);
}

#[test]
fn twenty_thousand_paths_on_stdin_are_each_counted() {
    let ws = Workspace::new();
    ws.many_tiny("photos", 20_000);
    ws.write("t.toml", THUMBS.as_bytes());
    let mut list = String::new();
    for i in 0..20_000 {
        list.push_str(&format!("photos/{:02}/{i:04}.jpg\n", i / 100));
    }
    let out = ws.run_with_stdin(
        &["run", "t.toml", "-", "--dry-run", "--report", "r.jsonl"],
        list.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Tally::of(&read_report(&ws.path("r.jsonl")));
    assert_eq!(t.scanned, 20_000);
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
        .stderr_has("stage `save` writes into `out`, which was given to stage `scan` to read");
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
fn a_fifo_a_device_or_a_broken_link_named_is_refused_before_any_work() {
    let ws = Workspace::new();
    photos(&ws);
    let fifo = ws.path("photos/pipe.jpg");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("nowhere.jpg", ws.path("photos/dangling.jpg")).expect("link");
    for (path, why) in [
        ("photos/pipe.jpg", "is not a regular file"),
        ("/dev/zero", "is not a regular file"),
        ("photos/dangling.jpg", "is a broken symbolic link"),
    ] {
        // Without a timeout, a FIFO read would hang the test here.
        ws.conveyor()
            .args(&["run", "t.toml", path, "photos/a.jpg"])
            .run()
            .code(2)
            .stderr_has(why);
        assert!(!ws.path("out").exists(), "{path}: something ran");
    }
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
    // Every template in one folder of photos, as a user would try them
    // (`init NAME > NAME.toml`): none reads another's outputs or files.
    let dir = "lib";
    ws.sample("tiny.jpg", &format!("{dir}/a.jpg"))
        .sample("trips/coast.jpg", &format!("{dir}/2024/b.jpg"));
    for round in 0..2 {
        for name in &names {
            let text = ws.conveyor().args(&["init", name]).run();
            text.code(0);
            assert!(text.stdout().starts_with('#'), "{name}: not commented");
            ws.write(&format!("{dir}/{name}.toml"), text.stdout().as_bytes());
            let before = ws.files(dir);
            let in_lib = |args: &[&str]| {
                Command::new(BIN)
                    .current_dir(ws.path(dir))
                    .args(args)
                    .env_remove("PHOTOS")
                    .env_remove("OUT")
                    .output()
                    .expect("conveyor")
            };
            let toml = format!("{name}.toml");
            let check = in_lib(&["check", &toml]);
            let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
            assert_eq!(check.status.code(), Some(0), "{name}: {}", err(&check));
            let report = ws.path(&format!("{name}.jsonl"));
            let run = in_lib(&["run", &toml, "--report", &report.display().to_string()]);
            assert_eq!(run.status.code(), Some(0), "{name}: {}", err(&run));
            let t = Tally::of(&read_report(&report));
            assert_eq!(t.scanned, 2, "{name}, round {round}: {t:?}");
            if round == 1 {
                assert_eq!(t.up_to_date, 2, "{name}: not up to date");
            }
            let mut after = ws.files(dir);
            after.retain(|k, _| !k.starts_with("conveyor-out"));
            let mut was = before.clone();
            was.retain(|k, _| !k.starts_with("conveyor-out"));
            assert_eq!(after, was, "{name}: an input changed");
        }
    }
    let made = ws.files(&format!("{dir}/conveyor-out"));
    assert!(made.len() >= 10, "{:?}", made.keys());
    for (k, v) in &made {
        if k.ends_with(".jpg") || k.ends_with(".webp") {
            dims(v);
        }
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
            assert!(out.stdout().contains(cmd), "{shell} lacks {cmd}");
        }
    }
    ws.conveyor().args(&["completions", "tcsh"]).run().code(2);
    let man = ws.conveyor().args(&["man"]).run();
    man.code(0);
    assert!(man.stdout().contains(".TH conveyor 1"), "not roff");
    // One page: every command has its section, no page it does not make.
    assert!(man.stdout().contains("CONVEYOR RUN") && man.stdout().contains("CONVEYOR WATCH"));
    assert!(
        !man.stdout().contains("conveyor\\-run(1)"),
        "points at a page never made"
    );
    assert!(man.stdout().contains("Exit status") && man.stdout().contains("143"));
    for cmd in ["run", "watch", "check", "init", "completions", "man"] {
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
    // clap's own messages follow the flag too.
    assert!(bad(&["--color", "always", "run", "--no-such-flag"], None).contains("\u{1b}["));
    assert!(!bad(&["--color=never", "run", "--no-such-flag"], None).contains('\u{1b}'));
}
