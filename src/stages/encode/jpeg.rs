//! JPEG: which encoder writes the file, EXIF, XMP and ICC in their usual
//! APP segments, and large images cut into strips. Plain baseline files
//! are written by conveyor's own encoder (`baseline.rs`), or in builds with
//! the `nasm` feature by libjpeg-turbo's SIMD (`libjpeg.rs`), faster
//! still; progressive files and optimised Huffman tables by `jpeg-encoder`.
//!
//! A large baseline image is encoded in strips of whole MCU rows, each on
//! its own, and the strips' entropy-coded data joined with restart markers
//! between them: exactly the file one pass with that restart interval
//! writes (a test compares the bytes), but spread over the cores a split
//! may borrow. Whether strips are used depends only on the image, so the
//! bytes are the same whatever `--jobs` is.

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
    use jpeg_encoder::ColorType;
    let (w, h) = (img.width(), img.height());
    // The format allows 65535 a side, but libjpeg (and so most programs)
    // refuses to read over 65500: such a file would be written and unread.
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(too_large(w, h));
    };
    if w > JPEG_SIDE_MAX || h > JPEG_SIDE_MAX {
        return Err(too_large(w, h));
    }
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
    let sampling = sampling_for(opts.quality);
    let layout = Layout::of(w, h, color, sampling);
    let striped = !opts.progressive && !opts.optimize;
    match layout.filter(|_| striped) {
        Some(layout) => {
            let pixels = u64::from(w) * u64::from(h);
            let strips = crate::cores::split(pixels, |parts| {
                encode_strips(data, w16, color, opts, embed, &layout, parts > 1)
            })?;
            join_strips(&strips, h16, layout.interval)
                .map_err(|e| StageError::new(format!("JPEG encoding failed: {e}")))
        }
        None => piece(data, (w16, h16), color, opts, Some(embed), None),
    }
}

/// Whether libjpeg-turbo encodes: only in builds with its SIMD (without,
/// it is slower than `baseline.rs`), and only plain baseline files, with
/// the standard tables, so the options that change the file's structure
/// keep one encoder whatever the build.
#[cfg_attr(not(any(feature = "nasm", test)), allow(dead_code))]
const fn by_libjpeg(opts: &EncodeOptions) -> bool {
    cfg!(feature = "nasm")
        && !opts.progressive
        && !opts.optimize
        && opts.quality >= LIBJPEG_MIN_QUALITY
}

/// The lowest quality whose standard tables stay within 8 bits. The mozjpeg
/// crate sets quality without libjpeg's `force_baseline`, so below this its
/// tables would need 16 bits, which makes an extended (not baseline) file
/// that some decoders refuse; `baseline.rs` and jpeg-encoder clamp them to
/// 8 bits instead.
const LIBJPEG_MIN_QUALITY: u8 = 24;

/// `size.1` rows of `data` as one JPEG, with `embed`'s metadata when
/// given; `baseline.rs` and jpeg-encoder also mark restarts every
/// `restart_interval` MCUs (libjpeg's strips get the marker from
/// `join_strips`).
fn piece(
    data: &[u8],
    size: (u16, u16),
    color: jpeg_encoder::ColorType,
    opts: &EncodeOptions,
    embed: Option<&Embed>,
    restart_interval: Option<u16>,
) -> Result<Vec<u8>, StageError> {
    let halved = sampling_for(opts.quality) == jpeg_encoder::SamplingFactor::F_2_2;
    #[cfg(feature = "nasm")]
    if by_libjpeg(opts) {
        return super::libjpeg::encode(data, size, color, opts.quality, halved, embed);
    }
    if !opts.progressive && !opts.optimize {
        let plan = super::baseline::Plan {
            channels: bytes_per_pixel(color),
            quality: opts.quality,
            halved,
            restart: restart_interval,
        };
        return super::baseline::encode(data, size, plan, embed);
    }
    by_jpeg_encoder(data, size, color, opts, embed, restart_interval)
}

