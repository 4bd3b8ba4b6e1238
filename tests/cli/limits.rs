//! Limits: no number, duration or size a user writes (in a file, with
//! `--set` or `--jobs`) and no file a run is fed can panic conveyor or
//! exhaust its memory. Every numeric option is found in `conveyor schema`,
//! so an option added later is covered without touching this file.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

/// Options that hold a duration or a size as text.
const UNIT_KEYS: [&str; 5] = [
    "timeout",
    "memory_limit",
    "max_file_size",
    "min_size",
    "max_size",
];

/// What a stage of each kind needs around it to be valid: the stages before
/// it (after `scan`), its own required options, and the stages after it.
fn base(kind: &str) -> (&'static str, &'static str, &'static str) {
    const DECODE: &str = "[[stage]]\nname = \"load\"\nkind = \"decode\"\n";
    const SAVE: &str = "[[stage]]\nname = \"enc\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n";
    match kind {
        "scan" | "read" | "hash" | "filter" | "chaos" => ("", "", ""),
        "decode" | "thumbnail" => ("", "", SAVE),
        "resize" => (DECODE, "width = 32\n", SAVE),
        "crop" => (DECODE, "width = 8\nheight = 8\n", SAVE),
        "rotate" | "flip" | "grayscale" | "blur" | "sharpen" | "adjust" => (DECODE, "", SAVE),
        "watermark" => (DECODE, "image = \"samples/watermark.png\"\n", SAVE),
        "encode" => (DECODE, "", ""),
        "write" => (
            "[[stage]]\nname = \"read\"\nkind = \"read\"\n",
            "dir = \"out\"\n",
            "",
        ),
        "copy" => ("", "dir = \"out\"\n", ""),
        "exec" => ("", "command = [\"true\"]\n", ""),
        "manifest" => ("", "path = \"out/m.csv\"\n", ""),
        "contact_sheet" => (DECODE, "path = \"out/sheet.jpg\"\n", ""),
        other => panic!("kind `{other}` is new: give it a base pipeline in tests/cli/limits.rs"),
    }
}

/// A pipeline with one stage `t` of `kind` (or `[pipeline]` keys when
/// `kind` is None) given `key = value`.
fn pipeline(kind: Option<&str>, key: &str, value: &str) -> String {
    let line = format!("{key} = {value}\n");
    let Some(kind) = kind else {
        let (before, own, after) = base("grayscale");
        return format!(
            "[pipeline]\n{line}\n[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n{before}\n[[stage]]\nname = \"t\"\nkind = \"grayscale\"\n{own}\n{after}"
        );
    };
    if kind == "scan" {
        return format!(
            "[[stage]]\nname = \"t\"\nkind = \"scan\"\nroot = \"in\"\n{line}\n[[stage]]\nname = \"h\"\nkind = \"hash\"\n"
        );
    }
    let (before, own, after) = base(kind);
    // The value tried replaces the base's own, if it has one.
    let own: String = own
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n{before}\n[[stage]]\nname = \"t\"\nkind = \"{kind}\"\n{own}{line}\n{after}"
    )
}

/// `(min, max)` of a numeric option's schema (following a `$ref`, and the
/// number branch of a `oneOf`/`anyOf`); `None` when it takes no number.
fn numeric(prop: &Value, defs: &Value) -> Option<(Option<f64>, Option<f64>, bool)> {
    let prop = match prop.get("$ref").and_then(Value::as_str) {
        Some(r) => defs.get(r.trim_start_matches("#/$defs/"))?,
        None => prop,
    };
    let types: Vec<&str> = match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let float = types.contains(&"number");
    if float || types.contains(&"integer") {
        let b = |k: &str| prop.get(k).and_then(Value::as_f64);
        return Some((b("minimum"), b("maximum"), float));
    }
    ["oneOf", "anyOf"]
        .iter()
        .filter_map(|k| prop.get(*k).and_then(Value::as_array))
        .flatten()
        .find_map(|branch| numeric(branch, defs))
}

/// Every `(kind or None for [pipeline], key, min, max, float)` to test;
/// the keys common to all stages only once, on `grayscale`.
type NumOpt = (Option<String>, String, Option<f64>, Option<f64>, bool);

