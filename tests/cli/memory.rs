//! `--memory`: the bytes of decoded images in flight follow the budget, not
//! the number of items or their sizes.

use super::*;

#[test]
fn decoded_images_in_flight_stay_within_the_memory_budget() {
    let ws = Workspace::new();
    // Eight 3000x3000 photos: 27 MB each once decoded. Four decoders and
    // a queue of 8 between stages hold many at once without a budget.
    let photo = image::open(Path::new(REPO).join("samples/photos/meadow.jpg")).expect("sample");
    let big = photo.resize_exact(3000, 3000, image::imageops::FilterType::Nearest);
    let mut jpeg = Vec::new();
    big.to_rgb8()
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("encode");
    for i in 0..8 {
        ws.write(&format!("big/{i}.jpg"), &jpeg);
    }
    ws.write(
        "p.toml",
        br#"
[pipeline]
name = "mem"
queue = 8

[[stage]]
name = "scan"
kind = "scan"
root = "big"

[[stage]]
name = "load"
kind = "decode"
mode = "threads"
workers = 4

[[stage]]
name = "jpeg"
kind = "encode"
format = "jpeg"

[[stage]]
name = "save"
kind = "write"
dir = "out"
"#,
    );
    // Peak RSS in MiB of one run, with `extra` arguments.
    let peak = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "p.toml",
            "--jobs",
            "4",
            "--force",
            "--progress",
            "never",
        ];
        args.extend_from_slice(extra);
        let (code, err, mib) = run_rss(&ws, &args);
        assert_eq!(code, 0, "{err}");
        mib
    };
    let free = peak(&[]);
    // Each image counts 54 MB (itself and a working copy): a 60 MiB budget
    // lets one through at a time.
    let budgeted = peak(&["--memory", "60MiB"]);
    assert_eq!(ws.count("out"), 8, "every image made");
    assert!(
        budgeted + 60 < free,
        "peak {budgeted} MiB with a 60 MiB budget, {free} MiB without"
    );
    assert!(budgeted < 100, "peak {budgeted} MiB with a 60 MiB budget");
}
