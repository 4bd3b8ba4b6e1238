//! Nothing outlives a run: at its end, or on a second Ctrl-C, conveyor kills
//! the workers it started, removes its scratch folders and sweeps its output
//! folders of temp files (see [`crate::output::temp`]) left by itself, by its
//! workers (a worker killed mid-write can't clean up after itself) or by
//! runs that were killed outright. Files of other, live runs carry other
//! PIDs and stay.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::output::temp;

#[derive(Default)]
struct State {
    dirs: Vec<PathBuf>,
    pids: HashSet<u32>,
    /// Private scratch folders, removed whole.
    scratch: Vec<PathBuf>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(State::default))
}

/// Folders this run writes into.
pub fn watch_dirs(dirs: &[PathBuf]) {
    // A watch runs the pipeline again and again: each folder once.
    with_state(|s| {
        for d in dirs {
            if !s.dirs.contains(d) {
                s.dirs.push(d.clone());
            }
        }
    });
}

/// A scratch folder of this run, removed whole by [`exit_now`] (a normal
/// end removes it itself).
pub fn watch_scratch(dir: &Path) {
    with_state(|s| s.scratch.push(dir.to_path_buf()));
}

/// A new private scratch folder `PREFIX-PID-NANOS` in the temp folder,
/// after sweeping those of processes that are gone; never one that exists
/// (it would not be ours to remove). [`exit_now`] removes it; a normal end
/// must. The error says where, why, and what to do, in plain words.
pub fn new_scratch(prefix: &str) -> Result<PathBuf, String> {
    let tmp = std::env::temp_dir();
    sweep_stale_scratch(&tmp, prefix);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = tmp.join(format!("{prefix}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&tmp)
        .and_then(|()| std::fs::create_dir(&dir))
        .map_err(|e| {
            format!(
                "cannot create a scratch folder in {} (set TMPDIR to a folder you can write): {}",
                tmp.display(),
                crate::output::plain_io_reason(&e)
            )
        })?;
    watch_scratch(&dir);
    Ok(dir)
}

/// Remove scratch folders `PREFIX-PID-...` in `parent` whose process is gone:
/// a run killed outright (SIGKILL, OOM) can't remove its own.
pub fn sweep_stale_scratch(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        // Exactly PREFIX-PID-NANOS, as conveyor names them: a folder of
        // another name is not ours, whoever made it.
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, nanos)| !nanos.is_empty() && nanos.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if pid > 0 && !temp::process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A worker process this run started.
pub fn watch_worker(pid: u32) {
    with_state(|s| {
        s.pids.insert(pid);
    });
}

/// A process from [`watch_worker`] that has been reaped: its PID may be
/// another process's soon, and must not be killed.
pub fn forget_worker(pid: u32) {
    with_state(|s| {
        s.pids.remove(&pid);
    });
}

/// Remove temp files left in the watched folders by this process, its
/// workers, or processes that are gone. Returns how many were removed.
pub fn sweep() -> usize {
    let (dirs, mut pids) = with_state(|s| (s.dirs.clone(), s.pids.clone()));
    pids.insert(std::process::id());
    dirs.iter().map(|d| temp::sweep(d, &pids)).sum()
}

/// Stop now (a second Ctrl-C): kill the workers, remove temp files, exit.
pub fn exit_now(code: i32) -> ! {
    let pids = with_state(|s| s.pids.clone());
    for pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill only sends a signal.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    sweep();
    for dir in with_state(|s| s.scratch.clone()) {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scratch_of_dead_runs_is_removed_and_live_ones_stay() {
        let parent = tempfile::tempdir().expect("temp dir");
        let dead = std::process::Command::new("true")
            .spawn()
            .and_then(|mut c| c.wait().map(|_| c.id()))
            .expect("run true");
        let mine = parent
            .path()
            .join(format!("conveyor-run-{}-1", std::process::id()));
        let gone = parent.path().join(format!("conveyor-run-{dead}-1"));
        let other = parent.path().join(format!("conveyor-runner-{dead}-1"));
        // Named like ours but not as conveyor names them: not ours.
        let alike = parent.path().join(format!("conveyor-run-{dead}"));
        let alike2 = parent.path().join(format!("conveyor-run-{dead}-keep"));
        for d in [&mine, &gone, &other, &alike, &alike2] {
            std::fs::create_dir_all(d.join("inner")).expect("mkdir");
        }
        sweep_stale_scratch(parent.path(), "conveyor-run");
        assert!(mine.exists(), "a live run's folder must stay");
        assert!(!gone.exists(), "a dead run's folder must go");
        assert!(other.exists(), "other names must stay");
        assert!(
            alike.exists() && alike2.exists(),
            "folders conveyor did not name stay"
        );
    }
}
