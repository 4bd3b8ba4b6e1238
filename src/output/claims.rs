//! Output claims: within one run no two items (of one writer or of two) may
//! write the same file, so a name collision fails the second item instead of
//! silently replacing the first one's output. Every claim is appended to a log in the run's private
//! folder; in memory each process keeps only two 64-bit hashes per claim, so
//! a run of a million files stays small, and the log gives the first owner's
//! name when a collision is found.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use std::os::unix::ffi::OsStrExt;

/// The output paths claimed in one run.
#[derive(Debug, Clone, Default)]
pub enum Claims {
    /// Not checked (a stage built outside a run).
    #[default]
    Unchecked,
    /// Every claiming stage runs in this process: the log is only read back
    /// to name the owner of a collision.
    Local(Arc<Ledger>),
    /// Shared by conveyor and its workers: the log is read and extended under
    /// an exclusive file lock, each process catching up on the others'
    /// claims first.
    Shared(Arc<Ledger>),
}

#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Output hash -> source hash, of every claim this process has seen.
    seen: HashMap<u64, u64>,
    log: Option<BufWriter<File>>,
    /// How much of the log this process has read (shared ledgers).
    read: u64,
    /// The log could not be opened: claims go unchecked rather than fail.
    broken: bool,
}

/// One claim in the log. Names are kept as bytes (file names need not be
/// UTF-8), written as JSON arrays of numbers.
#[derive(Serialize, Deserialize)]
struct Entry {
    out: Vec<u8>,
    /// The owner: stage name, a NUL, the source's path.
    src: Vec<u8>,
}

fn hash(s: &[u8]) -> u64 {
    // The same binary in every process of a run, so the same hashes.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// A claim refused: another item of the run owns the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The owner's source path, as stored.
    pub source: PathBuf,
    /// The owner's stage.
    pub stage: String,
}

fn owner_key(stage: &str, source: &Path) -> Vec<u8> {
    let mut k = stage.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(source.as_os_str().as_bytes());
    k
}

fn split_owner(key: &[u8]) -> Collision {
    let (stage, source) = match key.iter().position(|&b| b == 0) {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => (&key[..0], key),
    };
    Collision {
        stage: String::from_utf8_lossy(stage).into_owned(),
        source: PathBuf::from(std::ffi::OsStr::from_bytes(source)),
    }
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

const LOG_NAME: &str = "claims.jsonl";

impl Claims {
    /// Claims of a run whose writers all run in this process, logged in `dir`.
    pub fn local(dir: &Path) -> Claims {
        Claims::Local(Arc::new(Ledger::new(dir)))
    }

    /// Claims kept in `dir`, shared with the run's other processes.
    pub fn shared(dir: &Path) -> Claims {
        Claims::Shared(Arc::new(Ledger::new(dir)))
    }

    /// The folder of a shared ledger, to hand to workers.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Claims::Shared(l) => Some(&l.dir),
            _ => None,
        }
    }

    /// Claim `output` for `source` on behalf of `stage`. Fails, naming the
    /// first owner, when another item of the run (through this writer or
    /// another one) has claimed the same file; the same item of the same
    /// stage again (a retry) still owns its output. `output` must be
    /// absolute and resolved (see [`crate::inputs::resolve`]).
    pub fn claim(&self, output: &Path, stage: &str, source: &Path) -> Result<(), Collision> {
        let (ledger, shared) = match self {
            Claims::Unchecked => return Ok(()),
            Claims::Local(l) => (l, false),
            Claims::Shared(l) => (l, true),
        };
        let out = output.as_os_str().as_bytes();
        match ledger.claim(out, &owner_key(stage, source), shared) {
            Some(owner) => Err(split_owner(&owner)),
            None => Ok(()),
        }
    }
}

impl Ledger {
    fn new(dir: &Path) -> Ledger {
        Ledger {
            dir: dir.to_path_buf(),
            state: Mutex::default(),
        }
    }

