//! The Gaussian blur that `blur` and `sharpen` share: a direct integer
//! kernel for small sigma, three box passes beyond, on 8- or 16-bit pixels
//! (one generic body, compiled for each sample type).

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

use crate::stage::StageError;

/// A channel value: `u8` or `u16`. The passes add at most `1 << KERNEL_BITS`
/// weighted 16-bit values, or a box of values, which fits in a `u32`.
pub(super) trait Sample: Copy + Default + Into<u32> + Send + Sync + 'static {
    /// The largest value, as `i32` for the sharpening maths.
    const MAX: i32;
    /// Narrow a value already known to be in range.
    fn from_u32(v: u32) -> Self;
}

impl Sample for u8 {
    const MAX: i32 = 255;
    #[inline(always)]
    fn from_u32(v: u32) -> Self {
        v as u8
    }
}

impl Sample for u16 {
    const MAX: i32 = 65535;
    #[inline(always)]
    fn from_u32(v: u32) -> Self {
        v as u16
    }
}

/// Channels per pixel and whether the last one is alpha, for the layouts
/// later stages handle (8- or 16-bit grey, RGB, RGBA).
pub(super) fn layout(img: &DynamicImage) -> Result<(usize, bool), StageError> {
    match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLuma16(_) => Ok((1, false)),
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgb16(_) => Ok((3, false)),
        DynamicImage::ImageRgba8(_) | DynamicImage::ImageRgba16(_) => Ok((4, true)),
        other => Err(StageError::new(format!(
            "unsupported pixel layout {:?}",
            other.color()
        ))),
    }
}

/// The channel values of an image, 8 or 16 bits each.
pub(super) enum Samples<'a> {
    U8(&'a mut [u8]),
    U16(&'a mut [u16]),
}

pub(super) fn samples_mut(img: &mut DynamicImage) -> Samples<'_> {
    match img {
        DynamicImage::ImageLuma8(b) => Samples::U8(b),
        DynamicImage::ImageRgb8(b) => Samples::U8(b),
        DynamicImage::ImageRgba8(b) => Samples::U8(b),
        DynamicImage::ImageLuma16(b) => Samples::U16(b),
        DynamicImage::ImageRgb16(b) => Samples::U16(b),
        DynamicImage::ImageRgba16(b) => Samples::U16(b),
        _ => Samples::U8(&mut []),
    }
}

/// Widths of three box blurs whose succession approximates a Gaussian of
/// `sigma` (the usual construction: boxes of two neighbouring odd widths).
pub(super) fn box_radii(sigma: f32) -> [usize; 3] {
    let n = 3.0f32;
    let ideal = (12.0 * sigma * sigma / n + 1.0).sqrt();
    let mut lower = ideal.floor() as i64;
    if lower % 2 == 0 {
        lower -= 1;
    }
    let upper = lower + 2;
    let m = ((12.0 * sigma * sigma - n * (lower * lower) as f32 - 4.0 * n * lower as f32 - 3.0 * n)
        / (-4.0 * lower as f32 - 4.0))
        .round() as i64;
    let mut radii = [0usize; 3];
    for (i, r) in radii.iter_mut().enumerate() {
        let width = if (i as i64) < m { lower } else { upper };
        *r = usize::try_from((width - 1) / 2).unwrap_or(0);
    }
    radii
}

/// One horizontal box pass over interleaved rows, edges clamped.
pub(super) fn box_h<T: Sample>(src: &[T], dst: &mut [T], w: usize, c: usize, r: usize) {
    if r == 0 || w == 0 {
        dst.copy_from_slice(src);
        return;
    }
    let div = (2 * r + 1) as u32;
    for (row_in, row_out) in src.chunks_exact(w * c).zip(dst.chunks_exact_mut(w * c)) {
        for ch in 0..c {
            let px = |x: usize| -> u32 { row_in[x * c + ch].into() };
            let mut acc: u32 = (0..=2 * r)
                .map(|i| px(i.saturating_sub(r).min(w - 1)))
                .sum();
            for x in 0..w {
                row_out[x * c + ch] = T::from_u32((acc + div / 2) / div);
                acc += px((x + r + 1).min(w - 1));
                acc -= px(x.saturating_sub(r));
            }
        }
    }
}

