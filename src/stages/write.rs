//! `write`: store each item's bytes under `dir`, named by a template from the
//! item's relative path. Files appear whole or not at all (temp file, then
//! rename), and no template can place a file outside `dir`.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// name, hence `filename`). Placeholders: `{rel_dir}` (the
    /// source's folder relative to the scan root), `{stem}` (its file name
    /// without extension), `{name}` (its file name), `{ext}` (the extension
    /// of the encoded format, else the source's).
    pub filename: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            dir: String::new(),
            filename: "{rel_dir}/{stem}.{ext}".into(),
        }
    }
}

const PLACEHOLDERS: [&str; 4] = ["rel_dir", "stem", "name", "ext"];

impl StageOptions for WriteOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.dir.is_empty() {
            errors.push(OptionError::stage(
                "`write` needs `dir`, the folder to write into",
            ));
        }
        let mut rest = self.filename.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                errors.push(OptionError::at("filename", "unclosed `{` in `filename`"));
                break;
            };
            let ph = &rest[open + 1..open + close];
            if !PLACEHOLDERS.contains(&ph) {
                let mut e = OptionError::at(
                    "filename",
                    format!("unknown placeholder `{{{ph}}}` in `filename`"),
                );
                if let Some(s) = crate::config::suggest(ph, PLACEHOLDERS) {
                    e = e.help(format!("did you mean `{{{s}}}`?"));
                }
                errors.push(e);
            }
            rest = &rest[open + close + 1..];
        }
        if self.filename.trim().is_empty() {
            errors.push(OptionError::at("filename", "`filename` must not be empty"));
        } else if Path::new(&self.filename).is_absolute()
            || self.filename.split(['/', '\\']).any(|p| p == "..")
        {
            errors.push(OptionError::at(
                "filename",
                "`filename` must stay inside `dir` (no `..`, no absolute path)",
            ));
        }
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
        build: |t, _ctx| {
            let opts: WriteOptions = super::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Write {
                dir: PathBuf::from(&opts.dir),
                opts,
            })))
        },
    }
}

struct Write {
    opts: WriteOptions,
    dir: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The output path relative to `dir`, with every component checked.
pub fn render_name(template: &str, item: &Item) -> Result<PathBuf, StageError> {
    let rel = &item.rel;
    let rel_dir = rel
        .parent()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default();
    let stem = rel
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let name = rel
        .file_name()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let ext = match &item.meta.format {
        Some(f) => super::encode::extension_for(f).to_string(),
        None => rel
            .extension()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    // Rendered segment by segment, so an empty `{rel_dir}` (a file at the
    // scan root) leaves no empty or absolute component behind.
    let mut out = PathBuf::new();
    for segment in template.split('/') {
        let rendered = segment
            .replace("{rel_dir}", &rel_dir)
            .replace("{stem}", &stem)
            .replace("{name}", &name)
            .replace("{ext}", &ext);
        for comp in Path::new(&rendered).components() {
            match comp {
                Component::Normal(c) => out.push(c),
                Component::CurDir => {}
                _ => {
                    return Err(StageError(format!(
                        "output name `{template}` gives `{rendered}`, which would land outside the output folder"
                    )));
                }
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(StageError::new("output name is empty"));
    }
    Ok(out)
}

/// Write `bytes` to `path` so that the file appears whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = parent.join(format!(
        ".{file_name}.{}-{}.conveyor-tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
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

impl Stage for Write {
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let Payload::Bytes(bytes) = std::mem::take(&mut item.payload) else {
            return Err(StageError::new("expected bytes to write"));
        };
        let path = self.dir.join(render_name(&self.opts.filename, &item)?);
        if let (Ok(a), Ok(b)) = (path.canonicalize(), item.path.canonicalize())
            && a == b
        {
            return Err(StageError(format!(
                "refusing to overwrite the source file {}",
                item.path.display()
            )));
        }
        write_atomic(&path, &bytes)
            .map_err(|e| StageError(format!("cannot write {}: {e}", path.display())))?;
        item.meta.outputs.push(path);
        Ok(Some(item))
    }

    fn output_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}
