//! `read`: load each file's bytes into the item, for stages that work on
//! bytes (decode, hash, write as-is).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::filter::Size;
use crate::item::{Item, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Options of `read`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    /// Refuse files bigger than this (bytes, or e.g. "1GiB"; at most
    /// "1PiB"), before reading them.
    #[schemars(default = "super::default_max_file_size")]
    pub max_file_size: Size,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_file_size: super::default_max_file_size(),
        }
    }
}

impl StageOptions for ReadOptions {
    fn validate(&self) -> Vec<OptionError> {
        super::check_max_file_size(&self.max_file_size)
            .into_iter()
            .collect()
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "read",
        paths: crate::stage::no_paths,
        summary: "read each file's bytes",
        accepts: Types::of(&[PayloadType::Nothing]),
        output: Output::Fixed(PayloadType::Bytes),
        schema: || schemars::schema_for!(ReadOptions),
        check: crate::stage::check_options::<ReadOptions>,
        meaning: crate::stage::meaning::<ReadOptions>,
        revision: 1,
        build: |t, _| {
            let o: ReadOptions = crate::stage::parse_options(t)?;
            let limit = o.max_file_size.bytes()?;
            Ok(Built::Stage(Arc::new(Read(limit))))
        },
    }
}

/// `max_file_size` in bytes.
struct Read(u64);

impl Stage for Read {
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let bytes = super::bytes_of(&mut item, self.0)?;
        item.payload = Payload::Bytes(bytes);
        Ok(Some(item))
    }
}