fn numeric_options(schema: &Value) -> (Vec<NumOpt>, Vec<(Option<String>, String)>) {
    let defs = &schema["$defs"];
    let kinds = schema["properties"]["stage"]["items"]["oneOf"]
        .as_array()
        .expect("kinds in schema");
    let names = |k: &Value| -> BTreeSet<String> {
        k["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let common: BTreeSet<String> = kinds
        .iter()
        .map(names)
        .reduce(|a, b| a.intersection(&b).cloned().collect())
        .unwrap_or_default();
    let mut nums = Vec::new();
    let mut units = Vec::new();
    let mut add = |kind: Option<String>, key: &str, prop: &Value| {
        if UNIT_KEYS.contains(&key) {
            units.push((kind.clone(), key.to_string()));
        }
        if let Some((min, max, float)) = numeric(prop, defs) {
            nums.push((kind, key.to_string(), min, max, float));
        }
    };
    for (key, prop) in schema["properties"]["pipeline"]["properties"]
        .as_object()
        .expect("pipeline keys")
    {
        add(None, key, prop);
    }
    for k in kinds {
        let kind = k["properties"]["kind"]["const"]
            .as_str()
            .expect("kind name")
            .to_string();
        for (key, prop) in k["properties"].as_object().expect("properties") {
            if common.contains(key) && kind != "grayscale" {
                continue;
            }
            add(Some(kind.clone()), key, prop);
        }
    }
    (nums, units)
}

/// The verdict on one value: `Ok(true)` when `check` accepted it.
fn judge(ws: &Workspace, file: &str, what: &str, must_refuse: bool) -> bool {
    let done = ws.conveyor().args(&["check", file]).run();
    let err = done.stderr();
    let code = done.out.status.code();
    assert!(code.is_some(), "{what}: killed by a signal\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("overflow") && code != Some(101),
        "{what}: panicked\n{err}"
    );
    match code {
        Some(0) => {
            assert!(
                !must_refuse,
                "{what}: out of bounds, yet `check` passed\n{err}"
            );
            true
        }
        Some(2) => {
            assert!(
                err.contains(&format!("{file}:")),
                "{what}: refused without the place\n{err}"
            );
            false
        }
        other => panic!("{what}: `check` exited {other:?}\n{err}"),
    }
}

/// Run a pipeline that passed `check` on one tiny image: it ends well, or
/// fails that item by name; it never panics.
fn run_one(ws: &Workspace, file: &str, what: &str) {
    let done = ws.conveyor().args(&["run", file, "--quiet"]).run();
    let err = done.stderr();
    let code = done.out.status.code();
    assert!(code.is_some(), "{what}: run killed by a signal\n{err}");
    assert!(
        !err.contains("panicked") && code != Some(101),
        "{what}: run panicked\n{err}"
    );
    match code {
        Some(0) => {}
        Some(1) => assert!(err.contains("tiny.jpg"), "{what}: failed, no path\n{err}"),
        other => panic!("{what}: run exited {other:?}\n{err}"),
    }
}

fn fmt_num(v: f64, float: bool) -> String {
    if float {
        format!("{v:?}")
    } else {
        format!("{}", v as i64)
    }
}

#[test]
fn every_numeric_option_survives_its_extremes() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/tiny.jpg");
    let schema: Value =
        serde_json::from_str(&ws.conveyor().args(&["schema"]).run().code(0).stdout())
            .expect("schema is JSON");
    let (nums, units) = numeric_options(&schema);
    assert!(nums.len() >= 25, "too few numeric options found: {nums:?}");
    let mut found_units: Vec<&str> = units.iter().map(|u| u.1.as_str()).collect();
    found_units.sort_unstable();
    found_units.dedup();
    assert_eq!(found_units.len(), UNIT_KEYS.len(), "{units:?}");

    // (kind, key, value as TOML, must check refuse it?)
    let mut cases: Vec<(Option<String>, String, String, bool)> = Vec::new();
    for (kind, key, min, max, float) in &nums {
        let max = max.unwrap_or_else(|| panic!("{kind:?}.{key} documents no maximum"));
        let min = min.unwrap_or(f64::NEG_INFINITY);
        let mut values = vec![
            (fmt_num(max, *float), false),
            (fmt_num(max + 1.0, *float), true),
            ("0".into(), 0.0 < min),
            ("-1".into(), -1.0 < min),
            ("1e30".into(), true),
            ("18446744073709551616".into(), true),
            ("100000000000000000000".into(), true),
            ("nan".into(), true),
            ("inf".into(), true),
            ("-inf".into(), true),
        ];
        if min.is_finite() {
            values.push((fmt_num(min, *float), false));
        }
        for (v, refuse) in values {
            cases.push((kind.clone(), key.clone(), v, refuse));
        }
    }
    for (kind, key) in &units {
        for v in [
            "\"100000000000000000000\"",
            "\"18446744073709551616\"",
            "\"1e30\"",
            "\"inf\"",
            "\"nan\"",
            "\"-1\"",
            "\"\"",
            "\"8d\"",
            "\"2PiB\"",
            "-1",
            "18446744073709551616",
        ] {
            cases.push((kind.clone(), key.clone(), v.to_string(), true));
        }
        let top = if key == "timeout" {
            "\"7d\""
        } else {
            "\"1PiB\""
        };
        cases.push((kind.clone(), key.clone(), top.to_string(), false));
    }

    // Two at a time, each in its own file; the accepted ones also run.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (checked, ran) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    std::thread::scope(|s| {
        for t in 0..2 {
            let (ws, cases, next, checked, ran) = (&ws, &cases, &next, &checked, &ran);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((kind, key, value, refuse)) = cases.get(i) else {
                        break;
                    };
                    let what = format!(
                        "{}.{key} = {value}",
                        kind.as_deref().unwrap_or("[pipeline]")
                    );
                    let file = format!("p{t}.toml");
                    // Each thread writes into a folder of its own: one
                    // thread's clean-up must not remove the folder the
                    // other's run is checking.
                    let out = format!("out{t}");
                    let text =
                        pipeline(kind.as_deref(), key, value).replace("\"out", &format!("\"{out}"));
                    ws.write(&file, text.as_bytes());
                    checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if judge(ws, &file, &what, *refuse) {
                        ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        run_one(ws, &file, &what);
                        let _ = std::fs::remove_dir_all(ws.path(&out));
                    }
                }
            });
        }
    });
    eprintln!(
        "{} values checked, {} run",
        checked.into_inner(),
        ran.into_inner()
    );
}

