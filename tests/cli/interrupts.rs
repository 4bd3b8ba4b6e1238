//! Ctrl-C, SIGTERM and kill: exit codes, no partial files, no workers left.

use super::*;

#[test]
fn sigint_stops_the_run_with_130_and_no_partial_files() {
    let ws = Workspace::new();
    ws.many_tiny("many", 3000);
    let child = ws.spawn(&[
        "run",
        "pipelines/thumbnails.toml",
        "--set",
        "scan.root=many",
        "--mode",
        "inline",
    ]);
    // Wait until some thumbnails exist, so the run is under way.
    wait_for("some thumbnails", 30, || ws.count("out/thumbs") >= 20);
    assert!(signal(child.id(), "-INT"));
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let files = ws.files("out/thumbs");
    assert!(files.len() < 3000, "the run was not interrupted");
    for (name, bytes) in &files {
        assert!(!name.contains("conveyor-tmp"), "temp file left: {name}");
        dims(bytes);
    }
}

// ---- processes mode -------------------------------------------------------

#[test]
fn a_second_interrupt_stops_at_once_and_sigterm_counts_as_one_exiting_143() {
    let ws = Workspace::new();
    // No timeout: only the interrupt ends these hangs.
    chaos_pipeline(&ws, "action = \"hang\"");
    for signals in [&["-INT", "-INT"][..], &["-TERM"][..]] {
        let child = ws.spawn(&["run", "chaos.toml"]);
        let pid = child.id();
        wait_for("two hanging workers", 60, || children_of(pid).len() >= 2);
        let workers = children_of(pid);
        let sent = std::time::Instant::now();
        for sig in signals {
            signal(pid, sig);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("wait");
        let took = sent.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.
        let code = if signals[0] == "-TERM" { 143 } else { 130 };
        assert_eq!(out.status.code(), Some(code), "{signals:?}: {stderr}");
        // Twice: at once; once: after the grace period for items in flight.
        let limit = if signals.len() == 2 { 1 } else { 4 };
        assert!(
            took < std::time::Duration::from_secs(limit),
            "{signals:?} took {took:?}"
        );
        wait_for("workers to exit", 2, || workers.iter().all(|&w| !alive(w)));
        assert_eq!(scratch_dirs(&ws), Vec::<String>::new(), "{signals:?}");
    }
    assert!(ws.files("out").is_empty());
    // Killed outright, a run can't clean up; the next run removes its folder.
    let child = ws.spawn(&["run", "chaos.toml"]);
    let pid = child.id();
    wait_for("two hanging workers", 60, || children_of(pid).len() >= 2);
    assert_eq!(scratch_dirs(&ws).len(), 1);
    signal(pid, "-KILL");
    let _ = child.wait_with_output();
    let next = ws.spawn(&["run", "chaos.toml"]);
    wait_for("two hanging workers", 60, || {
        children_of(next.id()).len() >= 2
    });
    let left = scratch_dirs(&ws);
    // Stopped before the checks, so that a failed one leaves no run behind.
    let own = format!("-{}-", next.id());
    signal(next.id(), "-KILL");
    let _ = next.wait_with_output();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains(&own), "{left:?}");
}

#[test]
fn sigint_in_processes_mode_leaves_no_children_and_no_partial_files() {
    let ws = Workspace::new();
    ws.many_tiny("many", 2000);
    let child = ws.spawn(&[
        "run",
        "pipelines/thumbnails.toml",
        "--set",
        "scan.root=many",
        "--mode",
        "processes",
    ]);
    let pid = child.id();
    wait_for("some thumbnails", 60, || ws.count("out/thumbs") >= 20);
    let workers = children_of(pid);
    assert!(!workers.is_empty(), "no workers seen");
    signal(pid, "-INT");
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for w in workers {
        assert!(!alive(w), "worker {w} outlived the run");
    }
    assert_eq!(
        ws.leftover_workers(),
        Vec::<u32>::new(),
        "workers left running"
    );
    let files = ws.files("out/thumbs");
    assert!(files.len() < 2000, "the run was not interrupted");
    for (name, bytes) in &files {
        assert!(!name.contains("conveyor-tmp"), "temp file left: {name}");
        dims(bytes);
    }
}

#[test]
fn workers_exit_when_conveyor_is_killed() {
    let ws = Workspace::new();
    chaos_pipeline(&ws, "action = \"hang\"");
    let mut child = Command::new(BIN)
        .current_dir(ws.path(""))
        .args(["run", "chaos.toml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    // Counted once they run the worker (a child just forked still shows
    // conveyor's own command line, which the leftover check doesn't match).
    wait_for("two hanging workers", 60, || {
        ws.leftover_workers().len() >= 2
    });
    let workers = children_of(pid);
    // The check used after other runs does see live workers.
    assert_eq!(ws.leftover_workers().len(), workers.len());
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed = std::time::Instant::now();
    wait_for("workers to exit", 5, || workers.iter().all(|&w| !alive(w)));
    assert!(
        killed.elapsed() < std::time::Duration::from_secs(1),
        "workers took {:?} to exit",
        killed.elapsed()
    );
    assert_eq!(ws.leftover_workers(), Vec::<u32>::new());
}

/// A supervisor (systemd, Slurm's scancel, a closing terminal) signals the
/// whole process group: the workers must leave the stop to conveyor, so the
/// items they hold finish instead of failing.
#[test]
fn sigterm_and_sighup_to_the_process_group_fail_no_item() {
    use std::os::unix::process::CommandExt;
    for (sig, code) in [("-TERM", 143), ("-HUP", 129)] {
        let ws = Workspace::new();
        ws.many_tiny("many", 2000);
        let report = ws.path("r.jsonl");
        let child = Command::new(BIN)
            .current_dir(ws.path(""))
            .args([
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                "scan.root=many",
            ])
            .args(["--mode", "processes", "--report"])
            .arg(&report)
            .env_remove("PHOTOS")
            .env_remove("OUT")
            .process_group(0)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        wait_for("some thumbnails", 60, || ws.count("out/thumbs") >= 20);
        let workers = children_of(pid);
        assert!(!workers.is_empty(), "no workers seen");
        // `kill -TERM -- -PGID`: conveyor and every worker at once.
        let sent = Command::new("kill")
            .args([sig, "--", &format!("-{pid}")])
            .status()
            .expect("kill");
        assert!(sent.success());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{sig}: {stderr}");
        let t = Tally::of(&read_report(&report));
        assert_eq!(t.failed, 0, "{sig}: {stderr}");
        assert!(t.ok >= 20 && t.ok < 2000, "{sig}: {t:?}");
        assert_eq!(
            ws.count("out/thumbs") as u64,
            t.ok,
            "{sig}: files on disk = ok lines"
        );
        wait_for("workers to exit", 5, || workers.iter().all(|&w| !alive(w)));
        for (name, _) in ws.files("out/thumbs") {
            assert!(
                !name.contains("conveyor-tmp"),
                "{sig}: temp file left: {name}"
            );
        }
    }
}
