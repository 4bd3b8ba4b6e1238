//! AVIF through ravif (rav1e, pure Rust, built here without its assembly,
//! which needs nasm). ravif writes EXIF into the container; it has no call
//! for an ICC profile or XMP, so those are not carried (the README says so):
//! pixels in another profile are converted to sRGB first.

use image::DynamicImage;
use ravif::{Encoder, Img, RGB8, RGBA8};

use super::EncodeOptions;
use super::metadata::Embed;
use crate::stage::StageError;

pub(super) fn encode(
    img: &DynamicImage,
    opts: &EncodeOptions,
    embed: &Embed,
) -> Result<Vec<u8>, StageError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(StageError::new("an empty image cannot be encoded as AVIF"));
    }
    // The file can't say which profile its pixels are in, and readers will
    // take them as sRGB: pixels in another profile (`colour = "keep"`) are
    // converted to sRGB here, so the colours stay right.
    let converted;
    let img = match &embed.icc {
        Some(icc) => {
            let mut copy = img.clone();
            let applied = crate::stages::colour::apply(
                &mut copy,
                Some(icc.clone()),
                crate::stages::colour::ColourMode::Srgb,
            );
            if let Some(why) = applied.ignored {
                tracing::warn!("{why}: AVIF pixels written as they are, taken as sRGB");
            }
            converted = copy;
            &converted
        }
        None => img,
    };
    let mut enc = Encoder::new()
        .with_quality(f32::from(opts.quality))
        .with_alpha_quality(f32::from(opts.quality))
        .with_speed(opts.speed.clamp(1, 10));
    if let Some(exif) = &embed.exif {
        enc = enc.with_exif(exif.clone());
    }
    let fail = |e: ravif::Error| StageError::new(format!("AVIF encoding failed: {e}"));
    // ravif and rav1e spread their work with rayon: in a pool of their
    // own, as wide as the cores this item may use, never the process-wide
    // one that every worker thread would queue on.
    let pixels = u64::from(w as u32) * u64::from(h as u32);
    let encoded = crate::cores::split_in_pool(pixels, |threads| {
        let enc = enc.with_num_threads(Some(threads));
        if img.color().has_alpha() {
            let raw = img.to_rgba8().into_raw();
            let px: Vec<RGBA8> = raw
                .chunks_exact(4)
                .map(|p| RGBA8::new(p[0], p[1], p[2], p[3]))
                .collect();
            enc.encode_rgba(Img::new(&px[..], w, h)).map_err(fail)
        } else {
            let rgb;
            let raw: &[u8] = match img {
                DynamicImage::ImageRgb8(b) => b.as_raw(),
                other => {
                    rgb = other.to_rgb8().into_raw();
                    &rgb
                }
            };
            let px: Vec<RGB8> = raw
                .chunks_exact(3)
                .map(|p| RGB8::new(p[0], p[1], p[2]))
                .collect();
            enc.encode_rgb(Img::new(&px[..], w, h)).map_err(fail)
        }
    })?;
    Ok(encoded.avif_file)
}
