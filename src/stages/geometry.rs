//! `rotate`, `flip` and `grayscale`: lossless pixel rearrangements.

use std::sync::Arc;

use image::DynamicImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, PayloadType, Types};
use crate::stage::{
    Built, KindSpec, NoOptions, OptionError, Output, Stage, StageError, StageOptions,
};

const IMAGE: Types = Types::of(&[PayloadType::Image]);

/// Options of `rotate`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RotateOptions {
    /// Clockwise: 90, 180 or 270.
    #[schemars(range(min = 90, max = 270))]
    pub degrees: u32,
}

impl Default for RotateOptions {
    fn default() -> Self {
        RotateOptions { degrees: 90 }
    }
}

impl StageOptions for RotateOptions {
    fn validate(&self) -> Vec<OptionError> {
        if [90, 180, 270].contains(&self.degrees) {
            Vec::new()
        } else {
            vec![OptionError::at(
                "degrees",
                format!("`degrees` must be 90, 180 or 270, not {}", self.degrees),
            )]
        }
    }
}

pub fn rotate_spec() -> KindSpec {
    KindSpec {
        name: "rotate",
        paths: crate::stage::no_paths,
        summary: "rotate images clockwise by 90, 180 or 270 degrees",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(RotateOptions),
        check: crate::stage::check_options::<RotateOptions>,
        meaning: crate::stage::meaning::<RotateOptions>,
        revision: 1,
        build: |t, _ctx| {
            let o: RotateOptions = crate::stage::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Rotate(o.degrees))))
        },
    }
}

struct Rotate(u32);

impl Stage for Rotate {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |img| {
            Ok(match self.0 {
                90 => img.rotate90(),
                180 => img.rotate180(),
                _ => img.rotate270(),
            })
        })
    }
}

/// Which way `flip` mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Left and right swap.
    #[default]
    Horizontal,
    /// Top and bottom swap.
    Vertical,
}

/// Options of `flip`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FlipOptions {
    /// horizontal (left and right swap) or vertical (top and bottom swap).
    pub direction: Direction,
}

impl StageOptions for FlipOptions {}

pub fn flip_spec() -> KindSpec {
    KindSpec {
        name: "flip",
        paths: crate::stage::no_paths,
        summary: "mirror images horizontally or vertically",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(FlipOptions),
        check: crate::stage::check_options::<FlipOptions>,
        meaning: crate::stage::meaning::<FlipOptions>,
        revision: 1,
        build: |t, _ctx| {
            let o: FlipOptions = crate::stage::parse_options(t)?;
            Ok(Built::Stage(Arc::new(Flip(o.direction))))
        },
    }
}

struct Flip(Direction);

impl Stage for Flip {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |img| {
            Ok(match self.0 {
                Direction::Horizontal => img.fliph(),
                Direction::Vertical => img.flipv(),
            })
        })
    }
}

pub fn grayscale_spec() -> KindSpec {
    KindSpec {
        name: "grayscale",
        paths: crate::stage::no_paths,
        summary: "convert images to shades of grey (alpha kept)",
        accepts: IMAGE,
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(NoOptions),
        check: crate::stage::check_options::<NoOptions>,
        meaning: crate::stage::meaning::<NoOptions>,
        revision: 1,
        build: |_, _| Ok(Built::Stage(Arc::new(Grayscale))),
    }
}

struct Grayscale;

impl Stage for Grayscale {
    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        super::map_image(item, |img| {
            use DynamicImage as D;
            // Back to RGBA so later stages keep handling three layouts; 16
            // bits stay 16 bits.
            let deep = img.color().bytes_per_pixel() > img.color().channel_count();
            Ok(match (img.color().has_alpha(), deep) {
                (true, false) => D::ImageRgba8(D::ImageLumaA8(img.to_luma_alpha8()).to_rgba8()),
                (false, false) => D::ImageLuma8(img.to_luma8()),
                (true, true) => D::ImageRgba16(D::ImageLumaA16(img.to_luma_alpha16()).to_rgba16()),
                (false, true) => D::ImageLuma16(img.to_luma16()),
            })
        })
    }
}
