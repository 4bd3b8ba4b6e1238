//! `thumbnail`: decode and resize in one step. A JPEG is decoded at the
//! smallest IDCT scale (1/2, 1/4, 1/8) that still gives at least twice the
//! target size, then resized properly, so a 256 px thumbnail of a 20 MP
//! photo never decodes all 20 MP. Other formats are decoded in full.

use std::io::Cursor;
use std::sync::Arc;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::decode::{
    DecodeOptions, Decoded, decode_bytes, jpeg_is_truncated, normalise, normalise_format_name,
};
use super::resize::{Filter, Fit, ResizeOpts, resize_image, target_size};
use super::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::item::{Item, Payload, PayloadType, Types};

/// Options of `thumbnail`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ThumbnailOptions {
    /// Target width in pixels; leave out to follow the height.
    pub width: Option<u32>,
    /// Target height in pixels; leave out to follow the width.
    pub height: Option<u32>,
    pub fit: Fit,
    pub filter: Filter,
    /// Enlarge images smaller than the box.
    pub upscale: bool,
    /// Rotate and flip as the EXIF orientation says.
    pub auto_orient: bool,
    /// Refuse images with more pixels than this.
    pub max_pixels: u64,
    /// Decode JPEGs at a reduced scale when that still gives twice the target
    /// size (off: always decode in full, like `decode` + `resize`).
    pub shrink_on_load: bool,
}

impl Default for ThumbnailOptions {
    fn default() -> Self {
        ThumbnailOptions {
            width: None,
            height: None,
            fit: Fit::Contain,
            filter: Filter::Lanczos3,
            upscale: false,
            auto_orient: true,
            max_pixels: DecodeOptions::default().max_pixels,
            shrink_on_load: true,
        }
    }
}

impl ThumbnailOptions {
    fn resize(&self) -> ResizeOpts {
        ResizeOpts {
            width: self.width,
            height: self.height,
            fit: self.fit,
            filter: self.filter,
            upscale: self.upscale,
        }
    }

    fn decode(&self) -> DecodeOptions {
        DecodeOptions {
            auto_orient: self.auto_orient,
            max_pixels: self.max_pixels,
            ..DecodeOptions::default()
        }
    }
}

impl StageOptions for ThumbnailOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = self.resize().validate();
        errors.extend(self.decode().validate());
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "thumbnail",
        summary: "decode + resize in one step, decoding JPEGs at a reduced scale (shrink-on-load)",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(ThumbnailOptions),
        check: super::check_options::<ThumbnailOptions>,
        build: |t, _ctx| Ok(Built::Stage(Arc::new(Thumbnail(super::parse_options(t)?)))),
    }
}

struct Thumbnail(ThumbnailOptions);

/// A reduced-scale decode and the full size (after orientation) it came from.
type Scaled = (Decoded, (u32, u32));

/// Whether an EXIF orientation swaps width and height.
fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

impl Thumbnail {
    /// Shrink-on-load decode of a JPEG, with the full-size dimensions (after
    /// orientation); `None` for layouts it leaves to the general decoder
    /// (CMYK, 16-bit).
    fn decode_jpeg_scaled(&self, bytes: &[u8]) -> Result<Option<Scaled>, StageError> {
        let mut dec = jpeg_decoder::Decoder::new(Cursor::new(bytes));
        dec.read_info()
            .map_err(|e| StageError(format!("cannot decode jpg: {e}")))?;
        let Some(info) = dec.info() else {
            return Ok(None);
        };
        let (w, h) = (u32::from(info.width), u32::from(info.height));
        let pixels = u64::from(w) * u64::from(h);
        if pixels > self.0.max_pixels {
            return Err(StageError(format!(
                "image is {w}x{h} ({pixels} pixels), over the limit of {} pixels (thumbnail.max_pixels)",
                self.0.max_pixels
            )));
        }
        let mut exif = dec.exif_data().map(<[u8]>::to_vec);
        let icc = dec.icc_profile();
        let orientation = if self.0.auto_orient {
            exif.as_mut()
                .and_then(|e| Orientation::remove_from_exif_chunk(e))
        } else {
            None
        };
        let swapped = orientation.is_some_and(swaps_axes);
        let (ow, oh) = if swapped { (h, w) } else { (w, h) };
        let (tw, th, _) = target_size(&self.0.resize(), ow, oh);
        // At least twice the target in the stored orientation, so the final
        // Lanczos pass still has detail to work with.
        let (rw, rh) = if swapped {
            (2 * th, 2 * tw)
        } else {
            (2 * tw, 2 * th)
        };
        // No reduction possible: the general decoder is faster at full size.
        if w.div_ceil(2) < rw || h.div_ceil(2) < rh {
            return Ok(None);
        }
        let clamp16 = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        dec.scale(clamp16(rw), clamp16(rh))
            .map_err(|e| StageError(format!("cannot decode jpg: {e}")))?;
        let data = dec
            .decode()
            .map_err(|e| StageError(format!("cannot decode jpg: {e}")))?;
        let Some(info) = dec.info() else {
            return Ok(None);
        };
        let (sw, sh) = (u32::from(info.width), u32::from(info.height));
        let img = match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 => {
                GrayImage::from_raw(sw, sh, data).map(DynamicImage::ImageLuma8)
            }
            jpeg_decoder::PixelFormat::RGB24 => {
                RgbImage::from_raw(sw, sh, data).map(DynamicImage::ImageRgb8)
            }
            _ => return Ok(None),
        };
        let Some(mut img) = img else {
            return Err(StageError::new(
                "cannot decode jpg: pixel data does not match its size",
            ));
        };
        if let Some(o) = orientation {
            img.apply_orientation(o);
        }
        let decoded = Decoded {
            image: img,
            format: "jpg",
            icc,
            exif,
        };
        Ok(Some((decoded, (ow, oh))))
    }
}

impl Stage for Thumbnail {
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let bytes = super::bytes_of(&mut item)?;
        if bytes.is_empty() {
            return Err(StageError::new("empty file"));
        }
        let is_jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
        if is_jpeg && jpeg_is_truncated(&bytes) {
            return Err(StageError::new(
                "truncated JPEG: the data ends before the image does",
            ));
        }
        let scaled = if is_jpeg && self.0.shrink_on_load {
            self.decode_jpeg_scaled(&bytes)?
        } else {
            None
        };
        let (d, full) = match scaled {
            Some(scaled) => scaled,
            None => {
                let d = decode_bytes(&bytes, &self.0.decode())?;
                let full = (d.image.width(), d.image.height());
                (d, full)
            }
        };
        drop(bytes);
        let img = normalise(d.image);
        // The size comes from the full image, as `decode` + `resize` would
        // give it; the reduced decode only changes where the pixels come from.
        let (tw, th, crop) = target_size(&self.0.resize(), full.0, full.1);
        let out = if (tw, th) == (img.width(), img.height()) {
            img
        } else {
            resize_image(&img, tw, th, crop, self.0.filter)?
        };
        item.meta.width = Some(out.width());
        item.meta.height = Some(out.height());
        item.meta.source_format = Some(normalise_format_name(d.format).to_string());
        item.meta.icc = d.icc;
        item.meta.exif = d.exif;
        item.payload = Payload::Image(out);
        Ok(Some(item))
    }
}
