//! `conveyor advise` on pipelines whose stages behave in known ways: one
//! that waits on a command, one that crashes its worker, CPU-bound image
//! work. The advice and its reason are checked, `--apply` writes a pipeline
//! that runs, and nothing outside advise's temporary folder changes.

use super::*;

/// The entry of stage `name` in advise's JSON.
fn stage_of(json: &serde_json::Value, name: &str) -> serde_json::Value {
    json["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}: {json}"))
}

/// Every file below the workspace (links not followed), with its bytes.
fn tree(ws: &Workspace) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(ws.path(""))
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(ws.path("")).expect("prefix");
            out.insert(
                rel.to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            );
        }
    }
    out
}

fn pipeline(ws: &Workspace, middle: &str) {
    for i in 0..18 {
        ws.sample("tiny.jpg", &format!("in/many/{i:02}.jpg"));
    }
    ws.sample("tiny.jpg", "in/a.jpg")
        .sample("tower.jpg", "in/b.jpg")
        .sample("meadow.jpg", "in/c.jpg")
        .sample("dusk.jpg", "in/d.jpg")
        .sample("trips/coast.jpg", "in/e.jpg")
        .sample("rotated.jpg", "in/f.jpg");
    let text = format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n{middle}\n[[stage]]\nname = \"thumb\"\nkind = \"thumbnail\"\nwidth = 64\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n\n[[stage]]\nname = \"index\"\nkind = \"manifest\"\npath = \"list.csv\"\n"
    );
    ws.write("p.toml", text.as_bytes());
}