/// One vertical box pass, a running sum per column, row by row: the rows
/// of `dst` are rows `y0..` of the `h`-row image, so a band of them can be
/// made apart from the others with the same result.
pub(super) fn box_v<T: Sample>(
    src: &[T],
    dst: &mut [T],
    (w, h, c): (usize, usize, usize),
    r: usize,
    y0: usize,
) {
    let stride = w * c;
    if r == 0 || h == 0 || stride == 0 {
        dst.copy_from_slice(&src[y0 * stride..y0 * stride + dst.len()]);
        return;
    }
    let div = (2 * r + 1) as u32;
    let row = |y: usize| &src[y * stride..(y + 1) * stride];
    let mut acc = vec![0u32; stride];
    for i in 0..=2 * r {
        for (a, &v) in acc
            .iter_mut()
            .zip(row((y0 + i).saturating_sub(r).min(h - 1)))
        {
            *a += v.into();
        }
    }
    for (k, out) in dst.chunks_exact_mut(stride).enumerate() {
        let y = y0 + k;
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = T::from_u32((a + div / 2) / div);
        }
        let (add, sub) = (row((y + r + 1).min(h - 1)), row(y.saturating_sub(r)));
        for ((a, &p), &m) in acc.iter_mut().zip(add).zip(sub) {
            *a = *a + p.into() - m.into();
        }
    }
}

/// Define a hot loop compiled twice, for the baseline CPU and for AVX2 (8
/// lanes of 32-bit multiplies, which baseline SSE2 lacks), the build chosen
/// at run time.
macro_rules! simd_fn {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY (for callers): only to be called on a CPU with AVX2;
                // the one call below checks that first.
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
pub(super) use simd_fn;

/// Fixed-point scale of the direct kernel's weights.
pub(super) const KERNEL_BITS: u32 = 14;

/// Up to this radius the Gaussian is applied directly (exact weights, cost
/// growing with the radius); beyond it, three box blurs (constant cost).
pub(super) const DIRECT_RADIUS: usize = 8;

/// Integer Gaussian weights out to 3 sigma, summing to exactly
/// `1 << KERNEL_BITS`.
pub(super) fn gaussian_kernel(sigma: f32) -> Vec<u32> {
    let r = (3.0 * sigma).ceil().max(1.0) as usize;
    let f: Vec<f64> = (0..=2 * r)
        .map(|i| {
            let d = i as f64 - r as f64;
            (-d * d / (2.0 * f64::from(sigma) * f64::from(sigma))).exp()
        })
        .collect();
    let total: f64 = f.iter().sum();
    let one = 1u32 << KERNEL_BITS;
    let mut k: Vec<u32> = f
        .iter()
        .map(|v| (v / total * f64::from(one)).round() as u32)
        .collect();
    // Rounding leaves the sum a little off; the centre absorbs it.
    let sum: u32 = k.iter().sum();
    k[r] = (k[r] + one).saturating_sub(sum);
    k
}

/// A running sum of weighted samples in one pass: `u32` for any sample
/// with the fine kernel (`KERNEL_BITS`), `u16` for 8-bit samples with the
/// coarse one (`KERNEL8_BITS`), whose SIMD registers hold twice as many.
trait Sum<T: Sample>: Copy + Default + std::ops::Mul<Output = Self> + std::ops::AddAssign {
    /// A sample widened to a sum.
    fn of(v: T) -> Self;
    /// The sums scaled back to samples, rounded.
    fn narrow(acc: &[Self], out: &mut [T]);
}

impl<T: Sample> Sum<T> for u32 {
    #[inline(always)]
    fn of(v: T) -> u32 {
        v.into()
    }
    #[inline(always)]
    fn narrow(acc: &[u32], out: &mut [T]) {
        let half = 1u32 << (KERNEL_BITS - 1);
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = T::from_u32((a + half) >> KERNEL_BITS);
        }
    }
}

