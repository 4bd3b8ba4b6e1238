//! Golden tests of the stage kinds on real pixels. Each image operation runs
//! in threads and in processes mode, and both must write the same bytes.

use std::collections::BTreeMap;

use image::{GrayImage, RgbImage};

use super::*;

/// Run `scan -> decode -> STAGE... -> encode png -> write` over `include`
/// of the samples, in threads mode and in processes mode; check both wrote
/// identical files and return them decoded, by relative path.
fn image_op(stages: &str, include: &str) -> BTreeMap<String, RgbImage> {
    let ws = Workspace::new();
    let text = format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\ninclude = [\"{include}\"]\n\n\
         [[stage]]\nname = \"load\"\nkind = \"decode\"\n\n{stages}\n\n\
         [[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n\
         [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n"
    );
    ws.write("op.toml", text.as_bytes());
    ws.conveyor()
        .args(&["run", "op.toml", "--set", "save.dir=\"out/t\""])
        .run()
        .code(0);
    ws.conveyor()
        .args(&[
            "run",
            "op.toml",
            "--mode",
            "processes",
            "--set",
            "save.dir=\"out/p\"",
        ])
        .run()
        .code(0)
        .stderr_has("processes auto/");
    let threads = ws.files("out/t");
    assert!(!threads.is_empty(), "nothing written");
    assert_eq!(threads, ws.files("out/p"), "threads and processes differ");
    threads
        .into_iter()
        .map(|(name, bytes)| {
            let img = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
            (name, img)
        })
        .collect()
}

/// The sample decoded as the tests' reference (no EXIF rotation on these).
fn source(rel: &str) -> RgbImage {
    image::open(Path::new(REPO).join("samples/photos").join(rel))
        .expect("sample decodes")
        .to_rgb8()
}

/// Mean absolute difference between neighbouring pixels: local contrast.
fn local_contrast(img: &RgbImage) -> f64 {
    let gray: GrayImage = image::DynamicImage::ImageRgb8(img.clone()).to_luma8();
    let (w, h) = gray.dimensions();
    let mut sum = 0f64;
    for y in 0..h {
        for x in 1..w {
            sum +=
                (f64::from(gray.get_pixel(x, y)[0]) - f64::from(gray.get_pixel(x - 1, y)[0])).abs();
        }
    }
    sum / f64::from((w - 1) * h)
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

#[test]
fn crop_box_has_its_size_and_content() {
    let out = image_op(
        "[[stage]]\nname = \"cut\"\nkind = \"crop\"\nx = 100\ny = 50\nwidth = 200\nheight = 120",
        "meadow.jpg",
    );
    let img = &out["meadow.png"];
    assert_eq!(img.dimensions(), (200, 120));
    let src = source("meadow.jpg");
    let expected = image::imageops::crop_imm(&src, 100, 50, 200, 120).to_image();
    assert_eq!(img, &expected);
}

#[test]
fn crop_to_an_aspect_ratio_by_gravity() {
    for (gravity, x) in [
        ("west", 0),
        ("center", (640 - 427) / 2),
        ("east", 640 - 427),
    ] {
        let out = image_op(
            &format!(
                "[[stage]]\nname = \"cut\"\nkind = \"crop\"\naspect = \"1:1\"\ngravity = \"{gravity}\""
            ),
            "meadow.jpg",
        );
        let img = &out["meadow.png"];
        assert_eq!(img.dimensions(), (427, 427));
        let expected = image::imageops::crop_imm(&source("meadow.jpg"), x, 0, 427, 427).to_image();
        assert_eq!(img, &expected, "gravity {gravity}");
    }
    // `smart` keeps the most detailed square: a valid 427x427 crop.
    let out = image_op(
        "[[stage]]\nname = \"cut\"\nkind = \"crop\"\naspect = \"1:1\"\ngravity = \"smart\"",
        "meadow.jpg",
    );
    assert_eq!(out["meadow.png"].dimensions(), (427, 427));
}

#[test]
fn rotate_and_flip_rearrange_pixels() {
    let r90 = image_op(
        "[[stage]]\nname = \"r\"\nkind = \"rotate\"\ndegrees = 90",
        "tower.jpg",
    );
    let r90x2 = image_op(
        "[[stage]]\nname = \"r1\"\nkind = \"rotate\"\ndegrees = 90\n\n[[stage]]\nname = \"r2\"\nkind = \"rotate\"\ndegrees = 90",
        "tower.jpg",
    );
    let r180 = image_op(
        "[[stage]]\nname = \"r\"\nkind = \"rotate\"\ndegrees = 180",
        "tower.jpg",
    );
    let src = source("tower.jpg");
    assert_eq!(r90["tower.png"].dimensions(), (540, 360));
    assert_eq!(r90["tower.png"], image::imageops::rotate90(&src));
    assert_eq!(r90x2["tower.png"], r180["tower.png"]);
    let flipped = image_op(
        "[[stage]]\nname = \"f\"\nkind = \"flip\"\ndirection = \"horizontal\"",
        "tower.jpg",
    );
    assert_eq!(flipped["tower.png"].dimensions(), (360, 540));
    assert_eq!(flipped["tower.png"], image::imageops::flip_horizontal(&src));
    let v = image_op(
        "[[stage]]\nname = \"f\"\nkind = \"flip\"\ndirection = \"vertical\"",
        "tower.jpg",
    );
    assert_eq!(v["tower.png"], image::imageops::flip_vertical(&src));
}

#[test]
fn grayscale_has_equal_channels() {
    let out = image_op(
        "[[stage]]\nname = \"g\"\nkind = \"grayscale\"",
        "**/*.{jpg,png}",
    );
    assert_eq!(out.len(), 8);
    for (name, img) in &out {
        assert!(
            img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
            "{name} has colour"
        );
    }
}

#[test]
fn blur_lowers_and_sharpen_raises_local_contrast() {
    let base = local_contrast(&source("meadow.jpg"));
    let blurred = image_op(
        "[[stage]]\nname = \"b\"\nkind = \"blur\"\nsigma = 2.0",
        "meadow.jpg",
    );
    let sharp = image_op(
        "[[stage]]\nname = \"s\"\nkind = \"sharpen\"\nsigma = 1.0\namount = 1.5",
        "meadow.jpg",
    );
    let (b, s) = (
        local_contrast(&blurred["meadow.png"]),
        local_contrast(&sharp["meadow.png"]),
    );
    assert!(b < base * 0.8, "blur: {b} vs {base}");
    assert!(s > base * 1.2, "sharpen: {s} vs {base}");
}

#[test]
fn adjust_changes_tone_as_asked() {
    let src = source("meadow.jpg");
    let mean = |img: &RgbImage| {
        img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / img.as_raw().len() as f64
    };
    let darker = image_op(
        "[[stage]]\nname = \"a\"\nkind = \"adjust\"\nbrightness = 0.5",
        "meadow.jpg",
    );
    assert!((mean(&darker["meadow.png"]) - mean(&src) * 0.5).abs() < 2.0);
    let gray = image_op(
        "[[stage]]\nname = \"a\"\nkind = \"adjust\"\nsaturation = 0.0",
        "meadow.jpg",
    );
    assert!(
        gray["meadow.png"]
            .pixels()
            .all(|p| p[0].abs_diff(p[1]) <= 1 && p[1].abs_diff(p[2]) <= 1)
    );
    let same = image_op("[[stage]]\nname = \"a\"\nkind = \"adjust\"", "meadow.jpg");
    assert_eq!(same["meadow.png"], src);
}

#[test]
fn watermark_changes_pixels_only_inside_its_box() {
    let out = image_op(
        "[[stage]]\nname = \"mark\"\nkind = \"watermark\"\nimage = \"samples/watermark.png\"\ngravity = \"southeast\"\nmargin = 10\nscale = 0.25\nopacity = 0.8",
        "meadow.jpg",
    );
    let (img, src) = (&out["meadow.png"], source("meadow.jpg"));
    // 640 wide: the 240x80 logo becomes 160x53, 10 px from the bottom right.
    let (bx, by, bw, bh) = (640 - 10 - 160, 427 - 10 - 53, 160, 53);
    let mut changed_inside = 0;
    for (x, y, p) in img.enumerate_pixels() {
        let inside = (bx..bx + bw).contains(&x) && (by..by + bh).contains(&y);
        if p != src.get_pixel(x, y) {
            assert!(inside, "pixel ({x}, {y}) outside the watermark changed");
            changed_inside += 1;
        }
    }
    assert!(
        changed_inside > bw * bh / 2,
        "only {changed_inside} pixels changed"
    );
}

#[test]
fn a_missing_watermark_stops_the_run_before_work() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/web-gallery.toml",
            "--set",
            "mark.image=nope.png",
        ])
        .run()
        .code(2)
        .stderr_has("stage `mark`: the file `image` names, `nope.png` (")
        .stderr_has("does not exist")
        .stderr_has("--> --set mark.image=nope.png");
    assert!(!ws.path("out").exists());
}

