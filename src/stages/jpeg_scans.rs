//! The scans of a progressive JPEG, and a copy without the ones a decode at
//! 1/8 scale never uses.
//!
//! At 1/8 scale libjpeg turns each 8x8 block of a full-resolution component
//! (luma; every component of a 4:4:4 or grey image) into one pixel from the
//! block's DC coefficient alone (its 1x1 IDCT reads nothing else). In a
//! progressive file the AC coefficients of such a component come in scans
//! of their own, which hold most of the file's bytes and most of its
//! decoding time. Dropping them gives libjpeg the same DC values, so the
//! same pixels, for a fraction of the work. Subsampled components (the
//! chroma of a 4:2:0 image) are scaled up through a larger IDCT that reads
//! some AC coefficients: their scans are all kept.
//!
//! A scan's entropy-coded data ends at the first marker that is not a
//! restart marker (`0xFF 0x00` is a stuffed byte), so scans are skipped
//! without decoding them.

/// The frame of a progressive Huffman JPEG (SOF2).
const SOF2: u8 = 0xC2;
const SOS: u8 = 0xDA;
const EOI: u8 = 0xD9;
const SOI: u8 = 0xD8;

/// `bytes` without the AC scans of its full-resolution components, when it
/// is a progressive (Huffman) JPEG with such scans; `None` otherwise, or
/// when its structure is not what this reads (the file is then decoded as
/// it is, and its errors reported from there).
pub(super) fn for_eighth_scale(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4);
    out.extend_from_slice(&bytes[..2]);
    let mut at = 2;
    // Component ids with the largest sampling factors, from the frame.
    let mut full: Option<Vec<u8>> = None;
    let mut dropped = false;
    loop {
        let (marker, start) = next_marker(bytes, at)?;
        match marker {
            EOI => {
                out.extend_from_slice(&bytes[start..start + 2]);
                break;
            }
            // Standalone markers between segments (restarts, TEM) carry no
            // length.
            0xD0..=0xD7 | 0x01 => {
                out.extend_from_slice(&bytes[start..start + 2]);
                at = start + 2;
            }
            _ => {
                let len = usize::from(u16::from_be_bytes([
                    *bytes.get(start + 2)?,
                    *bytes.get(start + 3)?,
                ]));
                let body = bytes.get(start + 4..start + 2 + len)?;
                if len < 2 {
                    return None;
                }
                let segment_end = start + 2 + len;
                match marker {
                    SOF2 => full = Some(full_resolution(body)?),
                    // Any other frame: baseline, extended, lossless or
                    // arithmetic-coded files are left as they are.
                    0xC0 | 0xC1 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
                    _ => {}
                }
                if marker != SOS {
                    out.extend_from_slice(&bytes[start..segment_end]);
                    at = segment_end;
                    continue;
                }
                let data_end = scan_end(bytes, segment_end)?;
                if droppable(body, full.as_deref()?)? {
                    dropped = true;
                } else {
                    out.extend_from_slice(&bytes[start..data_end]);
                }
                at = data_end;
            }
        }
    }
    dropped.then_some(out)
}

/// The next marker at or after `at` (fill bytes `0xFF` before it skipped):
/// its code and where its `0xFF` is.
fn next_marker(bytes: &[u8], mut at: usize) -> Option<(u8, usize)> {
    if *bytes.get(at)? != 0xFF {
        return None;
    }
    while *bytes.get(at + 1)? == 0xFF {
        at += 1;
    }
    Some((bytes[at + 1], at))
}

/// Where the entropy-coded data that starts at `at` ends: the `0xFF` of
/// the first marker that is neither a stuffed byte nor a restart.
fn scan_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let ff = at + memchr_ff(bytes.get(at..)?)?;
        match *bytes.get(ff + 1)? {
            0x00 | 0xD0..=0xD7 => at = ff + 2,
            // A fill byte: the marker follows it.
            0xFF => at = ff + 1,
            _ => return Some(ff),
        }
    }
}

fn memchr_ff(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0xFF)
}

/// The ids of the frame's components that have the largest horizontal and
/// vertical sampling factors (those decoded 1 pixel per block at 1/8).
fn full_resolution(frame: &[u8]) -> Option<Vec<u8>> {
    // Precision, height (2), width (2), component count, then 3 bytes each.
    let n = usize::from(*frame.get(5)?);
    let comps = frame.get(6..6 + 3 * n)?;
    let factors = |c: &[u8]| (c[1] >> 4, c[1] & 0x0F);
    let max_h = comps.chunks_exact(3).map(|c| factors(c).0).max()?;
    let max_v = comps.chunks_exact(3).map(|c| factors(c).1).max()?;
    Some(
        comps
            .chunks_exact(3)
            .filter(|c| factors(c) == (max_h, max_v))
            .map(|c| c[0])
            .collect(),
    )
}

