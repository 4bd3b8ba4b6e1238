//! Hostile inputs, output safety, interrupted runs, resume and load: nothing
//! may lose or corrupt data, hang, or take the run down.

use super::*;

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32fast::hash(&crc_input).to_be_bytes());
    out
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// Byte offset of the first chunk of `kind` in a PNG.
fn find_chunk(png: &[u8], kind: &[u8; 4]) -> usize {
    png.windows(4).position(|w| w == kind).expect("chunk") - 4
}

/// Every kind of hostile or unusual input, next to two good photos. Returns
/// the names expected to fail, with a piece of each one's reason.
fn hostile_folder(ws: &Workspace) -> Vec<(&'static str, &'static str)> {
    ws.sample("meadow.jpg", "in/good1.jpg")
        .sample("trips/hills.png", "in/good2.png");
    let good_jpeg = std::fs::read(Path::new(REPO).join("samples/photos/dusk.jpg")).expect("sample");
    let good_png = encode(
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([x as u8 * 4, y as u8 * 5, 90])
        })),
        image::ImageFormat::Png,
    );
    ws.write("in/zero.jpg", b"");
    ws.write("in/truncated.jpg", &good_jpeg[..good_jpeg.len() / 2]);
    ws.write("in/truncated.png", &good_png[..good_png.len() * 2 / 3]);
    ws.write(
        "in/random.jpg",
        &(0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<_>>(),
    );
    ws.write("in/text.png", b"just some text pretending to be a PNG\n");
    // A flipped bit in the image data: the chunk's CRC no longer matches.
    let mut bad_crc = good_png.clone();
    let idat = find_chunk(&bad_crc, b"IDAT");
    bad_crc[idat + 8 + 10] ^= 0x55;
    ws.write("in/badcrc.png", &bad_crc);
    // Garbage where the zlib stream should be, with a correct CRC.
    let mut bad_zlib = good_png[..idat].to_vec();
    bad_zlib.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0xFF, 0xFF, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9A],
    ));
    bad_zlib.extend(png_chunk(b"IEND", &[]));
    ws.write("in/badzlib.png", &bad_zlib);
    // A tiny file claiming 100000 x 100000 pixels.
    let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    bomb.extend(png_chunk(b"IHDR", &ihdr));
    bomb.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    bomb.extend(png_chunk(b"IEND", &[]));
    ws.write("in/bomb.png", &bomb);
    // A GIF whose screen and first frame claim 65535 x 65535.
    let mut gif = b"GIF89a\xff\xff\xff\xff\x00\x00\x00".to_vec();
    gif.extend(b"\x2c\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02\x44\x01\x00\x3b");
    ws.write("in/bomb.gif", &gif);
    // An ICO header claiming a 256 x 256 PNG entry that is not there.
    ws.write(
        "in/bomb.ico",
        b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x20\x00\xff\xff\xff\x7f\x16\x00\x00\x00",
    );
    // Unusual but valid: CMYK JPEG and 16-bit PNG decode.
    let mut cmyk = Vec::new();
    let px: Vec<u8> = (0..80 * 60)
        .flat_map(|i| [(i % 200) as u8, 40, 90, 10])
        .collect();
    jpeg_encoder::Encoder::new(&mut cmyk, 90)
        .encode(&px, 80, 60, jpeg_encoder::ColorType::Cmyk)
        .expect("cmyk");
    ws.write("in/cmyk.jpg", &cmyk);
    let png16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(50, 40, |x, y| {
        image::Rgb([x as u16 * 1000, y as u16 * 1500, 30000])
    });
    ws.write(
        "in/deep16.png",
        &encode(
            image::DynamicImage::ImageRgb16(png16),
            image::ImageFormat::Png,
        ),
    );
    // Links: one dangling, one looping back up (only followed on request).
    std::os::unix::fs::symlink("nowhere.jpg", ws.path("in/dangling.jpg")).expect("symlink");
    std::os::unix::fs::symlink("..", ws.path("in/sub/loop")).ok();
    std::fs::create_dir_all(ws.path("in/sub")).expect("mkdir");
    let _ = std::os::unix::fs::symlink("..", ws.path("in/sub/loop"));
    // A FIFO named like a photo: reading it would block forever.
    let fifo = ws.path("in/fifo.jpg");
    let status = Command::new("mkfifo").arg(&fifo).status();
    assert!(status.is_ok_and(|s| s.success()), "mkfifo");
    vec![
        ("zero.jpg", "empty file"),
        ("truncated.jpg", "truncated JPEG"),
        ("truncated.png", "cannot decode png"),
        ("random.jpg", "not a recognised image format"),
        ("text.png", "not a recognised image format"),
        ("badcrc.png", "cannot decode png"),
        ("badzlib.png", "cannot decode png"),
        (
            "bomb.png",
            "image is 100000x100000 (10000000000 pixels), over the limit",
        ),
        ("bomb.gif", "image is 65535x65535"),
        ("bomb.ico", "cannot"),
        ("dangling.jpg", "broken symbolic link"),
    ]
}

