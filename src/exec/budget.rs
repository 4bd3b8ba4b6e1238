//! The memory budget (`--memory`): the bytes of decoded images in flight,
//! estimated from each image's header before it is decoded. A source waits
//! for room before it sends an item on, so peak memory follows the budget
//! rather than the number of items in flight or their sizes.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use image::ImageDecoder as _;

/// The default budget: this fraction of the machine's memory.
pub const DEFAULT_FRACTION: (u64, u64) = (1, 2);

/// How many bytes an item is counted for, per byte of its decoded image:
/// the image and one working copy (a resized or sharpened version, the
/// encoder's buffer).
const COPIES: u64 = 2;

/// Bytes held by items in flight, and room to wait for.
pub(super) struct Budget {
    limit: u64,
    state: Mutex<Held>,
    room: Condvar,
}

#[derive(Default)]
struct Held {
    used: u64,
    by_item: HashMap<u64, u64>,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Budget {
        Budget {
            limit,
            state: Mutex::default(),
            room: Condvar::new(),
        }
    }

    /// Wait until `bytes` fit in the budget, then hold them for item `id`.
    /// An image bigger than the whole budget waits until nothing else is
    /// held, and then runs alone. Returns false, holding nothing, when
    /// `stopping` says the run is over before there is room.
    pub(super) fn acquire(&self, id: u64, bytes: u64, stopping: &dyn Fn() -> bool) -> bool {
        if bytes == 0 {
            return true;
        }
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while held.used > 0 && held.used.saturating_add(bytes) > self.limit {
            if stopping() {
                return false;
            }
            held = self
                .room
                .wait_timeout(held, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        held.used += bytes;
        held.by_item.insert(id, bytes);
        true
    }

    /// Item `id` has ended: its bytes are free.
    pub(super) fn release(&self, id: u64) {
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = held.by_item.remove(&id) {
            held.used = held.used.saturating_sub(bytes);
            self.room.notify_all();
        }
    }
}

/// What an image file will take once decoded, from its header (0 when the
/// header can't be read: the decoder will say why, or the file is small).
/// Only the file's first bytes are read: the decoders that would read a
/// whole file to find its size are given just its head.
pub(super) fn image_bytes(path: &Path) -> u64 {
    for limit in [64 << 10, 1 << 20] {
        let mut head = Vec::new();
        let Ok(file) = std::fs::File::open(path) else {
            return 0;
        };
        if file.take(limit).read_to_end(&mut head).is_err() {
            return 0;
        }
        if let Some(bytes) = head_bytes(&head) {
            return bytes.saturating_mul(COPIES);
        }
        if (head.len() as u64) < limit {
            break;
        }
    }
    0
}

/// The decoded bytes of the image whose file starts with `head`, if the
/// head holds its size.
fn head_bytes(head: &[u8]) -> Option<u64> {
    let pixels = |w: u32, h: u32| u64::from(w) * u64::from(h);
    if crate::stages::heif::sniff(head).is_some() {
        // RGBA, 8 bits: an estimate.
        return crate::stages::heif::dimensions(head).map(|(w, h)| pixels(w, h) * 4);
    }
    if let Some(f) = crate::stages::libjpeg::libjpeg_frame(head) {
        // The general decoder can't read this JPEG's header, or misreads it.
        return Some(pixels(f.width, f.height) * f.bytes_per_pixel());
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(head))
        .with_guessed_format()
        .ok()?;
    reader.format()?;
    let decoder = reader.into_decoder().ok()?;
    let (w, h) = decoder.dimensions();
    Some(pixels(w, h) * u64::from(decoder.color_type().bytes_per_pixel()))
}

/// The machine's memory in bytes, from /proc/meminfo.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The budget when `--memory` is not given.
pub fn default_limit() -> u64 {
    let (num, den) = DEFAULT_FRACTION;
    total_memory().map_or(4 << 30, |m| m / den * num)
}

#[cfg(test)]
mod tests {
    use super::Budget;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn items_wait_for_room_and_a_giant_runs_alone() {
        let b = Arc::new(Budget::new(100));
        assert!(b.acquire(1, 60, &|| false));
        assert!(b.acquire(2, 40, &|| false));
        // Full: a third waits until one ends.
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.acquire(3, 50, &|| false))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "no room yet");
        b.release(1);
        assert!(waiter.join().expect("join"));
        // Bigger than the whole budget: waits for everything to end.
        let stop = Arc::new(AtomicBool::new(false));
        let giant = {
            let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
            std::thread::spawn(move || b.acquire(4, 1000, &|| stop.load(Ordering::SeqCst)))
        };
        b.release(2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!giant.is_finished(), "item 3 still holds 50");
        b.release(3);
        assert!(giant.join().expect("join"), "alone, it runs");
        // A run that stops while an item waits gives up the wait.
        let waiting = {
            let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
            std::thread::spawn(move || b.acquire(5, 10, &|| stop.load(Ordering::SeqCst)))
        };
        stop.store(true, Ordering::SeqCst);
        assert!(!waiting.join().expect("join"));
        b.release(4);
        b.release(99); // unknown: nothing happens
        assert!(b.acquire(6, 100, &|| false));
    }
}
