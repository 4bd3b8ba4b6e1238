//! Entropy decoding: Huffman tables, the bit reader, and the coefficients
//! of one block in an AC scan, first or refining.

use super::{NATURAL, Scan};

/// A Huffman table: codes of up to 9 bits through one lookup, longer
/// ones the standard's way (F.2.2.3).
pub(super) struct Huffman {
    /// Indexed by the next 9 bits: symbol | length << 8; 0 when the code is
    /// longer.
    fast: [u16; 1 << FAST_BITS],
    /// The largest code of each length (-1: none).
    max_code: [i32; 17],
    /// Added to a code of each length to give its symbol's index.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

const FAST_BITS: u32 = 9;

impl Huffman {
    pub(super) fn new(counts: &[u8; 16], symbols: &[u8]) -> Option<Huffman> {
        let mut t = Huffman {
            fast: [0; 1 << FAST_BITS],
            max_code: [-1; 17],
            offset: [0; 17],
            symbols: symbols.to_vec(),
        };
        let mut code: i32 = 0;
        let mut index: i32 = 0;
        for len in 1..=16u32 {
            let count = i32::from(counts[len as usize - 1]);
            t.offset[len as usize] = index - code;
            for _ in 0..count {
                // A code past its length's last (all ones included): a
                // table libjpeg refuses once a scan uses it.
                if code >= (1 << len) - 1 {
                    return None;
                }
                if len <= FAST_BITS {
                    let shift = FAST_BITS - len;
                    let first = (code as usize) << shift;
                    let entry = u16::from(symbols[index as usize]) | (len as u16) << 8;
                    t.fast[first..first + (1 << shift)].fill(entry);
                }
                code += 1;
                index += 1;
            }
            if count > 0 {
                t.max_code[len as usize] = code - 1;
            }

            code <<= 1;
        }
        Some(t)
    }
}

/// Entropy-coded data, read most significant bit first, with stuffed zero
/// bytes removed. Past the data's end (a marker) it reads zeros and counts
/// them: a scan that needs them is broken.
pub(super) struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    /// The next bits, from the top; bits below `count` may already hold
    /// the start of the next byte, which refilling writes again unchanged.
    acc: u64,
    count: u32,
    /// Zero bits added past the end.
    padded: u32,
}

impl<'a> Bits<'a> {
    pub(super) fn new(data: &'a [u8]) -> Bits<'a> {
        Bits {
            data,
            pos: 0,
            acc: 0,
            count: 0,
            padded: 0,
        }
    }

    /// At least 57 bits in `acc`; called with fewer than 57.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let word = u64::from_be_bytes(chunk.try_into().unwrap_or([0xFF; 8]));
            // No 0xFF byte among the eight: take whole bytes as they are.
            if !has_ff(word) {
                self.acc |= word >> self.count;
                let bytes = (64 - self.count) / 8;
                self.pos += bytes as usize;
                self.count += bytes * 8;
                return;
            }
        }
        self.refill_slowly();
    }

    #[inline(never)]
    fn refill_slowly(&mut self) {
        while self.count <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    0xFF
                }
                // A marker or the end: zeros from here.
                Some(&0xFF) | None => {
                    self.padded += 8;
                    0
                }
                Some(&b) => {
                    self.pos += 1;
                    b
                }
            };
            self.acc |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    /// The next `n` bits (1..=56) as a number.
    #[inline(always)]
    pub(super) fn take(&mut self, n: u32) -> u64 {
        if self.count < n {
            self.refill();
        }
        let v = self.acc >> (64 - n);
        self.acc <<= n;
        self.count -= n;
        v
    }

    #[inline(always)]
    pub(super) fn bit(&mut self) -> bool {
        self.take(1) != 0
    }

    /// `n` bits (0..=16) as a signed coefficient, as F.2.2.1's EXTEND.
    #[inline(always)]
    pub(super) fn signed(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.take(n) as i32;
        if v < 1 << (n - 1) {
            v - (1 << n) + 1
        } else {
            v
        }
    }

    /// The next Huffman symbol; `None` for a code the table lacks.
    #[inline(always)]
    pub(super) fn symbol(&mut self, t: &Huffman) -> Option<u8> {
        if self.count < 16 {
            self.refill();
        }
        let entry = t.fast[(self.acc >> (64 - FAST_BITS)) as usize];
        if entry != 0 {
            let len = u32::from(entry >> 8);
            self.acc <<= len;
            self.count -= len;
            return Some(entry as u8);
        }
        for len in FAST_BITS + 1..=16 {
            let code = (self.acc >> (64 - len)) as i32;
            if code <= t.max_code[len as usize] {
                self.acc <<= len;
                self.count -= len;
                let index = code + t.offset[len as usize];
                return t.symbols.get(usize::try_from(index).ok()?).copied();
            }
        }
        None
    }

    /// After a restart interval: the marker `RSTn` must come next, with
    /// nothing read past the data before it.
    pub(super) fn restart(&mut self, n: usize) -> Option<()> {
        self.finish()?;
        let marker = [0xFF, 0xD0 + (n % 8) as u8];
        if self.data.get(self.pos..self.pos + 2)? != marker {
            return None;
        }
        self.pos += 2;
        self.acc = 0;
        self.count = 0;
        self.padded = 0;
        Some(())
    }

    /// The end of a scan or an interval: nothing read past its data, and
    /// no whole byte left unread (libjpeg warns of extraneous data).
    pub(super) fn finish(&self) -> Option<()> {
        (self.count >= self.padded && self.count - self.padded < 8).then_some(())
    }
}

