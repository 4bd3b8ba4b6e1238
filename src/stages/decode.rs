//! `decode`: turn file bytes into pixels, refusing oversized images before
//! allocating them and applying the EXIF orientation.

use std::io::Cursor;
use std::sync::Arc;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::colour::ColourMode;
use super::filter::Size;
use crate::item::{Item, Payload, PayloadType, Types};
use crate::stage::{Built, KindSpec, OptionError, Output, Stage, StageError, StageOptions};

/// Options of `decode`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeOptions {
    /// Rotate and flip the image as its EXIF orientation says.
    pub auto_orient: bool,
    /// Refuse images with more pixels than this (width x height), 1 to
    /// 1000000000 (default 100000000).
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub max_pixels: u64,
    /// Refuse images whose decoding would allocate more bytes than this
    /// (bytes, or e.g. "2GiB"; at most "64GiB"; default "1GiB").
    #[schemars(default = "default_max_alloc")]
    pub max_alloc: Size,
    /// Refuse files bigger than this (bytes, or e.g. "1GiB"; at most
    /// "1PiB"), before reading them; a file whose first bytes are not
    /// those of an image is refused before it is read whole.
    #[schemars(default = "super::default_max_file_size")]
    pub max_file_size: Size,
    /// "srgb": convert pixels from their embedded ICC profile to sRGB (none
    /// needed for sRGB sources; CMYK always is); "keep": leave them, the
    /// profile travels with the item and `encode` embeds it.
    pub colour: ColourMode,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            auto_orient: true,
            max_pixels: 100_000_000,
            max_alloc: default_max_alloc(),
            max_file_size: super::default_max_file_size(),
            colour: ColourMode::Srgb,
        }
    }
}

/// The largest `max_alloc` accepted: 64 GiB.
const MAX_ALLOC: u64 = 64 << 30;

fn default_max_alloc() -> Size {
    Size::Text("1GiB".into())
}

impl DecodeOptions {
    /// `max_alloc` in bytes (checked when the pipeline is).
    pub fn alloc_limit(&self) -> u64 {
        self.max_alloc.bytes().unwrap_or(super::ALLOC_BUDGET)
    }

    /// `max_file_size` in bytes (checked when the pipeline is).
    pub fn file_limit(&self) -> u64 {
        self.max_file_size
            .bytes()
            .unwrap_or(super::DEFAULT_MAX_FILE_SIZE)
    }
}

impl StageOptions for DecodeOptions {
    fn validate(&self) -> Vec<OptionError> {
        let alloc = match self.max_alloc.bytes() {
            Err(e) => Some(format!("`max_alloc`: {e}")),
            Ok(b) if b > MAX_ALLOC => Some(format!(
                "`max_alloc` must be at most 64GiB, not {}",
                crate::units::human_size(b)
            )),
            Ok(_) => None,
        };
        super::check_max_file_size(&self.max_file_size)
            .into_iter()
            .chain(alloc.map(|m| OptionError::at("max_alloc", m)))
            .collect()
    }
}

pub fn spec() -> KindSpec {
    KindSpec {
        name: "decode",
        paths: crate::stage::no_paths,
        summary: "decode JPEG, PNG, WebP, GIF (first frame), BMP, TIFF, or HEIC/AVIF (feature `heif`) into pixels",
        accepts: Types::of(&[PayloadType::Nothing, PayloadType::Bytes]),
        output: Output::Fixed(PayloadType::Image),
        schema: || schemars::schema_for!(DecodeOptions),
        check: crate::stage::check_options::<DecodeOptions>,
        meaning: crate::stage::meaning::<DecodeOptions>,
        revision: 2,
        build: |t, _ctx| {
            Ok(Built::Stage(Arc::new(Decode {
                opts: crate::stage::parse_options(t)?,
            })))
        },
    }
}

struct Decode {
    opts: DecodeOptions,
}

/// A decoded image with what was learnt on the way.
pub struct Decoded {
    pub image: DynamicImage,
    /// Format name as its usual extension (`jpg`, `png` ...).
    pub format: &'static str,
    pub icc: Option<Vec<u8>>,
    pub exif: Option<Vec<u8>>,
    pub xmp: Option<Vec<u8>>,
}

