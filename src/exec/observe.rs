//! Watching a run: the per-item report (`--report`, JSON lines), the timeline
//! (`--trace`, Chrome trace events for Perfetto), and the numbers progress
//! is drawn from ([`StageProgress`], handed to the run's progress callback;
//! how they are shown is the command line's business).
//!
//! Report lines name files in conveyor's escaped form
//! (`crate::item::escape_path`: `\xHH` for each byte that is not UTF-8), and
//! each line reaches the file whole as soon as its item ends, so a run killed
//! with SIGKILL loses at most the line being written.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::report::ItemStatus;

/// One line of the report. Paths are written escaped, so names that are not
/// UTF-8 are reported, and two of them never look alike.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    #[serde(serialize_with = "crate::item::path_escaped::serialize")]
    pub path: PathBuf,
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(serialize_with = "crate::item::path_escaped::list")]
    pub outputs: Vec<PathBuf>,
    /// Milliseconds spent on the item in each stage.
    pub ms: BTreeMap<String, f64>,
    /// Milliseconds of CPU time the item took in each stage (the stage's
    /// own thread, pool threads it split the image over, child commands).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub cpu_ms: BTreeMap<String, f64>,
    /// Processes mode: bytes the item carried to its worker and back, under
    /// the first stage of the chain the worker runs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub crossed_bytes: BTreeMap<String, u64>,
    /// Processes mode: milliseconds the item waited for a worker to start
    /// (only items that did).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub worker_start_ms: BTreeMap<String, f64>,
    /// Processes mode: the worker's largest resident size so far, in MB,
    /// when it answered for the item.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub worker_peak_mb: BTreeMap<String, f64>,
}

impl Line {
    /// A line with no times yet.
    pub fn new(path: PathBuf, status: ItemStatus) -> Line {
        Line {
            path,
            status,
            stage: None,
            reason: None,
            outputs: Vec::new(),
            ms: BTreeMap::new(),
            cpu_ms: BTreeMap::new(),
            crossed_bytes: BTreeMap::new(),
            worker_start_ms: BTreeMap::new(),
            worker_peak_mb: BTreeMap::new(),
        }
    }
}

/// An item still on its way: how many copies of it (fan-out) are still
/// travelling, and what is known so far.
struct Pending {
    copies: usize,
    line: Line,
    /// Whether stage times are kept (only when a report is written).
    timed: bool,
    /// Stages a copy of the item reached, so one reached by two branches
    /// is counted once there.
    reached: Vec<String>,
}

/// Follows every item to its end: counts finished items for progress and,
/// with `--report FILE`, writes a line per item when its last copy ends, so
/// memory holds only the items in flight.
/// The report file (if any) and the items still travelling. The file is not
/// buffered: each line goes out in one write when its item ends.
type ReportState = (Option<File>, HashMap<u64, Pending>);

pub struct Report {
    out: Mutex<ReportState>,
    /// Per stage, the items (not copies) that reached it.
    items_at: Mutex<HashMap<String, u64>>,
    finished: std::sync::atomic::AtomicU64,
    on_end: Option<ItemEndFn>,
    /// Freed of an item's bytes when its line is complete.
    budget: Option<std::sync::Arc<super::budget::Budget>>,
    /// Whether up-to-date items get a line in the file (not when a watch's
    /// batch continues a report that has them already).
    up_to_date_lines: bool,
}

/// Called with each item's line when the item ends.
pub type ItemEndFn = Box<dyn Fn(&Line) + Send + Sync>;

