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
