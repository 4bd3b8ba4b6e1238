//! Plain baseline JPEG written here, for the default build: the standard
//! tables (ITU-T T.81 Annex K, scaled by quality as libjpeg and
//! jpeg-encoder scale them), a floating-point DCT with the quantisation
//! folded in, and Huffman coding that walks only a block's non-zero
//! coefficients. jpeg-encoder, which writes progressive and optimised
//! files, spent a quarter of the 1600 px task's CPU on plain ones (25.6% in
//! a profile of 500 files), most of it visiting every coefficient one at a
//! time; this writes the same kind of file (the same tables and sampling)
//! in 54% of its time (7.0 against 13.0 ms a 1600 px photo).

use super::metadata::Embed;
use crate::stage::StageError;

/// What to write: `channels` bytes a pixel (1 grey, 3 RGB, 4 RGBA with
/// alpha left out), chroma halved both ways or not (grey has none to
/// halve), and a restart marker every `restart` MCUs when given.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) channels: usize,
    pub(super) quality: u8,
    pub(super) halved: bool,
    pub(super) restart: Option<u16>,
}

/// `size.1` rows of `size.0` pixels of `data` as a baseline JPEG, with the
/// metadata of `embed` when given (`None` for a strip after the first).
pub(super) fn encode(
    data: &[u8],
    (width, height): (u16, u16),
    plan: Plan,
    embed: Option<&Embed>,
) -> Result<Vec<u8>, StageError> {
    let (w, h) = (usize::from(width), usize::from(height));
    if w == 0 || h == 0 {
        return Err(StageError::new(format!(
            "JPEG encoding failed: a {width}x{height} image has no pixels"
        )));
    }
    if !matches!(plan.channels, 1 | 3 | 4) || data.len() < w * h * plan.channels {
        return Err(StageError::new(format!(
            "JPEG encoding failed: {} bytes do not hold {width}x{height} pixels of {} bytes",
            data.len(),
            plan.channels
        )));
    }
    // Only colour has chroma to halve; from here `halved` says so alone.
    let plan = Plan {
        halved: plan.halved && plan.channels > 1,
        ..plan
    };
    let tables = Tables::new(plan.quality);
    let mut out = Vec::with_capacity(w * h / 3 + 1024);
    header(&mut out, (width, height), plan, embed, &tables);
    let bits = Bits {
        out,
        acc: 0,
        free: 64,
    };
    let mut frame = Frame::new(data, (w, h), plan, tables, bits);
    frame.scan();
    let mut out = frame.bits.out;
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

// ---------------------------------------------------------------- tables

/// Annex K.1: the luminance quantisation table, in natural order.
const LUMA_QUANT: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, //
    12, 12, 14, 19, 26, 58, 60, 55, //
    14, 13, 16, 24, 40, 57, 69, 56, //
    14, 17, 22, 29, 51, 87, 80, 62, //
    18, 22, 37, 56, 68, 109, 103, 77, //
    24, 35, 55, 64, 81, 104, 113, 92, //
    49, 64, 78, 87, 103, 121, 120, 101, //
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// Annex K.1: the chrominance quantisation table, in natural order.
const CHROMA_QUANT: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, //
    18, 21, 26, 66, 99, 99, 99, 99, //
    24, 26, 56, 99, 99, 99, 99, 99, //
    47, 66, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99, //
    99, 99, 99, 99, 99, 99, 99, 99,
];

/// Annex K.3: a Huffman table as the DHT segment carries it, the number of
/// codes of each length from 1 to 16, then the symbols in code order.
struct Spec {
    counts: [u8; 16],
    symbols: &'static [u8],
}

/// The DC tables' symbols: the sizes 0 to 11.
const DC_SYMBOLS: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

const LUMA_DC: Spec = Spec {
    counts: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    symbols: &DC_SYMBOLS,
};

const CHROMA_DC: Spec = Spec {
    counts: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    symbols: &DC_SYMBOLS,
};

const LUMA_AC: Spec = Spec {
    counts: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125],
    symbols: &[
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
        0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
        0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
        0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
        0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
};

const CHROMA_AC: Spec = Spec {
    counts: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119],
    symbols: &[
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
        0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18,
        0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
        0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA,
        0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
        0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ],
};