/// Decode `bytes`, checking the declared size against the limits first.
pub fn decode_bytes(bytes: &[u8], opts: &DecodeOptions) -> Result<Decoded, StageError> {
    if bytes.is_empty() {
        return Err(StageError::new("empty file"));
    }
    if let Some(family) = super::heif::sniff(bytes) {
        let limits = super::heif::Limits {
            max_pixels: opts.max_pixels,
            max_alloc: opts.alloc_limit(),
            auto_orient: opts.auto_orient,
        };
        let p = super::heif::decode(bytes, family, &limits)?;
        return Ok(Decoded {
            image: p.image,
            format: family.extension(),
            icc: p.icc,
            exif: p.exif,
            xmp: p.xmp,
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| StageError::new(format!("cannot read: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(StageError::new(super::UNRECOGNISED));
    };
    let format_name = format.extensions_str().first().copied().unwrap_or("image");
    if format == image::ImageFormat::Jpeg && jpeg_is_truncated(bytes) {
        // zune-jpeg fills a cut-off scan with grey and reports success; a
        // thumbnail of half a photo must not pass for a good one.
        return Err(StageError::new(
            "truncated JPEG: the data ends before the image does",
        ));
    }
    // libjpeg decodes what the general decoder can't; the limits are
    // checked on the frame its header gives, before any pixel.
    let by_libjpeg = || {
        let within = |f: super::libjpeg::Frame| {
            within_max_pixels(f.width, f.height, opts, "decode")?;
            within_alloc(f.width, f.height, f.bytes_per_pixel(), opts)
        };
        // 8-bit grey or RGB, which `normalise` would leave as they are.
        super::libjpeg::decode_whole(bytes, opts.auto_orient, &within)
    };
    let jpeg = format == image::ImageFormat::Jpeg;
    if jpeg && super::libjpeg::libjpeg_frame(bytes).is_some() {
        // Files only libjpeg reads right (arithmetic coding, sampling
        // zune-jpeg misreads).
        return by_libjpeg();
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(opts.alloc_limit());
    reader.limits(limits);
    let mut decoder = match reader.into_decoder() {
        Ok(decoder) => decoder,
        // As below, for a header zune-jpeg refuses.
        Err(_) if jpeg => return by_libjpeg(),
        Err(e) => {
            return Err(StageError::new(format!(
                "cannot decode {format_name}: {}",
                plain_decoder_error(&e)
            )));
        }
    };
    let (w, h) = decoder.dimensions();
    within_max_pixels(w, h, opts, "decode")?;
    // The decoder's own buffer is checked by `image` (2 bytes a channel at
    // 16 bits); the layout later stages get may be wider still.
    within_alloc(w, h, normalised_bytes_per_pixel(decoder.color_type()), opts)?;
    let mut icc = decoder.icc_profile().ok().flatten();
    let cmyk = icc
        .as_deref()
        .filter(|_| format == image::ImageFormat::Jpeg)
        .and_then(super::colour::cmyk_profile);
    let mut exif = decoder.exif_metadata().ok().flatten();
    let xmp = decoder.xmp_metadata().ok().flatten();
    let orientation = if opts.auto_orient {
        // Applied to the pixels, so cleared from the EXIF that may be kept.
        if let Some(e) = exif.as_mut() {
            let _ = image::metadata::Orientation::remove_from_exif_chunk(e);
        }
        decoder.orientation().ok()
    } else {
        None
    };
    let img = match cmyk {
        // An image holds no CMYK: converted now, whatever `colour` says.
        Some(p) => {
            drop(decoder);
            icc = None;
            super::cmyk::decode_cmyk_jpeg(bytes, &p)?
        }
        // A progressive JPEG by conveyor's own decoder, faster than
        // zune-jpeg; one it declines by zune-jpeg as before.
        None if let Some(own) = jpeg
            .then(|| super::progressive::colour_of(bytes))
            .flatten()
            .and_then(|c| super::progressive::decode(bytes, c, 8)) =>
        {
            own
        }
        None => {
            if jpeg {
                // zune-jpeg in its strict mode. A JPEG it fails on (damaged
                // coded data, which its lenient mode fills with grey; some
                // valid layouts, with an error or a panic) goes to libjpeg,
                // which decodes it or fails with its reason: plainer words
                // than zune-jpeg's, and those `thumbnail` gives.
                drop(decoder);
                let strictly =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| jpeg_strictly(bytes)));
                return match strictly {
                    Ok(Some(img)) => Ok(finish(img, orientation, format_name, icc, exif, xmp)),
                    _ => by_libjpeg(),
                };
            }
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                DynamicImage::from_decoder(decoder)
            }));
            let why = match decoded {
                Ok(Ok(img)) => return Ok(finish(img, orientation, format_name, icc, exif, xmp)),
                Ok(Err(e)) => plain_decoder_error(&e),
                Err(payload) => crate::panics::message(payload.as_ref())
                    .unwrap_or("the decoder failed")
                    .to_string(),
            };
            return Err(StageError::new(format!(
                "cannot decode {format_name}: {why}"
            )));
        }
    };
    Ok(finish(img, orientation, format_name, icc, exif, xmp))
}

