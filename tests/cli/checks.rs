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
    // A number of the wrong kind names the range and shows an example.
    ws.conveyor()
        .args(&[
            "check",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=photos",
            "--set",
            "jpeg.quality=82.5",
        ])
        .run()
        .code(2)
        .stderr_has("`quality` must be a whole number from 1 to 100, not 82.5, e.g. quality = 85");
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
        .stderr_has(UNRECOGNISED);
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

#[test]
fn a_missing_file_an_option_names_is_found_before_work() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "photos/a.jpg");
    ws.write(
        "wm.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"photos\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\nmax_alloc = \"2GiB\"\n\n[[stage]]\nname = \"mark\"\nkind = \"watermark\"\nimage = \"logo.png\"\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    ws.conveyor()
        .args(&["run", "wm.toml"])
        .run()
        .code(2)
        .stderr_has("stage `mark`: the file `image` names, `logo.png` (")
        .stderr_has("relative to the current folder")
        .stderr_has("wm.toml:14:9");
    assert!(!ws.path("out").exists());
    // With the logo there, it runs (and `max_alloc` took "2GiB").
    ws.sample("trips/badge.png", "logo.png");
    ws.conveyor().args(&["run", "wm.toml"]).run().code(0);
    assert!(ws.path("out/a.jpg").exists());
}

#[test]
fn a_dry_run_refuses_what_the_header_decides_like_the_real_run() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "photos/small.jpg")
        .sample("meadow.jpg", "photos/big.jpg")
        .write("photos/empty.jpg", b"")
        .write("photos/text.jpg", b"words");
    let args = [
        "run",
        "pipelines/thumbnails.toml",
        "--set",
        "scan.root=photos",
        "--set",
        "load.max_pixels=50000",
    ];
    let dry = ws.conveyor().args(&args).args(&["--dry-run"]).run();
    let real = ws.conveyor().args(&args).run();
    real.code(1);
    dry.code(1)
        .stderr_has("big.jpg: image is 640x427 (273280 pixels), over the limit of 50000 pixels");
    assert_eq!(dry.tally(), real.tally(), "{}", dry.stderr());
    assert_eq!(real.tally().ok, 1);
}

#[test]
fn decoder_errors_are_one_line_of_plain_words() {
    let ws = Workspace::new();
    let png = std::fs::read(Path::new(REPO).join("samples/photos/trips/badge.png")).expect("png");
    // The CRC of the header chunk no longer matches.
    let mut bad = png.clone();
    bad[29] ^= 0xff;
    ws.write("photos/crc.png", &bad);
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=photos",
        ])
        .run();
    done.code(1)
        .stderr_has("photos/crc.png: cannot decode png: CRC error")
        .stderr_has("while decoding IHDR chunk (stage `load`)");
    assert!(!done.stderr().contains("ChunkType {"), "{}", done.stderr());
    assert!(
        !done.stderr().contains("Format error decoding"),
        "{}",
        done.stderr()
    );
}
