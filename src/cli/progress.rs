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

/// Columns a bar line may take: the terminal's width, at most 100, so a
/// line never wraps (a wrapped line is left behind when the bars redraw).
fn columns() -> usize {
    let cols = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .or_else(stderr_width);
    cols.unwrap_or(80).clamp(40, 100)
}

/// The width of the terminal on stderr, if it is one.
fn stderr_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only fills the struct it is given.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Columns around the bar: the spaces, `1234567/1234567`, and the message,
/// whose longest form is `1234567/s 99 busy 99999 failed` (or
/// `00:00:00 eta 0s`).
const AROUND_BAR: usize = 3 + 15 + 30;

/// A bar style with `{prefix}` padded to `width`, a bar that fills what is
/// left of `cols`, then `rest`.
fn bar_style(width: usize, cols: usize, bar: &str, rest: &str) -> ProgressStyle {
    let fill = cols.saturating_sub(width + AROUND_BAR).clamp(5, 30);
    let colours = if super::style::stderr_colours() {
        format!(".{bar}")
    } else {
        String::new()
    };
    ProgressStyle::with_template(&format!(
        "{{prefix:<{width}}} {{bar:{fill}{colours}}} {{pos:>7}}/{{len:<7}} {rest}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Bars {
    pub fn new(names: &[String]) -> Bars {
        Bars::drawn_on(names, ProgressDrawTarget::stderr_with_hz(8), columns())
    }

    /// Bars drawn on `target`, `cols` wide at most.
    fn drawn_on(names: &[String], target: ProgressDrawTarget, cols: usize) -> Bars {
        let multi = MultiProgress::with_draw_target(target);
        // Long stage names are cut, so the line still fits.
        let width = names
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(4)
            .clamp(3, 16);
        let style = bar_style(width, cols, "cyan/blue", "{msg}");
        let stages = names
            .iter()
            .map(|n| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(n.chars().take(width).collect::<String>());
                b
            })
            .collect();
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(bar_style(
            width,
            cols,
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
            let ended = s.done + s.failed + s.filtered + s.up_to_date;
            bar.set_length(s.total.max(ended));
            bar.set_position(ended);
            let rate = if s.elapsed > 0.0 {
                s.done as f64 / s.elapsed
            } else {
                0.0
            };
            bar.set_message(format!(
                "{rate:>6.0}/s {:>2} busy {} failed",
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

    /// Remove the bars from the screen (idempotent: a second Ctrl-C may
    /// clear them while the run's end does too).
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
        Progress::with_bars(bars, show, style)
    }

    fn with_bars(bars: Option<Arc<Bars>>, show: Show, style: Style) -> Progress {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A line without its colour codes (`ESC [ ... m`).
    fn plain(line: &str) -> String {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// A terminal that keeps the lines drawn on it.
    #[derive(Debug, Default)]
    struct Screen(Mutex<Vec<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
            lines.extend(s.lines().map(plain));
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bars_fit_in_80_columns() {
        let screen = Arc::new(Screen::default());
        let target = ProgressDrawTarget::term_like(Box::new(ScreenRef(Arc::clone(&screen))));
        let names: Vec<String> = ["scan", "thumbnail-of-a-long-name", "save"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bars = Bars::drawn_on(&names, target, 80);
        let big = |stage: &str| StageProgress {
            stage: stage.to_string(),
            done: 1_234_567,
            failed: 9_999,
            filtered: 0,
            up_to_date: 0,
            in_flight: 99,
            total: 9_999_999,
            total_known: false,
            elapsed: 0.5,
        };
        let snapshot: Vec<StageProgress> = names.iter().map(|n| big(n)).collect();
        bars.update(&snapshot, 1_234_567);
        for b in bars.stages.iter().chain([&bars.overall]) {
            b.tick();
        }
        let _ = bars.multi.clear();
        let lines = screen.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(!lines.is_empty(), "nothing was drawn");
        for l in &lines {
            let cols = l.chars().count();
            assert!(cols <= 80, "{cols} columns: {l:?}");
        }
    }

    /// Shares the screen with the test, which reads it after drawing.
    #[derive(Debug)]
    struct ScreenRef(Arc<Screen>);

    impl indicatif::TermLike for ScreenRef {
        fn width(&self) -> u16 {
            self.0.width()
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.0.move_cursor_up(n)
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.0.move_cursor_down(n)
        }
        fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
            self.0.move_cursor_right(n)
        }
        fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
            self.0.move_cursor_left(n)
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.write_line(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.write_str(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.0.clear_line()
        }
        fn flush(&self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
}
