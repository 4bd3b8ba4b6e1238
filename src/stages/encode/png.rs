//! PNG through `image`: 8 or 16 bits per channel as the pixels have them,
//! ICC in `iCCP`, EXIF in `eXIf`, and XMP in an `iTXt` chunk added here
//! (the encoder has no call for it).

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageEncoder};

use super::metadata::Embed;
use super::{Compression, EncodeOptions};
use crate::stage::StageError;

/// The keyword XMP readers look for in an `iTXt` chunk.
const XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";

pub(super) fn encode(
    img: &DynamicImage,
    opts: &EncodeOptions,
    embed: &Embed,
) -> Result<Vec<u8>, StageError> {
    let level = match opts.compression {
        Compression::Fast => CompressionType::Fast,
        Compression::Default => CompressionType::Default,
        Compression::Best => CompressionType::Best,
    };
    // Float pixels have no PNG layout: 16 bits keeps their precision.
    let wide;
    let img = match img {
        DynamicImage::ImageRgb32F(_) => {
            wide = DynamicImage::ImageRgb16(img.to_rgb16());
            &wide
        }
        DynamicImage::ImageRgba32F(_) => {
            wide = DynamicImage::ImageRgba16(img.to_rgba16());
            &wide
        }
        other => other,
    };
    let mut out = Vec::new();
    let mut enc = PngEncoder::new_with_quality(&mut out, level, FilterType::Adaptive);
    if let Some(icc) = &embed.icc {
        let _ = enc.set_icc_profile(icc.clone());
    }
    if let Some(exif) = &embed.exif {
        let _ = enc.set_exif_metadata(exif.clone());
    }
    img.write_with_encoder(enc)
        .map_err(|e| StageError::new(format!("PNG encoding failed: {e}")))?;
    if let Some(xmp) = &embed.xmp {
        out = insert_xmp(out, xmp);
    }
    Ok(out)
}

/// `png` with an uncompressed `iTXt` XMP chunk before its first `IDAT`
/// (where XMP readers, and the PNG spec's advice for metadata, expect it).
fn insert_xmp(png: Vec<u8>, xmp: &[u8]) -> Vec<u8> {
    let Some(at) = first_chunk(&png, b"IDAT") else {
        return png;
    };
    // keyword, NUL, compression flag 0, method 0, empty language, NUL,
    // empty translated keyword, NUL, text.
    let mut data = XMP_KEYWORD.to_vec();
    data.extend_from_slice(&[0, 0, 0, 0, 0]);
    data.extend_from_slice(xmp);
    let Ok(len) = u32::try_from(data.len()) else {
        return png;
    };
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(&len.to_be_bytes());
    chunk.extend_from_slice(b"iTXt");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
    let mut out = Vec::with_capacity(png.len() + chunk.len());
    out.extend_from_slice(&png[..at]);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[at..]);
    out
}

/// Offset of the first chunk of type `kind` (after the 8-byte signature).
fn first_chunk(png: &[u8], kind: &[u8; 4]) -> Option<usize> {
    let mut at = 8usize;
    while at.checked_add(8)? <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().ok()?) as usize;
        if &png[at + 4..at + 8] == kind {
            return Some(at);
        }
        at = at.checked_add(12)?.checked_add(len)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bits_stay_sixteen_and_xmp_is_read_back() {
        use image::ImageDecoder;
        let img = DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(7, 5, |x, y| {
            image::Rgb([x as u16 * 9000, y as u16 * 300 + 1, 65535])
        }));
        let embed = Embed {
            xmp: Some(b"<x:xmpmeta/>".to_vec()),
            ..Embed::default()
        };
        let file = encode(&img, &EncodeOptions::default(), &embed).unwrap();
        let mut dec = image::codecs::png::PngDecoder::new(std::io::Cursor::new(&file)).unwrap();
        assert_eq!(dec.xmp_metadata().unwrap(), embed.xmp);
        assert_eq!(DynamicImage::from_decoder(dec).unwrap(), img);
    }

    #[test]
    fn crc_of_iend_is_the_known_one() {
        assert_eq!(crc32fast::hash(b"IEND"), 0xAE42_6082);
    }
}
