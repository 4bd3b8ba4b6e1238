//! Items: one input file travelling through the stage graph, with its
//! metadata and its payload (nothing, encoded bytes, or a decoded image).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use image::DynamicImage;
use serde::{Deserialize, Serialize};

/// The kind of payload an item carries between two stages. The graph checker
/// compares what one stage gives with what the next one takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// Only a path and metadata, no content in memory (e.g. from `scan`).
    Nothing,
    /// The bytes of a file or of an encoded image.
    Bytes,
    /// Decoded pixels.
    Image,
}

impl PayloadType {
    pub const ALL: [PayloadType; 3] =
        [PayloadType::Nothing, PayloadType::Bytes, PayloadType::Image];

    pub fn name(self) -> &'static str {
        match self {
            PayloadType::Nothing => "nothing",
            PayloadType::Bytes => "bytes",
            PayloadType::Image => "image",
        }
    }

    fn bit(self) -> u8 {
        match self {
            PayloadType::Nothing => 1,
            PayloadType::Bytes => 2,
            PayloadType::Image => 4,
        }
    }
}

/// A set of payload types (what a stage accepts, or what may flow on an edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Types(u8);

impl Types {
    pub const NONE: Types = Types(0);

    pub const fn of(types: &[PayloadType]) -> Types {
        let mut bits = 0;
        let mut i = 0;
        while i < types.len() {
            bits |= match types[i] {
                PayloadType::Nothing => 1,
                PayloadType::Bytes => 2,
                PayloadType::Image => 4,
            };
            i += 1;
        }
        Types(bits)
    }

    pub fn contains(self, t: PayloadType) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn union(self, other: Types) -> Types {
        Types(self.0 | other.0)
    }

    /// True when every type in `self` is also in `other`.
    pub fn is_subset(self, other: Types) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = PayloadType> {
        PayloadType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl fmt::Display for Types {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(PayloadType::name).collect();
        if names.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&names.join("|"))
        }
    }
}

/// What an item carries.
#[derive(Debug, Clone, Default)]
pub enum Payload {
    #[default]
    Nothing,
    Bytes(Vec<u8>),
    Image(DynamicImage),
}

impl Payload {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Nothing => PayloadType::Nothing,
            Payload::Bytes(_) => PayloadType::Bytes,
            Payload::Image(_) => PayloadType::Image,
        }
    }
}

/// Facts gathered about an item on its way through the graph.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// Size of the source file in bytes.
    pub size: Option<u64>,
    /// Current width and height of the image payload.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Format of the source image as decoded (`jpeg`, `png` ...).
    pub source_format: Option<String>,
    /// Format of the encoded bytes in the payload, set by `encode`.
    pub format: Option<String>,
    /// Modification time of the source file, seconds since the Unix epoch.
    pub mtime: Option<i64>,
    /// The same in nanoseconds, for telling changed files apart.
    pub mtime_ns: Option<u64>,
    /// Content hash of the source file (hex) and its algorithm, from `hash`.
    pub hash: Option<String>,
    pub hash_algorithm: Option<String>,
    /// Colour profile and EXIF block of the source image (EXIF with its
    /// orientation reset when the pixels were already turned), for encoders
    /// asked to keep metadata.
    #[serde(with = "serde_bytes", default)]
    pub icc: Option<Vec<u8>>,
    #[serde(with = "serde_bytes", default)]
    pub exif: Option<Vec<u8>>,
    /// Files written for this item so far.
    pub outputs: Vec<PathBuf>,
    /// Anything else a stage wants to record (hashes, custom fields).
    pub extra: BTreeMap<String, String>,
}

/// One input file on its way through the graph.
#[derive(Debug, Clone)]
pub struct Item {
    /// Unique within a run; fan-out copies share it.
    pub id: u64,
    /// The source file as found by the scan.
    pub path: PathBuf,
    /// The path relative to the scan root, which names the outputs.
    pub rel: PathBuf,
    pub meta: Meta,
    pub payload: Payload,
    /// 0 on the first try of the current stage, then 1, 2 ... on retries.
    pub attempt: u32,
}

impl Item {
    pub fn new(path: PathBuf, rel: PathBuf) -> Item {
        Item {
            id: 0,
            path,
            rel,
            meta: Meta::default(),
            payload: Payload::Nothing,
            attempt: 0,
        }
    }

    /// The relative path with `/` separators, as globs and messages use it.
    pub fn rel_str(&self) -> String {
        self.rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }
}