/// Whether any of the word's bytes is 0xFF.
#[inline(always)]
fn has_ff(word: u64) -> bool {
    let x = !word;
    (x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080) != 0
}

/// A block's first AC scan (G.1.2.2).
#[inline(always)]
pub(super) fn first_block(
    coefs: &mut [i16; 64],
    mask: &mut u64,
    table: &Huffman,
    scan: &Scan,
    eob_run: &mut u32,
    bits: &mut Bits<'_>,
) -> Option<()> {
    if *eob_run > 0 {
        *eob_run -= 1;
        return Some(());
    }
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = bits.symbol(table)?;
        let (r, s) = (u32::from(rs >> 4), u32::from(rs & 0x0F));
        if s != 0 {
            k += r;
            if k > scan.se {
                return None;
            }
            let v = (bits.signed(s) << scan.al) as i16;
            coefs[NATURAL[k as usize]] = v;
            if v != 0 {
                *mask |= 1 << k;
            }
            k += 1;
        } else if r == 15 {
            k += 16;
        } else {
            *eob_run = (1 << r) - 1;
            if r > 0 {
                *eob_run += bits.take(r) as u32;
            }
            break;
        }
    }
    Some(())
}

/// Bits `from..=to` set.
#[inline(always)]
fn band(from: u32, to: u32) -> u64 {
    (u64::MAX >> (63 - to)) & (u64::MAX << from)
}

/// A block's AC refinement (G.1.2.3): new coefficients of ±1 (shifted),
/// and a correction bit for each coefficient already non-zero that the
/// scan passes over. Runs of zeros are found and correction bits placed
/// with bit operations, without a branch on any coefficient or bit (both
/// are as likely one way as the other, so such branches mispredict).
#[inline(always)]
pub(super) fn refine_block<const PDEP: bool>(
    coefs: &mut [i16; 64],
    mask: &mut u64,
    table: &Huffman,
    scan: &Scan,
    eob_run: &mut u32,
    bits: &mut Bits<'_>,
) -> Option<()> {
    let p1: i16 = 1 << scan.al;
    let mut k = scan.ss;
    // Coefficients whose correction bit is 1, by zigzag index.
    let mut raise = 0u64;
    if *eob_run == 0 {
        while k <= scan.se {
            let rs = bits.symbol(table)?;
            let (r, s) = (u32::from(rs >> 4), rs & 0x0F);
            let mut value = 0;
            if s == 1 {
                value = if bits.bit() { p1 } else { -p1 };
            } else if s != 0 {
                return None;
            } else if r != 15 {
                *eob_run = 1 << r;
                if r > 0 {
                    *eob_run += bits.take(r) as u32;
                }
                break;
            }
            // Pass the non-zero coefficients and r zeros; stop at the
            // next zero, where a new coefficient goes.
            let ahead = band(k, scan.se);
            let target = nth_set::<PDEP>(!*mask & ahead, r);
            if target == 0 {
                return None;
            }
            raise |= corrections::<PDEP>(*mask & ahead & (target - 1), bits);
            let at = target.trailing_zeros();
            if value != 0 {
                coefs[NATURAL[at as usize]] = value;
                *mask |= target;
            }
            k = at + 1;
        }
    }
    if *eob_run > 0 {
        if k <= scan.se {
            raise |= corrections::<PDEP>(*mask & band(k, scan.se), bits);
        }
        *eob_run -= 1;
    }
    while raise != 0 {
        let at = NATURAL[raise.trailing_zeros() as usize & 63];
        raise &= raise - 1;
        let c = coefs[at];
        // Already refined (only in a damaged file): left, as libjpeg
        // leaves it.
        let fresh = i16::from(c & p1 == 0);
        let sign = (c >> 15) | 1;
        coefs[at] = c.wrapping_add(sign * p1 * fresh);
    }
    Some(())
}

/// The lowest set bit of `x` after skipping `n` of them (0 if none).
#[inline(always)]
fn nth_set<const PDEP: bool>(x: u64, n: u32) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if PDEP {
        // SAFETY: only instantiated with PDEP in code compiled for BMI2 and
        // run where the CPU has it (`Frame::ac_scan`).
        return unsafe { std::arch::x86_64::_pdep_u64(1 << n, x) };
    }
    let mut x = x;
    for _ in 0..n {
        x &= x.wrapping_sub(1);
    }
    x & x.wrapping_neg()
}

/// The low bits of `v` placed at the set bits of `mask`, lowest first.
#[inline(always)]
fn deposit<const PDEP: bool>(v: u64, mask: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if PDEP {
        // SAFETY: as in `nth_set`.
        return unsafe { std::arch::x86_64::_pdep_u64(v, mask) };
    }
    let (mut out, mut m, mut v) = (0, mask, v);
    while m != 0 {
        let low = m & m.wrapping_neg();
        out |= low & (v & 1).wrapping_neg();
        v >>= 1;
        m &= m - 1;
    }
    out
}

/// A correction bit for each coefficient in `passed`, lowest first: the
/// ones whose bit is 1.
#[inline(always)]
fn corrections<const PDEP: bool>(mut passed: u64, bits: &mut Bits<'_>) -> u64 {
    let mut raise = 0;
    while passed != 0 {
        // At most 56 bits a read: split a longer run (rare) in two.
        let part = passed & nth_set::<PDEP>(passed, 56).wrapping_sub(1);
        passed &= !part;
        let n = part.count_ones();
        // The first bit read belongs to the lowest coefficient.
        let read = bits.take(n).reverse_bits() >> (64 - n);
        raise |= deposit::<PDEP>(read, part);
    }
    raise
}
