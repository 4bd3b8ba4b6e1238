//! A manifest is a table of sources: one row per source file that reached
//! it in the run, with the source's own size, dimensions and format and the
//! files of every writer it reached, the same on a re-run that has nothing
//! to do (only the status differs).

use super::*;

/// The manifest as rows of fields, header line left out (the test files'
/// names hold no commas or quotes).
fn rows(ws: &Workspace, rel: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(ws.path(rel)).expect("manifest");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("path,rel,status,size,width,height,format,hash,outputs,stage,reason")
    );
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The rows with their status column (the third) blanked.
fn without_status(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            r[2].clear();
            r
        })
        .collect()
}

/// Each row names a photo by its relative path, with that photo's own size
/// and dimensions (not those of an output), and the given status.
fn check_sources(ws: &Workspace, rows: &[Vec<String>], names: &[&str], status: &str) {
    let got: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(got, names, "one row per source: {rows:?}");
    for r in rows {
        let bytes = std::fs::read(ws.path(&format!("photos/{}", r[1]))).expect("photo");
        let (w, h) = dims(&bytes);
        assert_eq!(r[2], status, "{r:?}");
        assert_eq!(r[3], bytes.len().to_string(), "source size: {r:?}");
        assert_eq!(
            (r[4].as_str(), r[5].as_str()),
            (&*w.to_string(), &*h.to_string())
        );
        assert_eq!(r[6], "jpeg", "source format: {r:?}");
    }
}

fn photos(ws: &Workspace) -> Vec<&'static str> {
    for (n, sample) in [
        ("a.jpg", "tower.jpg"),
        ("b.jpg", "dusk.jpg"),
        ("c.jpg", "tiny.jpg"),
    ] {
        ws.sample(sample, &format!("photos/{n}"));
    }
    vec!["a.jpg", "b.jpg", "c.jpg"]
}

#[test]
fn web_gallery_manifest_has_one_row_per_photo_with_both_branches_on_every_run() {
    let ws = Workspace::new();
    let names = photos(&ws);
    let run = || {
        ws.conveyor()
            .args(&["run", "pipelines/web-gallery.toml"])
            .env("PHOTOS", "photos")
            .env("OUT", "out")
            .run()
    };
    run().code(0);
    let first = rows(&ws, "out/gallery/manifest.csv");
    check_sources(&ws, &first, &names, "ok");
    for r in &first {
        let outputs = format!("out/gallery/large/{0};out/gallery/thumbs/{0}", r[1]);
        assert_eq!(r[8], outputs, "both writers' files: {r:?}");
        assert!(ws.path(&format!("out/gallery/thumbs/{}", r[1])).is_file());
    }
    let again = run();
    again.code(0);
    assert_eq!(counts(&again), (0, 3), "{}", again.stderr());
    let second = rows(&ws, "out/gallery/manifest.csv");
    check_sources(&ws, &second, &names, "up_to_date");
    assert_eq!(without_status(&first), without_status(&second));
}

/// Small PNGs of the photos, and a manifest fed by `feed` (a TOML line):
/// run twice, the rows have the source's facts and the PNGs' names, and
/// the second run writes the same rows, only the status differing.
fn small_pngs_with_a_manifest(feed: &str) {
    let ws = Workspace::new();
    let names = photos(&ws);
    let text = format!(
        "[pipeline]\nname = \"fed\"\n\n[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"photos\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"small\"\nkind = \"resize\"\nwidth = 40\n\n[[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"small\"\n\n[[stage]]\nname = \"index\"\nkind = \"manifest\"\n{feed}\npath = \"index.csv\"\n"
    );
    ws.write("fed.toml", text.as_bytes());
    let run = || ws.conveyor().args(&["run", "fed.toml"]).run();
    run().code(0);
    let first = rows(&ws, "index.csv");
    check_sources(&ws, &first, &names, "ok");
    for r in &first {
        let stem = r[1].trim_end_matches(".jpg");
        assert_eq!(r[8], format!("small/{stem}.png"), "{feed}: {r:?}");
    }
    let again = run();
    again.code(0);
    assert_eq!(counts(&again), (0, 3), "{feed}: {}", again.stderr());
    let second = rows(&ws, "index.csv");
    check_sources(&ws, &second, &names, "up_to_date");
    assert_eq!(without_status(&first), without_status(&second), "{feed}");
}

#[test]
fn manifest_fed_by_scan_and_a_writer_has_one_row_with_sizes_on_every_run() {
    small_pngs_with_a_manifest("inputs = [\"scan\", \"save\"]");
}

#[test]
fn archive_jsonl_manifest_keeps_sizes_and_hashes_of_up_to_date_items() {
    let ws = Workspace::new();
    photos(&ws);
    let run = || {
        let done = ws
            .conveyor()
            .args(&["run", "pipelines/archive.toml"])
            .env("PHOTOS", "photos")
            .env("OUT", "out")
            .run();
        done.code(0);
        let text = std::fs::read_to_string(ws.path("out/archive/manifest.jsonl")).expect("read");
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        (done, rows)
    };
    let (_, mut first) = run();
    let (again, mut second) = run();
    assert_eq!(counts(&again), (0, 3), "{}", again.stderr());
    assert_eq!(first.len(), 3);
    for (a, b) in first.iter_mut().zip(second.iter_mut()) {
        assert_eq!(a["status"], "ok");
        assert_eq!(b["status"], "up_to_date");
        assert!(a["size"].as_u64().is_some_and(|s| s > 0), "{a}");
        assert!(a["hash"].as_str().is_some_and(|h| h.starts_with("blake3:")));
        a["status"] = serde_json::Value::Null;
        b["status"] = serde_json::Value::Null;
    }
    assert_eq!(first, second);
}

#[test]
fn a_manifest_fed_from_scan_lists_the_files_of_every_branch_on_every_run() {
    small_pngs_with_a_manifest("input = \"scan\"");
}
