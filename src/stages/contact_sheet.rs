//! `contact_sheet`: a sink that tiles every image it receives into one grid
//! image, for a glance at a whole folder. Tiles are made where the stage
//! runs (a worker, in processes mode); the sheet is put together at the end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image::{DynamicImage, Rgba, RgbaImage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::encode::{Format, encode_image};
use super::resize::{Filter, Fit, ResizeOpts, resize_image, target_size};
use super::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::item::{Item, Payload, PayloadType, Types};

/// Options of `contact_sheet`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ContactSheetOptions {
    /// The sheet to write; .jpg, .png or .webp.
    pub path: String,
    /// Tiles per row.
    pub columns: u32,
    /// Size of each tile's square, in pixels.
    pub tile: u32,
    /// Space between tiles and around the sheet, in pixels.
    pub gap: u32,
    /// Grey level of the background, 0 (black) to 255 (white).
    pub background: u8,
    /// JPEG quality of the sheet.
    pub quality: u8,
}

impl Default for ContactSheetOptions {
    fn default() -> Self {
        ContactSheetOptions {
            path: String::new(),
            columns: 6,
            tile: 200,
            gap: 8,
            background: 24,
            quality: 88,
        }
    }
}

fn format_of(path: &str) -> Option<Format> {
    let ext = std::path::Path::new(path)
        .extension()?
        .to_string_lossy()
        .to_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => Some(Format::Jpeg),
        "png" => Some(Format::Png),
        "webp" => Some(Format::Webp),
        _ => None,
    }
}

impl StageOptions for ContactSheetOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        if self.path.is_empty() {
            errors.push(OptionError::stage(
                "`contact_sheet` needs `path`, the image to write",
            ));
        } else if format_of(&self.path).is_none() {
            errors.push(OptionError::at(
                "path",
                "`path` must end in .jpg, .png or .webp",
            ));
        }
        if self.columns == 0 || self.columns > 1000 {
            errors.push(OptionError::at(
                "columns",
                "`columns` must be between 1 and 1000",
            ));
        }
        if !(8..=4096).contains(&self.tile) {
            errors.push(OptionError::at("tile", "`tile` must be between 8 and 4096"));
        }
        if !(1..=100).contains(&self.quality) {
            errors.push(OptionError::at(
                "quality",
                "`quality` must be between 1 and 100",
            ));
        }
        errors
    }
}

/// A contact sheet is one file.
fn paths(t: &toml::Table) -> super::StagePaths {
    match super::parse_options::<ContactSheetOptions>(t) {
        Ok(o) => super::StagePaths::Gathers(PathBuf::from(o.path)),
        Err(_) => super::StagePaths::None,
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "contact_sheet",
        paths,
        summary: "tile every image it receives into one grid image",
        accepts: Types::of(&[PayloadType::Image]),
        output: Output::Fixed(PayloadType::Nothing),
        schema: || schemars::schema_for!(ContactSheetOptions),
        check: super::check_options::<ContactSheetOptions>,
        build: |t, ctx| {
            Ok(Built::Stage(Arc::new(ContactSheet {
                opts: super::parse_options(t)?,
                stage: ctx.stage.clone(),
                output: ctx.output.clone(),
                tiles: Mutex::new(Vec::new()),
            })))
        },
    }
}

struct ContactSheet {
    opts: ContactSheetOptions,
    stage: String,
    output: crate::output::Guard,
    tiles: Mutex<Vec<(String, DynamicImage)>>,
}

impl Stage for ContactSheet {
    /// Shrink the image to its tile; the small tile is what travels on.
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let Payload::Image(img) = std::mem::take(&mut item.payload) else {
            return Err(StageError::new("expected a decoded image"));
        };
        let fit = ResizeOpts {
            width: Some(self.opts.tile),
            height: Some(self.opts.tile),
            fit: Fit::Contain,
            filter: Filter::Lanczos3,
            upscale: true,
        };
        let (w, h, _) = target_size(&fit, img.width(), img.height());
        let tile = resize_image(&img, w, h, false, Filter::Lanczos3)?;
        item.payload = Payload::Image(tile);
        Ok(Some(item))
    }

    fn collects(&self) -> bool {
        true
    }

    fn plan(&self, item: Item) -> Result<Option<Item>, StageError> {
        Ok(Some(item))
    }

    fn plan_finish(&self) -> Result<Vec<PathBuf>, StageError> {
        let path = self
            .output
            .plan_file(&self.stage, Path::new(&self.opts.path))?;
        Ok(vec![path])
    }

    fn collect(&self, item: &mut Item) {
        if let Payload::Image(tile) = std::mem::take(&mut item.payload) {
            self.tiles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((item.rel_str(), tile));
        }
    }

    fn needs_every_item(&self) -> bool {
        true
    }

    fn finish(&self, _run: &super::Finish<'_>) -> Result<Vec<PathBuf>, StageError> {
        let mut tiles = std::mem::take(&mut *self.tiles.lock().unwrap_or_else(|e| e.into_inner()));
        if tiles.is_empty() {
            return Ok(Vec::new());
        }
        tiles.sort_by(|a, b| a.0.cmp(&b.0));
        let (n, cols, tile, gap) = (
            tiles.len() as u32,
            self.opts.columns,
            self.opts.tile,
            self.opts.gap,
        );
        let cols = cols.min(n);
        let rows = n.div_ceil(cols);
        let cell = tile + gap;
        let bg = self.opts.background;
        let mut sheet = RgbaImage::from_pixel(
            cols * cell + gap,
            rows * cell + gap,
            Rgba([bg, bg, bg, 255]),
        );
        for (i, (_, t)) in tiles.iter().enumerate() {
            let i = i as u32;
            let (cx, cy) = (gap + (i % cols) * cell, gap + (i / cols) * cell);
            // Centred in its cell; transparent parts show the background.
            let (x, y) = (cx + (tile - t.width()) / 2, cy + (tile - t.height()) / 2);
            image::imageops::overlay(&mut sheet, &t.to_rgba8(), i64::from(x), i64::from(y));
        }
        let sheet = DynamicImage::ImageRgba8(sheet).to_rgb8();
        let format = format_of(&self.opts.path).unwrap_or(Format::Jpeg);
        let bytes = encode_image(&DynamicImage::ImageRgb8(sheet), format, self.opts.quality)?;
        let path = self
            .output
            .place_file(&self.stage, Path::new(&self.opts.path), &bytes)?;
        Ok(vec![path])
    }
}