/// Decode + resize and thumbnail of the same photos agree closely. Returns
/// the thumbnails (PNG) by name.
fn thumbnail_matches_decode_resize(
    dir: &Path,
    include: &str,
    max_diff: f64,
) -> BTreeMap<String, Vec<u8>> {
    let ws = Workspace::new();
    let root = format!("scan.root=\"{}\"", dir.display());
    let inc = format!("scan.include=[\"{include}\"]");
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            &root,
            "--set",
            &inc,
            "--set",
            "jpeg.format=\"png\"",
            "--set",
            "save.dir=\"out/resize\"",
        ])
        .run()
        .code(0);
    let thumb = "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"ROOT\"\ninclude = [\"INC\"]\n\n[[stage]]\nname = \"t\"\nkind = \"thumbnail\"\nwidth = 256\nheight = 256\n\n[[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out/thumb\"\n"
        .replace("ROOT", &dir.display().to_string())
        .replace("INC", include);
    ws.write("thumb.toml", thumb.as_bytes());
    ws.conveyor()
        .args(&["run", "thumb.toml", "--mode", "t=processes"])
        .run()
        .code(0);
    let (a, b) = (ws.files("out/resize"), ws.files("out/thumb"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        let x = image::load_from_memory(bytes).expect("decodes").to_rgb8();
        let y = image::load_from_memory(&b[name])
            .expect("decodes")
            .to_rgb8();
        assert_eq!(x.dimensions(), y.dimensions(), "{name}");
        let d = mean_abs_diff(&x, &y);
        assert!(d < max_diff, "{name}: mean difference {d:.2}");
    }
    b
}

/// A large generated JPEG (2400 x 1600 unless given), colour or gray.
fn big_jpeg(w: u32, h: u32, gray: bool) -> Vec<u8> {
    let big = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x / 10 % 256) as u8,
            (y / 7 % 256) as u8,
            ((x + y) / 13 % 256) as u8,
        ])
    });
    let img = if gray {
        image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(big).to_luma8())
    } else {
        image::DynamicImage::ImageRgb8(big)
    };
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Jpeg,
    )
    .expect("encode");
    bytes
}

