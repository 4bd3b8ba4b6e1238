//! "Your only copy is safe": each way a careless or hostile pipeline could
//! harm an input, tried for real, with the inputs compared byte for byte
//! before and after.

use super::*;

const SCAN: &str = "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"photos\"\n";

/// Two small photos and a PNG whose output name is `x.jpg`, like the JPEG's.
fn originals(ws: &Workspace) -> BTreeMap<String, Vec<u8>> {
    ws.sample("tiny.jpg", "photos/x.jpg")
        .sample("trips/badge.png", "photos/x.png")
        .sample("tower.jpg", "photos/sub/y.jpg");
    ws.files("photos")
}

fn run_pipeline(ws: &Workspace, text: &str, extra: &[&str]) -> Done {
    ws.write("p.toml", text.as_bytes());
    let mut args = vec!["run", "p.toml"];
    args.extend_from_slice(extra);
    ws.conveyor().args(&args).run()
}

#[test]
fn exec_into_the_scan_root_is_refused_before_any_work() {
    let ws = Workspace::new();
    let before = originals(&ws);
    let text = format!(
        "{SCAN}\n[[stage]]\nname = \"tool\"\nkind = \"exec\"\ncommand = [\"cp\", \"/dev/null\", \"{{out}}\"]\ndir = \"photos\"\n"
    );
    for cmd in ["check", "run"] {
        ws.write("p.toml", text.as_bytes());
        ws.conveyor()
            .args(&[cmd, "p.toml"])
            .run()
            .code(2)
            .stderr_has("p.toml:")
            .stderr_has("stage `tool` writes into `photos`, the folder stage `scan` reads")
            .stderr_has("could replace your originals");
    }
    assert_eq!(ws.files("photos"), before);
}

/// The writer's folder is above the root, so only the per-item guard can
/// see that `x.png`'s output `photos/x.jpg` is an original.
#[test]
fn a_write_that_lands_on_an_input_fails_alone_in_every_mode() {
    for mode in ["threads", "processes", "inline"] {
        let ws = Workspace::new();
        let before = originals(&ws);
        let text = format!(
            "{SCAN}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\nformat = \"jpeg\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \".\"\nfilename = \"photos/{{stem}}.{{ext}}\"\noverwrite = true\n"
        );
        let done = run_pipeline(&ws, &text, &["--mode", mode]);
        done.code(1).stderr_has(
            "refusing to write ./photos/x.jpg: it is an input of this run (stage `scan` reads it)",
        );
        assert_eq!(ws.files("photos"), before, "{mode}: an original changed");
    }
}

#[test]
fn racing_moves_never_lose_a_file() {
    for mode in ["threads", "processes"] {
        let ws = Workspace::new();
        // 40 folders holding the same 8 names, each file with its own
        // bytes, plus a pair of identical files (a real duplicate).
        let mut all: Vec<Vec<u8>> = Vec::new();
        for d in 0..40 {
            for n in 0..8 {
                let bytes = format!("folder {d} file {n}").into_bytes();
                ws.write(&format!("in/{d:02}/f{n}.dat"), &bytes);
                all.push(bytes);
            }
        }
        ws.write("in/dup1/same.dat", b"identical")
            .write("in/dup2/same.dat", b"identical");
        all.push(b"identical".to_vec());
        let text = format!(
            "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"mv\"\nkind = \"copy\"\ndir = \"out\"\nfilename = \"{{name}}\"\nmove = true\nworkers = 8\nmode = \"{mode}\"\n"
        );
        run_pipeline(&ws, &text, &[]).code(1);
        // Every source is where it was or at its destination; of the two
        // identical files, one may go once its twin's bytes are there.
        let mut found: Vec<Vec<u8>> = ws.files("in").into_values().collect();
        found.extend(ws.files("out").into_values());
        found.sort();
        found.dedup_by(|a, b| a == b && a.as_slice() == b"identical");
        all.sort();
        assert_eq!(found, all, "{mode}: a file was lost or changed");
        assert_eq!(ws.files("out").len(), 9, "{mode}: one file per name");
        // The duplicate's source goes only if its twin was already there.
        let total = ws.files("in").len() + ws.files("out").len();
        assert!((321..=322).contains(&total), "{mode}: {total} files");
        assert!(no_temp_files(&ws.path("")), "{mode}: temp files left");
    }
}

fn no_temp_files(root: &Path) -> bool {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .all(|e| {
            !e.file_name()
                .to_string_lossy()
                .starts_with(".conveyor-tmp-")
        })
}

