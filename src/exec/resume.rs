//! Resume: a re-run redoes only what changed. Every stage that writes files
//! (`write`, `copy`, `exec` with `dir`) keeps a journal in its output folder,
//! `.conveyor-state/PIPELINE.STAGE.jsonl`: one line per item it finished,
//! with the item's fingerprint and the files it wrote. The fingerprint hashes
//! the source's path, size and modification time with the kind and options
//! of every stage on the way to that writer, so changing an input redoes that
//! item and changing an option redoes every item on that branch.
//!
//! Each line also keeps the source's facts as a manifest shows them (its
//! relative path, size, dimensions, format, hash: `SourceFacts`), so a
//! gathering stage describes an item skipped on a later run as it was when
//! it was made.
//!
//! Files that options name (a watermark's image, an `exec` program given as
//! a path: see `Stage::depends_on`) are part of the signature by size and
//! modification time in nanoseconds, so replacing one redoes the items on its
//! branch. A change to such a file's content that keeps both its size and
//! its mtime is not seen (`--force` redoes everything).
//!
//! Names are bytes: the journal writes each path in conveyor's one escaped
//! form (`crate::item::escape_path`, which can be undone), so names that are
//! not UTF-8 keep their identity from run to run.
//!
//! The journal is only appended to, a line at a time, so a crash mid-write
//! loses at most the line being written (an incomplete last line is
//! ignored). An item is up to date when, for every writer it would reach, its
//! fingerprint matches and the files it wrote are all still there; it is
//! then counted, not processed: no decoding at all.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::Pipeline;
use crate::item::{Item, escape_path, unescape_path};
use crate::stage::{Built, Kept, SourceFacts};

/// One line of a journal. Paths are in their escaped form.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    source: String,
    fp: String,
    outputs: Vec<String>,
    /// Absent from journals an older conveyor wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    facts: Option<SourceFacts>,
    /// Each output's size and modification time (ns) as written, so that
    /// `watch --prune` removes only files still as conveyor left them.
    /// Absent from journals an older conveyor wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stamps: Vec<[u64; 2]>,
}

/// A file's size and modification time in nanoseconds.
fn stamp_of(path: &Path) -> Option<[u64; 2]> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let ns = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())?;
    Some([m.len(), ns])
}

/// What the journal knew of an item when the run started.
struct Known {
    fp: [u8; 16],
    outputs: Vec<PathBuf>,
    stamps: Vec<[u64; 2]>,
    facts: Option<SourceFacts>,
}

/// One writing stage's journal.
struct Journal {
    path: PathBuf,
    /// By the source's exact name.
    known: HashMap<OsString, Known>,
    out: Mutex<Option<std::fs::File>>,
    /// Options of every stage that leads here, folded into fingerprints.
    signature: String,
}

fn fp_bytes(hex: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Journal {
    /// The journal at `path`. Items are looked up in it and in the journals
    /// of the same writer under other shard splits (`siblings`): which shard
    /// an item fell in decides scope, not its outputs, so changing `--shard`
    /// redoes nothing that is done. Only this run's own file is compacted.
    fn open(path: PathBuf, siblings: &[PathBuf], signature: String, forget: bool) -> Journal {
        let mut known = HashMap::new();
        if !forget {
            for other in siblings.iter().filter(|s| **s != path) {
                read_entries(other, &mut known);
            }
        }
        let mut own = HashMap::new();
        let lines = if forget {
            0
        } else {
            read_entries(&path, &mut own)
        };
        let own_len = own.len();
        // Re-runs append; when most lines are stale, start the file afresh.
        if lines > 64 && lines > 2 * own_len {
            compact(&path, &own);
        }
        known.extend(own);
        Journal {
            path,
            known,
            out: Mutex::new(None),
            signature,
        }
    }
}

/// Read a journal's entries into `known` (later lines win); returns the
/// number of lines. A line cut short by a crash does not parse: skipped.
fn read_entries(path: &Path, known: &mut HashMap<std::ffi::OsString, Known>) -> usize {
    let Ok(f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut lines = 0;
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        lines += 1;
        if let Ok(e) = serde_json::from_str::<Entry>(&line)
            && let Some(fp) = fp_bytes(&e.fp)
        {
            let outputs = e.outputs.iter().map(|o| unescape_path(o)).collect();
            let k = Known {
                fp,
                outputs,
                stamps: e.stamps,
                facts: e.facts,
            };
            known.insert(unescape_path(&e.source).into_os_string(), k);
        }
    }
    lines
}

/// Rewrite a journal with only its current entries.
fn compact(path: &Path, known: &HashMap<std::ffi::OsString, Known>) {
    let mut text = String::new();
    for (source, k) in known {
        let e = Entry {
            source: escape_path(Path::new(source)),
            fp: hex(&k.fp),
            outputs: k.outputs.iter().map(|o| escape_path(o)).collect(),
            facts: k.facts.clone(),
            stamps: k.stamps.clone(),
        };
        if let Ok(line) = serde_json::to_string(&e) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let _ = crate::output::write_state_file(path, text.as_bytes());
}

/// The journals of the writer `base` (`PIPELINE.STAGE`) in `dir`, under
/// every shard split: `base.jsonl` and `base.shard-I-of-N.jsonl`.
fn shard_journals(dir: &Path, base: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix(base)
                .and_then(|rest| rest.strip_suffix(".jsonl"))
                .is_some_and(|mid| mid.is_empty() || mid.starts_with(".shard-"))
        })
        .map(|e| e.path())
        .collect()
}