impl Sum<u8> for u16 {
    #[inline(always)]
    fn of(v: u8) -> u16 {
        u16::from(v)
    }
    #[inline(always)]
    fn narrow(acc: &[u16], out: &mut [u8]) {
        let half = 1u16 << (KERNEL8_BITS - 1);
        for (o, &a) in out.iter_mut().zip(acc) {
            // At most 255 << 8 plus the half: no overflow, and the result fits.
            *o = ((a + half) >> KERNEL8_BITS) as u8;
        }
    }
}

/// `acc` = the kernel's weighted sum of `rows(k)` over its taps. The first
/// tap sets the sums: no separate pass to clear them.
#[inline(always)]
fn weigh<'a, T: Sample, A: Sum<T>>(acc: &mut [A], kernel: &[A], rows: impl Fn(usize) -> &'a [T]) {
    for (a, &v) in acc.iter_mut().zip(rows(0)) {
        *a = kernel[0] * A::of(v);
    }
    for (k, &weight) in kernel.iter().enumerate().skip(1) {
        for (a, &v) in acc.iter_mut().zip(rows(k)) {
            *a += weight * A::of(v);
        }
    }
}

/// Horizontal pass of a direct kernel over interleaved rows, edges clamped.
/// Rows are padded once so the inner loops run over contiguous values,
/// which the compiler turns into SIMD.
#[inline(always)]
fn conv_h_any<T: Sample, A: Sum<T>>(src: &[T], dst: &mut [T], w: usize, c: usize, kernel: &[A]) {
    let r = kernel.len() / 2;
    let stride = w * c;
    let mut pad = vec![T::default(); (w + 2 * r) * c];
    let mut acc = vec![A::default(); stride];
    for (row_in, row_out) in src.chunks_exact(stride).zip(dst.chunks_exact_mut(stride)) {
        pad_row(row_in, &mut pad, r, c);
        weigh(&mut acc, kernel, |k| &pad[k * c..k * c + stride]);
        A::narrow(&acc, row_out);
    }
}

/// Vertical pass of a direct kernel: rows `y0..` into `dst`, edges clamped.
#[inline(always)]
fn conv_v_any<T: Sample, A: Sum<T>>(
    src: &[T],
    dst: &mut [T],
    (w, h, c): (usize, usize, usize),
    kernel: &[A],
    y0: usize,
) {
    let r = kernel.len() / 2;
    let stride = w * c;
    let mut acc = vec![A::default(); stride];
    for (k, row_out) in dst.chunks_exact_mut(stride).enumerate() {
        let y = y0 + k;
        weigh(&mut acc, kernel, |k| {
            let sy = (y + k).saturating_sub(r).min(h - 1);
            &src[sy * stride..(sy + 1) * stride]
        });
        A::narrow(&acc, row_out);
    }
}

/// `row` into `pad` with `r` copies of its first and last pixels (`c`
/// samples each) on either side.
#[inline(always)]
fn pad_row<T: Copy>(row: &[T], pad: &mut [T], r: usize, c: usize) {
    let stride = row.len();
    let (first, last) = (&row[..c], &row[stride - c..]);
    for x in 0..r {
        pad[x * c..(x + 1) * c].copy_from_slice(first);
        pad[r * c + stride + x * c..][..c].copy_from_slice(last);
    }
    pad[r * c..r * c + stride].copy_from_slice(row);
}