/// A JPEG's pixels by zune-jpeg in its strict mode, in the layout `image`
/// gives them (grey, grey and alpha, RGB or RGBA as stored; any other
/// colour space as RGB); `None` when it fails, damaged coded data included
/// (`image` asks for the lenient mode, which fills it with grey).
fn jpeg_strictly(bytes: &[u8]) -> Option<DynamicImage> {
    use zune_core::colorspace::ColorSpace as Zune;
    use zune_core::options::DecoderOptions;
    // The headers as `image` reads them; strict mode would refuse stray
    // bytes between segments, which leave the pixels right.
    let lenient = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        lenient,
    );
    d.decode_headers().ok()?;
    let (w, h) = d.dimensions()?;
    let (w, h) = (u32::try_from(w).ok()?, u32::try_from(h).ok()?);
    let out = match d.input_colorspace()? {
        c @ (Zune::RGB | Zune::RGBA | Zune::Luma | Zune::LumaA) => c,
        _ => Zune::RGB,
    };
    d.set_options(
        d.options()
            .jpeg_set_out_colorspace(out)
            .set_strict_mode(true),
    );
    let px = d.decode().ok()?;
    match out {
        Zune::Luma => image::GrayImage::from_raw(w, h, px).map(DynamicImage::ImageLuma8),
        Zune::LumaA => image::GrayAlphaImage::from_raw(w, h, px).map(DynamicImage::ImageLumaA8),
        Zune::RGBA => image::RgbaImage::from_raw(w, h, px).map(DynamicImage::ImageRgba8),
        _ => image::RgbImage::from_raw(w, h, px).map(DynamicImage::ImageRgb8),
    }
}

/// A decoded image, oriented and normalised, with its metadata.
fn finish(
    mut img: DynamicImage,
    orientation: Option<image::metadata::Orientation>,
    format: &'static str,
    icc: Option<Vec<u8>>,
    exif: Option<Vec<u8>>,
    xmp: Option<Vec<u8>>,
) -> Decoded {
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Decoded {
        image: normalise(img),
        format,
        icc,
        exif,
        xmp,
    }
}

/// A complete JPEG has an end-of-image marker after its last start-of-scan.
/// Neither marker can occur inside entropy-coded data (0xFF is stuffed
/// there), and an embedded EXIF thumbnail comes before the main scans.
/// Put the other way: truncated when a start-of-scan follows the last
/// end-of-image, or there is no end-of-image at all; searching from the end
/// finds the end-of-image within a few bytes in a whole file.
pub(crate) fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let has_sos = |b: &[u8]| b.windows(2).any(|w| w == [0xFF, 0xDA]);
    match bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]) {
        Some(last_eoi) => has_sos(&bytes[last_eoi + 2..]),
        None => has_sos(bytes),
    }
}

/// Bytes per pixel of what [`normalise`] makes of a `color` image.
fn normalised_bytes_per_pixel(color: image::ColorType) -> u64 {
    use image::ColorType as C;
    match color {
        C::L8 => 1,
        C::L16 => 2,
        C::Rgb8 => 3,
        C::Rgb16 | C::Rgb32F => 6,
        C::La16 | C::Rgba16 | C::Rgba32F => 8,
        _ => 4,
    }
}

