//! The one output guard: every file conveyor writes for the user (`write`,
//! `copy` and its moves, `exec`'s `{out}`, `manifest`, `contact_sheet`) is
//! placed through here, so the rules that keep a user's originals safe live
//! in one place:
//!
//! - a destination is never a file the run's scans found or would find,
//!   whatever name leads to it (`..`, symlinked folders, hard links);
//! - the folders below a writer's `dir` are walked with `O_NOFOLLOW`, so a
//!   symlinked folder can't carry a write somewhere else;
//! - two items (of one writer or of two) never claim the same file;
//! - files are written to a temp name and published with
//!   `renameat2(RENAME_NOREPLACE)`, so an existing file is only replaced on
//!   purpose, after the checks, and never half-written.

pub mod claims;
pub mod temp;

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub use claims::{Claims, Collision};

use crate::inputs::{FileId, InputSet, Scope, ScopeSpec, resolve};
use crate::item::escape_path;

/// Why a file could not be placed. The texts name both paths involved, in
/// the user's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputError {
    /// The destination is (or would be) read by the run.
    IsInput { dest: PathBuf, scan: String },
    /// The destination is the item's own source, or another name of a file
    /// the run read.
    SameFileAsInput {
        dest: PathBuf,
        input: Option<PathBuf>,
    },
    /// The destination has other hard links: it may be another name of an
    /// original.
    HardLinked { dest: PathBuf, links: u64 },
    /// A folder between `dir` and the file is a symbolic link.
    ThroughSymlink { dest: PathBuf, link: PathBuf },
    /// The destination exists and is a symbolic link.
    DestIsLink { dest: PathBuf },
    /// Something that is not a regular file is in the way.
    NotAFile { dest: PathBuf },
    /// Another item of the run owns the destination.
    Claimed {
        dest: PathBuf,
        owner: PathBuf,
        stage: String,
        same_stage: bool,
    },
    /// The destination exists and this writer may not replace it.
    AlreadyExists { dest: PathBuf },
    /// A command did not write the file it was given.
    Missing { dest: PathBuf },
    /// A name that can't be a path inside `dir`.
    BadName { name: PathBuf },
    /// The system refused (full disk, permissions ...).
    Io {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use OutputError::*;
        match self {
            IsInput { dest, scan } => write!(
                f,
                "refusing to write {}: it is an input of this run (stage `{scan}` reads it)",
                escape_path(dest)
            ),
            SameFileAsInput {
                dest,
                input: Some(input),
            } => write!(
                f,
                "refusing to write {}: it is the same file as the input {}",
                escape_path(dest),
                escape_path(input)
            ),
            SameFileAsInput { dest, input: None } => write!(
                f,
                "refusing to replace {}: it is another name (a hard link) of a file this run reads",
                escape_path(dest)
            ),
            HardLinked { dest, links } => write!(
                f,
                "refusing to replace {}: it has {links} names (hard links), and one may be an original",
                escape_path(dest)
            ),
            ThroughSymlink { dest, link } => write!(
                f,
                "refusing to write {}: the folder {} is a symbolic link, and outputs never follow links out of their folder",
                escape_path(dest),
                escape_path(link)
            ),
            DestIsLink { dest } => write!(
                f,
                "refusing to replace {}: it is a symbolic link",
                escape_path(dest)
            ),
            NotAFile { dest } => write!(f, "{} exists and is not a file", escape_path(dest)),
            Claimed {
                dest,
                owner,
                stage,
                same_stage,
            } => {
                if *same_stage {
                    write!(
                        f,
                        "{} is also the output of {}: two inputs would write the same file (set `overwrite = true` to let the last one win)",
                        escape_path(dest),
                        escape_path(owner)
                    )
                } else {
                    write!(
                        f,
                        "{} is also written by stage `{stage}` (for {}): two writers would write the same file",
                        escape_path(dest),
                        escape_path(owner)
                    )
                }
            }
            AlreadyExists { dest } => write!(f, "{} already exists", escape_path(dest)),
            Missing { dest } => write!(
                f,
                "the command did not write {{out}} ({})",
                escape_path(dest)
            ),
            BadName { name } => write!(
                f,
                "`{}` is not a file name inside the output folder",
                escape_path(name)
            ),
            Io { what, path, reason } => write!(f, "cannot {what} {}: {reason}", escape_path(path)),
        }
    }
}

