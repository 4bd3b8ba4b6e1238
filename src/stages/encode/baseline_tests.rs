use super::*;

/// A photo-like picture: smooth gradients, one sharp edge and a little
/// texture, in `channels` bytes a pixel.
fn picture(w: usize, h: usize, channels: usize) -> Vec<u8> {
    (0..w * h * channels)
        .map(|i| {
            let (p, c) = (i / channels, i % channels);
            let (x, y) = (p % w, p / w);
            let base = x * 140 / w.max(1) + y * 60 / h.max(1) + c * 25;
            let edge = if x * 3 > w * 2 { 40 } else { 0 };
            let texture = (x * 7 + y * 13 + c * 5) % 11;
            (base + edge + texture).min(255) as u8
        })
        .collect()
}

/// Deterministic noise (xorshift), for coefficients of every size.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn plan(channels: usize, quality: u8, halved: bool) -> Plan {
    Plan {
        channels,
        quality,
        halved,
        restart: None,
    }
}

fn ours(data: &[u8], (w, h): (usize, usize), plan: Plan) -> Vec<u8> {
    encode(data, (w as u16, h as u16), plan, None).expect("encodes")
}

fn theirs(data: &[u8], (w, h): (usize, usize), plan: Plan) -> Vec<u8> {
    use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, SamplingFactor};
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, plan.quality);
    enc.set_sampling_factor(if plan.halved {
        SamplingFactor::F_2_2
    } else {
        SamplingFactor::F_1_1
    });
    enc.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    let color = match plan.channels {
        1 => ColorType::Luma,
        4 => ColorType::Rgba,
        _ => ColorType::Rgb,
    };
    enc.encode(data, w as u16, h as u16, color)
        .expect("jpeg-encoder encodes");
    out
}

/// The pixels as both decoders here read them (zune-jpeg through `image`,
/// and libjpeg), which must agree closely; as 1 or 3 bytes a pixel.
fn decoded(bytes: &[u8], channels: usize) -> Vec<u8> {
    let by_zune = image::load_from_memory(bytes).expect("zune-jpeg decodes");
    let by_libjpeg = crate::stages::libjpeg::decode_whole(bytes, false, &|_| Ok(()))
        .expect("libjpeg decodes")
        .image;
    assert_eq!(
        (by_zune.width(), by_zune.height()),
        (by_libjpeg.width(), by_libjpeg.height())
    );
    let (a, b) = if channels == 1 {
        (
            by_zune.to_luma8().into_raw(),
            by_libjpeg.to_luma8().into_raw(),
        )
    } else {
        (
            by_zune.to_rgb8().into_raw(),
            by_libjpeg.to_rgb8().into_raw(),
        )
    };
    let worst = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max();
    assert!(worst.unwrap_or(0) <= 8, "the decoders differ by {worst:?}");
    a
}

/// Peak signal to noise of `got` (1 or 3 bytes a pixel) against `data`
/// (`channels` bytes a pixel).
fn psnr(data: &[u8], channels: usize, got: &[u8]) -> f64 {
    let step = if channels == 1 { 1 } else { 3 };
    let mut sum = 0f64;
    let mut n = 0usize;
    for (src, dst) in data.chunks_exact(channels).zip(got.chunks_exact(step)) {
        for (a, b) in src.iter().zip(dst) {
            let d = f64::from(*a) - f64::from(*b);
            sum += d * d;
            n += 1;
        }
    }
    let mse = sum / n as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// The segments before the scan: (marker, body).
pub(in crate::stages::encode) fn segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    let mut at = 2;
    while let (Some(&0xFF), Some(&m), Some(len)) =
        (jpeg.get(at), jpeg.get(at + 1), jpeg.get(at + 2..at + 4))
    {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        found.push((m, jpeg[at + 4..at + 2 + len].to_vec()));
        if m == 0xDA {
            break;
        }
        at += 2 + len;
    }
    found
}