/// The bytes of one pixel of `color` as `encode` hands them over (grey,
/// RGB or RGBA).
fn bytes_per_pixel(color: jpeg_encoder::ColorType) -> usize {
    match color {
        jpeg_encoder::ColorType::Luma => 1,
        jpeg_encoder::ColorType::Rgba => 4,
        _ => 3,
    }
}

/// [`piece`] through jpeg-encoder: progressive and optimised files.
fn by_jpeg_encoder(
    data: &[u8],
    size: (u16, u16),
    color: jpeg_encoder::ColorType,
    opts: &EncodeOptions,
    embed: Option<&Embed>,
    restart_interval: Option<u16>,
) -> Result<Vec<u8>, StageError> {
    // Halved chroma: converted here, each 2x2 block's chroma averaged as
    // libjpeg (and so Pillow and the `nasm` build) makes it. jpeg-encoder
    // on its own keeps one pixel's colour of each block: one-pixel red and
    // blue columns came out all red.
    let channels = match color {
        jpeg_encoder::ColorType::Rgb => 3,
        jpeg_encoder::ColorType::Rgba => 4,
        _ => 0,
    };
    let mut out = Vec::new();
    let enc = encoder(&mut out, opts, embed, restart_interval)?;
    if channels > 0 && sampling_for(opts.quality) == jpeg_encoder::SamplingFactor::F_2_2 {
        let image = super::ycbcr::Averaged::new(data, size, channels);
        enc.encode_image(image).map_err(failed)?;
    } else {
        enc.encode(data, size.0, size.1, color).map_err(failed)?;
    }
    Ok(out)
}

/// The longest side a JPEG may have that libjpeg still reads.
const JPEG_SIDE_MAX: u32 = 65500;

fn too_large(w: u32, h: u32) -> StageError {
    StageError::new(format!(
        "{w}x{h} is too large for JPEG: most programs read at most {JPEG_SIDE_MAX} pixels a side (resize it first, or choose PNG)"
    ))
}

fn failed(e: jpeg_encoder::EncodingError) -> StageError {
    StageError::new(format!("JPEG encoding failed: {e}"))
}

/// Chroma subsampling by quality, as jpeg-encoder chooses it, set
/// explicitly because the strips' size depends on it.
fn sampling_for(quality: u8) -> jpeg_encoder::SamplingFactor {
    if quality < 90 {
        jpeg_encoder::SamplingFactor::F_2_2
    } else {
        jpeg_encoder::SamplingFactor::F_1_1
    }
}

/// An encoder for `opts`, with the metadata of `embed` (the first strip's
/// only) and a restart interval.
fn encoder<'a>(
    out: &'a mut Vec<u8>,
    opts: &EncodeOptions,
    embed: Option<&Embed>,
    restart_interval: Option<u16>,
) -> Result<jpeg_encoder::Encoder<&'a mut Vec<u8>>, StageError> {
    let mut enc = jpeg_encoder::Encoder::new(out, opts.quality);
    enc.set_sampling_factor(sampling_for(opts.quality));
    enc.set_progressive(opts.progressive);
    enc.set_optimized_huffman_tables(opts.optimize);
    if let Some(interval) = restart_interval {
        enc.set_restart_interval(interval);
    }
    let Some(embed) = embed else {
        return Ok(enc);
    };
    for segment in app1_segments(embed) {
        enc.add_app_segment(1, segment).map_err(failed)?;
    }
    if let Some(icc) = &embed.icc {
        enc.add_icc_profile(icc).map_err(failed)?;
    }
    Ok(enc)
}

