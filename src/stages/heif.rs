//! HEIC/HEIF and AVIF input. The files are recognised by their first bytes
//! in every build; they are decoded through the system libheif only when
//! conveyor is built with the cargo feature `heif`, and otherwise fail one
//! by one with a message that says how to get them read.

use image::DynamicImage;

use crate::stage::StageError;

/// What decoding must respect: `decode`'s options that apply here.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_pixels: u64,
    /// Bytes the decoding may allocate.
    pub max_alloc: u64,
    /// Turn the image as its EXIF orientation says (when its own boxes
    /// don't).
    pub auto_orient: bool,
}

/// A decoded HEIF or AVIF image and what came with it.
pub struct Picture {
    pub image: DynamicImage,
    pub icc: Option<Vec<u8>>,
    pub exif: Option<Vec<u8>>,
    pub xmp: Option<Vec<u8>>,
}

/// The two families of ISO base media image files conveyor tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// HEIC/HEIF: HEVC-coded images (phones, cameras).
    Heic,
    /// AVIF: AV1-coded images.
    Avif,
}

impl Family {
    /// The format's name as its usual extension.
    pub fn extension(self) -> &'static str {
        match self {
            Family::Heic => "heic",
            Family::Avif => "avif",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Family::Heic => "HEIC/HEIF",
            Family::Avif => "AVIF",
        }
    }
}

/// Brands of HEVC-coded HEIF files (ISO/IEC 23008-12).
const HEIC_BRANDS: [&[u8; 4]; 8] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs",
];
/// Brands of AV1-coded files.
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];
/// Brands that say only "an image file of this structure".
const GENERIC_BRANDS: [&[u8; 4]; 2] = [b"mif1", b"msf1"];

