//! What a run reads: the folders its sources walk, how they choose files
//! (one selector shared by `scan` and the output guard, so "would the scan
//! read this file?" has exactly one answer), and the identities (device,
//! inode) of every file found, so that no writer can replace an input
//! through another name.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// How a source chooses files below its root: the options of `scan` that
/// decide scope, in a form that can be sent to worker processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSpec {
    /// The stage that reads this scope, for messages.
    pub stage: String,
    /// The folder walked, as written.
    pub root: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub hidden: bool,
    pub case_sensitive: bool,
    pub max_depth: Option<usize>,
    pub follow_links: bool,
    /// Files named on the command line (or in `paths`), by name, directly
    /// in `root`: the scope is those files alone, whatever the globs say.
    #[serde(default)]
    pub only: Option<Vec<PathBuf>>,
}

/// A glob could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobError(pub String);

impl std::fmt::Display for GlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GlobError {}

fn globset(globs: &[String], case_sensitive: bool) -> Result<GlobSet, GlobError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = GlobBuilder::new(g)
            .case_insensitive(!case_sensitive)
            .literal_separator(false)
            .build()
            .map_err(|e| GlobError(format!("invalid glob `{g}`: {}", e.kind())))?;
        b.add(glob);
    }
    b.build().map_err(|e| GlobError(e.to_string()))
}

