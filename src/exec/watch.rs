//! `conveyor watch`: run a pipeline, then run it again whenever files land
//! in its scan folders. Each batch is one more resumed run of the same
//! checked pipeline: the journals skip what is up to date, gathering stages
//! are handed every item, and a file not completely written yet is held back
//! (a [`Hold`] in the run's options) until it is done: closed after writing
//! or moved in, or with its size and modification time unchanged for the
//! settle time.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::{BuildError, RunOptions, observe};
use crate::config::Pipeline;
use crate::inputs::Scope;
use crate::output::temp::TEMP_PREFIX;
use crate::report::{ItemStatus, RunSummary};
use crate::stage::{Hold, StagePaths};

/// How the watch decides that a file is complete.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How long a file's size and modification time must stay the same
    /// before it is taken, when no event said its writer was done.
    pub settle: Duration,
    /// Remove the recorded outputs of a source deleted while watching.
    pub prune: bool,
}

/// What the watch tells its caller as it goes.
pub enum WatchEvent<'a> {
    /// The first run ended; the folders are watched from now on.
    Started {
        summary: &'a RunSummary,
        folders: &'a [PathBuf],
    },
    /// A batch ended.
    Batch(&'a Batch),
    /// Something that does not stop the watch (a lost event queue, a file
    /// that could not be pruned).
    Warning(String),
}

/// One batch: the run that took the files that landed since the last one.
pub struct Batch {
    /// 1 for the first batch after the first run.
    pub number: u64,
    /// Items that went through (not up to date), in the order they ended.
    pub processed: Vec<observe::Line>,
    /// Sources deleted since the last batch, with the files `--prune`
    /// removed of each.
    pub deleted: Vec<(PathBuf, Vec<PathBuf>)>,
    pub summary: RunSummary,
    /// Every source seen since the watch started, by how it last ended.
    pub totals: Totals,
}

/// Sources seen since the watch started, counted by how each last ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub ok: u64,
    pub failed: u64,
    pub filtered: u64,
    pub up_to_date: u64,
    pub cancelled: u64,
}

/// How long the folders must be quiet (no event for a file a scan takes)
/// before a batch starts, and how long after its close a file must see no
/// new write: a writer that closes and reopens to append keeps it waiting.
const QUIET: Duration = Duration::from_millis(200);

/// How often pending files are looked at (and the interrupt flag).
const TICK: Duration = Duration::from_millis(50);

/// The longest a ready file waits for the folders to be quiet: a camera
/// that shoots without pause still gets its first photos processed.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// Names of files still being written by conveyor itself or by common
/// copiers and browsers: never taken, whatever the scan's globs say.
pub fn partial_name(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    let ends = |suffix: &str| {
        b.len() >= suffix.len()
            && b[b.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    b.starts_with(TEMP_PREFIX.as_bytes())
        || b.ends_with(b"~")
        || [".part", ".partial", ".crdownload", ".download", ".tmp"]
            .iter()
            .any(|s| ends(s))
}

/// The scopes of a pipeline's scans, with the folders its writers write
/// into left out (as a run leaves them out), from the checked options alone.
pub fn scopes(pipeline: &Pipeline) -> Vec<Scope> {
    let paths: Vec<StagePaths> = pipeline
        .stages
        .iter()
        .map(|d| (d.kind.paths)(&d.options))
        .collect();
    let written: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| match p {
            StagePaths::Writes { dir, .. } => Some(dir.clone()),
            _ => None,
        })
        .collect();
    paths
        .into_iter()
        .zip(&pipeline.stages)
        .flat_map(|(p, d)| match p {
            StagePaths::Reads(specs) => specs
                .into_iter()
                .map(|mut s| {
                    s.stage = d.name.clone();
                    s
                })
                .collect(),
            _ => Vec::new(),
        })
        .filter_map(|spec| Scope::new(spec).ok().map(|s| s.skipping(&written)))
        .collect()
}

/// A file's size and modification time: what "settled" compares.
type Stamp = (u64, Option<SystemTime>);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (meta.len(), meta.modified().ok())
}

/// Whether a file modified at `mtime` was modified less than `settle` ago
/// (or has a time in the future, which says nothing about being done).
fn recent(mtime: SystemTime, settle: Duration) -> bool {
    match mtime.elapsed() {
        Ok(age) => age < settle,
        Err(_) => true,
    }
}