#[test]
fn hostile_inputs_fail_alone_in_every_mode() {
    for mode in ["inline", "threads", "processes"] {
        let ws = Workspace::new();
        let bad = hostile_folder(&ws);
        let done = ws
            .conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                "scan.root=in",
                "--set",
                "scan.include=[]",
                "--set",
                "scan.follow_links=true",
                "--mode",
                mode,
            ])
            .run();
        done.code(1);
        let stderr = done.stderr();
        assert!(!stderr.contains("panicked"), "{mode}: {stderr}");
        for (name, reason) in &bad {
            let line = stderr
                .lines()
                .find(|l| l.starts_with("error: ") && l.contains(&format!("in/{name}: ")))
                .unwrap_or_else(|| panic!("{mode}: no error line for {name}:\n{stderr}"));
            assert!(line.contains(reason), "{mode}: {name}: {line}");
        }
        // The link loop is reported as such, once.
        assert!(
            stderr.contains("symbolic link loop") || stderr.contains("File system loop"),
            "{mode}: {stderr}"
        );
        // Good and unusual-but-valid files are all written and decode.
        let files = ws.files("out/thumbs");
        for name in ["good1.jpg", "good2.jpg", "cmyk.jpg", "deep16.jpg"] {
            let bytes = files
                .get(name)
                .unwrap_or_else(|| panic!("{mode}: {name} missing: {:?}", files.keys()));
            dims(bytes);
        }
        assert_eq!(files.len(), 4, "{mode}: {:?}", files.keys());
        assert!(stderr.contains("4 ok, 12 failed"), "{mode}: {stderr}");
    }
}

#[test]
fn unreadable_files_fail_with_the_os_reason() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: running as root, which reads any file whatever its permissions");
        return;
    }
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/locked.jpg")
        .sample("tiny.jpg", "in/open.jpg");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ws.path("in/locked.jpg"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml", "--set", "scan.root=in"])
        .run()
        .code(1)
        .stderr_has("in/locked.jpg: cannot read file: Permission denied");
    assert!(ws.files("out/thumbs").contains_key("open.jpg"));
}

#[test]
fn two_inputs_with_one_output_name_are_an_error_not_an_overwrite() {
    for mode in ["threads", "processes"] {
        let ws = Workspace::new();
        ws.sample("trips/hills.png", "in/a/x.png")
            .sample("tiny.jpg", "in/a/x.jpg")
            .sample("dusk.jpg", "in/b.jpg");
        let done = ws
            .conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                "scan.root=in",
                "--mode",
                mode,
            ])
            .run();
        done.code(1).stderr_has("2 ok, 1 failed").stderr_has(
            "two inputs would write the same file (set `overwrite = true` to let the last one win)",
        );
        let stderr = done.stderr();
        let line = stderr
            .lines()
            .find(|l| l.contains("two inputs"))
            .unwrap_or_default();
        // Whichever reaches `write` second is refused (workers race); the
        // first one's file stays as it was written.
        let (refused, kept, kept_dims) = if line.starts_with("error: in/a/x.png: ") {
            ("x.png", "x.jpg", (120, 80))
        } else {
            ("x.jpg", "x.png", (256, 192))
        };
        assert!(
            line.starts_with(&format!(
                "error: in/a/{refused}: out/thumbs/a/x.jpg is also the output of in/a/{kept}"
            )),
            "{mode}: {line}"
        );
        let files = ws.files("out/thumbs");
        assert_eq!(files.len(), 2);
        assert_eq!(
            dims(&files["a/x.jpg"]),
            kept_dims,
            "{mode}: the first output was replaced"
        );
        // Asked for, the last one wins.
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                "scan.root=in",
                "--set",
                "save.overwrite=true",
                "--mode",
                mode,
            ])
            .run()
            .code(0);
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: PathBuf, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(&at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Mount(at))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_items_with_the_os_reason_and_leaves_no_partial_file() {
    let ws = Workspace::new();
    let Some(_mount) = Mount::tmpfs(ws.path("small"), "size=48k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    for i in 0..6 {
        ws.sample("meadow.jpg", &format!("in/{i}.jpg"));
    }
    // Full-size PNGs of 640x427 are ~500 KB each: not one fits in 48 KB.
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=in",
            "--set",
            "thumb.width=640",
            "--set",
            "thumb.height=640",
            "--set",
            "jpeg.format=\"png\"",
            "--set",
            "save.dir=small",
        ])
        .run();
    done.code(1).stderr_has("No space left on device");
    for (name, bytes) in ws.files("small") {
        assert!(!name.contains("conveyor-tmp"), "temp file left: {name}");
        dims(&bytes);
    }
    // on_error = "fail" stops at the first one.
    write_fail_fast_thumbnails(&ws);
    ws.conveyor()
        .args(&[
            "run",
            "fail.toml",
            "--set",
            "scan.root=in",
            "--set",
            "thumb.width=640",
            "--set",
            "thumb.height=640",
            "--set",
            "jpeg.format=\"png\"",
            "--set",
            "save.dir=small",
            "--mode",
            "inline",
        ])
        .run()
        .code(1)
        .stderr_has("stopped at the first failure");
}

