//! What a run prints for people: the summary table at the end, and the
//! dry-run listing of what each item would do. Paths are shown in
//! conveyor's one escaped form (`crate::item::escape_path`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::exec::observe::Line;
use crate::item::escape_path;
use crate::report::{ItemStatus, RunSummary, StageMode, StageSummary};

const HEADER: [&str; 10] = [
    "stage", "kind", "mode", "in", "out", "failed", "busy", "cpu", "cores", "items/s",
];

/// Columns before this one are aligned left (names), the rest right (numbers).
const FIRST_NUMBER: usize = 3;

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The mode column: `source`, `threads x4`, or `threads auto/8`.
fn mode_cell(s: &StageSummary) -> String {
    s.mode.describe(s.workers)
}

/// One stage's row; `wall` is the run's elapsed seconds.
/// `wall` is `None` in a dry run, where times and rates mean nothing: only
/// plans were made.
fn stage_row(s: &StageSummary, wall: Option<f64>) -> [String; 10] {
    let timed = |text: String| if wall.is_some() { text } else { "-".into() };
    let items_in = if s.mode == StageMode::Source {
        "-".into()
    } else {
        s.items_in.to_string()
    };
    [
        s.name.clone(),
        s.kind.to_string(),
        mode_cell(s),
        items_in,
        s.items_out.to_string(),
        s.failed.to_string(),
        timed(secs(s.busy)),
        // CPU time over busy time: near 100% computes, near 0% waits (on a
        // command, the disk); over 100% split its images over idle cores.
        match (wall, s.busy.as_secs_f64()) {
            (Some(_), busy) if busy > 0.0 && s.mode != StageMode::Source => {
                format!("{:.0}%", 100.0 * s.cpu.as_secs_f64() / busy)
            }
            _ => "-".into(),
        },
        // How many workers were busy on average: where the cores went.
        match wall {
            Some(w) if w > 0.0 => format!("{:.2}", s.busy.as_secs_f64() / w),
            _ => "-".into(),
        },
        timed(s.rate().map_or("-".into(), |r| format!("{r:.1}"))),
    ]
}

/// The rows as aligned text, one line each.
fn aligned(rows: &[[String; 10]]) -> String {
    let mut widths = [0usize; 10];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, (cell, w)) in row.iter().zip(widths).enumerate() {
            if c < FIRST_NUMBER {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `N items in 1.20s (x items/s): 3 ok, 0 failed`, then the other
/// statuses that occurred.
fn totals(s: &RunSummary, wall: f64) -> String {
    let rate = if s.dry_run || wall <= 0.0 {
        String::new()
    } else {
        format!(" ({:.1} items/s)", s.scanned as f64 / wall)
    };
    let mut out = format!(
        "{} items in {}{rate}: {} {}, {} {}",
        s.scanned,
        secs(s.elapsed),
        s.ok,
        ItemStatus::Ok.word(),
        s.failed,
        ItemStatus::Failed.word()
    );
    let others = [
        (ItemStatus::UpToDate, s.up_to_date),
        (ItemStatus::Filtered, s.filtered),
        (ItemStatus::Cancelled, s.cancelled),
    ];
    for (status, n) in others {
        if n > 0 {
            let _ = write!(out, ", {n} {}", status.word());
        }
    }
    out.push('\n');
    out
}

/// The lines after the totals: worker processes, gathered files, and why
/// the run stopped early.
fn notes(s: &RunSummary) -> String {
    let mut out = String::new();
    for (names, started) in &s.process_chains {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let shared = if names.len() > 1 {
            " (sharing workers)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "processes: {}{shared}: {started} worker{} started",
            names.join(", "),
            if *started == 1 { "" } else { "s" }
        );
    }
    let verb = if s.dry_run { "would write" } else { "wrote" };
    for (stage, path) in &s.written {
        let _ = writeln!(out, "{stage}: {verb} {}", escape_path(path));
    }
    if s.dry_run {
        out.push_str("dry run: no pixel was decoded and no file written\n");
    }
    for e in &s.stage_errors {
        let _ = writeln!(out, "stage stopped: {e}");
    }
    if s.interrupted {
        out.push_str("interrupted: the run stopped before every item was processed\n");
    } else if s.stopped_on_error {
        out.push_str("stopped at the first failure (on_error = \"fail\")\n");
    }
    out
}

/// The table printed at the end of a run.
pub fn table(s: &RunSummary) -> String {
    let wall = s.elapsed.as_secs_f64();
    let mut rows = vec![HEADER.map(String::from)];
    let timed = (!s.dry_run).then_some(wall);
    rows.extend(s.stages.iter().map(|st| stage_row(st, timed)));
    let mut out = aligned(&rows);
    out.push_str(&totals(s, wall));
    out.push_str(&notes(s));
    out
}

/// `run --dry-run`: what one item would do, a line per file.
pub fn dry_run_lines(line: &Line) -> String {
    let mut text = String::new();
    let mut put = |what: &str, path: &std::path::Path| {
        let _ = writeln!(text, "{what:<11} {}", escape_path(path));
    };
    match line.status {
        ItemStatus::Ok if line.outputs.is_empty() => put("process", &line.path),
        ItemStatus::Ok => line.outputs.iter().for_each(|o| put("write", o)),
        ItemStatus::UpToDate => line.outputs.iter().for_each(|o| put("up to date", o)),
        ItemStatus::Filtered => put("filtered", &line.path),
        ItemStatus::Failed | ItemStatus::Cancelled => {}
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn stage(name: &str, mode: StageMode, workers: usize) -> StageSummary {
        StageSummary {
            name: name.into(),
            kind: "resize",
            mode,
            workers,
            items_in: 4,
            items_out: 4,
            failed: 0,
            filtered: 0,
            busy: Duration::from_secs(1),
            cpu: Duration::from_millis(250),
        }
    }

    #[test]
    fn the_mode_column_says_how_work_was_spread() {
        let cell = |mode, workers| mode_cell(&stage("s", mode, workers));
        assert_eq!(cell(StageMode::Source, 1), "source");
        assert_eq!(cell(StageMode::Fixed("threads"), 2), "threads x2");
        assert_eq!(cell(StageMode::Auto("processes"), 8), "processes auto/8");
        let row = stage_row(&stage("scan", StageMode::Source, 1), Some(2.0));
        assert_eq!(row[3], "-", "a source has no input count");
        assert_eq!(row[7], "-", "a source's CPU time is not measured");
        assert_eq!(row[8], "0.50");
        let row = stage_row(&stage("thumb", StageMode::Auto("threads"), 2), Some(2.0));
        assert_eq!(row[7], "25%", "CPU over busy time");
    }

    #[test]
    fn dry_run_lines_name_each_file() {
        let line = |status, outputs: &[&str]| Line {
            outputs: outputs.iter().map(PathBuf::from).collect(),
            ..Line::new(PathBuf::from("in/a.jpg"), status)
        };
        let text = |status, outputs| dry_run_lines(&line(status, outputs));
        assert_eq!(text(ItemStatus::Ok, &[]), "process     in/a.jpg\n");
        assert_eq!(
            text(ItemStatus::Ok, &["o/1.jpg", "o/2.jpg"]),
            "write       o/1.jpg\nwrite       o/2.jpg\n"
        );
        assert_eq!(
            text(ItemStatus::UpToDate, &["o/1.jpg"]),
            "up to date  o/1.jpg\n"
        );
        assert_eq!(text(ItemStatus::Filtered, &[]), "filtered    in/a.jpg\n");
        assert_eq!(text(ItemStatus::Failed, &[]), "");
    }
}
