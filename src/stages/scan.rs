//! `scan`: the source stage. Walks a folder (walkdir) in a stable order and
//! emits one item per file that matches the include/exclude globs; or, when
//! `paths` names files and folders (`conveyor run PIPELINE PATH...`), takes
//! those files and walks those folders instead.

use std::collections::{HashMap, HashSet};
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
    /// Files and folders to take instead of walking all of `root` (what
    /// `conveyor run PIPELINE PATH...` sets): a file is taken as named,
    /// whatever the globs say; a folder is walked with them. Outputs are
    /// named by the path relative to `root` when it lies inside `root`,
    /// else relative to the folder given (a file: by its name).
    pub paths: Vec<String>,
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
            paths: Vec::new(),
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
        if self.paths.iter().any(String::is_empty) {
            errors.push(OptionError::at("paths", "a path in `paths` is empty"));
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
    /// What the scan takes, in order.
    targets: Vec<Target>,
    /// The rules of each walk, by the walk's index in `targets`.
    walks: Vec<Option<Scope>>,
    /// What the output guard keeps writers off: the targets, and the root
    /// even when `paths` replace it.
    guarded: Vec<Scope>,
}

impl Scan {
    fn new(opts: ScanOptions, stage: &str) -> Result<Scan, crate::stage::KindError> {
        let unusable = |e: crate::inputs::GlobError| crate::stage::KindError::Unusable(e.0);
        let targets = targets(&opts, stage);
        let walks = targets
            .iter()
            .map(|t| match t {
                Target::Walk { scope, .. } => Scope::new(scope.clone()).map(Some),
                Target::File { .. } => Ok(None),
            })
            .collect::<Result<_, _>>()
            .map_err(unusable)?;
        let guarded = guarded(&opts, stage, &targets)
            .into_iter()
            .map(Scope::new)
            .collect::<Result<_, _>>()
            .map_err(unusable)?;
        Ok(Scan {
            opts,
            targets,
            walks,
            guarded,
        })
    }
}

/// One thing a scan takes: a folder to walk, or one named file.
#[derive(Debug, Clone)]
enum Target {
    /// Walk `dir`; files are named relative to `scope.root`, which is `dir`
    /// or a folder above it (the scan's root), and chosen by its rules.
    Walk { dir: PathBuf, scope: ScopeSpec },
    /// One file, taken whatever the globs say, named `rel`.
    File { path: PathBuf, rel: PathBuf },
}

/// The files a scan reads, as rules for the checks before work and the
/// output guard: its walks, its named files (one scope per folder, so a
/// run of 20,000 named files has a few scopes, not 20,000), and, when
/// `paths` replace its root, the root as well. The root's files are the
/// originals a full run would read, so a run on a few files never writes
/// over the others.
fn guarded(opts: &ScanOptions, stage: &str, targets: &[Target]) -> Vec<ScopeSpec> {
    let mut specs: Vec<ScopeSpec> = Vec::new();
    let mut by_folder: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    let mut folder_at: std::collections::HashMap<PathBuf, usize> = Default::default();
    for t in targets {
        match t {
            Target::Walk { scope, .. } => {
                if !specs.contains(scope) {
                    specs.push(scope.clone());
                }
            }
            Target::File { path, .. } => {
                let folder = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let name = path.file_name().map(PathBuf::from).unwrap_or_default();
                let at = *folder_at.entry(folder.clone()).or_insert_with(|| {
                    by_folder.push((folder, Vec::new()));
                    by_folder.len() - 1
                });
                by_folder[at].1.push(name);
            }
        }
    }
    specs.extend(by_folder.into_iter().map(|(root, names)| ScopeSpec {
        stage: stage.to_string(),
        root,
        only: Some(names),
        ..ScopeSpec::default()
    }));
    let main = scope_spec(opts, stage);
    if !opts.paths.is_empty() && Path::new(&opts.root).is_dir() && !specs.contains(&main) {
        specs.push(main);
    }
    specs
}

/// A scan's paths as the checks before work see them.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    match crate::stage::parse_options::<ScanOptions>(t) {
        Ok(o) => crate::stage::StagePaths::Reads(guarded(&o, "", &targets(&o, ""))),
        Err(_) => crate::stage::StagePaths::None,
    }
}

/// `path` with its folder resolved (links followed) and its name kept: a
/// file named through a link is taken where the link is.
fn real_file(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => crate::inputs::resolve(parent).join(name),
        _ => crate::inputs::resolve(path),
    }
}

