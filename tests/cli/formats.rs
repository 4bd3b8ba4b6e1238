//! Output formats and the metadata they carry: `keep` (EXIF without GPS
//! unless asked, orientation 1, XMP, ICC) in JPEG, PNG, WebP and AVIF;
//! lossy against lossless WebP; progressive and optimised JPEG; the
//! removed `strip_metadata`. Test photos are made here from the corpus.

use crate::*;
use image::ImageDecoder;

const TAG_GPS: u16 = 0x8825;
const XMP_PACKET: &[u8] = b"<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"><rdf:Description xmlns:dc=\"http://purl.org/dc/elements/1.1/\" dc:creator=\"conveyor-test\"/></rdf:RDF></x:xmpmeta>";

/// A little-endian EXIF block: IFD0 = {Make, Orientation 6, GPS pointer,
/// Copyright}, and a GPS IFD with a latitude.
fn exif_with_gps() -> Vec<u8> {
    let mut b = b"II*\0\x08\0\0\0".to_vec();
    let entry = |b: &mut Vec<u8>, tag: u16, ty: u16, count: u32, value: [u8; 4]| {
        b.extend(tag.to_le_bytes());
        b.extend(ty.to_le_bytes());
        b.extend(count.to_le_bytes());
        b.extend(value);
    };
    b.extend(4u16.to_le_bytes());
    entry(&mut b, 0x010F, 2, 4, *b"Cam\0");
    entry(&mut b, 0x0112, 3, 1, [6, 0, 0, 0]);
    entry(&mut b, TAG_GPS, 4, 1, 62u32.to_le_bytes());
    entry(&mut b, 0x8298, 2, 3, *b"Me\0\0");
    b.extend(0u32.to_le_bytes());
    b.extend(2u16.to_le_bytes());
    entry(&mut b, 1, 2, 2, *b"N\0\0\0");
    entry(&mut b, 2, 5, 3, 92u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    for v in [48u32, 1, 51, 1, 2400, 100] {
        b.extend(v.to_le_bytes());
    }
    b
}

/// IFD0's tags and its orientation, read from a TIFF block (tests only see
/// well-formed blocks, so indexing may panic on a bad one).
fn ifd0(exif: &[u8]) -> (Vec<u16>, Option<u16>) {
    let big = &exif[..2] == b"MM";
    let u16_at = |at: usize| {
        let b = [exif[at], exif[at + 1]];
        if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = exif[at..at + 4].try_into().unwrap();
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let ifd = u32_at(4) as usize;
    let tags: Vec<u16> = (0..u16_at(ifd) as usize)
        .map(|i| u16_at(ifd + 2 + i * 12))
        .collect();
    let orientation = tags
        .iter()
        .position(|&t| t == 0x0112)
        .map(|i| u16_at(ifd + 2 + i * 12 + 8));
    (tags, orientation)
}

/// A corpus JPEG with its own APPn segments replaced by an EXIF block with
/// orientation 6 and a GPS position, and an XMP packet.
fn gps_tagged_photo(corpus: &Path, name: &str) -> Vec<u8> {
    let src = std::fs::read(corpus.join(name)).expect("corpus photo");
    let mut out = src[..2].to_vec();
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend(exif_with_gps());
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.extend(XMP_PACKET);
    for (marker, payload) in [(0xE1u8, exif), (0xE1, xmp)] {
        out.extend([0xFF, marker]);
        out.extend(((payload.len() + 2) as u16).to_be_bytes());
        out.extend(payload);
    }
    // Copy the rest, leaving out the photo's own APP1..APP15 segments.
    let mut at = 2;
    while src[at] == 0xFF && src[at + 1] != 0xDA {
        let len = u16::from_be_bytes([src[at + 2], src[at + 3]]) as usize;
        if !(0xE1..=0xEF).contains(&src[at + 1]) {
            out.extend(&src[at..at + 2 + len]);
        }
        at += 2 + len;
    }
    out.extend(&src[at..]);
    out
}

fn write_pipeline(ws: &Workspace, format: &str, keep: &str, extra: &str) {
    ws.write(
        "p.toml",
        format!(
            "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"in\"\n\n\
             [[stage]]\nname = \"load\"\nkind = \"decode\"\n\n\
             [[stage]]\nname = \"small\"\nkind = \"resize\"\nwidth = 320\n\n\
             [[stage]]\nname = \"enc\"\nkind = \"encode\"\nformat = \"{format}\"\nkeep = {keep}\n{extra}\n\
             [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n"
        )
        .as_bytes(),
    );
}

/// A metadata block of a file, if it has one.
type Block = Option<Vec<u8>>;

/// (ICC, EXIF, XMP) of an encoded file, read by `image`'s own decoders.
fn metadata_of(format: &str, bytes: &[u8]) -> (Block, Block, Block) {
    let cursor = std::io::Cursor::new(bytes);
    let mut dec: Box<dyn ImageDecoder> = match format {
        "jpeg" => Box::new(image::codecs::jpeg::JpegDecoder::new(cursor).unwrap()),
        "png" => Box::new(image::codecs::png::PngDecoder::new(cursor).unwrap()),
        _ => Box::new(image::codecs::webp::WebPDecoder::new(cursor).unwrap()),
    };
    // Orientation 6 was applied: the 2560x1600 photo stands upright.
    assert_eq!(dec.dimensions(), (320, 512), "{format}");
    (
        dec.icc_profile().unwrap(),
        dec.exif_metadata().unwrap(),
        dec.xmp_metadata().unwrap(),
    )
}

#[test]
fn keep_lists_exactly_what_survives_in_jpeg_png_and_webp() {
    let Some(corpus) = corpus() else { return };
    let ws = Workspace::new();
    ws.write("in/photo.jpg", &gps_tagged_photo(&corpus, "Aqua.jpg"));
    let cases: [(&str, bool, bool, bool, bool); 6] = [
        // keep, exif, gps, xmp, icc
        ("[]", false, false, false, false),
        ("[\"exif\"]", true, false, false, false),
        ("[\"exif\", \"gps\"]", true, true, false, false),
        ("[\"xmp\"]", false, false, true, false),
        ("[\"icc\"]", false, false, false, true),
        (
            "[\"exif\", \"xmp\", \"icc\", \"gps\"]",
            true,
            true,
            true,
            true,
        ),
    ];
    for format in ["jpeg", "png", "webp"] {
        for (keep, exif, gps, xmp, icc) in cases {
            let _ = std::fs::remove_dir_all(ws.path("out"));
            write_pipeline(&ws, format, keep, "");
            ws.conveyor().args(&["run", "p.toml"]).run().code(0);
            let ext = if format == "jpeg" { "jpg" } else { format };
            let out = &ws.files("out")[&format!("photo.{ext}")];
            let (got_icc, got_exif, got_xmp) = metadata_of(format, out);
            let case = format!("{format} keep = {keep}");
            assert_eq!(got_icc.is_some(), icc, "{case}");
            assert_eq!(got_xmp.as_deref(), xmp.then_some(XMP_PACKET), "{case}");
            assert_eq!(got_exif.is_some(), exif, "{case}");
            if let Some(e) = got_exif {
                let (tags, orientation) = ifd0(&e);
                assert_eq!(tags.contains(&TAG_GPS), gps, "{case}: {tags:x?}");
                assert!(tags.contains(&0x8298), "{case}: copyright kept");
                assert_eq!(orientation, Some(1), "{case}");
                // No latitude left in the bytes either.
                assert_eq!(
                    e.windows(4).any(|w| w == 2400u32.to_le_bytes()),
                    gps,
                    "{case}"
                );
            }
        }
    }
}

/// Pillow's view of a file: "W H has_gps orientation" (or None when
/// python3 with Pillow is not here).
fn pillow_reads(path: &Path) -> Option<String> {
    let script = "import sys\nfrom PIL import Image\nim = Image.open(sys.argv[1]); im.load()\n\
                  e = im.getexif()\nprint(im.size[0], im.size[1], 0x8825 in e, e.get(0x0112))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'PIL'") {
            return None;
        }
        panic!("Pillow could not read {}: {err}", path.display());
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn avif_decodes_and_carries_the_kept_exif_without_gps() {
    let Some(corpus) = corpus() else { return };
    let ws = Workspace::new();
    ws.write("in/photo.jpg", &gps_tagged_photo(&corpus, "Aqua.jpg"));
    for (dir, keep, gps) in [
        ("a", "[\"exif\"]", "False"),
        ("b", "[\"exif\", \"gps\"]", "True"),
    ] {
        write_pipeline(&ws, "avif", keep, "speed = 10\n");
        ws.conveyor()
            .args(&["run", "p.toml", "--set", &format!("save.dir=\"{dir}\"")])
            .run()
            .code(0);
        let path = ws.path(&format!("{dir}/photo.avif"));
        let bytes = std::fs::read(&path).expect("avif written");
        assert_eq!(&bytes[4..12], b"ftypavif");
        let Some(seen) = pillow_reads(&path) else {
            eprintln!("skipped: no python3 with Pillow to decode AVIF");
            return;
        };
        assert_eq!(seen, format!("320 512 {gps} 1"), "keep = {keep}");
    }
}

#[test]
fn lossy_webp_is_far_smaller_than_lossless_and_decodes() {
    let Some(corpus) = corpus() else { return };
    let ws = Workspace::new();
    for name in ["Garden.jpg", "LadyBird.jpg", "GreenMeadow.jpg"] {
        ws.write(
            &format!("in/{name}"),
            &std::fs::read(corpus.join(name)).unwrap(),
        );
    }
    let mut total = [0usize; 2];
    for (i, extra) in ["", "lossless = true\n"].into_iter().enumerate() {
        let _ = std::fs::remove_dir_all(ws.path("out"));
        write_pipeline(&ws, "webp", "[]", extra);
        ws.conveyor()
            .args(&["run", "p.toml", "--set", "small.width=1024"])
            .run()
            .code(0);
        for (name, bytes) in ws.files("out") {
            let img = image::load_from_memory(&bytes).expect("webp decodes");
            assert_eq!(img.width(), 1024, "{name}");
            total[i] += bytes.len();
        }
    }
    let [lossy, lossless] = total;
    assert!(
        lossy * 10 <= lossless * 6,
        "lossy {lossy} bytes is not 40% smaller than lossless {lossless}"
    );
}

/// True when a JPEG has a progressive frame header (SOF2) before its scans.
fn is_progressive(jpeg: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        match jpeg[at + 1] {
            0xC2 => return true,
            0xC0 | 0xC1 | 0xDA => return false,
            _ => at += 2 + u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize,
        }
    }
    false
}

#[test]
fn progressive_and_optimised_jpeg() {
    let Some(corpus) = corpus() else { return };
    let ws = Workspace::new();
    ws.write(
        "in/photo.jpg",
        &std::fs::read(corpus.join("Garden.jpg")).unwrap(),
    );
    let mut sizes = Vec::new();
    for (dir, extra) in [
        ("plain", ""),
        ("optimized", "optimize = true\n"),
        ("progressive", "progressive = true\n"),
    ] {
        write_pipeline(&ws, "jpeg", "[]", extra);
        ws.conveyor()
            .args(&["run", "p.toml", "--set", &format!("save.dir=\"{dir}\"")])
            .run()
            .code(0);
        let bytes = &ws.files(dir)["photo.jpg"];
        image::load_from_memory(bytes).expect("decodes");
        assert_eq!(is_progressive(bytes), dir == "progressive", "{dir}");
        sizes.push(bytes.len());
    }
    assert!(
        sizes[1] < sizes[0],
        "optimised {} >= plain {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn removed_and_misplaced_options_are_check_errors() {
    let ws = Workspace::new();
    write_pipeline(&ws, "jpeg", "[]", "strip_metadata = false\n");
    ws.conveyor()
        .args(&["check", "p.toml"])
        .run()
        .code(2)
        .stderr_has("p.toml:20:")
        .stderr_has("`strip_metadata` was replaced by `keep`")
        .stderr_has("keep = [\"exif\", \"icc\"]");
    write_pipeline(&ws, "png", "[\"gps\"]", "progressive = true\n");
    ws.conveyor()
        .args(&["check", "p.toml"])
        .run()
        .code(2)
        .stderr_has("`progressive` applies to jpeg only, and this stage writes png")
        .stderr_has("\"gps\" keeps the position inside the EXIF");
}

#[test]
fn shrink_on_load_carries_xmp_and_drops_gps_in_every_mode() {
    let Some(corpus) = corpus() else { return };
    let ws = Workspace::new();
    ws.write("in/photo.jpg", &gps_tagged_photo(&corpus, "Aqua.jpg"));
    // In processes mode the metadata crosses the wire to the worker.
    for mode in ["threads", "processes"] {
        ws.conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails-fast.toml",
                "--mode",
                mode,
                "--set",
                "scan.root=\"in\"",
                "--set",
                "jpeg.keep=[\"exif\", \"xmp\"]",
                "--set",
                &format!("save.dir=\"{mode}\""),
            ])
            .run()
            .code(0);
        let out = &ws.files(mode)["photo.jpg"];
        let mut dec = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(out)).unwrap();
        assert_eq!(
            dec.xmp_metadata().unwrap().as_deref(),
            Some(XMP_PACKET),
            "{mode}"
        );
        let (tags, orientation) = ifd0(&dec.exif_metadata().unwrap().expect("exif kept"));
        assert!(!tags.contains(&TAG_GPS), "{mode}: {tags:x?}");
        assert_eq!(orientation, Some(1), "{mode}");
    }
}

