//! Ctrl-C, SIGTERM and SIGHUP: the first asks the run to finish the items in
//! progress, a second stops at once. The process then exits with 128 + the
//! signal's number (130, 143, 129), as shells and process supervisors expect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::Exit;
use super::progress::Bars;

/// What the signals told the run: whether to stop, and which signal asked.
#[derive(Clone)]
pub(super) struct Stop {
    /// Set on the first signal; the run watches it.
    pub flag: Arc<AtomicBool>,
    /// The number of the last signal received (0: none).
    signal: Arc<AtomicI32>,
}

impl Stop {
    /// The exit code for a run that stopped because of a signal.
    pub fn exit(&self) -> Exit {
        exit_for(self.signal.load(Ordering::SeqCst))
    }
}

/// 128 + the signal's number, the shells' convention.
fn exit_for(signal: i32) -> Exit {
    match signal {
        SIGTERM => Exit::Terminated,
        SIGHUP => Exit::HungUp,
        _ => Exit::Interrupted,
    }
}

/// Start listening for the stop signals. The bars are cleared before the
/// process exits, so none is left frozen on the screen; the first notice is
/// printed above them, so they redraw below it rather than over it.
pub(super) fn listen(bars: Option<Arc<Bars>>) -> Stop {
    let stop = Stop {
        flag: Arc::new(AtomicBool::new(false)),
        signal: Arc::new(AtomicI32::new(0)),
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        // Only when the system refuses a handler; the run then stops the
        // default way (at once, by the signal itself), as it would anyway.
        Err(e) => {
            tracing::warn!("cannot listen for Ctrl-C and SIGTERM: {e}");
            return stop;
        }
    };
    let seen = stop.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            seen.signal.store(signal, Ordering::SeqCst);
            if !seen.flag.swap(true, Ordering::SeqCst) {
                let notice = match signal {
                    SIGINT => {
                        "interrupted: finishing the items in progress (again to stop at once)"
                    }
                    _ => "asked to stop: finishing the items in progress (again to stop at once)",
                };
                match &bars {
                    Some(b) => b.println(notice),
                    None => eprintln!("\n{notice}"),
                }
            } else {
                if let Some(b) = &bars {
                    b.finish();
                }
                crate::exec::cleanup::exit_now(exit_for(signal) as i32);
            }
        }
    });
    stop
}