/// Whether the scan with this header (after its length) holds only AC
/// coefficients of one full-resolution component. `None`: a bad header.
fn droppable(header: &[u8], full: &[u8]) -> Option<bool> {
    let n = usize::from(*header.first()?);
    let component = *header.get(1)?;
    let ss = *header.get(1 + 2 * n)?;
    Some(n == 1 && ss > 0 && full.contains(&component))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A progressive JPEG from mozjpeg, its own scan script or libjpeg's
    /// simple one, with the given chroma subsampling (`None`: grey).
    fn progressive(w: u32, h: u32, sampling: Option<(u8, u8)>, simple: bool) -> Vec<u8> {
        use mozjpeg::{ColorSpace, Compress};
        let space = if sampling.is_some() {
            ColorSpace::JCS_RGB
        } else {
            ColorSpace::JCS_GRAYSCALE
        };
        let mut c = Compress::new(space);
        c.set_size(w as usize, h as usize);
        c.set_quality(88.0);
        if simple {
            // Before the script is chosen: libjpeg's own, not mozjpeg's.
            c.set_optimize_scans(false);
        }
        c.set_progressive_mode();
        if let Some((sh, sv)) = sampling {
            c.set_chroma_sampling_pixel_sizes((sh, sv), (sh, sv));
        }
        let channels = if sampling.is_some() { 3 } else { 1 };
        let pixels: Vec<u8> = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| {
                    let v = [
                        ((x * 3 + y) % 256) as u8,
                        ((x ^ y) % 256) as u8,
                        ((x * y / 7) % 256) as u8,
                    ];
                    v.into_iter().take(channels)
                })
            })
            .collect();
        let mut started = c.start_compress(Vec::new()).expect("start");
        started.write_scanlines(&pixels).expect("write");
        started.finish().expect("finish")
    }

    fn eighth(bytes: &[u8], smoothing: bool) -> (usize, usize, Vec<u8>) {
        let mut dec = mozjpeg::Decompress::new_mem(bytes).expect("header");
        dec.scale(1);
        dec.do_block_smoothing(smoothing);
        let mut started = dec.rgb().expect("start");
        let (w, h) = (started.width(), started.height());
        let data: Vec<u8> = started.read_scanlines().expect("read");
        started.finish().expect("finish");
        (w, h, data)
    }

    #[test]
    fn without_its_ac_scans_a_progressive_jpeg_decodes_to_the_same_eighth() {
        for (sampling, simple) in [
            (Some((2, 2)), false),
            (Some((2, 2)), true),
            (Some((1, 1)), false),
            (Some((2, 1)), true),
            (None, false),
            (None, true),
        ] {
            // Sizes that are no multiple of a block or an MCU.
            let full = progressive(203, 157, sampling, simple);
            let Some(small) = for_eighth_scale(&full) else {
                panic!("{sampling:?} {simple}: no AC scans to drop");
            };
            assert!(
                small.len() < full.len(),
                "{sampling:?} {simple}: {} of {} bytes kept",
                small.len(),
                full.len()
            );
            assert!(
                eighth(&small, false) == eighth(&full, true),
                "{sampling:?} {simple}: different pixels"
            );
        }
    }

    #[test]
    fn only_progressive_files_are_cut() {
        let mut baseline = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut baseline)
            .encode(&[90u8; 16 * 16 * 3], 16, 16, image::ExtendedColorType::Rgb8)
            .expect("encode");
        assert_eq!(for_eighth_scale(&baseline), None);
        let full = progressive(64, 64, Some((2, 2)), true);
        // Cut short anywhere, or not a JPEG: left to the decoder.
        for end in [0, 1, 2, 3, 20, full.len() / 2, full.len() - 2] {
            assert_eq!(for_eighth_scale(&full[..end]), None, "cut at {end}");
        }
        assert_eq!(for_eighth_scale(b"not a jpeg"), None);
        assert_eq!(for_eighth_scale(&[0xFF, SOI, 0xFF, 0xC4, 0x00]), None);
    }
}
