//! Decoded pixels as plain bytes: the layouts an image crosses a process
//! boundary in, and images whose bytes stay in memory shared with worker
//! processes, so that an image going from one worker to the next is handed
//! over without conveyor copying it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use image::{DynamicImage, GrayImage, ImageBuffer, RgbImage, RgbaImage};
use ipc_channel::ipc::IpcSharedMemory;
use serde::{Deserialize, Serialize};

/// How an image's pixels are laid out as bytes: its channels, and 8 or 16
/// bits a value (16-bit values as two little-endian bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    L8,
    Rgb8,
    Rgba8,
    L16,
    Rgb16,
    Rgba16,
}

impl Layout {
    /// An image's pixels as bytes. The buffer moves when it can; only
    /// 16-bit images (whose `Vec<u16>` can't become a `Vec<u8>`) and
    /// uncommon layouts (converted to RGB or RGBA) are copied.
    pub fn split(img: DynamicImage) -> (Layout, Vec<u8>) {
        match img {
            DynamicImage::ImageLuma8(b) => (Layout::L8, b.into_raw()),
            DynamicImage::ImageRgb8(b) => (Layout::Rgb8, b.into_raw()),
            DynamicImage::ImageRgba8(b) => (Layout::Rgba8, b.into_raw()),
            DynamicImage::ImageLuma16(b) => (Layout::L16, le_bytes(&b)),
            DynamicImage::ImageRgb16(b) => (Layout::Rgb16, le_bytes(&b)),
            DynamicImage::ImageRgba16(b) => (Layout::Rgba16, le_bytes(&b)),
            other if other.color().has_alpha() => (Layout::Rgba8, other.to_rgba8().into_raw()),
            other => (Layout::Rgb8, other.to_rgb8().into_raw()),
        }
    }

    /// Bytes a `width` x `height` image takes in this layout (`None` past
    /// what memory can address).
    pub fn bytes_for(self, width: u32, height: u32) -> Option<usize> {
        let per_pixel: usize = match self {
            Layout::L8 => 1,
            Layout::L16 => 2,
            Layout::Rgb8 => 3,
            Layout::Rgba8 => 4,
            Layout::Rgb16 => 6,
            Layout::Rgba16 => 8,
        };
        (width as usize)
            .checked_mul(height as usize)?
            .checked_mul(per_pixel)
    }

    /// The image `bytes` hold; `None` when they do not fill its size.
    pub fn image(self, width: u32, height: u32, bytes: Cow<'_, [u8]>) -> Option<DynamicImage> {
        match self {
            Layout::L8 => {
                GrayImage::from_raw(width, height, bytes.into_owned()).map(DynamicImage::ImageLuma8)
            }
            Layout::Rgb8 => {
                RgbImage::from_raw(width, height, bytes.into_owned()).map(DynamicImage::ImageRgb8)
            }
            Layout::Rgba8 => {
                RgbaImage::from_raw(width, height, bytes.into_owned()).map(DynamicImage::ImageRgba8)
            }
            Layout::L16 => {
                ImageBuffer::from_raw(width, height, from_le(&bytes)).map(DynamicImage::ImageLuma16)
            }
            Layout::Rgb16 => {
                ImageBuffer::from_raw(width, height, from_le(&bytes)).map(DynamicImage::ImageRgb16)
            }
            Layout::Rgba16 => {
                ImageBuffer::from_raw(width, height, from_le(&bytes)).map(DynamicImage::ImageRgba16)
            }
        }
    }
}

/// 16-bit values as bytes, two a value, little-endian.
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

/// A decoded image whose bytes are in shared memory that a worker process
/// filled. conveyor hands it to the next workers as it is; a stage that
/// runs in conveyor gets it as an ordinary image ([`SharedImage::to_image`]).
/// Copies share the memory; when the last of them is dropped, every reader
/// is done with it, and its release (if any) is called.
#[derive(Clone)]
pub struct SharedImage {
    width: u32,
    height: u32,
    layout: Layout,
    memory: Arc<Held>,
    piece: Option<MemoryId>,
}