impl Journal {
    fn fingerprint(&self, item: &Item) -> [u8; 16] {
        let mut h = sha2::Sha256::new();
        h.update(item.path.as_os_str().as_bytes());
        h.update([0]);
        h.update(item.meta.size.unwrap_or(u64::MAX).to_le_bytes());
        h.update(item.meta.mtime_ns.unwrap_or(u64::MAX).to_le_bytes());
        h.update(self.signature.as_bytes());
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    fn up_to_date(&self, item: &Item) -> Option<&[PathBuf]> {
        let k = self.known.get(item.path.as_os_str())?;
        (k.fp == self.fingerprint(item) && k.outputs.iter().all(|o| o.is_file()))
            .then_some(&k.outputs)
    }

    fn record(&self, item: &Item) {
        let e = Entry {
            source: escape_path(&item.path),
            fp: hex(&self.fingerprint(item)),
            outputs: item.meta.outputs.iter().map(|o| escape_path(o)).collect(),
            facts: Some(SourceFacts::of(item)),
            stamps: item
                .meta
                .outputs
                .iter()
                .map(|o| stamp_of(o).unwrap_or([0, 0]))
                .collect(),
        };
        let Ok(mut line) = serde_json::to_string(&e) else {
            return;
        };
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            *out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
        }
        if let Some(f) = out.as_mut() {
            // One write per line: a crash leaves at most one partial line.
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// What a file named by options looks like now, for a signature: its size
/// and modification time in nanoseconds (not its content: reading a large
/// file on every run would cost more than it saves).
fn file_state(path: &Path) -> String {
    let name = escape_path(path);
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "\nfile {name}: {} bytes, mtime {}.{:09}",
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ),
        Err(e) => format!("\nfile {name}: {:?}", e.kind()),
    }
}

/// Which items of a run can be skipped, and the journals that say so.
pub struct Resume {
    /// Per stage: its journal, if it writes files.
    journals: Vec<Option<Journal>>,
    /// Per source stage: the writers its items reach, or `None` when its
    /// items can never be skipped (a branch ends without a writer, or a
    /// stage needs every item, like `contact_sheet`).
    reach: Vec<Option<Vec<usize>>>,
    /// Per stage: the writers upstream of it (for a gathering stage, those
    /// whose files its rows list).
    feeds: Vec<Vec<usize>>,
}

fn descendants(p: &Pipeline, from: usize) -> Vec<usize> {
    let mut seen = vec![false; p.stages.len()];
    let mut stack = vec![from];
    while let Some(i) = stack.pop() {
        for j in p.consumers(i) {
            if !seen[j] {
                seen[j] = true;
                stack.push(j);
            }
        }
    }
    (0..p.stages.len()).filter(|&i| seen[i]).collect()
}

fn ancestors(p: &Pipeline, of: usize) -> Vec<usize> {
    let mut seen = vec![false; p.stages.len()];
    let mut stack = vec![of];
    seen[of] = true;
    while let Some(i) = stack.pop() {
        for &j in &p.stages[i].inputs {
            if !seen[j] {
                seen[j] = true;
                stack.push(j);
            }
        }
    }
    (0..p.stages.len()).filter(|&i| seen[i]).collect()
}

impl Resume {
    /// The files each writer's journal says it made, still there, of
    /// sources that still exist: (writer, source, files). Whatever the
    /// options were then: a run with another root must not take a name
    /// that a run with the first root would find up to date. A source
    /// deleted or moved away leaves its names free.
    pub fn made_before(&self) -> Vec<(usize, PathBuf, Vec<&Path>)> {
        let mut out = Vec::new();
        for (i, j) in self.journals.iter().enumerate() {
            let Some(j) = j else { continue };
            for (source, k) in &j.known {
                let source = PathBuf::from(source);
                if std::fs::metadata(&source).is_err() {
                    continue;
                }
                let there: Vec<&Path> = k
                    .outputs
                    .iter()
                    .map(PathBuf::as_path)
                    .filter(|o| o.is_file())
                    .collect();
                if !there.is_empty() {
                    out.push((i, source, there));
                }
            }
        }
        out
    }

