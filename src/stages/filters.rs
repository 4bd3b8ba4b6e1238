//! `blur`, `sharpen` and `adjust`: per-pixel tone and detail changes.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::gaussian::{blur_into, bytes_mut, gaussian, layout, simd_fn};
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

simd_fn! {
/// `px += amount * (px - blurred)` where the difference is over
/// `threshold`; `amount` in 1/256ths; alpha left alone.
fn unsharp(
    data: &mut [u8],
    mask: &[u8],
    channels: usize,
    alpha: bool,
    amount: i32,
    threshold: i32,
) {
    // A select, not a conditional store, so the loop runs in SIMD.
    let sharpen = |px: &mut u8, b: u8| {
        let (v, diff) = (i32::from(*px), i32::from(*px) - i32::from(b));
        let sharp = (v + ((amount * diff + 128) >> 8)).clamp(0, 255);
        *px = if diff.abs() > threshold { sharp } else { v } as u8;
    };
    if alpha {
        for (p, m) in data.chunks_exact_mut(channels).zip(mask.chunks_exact(channels)) {
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
}

impl Stage for Sharpen {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |mut img| {
            let (channels, alpha) = layout(&img)?;
            let (w, h) = (img.width() as usize, img.height() as usize);
            let mut mask = vec![0u8; img.as_bytes().len()];
            blur_into(img.as_bytes(), &mut mask, w, h, channels, self.0.sigma);
            // Fixed point (8 fractional bits): integer maths per value.
            let (amount, threshold) = (
                (self.0.amount * 256.0).round() as i32,
                i32::from(self.0.threshold),
            );
            unsharp(
                bytes_mut(&mut img),
                &mask,
                channels,
                alpha,
                amount,
                threshold,
            );
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
