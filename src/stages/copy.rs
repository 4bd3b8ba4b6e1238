//! `copy`: copy (or move) each source file into `dir` under a name from a
//! template, for file-only pipelines: sorting, archiving, deduplicating.
//! Files are placed by the output guard: a move is a rename that never
//! replaces anything (or, across file systems, a durable copy before the
//! source goes), so every source ends up where it was or, byte-identical,
//! at its destination.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, Payload, PayloadType, Types};
use crate::output::{OutputError, Replace, Request};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

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
    /// Replace a different file already at the destination, if it is not an
    /// input of the run (off: an error; an identical file is always fine, it
    /// is the same content). Moves never replace anything.
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
        super::check_writer("copy", &self.dir, &self.filename)
    }
}

/// `copy` names files under `dir`.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    super::writes_under(t, |o: CopyOptions| Some((o.dir, o.filename)))
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "copy",
        paths,
        summary: "copy or move source files into `dir` by a name template (identical files are kept once)",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(CopyOptions),
        check: crate::stage::check_options::<CopyOptions>,
        meaning: crate::stage::meaning::<CopyOptions>,
        revision: 1,
        build: |t, ctx| {
            let opts: CopyOptions = crate::stage::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Copy {
                dir: PathBuf::from(&opts.dir),
                opts,
                stage: ctx.stage.clone(),
                output: ctx.output.clone(),
            })))
        },
    }
}

struct Copy {
    opts: CopyOptions,
    dir: PathBuf,
    stage: String,
    output: crate::output::Guard,
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

impl Copy {
    fn request<'a>(&'a self, item: &'a Item, rel: &'a Path, claim: bool) -> Request<'a> {
        Request {
            stage: &self.stage,
            source: Some(&item.path),
            dir: &self.dir,
            rel,
            replace: if self.opts.overwrite && !self.opts.move_files {
                Replace::Outputs
            } else {
                Replace::Never
            },
            claim,
        }
    }

    /// The destination already holds these very bytes (a duplicate, or this
    /// item's own earlier copy): nothing to write. A move then removes the
    /// source, whose bytes are safe at the destination.
    fn already_there(&self, item: &Item, dest: &Path) -> Result<bool, StageError> {
        if !dest.exists() {
            return Ok(false);
        }
        match same_content(&item.path, dest) {
            Ok(true) => {
                if self.opts.move_files {
                    std::fs::remove_file(&item.path).map_err(|e| {
                        StageError::new(format!("cannot remove the moved source: {e}"))
                    })?;
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => Err(StageError::new(format!(
                "cannot compare with {}: {e}",
                dest.display()
            ))),
        }
    }

    fn place(&self, item: &Item, rel: &Path) -> Result<PathBuf, OutputError> {
        let req = self.request(item, rel, true);
        if self.opts.move_files {
            return self.output.move_file(&req, &item.path);
        }
        match &item.payload {
            Payload::Bytes(b) => self.output.place_bytes(&req, b),
            _ => {
                let bytes = std::fs::read(&item.path).map_err(|e| OutputError::Io {
                    what: "read",
                    path: item.path.clone(),
                    reason: crate::output::plain_io_reason(&e),
                })?;
                self.output.place_bytes(&req, &bytes)
            }
        }
    }
}

impl Stage for Copy {
    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let rel = super::template::render(&self.opts.filename, &item)?;
        let dest = self.output.plan(&self.request(&item, &rel, false))?;
        item.meta.outputs.push(dest);
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let rel = super::template::render(&self.opts.filename, &item)?;
        let shown = self.dir.join(&rel);
        let placed = match self.place(&item, &rel) {
            Ok(path) => path,
            // Identical bytes already there are not a collision: that is
            // what deduplicating by `{hash}` relies on.
            Err(e @ (OutputError::AlreadyExists { .. } | OutputError::Claimed { .. })) => {
                if !self.already_there(&item, &shown)? {
                    return Err(match e {
                        OutputError::AlreadyExists { .. } if !self.opts.move_files => {
                            StageError::new(format!(
                                "{} already exists with different content (set `overwrite = true` to replace it)",
                                shown.display()
                            ))
                        }
                        OutputError::AlreadyExists { .. } => StageError::new(format!(
                            "{} already exists with different content; the source stays where it is",
                            shown.display()
                        )),
                        other => other.into(),
                    });
                }
                shown
            }
            Err(e) => return Err(e.into()),
        };
        item.meta.outputs.push(placed);
        Ok(Some(item))
    }

    fn output_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