/// A progressive 4:2:0 JPEG with libjpeg's usual scan script (DC, then AC
/// bands and refinements per component), from the same picture as
/// [`big_jpeg`].
fn progressive_jpeg(w: u32, h: u32) -> Vec<u8> {
    let rgb = image::load_from_memory(&big_jpeg(w, h, false))
        .expect("decodes")
        .to_rgb8();
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(w as usize, h as usize);
    c.set_quality(90.0);
    c.set_optimize_scans(false);
    c.set_progressive_mode();
    let mut started = c.start_compress(Vec::new()).expect("start");
    started.write_scanlines(rgb.as_raw()).expect("write");
    started.finish().expect("finish")
}

#[test]
fn thumbnail_matches_decode_and_resize() {
    // Large generated JPEGs, so shrink-on-load really decodes at a reduced
    // scale: colour, gray, and one stored on its side (EXIF orientation 6).
    let ws = Workspace::new();
    ws.write("big/large.jpg", &big_jpeg(2400, 1600, false));
    ws.write("big/gray.jpg", &big_jpeg(1800, 1200, true));
    ws.write(
        "big/sideways.jpg",
        &with_segments(&big_jpeg(1500, 1000, false), &[(0xE1, exif_orientation(6))]),
    );
    // Progressive and over 16 times the thumbnail: decoded at 1/8 without
    // its luma AC scans (`stages/jpeg_scans.rs`).
    ws.write("big/progressive.jpg", &progressive_jpeg(4400, 2900));
    ws.sample("rotated.jpg", "big/rotated.jpg")
        .sample("trips/hills.png", "big/hills.png");
    let thumbs = thumbnail_matches_decode_resize(&ws.path("big"), "*", 2.5);
    assert_eq!(thumbs.len(), 6);
    let sideways = image::load_from_memory(&thumbs["sideways.png"]);
    assert_eq!(
        sideways.map(|i| (i.width(), i.height())).ok(),
        Some((171, 256)),
        "shown upright"
    );
    if let Some(corpus) = corpus() {
        assert_eq!(thumbnail_matches_decode_resize(&corpus, "*", 2.5).len(), 21);
    }
}

#[test]
fn shrink_on_load_keeps_the_icc_profile_and_exif() {
    // A profile split over two APP2 chunks, stored out of order: readers
    // must join them by sequence number.
    let profile: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let chunk = |seq: u8, part: &[u8]| {
        let mut c = b"ICC_PROFILE\0".to_vec();
        c.extend([seq, 2]);
        c.extend(part);
        (0xE2, c)
    };
    let ws = Workspace::new();
    ws.write(
        "in/big.jpg",
        &with_segments(
            &big_jpeg(2400, 1600, false),
            &[
                (0xE1, exif_orientation(1)),
                chunk(2, &profile[1000..]),
                chunk(1, &profile[..1000]),
            ],
        ),
    );
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails-fast.toml",
            "--set",
            "scan.root=in",
            "--set",
            "jpeg.keep=[\"exif\", \"icc\"]",
            // The bytes are no real profile: converting would drop them.
            "--set",
            "thumb.colour=\"keep\"",
        ])
        .run()
        .code(0);
    let out = &ws.files("out/thumbs")["big.jpg"];
    let reader = image::ImageReader::new(std::io::Cursor::new(out))
        .with_guessed_format()
        .expect("reader");
    let mut decoder = reader.into_decoder().expect("decoder");
    use image::ImageDecoder;
    assert_eq!(decoder.icc_profile().expect("icc"), Some(profile));
    assert!(decoder.exif_metadata().expect("exif").is_some());
    assert_eq!(decoder.dimensions(), (256, 171));
}