/// The quantisation and Huffman tables a file defines, by destination.
fn tables(jpeg: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut quant = Vec::new();
    let mut huff = Vec::new();
    for (m, body) in segments(jpeg) {
        match m {
            0xDB => quant.extend(body.chunks(65).map(<[u8]>::to_vec)),
            0xC4 => {
                let mut at = 0;
                while at < body.len() {
                    let count: usize = body[at + 1..at + 17].iter().map(|&c| usize::from(c)).sum();
                    huff.push(body[at..at + 17 + count].to_vec());
                    at += 17 + count;
                }
            }
            _ => {}
        }
    }
    quant.sort();
    huff.sort();
    (quant, huff)
}

#[test]
fn zigzag_is_the_standards_order() {
    assert_eq!(ZIGZAG[..10], [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]);
    assert_eq!(ZIGZAG[30..40], [21, 28, 35, 42, 49, 56, 57, 50, 43, 36]);
    assert_eq!(ZIGZAG[56..], [53, 60, 61, 54, 47, 55, 62, 63]);
    let mut seen = ZIGZAG;
    seen.sort_unstable();
    assert_eq!(seen, std::array::from_fn::<usize, 64, _>(|i| i));
}

#[test]
fn the_mask_marks_exactly_the_nonzero_coefficients() {
    let values = noise(64 * 50, 5);
    for block in values.chunks_exact(64) {
        // About one in three zero, and every sign.
        let zz: [i16; 64] = std::array::from_fn(|k| match block[k] % 3 {
            0 => 0,
            1 => i16::from(block[k]),
            _ => -i16::from(block[k]) - 1,
        });
        let naive = (0..64).fold(0u64, |m, k| m | (u64::from(zz[k] != 0) << k));
        assert_eq!(nonzero(&zz), naive);
    }
    assert_eq!(nonzero(&[0; 64]), 0);
    assert_eq!(nonzero(&[-1; 64]), u64::MAX);
}

#[test]
fn tables_are_the_ones_jpeg_encoder_writes() {
    let data = picture(16, 16, 3);
    for quality in [1, 10, 24, 50, 75, 85, 89, 90, 99, 100] {
        for (channels, halved) in [(3, quality < 90), (1, false)] {
            let p = plan(channels, quality, halved);
            let data = &data[..16 * 16 * channels];
            let (mine, (mut quant, huff)) = (
                tables(&ours(data, (16, 16), p)),
                tables(&theirs(data, (16, 16), p)),
            );
            if channels == 1 {
                // jpeg-encoder writes the chroma table for grey too.
                quant.retain(|t| t[0] == 0);
            }
            assert_eq!(mine, (quant, huff), "q{quality}, {channels} channels");
        }
    }
}

#[test]
fn files_decode_as_close_to_the_source_as_jpeg_encoders() {
    let sizes = [(1, 1), (7, 9), (16, 16), (17, 33), (333, 219), (640, 480)];
    for (w, h) in sizes {
        for (channels, quality, halved) in [
            (3, 85, true),
            (4, 85, true),
            (3, 95, false),
            (4, 92, false),
            (1, 85, false),
            (3, 50, true),
            (3, 100, false),
            (1, 100, false),
            (3, 5, true),
        ] {
            let data = picture(w, h, channels);
            let p = plan(channels, quality, halved);
            let (a, b) = (ours(&data, (w, h), p), theirs(&data, (w, h), p));
            let (pa, pb) = (
                psnr(&data, channels, &decoded(&a, channels)),
                psnr(&data, channels, &decoded(&b, channels)),
            );
            let what = format!("{w}x{h}, {channels} channels, q{quality}");
            // An image under a block a side is mostly edge, which each
            // encoder fills out to whole blocks its own way.
            let slack = if w < 16 || h < 16 { 1.5 } else { 0.35 };
            assert!(pa >= pb - slack, "{what}: {pa:.2} dB against {pb:.2} dB");
            // The same tables, so about the same size (a little smaller:
            // the float DCT leaves fewer stray small coefficients).
            if w * h >= 300 * 200 {
                let ratio = a.len() as f64 / b.len() as f64;
                assert!(
                    (0.9..1.01).contains(&ratio),
                    "{what}: {} against {} bytes",
                    a.len(),
                    b.len()
                );
            }
        }
    }
}

