//! `watermark`: blend a PNG over each image, scaled to its width, at a
//! corner or edge.

use std::sync::Arc;

use image::{DynamicImage, RgbaImage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::crop::Gravity;
use crate::item::{Item, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Options of `watermark`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkOptions {
    /// The PNG (with alpha) to lay over each image.
    pub image: String,
    /// Where it goes (`smart` means `center` here).
    pub gravity: Gravity,
    /// Distance from the edges it leans on, in pixels, 0 to 100000.
    #[schemars(range(min = 0, max = super::MAX_SIDE))]
    pub margin: u32,
    /// 0 (invisible) to 1 (as opaque as the PNG).
    #[schemars(range(min = 0, max = 1))]
    pub opacity: f32,
    /// Its width as a fraction of the image's width, more than 0, at most 1
    /// (so the watermark is never bigger than the image).
    #[schemars(range(min = 0, max = 1))]
    pub scale: f32,
}

impl Default for WatermarkOptions {
    fn default() -> Self {
        WatermarkOptions {
            image: String::new(),
            gravity: Gravity::Southeast,
            margin: 16,
            opacity: 0.5,
            scale: 0.2,
        }
    }
}

impl StageOptions for WatermarkOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.image.is_empty() {
            errors.push(OptionError::stage(
                "`watermark` needs `image`, the PNG to lay over",
            ));
        }
        if !(0.0..=1.0).contains(&self.opacity) {
            errors.push(OptionError::at(
                "opacity",
                format!("`opacity` must be between 0 and 1, not {}", self.opacity),
            ));
        }
        if !(self.scale > 0.0 && self.scale <= 1.0) {
            errors.push(OptionError::at(
                "scale",
                format!(
                    "`scale` must be more than 0 and at most 1, not {}",
                    self.scale
                ),
            ));
        }
        errors
    }
}

/// A watermark needs its image before anything runs.
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    match crate::stage::parse_options::<WatermarkOptions>(t) {
        Ok(o) if !o.image.is_empty() => crate::stage::StagePaths::Needs {
            key: "image",
            file: o.image.into(),
        },
        _ => crate::stage::StagePaths::None,
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "watermark",
        paths,
        summary: "blend a PNG over each image at a gravity, scaled to its width",
        accepts: Types::of(&[PayloadType::Image]),
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(WatermarkOptions),
        check: crate::stage::check_options::<WatermarkOptions>,
        meaning: crate::stage::meaning::<WatermarkOptions>,
        revision: 1,
        build: |t, _ctx| {
            let opts: WatermarkOptions = crate::stage::parse_options(t)?;
            // Read once, when the run starts: a missing file stops the run
            // before any work instead of failing every item.
            // Read with the limits `decode` has by default, so a huge or
            // bogus watermark file can't exhaust memory either.
            let path = std::path::PathBuf::from(&opts.image);
            let mut file = Item::new(path.clone(), path);
            let mark = super::image_bytes_of(&mut file, super::DEFAULT_MAX_FILE_SIZE)
                .and_then(|b| super::decode::decode_bytes(&b, &Default::default()))
                .map_err(|e| format!("cannot read watermark image {}: {e}", opts.image))?
                .image
                .to_rgba8();
            Ok(Built::Stage(Arc::new(Watermark { opts, mark })))
        },
    }
}

struct Watermark {
    opts: WatermarkOptions,
    mark: RgbaImage,
}

impl Stage for Watermark {
    fn depends_on(&self) -> Vec<std::path::PathBuf> {
        vec![std::path::PathBuf::from(&self.opts.image)]
    }

    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |img| {
            let (iw, ih) = (img.width(), img.height());
            let mw = ((iw as f32 * self.opts.scale).round() as u32).clamp(1, iw);
            let mh =
                ((f64::from(self.mark.height()) * f64::from(mw) / f64::from(self.mark.width()))
                    .round() as u32)
                    .clamp(1, ih);
            let mark = DynamicImage::ImageRgba8(self.mark.clone());
            let mark =
                super::resize::resize_image(&mark, mw, mh, false, super::resize::Filter::Lanczos3)?
                    .to_rgba8();
            let (x0, y0) = self.opts.gravity.place(iw, ih, mw, mh, self.opts.margin);
            let opacity = self.opts.opacity;
            let mut out = img;
            // The mark's 8-bit values scaled to the image's depth (`max`),
            // so a 16-bit image is blended in 16 bits.
            let blend = |dst: &mut [f32], src: &image::Rgba<u8>, max: f32| {
                let a = f32::from(src[3]) / 255.0 * opacity;
                // Exactly 1 or 257: 8-bit results are those of before.
                let scale = max / 255.0;
                for c in 0..dst.len().min(3) {
                    let mark = f32::from(src[c]) * scale;
                    dst[c] = (dst[c] * (1.0 - a) + mark * a).round();
                }
            };
            macro_rules! lay {
                ($buf:expr, $t:ty, $max:expr) => {
                    for (x, y, p) in mark.enumerate_pixels() {
                        let px = &mut $buf.get_pixel_mut(x0 + x, y0 + y).0;
                        let mut v = px.map(f32::from);
                        blend(&mut v, p, $max);
                        *px = v.map(|f| f as $t);
                    }
                };
            }
            if let DynamicImage::ImageLuma8(_) | DynamicImage::ImageLuma16(_) = out {
                // A coloured mark needs colour channels.
                out = match out {
                    DynamicImage::ImageLuma16(_) => DynamicImage::ImageRgb16(out.to_rgb16()),
                    _ => DynamicImage::ImageRgb8(out.to_rgb8()),
                };
            }
            match &mut out {
                DynamicImage::ImageRgb8(buf) => lay!(buf, u8, 255.0),
                DynamicImage::ImageRgba8(buf) => lay!(buf, u8, 255.0),
                DynamicImage::ImageRgb16(buf) => lay!(buf, u16, 65535.0),
                DynamicImage::ImageRgba16(buf) => lay!(buf, u16, 65535.0),
                other => {
                    return Err(StageError::new(format!(
                        "unsupported pixel layout {:?}",
                        other.color()
                    )));
                }
            }
            Ok(out)
        })
    }
}
