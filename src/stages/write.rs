//! `write`: store each item's bytes under `dir`, named by a template from the
//! item's relative path. Files appear whole or not at all (temp file, then
//! rename), and no template can place a file outside `dir`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::item::{Item, Payload, PayloadType, Types};

/// Options of `write`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WriteOptions {
    /// Folder to write into (created if missing).
    pub dir: String,
    /// File name template, relative to `dir` (a stage's `name` is its own
    /// name, hence `filename`). Placeholders: `{rel_dir}` (the source's
    /// folder relative to the scan root), `{stem}`, `{name}` (file name
    /// without / with extension), `{ext}` (of the encoded format, else the
    /// source's), `{hash}` (from a `hash` stage), `{date}`, `{year}`,
    /// `{month}`, `{day}` (the source's modification date, UTC).
    pub filename: String,
    /// Let two inputs of one run write the same file, the last one winning
    /// (off: the second is an error, and the first file stays).
    pub overwrite: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            dir: String::new(),
            filename: "{rel_dir}/{stem}.{ext}".into(),
            overwrite: false,
        }
    }
}

impl StageOptions for WriteOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.dir.is_empty() {
            errors.push(OptionError::stage(
                "`write` needs `dir`, the folder to write into",
            ));
        }
        errors.extend(super::template::validate(&self.filename, "filename"));
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "write",
        summary: "write each item's bytes to a file under `dir` (atomic: temp file, then rename)",
        accepts: Types::of(&[PayloadType::Bytes]),
        output: Output::Fixed(PayloadType::Nothing),
        schema: || schemars::schema_for!(WriteOptions),
        check: super::check_options::<WriteOptions>,
        build: |t, ctx| {
            let opts: WriteOptions = super::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Write {
                dir: PathBuf::from(&opts.dir),
                opts,
                claims: ctx.claims.clone(),
            })))
        },
    }
}

struct Write {
    opts: WriteOptions,
    dir: PathBuf,
    claims: super::Claims,
}

/// Write `bytes` to `path` so that the file appears whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = crate::exec::cleanup::temp_path_for(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl Write {
    /// Where the item goes, checked against its source and this run's other
    /// outputs.
    fn destination(&self, item: &Item) -> Result<PathBuf, StageError> {
        let path = self
            .dir
            .join(super::template::render(&self.opts.filename, item)?);
        if let (Ok(a), Ok(b)) = (path.canonicalize(), item.path.canonicalize())
            && a == b
        {
            return Err(StageError(format!(
                "refusing to overwrite the source file {}",
                item.path.display()
            )));
        }
        if !self.opts.overwrite {
            self.claims.claim(&path, &item.path)?;
        }
        Ok(path)
    }
}

impl Stage for Write {
    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let path = self.destination(&item)?;
        item.payload = Payload::Nothing;
        item.meta.outputs.push(path);
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let Payload::Bytes(bytes) = std::mem::take(&mut item.payload) else {
            return Err(StageError::new("expected bytes to write"));
        };
        let path = self.destination(&item)?;
        write_atomic(&path, &bytes)
            .map_err(|e| StageError(format!("cannot write {}: {e}", path.display())))?;
        item.meta.outputs.push(path);
        Ok(Some(item))
    }

    fn output_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
