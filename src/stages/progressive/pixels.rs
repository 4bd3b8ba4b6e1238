//! From coefficients to pixels: the IDCT (full size, or scaled as libjpeg
//! scales it), libjpeg's fancy chroma upsampling and its YCbCr to RGB
//! conversion, with AVX2 where the CPU has it.

use super::{Colour, Component, Frame, NATURAL};
use image::{DynamicImage, GrayImage, RgbImage};

/// Whether the CPU has AVX2 and FMA (and the caller allows them): asked
/// once a decode, not once a block or a row.
#[derive(Clone, Copy)]
struct Avx2(bool);

impl Avx2 {
    fn detect(allowed: bool) -> Avx2 {
        #[cfg(target_arch = "x86_64")]
        return Avx2(
            allowed
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = allowed;
            Avx2(false)
        }
    }
}

impl Frame {
    /// Dequantise, inverse-transform and convert to 8-bit grey or RGB, at
    /// `eighths`/8 of the full size (8: full size), with libjpeg's sizes;
    /// with AVX2 where the CPU has it and `fast` allows. Each component's
    /// coefficients are freed once its samples are made.
    pub(super) fn pixels(
        mut self,
        colour: Colour,
        fast: bool,
        eighths: usize,
    ) -> Option<DynamicImage> {
        let simd = Avx2::detect(fast);
        let mut planes = Vec::with_capacity(self.components.len());
        for c in std::mem::take(&mut self.components) {
            let mut plane = Plane::new(&c, &self, eighths);
            Idct::new(&c, plane.size, simd)?.blocks(&c, &mut plane);
            planes.push(plane);
        }
        self.combine(&planes, colour, eighths, simd)
    }

    /// The planes' samples as an image, chroma upsampled as libjpeg does it
    /// where its IDCT left it smaller than the luma.
    fn combine(
        &self,
        planes: &[Plane],
        colour: Colour,
        eighths: usize,
        simd: Avx2,
    ) -> Option<DynamicImage> {
        let (w, h) = (
            (self.width * eighths).div_ceil(8),
            (self.height * eighths).div_ceil(8),
        );
        match (colour, planes) {
            (Colour::Grey, [y]) => {
                let mut out = Vec::with_capacity(w * h);
                for row in 0..h {
                    out.extend_from_slice(y.row(row).get(..w)?);
                }
                GrayImage::from_raw(w as u32, h as u32, out).map(DynamicImage::ImageLuma8)
            }
            (Colour::YCbCr, [y, cb, cr]) if y.factors == (1, 1) && cb.factors == cr.factors => {
                let mut out = vec![0u8; w * h * 3];
                let (mut cb_row, mut cr_row) = (vec![0u8; w + 1], vec![0u8; w + 1]);
                for (row, rgb) in out.chunks_exact_mut(w * 3).enumerate() {
                    match cb.factors {
                        (1, 1) => {
                            cb_row[..w].copy_from_slice(cb.row(row).get(..w)?);
                            cr_row[..w].copy_from_slice(cr.row(row).get(..w)?);
                        }
                        // At 1/8 libjpeg upsamples by replication alone.
                        (2, 1) if eighths == 1 => {
                            replicate(&cb.row(row)[..cb.width], &mut cb_row);
                            replicate(&cr.row(row)[..cr.width], &mut cr_row);
                        }
                        (2, 1) => {
                            h2v1(&cb.row(row)[..cb.width], &mut cb_row);
                            h2v1(&cr.row(row)[..cr.width], &mut cr_row);
                        }
                        (2, 2) => {
                            h2v2(cb, row, &mut cb_row);
                            h2v2(cr, row, &mut cr_row);
                        }
                        _ => return None,
                    }
                    ycc_to_rgb(&y.row(row)[..w], &cb_row[..w], &cr_row[..w], rgb, simd);
                }
                RgbImage::from_raw(w as u32, h as u32, out).map(DynamicImage::ImageRgb8)
            }
            _ => None,
        }
    }

