//! What crosses the process boundary between conveyor and its workers: items
//! as plain data (payload bytes and pixels as byte strings, never as serde
//! sequences of numbers), and the few messages of the worker protocol.
//! Paths travel as their raw bytes: a Unix name need not be UTF-8, and two
//! names that differ only in such bytes must stay two names. A large image's
//! pixels go through a shared-memory [`Slot`] that each side keeps per
//! worker and direction, rather than through the socket.

use std::path::PathBuf;

use image::{DynamicImage, GrayImage, ImageBuffer, RgbImage, RgbaImage};
use ipc_channel::ipc::{IpcReceiver, IpcSender, IpcSharedMemory};
use serde::{Deserialize, Serialize};

use crate::item::{Item, Meta, Payload};

/// The hidden subcommand that turns the binary into a worker.
pub const WORKER_ARG: &str = "__conveyor-worker";

/// What a worker sends back when it connects: the channel to send it work,
/// and the one its answers come on.
pub type Bootstrap = (IpcSender<ToWorker>, IpcReceiver<FromWorker>);

/// One stage for a worker to build: its kind and its options as TOML text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageInit {
    pub name: String,
    pub kind: String,
    pub options: String,
    pub timeout: Option<std::time::Duration>,
    #[serde(with = "crate::item::path_bytes::opt")]
    pub run_dir: Option<std::path::PathBuf>,
    /// Threads the worker's per-pixel work may use: its share of the run's
    /// jobs, not every core, since its sibling workers share them.
    pub threads: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Sent once, first: the chain of stages to become (consecutive stages
    /// in processes mode share a worker, so pixels stay in it).
    Init(Vec<StageInit>),
    /// One item to take through the chain; the worker answers before it
    /// gets the next.
    Item(Box<WireItem>),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    Ready,
    /// A stage could not be built from its options.
    InitFailed(String),
    /// The item moves on to the chain's stage number `.0`, so a crash or a
    /// hang from now on is that stage's.
    Enter(usize),
    /// The item's outcome at chain stage `at`: through the whole chain,
    /// dropped on purpose, or failed.
    Done {
        at: usize,
        result: Result<Option<Box<WireItem>>, Reason>,
        /// CPU time in each chain stage the item went through.
        cpu: Vec<std::time::Duration>,
        /// The worker's largest resident size so far, in bytes.
        peak_rss: u64,
    },
    /// Chain stage `at` panicked; the worker exits after saying so.
    Panicked {
        at: usize,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Color {
    L8,
    Rgb8,
    Rgba8,
    /// 16 bits per channel, each value two little-endian bytes.
    L16,
    Rgb16,
    Rgba16,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum WirePayload {
    Nothing,
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Image {
        width: u32,
        height: u32,
        color: Color,
        pixels: WirePixels,
    },
}

/// Where an image's pixels are: in the message (small images), or in the
/// sender's shared-memory slot.
#[derive(Debug, Serialize, Deserialize)]
pub enum WirePixels {
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The first `.0` bytes of the sender's slot.
    InSlot(u64),
    /// A larger slot that replaces the sender's last one; the pixels are
    /// its first `.1` bytes.
    NewSlot(IpcSharedMemory, u64),
}

/// Pixels smaller than this travel in the message itself.
const SLOT_MIN: usize = 1 << 20;

/// One direction's shared memory between conveyor and one worker: the
/// sender writes an image's pixels into it, the receiver copies them out.
/// Measured in NOTES.md: a 12 MB image through a reused mapping 0.37 ms,
/// through the socket 3-4.5 ms, and pixels cross up to three times per
/// item when a processes-mode stage feeds two branches.
///
/// The protocol makes the reuse safe: the receiver copies the pixels out as
/// soon as the message arrives, before it answers, and the sender writes
/// the slot again only for its next message, which it sends after that
/// answer. A new worker starts with new slots.
#[derive(Default)]
pub struct Slot(Option<IpcSharedMemory>);

impl Slot {
    /// Put `pixels` where the receiver will find them.
    fn put(&mut self, pixels: Vec<u8>) -> WirePixels {
        let len = pixels.len();
        if len < SLOT_MIN {
            return WirePixels::Inline(pixels);
        }
        if let Some(shm) = self.0.as_mut().filter(|shm| shm.len() >= len) {
            // SAFETY: the receiver reads this slot only between receiving
            // the message that names it and answering that message; the
            // answer to the previous one has come (see the type's doc).
            let target = unsafe { shm.deref_mut() };
            target[..len].copy_from_slice(&pixels);
            return WirePixels::InSlot(len as u64);
        }
        let shm = IpcSharedMemory::from_bytes(&pixels);
        self.0 = Some(shm.clone());
        WirePixels::NewSlot(shm, len as u64)
    }

    /// The pixels of a message, copied out of the slot if they are in it;
    /// `None` if the slot is missing or too short (a bad message).
    fn take(&mut self, pixels: WirePixels) -> Option<Vec<u8>> {
        match pixels {
            WirePixels::Inline(bytes) => Some(bytes),
            WirePixels::InSlot(len) => {
                let len = usize::try_from(len).ok()?;
                self.0.as_ref()?.get(..len).map(<[u8]>::to_vec)
            }
            WirePixels::NewSlot(shm, len) => {
                let len = usize::try_from(len).ok()?;
                let bytes = shm.get(..len).map(<[u8]>::to_vec);
                self.0 = Some(shm);
                bytes
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireItem {
    pub id: u64,
    #[serde(with = "crate::item::path_bytes")]
    pub path: PathBuf,
    #[serde(with = "crate::item::path_bytes")]
    pub rel: PathBuf,
    pub meta: Meta,
    pub attempt: u32,
    pub payload: WirePayload,
}

impl WireItem {
    /// The bytes the item carries across the boundary: its pixels or
    /// payload, names and metadata (the framing of the message aside).
    pub fn size(&self) -> u64 {
        let pixels = match &self.payload {
            WirePayload::Nothing => 0,
            WirePayload::Bytes(b) => b.len() as u64,
            WirePayload::Image { pixels, .. } => match pixels {
                WirePixels::Inline(b) => b.len() as u64,
                WirePixels::InSlot(n) | WirePixels::NewSlot(_, n) => *n,
            },
        };
        let m = &self.meta;
        let blobs = [&m.icc, &m.exif, &m.xmp]
            .iter()
            .map(|b| b.as_ref().map_or(0, |b| b.len() as u64))
            .sum::<u64>();
        let names = self.path.as_os_str().len()
            + self.rel.as_os_str().len()
            + m.outputs.iter().map(|o| o.as_os_str().len()).sum::<usize>();
        pixels + blobs + names as u64
    }

    /// `item` for sending; large pixels go into `slot`.
    pub fn new(item: Item, slot: &mut Slot) -> WireItem {
        let payload = match item.payload {
            Payload::Nothing => WirePayload::Nothing,
            Payload::Bytes(b) => WirePayload::Bytes(b),
            Payload::Image(img) => {
                let (width, height) = (img.width(), img.height());
                // The pixel buffer moves; only uncommon layouts are converted.
                let (color, pixels) = match img {
                    DynamicImage::ImageLuma8(b) => (Color::L8, b.into_raw()),
                    DynamicImage::ImageRgb8(b) => (Color::Rgb8, b.into_raw()),
                    DynamicImage::ImageRgba8(b) => (Color::Rgba8, b.into_raw()),
                    DynamicImage::ImageLuma16(b) => (Color::L16, le_bytes(&b)),
                    DynamicImage::ImageRgb16(b) => (Color::Rgb16, le_bytes(&b)),
                    DynamicImage::ImageRgba16(b) => (Color::Rgba16, le_bytes(&b)),
                    other if other.color().has_alpha() => {
                        (Color::Rgba8, other.to_rgba8().into_raw())
                    }
                    other => (Color::Rgb8, other.to_rgb8().into_raw()),
                };
                WirePayload::Image {
                    width,
                    height,
                    color,
                    pixels: slot.put(pixels),
                }
            }
        };
        WireItem {
            id: item.id,
            path: item.path,
            rel: item.rel,
            meta: item.meta,
            attempt: item.attempt,
            payload,
        }
    }
}

/// 16-bit values as bytes, two a value, little-endian (a copy: the
/// allocation of a `Vec<u16>` can't become a `Vec<u8>`'s).
fn le_bytes(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The values [`le_bytes`] wrote; an odd last byte makes the buffer too
/// short for its size, which the caller reports.
fn from_le(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Why an item failed in a worker, as the user will read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason(pub String);

/// A decoded image whose pixels do not fill its stated size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPixels {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for BadPixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pixel buffer does not match {}x{}",
            self.width, self.height
        )
    }
}

impl std::error::Error for BadPixels {}

impl WireItem {
    /// The item received; pixels in a slot are copied out of `slot`.
    pub fn into_item(self, slot: &mut Slot) -> Result<Item, BadPixels> {
        let w = self;
        let payload =
            match w.payload {
                WirePayload::Nothing => Payload::Nothing,
                WirePayload::Bytes(b) => Payload::Bytes(b),
                WirePayload::Image {
                    width,
                    height,
                    color,
                    pixels,
                } => {
                    let pixels = slot.take(pixels).ok_or(BadPixels { width, height })?;
                    let img =
                        match color {
                            Color::L8 => GrayImage::from_raw(width, height, pixels)
                                .map(DynamicImage::ImageLuma8),
                            Color::Rgb8 => RgbImage::from_raw(width, height, pixels)
                                .map(DynamicImage::ImageRgb8),
                            Color::Rgba8 => RgbaImage::from_raw(width, height, pixels)
                                .map(DynamicImage::ImageRgba8),
                            Color::L16 => ImageBuffer::from_raw(width, height, from_le(&pixels))
                                .map(DynamicImage::ImageLuma16),
                            Color::Rgb16 => ImageBuffer::from_raw(width, height, from_le(&pixels))
                                .map(DynamicImage::ImageRgb16),
                            Color::Rgba16 => ImageBuffer::from_raw(width, height, from_le(&pixels))
                                .map(DynamicImage::ImageRgba16),
                        };
                    Payload::Image(img.ok_or(BadPixels { width, height })?)
                }
            };
        Ok(Item {
            id: w.id,
            path: w.path,
            rel: w.rel,
            meta: w.meta,
            payload,
            attempt: w.attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn pixels_go_through_a_slot_that_is_reused_and_grown() {
        let (mut sender, mut receiver) = (Slot::default(), Slot::default());
        let mut through = |bytes: Vec<u8>| {
            let wire = sender.put(bytes);
            let kind = match &wire {
                WirePixels::Inline(_) => "inline",
                WirePixels::InSlot(_) => "in slot",
                WirePixels::NewSlot(..) => "new slot",
            };
            (kind, receiver.take(wire))
        };
        for (len, seed, kind) in [
            (2 << 20, 1, "new slot"),
            (3 << 19, 2, "in slot"),
            (3 << 20, 3, "new slot"),
            (2 << 20, 4, "in slot"),
            (1000, 5, "inline"),
        ] {
            let bytes = pattern(len, seed);
            let (how, got) = through(bytes.clone());
            assert_eq!(how, kind, "{len} bytes");
            assert!(
                got.as_deref() == Some(&bytes[..]),
                "{len} bytes, seed {seed}"
            );
        }
    }

    #[test]
    fn a_slot_the_receiver_never_got_is_a_bad_message() {
        let mut receiver = Slot::default();
        assert_eq!(receiver.take(WirePixels::InSlot(10)), None);
        let mut sender = Slot::default();
        let wire = sender.put(pattern(2 << 20, 0));
        assert!(receiver.take(wire).is_some());
        assert_eq!(
            receiver.take(WirePixels::InSlot(3 << 20)),
            None,
            "past its end"
        );
    }
}
