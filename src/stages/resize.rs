//! `resize`: scale images with fast_image_resize (SIMD convolution chosen at
//! run time), fitting them into a box without upscaling unless asked.

use std::cell::RefCell;
use std::sync::Arc;

use fast_image_resize::{self as fir, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, Payload, PayloadType, Types};
use crate::pixels::{Layout, SharedImage};
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
    let dst = blank(img.color(), tw, th)?;
    resize_into(img, dst, crop, filter)
}

/// An empty `tw` x `th` image of pixels of type `color`, to resize into.
fn blank(color: image::ColorType, tw: u32, th: u32) -> Result<DynamicImage, StageError> {
    use image::ColorType as C;
    use image::ImageBuffer as B;
    let channels = u64::from(color.bytes_per_pixel());
    if let Some(why) = super::output_too_big(u64::from(tw), u64::from(th), channels) {
        return Err(StageError::new(why));
    }
    Ok(match color {
        C::L8 => DynamicImage::ImageLuma8(image::GrayImage::new(tw, th)),
        C::Rgba8 => DynamicImage::ImageRgba8(image::RgbaImage::new(tw, th)),
        C::Rgb8 => DynamicImage::ImageRgb8(image::RgbImage::new(tw, th)),
        // fast_image_resize works on 16-bit values as they are.
        C::L16 => DynamicImage::ImageLuma16(B::new(tw, th)),
        C::Rgba16 => DynamicImage::ImageRgba16(B::new(tw, th)),
        C::Rgb16 => DynamicImage::ImageRgb16(B::new(tw, th)),
        other => {
            return Err(StageError::new(format!(
                "cannot resize pixels of type {other:?}"
            )));
        }
    })
}

/// Resize `src` into `dst`, whose size and pixel type are the result's.
fn resize_into(
    src: &(impl fir::IntoImageView + Sync),
    mut dst: DynamicImage,
    crop: bool,
    filter: Filter,
) -> Result<DynamicImage, StageError> {
    let mut options = ResizeOptions::new().resize_alg(filter.alg());
    if crop {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    // fast_image_resize cuts the image into bands itself, one per thread
    // of the pool `split` runs it in.
    let pixels = u64::from(src.width()) * u64::from(src.height());
    crate::cores::split(pixels, |_| {
        RESIZER.with(|r| r.borrow_mut().resize(src, &mut dst, &options))
    })
    .map_err(|e| StageError::new(format!("resize failed: {e}")))?;
    Ok(dst)
}

impl Resize {
    /// The item's image resized from the memory a worker process shared,
    /// where it lies: a photo read once to make a smaller image, without
    /// first copying all its pixels into this process. `None` for pixels
    /// it leaves to the usual path (16 bits a value, or no resize to do).
    fn resize_shared(&self, shared: &SharedImage) -> Option<Result<DynamicImage, StageError>> {
        use fir::PixelType as P;
        use image::ColorType as C;
        let (w, h) = (shared.width(), shared.height());
        let (tw, th, crop) = target_size(&self.opts, w, h);
        let (pixel, color) = match shared.layout() {
            Layout::L8 => (P::U8, C::L8),
            Layout::Rgb8 => (P::U8x3, C::Rgb8),
            Layout::Rgba8 => (P::U8x4, C::Rgba8),
            Layout::L16 | Layout::Rgb16 | Layout::Rgba16 => return None,
        };
        if (tw, th) == (w, h) {
            return None;
        }
        let src = match fir::images::ImageRef::new(w, h, shared.bytes(), pixel) {
            Ok(src) => src,
            Err(e) => return Some(Err(StageError::new(format!("resize failed: {e}")))),
        };
        Some(blank(color, tw, th).and_then(|dst| resize_into(&src, dst, crop, self.opts.filter)))
    }
}

impl Stage for Resize {
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        if let Payload::Shared(shared) = &item.payload {
            if let Some(resized) = self.resize_shared(shared) {
                let out = resized?;
                item.meta.width = Some(out.width());
                item.meta.height = Some(out.height());
                item.payload = Payload::Image(out);
                return Ok(Some(item));
            }
            // As every other stage is given it: in this process's memory.
            item.payload = std::mem::take(&mut item.payload)
                .in_process()
                .ok_or_else(|| StageError::new(crate::item::PIXELS_SHORT))?;
        }
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

    fn reads_shared(&self) -> bool {
        true
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

    /// An image read where a worker shared it comes out exactly as the
    /// same image in this process's memory does: every layout (16 bits
    /// through a copy), cropped or not, and one already the box's size.
    #[test]
    fn shared_pixels_resize_as_an_image_of_their_own() {
        use image::{DynamicImage as D, GrayImage, RgbImage};
        let rgb = RgbImage::from_fn(331, 217, |x, y| {
            image::Rgb([(x * 7 + y) as u8, (y * 3) as u8, ((x ^ y) * 5) as u8])
        });
        let images = [
            D::ImageRgb8(rgb.clone()),
            D::ImageRgba8(D::ImageRgb8(rgb.clone()).to_rgba8()),
            D::ImageLuma8(GrayImage::from_fn(331, 217, |x, y| {
                image::Luma([(x * y) as u8])
            })),
            D::ImageRgb16(D::ImageRgb8(rgb).to_rgb16()),
        ];
        let boxes = [
            opts(Some(100), None, Fit::Contain, false),
            opts(Some(64), Some(64), Fit::Cover, false),
            opts(Some(331), None, Fit::Contain, false),
        ];
        for img in &images {
            for o in &boxes {
                let stage = Resize { opts: o.clone() };
                let (layout, bytes) = Layout::split(img.clone());
                let memory = ipc_channel::ipc::IpcSharedMemory::from_bytes(&bytes);
                let shared = SharedImage::new(img.width(), img.height(), layout, memory, None)
                    .expect("fills its size");
                let run = |payload: Payload| {
                    let mut item = Item::new("a.png".into(), "a.png".into());
                    item.payload = payload;
                    let out = stage.process(item).expect("resized").expect("kept");
                    let Payload::Image(out) = out.payload else {
                        panic!("not an image of its own: {:?}", out.payload);
                    };
                    let size = out_size(&out);
                    (out, size)
                };
                let (from_shared, size) = run(Payload::Shared(shared));
                let (from_image, _) = run(Payload::Image(img.clone()));
                assert!(
                    from_shared == from_image,
                    "{layout:?} to {size:?} differs when read in shared memory"
                );
            }
        }
    }

    fn out_size(img: &DynamicImage) -> (u32, u32) {
        (img.width(), img.height())
    }
}