/// A path relative to a root, as globs see it: components joined by `/`.
pub fn rel_string(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `path` made absolute, with `.` and `..` resolved against the real folders
/// that exist (symlinks included) and the rest taken as written: where a
/// file would land, even in folders not created yet.
pub fn resolve(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Walk up to the deepest ancestor that exists and resolve it for real.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for c in rest.iter().rev() {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// A compiled scope: decides which files below a root a source takes.
#[derive(Debug, Clone)]
pub struct Scope {
    pub spec: ScopeSpec,
    /// The root resolved (absolute, symlinks followed).
    pub root: PathBuf,
    include: Option<GlobSet>,
    exclude: GlobSet,
    /// Folders below the root that the run writes into: never walked.
    skip: Vec<PathBuf>,
    /// `spec.only` as a set, for scopes of many named files.
    only: Option<HashSet<PathBuf>>,
}

impl Scope {
    pub fn new(spec: ScopeSpec) -> Result<Scope, GlobError> {
        let include = if spec.include.is_empty() {
            None
        } else {
            Some(globset(&spec.include, spec.case_sensitive)?)
        };
        let exclude = globset(&spec.exclude, spec.case_sensitive)?;
        let only = spec
            .only
            .as_ref()
            .map(|names| names.iter().cloned().collect());
        Ok(Scope {
            root: resolve(&spec.root),
            only,
            spec,
            include,
            exclude,
            skip: Vec::new(),
        })
    }

    /// Output folders of the run, never walked. The root itself is walked
    /// even when a writer writes there (the guard then keeps the writer off
    /// every file the scan would take).
    pub fn skipping(mut self, dirs: &[PathBuf]) -> Scope {
        self.skip = dirs
            .iter()
            .map(|d| resolve(d))
            .filter(|d| *d != self.root)
            .collect();
        self
    }

    /// The output folders this scope leaves out.
    pub fn skipped(&self) -> &[PathBuf] {
        &self.skip
    }

    /// Whether the walk goes into folder `rel` (relative to the root):
    /// hidden, excluded and output folders are left out.
    pub fn enters_dir(&self, rel: &Path) -> bool {
        if !self.spec.hidden
            && rel
                .file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
        {
            return false;
        }
        if self.exclude.is_match(rel_string(rel)) {
            return false;
        }
        if !self.skip.is_empty() {
            let abs = resolve(&self.root.join(rel));
            if self.skip.contains(&abs) {
                return false;
            }
        }
        true
    }

    /// Whether a file at `rel` (relative to the root) is taken, its folders
    /// aside.
    pub fn takes_file(&self, rel: &Path) -> bool {
        if let Some(only) = &self.only {
            return only.contains(rel);
        }
        if !self.spec.hidden
            && rel
                .file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
        {
            return false;
        }
        let s = rel_string(rel);
        if self.exclude.is_match(&s) {
            return false;
        }
        self.include.as_ref().is_none_or(|inc| inc.is_match(&s))
    }

    /// Whether a file at `path` (absolute and resolved, see [`resolve`])
    /// is one this scope's walk takes: found already, or to be found.
    pub fn would_find(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        // Resolved paths have no `..`; one that slipped through is not
        // below the root.
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return false;
        }
        let depth = rel.components().count();
        if depth == 0 || self.spec.max_depth.is_some_and(|d| depth > d) {
            return false;
        }
        let mut dir = PathBuf::new();
        let parts: Vec<_> = rel.components().collect();
        for c in &parts[..parts.len() - 1] {
            dir.push(c.as_os_str());
            if !self.enters_dir(&dir) {
                return false;
            }
        }
        self.takes_file(rel)
    }
}

/// Identity of a file: the same for every name (hard link) it has.
pub type FileId = (u64, u64);

pub fn file_id(meta: &std::fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// The identities of every file the run's sources found. Shared with worker
/// processes through an append-only log in the run's folder: 16 bytes per
/// file, each written with one `write` on an `O_APPEND` descriptor, so lines
/// of different processes never interleave.
#[derive(Debug, Clone, Default)]
pub struct InputSet {
    inner: Arc<Mutex<SetState>>,
}

#[derive(Debug, Default)]
struct SetState {
    ids: HashSet<FileId>,
    log: Option<File>,
    read: u64,
}

const LOG_NAME: &str = "inputs.bin";

impl InputSet {
    /// A set kept in this process only.
    pub fn local() -> InputSet {
        InputSet::default()
    }

    /// A set shared through `dir` with the run's other processes.
    pub fn shared(dir: &Path) -> std::io::Result<InputSet> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(dir.join(LOG_NAME))?;
        Ok(InputSet {
            inner: Arc::new(Mutex::new(SetState {
                log: Some(log),
                ..SetState::default()
            })),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SetState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A file the run reads (or a file a move made out of one).
    pub fn record(&self, id: FileId) {
        let mut s = self.state();
        if s.ids.insert(id)
            && let Some(log) = s.log.as_mut()
        {
            let mut rec = [0u8; 16];
            rec[..8].copy_from_slice(&id.0.to_le_bytes());
            rec[8..].copy_from_slice(&id.1.to_le_bytes());
            // One write of 16 bytes on an append descriptor: atomic.
            let _ = log.write_all(&rec);
        }
    }

    /// Whether `id` is a file the run read.
    pub fn contains(&self, id: FileId) -> bool {
        let mut s = self.state();
        if s.ids.contains(&id) {
            return true;
        }
        s.catch_up();
        s.ids.contains(&id)
    }

    pub fn len(&self) -> usize {
        self.state().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SetState {
    /// Read what other processes recorded since the last look.
    fn catch_up(&mut self) {
        let Some(log) = self.log.as_mut() else { return };
        let mut fresh = Vec::new();
        if log.seek(SeekFrom::Start(self.read)).is_err() || log.read_to_end(&mut fresh).is_err() {
            return;
        }
        let whole = fresh.len() - fresh.len() % 16;
        self.read += whole as u64;
        for rec in fresh[..whole].chunks_exact(16) {
            let mut dev = [0u8; 8];
            let mut ino = [0u8; 8];
            dev.copy_from_slice(&rec[..8]);
            ino.copy_from_slice(&rec[8..]);
            self.ids
                .insert((u64::from_le_bytes(dev), u64::from_le_bytes(ino)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(include: &[&str], exclude: &[&str], root: &Path) -> Scope {
        Scope::new(ScopeSpec {
            stage: "scan".into(),
            root: root.to_path_buf(),
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..ScopeSpec::default()
        })
        .expect("globs")
    }

    #[test]
    fn would_find_follows_the_scan_rules() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = resolve(dir.path());
        let s =
            scope(&["**/*.jpg"], &["skip/**"], &root).skipping(&[root.join("out"), root.clone()]);
        assert!(s.would_find(&root.join("a.jpg")));
        assert!(s.would_find(&root.join("x/y/a.JPG")), "case-insensitive");
        assert!(!s.would_find(&root.join("a.png")));
        assert!(!s.would_find(&root.join(".hid/a.jpg")), "hidden folder");
        assert!(!s.would_find(&root.join("skip/a.jpg")), "excluded");
        assert!(!s.would_find(&root.join("out/a.jpg")), "output folder");
        assert!(!s.would_find(&resolve(&dir.path().join("../elsewhere/a.jpg"))));
        assert!(
            !s.would_find(&root.join("../elsewhere/a.jpg")),
            "unresolved"
        );
        // `..` through a real folder lands back inside.
        std::fs::create_dir_all(root.join("x")).expect("mkdir");
        assert!(s.would_find(&resolve(&root.join("x/../b.jpg"))));
    }

    #[test]
    fn resolve_handles_folders_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = dir.path().canonicalize().expect("canonical");
        assert_eq!(resolve(&dir.path().join("a/b/../c")), real.join("a/c"));
        std::os::unix::fs::symlink(&real, real.join("link")).expect("symlink");
        assert_eq!(
            resolve(&real.join("link/new/x.jpg")),
            real.join("new/x.jpg")
        );
    }

    #[test]
    fn shared_sets_see_each_others_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (
            InputSet::shared(dir.path()).expect("a"),
            InputSet::shared(dir.path()).expect("b"),
        );
        a.record((1, 2));
        assert!(b.contains((1, 2)));
        assert!(!b.contains((2, 1)));
        b.record((3, 4));
        assert!(a.contains((3, 4)));
    }
}
