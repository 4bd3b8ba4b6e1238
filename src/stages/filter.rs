//! `filter`: keep only the items that pass every test given (extension,
//! size, dimensions, path glob); the others are counted as filtered.

use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::{Item, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};
use crate::units::parse_size;

/// A size as bytes (`1048576`) or with a unit (`"1MiB"`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Size {
    Bytes(#[schemars(range(min = 0, max = crate::units::MAX_SIZE))] u64),
    Text(String),
}

impl Size {
    /// The size in bytes, at most 1 PiB.
    pub fn bytes(&self) -> Result<u64, crate::units::UnitError> {
        match self {
            Size::Bytes(b) if *b > crate::units::MAX_SIZE => {
                Err(crate::units::UnitError::SizeTooLarge(b.to_string()))
            }
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => parse_size(t),
        }
    }
}

/// Options of `filter`. An item is kept when it passes every test given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FilterOptions {
    /// File extensions to keep, without the dot, any case (["jpg", "png"]).
    pub extensions: Vec<String>,
    /// Smallest file size to keep (bytes, or e.g. "10KiB"; at most "1PiB").
    pub min_size: Option<Size>,
    /// Largest file size to keep (at most "1PiB").
    pub max_size: Option<Size>,
    /// Smallest width to keep, in pixels, 0 to 100000.
    #[schemars(range(min = 0, max = super::MAX_SIDE))]
    pub min_width: Option<u32>,
    /// Smallest height to keep, in pixels, 0 to 100000.
    #[schemars(range(min = 0, max = super::MAX_SIDE))]
    pub min_height: Option<u32>,
    /// Largest width to keep, in pixels, 0 to 100000.
    #[schemars(range(min = 0, max = super::MAX_SIDE))]
    pub max_width: Option<u32>,
    /// Largest height to keep, in pixels, 0 to 100000.
    #[schemars(range(min = 0, max = super::MAX_SIDE))]
    pub max_height: Option<u32>,
    /// Glob the path relative to the scan root must match.
    #[serde(rename = "match")]
    pub pattern: Option<String>,
}

impl StageOptions for FilterOptions {
    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        for (key, size) in [("min_size", &self.min_size), ("max_size", &self.max_size)] {
            if let Some(Err(e)) = size.as_ref().map(Size::bytes) {
                errors.push(OptionError::at(key, e.to_string()));
            }
        }
        if let Some(p) = &self.pattern
            && let Err(e) = GlobBuilder::new(p).build()
        {
            errors.push(OptionError::at(
                "match",
                format!("invalid glob `{p}`: {}", e.kind()),
            ));
        }
        errors
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "filter",
        paths: crate::stage::no_paths,
        summary: "keep items by extension, size, dimensions or path glob; others are counted as filtered",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes, PayloadType::Image]),
        output: Output::SameAsInput,
        schema: || schemars::schema_for!(FilterOptions),
        check: crate::stage::check_options::<FilterOptions>,
        meaning: crate::stage::no_meaning,
        revision: 1,
        build: |t, _ctx| {
            let opts: FilterOptions = crate::stage::parse_options(t)?;
            let matcher = match &opts.pattern {
                Some(p) => Some(
                    GlobBuilder::new(p)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| e.to_string())?
                        .compile_matcher(),
                ),
                None => None,
            };
            Ok(Built::Stage(Arc::new(Filter {
                min_size: opts.min_size.as_ref().map(Size::bytes).transpose()?,
                max_size: opts.max_size.as_ref().map(Size::bytes).transpose()?,
                extensions: opts
                    .extensions
                    .iter()
                    .map(|e| e.trim_start_matches('.').to_lowercase())
                    .collect(),
                opts,
                matcher,
            })))
        },
    }
}

struct Filter {
    opts: FilterOptions,
    extensions: Vec<String>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    matcher: Option<GlobMatcher>,
}

impl Filter {
    fn wants_dims(&self) -> bool {
        let o = &self.opts;
        o.min_width.is_some()
            || o.min_height.is_some()
            || o.max_width.is_some()
            || o.max_height.is_some()
    }

    /// Width and height: known from a decode, else read from the header.
    fn dims(item: &Item) -> Result<(u32, u32), StageError> {
        match (&item.payload, item.meta.width, item.meta.height) {
            (Payload::Image(img), _, _) => Ok((img.width(), img.height())),
            (_, Some(w), Some(h)) => Ok((w, h)),
            (Payload::Bytes(b), _, _) => image::ImageReader::new(std::io::Cursor::new(b))
                .with_guessed_format()
                .map_err(|e| StageError::new(e.to_string()))?
                .into_dimensions()
                .or_else(|e| libjpeg_dims(b).ok_or(e))
                .map_err(|e| StageError::new(format!("cannot read image size: {e}"))),
            _ => image::ImageReader::open(&item.path)
                .and_then(|r| r.with_guessed_format())
                .map_err(|e| StageError::new(e.to_string()))?
                .into_dimensions()
                .or_else(|e| {
                    // A JPEG header the general decoder can't read
                    // (arithmetic coding, odd sampling): libjpeg's frame
                    // gives the size.
                    std::fs::File::open(&item.path)
                        .ok()
                        .and_then(super::libjpeg::libjpeg_frame_in)
                        .map(|f| (f.width, f.height))
                        .ok_or(e)
                })
                .map_err(|e| StageError::new(format!("cannot read image size: {e}"))),
        }
    }
}

/// The size of a JPEG starting with `head` that only libjpeg reads right.
fn libjpeg_dims(head: &[u8]) -> Option<(u32, u32)> {
    super::libjpeg::libjpeg_frame(head).map(|f| (f.width, f.height))
}

impl Stage for Filter {
    fn plan(&self, item: Item) -> Result<Option<Item>, StageError> {
        // Reads at most an image header: allowed in a dry run.
        self.process(item)
    }

    fn process(&self, item: Item) -> Result<Option<Item>, StageError> {
        if !self.extensions.is_empty() {
            let ext = item
                .rel
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if !self.extensions.contains(&ext) {
                return Ok(None);
            }
        }
        if let Some(m) = &self.matcher
            && !m.is_match(item.rel_str())
        {
            return Ok(None);
        }
        if self.min_size.is_some() || self.max_size.is_some() {
            let size = match item.meta.size {
                Some(s) => s,
                None => std::fs::metadata(&item.path)
                    .map_err(|e| StageError::new(format!("cannot stat: {e}")))?
                    .len(),
            };
            if self.min_size.is_some_and(|m| size < m) || self.max_size.is_some_and(|m| size > m) {
                return Ok(None);
            }
        }
        if self.wants_dims() {
            let (w, h) = Self::dims(&item)?;
            let o = &self.opts;
            let out = o.min_width.is_some_and(|m| w < m)
                || o.min_height.is_some_and(|m| h < m)
                || o.max_width.is_some_and(|m| w > m)
                || o.max_height.is_some_and(|m| h > m);
            if out {
                return Ok(None);
            }
        }
        Ok(Some(item))
    }
}
