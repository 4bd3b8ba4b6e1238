//! Colours and the two output streams: `--color auto` (the default) colours
//! only a terminal, and not when `NO_COLOR` is set; `always` and `never` say
//! so whatever the terminal. stdout is written so that a closed pipe is not an
//! error.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use crate::config::Style;

/// `--color`: when messages on stderr get colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    Always,
    Never,
}

/// The choice of this process, set once from the command line.
static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// `--color WHEN` or `--color=WHEN` among the arguments, before `--`.
pub fn color_in_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Option<ColorChoice> {
    let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    let mut found = None;
    while let Some(a) = args.next() {
        let value = match a.as_str() {
            "--" => break,
            "--color" => args.next(),
            _ => a.strip_prefix("--color=").map(str::to_string),
        };
        found = match value.as_deref() {
            Some("always") => Some(ColorChoice::Always),
            Some("never") => Some(ColorChoice::Never),
            Some("auto") => Some(ColorChoice::Auto),
            _ => found,
        };
    }
    found
}

/// Record `--color` before anything is printed.
pub fn choose(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

/// Whether stderr gets colours.
pub fn stderr_colours() -> bool {
    match CHOICE.get().copied().unwrap_or_default() {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

/// The style of messages on stderr.
pub fn stderr_style() -> Style {
    if stderr_colours() {
        Style::COLOR
    } else {
        Style::PLAIN
    }
}

/// Write to stdout; a closed pipe (`conveyor stages | head`) is not an error.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// `error: MESSAGE`, with `error` in the error colour.
pub fn error_line(style: Style, message: &dyn std::fmt::Display) -> String {
    format!("{}error{}: {message}", style.error, style.reset)
}