/// The APP1 segments of `embed`: its EXIF block, then its XMP packet. One
/// too large for a segment is dropped, not fatal (a warning says so).
pub(super) fn app1_segments(embed: &Embed) -> Vec<Vec<u8>> {
    let mut segments = Vec::new();
    for (name, header, body) in [
        ("EXIF block", &b"Exif\0\0"[..], &embed.exif),
        ("XMP packet", XMP_HEADER, &embed.xmp),
    ] {
        let Some(body) = body else { continue };
        if header.len() + body.len() <= APP_MAX {
            segments.push([header, body].concat());
        } else {
            tracing::warn!(
                "{name} of {} bytes is too large for JPEG: not kept",
                body.len()
            );
        }
    }
    segments
}

/// Room for a profile's bytes in one APP2 segment, after its 14 bytes of
/// header (the tag, the chunk's number and the count).
pub(super) const ICC_PER_SEGMENT: usize = 65533 - 14;

/// The APP2 segments of an ICC profile, numbered from 1 as the ICC
/// specification asks. (The mozjpeg crate's `write_icc_profile` numbers
/// them from 0, and decoders such as zune-jpeg then ignore the profile.)
/// A profile too large for 255 segments is not kept, with a warning.
pub(super) fn icc_segments(icc: &[u8]) -> Vec<Vec<u8>> {
    let chunks = icc.chunks(ICC_PER_SEGMENT);
    let Ok(count) = u8::try_from(chunks.len()) else {
        tracing::warn!(
            "ICC profile of {} bytes is too large for JPEG: not kept",
            icc.len()
        );
        return Vec::new();
    };
    (1..=count)
        .zip(chunks)
        .map(|(n, chunk)| [&b"ICC_PROFILE\0"[..], &[n, count], chunk].concat())
        .collect()
}

/// How a large image is cut: rows per strip (whole MCU rows) and the MCUs
/// in a full strip, the restart interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    rows: usize,
    interval: u16,
    height: usize,
}

/// About this many pixels per strip: enough strips for any core count, few
/// enough that their headers and restart markers cost nothing.
const STRIP_PIXELS: usize = 1 << 18;

impl Layout {
    /// The strips of a `w` x `h` image, or `None` when it is too small to
    /// be worth cutting (fewer than 2 strips, or under a split's size).
    fn of(
        w: u32,
        h: u32,
        color: jpeg_encoder::ColorType,
        sampling: jpeg_encoder::SamplingFactor,
    ) -> Option<Layout> {
        if u64::from(w) * u64::from(h) < crate::cores::MIN_PIXELS_TO_SPLIT {
            return None;
        }
        // One component has 8x8 blocks; colour has the sampling's MCU.
        let (mcu_w, mcu_h) = match (color, sampling) {
            (jpeg_encoder::ColorType::Luma, _) => (8, 8),
            (_, jpeg_encoder::SamplingFactor::F_2_2) => (16, 16),
            (_, jpeg_encoder::SamplingFactor::F_1_1) => (8, 8),
            _ => return None,
        };
        let (w, h) = (w as usize, h as usize);
        let per_row = w.div_ceil(mcu_w);
        let mcu_rows = (STRIP_PIXELS / (w * mcu_h)).max(1).min(65535 / per_row);
        if mcu_rows == 0 {
            return None;
        }
        let rows = mcu_rows * mcu_h;
        (h > rows).then(|| Layout {
            rows,
            interval: u16::try_from(per_row * mcu_rows).unwrap_or(u16::MAX),
            height: h,
        })
    }

    fn strips(&self) -> usize {
        self.height.div_ceil(self.rows)
    }
}

/// Each strip of `data` encoded as a JPEG of its own with the layout's
/// restart interval (so none falls inside it), in parallel or not.
fn encode_strips(
    data: &[u8],
    width: u16,
    color: jpeg_encoder::ColorType,
    opts: &EncodeOptions,
    embed: &Embed,
    layout: &Layout,
    parallel: bool,
) -> Result<Vec<Vec<u8>>, StageError> {
    use rayon::prelude::*;
    let row_bytes = usize::from(width) * bytes_per_pixel(color);
    let strip = |i: usize| -> Result<Vec<u8>, StageError> {
        let top = i * layout.rows;
        let bottom = (top + layout.rows).min(layout.height);
        let rows = u16::try_from(bottom - top).unwrap_or(u16::MAX);
        piece(
            &data[top * row_bytes..bottom * row_bytes],
            (width, rows),
            color,
            opts,
            (i == 0).then_some(embed),
            Some(layout.interval),
        )
    };
    if parallel {
        (0..layout.strips()).into_par_iter().map(strip).collect()
    } else {
        (0..layout.strips()).map(strip).collect()
    }
}

