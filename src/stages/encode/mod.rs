//! `encode`: turn pixels into file bytes, as JPEG, PNG, WebP or AVIF, with
//! the metadata `keep` asks for. One file per format; `metadata.rs` decides
//! what is embedded and `exif.rs` cleans a kept EXIF block.

mod avif;
mod baseline;
mod exif;
mod jpeg;
#[cfg(feature = "nasm")]
mod libjpeg;
mod metadata;
mod png;
mod webp;
mod ycbcr;

use std::sync::Arc;

use image::DynamicImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use metadata::{Embed, Keep};

use crate::item::{Item, Meta, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Jpeg,
    /// 8 or 16 bits per channel, as the pixels have them.
    Png,
    /// Lossy WebP (`quality`), or lossless with `lossless = true`.
    Webp,
    /// AVIF (`quality`, `speed`).
    Avif,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
        }
    }
}

/// File extension conventionally used for a format name.
pub fn extension_for(format: &str) -> &str {
    match format {
        "jpeg" => "jpg",
        other => other,
    }
}

/// PNG compression effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Quick, somewhat larger files.
    #[default]
    Fast,
    Default,
    /// Slowest, smallest files.
    Best,
}

/// Options of `encode`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeOptions {
    /// The format to encode to: jpeg, png, webp or avif.
    pub format: Format,
    /// Quality of JPEG, lossy WebP and AVIF, 1 (smallest) to 100 (best).
    #[schemars(range(min = 1, max = 100))]
    pub quality: u8,
    /// PNG compression effort.
    pub compression: Compression,
    /// JPEG only: progressive (the image sharpens as it loads).
    pub progressive: bool,
    /// JPEG only: Huffman tables optimised for the image (smaller, slower).
    pub optimize: bool,
    /// WebP only: lossless instead of lossy.
    pub lossless: bool,
    /// AVIF only: encoder speed, 1 (slowest, smallest) to 10 (fastest).
    #[schemars(range(min = 1, max = 10))]
    pub speed: u8,
    /// Metadata to carry from the source: any of "exif" (orientation reset
    /// to 1), "xmp", "icc" and "gps" (the position in the EXIF, dropped
    /// unless listed). The colour profile the pixels need is always kept.
    pub keep: Vec<Keep>,
    /// Removed: write `keep = []` (was `true`) or `keep = ["exif", "icc"]`
    /// (was `false`). Still known here so that `check` can say so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_metadata: Option<bool>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            format: Format::Jpeg,
            quality: 85,
            compression: Compression::Fast,
            progressive: false,
            optimize: false,
            lossless: false,
            speed: 6,
            keep: Vec::new(),
            strip_metadata: None,
        }
    }
}

impl StageOptions for EncodeOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if !(1..=100).contains(&self.quality) {
            errors.push(OptionError::at(
                "quality",
                format!("`quality` must be between 1 and 100, not {}", self.quality),
            ));
        }
        if self.keep.contains(&Keep::Gps) && !self.keep.contains(&Keep::Exif) {
            errors.push(
                OptionError::at(
                    "keep",
                    "\"gps\" keeps the position inside the EXIF, which is not kept",
                )
                .help("write keep = [\"exif\", \"gps\"], or leave \"gps\" out"),
            );
        }
        errors
    }
}

/// Options that mean something for some formats only, and those formats.
/// `lossless` is allowed with PNG: every PNG is lossless, so the promise
/// holds (and a pipeline can switch between the two with one `--set`).
const FORMAT_ONLY: [(&str, &[Format]); 4] = [
    ("progressive", &[Format::Jpeg]),
    ("optimize", &[Format::Jpeg]),
    ("lossless", &[Format::Webp, Format::Png]),
    ("speed", &[Format::Avif]),
];

