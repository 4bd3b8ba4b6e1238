//! `blur`, `sharpen` and `adjust`: per-pixel tone and detail changes.

use std::sync::Arc;

use image::DynamicImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::item::{Item, PayloadType, Types};

const IMAGE: Types = Types::of(&[PayloadType::Image]);

/// Channels per pixel and whether the last one is alpha.
fn layout(img: &DynamicImage) -> Result<(usize, bool), StageError> {
    match img {
        DynamicImage::ImageLuma8(_) => Ok((1, false)),
        DynamicImage::ImageRgb8(_) => Ok((3, false)),
        DynamicImage::ImageRgba8(_) => Ok((4, true)),
        other => Err(StageError(format!(
            "unsupported pixel layout {:?}",
            other.color()
        ))),
    }
}

fn bytes_mut(img: &mut DynamicImage) -> &mut [u8] {
    match img {
        DynamicImage::ImageLuma8(b) => b,
        DynamicImage::ImageRgb8(b) => b,
        DynamicImage::ImageRgba8(b) => b,
        _ => &mut [],
    }
}

/// Widths of three box blurs whose succession approximates a Gaussian of
/// `sigma` (the usual construction: boxes of two neighbouring odd widths).
fn box_radii(sigma: f32) -> [usize; 3] {
    let n = 3.0f32;
    let ideal = (12.0 * sigma * sigma / n + 1.0).sqrt();
    let mut lower = ideal.floor() as i64;
    if lower % 2 == 0 {
        lower -= 1;
    }
    let upper = lower + 2;
    let m = ((12.0 * sigma * sigma - n * (lower * lower) as f32 - 4.0 * n * lower as f32 - 3.0 * n)
        / (-4.0 * lower as f32 - 4.0))
        .round() as i64;
    let mut radii = [0usize; 3];
    for (i, r) in radii.iter_mut().enumerate() {
        let width = if (i as i64) < m { lower } else { upper };
        *r = usize::try_from((width - 1) / 2).unwrap_or(0);
    }
    radii
}

/// One horizontal box pass over interleaved rows, edges clamped.
fn box_h(src: &[u8], dst: &mut [u8], w: usize, c: usize, r: usize) {
    if r == 0 || w == 0 {
        dst.copy_from_slice(src);
        return;
    }
    let div = (2 * r + 1) as u32;
    for (row_in, row_out) in src.chunks_exact(w * c).zip(dst.chunks_exact_mut(w * c)) {
        for ch in 0..c {
            let px = |x: usize| u32::from(row_in[x * c + ch]);
            let mut acc: u32 = (0..=2 * r)
                .map(|i| px(i.saturating_sub(r).min(w - 1)))
                .sum();
            for x in 0..w {
                row_out[x * c + ch] = ((acc + div / 2) / div) as u8;
                acc += px((x + r + 1).min(w - 1));
                acc -= px(x.saturating_sub(r));
            }
        }
    }
}

/// One vertical box pass, a running sum per column, row by row.
fn box_v(src: &[u8], dst: &mut [u8], w: usize, h: usize, c: usize, r: usize) {
    if r == 0 || h == 0 {
        dst.copy_from_slice(src);
        return;
    }
    let stride = w * c;
    let div = (2 * r + 1) as u32;
    let row = |y: usize| &src[y * stride..(y + 1) * stride];
    let mut acc = vec![0u32; stride];
    for i in 0..=2 * r {
        for (a, &v) in acc.iter_mut().zip(row(i.saturating_sub(r).min(h - 1))) {
            *a += u32::from(v);
        }
    }
    for y in 0..h {
        let out = &mut dst[y * stride..(y + 1) * stride];
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = ((a + div / 2) / div) as u8;
        }
        let (add, sub) = (row((y + r + 1).min(h - 1)), row(y.saturating_sub(r)));
        for ((a, &p), &m) in acc.iter_mut().zip(add).zip(sub) {
            *a = *a + u32::from(p) - u32::from(m);
        }
    }
}

/// A fast Gaussian blur of 8-bit interleaved pixels: three box blurs each
/// way, integer running sums (constant cost per pixel whatever `sigma`).
fn gaussian(img: &DynamicImage, sigma: f32) -> Result<DynamicImage, StageError> {
    let (c, _) = layout(img)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = img.clone();
    let mut tmp = img.as_bytes().to_vec();
    let data = bytes_mut(&mut out);
    for r in box_radii(sigma) {
        box_h(data, &mut tmp, w, c, r);
        box_v(&tmp, data, w, h, c, r);
    }
    Ok(out)
}

