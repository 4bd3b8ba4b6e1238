//! The short commands: `check`, `graph`, `schema`, `merge-reports` and
//! `stages`, each a load or a look-up and one print.

use std::path::PathBuf;

use super::args::PipelineArgs;
use super::style::print_stdout;
use super::{Exit, load};
use crate::graph::{self, GraphFormat};
use crate::stages::Registry;

pub(super) fn check(args: &PipelineArgs, registry: &Registry) -> Exit {
    match load(args, registry) {
        Ok(loaded) => {
            let n = loaded.pipeline.stages.len();
            eprintln!("{}: ok ({n} stages)", args.pipeline.display());
            Exit::Ok
        }
        Err(code) => code,
    }
}

pub(super) fn graph(args: &PipelineArgs, format: GraphFormat, registry: &Registry) -> Exit {
    match load(args, registry) {
        Ok(loaded) => {
            print_stdout(&graph::render(&loaded.pipeline, format));
            Exit::Ok
        }
        Err(code) => code,
    }
}

pub(super) fn schema(registry: &Registry) -> Exit {
    let schema = crate::schema::pipeline_schema(registry);
    let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    print_stdout(&format!("{text}\n"));
    Exit::Ok
}

pub(super) fn merge_reports(files: &[PathBuf]) -> Exit {
    let mut out = std::io::stdout().lock();
    match crate::cluster::merge_reports(files, Some(&mut out)) {
        Ok(m) => {
            eprintln!("{}", m.line());
            if m.failed > 0 {
                Exit::ItemsFailed
            } else {
                Exit::Ok
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Invalid
        }
    }
}

pub(super) fn stages(kind: Option<&str>, registry: &Registry) -> Exit {
    let Some(k) = kind else {
        print_stdout(&crate::describe::list(registry));
        return Exit::Ok;
    };
    match registry.get(k) {
        Some(spec) => {
            print_stdout(&crate::describe::kind(spec));
            Exit::Ok
        }
        None => {
            let hint = crate::suggest::suggest(k, registry.names())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            eprintln!("error: no stage kind `{k}`{hint}; `conveyor stages` lists them");
            Exit::Invalid
        }
    }
}
