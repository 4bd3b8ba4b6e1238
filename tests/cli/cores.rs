//! One large image may use idle cores (`src/cores.rs`): its per-pixel work
//! is cut into bands over the permits nobody else wants, or over a worker
//! process's share of the cores. The bands must give the very same file as
//! one pass over the whole image.

use image::{DynamicImage, RgbImage};

use super::*;

/// Run `pipeline` with its `save` stage writing to `out/DIR`, plus `extra`
/// flags, and return the bytes of the file `name` it wrote there.
fn made_in(ws: &Workspace, pipeline: &str, dir: &str, name: &str, extra: &[&str]) -> Vec<u8> {
    let set = format!("save.dir=\"out/{dir}\"");
    let mut args = vec!["run", pipeline, "--set", &set];
    args.extend_from_slice(extra);
    ws.conveyor().args(&args).run().code(0);
    std::fs::read(ws.path(&format!("out/{dir}/{name}"))).expect("output written")
}

/// A 1600 x 1000 picture (over the size at which work is split) with fine
/// detail everywhere, so a row computed from the wrong neighbours shows.
fn detailed() -> Vec<u8> {
    let img = RgbImage::from_fn(1600, 1000, |x, y| {
        let n = (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)) % 251;
        image::Rgb([n as u8, ((x + y) % 256) as u8, ((x * y) % 253) as u8])
    });
    png_bytes(&DynamicImage::ImageRgb8(img))
}

const PIPELINE: &str = r#"
[[stage]]
name = "scan"
kind = "scan"
root = "src"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "crisp"
kind = "sharpen"
sigma = 2.0

[[stage]]
name = "direct"
kind = "blur"
sigma = 1.5

[[stage]]
name = "boxes"
kind = "blur"
sigma = 9.0

[[stage]]
name = "small"
kind = "resize"
width = 1100

[[stage]]
name = "png"
kind = "encode"
format = "png"

[[stage]]
name = "save"
kind = "write"
dir = "out"
"#;

#[test]
fn a_large_image_split_over_idle_cores_gives_the_same_file() {
    let ws = Workspace::new();
    ws.write("src/detail.png", &detailed())
        .write("split.toml", PIPELINE.as_bytes());
    let made = |dir: &str, extra: &[&str]| made_in(&ws, "split.toml", dir, "detail.png", extra);
    // One job: nothing to borrow, one pass.
    let alone = made("one", &["--jobs", "1"]);
    // Four jobs and one item: it borrows the three idle permits.
    let split = made("four", &["--jobs", "4"]);
    // The work in one worker process whose share is all four jobs.
    let worker = made(
        "worker",
        &[
            "--jobs",
            "4",
            "--mode",
            "processes",
            "--mode",
            "scan=threads",
            "--mode",
            "save=threads",
            "--set",
            "load.workers=1",
            "--set",
            "crisp.workers=1",
            "--set",
            "direct.workers=1",
            "--set",
            "boxes.workers=1",
            "--set",
            "small.workers=1",
            "--set",
            "png.workers=1",
        ],
    );
    let decoded = image::load_from_memory(&alone).expect("output decodes");
    assert_eq!((decoded.width(), decoded.height()), (1100, 688));
    assert!(
        alone == split,
        "split over borrowed cores: a different file"
    );
    assert!(
        alone == worker,
        "split in a worker process: a different file"
    );
}

const JPEG: &str = r#"
[[stage]]
name = "scan"
kind = "scan"
root = "src"

[[stage]]
name = "load"
kind = "decode"

[[stage]]
name = "jpeg"
kind = "encode"
format = "jpeg"
quality = 90

[[stage]]
name = "save"
kind = "write"
dir = "out"
"#;

#[test]
fn a_large_jpeg_encoded_in_strips_over_idle_cores_is_one_right_file() {
    let ws = Workspace::new();
    let source = detailed();
    ws.write("src/detail.png", &source)
        .write("jpeg.toml", JPEG.as_bytes());
    let made = |dir: &str, extra: &[&str]| made_in(&ws, "jpeg.toml", dir, "detail.jpg", extra);
    let alone = made("one", &["--jobs", "1"]);
    let split = made("four", &["--jobs", "4"]);
    let worker = made(
        "worker",
        &[
            "--jobs",
            "4",
            "--mode",
            "jpeg=processes",
            "--set",
            "jpeg.workers=1",
        ],
    );
    assert!(
        alone == split,
        "encoded over borrowed cores: a different file"
    );
    assert!(
        alone == worker,
        "encoded in a worker process: a different file"
    );
    // Strips joined by restart markers, RST0 to RST7 in turn.
    let restarts: Vec<u8> = alone
        .windows(2)
        .filter(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
        .map(|w| w[1] - 0xD0)
        .collect();
    assert!(restarts.len() > 2, "{restarts:?}");
    for (i, r) in restarts.iter().enumerate() {
        assert_eq!(usize::from(*r), i % 8, "{restarts:?}");
    }
    // And the picture is the source's, every strip in its place.
    let got = image::load_from_memory(&alone).expect("decodes").to_rgb8();
    let want = image::load_from_memory(&source).expect("source").to_rgb8();
    assert_eq!(got.dimensions(), want.dimensions());
    let err: f64 = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum::<f64>()
        / got.as_raw().len() as f64;
    let psnr = 10.0 * (255.0f64 * 255.0 / err).log10();
    assert!(psnr > 25.0, "PSNR {psnr:.1} dB");
}