/// The same command on the same photos writes the same bytes, a second
/// later too, in every format that carries a profile: no output records
/// when it was made. (The sRGB profile that `keep = ["icc"]` embeds once
/// carried the time it was encoded.)
#[test]
fn the_same_run_a_second_later_writes_the_same_bytes() {
    let ws = Workspace::new();
    for format in ["jpeg", "png", "webp"] {
        let run = |out: &str| {
            ws.conveyor()
                .args(&[
                    "run",
                    "pipelines/thumbnails.toml",
                    "--set",
                    &format!("save.dir={out}"),
                    "--set",
                    &format!("jpeg.format=\"{format}\""),
                    "--set",
                    "jpeg.keep=[\"icc\", \"exif\"]",
                ])
                .run()
                .code(0);
            ws.files(out)
        };
        let first = run(&format!("out/{format}/a"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = run(&format!("out/{format}/b"));
        assert!(first.len() >= 10, "{format}: {} outputs", first.len());
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            second.keys().collect::<Vec<_>>()
        );
        let mut profiles = 0;
        for (name, bytes) in &first {
            assert!(bytes == &second[name], "{name} differs between the runs");
            let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
                .with_guessed_format()
                .expect("reader");
            use image::ImageDecoder;
            let mut decoder = reader.into_decoder().expect("decoder");
            if let Some(icc) = decoder.icc_profile().expect("icc") {
                assert!(
                    moxcms::ColorProfile::new_from_slice(&icc).is_ok(),
                    "{name}: its profile does not parse"
                );
                profiles += 1;
            }
        }
        // Every output carries a profile: the photo's own, or sRGB.
        assert_eq!(profiles, first.len(), "{format}");
    }
}

/// `jpeg` with the coded data of its largest scan damaged: `hole`, a third
/// of it zeros (the data then ends before the picture does), or `garbled`,
/// a byte overwritten every 97.
fn damaged(jpeg: &[u8], how: &str) -> Vec<u8> {
    let mut b = jpeg.to_vec();
    let mut starts: Vec<usize> = (0..b.len() - 1)
        .filter(|&i| b[i..i + 2] == [0xFF, 0xDA])
        .collect();
    starts.push(b.len());
    let (from, to) = starts
        .windows(2)
        .map(|w| (w[0] + 40, w[1] - 8))
        .max_by_key(|(from, to)| to.saturating_sub(*from))
        .expect("a scan");
    match how {
        "hole" => {
            let mid = from + (to - from) / 3;
            b[mid..mid + (to - from) / 3].fill(0);
        }
        "ones" => {
            // Stuffed 0xFF bytes: a run of one bits, which is no code.
            let mid = from + (to - from) / 2;
            for pair in b[mid..mid + 64].chunks_exact_mut(2) {
                pair.copy_from_slice(&[0xFF, 0x00]);
            }
        }
        _ => {
            for at in (from..to).step_by(97) {
                b[at] = 0x5A;
            }
        }
    }
    b
}

#[test]
fn jpegs_with_damaged_data_fail_with_libjpegs_reason() {
    // A photo whose coded data is damaged decodes to grey or smeared
    // blocks from the damage on; it fails, with libjpeg's words, rather
    // than pass for the photo. Bytes between segments leave the pixels
    // right and pass.
    let ws = Workspace::new();
    let baseline = big_jpeg(1200, 800, false);
    let progressive = progressive_jpeg(1200, 800);
    // Too small to shrink on load: `thumbnail` decodes it whole, as
    // `decode` does (by libjpeg in builds with the `nasm` feature).
    let small = big_jpeg(300, 200, false);
    let last_scan = baseline
        .windows(2)
        .rposition(|w| w == [0xFF, 0xDA])
        .expect("scan");
    let mut stray = baseline.clone();
    stray.splice(last_scan..last_scan, [0x00, 0x11, 0x22]);
    ws.write("in/good.jpg", &baseline)
        .write("in/stray.jpg", &stray)
        .write("in/hole.jpg", &damaged(&baseline, "hole"))
        .write("in/garbled.jpg", &damaged(&baseline, "garbled"))
        .write(
            "in/garbled-progressive.jpg",
            &damaged(&progressive, "garbled"),
        )
        .write("in/ones-small.jpg", &damaged(&small, "ones"))
        .write("in/ones.jpg", &damaged(&baseline, "ones"))
        .write("in/ones-progressive.jpg", &damaged(&progressive, "ones"));
    let failing = [
        "hole",
        "garbled",
        "garbled-progressive",
        "ones",
        "ones-progressive",
        "ones-small",
    ];
    for mode in ["inline", "processes"] {
        let done = ws
            .conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails-fast.toml",
                "--set",
                "scan.root=in",
                "--mode",
                mode,
                "--force",
            ])
            .run();
        done.code(1).stderr_has("2 ok, 6 failed");
        for name in failing {
            done.stderr_has(&format!(
                "in/{name}.jpg: cannot decode jpg: Corrupt JPEG data: "
            ));
        }
        let out = ws.files("out/thumbs");
        assert_eq!(dims(&out["good.jpg"]), (256, 171));
        assert_eq!(dims(&out["stray.jpg"]), (256, 171));
    }
    // Through `decode` (thumbnails.toml), zune-jpeg in its strict mode
    // finds codes that are no codes; data that ends early it fills with
    // grey unseen (see the README), so only those files are asked of it.
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails.toml",
            "--set",
            "scan.root=in",
            "--force",
        ])
        .run();
    done.code(1);
    for name in [
        "ones",
        "ones-progressive",
        "ones-small",
        "garbled-progressive",
    ] {
        done.stderr_has(&format!(
            "in/{name}.jpg: cannot decode jpg: Corrupt JPEG data: "
        ));
    }
    let out = ws.files("out/thumbs");
    assert_eq!(dims(&out["good.jpg"]), (256, 171));
    assert_eq!(dims(&out["stray.jpg"]), (256, 171));
}

#[test]
fn corrupt_jpegs_fail_alone_in_the_shrink_on_load_decoder() {
    let good = big_jpeg(1200, 800, false);
    let sof = good
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF");
    let dht = good
        .windows(2)
        .position(|w| w == [0xFF, 0xC4])
        .expect("DHT");
    let patched = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let ws = Workspace::new();
    ws.write("in/good.jpg", &good)
        .write("in/precision.jpg", &patched(sof + 4, &[12]))
        .write("in/huffman.jpg", &patched(dht + 4, &[0xFF; 24]))
        .write("in/wide.jpg", &patched(sof + 5, &[0xFF; 4]));
    // `decode` (thumbnails.toml) gives libjpeg's words too: the general
    // decoder refuses these headers, and libjpeg, asked in its place,
    // refuses them as well. (It reads the 65535x65535 frame, which its
    // `max_pixels` refuses first.)
    let wide = [
        (
            "thumbnails-fast",
            "in/wide.jpg: cannot decode jpg: Maximum supported image dimension",
        ),
        (
            "thumbnails",
            "in/wide.jpg: image is 65535x65535 (4294836225 pixels), over the limit",
        ),
    ];
    for (pipeline, wide) in wide {
        for mode in ["inline", "threads", "processes"] {
            let done = ws
                .conveyor()
                .args(&[
                    "run",
                    &format!("pipelines/{pipeline}.toml"),
                    "--set",
                    "scan.root=in",
                    "--mode",
                    mode,
                    "--force",
                ])
                .run();
            done.code(1)
                .stderr_has("1 ok, 3 failed")
                .stderr_has(
                    "in/precision.jpg: cannot decode jpg: Unsupported JPEG data precision 12",
                )
                .stderr_has("in/huffman.jpg: cannot decode jpg: Bogus Huffman table definition")
                .stderr_has(wide);
            assert!(!done.stderr().contains("panicked"), "{pipeline} {mode}");
            assert_eq!(dims(&ws.files("out/thumbs")["good.jpg"]), (256, 171));
        }
    }
}