/// A file seen changing, not yet taken.
struct Pending {
    /// When the last event about it came.
    last_event: Instant,
    /// The last event said its writer was done (closed after writing, or
    /// the file was moved in whole).
    closed: bool,
    /// Its size and time when last looked at, and since when they are so.
    stamp: Option<Stamp>,
    stable_since: Instant,
}

/// What the sources must leave for later in one batch, and what they left
/// because it looked too new.
struct HoldState {
    settle: Duration,
    /// Files the watch saw complete: taken even if their time is recent.
    ready: HashSet<PathBuf>,
    /// Files still being written.
    not_yet: HashSet<PathBuf>,
    /// Files that failed and have not changed since: not retried.
    failed: HashMap<PathBuf, Stamp>,
    /// Files an earlier batch took as complete: taken while unchanged,
    /// however recent their time.
    taken: HashMap<PathBuf, Stamp>,
    /// Files held because their modification time was too recent, found
    /// during the batch: the watch follows them from then on.
    recent: Mutex<Vec<PathBuf>>,
}

impl HoldState {
    fn holds(&self, path: &Path, meta: &std::fs::Metadata) -> bool {
        if path.file_name().is_some_and(partial_name) || self.not_yet.contains(path) {
            return true;
        }
        if self.ready.contains(path) {
            return false;
        }
        let now = stamp(meta);
        if self.failed.get(path) == Some(&now) {
            return true;
        }
        if self.taken.get(path) == Some(&now) {
            return false;
        }
        // A file written a moment ago may still be written to, and its
        // event may not have come yet: it waits until it has settled.
        let recent = meta.modified().is_ok_and(|m| recent(m, self.settle));
        if recent {
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(path.to_path_buf());
        }
        recent
    }
}

/// The files the watch follows between batches.
struct Tracker {
    scopes: Vec<Scope>,
    settle: Duration,
    /// By the path the events name (absolute, resolved).
    pending: HashMap<PathBuf, Pending>,
    /// Failed sources by the name the scans give them, with the size and
    /// time they failed with.
    failed: HashMap<PathBuf, Stamp>,
    /// Files batches took as complete, by the scans' names, with their size
    /// and time then; kept while their time is recent (see
    /// [`HoldState::taken`]).
    taken: HashMap<PathBuf, Stamp>,
    /// Sources deleted since the last batch, by the scans' names.
    deleted: Vec<PathBuf>,
    /// The last event about a file a scan takes.
    last_event: Option<Instant>,
    /// A full look is due (events were lost, a folder appeared).
    rescan: bool,
    /// Since when a batch has work waiting.
    waiting_since: Option<Instant>,
}

impl Tracker {
    /// The names the scans give the file at `path` (absolute, resolved):
    /// one per scan that takes it.
    fn names(&self, path: &Path) -> Vec<PathBuf> {
        if path.file_name().is_some_and(partial_name) {
            return Vec::new();
        }
        self.scopes
            .iter()
            .filter(|s| s.would_find(path))
            .filter_map(|s| Some(s.spec.root.join(path.strip_prefix(&s.root).ok()?)))
            .collect()
    }

    /// The name a scan gives `path`, whether or not it takes it (for
    /// deleted files and folders, which can't be looked at any more).
    fn names_below_roots(&self, path: &Path) -> Vec<PathBuf> {
        self.scopes
            .iter()
            .filter_map(|s| Some(s.spec.root.join(path.strip_prefix(&s.root).ok()?)))
            .filter(|n| n.file_name().is_some())
            .collect()
    }

    /// Whether some scan walks the folder `dir` (absolute, resolved): not a
    /// writer's folder, nor hidden or excluded, nor too deep.
    fn walks(&self, dir: &Path) -> bool {
        self.scopes.iter().any(|s| {
            let Ok(rel) = dir.strip_prefix(&s.root) else {
                return false;
            };
            let mut so_far = PathBuf::new();
            let depth = rel.components().count();
            rel.components().all(|c| {
                so_far.push(c);
                s.enters_dir(&so_far)
            }) && s.spec.max_depth.is_none_or(|d| depth < d)
        })
    }

    /// Where the file a scan calls `name` is, as events name it.
    fn event_path(&self, name: &Path) -> Option<PathBuf> {
        self.scopes
            .iter()
            .find_map(|s| Some(s.root.join(name.strip_prefix(&s.spec.root).ok()?)))
    }

