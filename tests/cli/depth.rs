//! 16 bits per channel kept through the pipeline: a smooth 16-bit gradient
//! (which 8 bits would band) goes through each image operation, in threads
//! mode and with the operation in worker processes (so the pixels cross the
//! wire both ways), and must come out as a 16-bit PNG with the right values.

use image::{DynamicImage, ImageBuffer, Luma, Rgb, Rgba};

use super::*;

const W: u32 = 512;
const H: u32 = 384;

/// A 16-bit value along a ramp: `i` of `n` steps over the full range.
fn ramp(i: u32, n: u32) -> u16 {
    (u64::from(i) * 65535 / u64::from(n - 1)) as u16
}

/// The source gradients: red along x, green along y, blue along both.
fn rgb16() -> ImageBuffer<Rgb<u16>, Vec<u16>> {
    ImageBuffer::from_fn(W, H, |x, y| {
        Rgb([ramp(x, W), ramp(y, H), ramp(x + y, W + H - 1)])
    })
}

fn rgba16() -> ImageBuffer<Rgba<u16>, Vec<u16>> {
    ImageBuffer::from_fn(W, H, |x, y| {
        Rgba([
            ramp(x, W),
            ramp(y, H),
            ramp(x + y, W + H - 1),
            ramp(W - 1 - x, W),
        ])
    })
}

fn luma16() -> ImageBuffer<Luma<u16>, Vec<u16>> {
    ImageBuffer::from_fn(W, H, |x, y| Luma([ramp(x * H + y, W * H)]))
}

/// 16 bits to 8, rounded (what an 8-bit source of the same picture holds).
fn to8(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

/// A workspace with `src/deep.png` (the 16-bit `img`), `src8/deep.png` (its
/// 8-bit rounding) and an 8-bit watermark `mark.png`.
fn workspace(img: &DynamicImage) -> Workspace {
    let ws = Workspace::new();
    let eight: Vec<u8> = img
        .as_bytes()
        .chunks_exact(2)
        .map(|b| to8(u16::from_ne_bytes([b[0], b[1]])))
        .collect();
    let (w, h) = (img.width(), img.height());
    let eight = match img.color().channel_count() {
        1 => DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, eight).expect("size")),
        2 => DynamicImage::ImageLumaA8(ImageBuffer::from_raw(w, h, eight).expect("size")),
        3 => DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, eight).expect("size")),
        _ => DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, eight).expect("size")),
    };
    let mark = image::RgbaImage::from_fn(64, 32, |x, y| {
        image::Rgba([250, (x * 4) as u8, (y * 8) as u8, 200])
    });
    ws.write("src/deep.png", &png_bytes(img))
        .write("src8/deep.png", &png_bytes(&eight))
        .write("mark.png", &png_bytes(&DynamicImage::ImageRgba8(mark)));
    ws
}

/// Run `scan -> decode -> STAGES -> encode png -> write` on `root` into
/// `out/<name>`, in threads mode and with every stage of `stages` in worker
/// processes (decode and encode stay on threads, so pixels cross the wire
/// both ways); both must write the same file, returned decoded.
fn run_op(ws: &Workspace, stages: &str, root: &str, name: &str) -> DynamicImage {
    let text = format!(
        "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"{root}\"\ninclude = [\"*.png\"]\n\n\
         [[stage]]\nname = \"load\"\nkind = \"decode\"\n\n{stages}\n\n\
         [[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n\
         [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n"
    );
    ws.write("op.toml", text.as_bytes());
    let (t, p) = (
        format!("save.dir=\"out/{name}/t\""),
        format!("save.dir=\"out/{name}/p\""),
    );
    ws.conveyor()
        .args(&["run", "op.toml", "--set", &t])
        .run()
        .code(0);
    ws.conveyor()
        .args(&[
            "run",
            "op.toml",
            "--set",
            &p,
            "--mode",
            "processes",
            "--mode",
            "scan=threads",
            "--mode",
            "load=threads",
            "--mode",
            "png=threads",
            "--mode",
            "save=threads",
        ])
        .run()
        .code(0)
        .stderr_has("processes");
    let threads = std::fs::read(ws.path(&format!("out/{name}/t/deep.png"))).expect("output");
    let procs = std::fs::read(ws.path(&format!("out/{name}/p/deep.png"))).expect("output");
    assert!(threads == procs, "{name}: threads and processes differ");
    image::load_from_memory(&threads).expect("output decodes")
}

/// The values of a 16-bit image (fails on any other depth).
fn values(img: &DynamicImage, what: &str) -> Vec<u16> {
    match img {
        DynamicImage::ImageLuma16(b) => b.as_raw().clone(),
        DynamicImage::ImageRgb16(b) => b.as_raw().clone(),
        DynamicImage::ImageRgba16(b) => b.as_raw().clone(),
        other => panic!("{what}: output is {:?}, not 16-bit", other.color()),
    }
}