#[test]
fn filter_counts_what_it_drops() {
    let ws = Workspace::new();
    ws.write(
        "f.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\n\n[[stage]]\nname = \"keep\"\nkind = \"filter\"\nextensions = [\"jpg\", \"png\"]\nmin_width = 300\nmode = \"processes\"\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    // 8 JPEGs and PNGs, of which tiny.jpg (120 wide) is too small; 4 other formats.
    ws.conveyor()
        .args(&["run", "f.toml"])
        .run()
        .code(0)
        .stderr_has("12 items in")
        .stderr_has("7 ok, 0 failed, 5 filtered");
    assert_eq!(ws.files("out").len(), 7);
    assert!(!ws.files("out").contains_key("tiny.jpg"));
    ws.conveyor()
        .args(&[
            "run",
            "f.toml",
            "--set",
            "keep.max_size=\"40KiB\"",
            "--set",
            "save.dir=small",
        ])
        .run()
        .code(0);
    // Only JPEGs and PNGs of at least 300 px and at most 40 KiB.
    for (name, bytes) in ws.files("small") {
        assert!(bytes.len() <= 40 * 1024, "{name}");
    }
}

#[test]
fn hash_equals_sha256sum_and_manifest_has_a_row_per_item() {
    let ws = Workspace::new();
    ws.write(
        "h.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\n\n[[stage]]\nname = \"hash\"\nkind = \"hash\"\nmode = \"processes\"\n\n[[stage]]\nname = \"index\"\nkind = \"manifest\"\npath = \"out/m.jsonl\"\nformat = \"jsonl\"\nmode = \"processes\"\n",
    );
    ws.conveyor()
        .args(&["run", "h.toml"])
        .run()
        .code(0)
        .stderr_has("index: wrote out/m.jsonl");
    let text = std::fs::read_to_string(ws.path("out/m.jsonl")).expect("manifest");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 12);
    let sha256sum = Command::new("sha256sum").arg("--version").output().is_ok();
    for row in &rows {
        assert_eq!(row["status"], "ok");
        let path = row["path"].as_str().expect("path");
        let hash = row["hash"].as_str().expect("hash");
        let hex = hash.strip_prefix("sha256:").expect("sha256 prefix");
        if sha256sum {
            let out = Command::new("sha256sum")
                .arg(ws.path(path))
                .output()
                .expect("sha256sum");
            let expected = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                hex,
                expected.split_whitespace().next().unwrap_or(""),
                "{path}"
            );
        }
        use sha2::Digest;
        let ours = sha2::Sha256::digest(std::fs::read(ws.path(path)).expect("read"));
        let ours: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, ours, "{path}");
    }
    // CSV: a header and one row per item, failures included.
    ws.write("bad/x.jpg", b"not a photo")
        .sample("tiny.jpg", "bad/ok.jpg");
    ws.write(
        "c.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"bad\"\n\n[[stage]]\nname = \"load\"\nkind = \"decode\"\n\n[[stage]]\nname = \"index\"\nkind = \"manifest\"\npath = \"out/m.csv\"\n",
    );
    ws.conveyor().args(&["run", "c.toml"]).run().code(1);
    let csv = std::fs::read_to_string(ws.path("out/m.csv")).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("path,rel,status,size,width,height,format"));
    assert!(
        lines[1].starts_with("bad/ok.jpg,ok.jpg,ok,") && lines[1].contains(",120,80,jpeg,"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("bad/x.jpg,,failed,")
            && lines[2].contains("not a recognised image format"),
        "{csv}"
    );
}

#[test]
fn copy_archives_by_hash_and_keeps_duplicates_once() {
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/a.jpg")
        .sample("tiny.jpg", "in/sub/same.jpg")
        .sample("dusk.jpg", "in/b.jpg");
    ws.write(
        "a.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"hash\"\nkind = \"hash\"\n\n[[stage]]\nname = \"store\"\nkind = \"copy\"\ndir = \"archive\"\nfilename = \"{hash}.{ext}\"\nmode = \"processes\"\nworkers = 1\n",
    );
    ws.conveyor()
        .args(&["run", "a.toml"])
        .run()
        .code(0)
        .stderr_has("3 ok, 0 failed");
    let files = ws.files("archive");
    assert_eq!(files.len(), 2, "{:?}", files.keys());
    for (name, bytes) in &files {
        use sha2::Digest;
        let h: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(name, &format!("{h}.jpg"));
    }
    // The sources are untouched by a copy, and gone after a move.
    assert_eq!(ws.files("in").len(), 3);
    ws.conveyor()
        .args(&[
            "run",
            "a.toml",
            "--set",
            "store.move=true",
            "--set",
            "store.dir=moved",
            "--set",
            "store.filename=\"{rel_dir}/{name}\"",
        ])
        .run()
        .code(0);
    assert_eq!(ws.files("in").len(), 0);
    assert_eq!(
        ws.files("moved").keys().collect::<Vec<_>>(),
        vec!["a.jpg", "b.jpg", "sub/same.jpg"]
    );
}

#[test]
fn exec_failures_stay_with_their_item() {
    let ws = Workspace::new();
    ws.write(
        "x.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\ninclude = [\"*.jpg\"]\n\n[[stage]]\nname = \"tool\"\nkind = \"exec\"\nshell = true\ncommand = [\"case {rel} in *tower*) echo 'no towers here' >&2; exit 3;; esac; cp {path} {out}\"]\ndir = \"out\"\nmode = \"processes\"\n",
    );
    ws.conveyor()
        .args(&["run", "x.toml"])
        .run()
        .code(1)
        .stderr_has("tower.jpg: `case {rel} in *tower*) echo 'no towers here' >&2; exit 3;; esac; cp {path} {out}` exited with code 3: no towers here")
        .stderr_has("5 ok, 1 failed");
    let files = ws.files("out");
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        vec![
            "dusk.jpg",
            "meadow.jpg",
            "rotated.jpg",
            "tiny.jpg",
            "trips/coast.jpg"
        ]
    );
    assert_eq!(
        files["dusk.jpg"],
        std::fs::read(Path::new(REPO).join("samples/photos/dusk.jpg")).expect("read")
    );
    // A timeout ends a command that hangs.
    ws.write(
        "slow.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"samples/photos\"\ninclude = [\"tiny.jpg\"]\n\n[[stage]]\nname = \"tool\"\nkind = \"exec\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"300ms\"\n",
    );
    ws.conveyor()
        .args(&["run", "slow.toml"])
        .run()
        .code(1)
        .stderr_has("`sleep` timed out after 0.3s");
}

