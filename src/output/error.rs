//! Why a file could not be placed, naming both paths in the user's words.

use std::path::{Path, PathBuf};

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
    /// A file recorded as an output was kept rather than removed
    /// (`watch --prune`): it is not (or no longer) only that.
    KeptOutput { dest: PathBuf, why: String },
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
            KeptOutput { dest, why } => {
                write!(f, "refusing to remove {}: {why}", escape_path(dest))
            }
            Io { what, path, reason } => write!(f, "cannot {what} {}: {reason}", escape_path(path)),
        }
    }
}

impl std::error::Error for OutputError {}

pub(super) fn io_err(what: &'static str, path: &Path, e: &std::io::Error) -> OutputError {
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