/// A short direct kernel's weights for 8-bit samples: summing to exactly
/// `1 << KERNEL8_BITS`, so every product and every sum fits 16 bits and a
/// SIMD register holds twice as many as with 32-bit sums. The weights are
/// coarser (1/256); for kernels of `SHORT_TAPS` or fewer that moves the
/// result at most half a level further from the 16-bit blur than 32-bit
/// sums do (a test measures it).
pub(super) fn kernel8(kernel: &[u32]) -> Vec<u16> {
    let shift = KERNEL_BITS - KERNEL8_BITS;
    let one = 1u16 << KERNEL8_BITS;
    let mut k: Vec<u16> = kernel
        .iter()
        .map(|&v| u16::try_from((v + (1 << (shift - 1))) >> shift).unwrap_or(one))
        .collect();
    let r = k.len() / 2;
    let sum: u16 = k.iter().fold(0u16, |a, &v| a.saturating_add(v));
    // Rounding leaves the sum a little off; the centre absorbs it.
    k[r] = (k[r] + one).saturating_sub(sum);
    k
}

/// Fixed-point scale of the 8-bit kernel's weights.
pub(super) const KERNEL8_BITS: u32 = 8;

// The macro takes no generics: one instance per sample type.
simd_fn! {
fn conv_h8(src: &[u8], dst: &mut [u8], w: usize, c: usize, kernel: &[u32]) {
    conv_h_any(src, dst, w, c, kernel)
}
}

simd_fn! {
fn conv_h8_short(src: &[u8], dst: &mut [u8], w: usize, c: usize, kernel: &[u16]) {
    conv_h_any(src, dst, w, c, kernel)
}
}

simd_fn! {
fn conv_h16(src: &[u16], dst: &mut [u16], w: usize, c: usize, kernel: &[u32]) {
    conv_h_any(src, dst, w, c, kernel)
}
}

simd_fn! {
fn conv_v8(src: &[u8], dst: &mut [u8], shape: (usize, usize, usize), kernel: &[u32], y0: usize) {
    conv_v_any(src, dst, shape, kernel, y0)
}
}

simd_fn! {
fn conv_v8_short(
    src: &[u8],
    dst: &mut [u8],
    shape: (usize, usize, usize),
    kernel: &[u16],
    y0: usize,
) {
    conv_v_any(src, dst, shape, kernel, y0)
}
}

simd_fn! {
fn conv_v16(src: &[u16], dst: &mut [u16], shape: (usize, usize, usize), kernel: &[u32], y0: usize) {
    conv_v_any(src, dst, shape, kernel, y0)
}
}

/// The direct passes of one sample type, picked at compile time.
pub(super) trait Direct: Sample {
    fn conv_h(src: &[Self], dst: &mut [Self], w: usize, c: usize, kernel: &[u32]);
    /// Rows `y0..` of the vertical pass into `dst`.
    fn conv_v(
        src: &[Self],
        dst: &mut [Self],
        shape: (usize, usize, usize),
        kernel: &[u32],
        y0: usize,
    );
}

/// Up to this many taps (sigma up to 1, the usual sharpening), 8-bit
/// samples are blurred with the 8-bit kernel: as close to the 16-bit
/// result as the 32-bit sums are. Wider kernels add up more rounding of
/// their many small weights, so they keep the 32-bit sums.
pub(super) const SHORT_TAPS: usize = 7;

impl Direct for u8 {
    fn conv_h(src: &[u8], dst: &mut [u8], w: usize, c: usize, kernel: &[u32]) {
        if kernel.len() <= SHORT_TAPS {
            conv_h8_short(src, dst, w, c, &kernel8(kernel))
        } else {
            conv_h8(src, dst, w, c, kernel)
        }
    }
    fn conv_v(src: &[u8], dst: &mut [u8], shape: (usize, usize, usize), kernel: &[u32], y0: usize) {
        if kernel.len() <= SHORT_TAPS {
            conv_v8_short(src, dst, shape, &kernel8(kernel), y0)
        } else {
            conv_v8(src, dst, shape, kernel, y0)
        }
    }
}

