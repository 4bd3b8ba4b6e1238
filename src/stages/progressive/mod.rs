//! conveyor's own decoder for progressive JPEGs, for the common layouts
//! (8-bit Huffman, grey or YCbCr with 4:4:4, 4:2:2 or 4:2:0 chroma).
//! libjpeg and zune-jpeg spend most of their time on such files in the
//! refinement scans: there, every coefficient a block already holds takes a
//! correction bit, and they walk the block one coefficient at a time with a
//! branch on each coefficient and each bit, as likely one way as the other.
//! Here each block keeps a 64-bit mask of its non-zero coefficients: a run
//! of zeros is found with one bit deposit (BMI2), the correction bits are
//! read in one go and placed with another. The 8 MP progressive photo of
//! the corpus decodes in 131 ms against libjpeg's 250 ms and zune-jpeg's
//! 272 ms; smaller ones 1.3-1.5x faster than libjpeg (`progressive_alone`
//! in the tests). It also decodes at libjpeg's reduced scales (N/8, for
//! shrink-on-load thumbnails) with libjpeg's scaled IDCTs and sizes:
//! there the smaller photos decode 1.5-1.6x faster than libjpeg does at
//! the same scale.
//!
//! Anything else, and any file this finds broken, is left to the caller's
//! decoder (libjpeg or zune-jpeg), which then decodes it, or reports its
//! error, as it always did: this decoder gives pixels or nothing, and never
//! decides a file is bad. The pixels follow libjpeg's defaults (the same
//! fancy chroma upsampling and colour conversion); the IDCT is in floating
//! point, so a sample may differ from libjpeg's by up to 3 levels (0.05 on
//! average in the tests).

mod entropy;
mod pixels;

use super::jpeg_scans::{next_marker, scan_end};
use entropy::{Bits, Huffman, first_block, refine_block};
use image::DynamicImage;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DQT: u8 = 0xDB;
const DHT: u8 = 0xC4;
const DRI: u8 = 0xDD;
const SOF2: u8 = 0xC2;
const COM: u8 = 0xFE;

/// How the caller's libjpeg read the file's colour: one grey component, or
/// three in YCbCr. Other colour spaces (RGB, CMYK) are not decoded here.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Colour {
    Grey,
    YCbCr,
}

/// How libjpeg would read a progressive Huffman JPEG's colour, when it is
/// one this decodes: `None` for any other file, and for colour spaces other
/// than grey and YCbCr. libjpeg's rule (`default_decompress_parms`) for three
/// components: a JFIF marker means YCbCr; else an Adobe marker's transform
/// (0: RGB, otherwise YCbCr); else component ids R, G, B mean RGB.
pub(super) fn colour_of(bytes: &[u8]) -> Option<Colour> {
    if bytes.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let (mut jfif, mut adobe) = (false, None);
    let mut at = 2;
    loop {
        let (marker, start) = next_marker(bytes, at)?;
        let len = segment_length(bytes, start)?;
        let body = bytes.get(start + 4..start + 2 + len)?;
        match marker {
            // libjpeg reads the first 14 bytes of an APP0, 12 of an APP14,
            // and takes neither marker when it is shorter.
            0xE0 if body.len() >= 14 && body.starts_with(b"JFIF\0") => jfif = true,
            0xEE if body.len() >= 12 && body.starts_with(b"Adobe") => adobe = Some(body[11]),
            SOF2 => {
                let n = *body.get(5)?;
                let ids = body.get(6..)?;
                return match n {
                    1 => Some(Colour::Grey),
                    3 if jfif => Some(Colour::YCbCr),
                    3 if adobe == Some(0) => None,
                    3 if adobe.is_some() => Some(Colour::YCbCr),
                    3 if (ids.first(), ids.get(3), ids.get(6))
                        == (Some(&82), Some(&71), Some(&66)) =>
                    {
                        None
                    }
                    3 => Some(Colour::YCbCr),
                    _ => None,
                };
            }
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | SOS | EOI => return None,
            _ => {}
        }
        at = start + 2 + len;
    }
}

