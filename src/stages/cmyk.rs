//! CMYK JPEGs with an ICC profile: libjpeg (the mozjpeg crate) gives the raw
//! ink values, which the profile turns into sRGB. The general decoder would
//! convert CMYK to RGB with a naive formula that ignores the profile.

use image::DynamicImage;
use moxcms::ColorProfile;

use crate::stage::StageError;

/// Decode a CMYK (or YCCK) JPEG described by the CMYK profile `p` into sRGB.
pub fn decode_cmyk_jpeg(bytes: &[u8], p: &ColorProfile) -> Result<DynamicImage, StageError> {
    let decoded = super::libjpeg::guarded(|| read_cmyk(bytes)).and_then(|r| r);
    let (mut cmyk, size, adobe) =
        decoded.map_err(|e| StageError::new(format!("cannot decode jpg: {e}")))?;
    if adobe {
        // Photoshop (whose files carry an Adobe APP14 marker) stores CMYK
        // inverted: 255 is no ink. The profile expects 0 for no ink.
        cmyk.iter_mut().for_each(|v| *v = 255 - *v);
    }
    let rgb = super::colour::cmyk_to_srgb(&cmyk, size, p)
        .map_err(|e| StageError::new(format!("cannot decode jpg: {e}")))?;
    Ok(DynamicImage::ImageRgb8(rgb))
}

/// Decode a CMYK (or YCCK) JPEG that has no CMYK profile into RGB by the
/// simple formula the general decoder uses (each channel's ink times the
/// black's), for the files only libjpeg reads here (arithmetic-coded).
pub fn decode_cmyk_jpeg_without_profile(bytes: &[u8]) -> Result<DynamicImage, StageError> {
    let decoded = super::libjpeg::guarded(|| read_cmyk(bytes)).and_then(|r| r);
    let (cmyk, (w, h), adobe) =
        decoded.map_err(|e| StageError::new(format!("cannot decode jpg: {e}")))?;
    // In Adobe's inverted form 255 is no ink, so a stored value is already
    // the light that passes; otherwise it is the ink.
    let light = |v: u8| if adobe { v } else { 255 - v };
    let rgb: Vec<u8> = cmyk
        .chunks_exact(4)
        .flat_map(|p| {
            let k = light(p[3]);
            [
                times(light(p[0]), k),
                times(light(p[1]), k),
                times(light(p[2]), k),
            ]
        })
        .collect();
    image::RgbImage::from_raw(w, h, rgb)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| StageError::new("cannot decode jpg: pixel data does not match its size"))
}

/// `a * b / 255`, rounded to nearest.
fn times(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    // (t + t / 256) / 256 is t / 255 rounded, for every product of two bytes.
    ((t + (t >> 8)) >> 8) as u8
}

type Cmyk = (Vec<u8>, (u32, u32), bool);

fn read_cmyk(bytes: &[u8]) -> Result<Cmyk, String> {
    use mozjpeg::{ColorSpace, Decompress, Marker};
    if let Some(why) = super::libjpeg::too_many_scans(bytes) {
        return Err(why);
    }
    let dec = Decompress::builder()
        .with_markers(&[Marker::APP(14)])
        .with_err(super::libjpeg::damage_errors())
        .from_mem(bytes)
        .map_err(|e| e.to_string())?;
    let adobe = dec.markers().any(|m| m.data.starts_with(b"Adobe"));
    let mut started = dec
        .to_colorspace(ColorSpace::JCS_CMYK)
        .map_err(|e| e.to_string())?;
    let size = (
        u32::try_from(started.width()).map_err(|e| e.to_string())?,
        u32::try_from(started.height()).map_err(|e| e.to_string())?,
    );
    let data: Vec<u8> = started.read_scanlines().map_err(|e| e.to_string())?;
    started.finish().map_err(|e| e.to_string())?;
    Ok((data, size, adobe))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_is_the_rounded_product_over_255() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let exact = (f64::from(a) * f64::from(b) / 255.0).round() as u8;
                assert_eq!(super::times(a, b), exact, "{a} x {b}");
            }
        }
    }
}
