//! `copy`: copy (or move) each source file into `dir` under a name from a
//! template, for file-only pipelines: sorting, archiving, deduplicating.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::item::{Item, PayloadType, Types};

/// Options of `copy`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CopyOptions {
    /// Folder to copy into (created if missing).
    pub dir: String,
    /// Name template relative to `dir`, with the placeholders of `write`
    /// (e.g. "{year}/{month}/{name}" or "{hash}.{ext}").
    pub filename: String,
    /// Move instead of copy (the source is removed once the copy is whole).
    #[serde(rename = "move")]
    pub move_files: bool,
    /// Replace a different file already at the destination (off: an error;
    /// an identical file is always fine, it is the same content).
    pub overwrite: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            dir: String::new(),
            filename: "{rel_dir}/{name}".into(),
            move_files: false,
            overwrite: false,
        }
    }
}

impl StageOptions for CopyOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.dir.is_empty() {
            errors.push(OptionError::stage(
                "`copy` needs `dir`, the folder to copy into",
            ));
        }
        errors.extend(super::template::validate(&self.filename, "filename"));
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "copy",
        summary: "copy or move source files into `dir` by a name template (identical files are kept once)",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(CopyOptions),
        check: super::check_options::<CopyOptions>,
        build: |t, _ctx| {
            let opts: CopyOptions = super::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Copy {
                dir: PathBuf::from(&opts.dir),
                opts,
            })))
        },
    }
}

struct Copy {
    opts: CopyOptions,
    dir: PathBuf,
}

/// Same bytes in both files, read in blocks.
fn same_content(a: &Path, b: &Path) -> std::io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

impl Stage for Copy {
    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let dest = self
            .dir
            .join(super::template::render(&self.opts.filename, &item)?);
        item.meta.outputs.push(dest);
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let dest = self
            .dir
            .join(super::template::render(&self.opts.filename, &item)?);
        if let (Ok(a), Ok(b)) = (dest.canonicalize(), item.path.canonicalize())
            && a == b
        {
            return Err(StageError(format!(
                "refusing to copy {} onto itself",
                item.path.display()
            )));
        }
        if dest.exists() {
            // The same bytes already there (a duplicate): nothing to do.
            match same_content(&item.path, &dest) {
                Ok(true) => {
                    if self.opts.move_files {
                        std::fs::remove_file(&item.path).map_err(|e| {
                            StageError(format!("cannot remove the moved source: {e}"))
                        })?;
                    }
                    item.meta.outputs.push(dest);
                    return Ok(Some(item));
                }
                Ok(false) if self.opts.overwrite => {}
                Ok(false) => {
                    return Err(StageError(format!(
                        "{} already exists with different content (set `overwrite = true` to replace it)",
                        dest.display()
                    )));
                }
                Err(e) => {
                    return Err(StageError(format!(
                        "cannot compare with {}: {e}",
                        dest.display()
                    )));
                }
            }
        }
        let parent = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(|e| StageError(format!("cannot create {}: {e}", parent.display())))?;
        // A rename is atomic and keeps the file's identity; across file
        // systems it fails and the file is copied instead.
        let moved = self.opts.move_files && std::fs::rename(&item.path, &dest).is_ok();
        if !moved {
            let bytes = match &item.payload {
                crate::item::Payload::Bytes(b) => b.clone(),
                _ => std::fs::read(&item.path)
                    .map_err(|e| StageError(format!("cannot read file: {e}")))?,
            };
            super::write::write_atomic(&dest, &bytes)
                .map_err(|e| StageError(format!("cannot write {}: {e}", dest.display())))?;
            if self.opts.move_files {
                std::fs::remove_file(&item.path).map_err(|e| {
                    StageError(format!("copied, but cannot remove the source: {e}"))
                })?;
            }
        }
        item.meta.outputs.push(dest);
        Ok(Some(item))
    }

    fn output_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
