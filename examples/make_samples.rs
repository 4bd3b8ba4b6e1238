//! Generates the images in `samples/photos/`: procedural scenes (gradients,
//! soft discs, grain) in every format `decode` reads, at a few sizes and
//! aspect ratios, one with an EXIF orientation tag. Run from the repository
//! root with `cargo run --example make_samples`; the output is deterministic.

use std::path::Path;

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

/// A small deterministic generator, so the samples are the same every time.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

/// A landscape-like scene: sky gradient, a sun, hills, and film grain.
fn scene(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Lcg(seed);
    let hue = rng.next();
    let sun = (
        rng.next() * w as f32,
        rng.next() * h as f32 * 0.5,
        (w.min(h) as f32) * (0.08 + 0.1 * rng.next()),
    );
    let hills: Vec<(f32, f32, f32)> = (0..4)
        .map(|_| {
            (
                rng.next() * 6.0 + 1.0,
                rng.next() * std::f32::consts::TAU,
                0.5 + rng.next() * 0.35,
            )
        })
        .collect();
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let mut c = [
            90.0 + 120.0 * (1.0 - fy) * hue,
            140.0 + 80.0 * (1.0 - fy),
            200.0 + 55.0 * (1.0 - fy) * (1.0 - hue),
        ];
        let d = ((x as f32 - sun.0).powi(2) + (y as f32 - sun.1).powi(2)).sqrt();
        if d < sun.2 * 1.5 {
            let t = (1.0 - d / (sun.2 * 1.5)).clamp(0.0, 1.0);
            c = [c[0] + 150.0 * t, c[1] + 120.0 * t, c[2] + 40.0 * t];
        }
        for (i, (freq, phase, level)) in hills.iter().enumerate() {
            let ridge = level + 0.06 * (fx * freq + phase).sin() + 0.02 * (fx * freq * 5.0).sin();
            if fy > ridge {
                let shade = 1.0 - i as f32 * 0.15 - (fy - ridge) * 0.8;
                c = [40.0 * shade + 20.0 * hue, 110.0 * shade, 50.0 * shade];
            }
        }
        let grain = (rng.next() - 0.5) * 18.0;
        Rgb(c.map(|v| (v + grain).clamp(0.0, 255.0) as u8))
    })
}

/// Insert an EXIF APP1 segment holding only an orientation tag after SOI.
fn with_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    let mut app1 = vec![0xFF, 0xE1, 0x00, 34];
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&[b'M', b'M', 0x00, 0x2A, 0, 0, 0, 8]);
    app1.extend_from_slice(&[0x00, 0x01]);
    app1.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00, orientation, 0, 0]);
    app1.extend_from_slice(&[0, 0, 0, 0]);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(
            img.as_raw(),
            img.width() as u16,
            img.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encoding a sample");
    out
}

fn save(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("creating folders");
    std::fs::write(&path, bytes).expect("writing a sample");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

fn encoded(img: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encoding a sample");
    out.into_inner()
}

/// A logo for the `watermark` examples: a white rounded bar with a ring,
/// soft-edged through its alpha channel.
fn logo() -> RgbaImage {
    let (w, h) = (240u32, 80u32);
    RgbaImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        // Distance outside a rounded rectangle with radius 30.
        let r = 30.0;
        let cx = fx.clamp(r, w as f32 - r);
        let cy = fy.clamp(r, h as f32 - r);
        let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt() - (r - 2.0);
        let body = (1.0 - d).clamp(0.0, 1.0);
        let ring = ((fx - 40.0).powi(2) + (fy - 40.0).powi(2)).sqrt();
        let in_ring = (ring - 18.0).abs() < 6.0;
        let stripe = (100.0..220.0).contains(&fx) && (fy - 40.0).abs() < 5.0;
        let c = if in_ring || stripe { 40 } else { 250 };
        Rgba([c, c, c, (body * 230.0) as u8])
    })
}

fn main() {
    save(
        Path::new("samples"),
        "watermark.png",
        &encoded(DynamicImage::ImageRgba8(logo()), image::ImageFormat::Png),
    );
    let root = Path::new("samples/photos");
    save(root, "meadow.jpg", &jpeg(&scene(640, 427, 1), 88));
    save(root, "dusk.jpg", &jpeg(&scene(600, 400, 2), 85));
    save(root, "tower.jpg", &jpeg(&scene(360, 540, 3), 85));
    save(root, "tiny.jpg", &jpeg(&scene(120, 80, 4), 90));
    // Stored 480x320, shown 320x480: orientation 6 is "rotate 90 clockwise".
    save(
        root,
        "rotated.jpg",
        &with_orientation(&jpeg(&scene(480, 320, 5), 85), 6),
    );
    save(root, "trips/coast.jpg", &jpeg(&scene(800, 450, 6), 85));
    save(
        root,
        "trips/hills.png",
        &encoded(
            DynamicImage::ImageRgb8(scene(400, 300, 7)),
            image::ImageFormat::Png,
        ),
    );
    let rgba = RgbaImage::from_fn(300, 300, |x, y| {
        let d = ((x as f32 - 150.0).powi(2) + (y as f32 - 150.0).powi(2)).sqrt();
        let a = (255.0 * (1.0 - d / 150.0)).clamp(0.0, 255.0) as u8;
        Rgba([(x * 255 / 300) as u8, (y * 255 / 300) as u8, 180, a])
    });
    save(
        root,
        "trips/badge.png",
        &encoded(DynamicImage::ImageRgba8(rgba), image::ImageFormat::Png),
    );
    save(
        root,
        "formats/leaf.webp",
        &encoded(
            DynamicImage::ImageRgb8(scene(320, 240, 8)),
            image::ImageFormat::WebP,
        ),
    );
    let gif = DynamicImage::ImageRgb8(scene(200, 150, 9)).to_rgba8();
    save(
        root,
        "formats/anim.gif",
        &encoded(DynamicImage::ImageRgba8(gif), image::ImageFormat::Gif),
    );
    save(
        root,
        "formats/paint.bmp",
        &encoded(
            DynamicImage::ImageRgb8(scene(160, 120, 10)),
            image::ImageFormat::Bmp,
        ),
    );
    save(
        root,
        "formats/scan.tiff",
        &encoded(
            DynamicImage::ImageRgb8(scene(200, 260, 11)),
            image::ImageFormat::Tiff,
        ),
    );
}