/// advise's temporary folders (`conveyor-advise-PID-...`) in `tmp`.
fn scratch_of(tmp: &std::path::Path, pid: u32) -> Vec<String> {
    let prefix = format!("conveyor-advise-{pid}-");
    std::fs::read_dir(tmp)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn advice(json: &serde_json::Value, stage: &str) -> (String, String, String) {
    let a = json["advice"]
        .as_array()
        .expect("advice")
        .iter()
        .find(|a| a["stage"] == stage)
        .unwrap_or_else(|| panic!("no advice for {stage}: {json}"));
    (
        a["mode"].as_str().unwrap_or_default().to_string(),
        a["workers"].to_string(),
        a["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn a_stage_that_waits_gets_more_workers_than_cores_and_the_advice_runs_faster() {
    let ws = Workspace::alone();
    pipeline(
        &ws,
        "[[stage]]\nname = \"tool\"\nkind = \"exec\"\ncommand = [\"sleep\", \"0.1\"]\n",
    );
    let before = tree(&ws);
    let done = ws
        .conveyor()
        .args(&[
            "advise",
            "p.toml",
            "--jobs",
            "2",
            "--format",
            "json",
            "--apply",
            "advised.toml",
        ])
        .run();
    done.code(0);
    let json: serde_json::Value = serde_json::from_str(&done.stdout()).expect("json");
    let (mode, workers, reason) = advice(&json, "tool");
    assert_eq!(mode, "threads");
    let n: usize = workers.parse().unwrap_or(0);
    assert!(n > 2, "{workers}: {reason}");
    assert!(reason.starts_with("waits "), "{reason}");
    // Measured by advise on the sample, the whole pipeline as advised
    // against as it is (auto: 2 workers for a stage that sleeps).
    let (now, advised) = (
        json["current_items_per_s"].as_f64().expect("rate"),
        json["advised_items_per_s"].as_f64().expect("rate"),
    );
    assert!(advised >= 3.0 * now, "{advised} against {now}");
    // Every mode's whole run: its time, its CPU, its largest process.
    for mode in ["inline", "threads", "processes"] {
        let m = &json["modes"][mode];
        assert!(m["wall_s"].as_f64().unwrap_or(0.0) > 0.0, "{mode}: {m}");
        assert!(m["cpu_s"].as_f64().unwrap_or(0.0) > 0.0, "{mode}: {m}");
        assert!(m["peak_mb"].as_f64().unwrap_or(0.0) > 1.0, "{mode}: {m}");
    }
    // The applied pipeline is a pipeline, and says why on the changed line.
    let applied = std::fs::read_to_string(ws.path("advised.toml")).expect("applied");
    assert!(applied.contains(&format!("workers = {n}")), "{applied}");
    assert!(applied.contains("# advise: waits"), "{applied}");
    ws.conveyor().args(&["check", "advised.toml"]).run().code(0);
    // Nothing else changed: no outputs, no journal, no manifest.
    let mut after = tree(&ws);
    after.remove("advised.toml");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert_eq!(after, before);
    // --apply never replaces a file, the pipeline least of all.
    ws.conveyor()
        .args(&["advise", "p.toml", "--sample", "2", "--apply", "p.toml"])
        .run()
        .code(2)
        .stderr_has("already exists");
    assert_eq!(
        std::fs::read(ws.path("p.toml")).expect("p"),
        before["p.toml"]
    );
}

#[test]
fn a_stage_that_crashes_is_reported_and_sent_to_processes() {
    let ws = Workspace::new();
    pipeline(
        &ws,
        "[[stage]]\nname = \"flaky\"\nkind = \"chaos\"\naction = \"segfault\"\nmatch = \"b.jpg\"\n",
    );
    let before = tree(&ws);
    let done = ws
        .conveyor()
        .args(&["advise", "p.toml", "--format", "json"])
        .run();
    done.code(0);
    let json: serde_json::Value = serde_json::from_str(&done.stdout()).expect("json");
    let (mode, _, reason) = advice(&json, "flaky");
    assert_eq!(mode, "processes");
    assert!(reason.contains("crashed its worker on 1 of"), "{reason}");
    assert!(reason.contains("SIGSEGV"), "{reason}");
    // The CPU-bound stages are left to threads, with the price of processes.
    let (mode, workers, reason) = advice(&json, "thumb");
    assert_eq!((mode.as_str(), workers.as_str()), ("threads", "\"auto\""));
    assert!(reason.starts_with("CPU-bound"), "{reason}");
    // The price, in whichever form applies: processes cost N% here, or
    // alone in processes it costs N% (when the neighbours change it).
    assert!(
        reason.contains("processes cost ") || reason.contains("alone in processes it costs "),
        "{reason}"
    );
    // The pipeline as it is crashed in threads mode: said so.
    let broken = json["broken"]["current-0"].as_str().unwrap_or_default();
    assert!(broken.contains("a stage crashed it"), "{json}");
    // So no rate is claimed for it.
    let current = json["current_broken"].as_str().unwrap_or_default();
    assert!(current.contains("a stage crashed it"), "{json}");
    assert_eq!(tree(&ws), before);
}

#[test]
fn the_text_advice_names_every_stage_with_its_measurements() {
    let ws = Workspace::new();
    pipeline(&ws, "");
    let done = ws
        .conveyor()
        .args(&["advise", "p.toml", "--sample", "3"])
        .run();
    done.code(0);
    let out = done.stdout();
    assert!(
        out.starts_with("measured on 3 sample files with --jobs "),
        "{out}"
    );
    // The manifest gathers in conveyor itself: no mode to advise.
    let index = out
        .split("stage `index`")
        .nth(1)
        .and_then(|rest| rest.lines().find(|l| l.starts_with("  advice:")))
        .unwrap_or_else(|| panic!("no advice for index: {out}"));
    assert!(
        index.contains("gathers every item into one file at the end") && !index.contains("cross"),
        "{index}"
    );
    for stage in ["thumb", "jpeg", "save", "index"] {
        assert!(out.contains(&format!("stage `{stage}`")), "{stage}: {out}");
    }
    for mode in ["inline    ", "threads   ", "processes "] {
        assert!(out.contains(&format!("\n  {mode} ")), "{mode}: {out}");
    }
    assert!(out.contains("as advised:"), "{out}");
    // Its temporary folder (named by its process id) is gone.
    let child = Command::new(BIN)
        .current_dir(ws.path(""))
        .args(["advise", "p.toml", "--sample", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let left = scratch_of(&std::env::temp_dir(), pid);
    assert!(left.is_empty(), "{left:?} left");
}

#[test]
fn sigterm_stops_advise_at_once_even_on_a_hanging_stage_and_leaves_nothing() {
    let ws = Workspace::new();
    pipeline(
        &ws,
        "[[stage]]\nname = \"stuck\"\nkind = \"chaos\"\naction = \"hang\"\nmatch = \"a.jpg\"\n",
    );
    let before = tree(&ws);
    let child = ws.spawn(&["advise", "p.toml", "--sample", "4"]);
    let pid = child.id();
    let tmp = ws.path(".tmp");
    // A measuring run is under way (and stuck on a.jpg).
    wait_for("a measuring run", 30, || !children_of(pid).is_empty());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(scratch_of(&tmp, pid).len(), 1, "its temporary folder");
    let runs = children_of(pid);
    let sent = std::time::Instant::now();
    assert!(signal(pid, "-TERM"));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    wait_for("its runs to end", 5, || runs.iter().all(|&r| !alive(r)));
    let left = scratch_of(&tmp, pid);
    assert!(left.is_empty(), "{left:?} left");
    assert_eq!(tree(&ws), before);
}

#[test]
fn a_stage_that_moves_its_inputs_is_measured_on_fresh_copies_every_run() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/a.jpg")
        .sample("tower.jpg", "in/b.jpg");
    ws.write(
        "p.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"store\"\nkind = \"copy\"\ndir = \"archive\"\nmove = true\n",
    );
    let before = tree(&ws);
    let done = ws
        .conveyor()
        .args(&["advise", "p.toml", "--format", "json"])
        .run();
    done.code(0);
    let json: serde_json::Value = serde_json::from_str(&done.stdout()).expect("json");
    // Every run had both files to move: measured, not "no item reached it".
    for mode in ["inline", "threads", "processes"] {
        assert_eq!(json["stages"][0][mode]["items"], 2, "{mode}: {json}");
    }
    assert!(
        json["current_items_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{json}"
    );
    assert_eq!(tree(&ws), before, "the originals stay where they are");
}

#[test]
fn a_pixel_stage_is_measured_alone_in_processes_with_what_crosses_and_how_it_scales() {
    let ws = Workspace::new();
    ws.sample("tower.jpg", "in/a.jpg")
        .sample("meadow.jpg", "in/b.jpg")
        .sample("dusk.jpg", "in/c.jpg");
    ws.write(
        "p.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"shrink\"\nkind = \"resize\"\nwidth = 64\n\n[[stage]]\nname = \"jpeg\"\nkind = \"encode\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    let before = tree(&ws);
    let done = ws
        .conveyor()
        .args(&["advise", "p.toml", "--jobs", "2", "--format", "json"])
        .run();
    done.code(0);
    let json: serde_json::Value = serde_json::from_str(&done.stdout()).expect("json");
    let stage = |name: &str| stage_of(&json, name);
    // Alone in a worker, the resize takes the decoded pixels in: at least
    // the smallest photo's (tower, 360x540 RGB) per item.
    let shrink = stage("shrink");
    let alone = &shrink["alone"];
    let per_item =
        alone["crossed_bytes"].as_f64().expect("bytes") / alone["items"].as_f64().expect("items");
    assert!(per_item >= 360.0 * 540.0 * 3.0, "{per_item}: {alone}");
    // The encoder alone takes only the 64 px thumbnail in.
    let jpeg = stage("jpeg");
    let jpeg_per_item = jpeg["alone"]["crossed_bytes"].as_f64().expect("bytes")
        / jpeg["alone"]["items"].as_f64().expect("items");
    assert!(jpeg_per_item < per_item / 5.0, "{jpeg_per_item} {per_item}");
    // Its workers: started, timed, and as large as the pixels they held.
    assert!(alone["worker_starts"].as_u64().unwrap_or(0) >= 1, "{alone}");
    assert!(
        alone["worker_start_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "{alone}"
    );
    assert!(
        alone["worker_peak_mb"].as_f64().unwrap_or(0.0) * 1e6 > 360.0 * 540.0 * 3.0,
        "{alone}"
    );
    // The whole run at 1 and 2 jobs.
    let jobs: Vec<u64> = shrink["by_jobs"]
        .as_array()
        .expect("by_jobs")
        .iter()
        .map(|p| p["jobs"].as_u64().expect("jobs"))
        .collect();
    assert_eq!(jobs, [1, 2], "{shrink}");
    let (_, _, reason) = advice(&json, "shrink");
    assert!(reason.contains("as fast on 2 jobs as on 1 job"), "{reason}");
    assert!(reason.contains("per item"), "{reason}");
    // The text says the same to a person.
    let text = ws
        .conveyor()
        .args(&["advise", "p.toml", "--jobs", "2", "--sample", "2"])
        .run();
    text.code(0);
    let out = text.stdout();
    assert!(out.contains("every stage threads by --jobs: "), "{out}");
    assert!(out.contains(" ms per item alone: "), "{out}");
    assert!(out.contains("a worker starts in "), "{out}");
    assert_eq!(tree(&ws), before);
}

#[test]
fn a_signal_while_the_sample_is_copied_or_a_second_one_leaves_nothing_behind() {
    let ws = Workspace::new();
    // Large files, so copying the sample takes a moment.
    let block: Vec<u8> = (0..40_000_000u32).map(|i| (i % 251) as u8).collect();
    for i in 0..4 {
        ws.write(&format!("big/f{i}.bin"), &block);
    }
    ws.write(
        "p.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"big\"\n\n[[stage]]\nname = \"tool\"\nkind = \"exec\"\ncommand = [\"sleep\", \"0.2\"]\n",
    );
    let before = tree(&ws);
    let tmp = ws.path(".tmp");
    for signals in [&["-TERM"][..], &["-INT", "-INT"][..]] {
        let child = ws.spawn(&["advise", "p.toml"]);
        let pid = child.id();
        // Its folder appears as the copying starts.
        wait_for("the temporary folder", 30, || {
            !scratch_of(&tmp, pid).is_empty()
        });
        for s in signals {
            assert!(signal(pid, s));
        }
        let runs = children_of(pid);
        let out = child.wait_with_output().expect("wait");
        let want = if signals[0] == "-TERM" { 143 } else { 130 };
        assert_eq!(
            out.status.code(),
            Some(want),
            "{signals:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for("its runs to end", 5, || runs.iter().all(|&r| !alive(r)));
        let left = scratch_of(&tmp, pid);
        assert!(left.is_empty(), "{signals:?}: {left:?} left");
    }
    assert_eq!(tree(&ws), before);
}

#[test]
fn a_folder_named_like_advise_s_own_is_never_removed() {
    let ws = Workspace::new();
    pipeline(&ws, "");
    // What an earlier, killed advise would have left has a time in its name;
    // these do not, whatever process made them.
    let tmp = ws.path(".tmp");
    let theirs = [
        tmp.join("conveyor-advise-1"),
        tmp.join("conveyor-advise-2-keep"),
    ];
    for d in &theirs {
        std::fs::create_dir_all(d.join("keep")).expect("mkdir");
        std::fs::write(d.join("keep/important"), b"precious").expect("write");
    }
    let dead = tmp.join("conveyor-advise-999999999-123");
    std::fs::create_dir_all(&dead).expect("mkdir");
    ws.conveyor()
        .env("TMPDIR", tmp.to_str().expect("utf-8"))
        .args(&["advise", "p.toml", "--sample", "2"])
        .run()
        .code(0);
    for d in &theirs {
        assert_eq!(
            std::fs::read(d.join("keep/important")).expect("still there"),
            b"precious"
        );
    }
    assert!(!dead.exists(), "a dead advise's folder is swept");
}

#[test]
fn files_named_alike_are_each_measured_and_apply_wants_an_existing_folder() {
    let ws = Workspace::new();
    pipeline(&ws, "");
    ws.sample("tower.jpg", "one/x.jpg")
        .sample("dusk.jpg", "two/x.jpg");
    let done = ws
        .conveyor()
        .args(&[
            "advise",
            "p.toml",
            "one/x.jpg",
            "two/x.jpg",
            "--format",
            "json",
        ])
        .run();
    done.code(0);
    let json: serde_json::Value = serde_json::from_str(&done.stdout()).expect("json");
    assert_eq!(json["sample"], 2, "{json}");
    let thumb = stage_of(&json, "thumb");
    assert_eq!(thumb["threads"]["items"], 2, "both measured: {thumb}");
    ws.conveyor()
        .args(&[
            "advise",
            "p.toml",
            "--sample",
            "1",
            "--apply",
            "no/such/folder/a.toml",
        ])
        .run()
        .code(2)
        .stderr_has("the folder no/such/folder does not exist");
    assert!(!ws.path("no").exists());
}
