//! The progressive decoder against libjpeg: the same pixels within the
//! IDCT's rounding, on generated files of every layout it takes and on the
//! corpus's progressive photos; and broken or unusual files left to libjpeg
//! without a panic.

use super::*;

/// A progressive JPEG from mozjpeg: its own scan script (`optimized`) or
/// libjpeg's, with successive approximation; `None` sampling: grey. Also
/// `jpeg_scans`' tests' files.
pub(in crate::stages) fn by_mozjpeg(
    w: u32,
    h: u32,
    sampling: Option<(u8, u8)>,
    optimized: bool,
    q: f32,
) -> Vec<u8> {
    use mozjpeg::{ColorSpace, Compress};
    let space = if sampling.is_some() {
        ColorSpace::JCS_RGB
    } else {
        ColorSpace::JCS_GRAYSCALE
    };
    let mut c = Compress::new(space);
    c.set_size(w as usize, h as usize);
    c.set_quality(q);
    c.set_optimize_scans(optimized);
    c.set_progressive_mode();
    if let Some(s) = sampling {
        c.set_chroma_sampling_pixel_sizes(s, s);
    }
    let channels = if sampling.is_some() { 3 } else { 1 };
    let pixels = picture(w, h, channels);
    let mut started = c.start_compress(Vec::new()).expect("start");
    started.write_scanlines(&pixels).expect("write");
    started.finish().expect("finish")
}

/// Edges, gradients and noise: every kind of coefficient.
fn picture(w: u32, h: u32, channels: usize) -> Vec<u8> {
    let mut seed = 0x9E37_79B9_u32;
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .flat_map(|(x, y)| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = seed % 24;
            let v = [
                ((x * 3 + y) % 256) as u8,
                (if (x / 9 + y / 7) % 2 == 0 { 40 } else { 210 } + noise) as u8,
                ((x * y / 7 + noise) % 256) as u8,
            ];
            v.into_iter().take(channels).collect::<Vec<_>>()
        })
        .collect()
}

/// libjpeg's decode at `eighths`/8: width, height, samples.
fn by_libjpeg(bytes: &[u8], eighths: u8) -> (usize, usize, Vec<u8>) {
    let mut dec = mozjpeg::Decompress::new_mem(bytes).expect("header");
    dec.scale(eighths);
    let grey = dec.color_space() == mozjpeg::ColorSpace::JCS_GRAYSCALE;
    let mut started = if grey { dec.grayscale() } else { dec.rgb() }.expect("start");
    let (w, h) = (started.width(), started.height());
    let data: Vec<u8> = started.read_scanlines().expect("read");
    started.finish().expect("finish");
    (w, h, data)
}

/// Ours against libjpeg's: the largest difference of a sample and the
/// mean one.
fn compare(bytes: &[u8], what: &str) -> (u8, f64) {
    compare_with(bytes, what, true)
}

fn compare_with(bytes: &[u8], what: &str, fast: bool) -> (u8, f64) {
    compare_at(bytes, what, 8, fast)
}

fn compare_at(bytes: &[u8], what: &str, eighths: u8, fast: bool) -> (u8, f64) {
    let (w, h, want) = by_libjpeg(bytes, eighths);
    let colour = if want.len() == w * h {
        Colour::Grey
    } else {
        Colour::YCbCr
    };
    assert_eq!(colour_of(bytes), Some(colour), "{what}: libjpeg's colour");
    let got =
        decode_with(bytes, colour, eighths, fast).unwrap_or_else(|| panic!("{what}: not decoded"));
    assert_eq!(
        (got.width() as usize, got.height() as usize),
        (w, h),
        "{what}"
    );
    let got = got.as_bytes();
    assert_eq!(got.len(), want.len(), "{what}");
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let sum: u64 = got
        .iter()
        .zip(&want)
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    (max, sum as f64 / want.len() as f64)
}

