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
/// is a progressive (Huffman) JPEG with such scans that decodes to the same
/// pixels without them; `None` otherwise, or when its structure is not what
/// this reads (the file is then decoded as it is, and its errors reported
/// from there).
///
/// Not when any component's first ten coefficients are left short of full
/// precision by the file's scans (a scan script that never refines them, a
/// file cut before its last scans): libjpeg then smooths the blocks of the
/// whole file, estimating those coefficients (and the DC of a component
/// without AC) from the neighbouring blocks, and the copy without AC scans
/// would be smoothed otherwise. Nor when a scan's header is one libjpeg
/// would refuse: dropping it would hide the file's error.
pub(super) fn for_eighth_scale(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4);
    out.extend_from_slice(&bytes[..2]);
    let mut at = 2;
    let mut frame: Option<Frame> = None;
    // AC Huffman tables defined so far.
    let mut ac_tables = [false; 4];
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
                let segment_end = start + 2 + len;
                match marker {
                    SOF2 if frame.is_none() => frame = Some(Frame::read(body)?),
                    // Any other frame (baseline, extended, lossless or
                    // arithmetic-coded), or a second one: left as it is.
                    0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
                    DHT => define_tables(body, &mut ac_tables)?,
                    _ => {}
                }
                if marker != SOS {
                    out.extend_from_slice(&bytes[start..segment_end]);
                    at = segment_end;
                    continue;
                }
                let data_end = scan_end(bytes, segment_end)?;
                let scan = Scan::read(body)?;
                let frame = frame.as_mut()?;
                frame.progress(&scan)?;
                if frame.droppable(&scan, &ac_tables) {
                    dropped = true;
                } else {
                    out.extend_from_slice(&bytes[start..data_end]);
                }
                at = data_end;
            }
        }
    }
    (dropped && frame?.never_smoothed()).then_some(out)
}

/// Define Huffman Table.
const DHT: u8 = 0xC4;

/// Coefficients libjpeg's block smoothing estimates when they are not
/// known to full precision (libjpeg-turbo 2.1 and later: the first ten in
/// zigzag order).
const SMOOTHED: usize = 10;

/// A progressive frame's components, and how far each coefficient of each
/// has come: `None` not sent yet, else the bits still missing (`Al`).
struct Frame {
    /// Id, and whether it has the largest sampling factors (one pixel per
    /// block at 1/8).
    components: Vec<(u8, bool)>,
    missing: Vec<[Option<u8>; 64]>,
}

impl Frame {
    fn read(body: &[u8]) -> Option<Frame> {
        // Precision, height (2), width (2), component count, then 3 bytes
        // each: id, sampling factors, quantisation table.
        let n = usize::from(*body.get(5)?);
        let comps = body.get(6..6 + 3 * n)?;
        if n == 0 || body.len() != 6 + 3 * n {
            return None;
        }
        let factors = |c: &[u8]| (c[1] >> 4, c[1] & 0x0F);
        let max_h = comps.chunks_exact(3).map(|c| factors(c).0).max()?;
        let max_v = comps.chunks_exact(3).map(|c| factors(c).1).max()?;
        let mut components: Vec<(u8, bool)> = Vec::with_capacity(n);
        for c in comps.chunks_exact(3) {
            let (h, v) = factors(c);
            if h == 0 || v == 0 || components.iter().any(|(id, _)| *id == c[0]) {
                return None;
            }
            components.push((c[0], (h, v) == (max_h, max_v)));
        }
        Some(Frame {
            missing: vec![[None; 64]; n],
            components,
        })
    }

    fn index(&self, id: u8) -> Option<usize> {
        self.components.iter().position(|(c, _)| *c == id)
    }

    /// Follow the coefficients a scan sends; `None` when the progression
    /// is one libjpeg refuses or warns about.
    fn progress(&mut self, scan: &Scan) -> Option<()> {
        for &id in &scan.components {
            let k = self.index(id)?;
            for coef in &mut self.missing[k][usize::from(scan.ss)..=usize::from(scan.se)] {
                let expected = (scan.ah != 0).then_some(scan.ah);
                if *coef != expected {
                    return None;
                }
                *coef = Some(scan.al);
            }
        }
        Some(())
    }

    /// An AC scan of one full-resolution component, whose Huffman table
    /// is defined.
    fn droppable(&self, scan: &Scan, ac_tables: &[bool; 4]) -> bool {
        scan.ss > 0
            && scan.components.len() == 1
            && self
                .index(scan.components[0])
                .is_some_and(|k| self.components[k].1)
            && ac_tables
                .get(usize::from(scan.ac_table))
                .copied()
                .unwrap_or(false)
    }

    /// Whether every component ends with its first coefficients at full
    /// precision, so that libjpeg does not smooth the whole file.
    fn never_smoothed(&self) -> bool {
        self.missing
            .iter()
            .all(|m| m[..SMOOTHED].iter().all(|c| *c == Some(0)))
    }
}

/// A scan's header, checked as libjpeg checks a progressive scan's.
struct Scan {
    components: Vec<u8>,
    /// The first component's AC table.
    ac_table: u8,
    ss: u8,
    se: u8,
    ah: u8,
    al: u8,
}