    /// The other source that already owns `out`, if any; otherwise `out`
    /// is now `src`'s.
    fn claim(&self, out: &[u8], src: &[u8], shared: bool) -> Option<Vec<u8>> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        if state.log.is_none() && !state.broken {
            match std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(self.dir.join(LOG_NAME))
            {
                // Shared ledgers write each line at once, under the lock.
                Ok(f) => {
                    state.log = Some(BufWriter::with_capacity(if shared { 0 } else { 8192 }, f))
                }
                Err(_) => state.broken = true,
            }
        }
        let fd = state.log.as_ref()?.get_ref().as_raw_fd();
        let _unlock = if shared {
            // SAFETY: locking a descriptor this process holds open.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
                return None;
            }
            state.catch_up();
            Some(Unlock(fd))
        } else {
            None
        };
        let (ho, hs) = (hash(out), hash(src));
        match state.seen.get(&ho) {
            Some(&owner) if owner == hs => None,
            // Equal hashes are checked against the log: the names decide.
            Some(_) => match state.owner_in_log(out) {
                Some(owner) if owner != src => Some(owner),
                _ => None,
            },
            None => {
                state.seen.insert(ho, hs);
                state.append(out, src);
                None
            }
        }
    }
}

impl State {
    fn append(&mut self, out: &[u8], src: &[u8]) {
        let entry = Entry {
            out: out.to_vec(),
            src: src.to_vec(),
        };
        if let (Some(log), Ok(mut line)) = (self.log.as_mut(), serde_json::to_vec(&entry)) {
            line.push(b'\n');
            let _ = log.write_all(&line);
        }
    }

    /// Read what other processes appended since the last look.
    fn catch_up(&mut self) {
        let Some(log) = self.log.as_mut() else { return };
        let mut f = log.get_ref();
        let mut fresh = Vec::new();
        if f.seek(SeekFrom::Start(self.read)).is_err() || f.read_to_end(&mut fresh).is_err() {
            return;
        }
        self.read += fresh.len() as u64;
        for line in fresh.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(e) = serde_json::from_slice::<Entry>(line) {
                self.seen.entry(hash(&e.out)).or_insert(hash(&e.src));
            }
        }
    }

    /// The first source the log names for `out`.
    fn owner_in_log(&mut self, out: &[u8]) -> Option<Vec<u8>> {
        let log = self.log.as_mut()?;
        log.flush().ok()?;
        let mut f = log.get_ref();
        let mut all = Vec::new();
        f.seek(SeekFrom::Start(0)).ok()?;
        f.read_to_end(&mut all).ok()?;
        all.split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Entry>(l).ok())
            .find(|e| e.out == out)
            .map(|e| e.src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_processes_sharing_a_log_see_each_others_claims() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Two ledgers on one folder stand for conveyor and a worker.
        let (a, b) = (Claims::shared(dir.path()), Claims::shared(dir.path()));
        let out = dir.path().join("out/x.jpg");
        a.claim(&out, "save", Path::new("in/x.png"))
            .expect("first claim");
        b.claim(&out, "save", Path::new("in/x.png"))
            .expect("a retry elsewhere");
        let err = b
            .claim(&out, "save", Path::new("in/x.jpg"))
            .expect_err("a second source");
        assert_eq!(err.source, Path::new("in/x.png"));
        // Another writer of the same source is another owner.
        let err = b
            .claim(&out, "copy", Path::new("in/x.png"))
            .expect_err("a second writer");
        assert_eq!(err.stage, "save");
        // A name with a newline can't break the log's lines.
        let odd = dir.path().join("out/a\nb.jpg");
        b.claim(&odd, "save", Path::new("in/a\nb.png"))
            .expect("claim");
        let err = a
            .claim(&odd, "save", Path::new("in/other.png"))
            .expect_err("taken");
        assert_eq!(err.source, Path::new("in/a\nb.png"));
        a.claim(&dir.path().join("out/y.jpg"), "save", Path::new("in/y.png"))
            .expect("another file");
    }

    #[test]
    fn names_that_are_not_utf8_stay_apart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = Claims::local(dir.path());
        let name = |b: u8| {
            dir.path()
                .join(std::ffi::OsStr::from_bytes(&[b'x', b, b'.', b'j']))
        };
        c.claim(&name(0xff), "save", Path::new("in/a"))
            .expect("first");
        c.claim(&name(0xfe), "save", Path::new("in/b"))
            .expect("a different name");
    }

    #[test]
    fn local_claims_refuse_a_second_source_and_name_the_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = Claims::local(dir.path());
        for i in 0..1000 {
            c.claim(
                Path::new(&format!("/out/{i}.jpg")),
                "save",
                Path::new(&format!("in/{i}.png")),
            )
            .expect("distinct outputs");
        }
        c.claim(Path::new("/out/7.jpg"), "save", Path::new("in/7.png"))
            .expect("retry");
        let err = c
            .claim(Path::new("/out/7.jpg"), "save", Path::new("in/7.jpg"))
            .expect_err("second source");
        assert_eq!(err.source, Path::new("in/7.png"));
    }
}
