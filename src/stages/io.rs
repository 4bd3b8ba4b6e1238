//! What kinds share beyond the contract: the limits on what they read and
//! make, reading a file within `max_file_size`, and changing a decoded image.

use std::path::Path;

use super::filter;
use crate::item::Item;
use crate::stage::{OptionError, StageError};

/// The longest side, in pixels, that any option may give (widths, heights,
/// offsets, margins).
pub const MAX_SIDE: u32 = 100_000;

/// The most pixels an image made by a stage (resized, cropped, tiled) may
/// have: the same as `decode`'s default `max_pixels`.
pub const MAX_OUTPUT_PIXELS: u64 = 100_000_000;

/// The most bytes a stage may allocate for one image's pixels (as `decode`'s
/// default `max_alloc`).
pub const ALLOC_BUDGET: u64 = 1 << 30;

/// Why a `w` x `h` image of `bytes_per_pixel` can't be made, if it can't:
/// over [`MAX_OUTPUT_PIXELS`] or the allocation budget. Checked before
/// allocating, so a huge size fails the item instead of the process.
pub fn output_too_big(w: u64, h: u64, bytes_per_pixel: u64) -> Option<String> {
    let pixels = w.saturating_mul(h);
    if pixels > MAX_OUTPUT_PIXELS {
        return Some(format!(
            "the output would be {w}x{h} ({pixels} pixels), over the limit of {MAX_OUTPUT_PIXELS} pixels"
        ));
    }
    let bytes = pixels.saturating_mul(bytes_per_pixel);
    (bytes > ALLOC_BUDGET).then(|| {
        format!(
            "the output would be {w}x{h}, {} of pixels, over the budget of {}",
            crate::units::human_size(bytes),
            crate::units::human_size(ALLOC_BUDGET)
        )
    })
}

/// The largest file a stage reads unless told otherwise (`max_file_size`).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 30;

/// The `max_file_size` option of the kinds that read files.
pub fn default_max_file_size() -> filter::Size {
    filter::Size::Text("1GiB".into())
}

/// Check a `max_file_size` option.
pub fn check_max_file_size(size: &filter::Size) -> Option<OptionError> {
    size.bytes()
        .err()
        .map(|e| OptionError::at("max_file_size", format!("`max_file_size`: {e}")))
}

/// The reason a file of `len` bytes is refused under `limit`.
pub(crate) fn too_large(len: u64, limit: u64) -> StageError {
    use crate::units::human_size;
    StageError::new(format!(
        "file is {}, over `max_file_size` ({})",
        human_size(len),
        human_size(limit)
    ))
}

/// Why a file that is no image is refused, with what conveyor does read.
#[cfg(feature = "heif")]
pub(crate) const UNRECOGNISED: &str = "not a recognised image format (conveyor reads JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF and AVIF)";
/// Why a file that is no image is refused, with what conveyor does read.
#[cfg(not(feature = "heif"))]
pub(crate) const UNRECOGNISED: &str = "not a recognised image format (conveyor reads JPEG, PNG, WebP, GIF, BMP and TIFF; HEIC/HEIF and AVIF when built with `--features heif`)";

