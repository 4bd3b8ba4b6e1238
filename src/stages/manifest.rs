//! `manifest`: a sink that writes one CSV or JSON-lines file describing
//! every item that reached it, and every item that failed, once the run is
//! through.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, PayloadType, Types};
use crate::stage::Finish;
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

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
                rows: Mutex::new(Vec::new()),
            })))
        },
    }
}

/// One line of the manifest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub path: String,
    pub rel: String,
    pub status: &'static str,
    pub size: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
    pub hash: Option<String>,
    pub outputs: Vec<String>,
    pub stage: Option<String>,
    pub reason: Option<String>,
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
    rows: Mutex<Vec<Row>>,
}

impl Stage for Manifest {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        Ok(Some(item))
    }

    fn collects(&self) -> bool {
        true
    }

    fn plan_finish(&self) -> Result<Vec<PathBuf>, StageError> {
        let path = self
            .output
            .plan_file(&self.stage, Path::new(&self.opts.path))?;
        Ok(vec![path])
    }

    fn collect(&self, item: &mut Item) {
        let m = &item.meta;
        let row = Row {
            path: item.path.to_string_lossy().into_owned(),
            rel: item.rel_str(),
            status: "ok",
            size: m.size,
            width: m.width,
            height: m.height,
            format: m.format.clone().or_else(|| m.source_format.clone()),
            hash: m
                .hash
                .as_ref()
                .map(|h| format!("{}:{h}", m.hash_algorithm.as_deref().unwrap_or("hash"))),
            outputs: m
                .outputs
                .iter()
                .map(|o| o.to_string_lossy().into_owned())
                .collect(),
            stage: None,
            reason: None,
        };
        self.rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(row);
    }

    fn finish(&self, run: &Finish<'_>) -> Result<Vec<PathBuf>, StageError> {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone();
        rows.extend(run.up_to_date.iter().map(|(path, outputs)| {
            Row {
                path: path.to_string_lossy().into_owned(),
                status: "up_to_date",
                outputs: outputs
                    .iter()
                    .map(|o| o.to_string_lossy().into_owned())
                    .collect(),
                ..Row::default()
            }
        }));
        rows.extend(run.failures.iter().map(|f| Row {
            path: f.path.to_string_lossy().into_owned(),
            status: "failed",
            stage: Some(f.stage.clone()),
            reason: Some(f.reason.clone()),
            ..Row::default()
        }));
        // Workers finish in any order; the file should not.
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        let mut text = String::new();
        match self.opts.format {
            ManifestFormat::Csv => {
                text.push_str(&COLUMNS.join(","));
                text.push('\n');
                for r in &rows {
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
                        r.outputs.join(";"),
                        opt(r.stage.clone()),
                        opt(r.reason.clone()),
                    ];
                    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                    let _ = writeln!(text, "{}", line.join(","));
                }
            }
            ManifestFormat::Jsonl => {
                for r in &rows {
                    let line =
                        serde_json::to_string(r).map_err(|e| StageError::new(e.to_string()))?;
                    let _ = writeln!(text, "{line}");
                }
            }
        }
        let path =
            self.output
                .place_file(&self.stage, Path::new(&self.opts.path), text.as_bytes())?;
        Ok(vec![path])
    }
}