/// Later stages handle grey, RGB and RGBA at 8 or 16 bits per channel;
/// everything else is converted once here: grey with alpha to RGBA of its
/// depth, float pixels to 16 bits (more than 8 bits of precision kept).
pub(crate) fn normalise(img: DynamicImage) -> DynamicImage {
    use DynamicImage as D;
    match img {
        D::ImageLuma8(_) | D::ImageRgb8(_) | D::ImageRgba8(_) => img,
        D::ImageLuma16(_) | D::ImageRgb16(_) | D::ImageRgba16(_) => img,
        D::ImageLumaA16(_) | D::ImageRgba32F(_) => D::ImageRgba16(img.to_rgba16()),
        D::ImageRgb32F(_) => D::ImageRgb16(img.to_rgb16()),
        other if other.color().has_alpha() => D::ImageRgba8(other.to_rgba8()),
        other => D::ImageRgb8(other.to_rgb8()),
    }
}

impl Stage for Decode {
    fn process(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        let bytes = super::image_bytes_of(&mut item, self.opts.file_limit())?;
        let mut d = decode_bytes(&bytes, &self.opts)?;
        drop(bytes);
        let icc =
            super::colour::apply_for(&mut d.image, d.icc.take(), self.opts.colour, &item.path);
        item.meta.width = Some(d.image.width());
        item.meta.height = Some(d.image.height());
        // A second decode on the way (after an encode) sees an output, not
        // the source: the first one's facts stand.
        item.meta.source_width.get_or_insert(d.image.width());
        item.meta.source_height.get_or_insert(d.image.height());
        item.meta.source_format = Some(normalise_format_name(d.format).to_string());
        item.meta.icc = icc;
        item.meta.exif = d.exif;
        item.meta.xmp = d.xmp;
        item.payload = Payload::Image(d.image);
        Ok(Some(item))
    }

    fn plan(&self, mut item: Item) -> Result<Option<Item>, StageError> {
        if let Some((w, h)) = check_header(&item, &self.opts, "decode")? {
            item.meta.width = Some(w);
            item.meta.height = Some(h);
        }
        Ok(Some(item))
    }
}

/// What a dry run learns of an item's image without decoding it: the same
/// refusals as a real run for every file whose header decides them (too big
/// a file, no image, an empty file, more pixels than `max_pixels`, named
/// `key` in the message), so a dry run's counts match the real run's.
pub(crate) fn check_header(
    item: &Item,
    opts: &DecodeOptions,
    key: &str,
) -> Result<Option<(u32, u32)>, StageError> {
    use std::io::Read;
    /// Enough for the headers of every format read, past a large EXIF.
    const HEAD: u64 = 256 << 10;
    let head = match &item.payload {
        Payload::Bytes(b) => b[..b.len().min(HEAD as usize)].to_vec(),
        _ => {
            let file = super::open_bounded(&item.path, opts.file_limit())?;
            let mut head = Vec::new();
            file.take(HEAD)
                .read_to_end(&mut head)
                .map_err(|e| StageError::new(format!("cannot read file: {e}")))?;
            head
        }
    };
    if head.is_empty() {
        return Err(StageError::new("empty file"));
    }
    if let Some(family) = super::heif::sniff(&head) {
        if !super::heif::BUILT {
            return Err(super::heif::not_built(family));
        }
        return match super::heif::dimensions(&head) {
            Some((w, h)) => within_max_pixels(w, h, opts, key).map(Some),
            None => Ok(None),
        };
    }
    let reader = ImageReader::new(Cursor::new(&head))
        .with_guessed_format()
        .map_err(|e| StageError::new(format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(StageError::new(super::UNRECOGNISED));
    }
    // A header cut short by `HEAD` says nothing about the file; a JPEG
    // header the general decoder can't read (arithmetic coding, odd
    // sampling), libjpeg's frame does (found in the file itself when the
    // head ends before it).
    let Ok((w, h)) = reader.into_dimensions() else {
        let frame = match &item.payload {
            Payload::Bytes(b) => super::libjpeg::libjpeg_frame(b),
            _ if head.len() as u64 == HEAD => std::fs::File::open(&item.path)
                .ok()
                .and_then(super::libjpeg::libjpeg_frame_in),
            _ => super::libjpeg::libjpeg_frame(&head),
        };
        return match frame {
            Some(f) => within_max_pixels(f.width, f.height, opts, key).map(Some),
            None => Ok(None),
        };
    };
    within_max_pixels(w, h, opts, key).map(Some)
}

/// Refuse a `w` x `h` image whose pixels, `bytes_per_pixel` each, would
/// take more than `decode.max_alloc`.
fn within_alloc(
    w: u32,
    h: u32,
    bytes_per_pixel: u64,
    opts: &DecodeOptions,
) -> Result<(), StageError> {
    let wide = (u64::from(w) * u64::from(h)).saturating_mul(bytes_per_pixel);
    if wide > opts.alloc_limit() {
        return Err(StageError::new(format!(
            "image is {w}x{h}, {} of pixels, over the limit of {} (decode.max_alloc)",
            crate::units::human_size(wide),
            crate::units::human_size(opts.alloc_limit())
        )));
    }
    Ok(())
}

/// Refuse a `w` x `h` image over `max_pixels` (of the stage `key`).
fn within_max_pixels(
    w: u32,
    h: u32,
    opts: &DecodeOptions,
    key: &str,
) -> Result<(u32, u32), StageError> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > opts.max_pixels {
        return Err(StageError::new(format!(
            "image is {w}x{h} ({pixels} pixels), over the limit of {} pixels ({key}.max_pixels)",
            opts.max_pixels
        )));
    }
    Ok((w, h))
}