#[test]
fn a_symlinked_folder_in_the_output_never_carries_a_write_into_the_input() {
    for mode in ["threads", "processes"] {
        let ws = Workspace::new();
        let before = originals(&ws);
        std::fs::create_dir_all(ws.path("out")).expect("mkdir");
        std::os::unix::fs::symlink("../photos/sub", ws.path("out/sub")).expect("symlink");
        let text = format!(
            "{SCAN}include = [\"**/*.jpg\"]\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\nfilename = \"{{rel_dir}}/{{stem}}.png\"\n"
        );
        run_pipeline(&ws, &text, &["--mode", mode])
            .code(1)
            .stderr_has("the folder out/sub is a symbolic link");
        assert_eq!(ws.files("photos"), before, "{mode}");
        assert!(ws.path("out/x.png").exists(), "the other item is written");
    }
}

#[test]
fn gathering_files_inside_a_scanned_folder_are_refused() {
    let ws = Workspace::new();
    let before = originals(&ws);
    for (kind, extra) in [("manifest", ""), ("contact_sheet", "tile = 64\n")] {
        let text = format!(
            "{SCAN}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"all\"\nkind = \"{kind}\"\npath = \"photos/x.jpg\"\n{extra}"
        );
        run_pipeline(&ws, &text, &[]).code(2).stderr_has(
            "stage `all` writes `photos/x.jpg` inside `photos`, the folder stage `scan` reads",
        );
    }
    assert_eq!(ws.files("photos"), before);
}

#[test]
fn a_gathering_file_the_scan_would_not_take_may_sit_inside_its_folder() {
    let ws = Workspace::new();
    let before = originals(&ws);
    // The scan takes `*.jpg`: a CSV next to the photos is never read back.
    let text = format!(
        "{SCAN}include = [\"**/*.jpg\"]\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"all\"\nkind = \"manifest\"\npath = \"photos/index.csv\"\n"
    );
    let rows = |ws: &Workspace| {
        let index = std::fs::read_to_string(ws.path("photos/index.csv")).expect("manifest");
        assert!(!index.contains("index.csv"), "read back: {index}");
        index.lines().filter(|l| l.contains(".jpg")).count()
    };
    run_pipeline(&ws, &text, &["--force"]).code(0);
    assert_eq!(rows(&ws), 2);
    // A second run reads the same photos, not the manifest.
    run_pipeline(&ws, &text, &["--force"]).code(0);
    assert_eq!(rows(&ws), 2);
    let mut after = ws.files("photos");
    after.remove("index.csv");
    assert_eq!(after, before);
}

#[test]
fn two_writers_on_the_same_files_are_refused_naming_both() {
    let ws = Workspace::new();
    originals(&ws);
    let text = format!(
        "{SCAN}\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"a\"\nkind = \"write\"\ninput = \"read\"\ndir = \"out\"\n\n[[stage]]\nname = \"b\"\nkind = \"write\"\ninput = \"read\"\ndir = \"out/.\"\n"
    );
    ws.write("p.toml", text.as_bytes());
    ws.conveyor()
        .args(&["check", "p.toml"])
        .run()
        .code(2)
        .stderr_has("stages `b` and `a` (p.toml:")
        .stderr_has("write the same files");
    assert!(!ws.path("out").exists());
}

#[test]
fn file_names_never_reach_the_shell() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "photos/$(touch PWNED).jpg")
        .sample("tiny.jpg", "photos/it's `touch PWNED2`.jpg");
    let before = ws.files("photos");
    // Quoting a placeholder is refused, with the safe form as a hint.
    for quoted in ["cp \\\"{path}\\\" \\\"{out}\\\"", "cp '{path}' '{out}'"] {
        let text = format!(
            "{SCAN}\n[[stage]]\nname = \"sh\"\nkind = \"exec\"\nshell = true\ndir = \"out\"\ncommand = [\"{quoted}\"]\n"
        );
        run_pipeline(&ws, &text, &[])
            .code(2)
            .stderr_has("is inside quotes in a `shell = true` command")
            .stderr_has("write it bare, e.g. `cp {path} {out}`");
    }
    // The bare form runs, with the names as data.
    let text = format!(
        "{SCAN}\n[[stage]]\nname = \"sh\"\nkind = \"exec\"\nshell = true\ndir = \"out\"\ncommand = [\"cp {{path}} {{out}} && echo \\\"$2\\\" >> names.txt\"]\n"
    );
    for mode in ["threads", "processes"] {
        run_pipeline(&ws, &text, &["--mode", mode, "--force"]).code(0);
    }
    assert!(!ws.path("PWNED").exists() && !ws.path("PWNED2").exists());
    assert!(!ws.path("photos/PWNED").exists());
    assert_eq!(ws.files("out"), before, "copies with the same names");
    let names = std::fs::read_to_string(ws.path("names.txt")).expect("names");
    assert!(names.contains("$(touch PWNED).jpg"), "{names}");
    assert_eq!(ws.files("photos"), before);
}

