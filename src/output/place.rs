//! Placing files at the level of the file system: the folder chain below an
//! output folder opened without following links, temp files created beside
//! their destination, and renames that never replace unless asked.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::{OutputError, io_err};
use super::temp;

/// The guard's view of one destination, once its folder is open.
pub struct Dest {
    /// The folder the file goes in, opened without following links.
    pub(super) dir: OwnedFd,
    /// The file's name in that folder.
    pub(super) name: OsString,
    /// Where the file lands, absolute and resolved (for checks).
    pub path: PathBuf,
    /// The same place as the user wrote it (`dir` joined with the name),
    /// for messages, reports and journals.
    pub shown: PathBuf,
}

pub(super) fn cstring(p: &Path) -> Result<CString, OutputError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| OutputError::BadName {
        name: p.to_path_buf(),
    })
}

pub(super) fn open_dir_at(
    parent: Option<&OwnedFd>,
    name: &OsStr,
    nofollow: bool,
) -> std::io::Result<OwnedFd> {
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

/// The folder `part` inside the open folder `fd`, created if missing and
/// opened without following a link. `path` and `shown` name it for
/// messages, `dest` the file being placed.
fn descend(
    fd: &OwnedFd,
    part: &OsStr,
    path: &Path,
    shown: &Path,
    dest: &Path,
) -> Result<OwnedFd, OutputError> {
    let c = CString::new(part.as_bytes()).map_err(|_| OutputError::BadName {
        name: dest.to_path_buf(),
    })?;
    // SAFETY: `c` is NUL-terminated; `fd` is an open folder.
    let made = unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o777) };
    if made != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(io_err("create", path, &e));
        }
    }
    open_dir_at(Some(fd), part, true).map_err(|e| {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) if is_link => OutputError::ThroughSymlink {
                dest: dest.to_path_buf(),
                link: shown.to_path_buf(),
            },
            Some(libc::ENOTDIR) => OutputError::NotAFile {
                dest: shown.to_path_buf(),
            },
            _ => io_err("open", path, &e),
        }
    })
}

/// Open `dir` (created if missing; the user's own links in it are followed),
/// then each folder of `rel` below it without following links, creating
/// the missing ones.
pub(super) fn open_chain(dir: &Path, rel: &Path) -> Result<Dest, OutputError> {
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
        fd = descend(&fd, part, &path, &shown, &dir.join(rel))?;
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
    pub(super) fn existing(&self) -> Result<Option<std::fs::Metadata>, OutputError> {
        match std::fs::symlink_metadata(self.proc_path(&self.name)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", &self.shown, &e)),
        }
    }

    /// A name in the opened folder, reachable by path through the folder's
    /// descriptor (no link between `dir` and here is followed again).
    pub(super) fn proc_path(&self, name: &OsStr) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(name)
    }

    /// A new, empty temp file beside the destination.
    pub(super) fn create_temp(&self) -> Result<Temp<'_>, OutputError> {
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
    pub(super) fn reserve_temp(&self) -> Temp<'_> {
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
    pub(super) fn rename_from(&self, from: &OsStr, replace: bool) -> std::io::Result<()> {
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

    pub(super) fn sync_dir(&self) {
        // SAFETY: fsync on an open descriptor.
        unsafe { libc::fsync(self.dir.as_raw_fd()) };
    }
}

pub(super) fn cvt(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A temp file beside a destination; removed unless published.
pub(super) struct Temp<'a> {
    pub(super) dest: &'a Dest,
    pub(super) name: OsString,
    /// For messages and for commands that write it by path.
    pub(super) path: PathBuf,
    pub(super) file: Option<File>,
    pub(super) done: bool,
}

impl Temp<'_> {
    pub(super) fn file(&self) -> Result<&File, OutputError> {
        self.file.as_ref().ok_or_else(|| OutputError::NotAFile {
            dest: self.path.clone(),
        })
    }

    pub(super) fn keep(mut self) {
        self.done = true;
    }

    pub(super) fn discard(self) {}
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