/// Zigzag position -> natural (row-major) index, walked diagonal by
/// diagonal as Figure A.6 draws it.
const ZIGZAG: [usize; 64] = {
    let mut order = [0; 64];
    let (mut k, mut s) = (0, 0usize);
    while s < 15 {
        let low = s.saturating_sub(7);
        let high = if s < 7 { s } else { 7 };
        let mut i = 0;
        while i <= high - low {
            // Odd diagonals run down the rows, even ones up.
            let row = if s % 2 == 1 { low + i } else { high - i };
            order[k] = row * 8 + (s - row);
            k += 1;
            i += 1;
        }
        s += 1;
    }
    order
};

/// The AAN DCT's output scale of each frequency (libjpeg's
/// `aanscalefactor`: 1 for 0, else cos(k pi / 16) sqrt 2).
const AAN_SCALE: [f32; 8] = [
    1.0,
    1.387_039_8,
    1.306_563,
    1.175_875_6,
    1.0,
    0.785_694_96,
    0.541_196_1,
    0.275_899_38,
];

/// A quality's quantisation table (natural order), as libjpeg scales the
/// standard one: 5000 / q below 50, 200 - 2q from there, within 1..=255 so
/// the file stays baseline.
fn scaled(base: &[u16; 64], quality: u8) -> [u16; 64] {
    let q = u32::from(quality.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    base.map(|v| ((u32::from(v) * scale + 50) / 100).clamp(1, 255) as u16)
}

/// A Huffman table's codes by symbol: the length in bits 16.., the code
/// below (Annex C: codes counted up within a length, doubled to the next).
struct Codes([u32; 256]);

impl Codes {
    fn of(spec: &Spec) -> Codes {
        let mut codes = [0u32; 256];
        let (mut code, mut at) = (0u32, 0usize);
        for (len, &count) in (1u32..).zip(&spec.counts) {
            for &symbol in &spec.symbols[at..at + usize::from(count)] {
                codes[usize::from(symbol)] = (len << 16) | code;
                code += 1;
            }
            at += usize::from(count);
            code <<= 1;
        }
        Codes(codes)
    }

    /// The code and its length for `symbol`, with `extra` bits of `value`
    /// after it.
    #[inline(always)]
    fn with(&self, symbol: usize, value: u32, extra: u32) -> (u32, u32) {
        let c = self.0[symbol];
        (((c & 0xFFFF) << extra) | value, (c >> 16) + extra)
    }
}

/// One component's tables: the quantisation table (natural order, as
/// written) and its multipliers for the DCT's output, and its codes.
struct Component {
    quant: [u16; 64],
    /// 1 / (q * the AAN scales * 8), in the transposed order the DCT
    /// leaves its output in (horizontal frequency major).
    scale: [f32; 64],
    dc: Codes,
    ac: Codes,
}

impl Component {
    fn new(base: &[u16; 64], quality: u8, dc: &Spec, ac: &Spec) -> Self {
        let quant = scaled(base, quality);
        let mut scale = [0f32; 64];
        for u in 0..8 {
            for v in 0..8 {
                let q = f32::from(quant[u * 8 + v]);
                scale[v * 8 + u] = 1.0 / (q * AAN_SCALE[u] * AAN_SCALE[v] * 8.0);
            }
        }
        Component {
            quant,
            scale,
            dc: Codes::of(dc),
            ac: Codes::of(ac),
        }
    }
}

struct Tables {
    luma: Component,
    chroma: Component,
}

impl Tables {
    fn new(quality: u8) -> Self {
        Tables {
            luma: Component::new(&LUMA_QUANT, quality, &LUMA_DC, &LUMA_AC),
            chroma: Component::new(&CHROMA_QUANT, quality, &CHROMA_DC, &CHROMA_AC),
        }
    }
}

// ---------------------------------------------------------------- header

fn segment(out: &mut Vec<u8>, marker: u8, body: &[&[u8]]) {
    let len = 2 + body.iter().map(|b| b.len()).sum::<usize>();
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    for b in body {
        out.extend_from_slice(b);
    }
}

/// Everything up to the entropy-coded data, in the order jpeg-encoder
/// writes it: SOI, JFIF, the metadata, DQT, SOF0, DHT, DRI, SOS.
fn header(out: &mut Vec<u8>, (w, h): (u16, u16), plan: Plan, embed: Option<&Embed>, t: &Tables) {
    let colour = plan.channels > 1;
    out.extend_from_slice(&[0xFF, 0xD8]);
    // JFIF 1.02, no density unit, square pixels, no thumbnail.
    segment(out, 0xE0, &[b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0"]);
    if let Some(embed) = embed {
        for app1 in super::jpeg::app1_segments(embed) {
            segment(out, 0xE1, &[&app1]);
        }
        for app2 in embed
            .icc
            .as_deref()
            .map(super::jpeg::icc_segments)
            .unwrap_or_default()
        {
            segment(out, 0xE2, &[&app2]);
        }
    }
    let components: &[(u8, &Component)] = if colour {
        &[(0, &t.luma), (1, &t.chroma)]
    } else {
        &[(0, &t.luma)]
    };
    for (id, c) in components {
        let zigzagged: Vec<u8> = ZIGZAG.iter().map(|&n| c.quant[n] as u8).collect();
        segment(out, 0xDB, &[&[*id], &zigzagged]);
    }
    let sampling = if plan.halved { 0x22 } else { 0x11 };
    let mut frame = vec![8];
    frame.extend_from_slice(&h.to_be_bytes());
    frame.extend_from_slice(&w.to_be_bytes());
    if colour {
        frame.extend_from_slice(&[3, 1, sampling, 0, 2, 0x11, 1, 3, 0x11, 1]);
    } else {
        frame.extend_from_slice(&[1, 1, 0x11, 0]);
    }
    segment(out, 0xC0, &[&frame]);
    let tables: &[(u8, &Spec)] = if colour {
        &[
            (0x00, &LUMA_DC),
            (0x10, &LUMA_AC),
            (0x01, &CHROMA_DC),
            (0x11, &CHROMA_AC),
        ]
    } else {
        &[(0x00, &LUMA_DC), (0x10, &LUMA_AC)]
    };
    for (class, spec) in tables {
        segment(out, 0xC4, &[&[*class], &spec.counts, spec.symbols]);
    }
    if let Some(interval) = plan.restart {
        segment(out, 0xDD, &[&interval.to_be_bytes()]);
    }
    if colour {
        segment(out, 0xDA, &[&[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]]);
    } else {
        segment(out, 0xDA, &[&[1, 1, 0x00, 0, 63, 0]]);
    }
}

// ---------------------------------------------------------------- bits

/// The entropy-coded data: bits gathered 64 at a time, a zero byte stuffed
/// after each 0xFF.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    /// Bits of `acc` not yet filled (64: empty).
    free: u32,
}

impl Bits {
    /// The low `n` bits of `v` (`n` < 32, `v` no wider).
    #[inline(always)]
    fn put(&mut self, v: u32, n: u32) {
        if n < self.free {
            self.acc = (self.acc << n) | u64::from(v);
            self.free -= n;
        } else {
            let over = n - self.free;
            let full = (self.acc << self.free) | (u64::from(v) >> over);
            self.word(full);
            // Bits of `v` already written are shifted out before the next
            // word is written.
            self.acc = u64::from(v);
            self.free = 64 - over;
        }
    }

    #[inline(always)]
    fn word(&mut self, w: u64) {
        // Is any byte 0xFF? (Is any byte of !w zero?)
        let x = !w;
        if x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080 == 0 {
            self.out.extend_from_slice(&w.to_be_bytes());
        } else {
            for b in w.to_be_bytes() {
                self.out.push(b);
                if b == 0xFF {
                    self.out.push(0);
                }
            }
        }
    }

    /// Pads the last byte with ones (F.1.2.3) and writes what is left.
    fn flush(&mut self) {
        let used = 64 - self.free;
        let pad = (8 - used % 8) % 8;
        if pad > 0 {
            self.put((1 << pad) - 1, pad);
        }
        let used = 64 - self.free;
        if used > 0 {
            let bytes = (self.acc << self.free).to_be_bytes();
            for &b in &bytes[..(used / 8) as usize] {
                self.out.push(b);
                if b == 0xFF {
                    self.out.push(0);
                }
            }
        }
        self.acc = 0;
        self.free = 64;
    }
}

// ---------------------------------------------------------------- scan

/// The scan: one band of MCU rows at a time converted into planes (edges
/// repeated out to whole MCUs, as libjpeg does), then each block
/// transformed, quantised and coded.
struct Frame<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    plan: Plan,
    tables: Tables,
    bits: Bits,
    /// The band's planes: Y, then Cb and Cr (colour only).
    planes: [Vec<u8>; 3],
    /// Their widths (whole MCUs).
    strides: [usize; 3],
    scratch: super::ycbcr::Planes,
}

impl<'a> Frame<'a> {
    fn new(
        data: &'a [u8],
        (width, height): (usize, usize),
        plan: Plan,
        tables: Tables,
        bits: Bits,
    ) -> Self {
        let (mcu_w, mcu_h) = Self::mcu(plan);
        let luma = width.div_ceil(mcu_w) * mcu_w;
        let chroma = if plan.halved { luma / 2 } else { luma };
        let chroma_rows = if plan.halved { mcu_h / 2 } else { mcu_h };
        let chroma_plane = || match plan.channels {
            1 => Vec::new(),
            _ => vec![0; chroma * chroma_rows],
        };
        let planes = [vec![0; luma * mcu_h], chroma_plane(), chroma_plane()];
        Frame {
            data,
            width,
            height,
            plan,
            tables,
            bits,
            planes,
            strides: [luma, chroma, chroma],
            scratch: super::ycbcr::Planes::new(width),
        }
    }

    fn mcu(plan: Plan) -> (usize, usize) {
        if plan.halved { (16, 16) } else { (8, 8) }
    }

    fn scan(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,bmi1,lzcnt")]
            unsafe fn avx2(frame: &mut Frame<'_>) {
                frame.scan_portable();
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("bmi1")
                && std::arch::is_x86_feature_detected!("lzcnt")
            {
                // SAFETY: the CPU has every feature enabled, checked above.
                unsafe { avx2(self) };
                return;
            }
        }
        self.scan_portable();
    }

    #[inline(always)]
    fn scan_portable(&mut self) {
        let (mcu_w, mcu_h) = Self::mcu(self.plan);
        let across = self.width.div_ceil(mcu_w);
        let mut preds = [0i32; 3];
        let mut done = 0usize;
        let mut restarts = 0u8;
        let restart = self.plan.restart.map_or(0, usize::from);
        let mut top = 0;
        while top < self.height {
            self.band(top);
            for m in 0..across {
                if restart > 0 && done > 0 && done.is_multiple_of(restart) {
                    self.bits.flush();
                    self.bits.out.extend_from_slice(&[0xFF, 0xD0 + restarts]);
                    restarts = (restarts + 1) % 8;
                    preds = [0; 3];
                }
                self.mcu_blocks(m, &mut preds);
                done += 1;
            }
            top += mcu_h;
        }
        self.bits.flush();
    }

    /// Codes MCU `m` of the band.
    #[inline(always)]
    fn mcu_blocks(&mut self, m: usize, preds: &mut [i32; 3]) {
        let mut zz = [0i16; 64];
        let Frame {
            planes,
            strides,
            tables,
            bits,
            plan,
            ..
        } = self;
        // The luma blocks of the MCU in order (four when chroma is halved),
        // then one block of each chroma plane.
        let (luma, width): (&[(usize, usize)], usize) = if plan.halved {
            (&[(0, 0), (0, 8), (8, 0), (8, 8)], 16)
        } else {
            (&[(0, 0)], 8)
        };
        for (dy, dx) in luma {
            let at = dy * strides[0] + m * width + dx;
            transform(&planes[0][at..], strides[0], &tables.luma.scale, &mut zz);
            code(bits, &zz, &mut preds[0], &tables.luma);
        }
        if plan.channels > 1 {
            for c in 1..3 {
                let plane = &planes[c][m * 8..];
                transform(plane, strides[c], &tables.chroma.scale, &mut zz);
                code(bits, &zz, &mut preds[c], &tables.chroma);
            }
        }
    }

    /// Fills the planes with the band of rows from `top`, the last image
    /// row and column repeated past the edges.
    #[inline(always)]
    fn band(&mut self, top: usize) {
        let (_, mcu_h) = Self::mcu(self.plan);
        let (w, ch) = (self.width, self.plan.channels);
        let row = |r: usize| {
            let r = r.min(self.height - 1);
            &self.data[r * w * ch..(r + 1) * w * ch]
        };
        let [luma, cb, cr] = &mut self.planes;
        let [ls, cs, _] = self.strides;
        if ch == 1 {
            for r in 0..mcu_h {
                let dst = &mut luma[r * ls..(r + 1) * ls];
                dst[..w].copy_from_slice(row(top + r));
                pad(dst, w);
            }
        } else if self.plan.halved {
            let half = w.div_ceil(2);
            for p in 0..mcu_h / 2 {
                let pair = (row(top + 2 * p), row(top + 2 * p + 1));
                super::ycbcr::convert_pair(pair, ch, &mut self.scratch);
                for (i, y) in self.scratch.y.iter().enumerate() {
                    let dst = &mut luma[(2 * p + i) * ls..(2 * p + i + 1) * ls];
                    dst[..w].copy_from_slice(y);
                    pad(dst, w);
                }
                for (plane, averaged) in
                    [(&mut *cb, &self.scratch.cb), (&mut *cr, &self.scratch.cr)]
                {
                    let dst = &mut plane[p * cs..(p + 1) * cs];
                    for (d, s) in dst[..half].iter_mut().zip(averaged.iter().step_by(2)) {
                        *d = *s;
                    }
                    pad(dst, half);
                }
            }
        } else {
            for r in 0..mcu_h {
                let span = r * ls..(r + 1) * ls;
                let (y, b, c) = (
                    &mut luma[span.clone()],
                    &mut cb[span.clone()],
                    &mut cr[span],
                );
                super::ycbcr::convert_full(
                    row(top + r),
                    ch,
                    (&mut y[..w], &mut b[..w], &mut c[..w]),
                );
                for p in [y, b, c] {
                    pad(p, w);
                }
            }
        }
    }
}

/// Repeats `row[filled - 1]` to the end of `row`.
#[inline(always)]
fn pad(row: &mut [u8], filled: usize) {
    let last = row[filled - 1];
    row[filled..].fill(last);
}

/// The 8x8 block at the start of `plane` (rows `stride` apart), level
/// shifted, transformed, quantised by `scale` and put in zigzag order.
#[inline(always)]
fn transform(plane: &[u8], stride: usize, scale: &[f32; 64], zz: &mut [i16; 64]) {
    let mut rows = [[0f32; 8]; 8];
    for (r, row) in rows.iter_mut().enumerate() {
        for (x, v) in row.iter_mut().zip(&plane[r * stride..r * stride + 8]) {
            *x = f32::from(*v) - 128.0;
        }
    }
    // Down the columns (each row a vector across them), then, transposed,
    // along the rows: the result is indexed [horizontal][vertical].
    let cols = dct8(rows);
    let mut t = [[0f32; 8]; 8];
    for (i, row) in cols.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            t[j][i] = *v;
        }
    }
    let out = dct8(t);
    let mut q = [0i32; 64];
    for (q, (o, s)) in q.iter_mut().zip(out.as_flattened().iter().zip(scale)) {
        // Rounded to nearest by adding 1.5 * 2^23, which leaves the integer
        // in the low mantissa bits (the values are far within 2^22): a
        // saturating `as` would check every lane for NaN, one at a time.
        *q = (o * s + ROUNDER).to_bits() as i32 - ROUNDER.to_bits() as i32;
    }
    for (z, &i) in zz.iter_mut().zip(&ZIGZAG_TRANSPOSED) {
        *z = q[i] as i16;
    }
}

