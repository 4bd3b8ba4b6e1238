//! `encode`: turn pixels into file bytes. JPEG goes through `jpeg-encoder`
//! (SIMD, much faster than the `image` crate's own encoder); PNG and lossless
//! WebP through `image`. Metadata is stripped unless asked to be kept.

use std::sync::Arc;

use image::{DynamicImage, ImageEncoder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, Meta, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Jpeg,
    Png,
    /// Lossless WebP.
    Webp,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
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
    /// The format to encode to: jpeg, png or webp.
    pub format: Format,
    /// JPEG quality, 1 (smallest) to 100 (best).
    #[schemars(range(min = 1, max = 100))]
    pub quality: u8,
    /// PNG compression effort.
    pub compression: Compression,
    /// Drop the source's EXIF and colour profile (off: JPEG and PNG keep
    /// them, with the EXIF orientation reset as the pixels are upright).
    pub strip_metadata: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            format: Format::Jpeg,
            quality: 85,
            compression: Compression::Fast,
            strip_metadata: true,
        }
    }
}

impl StageOptions for EncodeOptions {
    fn validate(&self) -> Vec<OptionError> {
        if !(1..=100).contains(&self.quality) {
            vec![OptionError::at(
                "quality",
                format!("`quality` must be between 1 and 100, not {}", self.quality),
            )]
        } else {
            Vec::new()
        }
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "encode",
        paths: crate::stage::no_paths,
        summary: "encode images as JPEG, PNG or lossless WebP",
        accepts: Types::of(&[PayloadType::Image]),
        output: Output::Fixed(PayloadType::Bytes),
        schema: || schemars::schema_for!(EncodeOptions),
        check: crate::stage::check_options::<EncodeOptions>,
        meaning: crate::stage::meaning::<EncodeOptions>,
        revision: 1,
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

/// Encode an image; `keep` is the metadata to carry over, if any.
pub fn encode_with(
    img: &DynamicImage,
    opts: &EncodeOptions,
    keep: Option<&Meta>,
) -> Result<Vec<u8>, StageError> {
    let mut out = Vec::new();
    let icc = keep.and_then(|m| m.icc.clone());
    let exif = keep.and_then(|m| m.exif.clone());
    match opts.format {
        Format::Jpeg => {
            use jpeg_encoder::{ColorType, Encoder};
            let (w, h) = (img.width(), img.height());
            let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
                return Err(StageError::new(format!(
                    "{w}x{h} is too large for JPEG (65535 at most)"
                )));
            };
            let rgb;
            let (data, color): (&[u8], ColorType) = match img {
                DynamicImage::ImageLuma8(b) => (b.as_raw(), ColorType::Luma),
                DynamicImage::ImageRgb8(b) => (b.as_raw(), ColorType::Rgb),
                DynamicImage::ImageRgba8(b) => (b.as_raw(), ColorType::Rgba),
                other => {
                    rgb = other.to_rgb8();
                    (rgb.as_raw(), ColorType::Rgb)
                }
            };
            let mut enc = Encoder::new(&mut out, opts.quality);
            let fail = |e: jpeg_encoder::EncodingError| {
                StageError::new(format!("JPEG encoding failed: {e}"))
            };
            if let Some(exif) = exif {
                let mut segment = b"Exif\0\0".to_vec();
                segment.extend_from_slice(&exif);
                // An EXIF block too large for one segment is dropped, not fatal.
                let _ = enc.add_app_segment(1, segment);
            }
            if let Some(icc) = icc {
                enc.add_icc_profile(&icc).map_err(fail)?;
            }
            enc.encode(data, w16, h16, color).map_err(fail)?;
        }
        Format::Png => {
            use image::codecs::png::{CompressionType, FilterType, PngEncoder};
            let level = match opts.compression {
                Compression::Fast => CompressionType::Fast,
                Compression::Default => CompressionType::Default,
                Compression::Best => CompressionType::Best,
            };
            let mut enc = PngEncoder::new_with_quality(&mut out, level, FilterType::Adaptive);
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc);
            }
            if let Some(exif) = exif {
                let _ = enc.set_exif_metadata(exif);
            }
            img.write_with_encoder(enc)
                .map_err(|e| StageError::new(format!("PNG encoding failed: {e}")))?;
        }
        Format::Webp => {
            let rgba;
            let img = match img {
                DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => img,
                other => {
                    rgba = DynamicImage::ImageRgba8(other.to_rgba8());
                    &rgba
                }
            };
            img.write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut out))
                .map_err(|e| StageError::new(format!("WebP encoding failed: {e}")))?;
        }
    }
    Ok(out)
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
        // A profile still on the item describes the pixels (`colour =
        // "keep"`): it goes with them even when metadata is stripped.
        let icc_only;
        let keep = if !self.opts.strip_metadata {
            Some(&item.meta)
        } else if item.meta.icc.is_some() {
            icc_only = Meta {
                icc: item.meta.icc.clone(),
                ..Meta::default()
            };
            Some(&icc_only)
        } else {
            None
        };
        let bytes = encode_with(&img, &self.opts, keep)?;
        drop(img);
        item.meta.format = Some(self.opts.format.name().to_string());
        item.payload = Payload::Bytes(bytes);
        Ok(Some(item))
    }
}
