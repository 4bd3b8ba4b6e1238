//! `blur`, `sharpen` and `adjust`: per-pixel tone and detail changes.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::gaussian::{Sample, Samples, gaussian, layout, samples_mut, simd_fn, with_blur};
use crate::item::{Item, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

const IMAGE: Types = Types::of(&[PayloadType::Image]);

fn positive(key: &str, v: f32) -> Option<OptionError> {
    (!(v.is_finite() && v > 0.0))
        .then(|| OptionError::at(key, format!("`{key}` must be more than 0, not {v}")))
}

/// Options of `blur`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BlurOptions {
    /// Standard deviation of the Gaussian, in pixels: more than 0, at most
    /// 1000.
    #[schemars(range(min = 0, max = 1000))]
    pub sigma: f32,
}

impl Default for BlurOptions {
    fn default() -> Self {
        BlurOptions { sigma: 2.0 }
    }
}

impl StageOptions for BlurOptions {
    fn validate(&self) -> Vec<OptionError> {
        positive("sigma", self.sigma).into_iter().collect()
    }
}

pub fn blur_spec() -> KindSpec {
    KindSpec {
        name: "blur",
        paths: crate::stage::no_paths,
        summary: "Gaussian blur (a direct kernel for small sigma, three box blurs for large)",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(BlurOptions),
        check: crate::stage::check_options::<BlurOptions>,
        meaning: crate::stage::meaning::<BlurOptions>,
        revision: 1,
        build: |t, _ctx| {
            let o: BlurOptions = crate::stage::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Blur(o.sigma))))
        },
    }
}

struct Blur(f32);

impl Stage for Blur {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |img| gaussian(&img, self.0))
    }
}

/// Options of `sharpen` (an unsharp mask).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SharpenOptions {
    /// Radius of the blur the mask is made from, in pixels: more than 0, at
    /// most 1000.
    #[schemars(range(min = 0, max = 1000))]
    pub sigma: f32,
    /// How much of the difference to add back (1.0: all of it): more than
    /// 0, at most 100.
    #[schemars(range(min = 0, max = 100))]
    pub amount: f32,
    /// Leave pixels alone whose difference is at most this (0-255), so flat
    /// areas and noise are not sharpened.
    #[schemars(range(min = 0, max = 255))]
    pub threshold: u8,
}

impl Default for SharpenOptions {
    fn default() -> Self {
        SharpenOptions {
            sigma: 1.0,
            amount: 1.0,
            threshold: 0,
        }
    }
}

impl StageOptions for SharpenOptions {
    fn validate(&self) -> Vec<OptionError> {
        positive("sigma", self.sigma)
            .into_iter()
            .chain(positive("amount", self.amount))
            .collect()
    }
}

pub fn sharpen_spec() -> KindSpec {
    KindSpec {
        name: "sharpen",
        paths: crate::stage::no_paths,
        summary: "unsharp mask: sigma, amount, threshold",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(SharpenOptions),
        check: crate::stage::check_options::<SharpenOptions>,
        meaning: crate::stage::meaning::<SharpenOptions>,
        revision: 1,
        build: |t, _ctx| {
            Ok(Built::Stage(Arc::new(Sharpen(
                crate::stage::parse_options(t)?,
            ))))
        },
    }
}

struct Sharpen(SharpenOptions);

/// `px += amount * (px - blurred)` where the difference is over
/// `threshold`; `amount` in 1/256ths; alpha left alone. For 16-bit values
/// `amount * diff` stays under 100 * 256 * 65535, within `i32`.
#[inline(always)]
fn unsharp_any<T: Sample>(
    data: &mut [T],
    mask: &[T],
    channels: usize,
    alpha: bool,
    amount: i32,
    threshold: i32,
) {
    // A select, not a conditional store, so the loop runs in SIMD.
    let sharpen = |px: &mut T, b: T| {
        let v = Into::<u32>::into(*px) as i32;
        let diff = v - Into::<u32>::into(b) as i32;
        let sharp = (v + ((amount * diff + 128) >> 8)).clamp(0, T::MAX);
        *px = T::from_u32(if diff.abs() > threshold { sharp } else { v } as u32);
    };
    if alpha {
        for (p, m) in data
            .chunks_exact_mut(channels)
            .zip(mask.chunks_exact(channels))
        {
            for (px, &b) in p[..channels - 1].iter_mut().zip(m) {
                sharpen(px, b);
            }
        }
    } else {
        for (px, &b) in data.iter_mut().zip(mask) {
            sharpen(px, b);
        }
    }
}

simd_fn! {
fn unsharp8(data: &mut [u8], mask: &[u8], channels: usize, alpha: bool, amount: i32, threshold: i32) {
    unsharp_any(data, mask, channels, alpha, amount, threshold)
}
}

simd_fn! {
fn unsharp16(data: &mut [u16], mask: &[u16], channels: usize, alpha: bool, amount: i32, threshold: i32) {
    unsharp_any(data, mask, channels, alpha, amount, threshold)
}
}

