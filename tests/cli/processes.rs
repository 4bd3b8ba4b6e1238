//! Processes mode: crashes, hangs, memory limits, retries and recycling of
//! workers, each failing only its item.

use super::*;

/// Run chaos `action` on meadow.jpg and tower.jpg: exactly those two fail,
/// with `reason` in their message, and the ten others are written.
fn chaos_fails_exactly_the_matched_items(action: &str, extra: &str, reason: &str) {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        &format!("action = \"{action}\"\nmatch = \"{{meadow,tower}}.jpg\"\n{extra}"),
    );
    let done = ws.conveyor().args(&["run", "chaos.toml"]).run();
    done.code(1).stderr_has("10 ok, 2 failed");
    for name in ["meadow.jpg", "tower.jpg"] {
        done.stderr_has(&format!("samples/photos/{name}: {reason}"));
    }
    assert_eq!(
        done.stderr().matches(reason).count(),
        2,
        "{}",
        done.stderr()
    );
    let files = ws.files("out");
    assert_eq!(files.len(), 10);
    assert!(!files.contains_key("meadow.jpg") && !files.contains_key("tower.jpg"));
    for bytes in files.values() {
        dims(bytes);
    }
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
}

#[test]
fn chaos_panic_in_a_worker() {
    chaos_fails_exactly_the_matched_items("panic", "", "worker panicked: chaos: injected panic on");
}

#[test]
fn chaos_abort_in_a_worker() {
    chaos_fails_exactly_the_matched_items("abort", "", "worker killed by signal 6 (SIGABRT)");
}

#[test]
fn chaos_segfault_in_a_worker() {
    chaos_fails_exactly_the_matched_items("segfault", "", "worker killed by signal 11 (SIGSEGV)");
}

#[test]
fn chaos_error_in_a_worker() {
    chaos_fails_exactly_the_matched_items("error", "", "chaos: injected error on");
}

#[test]
fn timeout_ends_a_hang() {
    chaos_fails_exactly_the_matched_items(
        "hang",
        "timeout = \"1s\"",
        "timed out after 1s (stage `boom`)",
    );
}

#[test]
fn memory_limit_ends_an_oom() {
    chaos_fails_exactly_the_matched_items(
        "oom",
        "memory_limit = \"256MiB\"",
        "memory limit 256MiB exceeded (memory allocation of",
    );
}

#[test]
fn retries_succeed_in_a_fresh_worker() {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        "action = \"segfault\"\nmatch = \"tower.jpg\"\ntimes = 1\nretries = 1",
    );
    ws.conveyor()
        .args(&["run", "chaos.toml"])
        .run()
        .code(0)
        .stderr_has("12 ok, 0 failed")
        // The first worker crashed on tower.jpg and was replaced.
        .stderr_has("processes: `boom`: 3 workers started");
    assert!(ws.files("out").contains_key("tower.jpg"));
    // Without the retry the same item fails.
    ws.conveyor()
        .args(&[
            "run",
            "chaos.toml",
            "--set",
            "boom.retries=0",
            "--set",
            "save.dir=out2",
        ])
        .run()
        .code(1)
        .stderr_has("tower.jpg: worker killed by signal 11 (SIGSEGV)");
}

#[test]
fn a_crash_loop_stops_the_stage() {
    let ws = Workspace::new();
    chaos_pipeline(&ws, "action = \"abort\"");
    let done = ws
        .conveyor()
        .args(&["run", "chaos.toml", "--set", "boom.workers=1"])
        .run();
    done.code(1)
        .stderr_has("workers of stage `boom` crashed 5 times in a row without finishing an item, so the stage stopped")
        .stderr_has("stage stopped: ")
        .stderr_has("5 failed")
        .stderr_has("7 not processed");
    // The stage stopped the run, not `on_error` (its default goes on).
    assert!(!done.stderr().contains("on_error"), "{}", done.stderr());
    assert!(ws.files("out").is_empty());
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
}