impl std::error::Error for OutputError {}

fn io_err(what: &'static str, path: &Path, e: &std::io::Error) -> OutputError {
    OutputError::Io {
        what,
        path: path.to_path_buf(),
        reason: plain_io_reason(e),
    }
}

/// The system's reason without Rust's "(os error N)" tail.
pub fn plain_io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// When an existing file may be replaced by a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Never: an existing file fails the item with "already exists".
    Never,
    /// A file that is not an input of the run (an earlier run's output).
    Outputs,
}

/// What a run reads, and who has claimed what: shared by every writer of the
/// run, in this process and (through the run's folder) in its workers.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set once the run's sources are built.
    scopes: std::sync::OnceLock<Vec<Scope>>,
    inputs: InputSet,
    claims: Claims,
    /// Where scopes are written for workers (a shared guard).
    run_dir: Option<PathBuf>,
}

const SCOPES_FILE: &str = "scopes.json";

/// The folder, inside each output folder, of conveyor's own bookkeeping
/// (resume journals).
pub const STATE_DIR: &str = ".conveyor-state";

/// The guard's view of one destination, once its folder is open.
pub struct Dest {
    /// The folder the file goes in, opened without following links.
    dir: OwnedFd,
    /// The file's name in that folder.
    name: OsString,
    /// Where the file lands, absolute and resolved (for checks).
    pub path: PathBuf,
    /// The same place as the user wrote it (`dir` joined with the name),
    /// for messages, reports and journals.
    pub shown: PathBuf,
}

/// A request to place one file.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The writing stage, for claims and messages.
    pub stage: &'a str,
    /// The item's source file, if the output belongs to one.
    pub source: Option<&'a Path>,
    /// The writer's folder (created if missing; may itself be a link).
    pub dir: &'a Path,
    /// The file's path inside `dir`, from a template.
    pub rel: &'a Path,
    pub replace: Replace,
    /// Claim the destination for this item (off for gathering files).
    pub claim: bool,
}

impl Guard {
    /// A guard that checks nothing but the folder chain (a stage built
    /// outside a run, e.g. in a unit test).
    pub fn unchecked() -> Guard {
        Guard::default()
    }

    /// The guard of a run whose writers all run in this process; claims
    /// are logged in `run_dir`.
    pub fn local(run_dir: &Path) -> Guard {
        Guard {
            inner: Arc::new(Inner {
                claims: Claims::local(run_dir),
                ..Inner::default()
            }),
        }
    }

    /// The guard of a run shared with its worker processes through
    /// `run_dir`.
    pub fn shared(run_dir: &Path) -> std::io::Result<Guard> {
        Ok(Guard {
            inner: Arc::new(Inner {
                inputs: InputSet::shared(run_dir)?,
                claims: Claims::shared(run_dir),
                run_dir: Some(run_dir.to_path_buf()),
                ..Inner::default()
            }),
        })
    }

    /// Say which files the run's sources read. Called once, before any
    /// item moves; a shared guard writes them for its workers.
    pub fn set_scopes(&self, scopes: Vec<Scope>) -> std::io::Result<()> {
        if let Some(dir) = &self.inner.run_dir {
            let specs: Vec<(ScopeSpec, Vec<PathBuf>)> = scopes
                .iter()
                .map(|s| (s.spec.clone(), s.skipped().to_vec()))
                .collect();
            let json = serde_json::to_vec(&specs).map_err(std::io::Error::other)?;
            std::fs::write(dir.join(SCOPES_FILE), json)?;
        }
        let _ = self.inner.scopes.set(scopes);
        Ok(())
    }

