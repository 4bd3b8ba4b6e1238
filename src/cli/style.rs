//! Colours and the two output streams: colour only on a terminal without
//! `NO_COLOR`, and stdout written so that a closed pipe is not an error.

use std::io::{IsTerminal, Write};

use crate::config::Style;

/// Whether stderr gets colours.
pub fn stderr_colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
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