#[test]
fn a_worker_that_dies_before_connecting_stops_the_stage() {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        "action = \"error\"\nmatch = \"nothing\"\nmemory_limit = \"64KiB\"",
    );
    ws.conveyor()
        .args(&["run", "chaos.toml"])
        .run()
        .code(1)
        .stderr_has("stage `boom` cannot start its workers: a worker exited before it connected")
        .stderr_has("is memory_limit too low for a worker to start?");
}

#[test]
fn max_items_per_worker_recycles_workers() {
    let ws = Workspace::new();
    chaos_pipeline(
        &ws,
        "action = \"error\"\nmatch = \"nothing\"\nworkers = 1\nmax_items_per_worker = 3",
    );
    // workers = 1 is set twice otherwise; drop the first.
    let text = std::fs::read_to_string(ws.path("chaos.toml"))
        .expect("read")
        .replacen("workers = 2\n", "", 1);
    ws.write("chaos.toml", text.as_bytes());
    ws.conveyor()
        .args(&["run", "chaos.toml"])
        .run()
        .code(0)
        .stderr_has("processes: `boom`: 4 workers started");
}

#[test]
fn threads_and_processes_write_identical_files() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/web-sizes.toml",
            "--mode",
            "threads",
            "--set",
            "small-save.dir=out/t",
        ])
        .run()
        .code(0);
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/web-sizes.toml",
            "--mode",
            "processes",
            "--set",
            "small-save.dir=out/p",
        ])
        .run()
        .code(0)
        .stderr_has("processes auto/");
    let t = ws.files("out/t");
    assert_eq!(t.len(), 8);
    assert_eq!(t, ws.files("out/p"));
    // Thumbnails too, every stage in its own worker chain.
    for mode in ["threads", "processes"] {
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--mode",
                mode,
                "--set",
                &format!("save.dir=thumbs/{mode}"),
            ])
            .run()
            .code(0);
    }
    assert_eq!(ws.files("thumbs/threads").len(), 12);
    assert_eq!(ws.files("thumbs/threads"), ws.files("thumbs/processes"));
}

#[test]
fn a_worker_killed_from_outside_fails_only_its_item() {
    let ws = Workspace::new();
    chaos_pipeline(&ws, "action = \"hang\"\nmatch = \"tower.jpg\"");
    let child = ws.spawn(&["run", "chaos.toml"]);
    let pid = child.id();
    // Every other item done: the one worker left busy holds tower.jpg.
    wait_for("11 outputs", 60, || ws.count("out") == 11);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let workers = children_of(pid);
    assert!(!workers.is_empty());
    for w in &workers {
        signal(w, "-KILL");
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tower.jpg: worker killed by signal 9 (SIGKILL)"),
        "{stderr}"
    );
    assert!(stderr.contains("11 ok, 1 failed"), "{stderr}");
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
}

