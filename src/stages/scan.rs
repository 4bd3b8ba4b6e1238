//! `scan`: the source stage. Walks a folder (walkdir) in a stable order and
//! emits one item per file that matches the include/exclude globs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::GlobBuilder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::inputs::{Scope, ScopeSpec};
use crate::item::{Item, PayloadType, Types};
use crate::stage::{
    Built, Found, KindSpec, OptionError, Output, Source, SourceContext, StageOptions,
};

/// Options of `scan`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ScanOptions {
    /// Folder to walk. Outputs are named by each file's path relative to it.
    pub root: String,
    /// Globs (relative to `root`) of files to take; empty takes every file.
    pub include: Vec<String>,
    /// Globs of files and folders to leave out.
    pub exclude: Vec<String>,
    /// Follow symbolic links to files and folders.
    pub follow_links: bool,
    /// How deep to descend below `root` (1: only files directly in it), 1 to
    /// 10000.
    #[schemars(range(min = 1, max = 10_000))]
    pub max_depth: Option<usize>,
    /// Also take hidden files and folders (names starting with `.`).
    pub hidden: bool,
    /// Match globs case-sensitively (`*.jpg` then misses `IMG.JPG`).
    pub case_sensitive: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            root: ".".into(),
            include: Vec::new(),
            exclude: Vec::new(),
            follow_links: false,
            max_depth: None,
            hidden: false,
            case_sensitive: false,
        }
    }
}

impl StageOptions for ScanOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.root.is_empty() {
            errors.push(OptionError::at("root", "`root` must not be empty"));
        }
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for g in globs {
                if let Err(e) = GlobBuilder::new(g).build() {
                    errors.push(OptionError::at(
                        key,
                        format!("invalid glob `{g}`: {}", e.kind()),
                    ));
                }
            }
        }
        if self.max_depth == Some(0) {
            errors.push(OptionError::at(
                "max_depth",
                "`max_depth` must be at least 1",
            ));
        }
        errors
    }
}

/// Of a scan's options only `root` says anything about an item's outputs
/// (its paths are taken relative to it); the others decide which files are
/// in scope, and an item still in scope stays up to date.
fn scan_meaning(t: &toml::Table) -> serde_json::Value {
    match crate::stage::parse_options::<ScanOptions>(t) {
        Ok(o) => serde_json::json!({ "root": o.root }),
        Err(_) => serde_json::Value::Null,
    }
}

/// A scan reads the files its scope selects.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    match crate::stage::parse_options::<ScanOptions>(t) {
        Ok(o) => crate::stage::StagePaths::Reads(scope_spec(&o, "")),
        Err(_) => crate::stage::StagePaths::None,
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "scan",
        paths,
        summary: "walk a folder and emit one item per matching file",
        accepts: Types::NONE,
        output: Output::Fixed(PayloadType::Nothing),
        schema: || schemars::schema_for!(ScanOptions),
        check: crate::stage::check_options::<ScanOptions>,
        meaning: scan_meaning,
        revision: 1,
        build: |t, ctx| {
            Ok(Built::Source(Arc::new(Scan::new(
                crate::stage::parse_options(t)?,
                &ctx.stage,
            )?)))
        },
    }
}

struct Scan {
    opts: ScanOptions,
    /// Which files the walk takes: shared with the output guard.
    scope: Scope,
}

impl Scan {
    fn new(opts: ScanOptions, stage: &str) -> Result<Scan, crate::stage::KindError> {
        let scope = Scope::new(scope_spec(&opts, stage))
            .map_err(|e| crate::stage::KindError::Unusable(e.0))?;
        Ok(Scan { opts, scope })
    }
}

fn scope_spec(opts: &ScanOptions, stage: &str) -> ScopeSpec {
    ScopeSpec {
        stage: stage.to_string(),
        root: PathBuf::from(&opts.root),
        include: opts.include.clone(),
        exclude: opts.exclude.clone(),
        hidden: opts.hidden,
        case_sensitive: opts.case_sensitive,
        max_depth: opts.max_depth,
        follow_links: opts.follow_links,
    }
}

impl Scan {
    /// What an entry of the walk is: an item, an error, or nothing to
    /// process (a folder, a FIFO, a link to a folder).
    fn found(&self, e: &walkdir::DirEntry, root: &Path, ctx: &SourceContext) -> Option<Found> {
        let ft = e.file_type();
        // FIFOs, sockets and devices are not files to process: a FIFO named
        // `x.jpg` would block its reader forever.
        if ft.is_dir() || (!ft.is_file() && !ft.is_symlink()) {
            return None;
        }
        let path = e.path().to_path_buf();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        // A link to a file counts as that file (its size and time are the
        // target's); a dangling one is reported.
        let meta = if e.path_is_symlink() && !self.opts.follow_links {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Some(m),
                Ok(_) => return None,
                Err(err) => {
                    return Some(Found::Error {
                        path,
                        reason: format!("broken symbolic link: {err}"),
                    });
                }
            }
        } else {
            e.metadata().ok()
        };
        if let Some(m) = &meta {
            // Recorded even when held: a file not ready yet is still an
            // input no writer may replace.
            ctx.inputs.record(crate::inputs::file_id(m));
            if ctx.holds(&path, m) {
                return None;
            }
        }
        let mut item = Item::new(path, rel);
        if let Some(m) = meta {
            item.meta.size = Some(m.len());
            let since_epoch = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            item.meta.mtime = since_epoch.and_then(|d| i64::try_from(d.as_secs()).ok());
            item.meta.mtime_ns = since_epoch.and_then(|d| u64::try_from(d.as_nanos()).ok());
        }
        Some(Found::Item(Box::new(item)))
    }
}

/// An entry the walk could not read, in words.
fn walk_error(err: &walkdir::Error, root: &Path) -> Found {
    let path = err
        .path()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.to_path_buf());
    let dangling = err
        .io_error()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
        && path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
    let reason = if err.loop_ancestor().is_some() {
        "symbolic link loop".to_string()
    } else if dangling {
        "broken symbolic link: it points to nothing".to_string()
    } else if let Some(io) = err.io_error() {
        io.to_string()
    } else {
        err.to_string()
    };
    Found::Error { path, reason }
}

impl Source for Scan {
    fn scope(&self) -> Option<Scope> {
        Some(self.scope.clone())
    }

    fn produce(&self, ctx: &SourceContext, emit: &mut dyn FnMut(Found) -> bool) {
        let root = PathBuf::from(&self.opts.root);
        if !root.is_dir() {
            let reason = if root.exists() {
                "not a folder".to_string()
            } else {
                "no such folder".to_string()
            };
            emit(Found::Error { path: root, reason });
            return;
        }
        let scope = self.scope.clone().skipping(&ctx.skip_dirs);
        let mut walk = walkdir::WalkDir::new(&root)
            .follow_links(self.opts.follow_links)
            .sort_by_file_name();
        if let Some(depth) = self.opts.max_depth {
            walk = walk.max_depth(depth);
        }
        let root_for_filter = root.clone();
        let iter = walk.into_iter().filter_entry(|e| {
            if e.depth() == 0 {
                return true;
            }
            let rel = e.path().strip_prefix(&root_for_filter).unwrap_or(e.path());
            if e.file_type().is_dir() {
                scope.enters_dir(rel)
            } else {
                scope.takes_file(rel)
            }
        });
        for entry in iter {
            let found = match entry {
                Ok(e) => match self.found(&e, &root, ctx) {
                    Some(found) => found,
                    None => continue,
                },
                Err(err) => walk_error(&err, &root),
            };
            if !emit(found) {
                return;
            }
        }
    }
}
