//! HEIC/HEIF and AVIF in: read through libheif when built with
//! `--features heif` (test files made here with libheif's own `heif-enc`),
//! and a clear error per file, naming the feature, when not.

use super::*;

/// A pipeline that decodes everything under `in` and writes PNGs.
fn to_png(extra: &str) -> String {
    format!(
        r#"
[pipeline]
name = "heif"
on_error = "skip"

[[stage]]
name = "scan"
kind = "scan"
root = "in"

[[stage]]
name = "load"
kind = "decode"
{extra}

[[stage]]
name = "png"
kind = "encode"
format = "png"

[[stage]]
name = "save"
kind = "write"
dir = "out"
filename = "{{name}}.png"
"#
    )
}

/// The first bytes of a HEIC file and some that follow: enough for the
/// file to be recognised as one, without libheif.
fn heic_lookalike() -> Vec<u8> {
    let mut b = 24u32.to_be_bytes().to_vec();
    b.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
    b.extend_from_slice(&[0u8; 200]);
    b
}

/// A small JPEG of a sample photo, `w` x `h`, optionally marked as stored
/// on its side (EXIF orientation 6).
fn small_jpeg(w: u32, h: u32, sideways: bool) -> Vec<u8> {
    let photo = image::open(Path::new(REPO).join("samples/photos/meadow.jpg")).expect("sample");
    let small = photo.resize_exact(w, h, image::imageops::FilterType::Triangle);
    let mut jpeg = Vec::new();
    small
        .to_rgb8()
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("encode");
    if sideways {
        with_segments(&jpeg, &[(0xE1, exif_orientation(6))])
    } else {
        jpeg
    }
}

#[cfg(not(feature = "heif"))]
#[test]
fn without_the_feature_a_heic_fails_alone_and_says_how_to_read_it() {
    let ws = Workspace::new();
    ws.write("in/phone.heic", &heic_lookalike());
    ws.write("in/phone.jpg", &small_jpeg(64, 48, false));
    ws.write(
        "in/notes.avif",
        b"\0\0\0\x14ftypavif\0\0\0\0mif1 rest of it",
    );
    ws.write("p.toml", to_png("").as_bytes());
    let done = ws.conveyor().args(&["run", "p.toml"]).run();
    done.code(1).stderr_has(
        "HEIC/HEIF support is not built in: build with `--features heif` (needs libheif)",
    );
    done.stderr_has("AVIF support is not built in");
    assert_eq!(done.tally().ok, 1, "the JPEG beside it is made");
    assert!(ws.path("out/phone.jpg.png").exists());
    // A dry run says the same from the header.
    ws.conveyor()
        .args(&["run", "p.toml", "--dry-run"])
        .run()
        .stderr_has("HEIC/HEIF support is not built in");
    // Something that is no image at all lists what is read, HEIC included.
    ws.write("in/junk.jpg", b"this is not an image at all, just words");
    ws.conveyor()
        .args(&["run", "p.toml"])
        .run()
        .stderr_has("HEIC/HEIF and AVIF when built with `--features heif`");
}

/// `heif-enc` (Debian's libheif-examples), to make test files with.
#[cfg(feature = "heif")]
fn heif_enc() -> Option<PathBuf> {
    let found = Command::new("heif-enc").arg("--help").output().is_ok();
    if !found {
        eprintln!("SKIPPED: `heif-enc` not found (apt-get install libheif-examples)");
    }
    found.then(|| PathBuf::from("heif-enc"))
}