    /// A worker's guard: what conveyor wrote in `run_dir`.
    pub fn join(run_dir: &Path) -> std::io::Result<Guard> {
        let json = std::fs::read(run_dir.join(SCOPES_FILE))?;
        let specs: Vec<(ScopeSpec, Vec<PathBuf>)> =
            serde_json::from_slice(&json).map_err(std::io::Error::other)?;
        let mut scopes = Vec::new();
        for (spec, skip) in specs {
            scopes.push(
                Scope::new(spec)
                    .map_err(std::io::Error::other)?
                    .skipping(&skip),
            );
        }
        let guard = Guard {
            inner: Arc::new(Inner {
                inputs: InputSet::shared(run_dir)?,
                claims: Claims::shared(run_dir),
                ..Inner::default()
            }),
        };
        let _ = guard.inner.scopes.set(scopes);
        Ok(guard)
    }

    /// Files the run reads, recorded as its sources find them.
    pub fn inputs(&self) -> &InputSet {
        &self.inner.inputs
    }

    /// The scope that would read `path` (absolute, resolved), if any.
    pub fn reader_of(&self, path: &Path) -> Option<&Scope> {
        self.inner
            .scopes
            .get()
            .and_then(|scopes| scopes.iter().find(|s| s.would_find(path)))
    }