impl Report {
    /// A report written to `path` (if any), started afresh or continued
    /// (one report across the batches of `conveyor watch`).
    pub fn new(
        path: Option<&Path>,
        mode: super::ReportMode,
        on_end: Option<ItemEndFn>,
    ) -> std::io::Result<Report> {
        let append = mode == super::ReportMode::Continue;
        let file = match path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let mut open = std::fs::OpenOptions::new();
                if append {
                    open.append(true);
                } else {
                    open.write(true).truncate(true);
                }
                Some(open.create(true).open(path)?)
            }
            None => None,
        };
        Ok(Report {
            out: Mutex::new((file, HashMap::new())),
            items_at: Mutex::default(),
            finished: std::sync::atomic::AtomicU64::new(0),
            on_end,
            budget: None,
            up_to_date_lines: !append,
        })
    }

    /// Release an item's share of `budget` when the item ends.
    pub(super) fn with_budget(
        mut self,
        budget: Option<std::sync::Arc<super::budget::Budget>>,
    ) -> Report {
        self.budget = budget;
        self
    }

    /// Items that have ended, whatever their status.
    pub fn finished(&self) -> u64 {
        self.finished.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write(&self, out: &mut Option<File>, line: &Line) {
        self.finished
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(f) = &self.on_end {
            f(line);
        }
        if let Some(out) = out
            .as_mut()
            .filter(|_| self.up_to_date_lines || line.status != crate::report::ItemStatus::UpToDate)
            && let Ok(mut text) = serde_json::to_string(line)
        {
            // One write per line, straight to the file: nothing waits in a
            // buffer for a kill to lose.
            text.push('\n');
            let _ = out.write_all(text.as_bytes());
        }
    }

    /// An item left its source.
    pub fn started(&self, id: u64, path: &Path) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let timed = g.0.is_some();
        g.1.insert(
            id,
            Pending {
                copies: 1,
                line: Line::new(path.to_path_buf(), ItemStatus::Ok),
                timed,
                reached: Vec::new(),
            },
        );
    }

    /// How many items (not copies) reached `stage`.
    pub fn items_at(&self, stage: &str) -> u64 {
        let g = self.items_at.lock().unwrap_or_else(|e| e.into_inner());
        g.get(stage).copied().unwrap_or(0)
    }

    /// An item that ended before travelling (up to date, or unreadable).
    pub fn single(&self, line: Line) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        self.write(&mut g.0, &line);
    }

    /// Time an item spent in a stage (called for each stage it reaches).
    pub fn timed(&self, id: u64, stage: &str, d: Duration, cpu: Option<Duration>) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = g.1.get_mut(&id) else {
            return;
        };
        if !p.reached.iter().any(|r| r == stage) {
            p.reached.push(stage.to_string());
            let mut at = self.items_at.lock().unwrap_or_else(|e| e.into_inner());
            *at.entry(stage.to_string()).or_default() += 1;
        }
        if p.timed {
            *p.line.ms.entry(stage.to_string()).or_default() += d.as_secs_f64() * 1000.0;
            if let Some(cpu) = cpu {
                *p.line.cpu_ms.entry(stage.to_string()).or_default() += cpu.as_secs_f64() * 1000.0;
            }
        }
    }

    /// What taking the item through a worker process of the chain that
    /// starts at `stage` cost besides the work.
    pub fn crossed(&self, id: u64, stage: &str, c: &super::call::Crossing) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = g.1.get_mut(&id).filter(|p| p.timed) else {
            return;
        };
        let line = &mut p.line;
        *line.crossed_bytes.entry(stage.to_string()).or_default() += c.bytes;
        if !c.start.is_zero() {
            *line.worker_start_ms.entry(stage.to_string()).or_default() +=
                c.start.as_secs_f64() * 1000.0;
        }
        if c.peak_rss > 0 {
            let mb = c.peak_rss as f64 / 1e6;
            let e = line.worker_peak_mb.entry(stage.to_string()).or_default();
            *e = e.max(mb);
        }
    }

    /// The item was copied to `n` consumers.
    pub fn fanned_out(&self, id: u64, n: usize) {
        if n > 1 {
            let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = g.1.get_mut(&id) {
                p.copies += n - 1;
            }
        }
    }

    /// One copy of the item ended; the line is written with the last.
    /// Returns false when the item was not being followed.
    pub fn ended(
        &self,
        id: u64,
        status: ItemStatus,
        stage: Option<&str>,
        reason: Option<&str>,
        outputs: &[PathBuf],
    ) -> bool {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (out, pending) = &mut *g;
        let Some(p) = pending.get_mut(&id) else {
            return false;
        };
        p.line.outputs.extend_from_slice(outputs);
        if status.rank() > p.line.status.rank() {
            p.line.status = status;
            p.line.stage = stage.map(str::to_string);
            p.line.reason = reason.map(str::to_string);
        }
        p.copies = p.copies.saturating_sub(1);
        if p.copies == 0
            && let Some(done) = pending.remove(&id)
        {
            self.write(out, &done.line);
            if let Some(b) = &self.budget {
                b.release(id);
            }
        }
        true
    }

    /// Items still travelling when the run stopped are reported as such.
    pub fn finish(&self) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (out, pending) = &mut *g;
        let mut rest: Vec<Pending> = pending.drain().map(|(_, p)| p).collect();
        rest.sort_by(|a, b| a.line.path.cmp(&b.line.path));
        for mut p in rest {
            if p.line.status == ItemStatus::Ok {
                p.line.status = ItemStatus::Cancelled;
            }
            self.write(out, &p.line);
        }
        if let Some(out) = out {
            let _ = out.flush();
        }
    }
}