/// A decoder's error as one line of plain words: the decoders' own prefix
/// ("Format error decoding Png:") and their debug dumps of chunk types
/// (`ChunkType { type: IHDR, critical: true, ... }`) are left out.
pub(crate) fn plain_decoder_error(e: &image::ImageError) -> String {
    let text = e.to_string();
    let mut text = match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("Format error decoding") => rest.to_string(),
        _ => text,
    };
    while let Some(i) = text.find("ChunkType { type: ") {
        let after = &text[i + "ChunkType { type: ".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let end = after
            .find('}')
            .map_or(text.len(), |j| i + "ChunkType { type: ".len() + j + 1);
        text.replace_range(i..end, &name);
    }
    text.trim_end_matches('.').replace("\n", " ")
}

pub(crate) fn normalise_format_name(ext: &str) -> &str {
    match ext {
        "jpg" | "jpeg" => "jpeg",
        "tif" | "tiff" => "tiff",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::{DecodeOptions, decode_bytes, jpeg_is_truncated};

    /// A JPEG of `w` x `h` whose luma is sampled 1x1 and chroma `chroma`
    /// (finer than the luma, which is valid, and which zune-jpeg decodes
    /// wrongly when baseline and fails on when progressive), by mozjpeg.
    fn chroma_finer_than_luma(w: u32, h: u32, chroma: (i32, i32), progressive: bool) -> Vec<u8> {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        // libjpeg's defaults: mozjpeg's own make every file progressive.
        c.set_fastest_defaults();
        c.set_size(w as usize, h as usize);
        c.set_quality(90.0);
        if progressive {
            c.set_progressive_mode();
        }
        for (i, comp) in c.components_mut().iter_mut().enumerate() {
            let (hs, vs) = if i == 0 { (1, 1) } else { chroma };
            comp.h_samp_factor = hs;
            comp.v_samp_factor = vs;
        }
        let pixels: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [
                    (x * 7 % 256) as u8,
                    (y * 5 % 256) as u8,
                    ((x * y) % 251) as u8,
                ]
            })
            .collect();
        let mut started = c.start_compress(Vec::new()).expect("start");
        started.write_scanlines(&pixels).expect("write");
        started.finish().expect("finish")
    }

    /// libjpeg's RGB decode.
    fn by_libjpeg(bytes: &[u8]) -> Vec<u8> {
        let dec = mozjpeg::Decompress::new_mem(bytes).expect("header");
        let mut started = dec.rgb().expect("start");
        let data: Vec<u8> = started.read_scanlines().expect("read");
        started.finish().expect("finish");
        data
    }

    #[test]
    fn jpegs_zune_jpeg_misreads_are_decoded_by_libjpeg() {
        let opts = DecodeOptions::default();
        for (w, h) in [(5, 7), (3, 31), (17, 9), (64, 48), (203, 157)] {
            for chroma in [(2, 2), (2, 1)] {
                for progressive in [true, false] {
                    let what = format!("{w}x{h} chroma {chroma:?} progressive {progressive}");
                    let bytes = chroma_finer_than_luma(w, h, chroma, progressive);
                    let d = decode_bytes(&bytes, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!((d.image.width(), d.image.height()), (w, h), "{what}");
                    let want = by_libjpeg(&bytes);
                    let got = d.image.to_rgb8().into_raw();
                    let max = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max();
                    // libjpeg's own pixels.
                    assert_eq!(max, Some(0), "{what}");
                }
            }
        }
    }

    #[test]
    fn damaged_coded_data_fails_and_stray_bytes_pass() {
        // Bytes between segments leave the pixels right: decoded. A garbled
        // scan (damaged coded data) fails with libjpeg's reason, whichever
        // decoder met it first: zune-jpeg (baseline), conveyor's own
        // (progressive), libjpeg (chroma finer than luma).
        let baseline = {
            let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
            c.set_fastest_defaults();
            c.set_size(203, 157);
            let pixels: Vec<u8> = (0..203 * 157)
                .flat_map(|i| [(i % 203) as u8, 90, 40])
                .collect();
            let mut started = c.start_compress(Vec::new()).expect("start");
            started.write_scanlines(&pixels).expect("write");
            started.finish().expect("finish")
        };
        let files = [
            ("baseline", baseline),
            (
                "progressive",
                chroma_finer_than_luma(203, 157, (1, 1), true),
            ),
            ("finer", chroma_finer_than_luma(203, 157, (2, 2), true)),
        ];
        for (kind, whole) in files {
            let last_scan = whole
                .windows(2)
                .rposition(|w| w == [0xFF, 0xDA])
                .expect("a scan");
            let mut stray = whole.clone();
            stray.splice(last_scan..last_scan, [0x00, 0x11, 0x22]);
            let good = decode_bytes(&whole, &DecodeOptions::default()).expect("decodes");
            let d = decode_bytes(&stray, &DecodeOptions::default())
                .unwrap_or_else(|e| panic!("{kind}, stray bytes: {e}"));
            // The same pixels, or (decoded by another of the decoders)
            // within a few levels of them.
            let (got, want) = (
                d.image.to_rgb8().into_raw(),
                good.image.to_rgb8().into_raw(),
            );
            assert_eq!(got.len(), want.len(), "{kind}, stray bytes");
            let max = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(
                max.is_some_and(|m| m <= 4),
                "{kind}, stray bytes: max {max:?}"
            );
            let mut garbled = whole.clone();
            for at in (last_scan + 20..garbled.len() - 2).step_by(5) {
                garbled[at] = 0xFF;
                garbled[at + 1] = 0;
            }
            let result =
                std::panic::catch_unwind(|| decode_bytes(&garbled, &DecodeOptions::default()));
            let Err(e) = result.expect("no panic") else {
                panic!("{kind}, garbled: decoded");
            };
            let msg = e.to_string();
            assert!(
                msg.starts_with("cannot decode jpg: Corrupt JPEG data: "),
                "{kind}: {msg}"
            );
        }
    }

    #[test]
    fn truncation_is_found_wherever_the_data_stops() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/photos/meadow.jpg");
        let whole = std::fs::read(path).expect("sample");
        assert!(!jpeg_is_truncated(&whole));
        // Bytes after the end-of-image (some cameras pad) are harmless.
        let mut padded = whole.clone();
        padded.extend_from_slice(&[0, 0, 0xFF, 0x00]);
        assert!(!jpeg_is_truncated(&padded));
        for cut in [whole.len() - 2, whole.len() / 2, 700] {
            assert!(jpeg_is_truncated(&whole[..cut]), "cut at {cut}");
        }
        // Two images glued together, the second cut short.
        let mut glued = whole.clone();
        glued.extend_from_slice(&whole[..whole.len() / 2]);
        assert!(jpeg_is_truncated(&glued));
        // Before any scan there is nothing to call truncated.
        assert!(!jpeg_is_truncated(&whole[..4]));
    }
}
