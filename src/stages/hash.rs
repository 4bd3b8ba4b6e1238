//! `hash`: a content hash of each source file (SHA-256 or BLAKE3) into the
//! item's metadata, for deduplication, archive names and manifests.

use std::io::Read;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::filter::Size;
use crate::item::{Item, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    Sha256,
    Blake3,
}

/// Options of `hash`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HashOptions {
    /// sha256 or blake3 (faster).
    pub algorithm: Algorithm,
    /// Refuse files bigger than this (bytes, or e.g. "1GiB"; at most
    /// "1PiB"). The file is streamed, never held whole.
    #[schemars(default = "super::default_max_file_size")]
    pub max_file_size: Size,
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions {
            algorithm: Algorithm::default(),
            max_file_size: super::default_max_file_size(),
        }
    }
}

impl StageOptions for HashOptions {
    fn validate(&self) -> Vec<OptionError> {
        super::check_max_file_size(&self.max_file_size)
            .into_iter()
            .collect()
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "hash",
        paths: crate::stage::no_paths,
        summary: "hash each file's bytes (sha256 or blake3) into its metadata",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(HashOptions),
        check: crate::stage::check_options::<HashOptions>,
        meaning: crate::stage::meaning::<HashOptions>,
        revision: 1,
        build: |t, _ctx| {
            let o: HashOptions = crate::stage::parse_options(t)?;
            let limit = o.max_file_size.bytes()?;
            Ok(Built::Stage(Arc::new(Hash(o.algorithm, limit))))
        },
    }
}

/// The algorithm and `max_file_size` in bytes.
struct Hash(Algorithm, u64);

enum Hasher {
    Sha256(sha2::Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Blake3(h) => h.finalize().as_bytes().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Stage for Hash {
    fn plan(&self, item: Item) -> Result<Option<Item>, StageError> {
        // Reading to hash is not decoding; `{hash}` names need it.
        self.process(item)
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let mut hasher = match self.0 {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        };
        match &item.payload {
            Payload::Bytes(b) => hasher.update(b),
            // Streamed, so hashing a large file does not load it whole.
            _ => {
                // Bounded like the read, in case the file grows meanwhile.
                let mut f = super::open_bounded(&item.path, self.1)?.take(self.1 + 1);
                let mut total = 0u64;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|e| StageError::new(format!("cannot read file: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    if total > self.1 {
                        return Err(super::too_large(total, self.1));
                    }
                    hasher.update(&buf[..n]);
                }
            }
        }
        item.meta.hash = Some(hasher.hex());
        item.meta.hash_algorithm = Some(
            match self.0 {
                Algorithm::Sha256 => "sha256",
                Algorithm::Blake3 => "blake3",
            }
            .to_string(),
        );
        Ok(Some(item))
    }
}