/// Whether `head` (the first bytes of a file) starts a HEIF or AVIF file:
/// an `ftyp` box whose brands name one of them.
pub fn sniff(head: &[u8]) -> Option<Family> {
    if head.len() < 12 || &head[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    // Major brand, minor version, then compatible brands to the box's end
    // (or to what was read of it).
    let end = size.clamp(12, head.len().max(12)).min(head.len());
    let major: &[u8] = &head[8..12];
    let compatible = head.get(16..end).unwrap_or_default().chunks_exact(4);
    let brands: Vec<&[u8]> = std::iter::once(major).chain(compatible).collect();
    let has = |set: &[&[u8; 4]]| brands.iter().any(|b| set.iter().any(|s| &s[..] == *b));
    let major_is = |set: &[&[u8; 4]]| set.iter().any(|s| &s[..] == major);
    if major_is(&AVIF_BRANDS) {
        Some(Family::Avif)
    } else if major_is(&HEIC_BRANDS) {
        Some(Family::Heic)
    } else if has(&AVIF_BRANDS) {
        Some(Family::Avif)
    } else if has(&HEIC_BRANDS) || has(&GENERIC_BRANDS) {
        Some(Family::Heic)
    } else {
        None
    }
}

/// Why a file of `family` can't be read by this build.
pub fn not_built(family: Family) -> StageError {
    StageError::new(format!(
        "{} support is not built in: build with `--features heif` (needs libheif)",
        family.words()
    ))
}

/// Whether this build reads HEIF and AVIF files.
pub const BUILT: bool = cfg!(feature = "heif");

/// Decode a HEIF or AVIF file: the primary image, upright, with its ICC
/// profile and EXIF; refused before decoding when it has more pixels than
/// `max_pixels` or would need more than `max_alloc`.
#[cfg(not(feature = "heif"))]
pub fn decode(_bytes: &[u8], family: Family, _limits: &Limits) -> Result<Picture, StageError> {
    Err(not_built(family))
}

/// The size of the primary image, read from the file's header, if it can
/// be (`None` when the header is cut short or the build can't read it).
#[cfg(not(feature = "heif"))]
pub fn dimensions(_head: &[u8]) -> Option<(u32, u32)> {
    None
}

#[cfg(feature = "heif")]
pub use with_libheif::{decode, dimensions};

#[cfg(feature = "heif")]
mod with_libheif {
    use image::{DynamicImage, ImageBuffer};
    use libheif_rs::{ColorSpace, HeifContext, ImageHandle, RgbChroma};

    use super::{Family, Limits, Picture};
    use crate::stage::StageError;

    fn heif_error(family: Family, e: &libheif_rs::HeifError) -> StageError {
        let what = if e.message.is_empty() {
            format!("{:?}", e.code)
        } else {
            e.message.clone()
        };
        StageError::new(format!("cannot decode {}: {what}", family.words()))
    }

    pub fn dimensions(head: &[u8]) -> Option<(u32, u32)> {
        let ctx = HeifContext::read_from_bytes(head).ok()?;
        let handle = ctx.primary_image_handle().ok()?;
        Some((handle.width(), handle.height()))
    }

    pub fn decode(bytes: &[u8], family: Family, opts: &Limits) -> Result<Picture, StageError> {
        let fail = |e: libheif_rs::HeifError| heif_error(family, &e);
        let ctx = HeifContext::read_from_bytes(bytes).map_err(fail)?;
        let handle = ctx.primary_image_handle().map_err(fail)?;
        let (w, h) = (handle.width(), handle.height());
        let deep = handle.luma_bits_per_pixel() > 8;
        let alpha = handle.has_alpha_channel();
        check_size(w, h, deep, alpha, opts)?;
        // libheif always applies the file's own rotation and mirror boxes
        // (they are part of a HEIF image's geometry). Files that have them
        // (Apple's) carry the same turn in EXIF, which must then be
        // ignored; files without them (made from a JPEG by other tools)
        // carry it only in EXIF.
        let boxed_turn = has_transform_boxes(bytes);
        let chroma = match (deep, alpha) {
            (false, false) => RgbChroma::Rgb,
            (false, true) => RgbChroma::Rgba,
            (true, false) => RgbChroma::HdrRgbLe,
            (true, true) => RgbChroma::HdrRgbaLe,
        };
        let image = handle.decode(ColorSpace::Rgb(chroma), None).map_err(fail)?;
        let mut img = to_dynamic(&image, alpha, deep).ok_or_else(|| {
            StageError::new(format!("cannot decode {}: no pixels", family.words()))
        })?;
        let icc = handle
            .color_profile_raw()
            .map(|p| p.data)
            .filter(|d| d.len() > 128);
        let mut exif = exif_of(&handle);
        if opts.auto_orient {
            let turn = exif
                .as_mut()
                .and_then(|e| image::metadata::Orientation::remove_from_exif_chunk(e));
            if let (Some(o), false) = (turn, boxed_turn) {
                img.apply_orientation(o);
            }
        }
        Ok(Picture {
            image: img,
            icc,
            exif,
            xmp: xmp_of(&handle),
        })
    }

    /// The same limits as for every other format, before any pixel is made.
    fn check_size(
        w: u32,
        h: u32,
        deep: bool,
        alpha: bool,
        opts: &Limits,
    ) -> Result<(), StageError> {
        let pixels = u64::from(w) * u64::from(h);
        if pixels > opts.max_pixels {
            return Err(StageError::new(format!(
                "image is {w}x{h} ({pixels} pixels), over the limit of {} pixels (decode.max_pixels)",
                opts.max_pixels
            )));
        }
        let per_pixel = (if alpha { 4 } else { 3 }) * (if deep { 2 } else { 1 });
        // libheif holds the coded planes and the RGB image at once.
        let bytes = pixels.saturating_mul(per_pixel * 2);
        if bytes > opts.max_alloc {
            return Err(StageError::new(format!(
                "image is {w}x{h}: decoding it needs about {}, over `max_alloc` ({})",
                crate::units::human_size(bytes),
                crate::units::human_size(opts.max_alloc)
            )));
        }
        Ok(())
    }

    /// The decoded image's interleaved plane as an `image` buffer: 8 bits,
    /// or more bits scaled up to 16.
    fn to_dynamic(image: &libheif_rs::Image, alpha: bool, deep: bool) -> Option<DynamicImage> {
        let planes = image.planes();
        let plane = planes.interleaved?;
        let (w, h) = (plane.width, plane.height);
        let channels: usize = if alpha { 4 } else { 3 };
        let row = w as usize * channels;
        if !deep {
            let mut data = Vec::with_capacity(row * h as usize);
            for y in 0..h as usize {
                data.extend_from_slice(plane.data.get(y * plane.stride..y * plane.stride + row)?);
            }
            return if alpha {
                ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgba8)
            } else {
                ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgb8)
            };
        }
        let bits = u32::from(plane.bits_per_pixel.clamp(9, 16));
        let mut data: Vec<u16> = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            let line = plane
                .data
                .get(y * plane.stride..y * plane.stride + row * 2)?;
            data.extend(line.chunks_exact(2).map(|b| {
                let v = u32::from(u16::from_le_bytes([b[0], b[1]]));
                // Spread N bits over 16: the top bits repeat into the low
                // ones, so full scale stays full scale.
                ((v << (16 - bits)) | (v >> (2 * bits - 16))) as u16
            }));
        }
        if alpha {
            ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgba16)
        } else {
            ImageBuffer::from_raw(w, h, data).map(DynamicImage::ImageRgb16)
        }
    }

    /// The image's EXIF as TIFF bytes: HEIF stores it after a 4-byte offset
    /// to the TIFF header.
    fn exif_of(handle: &ImageHandle) -> Option<Vec<u8>> {
        let mut ids = [0u32; 1];
        if handle.metadata_block_ids(&mut ids, b"Exif") == 0 {
            return None;
        }
        let block = handle.metadata(ids[0]).ok()?;
        let skip = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
        let tiff = block.get(4usize.checked_add(skip)?..)?;
        (tiff.len() >= 8).then(|| tiff.to_vec())
    }

    /// The image's XMP packet: a `mime` metadata block of RDF/XML.
    fn xmp_of(handle: &ImageHandle) -> Option<Vec<u8>> {
        let mut ids = [0u32; 4];
        let n = handle.metadata_block_ids(&mut ids, b"mime").min(ids.len());
        ids[..n]
            .iter()
            .find(|&&id| handle.metadata_content_type(id) == Some("application/rdf+xml"))
            .and_then(|&id| handle.metadata(id).ok())
    }

    /// Whether the file has rotation (`irot`) or mirror (`imir`) boxes:
    /// item properties in `meta` > `iprp` > `ipco`.
    fn has_transform_boxes(bytes: &[u8]) -> bool {
        let Some(meta) = child(bytes, b"meta") else {
            return false;
        };
        // `meta` is a full box: version and flags come first.
        let ipco = meta
            .get(4..)
            .and_then(|m| child(m, b"iprp"))
            .and_then(|p| child(p, b"ipco"));
        ipco.is_some_and(|props| boxes(props).any(|(kind, _)| kind == b"irot" || kind == b"imir"))
    }

    /// The content of the first box of type `kind` among `data`'s boxes.
    fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
        boxes(data).find(|(k, _)| k == kind).map(|(_, body)| body)
    }

    /// The boxes laid end to end in `data`, as (type, content); stops at
    /// the first box whose size does not fit.
    fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            let head = data.get(at..at.checked_add(8)?)?;
            let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let (start, end) = match size {
                1 => {
                    let big = data.get(at + 8..at + 16)?;
                    let big = usize::try_from(u64::from_be_bytes(big.try_into().ok()?)).ok()?;
                    (at + 16, at.checked_add(big)?)
                }
                0 => (at + 8, data.len()),
                n => (at + 8, at.checked_add(n)?),
            };
            if end < start || end > data.len() {
                return None;
            }
            let kind = &data[at + 4..at + 8];
            at = end;
            Some((kind, &data[start..end]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Family, sniff};

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut b = (size as u32).to_be_bytes().to_vec();
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0, 0, 0, 0]);
        for c in compatible {
            b.extend_from_slice(*c);
        }
        b
    }

    #[test]
    fn brands_decide_the_family() {
        assert_eq!(
            sniff(&ftyp(b"heic", &[b"mif1", b"heic"])),
            Some(Family::Heic)
        );
        assert_eq!(
            sniff(&ftyp(b"avif", &[b"mif1", b"avif"])),
            Some(Family::Avif)
        );
        assert_eq!(sniff(&ftyp(b"mif1", &[b"avif"])), Some(Family::Avif));
        assert_eq!(sniff(&ftyp(b"mif1", &[b"heic"])), Some(Family::Heic));
        assert_eq!(sniff(&ftyp(b"isom", &[b"mp41"])), None, "a video");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0 a jpeg...."), None);
        assert_eq!(sniff(b"short"), None);
        // A size that lies (too big or too small) reads what is there.
        let mut lying = ftyp(b"mif1", &[b"avif"]);
        lying[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(sniff(&lying), Some(Family::Avif));
        lying[..4].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(sniff(&lying), Some(Family::Heic), "generic brand only");
    }
}