#[test]
fn file_descriptors_stay_flat_over_2000_items() {
    let ws = Workspace::alone();
    for i in 0..2000 {
        ws.write(
            &format!("many/{:02}/{i:04}.txt", i / 100),
            format!("file {i}").as_bytes(),
        );
    }
    ws.write(
        "copy.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"many\"\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\nmode = \"processes\"\nworkers = 2\nmax_items_per_worker = 50\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"copied\"\n",
    );
    let mut child = ws.spawn(&["run", "copy.toml"]);
    let pid = child.id();
    let mut samples = Vec::new();
    while child.try_wait().expect("try_wait").is_none() {
        if let Some(n) = fd_count(pid) {
            samples.push((ws.count("copied"), n));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2000 ok, 0 failed"), "{stderr}");
    assert!(stderr.contains("workers started"), "{stderr}");
    let copied = ws.files("copied");
    assert_eq!(copied.len(), 2000);
    assert_eq!(copied["07/0777.txt"], b"file 777");
    // Compare the early part of the run with the late part: recycling 40
    // workers must not leave descriptors behind.
    let early: Vec<usize> = samples
        .iter()
        .filter(|(done, _)| (100..500).contains(done))
        .map(|s| s.1)
        .collect();
    let late: Vec<usize> = samples
        .iter()
        .filter(|(done, _)| *done >= 1500)
        .map(|s| s.1)
        .collect();
    assert!(
        !early.is_empty() && !late.is_empty(),
        "too few samples: {samples:?}"
    );
    // Medians, not maxima: while a worker is being replaced, the new one's
    // channels are open before the old one's are closed, and a sample that
    // falls in that moment (more likely on a loaded machine) is no leak. A
    // descriptor kept per recycled worker would raise the median by 30.
    let median = |mut v: Vec<usize>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (early_median, late_median) = (median(early), median(late));
    assert!(
        late_median <= early_median + 4,
        "descriptors grew from {early_median} to {late_median}: {samples:?}"
    );
}

#[test]
fn an_embedded_custom_kind_runs_in_worker_processes() {
    // `cargo test` builds the examples next to the binary.
    let exe = Path::new(BIN).parent().expect("dir").join("examples/embed");
    if !exe.exists() {
        eprintln!(
            "skipped: {} not built (run `cargo test`, which builds examples)",
            exe.display()
        );
        return;
    }
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/a.jpg");
    ws.write(
        "inv.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"invert\"\nkind = \"invert\"\nmode = \"processes\"\nworkers = 1\n\n[[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    let out = Command::new(&exe)
        .current_dir(ws.path(""))
        .args(["run", "inv.toml"])
        .output()
        .expect("run the example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("processes: `invert`: 1 worker started"),
        "{stderr}"
    );
    let original = image::open(ws.path("in/a.jpg")).expect("decode").to_rgb8();
    let inverted = image::open(ws.path("out/a.png")).expect("decode").to_rgb8();
    assert_eq!(original.dimensions(), inverted.dimensions());
    for (a, b) in original.pixels().zip(inverted.pixels()) {
        for c in 0..3 {
            assert_eq!(a[c], 255 - b[c]);
        }
    }
}

#[test]
fn a_manifest_in_processes_mode_starts_no_workers() {
    // A manifest's rows are made in conveyor's own process: workers for it
    // would only pass items back and forth.
    let ws = Workspace::new();
    let done = ws
        .conveyor()
        .args(&["run", "pipelines/web-gallery.toml", "--mode", "processes"])
        .run();
    done.code(0);
    let stderr = done.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("processes:"))
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    assert!(
        lines.iter().all(|l| !l.contains("`index`")),
        "the manifest started workers: {lines:?}"
    );
    let csv = std::fs::read_to_string(ws.path("out/gallery/manifest.csv")).expect("manifest");
    let made = done.tally().ok as usize;
    assert!(made >= 5, "{stderr}");
    assert_eq!(
        csv.lines().count(),
        1 + made,
        "a header and a row per photo: {csv}"
    );
}

/// Large images cross the process boundary through shared-memory slots that
/// each side reuses and grows (`exec/protocol.rs`): decoded in one worker,
/// sharpened in conveyor, resized in another worker, encoded in conveyor.
/// Images of growing then shrinking sizes (a slot reused for less than it
/// holds, a slot replaced by a bigger one) must give the same files as
/// threads mode, byte for byte.
#[test]
fn large_pixels_crossing_through_reused_slots_arrive_intact() {
    let ws = Workspace::new();
    // Over the 1 MiB at which pixels leave the message: 1.2 to 4.8 MB.
    for (i, (w, h)) in [
        (800, 500),
        (1600, 1000),
        (1200, 900),
        (700, 600),
        (1600, 1000),
    ]
    .into_iter()
    .enumerate()
    {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 + y) as u8,
                (y * 3 + i as u32) as u8,
                ((x ^ y) * 5) as u8,
            ])
        });
        ws.write(
            &format!("src/{i}.png"),
            &png_bytes(&image::DynamicImage::ImageRgb8(img)),
        );
    }
    ws.write(
        "cross.toml",
        br#"
[[stage]]
name = "scan"
kind = "scan"
root = "src"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "crisp"
kind = "sharpen"

[[stage]]
name = "small"
kind = "resize"
width = 640

[[stage]]
name = "png"
kind = "encode"
format = "png"

[[stage]]
name = "save"
kind = "write"
dir = "out"
"#,
    );
    ws.conveyor()
        .args(&["run", "cross.toml", "--set", "save.dir=\"out/t\""])
        .run()
        .code(0);
    // One worker each, so every image goes through the same slots.
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "cross.toml",
            "--set",
            "save.dir=\"out/p\"",
            "--mode",
            "load=processes",
            "--mode",
            "small=processes",
            "--set",
            "load.workers=1",
            "--set",
            "small.workers=1",
            "--jobs",
            "1",
        ])
        .run();
    done.code(0);
    assert_eq!(counts(&done), (5, 0));
    let (threads, procs) = (ws.files("out/t"), ws.files("out/p"));
    assert_eq!(threads.len(), 5);
    assert!(threads == procs, "processes mode made different files");
}

