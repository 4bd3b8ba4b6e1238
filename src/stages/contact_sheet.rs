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
use crate::item::{Item, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Options of `contact_sheet`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ContactSheetOptions {
    /// The sheet to write; .jpg, .png or .webp.
    pub path: String,
    /// Tiles per row, 1 to 1000.
    #[schemars(range(min = 1, max = 1000))]
    pub columns: u32,
    /// Size of each tile's square, in pixels, 8 to 4096.
    #[schemars(range(min = 8, max = 4096))]
    pub tile: u32,
    /// Space between tiles and around the sheet, in pixels, 0 to 1000.
    /// The sheet may hold at most 100000000 pixels: a row must fit at
    /// `check` time, and images past the last row that fits fail the sheet.
    #[schemars(range(min = 0, max = 1000))]
    pub gap: u32,
    /// Grey level of the background, 0 (black) to 255 (white).
    #[schemars(range(min = 0, max = 255))]
    pub background: u8,
    /// JPEG quality of the sheet, 1 to 100.
    #[schemars(range(min = 1, max = 100))]
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
        let (w, h) = self.sheet_size(u64::from(self.columns));
        if let Some(why) = super::output_too_big(w, h, SHEET_BYTES_PER_PIXEL) {
            errors.push(OptionError::stage(format!(
                "one row of the sheet is too big: {why}; use fewer `columns` or a smaller `tile`"
            )));
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
fn paths(t: &toml::Table) -> crate::stage::StagePaths {
    super::gathers_into(t, |o: ContactSheetOptions| o.path)
}

/// The sheet is built as RGBA, then copied to RGB to be encoded.
const SHEET_BYTES_PER_PIXEL: u64 = 7;

impl ContactSheetOptions {
    /// Width and height of a sheet of `n` tiles.
    fn sheet_size(&self, n: u64) -> (u64, u64) {
        let cols = u64::from(self.columns).min(n).max(1);
        let rows = n.div_ceil(cols).max(1);
        let (cell, gap) = (
            u64::from(self.tile) + u64::from(self.gap),
            u64::from(self.gap),
        );
        (cols * cell + gap, rows * cell + gap)
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
        check: crate::stage::check_options::<ContactSheetOptions>,
        meaning: crate::stage::meaning::<ContactSheetOptions>,
        revision: 1,
        build: |t, ctx| {
            Ok(Built::Stage(Arc::new(ContactSheet {
                opts: crate::stage::parse_options(t)?,
                stage: ctx.stage.clone(),
                output: ctx.output.clone(),
                tiles: Mutex::new(Vec::new()),
                left_out: Default::default(),
            })))
        },
    }
}

struct ContactSheet {
    opts: ContactSheetOptions,
    stage: String,
    output: crate::output::Guard,
    tiles: Mutex<Vec<(String, DynamicImage)>>,
    /// Images left out because the sheet would be too big with them.
    left_out: std::sync::atomic::AtomicU64,
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
            let mut tiles = self.tiles.lock().unwrap_or_else(|e| e.into_inner());
            // Tiles the sheet can't hold are not kept: holding them would
            // grow memory with the number of images.
            let (w, h) = self.opts.sheet_size(tiles.len() as u64 + 1);
            if super::output_too_big(w, h, SHEET_BYTES_PER_PIXEL).is_some() {
                self.left_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            tiles.push((item.rel_str(), tile));
        }
    }

    fn needs_every_item(&self) -> bool {
        true
    }

    fn finish(&self, _run: &crate::stage::Finish<'_>) -> Result<Vec<PathBuf>, StageError> {
        let mut tiles = std::mem::take(&mut *self.tiles.lock().unwrap_or_else(|e| e.into_inner()));
        if tiles.is_empty() {
            return Ok(Vec::new());
        }
        let left_out = self.left_out.load(std::sync::atomic::Ordering::Relaxed);
        if left_out > 0 {
            let n = tiles.len() as u64 + left_out;
            let (w, h) = self.opts.sheet_size(n);
            let why = super::output_too_big(w, h, SHEET_BYTES_PER_PIXEL).unwrap_or_default();
            return Err(StageError::new(format!(
                "a sheet of {n} images is too big: {why}; use more `columns`, a smaller `tile`, or fewer images"
            )));
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