    /// Check where `req` would land, without creating or writing anything:
    /// for dry runs and plans. Returns the resolved path.
    pub fn plan(&self, req: &Request<'_>) -> Result<PathBuf, OutputError> {
        let rel = checked_rel(req.rel)?;
        let shown = req.dir.join(rel);
        let path = resolve(&shown);
        self.check_path(&path, &shown)?;
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            self.check_existing(&shown, &meta, req)?;
        }
        self.claim(&path, &shown, req)?;
        Ok(shown)
    }

    /// Open the destination's folder (creating folders as needed, following
    /// no links below `dir`) and check the destination against the run's
    /// inputs and claims.
    pub fn open(&self, req: &Request<'_>) -> Result<Dest, OutputError> {
        let rel = checked_rel(req.rel)?;
        let dest = open_chain(req.dir, rel)?;
        self.check_path(&dest.path, &dest.shown)?;
        if let Some(meta) = dest.existing()? {
            self.check_existing(&dest.shown, &meta, req)?;
        }
        self.claim(&dest.path, &dest.shown, req)?;
        Ok(dest)
    }

    fn check_path(&self, path: &Path, shown: &Path) -> Result<(), OutputError> {
        if let Some(scope) = self.reader_of(path) {
            return Err(OutputError::IsInput {
                dest: shown.to_path_buf(),
                scan: scope.spec.stage.clone(),
            });
        }
        Ok(())
    }

    /// Checks on a file already at the destination.
    fn check_existing(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        req: &Request<'_>,
    ) -> Result<(), OutputError> {
        use std::os::unix::fs::MetadataExt;
        let dest = path.to_path_buf();
        let ft = meta.file_type();
        if ft.is_symlink() {
            return Err(OutputError::DestIsLink { dest });
        }
        if !ft.is_file() {
            return Err(OutputError::NotAFile { dest });
        }
        let id: FileId = crate::inputs::file_id(meta);
        let own_source = req
            .source
            .and_then(|s| std::fs::metadata(s).ok())
            .is_some_and(|m| crate::inputs::file_id(&m) == id);
        if own_source || self.inner.inputs.contains(id) {
            return Err(OutputError::SameFileAsInput {
                dest,
                input: req.source.filter(|_| own_source).map(Path::to_path_buf),
            });
        }
        if meta.nlink() > 1 {
            return Err(OutputError::HardLinked {
                dest,
                links: meta.nlink(),
            });
        }
        Ok(())
    }

    fn claim(&self, path: &Path, shown: &Path, req: &Request<'_>) -> Result<(), OutputError> {
        if !req.claim {
            return Ok(());
        }
        let source = req.source.unwrap_or(Path::new(""));
        self.inner
            .claims
            .claim(path, req.stage, source)
            .map_err(|c| OutputError::Claimed {
                dest: shown.to_path_buf(),
                same_stage: c.stage == req.stage,
                owner: c.source,
                stage: c.stage,
            })
    }

    /// Place `bytes` at the destination of `req`.
    pub fn place_bytes(&self, req: &Request<'_>, bytes: &[u8]) -> Result<PathBuf, OutputError> {
        let dest = self.open(req)?;
        let tmp = dest.create_temp()?;
        let written = (|| {
            let mut f = tmp.file()?;
            f.write_all(bytes)
                .map_err(|e| io_err("write", &tmp.path, &e))?;
            Ok(())
        })();
        match written {
            Ok(()) => self.publish(&dest, tmp, req, false),
            Err(e) => {
                tmp.discard();
                Err(e)
            }
        }
    }

    /// Place a gathering stage's one file at `path` (a manifest, a contact
    /// sheet): the same checks, its folder being the path's parent.
    pub fn place_file(
        &self,
        stage: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<PathBuf, OutputError> {
        let (dir, name) = split_file(path)?;
        self.place_bytes(&gathering(stage, dir, name), bytes)
    }

    /// Check where [`Guard::place_file`] would write, for a dry run.
    pub fn plan_file(&self, stage: &str, path: &Path) -> Result<PathBuf, OutputError> {
        let (dir, name) = split_file(path)?;
        self.plan(&gathering(stage, dir, name))
    }

    /// Place a file that `fill` writes at the temp path it is given (an
    /// external command's `{out}`). `fill` returning an error discards it.
    pub fn place_with<E: From<OutputError>>(
        &self,
        req: &Request<'_>,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        let dest = self.open(req)?;
        let tmp = dest.reserve_temp();
        if let Err(e) = fill(&tmp.path) {
            tmp.discard();
            return Err(e);
        }
        // The command may have replaced the temp name with a link or a
        // folder: only a regular file is published.
        match std::fs::symlink_metadata(dest.proc_path(&tmp.name)) {
            Ok(m) if m.file_type().is_file() => Ok(self.publish(&dest, tmp, req, false)?),
            Ok(_) => {
                let path = tmp.path.clone();
                tmp.discard();
                Err(OutputError::NotAFile { dest: path }.into())
            }
            Err(_) => Err(OutputError::Missing {
                dest: dest.shown.clone(),
            }
            .into()),
        }
    }

    /// Move `source` to the destination of `req`: a rename that never
    /// replaces anything, or, across file systems, a copy made durable
    /// (fsync of the file and its folder) before the source is removed.
    pub fn move_file(&self, req: &Request<'_>, source: &Path) -> Result<PathBuf, OutputError> {
        let dest = self.open(req)?;
        // A link is not moved as a link (a relative one would dangle): the
        // file it points to is copied, then the link goes, its target stays.
        let is_link = std::fs::symlink_metadata(source)
            .map_err(|e| io_err("read", source, &e))?
            .file_type()
            .is_symlink();
        if is_link {
            return self.copy_then_remove(&dest, req, source);
        }
        let from = cstring(source)?;
        // SAFETY: both names are NUL-terminated strings that outlive the
        // call; the folder descriptor is open.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                dest.dir.as_raw_fd(),
                cstring(Path::new(&dest.name))?.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            dest.sync_dir();
            return Ok(dest.shown);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) => Err(OutputError::AlreadyExists { dest: dest.shown }),
            Some(libc::EXDEV) | Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                self.copy_then_remove(&dest, req, source)
            }
            _ => Err(io_err("move", source, &e)),
        }
    }

    /// A move by copy: the copy is made durable (file and folder synced)
    /// before the source goes.
    fn copy_then_remove(
        &self,
        dest: &Dest,
        req: &Request<'_>,
        source: &Path,
    ) -> Result<PathBuf, OutputError> {
        let tmp = dest.create_temp()?;
        let copied = (|| {
            let mut out = tmp.file()?;
            let mut input = File::open(source).map_err(|e| io_err("read", source, &e))?;
            std::io::copy(&mut input, &mut out).map_err(|e| io_err("write", &tmp.path, &e))?;
            out.sync_all().map_err(|e| io_err("write", &tmp.path, &e))?;
            Ok(())
        })();
        if let Err(e) = copied {
            tmp.discard();
            return Err(e);
        }
        let req = Request {
            replace: Replace::Never,
            ..*req
        };
        let placed = self.publish(dest, tmp, &req, true)?;
        // The copy is the only one once the source goes: it counts as an
        // input from now on.
        if let Ok(m) = std::fs::symlink_metadata(dest.proc_path(&dest.name)) {
            self.inner.inputs.record(crate::inputs::file_id(&m));
        }
        std::fs::remove_file(source).map_err(|e| io_err("remove", source, &e))?;
        Ok(placed)
    }

    /// Give the temp file its final name: never over an existing file
    /// unless `req.replace` allows it and the checks pass again.
    fn publish(
        &self,
        dest: &Dest,
        tmp: Temp<'_>,
        req: &Request<'_>,
        durable: bool,
    ) -> Result<PathBuf, OutputError> {
        let result = (|| {
            if durable {
                dest.sync_dir();
            }
            match dest.rename_from(&tmp.name, false) {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if req.replace == Replace::Never {
                        return Err(OutputError::AlreadyExists {
                            dest: dest.shown.clone(),
                        });
                    }
                    // Checked again now: the file there may be new.
                    if let Some(meta) = dest.existing()? {
                        self.check_existing(&dest.shown, &meta, req)?;
                    }
                    dest.rename_from(&tmp.name, true)
                        .map_err(|e| io_err("write", &dest.shown, &e))
                }
                Err(e) => Err(io_err("write", &dest.shown, &e)),
            }
        })();
        match result {
            Ok(()) => {
                tmp.keep();
                if durable {
                    dest.sync_dir();
                }
                Ok(dest.shown.clone())
            }
            Err(e) => {
                tmp.discard();
                Err(e)
            }
        }
    }
}

