//! `conveyor watch`: the first run shown as `run` shows it (bars, summary),
//! then one line per batch of files processed as they land, until Ctrl-C
//! or SIGTERM. The watching itself is `exec::watch`.

use super::args::WatchArgs;
use super::run::{show_of, start};
use super::style::{error_line, stderr_style};
use super::{Exit, load};
use crate::exec::watch::{Batch, Totals, WatchEvent, WatchOptions};
use crate::exec::{self, RunOptions};
use crate::item::escape_path;
use crate::stages::Registry;

/// How many names a batch line lists before it says how many more.
const NAMES_SHOWN: usize = 5;

/// Up to [`NAMES_SHOWN`] names, then how many more.
fn names<'a>(paths: impl ExactSizeIterator<Item = &'a std::path::Path>) -> String {
    let n = paths.len();
    let mut shown: Vec<String> = paths.take(NAMES_SHOWN).map(escape_path).collect();
    if n > NAMES_SHOWN {
        shown.push(format!("and {} more", n - NAMES_SHOWN));
    }
    shown.join(", ")
}

fn totals_text(t: &Totals) -> String {
    let mut parts = vec![format!("{} ok", t.ok), format!("{} failed", t.failed)];
    if t.filtered > 0 {
        parts.push(format!("{} filtered", t.filtered));
    }
    parts.push(format!("{} up to date", t.up_to_date));
    parts.join(", ")
}

/// One line per batch: what it processed or removed, and the counts since
/// the watch started.
fn batch_line(b: &Batch) -> String {
    let mut said = Vec::new();
    if !b.processed.is_empty() {
        let s = &b.summary;
        let mut counts = vec![format!("{} ok", s.ok)];
        if s.failed > 0 {
            counts.push(format!("{} failed", s.failed));
        }
        if s.filtered > 0 {
            counts.push(format!("{} filtered", s.filtered));
        }
        said.push(format!(
            "processed {} ({})",
            names(b.processed.iter().map(|l| l.path.as_path())),
            counts.join(", ")
        ));
    }
    if !b.deleted.is_empty() {
        let removed: usize = b.deleted.iter().map(|(_, files)| files.len()).sum();
        let mut text = format!(
            "deleted {}",
            names(b.deleted.iter().map(|(p, _)| p.as_path()))
        );
        match removed {
            0 => {}
            1 => text.push_str(" (1 output removed)"),
            n => text.push_str(&format!(" ({n} outputs removed)")),
        }
        said.push(text);
    }
    format!(
        "watch: batch {}: {}; since start: {}",
        b.number,
        said.join("; "),
        totals_text(&b.totals)
    )
}

pub(super) fn watch(args: &WatchArgs, registry: &Registry) -> Exit {
    let flags = &args.flags;
    let show = show_of(flags);
    let loaded = match load(&flags.pipeline, registry) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let style = stderr_style();
    let super::run::Started { bars, stop, opts } = start(&loaded.pipeline, show, style, flags);
    let watch = WatchOptions {
        settle: args.settle,
        prune: args.prune,
    };
    let quiet = flags.quiet;
    let mut on_event = |event: WatchEvent<'_>, opts: &mut RunOptions| match event {
        WatchEvent::Started { summary, folders } => {
            if let Some(b) = &bars {
                // Batches print a line each: the bars were for the first run.
                b.finish();
                opts.on_progress = None;
                opts.on_failure = Box::new(move |f| eprintln!("{}", error_line(style, f)));
            }
            if !quiet {
                eprint!("{}", super::summary::table(summary));
                let shown: Vec<String> = folders.iter().map(|f| escape_path(f)).collect();
                eprintln!(
                    "watching {} for new files (Ctrl-C to stop)",
                    shown.join(", ")
                );
            }
        }
        WatchEvent::Batch(b) => {
            if !quiet {
                eprintln!("{}", batch_line(b));
            }
        }
        WatchEvent::Warning(w) => eprintln!("warning: {w}"),
    };
    let result = exec::watch::watch(&loaded.pipeline, opts, watch, &mut on_event);
    if let Some(b) = &bars {
        b.finish();
    }
    match result {
        // A watch ends only when asked to: 130, 143 or 129 by the signal.
        Ok(()) => stop.exit(),
        Err(e) => {
            eprintln!("{}", error_line(style, &e));
            Exit::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn long_lists_of_names_are_cut() {
        let paths: Vec<PathBuf> = (0..8)
            .map(|i| PathBuf::from(format!("in/{i}.jpg")))
            .collect();
        assert_eq!(
            names(paths.iter().map(|p| p.as_path())),
            "in/0.jpg, in/1.jpg, in/2.jpg, in/3.jpg, in/4.jpg, and 3 more"
        );
    }
}