/// The pixels of a progressive JPEG at `eighths`/8 of its full size (8:
/// full size; sizes rounded up, as libjpeg's scaled decoding gives them),
/// 8-bit grey or RGB as `colour` says; `None` for a layout this does not
/// decode or a file that breaks any rule libjpeg would warn about or
/// refuse.
pub(super) fn decode(bytes: &[u8], colour: Colour, eighths: u8) -> Option<DynamicImage> {
    decode_with(bytes, colour, eighths, true)
}

/// [`decode`], with the CPU's bit-manipulation instructions or without
/// (`fast` false: the portable code every CPU runs, for the tests).
fn decode_with(bytes: &[u8], colour: Colour, eighths: u8, fast: bool) -> Option<DynamicImage> {
    if !(1..=8).contains(&eighths) {
        return None;
    }
    let mut d = Decoder {
        fast,
        eighths: usize::from(eighths),
        ..Decoder::default()
    };
    if bytes.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut at = 2;
    loop {
        let (marker, start) = next_marker(bytes, at)?;
        if marker == EOI {
            break;
        }
        let len = segment_length(bytes, start)?;
        let body = bytes.get(start + 4..start + 2 + len)?;
        at = start + 2 + len;
        match marker {
            0xE0..=0xEF | COM => {}
            DQT => d.define_quant(body)?,
            DHT => d.define_huffman(body)?,
            DRI => d.restart = usize::from(u16::from_be_bytes(body.try_into().ok()?)),
            SOF2 if d.frame.is_none() => d.frame = Some(Frame::read(body)?),
            SOS => {
                // Each scan is a pass over a component's blocks: a crafted
                // file of thousands of tiny scans would keep a core busy
                // for minutes. Past libjpeg's and zune-jpeg's count here,
                // the file goes where it went before (and is refused).
                d.scans += 1;
                if d.scans > super::libjpeg::MAX_SCANS {
                    return None;
                }
                let end = scan_end(bytes, at)?;
                d.scan(body, bytes.get(at..end)?)?;
                at = end;
            }
            // Another frame, a second frame, DNL, arithmetic coding
            // conditions, anything else: libjpeg's business.
            _ => return None,
        }
    }
    let frame = d.frame?;
    frame.complete().then_some(())?;
    frame.pixels(colour, fast, d.eighths)
}

/// The two-byte length of the segment whose marker's `0xFF` is at `start`
/// (the length counts itself).
fn segment_length(bytes: &[u8], start: usize) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([
        *bytes.get(start + 2)?,
        *bytes.get(start + 3)?,
    ]));
    (len >= 2).then_some(len)
}

/// The tables and the frame as the markers so far define them.
#[derive(Default)]
struct Decoder {
    /// Quantisation tables in zigzag order.
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Box<Huffman>>; 4],
    ac: [Option<Box<Huffman>>; 4],
    /// MCUs between restart markers; 0 for none.
    restart: usize,
    frame: Option<Frame>,
    /// Whether AC scans may use BMI2 and the like, where the CPU has them.
    fast: bool,
    /// Scans read so far.
    scans: usize,
    /// The output's scale, in eighths of the full size.
    eighths: usize,
}