/// `--trace FILE`: Chrome trace events, streamed as a JSON array.
pub struct Trace {
    start: Instant,
    out: Mutex<(BufWriter<File>, bool, HashMap<String, u64>)>,
}

impl Trace {
    pub fn create(path: &Path, start: Instant) -> std::io::Result<Trace> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = BufWriter::new(File::create(path)?);
        f.write_all(b"[\n")?;
        Ok(Trace {
            start,
            out: Mutex::new((f, true, HashMap::new())),
        })
    }

    fn us(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64() * 1e6
    }

    fn event(out: &mut BufWriter<File>, first: &mut bool, value: serde_json::Value) {
        if !*first {
            let _ = out.write_all(b",\n");
        }
        *first = false;
        let _ = out.write_all(value.to_string().as_bytes());
    }

    /// The track id of a worker, naming the track the first time.
    fn track(g: &mut (BufWriter<File>, bool, HashMap<String, u64>), name: &str) -> u64 {
        if let Some(&t) = g.2.get(name) {
            return t;
        }
        let t = g.2.len() as u64 + 1;
        g.2.insert(name.to_string(), t);
        let meta = serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": t, "args": {"name": name}});
        Self::event(&mut g.0, &mut g.1, meta);
        t
    }

    /// One item's time in one stage, on a worker's track.
    pub fn span(&self, track: &str, item: &str, stage: &str, start: Instant, dur: Duration) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let tid = Self::track(&mut g, track);
        let ev = serde_json::json!({
            "name": item, "cat": stage, "ph": "X", "pid": 1, "tid": tid,
            "ts": self.us(start), "dur": dur.as_secs_f64() * 1e6,
            "args": {"stage": stage},
        });
        let (out, first, _) = &mut *g;
        Self::event(out, first, ev);
    }

    /// Queue depths, as counters.
    pub fn queues(&self, at: Instant, depths: &[(String, usize)]) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let args: serde_json::Map<String, serde_json::Value> = depths
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        let ev = serde_json::json!({"name": "queue depth", "ph": "C", "pid": 1, "ts": self.us(at), "args": args});
        let (out, first, _) = &mut *g;
        Self::event(out, first, ev);
    }

    pub fn finish(&self) {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = g.0.write_all(b"\n]\n");
        let _ = g.0.flush();
    }
}

/// One stage's numbers at a moment. An item the stage saw ended in one of
/// `done` (passed on), `failed`, `filtered` or `up_to_date` (a source's
/// items with nothing to redo); the run's last snapshot has
/// `done + failed + filtered + up_to_date = total` and `total_known`.
#[derive(Debug, Clone, Serialize)]
pub struct StageProgress {
    pub stage: String,
    pub done: u64,
    pub failed: u64,
    pub filtered: u64,
    pub up_to_date: u64,
    pub in_flight: i64,
    /// Items found so far (what the stage saw, in the last snapshot), and
    /// whether that number is final.
    pub total: u64,
    pub total_known: bool,
    pub elapsed: f64,
}