impl Stage for Sharpen {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |mut img| {
            let (channels, alpha) = layout(&img)?;
            let shape = (img.width() as usize, img.height() as usize, channels);
            // Fixed point (8 fractional bits): integer maths per value. The
            // threshold is on the 0-255 scale whatever the depth.
            let (amount, threshold) = (
                (self.0.amount * 256.0).round() as i32,
                i32::from(self.0.threshold),
            );
            // Each band of blurred rows sharpens the same rows of the image
            // as the blur comes, over the cores the item may use.
            match samples_mut(&mut img) {
                Samples::U8(data) => with_blur(data, shape, self.0.sigma, &|d, m| {
                    unsharp8(d, m, channels, alpha, amount, threshold)
                }),
                Samples::U16(data) => with_blur(data, shape, self.0.sigma, &|d, m| {
                    unsharp16(d, m, channels, alpha, amount, threshold * 257)
                }),
            }
            Ok(img)
        })
    }
}

/// Options of `adjust`. Every factor is 1.0 for "unchanged".
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdjustOptions {
    /// Multiplies every value (0.5: half as bright), 0 to 100.
    #[schemars(range(min = 0, max = 100))]
    pub brightness: f32,
    /// Spreads values from mid-grey (0: flat grey, 2: twice the contrast),
    /// 0 to 100.
    #[schemars(range(min = 0, max = 100))]
    pub contrast: f32,
    /// Colourfulness (0: grey, 2: twice as vivid), 0 to 100.
    #[schemars(range(min = 0, max = 100))]
    pub saturation: f32,
    /// Gamma correction exponent (above 1 brightens the mid-tones): more
    /// than 0, at most 100.
    #[schemars(range(min = 0, max = 100))]
    pub gamma: f32,
}

impl Default for AdjustOptions {
    fn default() -> Self {
        AdjustOptions {
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            gamma: 1.0,
        }
    }
}

impl StageOptions for AdjustOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors: Vec<OptionError> = positive("gamma", self.gamma).into_iter().collect();
        for (key, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                errors.push(OptionError::at(
                    key,
                    format!("`{key}` must be 0 or more, not {v}"),
                ));
            }
        }
        errors
    }
}

pub fn adjust_spec() -> KindSpec {
    KindSpec {
        name: "adjust",
        paths: crate::stage::no_paths,
        summary: "brightness, contrast, saturation and gamma",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(AdjustOptions),
        check: crate::stage::check_options::<AdjustOptions>,
        meaning: crate::stage::meaning::<AdjustOptions>,
        revision: 1,
        build: |t, _ctx| {
            let o: AdjustOptions = crate::stage::parse_options(t)?;
            // Brightness, contrast and gamma act on each value alone: one
            // lookup table per image instead of float maths per pixel.
            let mut lut = [0u8; 256];
            for (v, out) in lut.iter_mut().enumerate() {
                *out = tone(&o, v as f32 / 255.0, 255.0) as u8;
            }
            Ok(Built::Stage(Arc::new(Adjust {
                lut,
                lut16: std::sync::OnceLock::new(),
                saturation: o.saturation,
                opts: o,
            })))
        },
    }
}

/// Brightness, contrast and gamma applied to `x` (0 to 1), scaled to `max`.
fn tone(o: &AdjustOptions, x: f32, max: f32) -> f32 {
    let mut x = x * o.brightness;
    x = (x - 0.5) * o.contrast + 0.5;
    x = x.clamp(0.0, 1.0).powf(1.0 / o.gamma);
    (x * max).round().clamp(0.0, max)
}

struct Adjust {
    lut: [u8; 256],
    /// The same for 16-bit values, made on the first 16-bit image (65536
    /// entries: not worth making for runs that never see one).
    lut16: std::sync::OnceLock<Vec<u16>>,
    saturation: f32,
    opts: AdjustOptions,
}

/// Apply a tone table and the saturation to interleaved pixels.
fn adjust_pixels<T: Sample>(data: &mut [T], (channels, alpha): (usize, bool), lut: &[T], s: f32) {
    let colour = if alpha { channels - 1 } else { channels };
    let max = T::MAX as f32;
    let f = |v: T| Into::<u32>::into(v) as f32;
    for px in data.chunks_exact_mut(channels) {
        for v in &mut px[..colour] {
            *v = lut[Into::<u32>::into(*v) as usize];
        }
        if colour == 3 && (s - 1.0).abs() > f32::EPSILON {
            let (r, g, b) = (f(px[0]), f(px[1]), f(px[2]));
            let luma = 0.299 * r + 0.587 * g + 0.114 * b;
            for (v, c) in px[..3].iter_mut().zip([r, g, b]) {
                *v = T::from_u32((luma + (c - luma) * s).round().clamp(0.0, max) as u32);
            }
        }
    }
}

impl Stage for Adjust {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |mut img| {
            let shape = layout(&img)?;
            match samples_mut(&mut img) {
                Samples::U8(data) => adjust_pixels(data, shape, &self.lut, self.saturation),
                Samples::U16(data) => {
                    let lut = self.lut16.get_or_init(|| {
                        (0..=65535u32)
                            .map(|v| tone(&self.opts, v as f32 / 65535.0, 65535.0) as u16)
                            .collect()
                    });
                    adjust_pixels(data, shape, lut, self.saturation)
                }
            }
            Ok(img)
        })
    }
}
