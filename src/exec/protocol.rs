//! What crosses the process boundary between conveyor and its workers: items
//! as plain data (payload bytes and pixels as byte strings, never as serde
//! sequences of numbers), and the few messages of the worker protocol.
//! Paths travel as their raw bytes: a Unix name need not be UTF-8, and two
//! names that differ only in such bytes must stay two names.

use std::path::PathBuf;

use image::{DynamicImage, GrayImage, ImageBuffer, RgbImage, RgbaImage};
use ipc_channel::ipc::{IpcReceiver, IpcSender};
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
        #[serde(with = "serde_bytes")]
        pixels: Vec<u8>,
    },
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

impl From<Item> for WireItem {
    fn from(item: Item) -> WireItem {
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
                    pixels,
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

impl TryFrom<WireItem> for Item {
    type Error = BadPixels;

    fn try_from(w: WireItem) -> Result<Item, BadPixels> {
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
