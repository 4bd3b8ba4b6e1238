//! `scan`: the source stage. Walks a folder (walkdir) in a stable order and
//! emits one item per file that matches the include/exclude globs; or, when
//! `paths` names files and folders (`conveyor run PIPELINE PATH...`), takes
//! those files and walks those folders instead.

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

/// A scan reads the files its scopes select.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    match crate::stage::parse_options::<ScanOptions>(t) {
        Ok(o) => crate::stage::StagePaths::Reads(guarded(&o, "")),
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
    /// What the scan takes, in order, each with the files it selects.
    targets: Vec<(Target, Scope)>,
    /// What the output guard keeps writers off: the targets, and the root
    /// even when `paths` replace it.
    guarded: Vec<Scope>,
}

impl Scan {
    fn new(opts: ScanOptions, stage: &str) -> Result<Scan, crate::stage::KindError> {
        let targets = targets(&opts, stage)
            .into_iter()
            .map(|t| {
                let scope = Scope::new(t.spec().clone())
                    .map_err(|e| crate::stage::KindError::Unusable(e.0))?;
                Ok((t, scope))
            })
            .collect::<Result<_, crate::stage::KindError>>()?;
        let guarded = guarded(&opts, stage)
            .into_iter()
            .map(|spec| Scope::new(spec).map_err(|e| crate::stage::KindError::Unusable(e.0)))
            .collect::<Result<_, _>>()?;
        Ok(Scan {
            opts,
            targets,
            guarded,
        })
    }
}

/// One thing a scan takes: a folder to walk, or one named file.
#[derive(Debug, Clone)]
enum Target {
    /// Walk `dir`; files are named relative to `scope.root`, which is `dir`
    /// or a folder above it (the scan's root), and chosen by its globs.
    Walk { dir: PathBuf, scope: ScopeSpec },
    /// One file, taken whatever the globs say, named `rel`.
    File {
        path: PathBuf,
        rel: PathBuf,
        scope: ScopeSpec,
    },
}

impl Target {
    fn spec(&self) -> &ScopeSpec {
        match self {
            Target::Walk { scope, .. } | Target::File { scope, .. } => scope,
        }
    }

    fn into_spec(self) -> ScopeSpec {
        match self {
            Target::Walk { scope, .. } | Target::File { scope, .. } => scope,
        }
    }
}

/// The files a scan protects from writers: those it takes, and, when
/// `paths` replace its root, the root's files as well. They are the
/// originals a full run would read, so a run on a few files never writes
/// over the others.
fn guarded(opts: &ScanOptions, stage: &str) -> Vec<ScopeSpec> {
    let mut specs: Vec<ScopeSpec> = targets(opts, stage)
        .into_iter()
        .map(Target::into_spec)
        .collect();
    let main = scope_spec(opts, stage);
    if !opts.paths.is_empty() && Path::new(&opts.root).is_dir() && !specs.contains(&main) {
        specs.push(main);
    }
    specs
}

/// What a scan takes: its root, or each of `paths`. A path inside the root
/// is named as a walk of the root would name it, so its outputs and its
/// journal lines are the same as in a full run.
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
    for given in opts.paths.iter().map(PathBuf::from) {
        let is_dir = std::fs::metadata(&given).is_ok_and(|m| m.is_dir());
        // A file is placed by its folder, so a link named on the command
        // line is taken where it is, not where it points.
        let real = match (is_dir, given.parent(), given.file_name()) {
            (false, Some(parent), Some(name)) => crate::inputs::resolve(parent).join(name),
            _ => crate::inputs::resolve(&given),
        };
        let inside = real.strip_prefix(&real_root).ok().map(Path::to_path_buf);
        let target = match (is_dir, inside) {
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
            (false, inside) => {
                let (path, rel) = match inside {
                    Some(rel) if !rel.as_os_str().is_empty() => (root.join(&rel), rel),
                    _ => {
                        let name = given.file_name().map(PathBuf::from).unwrap_or_default();
                        (given.clone(), name)
                    }
                };
                let folder = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                Target::File {
                    scope: ScopeSpec {
                        root: folder,
                        only: path.file_name().map(PathBuf::from),
                        ..ScopeSpec::default()
                    },
                    path,
                    rel,
                }
            }
        };
        // The same file or folder named twice is taken once.
        let same = |t: &Target| match (t, &target) {
            (Target::Walk { dir: a, .. }, Target::Walk { dir: b, .. }) => a == b,
            (Target::File { path: a, .. }, Target::File { path: b, .. }) => a == b,
            _ => false,
        };
        if !out.iter().any(same) {
            out.push(target);
        }
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
        Some(item_of(path, rel, meta.as_ref(), ctx))
    }

    /// A file named in `paths`: taken if it is a regular file (or a link to
    /// one), reported otherwise.
    fn named(&self, path: &Path, rel: &Path, ctx: &SourceContext) -> Found {
        let problem = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                return item_of(path.to_path_buf(), rel.to_path_buf(), Some(&m), ctx);
            }
            Ok(m) if m.is_dir() => "is a folder now".to_string(),
            Ok(_) => "is not a regular file (a FIFO, socket or device)".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
            Err(e) => e.to_string(),
        };
        Found::Error {
            path: path.to_path_buf(),
            reason: problem,
        }
    }
}

/// An item for a file found, with its size and time, its identity recorded.
fn item_of(
    path: PathBuf,
    rel: PathBuf,
    meta: Option<&std::fs::Metadata>,
    ctx: &SourceContext,
) -> Found {
    let mut item = Item::new(path, rel);
    if let Some(m) = meta {
        ctx.inputs.record(crate::inputs::file_id(m));
        item.meta.size = Some(m.len());
        let since_epoch = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        item.meta.mtime = since_epoch.and_then(|d| i64::try_from(d.as_secs()).ok());
        item.meta.mtime_ns = since_epoch.and_then(|d| u64::try_from(d.as_nanos()).ok());
    }
    Found::Item(Box::new(item))
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
        for (target, scope) in &self.targets {
            let go_on = match target {
                Target::Walk { dir, .. } => self.walk(dir, scope, ctx, emit),
                Target::File { path, rel, .. } => emit(self.named(path, rel, ctx)),
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
