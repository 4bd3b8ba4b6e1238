//! Temp files: every output is written under `.conveyor-tmp-PID-N-NAME`
//! beside its final name (PID: the process writing) and renamed when whole.
//! Temp files whose process is gone are removed by the next sweep of their
//! folder, so even a run killed with SIGKILL leaves nothing for good.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The marker every temp file name starts with.
pub const TEMP_PREFIX: &str = ".conveyor-tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temp name for a file to be named `name` once complete. The
/// original name stays last, extension included (commands that look at the
/// extension of `{out}` still see it).
pub fn temp_name_for(name: &OsStr) -> OsString {
    let mut s = OsString::from(format!(
        "{TEMP_PREFIX}{}-{}-",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    s.push(name);
    s
}

/// A fresh temp path beside `path`.
pub fn temp_path_for(path: &Path) -> PathBuf {
    path.with_file_name(temp_name_for(path.file_name().unwrap_or_default()))
}

/// The PID in a temp file's name, if it is one of ours.
pub fn temp_owner(name: &OsStr) -> Option<u32> {
    let name = name.to_str().or_else(|| {
        // The prefix and PID are ASCII; the rest may be any bytes.
        let bytes = name.as_encoded_bytes();
        std::str::from_utf8(&bytes[..bytes.len().min(40)]).ok()
    });
    name?
        .strip_prefix(TEMP_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Whether process `pid` still exists and runs. A zombie (dead, not yet
/// reaped by whoever inherited it) counts as gone: it writes nothing more.
pub fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !zombie(pid)
}

fn zombie(pid: i32) -> bool {
    // The state follows the command name, which is in parentheses and may
    // itself hold spaces or parentheses.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Remove the temp files below `dir` written by one of `pids` or by a
/// process that no longer exists. Returns how many were removed.
pub fn sweep(dir: &Path, pids: &std::collections::HashSet<u32>) -> usize {
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let Some(pid) = temp_owner(entry.file_name()) else {
            continue;
        };
        let dead = i32::try_from(pid).is_ok_and(|p| p > 0 && !process_alive(p));
        if (pids.contains(&pid) || dead) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_writer() {
        let t = temp_path_for(Path::new("out/a/photo.jpg"));
        let name = t.file_name().unwrap_or_default();
        assert!(name.to_string_lossy().ends_with("-photo.jpg"), "{name:?}");
        assert_eq!(t.parent(), Some(Path::new("out/a")));
        assert_eq!(temp_owner(name), Some(std::process::id()));
        assert_eq!(temp_owner(OsStr::new("photo.jpg")), None);
    }

    #[test]
    fn temp_files_of_dead_processes_are_swept_and_live_ones_stay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dead = std::process::Command::new("true")
            .spawn()
            .and_then(|mut c| c.wait().map(|_| c.id()))
            .expect("run true");
        let gone = dir.path().join(format!("{TEMP_PREFIX}{dead}-0-a.jpg"));
        let live = dir.path().join(format!("{TEMP_PREFIX}1-0-b.jpg"));
        let user = dir.path().join("c.jpg");
        for f in [&gone, &live, &user] {
            std::fs::write(f, b"x").expect("write");
        }
        assert_eq!(sweep(dir.path(), &Default::default()), 1);
        assert!(!gone.exists() && live.exists() && user.exists());
    }
}