impl Decoder {
    fn define_quant(&mut self, mut body: &[u8]) -> Option<()> {
        while let Some((&pq_tq, rest)) = body.split_first() {
            let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 0x0F));
            let mut table = [0u16; 64];
            if precision == 0 {
                let values = rest.get(..64)?;
                for (t, &v) in table.iter_mut().zip(values) {
                    *t = u16::from(v);
                }
                body = &rest[64..];
            } else if precision == 1 {
                let values = rest.get(..128)?;
                for (t, v) in table.iter_mut().zip(values.chunks_exact(2)) {
                    *t = u16::from_be_bytes([v[0], v[1]]);
                }
                body = &rest[128..];
            } else {
                return None;
            }
            // A zero quantiser is an error to libjpeg.
            if table.contains(&0) {
                return None;
            }
            *self.quant.get_mut(id)? = Some(table);
        }
        Some(())
    }

    fn define_huffman(&mut self, mut body: &[u8]) -> Option<()> {
        while let Some((&tc_th, rest)) = body.split_first() {
            let counts: &[u8; 16] = rest.get(..16)?.try_into().ok()?;
            let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
            if n > 256 {
                return None;
            }
            let symbols = rest.get(16..16 + n)?;
            // A table whose codes overflow is an error to libjpeg only
            // when a scan uses it: kept as undefined, so such a scan
            // declines the file.
            let table = Huffman::new(counts, symbols).map(Box::new);
            let slot = usize::from(tc_th & 0x0F);
            match tc_th >> 4 {
                0 => *self.dc.get_mut(slot)? = table,
                1 => *self.ac.get_mut(slot)? = table,
                _ => return None,
            }
            body = &rest[16 + n..];
        }
        Some(())
    }

    /// Decode one scan: its header `head` and its entropy-coded `data`.
    fn scan(&mut self, head: &[u8], data: &[u8]) -> Option<()> {
        let frame = self.frame.as_mut()?;
        let n = usize::from(*head.first()?);
        if !(1..=frame.components.len()).contains(&n) || head.len() != 4 + 2 * n {
            return None;
        }
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let (id, tables) = (head[1 + 2 * i], head[2 + 2 * i]);
            let c = frame.components.iter().position(|c| c.id == id)?;
            // In frame order, once each, as the standard requires.
            if members.last().is_some_and(|&(last, _, _)| last >= c) {
                return None;
            }
            members.push((c, usize::from(tables >> 4), usize::from(tables & 0x0F)));
        }
        let (ss, se, a) = (head[1 + 2 * n], head[2 + 2 * n], head[3 + 2 * n]);
        let (ah, al) = (a >> 4, a & 0x0F);
        let dc = ss == 0 && se == 0;
        let ac = ss > 0 && ss <= se && se <= 63 && n == 1;
        if !(dc || ac) || al > 13 || (ah != 0 && ah != al + 1) {
            return None;
        }
        let scan = Scan {
            ss: u32::from(ss),
            se: u32::from(se),
            al: u32::from(al),
            refine: ah != 0,
        };
        // Each coefficient must come first with Ah = 0, then one bit at a
        // time, as libjpeg checks; and quantisation tables are latched by
        // a component's first scan.
        for &(c, _, _) in &members {
            let comp = &mut frame.components[c];
            for bits in &mut comp.progress[usize::from(ss)..=usize::from(se)] {
                if *bits != (ah != 0).then_some(ah) {
                    return None;
                }
                *bits = Some(al);
            }
            if comp.quant.is_none() {
                comp.quant = Some(self.quant[comp.tq]?);
            }
        }
        let mut bits = Bits::new(data);
        if dc {
            let tables: Vec<Option<&Huffman>> = members
                .iter()
                .map(|&(_, td, _)| self.dc.get(td).and_then(|t| t.as_deref()))
                .collect();
            if ah == 0 && tables.iter().any(Option::is_none) {
                return None;
            }
            frame.dc_scan(&members, &tables, &scan, self.restart, &mut bits)?;
        } else {
            let table = self.ac.get(members[0].2)?.as_deref()?;
            frame.ac_scan(
                members[0].0,
                table,
                &scan,
                self.restart,
                self.fast,
                &mut bits,
            )?;
        }
        bits.finish()
    }
}

/// Where a scan's restart markers come: before every `interval`-th MCU
/// (0: none), numbered 0 to 7 in turn.
struct Restarts {
    interval: usize,
    left: usize,
    next: usize,
}

impl Restarts {
    fn new(interval: usize) -> Restarts {
        Restarts {
            interval,
            left: interval,
            next: 0,
        }
    }

    /// Before each MCU: read the restart marker due there, if one is;
    /// `Some(true)` then, and the caller starts its predictions afresh.
    #[inline(always)]
    fn before_mcu(&mut self, bits: &mut Bits<'_>) -> Option<bool> {
        if self.interval == 0 {
            return Some(false);
        }
        let due = self.left == 0;
        if due {
            bits.restart(self.next)?;
            self.next += 1;
            self.left = self.interval;
        }
        self.left -= 1;
        Some(due)
    }
}

/// A scan's spectral band and successive-approximation shift, and whether
/// it refines coefficients sent before.
struct Scan {
    ss: u32,
    se: u32,
    al: u32,
    refine: bool,
}