#[test]
fn a_read_only_output_folder_fails_cleanly() {
    let ws = Workspace::new();
    let Some(_mount) = Mount::tmpfs(ws.path("ro"), "ro,size=1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    ws.sample("tiny.jpg", "in/a.jpg");
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=in",
            "--set",
            "save.dir=ro/thumbs",
            "--mode",
            "processes",
        ])
        .run()
        .code(2)
        .stderr_has("stage `save` writes into `ro/thumbs`")
        .stderr_has("can't be written: Read-only file system");
    assert!(ws.files("ro").is_empty());
}

#[test]
fn a_worker_killed_mid_write_leaves_no_temp_file() {
    let ws = Workspace::new();
    ws.write(
        "slow.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\ninclude = [\"tiny.jpg\"]\n\n[[stage]]\nname = \"tool\"\nkind = \"exec\"\nshell = true\ncommand = [\"echo partial > {out}; exec sleep 30\"]\ndir = \"out\"\nmode = \"processes\"\n",
    );
    let child = ws.spawn(&["run", "slow.toml"]);
    // The command has started writing its output under a temp name.
    wait_for("a temp file", 30, || ws.count("out") == 1);
    let workers = children_of(child.id());
    let sleepers: Vec<u32> = workers.iter().flat_map(|&w| children_of(w)).collect();
    assert!(!sleepers.is_empty(), "no command seen");
    for w in &workers {
        signal(w, "-KILL");
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("worker killed by signal 9 (SIGKILL)"),
        "{stderr}"
    );
    // The worker could not clean up; conveyor did.
    assert_eq!(ws.files("out").len(), 0, "{:?}", ws.files("out").keys());
    // And the command died with its worker.
    wait_for("the command to exit", 2, || {
        sleepers.iter().all(|&p| !alive(p))
    });
}

