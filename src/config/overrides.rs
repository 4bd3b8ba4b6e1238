//! Command-line changes to a pipeline, `--set STAGE.KEY=VALUE`,
//! `--mode [STAGE=]MODE` and the paths of `run PIPELINE PATH...`, applied to the raw document before it is checked,
//! so an overridden value is checked like one in the file, and its errors
//! point into the flag's own text.

use std::ops::Range;

use super::diag::{Diagnostic, Loc, SourceFile, Sources};
use super::raw::{RawDoc, RawEntry, RawValue};
use crate::stage::KindSpec;
use crate::stages::Registry;
use crate::suggest::did_you_mean;

/// A command-line change to the pipeline: `--set STAGE.KEY=VALUE` or
/// `--mode STAGE=MODE` (or `--mode MODE` for every stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    Set(String),
    Mode(String),
    /// Files and folders that replace the root of the pipeline's one
    /// `scan` stage (its `paths`).
    Paths(Vec<String>),
}

impl Override {
    /// The flag, as messages name it, and the text given to it.
    fn parts(&self) -> (&'static str, String) {
        match self {
            Override::Set(t) => ("--set", t.clone()),
            Override::Mode(t) => ("--mode", t.clone()),
            Override::Paths(p) => ("PATH", p.join(" ")),
        }
    }
}

/// One override, read: the stage it names (with where), or `None` for every
/// stage but the sources, and the entry to set.
struct Change {
    stage: Option<(String, Loc)>,
    entry: RawEntry,
}

const SET_HELP: &str = "write `--set STAGE.KEY=VALUE`, e.g. `--set thumb.width=320`";

/// Apply every override to `raw`, in order; each flag's text becomes a
/// source of its own for error positions.
pub(super) fn apply_overrides(
    raw: &mut RawDoc,
    overrides: &[Override],
    registry: &Registry,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) {
    for ov in overrides {
        let (flag, text) = ov.parts();
        let source = sources.add(SourceFile {
            name: flag.to_string(),
            text: text.clone(),
            is_file: false,
        });
        let change = match ov {
            Override::Set(_) => read_set(&text, source),
            Override::Mode(_) => Ok(read_mode(&text, source)),
            Override::Paths(paths) => {
                set_paths(raw, paths, loc(source, 0..text.len()), sources, diags);
                continue;
            }
        };
        match change {
            Ok(change) => apply(raw, flag, change, registry, diags),
            Err(d) => diags.push(d),
        }
    }
}

fn loc(source: usize, span: Range<usize>) -> Loc {
    Loc { source, span }
}

fn entry(
    source: usize,
    key: &str,
    key_span: Range<usize>,
    value: toml::Value,
    value_span: Range<usize>,
) -> RawEntry {
    RawEntry {
        key: key.to_string(),
        key_loc: loc(source, key_span),
        value: RawValue {
            value,
            loc: loc(source, value_span),
        },
    }
}

/// `STAGE.KEY=VALUE`.
fn read_set(text: &str, source: usize) -> Result<Change, Diagnostic> {
    let whole = || Some(loc(source, 0..text.len()));
    let Some(eq) = text.find('=') else {
        return Err(
            Diagnostic::error(format!("`--set {text}` has no `=`"), whole())
                .help(Some(SET_HELP.into())),
        );
    };
    let Some(dot) = text[..eq].find('.') else {
        return Err(
            Diagnostic::error(format!("`--set {text}` does not name a stage"), whole())
                .help(Some(SET_HELP.into())),
        );
    };
    let raw_value = &text[eq + 1..];
    if raw_value.trim().is_empty() {
        return Err(
            Diagnostic::error(format!("`--set {text}` gives no value after `=`"), whole()).help(
                Some(format!(
                    "write the value after `=`, e.g. `--set {}=out` (or `\"\"` for an empty text)",
                    &text[..eq]
                )),
            ),
        );
    }
    // TOML syntax when it parses (`320`, `true`, `"x"`, `[..]`), else the
    // text as a string, so `--set save.dir=out/x` works.
    let value = match raw_value
        .parse::<toml::Value>()
        .unwrap_or_else(|_| toml::Value::String(raw_value.to_string()))
    {
        // `~/` as in the file (a quoted one reaches here unexpanded).
        toml::Value::String(s) => {
            toml::Value::String(super::raw::expand_home(s, std::env::var_os("HOME")))
        }
        other => other,
    };
    Ok(Change {
        stage: Some((text[..dot].to_string(), loc(source, 0..dot))),
        entry: entry(
            source,
            &text[dot + 1..eq],
            dot + 1..eq,
            value,
            eq + 1..text.len(),
        ),
    })
}

