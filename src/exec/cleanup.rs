//! Temp files never outlive a run: files being written are named
//! `.conveyor-tmp-PID-N-NAME` (PID: the process writing), and at the end of a
//! run, or on a second Ctrl-C, conveyor removes the ones left by itself or by
//! workers it started (a worker killed mid-write can't clean up after
//! itself). Files of other, concurrent runs carry other PIDs and stay.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The marker every temp file name starts with.
pub const TEMP_PREFIX: &str = ".conveyor-tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
struct State {
    dirs: Vec<PathBuf>,
    pids: HashSet<u32>,
    /// Private scratch folders, removed whole.
    scratch: Vec<PathBuf>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// A fresh temp path beside `path`, for a file that is renamed over `path`
/// once complete. The original name stays last, extension included.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(
        "{TEMP_PREFIX}{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(State::default))
}

/// Folders this run writes into.
pub fn watch_dirs(dirs: &[PathBuf]) {
    with_state(|s| s.dirs.extend(dirs.iter().cloned()));
}

/// A scratch folder of this run, removed whole by [`exit_now`] (a normal
/// end removes it itself).
pub fn watch_scratch(dir: &Path) {
    with_state(|s| s.scratch.push(dir.to_path_buf()));
}

/// Remove scratch folders `PREFIX-PID-...` in `parent` whose process is gone:
/// a run killed outright (SIGKILL, OOM) can't remove its own.
pub fn sweep_stale_scratch(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if pid > 0 && !process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A worker process this run started.
pub fn watch_worker(pid: u32) {
    with_state(|s| {
        s.pids.insert(pid);
    });
}

/// The PID in a temp file's name, if it is one of ours.
fn temp_owner(name: &str) -> Option<u32> {
    name.strip_prefix(TEMP_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Remove temp files left in the watched folders by this process or its
/// workers. Returns how many were removed.
pub fn sweep() -> usize {
    let (dirs, mut pids) = with_state(|s| (s.dirs.clone(), s.pids.clone()));
    pids.insert(std::process::id());
    let mut removed = 0;
    for dir in dirs {
        for entry in walkdir::WalkDir::new(&dir)
            .into_iter()
            .filter_map(Result::ok)
        {
            let name = entry.file_name().to_string_lossy();
            if entry.file_type().is_file()
                && temp_owner(&name).is_some_and(|p| pids.contains(&p))
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
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
    fn temp_names_carry_the_writer() {
        let t = temp_path_for(Path::new("out/a/photo.jpg"));
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(name.ends_with("-photo.jpg"), "{name}");
        assert_eq!(t.parent(), Some(Path::new("out/a")));
        assert_eq!(temp_owner(&name), Some(std::process::id()));
        assert_eq!(temp_owner("photo.jpg"), None);
    }

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
        for d in [&mine, &gone, &other] {
            std::fs::create_dir_all(d.join("inner")).expect("mkdir");
        }
        sweep_stale_scratch(parent.path(), "conveyor-run");
        assert!(mine.exists(), "a live run's folder must stay");
        assert!(!gone.exists(), "a dead run's folder must go");
        assert!(other.exists(), "other names must stay");
    }
}