    fn on_event(&mut self, event: notify::Event, now: Instant) {
        if event.need_rescan() {
            self.rescan = true;
            return;
        }
        for path in &event.paths {
            match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                    if path.is_dir() {
                        self.folder_appeared(path, now);
                    } else {
                        self.changed(path, now, true);
                    }
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                    self.gone(path, now)
                }
                // The two halves of a rename came on their own.
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {}
                EventKind::Create(CreateKind::Folder) => self.folder_appeared(path, now),
                EventKind::Create(_) | EventKind::Modify(_) => {
                    if !path.is_dir() {
                        self.changed(path, now, false);
                    }
                }
                // Opened, read: nothing changed.
                EventKind::Access(_) => {}
                EventKind::Any | EventKind::Other => self.rescan = true,
            }
        }
    }

    fn changed(&mut self, path: &Path, now: Instant, closed: bool) {
        if self.names(path).is_empty() {
            return;
        }
        self.last_event = Some(now);
        let p = self.pending.entry(path.to_path_buf()).or_insert(Pending {
            last_event: now,
            closed,
            stamp: None,
            stable_since: now,
        });
        p.last_event = now;
        p.closed = closed;
    }

    /// A folder moved or made in a watched folder: its files may have
    /// landed before it was watched, so each is followed, and one full look
    /// catches any that slipped between.
    fn folder_appeared(&mut self, dir: &Path, now: Instant) {
        // A writer's new folder is none of the watch's business.
        if !self.walks(dir) {
            return;
        }
        let files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(walkdir::DirEntry::into_path)
            .collect();
        for f in files {
            self.changed(&f, now, false);
        }
        self.rescan = true;
        self.last_event = Some(now);
    }

    fn gone(&mut self, path: &Path, now: Instant) {
        self.pending.retain(|p, _| !p.starts_with(path));
        // A temp name renamed to its real one is no source deleted, and a
        // file gone from a writer's folder is no source at all.
        if path.file_name().is_some_and(partial_name) {
            return;
        }
        let scanned = !self.names(path).is_empty() || self.walks(path);
        let names = self.names_below_roots(path);
        if !scanned || names.is_empty() {
            return;
        }
        let under = |f: &PathBuf| names.iter().any(|n| f.starts_with(n));
        self.failed.retain(|f, _| !under(f));
        self.taken.retain(|f, _| !under(f));
        self.deleted.extend(names);
        self.last_event = Some(now);
    }

    /// Look at every pending file; the complete ones, by event path.
    fn ready(&mut self, now: Instant) -> Vec<PathBuf> {
        let (settle, quiet) = (self.settle, QUIET.min(self.settle));
        let mut ready = Vec::new();
        self.pending.retain(|path, p| {
            let meta = match std::fs::metadata(path) {
                Ok(m) if m.is_file() => m,
                // Gone, or not a file: its own event says what happened.
                _ => return false,
            };
            let now_stamp = stamp(&meta);
            if p.stamp != Some(now_stamp) {
                p.stamp = Some(now_stamp);
                p.stable_since = now;
            }
            let since_event = now.saturating_duration_since(p.last_event);
            let done = if p.closed {
                since_event >= quiet
            } else {
                since_event >= settle && now.saturating_duration_since(p.stable_since) >= settle
            };
            if done {
                ready.push(path.clone());
            }
            true
        });
        ready
    }

    /// Whether a batch should start now.
    fn due(&mut self, now: Instant, ready: &[PathBuf]) -> bool {
        let work = !ready.is_empty() || !self.deleted.is_empty() || self.rescan;
        if !work {
            self.waiting_since = None;
            return false;
        }
        let waiting = *self.waiting_since.get_or_insert(now);
        let quiet = QUIET.min(self.settle);
        let calm = self
            .last_event
            .is_none_or(|t| now.saturating_duration_since(t) >= quiet);
        calm || now.saturating_duration_since(waiting) >= MAX_WAIT
    }
}

/// Outcomes of one run, gathered as its items end.
#[derive(Default)]
struct Outcomes {
    /// Every item's name and how it ended.
    statuses: Vec<(PathBuf, ItemStatus)>,
    /// Items that went through (not up to date).
    processed: Vec<observe::Line>,
}

/// The watch itself: the tracker, the run options it hands each batch,
/// and what every source last did.
struct Session<'a> {
    pipeline: &'a Pipeline,
    watch: WatchOptions,
    tracker: Tracker,
    statuses: HashMap<PathBuf, ItemStatus>,
    batches: u64,
}