/// Write one of conveyor's own files (a journal being compacted): whole or
/// not at all, replacing the old one. Not for the user's outputs.
pub fn write_state_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = temp::temp_path_for(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn split_file(path: &Path) -> Result<(&Path, &Path), OutputError> {
    let name = path.file_name().ok_or_else(|| OutputError::BadName {
        name: path.to_path_buf(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, Path::new(name)))
}

fn gathering<'a>(stage: &'a str, dir: &'a Path, name: &'a Path) -> Request<'a> {
    Request {
        stage,
        source: None,
        dir,
        rel: name,
        replace: Replace::Outputs,
        claim: true,
    }
}

/// A template's result, checked to be plain names below `dir`.
fn checked_rel(rel: &Path) -> Result<&Path, OutputError> {
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || rel.as_os_str().is_empty() {
        return Err(OutputError::BadName {
            name: rel.to_path_buf(),
        });
    }
    Ok(rel)
}

fn cstring(p: &Path) -> Result<CString, OutputError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| OutputError::BadName {
        name: p.to_path_buf(),
    })
}

fn open_dir_at(parent: Option<&OwnedFd>, name: &OsStr, nofollow: bool) -> std::io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes()).map_err(std::io::Error::other)?;
    let mut flags = libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let at = parent.map_or(libc::AT_FDCWD, |p| p.as_raw_fd());
    // SAFETY: `c` is NUL-terminated and outlives the call; `at` is open.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open `dir` (created if missing; the user's own links in it are followed),
/// then each folder of `rel` below it without following links, creating
/// the missing ones.
fn open_chain(dir: &Path, rel: &Path) -> Result<Dest, OutputError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, &e))?;
    let root = dir.canonicalize().map_err(|e| io_err("open", dir, &e))?;
    let mut fd =
        open_dir_at(None, root.as_os_str(), false).map_err(|e| io_err("open", &root, &e))?;
    let mut path = root;
    let mut shown = dir.to_path_buf();
    let parts: Vec<&OsStr> = rel.iter().collect();
    let (name, folders) = parts.split_last().ok_or_else(|| OutputError::BadName {
        name: rel.to_path_buf(),
    })?;
    for part in folders {
        path.push(part);
        shown.push(part);
        let c = CString::new(part.as_bytes()).map_err(|_| OutputError::BadName {
            name: rel.to_path_buf(),
        })?;
        // SAFETY: `c` is NUL-terminated; `fd` is an open folder.
        let made = unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o777) };
        if made != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(io_err("create", &path, &e));
            }
        }
        fd = match open_dir_at(Some(&fd), part, true) {
            Ok(next) => next,
            Err(e) => {
                let dest = dir.join(rel);
                let is_link =
                    std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                return Err(match e.raw_os_error() {
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) if is_link => {
                        OutputError::ThroughSymlink { dest, link: shown }
                    }
                    Some(libc::ENOTDIR) => OutputError::NotAFile { dest: shown },
                    _ => io_err("open", &path, &e),
                });
            }
        };
    }
    path.push(name);
    Ok(Dest {
        dir: fd,
        name: name.to_os_string(),
        path,
        shown: dir.join(rel),
    })
}