/// Open an item's file and refuse it if its size is over `limit`.
pub(crate) fn open_bounded(path: &Path, limit: u64) -> Result<std::fs::File, StageError> {
    let file =
        std::fs::File::open(path).map_err(|e| StageError::new(format!("cannot read file: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| StageError::new(format!("cannot read file: {e}")))?
        .len();
    if len > limit {
        return Err(too_large(len, limit));
    }
    Ok(file)
}

/// Read the rest of `file` (after `head`), at most `limit` bytes in all: a
/// file that grows while it is read is still cut off at the limit.
fn read_rest_bounded(
    mut file: std::fs::File,
    mut head: Vec<u8>,
    limit: u64,
) -> Result<Vec<u8>, StageError> {
    use std::io::Read;
    let hint = file
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0)
        .min(limit.saturating_add(1));
    head.reserve(
        usize::try_from(hint)
            .unwrap_or(0)
            .saturating_sub(head.len()),
    );
    let left = (limit + 1).saturating_sub(head.len() as u64);
    (&mut file)
        .take(left)
        .read_to_end(&mut head)
        .map_err(|e| StageError::new(format!("cannot read file: {e}")))?;
    if head.len() as u64 > limit {
        return Err(too_large(head.len() as u64, limit));
    }
    Ok(head)
}

/// Take the bytes of an item: its payload if it carries bytes, else the file,
/// refused when over `limit` bytes (a kind's `max_file_size`).
pub(crate) fn bytes_of(item: &mut Item, limit: u64) -> Result<Vec<u8>, StageError> {
    take_bytes(item, limit, false)
}

/// As [`bytes_of`], for bytes that must be an image: a file whose first bytes
/// are not those of an image format is refused before it is read whole.
pub(crate) fn image_bytes_of(item: &mut Item, limit: u64) -> Result<Vec<u8>, StageError> {
    take_bytes(item, limit, true)
}

fn take_bytes(item: &mut Item, limit: u64, image_only: bool) -> Result<Vec<u8>, StageError> {
    match std::mem::take(&mut item.payload) {
        crate::item::Payload::Bytes(b) => {
            if b.len() as u64 > limit {
                return Err(too_large(b.len() as u64, limit));
            }
            Ok(b)
        }
        crate::item::Payload::Nothing => {
            use std::io::Read;
            let mut file = open_bounded(&item.path, limit)?;
            let mut head = Vec::with_capacity(64);
            (&mut file)
                .take(64)
                .read_to_end(&mut head)
                .map_err(|e| StageError::new(format!("cannot read file: {e}")))?;
            if image_only
                && !head.is_empty()
                && image::guess_format(&head).is_err()
                && super::heif::sniff(&head).is_none()
            {
                // The same words as when the whole file is read: only when it
                // is learnt differs.
                return Err(StageError::new(UNRECOGNISED));
            }
            let bytes = read_rest_bounded(file, head, limit)?;
            item.meta.size = Some(bytes.len() as u64);
            Ok(bytes)
        }
        crate::item::Payload::Image(_) | crate::item::Payload::Shared(_) => {
            Err(StageError::new("expected bytes, got a decoded image"))
        }
    }
}

/// Apply `f` to an item's decoded image and record the new size.
pub(crate) fn map_image(
    mut item: Item,
    f: impl FnOnce(image::DynamicImage) -> Result<image::DynamicImage, StageError>,
) -> Result<Option<Item>, StageError> {
    let crate::item::Payload::Image(img) = std::mem::take(&mut item.payload) else {
        return Err(StageError::new("expected a decoded image"));
    };
    let out = f(img)?;
    item.meta.width = Some(out.width());
    item.meta.height = Some(out.height());
    item.payload = crate::item::Payload::Image(out);
    Ok(Some(item))
}

/// The `paths` of a kind whose options `T` say where it writes: `dir` and
/// a `filename` template (`None`: it writes nothing with these options).
pub(crate) fn writes_under<T: crate::stage::StageOptions>(
    table: &toml::Table,
    target: impl FnOnce(T) -> Option<(String, String)>,
) -> crate::stage::StagePaths {
    match crate::stage::parse_options::<T>(table)
        .ok()
        .and_then(target)
    {
        Some((dir, filename)) => crate::stage::StagePaths::Writes {
            dir: dir.into(),
            filename,
        },
        None => crate::stage::StagePaths::None,
    }
}

/// The `paths` of a gathering kind whose options `T` name its one file.
pub(crate) fn gathers_into<T: crate::stage::StageOptions>(
    table: &toml::Table,
    path: impl FnOnce(T) -> String,
) -> crate::stage::StagePaths {
    match crate::stage::parse_options::<T>(table) {
        Ok(o) => crate::stage::StagePaths::Gathers(path(o).into()),
        Err(_) => crate::stage::StagePaths::None,
    }
}

/// The checks every writer's `dir` and `filename` get: a folder is named,
/// and the template stays inside it.
pub(crate) fn check_writer(what: &str, dir: &str, filename: &str) -> Vec<OptionError> {
    let mut errors = Vec::new();
    if dir.is_empty() {
        errors.push(OptionError::stage(format!(
            "`{what}` needs `dir`, the folder to {what} into"
        )));
    }
    errors.extend(super::template::validate(filename, "filename"));
    errors
}
