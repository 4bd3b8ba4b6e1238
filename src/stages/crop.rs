//! `crop`: cut a box out of each image, given outright or as an aspect ratio
//! placed by gravity (or by where the detail is, with `smart`).

use std::sync::Arc;

use image::DynamicImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Where a box sits inside an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gravity {
    #[default]
    Center,
    North,
    South,
    East,
    West,
    Northeast,
    Northwest,
    Southeast,
    Southwest,
    /// Where the image has the most detail (edges), for crops.
    Smart,
}

impl Gravity {
    /// Top-left corner of a `w` x `h` box in a `bw` x `bh` area, `margin`
    /// pixels from the edges it leans on.
    pub fn place(self, bw: u32, bh: u32, w: u32, h: u32, margin: u32) -> (u32, u32) {
        let (fx, fy) = match self {
            Gravity::Center | Gravity::Smart => (1, 1),
            Gravity::North => (1, 0),
            Gravity::South => (1, 2),
            Gravity::East => (2, 1),
            Gravity::West => (0, 1),
            Gravity::Northeast => (2, 0),
            Gravity::Northwest => (0, 0),
            Gravity::Southeast => (2, 2),
            Gravity::Southwest => (0, 2),
        };
        let along = |f: u32, outer: u32, inner: u32| -> u32 {
            let free = outer.saturating_sub(inner);
            match f {
                0 => margin.min(free),
                1 => free / 2,
                _ => free.saturating_sub(margin),
            }
        };
        (along(fx, bw, w), along(fy, bh, h))
    }
}

/// Options of `crop`: a box (`width`, `height`, with `x`, `y`), or an
/// `aspect` ratio placed by `gravity`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CropOptions {
    /// Left edge of the box, in pixels, 0 to 100000.
    #[schemars(range(min = 0, max = super::MAX_SIDE))]
    pub x: u32,
    /// Top edge of the box, in pixels, 0 to 100000.
    #[schemars(range(min = 0, max = super::MAX_SIDE))]
    pub y: u32,
    /// Width of the box, in pixels, 1 to 100000 (the box may hold at most
    /// 100000000 pixels).
    #[schemars(range(min = 1, max = super::MAX_SIDE))]
    pub width: Option<u32>,
    /// Height of the box, in pixels, 1 to 100000.
    #[schemars(range(min = 1, max = super::MAX_SIDE))]
    pub height: Option<u32>,
    /// Aspect ratio to cut to, as "16:9" or "1.5" (from 1:10000 to
    /// 10000:1): the largest such box.
    pub aspect: Option<String>,
    /// Where an `aspect` box sits; `smart` picks the most detailed part.
    pub gravity: Gravity,
}

fn parse_aspect(s: &str) -> Option<f64> {
    let r = match s.split_once(':') {
        Some((a, b)) => a.trim().parse::<f64>().ok()? / b.trim().parse::<f64>().ok()?,
        None => s.trim().parse().ok()?,
    };
    // Wider than 10000:1 is a typo, and would round a side to nothing.
    (1e-4..=1e4).contains(&r).then_some(r)
}

impl StageOptions for CropOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        match (&self.aspect, self.width, self.height) {
            (Some(a), None, None) => {
                if parse_aspect(a).is_none() {
                    errors.push(OptionError::at(
                        "aspect",
                        format!(
                            "`aspect` must look like \"16:9\" or \"1.5\", from 1:10000 to 10000:1, not \"{a}\""
                        ),
                    ));
                }
            }
            (Some(_), _, _) => errors.push(OptionError::at(
                "aspect",
                "give either `aspect` or `width` and `height`, not both",
            )),
            (None, Some(w), Some(h)) => {
                if w == 0 || h == 0 {
                    errors.push(OptionError::stage("the crop box must be at least 1x1"));
                } else if let Some(why) = super::output_too_big(u64::from(w), u64::from(h), 4) {
                    errors.push(OptionError::stage(format!(
                        "the crop box is too big: {why}"
                    )));
                }
            }
            (None, _, _) => errors.push(OptionError::stage(
                "`crop` needs `width` and `height`, or `aspect`",
            )),
        }
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "crop",
        paths: crate::stage::no_paths,
        summary: "cut a box, or an aspect ratio placed by gravity (or `smart`)",
        accepts: Types::of(&[PayloadType::Image]),
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(CropOptions),
        check: crate::stage::check_options::<CropOptions>,
        meaning: crate::stage::meaning::<CropOptions>,
        revision: 1,
        build: |t, _ctx| {
            Ok(Built::Stage(Arc::new(Crop(crate::stage::parse_options(
                t,
            )?))))
        },
    }
}

