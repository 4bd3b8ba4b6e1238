//! Checks made before any work that keep writers off the user's files: the
//! cases the output guard would refuse item by item are refused for the
//! whole pipeline when its options already decide them, naming both stages
//! with their file:line.

use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, Loc, Sources};
use super::raw::RawTable;
use crate::inputs::{Scope, resolve};
use crate::stage::StagePaths;

/// One stage as these checks see it.
pub(super) struct Site<'a> {
    pub name: &'a str,
    pub table: &'a RawTable,
    pub paths: StagePaths,
}

impl Site<'_> {
    pub(super) fn loc(&self, key: &str) -> Option<Loc> {
        self.table
            .get(key)
            .map(|e| e.value.loc.clone())
            .or_else(|| Some(self.table.loc.clone()))
    }
}

/// Every check, each adding its errors to `diags`. `inputs[i]` are the
/// stages stage `i` reads from.
pub(super) fn check(
    sites: &[Site<'_>],
    inputs: &[Vec<usize>],
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let scans: Vec<(usize, Scope)> = sites
        .iter()
        .enumerate()
        .flat_map(|(i, s)| match &s.paths {
            StagePaths::Reads(specs) => specs
                .iter()
                .filter_map(|spec| {
                    let mut spec = spec.clone();
                    spec.stage = s.name.to_string();
                    Scope::new(spec).ok().map(|sc| (i, sc))
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let out_dirs: Vec<PathBuf> = sites
        .iter()
        .filter_map(|s| match &s.paths {
            StagePaths::Writes { dir, .. } => Some(dir.clone()),
            _ => None,
        })
        .collect();
    let scans: Vec<(usize, Scope)> = scans
        .into_iter()
        .map(|(i, sc)| (i, sc.skipping(&out_dirs)))
        .collect();
    for (w, site) in sites.iter().enumerate() {
        match &site.paths {
            StagePaths::Writes { dir, .. } => {
                writer_in_scanned_folder(site, dir, &scans, sites, sources, diags);
            }
            StagePaths::Gathers(path) => {
                gathering_in_scanned_folder(site, path, &scans, sites, sources, diags);
            }
            _ => {}
        }
        same_files_as_an_earlier_writer(w, sites, inputs, sources, diags);
    }
}

fn position(site: &Site<'_>, key: &str, sources: &Sources) -> String {
    site.loc(key)
        .map(|l| sources.position(&l))
        .unwrap_or_default()
}

/// A writer whose `dir` is a scan's root can name an original with its
/// template; one whose `dir` is an existing folder inside the root that
/// already holds files the scan would take, and that conveyor never wrote
/// into, would be left out of the scan and its files replaced by same-named
/// outputs.
fn writer_in_scanned_folder(
    site: &Site<'_>,
    dir: &Path,
    scans: &[(usize, Scope)],
    sites: &[Site<'_>],
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let target = resolve(dir);
    for (s, scope) in scans {
        let scan = &sites[*s];
        // A folder given as a path (on the command line) rather than the
        // scan's `root`: point at the paths, and say what to change there.
        let from_paths = scan.table.get("paths").is_some()
            && scan.table.str_of("root").map(Path::new) != Some(scope.spec.root.as_path());
        let at = position(scan, if from_paths { "paths" } else { "root" }, sources);
        if target == scope.root && from_paths {
            diags.push(
                Diagnostic::error(
                    format!(
                        "stage `{}` writes into `{}`, which was given to stage `{}` to read: its outputs would be read back as inputs",
                        site.name,
                        dir.display(),
                        scan.name
                    ),
                    site.loc("dir"),
                )
                .label("an output folder")
                .help(Some("give the folders of your originals, not an output folder".into())),
            );
        } else if target == scope.root {
            diags.push(
                Diagnostic::error(
                    format!(
                        "stage `{}` writes into `{}`, the folder stage `{}` reads ({at}): its file names could replace your originals",
                        site.name,
                        dir.display(),
                        scan.name
                    ),
                    site.loc("dir"),
                )
                .label("a scanned folder")
                .help(Some(format!(
                    "write into a folder of its own, e.g. dir = \"{}\"",
                    dir.join("out").display()
                ))),
            );
        } else if target.starts_with(&scope.root)
            && !target.join(crate::output::STATE_DIR).exists()
            && let Some(found) = first_original(&target, scope)
        {
            diags.push(
                Diagnostic::error(
                    format!(
                        "stage `{}` writes into `{}`, which already holds files that stage `{}` ({at}) would read, such as {}: conveyor does not write among originals",
                        site.name,
                        dir.display(),
                        scan.name,
                        found.display()
                    ),
                    site.loc("dir"),
                )
                .label("holds originals")
                .help(Some("choose a new or empty folder".into())),
            );
        }
    }
}

/// A file below `dir` that `scope` would take if `dir` were not an output
/// folder.
fn first_original(dir: &Path, scope: &Scope) -> Option<PathBuf> {
    let plain = Scope::new(scope.spec.clone()).ok()?;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .find(|p| plain.would_find(&resolve(p)))
}

/// A gathering file (a manifest, a contact sheet) that a scan would take
/// would be read back as an input by the next run. One the scan leaves out
/// (its globs don't match, or it lies in an output folder) is harmless.
fn gathering_in_scanned_folder(
    site: &Site<'_>,
    path: &Path,
    scans: &[(usize, Scope)],
    sites: &[Site<'_>],
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let target = resolve(path);
    for (s, scope) in scans {
        if !scope.would_find(&target) {
            continue;
        }
        let scan = &sites[*s];
        diags.push(
            Diagnostic::error(
                format!(
                    "stage `{}` writes `{}` inside `{}`, the folder stage `{}` reads ({})",
                    site.name,
                    path.display(),
                    scope.spec.root.display(),
                    scan.name,
                    position(scan, "root", sources)
                ),
                site.loc("path"),
            )
            .label("inside a scanned folder")
            .help(Some(
                "write it outside the folders the pipeline reads, e.g. next to its other outputs"
                    .into(),
            )),
        );
    }
}

/// The sources stage `i` descends from.
fn sources_of(i: usize, inputs: &[Vec<usize>]) -> Vec<usize> {
    let mut seen = vec![false; inputs.len()];
    let mut stack = vec![i];
    let mut out = Vec::new();
    while let Some(j) = stack.pop() {
        if std::mem::replace(&mut seen[j], true) {
            continue;
        }
        if inputs[j].is_empty() {
            out.push(j);
        }
        stack.extend(inputs[j].iter().copied());
    }
    out
}

/// Two writers (or gathering stages) fed by one source that name the same
/// files: the second would fail every item, or the last would win.
fn same_files_as_an_earlier_writer(
    w: usize,
    sites: &[Site<'_>],
    inputs: &[Vec<usize>],
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let site = &sites[w];
    let key = |s: &Site<'_>| match &s.paths {
        StagePaths::Writes { dir, filename } => Some((resolve(dir), Some(filename.clone()))),
        StagePaths::Gathers(path) => Some((resolve(path), None)),
        _ => None,
    };
    let Some(mine) = key(site) else { return };
    let my_sources = sources_of(w, inputs);
    for (e, earlier) in sites[..w].iter().enumerate() {
        if key(earlier).as_ref() != Some(&mine) {
            continue;
        }
        let gathering = mine.1.is_none();
        if !gathering && !sources_of(e, inputs).iter().any(|s| my_sources.contains(s)) {
            continue;
        }
        let what = if gathering { "path" } else { "filename" };
        diags.push(
            Diagnostic::error(
                format!(
                    "stages `{}` and `{}` ({}) write the same files: the same `dir` and `{what}`",
                    site.name,
                    earlier.name,
                    position(earlier, if gathering { "path" } else { "dir" }, sources)
                ),
                site.loc(if gathering { "path" } else { "dir" }),
            )
            .label("same files as another stage")
            .help(Some(
                "give each its own folder or file name, e.g. a `{stem}-small.{ext}` filename"
                    .into(),
            )),
        );
    }
}