/// What a scan takes: its root, or each of `paths`, each once however it
/// is spelled. A path inside the root is named as a walk of the root would
/// name it, so its outputs and its journal lines are the same as in a full
/// run.
fn targets(opts: &ScanOptions, stage: &str) -> Vec<Target> {
    let main = scope_spec(opts, stage);
    let root = PathBuf::from(&opts.root);
    if opts.paths.is_empty() {
        return vec![Target::Walk {
            dir: root,
            scope: main,
        }];
    }
    let real_root = crate::inputs::resolve(&root);
    let mut out: Vec<Target> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for given in opts.paths.iter().map(PathBuf::from) {
        let is_dir = std::fs::metadata(&given).is_ok_and(|m| m.is_dir());
        let real = if is_dir {
            crate::inputs::resolve(&given)
        } else {
            real_file(&given)
        };
        if !seen.insert(real.clone()) {
            continue;
        }
        let inside = real.strip_prefix(&real_root).ok().map(Path::to_path_buf);
        out.push(match (is_dir, inside) {
            (true, Some(rel)) => Target::Walk {
                dir: root.join(&rel),
                scope: main.clone(),
            },
            (true, None) => Target::Walk {
                dir: given.clone(),
                scope: ScopeSpec {
                    root: given.clone(),
                    ..main.clone()
                },
            },
            (false, Some(rel)) if !rel.as_os_str().is_empty() => Target::File {
                path: root.join(&rel),
                rel,
            },
            (false, _) => Target::File {
                rel: given.file_name().map(PathBuf::from).unwrap_or_default(),
                path: given,
            },
        });
    }
    out
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
        only: None,
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
        item_of(path, rel, meta.as_ref(), ctx)
    }

    /// A file named in `paths`: taken if it is a regular file (or a link to
    /// one), reported otherwise.
    fn named(&self, path: &Path, rel: &Path, ctx: &SourceContext) -> Option<Found> {
        let problem = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                return item_of(path.to_path_buf(), rel.to_path_buf(), Some(&m), ctx);
            }
            Ok(m) if m.is_dir() => "is a folder now".to_string(),
            Ok(_) => "is not a regular file (a FIFO, socket or device)".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
            Err(e) => e.to_string(),
        };
        Some(Found::Error {
            path: path.to_path_buf(),
            reason: problem,
        })
    }
}

/// An item for a file found, with its size and time, its identity recorded;
/// `None` when the run holds it back for now (`watch`: not completely
/// written yet).
fn item_of(
    path: PathBuf,
    rel: PathBuf,
    meta: Option<&std::fs::Metadata>,
    ctx: &SourceContext,
) -> Option<Found> {
    if let Some(m) = meta {
        // Recorded even when held: a file not ready yet is still an input
        // no writer may replace.
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
    fn scopes(&self) -> Vec<Scope> {
        self.guarded.clone()
    }

    fn produce(&self, ctx: &SourceContext, emit: &mut dyn FnMut(Found) -> bool) {
        // Paths that overlap (a folder and a file in it, a folder and one
        // inside it) give each file once: the first time it is found.
        let several = self.targets.len() > 1;
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut folders: HashMap<PathBuf, PathBuf> = HashMap::new();
        let mut once = |found: Found| -> bool {
            if several && let Found::Item(item) = &found {
                let real = match (item.path.parent(), item.path.file_name()) {
                    (Some(folder), Some(name)) => folders
                        .entry(folder.to_path_buf())
                        .or_insert_with(|| crate::inputs::resolve(folder))
                        .join(name),
                    _ => item.path.clone(),
                };
                if !seen.insert(real) {
                    return true;
                }
            }
            emit(found)
        };
        for (target, walk) in self.targets.iter().zip(&self.walks) {
            let go_on = match (target, walk) {
                (Target::Walk { dir, .. }, Some(scope)) => self.walk(dir, scope, ctx, &mut once),
                (Target::File { path, rel }, _) => match self.named(path, rel, ctx) {
                    Some(found) => once(found),
                    None => true,
                },
                (Target::Walk { .. }, None) => true,
            };
            if !go_on {
                return;
            }
        }
    }
}

impl Scan {
    /// Walk `dir`, naming files relative to the scope's root (`dir` or a
    /// folder above it). False when `emit` asked to stop.
    fn walk(
        &self,
        dir: &Path,
        scope: &Scope,
        ctx: &SourceContext,
        emit: &mut dyn FnMut(Found) -> bool,
    ) -> bool {
        if !dir.is_dir() {
            let reason = if dir.exists() {
                "not a folder".to_string()
            } else {
                "no such folder".to_string()
            };
            return emit(Found::Error {
                path: dir.to_path_buf(),
                reason,
            });
        }
        let base = scope.spec.root.clone();
        // `max_depth` counts from the root, also when a folder inside it
        // is walked alone.
        let below = dir
            .strip_prefix(&base)
            .map_or(0, |rel| rel.components().count());
        let scope = scope.clone().skipping(&ctx.skip_dirs);
        // A folder named inside the root is walked only where a walk of the
        // root would go: not into hidden, excluded or output folders.
        if let Ok(rel) = dir.strip_prefix(&base) {
            let mut folder = PathBuf::new();
            for part in rel.components() {
                folder.push(part);
                if !scope.enters_dir(&folder) {
                    return emit(Found::Error {
                        path: dir.to_path_buf(),
                        reason: "not walked: the scan's rules leave this folder out (hidden, excluded, or an output folder of this run)".into(),
                    });
                }
            }
        }
        let mut walk = walkdir::WalkDir::new(dir)
            .follow_links(self.opts.follow_links)
            .sort_by_file_name();
        if let Some(depth) = self.opts.max_depth {
            if depth < below {
                return true;
            }
            walk = walk.max_depth(depth - below);
        }
        let iter = walk.into_iter().filter_entry(|e| {
            if e.depth() == 0 {
                return true;
            }
            let rel = e.path().strip_prefix(&base).unwrap_or(e.path());
            if e.file_type().is_dir() {
                scope.enters_dir(rel)
            } else {
                scope.takes_file(rel)
            }
        });
        for entry in iter {
            let found = match entry {
                Ok(e) => match self.found(&e, &base, ctx) {
                    Some(found) => found,
                    None => continue,
                },
                Err(err) => walk_error(&err, dir),
            };
            if !emit(found) {
                return false;
            }
        }
        true
    }
}
