//! Names are bytes: sources whose names are not UTF-8 keep their identity
//! through every mode, the report and resume. Also what resume must see
//! (files named by options), a report that survives SIGKILL, and a memory
//! limit reported as such whatever RUST_BACKTRACE says.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::{REPO, Workspace, chaos_pipeline, contain, counts, dims, signal, wait_for};

/// SHA-256 of every file below `dir`, by exact name (bytes).
fn hashes(dir: &Path) -> BTreeMap<Vec<u8>, [u8; 32]> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(true) {
        let e = e.expect("walk");
        if e.file_type().is_file() {
            let bytes = std::fs::read(e.path()).expect("read");
            out.insert(
                e.path().as_os_str().as_bytes().to_vec(),
                sha2::Sha256::digest(&bytes).into(),
            );
        }
    }
    out
}

/// Files directly in `dir`, by exact name, with their bytes (the harness's
/// `files` goes through `to_string_lossy`, which would merge our names).
fn raw_files(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        if e.file_type().expect("type").is_file() {
            out.insert(
                e.file_name().as_bytes().to_vec(),
                std::fs::read(e.path()).expect("read"),
            );
        }
    }
    out
}

fn report_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("report");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

fn sample_dims(sample: &str) -> (u32, u32) {
    dims(&std::fs::read(Path::new(REPO).join("samples/photos").join(sample)).expect("sample"))
}

#[test]
fn names_that_are_not_utf8_stay_two_names_in_every_mode() {
    // Two sources whose names differ only in one byte that is not UTF-8,
    // with different pictures so a swap or a merge would show.
    let sources: [(&[u8], &str, &[u8], &str); 2] = [
        (
            b"x\xff.png",
            "trips/hills.png",
            b"x\xff.jpg",
            "in/x\\xff.png",
        ),
        (
            b"x\xfe.png",
            "trips/badge.png",
            b"x\xfe.jpg",
            "in/x\\xfe.png",
        ),
    ];
    for mode in ["threads", "processes"] {
        let ws = Workspace::new();
        for (name, sample, _, _) in sources {
            let bytes =
                std::fs::read(Path::new(REPO).join("samples/photos").join(sample)).expect("sample");
            std::fs::create_dir_all(ws.path("in")).expect("mkdir");
            std::fs::write(ws.path("in").join(OsStr::from_bytes(name)), bytes).expect("write");
        }
        let inputs = hashes(&ws.path("in"));
        let run = || {
            ws.conveyor()
                .args(&[
                    "run",
                    "pipelines/thumbnails.toml",
                    "--set",
                    "scan.root=in",
                    "--mode",
                    mode,
                    "--report",
                    "report.jsonl",
                ])
                .run()
        };
        let first = run();
        first.code(0);
        assert_eq!(counts(&first), (2, 0), "{mode}: {}", first.stderr());
        let out = raw_files(&ws.path("out/thumbs"));
        assert_eq!(out.len(), 2, "{mode}: {:?}", out.keys());
        for (_, sample, output, _) in sources {
            let bytes = out
                .get(output)
                .unwrap_or_else(|| panic!("{mode}: no output {output:?} in {:?}", out.keys()));
            // The right picture under the right name.
            let want = contain(sample_dims(sample), Some(256), Some(256));
            assert_eq!(dims(bytes), want, "{mode}: {output:?}");
        }
        let lines = report_lines(&ws.path("report.jsonl"));
        assert_eq!(lines.len(), 2, "{mode}: {lines:?}");
        for (_, _, output, shown) in sources {
            let line = lines
                .iter()
                .find(|l| l["path"] == shown)
                .unwrap_or_else(|| panic!("{mode}: no report line for {shown}: {lines:?}"));
            assert_eq!(line["status"], "ok", "{mode}: {line}");
            let outputs = line["outputs"].as_array().expect("outputs");
            assert_eq!(outputs.len(), 1, "{mode}: {line}");
            let escaped = format!(
                "out/thumbs/x\\x{:02x}.jpg",
                output[1] // the byte that is not UTF-8
            );
            assert_eq!(outputs[0], escaped.as_str(), "{mode}: {line}");
        }

        // Later runs: both up to date, and the outputs never trade places.
        for _ in 0..2 {
            let again = run();
            again.code(0);
            assert_eq!(counts(&again), (0, 2), "{mode}: {}", again.stderr());
            assert_eq!(raw_files(&ws.path("out/thumbs")), out, "{mode}");
        }
        assert_eq!(hashes(&ws.path("in")), inputs, "{mode}: an input changed");
    }
}

/// Two branches: photos from `in/marked` get the watermark `mark.png`, those
/// from `in/plain` don't.
fn watermark_pipeline(ws: &Workspace) {
    ws.write(
        "mark.toml",
        b"[[stage]]\nname = \"s1\"\nkind = \"scan\"\nroot = \"in/marked\"\n\n\
          [[stage]]\nname = \"d1\"\nkind = \"decode\"\n\n\
          [[stage]]\nname = \"mark\"\nkind = \"watermark\"\nimage = \"mark.png\"\nscale = 0.5\nopacity = 1.0\n\n\
          [[stage]]\nname = \"e1\"\nkind = \"encode\"\nformat = \"png\"\n\n\
          [[stage]]\nname = \"w1\"\nkind = \"write\"\ndir = \"out/marked\"\n\n\
          [[stage]]\nname = \"s2\"\nkind = \"scan\"\nroot = \"in/plain\"\n\n\
          [[stage]]\nname = \"d2\"\nkind = \"decode\"\ninput = \"s2\"\n\n\
          [[stage]]\nname = \"e2\"\nkind = \"encode\"\nformat = \"png\"\n\n\
          [[stage]]\nname = \"w2\"\nkind = \"write\"\ndir = \"out/plain\"\n",
    );
}

