//! WebP through libwebp (the `webp` crate, built from C by cargo): lossy by
//! default, lossless on request. libwebp's simple API writes no metadata,
//! so when there is some, the file is rewrapped here in the extended
//! container: a `VP8X` header with flags, then `ICCP`, the image chunks,
//! `EXIF` and `XMP ` in the order the container spec gives.

use image::DynamicImage;

use super::EncodeOptions;
use super::metadata::Embed;
use crate::stage::StageError;

/// The largest width or height WebP can store (14 bits).
const MAX_SIDE: u32 = 16383;

/// `VP8X` flag bits.
const FLAG_ICC: u8 = 0x20;
const FLAG_ALPHA: u8 = 0x10;
const FLAG_EXIF: u8 = 0x08;
const FLAG_XMP: u8 = 0x04;

pub(super) fn encode(
    img: &DynamicImage,
    opts: &EncodeOptions,
    embed: &Embed,
) -> Result<Vec<u8>, StageError> {
    use webp::{Encoder, PixelLayout};
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(StageError::new(format!(
            "{w}x{h} does not fit WebP (1 to {MAX_SIDE} pixels a side)"
        )));
    }
    // libwebp takes 8-bit RGB or RGBA.
    let alpha = img.color().has_alpha();
    let converted;
    let (data, layout): (&[u8], PixelLayout) = match img {
        DynamicImage::ImageRgb8(b) => (b.as_raw(), PixelLayout::Rgb),
        DynamicImage::ImageRgba8(b) => (b.as_raw(), PixelLayout::Rgba),
        other if alpha => {
            converted = other.to_rgba8().into_raw();
            (&converted[..], PixelLayout::Rgba)
        }
        other => {
            converted = other.to_rgb8().into_raw();
            (&converted[..], PixelLayout::Rgb)
        }
    };
    let enc = Encoder::new(data, layout, w, h);
    // For lossless, libwebp reads `quality` as effort: 75 is its default.
    let quality = if opts.lossless {
        75.0
    } else {
        f32::from(opts.quality)
    };
    let memory = enc
        .encode_simple(opts.lossless, quality)
        .map_err(|e| StageError::new(format!("WebP encoding failed: {e:?}")))?;
    let plain = memory.to_vec();
    if embed.icc.is_none() && embed.exif.is_none() && embed.xmp.is_none() {
        return Ok(plain);
    }
    extended(&plain, w, h, alpha, embed)
        .ok_or_else(|| StageError::new("libwebp wrote a WebP file this encoder cannot read back"))
}

/// The chunks of a RIFF WebP file: (fourcc, payload).
fn chunks(file: &[u8]) -> Option<Vec<([u8; 4], &[u8])>> {
    if file.get(..4)? != b"RIFF" || file.get(8..12)? != b"WEBP" {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 12usize;
    while at < file.len() {
        let fourcc: [u8; 4] = file.get(at..at + 4)?.try_into().ok()?;
        let len = u32::from_le_bytes(file.get(at + 4..at + 8)?.try_into().ok()?) as usize;
        let body = file.get(at + 8..at.checked_add(8)?.checked_add(len)?)?;
        out.push((fourcc, body));
        // Chunks are padded to an even size.
        at = at + 8 + len + (len & 1);
    }
    Some(out)
}

fn push_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], body: &[u8]) -> Option<()> {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&u32::try_from(body.len()).ok()?.to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
    Some(())
}

/// `plain` (a simple or extended WebP from libwebp) rewrapped with a
/// `VP8X` header and the metadata chunks of `embed`.
fn extended(plain: &[u8], w: u32, h: u32, alpha: bool, embed: &Embed) -> Option<Vec<u8>> {
    let image: Vec<_> = chunks(plain)?
        .into_iter()
        .filter(|(c, _)| matches!(c, b"ALPH" | b"VP8 " | b"VP8L"))
        .collect();
    let mut flags = 0u8;
    let has_alph = image.iter().any(|(c, _)| c == b"ALPH");
    for (on, bit) in [
        (embed.icc.is_some(), FLAG_ICC),
        (alpha || has_alph, FLAG_ALPHA),
        (embed.exif.is_some(), FLAG_EXIF),
        (embed.xmp.is_some(), FLAG_XMP),
    ] {
        if on {
            flags |= bit;
        }
    }
    let mut vp8x = vec![flags, 0, 0, 0];
    vp8x.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    push_chunk(&mut body, b"VP8X", &vp8x)?;
    if let Some(icc) = &embed.icc {
        push_chunk(&mut body, b"ICCP", icc)?;
    }
    for (fourcc, data) in &image {
        push_chunk(&mut body, fourcc, data)?;
    }
    if let Some(exif) = &embed.exif {
        push_chunk(&mut body, b"EXIF", exif)?;
    }
    if let Some(xmp) = &embed.xmp {
        push_chunk(&mut body, b"XMP ", xmp)?;
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_chunks_are_read_back_by_image() {
        use image::ImageDecoder;
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            5,
            3,
            image::Rgba([200, 10, 10, 128]),
        ));
        let embed = Embed {
            icc: Some(super::super::metadata::srgb_profile().to_vec()),
            exif: Some(b"II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec()),
            xmp: Some(b"<x:xmpmeta/>".to_vec()),
        };
        for lossless in [false, true] {
            let opts = EncodeOptions {
                lossless,
                ..EncodeOptions::default()
            };
            let file = encode(&img, &opts, &embed).unwrap();
            let mut dec =
                image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&file)).unwrap();
            assert_eq!(dec.dimensions(), (5, 3));
            assert_eq!(dec.icc_profile().unwrap(), embed.icc);
            assert_eq!(dec.exif_metadata().unwrap(), embed.exif);
            assert_eq!(dec.xmp_metadata().unwrap(), embed.xmp);
            let back = DynamicImage::from_decoder(dec).unwrap();
            assert_eq!(back.color(), image::ColorType::Rgba8);
        }
    }
}
