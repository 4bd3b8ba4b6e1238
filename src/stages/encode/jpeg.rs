//! JPEG through `jpeg-encoder` (SIMD, much faster than the `image` crate's
//! own encoder), baseline or progressive, with optimised Huffman tables on
//! request, and EXIF, XMP and ICC in their usual APP segments.

use image::DynamicImage;

use super::EncodeOptions;
use super::metadata::Embed;
use crate::stage::StageError;

/// The XMP namespace that starts an APP1 segment holding an XMP packet.
const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// The most an APP segment can hold (its 16-bit length counts itself).
const APP_MAX: usize = 65533;

pub(super) fn encode(
    img: &DynamicImage,
    opts: &EncodeOptions,
    embed: &Embed,
) -> Result<Vec<u8>, StageError> {
    use jpeg_encoder::{ColorType, Encoder};
    let (w, h) = (img.width(), img.height());
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(StageError::new(format!(
            "{w}x{h} is too large for JPEG (65535 at most)"
        )));
    };
    let converted;
    let (data, color): (&[u8], ColorType) = match img {
        DynamicImage::ImageLuma8(b) => (b.as_raw(), ColorType::Luma),
        DynamicImage::ImageRgb8(b) => (b.as_raw(), ColorType::Rgb),
        DynamicImage::ImageRgba8(b) => (b.as_raw(), ColorType::Rgba),
        // 16-bit and other layouts: JPEG holds 8 bits per channel.
        DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
            converted = img.to_luma8().into_raw();
            (&converted[..], ColorType::Luma)
        }
        other => {
            converted = other.to_rgb8().into_raw();
            (&converted[..], ColorType::Rgb)
        }
    };
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, opts.quality);
    enc.set_progressive(opts.progressive);
    enc.set_optimized_huffman_tables(opts.optimize);
    let fail =
        |e: jpeg_encoder::EncodingError| StageError::new(format!("JPEG encoding failed: {e}"));
    if let Some(exif) = &embed.exif {
        let mut segment = b"Exif\0\0".to_vec();
        segment.extend_from_slice(exif);
        // Too large for one segment: dropped, not fatal (a warning says so).
        if segment.len() <= APP_MAX {
            enc.add_app_segment(1, segment).map_err(fail)?;
        } else {
            tracing::warn!(
                "EXIF block of {} bytes is too large for JPEG: not kept",
                exif.len()
            );
        }
    }
    if let Some(xmp) = &embed.xmp {
        let mut segment = XMP_HEADER.to_vec();
        segment.extend_from_slice(xmp);
        if segment.len() <= APP_MAX {
            enc.add_app_segment(1, segment).map_err(fail)?;
        } else {
            tracing::warn!(
                "XMP packet of {} bytes is too large for JPEG: not kept",
                xmp.len()
            );
        }
    }
    if let Some(icc) = &embed.icc {
        enc.add_icc_profile(icc).map_err(fail)?;
    }
    enc.encode(data, w16, h16, color).map_err(fail)?;
    Ok(out)
}