#[test]
fn sixteen_bit_png_in_gives_sixteen_bit_png_out() {
    let ws = Workspace::new();
    let img = image::ImageBuffer::from_fn(64, 40, |x, y| {
        image::Rgb([(x * 1000) as u16, (y * 1600) as u16, 12345u16])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb16(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    ws.write("in/deep.png", &bytes);
    write_pipeline(&ws, "png", "[]", "");
    ws.conveyor()
        .args(&["run", "p.toml", "--set", "small.width=64"])
        .run()
        .code(0);
    let out = image::load_from_memory(&ws.files("out")["deep.png"]).unwrap();
    assert_eq!(out.color(), image::ColorType::Rgb16);
}

/// A `w` x `h` JPEG by mozjpeg, its luma sampled `luma` (h, v) and its
/// chroma `chroma`, of a smooth picture ([`gradient`]).
fn sampled_jpeg(
    w: u32,
    h: u32,
    luma: (i32, i32),
    chroma: (i32, i32),
    progressive: bool,
) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    // libjpeg's defaults: mozjpeg's own make every file progressive.
    c.set_fastest_defaults();
    c.set_size(w as usize, h as usize);
    c.set_quality(90.0);
    if progressive {
        c.set_progressive_mode();
    }
    for (i, comp) in c.components_mut().iter_mut().enumerate() {
        let (fh, fv) = if i == 0 { luma } else { chroma };
        comp.h_samp_factor = fh;
        comp.v_samp_factor = fv;
    }
    let pixels: Vec<u8> = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                gradient((x as f64 + 0.5) / w as f64, (y as f64 + 0.5) / h as f64)
            })
        })
        .collect();
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&pixels).unwrap();
    let jpeg = started.finish().unwrap();
    let sof = if progressive { 0xC2 } else { 0xC0 };
    assert!(jpeg.windows(2).any(|m| m == [0xFF, sof]), "SOF {sof:x}");
    jpeg
}

