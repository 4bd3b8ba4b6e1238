//! Output claims: within one run no two items may write the same file, so a
//! name collision fails the second item instead of silently replacing the
//! first one's output. Claims live in memory when every writer runs in this
//! process, or in a log shared with worker processes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::StageError;

/// The output paths claimed in one run.
#[derive(Debug, Clone, Default)]
pub enum Claims {
    /// Not checked (a stage built outside a run).
    #[default]
    Unchecked,
    /// In memory: every claiming stage runs in this process.
    Memory(Arc<Mutex<HashMap<PathBuf, PathBuf>>>),
    /// An append-only log in a folder private to the run, shared by conveyor
    /// and its workers, read and extended under an exclusive file lock.
    Shared(Arc<SharedLog>),
}

#[derive(Debug)]
pub struct SharedLog {
    dir: PathBuf,
    state: Mutex<LogState>,
}

/// What this process has read of the log so far.
#[derive(Debug, Default)]
struct LogState {
    file: Option<File>,
    read: u64,
    owners: HashMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    out: String,
    src: String,
}

/// Releases a `flock` when dropped.
struct Unlock(i32);

impl Drop for Unlock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor this process holds open.
        unsafe {
            libc::flock(self.0, libc::LOCK_UN);
        }
    }
}

impl Claims {
    /// An empty registry in memory.
    pub fn memory() -> Claims {
        Claims::Memory(Arc::default())
    }

    /// The registry kept in `dir`, shared with other processes of the run.
    pub fn shared(dir: &Path) -> Claims {
        Claims::Shared(Arc::new(SharedLog {
            dir: dir.to_path_buf(),
            state: Mutex::default(),
        }))
    }

    /// The folder of a shared registry, to hand to workers.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Claims::Shared(log) => Some(&log.dir),
            _ => None,
        }
    }

    /// Claim `output` for `source`. Fails, naming the first owner, when
    /// another item of the run has claimed the same file; the same item
    /// again (a retry) still owns its output.
    pub fn claim(&self, output: &Path, source: &Path) -> Result<(), StageError> {
        let absolute = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
        let collision = |owner: &str| {
            StageError(format!(
                "{} is also the output of {owner}: two inputs would write the same file (set `overwrite = true` to let the last one win)",
                output.display()
            ))
        };
        match self {
            Claims::Unchecked => Ok(()),
            Claims::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                let owner = map.entry(absolute).or_insert_with(|| source.to_path_buf());
                if owner == source {
                    Ok(())
                } else {
                    Err(collision(&owner.to_string_lossy()))
                }
            }
            Claims::Shared(log) => {
                let out = absolute.to_string_lossy();
                let src = source.to_string_lossy();
                match log.claim(&out, &src) {
                    Some(owner) if owner != src => Err(collision(&owner)),
                    // Without a working log the write goes on: refusing it
                    // would be worse.
                    _ => Ok(()),
                }
            }
        }
    }
}

impl SharedLog {
    /// The owner of `out` after claiming it for `src` (`src` itself unless
    /// someone was first); `None` when the log can't be used.
    fn claim(&self, out: &str, src: &str) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let LogState { file, read, owners } = &mut *state;
        if file.is_none() {
            *file = std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(self.dir.join("claims.jsonl"))
                .ok();
        }
        let mut f = file.as_ref()?;
        let fd = f.as_raw_fd();
        // SAFETY: locking a descriptor this process holds open.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return None;
        }
        let _unlock = Unlock(fd);
        // Catch up with what other processes claimed since the last look.
        let mut fresh = Vec::new();
        f.seek(SeekFrom::Start(*read)).ok()?;
        f.read_to_end(&mut fresh).ok()?;
        *read += fresh.len() as u64;
        for line in fresh.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(e) = serde_json::from_slice::<Entry>(line) {
                owners.entry(e.out).or_insert(e.src);
            }
        }
        if let Some(owner) = owners.get(out) {
            return Some(owner.clone());
        }
        let entry = Entry {
            out: out.to_string(),
            src: src.to_string(),
        };
        let mut line = serde_json::to_vec(&entry).ok()?;
        line.push(b'\n');
        // Appended whole under the lock, so readers never see half a line;
        // the next catch-up reads it back like any other.
        f.write_all(&line).ok()?;
        Some(src.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_processes_sharing_a_log_see_each_others_claims() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Two registries on one folder stand for conveyor and a worker.
        let (a, b) = (Claims::shared(dir.path()), Claims::shared(dir.path()));
        let out = dir.path().join("out/x.jpg");
        a.claim(&out, Path::new("in/x.png")).expect("first claim");
        b.claim(&out, Path::new("in/x.png"))
            .expect("a retry elsewhere");
        let err = b
            .claim(&out, Path::new("in/x.jpg"))
            .expect_err("a second source");
        assert!(
            err.0.contains("is also the output of in/x.png"),
            "{}",
            err.0
        );
        // A name with a newline can't break the log's lines.
        let odd = dir.path().join("out/a\nb.jpg");
        b.claim(&odd, Path::new("in/a\nb.png")).expect("claim");
        assert!(a.claim(&odd, Path::new("in/other.png")).is_err());
        a.claim(&dir.path().join("out/y.jpg"), Path::new("in/y.png"))
            .expect("another file");
    }

    #[test]
    fn memory_claims_refuse_a_second_source() {
        let c = Claims::memory();
        c.claim(Path::new("out/x.jpg"), Path::new("in/x.png"))
            .expect("first");
        c.claim(Path::new("out/x.jpg"), Path::new("in/x.png"))
            .expect("retry");
        assert!(
            c.claim(Path::new("out/x.jpg"), Path::new("in/x.jpg"))
                .is_err()
        );
    }
}