#[test]
fn set_and_jobs_get_the_same_bounds() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/tiny.jpg");
    ws.write("p.toml", pipeline(Some("blur"), "sigma", "2.0").as_bytes());
    for (set, message) in [
        ("t.sigma=1e30", "`sigma` must be from 0 to 1000"),
        ("t.sigma=nan", "`sigma` must be from 0 to 1000, not nan"),
        ("t.workers=100000", "`workers` must be from 1 to 1024"),
        (
            "t.timeout=100000000000000000000",
            "over the limit of 7 days",
        ),
        ("t.retries=1000000", "`retries` must be from 0 to 100"),
    ] {
        ws.conveyor()
            .args(&["check", "p.toml", "--set", set])
            .run()
            .code(2)
            .stderr_has(message)
            .stderr_has("--set");
    }
    for jobs in ["0", "1025", "18446744073709551616"] {
        ws.conveyor()
            .args(&["run", "p.toml", "--jobs", jobs])
            .run()
            .code(2)
            .stderr_has("--jobs");
    }
    assert!(!ws.path("out").exists(), "nothing ran");
}

#[test]
fn boxes_too_big_for_memory_fail_at_check() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/tiny.jpg");
    for (kind, opts, message) in [
        (
            "resize",
            "width = 70000\nheight = 70000\nupscale = true\n",
            "the output would be 70000x70000 (4900000000 pixels), over the limit of 100000000 pixels",
        ),
        (
            "thumbnail",
            "width = 70000\nheight = 70000\nupscale = true\n",
            "the output would be 70000x70000",
        ),
        (
            "crop",
            "width = 70000\nheight = 70000\n",
            "the crop box is too big",
        ),
        (
            "contact_sheet",
            "path = \"out/sheet.jpg\"\ncolumns = 1000\ntile = 4096\n",
            "one row of the sheet is too big",
        ),
    ] {
        let (before, _, after) = base(kind);
        let text = format!(
            "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n{before}\n[[stage]]\nname = \"t\"\nkind = \"{kind}\"\n{opts}\n{after}"
        );
        ws.write("big.toml", text.as_bytes());
        for cmd in ["check", "run"] {
            ws.conveyor()
                .args(&[cmd, "big.toml"])
                .run()
                .code(2)
                .stderr_has("big.toml:")
                .stderr_has(message);
        }
        assert!(!ws.path("out").exists(), "{kind}: nothing ran");
    }
}

