//! `read`: load each file's bytes into the item, for stages that work on
//! bytes (decode, hash, write as-is).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Built, KindSpec, Output, Stage, StageError, StageOptions};
use crate::item::{Item, Payload, PayloadType, Types};

/// Options of `read` (none yet).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {}

impl StageOptions for ReadOptions {}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "read",
        paths: super::no_paths,
        summary: "read each file's bytes",
        accepts: Types::of(&[PayloadType::Nothing]),
        output: Output::Fixed(PayloadType::Bytes),
        schema: || schemars::schema_for!(ReadOptions),
        check: super::check_options::<ReadOptions>,
        build: |_, _| Ok(Built::Stage(Arc::new(Read))),
    }
}

struct Read;

impl Stage for Read {
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let bytes = super::bytes_of(&mut item)?;
        item.payload = Payload::Bytes(bytes);
        Ok(Some(item))
    }
}
