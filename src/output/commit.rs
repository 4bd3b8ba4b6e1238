//! Whether this process has begun changing the user's files for the item it
//! is working on. A worker process asked to stop after Ctrl-C reads this
//! from its signal handler: before the first file is placed it can end at
//! once (nothing of the item exists), after it must finish the item and
//! answer, or a file would exist that no journal and no summary knows of.

use std::sync::atomic::{AtomicBool, Ordering};

static COMMITTING: AtomicBool = AtomicBool::new(false);

/// A file is about to be given its final name (or moved) for the current
/// item. Set before the rename, so there is no moment when the file exists
/// and the flag does not say so.
pub fn begin() {
    COMMITTING.store(true, Ordering::SeqCst);
}

/// Whether a file has been (or is being) placed since the last `reset`.
/// Safe to call from a signal handler: one atomic load.
pub fn committing() -> bool {
    COMMITTING.load(Ordering::SeqCst)
}

/// The item's answer has been given: the next item starts clean.
pub fn reset() {
    COMMITTING.store(false, Ordering::SeqCst);
}