#[test]
fn noise_and_extremes_keep_to_baseline_codes() {
    // Noise, a one-pixel checkerboard of black and white (the largest
    // high-frequency coefficients) and flat white (0xFF bytes to stuff),
    // at the qualities where coefficients are largest.
    let (w, h) = (67, 45);
    let checker: Vec<u8> = (0..w * h * 3)
        .map(|i| {
            if ((i / 3) % w + (i / 3) / w) % 2 == 0 {
                0
            } else {
                255
            }
        })
        .collect();
    for (name, data) in [
        ("noise", noise(w * h * 3, 7)),
        ("checkerboard", checker),
        ("white", vec![255; w * h * 3]),
        ("black", vec![0; w * h * 3]),
    ] {
        for (channels, quality, halved) in [
            (3, 100, false),
            (3, 100, true),
            (1, 100, false),
            (3, 1, true),
        ] {
            let grey: Vec<u8>;
            let data = if channels == 1 {
                grey = data.iter().step_by(3).copied().collect();
                &grey[..]
            } else {
                &data[..]
            };
            let bytes = ours(data, (w, h), plan(channels, quality, halved));
            let back = decoded(&bytes, channels);
            if quality == 100 && !halved {
                // Nearly lossless: every sample close to its source.
                let step = if channels == 1 { 1 } else { 3 };
                let worst = data
                    .chunks_exact(channels)
                    .zip(back.chunks_exact(step))
                    .flat_map(|(s, d)| s.iter().zip(d).map(|(a, b)| a.abs_diff(*b)))
                    .max();
                assert!(
                    worst.unwrap_or(0) <= 12,
                    "{name}, {channels} channels: off by {worst:?}"
                );
            }
        }
    }
}

#[test]
fn restart_markers_come_every_interval_and_change_no_pixel() {
    let (w, h) = (200, 120);
    for (channels, halved, mcus) in [(3, true, 13 * 8), (3, false, 25 * 15), (1, false, 25 * 15)] {
        let data = picture(w, h, channels);
        let plain = ours(&data, (w, h), plan(channels, 85, halved));
        for interval in [1u16, 5, 13, 1000] {
            let p = Plan {
                restart: Some(interval),
                ..plan(channels, 85, halved)
            };
            let bytes = ours(&data, (w, h), p);
            let markers: Vec<u8> = bytes
                .windows(2)
                .filter(|m| m[0] == 0xFF && (0xD0..=0xD7).contains(&m[1]))
                .map(|m| m[1] - 0xD0)
                .collect();
            let expected = (mcus - 1) / usize::from(interval);
            assert_eq!(
                markers.len(),
                expected,
                "{channels} channels, every {interval}"
            );
            assert!(
                markers
                    .iter()
                    .enumerate()
                    .all(|(i, &m)| usize::from(m) == i % 8)
            );
            assert_eq!(
                decoded(&bytes, channels),
                decoded(&plain, channels),
                "every {interval}"
            );
        }
    }
}

#[test]
fn bits_are_written_as_a_bit_at_a_time_writes_them() {
    let lengths = noise(5000, 3);
    let values = noise(5000 * 4, 11);
    let mut bits = Bits {
        out: Vec::new(),
        acc: 0,
        free: 64,
    };
    let mut naive: Vec<bool> = Vec::new();
    for (i, &l) in lengths.iter().enumerate() {
        let n = u32::from(l % 27) + 1;
        let v = u32::from_le_bytes(values[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
            & ((1 << n) - 1);
        bits.put(v, n);
        naive.extend((0..n).rev().map(|b| v >> b & 1 == 1));
        if i % 1000 == 999 {
            bits.flush();
            while !naive.len().is_multiple_of(8) {
                naive.push(true);
            }
        }
    }
    bits.flush();
    while !naive.len().is_multiple_of(8) {
        naive.push(true);
    }
    let mut expected = Vec::new();
    for byte in naive.chunks(8) {
        let b = byte.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit));
        expected.push(b);
        if b == 0xFF {
            expected.push(0);
        }
    }
    assert!(expected.contains(&0xFF), "some bytes to stuff");
    assert_eq!(bits.out, expected);
}

