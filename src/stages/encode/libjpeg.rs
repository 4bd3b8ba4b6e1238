//! Baseline JPEG through libjpeg-turbo with its SIMD, in builds with the
//! `nasm` feature: 1.7x faster than conveyor's own encoder (`baseline.rs`)
//! there, and the bytes Pillow and cjpeg write. Without SIMD libjpeg is
//! slower than that, so the default build keeps it.

use jpeg_encoder::ColorType;
use mozjpeg::{ColorSpace, Compress, Marker};

use super::metadata::Embed;
use crate::stage::StageError;

/// `rows` rows of `width` pixels of `color` as one baseline JPEG with the
/// standard tables at `quality`, chroma halved both ways when `subsampled`,
/// and the metadata of `embed` (`None` for a strip after the first).
pub(super) fn encode(
    data: &[u8],
    (width, rows): (u16, u16),
    color: ColorType,
    quality: u8,
    subsampled: bool,
    embed: Option<&Embed>,
) -> Result<Vec<u8>, StageError> {
    let space = match color {
        ColorType::Luma => ColorSpace::JCS_GRAYSCALE,
        ColorType::Rgb => ColorSpace::JCS_EXT_RGB,
        // libjpeg leaves the fourth byte out, as jpeg-encoder does.
        ColorType::Rgba => ColorSpace::JCS_EXT_RGBA,
        other => {
            return Err(StageError::new(format!(
                "JPEG encoding failed: no libjpeg layout for {other:?}"
            )));
        }
    };
    let compressed = crate::stages::libjpeg::guarded(|| {
        let mut c = Compress::new(space);
        c.set_size(usize::from(width), usize::from(rows));
        // libjpeg-turbo's own settings and tables, not mozjpeg's slower
        // search for smaller files.
        c.set_fastest_defaults();
        c.set_optimize_coding(false);
        c.set_quality(f32::from(quality));
        if color != ColorType::Luma {
            let px = if subsampled { (2, 2) } else { (1, 1) };
            c.set_chroma_sampling_pixel_sizes(px, px);
        }
        let mut started = c.start_compress(Vec::new()).map_err(|e| e.to_string())?;
        if let Some(embed) = embed {
            for segment in super::jpeg::app1_segments(embed) {
                started.write_marker(Marker::APP(1), &segment);
            }
            for segment in embed
                .icc
                .as_deref()
                .map(super::jpeg::icc_segments)
                .unwrap_or_default()
            {
                started.write_marker(Marker::APP(2), &segment);
            }
        }
        started.write_scanlines(data).map_err(|e| e.to_string())?;
        started.finish().map_err(|e| e.to_string())
    });
    compressed
        .and_then(|bytes| bytes)
        .map_err(|e| StageError::new(format!("JPEG encoding failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageDecoder;

    /// Smooth colours, as a photo has, so a JPEG at q85 keeps them close.
    fn picture(w: u16, h: u16, channels: usize) -> Vec<u8> {
        let (w, h) = (usize::from(w), usize::from(h));
        (0..w * h * channels)
            .map(|i| {
                let (p, c) = (i / channels, i % channels);
                let (x, y) = (p % w, p / w);
                (x * 150 / w + y * 50 / h + c * 30).min(255) as u8
            })
            .collect()
    }

    #[test]
    fn baseline_file_carries_the_metadata_in_order_and_close_pixels() {
        let (w, h) = (301, 203);
        let data = picture(w, h, 3);
        let embed = Embed {
            icc: Some(super::super::metadata::srgb_profile().to_vec()),
            exif: Some(b"MM\0*\0\0\0\x08\0\0".to_vec()),
            xmp: Some(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>".to_vec()),
        };
        let bytes = encode(&data, (w, h), ColorType::Rgb, 85, true, Some(&embed)).expect("encodes");
        let found = super::super::baseline::tests::segments(&bytes);
        let apps: Vec<(u8, &[u8])> = found
            .iter()
            .filter(|(m, _)| (0xE1..=0xE2).contains(m))
            .map(|(m, head)| (*m, &head[..6]))
            .collect();
        assert_eq!(
            apps,
            [
                (0xE1, &b"Exif\0\0"[..]),
                (0xE1, b"http:/"),
                (0xE2, b"ICC_PR")
            ],
            "{found:?}"
        );
        assert!(found.iter().any(|(m, _)| *m == 0xC0), "baseline: {found:?}");
        assert!(!found.iter().any(|(m, _)| *m == 0xC2), "not progressive");

        let mut dec =
            image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&bytes)).expect("header");
        assert_eq!(dec.icc_profile().expect("icc"), embed.icc);
        let back = image::DynamicImage::from_decoder(dec)
            .expect("decodes")
            .into_rgb8();
        assert_eq!(back.dimensions(), (301, 203));
        let mse = back
            .as_raw()
            .iter()
            .zip(&data)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / data.len() as f64;
        let psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
        assert!(psnr > 35.0, "PSNR {psnr:.1} dB");
    }

    #[test]
    fn grey_stays_grey_and_alpha_is_left_out() {
        let grey = encode(
            &picture(64, 48, 1),
            (64, 48),
            ColorType::Luma,
            85,
            true,
            None,
        )
        .expect("grey");
        let back = image::load_from_memory(&grey).expect("decodes");
        assert!(matches!(back, image::DynamicImage::ImageLuma8(_)));

        let rgba = picture(64, 48, 4);
        let bytes = encode(&rgba, (64, 48), ColorType::Rgba, 95, false, None).expect("rgba");
        let back = image::load_from_memory(&bytes)
            .expect("decodes")
            .into_rgb8();
        let rgb: Vec<u8> = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let worst = back
            .as_raw()
            .iter()
            .zip(&rgb)
            .map(|(&a, &b)| a.abs_diff(b))
            .max();
        assert!(worst.is_some_and(|d| d < 40), "{worst:?}");
    }

    #[test]
    fn a_libjpeg_error_is_the_items_error_not_a_crash() {
        let e = encode(&[], (0, 10), ColorType::Rgb, 85, true, None).expect_err("refused");
        assert!(
            e.message().starts_with("JPEG encoding failed: "),
            "{}",
            e.message()
        );
    }

    #[test]
    fn every_quality_gives_a_baseline_file_with_8_bit_tables() {
        use super::super::EncodeOptions;
        let img = image::DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(64, 48, picture(64, 48, 3)).expect("size"),
        );
        for quality in 1..=100 {
            let opts = EncodeOptions {
                quality,
                ..EncodeOptions::default()
            };
            let bytes =
                super::super::jpeg::encode(&img, &opts, &Embed::default()).expect("encodes");
            let found = super::super::baseline::tests::segments(&bytes);
            assert!(
                found.iter().any(|(m, _)| *m == 0xC0),
                "q{quality}: {found:?}"
            );
            // Each DQT's first byte: precision (high nibble) 0 is 8 bits.
            for (_, head) in found.iter().filter(|(m, _)| *m == 0xDB) {
                assert_eq!(head[0] >> 4, 0, "q{quality}: 16-bit table");
            }
        }
    }
}
