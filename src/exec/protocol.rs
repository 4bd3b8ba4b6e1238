//! What crosses the process boundary between conveyor and its workers: items
//! as plain data (payload bytes and pixels as byte strings, never as serde
//! sequences of numbers), and the few messages of the worker protocol.
//! Paths travel as their raw bytes: a Unix name need not be UTF-8, and two
//! names that differ only in such bytes must stay two names. A large image's
//! pixels go through a shared-memory [`Slot`] that each side keeps per
//! worker and direction, rather than through the socket.

use std::path::PathBuf;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use ipc_channel::ipc::{IpcReceiver, IpcSender, IpcSharedMemory};
use serde::{Deserialize, Serialize};

use crate::item::{Item, Meta, Payload};
use crate::pixels::{Layout, MemoryId, SharedImage};

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
    /// in processes mode share a worker, so pixels stay in it), and whether
    /// the chain's items go on only to other workers, so that large pixels
    /// are handed over in memory of their own (see [`WirePixels::Shared`]).
    Init {
        stages: Vec<StageInit>,
        hand_over: bool,
    },
    /// One item to take through the chain; the worker answers before it
    /// gets the next. `returned`: the worker's lent memory that nobody reads
    /// any more (see [`Lender`]).
    Item {
        item: Box<WireItem>,
        returned: Vec<u64>,
    },
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

#[derive(Debug, Serialize, Deserialize)]
pub enum WirePayload {
    Nothing,
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Image {
        width: u32,
        height: u32,
        color: Layout,
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
    /// Memory of the image's own, which the receiver may keep (the pixels
    /// are its first `len` bytes): how a worker whose items go on only to
    /// other workers hands them over, and how conveyor passes them on, so
    /// that conveyor never copies them. `lease`: the worker's number for
    /// it, given back when every reader is done (see [`Lender`]);
    /// `piece`: which of the lender's pieces it is, for readers that keep
    /// it mapped ([`Mapped`]).
    Shared {
        memory: IpcSharedMemory,
        len: u64,
        lease: Option<u64>,
        piece: Option<MemoryId>,
    },
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
            // Pixels in memory of their own never come through a slot:
            // `WireItem::into_item` takes them before it asks one.
            WirePixels::Shared { .. } => None,
        }
    }
}

/// Leases of a worker's lent memory that conveyor no longer reads, to be
/// given back with the next item it sends that worker.
pub type Returns = Arc<Mutex<Vec<u64>>>;

/// A worker's memory for the pixels it hands over ([`WirePixels::Shared`]).
/// Each image is put in memory lent to conveyor under a lease; conveyor
/// gives the lease back once every process that reads the image is done
/// (each reader is done with the pixels, copied out or read where they
/// lie by its first stage, before it answers), and the memory
/// is reused for a later image. New shared memory costs fresh pages, each
/// zeroed by the kernel and faulted in one at a time, and their release:
/// for every image, more than copying the pixels themselves. A reused
/// piece costs neither, here or in a reader that keeps it mapped.
pub struct Lender {
    /// Random: names this lender's pieces apart from any other's.
    id: u64,
    next: u64,
    pieces: u64,
    lent: HashMap<u64, Piece>,
    idle: Vec<Piece>,
}

/// A piece of lent memory and its number among the lender's pieces.
struct Piece {
    memory: IpcSharedMemory,
    number: u64,
}

impl Default for Lender {
    fn default() -> Lender {
        Lender {
            id: std::hash::RandomState::new()
                .hash_one((std::process::id(), std::time::SystemTime::now())),
            next: 0,
            pieces: 0,
            lent: HashMap::new(),
            idle: Vec::new(),
        }
    }
}

/// Idle memory kept for reuse, at most: this many pieces, of this many
/// bytes in all; past either, the smallest pieces go (a large piece holds
/// any smaller image). It holds no image, so `--memory` does not count it
/// (nor a piece let go that readers still map, see [`Mapped`]).
/// Images come back about as fast as new ones are lent, so a few pieces
/// are enough for nearly every image of a long run to reuse one (on 500
/// photos of mixed sizes: 19 pieces made, where 188 had been).
const IDLE_KEPT: usize = 4;
const IDLE_BYTES: usize = 256 << 20;

