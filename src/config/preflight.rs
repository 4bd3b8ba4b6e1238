//! Checks of the file system made before any work, so that a run that can't
//! succeed stops at once (exit 2) instead of failing item after item: every
//! scan root exists and is a folder, and every output folder can be created
//! and written.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::diag::Diagnostic;
use super::safety::Site;
use crate::stage::StagePaths;

/// Every check, each adding its errors to `diags`.
pub(super) fn check(sites: &[Site<'_>], diags: &mut Vec<Diagnostic>) {
    for site in sites {
        match &site.paths {
            StagePaths::Reads(specs) => {
                for spec in specs {
                    match &spec.only {
                        Some(names) => {
                            for name in names {
                                // As given: `x.jpg`, not `./x.jpg`.
                                let path = if spec.root == Path::new(".") {
                                    name.clone()
                                } else {
                                    spec.root.join(name)
                                };
                                path_is_a_file(site, &path, diags);
                            }
                        }
                        None if site.table.get("paths").is_some() => {
                            path_is_a_folder(site, &spec.root, diags)
                        }
                        None => root_is_a_folder(site, &spec.root, diags),
                    }
                }
            }
            StagePaths::Writes { dir, .. } => folder_is_writable(site, "dir", dir, diags),
            StagePaths::Gathers(path) => {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                folder_is_writable(site, "path", dir, diags);
            }
            StagePaths::Needs { key, file } => file_exists(site, key, file, diags),
            StagePaths::None => {}
        }
    }
}

/// "`photos` (/home/me/photos, relative to the current folder /home/me)".
fn where_it_is(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let shown = crate::item::escape_path(path);
    if path.is_relative() {
        let cwd = std::env::current_dir().unwrap_or_default();
        format!(
            "`{shown}` ({}, relative to the current folder {})",
            crate::item::escape_path(&abs),
            crate::item::escape_path(&cwd)
        )
    } else {
        format!("`{shown}`")
    }
}

/// What is wrong with `path`, which should be a folder (`dir`) or a file;
/// `None` when it is what it should be.
fn wrong(path: &Path, dir: bool) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() == dir => None,
        Ok(_) if dir => Some("is not a folder"),
        Ok(_) => Some("is not a file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
        Err(_) => Some("cannot be read"),
    }
}

fn root_is_a_folder(site: &Site<'_>, root: &Path, diags: &mut Vec<Diagnostic>) {
    let Some(problem) = wrong(root, true) else {
        return;
    };
    diags.push(
        Diagnostic::error(
            format!(
                "stage `{}`: the folder to scan, {}, {problem}",
                site.name,
                where_it_is(root)
            ),
            site.loc("root"),
        )
        .label("no such folder")
        .help(Some(
            "give `root` a folder that exists, e.g. with `--set scan.root=PATH`".into(),
        )),
    );
}

/// A file given in `paths` (or on the command line): it must be a regular
/// file (or a link to one) now, so a run does not start to fail on it. The
/// message names the path; no snippet, as there may be thousands of them.
fn path_is_a_file(site: &Site<'_>, path: &Path, diags: &mut Vec<Diagnostic>) {
    let problem = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return,
        Ok(m) if m.is_dir() => "is a folder",
        Ok(_) => "is not a regular file (a FIFO, socket or device)",
        Err(_) if path.symlink_metadata().is_ok() => "is a broken symbolic link",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
        Err(_) => "cannot be read",
    };
    diags.push(Diagnostic::error(
        format!(
            "stage `{}`: {}, given to it to read, {problem}",
            site.name,
            where_it_is(path)
        ),
        None,
    ));
}

/// A folder given in `paths` (or on the command line).
fn path_is_a_folder(site: &Site<'_>, path: &Path, diags: &mut Vec<Diagnostic>) {
    if let Some(problem) = wrong(path, true) {
        diags.push(Diagnostic::error(
            format!(
                "stage `{}`: {}, given to it to read, {problem}",
                site.name,
                where_it_is(path)
            ),
            None,
        ));
    }
}

fn file_exists(site: &Site<'_>, key: &str, file: &Path, diags: &mut Vec<Diagnostic>) {
    let Some(problem) = wrong(file, false) else {
        return;
    };
    diags.push(
        Diagnostic::error(
            format!(
                "stage `{}`: the file `{key}` names, {}, {problem}",
                site.name,
                where_it_is(file)
            ),
            site.loc(key),
        )
        .label("no such file"),
    );
}

/// The deepest folder of `dir` that exists: where the missing ones would be
/// created.
fn existing_ancestor(dir: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(dir).ok()?;
    abs.ancestors().find(|a| a.exists()).map(Path::to_path_buf)
}

fn folder_is_writable(site: &Site<'_>, key: &str, dir: &Path, diags: &mut Vec<Diagnostic>) {
    let Some(base) = existing_ancestor(dir) else {
        return;
    };
    let problem = if !base.is_dir() {
        Some(format!(
            "{} is a file, so the folder can't be made",
            crate::item::escape_path(&base)
        ))
    } else {
        writable(&base).err().map(|e| {
            format!(
                "{} can't be written: {}",
                crate::item::escape_path(&base),
                crate::output::plain_io_reason(&e)
            )
        })
    };
    if let Some(problem) = problem {
        diags.push(
            Diagnostic::error(
                format!(
                    "stage `{}` writes into {}, but {problem}",
                    site.name,
                    where_it_is(dir)
                ),
                site.loc(key),
            )
            .label("can't be written")
            .help(Some("choose a folder you can write".into())),
        );
    }
}

/// Whether this process may create files in `dir`, asked of the system
/// (read-only mounts included) without creating anything; else the
/// system's reason.
fn writable(dir: &Path) -> std::io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; access
    // only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        return Ok(());
    }
    Err(std::io::Error::last_os_error())
}