/// See [`transform`].
const ROUNDER: f32 = 12_582_912.0;

/// Zigzag position -> index in the transposed order [`transform`] leaves
/// its coefficients in (horizontal frequency major).
const ZIGZAG_TRANSPOSED: [usize; 64] = {
    let mut t = [0; 64];
    let mut k = 0;
    while k < 64 {
        t[k] = ZIGZAG[k] % 8 * 8 + ZIGZAG[k] / 8;
        k += 1;
    }
    t
};

/// Bit k set where `zz[k]` is not zero.
#[inline(always)]
fn nonzero(zz: &[i16; 64]) -> u64 {
    let mut flags = [0u8; 64];
    for (f, &z) in flags.iter_mut().zip(zz) {
        *f = u8::from(z != 0);
    }
    let mut mask = 0;
    for (i, eight) in flags.chunks_exact(8).enumerate() {
        let bytes = u64::from_le_bytes(eight.try_into().unwrap_or_default());
        // Each byte's 0 or 1 lands on bit 56 + its index, with no carries
        // (every product term has a bit of its own).
        mask |= (bytes.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * i);
    }
    mask
}

/// The AAN forward DCT (libjpeg's `jfdctflt`) on eight vectors at once:
/// `d[k]` is the k-th sample of each of eight 1-D signals.
#[inline(always)]
fn dct8(d: [[f32; 8]; 8]) -> [[f32; 8]; 8] {
    let mut o = [[0f32; 8]; 8];
    for i in 0..8 {
        let tmp0 = d[0][i] + d[7][i];
        let tmp7 = d[0][i] - d[7][i];
        let tmp1 = d[1][i] + d[6][i];
        let tmp6 = d[1][i] - d[6][i];
        let tmp2 = d[2][i] + d[5][i];
        let tmp5 = d[2][i] - d[5][i];
        let tmp3 = d[3][i] + d[4][i];
        let tmp4 = d[3][i] - d[4][i];

        let tmp10 = tmp0 + tmp3;
        let tmp13 = tmp0 - tmp3;
        let tmp11 = tmp1 + tmp2;
        let tmp12 = tmp1 - tmp2;
        o[0][i] = tmp10 + tmp11;
        o[4][i] = tmp10 - tmp11;
        let z1 = (tmp12 + tmp13) * 0.707_106_77;
        o[2][i] = tmp13 + z1;
        o[6][i] = tmp13 - z1;

        let tmp10 = tmp4 + tmp5;
        let tmp11 = tmp5 + tmp6;
        let tmp12 = tmp6 + tmp7;
        let z5 = (tmp10 - tmp12) * 0.382_683_43;
        let z2 = 0.541_196_1 * tmp10 + z5;
        let z4 = 1.306_563 * tmp12 + z5;
        let z3 = tmp11 * 0.707_106_77;
        let z11 = tmp7 + z3;
        let z13 = tmp7 - z3;
        o[5][i] = z13 + z2;
        o[3][i] = z13 - z2;
        o[1][i] = z11 + z4;
        o[7][i] = z11 - z4;
    }
    o
}

