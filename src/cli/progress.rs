//! Progress on stderr while a run goes: live bars on a terminal
//! (indicatif), JSON lines, or nothing; and failures printed as they happen,
//! above the bars when there are bars.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Style;
use crate::exec::ProgressFn;
use crate::exec::observe::StageProgress;
use crate::report::Failure;

use super::style::error_line;

/// How progress is shown, decided once from `--progress`, `--quiet` and
/// whether stderr is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Bars,
    Json,
    Nothing,
}

/// Live bars on a terminal: one per stage, and one overall.
pub struct Bars {
    multi: MultiProgress,
    stages: Vec<ProgressBar>,
    overall: ProgressBar,
}

/// A bar style with `{prefix}` padded to `width`, then `rest`.
fn bar_style(width: usize, bar: &str, rest: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:<{width}}} {{bar:30.{bar}}} {{pos:>7}}/{{len:7}} {rest}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Bars {
    pub fn new(names: &[String]) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let width = names.iter().map(String::len).max().unwrap_or(4);
        let style = bar_style(width, "cyan/blue", "{msg}");
        let stages = names
            .iter()
            .map(|n| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(n.clone());
                b
            })
            .collect();
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(bar_style(
            width,
            "green/white",
            "{elapsed_precise} eta {eta}",
        ));
        overall.set_prefix("all");
        Bars {
            multi,
            stages,
            overall,
        }
    }

    pub fn update(&self, snapshot: &[StageProgress], finished: u64) {
        for (bar, s) in self.stages.iter().zip(snapshot) {
            bar.set_length(s.total.max(s.done));
            bar.set_position(s.done);
            let rate = if s.elapsed > 0.0 {
                s.done as f64 / s.elapsed
            } else {
                0.0
            };
            bar.set_message(format!(
                "{rate:>8.1}/s  {} in flight, {} failed",
                s.in_flight.max(0),
                s.failed
            ));
        }
        if let Some(s) = snapshot.first() {
            self.overall.set_length(s.total.max(finished));
        }
        self.overall.set_position(finished);
    }

    /// Print a line above the bars.
    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    pub fn finish(&self) {
        for b in &self.stages {
            b.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Called with each failed item as it happens.
pub type FailureFn = Box<dyn Fn(&Failure) + Send + Sync>;

/// What a run is given to show its progress, and the bars to clear at the end.
pub struct Progress {
    pub bars: Option<Arc<Bars>>,
    pub on_failure: FailureFn,
    pub on_progress: Option<ProgressFn>,
    pub every: Duration,
}

impl Progress {
    /// The callbacks for `show`; `names` are the stages, for the bars.
    pub fn new(show: Show, names: &[String], style: Style) -> Progress {
        let bars = (show == Show::Bars).then(|| Arc::new(Bars::new(names)));
        let on_failure: FailureFn = match &bars {
            Some(b) => {
                let b = Arc::clone(b);
                Box::new(move |f| b.println(&error_line(style, f)))
            }
            None => Box::new(move |f| eprintln!("{}", error_line(style, f))),
        };
        let (on_progress, every): (Option<ProgressFn>, u64) = match (&bars, show) {
            (Some(b), _) => {
                let b = Arc::clone(b);
                (Some(Box::new(move |s, n| b.update(s, n))), 100)
            }
            (None, Show::Json) => (Some(Box::new(|s, _| json_lines(s))), 250),
            _ => (None, 250),
        };
        Progress {
            bars,
            on_failure,
            on_progress,
            every: Duration::from_millis(every),
        }
    }
}

/// `--progress json`: one line per stage.
fn json_lines(stages: &[StageProgress]) {
    let mut err = std::io::stderr().lock();
    for s in stages {
        if let Ok(line) = serde_json::to_string(s) {
            let _ = writeln!(err, "{line}");
        }
    }
}