/// The picture of [`sampled_jpeg`] at (x, y), both from 0 to 1: smooth, so
/// compression and resizing keep it within a few levels.
fn gradient(x: f64, y: f64) -> [u8; 3] {
    [
        (40.0 + 180.0 * x) as u8,
        (30.0 + 190.0 * y) as u8,
        (200.0 - 120.0 * x * y) as u8,
    ]
}

/// The mean difference, over pixels and channels, between an output image
/// and the picture it was made from.
fn off_gradient(bytes: &[u8]) -> f64 {
    let img = image::load_from_memory(bytes).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let mut sum = 0.0;
    for (x, y, p) in img.enumerate_pixels() {
        let want = gradient(
            (f64::from(x) + 0.5) / f64::from(w),
            (f64::from(y) + 0.5) / f64::from(h),
        );
        for c in 0..3 {
            sum += (f64::from(p[c]) - f64::from(want[c])).abs();
        }
    }
    sum / f64::from(w * h * 3)
}

#[test]
fn jpegs_the_general_decoder_misreads_are_decoded_by_libjpeg() {
    // Valid layouts zune-jpeg gets wrong: chroma sampled finer than the
    // luma (baseline: stripes and no error; progressive: an error or a
    // panic) and a factor of 3 (it refuses the header). Through `decode`
    // (thumbnails.toml) and `thumbnail` (thumbnails-fast.toml), each comes
    // out at its size and as the picture it is.
    let ws = Workspace::new();
    let layouts = [
        ("finer", (1, 1), (2, 2)),
        ("wider", (1, 1), (2, 1)),
        ("threes", (3, 1), (1, 1)),
    ];
    let sizes = [(5, 7), (64, 48), (257, 129), (1003, 701)];
    let mut names = Vec::new();
    for (layout, luma, chroma) in layouts {
        for (w, h) in sizes {
            for progressive in [false, true] {
                let name = format!("{layout}-{w}x{h}-{}", if progressive { "p" } else { "b" });
                ws.write(
                    &format!("odd/{name}.jpg"),
                    &sampled_jpeg(w, h, luma, chroma, progressive),
                );
                names.push((name, (w, h)));
            }
        }
    }
    for pipeline in ["thumbnails", "thumbnails-fast"] {
        let out = format!("out-{pipeline}");
        ws.conveyor()
            .args(&[
                "run",
                &format!("pipelines/{pipeline}.toml"),
                "--set",
                "scan.root=odd",
                "--set",
                &format!("save.dir={out}"),
                "--set",
                "jpeg.format=\"png\"",
            ])
            .run()
            .code(0)
            .stderr_has(&format!("{} ok, 0 failed", names.len()));
        let files = ws.files(&out);
        for (name, (w, h)) in &names {
            let bytes = &files[&format!("{name}.png")];
            assert_eq!(
                dims(bytes),
                contain((*w, *h), Some(256), Some(256)),
                "{pipeline} {name}"
            );
            // (A 5x7 picture is too small for JPEG to keep within a few
            // levels.)
            if *w < 64 {
                continue;
            }
            let off = off_gradient(bytes);
            assert!(
                off < 3.0,
                "{pipeline} {name}: {off:.1} levels off the picture"
            );
        }
    }
}
