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

type Cmyk = (Vec<u8>, (u32, u32), bool);

fn read_cmyk(bytes: &[u8]) -> Result<Cmyk, String> {
    use mozjpeg::{ColorSpace, Decompress, Marker};
    let dec = Decompress::builder()
        .with_markers(&[Marker::APP(14)])
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