impl Direct for u16 {
    fn conv_h(src: &[u16], dst: &mut [u16], w: usize, c: usize, kernel: &[u32]) {
        conv_h16(src, dst, w, c, kernel)
    }
    fn conv_v(
        src: &[u16],
        dst: &mut [u16],
        shape: (usize, usize, usize),
        kernel: &[u32],
        y0: usize,
    ) {
        conv_v16(src, dst, shape, kernel, y0)
    }
}

/// Blur `src` (8- or 16-bit interleaved pixels, `w` x `h` x `c`) into `dst` with a
/// Gaussian of `sigma`: a direct separable kernel for small `sigma` (the
/// usual case for sharpening), three box blurs each way for large ones.
/// Every pass writes all of its output, so `dst` need not be initialised.
/// Each pass is cut into bands of rows over the cores the item may use;
/// the bands give exactly the rows one pass over the whole image would.
pub(super) fn blur_into<T: Direct>(
    src: &[T],
    dst: &mut [T],
    w: usize,
    h: usize,
    c: usize,
    sigma: f32,
) {
    let stride = w * c;
    if stride == 0 || h == 0 {
        return;
    }
    let shape = (w, h, c);
    crate::cores::split((w * h) as u64, |parts| {
        let mut tmp = vec![T::default(); src.len()];
        if let Some(kernel) = direct_kernel(sigma) {
            horizontal(src, &mut tmp, (w, c), &kernel, parts);
            by_rows(dst, stride, parts, &|y0, band| {
                T::conv_v(&tmp, band, shape, &kernel, y0)
            });
            return;
        }
        let [first, rest @ ..] = box_radii(sigma);
        by_rows(&mut tmp, stride, parts, &|y0, band| {
            box_h(&src[y0 * stride..][..band.len()], band, w, c, first)
        });
        by_rows(dst, stride, parts, &|y0, band| {
            box_v(&tmp, band, shape, first, y0)
        });
        for r in rest {
            by_rows(&mut tmp, stride, parts, &|y0, band| {
                box_h(&dst[y0 * stride..][..band.len()], band, w, c, r)
            });
            by_rows(dst, stride, parts, &|y0, band| {
                box_v(&tmp, band, shape, r, y0)
            });
        }
    })
}

/// The direct kernel for `sigma` when it is narrow enough to apply as it
/// is; wider blurs are three box blurs instead.
fn direct_kernel(sigma: f32) -> Option<Vec<u32>> {
    let kernel = gaussian_kernel(sigma);
    (kernel.len() / 2 <= DIRECT_RADIUS).then_some(kernel)
}

/// A direct kernel's horizontal pass over `src` into `tmp`, in `parts`
/// bands of rows.
fn horizontal<T: Direct>(
    src: &[T],
    tmp: &mut [T],
    (w, c): (usize, usize),
    kernel: &[u32],
    parts: usize,
) {
    let stride = w * c;
    by_rows(tmp, stride, parts, &|y0, band| {
        T::conv_h(&src[y0 * stride..][..band.len()], band, w, c, kernel)
    });
}

/// Rows the vertical pass of [`with_blur`] writes at a time: a small buffer
/// that stays in cache between the pass and the filter that reads it.
const ROWS_AT_ONCE: usize = 8;