impl Dest {
    /// What is at the destination now, links not followed.
    fn existing(&self) -> Result<Option<std::fs::Metadata>, OutputError> {
        match std::fs::symlink_metadata(self.proc_path(&self.name)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", &self.shown, &e)),
        }
    }

    /// A name in the opened folder, reachable by path through the folder's
    /// descriptor (no link between `dir` and here is followed again).
    fn proc_path(&self, name: &OsStr) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(name)
    }

    /// A new, empty temp file beside the destination.
    fn create_temp(&self) -> Result<Temp<'_>, OutputError> {
        let name = temp::temp_name_for(&self.name);
        let c = CString::new(name.as_bytes()).map_err(|_| OutputError::BadName {
            name: PathBuf::from(&name),
        })?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `c` is NUL-terminated; the folder descriptor is open.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), c.as_ptr(), flags, 0o666) };
        let path = self.shown.with_file_name(&name);
        if fd < 0 {
            return Err(io_err("write", &path, &std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(Temp {
            dest: self,
            name,
            path,
            file: Some(file),
            done: false,
        })
    }

    /// A temp name beside the destination, not created: for a command that
    /// writes the file itself.
    fn reserve_temp(&self) -> Temp<'_> {
        let name = temp::temp_name_for(&self.name);
        Temp {
            dest: self,
            path: self.path.with_file_name(&name),
            name,
            file: None,
            done: false,
        }
    }

    /// Rename `from` (in the same folder) to the destination's name.
    fn rename_from(&self, from: &OsStr, replace: bool) -> std::io::Result<()> {
        let (a, b) = (
            CString::new(from.as_bytes()).map_err(std::io::Error::other)?,
            CString::new(self.name.as_bytes()).map_err(std::io::Error::other)?,
        );
        let fd = self.dir.as_raw_fd();
        if replace {
            // SAFETY: NUL-terminated names; `fd` is an open folder.
            return cvt(unsafe { libc::renameat(fd, a.as_ptr(), fd, b.as_ptr()) });
        }
        // SAFETY: as above.
        let rc = unsafe { libc::renameat2(fd, a.as_ptr(), fd, b.as_ptr(), libc::RENAME_NOREPLACE) };
        match cvt(rc) {
            // File systems without RENAME_NOREPLACE: link() also refuses to
            // replace, then the temp name goes.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                // SAFETY: as above.
                cvt(unsafe { libc::linkat(fd, a.as_ptr(), fd, b.as_ptr(), 0) })?;
                // SAFETY: as above.
                unsafe { libc::unlinkat(fd, a.as_ptr(), 0) };
                Ok(())
            }
            other => other,
        }
    }

    fn sync_dir(&self) {
        // SAFETY: fsync on an open descriptor.
        unsafe { libc::fsync(self.dir.as_raw_fd()) };
    }
}

fn cvt(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A temp file beside a destination; removed unless published.
struct Temp<'a> {
    dest: &'a Dest,
    name: OsString,
    /// For messages and for commands that write it by path.
    path: PathBuf,
    file: Option<File>,
    done: bool,
}

impl Temp<'_> {
    fn file(&self) -> Result<&File, OutputError> {
        self.file.as_ref().ok_or_else(|| OutputError::NotAFile {
            dest: self.path.clone(),
        })
    }

    fn keep(mut self) {
        self.done = true;
    }

    fn discard(self) {}
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        self.file.take();
        if !self.done
            && let Ok(c) = CString::new(self.name.as_bytes())
        {
            // SAFETY: NUL-terminated name; the folder descriptor is open.
            unsafe { libc::unlinkat(self.dest.dir.as_raw_fd(), c.as_ptr(), 0) };
        }
    }
}