/// Encode `jpeg` to `rel` (HEIC, or AVIF when `rel` ends in .avif).
#[cfg(feature = "heif")]
fn make_heif(ws: &Workspace, enc: &Path, jpeg: &[u8], rel: &str) {
    // The source stays outside the scanned folder.
    let src_rel = format!("{}.src.jpg", rel.replace('/', "_"));
    ws.write(&src_rel, jpeg);
    let src = ws.path(&src_rel);
    if let Some(dir) = ws.path(rel).parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let out = Command::new(enc)
        .args(["-q", "90"])
        .arg(&src)
        .arg("-o")
        .arg(ws.path(rel))
        .output()
        .expect("heif-enc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(src).expect("remove");
}

/// Mean absolute difference per channel of two same-sized images.
#[cfg(feature = "heif")]
fn mean_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[cfg(feature = "heif")]
#[test]
fn heic_and_avif_are_read_upright_and_close_to_their_source() {
    let Some(enc) = heif_enc() else { return };
    let ws = Workspace::new();
    let flat = small_jpeg(240, 160, false);
    let sideways = small_jpeg(240, 160, true);
    make_heif(&ws, &enc, &flat, "in/flat.heic");
    make_heif(&ws, &enc, &flat, "in/flat.avif");
    make_heif(&ws, &enc, &sideways, "in/sideways.heic");
    make_heif(&ws, &enc, &sideways, "in/sideways.avif");
    ws.write("p.toml", to_png("").as_bytes());
    let done = ws.conveyor().args(&["run", "p.toml"]).run();
    done.code(0);
    assert_eq!(done.tally().ok, 4, "{}", done.stderr());
    let source = image::load_from_memory(&flat).expect("jpeg").to_rgb8();
    for name in ["flat.heic", "flat.avif"] {
        let out = image::open(ws.path(&format!("out/{name}.png"))).expect("png");
        let diff = mean_diff(&out.to_rgb8(), &source);
        assert!(
            diff < 6.0,
            "{name}: mean difference {diff:.2} from its source"
        );
    }
    for name in ["sideways.heic", "sideways.avif"] {
        let out = image::open(ws.path(&format!("out/{name}.png"))).expect("png");
        assert_eq!(
            (out.width(), out.height()),
            (160, 240),
            "{name}: turned by its EXIF orientation"
        );
        let upright = image::imageops::rotate90(&source);
        let diff = mean_diff(&out.to_rgb8(), &upright);
        assert!(diff < 6.0, "{name}: turned the right way ({diff:.2})");
    }
}

#[cfg(feature = "heif")]
#[test]
fn a_heic_over_max_pixels_is_refused_before_decoding() {
    let Some(enc) = heif_enc() else { return };
    let ws = Workspace::new();
    make_heif(&ws, &enc, &small_jpeg(240, 160, false), "in/big.heic");
    ws.write("in/broken.heic", &heic_lookalike());
    ws.write("p.toml", to_png("max_pixels = 10000").as_bytes());
    let done = ws.conveyor().args(&["run", "p.toml"]).run();
    done.code(1)
        .stderr_has("image is 240x160 (38400 pixels), over the limit of 10000 pixels");
    done.stderr_has("cannot decode HEIC/HEIF");
    assert_eq!(done.tally().failed, 2);
    // The dry run refuses it from its header too.
    ws.conveyor()
        .args(&["run", "p.toml", "--dry-run"])
        .run()
        .stderr_has("over the limit of 10000 pixels");
}

#[cfg(feature = "heif")]
#[test]
fn a_heic_with_a_wide_gamut_profile_comes_out_in_srgb() {
    let Some(enc) = heif_enc() else { return };
    let ws = Workspace::new();
    // The photo in Adobe RGB (converted by LittleCMS), profile embedded;
    // heif-enc carries the profile into the HEIC.
    let source = image::load_from_memory(&small_jpeg(240, 160, false))
        .expect("jpeg")
        .to_rgb8();
    let adobe_icc = moxcms::ColorProfile::new_adobe_rgb()
        .encode()
        .expect("profile");
    let adobe = lcms2::Profile::new_icc(&adobe_icc).expect("lcms reads it");
    let to_adobe: lcms2::Transform<[u8; 3], [u8; 3]> = lcms2::Transform::new(
        &lcms2::Profile::new_srgb(),
        lcms2::PixelFormat::RGB_8,
        &adobe,
        lcms2::PixelFormat::RGB_8,
        lcms2::Intent::Perceptual,
    )
    .expect("transform");
    let src: Vec<[u8; 3]> = source.pixels().map(|p| p.0).collect();
    let mut wide = vec![[0u8; 3]; src.len()];
    to_adobe.transform_pixels(&src, &mut wide);
    let wide = image::RgbImage::from_raw(240, 160, wide.concat()).expect("size");
    let mut jpeg = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 95);
    encoder.add_icc_profile(&adobe_icc).expect("icc");
    encoder
        .encode(wide.as_raw(), 240, 160, jpeg_encoder::ColorType::Rgb)
        .expect("jpeg");
    make_heif(&ws, &enc, &jpeg, "in/adobe.heic");
    ws.write("p.toml", to_png("").as_bytes());
    ws.conveyor().args(&["run", "p.toml"]).run().code(0);
    let out = image::open(ws.path("out/adobe.heic.png"))
        .expect("png")
        .to_rgb8();
    let converted = mean_diff(&out, &source);
    let untouched = mean_diff(&wide, &source);
    assert!(
        converted < 4.0 && untouched > 5.0,
        "converted {converted:.2} from the sRGB photo; the Adobe RGB pixels were {untouched:.2} away"
    );
    // With `colour = "keep"` the pixels stay in Adobe RGB up to `encode`;
    // AVIF can't carry the profile, so they are converted there. Read back
    // (through libheif), the AVIF shows the photo's colours.
    ws.write("src/adobe.jpg", &jpeg);
    let to_avif = r#"
[pipeline]
name = "avif"

[[stage]]
name = "scan"
kind = "scan"
root = "src"

[[stage]]
name = "load"
kind = "decode"
colour = "keep"

[[stage]]
name = "avif"
kind = "encode"
format = "avif"
quality = 90
speed = 10

[[stage]]
name = "save"
kind = "write"
dir = "in2"
filename = "{stem}.avif"
"#;
    ws.write("avif.toml", to_avif.as_bytes());
    ws.conveyor().args(&["run", "avif.toml"]).run().code(0);
    ws.write(
        "back.toml",
        to_png("")
            .replace("root = \"in\"", "root = \"in2\"")
            .replace("dir = \"out\"", "dir = \"back\"")
            .as_bytes(),
    );
    ws.conveyor().args(&["run", "back.toml"]).run().code(0);
    let back = image::open(ws.path("back/adobe.avif.png"))
        .expect("png")
        .to_rgb8();
    let avif = mean_diff(&back, &source);
    assert!(avif < 4.0, "the AVIF is {avif:.2} from the sRGB photo");
}