/// A fan-out whose every stage is in processes mode: the decoded pixels go
/// from the `load` worker to both branches' workers in shared memory that
/// conveyor passes on without copying (`exec/protocol.rs`, `Lender`), and
/// that the `load` worker reuses once both branches are done with it.
/// The `small` branch's resize reads the pixels where they lie, in that
/// memory (`Stage::reads_shared`).
/// Whatever happens (8 and 16 bits, alpha, sizes that grow and shrink so
/// memory is reused and replaced, `load` workers retired every 2 items with
/// images still lent, a branch worker that crashes on one item), every file
/// is the one threads mode writes, byte for byte.
#[test]
fn pixels_handed_from_worker_to_workers_arrive_intact() {
    let ws = Workspace::new();
    let sizes = [
        (900, 600),
        (1600, 1000),
        (1200, 900),
        (700, 600),
        (1600, 1000),
        (1000, 700),
        // Already the branch's width: not resized, so given to the stage
        // as an image of its own, not read where it lies.
        (300, 1400),
    ];
    for (i, (w, h)) in sizes.into_iter().enumerate() {
        let rgb = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 + y) as u8,
                (y * 3 + i as u32) as u8,
                ((x ^ y) * 5) as u8,
            ])
        });
        let img = match i {
            // 16 bits a channel: bytes that are not the pixels' own layout.
            2 => image::DynamicImage::ImageRgb16(image::DynamicImage::ImageRgb8(rgb).to_rgb16()),
            3 => image::DynamicImage::ImageRgba8(image::DynamicImage::ImageRgb8(rgb).to_rgba8()),
            _ => image::DynamicImage::ImageRgb8(rgb),
        };
        ws.write(&format!("src/{i}.png"), &png_bytes(&img));
    }
    ws.write(
        "fan.toml",
        br#"
[[stage]]
name = "scan"
kind = "scan"
root = "src"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "small"
kind = "resize"
input = "load"
width = 300

[[stage]]
name = "small-png"
kind = "encode"
format = "png"

[[stage]]
name = "small-save"
kind = "write"
dir = "out/small"

[[stage]]
name = "boom"
kind = "chaos"
input = "load"
action = "segfault"
match = "none.png"

[[stage]]
name = "crisp"
kind = "sharpen"

[[stage]]
name = "crisp-png"
kind = "encode"
format = "png"

[[stage]]
name = "crisp-save"
kind = "write"
dir = "out/crisp"
"#,
    );
    let run = |out: &str, extra: &[&str]| {
        let small = format!("small-save.dir=\"{out}/small\"");
        let crisp = format!("crisp-save.dir=\"{out}/crisp\"");
        let mut args = vec!["run", "fan.toml", "--set", &small, "--set", &crisp];
        args.extend_from_slice(extra);
        ws.conveyor().args(&args).run()
    };
    run("t", &[]).code(0);
    let threads = (ws.files("t/small"), ws.files("t/crisp"));
    assert_eq!((threads.0.len(), threads.1.len()), (7, 7));

    let all = ["--mode", "processes", "--jobs", "2"];
    run("p", &all).code(0);
    assert!(
        threads == (ws.files("p/small"), ws.files("p/crisp")),
        "processes mode made different files"
    );

    // Branch workers that read the lent memory late, while `load` decodes
    // the next images: nothing is written into memory still to be read.
    let small = "small-save.dir=\"l/small\"";
    let crisp = "crisp-save.dir=\"l/crisp\"";
    let mut late = vec!["run", "fan.toml", "--set", small, "--set", crisp];
    late.extend_from_slice(&all);
    late.extend_from_slice(&["--set", "load.workers=1"]);
    ws.conveyor()
        .args(&late)
        .env("CONVEYOR_DEBUG_READ_LATE_MS", "300")
        .run()
        .code(0);
    assert!(
        threads == (ws.files("l/small"), ws.files("l/crisp")),
        "late readers: different files"
    );

    // `load` workers retired with images still lent to conveyor.
    let mut retired = all.to_vec();
    retired.extend_from_slice(&[
        "--set",
        "load.max_items_per_worker=2",
        "--set",
        "load.workers=1",
    ]);
    run("r", &retired).code(0);
    assert!(
        threads == (ws.files("r/small"), ws.files("r/crisp")),
        "retired workers: different files"
    );

    // A branch worker crashes on one item: it fails there alone, and every
    // other file (later images reuse the memory it was reading) is intact.
    let mut crash = all.to_vec();
    crash.extend_from_slice(&[
        "--set",
        "boom.match=\"1.png\"",
        "--set",
        "boom.workers=1",
        "--set",
        "crisp.workers=1",
    ]);
    let done = run("c", &crash);
    done.code(1)
        .stderr_has("worker killed by signal 11 (SIGSEGV)");
    let (small, mut crisp) = (ws.files("c/small"), ws.files("c/crisp"));
    assert!(small == threads.0, "crash run: different thumbnails");
    assert!(
        crisp.remove("1.png").is_none(),
        "the crashed item was written"
    );
    let mut expected = threads.1.clone();
    expected.remove("1.png");
    assert!(crisp == expected, "crash run: different sharpened files");
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
}