/// Check `out` is 16-bit with more than 256 distinct values (no 8-bit
/// image has that many) and within `tol` 8-bit steps of `eight`, the same
/// operation on the 8-bit source, everywhere (rounding inside an 8-bit
/// pipeline accounts for the difference).
fn deep_and_close(out: &DynamicImage, eight: &DynamicImage, tol: u8, what: &str) {
    let v = values(out, what);
    let levels: std::collections::BTreeSet<u16> = v.iter().copied().collect();
    assert!(levels.len() > 256, "{what}: only {} levels", levels.len());
    let size = |i: &DynamicImage| (i.width(), i.height());
    assert_eq!(size(out), size(eight), "{what}: size");
    assert_eq!(
        out.color().channel_count(),
        eight.color().channel_count(),
        "{what}: channels"
    );
    // Colour under more than half-transparent pixels is coarse in 8 bits:
    // resizing multiplies it by the alpha and divides it back, each
    // rounded (5 steps off at alpha 64 here). Only alpha counts there.
    let c = usize::from(out.color().channel_count());
    let alpha = out.color().has_alpha();
    let worst = v
        .chunks_exact(c)
        .zip(eight.as_bytes().chunks_exact(c))
        .flat_map(|(a, b)| {
            let faint = alpha && b[c - 1] < 128;
            let from = if faint { c - 1 } else { 0 };
            (from..c).map(move |i| to8(a[i]).abs_diff(b[i]))
        })
        .max()
        .unwrap_or(0);
    assert!(worst <= tol, "{what}: {worst} steps from the 8-bit result");
}

#[test]
fn rearranging_operations_keep_16_bits_exactly() {
    let src = DynamicImage::ImageRgb16(rgb16());
    let ws = workspace(&src);
    let cases: [(&str, &str, DynamicImage); 4] = [
        (
            "crop",
            "kind = \"crop\"\nx = 40\ny = 30\nwidth = 300\nheight = 200",
            src.crop_imm(40, 30, 300, 200),
        ),
        ("rotate", "kind = \"rotate\"\ndegrees = 90", src.rotate90()),
        (
            "flip",
            "kind = \"flip\"\ndirection = \"vertical\"",
            src.flipv(),
        ),
        (
            "grayscale",
            "kind = \"grayscale\"",
            DynamicImage::ImageLuma16(src.to_luma16()),
        ),
    ];
    for (name, opts, want) in cases {
        let stage = format!("[[stage]]\nname = \"op\"\n{opts}");
        let out = run_op(&ws, &stage, "src", name);
        assert_eq!(values(&out, name), values(&want, name), "{name}: values");
        assert_eq!(out.color(), want.color(), "{name}: layout");
    }
}

#[test]
fn filtering_operations_keep_16_bits_and_match_8_bits() {
    let ws = workspace(&DynamicImage::ImageRgb16(rgb16()));
    let cases = [
        ("resize", "kind = \"resize\"\nwidth = 300", 1),
        (
            "adjust",
            "kind = \"adjust\"\nbrightness = 1.1\ncontrast = 1.2\nsaturation = 1.3\ngamma = 1.1",
            2,
        ),
        ("blur", "kind = \"blur\"\nsigma = 1.5", 1),
        ("bigblur", "kind = \"blur\"\nsigma = 6.0", 2),
        (
            "sharpen",
            "kind = \"sharpen\"\nsigma = 1.0\namount = 1.5",
            3,
        ),
        (
            "watermark",
            "kind = \"watermark\"\nimage = \"mark.png\"\nscale = 0.3\nopacity = 0.7",
            1,
        ),
    ];
    for (name, opts, tol) in cases {
        let stage = format!("[[stage]]\nname = \"op\"\n{opts}");
        let out = run_op(&ws, &stage, "src", name);
        let eight = run_op(&ws, &stage, "src8", &format!("{name}8"));
        deep_and_close(&out, &eight, tol, name);
    }
}

#[test]
fn thumbnail_of_a_16_bit_png_is_16_bit() {
    let ws = workspace(&DynamicImage::ImageRgb16(rgb16()));
    let stage = "[[stage]]\nname = \"op\"\nkind = \"thumbnail\"\nwidth = 300";
    let text = |root: &str| {
        format!(
            "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"{root}\"\ninclude = [\"*.png\"]\n\n\
             {stage}\n\n[[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n\
             [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out/{root}\"\n"
        )
    };
    for root in ["src", "src8"] {
        ws.write("thumb.toml", text(root).as_bytes());
        ws.conveyor().args(&["run", "thumb.toml"]).run().code(0);
    }
    let load = |rel: &str| image::open(ws.path(rel)).expect("output decodes");
    deep_and_close(
        &load("out/src/deep.png"),
        &load("out/src8/deep.png"),
        1,
        "thumbnail",
    );
}