#[test]
fn resume_redoes_only_what_changed() {
    for mode in ["threads", "processes"] {
        let ws = Workspace::new();
        for s in ["meadow.jpg", "tower.jpg", "tiny.jpg", "trips/hills.png"] {
            ws.sample(s, &format!("in/{s}"));
        }
        let run = |extra: &[&str]| {
            let mut args = vec![
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                "scan.root=in",
                "--mode",
                mode,
            ];
            args.extend_from_slice(extra);
            ws.conveyor().args(&args).run()
        };
        let first = run(&[]);
        first.code(0);
        assert_eq!(counts(&first), (4, 0), "{mode}");
        let before = ws.files("out/thumbs");

        // Nothing changed: nothing is decoded.
        let again = run(&[]);
        again.code(0).stderr_has("load   decode");
        assert_eq!(counts(&again), (0, 4), "{mode}: {}", again.stderr());
        assert!(
            again
                .stderr()
                .lines()
                .any(|l| l.starts_with("load ") && l.contains(" 0    0 ")),
            "{}",
            again.stderr()
        );
        assert_eq!(ws.files("out/thumbs"), before);

        // One input changed: one item redone.
        ws.sample("dusk.jpg", "in/tower.jpg");
        let one = run(&[]);
        assert_eq!(counts(&one), (1, 3), "{mode}: {}", one.stderr());
        assert_ne!(ws.files("out/thumbs")["tower.jpg"], before["tower.jpg"]);

        // An option changed: the whole branch redone; then up to date again.
        assert_eq!(
            counts(&run(&["--set", "thumb.width=100"])),
            (4, 0),
            "{mode}"
        );
        assert_eq!(
            counts(&run(&["--set", "thumb.width=100"])),
            (0, 4),
            "{mode}"
        );
        assert_eq!(dims(&ws.files("out/thumbs")["meadow.jpg"]).0, 100);

        // A deleted output is written again; --force redoes everything.
        std::fs::remove_file(ws.path("out/thumbs/tiny.jpg")).expect("rm");
        assert_eq!(
            counts(&run(&["--set", "thumb.width=100"])),
            (1, 3),
            "{mode}"
        );
        assert_eq!(
            counts(&run(&["--set", "thumb.width=100", "--force"])),
            (4, 0),
            "{mode}"
        );
    }
}

#[test]
fn resume_state_survives_a_crash_mid_write() {
    let ws = Workspace::new();
    for s in ["meadow.jpg", "tower.jpg", "tiny.jpg"] {
        ws.sample(s, &format!("in/{s}"));
    }
    let args = ["run", "pipelines/thumbnails.toml", "--set", "scan.root=in"];
    ws.conveyor().args(&args).run().code(0);
    // A crash while a journal line was being written leaves half a line.
    let journal = ws.path("out/thumbs/.conveyor-state/thumbnails.save.jsonl");
    let mut text = std::fs::read_to_string(&journal).expect("journal");
    assert_eq!(text.lines().count(), 3);
    text.push_str("{\"source\":\"in/tiny.jpg\",\"fp\":\"0123");
    std::fs::write(&journal, text).expect("write");
    let done = ws.conveyor().args(&args).run();
    done.code(0);
    assert_eq!(counts(&done), (0, 3), "{}", done.stderr());
}

#[test]
fn interrupted_runs_resume_where_they_stopped() {
    for mode in ["threads", "processes"] {
        let ws = Workspace::new();
        ws.many_tiny("many", 1500);
        let args = [
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=many",
            "--mode",
            mode,
        ];
        let child = ws.spawn(&args);
        wait_for("some thumbnails", 60, || ws.count("out/thumbs") >= 50);
        signal(child.id(), "-INT");
        let sent = std::time::Instant::now();
        let out = child.wait_with_output().expect("wait");
        assert!(
            sent.elapsed() < std::time::Duration::from_secs(2),
            "{mode}: took {:?}",
            sent.elapsed()
        );
        assert_eq!(out.status.code(), Some(130), "{mode}");
        let written = ws.files("out/thumbs");
        assert!(written.len() < 1500, "{mode}: not interrupted");
        for (name, bytes) in &written {
            assert!(
                !name.contains("conveyor-tmp"),
                "{mode}: temp file left: {name}"
            );
            dims(bytes);
        }
        // The next run does the rest, and only the rest.
        let done = ws.conveyor().args(&args).run();
        done.code(0);
        let (ok, up) = counts(&done);
        assert_eq!(ok + up, 1500, "{mode}: {}", done.stderr());
        assert_eq!(
            up as usize,
            written.len(),
            "{mode}: every file written before was up to date"
        );
        assert_eq!(ws.files("out/thumbs").len(), 1500);
    }
}