#[test]
fn contact_sheet_tiles_every_image() {
    let ws = Workspace::new();
    ws.conveyor()
        .args(&[
            "run",
            "pipelines/contact-sheet.toml",
            "--set",
            "sheet.path=\"out/sheet.png\"",
            "--mode",
            "processes",
        ])
        .run()
        .code(0)
        .stderr_has("sheet: wrote out/sheet.png");
    let sheet = image::open(ws.path("out/sheet.png"))
        .expect("decodes")
        .to_rgb8();
    // 12 samples, 4 columns of 200 px tiles with 8 px gaps: 3 rows.
    assert_eq!(sheet.dimensions(), (4 * 208 + 8, 3 * 208 + 8));
    // Every cell holds a picture, not just background.
    for i in 0..12u32 {
        let (cx, cy) = (8 + (i % 4) * 208 + 100, 8 + (i / 4) * 208 + 100);
        assert_ne!(sheet.get_pixel(cx, cy).0, [24, 24, 24], "cell {i} is empty");
    }
}

#[test]
fn png_and_webp_encoding_options() {
    let ws = Workspace::new();
    for level in ["fast", "best"] {
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/png-to-webp.toml",
                "--set",
                "webp.format=\"png\"",
                "--set",
                &format!("webp.compression=\"{level}\""),
                "--set",
                &format!("save.dir=\"out/{level}\""),
            ])
            .run()
            .code(0);
    }
    let (fast, best) = (ws.files("out/fast"), ws.files("out/best"));
    let hills = |m: &BTreeMap<String, Vec<u8>>| m["trips/hills.png"].clone();
    assert!(hills(&best).len() < hills(&fast).len());
    assert_eq!(
        image::load_from_memory(&hills(&best))
            .expect("png")
            .to_rgb8(),
        image::load_from_memory(&hills(&fast))
            .expect("png")
            .to_rgb8()
    );
    // WebP is lossless: same pixels as the PNG source.
    ws.conveyor()
        .args(&["run", "pipelines/png-to-webp.toml"])
        .run()
        .code(0);
    let webp = image::open(ws.path("out/webp/trips/hills.webp"))
        .expect("webp")
        .to_rgb8();
    assert_eq!(webp, source("trips/hills.png"));
}

#[test]
fn keep_exif_keeps_the_exif_block() {
    let ws = Workspace::new();
    for (dir, keep) in [("none", "[]"), ("exif", "[\"exif\"]")] {
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                &format!("jpeg.keep={keep}"),
                "--set",
                &format!("save.dir=\"out/{dir}\""),
            ])
            .run()
            .code(0);
    }
    let has_exif = |b: &[u8]| b.windows(6).any(|w| w == b"Exif\0\0");
    assert!(!has_exif(&ws.files("out/none")["rotated.jpg"]));
    let kept = &ws.files("out/exif")["rotated.jpg"];
    assert!(has_exif(kept));
    // The pixels are upright already, so the kept orientation says so: a
    // viewer that honours EXIF must not turn the image again.
    let reader = image::ImageReader::new(std::io::Cursor::new(kept))
        .with_guessed_format()
        .expect("reader");
    let mut decoder = reader.into_decoder().expect("decoder");
    use image::ImageDecoder;
    assert_eq!(
        decoder.orientation().expect("orientation"),
        image::metadata::Orientation::NoTransforms
    );
}

/// A file of `tests/data`: an arithmetic-coded JPEG, baseline or
/// progressive, and its Huffman-coded twin (the same coefficients:
/// `jpegtran -arithmetic [-progressive]` made the first two from the
/// third, which `cjpeg -quality 85` made from a generated 640x480 image);
/// `arithmetic-cmyk.jpg`, the twin at 64x48 saved as CMYK by Pillow, with
/// no profile, then recoded by `jpegtran -arithmetic`.
fn arithmetic_data(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(REPO).join("tests/data").join(name)).expect("test data")
}

#[test]
fn arithmetic_coded_jpegs_are_read_like_their_huffman_twin() {
    let ws = Workspace::new();
    let arith = arithmetic_data("arithmetic.jpg");
    ws.write("in/arith.jpg", &arith)
        .write(
            "in/progressive.jpg",
            &arithmetic_data("arithmetic-progressive.jpg"),
        )
        .write("in/twin.jpg", &arithmetic_data("arithmetic-twin.jpg"))
        .write(
            "in/sideways.jpg",
            &with_segments(&arith, &[(0xE1, exif_orientation(6))]),
        );
    // `decode` + `resize` against `thumbnail`, which decodes these at 7/8.
    let thumbs = thumbnail_matches_decode_resize(&ws.path("in"), "*", 2.5);
    let pixels = |name: &str| {
        image::load_from_memory(&thumbs[name])
            .expect("decodes")
            .to_rgb8()
    };
    assert_eq!(pixels("arith.png").dimensions(), (256, 192));
    // The same coefficients through the same libjpeg: the same pixels.
    assert!(pixels("arith.png") == pixels("twin.png"));
    assert!(pixels("progressive.png") == pixels("twin.png"));
    assert_eq!(
        pixels("sideways.png").dimensions(),
        (192, 256),
        "shown upright"
    );

    // Whole images: libjpeg (arithmetic) against zune-jpeg (the twin).
    let whole = image_op_in(&ws, "in", "");
    assert_eq!(whole["arith.png"].dimensions(), (640, 480));
    assert_eq!(whole["sideways.png"].dimensions(), (480, 640));
    assert!(whole["arith.png"] == whole["progressive.png"]);
    let d = mean_abs_diff(&whole["arith.png"], &whole["twin.png"]);
    assert!(d < 1.0, "mean difference {d:.2}");
}

