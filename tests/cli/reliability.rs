//! Hostile inputs, output safety, interrupted runs, resume and load: nothing
//! may lose or corrupt data, hang, or take the run down.

use super::*;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// Byte offset of the first chunk of `kind` in a PNG.
fn find_chunk(png: &[u8], kind: &[u8; 4]) -> usize {
    png.windows(4).position(|w| w == kind).expect("chunk") - 4
}

/// Every kind of hostile or unusual input, next to two good photos. Returns
/// the names expected to fail, with a piece of each one's reason.
fn hostile_folder(ws: &Workspace) -> Vec<(&'static str, &'static str)> {
    ws.sample("meadow.jpg", "in/good1.jpg").sample("trips/hills.png", "in/good2.png");
    let good_jpeg = std::fs::read(Path::new(REPO).join("samples/photos/dusk.jpg")).expect("sample");
    let good_png = encode(
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]))),
        image::ImageFormat::Png,
    );
    ws.write("in/zero.jpg", b"");
    ws.write("in/truncated.jpg", &good_jpeg[..good_jpeg.len() / 2]);
    ws.write("in/truncated.png", &good_png[..good_png.len() * 2 / 3]);
    ws.write("in/random.jpg", &(0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<_>>());
    ws.write("in/text.png", b"just some text pretending to be a PNG\n");
    // A flipped bit in the image data: the chunk's CRC no longer matches.
    let mut bad_crc = good_png.clone();
    let idat = find_chunk(&bad_crc, b"IDAT");
    bad_crc[idat + 8 + 10] ^= 0x55;
    ws.write("in/badcrc.png", &bad_crc);
    // Garbage where the zlib stream should be, with a correct CRC.
    let mut bad_zlib = good_png[..idat].to_vec();
    bad_zlib.extend(png_chunk(b"IDAT", &[0x78, 0x9C, 0xFF, 0xFF, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9A]));
    bad_zlib.extend(png_chunk(b"IEND", &[]));
    ws.write("in/badzlib.png", &bad_zlib);
    // A tiny file claiming 100000 x 100000 pixels.
    let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    bomb.extend(png_chunk(b"IHDR", &ihdr));
    bomb.extend(png_chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    bomb.extend(png_chunk(b"IEND", &[]));
    ws.write("in/bomb.png", &bomb);
    // A GIF whose screen and first frame claim 65535 x 65535.
    let mut gif = b"GIF89a\xff\xff\xff\xff\x00\x00\x00".to_vec();
    gif.extend(b"\x2c\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02\x44\x01\x00\x3b");
    ws.write("in/bomb.gif", &gif);
    // An ICO header claiming a 256 x 256 PNG entry that is not there.
    ws.write("in/bomb.ico", b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x20\x00\xff\xff\xff\x7f\x16\x00\x00\x00");
    // Unusual but valid: CMYK JPEG and 16-bit PNG decode.
    let mut cmyk = Vec::new();
    let px: Vec<u8> = (0..80 * 60).flat_map(|i| [(i % 200) as u8, 40, 90, 10]).collect();
    jpeg_encoder::Encoder::new(&mut cmyk, 90).encode(&px, 80, 60, jpeg_encoder::ColorType::Cmyk).expect("cmyk");
    ws.write("in/cmyk.jpg", &cmyk);
    let png16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(50, 40, |x, y| image::Rgb([x as u16 * 1000, y as u16 * 1500, 30000]));
    ws.write("in/deep16.png", &encode(image::DynamicImage::ImageRgb16(png16), image::ImageFormat::Png));
    // Links: one dangling, one looping back up (only followed on request).
    std::os::unix::fs::symlink("nowhere.jpg", ws.path("in/dangling.jpg")).expect("symlink");
    std::os::unix::fs::symlink("..", ws.path("in/sub/loop")).ok();
    std::fs::create_dir_all(ws.path("in/sub")).expect("mkdir");
    let _ = std::os::unix::fs::symlink("..", ws.path("in/sub/loop"));
    // A FIFO named like a photo: reading it would block forever.
    let fifo = ws.path("in/fifo.jpg");
    let status = Command::new("mkfifo").arg(&fifo).status();
    assert!(status.is_ok_and(|s| s.success()), "mkfifo");
    vec![
        ("zero.jpg", "empty file"),
        ("truncated.jpg", "truncated JPEG"),
        ("truncated.png", "cannot decode png"),
        ("random.jpg", "not a recognised image format"),
        ("text.png", "not a recognised image format"),
        ("badcrc.png", "cannot decode png"),
        ("badzlib.png", "cannot decode png"),
        ("bomb.png", "image is 100000x100000 (10000000000 pixels), over the limit"),
        ("bomb.gif", "image is 65535x65535"),
        ("bomb.ico", "cannot"),
        ("dangling.jpg", "broken symbolic link"),
    ]
}

#[test]
fn hostile_inputs_fail_alone_in_every_mode() {
    for mode in ["inline", "threads", "processes"] {
        let ws = Workspace::new();
        let bad = hostile_folder(&ws);
        let done = ws
            .conveyor()
            .args(&[
                "run",
                "pipelines/thumbnails.toml",
                "--set",
                "scan.root=in",
                "--set",
                "scan.include=[]",
                "--set",
                "scan.follow_links=true",
                "--mode",
                mode,
            ])
            .run();
        done.code(1);
        let stderr = done.stderr();
        assert!(!stderr.contains("panicked"), "{mode}: {stderr}");
        for (name, reason) in &bad {
            let line = stderr
                .lines()
                .find(|l| l.starts_with("error: ") && l.contains(&format!("in/{name}: ")))
                .unwrap_or_else(|| panic!("{mode}: no error line for {name}:\n{stderr}"));
            assert!(line.contains(reason), "{mode}: {name}: {line}");
        }
        // The link loop is reported as such, once.
        assert!(stderr.contains("symbolic link loop") || stderr.contains("File system loop"), "{mode}: {stderr}");
        // Good and unusual-but-valid files are all written and decode.
        let files = ws.files("out/thumbs");
        for name in ["good1.jpg", "good2.jpg", "cmyk.jpg", "deep16.jpg"] {
            let bytes = files.get(name).unwrap_or_else(|| panic!("{mode}: {name} missing: {:?}", files.keys()));
            dims(bytes);
        }
        assert_eq!(files.len(), 4, "{mode}: {:?}", files.keys());
        assert!(stderr.contains("4 ok, 12 failed"), "{mode}: {stderr}");
    }
}

#[test]
fn unreadable_files_fail_with_the_os_reason() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: running as root, which reads any file whatever its permissions");
        return;
    }
    let ws = Workspace::new();
    ws.sample("tiny.jpg", "in/locked.jpg").sample("tiny.jpg", "in/open.jpg");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws.path("in/locked.jpg"), std::fs::Permissions::from_mode(0o000)).expect("chmod");
    ws.conveyor()
        .args(&["run", "pipelines/thumbnails.toml", "--set", "scan.root=in"])
        .run()
        .code(1)
        .stderr_has("in/locked.jpg: cannot read file: Permission denied");
    assert!(ws.files("out/thumbs").contains_key("open.jpg"));
}
