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
pub mod commit;
mod error;
mod place;
pub mod temp;

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub use claims::{Claims, Collision};
pub use error::{OutputError, plain_io_reason};
pub use place::Dest;

use error::io_err;
use place::{Temp, cstring, open_chain};

use crate::inputs::{FileId, InputSet, Scope, ScopeSpec, resolve};

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

    /// Record that `output` belongs to `source` through `stage` (an earlier
    /// run's file, from its journal), so that no other source of this run
    /// replaces it under the same name.
    pub fn claim_earlier(&self, output: &Path, stage: &str, source: &Path) {
        let _ = self.inner.claims.claim(&resolve(output), stage, source);
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
        commit::begin();
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
            commit::begin();
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

/// Remove `file`, a file a writer whose folder is `dir` made of a source
/// that is gone (`conveyor watch --prune`; the caller has checked that the
/// journals record it as that source's output and no other's). The same
/// rules as for placing hold: the folders below `dir` are opened without
/// following links, and a file that a scan reads or would read, a link, a
/// folder or a file with other names (hard links) is kept. Returns whether
/// a file was removed (false: it was already gone).
pub fn remove_output(dir: &Path, file: &Path, scopes: &[Scope]) -> Result<bool, OutputError> {
    let kept = |why: &str| OutputError::KeptOutput {
        dest: file.to_path_buf(),
        why: why.to_string(),
    };
    let rel = file
        .strip_prefix(dir)
        .map_err(|_| kept("it is not inside its writer's folder"))?;
    let rel = checked_rel(rel)?;
    // Nothing to remove, and no folder to create on the way.
    if std::fs::symlink_metadata(file).is_err() {
        return Ok(false);
    }
    let dest = open_chain(dir, rel)?;
    if let Some(scope) = scopes.iter().find(|s| s.would_find(&dest.path)) {
        return Err(kept(&format!(
            "it is an input (stage `{}` reads it)",
            scope.spec.stage
        )));
    }
    let Some(meta) = dest.existing()? else {
        return Ok(false);
    };
    if meta.file_type().is_symlink() {
        return Err(kept("it is a symbolic link"));
    }
    if !meta.file_type().is_file() {
        return Err(kept("it is not a file"));
    }
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(kept(&format!(
                "it has {} names (hard links), and one may be an original",
                meta.nlink()
            )));
        }
    }
    let name = cstring(Path::new(&dest.name))?;
    // SAFETY: `name` is NUL-terminated and outlives the call; the folder
    // descriptor is open.
    let rc = unsafe { libc::unlinkat(dest.dir.as_raw_fd(), name.as_ptr(), 0) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::NotFound {
            return Ok(false);
        }
        return Err(io_err("remove", &dest.shown, &e));
    }
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_output_removes_plain_outputs_and_keeps_everything_else() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let base = tmp.path();
        let (input_dir, out) = (base.join("in"), base.join("out"));
        std::fs::create_dir_all(out.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&input_dir).expect("mkdir");
        let write = |p: &Path| std::fs::write(p, b"x").expect("write");
        let scope = Scope::new(ScopeSpec {
            stage: "scan".into(),
            root: input_dir.clone(),
            ..ScopeSpec::default()
        })
        .expect("scope");
        let scopes = [scope];
        write(&out.join("sub/a.jpg"));
        assert_eq!(
            remove_output(&out, &out.join("sub/a.jpg"), &scopes),
            Ok(true)
        );
        assert!(!out.join("sub/a.jpg").exists());
        assert_eq!(
            remove_output(&out, &out.join("sub/a.jpg"), &scopes),
            Ok(false)
        );
        // An input, even when a writer's folder holds it.
        write(&input_dir.join("b.jpg"));
        assert!(remove_output(&input_dir, &input_dir.join("b.jpg"), &scopes).is_err());
        // A link is kept, and so is what it points to.
        std::os::unix::fs::symlink(input_dir.join("b.jpg"), out.join("link.jpg")).expect("link");
        assert!(remove_output(&out, &out.join("link.jpg"), &scopes).is_err());
        // A file with another name (a hard link) may be an original.
        write(&base.join("orig.jpg"));
        std::fs::hard_link(base.join("orig.jpg"), out.join("hard.jpg")).expect("hard link");
        let e = remove_output(&out, &out.join("hard.jpg"), &scopes).expect_err("kept");
        assert!(e.to_string().contains("hard links"), "{e}");
        // Not inside the writer's folder, or through a linked folder.
        assert!(remove_output(&out, &base.join("orig.jpg"), &scopes).is_err());
        std::os::unix::fs::symlink(base, out.join("up")).expect("link");
        assert!(remove_output(&out, &out.join("up/orig.jpg"), &scopes).is_err());
        for kept in ["in/b.jpg", "orig.jpg", "out/hard.jpg", "out/link.jpg"] {
            assert!(base.join(kept).exists(), "{kept} must stay");
        }
    }
}