/// libjpeg's whole decode of a JPEG, as RGB.
fn by_libjpeg(bytes: &[u8]) -> RgbImage {
    let dec = mozjpeg::Decompress::new_mem(bytes).expect("header");
    let mut started = dec.rgb().expect("start");
    let (w, h) = (started.width() as u32, started.height() as u32);
    let data: Vec<u8> = started.read_scanlines().expect("read");
    started.finish().expect("finish");
    RgbImage::from_raw(w, h, data).expect("size")
}

/// Progressive JPEGs go through conveyor's own decoder
/// (`stages/progressive.rs`): through `decode` and through `thumbnail`,
/// the pixels are libjpeg's within the IDCT's rounding, for each chroma
/// layout it takes, grey, restart markers, and the corpus's progressive
/// photos; one it declines (chroma halved vertically only) is decoded as
/// before.
#[test]
fn progressive_jpegs_decode_as_libjpeg_decodes_them() {
    let ws = Workspace::new();
    let rgb = image::load_from_memory(&big_jpeg(1203, 805, false))
        .expect("decodes")
        .to_rgb8();
    let progressive = |sampling: Option<(u8, u8)>| {
        let space = match sampling {
            Some(_) => mozjpeg::ColorSpace::JCS_RGB,
            None => mozjpeg::ColorSpace::JCS_GRAYSCALE,
        };
        let mut c = mozjpeg::Compress::new(space);
        c.set_size(1203, 805);
        c.set_quality(92.0);
        c.set_progressive_mode();
        let pixels = match sampling {
            Some(s) => {
                c.set_chroma_sampling_pixel_sizes(s, s);
                rgb.as_raw().clone()
            }
            None => image::DynamicImage::ImageRgb8(rgb.clone())
                .to_luma8()
                .into_raw(),
        };
        let mut started = c.start_compress(Vec::new()).expect("start");
        started.write_scanlines(&pixels).expect("write");
        started.finish().expect("finish")
    };
    let mut files = BTreeMap::new();
    files.insert("p420", progressive(Some((2, 2))));
    files.insert("p422", progressive(Some((2, 1))));
    files.insert("p444", progressive(Some((1, 1))));
    files.insert("p440", progressive(Some((1, 2))));
    files.insert("grey", progressive(None));
    let mut restarts = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut restarts, 90);
    enc.set_progressive(true);
    enc.set_restart_interval(5);
    enc.encode(rgb.as_raw(), 1203, 805, jpeg_encoder::ColorType::Rgb)
        .expect("encode");
    files.insert("restarts", restarts);
    for (name, bytes) in &files {
        ws.write(&format!("in/{name}.jpg"), bytes);
    }
    let mut corpus_files = 0;
    if let Some(corpus) = corpus() {
        for entry in std::fs::read_dir(&corpus).expect("corpus").flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let bytes = std::fs::read(entry.path()).expect("read");
            // Progressive: SOF2 before the first scan.
            let sof2 = bytes.windows(2).position(|m| m == [0xFF, 0xC2]);
            let sos = bytes.windows(2).position(|m| m == [0xFF, 0xDA]);
            if name.ends_with(".jpg") && sof2.is_some() && sof2 < sos {
                ws.write(&format!("in/{name}"), &bytes);
                corpus_files += 1;
            }
        }
        assert!(corpus_files >= 3, "the corpus's progressive photos");
    }
    let whole = image_op_in(&ws, "in", "");
    assert_eq!(whole.len(), files.len() + corpus_files);
    for (name, got) in &whole {
        let source = std::fs::read(ws.path(&format!("in/{}.jpg", name.trim_end_matches(".png"))))
            .expect("source");
        let want = by_libjpeg(&source);
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        let max = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        let mean = mean_abs_diff(got, &want);
        assert!(max <= 3 && mean < 0.1, "{name}: max {max}, mean {mean:.3}");
    }
    // And shrunk on load: the thumbnail kind against decode + resize.
    let thumbs = thumbnail_matches_decode_resize(&ws.path("in"), "*", 2.5);
    assert_eq!(thumbs.len(), whole.len());
}

/// `scan -> decode -> encode png -> write` over the folder `rel` of `ws`
/// (with `stages` after decode), decoded by name.
fn image_op_in(ws: &Workspace, rel: &str, stages: &str) -> BTreeMap<String, RgbImage> {
    let text = format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"{rel}\"\n\n\
         [[stage]]\nname = \"load\"\nkind = \"decode\"\n\n{stages}\n\n\
         [[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n\
         [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"whole\"\n"
    );
    ws.write("whole.toml", text.as_bytes());
    ws.conveyor().args(&["run", "whole.toml"]).run().code(0);
    ws.files("whole")
        .into_iter()
        .map(|(name, bytes)| {
            let img = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
            (name, img)
        })
        .collect()
}

/// `arithmetic.jpg` with its frame after 320 KB of APP segments: past the
/// head a header check reads first.
fn arithmetic_behind_app_data() -> Vec<u8> {
    let app3: Vec<(u8, Vec<u8>)> = (0..5).map(|_| (0xE3, vec![7u8; 0xFFFD])).collect();
    with_segments(&arithmetic_data("arithmetic.jpg"), &app3)
}