impl Lender {
    /// Conveyor is done with these leases.
    pub fn returned(&mut self, leases: &[u64]) {
        for lease in leases {
            let Some(piece) = self.lent.remove(lease) else {
                continue;
            };
            self.idle.push(piece);
        }
        // The largest first, each kept while it fits the bounds.
        self.idle.sort_by_key(|p| std::cmp::Reverse(p.memory.len()));
        keep_within(&mut self.idle, |p| p.memory.len(), IDLE_KEPT, IDLE_BYTES);
    }

    /// `pixels` in memory lent under a new lease: the smallest idle piece
    /// that holds them, else a new one.
    fn lend(&mut self, pixels: &[u8]) -> WirePixels {
        let len = pixels.len();
        let fits = self
            .idle
            .iter()
            .enumerate()
            .filter(|(_, p)| p.memory.len() >= len)
            .min_by_key(|(_, p)| p.memory.len())
            .map(|(k, _)| k);
        let piece = match fits {
            Some(k) => {
                let mut piece = self.idle.swap_remove(k);
                // SAFETY: its lease came back, so every process that read
                // it is done with the pixels and answered, and conveyor
                // keeps no image in it; nobody reads it while it is written.
                unsafe { piece.memory.deref_mut()[..len].copy_from_slice(pixels) };
                piece
            }
            None => {
                self.pieces += 1;
                Piece {
                    memory: IpcSharedMemory::from_bytes(pixels),
                    number: self.pieces,
                }
            }
        };
        let lease = self.next;
        self.next += 1;
        let sent = piece.memory.clone();
        let id = MemoryId {
            lender: self.id,
            piece: piece.number,
        };
        self.lent.insert(lease, piece);
        WirePixels::Shared {
            memory: sent,
            len: len as u64,
            lease: Some(lease),
            piece: Some(id),
        }
    }
}

/// A worker's mappings of other workers' lent memory, kept for the next
/// image lent in the same piece (see [`MemoryId`]).
///
/// A piece its lender has let go of (over its idle bound, or the lender
/// retired) lives on while a reader maps it, and nothing else counts that
/// memory (`--memory` does not): so the least recently used mapping goes
/// past `MAPPED_KEPT` pieces or `MAPPED_BYTES` in all, and any mapping
/// goes once `MAPPED_AGE` images have come without it.
///
/// Only on Linux, where ipc-channel maps the piece's memfd shared, so a
/// mapping kept shows what the lender writes later. Elsewhere each image
/// is mapped as it comes.
pub struct Mapped {
    kept: RefCell<Vec<Kept>>,
    received: Cell<u64>,
    bounds: (usize, usize, u64),
}

/// A mapping kept, and the image count when it was last read.
struct Kept {
    id: MemoryId,
    memory: Arc<IpcSharedMemory>,
    used: u64,
}

const MAPPED_KEPT: usize = 32;
const MAPPED_BYTES: usize = 256 << 20;
const MAPPED_AGE: u64 = 32;

impl Default for Mapped {
    fn default() -> Mapped {
        Mapped::within(MAPPED_KEPT, MAPPED_BYTES, MAPPED_AGE)
    }
}

impl Mapped {
    /// Mappings kept within `pieces` and `bytes`, each for `age` images.
    fn within(pieces: usize, bytes: usize, age: u64) -> Mapped {
        Mapped {
            kept: RefCell::default(),
            received: Cell::new(0),
            bounds: (pieces, bytes, age),
        }
    }