impl Session<'_> {
    /// One run with the files in `ready` (event paths) taken and the other
    /// pending ones held; returns its summary and outcomes.
    fn run(
        &mut self,
        opts: &mut RunOptions,
        ready: &[PathBuf],
    ) -> Result<(RunSummary, Outcomes), BuildError> {
        let t = &self.tracker;
        let ready_names: HashSet<PathBuf> = ready.iter().flat_map(|p| t.names(p)).collect();
        let ready_paths: HashSet<&PathBuf> = ready.iter().collect();
        let not_yet: HashSet<PathBuf> = t
            .pending
            .keys()
            .filter(|p| !ready_paths.contains(p))
            .flat_map(|p| t.names(p))
            .collect();
        let state = Arc::new(HoldState {
            settle: self.watch.settle,
            ready: ready_names,
            not_yet,
            failed: t.failed.clone(),
            taken: t.taken.clone(),
            recent: Mutex::default(),
        });
        let held = Arc::clone(&state);
        opts.hold = Some(Hold(Arc::new(move |path, meta| held.holds(path, meta))));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let sink = Arc::clone(&outcomes);
        opts.on_item_end = Some(Arc::new(move |line: &observe::Line| {
            let mut o = sink.lock().unwrap_or_else(|e| e.into_inner());
            o.statuses.push((line.path.clone(), line.status));
            if line.status != ItemStatus::UpToDate {
                o.processed.push(line.clone());
            }
        }));
        let summary = super::run(self.pipeline, opts);
        opts.hold = None;
        opts.on_item_end = None;
        let summary = summary?;
        let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()));
        let now = Instant::now();
        for p in ready {
            if let Some(done) = self.tracker.pending.remove(p)
                && let Some(st) = done.stamp
            {
                for name in self.tracker.names(p) {
                    self.tracker.taken.insert(name, st);
                }
            }
        }
        // Once its time is old enough, a file needs no word for it.
        let settle = self.watch.settle;
        self.tracker
            .taken
            .retain(|_, (_, mtime)| mtime.is_some_and(|m| recent(m, settle)));
        // Files that looked too new: followed until they settle.
        let recent = std::mem::take(&mut *state.recent.lock().unwrap_or_else(|e| e.into_inner()));
        for name in recent {
            if let Some(path) = self.tracker.event_path(&name) {
                self.tracker.changed(&path, now, false);
            }
        }
        self.note(&outcomes);
        Ok((summary, outcomes))
    }

    /// Remember how each item ended: a failure is not retried until its
    /// file changes; up to date never hides a newer outcome.
    fn note(&mut self, outcomes: &Outcomes) {
        for (name, status) in &outcomes.statuses {
            match status {
                ItemStatus::Failed => {
                    if let Ok(m) = std::fs::metadata(name) {
                        self.tracker.failed.insert(name.clone(), stamp(&m));
                    }
                }
                ItemStatus::Ok | ItemStatus::Filtered => {
                    self.tracker.failed.remove(name);
                }
                _ => {}
            }
            if *status == ItemStatus::UpToDate {
                self.statuses.entry(name.clone()).or_insert(*status);
            } else {
                self.statuses.insert(name.clone(), *status);
            }
        }
    }

    fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.statuses.values() {
            match s {
                ItemStatus::Ok => t.ok += 1,
                ItemStatus::Failed => t.failed += 1,
                ItemStatus::Filtered => t.filtered += 1,
                ItemStatus::UpToDate => t.up_to_date += 1,
                ItemStatus::Cancelled => t.cancelled += 1,
            }
        }
        t
    }

    /// Forget deleted sources (and, with `--prune`, remove their outputs).
    fn deleted(&mut self, notify: &mut dyn FnMut(WatchEvent<'_>)) -> Vec<(PathBuf, Vec<PathBuf>)> {
        let deleted = std::mem::take(&mut self.tracker.deleted);
        // Each source gone, with the files removed of it.
        let mut out: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for name in deleted {
            let gone: Vec<PathBuf> = self
                .statuses
                .keys()
                .filter(|k| k.starts_with(&name) && !k.exists())
                .cloned()
                .collect();
            for k in gone {
                self.statuses.remove(&k);
                out.entry(k).or_default();
            }
            if self.watch.prune {
                let pruned = super::resume::prune(self.pipeline, &name, &self.tracker.scopes);
                for w in &pruned.warnings {
                    notify(WatchEvent::Warning(w.clone()));
                }
                for (source, files) in pruned.removed {
                    out.entry(source).or_default().extend(files);
                }
            }
        }
        let mut out: Vec<(PathBuf, Vec<PathBuf>)> = out.into_iter().collect();
        out.sort();
        out
    }
}