/// Blur `data` as [`blur_into`] would and hand the blurred rows to `apply`
/// with the same rows of `data` (whole rows, a few at a time), for filters
/// that combine an image with its blur (`sharpen`). With a direct kernel the
/// vertical pass's rows go straight to `apply` from a small buffer: no
/// blurred copy of the whole image is written and read back. Over the cores
/// the item may use, like [`blur_into`].
pub(super) fn with_blur<T: Direct>(
    data: &mut [T],
    (w, h, c): (usize, usize, usize),
    sigma: f32,
    apply: &(dyn Fn(&mut [T], &[T]) + Sync),
) {
    let stride = w * c;
    if stride == 0 || h == 0 {
        return;
    }
    let Some(kernel) = direct_kernel(sigma) else {
        let mut mask = vec![T::default(); data.len()];
        blur_into(data, &mut mask, w, h, c, sigma);
        crate::cores::split((w * h) as u64, |parts| {
            by_rows(data, stride, parts, &|y0, band| {
                apply(band, &mask[y0 * stride..][..band.len()])
            })
        });
        return;
    };
    crate::cores::split((w * h) as u64, |parts| {
        let mut tmp = vec![T::default(); data.len()];
        horizontal(data, &mut tmp, (w, c), &kernel, parts);
        by_rows(data, stride, parts, &|y0, band| {
            let mut rows = vec![T::default(); ROWS_AT_ONCE * stride];
            for (i, some) in band.chunks_mut(ROWS_AT_ONCE * stride).enumerate() {
                let blurred = &mut rows[..some.len()];
                T::conv_v(&tmp, blurred, (w, h, c), &kernel, y0 + i * ROWS_AT_ONCE);
                apply(some, blurred);
            }
        });
    })
}

/// Run `f(first_row, band)` over `parts` bands of whole rows of `dst`, in
/// parallel when there is more than one.
pub(super) fn by_rows<T: Send>(
    dst: &mut [T],
    stride: usize,
    parts: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    use rayon::prelude::*;
    let h = dst.len() / stride.max(1);
    if parts <= 1 || h < 2 * parts {
        f(0, dst);
        return;
    }
    let band = h.div_ceil(parts);
    dst.par_chunks_mut(band * stride)
        .enumerate()
        .for_each(|(i, b)| f(i * band, b));
}