    /// `forget`: `--force`, every item is redone (and journaled again).
    /// `tag` tells apart runs that must not share journals (shards).
    pub fn new(p: &Pipeline, built: &[Built], forget: bool, tag: &str) -> Resume {
        let n = p.stages.len();
        let journals: Vec<Option<Journal>> = (0..n)
            .map(|i| {
                let Built::Stage(stage) = &built[i] else {
                    return None;
                };
                let dir = stage.output_dir()?;
                let signature = ancestors(p, i)
                    .into_iter()
                    .map(|a| {
                        let s = &p.stages[a];
                        let files = match &built[a] {
                            Built::Stage(st) => st.depends_on(),
                            Built::Source(_) => Vec::new(),
                        };
                        format!(
                            "{}:{}@{}:{}{}",
                            s.name,
                            s.kind.name,
                            s.kind.revision,
                            (s.kind.meaning)(&s.options),
                            files.iter().map(|f| file_state(f)).collect::<String>()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let base = format!("{}.{}", p.name, p.stages[i].name);
                let state = dir.join(crate::output::STATE_DIR);
                Some(Journal::open(
                    state.join(format!("{base}{tag}.jsonl")),
                    &shard_journals(&state, &base),
                    signature,
                    forget,
                ))
            })
            .collect();
        let reach = (0..n)
            .map(|s| {
                if !p.stages[s].kind.is_source() {
                    return None;
                }
                let down = descendants(p, s);
                let needs_all = down
                    .iter()
                    .any(|&d| matches!(&built[d], Built::Stage(st) if st.needs_every_item()));
                let writers: Vec<usize> = down
                    .iter()
                    .copied()
                    .filter(|&d| journals[d].is_some())
                    .collect();
                // Every branch must end at or after a writer, or in a
                // gathering stage (it is handed the up-to-date items).
                let covered = down
                    .iter()
                    .filter(|&&d| p.consumers(d).is_empty())
                    .all(|&leaf| {
                        journals[leaf].is_some()
                            || matches!(&built[leaf], Built::Stage(st) if st.collects())
                            || ancestors(p, leaf).iter().any(|a| writers.contains(a))
                    });
                (!needs_all && covered && !writers.is_empty()).then_some(writers)
            })
            .collect();
        let feeds = (0..n)
            .map(|i| {
                let up = ancestors(p, i).into_iter();
                up.filter(|&a| journals[a].is_some()).collect()
            })
            .collect();
        Resume {
            journals,
            reach,
            feeds,
        }
    }

    /// An up-to-date item as gathering stage `gatherer` sees it: every file
    /// made of it (as in a run that makes them, where a gathering stage
    /// learns the files of every branch), and the source's facts from the
    /// journals, those of the writers upstream of it first.
    pub fn kept(&self, gatherer: usize, source: &Path, all: &[PathBuf]) -> Kept {
        let feeds = self.feeds.get(gatherer).map_or(&[][..], Vec::as_slice);
        let others = (0..self.journals.len()).filter(|w| !feeds.contains(w));
        let facts = feeds.iter().copied().chain(others).find_map(|w| {
            let j = self.journals.get(w)?.as_ref()?;
            j.known.get(source.as_os_str())?.facts.clone()
        });
        let mut outputs = all.to_vec();
        outputs.sort();
        outputs.dedup();
        Kept {
            path: source.to_path_buf(),
            outputs,
            facts,
        }
    }

    /// The files an item from `source` wrote last time, when everything it
    /// would produce is up to date.
    pub fn up_to_date(&self, source: usize, item: &Item) -> Option<Vec<PathBuf>> {
        let writers = self.reach.get(source)?.as_ref()?;
        let mut outputs = Vec::new();
        for &w in writers {
            let j = self.journals[w].as_ref()?;
            outputs.extend_from_slice(j.up_to_date(item)?);
        }
        outputs.sort();
        outputs.dedup();
        Some(outputs)
    }

    /// Whether stage `i` journals what it writes.
    pub fn records(&self, i: usize) -> bool {
        self.journals.get(i).is_some_and(Option::is_some)
    }

    /// Note that `item` came out of writing stage `i`.
    pub fn record(&self, i: usize, item: &Item) {
        if let Some(Some(j)) = self.journals.get(i) {
            j.record(item);
        }
    }
}

/// What `conveyor watch --prune` did about a deleted source.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Each source found gone, with the files removed of it.
    pub removed: Vec<(PathBuf, Vec<PathBuf>)>,
    /// Files kept, and why, in the user's words.
    pub warnings: Vec<String>,
}

/// `conveyor watch --prune`: `gone` (a file or folder, named as the scans
/// name their items) was deleted. For every source at or below it that no
/// longer exists, remove the files the writers' journals record as made of
/// it, unless another source's line records the same file, then drop its
/// journal lines, so nothing says it is still made. Removal goes through
/// [`crate::output::remove_output`], which keeps inputs, links and files
/// with other names.
pub fn prune(p: &Pipeline, gone: &Path, scopes: &[crate::inputs::Scope]) -> Pruned {
    // Every writer's folder and journals (under every shard split).
    let writers: Vec<(PathBuf, Vec<PathBuf>)> = p
        .stages
        .iter()
        .filter_map(|d| match (d.kind.paths)(&d.options) {
            crate::stage::StagePaths::Writes { dir, .. } => {
                let base = format!("{}.{}", p.name, d.name);
                let journals = shard_journals(&dir.join(crate::output::STATE_DIR), &base);
                Some((dir, journals))
            }
            _ => None,
        })
        .collect();
    let mut read: Vec<(usize, PathBuf, HashMap<OsString, Known>)> = Vec::new();
    for (w, (_, journals)) in writers.iter().enumerate() {
        for j in journals {
            let mut known = HashMap::new();
            read_entries(j, &mut known);
            read.push((w, j.clone(), known));
        }
    }
    let doomed: std::collections::HashSet<OsString> = read
        .iter()
        .flat_map(|(_, _, known)| known.keys())
        .filter(|s| Path::new(s).starts_with(gone) && std::fs::symlink_metadata(s).is_err())
        .cloned()
        .collect();
    let mut pruned = Pruned::default();
    if doomed.is_empty() {
        return pruned;
    }
    // Files that a source still there records as its own stay.
    let live: std::collections::HashSet<&PathBuf> = read
        .iter()
        .flat_map(|(_, _, known)| known.iter())
        .filter(|(s, _)| !doomed.contains(*s))
        .flat_map(|(_, k)| &k.outputs)
        .collect();
    let mut removed: HashMap<OsString, Vec<PathBuf>> = HashMap::new();
    for (w, _, known) in &read {
        let dir = &writers[*w].0;
        for (source, k) in known.iter().filter(|(s, _)| doomed.contains(*s)) {
            let mine = removed.entry(source.clone()).or_default();
            for out in &k.outputs {
                if live.contains(out) {
                    pruned.warnings.push(format!(
                        "refusing to remove {}: another source's line records it too",
                        escape_path(out)
                    ));
                    continue;
                }
                // Only a file still as conveyor wrote it: one changed or
                // replaced since (by the user, by another program) stays.
                let at = k.outputs.iter().position(|o| o == out);
                let recorded = at.and_then(|i| k.stamps.get(i));
                let now = stamp_of(out);
                if now.is_some() && (recorded.is_none() || recorded != now.as_ref()) {
                    pruned.warnings.push(format!(
                        "refusing to remove {}: {}",
                        escape_path(out),
                        if recorded.is_none() {
                            "the journal has no record of the file as written (an older conveyor made it)"
                        } else {
                            "it changed since conveyor wrote it"
                        }
                    ));
                    continue;
                }
                match crate::output::remove_output(dir, out, scopes) {
                    Ok(true) => mine.push(out.clone()),
                    Ok(false) => {}
                    Err(e) => pruned.warnings.push(e.to_string()),
                }
            }
        }
    }
    for (_, journal, known) in &read {
        if known.keys().any(|s| doomed.contains(s)) {
            forget_lines(journal, &doomed);
        }
    }
    let mut removed: Vec<(PathBuf, Vec<PathBuf>)> = removed
        .into_iter()
        .map(|(s, files)| (PathBuf::from(s), files))
        .collect();
    removed.sort();
    pruned.removed = removed;
    pruned
}

/// Rewrite a journal without the lines of `sources` (whole or not at all).
fn forget_lines(journal: &Path, sources: &std::collections::HashSet<OsString>) {
    let Ok(text) = std::fs::read_to_string(journal) else {
        return;
    };
    let mut kept = String::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<Entry>(line) else {
            // A line cut short by a crash: nothing to keep.
            continue;
        };
        if !sources.contains(unescape_path(&e.source).as_os_str()) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let _ = crate::output::write_state_file(journal, kept.as_bytes());
}