    /// The side of the square each of `c`'s blocks becomes at `eighths`/8,
    /// as libjpeg chooses it: the output scale, doubled while that still
    /// divides the component's subsampling and stays under 8, so chroma
    /// comes out of its IDCT at the luma's resolution instead of being
    /// upsampled (2N for 4:2:0 chroma, up to 14). At full size, 8.
    pub(super) fn block_size(&self, c: &Component, eighths: usize) -> usize {
        let mut size = eighths;
        while size < 8
            && (self.max_h * eighths).is_multiple_of(c.h * size * 2)
            && (self.max_v * eighths).is_multiple_of(c.v * size * 2)
        {
            size *= 2;
        }
        size
    }
}

/// A component's samples after the IDCT, over whole blocks.
struct Plane {
    data: Vec<u8>,
    stride: usize,
    /// The samples that hold the image (downsampled_width and _height).
    width: usize,
    height: usize,
    /// The side of each block's samples.
    size: usize,
    /// How many output samples each of the plane's stands for, across and
    /// down.
    factors: (usize, usize),
}

impl Plane {
    /// The plane of component `c` at `eighths`/8, its blocks not yet made.
    fn new(c: &Component, frame: &Frame, eighths: usize) -> Plane {
        let size = frame.block_size(c, eighths);
        let stride = c.stride * size;
        // libjpeg's downsampled_width and _height at this scale.
        Plane {
            data: vec![0u8; stride * c.rows * size],
            stride,
            width: (frame.width * c.h * size).div_ceil(frame.max_h * 8),
            height: (frame.height * c.v * size).div_ceil(frame.max_v * 8),
            size,
            factors: (
                frame.max_h * eighths / (c.h * size),
                frame.max_v * eighths / (c.v * size),
            ),
        }
    }

    fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.stride..(y + 1) * self.stride]
    }
}

/// A component's inverse transform at one block size: its dequantisers
/// and, below full size, the scaled basis.
struct Idct {
    size: usize,
    q: [f32; 64],
    scaled: Option<Basis>,
    simd: Avx2,
}

impl Idct {
    /// `None` before the component's quantisation table is latched.
    fn new(c: &Component, size: usize, simd: Avx2) -> Option<Idct> {
        let quant = c.quant.as_ref()?;
        let mut q = [0f32; 64];
        for (k, &n) in NATURAL.iter().enumerate() {
            q[n] = f32::from(quant[k]);
        }
        Some(Idct {
            size,
            q,
            scaled: (size != 8).then(|| Basis::new(size)),
            simd,
        })
    }

    /// The samples of `c`'s blocks into `plane`: those that hold samples
    /// (the MCU padding is never shown).
    fn blocks(&self, c: &Component, plane: &mut Plane) {
        let (size, stride) = (self.size, plane.stride);
        for by in 0..c.high {
            for bx in 0..c.wide {
                let at = by * c.stride + bx;
                let out = &mut plane.data[by * size * stride + bx * size..];
                match &self.scaled {
                    None => idct(&c.coefs[at], c.masks[at], &self.q, out, stride, self.simd),
                    Some(basis) => {
                        basis.idct(&c.coefs[at], c.masks[at], &self.q, self.simd, |y, row| {
                            out[y * stride..y * stride + row.len()].copy_from_slice(row)
                        })
                    }
                }
            }
        }
    }
}

/// The IDCT basis: `BASIS[x][u]` = C(u)/2 cos((2x+1)uπ/16).
static BASIS: std::sync::LazyLock<[[f32; 8]; 8]> = std::sync::LazyLock::new(|| {
    let mut b = [[0f32; 8]; 8];
    for (x, row) in b.iter_mut().enumerate() {
        for (u, v) in row.iter_mut().enumerate() {
            let c = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *v = (c / 2.0 * ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos())
                as f32;
        }
    }
    b
});

/// The one value of every sample of a block of DC alone, as libjpeg
/// rounds it (its 1x1 IDCT).
fn flat(coefs: &[i16; 64], q: &[f32; 64]) -> u8 {
    (f32::from(coefs[0]) * q[0] / 8.0 + 128.5).clamp(0.0, 255.0) as u8
}