/// A blurred copy of `img`, in a new buffer rather than a clone of it that
/// the passes would overwrite anyway.
pub(super) fn gaussian(img: &DynamicImage, sigma: f32) -> Result<DynamicImage, StageError> {
    let (c, _) = layout(img)?;
    let (w, h) = (img.width(), img.height());
    let blurred = |src: &[u16]| {
        let mut out = vec![0u16; src.len()];
        blur_into(src, &mut out, w as usize, h as usize, c, sigma);
        out
    };
    let image =
        match img {
            DynamicImage::ImageLuma16(b) => ImageBuffer::<Luma<u16>, _>::from_raw(w, h, blurred(b))
                .map(DynamicImage::ImageLuma16),
            DynamicImage::ImageRgb16(b) => {
                ImageBuffer::<Rgb<u16>, _>::from_raw(w, h, blurred(b)).map(DynamicImage::ImageRgb16)
            }
            DynamicImage::ImageRgba16(b) => ImageBuffer::<Rgba<u16>, _>::from_raw(w, h, blurred(b))
                .map(DynamicImage::ImageRgba16),
            _ => {
                let src = img.as_bytes();
                let mut out = vec![0u8; src.len()];
                blur_into(src, &mut out, w as usize, h as usize, c, sigma);
                match c {
                    1 => GrayImage::from_raw(w, h, out).map(DynamicImage::ImageLuma8),
                    3 => RgbImage::from_raw(w, h, out).map(DynamicImage::ImageRgb8),
                    _ => RgbaImage::from_raw(w, h, out).map(DynamicImage::ImageRgba8),
                }
            }
        };
    image.ok_or_else(|| StageError::new("pixel data does not match its size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean and variance along x of the blurred image of one bright column,
    /// and the sum of its values.
    fn spread(sigma: f32) -> (f64, f64, u64) {
        let img =
            image::GrayImage::from_fn(101, 9, |x, _| image::Luma([if x == 50 { 255 } else { 0 }]));
        let out = gaussian(&DynamicImage::ImageLuma8(img), sigma).expect("blur");
        let row: Vec<f64> = (0..101)
            .map(|x| (0..9).map(|y| f64::from(out.as_bytes()[y * 101 + x])).sum())
            .collect();
        let total: f64 = row.iter().sum();
        let mean = row
            .iter()
            .enumerate()
            .map(|(x, v)| x as f64 * v)
            .sum::<f64>()
            / total;
        let var = row
            .iter()
            .enumerate()
            .map(|(x, v)| (x as f64 - mean).powi(2) * v)
            .sum::<f64>()
            / total;
        (
            mean,
            var,
            out.as_bytes().iter().map(|&v| u64::from(v)).sum(),
        )
    }

    #[test]
    fn gaussian_blur_has_the_asked_spread_and_keeps_the_mean() {
        // Direct kernels (small sigma) and boxes (large) alike.
        for sigma in [0.7f32, 1.0, 2.0, 4.0, 6.0] {
            let (mean, var, sum) = spread(sigma);
            assert!((mean - 50.0).abs() < 0.01, "sigma {sigma}: centre {mean}");
            let want = f64::from(sigma * sigma);
            assert!(
                (var - want).abs() < 0.15 * want,
                "sigma {sigma}: variance {var}, want {want}"
            );
            // Rounding may lose or gain a little of each row's 255.
            assert!(sum.abs_diff(9 * 255) < 9 * 20, "sigma {sigma}: sum {sum}");
        }
        let flat = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            37,
            23,
            image::Rgb([10, 128, 250]),
        ));
        assert_eq!(gaussian(&flat, 1.5).expect("blur"), flat);
    }

    #[test]
    fn direct_kernel_matches_a_plain_reference() {
        // A wide kernel (32-bit sums) and a short one (the 8-bit kernel).
        for (sigma, bits) in [(1.3f32, KERNEL_BITS), (0.9, KERNEL8_BITS)] {
            reference(sigma, bits);
        }
    }

    fn reference(sigma: f32, bits: u32) {
        let (w, h, c) = (37usize, 29usize, 3usize);
        let src: Vec<u8> = (0..w * h * c).map(|i| (i * 7919 % 251) as u8).collect();
        let mut kernel = gaussian_kernel(sigma);
        if bits == KERNEL8_BITS {
            assert!(kernel.len() <= SHORT_TAPS);
            kernel = kernel8(&kernel).into_iter().map(u32::from).collect();
        }
        assert_eq!(kernel.iter().sum::<u32>(), 1 << bits);
        let r = kernel.len() / 2;
        let round = |a: u32| ((a + (1 << (bits - 1))) >> bits) as u8;
        let mut mid = vec![0u8; src.len()];
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let a: u32 = (0..kernel.len())
                        .map(|k| {
                            let sx = (x + k).saturating_sub(r).min(w - 1);
                            kernel[k] * u32::from(src[(y * w + sx) * c + ch])
                        })
                        .sum();
                    mid[(y * w + x) * c + ch] = round(a);
                }
            }
        }
        let mut want = vec![0u8; src.len()];
        for y in 0..h {
            for i in 0..w * c {
                let a: u32 = (0..kernel.len())
                    .map(|k| {
                        let sy = (y + k).saturating_sub(r).min(h - 1);
                        kernel[k] * u32::from(mid[sy * w * c + i])
                    })
                    .sum();
                want[y * w * c + i] = round(a);
            }
        }
        let img = image::RgbImage::from_raw(w as u32, h as u32, src).expect("size");
        let got = gaussian(&DynamicImage::ImageRgb8(img), sigma).expect("blur");
        assert_eq!(got.as_bytes(), &want[..], "sigma {sigma}");
    }

    #[test]
    fn short_eight_bit_kernels_blur_as_closely_as_wide_sums() {
        let (w, h) = (211usize, 97usize);
        let src: Vec<u8> = (0..w * h * 3)
            .map(|i| ((i * 7919) % 251) as u8 ^ ((i / 3 / w * 5) as u8))
            .collect();
        let wide: Vec<u16> = src.iter().map(|&v| u16::from(v) * 257).collect();
        for sigma in [0.5f32, 0.8, 1.0] {
            assert!(gaussian_kernel(sigma).len() <= SHORT_TAPS);
            let mut narrow = vec![0u8; src.len()];
            blur_into(&src, &mut narrow, w, h, 3, sigma);
            let mut fine = vec![0u16; src.len()];
            blur_into(&wide, &mut fine, w, h, 3, sigma);
            let kernel = gaussian_kernel(sigma);
            let mut mid = vec![0u8; src.len()];
            conv_h_any(&src, &mut mid, w, 3, &kernel);
            let mut old = vec![0u8; src.len()];
            conv_v_any(&mid, &mut old, (w, h, 3), &kernel, 0);
            let apart = |x: &[u8]| {
                let d: Vec<f64> = x
                    .iter()
                    .zip(&fine)
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b) / 257.0).abs())
                    .collect();
                (
                    d.iter().copied().fold(0.0, f64::max),
                    d.iter().sum::<f64>() / d.len() as f64,
                )
            };
            let (new, old) = (apart(&narrow), apart(&old));
            // The 32-bit sums are within a level of the 16-bit blur (both
            // round the first pass to 8 bits); the 8-bit kernel adds at
            // most half a level to that, and a tenth to the mean.
            assert!(
                new.0 <= 1.5 && new.1 <= old.1 + 0.1,
                "sigma {sigma}: {new:?} against {old:?}"
            );
        }
    }

    #[test]
    fn bands_over_several_threads_give_the_same_pixels_as_one_pass() {
        // Big enough to be split; odd sizes so bands are uneven.
        let (w, h) = (1031, 1047);
        let src: Vec<u8> = (0..w * h * 3)
            .map(|i| ((i * 7919) % 251) as u8 ^ ((i / 3 / w) as u8))
            .collect();
        let run = |threads: usize, sigma: f32| {
            let src = src.clone();
            std::thread::spawn(move || {
                crate::cores::set_share(threads);
                let mut out = vec![0u8; src.len()];
                blur_into(&src, &mut out, w, h, 3, sigma);
                out
            })
            .join()
            .unwrap_or_default()
        };
        // A direct kernel and the three box passes.
        for sigma in [1.5, 12.0] {
            let one = run(1, sigma);
            assert!(!one.is_empty());
            for threads in [2, 3, 5] {
                assert!(
                    one == run(threads, sigma),
                    "sigma {sigma}, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn blurred_rows_handed_on_are_the_whole_blur() {
        // `apply` copies the blurred rows over the image's: the result must
        // be the whole-image blur, row for row, whatever the kernel, the
        // sample type, the channels and the number of bands.
        fn check<T: Direct + PartialEq + std::fmt::Debug>(
            src: Vec<T>,
            (w, h, c): (usize, usize, usize),
        ) {
            for sigma in [0.6, 1.0, 2.0, 12.0] {
                let mut want = vec![T::default(); src.len()];
                blur_into(&src, &mut want, w, h, c, sigma);
                for threads in [1, 2, 3] {
                    let mut got = src.clone();
                    let want = want.clone();
                    let same = std::thread::spawn(move || {
                        crate::cores::set_share(threads);
                        with_blur(&mut got, (w, h, c), sigma, &|d, m| d.copy_from_slice(m));
                        got == want
                    })
                    .join()
                    .unwrap_or(false);
                    assert!(same, "sigma {sigma}, {threads} threads, {c} channels");
                }
            }
        }
        // Tall enough to be split, and a height that leaves a short last
        // chunk in each band.
        let (w, h) = (523, 1037);
        let wave = |i: usize| ((i * 7919) % 251) ^ (i / 5 % 7);
        check((0..w * h * 3).map(|i| wave(i) as u8).collect(), (w, h, 3));
        check((0..w * h * 4).map(|i| wave(i) as u8).collect(), (w, h, 4));
        check(
            (0..w * h).map(|i| (wave(i) * 257) as u16).collect(),
            (w, h, 1),
        );
        check((0..3 * 5).map(|i| wave(i) as u8).collect(), (3, 5, 1));
    }
}