    /// The mapping to read `memory` through: the one kept for piece `id`
    /// if it is as long (the new mapping, never touched, is dropped), else
    /// `memory` itself, kept from now on.
    fn map(&self, id: Option<MemoryId>, memory: IpcSharedMemory) -> Arc<IpcSharedMemory> {
        let Some(id) = id.filter(|_| cfg!(target_os = "linux")) else {
            return Arc::new(memory);
        };
        let (pieces, bytes, age) = self.bounds;
        let now = self.received.get() + 1;
        self.received.set(now);
        let mut kept = self.kept.borrow_mut();
        kept.retain(|k| now - k.used <= age);
        if let Some(k) = kept
            .iter_mut()
            .find(|k| k.id == id && k.memory.len() == memory.len())
        {
            k.used = now;
            return Arc::clone(&k.memory);
        }
        kept.retain(|k| k.id != id);
        let memory = Arc::new(memory);
        kept.push(Kept {
            id,
            memory: Arc::clone(&memory),
            used: now,
        });
        // The most recently read are kept first, each while it fits the
        // bounds; one over the bytes alone is not kept at all.
        kept.sort_by_key(|k| std::cmp::Reverse(k.used));
        keep_within(&mut kept, |k| k.memory.len(), pieces, bytes);
        memory
    }
}

/// Keeps `items` in their order while they fit: at most `count` of them,
/// of at most `bytes` in all (`size` of each); one that would go past the
/// bytes is left out, and later smaller ones may still fit.
fn keep_within<T>(items: &mut Vec<T>, size: impl Fn(&T) -> usize, count: usize, bytes: usize) {
    let (mut held, mut kept) = (0, 0);
    items.retain(|item| {
        let keep = kept < count && held + size(item) <= bytes;
        if keep {
            held += size(item);
            kept += 1;
        }
        keep
    });
}

