//! `write`: store each item's bytes under `dir`, named by a template from the
//! item's relative path, through the output guard (whole or not at all,
//! never over an input, never through a link, never over another item's
//! file).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

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
    /// (off: the second is an error, and the first file stays). Never lets
    /// a write replace an input.
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
        super::check_writer("write", &self.dir, &self.filename)
    }
}

/// `write` names files under `dir`.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    super::writes_under(t, |o: WriteOptions| Some((o.dir, o.filename)))
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "write",
        paths,
        summary: "write each item's bytes to a file under `dir` (atomic: temp file, then rename)",
        accepts: Types::of(&[PayloadType::Bytes]),
        output: Output::Fixed(PayloadType::Nothing),
        schema: || schemars::schema_for!(WriteOptions),
        check: crate::stage::check_options::<WriteOptions>,
        meaning: crate::stage::meaning::<WriteOptions>,
        revision: 1,
        build: |t, ctx| {
            let opts: WriteOptions = crate::stage::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Write {
                dir: PathBuf::from(&opts.dir),
                opts,
                stage: ctx.stage.clone(),
                output: ctx.output.clone(),
            })))
        },
    }
}

struct Write {
    opts: WriteOptions,
    dir: PathBuf,
    stage: String,
    output: crate::output::Guard,
}

impl Write {
    /// Where the item goes, as the guard sees it.
    fn request<'a>(&'a self, item: &'a Item, rel: &'a Path) -> crate::output::Request<'a> {
        crate::output::Request {
            stage: &self.stage,
            source: Some(&item.path),
            dir: &self.dir,
            rel,
            replace: crate::output::Replace::Outputs,
            claim: !self.opts.overwrite,
        }
    }
}

impl Stage for Write {
    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let rel = super::template::render(&self.opts.filename, &item)?;
        let path = self.output.plan(&self.request(&item, &rel))?;
        item.payload = Payload::Nothing;
        item.meta.outputs.push(path);
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let Payload::Bytes(bytes) = std::mem::take(&mut item.payload) else {
            return Err(StageError::new("expected bytes to write"));
        };
        let rel = super::template::render(&self.opts.filename, &item)?;
        let path = self
            .output
            .place_bytes(&self.request(&item, &rel), &bytes)?;
        item.meta.outputs.push(path);
        Ok(Some(item))
    }

    fn output_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
