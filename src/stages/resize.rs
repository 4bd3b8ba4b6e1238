//! `resize`: scale images with fast_image_resize (SIMD convolution chosen at
//! run time), fitting them into a box without upscaling unless asked.

use std::cell::RefCell;
use std::sync::Arc;

use fast_image_resize::{self as fir, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// How the image is fitted into `width` x `height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Keep the aspect ratio; the image fits inside the box.
    #[default]
    Contain,
    /// Keep the aspect ratio; the image fills the box, the excess is cropped
    /// evenly from both sides.
    Cover,
    /// Stretch to exactly the box.
    Fill,
}

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Nearest,
    Box,
    Bilinear,
    Hamming,
    CatmullRom,
    Mitchell,
    Gaussian,
    #[default]
    Lanczos3,
}

impl Filter {
    pub fn alg(self) -> ResizeAlg {
        use fir::FilterType as F;
        match self {
            Filter::Nearest => ResizeAlg::Nearest,
            Filter::Box => ResizeAlg::Convolution(F::Box),
            Filter::Bilinear => ResizeAlg::Convolution(F::Bilinear),
            Filter::Hamming => ResizeAlg::Convolution(F::Hamming),
            Filter::CatmullRom => ResizeAlg::Convolution(F::CatmullRom),
            Filter::Mitchell => ResizeAlg::Convolution(F::Mitchell),
            Filter::Gaussian => ResizeAlg::Convolution(F::Gaussian),
            Filter::Lanczos3 => ResizeAlg::Convolution(F::Lanczos3),
        }
    }
}

/// Options of `resize`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ResizeOpts {
    /// Target width in pixels, 1 to 100000; leave out to follow the height.
    #[schemars(range(min = 1, max = super::MAX_SIDE))]
    pub width: Option<u32>,
    /// Target height in pixels, 1 to 100000; leave out to follow the width.
    #[schemars(range(min = 1, max = super::MAX_SIDE))]
    pub height: Option<u32>,
    /// How the image meets the box: contain (fits inside), cover (fills it,
    /// the overflow cropped) or fill (stretched to it).
    pub fit: Fit,
    /// The resampling filter: lanczos3 (sharpest, the default), catmullrom,
    /// mitchell, gaussian, hamming, bilinear, box or nearest.
    pub filter: Filter,
    /// Enlarge images smaller than the box (off: they pass unchanged). With
    /// both `width` and `height`, the box may then hold at most 100000000
    /// pixels; any output over that fails its item.
    pub upscale: bool,
}

impl StageOptions for ResizeOpts {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        // An upscaled output fills up to the whole box, whatever the
        // source: a box too big for memory is refused before any run.
        if let (Some(w), Some(h), true) = (self.width, self.height, self.upscale)
            && let Some(why) = super::output_too_big(u64::from(w), u64::from(h), 4)
        {
            errors.push(OptionError::stage(format!(
                "with `upscale`, {why}: make `width` x `height` smaller"
            )));
        }
        if self.width.is_none() && self.height.is_none() {
            errors.push(OptionError::stage(
                "`resize` needs `width`, `height` or both",
            ));
        } else if self.fit != Fit::Contain && (self.width.is_none() || self.height.is_none()) {
            let fit = if self.fit == Fit::Cover {
                "cover"
            } else {
                "fill"
            };
            errors.push(OptionError::at(
                "fit",
                format!("fit = \"{fit}\" needs both `width` and `height`"),
            ));
        }
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "resize",
        paths: crate::stage::no_paths,
        summary: "scale images to fit, cover or fill a box (SIMD Lanczos3 by default)",
        accepts: Types::of(&[PayloadType::Image]),
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(ResizeOpts),
        check: crate::stage::check_options::<ResizeOpts>,
        meaning: crate::stage::meaning::<ResizeOpts>,
        revision: 1,
        build: |t, _ctx| {
            Ok(Built::Stage(Arc::new(Resize {
                opts: crate::stage::parse_options(t)?,
            })))
        },
    }
}

struct Resize {
    opts: ResizeOpts,
}