/// Which piece of a worker's lent memory an image is in. A worker lends the
/// same pieces again and again, and a reader that keeps a piece mapped
/// reads the next image in it through the same mapping: pages it has
/// already mapped, where a new mapping would fault each one in again (and
/// unmap them all afterwards). `lender` is random for each worker, so a
/// worker started later under a reused process id never names a piece of
/// the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemoryId {
    pub lender: u64,
    pub piece: u64,
}

/// What is called when nobody reads a [`SharedImage`]'s memory any more.
pub type Release = Box<dyn FnOnce() + Send + Sync>;

struct Held {
    memory: Arc<IpcSharedMemory>,
    release: Option<Release>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl SharedImage {
    /// The image in the first bytes of `memory`; `None` when the memory is
    /// shorter than the image. `release` is called once the image and all
    /// its copies are dropped (also when it is `None` here). `memory` may
    /// be a mapping the caller keeps for later images too.
    pub fn new(
        width: u32,
        height: u32,
        layout: Layout,
        memory: impl Into<Arc<IpcSharedMemory>>,
        release: Option<Release>,
    ) -> Option<SharedImage> {
        let held = Held {
            memory: memory.into(),
            release,
        };
        let len = layout.bytes_for(width, height)?;
        (held.memory.len() >= len).then(|| SharedImage {
            width,
            height,
            layout,
            memory: Arc::new(held),
            piece: None,
        })
    }

    /// The same image, known to be in the lent `piece`.
    pub fn in_piece(mut self, piece: Option<MemoryId>) -> SharedImage {
        self.piece = piece;
        self
    }

    /// The lent piece the image is in, if it is in one.
    pub fn piece(&self) -> Option<MemoryId> {
        self.piece
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The memory, to send on to another process.
    pub fn memory(&self) -> &IpcSharedMemory {
        &self.memory.memory
    }

    /// The image's bytes.
    pub fn bytes(&self) -> &[u8] {
        let len = self.layout.bytes_for(self.width, self.height).unwrap_or(0);
        self.memory.memory.get(..len).unwrap_or_default()
    }

    /// A copy in this process's memory, for a stage to work on.
    pub fn to_image(&self) -> Option<DynamicImage> {
        self.layout
            .image(self.width, self.height, Cow::Borrowed(self.bytes()))
    }
}

impl fmt::Debug for SharedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SharedImage({}x{} {:?}, {} bytes)",
            self.width,
            self.height,
            self.layout,
            self.bytes().len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_comes_back_as_it_went() {
        let (w, h) = (5, 3);
        let rgb = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let images = [
            DynamicImage::ImageRgb8(rgb.clone()),
            DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb.clone()).to_luma8()),
            DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8()),
            DynamicImage::ImageLuma16(DynamicImage::ImageRgb8(rgb.clone()).to_luma16()),
            DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(rgb.clone()).to_rgb16()),
            DynamicImage::ImageRgba16(DynamicImage::ImageRgb8(rgb).to_rgba16()),
        ];
        for img in images {
            let (layout, bytes) = Layout::split(img.clone());
            assert_eq!(Some(bytes.len()), layout.bytes_for(w, h), "{layout:?}");
            let shm = IpcSharedMemory::from_bytes(&bytes);
            let released = Arc::new(std::sync::atomic::AtomicU32::new(0));
            let count = Arc::clone(&released);
            let release: Release = Box::new(move || {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
            let shared = SharedImage::new(w, h, layout, shm, Some(release)).expect("fits");
            let copy = shared.clone();
            drop(shared);
            assert_eq!(copy.to_image().as_ref(), Some(&img), "{layout:?}");
            assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 0);
            drop(copy);
            assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 1);
            let short = IpcSharedMemory::from_bytes(&bytes[..bytes.len() - 1]);
            assert!(
                SharedImage::new(w, h, layout, short, None).is_none(),
                "{layout:?}"
            );
        }
    }
}