/// The shared checks, plus the ones about keys: the removed
/// `strip_metadata`, and an option set for a format other than the one
/// chosen (an error, not a warning: a promise such as `progressive = true`
/// that the format can't keep would otherwise go unseen). An option left
/// at its default value says nothing and passes.
fn check(table: &toml::Table) -> Vec<OptionError> {
    let mut rest = table.clone();
    let mut errors = Vec::new();
    if let Some(v) = rest.remove("strip_metadata") {
        let instead = if v.as_bool() == Some(false) {
            "keep = [\"exif\", \"icc\"]"
        } else {
            "keep = []"
        };
        errors.push(
            OptionError::at(
                "strip_metadata",
                "`strip_metadata` was replaced by `keep`, the list of metadata to carry over",
            )
            .help(format!(
                "write `{instead}` instead (the default keeps none)"
            )),
        );
    }
    errors.extend(crate::stage::check_options::<EncodeOptions>(&rest));
    if let Ok(opts) = crate::stage::parse_options::<EncodeOptions>(&rest) {
        errors.extend(format_mismatches(&opts, &rest));
    }
    errors
}

fn format_mismatches(opts: &EncodeOptions, table: &toml::Table) -> Vec<OptionError> {
    let defaults = EncodeOptions::default();
    let set = |key: &str| match key {
        "progressive" => opts.progressive != defaults.progressive,
        "optimize" => opts.optimize != defaults.optimize,
        "lossless" => opts.lossless != defaults.lossless,
        _ => opts.speed != defaults.speed,
    };
    FORMAT_ONLY
        .iter()
        .filter(|(key, only)| table.contains_key(*key) && set(key) && !only.contains(&opts.format))
        .map(|(key, only)| {
            OptionError::at(
                key,
                format!(
                    "`{key}` applies to {} only, and this stage writes {}",
                    only[0].name(),
                    opts.format.name()
                ),
            )
            .help(format!(
                "remove `{key}`, or set format = \"{}\"",
                only[0].name()
            ))
        })
        .collect()
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "encode",
        paths: crate::stage::no_paths,
        summary: "encode images as JPEG, PNG, WebP or AVIF, keeping the metadata asked for",
        accepts: Types::of(&[PayloadType::Image]),
        output: Output::Fixed(PayloadType::Bytes),
        schema: || schemars::schema_for!(EncodeOptions),
        check,
        meaning: crate::stage::meaning::<EncodeOptions>,
        revision: 2,
        build: |t, _ctx| {
            Ok(Built::Stage(Arc::new(Encode {
                opts: crate::stage::parse_options(t)?,
            })))
        },
    }
}

struct Encode {
    opts: EncodeOptions,
}

/// Encode an image in `format` with default settings and no metadata.
pub fn encode_image(
    img: &DynamicImage,
    format: Format,
    quality: u8,
) -> Result<Vec<u8>, StageError> {
    let opts = EncodeOptions {
        format,
        quality,
        ..EncodeOptions::default()
    };
    encode_with(img, &opts, None)
}

/// Encode an image; `meta` is the item's, from which `opts.keep` chooses
/// what to embed (with no `meta`, nothing is).
pub fn encode_with(
    img: &DynamicImage,
    opts: &EncodeOptions,
    meta: Option<&Meta>,
) -> Result<Vec<u8>, StageError> {
    let embed = meta
        .map(|m| metadata::select(m, &opts.keep))
        .unwrap_or_default();
    match opts.format {
        Format::Jpeg => jpeg::encode(img, opts, &embed),
        Format::Png => png::encode(img, opts, &embed),
        Format::Webp => webp::encode(img, opts, &embed),
        Format::Avif => avif::encode(img, opts, &embed),
    }
}

impl Stage for Encode {
    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        item.meta.format = Some(self.opts.format.name().to_string());
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let Payload::Image(img) = std::mem::take(&mut item.payload) else {
            return Err(StageError::new("expected a decoded image"));
        };
        let bytes = encode_with(&img, &self.opts, Some(&item.meta))?;
        drop(img);
        item.meta.format = Some(self.opts.format.name().to_string());
        item.payload = Payload::Bytes(bytes);
        Ok(Some(item))
    }
}
