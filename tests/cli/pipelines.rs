//! The core of a run: the example pipelines on the samples, outputs and
//! their sizes, modes, overrides, configuration errors, scan rules, graph
//! and stage listings.

use super::*;

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
        .stderr_has(&format!("in/notes.jpg: {UNRECOGNISED} (stage `load`)"))
        .stderr_has(&format!("in/noise.png: {UNRECOGNISED} (stage `load`)"))
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
        .code(2)
        .stderr_has("stage `save` writes into `pics`, the folder stage `scan` reads");
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
fn missing_scan_root_is_refused_before_work_with_its_path() {
    let ws = Workspace::new();
    let here = ws.path("").canonicalize().expect("canonical");
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=nowhere",
        ])
        .run()
        .code(2)
        .stderr_has("stage `scan`: the folder to scan, `nowhere`")
        .stderr_has(&format!(
            "relative to the current folder {}), does not exist",
            here.display()
        ))
        .stderr_has("--set scan.root=nowhere");
    assert!(!ws.path("out").exists(), "nothing runs");
}

#[test]
fn graph_in_three_formats() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&["graph", "pipelines/web-sizes.toml"])
        .run()
        .code(0)
        .stdout_has("small (resize, threads auto/")
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
        .stdout_has("\"jpeg\" | \"png\" | \"webp\" | \"avif\"");
    ws.conveyor()
        .args(&["stages", "resise"])
        .run()
        .code(2)
        .stderr_has("did you mean `resize`?");
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

#[test]
fn the_largest_files_start_first() {
    // A big photo that starts last keeps one core busy while the others
    // idle; the source holds a few files back to start the largest first.
    let ws = Workspace::new();
    let sizes = [3, 40, 7, 1, 90, 22, 5, 61, 14, 33];
    for (i, kb) in sizes.iter().enumerate() {
        ws.write(&format!("in/f{i}.bin"), &vec![b'x'; kb * 1024]);
    }
    ws.write(
        "p.toml",
        br#"
[pipeline]
name = "order"

[[stage]]
name = "scan"
kind = "scan"
root = "in"

[[stage]]
name = "sum"
kind = "hash"
mode = "threads"
workers = 1
"#,
    );
    let done = ws.conveyor().args(&["run", "p.toml"]).run();
    done.code(0);
    let order: Vec<u64> = done
        .report
        .iter()
        .filter_map(|l| l["path"].as_str())
        .map(|p| std::fs::metadata(ws.path("").join(p)).expect("input").len() / 1024)
        .collect();
    let mut largest_first = order.clone();
    largest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, largest_first, "in the order they ended");
}