/// One block's samples, `out` rows `stride` apart; coefficients and
/// quantisers row-major.
fn idct(coefs: &[i16; 64], mask: u64, q: &[f32; 64], out: &mut [u8], stride: usize, simd: Avx2) {
    let out = &mut out[..7 * stride + 8];
    if mask == 0 {
        // DC alone: a flat block.
        let v = flat(coefs, q);
        for y in 0..8 {
            out[y * stride..y * stride + 8].fill(v);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd.0 {
        // SAFETY: the CPU has both features (`Avx2::detect`); `out` holds
        // the eight rows (sliced above).
        unsafe { simd::idct(coefs, q, out, stride) };
        return;
    }
    idct_portable(coefs, q, out, stride);
}

fn idct_portable(coefs: &[i16; 64], q: &[f32; 64], out: &mut [u8], stride: usize) {
    let basis = &*BASIS;
    let mut t = [[0f32; 8]; 8];
    for v in 0..8 {
        for u in 0..8 {
            let f = f32::from(coefs[v * 8 + u]) * q[v * 8 + u];
            if f != 0.0 {
                for (y, ty) in t.iter_mut().enumerate() {
                    ty[u] += basis[y][v] * f;
                }
            }
        }
    }
    for (y, ty) in t.iter().enumerate() {
        for x in 0..8 {
            let s: f32 = (0..8).map(|u| ty[u] * basis[x][u]).sum();
            out[y * stride + x] = (s + 128.5).clamp(0.0, 255.0) as u8;
        }
    }
}

/// A scaled IDCT, as libjpeg computes it at each size: at 2x2 and 4x4
/// (its `jidctred.c`) the full IDCT's samples averaged over each 4x4 or
/// 2x2 square; at the others (`jidctint.c`: 3x3, 5x5 to 7x7, and 10x10 to
/// 14x14 for chroma) the block's cosine series, truncated to the
/// frequencies the new grid can hold, evaluated at its sample centres.
struct Basis {
    size: usize,
    /// Coefficients used along each axis.
    used: usize,
    /// `at[x][u]`: the weight of frequency u in sample x.
    at: [[f32; 8]; 16],
    /// The same, transposed: `across[u][x]`, zero past `size`.
    across: [[f32; 16]; 8],
    /// The AC coefficients (bit k: zigzag index k) with a weight in some
    /// sample: a block with none of them non-zero is flat.
    read: u64,
}

impl Basis {
    fn new(size: usize) -> Basis {
        use std::f64::consts::{FRAC_1_SQRT_2, PI};
        let weight = |u: usize| if u == 0 { FRAC_1_SQRT_2 } else { 1.0 } / 2.0;
        let mut at = [[0f32; 8]; 16];
        let averaged = matches!(size, 2 | 4);
        for (x, row) in at.iter_mut().enumerate().take(size) {
            for (u, v) in row.iter_mut().enumerate() {
                *v = if averaged {
                    let span = 8 / size;
                    let sum: f64 = (x * span..(x + 1) * span)
                        .map(|i| ((2 * i + 1) as f64 * u as f64 * PI / 16.0).cos())
                        .sum();
                    weight(u) * sum / span as f64
                } else {
                    weight(u) * ((2 * x + 1) as f64 * u as f64 * PI / (2 * size) as f64).cos()
                } as f32;
            }
        }
        let mut across = [[0f32; 16]; 8];
        for (x, row) in at.iter().enumerate() {
            for (u, &v) in row.iter().enumerate() {
                across[u][x] = v;
            }
        }
        // Frequencies along one axis with a weight in some sample (the
        // averaged 4x4 gives frequency 4 none, the 2x2 every even one).
        let used = if averaged { 8 } else { size.min(8) };
        let weighs = |u: usize| u < used && at.iter().take(size).any(|row| row[u].abs() > 1e-6);
        let read = (1..64)
            .filter(|&k| weighs(NATURAL[k] % 8) && weighs(NATURAL[k] / 8))
            .fold(0u64, |m, k| m | 1 << k);
        Basis {
            size,
            used,
            at,
            across,
            read,
        }
    }

    /// One block's `size` x `size` samples, handed to `put` row by row:
    /// `put(y, samples)`.
    fn idct(
        &self,
        coefs: &[i16; 64],
        mask: u64,
        q: &[f32; 64],
        simd: Avx2,
        mut put: impl FnMut(usize, &[u8]),
    ) {
        let (n, k) = (self.size, self.used);
        if mask & self.read == 0 {
            // DC alone, of what the IDCT reads (a 1x1 reads nothing else):
            // a flat block, as libjpeg rounds it.
            let row = [flat(coefs, q); 16];
            for y in 0..n {
                put(y, &row[..n]);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if simd.0 {
            // SAFETY: the CPU has both features (`Avx2::detect`); each
            // size (those libjpeg's scaling gives) is its own function, its
            // loops unrolled, called with the basis of that size.
            unsafe {
                match n {
                    2 => return simd::idct_scaled::<2>(coefs, q, self, put),
                    3 => return simd::idct_scaled::<3>(coefs, q, self, put),
                    4 => return simd::idct_scaled::<4>(coefs, q, self, put),
                    5 => return simd::idct_scaled::<5>(coefs, q, self, put),
                    6 => return simd::idct_scaled::<6>(coefs, q, self, put),
                    7 => return simd::idct_scaled::<7>(coefs, q, self, put),
                    10 => return simd::idct_scaled::<10>(coefs, q, self, put),
                    12 => return simd::idct_scaled::<12>(coefs, q, self, put),
                    14 => return simd::idct_scaled::<14>(coefs, q, self, put),
                    // Any other size: the portable transform below.
                    _ => {}
                }
            }
        }
        // Columns first: t[y][u] = sum over v of at[y][v] f[v][u].
        let mut t = [[0f32; 8]; 16];
        for v in 0..k {
            for u in 0..k {
                let f = f32::from(coefs[v * 8 + u]) * q[v * 8 + u];
                if f != 0.0 {
                    for (y, ty) in t.iter_mut().enumerate().take(n) {
                        ty[u] += self.at[y][v] * f;
                    }
                }
            }
        }
        let mut line = [0u8; 16];
        for (y, ty) in t.iter().enumerate().take(n) {
            for (x, sample) in line.iter_mut().enumerate().take(n) {
                let s: f32 = (0..k).map(|u| ty[u] * self.at[x][u]).sum();
                *sample = (s + 128.5).clamp(0.0, 255.0) as u8;
            }
            put(y, &line[..n]);
        }
    }
}

/// The IDCT and the colour conversion in AVX2 (with FMA).
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::BASIS;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2 and FMA; `out` must hold 7 * stride + 8 bytes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn idct(coefs: &[i16; 64], q: &[f32; 64], out: &mut [u8], stride: usize) {
        // SAFETY: the caller's promises (AVX2, FMA, the rows of `out`);
        // the loads read the 64 coefficients and quantisers.
        unsafe {
            let basis = &*BASIS;
            // Dequantised coefficient rows, each over u.
            let mut f = [_mm256_setzero_ps(); 8];
            let mut used = [false; 8];
            for v in 0..8 {
                let row = _mm_loadu_si128(coefs.as_ptr().add(v * 8).cast());
                if _mm_testz_si128(row, row) == 0 {
                    used[v] = true;
                    let wide = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(row));
                    f[v] = _mm256_mul_ps(wide, _mm256_loadu_ps(q.as_ptr().add(v * 8)));
                }
            }
            // Columns: t[y] = sum over v of basis[y][v] f[v].
            let mut t = [_mm256_setzero_ps(); 8];
            for v in 0..8 {
                if !used[v] {
                    continue;
                }
                for y in 0..8 {
                    t[y] = _mm256_fmadd_ps(_mm256_set1_ps(basis[y][v]), f[v], t[y]);
                }
            }
            // Rows: transpose, the same pass again (giving columns of the
            // output), transpose back.
            transpose(&mut t);
            let mut s = [_mm256_set1_ps(128.5); 8];
            for u in 0..8 {
                for x in 0..8 {
                    s[x] = _mm256_fmadd_ps(_mm256_set1_ps(basis[x][u]), t[u], s[x]);
                }
            }
            transpose(&mut s);
            let top = _mm256_set1_ps(255.0);
            for (y, row) in s.iter().enumerate() {
                let i = _mm256_cvttps_epi32(_mm256_min_ps(*row, top));
                let w = _mm256_packs_epi32(i, i);
                let b = _mm256_packus_epi16(w, w);
                let eight =
                    _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
                _mm_storel_epi64(out.as_mut_ptr().add(y * stride).cast(), eight);
            }
        }
    }

    /// A scaled IDCT ([`super::Basis`]) of size `N` (the basis's): the
    /// column pass gives each output row over the frequencies u, the row
    /// pass each output row over x, as sums over frequencies of the
    /// transposed basis, one or two vectors wide. Every output row is its
    /// own chain of multiply-adds, so the rows proceed side by side.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `N` must be the basis's size, at
    /// most 16.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn idct_scaled<const N: usize>(
        coefs: &[i16; 64],
        q: &[f32; 64],
        basis: &super::Basis,
        mut put: impl FnMut(usize, &[u8]),
    ) {
        // SAFETY: the caller's promises (AVX2, FMA, the size); the loads
        // read the 64 coefficients and quantisers, rows of the basis's
        // fixed-size arrays (N <= 16) and of local arrays.
        unsafe {
            // The frequencies used along each axis, a constant for each N
            // so the loops over them unroll: the basis's own count.
            let k = if N == 2 || N == 4 { 8 } else { N.min(8) };
            debug_assert_eq!((k, N), (basis.used, basis.size));
            // Dequantised coefficient rows with a non-zero coefficient,
            // each over u; rows past k are never read.
            let mut f = [_mm256_setzero_ps(); 8];
            let mut rows = [0usize; 8];
            let mut used = 0;
            for v in 0..k {
                let row = _mm_loadu_si128(coefs.as_ptr().add(v * 8).cast());
                if _mm_testz_si128(row, row) == 0 {
                    let wide = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(row));
                    f[used] = _mm256_mul_ps(wide, _mm256_loadu_ps(q.as_ptr().add(v * 8)));
                    rows[used] = v;
                    used += 1;
                }
            }
            // Columns: t[y] = sum over the used v of at[y][v] f[v].
            let mut t = [_mm256_setzero_ps(); N];
            for (&v, fv) in rows.iter().zip(&f).take(used) {
                for (y, ty) in t.iter_mut().enumerate() {
                    *ty = _mm256_fmadd_ps(_mm256_set1_ps(basis.at[y][v]), *fv, *ty);
                }
            }
            let mut ts = [[0f32; 8]; N];
            for (row, ty) in ts.iter_mut().zip(&t) {
                _mm256_storeu_ps(row.as_mut_ptr(), *ty);
            }
            // Rows: s[y] = 128.5 + sum over u of t[y][u] across[u].
            let top = _mm256_set1_ps(255.0);
            let mut lines = [[0u8; 16]; N];
            for half in 0..N.div_ceil(8) {
                let mut s = [_mm256_set1_ps(128.5); N];
                for u in 0..k {
                    let b = _mm256_loadu_ps(basis.across[u].as_ptr().add(half * 8));
                    for (sy, ty) in s.iter_mut().zip(&ts) {
                        *sy = _mm256_fmadd_ps(_mm256_set1_ps(ty[u]), b, *sy);
                    }
                }
                for (line, sy) in lines.iter_mut().zip(&s) {
                    let i = _mm256_cvttps_epi32(_mm256_max_ps(
                        _mm256_min_ps(*sy, top),
                        _mm256_setzero_ps(),
                    ));
                    let w = _mm256_packs_epi32(i, i);
                    let b = _mm256_packus_epi16(w, w);
                    let eight = _mm_unpacklo_epi32(
                        _mm256_castsi256_si128(b),
                        _mm256_extracti128_si256(b, 1),
                    );
                    _mm_storel_epi64(line.as_mut_ptr().add(half * 8).cast(), eight);
                }
            }
            for (y, line) in lines.iter().enumerate() {
                put(y, &line[..N]);
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx")]
    fn transpose(m: &mut [__m256; 8]) {
        let t0 = _mm256_unpacklo_ps(m[0], m[1]);
        let t1 = _mm256_unpackhi_ps(m[0], m[1]);
        let t2 = _mm256_unpacklo_ps(m[2], m[3]);
        let t3 = _mm256_unpackhi_ps(m[2], m[3]);
        let t4 = _mm256_unpacklo_ps(m[4], m[5]);
        let t5 = _mm256_unpackhi_ps(m[4], m[5]);
        let t6 = _mm256_unpacklo_ps(m[6], m[7]);
        let t7 = _mm256_unpackhi_ps(m[6], m[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        m[0] = _mm256_permute2f128_ps::<0x20>(u0, u4);
        m[1] = _mm256_permute2f128_ps::<0x20>(u1, u5);
        m[2] = _mm256_permute2f128_ps::<0x20>(u2, u6);
        m[3] = _mm256_permute2f128_ps::<0x20>(u3, u7);
        m[4] = _mm256_permute2f128_ps::<0x31>(u0, u4);
        m[5] = _mm256_permute2f128_ps::<0x31>(u1, u5);
        m[6] = _mm256_permute2f128_ps::<0x31>(u2, u6);
        m[7] = _mm256_permute2f128_ps::<0x31>(u3, u7);
    }

    /// Sixteen pixels of YCbCr to RGB, as `super::ycc` does each.
    ///
    /// # Safety
    /// The CPU must have AVX2; `y`, `cb`, `cr` must hold 16 bytes and
    /// `rgb` 48.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn ycc16(y: &[u8], cb: &[u8], cr: &[u8], rgb: &mut [u8]) {
        // SAFETY: the caller's promises (AVX2, the slices' lengths).
        unsafe {
            let load = |p: &[u8]| _mm256_cvtepu8_epi16(_mm_loadu_si128(p.as_ptr().cast()));
            let (l, u, v) = (load(y), load(cb), load(cr));
            // 32-bit products, in two halves of eight.
            let half = |x: __m256i, hi: bool| {
                let part = if hi {
                    _mm256_extracti128_si256(x, 1)
                } else {
                    _mm256_castsi256_si128(x)
                };
                _mm256_cvtepi16_epi32(part)
            };
            let bias = _mm256_set1_epi32(128);
            let round = _mm256_set1_epi32(32_768);
            let mut planes = [[0u8; 16]; 3];
            for hi in [false, true] {
                let yy = half(l, hi);
                let cbb = _mm256_sub_epi32(half(u, hi), bias);
                let crr = _mm256_sub_epi32(half(v, hi), bias);
                let shift = |x: __m256i| _mm256_srai_epi32(_mm256_add_epi32(x, round), 16);
                let r = _mm256_add_epi32(
                    yy,
                    shift(_mm256_mullo_epi32(crr, _mm256_set1_epi32(91_881))),
                );
                let g = _mm256_add_epi32(
                    yy,
                    shift(_mm256_add_epi32(
                        _mm256_mullo_epi32(cbb, _mm256_set1_epi32(-22_554)),
                        _mm256_mullo_epi32(crr, _mm256_set1_epi32(-46_802)),
                    )),
                );
                let b = _mm256_add_epi32(
                    yy,
                    shift(_mm256_mullo_epi32(cbb, _mm256_set1_epi32(116_130))),
                );
                for (plane, x) in planes.iter_mut().zip([r, g, b]) {
                    let w = _mm256_packs_epi32(x, x);
                    let bytes = _mm256_packus_epi16(w, w);
                    let eight = _mm_unpacklo_epi32(
                        _mm256_castsi256_si128(bytes),
                        _mm256_extracti128_si256(bytes, 1),
                    );
                    let at = if hi { 8 } else { 0 };
                    _mm_storel_epi64(plane.as_mut_ptr().add(at).cast(), eight);
                }
            }
            // Interleave: each output byte picks from R, G or B.
            let (r, g, b) = (
                _mm_loadu_si128(planes[0].as_ptr().cast()),
                _mm_loadu_si128(planes[1].as_ptr().cast()),
                _mm_loadu_si128(planes[2].as_ptr().cast()),
            );
            for part in 0..3 {
                let pick = |channel: usize| {
                    let mut idx = [-1i8; 16];
                    for (i, slot) in idx.iter_mut().enumerate() {
                        let byte = part * 16 + i;
                        if byte % 3 == channel {
                            *slot = (byte / 3) as i8;
                        }
                    }
                    _mm_loadu_si128(idx.as_ptr().cast())
                };
                let out = _mm_or_si128(
                    _mm_or_si128(_mm_shuffle_epi8(r, pick(0)), _mm_shuffle_epi8(g, pick(1))),
                    _mm_shuffle_epi8(b, pick(2)),
                );
                _mm_storeu_si128(rgb.as_mut_ptr().add(part * 16).cast(), out);
            }
        }
    }
}

/// libjpeg's fancy 2x horizontal upsampling: each output sample 3/4 of the
/// nearer input and 1/4 of the further one.
/// Chroma two samples wide or less is replicated, as libjpeg does it.
fn h2v1(input: &[u8], out: &mut [u8]) {
    let n = input.len();
    if n <= 2 {
        replicate(input, out);
        return;
    }
    for i in 0..n {
        let here = 3 * u16::from(input[i]);
        let before = u16::from(input[i.saturating_sub(1)]);
        let after = u16::from(input[(i + 1).min(n - 1)]);
        if let Some(pair) = out.get_mut(2 * i..2 * i + 2) {
            pair[0] = ((here + before + 1) >> 2) as u8;
            pair[1] = ((here + after + 2) >> 2) as u8;
        }
    }
}

/// libjpeg's fancy 2x2 upsampling for output row `row`: 3/4 of the nearer
/// chroma row and 1/4 of the other vertically, then as [`h2v1`] with its
/// own rounding. Chroma two samples wide or less is replicated both ways,
/// as libjpeg does it.
fn h2v2(p: &Plane, row: usize, out: &mut [u8]) {
    let j = row / 2;
    if p.width <= 2 {
        replicate(&p.row(j)[..p.width], out);
        return;
    }
    let other = if row.is_multiple_of(2) {
        j.saturating_sub(1)
    } else {
        (j + 1).min(p.height - 1)
    };
    let (near, far) = (&p.row(j)[..p.width], &p.row(other)[..p.width]);
    let n = p.width;
    let sum = |i: usize| 3 * u16::from(near[i]) + u16::from(far[i]);
    for i in 0..n {
        let here = 3 * sum(i);
        let before = sum(i.saturating_sub(1));
        let after = sum((i + 1).min(n - 1));
        if let Some(pair) = out.get_mut(2 * i..2 * i + 2) {
            pair[0] = ((here + before + 8) >> 4) as u8;
            pair[1] = ((here + after + 7) >> 4) as u8;
        }
    }
}

/// Each sample twice (libjpeg's plain upsampling).
fn replicate(input: &[u8], out: &mut [u8]) {
    for (pair, &v) in out.chunks_exact_mut(2).zip(input) {
        pair.fill(v);
    }
}

/// JFIF YCbCr to RGB in libjpeg's fixed point (16 fraction bits).
fn ycc_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], rgb: &mut [u8], simd: Avx2) {
    let n = y.len().min(cb.len()).min(cr.len()).min(rgb.len() / 3);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd.0 {
        while done + 16 <= n {
            let at = done..done + 16;
            // SAFETY: AVX2 is there (`Avx2::detect`); each slice holds 16
            // pixels.
            unsafe {
                simd::ycc16(
                    &y[at.clone()],
                    &cb[at.clone()],
                    &cr[at],
                    &mut rgb[done * 3..done * 3 + 48],
                );
            }
            done += 16;
        }
    }
    for at in done..n {
        let (r, g, b) = ycc(y[at], cb[at], cr[at]);
        rgb[at * 3..at * 3 + 3].copy_from_slice(&[r, g, b]);
    }
}

#[inline(always)]
fn ycc(y: u8, cb: u8, cr: u8) -> (u8, u8, u8) {
    let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
    let r = y + ((91_881 * cr + 32_768) >> 16);
    let g = y + ((-22_554 * cb - 46_802 * cr + 32_768) >> 16);
    let b = y + ((116_130 * cb + 32_768) >> 16);
    (
        r.clamp(0, 255) as u8,
        g.clamp(0, 255) as u8,
        b.clamp(0, 255) as u8,
    )
}