impl Scan {
    fn read(body: &[u8]) -> Option<Scan> {
        let n = usize::from(*body.first()?);
        if !(1..=4).contains(&n) || body.len() != 1 + 2 * n + 3 {
            return None;
        }
        let components: Vec<u8> = (0..n).map(|i| body[1 + 2 * i]).collect();
        let ac_table = body[2] & 0x0F;
        let (ss, se, a) = (body[1 + 2 * n], body[2 + 2 * n], body[3 + 2 * n]);
        let (ah, al) = (a >> 4, a & 0x0F);
        let dc = ss == 0 && se == 0;
        let ac = ss > 0 && ss <= se && se <= 63 && n == 1;
        let refines_one_bit = ah == 0 || al + 1 == ah;
        (ah <= 13 && al <= 13 && (dc || ac) && refines_one_bit).then_some(Scan {
            components,
            ac_table,
            ss,
            se,
            ah,
            al,
        })
    }
}

/// Note the AC tables a DHT segment defines; `None` if it is malformed.
fn define_tables(mut body: &[u8], ac: &mut [bool; 4]) -> Option<()> {
    while !body.is_empty() {
        let class_id = *body.first()?;
        let counts = body.get(1..17)?;
        let symbols: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if class_id >> 4 == 1 {
            *ac.get_mut(usize::from(class_id & 0x0F))? = true;
        }
        body = body.get(17 + symbols..)?;
    }
    Some(())
}

/// The next marker at or after `at` (fill bytes `0xFF` before it skipped):
/// its code and where its `0xFF` is.
pub(super) fn next_marker(bytes: &[u8], mut at: usize) -> Option<(u8, usize)> {
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
pub(super) fn scan_end(bytes: &[u8], mut at: usize) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A progressive JPEG from mozjpeg, its own scan script or libjpeg's
    /// simple one, with the given chroma subsampling (`None`: grey).
    fn progressive(w: u32, h: u32, sampling: Option<(u8, u8)>, simple: bool) -> Vec<u8> {
        crate::stages::progressive::tests::by_mozjpeg(w, h, sampling, !simple, 88.0)
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

    /// Each scan of `bytes`: where its SOS segment starts, where its data
    /// ends, and its header.
    fn scans_of(bytes: &[u8]) -> Vec<(usize, usize, Scan)> {
        let mut out = Vec::new();
        let mut at = 2;
        while let Some((marker, start)) = next_marker(bytes, at) {
            if marker == EOI {
                break;
            }
            let len = usize::from(u16::from_be_bytes([bytes[start + 2], bytes[start + 3]]));
            let end = start + 2 + len;
            if marker == SOS {
                let data_end = scan_end(bytes, end).expect("scan end");
                let scan = Scan::read(&bytes[start + 4..end]).expect("scan header");
                out.push((start, data_end, scan));
                at = data_end;
            } else {
                at = end;
            }
        }
        out
    }

    /// `bytes` without the scans `which` picks.
    fn without(bytes: &[u8], which: impl Fn(&Scan) -> bool) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (start, end, _) in scans_of(bytes)
            .into_iter()
            .rev()
            .filter(|(_, _, s)| which(s))
        {
            out.drain(start..end);
        }
        out
    }

    /// Valid files whose scans leave the first coefficients of some
    /// component short of full precision are smoothed by libjpeg as a
    /// whole: no copy is made, whatever could be dropped.
    #[test]
    fn files_libjpeg_smooths_are_left_whole() {
        let full = progressive(403, 301, Some((2, 2)), true);
        assert!(for_eighth_scale(&full).is_some());
        // Luma's AC left one bit short (its last refinement removed); Cb
        // without AC at all.
        let unrefined = without(&full, |s| s.components == [1] && s.ah == 1);
        let dc_only = without(&full, |s| s.components == [2] && s.ss > 0);
        // Cut in the middle of the last luma AC scan, then closed.
        let scans = scans_of(&full);
        let (start, end, _) = scans
            .iter()
            .rev()
            .find(|(_, _, s)| s.components == [1] && s.ss > 0)
            .expect("a luma AC scan");
        let mut cut = full[..(start + end) / 2].to_vec();
        cut.extend_from_slice(&[0xFF, EOI]);
        for (name, file) in [("unrefined", unrefined), ("dc only", dc_only), ("cut", cut)] {
            assert!(file.len() < full.len(), "{name}: nothing removed");
            assert_eq!(for_eighth_scale(&file), None, "{name}");
        }
    }

    /// A scan libjpeg would refuse is never the one dropped: its error
    /// stays the file's.
    #[test]
    fn scans_libjpeg_refuses_are_not_dropped() {
        let full = progressive(128, 96, Some((2, 2)), true);
        let (start, _, _) = scans_of(&full)
            .into_iter()
            .find(|(_, _, s)| s.components == [1] && s.ss > 0)
            .expect("a luma AC scan");
        // The header after its length: count, id and tables, Ss, Se, Ah/Al.
        let header = start + 4;
        let mut bad_end = full.clone();
        bad_end[header + 4] = 70;
        let mut bad_length = full.clone();
        bad_length[start + 3] += 2;
        for (name, file) in [("Se 70", bad_end), ("length", bad_length)] {
            assert_eq!(for_eighth_scale(&file), None, "{name}");
        }
        // An AC table never defined: that scan is kept (others may go), so
        // decoding the copy fails as decoding the file does.
        let mut no_table = full.clone();
        no_table[header + 2] = (no_table[header + 2] & 0xF0) | 3;
        let fails = |bytes: &[u8]| {
            let bytes = bytes.to_vec();
            std::panic::catch_unwind(move || eighth(&bytes, false)).is_err()
        };
        assert!(fails(&no_table), "libjpeg took an undefined table");
        if let Some(copy) = for_eighth_scale(&no_table) {
            assert!(fails(&copy), "the copy hid the file's error");
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