/// `STAGE=MODE`, or `MODE` for every stage.
fn read_mode(text: &str, source: usize) -> Change {
    match text.split_once('=') {
        Some((stage, mode)) => Change {
            stage: Some((stage.to_string(), loc(source, 0..stage.len()))),
            entry: entry(
                source,
                "mode",
                0..stage.len(),
                toml::Value::String(mode.to_string()),
                stage.len() + 1..text.len(),
            ),
        },
        None => Change {
            stage: None,
            entry: entry(
                source,
                "mode",
                0..0,
                toml::Value::String(text.to_string()),
                0..text.len(),
            ),
        },
    }
}

/// Paths on the command line become the `paths` of the one `scan` stage.
fn set_paths(
    raw: &mut RawDoc,
    paths: &[String],
    at: Loc,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let scans: Vec<usize> = (0..raw.stages.len())
        .filter(|&i| raw.stages[i].str_of("kind") == Some("scan"))
        .collect();
    match scans.as_slice() {
        [one] => raw.stages[*one].set(RawEntry {
            key: "paths".to_string(),
            key_loc: at.clone(),
            value: RawValue {
                value: toml::Value::Array(
                    paths.iter().cloned().map(toml::Value::String).collect(),
                ),
                loc: at,
            },
        }),
        [] => diags.push(
            Diagnostic::error(
                "files and folders were given on the command line, but the pipeline has no `scan` stage to take them",
                Some(at),
            )
            .help(Some("give the paths in the pipeline's own source stage instead".into())),
        ),
        several => {
            let named: Vec<String> = several
                .iter()
                .map(|&i| {
                    let t = &raw.stages[i];
                    format!(
                        "`{}` ({})",
                        t.str_of("name").unwrap_or("?"),
                        sources.position(&t.loc)
                    )
                })
                .collect();
            diags.push(
                Diagnostic::error(
                    format!(
                        "files and folders given on the command line replace the root of the pipeline's one `scan` stage, but it has {}: {}",
                        several.len(),
                        named.join(", ")
                    ),
                    Some(at),
                )
                .help(Some(
                    "set one scan's root with `--set STAGE.root=PATH` instead".into(),
                )),
            );
        }
    }
}

fn apply(
    raw: &mut RawDoc,
    flag: &str,
    change: Change,
    registry: &Registry,
    diags: &mut Vec<Diagnostic>,
) {
    let Some((name, name_loc)) = change.stage else {
        // Every stage but the sources, which run on one thread whatever
        // their mode.
        for table in &mut raw.stages {
            let is_source = table
                .str_of("kind")
                .and_then(|k| registry.get(k))
                .is_some_and(KindSpec::is_source);
            if !is_source {
                table.set(change.entry.clone());
            }
        }
        return;
    };
    if let Some(table) = raw
        .stages
        .iter_mut()
        .find(|s| s.str_of("name") == Some(&name))
    {
        table.set(change.entry);
        return;
    }
    let names: Vec<&str> = raw.stages.iter().filter_map(|s| s.str_of("name")).collect();
    diags.push(
        Diagnostic::error(format!("`{flag}` names no stage `{name}`"), Some(name_loc))
            .label("no such stage")
            .help(did_you_mean(&name, names)),
    );
}
