//! Embedding conveyor with a stage kind of your own: `invert` turns every
//! pixel to its negative. The kind is registered once and works in every
//! mode, processes included, because `main_with` also serves as the worker
//! when conveyor starts this same program as one.
//!
//!     cargo run --example embed -- run my-pipeline.toml --mode invert=processes

use std::sync::Arc;

use conveyor::item::{Item, Payload, PayloadType, Types};
use conveyor::stage::{Built, KindSpec, Output, Stage, StageError, StageOptions};
use conveyor::stages::Registry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Options of `invert` (none).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
struct InvertOptions {}

impl StageOptions for InvertOptions {}

struct Invert;

impl Stage for Invert {
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let Payload::Image(mut img) = std::mem::take(&mut item.payload) else {
            return Err(StageError::new("expected a decoded image"));
        };
        img.invert();
        item.payload = Payload::Image(img);
        Ok(Some(item))
    }
}

fn main() -> std::process::ExitCode {
    let mut registry = Registry::builtin();
    registry.register(KindSpec {
        name: "invert",
        paths: conveyor::stage::no_paths,
        summary: "negative of each image",
        accepts: Types::of(&[PayloadType::Image]),
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(InvertOptions),
        check: conveyor::stage::check_options::<InvertOptions>,
        meaning: conveyor::stage::meaning::<InvertOptions>,
        revision: 1,
        build: |_, _| Ok(Built::Stage(Arc::new(Invert))),
    });
    std::process::ExitCode::from(conveyor::cli::main_with(registry) as u8)
}