fn positive(key: &str, v: f32) -> Option<OptionError> {
    (!(v.is_finite() && v > 0.0))
        .then(|| OptionError::at(key, format!("`{key}` must be more than 0, not {v}")))
}

/// Options of `blur`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BlurOptions {
    /// Standard deviation of the Gaussian, in pixels.
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
        summary: "Gaussian blur (fast box approximation)",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(BlurOptions),
        check: super::check_options::<BlurOptions>,
        build: |t, _ctx| {
            let o: BlurOptions = super::parse_options(t)?;
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
    /// Radius of the blur the mask is made from, in pixels.
    pub sigma: f32,
    /// How much of the difference to add back (1.0: all of it).
    pub amount: f32,
    /// Leave pixels alone whose difference is at most this (0-255), so flat
    /// areas and noise are not sharpened.
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
        summary: "unsharp mask: sigma, amount, threshold",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(SharpenOptions),
        check: super::check_options::<SharpenOptions>,
        build: |t, _ctx| Ok(Built::Stage(Arc::new(Sharpen(super::parse_options(t)?)))),
    }
}

struct Sharpen(SharpenOptions);

impl Stage for Sharpen {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |mut img| {
            let (channels, alpha) = layout(&img)?;
            let blurred = gaussian(&img, self.0.sigma)?;
            let mask = blurred.as_bytes();
            // Fixed point (8 fractional bits): integer maths per value.
            let (amount, threshold) = (
                (self.0.amount * 256.0).round() as i32,
                i32::from(self.0.threshold),
            );
            for (i, (px, &b)) in bytes_mut(&mut img).iter_mut().zip(mask).enumerate() {
                if alpha && i % channels == channels - 1 {
                    continue;
                }
                let diff = i32::from(*px) - i32::from(b);
                if diff.abs() > threshold {
                    *px = (i32::from(*px) + ((amount * diff + 128) >> 8)).clamp(0, 255) as u8;
                }
            }
            Ok(img)
        })
    }
}

/// Options of `adjust`. Every factor is 1.0 for "unchanged".
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdjustOptions {
    /// Multiplies every value (0.5: half as bright).
    pub brightness: f32,
    /// Spreads values from mid-grey (0: flat grey, 2: twice the contrast).
    pub contrast: f32,
    /// Colourfulness (0: grey, 2: twice as vivid).
    pub saturation: f32,
    /// Gamma correction exponent (above 1 brightens the mid-tones).
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
        summary: "brightness, contrast, saturation and gamma",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(AdjustOptions),
        check: super::check_options::<AdjustOptions>,
        build: |t, _ctx| {
            let o: AdjustOptions = super::parse_options(t)?;
            // Brightness, contrast and gamma act on each value alone: one
            // lookup table per image instead of float maths per pixel.
            let mut lut = [0u8; 256];
            for (v, out) in lut.iter_mut().enumerate() {
                let mut x = v as f32 / 255.0;
                x *= o.brightness;
                x = (x - 0.5) * o.contrast + 0.5;
                x = x.clamp(0.0, 1.0).powf(1.0 / o.gamma);
                *out = (x * 255.0).round().clamp(0.0, 255.0) as u8;
            }
            Ok(Built::Stage(Arc::new(Adjust {
                lut,
                saturation: o.saturation,
            })))
        },
    }
}

struct Adjust {
    lut: [u8; 256],
    saturation: f32,
}

impl Stage for Adjust {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |mut img| {
            let (channels, alpha) = layout(&img)?;
            let colour = if alpha { channels - 1 } else { channels };
            let s = self.saturation;
            for px in bytes_mut(&mut img).chunks_exact_mut(channels) {
                for v in &mut px[..colour] {
                    *v = self.lut[usize::from(*v)];
                }
                if colour == 3 && (s - 1.0).abs() > f32::EPSILON {
                    let (r, g, b) = (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]));
                    let luma = 0.299 * r + 0.587 * g + 0.114 * b;
                    for (v, c) in px[..3].iter_mut().zip([r, g, b]) {
                        *v = (luma + (c - luma) * s).round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
            Ok(img)
        })
    }
}
