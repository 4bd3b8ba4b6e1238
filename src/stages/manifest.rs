//! `manifest`: a sink that writes one CSV or JSON-lines file describing
//! every item that reached it, and every item that failed, once the run is
//! through.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::stage::{Finish, SourceFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManifestFormat {
    #[default]
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Options of `manifest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ManifestOptions {
    /// The file to write (replaced whole at the end of the run).
    pub path: String,
    /// csv (one row per item, a header line first) or jsonl (one JSON
    /// object per line).
    pub format: ManifestFormat,
}

impl StageOptions for ManifestOptions {
    fn validate(&self) -> Vec<OptionError> {
        if self.path.is_empty() {
            vec![OptionError::stage(
                "`manifest` needs `path`, the file to write",
            )]
        } else {
            Vec::new()
        }
    }
}

/// A manifest is one file.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    super::gathers_into(t, |o: ManifestOptions| o.path)
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "manifest",
        paths,
        summary: "write a CSV or JSON-lines file with every item's metadata, outputs and status",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes, PayloadType::Image]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(ManifestOptions),
        check: crate::stage::check_options::<ManifestOptions>,
        meaning: crate::stage::meaning::<ManifestOptions>,
        revision: 1,
        build: |t, ctx| {
            Ok(Built::Stage(Arc::new(Manifest {
                opts: crate::stage::parse_options(t)?,
                stage: ctx.stage.clone(),
                output: ctx.output.clone(),
                rows: Mutex::new(BTreeMap::new()),
            })))
        },
    }
}

/// One line of the manifest: one source file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// The source's exact name, which rows are merged and sorted by.
    #[serde(skip)]
    pub source: PathBuf,
    pub path: String,
    pub rel: String,
    pub status: &'static str,
    pub size: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
    pub hash: Option<String>,
    #[serde(serialize_with = "outputs_lossy")]
    pub outputs: Vec<PathBuf>,
    pub stage: Option<String>,
    pub reason: Option<String>,
}

impl Row {
    fn new(source: &Path, facts: SourceFacts, status: &'static str) -> Row {
        Row {
            source: source.to_path_buf(),
            path: source.to_string_lossy().into_owned(),
            rel: facts.rel,
            status,
            size: facts.size,
            width: facts.width,
            height: facts.height,
            format: facts.format,
            hash: facts.hash,
            ..Row::default()
        }
    }

    fn output_names(&self) -> Vec<String> {
        self.outputs
            .iter()
            .map(|o| o.to_string_lossy().into_owned())
            .collect()
    }
}

fn outputs_lossy<S: serde::Serializer>(outputs: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(outputs.iter().map(|o| o.to_string_lossy()))
}

const COLUMNS: [&str; 11] = [
    "path", "rel", "status", "size", "width", "height", "format", "hash", "outputs", "stage",
    "reason",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

struct Manifest {
    opts: ManifestOptions,
    stage: String,
    output: crate::output::Guard,
    rows: Mutex<BTreeMap<PathBuf, Row>>,
}

impl Stage for Manifest {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        Ok(Some(item))
    }

    fn collects(&self) -> bool {
        true
    }

    fn passes_through(&self) -> bool {
        true
    }

    fn plan_finish(&self) -> Result<Vec<PathBuf>, StageError> {
        let path = self
            .output
            .plan_file(&self.stage, Path::new(&self.opts.path))?;
        Ok(vec![path])
    }

    fn collect(&self, item: &mut Item) {
        let row = Row::new(&item.path, SourceFacts::of(item), "ok");
        let row = Row {
            outputs: item.meta.outputs.clone(),
            ..row
        };
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        merge(&mut rows, row);
    }

    fn finish(&self, run: &Finish<'_>) -> Result<Vec<PathBuf>, StageError> {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for k in run.up_to_date {
            let row = Row::new(&k.path, k.facts.clone().unwrap_or_default(), "up_to_date");
            merge(
                &mut rows,
                Row {
                    outputs: k.outputs.clone(),
                    ..row
                },
            );
        }
        // Files made of a source on other branches (a manifest fed from
        // `scan` sees no writer itself).
        for k in run.made {
            if rows.contains_key(&k.path) {
                let row = Row::new(&k.path, k.facts.clone().unwrap_or_default(), "ok");
                merge(
                    &mut rows,
                    Row {
                        outputs: k.outputs.clone(),
                        ..row
                    },
                );
            }
        }
        for f in run.failures {
            let row = Row::new(&f.path, SourceFacts::default(), "failed");
            let row = Row {
                stage: Some(f.stage.clone()),
                reason: Some(f.reason.clone()),
                ..row
            };
            merge(&mut rows, row);
        }
        let text = render(self.opts.format, rows.values())?;
        let path =
            self.output
                .place_file(&self.stage, Path::new(&self.opts.path), text.as_bytes())?;
        Ok(vec![path])
    }
}

/// Add a row, or fold it into the row of the same source: an item that
/// reached the manifest through two writers is one source, so one row with
/// the files of both. A failure anywhere outranks an `ok` elsewhere.
fn merge(rows: &mut BTreeMap<PathBuf, Row>, row: Row) {
    let Some(old) = rows.get_mut(&row.source) else {
        rows.insert(row.source.clone(), row);
        return;
    };
    old.outputs.extend(row.outputs);
    old.outputs.sort();
    old.outputs.dedup();
    if old.rel.is_empty() {
        old.rel = row.rel;
    }
    old.size = old.size.or(row.size);
    old.width = old.width.or(row.width);
    old.height = old.height.or(row.height);
    old.format = old.format.take().or(row.format);
    old.hash = old.hash.take().or(row.hash);
    if row.status == "failed" && old.status != "failed" {
        old.status = row.status;
        old.stage = row.stage;
        old.reason = row.reason;
    }
}

/// The manifest's text, rows in the order of their sources' names.
fn render<'a>(
    format: ManifestFormat,
    rows: impl Iterator<Item = &'a Row>,
) -> Result<String, StageError> {
    let mut text = String::new();
    match format {
        ManifestFormat::Csv => {
            text.push_str(&COLUMNS.join(","));
            text.push('\n');
            for r in rows {
                let opt = |v: Option<String>| v.unwrap_or_default();
                let fields = [
                    r.path.clone(),
                    r.rel.clone(),
                    r.status.to_string(),
                    opt(r.size.map(|v| v.to_string())),
                    opt(r.width.map(|v| v.to_string())),
                    opt(r.height.map(|v| v.to_string())),
                    opt(r.format.clone()),
                    opt(r.hash.clone()),
                    r.output_names().join(";"),
                    opt(r.stage.clone()),
                    opt(r.reason.clone()),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                let _ = writeln!(text, "{}", line.join(","));
            }
        }
        ManifestFormat::Jsonl => {
            for r in rows {
                let line = serde_json::to_string(r).map_err(|e| StageError::new(e.to_string()))?;
                let _ = writeln!(text, "{line}");
            }
        }
    }
    Ok(text)
}