#[test]
fn metadata_comes_in_its_segments_before_the_tables() {
    let embed = Embed {
        icc: Some(vec![7; 70_000]),
        exif: Some(b"MM\0*\0\0\0\x08\0\0".to_vec()),
        xmp: Some(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>".to_vec()),
    };
    let data = picture(40, 30, 3);
    let bytes = encode(&data, (40, 30), plan(3, 85, true), Some(&embed)).expect("encodes");
    let found: Vec<(u8, Vec<u8>)> = segments(&bytes)
        .into_iter()
        .map(|(m, body)| (m, body[..body.len().min(6)].to_vec()))
        .collect();
    let markers: Vec<u8> = found.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        markers,
        [
            0xE0, 0xE1, 0xE1, 0xE2, 0xE2, 0xDB, 0xDB, 0xC0, 0xC4, 0xC4, 0xC4, 0xC4, 0xDA
        ]
    );
    assert_eq!(found[1].1, b"Exif\0\0");
    assert_eq!(found[2].1, b"http:/");
    assert_eq!(found[3].1, b"ICC_PR");
    let back = image::load_from_memory(&bytes).expect("decodes");
    assert_eq!((back.width(), back.height()), (40, 30));
    // None without metadata: a strip after the first.
    let bare = encode(&data, (40, 30), plan(3, 85, true), None).expect("encodes");
    assert!(
        segments(&bare)
            .iter()
            .all(|(m, _)| !(0xE1..=0xEF).contains(m))
    );
}

#[test]
fn empty_or_short_pixels_are_refused() {
    for (size, len) in [((0u16, 5u16), 0usize), ((5, 0), 0), ((4, 4), 47)] {
        let e = encode(&vec![0; len], size, plan(3, 85, true), None).expect_err("refused");
        assert!(
            e.message().starts_with("JPEG encoding failed: "),
            "{}",
            e.message()
        );
    }
}

/// One photo's pixels and size in, the file's length out.
type Encoder<'a> = dyn Fn(&[u8], (usize, usize)) -> usize + 'a;

/// Not a test: a benchmark of the encoders alone, on every corpus photo
/// resized to 1600 px wide (the large task's JPEGs). Prints each encoder's
/// time and the ratio. `cargo test --release --lib encoders_alone --
/// --ignored --nocapture` (add `--features nasm` for libjpeg-turbo's).
#[test]
#[ignore = "a benchmark; run it by name"]
fn encoders_alone() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/photos");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "skipped: no corpus at {} (the benchmark needs it)",
            dir.display()
        );
        return;
    };
    let mut photos: Vec<(Vec<u8>, (usize, usize))> = Vec::new();
    for entry in entries.flatten() {
        let Ok(img) = image::open(entry.path()) else {
            continue;
        };
        let img = img
            .resize(1600, 100_000, image::imageops::FilterType::Triangle)
            .to_rgb8();
        let size = (img.width() as usize, img.height() as usize);
        photos.push((img.into_raw(), size));
    }
    let p = plan(3, 85, true);
    let time = |f: &Encoder<'_>| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let bytes: usize = photos.iter().map(|(d, s)| f(d, *s)).sum();
            best = best.min(t.elapsed().as_secs_f64());
            assert!(bytes > 0);
        }
        best / photos.len() as f64 * 1e3
    };
    let a = time(&|d, s| ours(d, s, p).len());
    let b = time(&|d, s| theirs(d, s, p).len());
    eprintln!(
        "{} photos at 1600 px, q85, best of 5: conveyor {a:.2} ms a photo, jpeg-encoder {b:.2} ms: {:.2}x",
        photos.len(),
        b / a
    );
    #[cfg(feature = "nasm")]
    {
        let c = time(&|d, (w, h)| {
            let size = (w as u16, h as u16);
            let rgb = jpeg_encoder::ColorType::Rgb;
            super::super::libjpeg::encode(d, size, rgb, 85, true, None).map_or(0, |b| b.len())
        });
        eprintln!(
            "libjpeg-turbo with SIMD {c:.2} ms a photo: conveyor's over it {:.2}x",
            c / a
        );
    }
}