struct Crop(CropOptions);

/// Offset along the free axis where a `len`-long window holds the most edge
/// energy, from a small greyscale copy of the image.
fn smart_offset(img: &DynamicImage, w: u32, h: u32) -> (u32, u32) {
    let (iw, ih) = (img.width(), img.height());
    let scale = (256.0 / f64::from(iw.max(ih))).min(1.0);
    let (sw, sh) = (
        ((f64::from(iw) * scale) as u32).max(1),
        ((f64::from(ih) * scale) as u32).max(1),
    );
    let small = img
        .resize_exact(sw, sh, image::imageops::FilterType::Triangle)
        .to_luma8();
    // Edge energy per column and per row of the small copy.
    let mut cols = vec![0f64; sw as usize];
    let mut rows = vec![0f64; sh as usize];
    for y in 1..sh {
        for x in 1..sw {
            let p = f64::from(small.get_pixel(x, y)[0]);
            let e = (p - f64::from(small.get_pixel(x - 1, y)[0])).abs()
                + (p - f64::from(small.get_pixel(x, y - 1)[0])).abs();
            cols[x as usize] += e;
            rows[y as usize] += e;
        }
    }
    let best = |energy: &[f64], window: usize| -> usize {
        let window = window.clamp(1, energy.len());
        let mut sum: f64 = energy[..window].iter().sum();
        let (mut best, mut at) = (sum, 0);
        for start in 1..=energy.len() - window {
            sum += energy[start + window - 1] - energy[start - 1];
            if sum > best {
                best = sum;
                at = start;
            }
        }
        at
    };
    let x = if w < iw {
        let at = best(&cols, (f64::from(w) * scale) as usize);
        ((at as f64 / scale) as u32).min(iw - w)
    } else {
        0
    };
    let y = if h < ih {
        let at = best(&rows, (f64::from(h) * scale) as usize);
        ((at as f64 / scale) as u32).min(ih - h)
    } else {
        0
    };
    (x, y)
}

impl Stage for Crop {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |img| {
            let (iw, ih) = (img.width(), img.height());
            let (x, y, w, h) = match (&self.0.aspect, self.0.width, self.0.height) {
                (Some(a), _, _) => {
                    let r = parse_aspect(a).unwrap_or(1.0);
                    let (mut w, mut h) = (iw, ((f64::from(iw) / r).round() as u32).max(1));
                    if h > ih {
                        h = ih;
                        w = ((f64::from(ih) * r).round() as u32).clamp(1, iw);
                    }
                    let (x, y) = if self.0.gravity == Gravity::Smart {
                        smart_offset(&img, w, h)
                    } else {
                        self.0.gravity.place(iw, ih, w, h, 0)
                    };
                    (x, y, w, h)
                }
                (None, Some(w), Some(h)) => {
                    if self.0.x >= iw || self.0.y >= ih {
                        return Err(StageError::new(format!(
                            "crop box at ({}, {}) is outside the {iw}x{ih} image",
                            self.0.x, self.0.y
                        )));
                    }
                    // Clipped to the image, as a box partly outside it can
                    // only mean the part that exists.
                    (
                        self.0.x,
                        self.0.y,
                        w.min(iw - self.0.x),
                        h.min(ih - self.0.y),
                    )
                }
                _ => return Err(StageError::new("crop has no box")),
            };
            Ok(img.crop_imm(x, y, w, h))
        })
    }
}