#[test]
fn grey_and_alpha_layouts_stay_16_bit_through_a_chain() {
    let chain = "[[stage]]\nname = \"size\"\nkind = \"resize\"\nwidth = 400\n\n\
                 [[stage]]\nname = \"tone\"\nkind = \"adjust\"\ngamma = 1.2\n\n\
                 [[stage]]\nname = \"soft\"\nkind = \"blur\"\nsigma = 0.8\n\n\
                 [[stage]]\nname = \"crisp\"\nkind = \"sharpen\"\n\n\
                 [[stage]]\nname = \"mark\"\nkind = \"watermark\"\nimage = \"mark.png\"";
    // Two 8-bit blurs (`soft`, and the one inside `crisp`) with weights in
    // 1/256 steps (`gaussian.rs`) add a step to the 8-bit chain's rounding.
    for (name, src, tol) in [
        ("grey", DynamicImage::ImageLuma16(luma16()), 4),
        ("alpha", DynamicImage::ImageRgba16(rgba16()), 4),
    ] {
        let ws = workspace(&src);
        let out = run_op(&ws, chain, "src", name);
        let eight = run_op(&ws, chain, "src8", &format!("{name}8"));
        // A coloured watermark on grey gives RGB, at the image's depth.
        let want = if name == "grey" { 3 } else { 4 };
        assert_eq!(out.color().channel_count(), want, "{name}: channels");
        deep_and_close(&out, &eight, tol, name);
    }
}

#[test]
fn a_16_bit_source_to_jpeg_matches_its_8_bit_rounding() {
    for (name, src) in [
        ("rgb", DynamicImage::ImageRgb16(rgb16())),
        ("grey", DynamicImage::ImageLuma16(luma16())),
    ] {
        let ws = workspace(&src);
        let text = |root: &str| {
            format!(
                "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"{root}\"\ninclude = [\"*.png\"]\n\n\
                 [[stage]]\nname = \"load\"\nkind = \"decode\"\n\n\
                 [[stage]]\nname = \"jpg\"\nkind = \"encode\"\nquality = 95\n\n\
                 [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out/{root}\"\n"
            )
        };
        for root in ["src", "src8"] {
            ws.write("jpg.toml", text(root).as_bytes());
            ws.conveyor().args(&["run", "jpg.toml"]).run().code(0);
        }
        let deep = std::fs::read(ws.path("out/src/deep.jpg")).expect("jpeg");
        let eight = std::fs::read(ws.path("out/src8/deep.jpg")).expect("jpeg");
        // The same encoder on the same 8-bit values gives the same bytes.
        assert!(
            deep == eight,
            "{name}: JPEG differs from the 8-bit rounding's"
        );
        let decoded = image::load_from_memory(&deep).expect("jpeg decodes");
        assert_eq!(
            decoded.color().channel_count(),
            src.color().channel_count(),
            "{name}: channels"
        );
    }
}

#[test]
fn max_alloc_counts_the_16_bit_layout_later_stages_get() {
    // Grey with alpha at 16 bits: 4 bytes a pixel in the file, 8 once
    // made RGBA for the later stages (160 KB, then 320 KB).
    let img = ImageBuffer::<image::LumaA<u16>, _>::from_fn(200, 200, |x, y| {
        image::LumaA([ramp(x * 200 + y, 40_000), 65535])
    });
    let ws = workspace(&DynamicImage::ImageLumaA16(img));
    let text = "[[stage]]\nname = \"scan\"\nkind = \"scan\"\nroot = \"src\"\n\n\
                [[stage]]\nname = \"load\"\nkind = \"decode\"\nmax_alloc = 200000\n\n\
                [[stage]]\nname = \"png\"\nkind = \"encode\"\nformat = \"png\"\n\n\
                [[stage]]\nname = \"save\"\nkind = \"write\"\ndir = \"out\"\n";
    ws.write("alloc.toml", text.as_bytes());
    ws.conveyor()
        .args(&["run", "alloc.toml"])
        .run()
        .code(1)
        .stderr_has("decode.max_alloc");
    ws.conveyor()
        .args(&["run", "alloc.toml", "--set", "load.max_alloc=400000"])
        .run()
        .code(0);
    let out = image::open(ws.path("out/deep.png")).expect("output decodes");
    assert_eq!(out.color(), image::ColorType::Rgba16);
}