#[test]
fn an_arithmetic_coded_jpeg_over_the_limits_is_refused_by_its_header() {
    let ws = Workspace::new();
    ws.write("photos/arith.jpg", &arithmetic_data("arithmetic.jpg"))
        .write("photos/behind.jpg", &arithmetic_behind_app_data())
        .sample("tiny.jpg", "photos/small.jpg");
    for (stage, kind) in [("load", "decode"), ("thumb", "thumbnail")] {
        let pipeline = if kind == "decode" {
            "pipelines/thumbnails.toml"
        } else {
            "pipelines/thumbnails-fast.toml"
        };
        let limit = format!("{stage}.max_pixels=100000");
        let args = [
            "run",
            pipeline,
            "--set",
            "scan.root=photos",
            "--set",
            &limit,
        ];
        let dry = ws.conveyor().args(&args).args(&["--dry-run"]).run();
        let real = ws.conveyor().args(&args).args(&["--force"]).run();
        for name in ["arith.jpg", "behind.jpg"] {
            let why = format!(
                "{name}: image is 640x480 (307200 pixels), over the limit of 100000 pixels ({kind}.max_pixels)"
            );
            dry.code(1).stderr_has(&why);
            real.code(1).stderr_has(&why);
        }
        assert_eq!(dry.tally(), real.tally(), "{}", dry.stderr());
        assert_eq!(real.tally().ok, 1);
    }
}

#[test]
fn a_size_filter_and_the_memory_budget_read_an_arithmetic_jpegs_size() {
    let ws = Workspace::new();
    ws.write("in/arith.jpg", &arithmetic_data("arithmetic.jpg"))
        .write("in/behind.jpg", &arithmetic_behind_app_data())
        .write(
            "in/progressive.jpg",
            &arithmetic_data("arithmetic-progressive.jpg"),
        )
        .sample("tiny.jpg", "in/small.jpg");
    ws.write(
        "f.toml",
        b"[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n[[stage]]\nname = \"keep\"\nkind = \"filter\"\nmin_width = 600\n\n[[stage]]\nname = \"read\"\nkind = \"read\"\n\n[[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n",
    );
    ws.conveyor().args(&["run", "f.toml"]).run().code(0);
    let kept: Vec<String> = ws.files("out").into_keys().collect();
    assert_eq!(kept, ["arith.jpg", "behind.jpg", "progressive.jpg"]);
    // The budget sizes each image by its header before decoding it.
    let done = ws
        .conveyor()
        .args(&[
            "run",
            "pipelines/thumbnails-fast.toml",
            "--set",
            "scan.root=in",
            "--memory",
            "16MiB",
        ])
        .run();
    done.code(0);
    assert_eq!(done.tally().ok, 4, "{}", done.stderr());
}

#[test]
fn an_arithmetic_coded_cmyk_jpeg_without_a_profile_reads_like_its_twin() {
    // No profile: the general decoder's simple formula, whichever decoder
    // reads the file.
    let ws = Workspace::new();
    ws.write("in/arith.jpg", &arithmetic_data("arithmetic-cmyk.jpg"))
        .write("in/twin.jpg", &arithmetic_data("arithmetic-cmyk-twin.jpg"));
    let whole = image_op_in(&ws, "in", "");
    assert_eq!(whole["arith.png"].dimensions(), (64, 48));
    let d = mean_abs_diff(&whole["arith.png"], &whole["twin.png"]);
    assert!(d < 1.0, "mean difference {d:.2}");
    // The same colours as the arithmetic RGB file it was made from.
    let rgb = image::load_from_memory(&arithmetic_data("arithmetic-twin.jpg"))
        .expect("decodes")
        .resize_exact(64, 48, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let d = mean_abs_diff(&whole["arith.png"], &rgb);
    assert!(d < 12.0, "mean difference from the RGB source {d:.2}");
}

/// `jpeg` with its second scan (and what follows it up to the third)
/// repeated `copies` times: a small file of many scans, each a pass over
/// the whole image.
fn scan_bomb(jpeg: &[u8], copies: usize) -> Vec<u8> {
    let scans: Vec<usize> = jpeg
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect();
    assert!(scans.len() >= 3, "progressive");
    let mut out = jpeg[..scans[2]].to_vec();
    for _ in 0..copies {
        out.extend_from_slice(&jpeg[scans[1]..scans[2]]);
    }
    out.extend_from_slice(&jpeg[scans[2]..]);
    out
}

#[test]
fn a_jpeg_of_thousands_of_scans_is_refused_not_decoded() {
    let ws = Workspace::new();
    ws.write(
        "in/arith.jpg",
        &scan_bomb(&arithmetic_data("arithmetic-progressive.jpg"), 2000),
    )
    .write(
        "in/huffman.jpg",
        &scan_bomb(&progressive_jpeg(1200, 900), 2000),
    )
    .write("in/good.jpg", &arithmetic_data("arithmetic.jpg"));
    for pipeline in [
        "pipelines/thumbnails.toml",
        "pipelines/thumbnails-fast.toml",
    ] {
        let done = ws
            .conveyor()
            .args(&["run", pipeline, "--set", "scan.root=in", "--force"])
            .run();
        done.code(1);
        assert_eq!(done.tally().ok, 1, "{}", done.stderr());
        for name in ["arith.jpg", "huffman.jpg"] {
            let line = done
                .stderr()
                .lines()
                .find(|l| l.contains(name))
                .map(str::to_string)
                .unwrap_or_default();
            assert!(line.contains("scan"), "{pipeline}: {line}");
        }
        done.stderr_has("in/arith.jpg: cannot decode jpg: 2010 scans, more than the 100");
    }
}