#[test]
fn generated_files_decode_as_libjpeg_decodes_them() {
    // Chroma one or two samples wide (widths up to 4) is replicated by
    // libjpeg, not blended.
    let sizes = [
        (1, 1),
        (1, 17),
        (2, 33),
        (3, 3),
        (4, 40),
        (5, 6),
        (7, 9),
        (17, 33),
        (203, 157),
        (640, 480),
    ];
    let layouts = [None, Some((1, 1)), Some((2, 1)), Some((2, 2))];
    for (w, h) in sizes {
        for sampling in layouts {
            for optimized in [false, true] {
                for q in [40.0, 90.0, 100.0] {
                    let what = format!("{w}x{h} {sampling:?} optimized {optimized} q{q}");
                    let bytes = by_mozjpeg(w, h, sampling, optimized, q);
                    // A few dozen samples: one off by 2 moves the mean.
                    let mean_at_most = if w * h < 256 { 0.5 } else { 0.1 };
                    for fast in [true, false] {
                        let (max, mean) = compare_with(&bytes, &what, fast);
                        assert!(
                            max <= 3 && mean < mean_at_most,
                            "{what} {fast}: max {max}, mean {mean}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn scaled_decodes_match_libjpegs_scaled_decodes() {
    // libjpeg's scaled IDCTs at every scale, chroma from a larger IDCT
    // (4:2:0, up to 14x14) or upsampled (4:2:2); with libjpeg's scan
    // script and mozjpeg's, on sizes whose scaled sides round up.
    let layouts = [None, Some((1, 1)), Some((2, 1)), Some((2, 2))];
    for (w, h) in [(203, 157), (640, 480), (9, 17), (1, 1), (2, 33), (17, 3)] {
        for sampling in layouts {
            for optimized in [false, true] {
                let bytes = by_mozjpeg(w, h, sampling, optimized, 90.0);
                for eighths in 1..=7 {
                    let what = format!("{w}x{h} {sampling:?} optimized {optimized} at {eighths}/8");
                    let mean_at_most = if w * h < 256 { 0.5 } else { 0.1 };
                    for fast in [true, false] {
                        let (max, mean) = compare_at(&bytes, &what, eighths, fast);
                        assert!(
                            max <= 3 && mean < mean_at_most,
                            "{what} {fast}: max {max}, mean {mean}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn restart_intervals_are_followed() {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    for (w, h) in [(96, 64), (203, 157)] {
        for sampling in [
            SamplingFactor::R_4_4_4,
            SamplingFactor::R_4_2_2,
            SamplingFactor::R_4_2_0,
        ] {
            for interval in [1, 3, 7] {
                let what = format!("{w}x{h} {sampling:?} restart {interval}");
                let mut bytes = Vec::new();
                let mut enc = Encoder::new(&mut bytes, 88);
                enc.set_progressive(true);
                enc.set_sampling_factor(sampling);
                enc.set_restart_interval(interval);
                enc.encode(&picture(w, h, 3), w as u16, h as u16, ColorType::Rgb)
                    .expect("encode");
                assert!(
                    bytes.windows(2).any(|m| m == [0xFF, 0xD3]),
                    "{what}: restarts"
                );
                let (max, mean) = compare(&bytes, &what);
                assert!(max <= 3 && mean < 0.1, "{what}: max {max}, mean {mean}");
            }
        }
    }
}

#[test]
fn progressive_photos_of_the_corpus_decode_as_libjpeg_decodes_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/photos");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: no corpus at {}", dir.display());
        return;
    };
    let mut seen = 0;
    for entry in entries.flatten() {
        let bytes = std::fs::read(entry.path()).expect("read");
        if colour_of(&bytes).is_none() {
            continue;
        }
        // Full size, and scales the thumbnail kind decodes photos at.
        for eighths in [8, 2, 3, 5] {
            let what = format!("{} at {eighths}/8", entry.path().display());
            let (max, mean) = compare_at(&bytes, &what, eighths, true);
            assert!(max <= 3 && mean < 0.1, "{what}: max {max}, mean {mean}");
        }
        seen += 1;
    }
    assert!(seen >= 3, "the corpus has progressive photos, found {seen}");
}

#[test]
fn other_files_are_left_to_libjpeg() {
    // Baseline.
    let mut base = Vec::new();
    jpeg_encoder::Encoder::new(&mut base, 80)
        .encode(&picture(40, 30, 3), 40, 30, jpeg_encoder::ColorType::Rgb)
        .expect("encode");
    assert_eq!(colour_of(&base), None);
    assert!(decode(&base, Colour::YCbCr, 8).is_none());
    // Chroma halved vertically only: a layout this does not take.
    let tall = by_mozjpeg(64, 48, Some((1, 2)), false, 80.0);
    assert_eq!(colour_of(&tall), Some(Colour::YCbCr));
    assert!(decode(&tall, Colour::YCbCr, 8).is_none());
    // A colour file asked for as grey, and the reverse.
    let colour = by_mozjpeg(64, 48, Some((2, 2)), false, 80.0);
    assert!(decode(&colour, Colour::Grey, 8).is_none());
    let grey = by_mozjpeg(64, 48, None, false, 80.0);
    assert!(decode(&grey, Colour::YCbCr, 8).is_none());
    // A lone component's sampling factors are ignored, but libjpeg still
    // refuses them outside 1..=4.
    let sof = grey
        .windows(2)
        .position(|m| m == [0xFF, SOF2])
        .expect("a frame");
    for factors in [0x00, 0x50, 0x15] {
        let mut bogus = grey.clone();
        bogus[sof + 2 + 2 + 6 + 1] = factors;
        assert!(decode(&bogus, Colour::Grey, 8).is_none(), "{factors:#x}");
    }
    let mut fine = grey.clone();
    fine[sof + 2 + 2 + 6 + 1] = 0x22;
    assert!(decode(&fine, Colour::Grey, 8).is_some());
    // Without its last scan: libjpeg would smooth the blocks.
    let last_sos = colour
        .windows(2)
        .rposition(|m| m == [0xFF, SOS])
        .expect("a scan");
    let mut short = colour[..last_sos].to_vec();
    short.extend_from_slice(&[0xFF, EOI]);
    assert!(decode(&short, Colour::YCbCr, 8).is_none());
    assert_eq!(colour_of(b"not a jpeg"), None);
    // RGB stored as RGB (an Adobe marker with transform 0): not YCbCr.
    let rgb = adobe_rgb();
    let dec = mozjpeg::Decompress::new_mem(&rgb).expect("header");
    assert_eq!(dec.color_space(), mozjpeg::ColorSpace::JCS_RGB);
    assert_eq!(colour_of(&rgb), None);
    assert!(decode(b"", Colour::Grey, 8).is_none());
}

/// An 8x8 grey progressive JPEG of mid-grey (every coefficient 0) in
/// `100 + extra` scans, each valid: the DC in one scan (or, with `extra`,
/// two: first and refined), coefficients 1 to 7 each sent at 13 bits'
/// shift and refined one bit a scan (14 scans each), then 8 to 63 in one.
fn many_scans(extra: bool) -> Vec<u8> {
    let mut f = vec![0xFF, SOI];
    f.extend([0xFF, DQT, 0, 67, 0]);
    f.extend([1u8; 64]);
    f.extend([0xFF, SOF2, 0, 11, 8, 0, 8, 0, 8, 1, 1, 0x11, 0]);
    // One code, `0`, for category 0 (DC) and for EOB (AC).
    let mut dht = vec![0xFF, DHT, 0, 38];
    for class in [0x00, 0x10] {
        dht.push(class);
        dht.push(1);
        dht.extend([0u8; 15]);
        dht.push(0);
    }
    f.extend(dht);
    let mut scan = |ss: u8, se: u8, ah: u8, al: u8| {
        f.extend([0xFF, SOS, 0, 8, 1, 1, 0x00, ss, se, ah << 4 | al]);
        // One block: the code `0` or a zero bit, padded with ones.
        f.push(0x7F);
    };
    if extra {
        scan(0, 0, 0, 1);
        scan(0, 0, 1, 0);
    } else {
        scan(0, 0, 0, 0);
    }
    for k in 1..=7 {
        scan(k, k, 0, 13);
        for al in (0..13).rev() {
            scan(k, k, al + 1, al);
        }
    }
    scan(8, 63, 0, 0);
    f.extend([0xFF, EOI]);
    f
}

#[test]
fn a_hundred_scans_are_read_and_one_more_is_left_to_libjpeg() {
    let hundred = many_scans(false);
    assert_eq!(
        hundred.windows(2).filter(|m| *m == [0xFF, SOS]).count(),
        100
    );
    let img = decode(&hundred, Colour::Grey, 8).expect("decoded");
    assert_eq!((img.width(), img.height()), (8, 8));
    assert!(img.as_bytes().iter().all(|&v| v == 128));
    let more = many_scans(true);
    assert_eq!(more.windows(2).filter(|m| *m == [0xFF, SOS]).count(), 101);
    assert!(decode(&more, Colour::Grey, 8).is_none());
    // The same file with the DC in one scan less: read.
    assert!(decode_with(&hundred, Colour::Grey, 8, false).is_some());
}

/// A progressive JPEG of RGB stored as RGB: an Adobe marker with transform
/// 0, no JFIF marker.
fn adobe_rgb() -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_color_space(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(32, 16);
    c.set_progressive_mode();
    let mut started = c.start_compress(Vec::new()).expect("start");
    started.write_scanlines(&picture(32, 16, 3)).expect("write");
    started.finish().expect("finish")
}

/// `jpeg` with `segment` (marker, body) inserted after its SOI.
fn with_segment(jpeg: &[u8], marker: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len() + 2).expect("short");
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, marker]);
    out.extend(len.to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn colour_is_read_as_libjpeg_reads_it() {
    let rgb = adobe_rgb();
    let jfif = |len: usize| {
        let mut body = b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0".to_vec();
        body.truncate(len);
        body
    };
    // A JFIF APP0 of 13 bytes is no JFIF marker to libjpeg; one of 14 is,
    // and makes the file YCbCr.
    for (file, want) in [
        (rgb.clone(), None),
        (with_segment(&rgb, 0xE0, &jfif(13)), None),
        (with_segment(&rgb, 0xE0, &jfif(14)), Some(Colour::YCbCr)),
    ] {
        let libjpeg = mozjpeg::Decompress::new_mem(&file)
            .expect("header")
            .color_space();
        let expected = if libjpeg == mozjpeg::ColorSpace::JCS_YCbCr {
            Some(Colour::YCbCr)
        } else {
            None
        };
        assert_eq!(expected, want, "libjpeg's verdict");
        assert_eq!(colour_of(&file), want);
    }
}

#[test]
fn a_huffman_table_libjpeg_refuses_declines_only_the_scans_that_use_it() {
    let good = by_mozjpeg(64, 48, Some((2, 2)), false, 80.0);
    // Table 3 (used by no scan), three codes of length 1; then AC table 0
    // redefined with the all-ones code of length 1 (one code "0" and
    // another "1"), which every AC scan uses.
    let mut unused = vec![0x03, 3];
    unused.extend([0u8; 15]);
    unused.extend([0, 1, 2]);
    let file = with_segment(&good, DHT, &unused);
    let (max, _) = compare(&file, "an unused bad table");
    assert!(max <= 3);
    // Before the last scan (luma AC), its table redefined with two codes
    // of length 1, the second all ones: libjpeg refuses the file, and so
    // the decoder declines it.
    let last = good
        .windows(2)
        .rposition(|m| m == [0xFF, SOS])
        .expect("a scan");
    let table = good[last + 6] & 0x0F;
    let mut used = good[..last].to_vec();
    used.extend([0xFF, DHT, 0, 20, 0x10 | table]);
    used.extend([2u8]);
    used.extend([0u8; 15]);
    used.extend([0, 1]);
    used.extend_from_slice(&good[last..]);
    assert!(decode(&used, Colour::YCbCr, 8).is_none());
    let huffman = |counts: &[u8], symbols: &[u8]| {
        let mut all = [0u8; 16];
        all[..counts.len()].copy_from_slice(counts);
        entropy::Huffman::new(&all, symbols).is_some()
    };
    assert!(!huffman(&[2], &[0, 1]), "all ones");
    assert!(!huffman(&[1, 2], &[0, 1, 2]), "all ones at length 2");
    assert!(huffman(&[1, 1], &[0, 1]));
    assert!(huffman(&[0, 3], &[0, 1, 2]));
}

#[test]
fn damaged_files_never_panic() {
    let good = by_mozjpeg(203, 157, Some((2, 2)), false, 85.0);
    let mut seed = 7u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize
    };
    for round in 0..600 {
        let mut bytes = good.clone();
        match round % 3 {
            // A few bytes changed anywhere, the headers included.
            0 => {
                for _ in 0..1 + next() % 4 {
                    let at = next() % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            // Cut short.
            1 => bytes.truncate(next() % bytes.len()),
            // A run of bytes repeated inside the data.
            _ => {
                let at = next() % bytes.len();
                let len = (next() % 64).min(bytes.len() - at);
                let copy = bytes[at..at + len].to_vec();
                bytes.splice(at..at, copy);
            }
        }
        for colour in [Colour::YCbCr, Colour::Grey] {
            for eighths in [8, round as u8 % 7 + 1] {
                if let Some(img) = decode(&bytes, colour, eighths) {
                    assert!(img.width() > 0 && img.height() > 0);
                }
            }
        }
    }
}

#[test]
fn bits_are_read_past_stuffing_and_up_to_a_marker() {
    // 0xFF 0x00 is one 0xFF byte; the marker ends the data.
    let data = [
        0x12, 0xFF, 0x00, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, 0x11, 0xFF, 0xD9,
    ];
    let mut b = Bits::new(&data);
    let want = [
        0x12u64, 0xFF, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0, 0x11,
    ];
    for &byte in &want {
        assert_eq!(b.take(4), byte >> 4);
        assert_eq!(b.take(4), byte & 0x0F);
    }
    assert!(b.finish().is_some());
    // Past the data: zeros, and the scan is broken.
    assert_eq!(b.take(8), 0);
    assert!(b.finish().is_none());
}

/// `cargo test --release --lib progressive_alone -- --ignored --nocapture`:
/// each progressive photo of the corpus decoded by this decoder and by
/// libjpeg (full size and at 3/8, the scale its thumbnails mostly take),
/// and by zune-jpeg (full size), best of 5.
#[test]
#[ignore = "a benchmark, run by name"]
fn progressive_alone() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/photos");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: no corpus at {}", dir.display());
        return;
    };
    let best = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .fold(f64::MAX, f64::min)
    };
    let libjpeg = |bytes: &[u8], eighths: u8| {
        let mut dec = mozjpeg::Decompress::new_mem(bytes).expect("header");
        dec.scale(eighths);
        let mut s = dec.rgb().expect("start");
        let data: Vec<u8> = s.read_scanlines().expect("read");
        s.finish().expect("finish");
        data.len()
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).expect("read");
        if colour_of(&bytes) != Some(Colour::YCbCr) {
            continue;
        }
        let ours = best(&|| {
            decode(&bytes, Colour::YCbCr, 8).expect("decoded");
        });
        let full = best(&|| {
            libjpeg(&bytes, 8);
        });
        let ours3 = best(&|| {
            decode(&bytes, Colour::YCbCr, 3).expect("decoded");
        });
        let three = best(&|| {
            libjpeg(&bytes, 3);
        });
        let zune = best(&|| {
            image::load_from_memory(&bytes).expect("decoded");
        });
        eprintln!(
            "{}: ours {ours:.1} ms, libjpeg {full:.1} ms ({:.2}x), at 3/8 ours {ours3:.1} ms, libjpeg {three:.1} ms ({:.2}x), \
             zune-jpeg {zune:.1} ms ({:.2}x)",
            path.file_name().unwrap_or_default().to_string_lossy(),
            full / ours,
            three / ours3,
            zune / ours
        );
    }
}