/// The size category of `v` and its bits as F.1.2.1 writes them (a
/// negative value as its one's complement).
#[inline(always)]
fn category(v: i32) -> (u32, u32) {
    let size = 32 - v.unsigned_abs().leading_zeros();
    let bits = (v - i32::from(v < 0)) as u32 & ((1u32 << size) - 1);
    (size, bits)
}

/// Codes one block (zigzag order): the DC's difference from `pred`, then
/// each run of zeros and the value after it, found through a mask of the
/// non-zero coefficients so the zeros cost nothing.
#[inline(always)]
fn code(bits: &mut Bits, zz: &[i16; 64], pred: &mut i32, c: &Component) {
    let dc = i32::from(zz[0]);
    let (size, extra) = category(dc - *pred);
    *pred = dc;
    let (v, n) = c.dc.with(size as usize, extra, size);
    bits.put(v, n);
    let mut mask = nonzero(zz) & !1;
    let mut last = 0;
    while mask != 0 {
        let k = mask.trailing_zeros();
        let mut run = k - last - 1;
        while run >= 16 {
            let (v, n) = c.ac.with(0xF0, 0, 0);
            bits.put(v, n);
            run -= 16;
        }
        // Baseline codes sizes up to 10; 8-bit samples stay within that.
        let value = i32::from(zz[k as usize]).clamp(-1023, 1023);
        let (size, extra) = category(value);
        let (v, n) = c.ac.with(((run << 4) | size) as usize, extra, size);
        bits.put(v, n);
        last = k;
        mask &= mask - 1;
    }
    if last != 63 {
        let (v, n) = c.ac.with(0x00, 0, 0);
        bits.put(v, n);
    }
}

#[cfg(test)]
#[path = "baseline_tests.rs"]
pub(super) mod tests;