/// Lent memory reused and kept mapped by its readers (`exec/protocol.rs`,
/// `Lender`, `Mapped`), through two levels of handing over (`load` to
/// `mid` and `thumb`/`raw`, `mid` to `small` and `crisp`): images in all
/// eight layouts whose sizes jump up and down, so pieces are reused for
/// smaller images and made anew for larger ones, with two lenders at once,
/// lenders and readers retired every few items, and slow readers. Every
/// file is the one threads mode writes, byte for byte.
#[test]
fn lent_pieces_reused_and_kept_mapped_give_threads_modes_files() {
    let ws = Workspace::new();
    let n: u32 = 16;
    for i in 0..n {
        // Sizes jump up and down so pieces are both reused and made anew.
        // At least 1 MiB at 8-bit RGB, so that they are lent.
        let w = 720 + (i * 397 % 900);
        let h = 560 + (i * 263 % 600);
        let rgb = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 + y + i * 13) as u8,
                (y * 3 + i * 29) as u8,
                ((x ^ y) * 5 + i) as u8,
            ])
        });
        let d = image::DynamicImage::ImageRgb8(rgb);
        let img = match i % 8 {
            0 => d,
            1 => image::DynamicImage::ImageRgba8(d.to_rgba8()),
            2 => image::DynamicImage::ImageRgb16(d.to_rgb16()),
            3 => image::DynamicImage::ImageRgba16(d.to_rgba16()),
            4 => image::DynamicImage::ImageLuma8(d.to_luma8()),
            5 => image::DynamicImage::ImageLumaA8(d.to_luma_alpha8()),
            6 => image::DynamicImage::ImageLuma16(d.to_luma16()),
            _ => image::DynamicImage::ImageLumaA16(d.to_luma_alpha16()),
        };
        ws.write(&format!("src/{i:03}.png"), &png_bytes(&img));
    }
    ws.write(
        "fan.toml",
        br#"
[[stage]]
name = "scan"
kind = "scan"
root = "src"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "mid"
kind = "resize"
input = "load"
width = 800

[[stage]]
name = "small"
kind = "resize"
input = "mid"
width = 300

[[stage]]
name = "small-png"
kind = "encode"
format = "png"

[[stage]]
name = "small-save"
kind = "write"
dir = "out/small"

[[stage]]
name = "crisp"
kind = "sharpen"
input = "mid"

[[stage]]
name = "crisp-png"
kind = "encode"
format = "png"

[[stage]]
name = "crisp-save"
kind = "write"
dir = "out/crisp"

[[stage]]
name = "thumb"
kind = "resize"
input = "load"
width = 200

[[stage]]
name = "thumb-png"
kind = "encode"
format = "png"

[[stage]]
name = "thumb-save"
kind = "write"
dir = "out/thumb"

[[stage]]
name = "raw"
kind = "sharpen"
input = "load"

[[stage]]
name = "raw-png"
kind = "encode"
format = "png"

[[stage]]
name = "raw-save"
kind = "write"
dir = "out/raw"
"#,
    );
    let outs = ["small", "crisp", "thumb", "raw"];
    let run = |out: &str, extra: &[&str], env: &[(&str, &str)]| {
        let sets: Vec<String> = outs
            .iter()
            .map(|o| format!("{o}-save.dir=\"{out}/{o}\""))
            .collect();
        let mut args = vec!["run", "fan.toml"];
        for s in &sets {
            args.extend_from_slice(&["--set", s]);
        }
        args.extend_from_slice(extra);
        let mut r = ws.conveyor().args(&args);
        for (k, v) in env {
            r = r.env(k, v);
        }
        r.run()
    };
    let files = |out: &str| -> Vec<_> {
        outs.iter()
            .map(|o| ws.files(&format!("{out}/{o}")))
            .collect()
    };
    run("t", &["--mode", "threads"], &[]).code(0);
    let threads = files("t");
    for f in &threads {
        assert_eq!(f.len(), n as usize);
    }
    let processes = ["--mode", "processes"];
    let two_lenders = [
        "--jobs",
        "4",
        "--set",
        "load.workers=2",
        "--set",
        "mid.workers=2",
    ];
    let lenders_retired = [
        "--jobs",
        "4",
        "--set",
        "load.workers=2",
        "--set",
        "load.max_items_per_worker=3",
        "--set",
        "mid.max_items_per_worker=5",
    ];
    let readers_retired = [
        "--jobs",
        "3",
        "--set",
        "small.max_items_per_worker=4",
        "--set",
        "crisp.max_items_per_worker=7",
        "--set",
        "thumb.max_items_per_worker=3",
        "--set",
        "raw.max_items_per_worker=5",
    ];
    let late = [("CONVEYOR_DEBUG_READ_LATE_MS", "40")];
    // A run's name, its flags after `--mode processes`, its environment.
    type Variant<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let variants: [Variant; 5] = [
        ("p2", &["--jobs", "2"], &[]),
        ("p4", &two_lenders, &[]),
        ("rl", &lenders_retired, &[]),
        ("rr", &readers_retired, &[]),
        ("late", &two_lenders, &late),
    ];
    for (name, extra, env) in variants {
        let args: Vec<&str> = processes.iter().chain(extra).copied().collect();
        let done = run(name, &args, env);
        done.code(0);
        let got = files(name);
        for (k, o) in outs.iter().enumerate() {
            let bad: Vec<_> = threads[k]
                .iter()
                .filter(|(f, b)| got[k].get(*f) != Some(b))
                .map(|(f, _)| f.clone())
                .collect();
            assert!(bad.is_empty(), "{name}/{o}: differ from threads: {bad:?}");
            assert_eq!(got[k].len(), n as usize, "{name}/{o}: files");
        }
        assert_eq!(
            ws.leftover_workers(),
            Vec::<u32>::new(),
            "{name}: workers left"
        );
    }
}