#[test]
fn temp_files_of_a_killed_run_are_swept_by_the_next() {
    let ws = Workspace::new();
    ws.many_tiny("photos", 6);
    // The command writes its output, then hangs: conveyor is killed while
    // temp files exist.
    let slow = format!(
        "{SCAN}\n[[stage]]\nname = \"tool\"\nkind = \"exec\"\nmode = \"processes\"\ndir = \"out\"\ncommand = [\"sh\", \"-c\", \"cp \\\"$0\\\" \\\"$1\\\"; sleep 30\", \"{{path}}\", \"{{out}}\"]\n"
    );
    ws.write("p.toml", slow.as_bytes());
    let mut child = ws.spawn(&["run", "p.toml", "-q"]);
    wait_for("temp files in out", 20, || !no_temp_files(&ws.path("out")));
    assert!(signal(child.id(), "-KILL"));
    let _ = child.wait();
    // The workers die with conveyor (PDEATHSIG), and their commands too.
    wait_for("workers to go", 10, || ws.leftover_workers().is_empty());
    assert!(!no_temp_files(&ws.path("out")), "the kill left temp files");
    let fast = slow.replace("; sleep 30", "");
    ws.write("p.toml", fast.as_bytes());
    ws.conveyor().args(&["run", "p.toml"]).run().code(0);
    let left: Vec<_> = walkdir::WalkDir::new(ws.path(""))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".conveyor-tmp-")
        })
        .map(|e| e.path().to_path_buf())
        .collect();
    assert!(
        left.is_empty(),
        "temp files survived the next run: {left:?}"
    );
    assert_eq!(ws.files("out").len(), 6);
}

#[test]
fn an_output_folder_created_during_the_run_is_never_scanned() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "r/a.jpg")
        .sample("tower.jpg", "r/zz/b.jpg");
    let text = "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"r\"\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"r/zz/out\"\nfilename = \"{rel_dir}/{stem}-copy.{ext}\"\n";
    for _ in 0..2 {
        let done = run_pipeline(&ws, text, &["--force"]);
        done.code(0);
        assert_eq!(done.tally().scanned, 2, "{}", done.stderr());
    }
    let names: Vec<String> = ws.files("r/zz/out").into_keys().collect();
    assert_eq!(names, vec!["a-copy.jpg", "zz/b-copy.jpg"]);
}

#[test]
fn an_unusable_temp_folder_stops_the_run_before_any_work() {
    let ws = Workspace::new();
    originals(&ws);
    ws.write("not-a-folder", b"x");
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=photos",
            "--set",
            "save.dir=out",
        ])
        .env("TMPDIR", &ws.path("not-a-folder").to_string_lossy())
        .run()
        .code(2)
        .stderr_has("cannot create a scratch folder in")
        .stderr_has("set TMPDIR");
    assert!(!ws.path("out").exists());
}

#[test]
fn links_at_the_destination_are_never_replaced() {
    let ws = Workspace::new();
    let before = originals(&ws);
    std::fs::create_dir_all(ws.path("out/sub")).expect("mkdir");
    // `out/x.jpg` is a symbolic link to an original, `out/sub/y.jpg` a
    // hard link to one: writing either would look like replacing an output.
    std::os::unix::fs::symlink("../photos/x.jpg", ws.path("out/x.jpg")).expect("symlink");
    std::fs::hard_link(ws.path("photos/sub/y.jpg"), ws.path("out/sub/y.jpg")).expect("link");
    let text = format!(
        "{SCAN}include = [\"**/*.jpg\"]\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\noverwrite = true\n"
    );
    for mode in ["threads", "processes"] {
        run_pipeline(&ws, &text, &["--mode", mode, "--force"])
            .code(1)
            .stderr_has("refusing to replace out/x.jpg: it is a symbolic link")
            .stderr_has("refusing to write out/sub/y.jpg: it is the same file as the input photos/sub/y.jpg")
            .stderr_has("0 ok, 2 failed");
        assert_eq!(ws.files("photos"), before, "{mode}");
    }
}

#[test]
fn advise_apply_never_writes_over_an_input_or_into_a_scanned_folder() {
    let ws = Workspace::new();
    let before = originals(&ws);
    let text = format!(
        "{SCAN}\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n"
    );
    ws.write("p.toml", text.as_bytes());
    std::os::unix::fs::symlink("photos", ws.path("link")).expect("symlink");
    for target in [
        "photos/x.jpg",
        "photos/advised.toml",
        "link/advised.toml",
        "link/sub/y.jpg",
        "p.toml",
    ] {
        ws.conveyor()
            .args(&["advise", "p.toml", "--sample", "1", "--apply", target])
            .run()
            .code(2)
            .stderr_has("--apply");
        assert_eq!(ws.files("photos"), before, "{target}");
        assert_eq!(
            std::fs::read(ws.path("p.toml")).expect("p"),
            text.as_bytes()
        );
    }
    assert!(
        !ws.path("out").exists(),
        "advise wrote the pipeline's outputs"
    );
    ws.conveyor()
        .args(&[
            "advise",
            "p.toml",
            "--sample",
            "1",
            "--apply",
            "advised.toml",
        ])
        .run()
        .code(0);
    assert!(ws.path("advised.toml").is_file());
}