#[test]
fn an_output_size_known_only_per_item_fails_that_item() {
    let ws = Workspace::new();
    // 4000 wide, only the width given: 4000 x 1 stays as it is, 1 x 4000
    // would become 4000 x 16000000 (64 billion pixels).
    for (name, w, h) in [("wide", 4000, 1), ("thin", 1, 4000)] {
        let mut png = Vec::new();
        image::DynamicImage::ImageLuma8(image::GrayImage::new(w, h))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        ws.write(&format!("in/{name}.png"), &png);
    }
    for kind in ["resize", "thumbnail"] {
        let (before, _, after) = base(kind);
        let text = format!(
            "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n{before}\n[[stage]]\nname = \"t\"\nkind = \"{kind}\"\nwidth = 4000\nupscale = true\n\n{after}"
        );
        ws.write("wide.toml", text.as_bytes());
        let done = ws.conveyor().args(&["run", "wide.toml"]).run();
        done.code(1)
            .stderr_has("thin.png")
            .stderr_has("the output would be 4000x16000000");
        assert!(!done.stderr().contains("wide.png"), "{}", done.stderr());
        let files = ws.files("out");
        assert_eq!(files.keys().collect::<Vec<_>>(), ["wide.jpg"], "{kind}");
        assert_eq!(dims(&files["wide.jpg"]), (4000, 1), "{kind}");
        let _ = std::fs::remove_dir_all(ws.path("out"));
    }
}

/// The pipelines fed files: each kind that reads them, then (for images)
/// encoded and written.
fn readers() -> Vec<(&'static str, String)> {
    ["decode", "thumbnail", "read"]
        .into_iter()
        .map(|kind| {
            let tail = match kind {
                "read" => "[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
                _ => "[[stage]]\nname = \"enc\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
            };
            let width = if kind == "thumbnail" { "width = 32\n" } else { "" };
            (
                kind,
                format!(
                    "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"t\"\nkind = \"{kind}\"\n{width}\n{tail}"
                ),
            )
        })
        .collect()
}

#[test]
fn a_file_over_max_file_size_fails_alone_in_bounded_memory() {
    let ws = Workspace::alone();
    ws.sample("tiny.jpg", "in/tiny.jpg");
    // 3 GiB of nothing, on disk as a sparse file.
    let big = std::fs::File::create(ws.path("in/big.jpg")).expect("create");
    big.set_len(3 << 30).expect("sparse 3 GiB");
    let tiny_before = std::fs::read(ws.path("in/tiny.jpg")).expect("tiny");
    for (kind, text) in readers() {
        ws.write("p.toml", text.as_bytes());
        let (code, err, mib) = run_rss(&ws, &["run", "p.toml"]);
        assert_eq!(code, 1, "{kind}: {err}");
        assert!(
            err.contains("big.jpg") && err.contains("file is 3 GiB, over `max_file_size` (1 GiB)"),
            "{kind}: {err}"
        );
        assert!(
            !err.contains("tiny.jpg"),
            "{kind}: the good one failed: {err}"
        );
        assert_eq!(ws.files("out").len(), 1, "{kind}: the good one is written");
        assert!(mib < 300, "{kind}: peak RSS {mib} MiB");
        eprintln!("{kind}: peak RSS {mib} MiB");
        let _ = std::fs::remove_dir_all(ws.path("out"));
    }
    assert_eq!(
        std::fs::read(ws.path("in/tiny.jpg")).expect("tiny"),
        tiny_before
    );
    // Raised, the limit lets the file on to its next test: its first bytes,
    // zeros, are no image's, so it still isn't read.
    ws.write("p.toml", readers()[0].1.as_bytes());
    let (code, err, mib) = run_rss(&ws, &["run", "p.toml", "--set", "t.max_file_size=4GiB"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a recognised image format"), "{err}");
    assert!(mib < 300, "raised limit: peak RSS {mib} MiB");
}

#[test]
fn a_file_that_is_no_image_is_refused_by_its_first_bytes() {
    let ws = Workspace::alone();
    ws.sample("tiny.jpg", "in/tiny.jpg");
    // 200 MB named .jpg: noise up front, then sparse zeros.
    let mut noise = vec![0u8; 4096];
    let mut x: u32 = 0x9E37_79B9;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    ws.write("in/noise.jpg", &noise);
    std::fs::OpenOptions::new()
        .write(true)
        .open(ws.path("in/noise.jpg"))
        .and_then(|f| f.set_len(200_000_000))
        .expect("grow to 200 MB");
    for (kind, text) in readers().into_iter().filter(|(k, _)| *k != "read") {
        ws.write("p.toml", text.as_bytes());
        let (code, err, mib) = run_rss(&ws, &["run", "p.toml"]);
        assert_eq!(code, 1, "{kind}: {err}");
        assert!(
            err.contains("noise.jpg") && err.contains("not a recognised image format"),
            "{kind}: {err}"
        );
        assert_eq!(ws.files("out").len(), 1, "{kind}: the good one is written");
        // Reading the file whole would take 200 MB on top of the ~20 MB
        // conveyor needs for a tiny image.
        assert!(mib < 150, "{kind}: peak RSS {mib} MiB");
        eprintln!("{kind}: peak RSS {mib} MiB");
        let _ = std::fs::remove_dir_all(ws.path("out"));
    }
}