#[test]
fn a_manifest_lists_up_to_date_items() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&["run", "pipelines/web-gallery.toml"])
        .run()
        .code(0);
    let done = ws
        .conveyor()
        .args(&["run", "pipelines/web-gallery.toml"])
        .run();
    done.code(0);
    assert_eq!(counts(&done), (0, 8), "{}", done.stderr());
    let csv = std::fs::read_to_string(ws.path("out/gallery/manifest.csv")).expect("manifest");
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert_eq!(
        csv.lines()
            .skip(1)
            .filter(|l| l.contains(",up_to_date,"))
            .count(),
        8,
        "{csv}"
    );
    // A contact sheet needs every image, so its pipeline never skips.
    ws.conveyor()
        .args(&["run", "pipelines/contact-sheet.toml"])
        .run()
        .code(0);
    let again = ws
        .conveyor()
        .args(&["run", "pipelines/contact-sheet.toml"])
        .run();
    assert_eq!(counts(&again), (12, 0));
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Run conveyor to the end; its exit code, stderr, and the peak resident
/// memory in KiB of conveyor itself and of its largest worker, read from
/// /proc while it runs.
fn run_measured(ws: &Workspace, args: &[&str]) -> (i32, String, u64, u64) {
    let mut child = ws.spawn(args);
    let pid = child.id();
    let reader = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut s = String::new();
            let _ = e.read_to_string(&mut s);
            s
        })
    });
    let (mut own, mut worker) = (0u64, 0u64);
    while child.try_wait().expect("try_wait").is_none() {
        own = own.max(vm_hwm(pid).unwrap_or(0));
        for w in children_of(pid) {
            worker = worker.max(vm_hwm(w).unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let code = child.wait().expect("wait").code().unwrap_or(-1);
    let stderr = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    (code, stderr, own, worker)
}

#[test]
fn twenty_thousand_files_are_all_accounted_for_in_bounded_memory() {
    let ws = Workspace::alone();
    let mut small = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(16, 12, |x, y| {
        image::Rgb([x as u8 * 15, y as u8 * 20, 128])
    }))
    .write_to(
        &mut std::io::Cursor::new(&mut small),
        image::ImageFormat::Jpeg,
    )
    .expect("encode");
    // 2,000 and 20,000 inputs, each with 1% broken files and 1% text files
    // that the filter drops.
    for (dir, n) in [("few", 2_000usize), ("many", 20_000)] {
        for i in 0..n {
            let rel = format!("{dir}/{:03}/{i:05}", i / 500);
            match i % 100 {
                7 => ws.write(&format!("{rel}.jpg"), b"broken"),
                8 => ws.write(&format!("{rel}.txt"), b"notes"),
                _ => ws.write(&format!("{rel}.jpg"), &small),
            };
        }
    }
    ws.write(
        "load.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"few\"\n\n[[stage]]\nname = \"keep\"\nkind = \"filter\"\nextensions = [\"jpg\"]\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"small\"\nkind = \"resize\"\nwidth = 8\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    let mut peaks = Vec::new();
    for mode in ["inline", "threads", "processes"] {
        for (dir, n) in [("few", 2_000u64), ("many", 20_000)] {
            let root = format!("scan.root={dir}");
            let save = format!("save.dir=out/{mode}/{dir}");
            let (code, stderr, peak, worker_peak) = run_measured(
                &ws,
                &[
                    "run",
                    "load.toml",
                    "--set",
                    &root,
                    "--set",
                    &save,
                    "--mode",
                    mode,
                ],
            );
            assert_eq!(code, 1, "{mode} {dir}: {stderr}");
            let (scanned, ok, failed, filtered, up) = summary_counts(&stderr);
            assert_eq!(scanned, n, "{mode} {dir}: {stderr}");
            assert_eq!(
                ok + failed + filtered + up,
                scanned,
                "{mode} {dir}: {stderr}"
            );
            // Only the broken files fail; anything else is named.
            let other: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("error:") && !l.contains("not a recognised image format"))
                .take(8)
                .collect();
            assert_eq!(
                (failed, filtered),
                (n / 100, n / 100),
                "{mode} {dir}: other failures:\n{}\n(last lines: {})",
                other.join("\n"),
                stderr
                    .lines()
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            assert_eq!(ws.count(&format!("out/{mode}/{dir}")) as u64, ok);
            peaks.push((mode, dir, peak, worker_peak));
        }
    }
    for pair in peaks.chunks(2) {
        let ((mode, _, few, wfew), (_, _, many, wmany)) = (pair[0], pair[1]);
        eprintln!(
            "peak RSS, {mode}: 2,000 files {few} KiB, 20,000 files {many} KiB (largest worker {wfew} / {wmany} KiB)"
        );
        assert!(
            many as f64 <= few as f64 * 1.3,
            "{mode}: peak memory grew from {few} KiB (2,000 files) to {many} KiB (20,000 files)"
        );
        assert!(
            wmany as f64 <= wfew as f64 * 1.3 + 1024.0,
            "{mode}: worker memory grew from {wfew} KiB to {wmany} KiB"
        );
    }
}