/// A component: its sampling, its blocks' coefficients (row-major, as the
/// IDCT reads them) and a mask of each block's non-zero AC coefficients
/// (bit k: the k-th in zigzag order, the order scans send them in).
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Latched by the component's first scan.
    quant: Option<[u16; 64]>,
    /// Blocks a row and rows, over whole MCUs.
    stride: usize,
    rows: usize,
    /// Blocks that cover the component's samples (a non-interleaved scan
    /// codes only these).
    wide: usize,
    high: usize,
    coefs: Vec<[i16; 64]>,
    masks: Vec<u64>,
    /// For each coefficient, the bits still to come (`Al`), once sent.
    progress: [Option<u8>; 64],
}

struct Frame {
    width: usize,
    height: usize,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
    components: Vec<Component>,
}

/// Largest image this decodes (libjpeg's own limit, 65500 a side, keeps
/// coefficient buffers within reach).
const MAX_SIDE: usize = 65500;

impl Frame {
    fn read(body: &[u8]) -> Option<Frame> {
        let precision = *body.first()?;
        let height = usize::from(u16::from_be_bytes([*body.get(1)?, *body.get(2)?]));
        let width = usize::from(u16::from_be_bytes([*body.get(3)?, *body.get(4)?]));
        let n = usize::from(*body.get(5)?);
        if precision != 8
            || !(n == 1 || n == 3)
            || body.len() != 6 + 3 * n
            || width == 0
            || height == 0
            || width > MAX_SIDE
            || height > MAX_SIDE
        {
            return None;
        }
        let specs: Vec<(u8, usize, usize, usize)> = body[6..]
            .chunks_exact(3)
            .map(|c| {
                (
                    c[0],
                    usize::from(c[1] >> 4),
                    usize::from(c[1] & 0x0F),
                    usize::from(c[2]),
                )
            })
            .collect();
        // One grey component, whatever its factors say (libjpeg treats a
        // lone component as 1x1); or full-resolution luma with chroma at
        // 1x1 and luma at 1x1, 2x1 or 2x2.
        let layout_ok = n == 1
            || (matches!((specs[0].1, specs[0].2), (1, 1) | (2, 1) | (2, 2))
                && specs[1..].iter().all(|s| (s.1, s.2) == (1, 1)));
        let distinct = specs
            .iter()
            .enumerate()
            .all(|(i, s)| specs[..i].iter().all(|t| t.0 != s.0));
        // Factors outside 1..=4 are an error to libjpeg, even on a lone
        // component whose factors it then ignores.
        let factors_ok = specs
            .iter()
            .all(|s| (1..=4).contains(&s.1) && (1..=4).contains(&s.2));
        if !layout_ok || !distinct || !factors_ok || specs.iter().any(|s| s.3 > 3) {
            return None;
        }
        let (max_h, max_v) = if n == 1 {
            (1, 1)
        } else {
            (specs[0].1, specs[0].2)
        };
        let mcus_x = width.div_ceil(8 * max_h);
        let mcus_y = height.div_ceil(8 * max_v);
        let components = specs
            .iter()
            .map(|&(id, h, v, tq)| {
                let (h, v) = if n == 1 { (1, 1) } else { (h, v) };
                let (stride, rows) = (mcus_x * h, mcus_y * v);
                Component {
                    id,
                    h,
                    v,
                    tq,
                    quant: None,
                    stride,
                    rows,
                    wide: (width * h).div_ceil(max_h).div_ceil(8),
                    high: (height * v).div_ceil(max_v).div_ceil(8),
                    coefs: vec![[0; 64]; stride * rows],
                    masks: vec![0; stride * rows],
                    progress: [None; 64],
                }
            })
            .collect();
        Some(Frame {
            width,
            height,
            max_h,
            max_v,
            mcus_x,
            mcus_y,
            components,
        })
    }

    /// Whether every coefficient of every component came to full
    /// precision. Otherwise libjpeg smooths blocks to guess the missing
    /// bits, which this does not do.
    fn complete(&self) -> bool {
        self.components
            .iter()
            .all(|c| c.progress.iter().all(|p| *p == Some(0)))
    }