/// The scan roots being watched.
struct Folders {
    /// Kept alive for as long as the watch goes on.
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
}

/// Start watching every scan root; events arrive on `events`.
fn start_watcher(scopes: &[Scope]) -> Result<Folders, BuildError> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|e| BuildError::Setup {
        message: format!("cannot watch folders: {}", notify_reason(&e)),
    })?;
    let mut roots: Vec<PathBuf> = scopes.iter().map(|s| s.root.clone()).collect();
    roots.sort();
    roots.dedup();
    for root in &roots {
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(|e| BuildError::Setup {
                message: format!(
                    "cannot watch {}: {}",
                    crate::item::escape_path(root),
                    notify_reason(&e)
                ),
            })?;
    }
    Ok(Folders {
        _watcher: watcher,
        events: rx,
    })
}

/// A watcher's error in the user's words.
fn notify_reason(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::Io(io) => crate::output::plain_io_reason(io),
        notify::ErrorKind::PathNotFound => "no such folder".into(),
        notify::ErrorKind::MaxFilesWatch => {
            "the system's limit of watched folders is reached (raise fs.inotify.max_user_watches)"
                .into()
        }
        _ => e.to_string(),
    }
}

/// Run `pipeline` once, then once more for each batch of files that land
/// in its scan folders, until `opts.interrupt` is set. `notify` hears of
/// the first run's end and of each batch, and may change the options of
/// the runs that follow (the first run's `force` and `trace` are its own;
/// the report is added to from the second run on). The options' `hold` and
/// `on_item_end` are the watch's own: what the caller sets there is
/// replaced.
pub fn watch(
    pipeline: &Pipeline,
    mut opts: RunOptions,
    watch: WatchOptions,
    notify: &mut dyn FnMut(WatchEvent<'_>, &mut RunOptions),
) -> Result<(), BuildError> {
    let scopes = scopes(pipeline);
    if scopes.is_empty() {
        return Err(BuildError::Setup {
            message: "the pipeline has no `scan` stage: there is no folder to watch".into(),
        });
    }
    // Watched before the first run, so nothing that lands during it is
    // missed.
    let folders = start_watcher(&scopes)?;
    // Named as the pipeline names them.
    let mut shown: Vec<PathBuf> = scopes.iter().map(|s| s.spec.root.clone()).collect();
    shown.sort();
    shown.dedup();
    let mut session = Session {
        pipeline,
        watch,
        tracker: Tracker {
            scopes,
            settle: watch.settle,
            pending: HashMap::new(),
            failed: HashMap::new(),
            taken: HashMap::new(),
            deleted: Vec::new(),
            last_event: None,
            rescan: false,
            waiting_since: None,
        },
        statuses: HashMap::new(),
        batches: 0,
    };
    let (summary, _) = session.run(&mut opts, &[])?;
    if summary.interrupted {
        return Ok(());
    }
    notify(
        WatchEvent::Started {
            summary: &summary,
            folders: &shown,
        },
        &mut opts,
    );
    opts.force = false;
    opts.trace = None;
    opts.report_mode = super::ReportMode::Continue;
    loop {
        if opts.interrupt.load(Ordering::SeqCst) {
            return Ok(());
        }
        match folders.events.recv_timeout(TICK) {
            Ok(first) => {
                let now = Instant::now();
                for event in std::iter::once(first).chain(folders.events.try_iter()) {
                    match event {
                        Ok(e) => session.tracker.on_event(e, now),
                        Err(e) => {
                            // Events may be lost: look at everything.
                            session.tracker.rescan = true;
                            let msg = format!("watching: {}", notify_reason(&e));
                            notify(WatchEvent::Warning(msg), &mut opts);
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(BuildError::Setup {
                    message: "the folder watcher stopped".into(),
                });
            }
        }
        let now = Instant::now();
        let ready = session.tracker.ready(now);
        if !session.tracker.due(now, &ready) {
            continue;
        }
        session.tracker.rescan = false;
        session.tracker.waiting_since = None;
        let mut warn = |e: WatchEvent<'_>| notify(e, &mut opts);
        let deleted = session.deleted(&mut warn);
        let (summary, outcomes) = session.run(&mut opts, &ready)?;
        if summary.interrupted {
            return Ok(());
        }
        session.batches += 1;
        let batch = Batch {
            number: session.batches,
            processed: outcomes.processed,
            deleted,
            totals: session.totals(),
            summary,
        };
        // A batch with nothing to say (a look that found nothing new) is
        // not shown.
        if !batch.processed.is_empty() || !batch.deleted.is_empty() {
            notify(WatchEvent::Batch(&batch), &mut opts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_files_still_being_written_are_recognised() {
        for name in [
            "x.jpg.part",
            "X.JPG.PART",
            "x.jpg.crdownload",
            "x.jpg.tmp",
            "x.jpg~",
            ".conveyor-tmp-12-0-x.jpg",
            "x.jpg.partial",
        ] {
            assert!(partial_name(OsStr::new(name)), "{name}");
        }
        for name in ["x.jpg", "part.jpg", "tmp", "x.jpgpart", ".hidden.jpg"] {
            assert!(!partial_name(OsStr::new(name)), "{name}");
        }
    }

    /// A tracker of `*.jpg` below a fresh folder whose `out` is a writer's.
    fn tracker(settle: Duration) -> (tempfile::TempDir, PathBuf, Tracker) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = crate::inputs::resolve(dir.path());
        let scope = Scope::new(crate::inputs::ScopeSpec {
            stage: "scan".into(),
            root: root.clone(),
            include: vec!["**/*.jpg".into()],
            ..Default::default()
        })
        .expect("scope")
        .skipping(&[root.join("out")]);
        let t = Tracker {
            scopes: vec![scope],
            settle,
            pending: HashMap::new(),
            failed: HashMap::new(),
            taken: HashMap::new(),
            deleted: Vec::new(),
            last_event: None,
            rescan: false,
            waiting_since: None,
        };
        (dir, root, t)
    }

    #[test]
    fn a_closed_file_is_ready_after_a_quiet_moment_an_open_one_once_settled() {
        let settle = Duration::from_secs(1);
        let (_dir, root, mut t) = tracker(settle);
        let (a, b) = (root.join("a.jpg"), root.join("b.jpg"));
        std::fs::write(&a, b"whole").expect("write");
        std::fs::write(&b, b"half").expect("write");
        let start = Instant::now();
        t.changed(&a, start, true);
        t.changed(&b, start, false);
        assert!(t.ready(start).is_empty());
        assert_eq!(t.ready(start + QUIET), std::slice::from_ref(&a));
        // b grows: it settles a full settle time after it last changed.
        std::fs::write(&b, b"half and more").expect("write");
        assert_eq!(t.ready(start + settle), std::slice::from_ref(&a));
        let mut both = t.ready(start + settle * 2);
        both.sort();
        assert_eq!(both, [a, b]);
        assert!(t.due(start + settle * 2, &[root.join("a.jpg")]));
    }

    #[test]
    fn writers_folders_temp_names_and_other_files_are_not_followed() {
        let (_dir, root, mut t) = tracker(Duration::from_millis(500));
        let now = Instant::now();
        std::fs::create_dir_all(root.join("out/sub")).expect("mkdir");
        t.folder_appeared(&root.join("out/sub"), now);
        assert!(!t.rescan, "a writer's new folder");
        for name in ["x.jpg.part", "out/a.jpg", "notes.txt", ".hidden.jpg"] {
            t.changed(&root.join(name), now, true);
        }
        assert!(t.pending.is_empty(), "{:?}", t.pending.keys());
        // A download renamed to its real name: no source was deleted.
        t.gone(&root.join("x.jpg.part"), now);
        t.gone(&root.join("out/a.jpg"), now);
        assert!(t.deleted.is_empty(), "{:?}", t.deleted);
        t.gone(&root.join("a.jpg"), now);
        assert_eq!(t.deleted, [root.join("a.jpg")]);
        std::fs::create_dir_all(root.join("new")).expect("mkdir");
        std::fs::write(root.join("new/b.jpg"), b"b").expect("write");
        t.folder_appeared(&root.join("new"), now);
        assert!(t.rescan);
        assert!(t.pending.contains_key(&root.join("new/b.jpg")));
    }

    #[test]
    fn a_file_is_recent_until_the_settle_time_has_passed() {
        let settle = Duration::from_millis(500);
        let now = SystemTime::now();
        assert!(recent(now, settle));
        assert!(recent(now + Duration::from_secs(60), settle), "future");
        assert!(!recent(now - Duration::from_secs(1), settle));
    }
}
