//! Problems found before any work (exit 2, nothing decoded or written), and
//! warnings about pipelines that would run but not do what was meant.

use super::*;

#[test]
fn an_output_folder_that_cannot_be_made_is_refused_before_work() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "photos/a.jpg")
        .write("blocked", b"a file");
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=photos",
            "--set",
            "save.dir=blocked/thumbs",
        ])
        .run()
        .code(2)
        .stderr_has("stage `save` writes into `blocked/thumbs`")
        .stderr_has("is a file, so the folder can't be made");
}

#[test]
fn a_home_folder_is_expanded_in_path_options() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "home/pics/a.jpg");
    let home = ws.path("home");
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=\"~/pics\"",
            "--set",
            "save.dir=\"~/thumbs\"",
        ])
        .env("HOME", &home.to_string_lossy())
        .run();
    done.code(0);
    assert!(ws.path("home/thumbs/a.jpg").exists(), "{}", done.stderr());
    assert!(!ws.path("~").exists(), "a folder named ~ was made");
}

#[test]
fn a_branch_that_writes_nothing_and_ignored_limits_are_warned_about() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "photos/a.jpg");
    ws.write(
        "p.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"photos\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmode = \"threads\"\nmemory_limit = \"256MiB\"\n\n[[stage]]\nname = \"small\"\nkind = \"resize\"\nwidth = 64\ntimeout = \"5s\"\n",
    );
    for cmd in ["check", "run"] {
        ws.conveyor()
            .args(&[cmd, "p.toml"])
            .run()
            .code(0)
            .stderr_has(
                "stage `small` ends a branch, and what it makes reaches no stage that writes it",
            )
            .stderr_has("stage `load` runs in threads mode, where `memory_limit` is ignored")
            .stderr_has("stage `small` runs in threads mode, where `timeout` is ignored");
    }
    // In processes mode the limits apply: no warning about them.
    ws.conveyor()
        .args(&["check", "p.toml", "--mode", "processes"])
        .run()
        .code(0)
        .stderr_has("ends a branch");
    let quiet = ws
        .conveyor()
        .args(&["check", "p.toml", "--mode", "processes"])
        .run();
    assert!(!quiet.stderr().contains("is ignored"), "{}", quiet.stderr());
}

#[test]
fn messages_say_what_to_write() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "photos/a.jpg");
    // `[stage]` twice instead of `[[stage]]`.
    ws.write(
        "a.toml",
        b"[stage]\nname = \"scan\"\nkind = \"scan\"\nroot = \"photos\"\n\n[stage]\nname = \"x\"\nkind = \"read\"\n",
    );
    ws.conveyor()
        .args(&["check", "a.toml"])
        .run()
        .code(2)
        .stderr_has("did you mean `[[stage]]`?");
    // A duration or a size written as a number: an example of the text.
    ws.write(
        "b.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"photos\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmode = \"processes\"\ntimeout = 5\n",
    );
    ws.conveyor()
        .args(&["check", "b.toml"])
        .run()
        .code(2)
        .stderr_has("expected a duration written as text, e.g. \"30s\"");
    // An empty `--set` value is blamed on the argument, not the file.
    ws.conveyor()
        .args(&[
            "check",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=photos",
            "--set",
            "save.dir=",
        ])
        .run()
        .code(2)
        .stderr_has("`--set save.dir=` gives no value after `=`")
        .stderr_has("--> --set save.dir=");
}

#[test]
fn a_file_that_is_no_image_names_the_formats_that_are() {
    let ws = Workspace::new();
    ws.write("photos/notes.jpg", b"just some words, not an image");
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=photos",
        ])
        .run()
        .code(1)
        .stderr_has(
            "not a recognised image format (conveyor reads JPEG, PNG, WebP, GIF, BMP and TIFF)",
        );
}

#[test]
fn graph_and_summary_describe_modes_alike_and_dry_runs_show_no_rates() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "photos/a.jpg");
    let args = ["pipelines/thumbnails.toml", "--set", "scan.root=photos"];
    let graph = ws.conveyor().args(&["graph"]).args(&args).run();
    graph.code(0);
    let words: Vec<String> = graph
        .stdout()
        .lines()
        .filter_map(|l| {
            l.split_once(", ")
                .map(|(_, m)| m.trim_end_matches(')').to_string())
        })
        .collect();
    assert!(!words.is_empty(), "{}", graph.stdout());
    // Both say `threads auto/N` for the pipeline's auto stages.
    assert!(words.iter().any(|w| w.contains(" auto/")), "{words:?}");
    let run = ws.conveyor().args(&["run"]).args(&args).run();
    run.code(0);
    for w in &words {
        assert!(
            run.stderr().contains(w.as_str()),
            "{w:?} not in\n{}",
            run.stderr()
        );
    }
    let dry = ws
        .conveyor()
        .args(&["run"])
        .args(&args)
        .args(&["--dry-run", "--force"])
        .run();
    dry.code(0);
    assert!(!dry.stderr().contains("items/s)"), "{}", dry.stderr());
}