    /// A DC scan, first or refining, of one or more components.
    fn dc_scan(
        &mut self,
        members: &[(usize, usize, usize)],
        tables: &[Option<&Huffman>],
        scan: &Scan,
        restart: usize,
        bits: &mut Bits<'_>,
    ) -> Option<()> {
        let mut pred = [0i32; 4];
        let block = |comp: &mut Component,
                     at: usize,
                     k: usize,
                     pred: &mut [i32; 4],
                     bits: &mut Bits<'_>| {
            let coef = &mut comp.coefs.get_mut(at)?[0];
            if scan.refine {
                if bits.bit() {
                    *coef |= 1 << scan.al;
                }
            } else {
                let s = u32::from(bits.symbol(tables[k]?)?);
                if s > 11 {
                    return None;
                }
                pred[k] = pred[k].wrapping_add(bits.signed(s));
                *coef = (pred[k] << scan.al) as i16;
            }
            Some(())
        };
        if let [(c, _, _)] = members {
            // One component: its blocks in raster order, each an MCU.
            let comp = &mut self.components[*c];
            let mut restarts = Restarts::new(restart);
            for y in 0..comp.high {
                for x in 0..comp.wide {
                    if restarts.before_mcu(bits)? {
                        pred = [0; 4];
                    }
                    block(comp, y * comp.stride + x, 0, &mut pred, bits)?;
                }
            }
            return Some(());
        }
        let mut restarts = Restarts::new(restart);
        for my in 0..self.mcus_y {
            for mx in 0..self.mcus_x {
                if restarts.before_mcu(bits)? {
                    pred = [0; 4];
                }
                for (k, &(c, _, _)) in members.iter().enumerate() {
                    let comp = &mut self.components[c];
                    for by in 0..comp.v {
                        for bx in 0..comp.h {
                            let at = (my * comp.v + by) * comp.stride + mx * comp.h + bx;
                            block(comp, at, k, &mut pred, bits)?;
                        }
                    }
                }
            }
        }
        Some(())
    }

    /// An AC scan of one component, first or refining; compiled for the
    /// bit-counting instructions where the CPU has them.
    fn ac_scan(
        &mut self,
        c: usize,
        table: &Huffman,
        scan: &Scan,
        restart: usize,
        fast: bool,
        bits: &mut Bits<'_>,
    ) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if fast {
            #[target_feature(enable = "popcnt,bmi1,bmi2,lzcnt")]
            unsafe fn with_bmi2(
                frame: &mut Frame,
                c: usize,
                table: &Huffman,
                scan: &Scan,
                restart: usize,
                bits: &mut Bits<'_>,
            ) -> Option<()> {
                frame.ac_scan_portable::<true>(c, table, scan, restart, bits)
            }
            if std::arch::is_x86_feature_detected!("popcnt")
                && std::arch::is_x86_feature_detected!("bmi1")
                && std::arch::is_x86_feature_detected!("bmi2")
                && std::arch::is_x86_feature_detected!("lzcnt")
            {
                // SAFETY: the CPU has every feature enabled, checked above.
                return unsafe { with_bmi2(self, c, table, scan, restart, bits) };
            }
        }
        self.ac_scan_portable::<false>(c, table, scan, restart, bits)
    }

    /// `PDEP`: compiled where the CPU has BMI2's bit deposit.
    #[inline(always)]
    fn ac_scan_portable<const PDEP: bool>(
        &mut self,
        c: usize,
        table: &Huffman,
        scan: &Scan,
        restart: usize,
        bits: &mut Bits<'_>,
    ) -> Option<()> {
        let comp = &mut self.components[c];
        let mut eob_run = 0u32;
        let mut restarts = Restarts::new(restart);
        for y in 0..comp.high {
            for x in 0..comp.wide {
                if restarts.before_mcu(bits)? {
                    eob_run = 0;
                }
                let at = y * comp.stride + x;
                let coefs = comp.coefs.get_mut(at)?;
                let mask = comp.masks.get_mut(at)?;
                if scan.refine {
                    refine_block::<PDEP>(coefs, mask, table, scan, &mut eob_run, bits)?;
                } else {
                    first_block(coefs, mask, table, scan, &mut eob_run, bits)?;
                }
            }
        }
        Some(())
    }
}

/// Natural (row-major) position of each zigzag index.
const NATURAL: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

#[cfg(test)]
pub(super) mod tests;