/// A solid, opaque PNG of one colour, to serve as a watermark.
fn solid_png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbaImage::from_pixel(40, 20, image::Rgba([rgb[0], rgb[1], rgb[2], 255]));
    super::png_bytes(&image::DynamicImage::ImageRgba8(img))
}

#[test]
fn a_changed_watermark_redoes_the_items_on_its_branch() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/marked/a.jpg")
        .sample("trips/hills.png", "in/marked/b.png")
        .sample("tiny.jpg", "in/plain/c.jpg");
    ws.write("mark.png", &solid_png([255, 0, 0]));
    watermark_pipeline(&ws);
    let inputs = hashes(&ws.path("in"));
    let run = || ws.conveyor().args(&["run", "mark.toml"]).run();
    let first = run();
    first.code(0);
    assert_eq!(counts(&first), (3, 0), "{}", first.stderr());
    let marked = ws.files("out/marked");
    let plain = ws.files("out/plain");
    assert_eq!((marked.len(), plain.len()), (2, 1));

    // Unchanged: everything up to date.
    let again = run();
    again.code(0);
    assert_eq!(counts(&again), (0, 3), "{}", again.stderr());

    // A new logo (new bytes, new mtime): the marked branch is redone with
    // it, the plain one is not.
    ws.write("mark.png", &solid_png([0, 0, 255]));
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(ws.path("mark.png"))
        .and_then(|f| f.set_modified(later))
        .expect("set mtime");
    let redo = run();
    redo.code(0);
    assert_eq!(counts(&redo), (2, 1), "{}", redo.stderr());
    let remarked = ws.files("out/marked");
    for (name, bytes) in &remarked {
        assert_ne!(
            bytes, &marked[name],
            "{name} still carries the old watermark"
        );
        let img = image::load_from_memory(bytes).expect("decodes").to_rgb8();
        let (w, h) = img.dimensions();
        // The south-east corner is under the (opaque, blue) mark now.
        let p = img.get_pixel(w - 17, h - 17);
        assert!(p[2] > 200 && p[0] < 50, "{name}: corner is {p:?}");
    }
    assert_eq!(ws.files("out/plain"), plain);

    // And up to date again.
    let settled = run();
    settled.code(0);
    assert_eq!(counts(&settled), (0, 3), "{}", settled.stderr());
    assert_eq!(hashes(&ws.path("in")), inputs, "an input changed");
}

#[test]
fn the_report_survives_a_kill_9() {
    let ws = Workspace::new();
    ws.many_tiny("many", 1500);
    let inputs = hashes(&ws.path("many"));
    let child = ws.spawn(&[
        "run",
        "pipelines/thumbnails.toml",
        "--set",
        "scan.root=many",
        "--report",
        "report.jsonl",
    ]);
    // Files are journalled just after they are placed: wait for the
    // journal, not the files, or the kill may fall between the two.
    let journal_path = ws.path("out/thumbs/.conveyor-state/thumbnails.save.jsonl");
    let journalled = || {
        std::fs::read_to_string(&journal_path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    wait_for("some thumbnails journalled", 60, || journalled() >= 100);
    assert!(signal(child.id(), "-KILL"), "kill -9");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), None, "not killed");

    let text = std::fs::read_to_string(ws.path("report.jsonl")).expect("report");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "last line cut: {:?}",
        &text[text.len().saturating_sub(200)..]
    );
    let lines = report_lines(&ws.path("report.jsonl"));
    let recorded = journalled();
    assert!(recorded >= 100, "journal has {recorded} lines");
    // An item is journaled just before it is reported: the two differ at
    // most by the items that were between the two at the kill.
    assert!(
        lines.len() <= recorded && lines.len() + 4 >= recorded,
        "{} report lines, {recorded} journaled",
        lines.len()
    );
    for l in &lines {
        assert_eq!(l["status"], "ok", "{l}");
    }
    assert_eq!(hashes(&ws.path("many")), inputs, "an input changed");
}

#[test]
fn memory_limit_is_reported_whatever_rust_backtrace_says() {
    let photos = PathBuf::from(REPO).join("samples/photos");
    let inputs = hashes(&photos);
    for backtrace in ["1", "full"] {
        let ws = Workspace::new();
        chaos_pipeline(
            &ws,
            "action = \"oom\"\nmatch = \"{meadow,tower}.jpg\"\nmemory_limit = \"256MiB\"",
        );
        let done = ws
            .conveyor()
            .args(&["run", "chaos.toml"])
            .env("RUST_BACKTRACE", backtrace)
            .run();
        done.code(1).stderr_has("10 ok, 2 failed");
        // The allocation that hit the limit is chaos's 64 MiB block, not
        // one made later while the dying worker printed a backtrace.
        for name in ["meadow.jpg", "tower.jpg"] {
            done.stderr_has(&format!(
                "samples/photos/{name}: memory limit 256MiB exceeded (memory allocation of 67108864 bytes failed)"
            ));
        }
        assert!(
            !done.stderr().contains("SIGABRT"),
            "RUST_BACKTRACE={backtrace}: {}",
            done.stderr()
        );
        assert_eq!(ws.files("out").len(), 10);
    }
    assert_eq!(hashes(&photos), inputs, "a sample changed");
}
