//! Items: one input file travelling through the stage graph, with its
//! metadata and its payload (nothing, encoded bytes, or a decoded image).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::pixels::SharedImage;

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

/// Why an item fails whose shared pixels do not fill their size.
pub const PIXELS_SHORT: &str = "the decoded image's pixels do not fill its size";

/// What an item carries.
#[derive(Debug, Clone, Default)]
pub enum Payload {
    #[default]
    Nothing,
    Bytes(Vec<u8>),
    Image(DynamicImage),
    /// A decoded image still in the memory a worker process shared, on its
    /// way to other workers. Only the executor sees it, and in a worker a
    /// first stage that reads it there (`Stage::reads_shared`); other stages
    /// are given it as an `Image` ([`Payload::in_process`]).
    Shared(SharedImage),
}

impl Payload {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Nothing => PayloadType::Nothing,
            Payload::Bytes(_) => PayloadType::Bytes,
            Payload::Image(_) | Payload::Shared(_) => PayloadType::Image,
        }
    }

    /// The payload with any shared pixels copied into this process, as
    /// stages take them; `None` if shared pixels do not fill their size
    /// (the item then fails with [`PIXELS_SHORT`]).
    pub fn in_process(self) -> Option<Payload> {
        match self {
            Payload::Shared(shared) => shared.to_image().map(Payload::Image),
            other => Some(other),
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
    /// Width and height of the source image as first decoded, kept when
    /// later stages resize the payload (a manifest describes the source).
    #[serde(default)]
    pub source_width: Option<u32>,
    #[serde(default)]
    pub source_height: Option<u32>,
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
    /// The source's XMP packet, as read; `encode` decides what to embed.
    #[serde(with = "serde_bytes", default)]
    pub xmp: Option<Vec<u8>>,
    /// Files written for this item so far (their names as bytes).
    #[serde(with = "path_bytes::list")]
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

    /// The relative path with `/` separators, as globs match it. Bytes that
    /// are not UTF-8 become U+FFFD here, so never build a file name from it
    /// (use `rel`) nor show it (use [`escape_path`]).
    pub fn rel_str(&self) -> String {
        self.rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// How conveyor shows a name that may not be UTF-8 (in the summary, the
/// `--report` lines, logs and journals). Unix names are bytes; this is the
/// one escaping used everywhere, and it can be undone ([`unescape`]):
///
/// - valid UTF-8 is kept as it is, except as follows;
/// - each byte that is not part of valid UTF-8, and each control byte
///   (below 0x20, and 0x7f), is written `\xHH` (two lowercase hex digits),
///   so a name can't garble a terminal;
/// - a backslash is written `\\`, so `\xff` in a name can't be taken for
///   the byte 0xff.
///
/// So `x\xff.png` is the three bytes `x`, 0xff, `.png`'s four, and names that
/// differ in any byte are shown differently.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`escape_bytes`] of a path's bytes.
pub fn escape_path(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_bytes())
}

/// The bytes that [`escape_bytes`] wrote `text` for. A backslash that does
/// not start a known escape is kept as it is, so text that never went
/// through `escape_bytes` (an old journal's plain names) comes back unchanged.
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'x')
                && let Some(hex) = text.get(i + 2..i + 4)
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The path whose [`escape_path`] is `text`.
pub fn unescape_path(text: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(text)))
}

/// Serde helpers that carry paths as their raw bytes (serde's own `PathBuf`
/// support refuses names that are not UTF-8). For the worker protocol.
pub mod path_bytes {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(path.as_os_str().as_bytes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        Ok(PathBuf::from(OsString::from_vec(bytes.into_vec())))
    }

    /// The same for an optional path.
    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
            path.as_deref()
                .map(|p| serde_bytes::Bytes::new(p.as_os_str().as_bytes()))
                .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
            let raw = Option::<serde_bytes::ByteBuf>::deserialize(d)?;
            Ok(raw.map(|b| PathBuf::from(OsString::from_vec(b.into_vec()))))
        }
    }

    /// The same for a list of paths.
    pub mod list {
        use super::*;

        pub fn serialize<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
            let raw: Vec<&serde_bytes::Bytes> = paths
                .iter()
                .map(|p| serde_bytes::Bytes::new(p.as_os_str().as_bytes()))
                .collect();
            raw.serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
            let raw = Vec::<serde_bytes::ByteBuf>::deserialize(d)?;
            Ok(raw
                .into_iter()
                .map(|b| PathBuf::from(OsString::from_vec(b.into_vec())))
                .collect())
        }
    }
}

/// Serde helpers that write paths in their escaped form ([`escape_path`]),
/// for JSON that people and other tools read (the `--report` lines).
pub mod path_escaped {
    use super::*;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&escape_path(path))
    }

    /// The same for a list of paths.
    pub fn list<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| escape_path(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_readable_and_reversible() {
        let cases: [(&[u8], &str); 6] = [
            (b"photos/a.jpg", "photos/a.jpg"),
            (b"x\xff.png", "x\\xff.png"),
            (b"x\xfe.png", "x\\xfe.png"),
            ("caf\u{e9}.jpg".as_bytes(), "caf\u{e9}.jpg"),
            (b"a\\xff\n.jpg", "a\\\\xff\\x0a.jpg"),
            (b"\xe9t\xe9", "\\xe9t\\xe9"),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape_bytes(raw), shown);
            assert_eq!(unescape(shown), raw);
        }
        // Text that never was escaped comes back as it is.
        assert_eq!(unescape("a\\b\\x"), b"a\\b\\x");
    }
}