/// Where a JPEG's scan header (SOS) and its entropy-coded data start,
/// where its SOF's height field is, and whether it sets a restart interval.
struct Scan {
    header: usize,
    data: usize,
    height_at: Option<usize>,
    restarts: bool,
}

fn find_scan(jpeg: &[u8]) -> Result<Scan, String> {
    let mut at = 2;
    let mut height_at = None;
    let mut restarts = false;
    loop {
        let (Some(&0xFF), Some(&marker), Some(len)) =
            (jpeg.get(at), jpeg.get(at + 1), jpeg.get(at + 2..at + 4))
        else {
            return Err("a strip has no scan".into());
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if (0xC0..=0xC2).contains(&marker) {
            height_at = Some(at + 5);
        }
        restarts |= marker == 0xDD;
        if marker == 0xDA {
            return Ok(Scan {
                header: at,
                data: at + 2 + len,
                height_at,
                restarts,
            });
        }
        at += 2 + len;
    }
}

/// One JPEG of the strips: the first one's header (its height made the
/// whole image's, and a restart interval of `interval` MCUs set if the
/// encoder set none), then each strip's entropy-coded data, restart
/// markers RST0..RST7 in turn between them, and the end.
///
/// Each strip was encoded alone, so its data starts with the DC
/// predictions at zero and ends padded to a whole byte: what a decoder
/// expects of the data between two restart markers.
fn join_strips(strips: &[Vec<u8>], height: u16, interval: u16) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(strips.iter().map(Vec::len).sum::<usize>() + 6);
    for (i, strip) in strips.iter().enumerate() {
        let end = strip.len().saturating_sub(2);
        if strip.get(end..) != Some(&[0xFF, 0xD9][..]) {
            return Err("a strip does not end its image".into());
        }
        let scan = find_scan(strip)?;
        if i == 0 {
            let at = scan.height_at.ok_or("a strip has no frame header")?;
            out.extend_from_slice(&strip[..scan.header]);
            out[at..at + 2].copy_from_slice(&height.to_be_bytes());
            if !scan.restarts {
                out.extend_from_slice(&[0xFF, 0xDD, 0, 4]);
                out.extend_from_slice(&interval.to_be_bytes());
            }
            out.extend_from_slice(&strip[scan.header..end]);
        } else {
            out.extend_from_slice(&[0xFF, 0xD0 + ((i - 1) % 8) as u8]);
            out.extend_from_slice(&strip[scan.data..end]);
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels that make every block different (a plain image would give
    /// the same bytes however it was cut).
    fn picture(w: u32, h: u32, channels: usize) -> Vec<u8> {
        (0..w as usize * h as usize * channels)
            .map(|i| {
                let (p, c) = (i / channels, i % channels);
                let (x, y) = (p % w as usize, p / w as usize);
                ((x * 7 + y * 13 + c * 50) ^ (x * y / 97)) as u8
            })
            .collect()
    }

    fn count_restarts(bytes: &[u8]) -> usize {
        bytes
            .windows(2)
            .filter(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
            .count()
    }

    fn embed() -> Embed {
        Embed {
            icc: None,
            exif: Some(b"MM\0*\0\0\0\x08\0\0".to_vec()),
            xmp: None,
        }
    }

    #[test]
    fn strips_give_exactly_the_file_one_pass_with_restarts_writes() {
        use jpeg_encoder::ColorType::{Luma, Rgb, Rgba};
        let cases = [
            (1500, 1000, Rgb, 3, 85),
            // Sizes that are no multiple of an MCU or of a strip.
            (1203, 917, Rgb, 3, 85),
            (1100, 1000, Luma, 1, 85),
            (1024, 1100, Rgba, 4, 80),
            // 4:4:4 above quality 90: 8x8 MCUs.
            (1300, 901, Rgb, 3, 95),
        ];
        for (w, h, color, channels, quality) in cases {
            let data = picture(w, h, channels);
            let opts = EncodeOptions {
                quality,
                ..EncodeOptions::default()
            };
            let layout = Layout::of(w, h, color, sampling_for(quality)).expect("cut");
            assert!(layout.strips() > 2, "{w}x{h}: {layout:?}");
            let (w16, h16) = (w as u16, h as u16);
            let joined = |parallel| {
                let strips = encode_strips(&data, w16, color, &opts, &embed(), &layout, parallel)
                    .expect("strips");
                join_strips(&strips, h16, layout.interval).expect("joined")
            };
            let serial = joined(false);
            assert_eq!(serial, joined(true), "{w}x{h}: in parallel");
            let one = piece(
                &data,
                (w16, h16),
                color,
                &opts,
                Some(&embed()),
                Some(layout.interval),
            )
            .expect("one pass");
            if by_libjpeg(&opts) {
                // libjpeg's one pass marks no restarts, so its bytes differ;
                // its blocks are the same, so are the pixels.
                let pixels = |bytes: &[u8]| image::load_from_memory(bytes).expect("decodes");
                assert!(
                    pixels(&serial) == pixels(&one),
                    "{w}x{h} {color:?} q{quality}"
                );
                assert!(count_restarts(&serial) >= layout.strips() - 1);
            } else {
                assert!(
                    serial == one,
                    "{w}x{h} {color:?} q{quality}: {} bytes joined, {} in one pass",
                    serial.len(),
                    one.len()
                );
            }
            let back = image::load_from_memory(&serial).expect("decodes");
            assert_eq!((back.width(), back.height()), (w, h));
        }
    }

    #[test]
    fn a_large_profile_is_cut_into_segments_numbered_from_one() {
        let icc: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let segments = icc_segments(&icc);
        assert_eq!(segments.len(), 3);
        for (i, s) in segments.iter().enumerate() {
            assert!(s.len() <= 65533);
            assert_eq!(
                &s[..14],
                &[&b"ICC_PROFILE\0"[..], &[i as u8 + 1, 3]].concat()[..]
            );
        }
        let joined: Vec<u8> = segments.iter().flat_map(|s| s[14..].to_vec()).collect();
        assert_eq!(joined, icc);
        assert!(icc_segments(&vec![0; 256 * ICC_PER_SEGMENT]).is_empty());
    }

    #[test]
    fn a_side_over_what_libjpeg_reads_is_refused() {
        for (w, h) in [(65501, 17), (17, 65501), (70000, 1)] {
            let img = DynamicImage::ImageLuma8(image::GrayImage::new(w, h));
            let e = encode(&img, &EncodeOptions::default(), &embed()).expect_err("refused");
            assert!(
                e.message().contains("at most 65500 pixels a side"),
                "{}",
                e.message()
            );
        }
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(65500, 17));
        let bytes = encode(&img, &EncodeOptions::default(), &embed()).expect("encodes");
        let back = image::load_from_memory(&bytes).expect("decodes");
        assert_eq!((back.width(), back.height()), (65500, 17));
    }

    #[test]
    fn small_progressive_and_optimised_images_are_encoded_in_one_pass() {
        use jpeg_encoder::{ColorType::Rgb, SamplingFactor::F_2_2};
        assert_eq!(Layout::of(1000, 1000, Rgb, F_2_2), None, "under 1 MP");
        assert!(Layout::of(2000, 1000, Rgb, F_2_2).is_some());
        let data = picture(2000, 1000, 3);
        let img =
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(2000, 1000, data).expect("buffer"));
        let plain = encode(&img, &EncodeOptions::default(), &embed()).expect("plain");
        assert!(count_restarts(&plain) > 2, "cut into strips");
        for opts in [
            EncodeOptions {
                progressive: true,
                ..EncodeOptions::default()
            },
            EncodeOptions {
                optimize: true,
                ..EncodeOptions::default()
            },
        ] {
            let bytes = encode(&img, &opts, &embed()).expect("encodes");
            assert_eq!(count_restarts(&bytes), 0, "{opts:?}");
            let back = image::load_from_memory(&bytes).expect("decodes");
            assert_eq!((back.width(), back.height()), (2000, 1000));
        }
    }

    #[test]
    fn subsampled_chroma_is_the_average_of_its_pixels() {
        // One-pixel columns of red and blue: chroma halved must be their
        // average (purple), as libjpeg and Pillow make it, not the colour
        // of whichever pixel comes first in each pair.
        let (w, h) = (64, 32);
        let img = image::RgbImage::from_fn(w, h, |x, _| {
            if x % 2 == 0 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        for opts in [
            EncodeOptions::default(),
            EncodeOptions {
                progressive: true,
                ..EncodeOptions::default()
            },
        ] {
            assert!(opts.quality < 90, "4:2:0");
            let bytes =
                encode(&DynamicImage::ImageRgb8(img.clone()), &opts, &embed()).expect("encodes");
            let back = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
            let mean =
                |c: usize| back.pixels().map(|p| f64::from(p.0[c])).sum::<f64>() / f64::from(w * h);
            let (r, b) = (mean(0), mean(2));
            assert!(
                (r - b).abs() < 8.0,
                "{opts:?}: mean red {r:.1}, blue {b:.1}"
            );
        }
    }

    #[test]
    fn averaged_chroma_gives_the_bytes_of_jpeg_encoders_own_averaging() {
        use jpeg_encoder::{ChromaSubsamplingMethod, ColorType};
        let opts = EncodeOptions::default();
        if by_libjpeg(&opts) {
            return;
        }
        for (w, h, color, channels) in [
            (64, 48, ColorType::Rgb, 3),
            (320, 208, ColorType::Rgb, 3),
            (96, 64, ColorType::Rgba, 4),
            (333, 219, ColorType::Rgb, 3),
            (101, 77, ColorType::Rgba, 4),
        ] {
            let data = picture(w, h, channels);
            let ours = by_jpeg_encoder(&data, (w as u16, h as u16), color, &opts, None, None)
                .expect("encodes");
            let mut theirs = Vec::new();
            let mut enc = encoder(&mut theirs, &opts, None, None).expect("encoder");
            enc.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
            enc.encode(&data, w as u16, h as u16, color)
                .expect("encodes");
            if w % 16 == 0 && h % 16 == 0 {
                assert!(ours == theirs, "{w}x{h} {color:?}");
                continue;
            }
            // Past a partial last block the encoder repeats the edge's
            // chroma; jpeg-encoder (like libjpeg) averages repeated pixels
            // with the other rounding bias there. Invisible pixels, so the
            // images differ only a little near the right and bottom edges.
            let (a, b) = (
                image::load_from_memory(&ours).expect("decodes").to_rgb8(),
                image::load_from_memory(&theirs).expect("decodes").to_rgb8(),
            );
            let far_from_edge = |i: usize| {
                let p = i / 3;
                p % w as usize + 24 < w as usize && p / w as usize + 24 < h as usize
            };
            let inner = (a.as_raw().iter().zip(b.as_raw()).enumerate())
                .filter(|(i, (x, y))| far_from_edge(*i) && x != y)
                .count();
            assert_eq!(
                inner, 0,
                "{w}x{h} {color:?}: samples differing away from the edges"
            );
        }
    }
}