/// The output size for a `w` x `h` source, and whether the source must be
/// cropped to the output's aspect ratio first.
pub fn target_size(opts: &ResizeOpts, w: u32, h: u32) -> (u32, u32, bool) {
    let (wf, hf) = (f64::from(w), f64::from(h));
    let sx = opts.width.map(|t| f64::from(t) / wf);
    let sy = opts.height.map(|t| f64::from(t) / hf);
    let clamp = |s: f64| if opts.upscale { s } else { s.min(1.0) };
    let dim = |v: f64| (v.round() as u32).max(1);
    match opts.fit {
        Fit::Contain => {
            let s = match (sx, sy) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => 1.0,
            };
            let s = clamp(s);
            (dim(wf * s), dim(hf * s), false)
        }
        Fit::Cover => {
            let (tw, th) = (opts.width.unwrap_or(w), opts.height.unwrap_or(h));
            let s = clamp(sx.unwrap_or(1.0).max(sy.unwrap_or(1.0)));
            let (ow, oh) = (tw.min(dim(wf * s)), th.min(dim(hf * s)));
            (ow, oh, true)
        }
        Fit::Fill => {
            let (tw, th) = (opts.width.unwrap_or(w), opts.height.unwrap_or(h));
            if opts.upscale {
                (tw, th, false)
            } else {
                (tw.min(w), th.min(h), false)
            }
        }
    }
}

thread_local! {
    // The resizer keeps scratch buffers; one per worker thread avoids
    // reallocating them for every image.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resize `img` to `tw` x `th`, cropping to that aspect ratio first if `crop`.
pub fn resize_image(
    img: &DynamicImage,
    tw: u32,
    th: u32,
    crop: bool,
    filter: Filter,
) -> Result<DynamicImage, StageError> {
    let channels = u64::from(img.color().bytes_per_pixel());
    if let Some(why) = super::output_too_big(u64::from(tw), u64::from(th), channels) {
        return Err(StageError::new(why));
    }
    use image::ImageBuffer as B;
    let mut dst = match img {
        DynamicImage::ImageLuma8(_) => DynamicImage::ImageLuma8(image::GrayImage::new(tw, th)),
        DynamicImage::ImageRgba8(_) => DynamicImage::ImageRgba8(image::RgbaImage::new(tw, th)),
        DynamicImage::ImageRgb8(_) => DynamicImage::ImageRgb8(image::RgbImage::new(tw, th)),
        // fast_image_resize works on 16-bit values as they are.
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma16(B::new(tw, th)),
        DynamicImage::ImageRgba16(_) => DynamicImage::ImageRgba16(B::new(tw, th)),
        DynamicImage::ImageRgb16(_) => DynamicImage::ImageRgb16(B::new(tw, th)),
        other => {
            return Err(StageError::new(format!(
                "cannot resize pixels of type {:?}",
                other.color()
            )));
        }
    };
    let mut options = ResizeOptions::new().resize_alg(filter.alg());
    if crop {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    // fast_image_resize cuts the image into bands itself, one per thread
    // of the pool `split` runs it in.
    let pixels = u64::from(img.width()) * u64::from(img.height());
    crate::cores::split(pixels, |_| {
        RESIZER.with(|r| r.borrow_mut().resize(img, &mut dst, &options))
    })
    .map_err(|e| StageError::new(format!("resize failed: {e}")))?;
    Ok(dst)
}

impl Stage for Resize {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |img| {
            let (w, h) = (img.width(), img.height());
            let (tw, th, crop) = target_size(&self.opts, w, h);
            if (tw, th) == (w, h) {
                Ok(img)
            } else {
                resize_image(&img, tw, th, crop, self.opts.filter)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(w: Option<u32>, h: Option<u32>, fit: Fit, upscale: bool) -> ResizeOpts {
        ResizeOpts {
            width: w,
            height: h,
            fit,
            filter: Filter::Lanczos3,
            upscale,
        }
    }

    #[test]
    fn contain_keeps_aspect_and_never_upscales_by_default() {
        assert_eq!(
            target_size(&opts(Some(256), Some(256), Fit::Contain, false), 4000, 3000),
            (256, 192, false)
        );
        assert_eq!(
            target_size(&opts(Some(256), Some(256), Fit::Contain, false), 3000, 4000),
            (192, 256, false)
        );
        assert_eq!(
            target_size(&opts(Some(256), Some(256), Fit::Contain, false), 100, 50),
            (100, 50, false)
        );
        assert_eq!(
            target_size(&opts(Some(256), Some(256), Fit::Contain, true), 100, 50),
            (256, 128, false)
        );
        assert_eq!(
            target_size(&opts(Some(800), None, Fit::Contain, false), 1600, 900),
            (800, 450, false)
        );
        assert_eq!(
            target_size(&opts(None, Some(90), Fit::Contain, false), 1600, 900),
            (160, 90, false)
        );
    }

    #[test]
    fn cover_and_fill_give_the_box() {
        assert_eq!(
            target_size(&opts(Some(256), Some(256), Fit::Cover, false), 4000, 3000),
            (256, 256, true)
        );
        assert_eq!(
            target_size(&opts(Some(300), Some(100), Fit::Fill, false), 4000, 3000),
            (300, 100, false)
        );
        assert_eq!(
            target_size(&opts(Some(300), Some(100), Fit::Fill, false), 200, 50),
            (200, 50, false)
        );
    }
}