/// What the receiver of pixels in memory of their own does with them.
#[derive(Clone, Copy)]
pub enum Keep<'a> {
    /// Copy them out: the stages that read them want their own image.
    Copy(&'a Mapped),
    /// Keep them where they are for the first stage, which reads them there
    /// (`Stage::reads_shared`) before its worker answers.
    InPlace(&'a Mapped),
    /// Keep them to pass on (conveyor): their lease goes into `Returns`
    /// when nobody reads them any more.
    Lease(&'a Returns),
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
                WirePixels::InSlot(n)
                | WirePixels::NewSlot(_, n)
                | WirePixels::Shared { len: n, .. } => *n,
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

    /// `item` for sending. Large pixels go into `slot`, or, given a
    /// `lender` (the receiver passes them on to other workers without
    /// looking), into memory lent to it; pixels already in such memory go
    /// as they are.
    pub fn new(item: Item, slot: &mut Slot, lender: Option<&mut Lender>) -> WireItem {
        let payload = match item.payload {
            Payload::Nothing => WirePayload::Nothing,
            Payload::Bytes(b) => WirePayload::Bytes(b),
            Payload::Shared(shared) => WirePayload::Image {
                width: shared.width(),
                height: shared.height(),
                color: shared.layout(),
                pixels: WirePixels::Shared {
                    memory: shared.memory().clone(),
                    len: shared.bytes().len() as u64,
                    lease: None,
                    piece: shared.piece(),
                },
            },
            Payload::Image(img) => {
                let (width, height) = (img.width(), img.height());
                let (color, pixels) = Layout::split(img);
                let pixels = match lender {
                    Some(lender) if pixels.len() >= SLOT_MIN => lender.lend(&pixels),
                    _ => slot.put(pixels),
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
    /// Pixels in memory of their own are kept there or copied out as
    /// `shared` says.
    pub fn into_item(self, slot: &mut Slot, shared: Keep<'_>) -> Result<Item, BadPixels> {
        let w = self;
        let payload = match w.payload {
            WirePayload::Nothing => Payload::Nothing,
            WirePayload::Bytes(b) => Payload::Bytes(b),
            WirePayload::Image {
                width,
                height,
                color,
                pixels,
            } => {
                let bad = BadPixels { width, height };
                match (pixels, shared) {
                    // Conveyor passes them on and never reads them.
                    (
                        WirePixels::Shared {
                            memory,
                            lease,
                            piece,
                            ..
                        },
                        Keep::Lease(returns),
                    ) => {
                        let release = lease.map(|lease| {
                            let returns = Arc::clone(returns);
                            Box::new(move || {
                                returns
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(lease);
                            }) as crate::pixels::Release
                        });
                        Payload::Shared(
                            SharedImage::new(width, height, color, memory, release)
                                .ok_or(bad)?
                                .in_piece(piece),
                        )
                    }
                    (WirePixels::Shared { memory, piece, .. }, Keep::InPlace(mapped)) => {
                        Payload::Shared(
                            SharedImage::new(width, height, color, mapped.map(piece, memory), None)
                                .ok_or(bad)?
                                .in_piece(piece),
                        )
                    }
                    (
                        WirePixels::Shared {
                            memory, len, piece, ..
                        },
                        Keep::Copy(mapped),
                    ) => {
                        let memory = mapped.map(piece, memory);
                        let len = usize::try_from(len).map_err(|_| bad.clone())?;
                        let bytes = memory.get(..len).ok_or(bad.clone())?;
                        Payload::Image(
                            color
                                .image(width, height, Cow::Borrowed(bytes))
                                .ok_or(bad)?,
                        )
                    }
                    (pixels, _) => {
                        let bytes = slot.take(pixels).ok_or(bad.clone())?;
                        Payload::Image(color.image(width, height, Cow::Owned(bytes)).ok_or(bad)?)
                    }
                }
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
    use image::{DynamicImage, RgbImage};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn named(pixels: &WirePixels) -> &'static str {
        match pixels {
            WirePixels::Inline(_) => "inline",
            WirePixels::InSlot(_) => "in slot",
            WirePixels::NewSlot(..) => "new slot",
            WirePixels::Shared { .. } => "shared",
        }
    }

    #[test]
    fn pixels_go_through_a_slot_that_is_reused_and_grown() {
        let (mut sender, mut receiver) = (Slot::default(), Slot::default());
        let mut through = |bytes: Vec<u8>| {
            let wire = sender.put(bytes);
            (named(&wire), receiver.take(wire))
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

    fn with_image(img: DynamicImage) -> Item {
        let mut item = Item::new("a.png".into(), "a.png".into());
        item.payload = Payload::Image(img);
        item
    }

    fn how(wire: &WireItem) -> &'static str {
        match &wire.payload {
            WirePayload::Image { pixels, .. } => named(pixels),
            _ => "no image",
        }
    }

    /// From a worker to conveyor, kept there as it is, and on to two
    /// workers: the image each worker gets is the one the first made.
    #[test]
    fn handed_over_pixels_reach_the_next_workers_intact() {
        let rgb = RgbImage::from_fn(1000, 600, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let mut lender = Lender::default();
        let returns = Returns::default();
        for img in [
            DynamicImage::ImageRgb8(rgb.clone()),
            DynamicImage::ImageRgba16(DynamicImage::ImageRgb8(rgb.clone()).to_rgba16()),
        ] {
            let mut worker_out = Slot::default();
            let wire = WireItem::new(with_image(img.clone()), &mut worker_out, Some(&mut lender));
            assert_eq!(how(&wire), "shared");
            let mut conveyor_in = Slot::default();
            let kept = wire
                .into_item(&mut conveyor_in, Keep::Lease(&returns))
                .expect("intact");
            assert!(matches!(kept.payload, Payload::Shared(_)), "copied in");
            assert!(conveyor_in.0.is_none(), "the slot was used");
            for _branch in 0..2 {
                let mut to_worker = Slot::default();
                let wire = WireItem::new(kept.clone(), &mut to_worker, None);
                assert_eq!(how(&wire), "shared");
                let got = wire
                    .into_item(&mut Slot::default(), Keep::Copy(&Mapped::default()))
                    .expect("intact");
                match got.payload {
                    Payload::Image(got) => assert!(got == img, "pixels changed"),
                    other => panic!("a worker got {other:?}"),
                }
            }
            // A stage in conveyor gets it as an ordinary image.
            match kept.payload.in_process() {
                Some(Payload::Image(got)) => assert!(got == img),
                other => panic!("{other:?}"),
            }
        }
        // Every copy is gone: both leases came back.
        assert_eq!(*returns.lock().expect("lock"), [0, 1]);
        // Small images stay in the message, handed over or not.
        let small = DynamicImage::ImageRgb8(RgbImage::new(10, 10));
        let wire = WireItem::new(with_image(small), &mut Slot::default(), Some(&mut lender));
        assert_eq!(how(&wire), "inline");
    }

    /// Lent memory is written again only after its lease came back: an
    /// image still read keeps its pixels while later ones are lent.
    #[test]
    fn lent_memory_is_reused_only_once_given_back() {
        let mut lender = Lender::default();
        let returns = Returns::default();
        let mut conveyor_in = Slot::default();
        let mut lend = |lender: &mut Lender, seed: u8| {
            let img = DynamicImage::ImageRgb8(RgbImage::from_fn(800, 600, |x, y| {
                image::Rgb([x as u8 ^ seed, y as u8, seed])
            }));
            let wire = WireItem::new(with_image(img.clone()), &mut Slot::default(), Some(lender));
            let kept = wire
                .into_item(&mut conveyor_in, Keep::Lease(&returns))
                .expect("intact");
            (img, kept)
        };
        let (first, still_read) = lend(&mut lender, 1);
        let (_, done) = lend(&mut lender, 2);
        drop(done);
        let back = std::mem::take(&mut *returns.lock().expect("lock"));
        assert_eq!(back, [1]);
        lender.returned(&back);
        assert_eq!((lender.lent.len(), lender.idle.len()), (1, 1));
        // The third image reuses the second's memory, never the first's.
        let (third, third_kept) = lend(&mut lender, 3);
        assert_eq!((lender.lent.len(), lender.idle.len()), (2, 0));
        let image_of = |item: &Item| match item.payload.clone().in_process() {
            Some(Payload::Image(img)) => img,
            other => panic!("{other:?}"),
        };
        assert!(
            image_of(&still_read) == first,
            "a read image was overwritten"
        );
        assert!(image_of(&third_kept) == third);
        // A lease given back twice, or never lent, changes nothing.
        lender.returned(&[1, 99]);
        assert_eq!((lender.lent.len(), lender.idle.len()), (2, 0));
        // Idle memory is bounded: of six images given back, four are
        // kept, the largest; of larger ones, what fits in 256 MiB.
        let mut big = Lender::default();
        for mb in [3, 16, 5, 9, 2, 12] {
            let _ = big.lend(&vec![7u8; mb << 20]);
        }
        big.returned(&[0, 1, 2, 3, 4, 5]);
        let mut sizes: Vec<usize> = big.idle.iter().map(|p| p.memory.len() >> 20).collect();
        sizes.sort_unstable();
        assert_eq!((big.lent.len(), sizes), (0, vec![5, 9, 12, 16]));
        // A smaller image takes the smallest piece that holds it.
        let _ = big.lend(&vec![1u8; 6 << 20]);
        assert!(big.idle.iter().all(|p| p.memory.len() != 9 << 20));
        let mut huge = Lender::default();
        for mb in [100, 100, 300, 100, 1] {
            let _ = huge.lend(&vec![1u8; mb << 20]);
        }
        huge.returned(&[0, 1, 2, 3, 4]);
        // Past the bound alone, the largest goes; two of the others fit.
        let mut sizes: Vec<usize> = huge.idle.iter().map(|p| p.memory.len() >> 20).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [1, 100, 100]);
    }

    /// A reader keeps each piece of lent memory mapped: the next image
    /// lent in the same piece is read through the same mapping and is the
    /// new image, while a piece of another lender, or of another length,
    /// is never taken for it.
    #[test]
    fn a_reused_piece_is_read_through_the_mapping_kept() {
        let mut lender = Lender::default();
        let returns = Returns::default();
        let mapped = Mapped::default();
        let image = |seed: u8| {
            DynamicImage::ImageRgb8(RgbImage::from_fn(700, 500, |x, y| {
                image::Rgb([x as u8 ^ seed, y as u8, seed])
            }))
        };
        // Worker to conveyor to a reader that reads in place; what it read
        // and where.
        let through = |lender: &mut Lender, img: &DynamicImage| {
            let wire = WireItem::new(with_image(img.clone()), &mut Slot::default(), Some(lender));
            let kept = wire
                .into_item(&mut Slot::default(), Keep::Lease(&returns))
                .expect("intact");
            let wire = WireItem::new(kept, &mut Slot::default(), None);
            let got = wire
                .into_item(&mut Slot::default(), Keep::InPlace(&mapped))
                .expect("intact");
            let Payload::Shared(shared) = got.payload else {
                panic!("copied: {:?}", got.payload);
            };
            (
                shared.to_image().expect("fits"),
                shared.bytes().as_ptr() as usize,
            )
        };
        let first = image(1);
        let (got, at) = through(&mut lender, &first);
        assert!(got == first);
        let back = std::mem::take(&mut *returns.lock().expect("lock"));
        lender.returned(&back);
        let second = image(2);
        let (got, again) = through(&mut lender, &second);
        assert!(got == second, "the kept mapping shows the old pixels");
        assert_eq!(at, again, "mapped afresh");
        // Another worker's first piece has the same number, not the same id.
        let mut other = Lender::default();
        let third = image(3);
        let (got, _) = through(&mut other, &third);
        assert!(got == third, "another lender's piece was taken for it");
        // A piece of the same lender and number but another length (a
        // bad message) is mapped afresh too.
        let bytes = Layout::split(image(4)).1;
        let memory = IpcSharedMemory::from_bytes(&bytes[..bytes.len() - 7]);
        let id = lender.lent.values().next().map(|p| MemoryId {
            lender: lender.id,
            piece: p.number,
        });
        assert!(mapped.map(id, memory).len() == bytes.len() - 7);
    }

    /// Kept mappings stay within their bounds, whatever pieces come:
    /// the least recently read go first, a piece over the bytes alone is
    /// not kept, and one unread for the age is let go.
    #[test]
    fn kept_mappings_stay_within_their_bounds() {
        let mapped = Mapped::within(3, 3 << 20, 4);
        let piece = |n: u64| MemoryId {
            lender: 7,
            piece: n,
        };
        let kept = |mapped: &Mapped| -> Vec<u64> {
            let mut ids: Vec<u64> = mapped.kept.borrow().iter().map(|k| k.id.piece).collect();
            ids.sort_unstable();
            ids
        };
        let mib = |n: usize| IpcSharedMemory::from_byte(0, n << 20);
        for n in 1..=3 {
            let _ = mapped.map(Some(piece(n)), mib(1));
        }
        assert_eq!(kept(&mapped), [1, 2, 3]);
        // Piece 1 read again, then a fourth: the least recently read (2) goes.
        let _ = mapped.map(Some(piece(1)), mib(1));
        let _ = mapped.map(Some(piece(4)), mib(1));
        assert_eq!(kept(&mapped), [1, 3, 4]);
        // 2 MiB more: only what fits in 3 MiB stays, the newest first.
        let _ = mapped.map(Some(piece(5)), mib(2));
        assert_eq!(kept(&mapped), [4, 5]);
        // Over the bytes alone: read, never kept.
        assert_eq!(mapped.map(Some(piece(6)), mib(4)).len(), 4 << 20);
        assert_eq!(kept(&mapped), [4, 5]);
        // Piece 4 was last read with the 5th lent image: by the 10th it
        // has gone unread for 5 images, over the age of 4, and is let go.
        // Images not in lent memory do not count.
        for _ in 0..3 {
            let _ = mapped.map(None, mib(1));
        }
        assert_eq!(kept(&mapped), [4, 5]);
        for _ in 0..4 {
            let _ = mapped.map(Some(piece(5)), mib(2));
        }
        assert_eq!(kept(&mapped), [5]);
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
