//! `thumbnail`: decode and resize in one step. A JPEG is decoded by libjpeg
//! (the mozjpeg crate, built from C) at the smallest IDCT scale (1/8 to 7/8)
//! that still gives at least twice the target size, then resized properly, so a 256 px thumbnail of a 20 MP
//! photo never decodes all 20 MP. A progressive JPEG (unless at 1/8) is
//! decoded at full size by conveyor's own decoder (`progressive`), which is
//! faster than libjpeg at any scale. Other formats are decoded in full.

use std::sync::Arc;

use image::DynamicImage;
use image::metadata::Orientation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::colour::ColourMode;
use super::decode::{
    DecodeOptions, Decoded, decode_bytes, jpeg_is_truncated, normalise, normalise_format_name,
};
use super::filter::Size;
use super::resize::{Filter, Fit, ResizeOpts, resize_image, target_size};
use crate::item::{Item, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Options of `thumbnail`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ThumbnailOptions {
    /// Target width in pixels, 1 to 100000; leave out to follow the height.
    #[schemars(range(min = 1, max = super::MAX_SIDE))]
    pub width: Option<u32>,
    /// Target height in pixels, 1 to 100000; leave out to follow the width.
    #[schemars(range(min = 1, max = super::MAX_SIDE))]
    pub height: Option<u32>,
    /// How the image meets the box: contain, cover or fill (as `resize`).
    pub fit: Fit,
    /// The resampling filter after shrink-on-load (as `resize`).
    pub filter: Filter,
    /// Enlarge images smaller than the box (then the box may hold at most
    /// 100000000 pixels).
    pub upscale: bool,
    /// Rotate and flip as the EXIF orientation says.
    pub auto_orient: bool,
    /// Refuse images with more pixels than this, 1 to 1000000000 (default
    /// 100000000).
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub max_pixels: u64,
    /// Decode JPEGs at a reduced scale when that still gives twice the target
    /// size (off: always decode in full, like `decode` + `resize`).
    pub shrink_on_load: bool,
    /// Refuse files bigger than this (bytes, or e.g. "1GiB"; at most
    /// "1PiB"), before reading them; a file whose first bytes are not
    /// those of an image is refused before it is read whole.
    #[schemars(default = "super::default_max_file_size")]
    pub max_file_size: Size,
    /// "srgb": convert pixels from their embedded ICC profile to sRGB (after
    /// the resize, where it costs least; none needed for sRGB sources);
    /// "keep": leave them, the profile travels with the item.
    pub colour: ColourMode,
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
            max_file_size: super::default_max_file_size(),
            colour: ColourMode::Srgb,
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
            max_file_size: self.max_file_size.clone(),
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
        paths: crate::stage::no_paths,
        summary: "decode + resize in one step, decoding JPEGs at a reduced scale (shrink-on-load)",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(ThumbnailOptions),
        check: crate::stage::check_options::<ThumbnailOptions>,
        meaning: crate::stage::meaning::<ThumbnailOptions>,
        revision: 2,
        build: |t, _ctx| {
            Ok(Built::Stage(Arc::new(Thumbnail(
                crate::stage::parse_options(t)?,
            ))))
        },
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

/// Why a reduced decode gave no image.
#[derive(Debug)]
enum LibjpegError {
    /// An error libjpeg reported (its own words), or a size it could not give.
    Failed(String),
    /// A limit the header alone decides, worded as the dry run words it.
    Refused(String),
}

impl From<std::io::Error> for LibjpegError {
    fn from(e: std::io::Error) -> Self {
        LibjpegError::Failed(e.to_string())
    }
}

impl From<String> for LibjpegError {
    fn from(e: String) -> Self {
        LibjpegError::Failed(e)
    }
}

impl Thumbnail {
    /// Shrink-on-load decode of a JPEG with libjpeg's scaled IDCT (a
    /// progressive one by `progressive`, at full size), with the full-size
    /// dimensions (after orientation); `None` for what it leaves to the
    /// general decoder (CMYK; without the `nasm` feature, a file that can't
    /// be reduced; with it, one libjpeg refuses at full size for any reason
    /// but damaged data).
    fn decode_jpeg_scaled(&self, bytes: &[u8]) -> Result<Option<Scaled>, StageError> {
        match super::libjpeg::guarded(|| self.scaled_with_libjpeg(bytes)) {
            Ok(result) => result.map_err(|e| match e {
                LibjpegError::Failed(why) => StageError::new(format!("cannot decode jpg: {why}")),
                LibjpegError::Refused(why) => StageError::new(why),
            }),
            Err(msg) => Err(StageError::new(format!("cannot decode jpg: {msg}"))),
        }
    }

    fn scaled_with_libjpeg(&self, bytes: &[u8]) -> Result<Option<Scaled>, LibjpegError> {
        use mozjpeg::{Decompress, Marker};
        if let Some(why) = super::libjpeg::too_many_scans(bytes) {
            return Err(LibjpegError::Failed(why));
        }
        let dec = Decompress::builder()
            .with_markers(&[Marker::APP(1), Marker::APP(2)])
            .with_err(super::libjpeg::damage_errors())
            .from_mem(bytes)
            .map_err(|e| e.to_string())?;
        let (w, h) = (
            u32::try_from(dec.width()).unwrap_or(u32::MAX),
            u32::try_from(dec.height()).unwrap_or(u32::MAX),
        );
        let pixels = u64::from(w) * u64::from(h);
        if pixels > self.0.max_pixels {
            return Err(LibjpegError::Refused(format!(
                "image is {w}x{h} ({pixels} pixels), over the limit of {} pixels (thumbnail.max_pixels)",
                self.0.max_pixels
            )));
        }
        let Some(grey) = super::libjpeg::grey(&dec) else {
            return Ok(None);
        };
        let (mut exif, icc, xmp) = super::libjpeg::jpeg_metadata(&dec);
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
        if let Some(why) = super::output_too_big(u64::from(tw), u64::from(th), 4) {
            return Err(LibjpegError::Refused(why));
        }
        let (rw, rh) = if swapped {
            (th.saturating_mul(2), tw.saturating_mul(2))
        } else {
            (tw.saturating_mul(2), th.saturating_mul(2))
        };
        let eighths = scale_eighths(w, h, rw, rh);
        // A progressive file goes to conveyor's own decoder, at the same
        // scale: faster than libjpeg at any scale (`progressive`), except
        // at 1/8, where libjpeg skips the AC scans below. Should it decline
        // the file, libjpeg decodes it as before.
        let own = (eighths != Some(1))
            .then(|| super::progressive::colour_of(bytes))
            .flatten()
            .filter(|&c| (c == super::progressive::Colour::Grey) == grey)
            .and_then(|c| super::progressive::decode(bytes, c, eighths.unwrap_or(8)));
        let mut img = match own {
            Some(img) => img,
            None => match by_libjpeg(bytes, dec, eighths, grey)? {
                Some(img) => img,
                None => return Ok(None),
            },
        };
        if let Some(o) = orientation {
            img.apply_orientation(o);
        }
        let decoded = Decoded {
            image: img,
            format: "jpg",
            icc,
            exif,
            xmp,
        };
        Ok(Some((decoded, (ow, oh))))
    }
}

/// libjpeg's decode of `bytes` (its header read into `dec`) at `eighths`/8
/// (`None`: only full size would do); `None` for what it leaves to the
/// general decoder (without the `nasm` feature, a file that can't be
/// reduced; with it, a file libjpeg refuses at full size for any reason
/// but damaged data).
fn by_libjpeg<R: std::io::BufRead>(
    bytes: &[u8],
    dec: mozjpeg::Decompress<R>,
    eighths: Option<u8>,
    grey: bool,
) -> Result<Option<DynamicImage>, LibjpegError> {
    use mozjpeg::Decompress;
    let eighths = match eighths {
        Some(n) => n,
        // No reduction possible. libjpeg-turbo with its SIMD decodes at
        // full size a quarter faster than zune-jpeg; without SIMD,
        // zune-jpeg is the faster (libjpeg here made the 1600 px task a
        // tenth slower), and `decode`'s way, zune-jpeg's strict mode then
        // libjpeg, serves.
        None if cfg!(feature = "nasm") => 8,
        None => return Ok(None),
    };
    // At 1/8 a progressive file's AC scans of its full-resolution
    // components are never used (`jpeg_scans`): decode without them.
    // Should that copy fail, the file is decoded as it is.
    let without_ac = (eighths == 1)
        .then(|| super::jpeg_scans::for_eighth_scale(bytes))
        .flatten()
        .and_then(|small| {
            super::libjpeg::guarded(|| {
                let mut dec = Decompress::builder()
                    .with_err(super::libjpeg::damage_errors())
                    .from_mem(&small)
                    .map_err(|e| e.to_string())?;
                // Smoothing guesses the missing AC coefficients from
                // neighbouring blocks: work for pixels that ignore them.
                dec.do_block_smoothing(false);
                super::libjpeg::read_image(dec, eighths, grey)
            })
            .ok()?
            .ok()
        });
    Ok(Some(match without_ac {
        Some(img) => img,
        None if eighths == 8 => {
            match super::libjpeg::guarded(|| super::libjpeg::read_image(dec, eighths, grey)) {
                Ok(Ok(img)) => img,
                // Damaged data is the file's: its reason stands.
                Ok(Err(why)) | Err(why) if super::libjpeg::is_damage(&why) => {
                    return Err(LibjpegError::Failed(why));
                }
                // Anything else libjpeg refuses at full size goes to the
                // general decoder, as it always did.
                _ => return Ok(None),
            }
        }
        None => super::libjpeg::read_image(dec, eighths, grey)?,
    }))
}

/// The smallest libjpeg scale, in eighths (1..=7), whose output is at least
/// `rw` x `rh`; `None` when only full size (8/8) is.
fn scale_eighths(w: u32, h: u32, rw: u32, rh: u32) -> Option<u8> {
    // libjpeg rounds scaled sizes up.
    let at = |n: u32, v: u32| (u64::from(v) * u64::from(n)).div_ceil(8);
    (1..8u8).find(|&n| at(u32::from(n), w) >= u64::from(rw) && at(u32::from(n), h) >= u64::from(rh))
}

impl Stage for Thumbnail {
    fn plan(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::decode::check_header(&item, &self.0.decode(), "thumbnail")?;
        Ok(Some(item))
    }

    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let bytes = super::image_bytes_of(&mut item, self.0.decode().file_limit())?;
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
        let depth = u64::from(img.color().bytes_per_pixel());
        if let Some(why) = super::output_too_big(u64::from(tw), u64::from(th), depth) {
            return Err(StageError::new(why));
        }
        let mut out = if (tw, th) == (img.width(), img.height()) {
            img
        } else {
            resize_image(&img, tw, th, crop, self.0.filter)?
        };
        item.meta.width = Some(out.width());
        item.meta.height = Some(out.height());
        item.meta.source_width.get_or_insert(full.0);
        item.meta.source_height.get_or_insert(full.1);
        item.meta.source_format = Some(normalise_format_name(d.format).to_string());
        // Converting the thumbnail rather than the source: the same colours
        // (within rounding) for a fraction of the pixels.
        item.meta.icc = super::colour::apply_for(&mut out, d.icc, self.0.colour, &item.path);
        item.meta.exif = d.exif;
        item.meta.xmp = d.xmp;
        item.payload = Payload::Image(out);
        Ok(Some(item))
    }
}
