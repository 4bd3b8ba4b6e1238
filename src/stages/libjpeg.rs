//! Calling libjpeg (through the mozjpeg crate): its fatal errors unwind out
//! of the C code as panics, and this turns one into the item's reason.

use std::panic::AssertUnwindSafe;

/// Run `f`, which calls libjpeg; a fatal libjpeg error comes back as its
/// message, without the crate's prefix.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = crate::panics::message(payload.as_ref()).unwrap_or("libjpeg failed");
        msg.strip_prefix("libjpeg fatal error: ")
            .unwrap_or(msg)
            .to_string()
    })
}
